//! Local shards read through memory maps. A range read hands out the mapped bytes
//! themselves: no copy from the page cache into a fresh buffer, and no zeroing of that
//! buffer first (together 7% of the daemon's CPU in a profile of it serving raw-pixel
//! packs; it then used 8% less CPU, BENCHMARKS.md).
//!
//! - **Bounded.** Pages of a mapping that were read count towards the daemon's RSS (they
//!   are the page cache's, but mapped into the process). So at most [`MAX_MAPS`] files
//!   stay mapped, and the bytes read through them (counted per file up to its size) stay
//!   under [`MAX_MAPPED_BYTES`]: beyond either, the least recently read file is unmapped
//!   (reads still in flight keep their mapping alive until their `Bytes` drop). A file
//!   read beyond the byte limit on its own (a shard larger than it) is unmapped alone.
//!   The limits hold per store, that is per dataset the daemon serves. A working set
//!   under the limit is read without page faults once each page has been read; a larger
//!   one costs about what positioned reads cost.
//! - **A replaced file is seen at once.** Every read checks the file's identity (device,
//!   inode, size, modification time) and maps it anew when it changed, as a fresh open
//!   would. editfeed's own writers never change a shard in place: they write a
//!   `.partial` file and rename it.
//! - **The hazard of mapped files.** A read of mapped pages that cannot be read faults
//!   the daemon (SIGBUS) instead of returning an error naming the shard, as in any
//!   program reading memory-mapped files: a shard truncated in place by another program
//!   (`cp` over it truncates first) while a read of it is under way, or an I/O error of
//!   a disk or of a network or FUSE file system (NFS, gcsfuse, s3fs). On such file
//!   systems, or where shards may be rewritten in place, `store.mmap = false` reads
//!   with positioned reads instead.
//! - **A file that cannot be mapped** (a file system without mmap support) is read with
//!   positioned reads by the store, which logs it once and stops trying to map.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use memmap2::Mmap;

/// Files kept mapped at most.
pub const MAX_MAPS: usize = 256;

/// Bytes read through the kept mappings at most (each file counted up to its size).
pub const MAX_MAPPED_BYTES: u64 = 256 << 20;

/// What identifies a file's contents for a reader: a rename, rewrite or truncation
/// changes at least one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

struct Entry {
    id: FileId,
    map: Arc<Mmap>,
    last_read: u64,
    /// Bytes read through this mapping, at most the file's size.
    touched: u64,
}

/// The mapped files of one local store.
pub struct Maps {
    inner: Mutex<Inner>,
    max_maps: usize,
    max_bytes: u64,
    refused: std::sync::atomic::AtomicBool,
}

impl Default for Maps {
    fn default() -> Maps {
        Maps::with_limits(MAX_MAPS, MAX_MAPPED_BYTES)
    }
}

#[derive(Default)]
struct Inner {
    files: HashMap<PathBuf, Entry>,
    reads: u64,
    /// The sum of the entries' `touched`.
    touched: u64,
}

impl Maps {
    /// Keeps at most `max_maps` files mapped and `max_bytes` read through them.
    pub fn with_limits(max_maps: usize, max_bytes: u64) -> Maps {
        Maps {
            inner: Mutex::default(),
            max_maps: max_maps.max(1),
            max_bytes,
            refused: Default::default(),
        }
    }

    /// The bytes of `ranges` of the file at `path`, each a view of its mapping; a range
    /// past the end of the file is an `UnexpectedEof` error naming the range.
    pub fn read(&self, path: &Path, ranges: &[Range<u64>]) -> std::io::Result<Vec<Bytes>> {
        let map = self.map(
            path,
            ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum(),
        )?;
        ranges
            .iter()
            .map(|r| {
                if r.start > r.end || r.end > map.len() as u64 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "shard is shorter than offset {} + {} ({} bytes)",
                            r.start,
                            r.end.saturating_sub(r.start),
                            map.len()
                        ),
                    ));
                }
                Ok(Bytes::from_owner(Span {
                    map: map.clone(),
                    start: r.start as usize,
                    end: r.end as usize,
                }))
            })
            .collect()
    }

    /// The current mapping of `path` (mapped anew when the file changed), with `bytes`
    /// more counted as read through it.
    fn map(&self, path: &Path, bytes: u64) -> std::io::Result<Arc<Mmap>> {
        let id = FileId::of(&std::fs::metadata(path)?);
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *guard;
        inner.reads += 1;
        let now = inner.reads;
        let current = inner.files.get(path).is_some_and(|e| e.id == id);
        // Unmapped after the lock is released (munmap of many pages is not free).
        let mut gone = Vec::new();
        if !current {
            // Open and map under the lock: a map costs a few microseconds, and this
            // keeps two threads from mapping the same file twice.
            let file = File::open(path)?;
            let id = FileId::of(&file.metadata()?);
            // SAFETY: the mapping is read-only and shared; the file is a shard, which
            // editfeed never changes in place (the module docs name the hazards left:
            // a truncation by another program or an I/O error during a read). memmap2
            // maps empty files too.
            let map = Arc::new(unsafe { Mmap::map(&file)? });
            let entry = Entry {
                id,
                map,
                last_read: now,
                touched: 0,
            };
            if let Some(old) = inner.files.insert(path.to_path_buf(), entry) {
                inner.touched -= old.touched;
                gone.push(old);
            }
        }
        let e = inner.files.get_mut(path).expect("inserted above");
        e.last_read = now;
        let before = e.touched;
        e.touched = e.touched.saturating_add(bytes).min(e.id.len);
        inner.touched += e.touched - before;
        let (map, alone_over) = (e.map.clone(), e.touched > self.max_bytes);
        if alone_over {
            // A file read beyond the limit on its own (a shard larger than the limit):
            // only it goes. This read keeps its mapping alive, and the next read of the
            // file maps it afresh.
            if let Some(e) = inner.files.remove(path) {
                inner.touched -= e.touched;
                gone.push(e);
            }
        }
        while inner.files.len() > self.max_maps || inner.touched > self.max_bytes {
            let oldest = inner
                .files
                .iter()
                .filter(|(p, _)| p.as_path() != path)
                .min_by_key(|(_, e)| e.last_read)
                .map(|(p, _)| p.clone());
            let Some(p) = oldest else { break };
            let e = inner.files.remove(&p).expect("a key just seen");
            inner.touched -= e.touched;
            gone.push(e);
        }
        drop(guard);
        drop(gone);
        Ok(map)
    }

    /// Whether reads should still try to map files: false once a file system refused.
    pub fn enabled(&self) -> bool {
        !self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes that a file system refused to map a file: later reads of this store use
    /// positioned reads without trying (and failing) to map every file first.
    pub fn refuse(&self) {
        self.refused
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Files mapped now, and the bytes counted as read through them.
    pub fn mapped(&self) -> (usize, u64) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.files.len(), inner.touched)
    }
}

