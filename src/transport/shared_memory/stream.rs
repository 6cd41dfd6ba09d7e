//! One stream's files: written by collation on the workers, read by the stream's client,
//! given back and written again for a later batch, within the stream's file bound and
//! the daemon's byte budget.
//!
//! Stage: transport (see [`super`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{free_path, SharedMemory, MIN_FILE_BYTES};

/// One file of a stream.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) path: PathBuf,
    /// The file mapped writable: pages the client also maps, written without a system
    /// call once faulted in. The file's pages are allocated up front, so a write
    /// through the map cannot fault for want of space.
    pub(super) map: memmap2::MmapMut,
    pub(super) len: u64,
    /// Sent to the client, which has not given it back yet.
    pub(super) held: bool,
}

/// One stream's files: written on the workers, read by its client, then given back
/// (renamed to `<name>.free`) and written again for a later batch, so that steady
/// streaming writes into pages the folder already holds.
#[derive(Debug)]
pub struct StreamFiles {
    pub(super) shared: Arc<SharedMemory>,
    pub(super) max_files: usize,
    pub(super) slots: Mutex<Vec<Slot>>,
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

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    use bytes::Bytes;

    use super::*;
    use crate::transport::proto::v1::Batch;
    use crate::transport::shared_memory::{take_files, Probe};
    use crate::transport::wire::tensor_u8;

    /// A batch of `images` tensors of `len` bytes, each filled with `fill`.
    pub(in crate::transport::shared_memory) fn batch(images: usize, len: usize, fill: u8) -> Batch {
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
}
