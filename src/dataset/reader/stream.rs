//! Reads whole files of an open dataset: a shard streamed sample by sample without its
//! index, or any file the manifest names in one read. Part of the shard reader stage
//! (store -> SHARD READER -> plan).

use bytes::Bytes;

use super::error::store_err;
use super::{Dataset, DatasetError};
use crate::dataset::Subset;
use crate::shard::{stream_samples, RawSample, ShardError};
use crate::store::StoreError;

impl Dataset {
    /// Streams every sample of one shard in order, without its index.
    pub fn stream_shard(
        &self,
        subset: Subset,
        shard: usize,
        on_sample: impl FnMut(RawSample) -> Result<(), ShardError>,
    ) -> Result<(), DatasetError> {
        let name = self.shards(subset)?[shard].path.clone();
        let reader = self.store.reader(&name).map_err(|e| store_err(&name, e))?;
        let failed = std::rc::Rc::new(std::cell::RefCell::new(None));
        let watched = StoreErrorTap {
            inner: reader,
            failed: failed.clone(),
        };
        match stream_samples(&name, watched, on_sample) {
            Ok(()) => Ok(()),
            // The store broke mid-stream: say so, not that the shard is corrupt.
            Err(e) => Err(failed.take().map_or(e.into(), DatasetError::Store)),
        }
    }

    /// A whole file of the dataset (a shard or index named by the manifest).
    pub fn read_object(&self, name: &str) -> Result<Bytes, DatasetError> {
        self.store.read(name).map_err(|e| store_err(name, e))
    }
}

/// Passes reads through, keeping a store error that ends the stream so that it can be
/// reported as such (the tar reader only sees an I/O error).
struct StoreErrorTap<R> {
    inner: R,
    failed: std::rc::Rc<std::cell::RefCell<Option<StoreError>>>,
}

impl<R: std::io::Read> std::io::Read for StoreErrorTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if !e.get_ref().is_some_and(|x| x.is::<StoreError>()) {
                return e;
            }
            let se = e
                .into_inner()
                .and_then(|x| x.downcast::<StoreError>().ok())
                .expect("checked the type above");
            let msg = se.to_string();
            *self.failed.borrow_mut() = Some(*se);
            std::io::Error::other(msg)
        })
    }
}