/// Logs, once per process, that a file could not be mapped and is read with positioned
/// reads instead (a file system without mmap support, or an exhausted map count).
pub fn mapping_failed(path: &Path, e: &std::io::Error) {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot memory-map a shard; this store's shards are read with positioned reads from now on"
        );
    });
}

/// A range of a mapping, owned by the `Bytes` that views it.
struct Span {
    map: Arc<Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for Span {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// One range of a file.
    fn read1(maps: &Maps, path: &Path, range: Range<u64>) -> std::io::Result<Bytes> {
        Ok(maps.read(path, std::slice::from_ref(&range))?.remove(0))
    }

    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ salt)
            .collect()
    }

    #[test]
    fn ranges_read_the_files_bytes_and_a_range_past_the_end_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(10_000, 7);
        let p = file(dir.path(), "a.tar.zst", &data);
        let maps = Maps::default();
        let got = maps
            .read(&p, &[0..10, 4096..8193, 9_999..10_000, 5..5])
            .unwrap();
        assert_eq!(&got[0][..], &data[0..10]);
        assert_eq!(&got[1][..], &data[4096..8193]);
        assert_eq!(&got[2][..], &data[9_999..]);
        assert!(got[3].is_empty());
        let e = read1(&maps, &p, 9_000..10_001).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("offset 9000 + 1001"), "{e}");
        let empty = file(dir.path(), "empty", b"");
        assert!(read1(&maps, &empty, 0..0).unwrap().is_empty());
        assert!(read1(&maps, &empty, 0..1).is_err());
        let e = read1(&maps, &dir.path().join("missing"), 0..1).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_file_replaced_or_rewritten_in_place_is_read_anew() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), "s.tar.zst", &pattern(8192, 1));
        let maps = Maps::default();
        let before = read1(&maps, &p, 0..8192).unwrap();
        // Renamed over, as editfeed's writers do: the old bytes stay readable.
        let tmp = file(dir.path(), "s.partial", &pattern(8192, 2));
        std::fs::rename(&tmp, &p).unwrap();
        assert_eq!(
            &read1(&maps, &p, 0..8192).unwrap()[..],
            &pattern(8192, 2)[..]
        );
        assert_eq!(&before[..], &pattern(8192, 1)[..]);
        // Rewritten in place, shorter: the new size is what bounds a read.
        std::fs::write(&p, pattern(100, 3)).unwrap();
        assert_eq!(&read1(&maps, &p, 0..100).unwrap()[..], &pattern(100, 3)[..]);
        assert!(read1(&maps, &p, 0..101).is_err());
        assert_eq!(maps.mapped().0, 1);
    }

    #[test]
    fn mappings_and_bytes_read_through_them_stay_under_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..6)
            .map(|i| file(dir.path(), &format!("{i}"), &pattern(10_000, i as u8)))
            .collect();
        let maps = Maps::with_limits(4, 25_000);
        let mut held = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            held.push(read1(&maps, p, 0..6_000).unwrap());
            let (files, bytes) = maps.mapped();
            assert!(
                files <= 4 && bytes <= 25_000,
                "after {i}: {files} files, {bytes} bytes"
            );
        }
        // 4 files x 6,000 bytes fit; a fifth read of 6,000 evicts the oldest.
        assert_eq!(maps.mapped(), (4, 24_000));
        // Reading a file again counts at most its size.
        for _ in 0..5 {
            read1(&maps, &paths[5], 0..10_000).unwrap();
        }
        let (files, bytes) = maps.mapped();
        assert!(
            bytes <= 25_000 && files >= 2,
            "{files} files, {bytes} bytes"
        );
        // One file read beyond the limit on its own is not kept, and the others stay.
        let kept = maps.mapped();
        let big = file(dir.path(), "big", &pattern(40_000, 9));
        assert_eq!(
            &read1(&maps, &big, 0..40_000).unwrap()[..],
            &pattern(40_000, 9)[..]
        );
        assert_eq!(maps.mapped(), kept);
        // Bytes of evicted mappings still read what they read.
        for (i, b) in held.iter().enumerate() {
            assert_eq!(&b[..], &pattern(10_000, i as u8)[..6_000]);
        }
    }
}
