//! Shared-memory delivery of batch tensors, for trainers on the daemon's host.
//!
//! A batch of 512 px images is megabytes per sample. Over gRPC those bytes are copied
//! into tonic's encode buffer, through the socket, into the client's receive buffers and,
//! in Python, into one more `bytes`: on a machine whose cores also run the trainer, that
//! is CPU the trainer does not get. When the client shares a folder on a tmpfs
//! (`/dev/shm` by default) with the daemon, each large tensor goes there as one file
//! instead, and the message carries its name (`Tensor.shm_file`). The client maps the
//! file and reads the pixels in place. The bytes are the same either way.
//!
//! - **Handshake.** The client creates an empty file with a random name in its folder
//!   and sends the name (`StreamRequest.shm_probe`). If the daemon finds that file in
//!   its own folder, owned by its own user, they share the folder and the stream uses it;
//!   the daemon removes the probe. Otherwise (another host, another container, another
//!   user) every tensor stays in its message.
//! - **Files go back and forth.** Once the client no longer uses a file's bytes (in
//!   Python: when the last array over it is gone) it renames the file to
//!   `<name>.free`; the daemon renames it back and writes a later batch into it. Steady
//!   streaming so writes into pages the folder already holds and both sides already
//!   map, with no page allocated, zeroed or faulted in per batch.
//! - **Bounded.** A stream has at most `3 x (prefetch_batches + 4)` files, and the
//!   daemon at most `shm_max_bytes` in files for all streams; past either, and when the
//!   folder is full (the files' pages are allocated when they are created, so a full
//!   tmpfs is an error there, never a fault later), a tensor travels in its message.
//! - **When a stream ends** the files given back are removed. The client may still be
//!   reading the last messages, so the others are removed once given back, or
//!   [`GRACE`] later, and count against `shm_max_bytes` until then. The daemon removes
//!   what is left when it stops; a daemon killed outright leaves its files
//!   (`editfeed-<id>-<n>.tensor`) behind.
//!
//! The client side is here too ([`Probe`], [`take_files`]), for `editfeed fetch` and the
//! tests; the Python client does the same in `editfeed/wire.py`.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::proto::v1::Batch;

/// Tensors smaller than this stay in the message (turn counts, offsets).
pub const MIN_FILE_BYTES: usize = 64 << 10;
/// How long the files of an ended stream wait for its client.
pub const GRACE: Duration = Duration::from_secs(300);

/// Why a probe name is refused.
#[derive(Debug, thiserror::Error)]
#[error("{name:?} is not a file name (1 to 128 letters, digits, '-', '_' or '.', not starting with '.')")]
pub struct BadProbe {
    /// The name sent.
    pub name: String,
}

/// Why a client could not take a tensor's file.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// The file cannot be read.
    #[error("tensor {tensor:?}: shared-memory file {path}: {source}")]
    Read {
        /// The tensor's name.
        tensor: String,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold the tensor's bytes.
    #[error("tensor {tensor:?}: shared-memory file {path} holds {got} bytes, its shape and dtype take {want}")]
    Size {
        /// The tensor's name.
        tensor: String,
        /// The file.
        path: String,
        /// The file's length.
        got: u64,
        /// The tensor's length.
        want: u64,
    },
    /// The name is not a plain file name.
    #[error("tensor {tensor:?}: {source}")]
    Name {
        /// The tensor's name.
        tensor: String,
        /// Why.
        #[source]
        source: BadProbe,
    },
}

fn check_name(name: &str) -> Result<(), BadProbe> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(BadProbe {
            name: name.to_string(),
        })
    }
}

/// A random 64-bit value for file names (not for anything the batches depend on).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The daemon's shared-memory folder and its byte budget, for all streams.
#[derive(Debug)]
pub struct SharedMemory {
    dir: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
    id: String,
    next: AtomicU64,
    /// Files of ended streams, removed once given back or at their deadline.
    orphans: Mutex<Vec<(Instant, PathBuf, u64)>>,
    warned: AtomicBool,
}

