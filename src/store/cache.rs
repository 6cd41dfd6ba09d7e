//! The local disk cache of bytes read from object stores: sample frames, shard indexes
//! and manifests. Sits between the store and the network: STORE (cache -> retry ->
//! object_store) -> shard reader -> plan -> ...
//!
//! - Entries are files named by the sha256 of their key, in 256 subfolders. Keys of
//!   shard bytes include the shard's sha256 from the manifest, so a rewritten dataset
//!   never hits a stale entry; the manifest is revalidated with its ETag.
//! - Each file starts with a header holding a CRC-32 of its contents (verified on every
//!   hit, at memory speed); a corrupt or torn entry is detected on read, removed and
//!   fetched again.
//! - The byte limit is kept by evicting the least recently used entries. Recency is
//!   the file's modification time (touched on every hit), so the order survives a
//!   restart: [`DiskCache::open`] rebuilds the index from the folder.
//! - Writes go to a temporary file and are renamed into place, so concurrent streams
//!   never see half an entry. Renames and deletions happen under the index lock (they
//!   are quick), so the index and the folder always agree. A cache that cannot write
//!   (disk full, folder gone) logs a warning and the read carries on uncached: the
//!   cache never fails a stream.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::StoreStats;
use crate::hex::hex;

const MAGIC: &[u8; 8] = b"EFCACHE2";
/// magic, metadata length (u32), payload length (u64), CRC-32 of metadata and payload.
const HEADER: usize = 8 + 4 + 8 + 4;
/// Seconds between two warnings about a cache that cannot write.
const WARN_EVERY_SECS: u64 = 60;

/// Why the cache could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache folder could not be made or read.
    #[error("cache {path}: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

struct Meta {
    size: u64,
    tick: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Meta>,
    /// Recency order: tick -> entry name; the first is the least recently used.
    order: BTreeMap<u64, String>,
    total: u64,
    tick: u64,
}

impl State {
    fn touch(&mut self, name: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(m) = self.entries.get_mut(name) {
            self.order.remove(&m.tick);
            m.tick = tick;
            self.order.insert(tick, name.to_string());
        }
    }

    fn remove(&mut self, name: &str) -> Option<u64> {
        let m = self.entries.remove(name)?;
        self.order.remove(&m.tick);
        self.total -= m.size;
        Some(m.size)
    }

    fn insert(&mut self, name: String, size: u64) {
        self.remove(&name);
        self.tick += 1;
        self.order.insert(self.tick, name.clone());
        self.entries.insert(
            name,
            Meta {
                size,
                tick: self.tick,
            },
        );
        self.total += size;
    }
}

/// A byte-limited LRU cache of blobs on local disk, safe to share between threads.
pub struct DiskCache {
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
    tmp_seq: AtomicU64,
    last_warning: AtomicU64,
    stats: Arc<StoreStats>,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field("dir", &self.dir)
            .field("limit", &self.limit)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl DiskCache {
    /// Opens (or creates) the cache in `dir`, rebuilding its index from the entries on
    /// disk in recency order and evicting down to `limit` bytes.
    pub fn open(dir: &Path, limit: u64, stats: Arc<StoreStats>) -> Result<DiskCache, CacheError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        // Temporary files are from writes a crash interrupted.
        for e in std::fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let mut found: Vec<(SystemTime, String, u64)> = Vec::new();
        for sub in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let name = sub.file_name().to_string_lossy().into_owned();
            if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(sub.path()) else {
                continue;
            };
            for f in files.flatten() {
                let fname = f.file_name().to_string_lossy().into_owned();
                let Ok(meta) = f.metadata() else { continue };
                if fname.len() != 64 || !meta.is_file() {
                    continue;
                }
                let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
                found.push((mtime, fname, meta.len()));
            }
        }
        found.sort();
        let mut state = State::default();
        for (_, name, size) in found {
            state.insert(name, size);
        }
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            limit,
            state: Mutex::new(state),
            tmp_seq: AtomicU64::new(0),
            last_warning: AtomicU64::new(0),
            stats,
        };
        {
            let mut st = cache.state.lock().expect("cache lock");
            cache.evict_over_limit(&mut st, None);
        }
        cache.publish_size();
        Ok(cache)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.state.lock().expect("cache lock").total
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.state.lock().expect("cache lock").entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an entry for `key` is indexed (it may still turn out corrupt).
    pub fn contains(&self, key: &str) -> bool {
        self.state
            .lock()
            .expect("cache lock")
            .entries
            .contains_key(&entry_name(key))
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(&name[..2]).join(name)
    }

    /// The entry for `key`: its metadata (e.g. an ETag) and its bytes. A missing,
    /// unreadable or corrupt entry is a miss; a corrupt one is removed.
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, Bytes)> {
        let name = entry_name(key);
        if !self
            .state
            .lock()
            .expect("cache lock")
            .entries
            .contains_key(&name)
        {
            self.stats.cache_miss();
            return None;
        }
        let path = self.path_of(&name);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                // Evicted meanwhile by another thread, or removed by hand.
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.warn("cannot read a cache entry", &path, &e);
                }
                let mut st = self.state.lock().expect("cache lock");
                if !path.exists() {
                    st.remove(&name);
                }
                drop(st);
                self.stats.cache_miss();
                return None;
            }
        };
        let Some((meta_len, payload_len)) = decode_entry(&data) else {
            tracing::warn!(path = %path.display(), "corrupt cache entry, fetching it again");
            self.stats.cache_corrupt();
            let mut st = self.state.lock().expect("cache lock");
            // Unless another thread has replaced it meanwhile (then it is not this file).
            if std::fs::read(&path).ok().as_deref() == Some(&data[..]) && st.remove(&name).is_some()
            {
                let _ = std::fs::remove_file(&path);
            }
            drop(st);
            self.stats.cache_miss();
            self.publish_size();
            return None;
        };
        self.state.lock().expect("cache lock").touch(&name);
        // Recency survives a restart through the file's modification time.
        if let Ok(f) = std::fs::File::open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        self.stats.cache_hit();
        let meta = data[HEADER..HEADER + meta_len].to_vec();
        let start = HEADER + meta_len;
        Some((meta, Bytes::from(data).slice(start..start + payload_len)))
    }

    /// Stores `payload` (with `meta`) under `key`, evicting least recently used
    /// entries beyond the limit. Never fails: a write error is logged and ignored.
    pub fn put(&self, key: &str, meta: &[u8], payload: &[u8]) {
        let size = (HEADER + meta.len() + payload.len()) as u64;
        if size > self.limit {
            return;
        }
        let name = entry_name(key);
        let path = self.path_of(&name);
        let tmp = self.dir.join("tmp").join(format!(
            "{name}.{}.{}",
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&encode_header(meta, payload))?;
            f.write_all(meta)?;
            f.write_all(payload)?;
            // No fsync: a torn entry after a crash fails its checksum and is refetched.
            drop(f);
            std::fs::create_dir_all(path.parent().expect("entries sit in a subfolder"))
        })();
        let placed = written.and_then(|()| {
            let mut st = self.state.lock().expect("cache lock");
            std::fs::rename(&tmp, &path)?;
            st.insert(name.clone(), size);
            self.evict_over_limit(&mut st, Some(&name));
            Ok(())
        });
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            self.stats.cache_write_error();
            self.warn("cannot write to the cache; reading uncached", &path, &e);
            return;
        }
        self.publish_size();
    }

    /// Removes the entry for `key`, if any.
    pub fn remove(&self, key: &str) {
        let name = entry_name(key);
        let mut st = self.state.lock().expect("cache lock");
        if st.remove(&name).is_some() {
            let _ = std::fs::remove_file(self.path_of(&name));
        }
        drop(st);
        self.publish_size();
    }

    /// Deletes least recently used entries until the total fits, sparing `keep`. Runs
    /// under the index lock so that a concurrent write of the same key cannot lose its
    /// file to this deletion. A reader holding a deleted file open still reads it whole.
    fn evict_over_limit(&self, st: &mut State, keep: Option<&str>) {
        while st.total > self.limit {
            let Some(victim) = st
                .order
                .values()
                .find(|n| Some(n.as_str()) != keep)
                .cloned()
            else {
                break;
            };
            st.remove(&victim);
            let _ = std::fs::remove_file(self.path_of(&victim));
            self.stats.cache_eviction();
        }
    }

    fn publish_size(&self) {
        crate::metrics::store_cache_bytes(self.bytes());
    }

    fn warn(&self, what: &str, path: &Path, e: &std::io::Error) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + WARN_EVERY_SECS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(path = %path.display(), error = %e, "{what}");
        } else {
            tracing::debug!(path = %path.display(), error = %e, "{what}");
        }
    }
}

