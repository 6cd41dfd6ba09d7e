//! The object-store backend: builds an `object_store` client for a URL and config, and
//! runs every request through the retry loop, the concurrency limit and the disk
//! cache. All of it is async and runs on the store's I/O runtime; `store::Store` wraps
//! it for blocking callers.
//!
//! Here is [`Core`], what every request needs; the client is built in `client`, and
//! the requests are in `read`, `write` and `stream`.

mod client;
mod read;
mod stream;
mod write;

use std::sync::Arc;

use bytes::Bytes;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;
use tokio::sync::Semaphore;

use super::cache::DiskCache;
use super::retry::{Retrier, RetryPolicy};
use super::url::RemoteUrl;
use super::StoreStats;

pub(crate) use client::build;

/// Everything a request needs; shared by the tasks on the I/O runtime.
pub(crate) struct Core {
    pub url: RemoteUrl,
    pub store: Arc<dyn ObjectStore>,
    pub multipart: Option<Arc<dyn MultipartStore>>,
    pub limit: Semaphore,
    pub policy: RetryPolicy,
    pub cache: Option<Arc<DiskCache>>,
    pub stats: Arc<StoreStats>,
    pub coalesce_gap: u64,
    pub part_bytes: usize,
    pub upload_concurrency: usize,
}

/// A client and, when it has one, its part-by-part upload interface.
pub(crate) type Clients = (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>);

fn cache_key(url: &str, tag: &str, what: &str) -> String {
    format!("{url}\n{tag}\n{what}")
}

impl Core {
    pub fn retrier(&self) -> Retrier<'_> {
        Retrier {
            policy: self.policy,
            limit: &self.limit,
            stats: &self.stats,
        }
    }

    pub fn path(&self, name: &str) -> ObjPath {
        ObjPath::from(self.url.key(name))
    }

    pub fn url_of(&self, name: &str) -> String {
        self.url.object(name)
    }

    async fn cache_get(&self, key: String) -> Option<(Vec<u8>, Bytes)> {
        let cache = self.cache.clone()?;
        // Disk reads stay off the runtime's threads.
        tokio::task::spawn_blocking(move || cache.get(&key))
            .await
            .ok()
            .flatten()
    }

    async fn cache_put(&self, key: String, meta: Vec<u8>, payload: Bytes) {
        if let Some(cache) = self.cache.clone() {
            let _ = tokio::task::spawn_blocking(move || cache.put(&key, &meta, &payload)).await;
        }
    }
}
