//! The object-store backend: builds an `object_store` client for a URL and config, and
//! runs every request through the retry loop, the concurrency limit and the disk
//! cache. All of it is async and runs on the store's I/O runtime; `store::Store` wraps
//! it for blocking callers.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjPath;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use tokio::sync::Semaphore;

use super::cache::DiskCache;
use super::retry::{Retrier, RetryPolicy};
use super::url::{RemoteUrl, Scheme};
use super::{StoreConfig, StoreError, StoreStats};

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

/// Builds the object_store client for a URL. Its own retries are off: ours count.
pub(crate) fn build(url: &RemoteUrl, config: &StoreConfig) -> Result<Clients, StoreError> {
    let failed = |e: object_store::Error| StoreError::Config {
        url: url.to_string(),
        why: super::retry::store_message(&e),
    };
    let client = ClientOptions::new()
        .with_connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .with_timeout(Duration::from_millis(config.request_timeout_ms))
        .with_pool_max_idle_per_host(config.max_concurrent_requests);
    let retry = RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    };
    match url.scheme {
        Scheme::S3 => {
            use object_store::aws::AmazonS3Builder;
            let o = &url.options;
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(&url.bucket)
                .with_retry(retry)
                .with_virtual_hosted_style_request(
                    o.virtual_hosted.unwrap_or(config.virtual_hosted),
                )
                .with_allow_http(o.allow_http.unwrap_or(config.allow_http))
                .with_skip_signature(config.skip_signature);
            if let Some(e) = o.endpoint.as_ref().or(config.endpoint.as_ref()) {
                b = b.with_endpoint(e);
            }
            let region = o
                .region
                .clone()
                .or_else(|| config.region.clone())
                .unwrap_or_else(|| "us-east-1".to_string());
            b = b.with_region(region);
            if let (Some(k), Some(s)) = (&config.access_key_id, &config.secret_access_key) {
                b = b.with_access_key_id(k).with_secret_access_key(s);
            }
            if let Some(t) = &config.session_token {
                b = b.with_token(t);
            }
            let allow_http = o.allow_http.unwrap_or(config.allow_http);
            let s3 = Arc::new(
                b.with_client_options(client.with_allow_http(allow_http))
                    .build()
                    .map_err(failed)?,
            );
            Ok((s3.clone(), Some(s3)))
        }
        Scheme::Gcs => {
            use object_store::gcp::GoogleCloudStorageBuilder;
            let g = Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&url.bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(failed)?,
            );
            Ok((g.clone(), Some(g)))
        }
        Scheme::Azure => {
            use object_store::azure::MicrosoftAzureBuilder;
            let a = Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_container_name(&url.bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(failed)?,
            );
            Ok((a.clone(), Some(a)))
        }
    }
}

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

    /// The whole object, uncached.
    pub async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let path = self.path(name);
        let url = self.url_of(name);
        let store = &self.store;
        let bytes = self
            .retrier()
            .run(&url, || async { store.get(&path).await?.bytes().await })
            .await?;
        self.stats.read(bytes.len() as u64);
        Ok(bytes)
    }

    /// The whole object, cached under `tag` (a checksum of its content from the
    /// manifest, so a changed object is a different entry).
    pub async fn get_versioned(&self, name: &str, tag: &str) -> Result<Bytes, StoreError> {
        let url = self.url_of(name);
        let key = cache_key(&url, tag, "all");
        if let Some((_, b)) = self.cache_get(key.clone()).await {
            return Ok(b);
        }
        let bytes = self.get(name).await?;
        self.cache_put(key, Vec::new(), bytes.clone()).await;
        Ok(bytes)
    }

    /// The whole object, revalidated against a cached copy with its ETag: one request
    /// either way, but an unchanged manifest is not downloaded again.
    pub async fn get_revalidated(&self, name: &str) -> Result<Bytes, StoreError> {
        let url = self.url_of(name);
        let key = cache_key(&url, "", "revalidate");
        let cached = self.cache_get(key.clone()).await;
        let etag = cached
            .as_ref()
            .and_then(|(m, _)| String::from_utf8(m.clone()).ok())
            .filter(|e| !e.is_empty());
        let path = self.path(name);
        let store = &self.store;
        let got = self
            .retrier()
            .run(&url, || {
                let opts = GetOptions {
                    if_none_match: etag.clone(),
                    ..GetOptions::default()
                };
                async {
                    let r = store.get_opts(&path, opts).await?;
                    let etag = r.meta.e_tag.clone().unwrap_or_default();
                    Ok((etag, r.bytes().await?))
                }
            })
            .await;
        match got {
            Ok((etag, bytes)) => {
                self.stats.read(bytes.len() as u64);
                if !etag.is_empty() {
                    self.cache_put(key, etag.into_bytes(), bytes.clone()).await;
                }
                Ok(bytes)
            }
            Err(StoreError::NotModified { .. }) => match cached {
                Some((_, b)) => Ok(b),
                None => Err(StoreError::Failed {
                    url,
                    message: "the store answered 304 to an unconditional read".into(),
                }),
            },
            Err(e) => Err(e),
        }
    }

    /// One byte range, cached under `tag` when given.
    pub async fn get_range(
        &self,
        name: &str,
        range: Range<u64>,
        tag: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        let mut v = self.get_ranges(name, vec![range], tag).await?;
        Ok(v.pop().expect("one range in, one out"))
    }

    /// Several byte ranges of one object, in the order given. Cached ranges are served
    /// from the cache; the rest are merged where they touch (or lie within
    /// `coalesce_gap` bytes) and fetched concurrently, one request per merged range.
    pub async fn get_ranges(
        &self,
        name: &str,
        ranges: Vec<Range<u64>>,
        tag: Option<&str>,
    ) -> Result<Vec<Bytes>, StoreError> {
        let url = self.url_of(name);
        let keys: Vec<Option<String>> = ranges
            .iter()
            .map(|r| tag.map(|t| cache_key(&url, t, &format!("{}-{}", r.start, r.end))))
            .collect();
        let mut out: Vec<Option<Bytes>> = vec![None; ranges.len()];
        if self.cache.is_some() && tag.is_some() {
            let cache = self.cache.clone().expect("checked");
            let lookup = keys.clone();
            let hits = tokio::task::spawn_blocking(move || {
                lookup
                    .iter()
                    .map(|k| k.as_ref().and_then(|k| cache.get(k)).map(|(_, b)| b))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for (slot, hit) in out.iter_mut().zip(hits) {
                *slot = hit;
            }
        }
        let missing: Vec<usize> = (0..ranges.len()).filter(|&i| out[i].is_none()).collect();
        if missing.is_empty() {
            return Ok(out.into_iter().map(|b| b.expect("all hits")).collect());
        }
        let merged = coalesce(&ranges, &missing, self.coalesce_gap);
        let path = self.path(name);
        let fetches = merged.iter().map(|(span, _)| {
            let span = span.clone();
            let path = path.clone();
            let url = &url;
            async move {
                let store = &self.store;
                let bytes = self
                    .retrier()
                    .run(url, || store.get_range(&path, span.clone()))
                    .await?;
                if bytes.len() as u64 != span.end - span.start {
                    return Err(StoreError::Failed {
                        url: url.clone(),
                        message: format!(
                            "the store returned {} bytes for range {}..{} (the object is shorter than the index says)",
                            bytes.len(),
                            span.start,
                            span.end
                        ),
                    });
                }
                Ok(bytes)
            }
        });
        let fetched = join_all(fetches).await;
        let mut to_cache = Vec::new();
        for ((span, members), got) in merged.iter().zip(fetched) {
            let bytes = got?;
            self.stats.read(bytes.len() as u64);
            for &i in members {
                let r = &ranges[i];
                let piece =
                    bytes.slice((r.start - span.start) as usize..(r.end - span.start) as usize);
                if let Some(k) = &keys[i] {
                    to_cache.push((k.clone(), piece.clone()));
                }
                out[i] = Some(piece);
            }
        }
        if let (Some(cache), false) = (self.cache.clone(), to_cache.is_empty()) {
            let _ = tokio::task::spawn_blocking(move || {
                for (k, b) in to_cache {
                    cache.put(&k, &[], &b);
                }
            })
            .await;
        }
        Ok(out.into_iter().map(|b| b.expect("filled")).collect())
    }

    /// Whether the object exists.
    pub async fn exists(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.path(name);
        let store = &self.store;
        match self
            .retrier()
            .run(&self.url_of(name), || store.head(&path))
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes a whole object in one request (objects appear whole or not at all).
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(name);
        let store = &self.store;
        self.retrier()
            .run(&self.url_of(name), || {
                store.put(&path, PutPayload::from_bytes(bytes.clone()))
            })
            .await?;
        Ok(())
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        let store = &self.store;
        match self
            .retrier()
            .run(&self.url_of(name), || store.delete(&path))
            .await
        {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts a multipart upload.
    pub async fn create_multipart(&self, name: &str) -> Result<String, StoreError> {
        let mp = self
            .multipart
            .clone()
            .expect("callers check for multipart support");
        let path = self.path(name);
        self.retrier()
            .run(&self.url_of(name), || mp.create_multipart(&path))
            .await
    }

    /// Uploads part `idx`; a retry re-sends the same part number, so it is idempotent.
    pub async fn put_part(
        &self,
        name: &str,
        id: &str,
        idx: usize,
        data: Bytes,
    ) -> Result<PartId, StoreError> {
        let mp = self
            .multipart
            .clone()
            .expect("callers check for multipart support");
        let path = self.path(name);
        let id = id.to_string();
        self.retrier()
            .run(&self.url_of(name), || {
                mp.put_part(&path, &id, idx, PutPayload::from_bytes(data.clone()))
            })
            .await
    }

    /// Completes a multipart upload: the object appears now.
    pub async fn complete_multipart(
        &self,
        name: &str,
        id: &str,
        parts: Vec<PartId>,
    ) -> Result<(), StoreError> {
        let mp = self
            .multipart
            .clone()
            .expect("callers check for multipart support");
        let path = self.path(name);
        let id = id.to_string();
        self.retrier()
            .run(&self.url_of(name), || {
                mp.complete_multipart(&path, &id, parts.clone())
            })
            .await?;
        Ok(())
    }

    /// Abandons a multipart upload (best effort; the bucket's lifecycle rules clean up
    /// what this misses).
    pub async fn abort_multipart(&self, name: &str, id: &str) {
        if let Some(mp) = self.multipart.clone() {
            let _ = mp.abort_multipart(&self.path(name), &id.to_string()).await;
        }
    }

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
            if super::retry::classify(&e) == super::retry::Class::Transient
                && resumed < self.policy.max_retries
            {
                resumed += 1;
                self.stats.retry();
                tracing::debug!(url = %url, offset, error = %e, "store stream broke, resuming");
                tokio::time::sleep(self.policy.backoff(resumed)).await;
                continue;
            }
            let err = StoreError::Unavailable {
                url,
                attempts: resumed + 1,
                message: super::retry::store_message(&e),
            };
            self.stats.error(&err);
            return Err(err);
        }
    }
}

/// A bounded queue of body chunks from an async producer to a blocking reader.
pub(crate) struct ChunkQueue {
    state: std::sync::Mutex<ChunkState>,
    ready: std::sync::Condvar,
    space: Semaphore,
}

#[derive(Default)]
struct ChunkState {
    chunks: std::collections::VecDeque<Bytes>,
    end: Option<Result<(), StoreError>>,
    closed: bool,
}

impl ChunkQueue {
    /// A queue holding at most `chunks` chunks.
    pub fn new(chunks: usize) -> ChunkQueue {
        ChunkQueue {
            state: std::sync::Mutex::new(ChunkState::default()),
            ready: std::sync::Condvar::new(),
            space: Semaphore::new(chunks.max(1)),
        }
    }

    /// Adds a chunk, waiting (asynchronously) for room; false when the reader is gone.
    async fn push(&self, b: Bytes) -> bool {
        match self.space.acquire().await {
            // The reader gives the permit back when it takes the chunk.
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        let mut st = self.state.lock().expect("chunk queue lock");
        if st.closed {
            return false;
        }
        st.chunks.push_back(b);
        self.ready.notify_one();
        true
    }

    fn finish(&self, result: Result<(), StoreError>) {
        let mut st = self.state.lock().expect("chunk queue lock");
        st.end = Some(result);
        self.ready.notify_one();
    }

    /// The next chunk, blocking; `Ok(None)` at the end of the object.
    pub fn pop(&self) -> Result<Option<Bytes>, StoreError> {
        let mut st = self.state.lock().expect("chunk queue lock");
        loop {
            if let Some(b) = st.chunks.pop_front() {
                self.space.add_permits(1);
                return Ok(Some(b));
            }
            match st.end.take() {
                Some(Ok(())) => {
                    st.end = Some(Ok(()));
                    return Ok(None);
                }
                Some(Err(e)) => {
                    st.end = Some(Ok(()));
                    return Err(e);
                }
                None => st = self.ready.wait(st).expect("chunk queue lock"),
            }
        }
    }

    /// Tells the producer to stop.
    pub fn close(&self) {
        self.state.lock().expect("chunk queue lock").closed = true;
        self.space.close();
    }
}

/// Groups the ranges `which` of `ranges` into spans to fetch: sorted by start, merged
/// when a range begins at most `gap` bytes after the span ends. Returns each span with
/// the indexes of the ranges it serves.
pub(crate) fn coalesce(
    ranges: &[Range<u64>],
    which: &[usize],
    gap: u64,
) -> Vec<(Range<u64>, Vec<usize>)> {
    let mut order: Vec<usize> = which.to_vec();
    order.sort_by_key(|&i| (ranges[i].start, ranges[i].end));
    let mut out: Vec<(Range<u64>, Vec<usize>)> = Vec::new();
    for i in order {
        let r = &ranges[i];
        match out.last_mut() {
            Some((span, members)) if r.start <= span.end.saturating_add(gap) => {
                span.end = span.end.max(r.end);
                members.push(i);
            }
            _ => out.push((r.clone(), vec![i])),
        }
    }
    out
}

/// Polls futures concurrently on the current task and returns their outputs in order.
async fn join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_ranges_coalesce_and_gaps_split() {
        let r = vec![10..20, 0..10, 30..40, 20..25];
        let spans = coalesce(&r, &[0, 1, 2, 3], 0);
        assert_eq!(spans, vec![(0..25, vec![1, 0, 3]), (30..40, vec![2])]);
        let spans = coalesce(&r, &[0, 1, 2, 3], 5);
        assert_eq!(spans, vec![(0..40, vec![1, 0, 3, 2])]);
        let spans = coalesce(&r, &[2], 0);
        assert_eq!(spans, vec![(30..40, vec![2])]);
    }
}
