//! The daemon's shared-memory folder and its byte budget, shared by all streams: creates
//! the tensor files (their pages allocated up front) and keeps the budget's count.
//!
//! Stage: transport (see [`super`]).

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::random_u64;
use super::stream::Slot;

/// The daemon's shared-memory folder and its byte budget, for all streams.
#[derive(Debug)]
pub struct SharedMemory {
    pub(super) dir: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
    id: String,
    next: AtomicU64,
    /// Files of ended streams, removed once given back or at their deadline.
    pub(super) orphans: Mutex<Vec<(Instant, PathBuf, u64)>>,
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

    /// Takes `n` bytes of the budget, if they fit.
    pub(super) fn reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= self.max_bytes).then_some(u + n)
            })
            .is_ok()
    }

    pub(super) fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// A new file of `len` bytes (its pages allocated now, so that a full folder is an
    /// error here rather than a fault later).
    pub(super) fn create(&self, len: u64) -> std::io::Result<Slot> {
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

    pub(super) fn warn_once(&self, e: &std::io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                dir = %self.dir.display(),
                error = %e,
                "cannot write a tensor to the shared-memory folder; \
                 those tensors travel in the messages (logged once)"
            );
        }
    }
}
