//! A whole object streamed into a [`ChunkQueue`], resumed from the byte reached when
//! the body breaks mid-way (and only if the object is still the same one). Runs on the
//! store's I/O runtime; part of the store's object-store backend, first stage of the
//! flow: STORE -> shard reader -> ...

use std::sync::Arc;

use object_store::{GetOptions, GetRange};

use super::Core;
use crate::store::remote_reader::ChunkQueue;
use crate::store::retry::{self, Class};
use crate::store::StoreError;

impl Core {
    /// Streams an object into `queue`, resuming after a transient failure mid-body
    /// from the byte reached. Stops early when the reader goes away.
    pub async fn stream(&self, name: &str, queue: Arc<ChunkQueue>) {
        let result = self.stream_inner(name, &queue).await;
        queue.finish(result);
    }

    async fn stream_inner(&self, name: &str, queue: &ChunkQueue) -> Result<(), StoreError> {
        use tokio_stream::StreamExt as _;
        let url = self.url_of(name);
        let path = self.path(name);
        let store = &self.store;
        let mut offset = 0u64;
        let mut etag: Option<String> = None;
        let mut resumed = 0u32;
        loop {
            let opts = GetOptions {
                range: (offset > 0).then_some(GetRange::Offset(offset)),
                // A resumed read must continue the same object, not a replacement.
                if_match: etag.clone(),
                ..GetOptions::default()
            };
            let result = self
                .retrier()
                .run(&url, || store.get_opts(&path, opts.clone()))
                .await?;
            if etag.is_none() {
                etag = result.meta.e_tag.clone();
            }
            let mut body = result.into_stream();
            let mut failed = None;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(b) => {
                        offset += b.len() as u64;
                        self.stats.read(b.len() as u64);
                        if !queue.push(b).await {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let Some(e) = failed else { return Ok(()) };
            if retry::classify(&e) == Class::Transient && resumed < self.policy.max_retries {
                resumed += 1;
                self.stats.retry();
                tracing::debug!(url = %url, offset, error = %e, "store stream broke, resuming");
                tokio::time::sleep(self.policy.backoff(resumed)).await;
                continue;
            }
            let err = StoreError::Unavailable {
                url,
                attempts: resumed + 1,
                message: retry::store_message(&e),
            };
            self.stats.error(&err);
            return Err(err);
        }
    }
}
