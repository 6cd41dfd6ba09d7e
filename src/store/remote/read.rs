//! Remote reads: whole objects (uncached, cached under a content tag, or revalidated
//! with an ETag), byte ranges (cached, coalesced and fetched concurrently) and
//! existence checks, on the store's I/O runtime. Part of the store's object-store
//! backend, first stage of the flow: STORE -> shard reader -> ...

use std::ops::Range;

use bytes::Bytes;
use object_store::{GetOptions, ObjectStoreExt};

use super::{cache_key, Core};
use crate::store::coalesce::coalesce;
use crate::store::StoreError;

impl Core {
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
