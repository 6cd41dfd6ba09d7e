//! The handshake: the client's probe file, the names allowed for probe and tensor files,
//! and the daemon's check that the probe is in its own folder and owned by its own user.
//!
//! Stage: transport (see [`super`]).

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::random_u64;
use super::{SharedMemory, StreamFiles};

/// Why a probe name is refused.
#[derive(Debug, thiserror::Error)]
#[error("{name:?} is not a file name (1 to 128 letters, digits, '-', '_' or '.', not starting with '.')")]
pub struct BadProbe {
    /// The name sent.
    pub name: String,
}

/// Whether `name` is a plain file name, as probe and tensor file names must be.
pub(super) fn check_name(name: &str) -> Result<(), BadProbe> {
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

impl SharedMemory {
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

#[cfg(test)]
mod tests {
    use super::*;

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