fn entry_name(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn checksum(meta: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(meta);
    h.update(payload);
    h.finalize()
}

fn encode_header(meta: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    h.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    h.extend_from_slice(&checksum(meta, payload).to_le_bytes());
    h
}

/// Checks an entry file: the lengths of its metadata and payload, or `None` when it is
/// corrupt.
fn decode_entry(data: &[u8]) -> Option<(usize, usize)> {
    if data.len() < HEADER || &data[..8] != MAGIC {
        return None;
    }
    let meta_len = u32::from_le_bytes(data[8..12].try_into().ok()?) as usize;
    let payload_len = u64::from_le_bytes(data[12..20].try_into().ok()?) as usize;
    let sum = u32::from_le_bytes(data[20..24].try_into().ok()?);
    if data.len() != HEADER.checked_add(meta_len)?.checked_add(payload_len)? {
        return None;
    }
    let meta = &data[HEADER..HEADER + meta_len];
    let payload = &data[HEADER + meta_len..];
    (checksum(meta, payload) == sum).then_some((meta_len, payload_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, limit: u64) -> DiskCache {
        DiskCache::open(dir, limit, Arc::new(StoreStats::default())).unwrap()
    }

    #[test]
    fn entries_round_trip_with_their_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), 1 << 20);
        assert!(c.get("a").is_none());
        c.put("a", b"etag-1", b"hello");
        let (meta, bytes) = c.get("a").unwrap();
        assert_eq!((&meta[..], &bytes[..]), (&b"etag-1"[..], &b"hello"[..]));
        c.put("a", b"", b"replaced");
        assert_eq!(&c.get("a").unwrap().1[..], b"replaced");
        assert_eq!(c.len(), 1);
        c.remove("a");
        assert!(c.is_empty() && c.bytes() == 0);
    }

    #[test]
    fn a_truncated_entry_is_a_miss_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), 1 << 20);
        c.put("k", b"", &[7u8; 1000]);
        let path = c.path_of(&entry_name("k"));
        let data = std::fs::read(&path).unwrap();
        std::fs::write(&path, &data[..data.len() - 10]).unwrap();
        assert!(c.get("k").is_none());
        assert!(!path.exists());
        assert_eq!(c.stats.snapshot().cache_corrupt, 1);
    }

    #[test]
    fn a_cache_that_cannot_write_degrades_to_misses() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), 1 << 20);
        // The temporary folder replaced by a file: every write fails, as on a full disk.
        std::fs::remove_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp"), b"not a folder").unwrap();
        c.put("k", b"", b"bytes");
        assert!(c.get("k").is_none());
        assert_eq!(c.stats.snapshot().cache_write_errors, 1);
    }
}