impl SharedMemory {
    /// Delivery through `dir` with at most `max_bytes` in files; `None` when `dir` is
    /// empty (delivery off).
    pub fn new(dir: &str, max_bytes: u64) -> Option<Arc<SharedMemory>> {
        if dir.is_empty() || max_bytes == 0 {
            return None;
        }
        Some(Arc::new(SharedMemory {
            dir: PathBuf::from(dir),
            max_bytes,
            used: AtomicU64::new(0),
            id: format!("{:016x}", random_u64()),
            next: AtomicU64::new(0),
            orphans: Mutex::new(Vec::new()),
            warned: AtomicBool::new(false),
        }))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes in files not taken yet (or waiting out their stream's grace period).
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Checks a request's probe: `Ok(Some)` when the client shares the folder (the probe
    /// is then removed), `Ok(None)` when it does not or sent none. Does file I/O: call
    /// off the async runtime.
    pub fn accept(
        self: &Arc<Self>,
        probe: &str,
        batches_ahead: usize,
    ) -> Result<Option<StreamFiles>, BadProbe> {
        if probe.is_empty() {
            return Ok(None);
        }
        check_name(probe)?;
        let path = self.dir.join(probe);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok(None);
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.file_type().is_file() || meta.uid() != me {
            return Ok(None);
        }
        let _ = std::fs::remove_file(&path);
        Ok(Some(StreamFiles {
            shared: self.clone(),
            // Preference batches have three image tensors.
            max_files: batches_ahead.max(1) * 3,
            slots: Mutex::new(Vec::new()),
        }))
    }

    /// Takes `n` bytes of the budget, if they fit.
    fn reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= self.max_bytes).then_some(u + n)
            })
            .is_ok()
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// A new file of `len` bytes (its pages allocated now, so that a full folder is an
    /// error here rather than a fault later).
    fn create(&self, len: u64) -> std::io::Result<Slot> {
        let name = format!(
            "editfeed-{}-{}.tensor",
            self.id,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dir.join(&name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        // SAFETY: posix_fallocate on an open file descriptor owned by `file`.
        let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
        if r != 0 {
            let _ = std::fs::remove_file(&path);
            return Err(std::io::Error::from_raw_os_error(r));
        }
        // SAFETY: the file is this daemon's own (created here, mode 0600, its pages
        // allocated above); clients only map it read-only and rename it.
        let map = match unsafe { memmap2::MmapMut::map_mut(&file) } {
            Ok(map) => map,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        Ok(Slot {
            name,
            path,
            map,
            len,
            held: false,
        })
    }

    fn warn_once(&self, e: &std::io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                dir = %self.dir.display(),
                error = %e,
                "cannot write a tensor to the shared-memory folder; \
                 those tensors travel in the messages (logged once)"
            );
        }
    }

    /// Whether files of ended streams wait for removal.
    pub fn has_orphans(&self) -> bool {
        !self
            .orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Removes the files of ended streams that their clients gave back, or whose grace
    /// period is over (file I/O: call off the async runtime).
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut due = Vec::new();
        self.orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(at, path, n)| {
                let gone = *at <= now || free_path(path).exists();
                if gone {
                    due.push((path.clone(), *n));
                }
                !gone
            });
        for (path, n) in due {
            let _ = std::fs::remove_file(free_path(&path));
            let _ = std::fs::remove_file(&path);
            self.release(n);
        }
    }

    /// Removes every file still waiting for a client (at shutdown).
    pub fn remove_all(&self) {
        let all: Vec<_> = self
            .orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for (_, path, n) in all {
            let _ = std::fs::remove_file(free_path(&path));
            let _ = std::fs::remove_file(&path);
            self.release(n);
        }
    }
}

/// One file of a stream.
#[derive(Debug)]
struct Slot {
    name: String,
    path: PathBuf,
    /// The file mapped writable: pages the client also maps, written without a system
    /// call once faulted in. The file's pages are allocated up front, so a write
    /// through the map cannot fault for want of space.
    map: memmap2::MmapMut,
    len: u64,
    /// Sent to the client, which has not given it back yet.
    held: bool,
}

fn free_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(FREE_SUFFIX);
    PathBuf::from(p)
}

/// The suffix a client adds to a file's name to give it back.
pub const FREE_SUFFIX: &str = ".free";

/// One stream's files: written on the workers, read by its client, then given back
/// (renamed to `<name>.free`) and written again for a later batch, so that steady
/// streaming writes into pages the folder already holds.
#[derive(Debug)]
pub struct StreamFiles {
    shared: Arc<SharedMemory>,
    max_files: usize,
    slots: Mutex<Vec<Slot>>,
}

impl StreamFiles {
    /// Starts writing a batch: sweeps the daemon's files due for removal, and holds this
    /// stream's files until the returned writer drops. Runs on a worker.
    pub fn batch(&self) -> BatchFiles<'_> {
        self.shared.sweep();
        BatchFiles {
            files: self,
            slots: self.slots.lock().unwrap_or_else(|e| e.into_inner()),
            reclaimed: false,
        }
    }
}

