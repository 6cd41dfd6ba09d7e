//! The files of ended streams: those the client gave back are removed when the stream
//! ends, the others once given back or [`GRACE`] later, and all at shutdown.
//!
//! Stage: transport (see [`super`]).

use std::time::Instant;

use super::{free_path, SharedMemory, StreamFiles, GRACE};

impl SharedMemory {
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
