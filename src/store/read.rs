//! The store's reads: whole objects, byte ranges, streams and existence checks, from a
//! local folder on the calling thread or from an object store through its I/O runtime.
//! Part of the first stage of the flow: STORE -> shard reader -> plan -> ...

use std::fs::File;
use std::io::Read;
use std::ops::Range;

use bytes::Bytes;

use super::coalesce::coalesce;
use super::files::{pread, CountedRead};
use super::remote_reader::RemoteReader;
use super::{maps, Backend, Store, StoreError};

impl Store {
    /// A whole object, uncached.
    pub fn read(&self, name: &str) -> Result<Bytes, StoreError> {
        match &self.backend {
            Backend::Local(root) => {
                let bytes = std::fs::read(Self::local_path(root, name))
                    .map(Bytes::from)
                    .map_err(self.io_err(name))?;
                self.stats.read(bytes.len() as u64);
                Ok(bytes)
            }
            Backend::Remote(r) => {
                let name = name.to_string();
                Self::remote_call(r, |c| async move { c.get(&name).await })
            }
        }
    }

    /// A whole object whose content is pinned by `tag` (its checksum from the
    /// manifest); cached under that tag.
    pub fn read_versioned(&self, name: &str, tag: &str) -> Result<Bytes, StoreError> {
        match &self.backend {
            Backend::Local(_) => self.read(name),
            Backend::Remote(r) => {
                let (name, tag) = (name.to_string(), tag.to_string());
                Self::remote_call(r, |c| async move { c.get_versioned(&name, &tag).await })
            }
        }
    }

    /// A whole object that may change (the manifest): always asked of the store, but
    /// with the cached copy's ETag, so an unchanged object is not downloaded again.
    pub fn read_revalidated(&self, name: &str) -> Result<Bytes, StoreError> {
        match &self.backend {
            Backend::Local(_) => self.read(name),
            Backend::Remote(r) => {
                let name = name.to_string();
                Self::remote_call(r, |c| async move { c.get_revalidated(&name).await })
            }
        }
    }

    /// One byte range of an object (cached under `tag` when given).
    pub fn read_range(
        &self,
        name: &str,
        range: Range<u64>,
        tag: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        let mut v = self.read_ranges(name, std::slice::from_ref(&range), tag)?;
        Ok(v.pop().expect("one range in, one out"))
    }

    /// Several byte ranges of one object, in the order given; ranges that touch are
    /// fetched with one request.
    pub fn read_ranges(
        &self,
        name: &str,
        ranges: &[Range<u64>],
        tag: Option<&str>,
    ) -> Result<Vec<Bytes>, StoreError> {
        match &self.backend {
            Backend::Local(root) => {
                let path = Self::local_path(root, name);
                // A file that cannot be mapped (a file system without mmap support) is
                // read with positioned reads; one that cannot be opened fails there too.
                let mut map_error = None;
                if let Some(maps) = self.maps.as_ref().filter(|m| m.enabled()) {
                    match maps.read(&path, ranges) {
                        Ok(out) => {
                            self.stats.read(out.iter().map(|b| b.len() as u64).sum());
                            return Ok(out);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                            return Err(self.io_err(name)(e));
                        }
                        Err(e) => map_error = Some(e),
                    }
                }
                let file = File::open(&path).map_err(self.io_err(name))?;
                let all: Vec<usize> = (0..ranges.len()).collect();
                let mut out = vec![Bytes::new(); ranges.len()];
                for (span, members) in coalesce(ranges, &all, 0) {
                    let buf = Bytes::from(
                        pread(&file, span.start, (span.end - span.start) as usize)
                            .map_err(self.io_err(name))?,
                    );
                    self.stats.read(buf.len() as u64);
                    for i in members {
                        let r = &ranges[i];
                        out[i] = buf
                            .slice((r.start - span.start) as usize..(r.end - span.start) as usize);
                    }
                }
                if let (Some(e), Some(maps)) = (map_error, &self.maps) {
                    maps.refuse();
                    maps::mapping_failed(&path, &e);
                }
                Ok(out)
            }
            Backend::Remote(r) => {
                let (name, ranges, tag) =
                    (name.to_string(), ranges.to_vec(), tag.map(String::from));
                Self::remote_call(r, |c| async move {
                    c.get_ranges(&name, ranges, tag.as_deref()).await
                })
            }
        }
    }

    /// The future of one range read, to run on the store's I/O runtime (read-ahead);
    /// `None` for local folders.
    pub(crate) fn range_task(
        &self,
        name: &str,
        range: Range<u64>,
        tag: Option<&str>,
    ) -> Option<impl std::future::Future<Output = Result<Bytes, StoreError>> + Send + 'static> {
        let Backend::Remote(r) = &self.backend else {
            return None;
        };
        let core = r.core.clone();
        let (name, tag) = (name.to_string(), tag.map(String::from));
        Some(async move { core.get_range(&name, range, tag.as_deref()).await })
    }

    /// The I/O runtime's handle; `None` for local folders.
    pub(crate) fn io_handle(&self) -> Option<tokio::runtime::Handle> {
        match &self.backend {
            Backend::Remote(r) => Some(r.io.handle().clone()),
            Backend::Local(_) => None,
        }
    }

    /// A whole object as a stream of bytes (shards without an index). A remote body
    /// that breaks mid-way is resumed from the byte reached.
    pub fn reader(&self, name: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        match &self.backend {
            Backend::Local(root) => {
                let file = File::open(Self::local_path(root, name)).map_err(self.io_err(name))?;
                let counted = CountedRead {
                    inner: file,
                    stats: self.stats.clone(),
                };
                Ok(Box::new(std::io::BufReader::with_capacity(
                    1 << 20,
                    counted,
                )))
            }
            Backend::Remote(r) => Ok(Box::new(RemoteReader::start(r.core.clone(), &r.io, name))),
        }
    }

    /// Whether an object exists.
    pub fn exists(&self, name: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Local(root) => Ok(Self::local_path(root, name).exists()),
            Backend::Remote(r) => {
                let name = name.to_string();
                Self::remote_call(r, |c| async move { c.exists(&name).await })
            }
        }
    }
}