/// A stream's files while one batch is written into them ([`StreamFiles::batch`]).
#[derive(Debug)]
pub struct BatchFiles<'a> {
    files: &'a StreamFiles,
    slots: std::sync::MutexGuard<'a, Vec<Slot>>,
    /// Whether the files the client gave back were looked for already (once a batch).
    reclaimed: bool,
}

impl BatchFiles<'_> {
    /// Writes a tensor of `len` bytes into a file: `fill` writes all of them, straight
    /// into the client's pages. Returns the file's name; `None` (and `fill` is not
    /// called) for a tensor under [`MIN_FILE_BYTES`] or past the bounds, which then
    /// travels in its message.
    pub fn write(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Option<String> {
        if len < MIN_FILE_BYTES {
            return None;
        }
        let i = self.slot_for(len as u64)?;
        let slot = &mut self.slots[i];
        fill(&mut slot.map[..]);
        slot.held = true;
        Some(slot.name.clone())
    }

    /// A file of exactly `len` bytes not held by the client: an idle one, one the client
    /// gave back, or a new one within the bounds.
    fn slot_for(&mut self, len: u64) -> Option<usize> {
        let (slots, reclaimed, files) = (&mut *self.slots, &mut self.reclaimed, self.files);
        let idle = |slots: &[Slot]| slots.iter().position(|s| !s.held && s.len == len);
        if let Some(i) = idle(slots) {
            return Some(i);
        }
        if !*reclaimed {
            *reclaimed = true;
            for s in slots.iter_mut().filter(|s| s.held) {
                if std::fs::rename(free_path(&s.path), &s.path).is_ok() {
                    s.held = false;
                }
            }
            if let Some(i) = idle(slots) {
                return Some(i);
            }
        }
        if slots.len() >= files.max_files {
            // An idle file of another size makes room.
            let i = slots.iter().position(|s| !s.held)?;
            let old = slots.swap_remove(i);
            let _ = std::fs::remove_file(&old.path);
            files.shared.release(old.len);
        }
        if !files.shared.reserve(len) {
            return None;
        }
        match files.shared.create(len) {
            Ok(slot) => {
                slots.push(slot);
                Some(slots.len() - 1)
            }
            Err(e) => {
                files.shared.warn_once(&e);
                files.shared.release(len);
                None
            }
        }
    }
}

impl Drop for StreamFiles {
    fn drop(&mut self) {
        let deadline = Instant::now() + GRACE;
        let slots = std::mem::take(self.slots.get_mut().unwrap_or_else(|e| e.into_inner()));
        let mut waiting = Vec::new();
        for s in slots {
            if s.held && !free_path(&s.path).exists() {
                // The client may still be reading the stream's last messages.
                waiting.push((deadline, s.path, s.len));
            } else {
                let _ = std::fs::remove_file(free_path(&s.path));
                let _ = std::fs::remove_file(&s.path);
                self.shared.release(s.len);
            }
        }
        self.shared
            .orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(waiting);
    }
}

/// The client's probe file: created in the client's folder, removed on drop.
#[derive(Debug)]
pub struct Probe {
    path: PathBuf,
    name: String,
}

impl Probe {
    /// Creates an empty probe file in `dir`.
    pub fn create(dir: &Path) -> std::io::Result<Probe> {
        let name = format!("editfeed-probe-{:016x}", random_u64());
        let path = dir.join(&name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Probe { path, name })
    }

    /// The name to send as `StreamRequest.shm_probe`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads every tensor of `batch` that came as a file of `dir` into its `data`, and
/// gives the file back.
pub fn take_files(batch: &mut Batch, dir: &Path) -> Result<(), TakeError> {
    for t in batch.tensors.iter_mut().filter(|t| !t.shm_file.is_empty()) {
        check_name(&t.shm_file).map_err(|source| TakeError::Name {
            tensor: t.name.clone(),
            source,
        })?;
        let path = dir.join(&t.shm_file);
        let read_err = |source| TakeError::Read {
            tensor: t.name.clone(),
            path: path.display().to_string(),
            source,
        };
        let data = std::fs::read(&path).map_err(read_err)?;
        std::fs::rename(&path, free_path(&path)).map_err(read_err)?;
        let want = crate::wire::tensor_bytes(t);
        if data.len() as u64 != want {
            return Err(TakeError::Size {
                tensor: t.name.clone(),
                path: path.display().to_string(),
                got: data.len() as u64,
                want,
            });
        }
        t.data = Bytes::from(data);
        t.shm_file.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tensor_u8;

    fn batch(images: usize, len: usize, fill: u8) -> Batch {
        Batch {
            tensors: (0..images)
                .map(|i| tensor_u8(&format!("t{i}"), &[len as u64], vec![fill; len].into()))
                .collect(),
            ..Default::default()
        }
    }

    /// Writes the batch's tensors into files, as collation does, where the bounds allow.
    fn offload(files: &StreamFiles, batch: &mut Batch) {
        let mut writer = files.batch();
        for t in batch.tensors.iter_mut() {
            if let Some(name) = writer.write(t.data.len(), |dst| dst.copy_from_slice(&t.data)) {
                t.shm_file = name;
                t.data = Bytes::new();
            }
        }
    }

    fn stream(dir: &Path, max_bytes: u64) -> StreamFiles {
        let shared = SharedMemory::new(&dir.display().to_string(), max_bytes).unwrap();
        let probe = Probe::create(dir).unwrap();
        let files = shared.accept(probe.name(), 2).unwrap().unwrap();
        assert!(!dir.join(probe.name()).exists());
        files
    }

    #[test]
    fn the_byte_budget_and_the_file_bound_keep_the_rest_in_the_messages() {
        let dir = tempfile::tempdir().unwrap();
        let len = MIN_FILE_BYTES;
        let files = stream(dir.path(), 3 * len as u64);
        let mut first = batch(2, len, 1);
        offload(&files, &mut first);
        assert!(first.tensors.iter().all(|t| !t.shm_file.is_empty()));
        // One more file fits the budget, the second stays in the message.
        let mut second = batch(2, len, 2);
        offload(&files, &mut second);
        assert!(!second.tensors[0].shm_file.is_empty());
        assert!(second.tensors[1].shm_file.is_empty());
        assert_eq!(second.tensors[1].data.len(), len);
        assert_eq!(files.shared.used_bytes(), 3 * len as u64);
        // Given back, a file is written again (same name, new bytes).
        let name = first.tensors[0].shm_file.clone();
        take_files(&mut first, dir.path()).unwrap();
        assert_eq!(first.tensors[0].data, vec![1u8; len]);
        let mut third = batch(1, len, 3);
        offload(&files, &mut third);
        assert_eq!(third.tensors[0].shm_file, name);
        take_files(&mut third, dir.path()).unwrap();
        assert_eq!(third.tensors[0].data, vec![3u8; len]);
        // Small tensors stay in the message.
        let mut small = batch(1, len - 1, 4);
        offload(&files, &mut small);
        assert!(small.tensors[0].shm_file.is_empty());
        // The stream's end removes what was given back at once; the rest waits.
        let shared = files.shared.clone();
        drop(files);
        assert!(shared.has_orphans());
        shared.remove_all();
        assert_eq!(shared.used_bytes(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_file_the_client_cannot_take_is_an_error_naming_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let take = |file: &str| {
            let mut b = batch(1, 8, 0);
            b.tensors[0].data = Bytes::new();
            b.tensors[0].shm_file = file.into();
            take_files(&mut b, dir.path()).unwrap_err()
        };
        let bad = take("../t0");
        assert!(matches!(bad, TakeError::Name { .. }), "{bad}");
        assert!(bad.to_string().contains("\"t0\""), "{bad}");
        let absent = take("absent");
        assert!(matches!(absent, TakeError::Read { .. }), "{absent}");
        assert!(absent.to_string().contains("absent"), "{absent}");
        std::fs::write(dir.path().join("short"), [1u8; 5]).unwrap();
        let short = take("short");
        assert!(
            matches!(
                short,
                TakeError::Size {
                    got: 5,
                    want: 8,
                    ..
                }
            ),
            "{short}"
        );
    }

    #[test]
    fn names_that_are_not_plain_file_names_are_refused() {
        for bad in ["", ".hidden", "../x", "a/b", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("editfeed-probe-00ff.x_y").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let shared = SharedMemory::new(&dir.path().display().to_string(), 1 << 20).unwrap();
        assert!(shared.accept("../etc", 2).is_err());
        assert!(shared.accept("absent", 2).unwrap().is_none());
        assert!(shared.accept("", 2).unwrap().is_none());
    }
}
