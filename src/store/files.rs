//! Local file primitives of the store: positioned reads, atomic whole-file writes,
//! durable renames, and a file read as a counted stream. Part of the first stage of the
//! flow: STORE -> shard reader -> plan -> ...

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use super::StoreStats;

/// A local file read as a stream, its bytes counted as they are read (in the buffered
/// reader's large chunks, not per sample).
pub(super) struct CountedRead {
    pub(super) inner: File,
    pub(super) stats: Arc<StoreStats>,
}

impl Read for CountedRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.stats.read(n as u64);
        Ok(n)
    }
}

/// Reads `len` bytes at `offset` of a file (one positioned read).
pub fn pread(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::new(
                e.kind(),
                format!("shard is shorter than offset {offset} + {len}"),
            )
        } else {
            e
        }
    })?;
    Ok(buf)
}

/// Writes a file through a temporary name, syncs it and renames it into place; on
/// failure returns the path that failed with the error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), (String, std::io::Error)> {
    let tmp = path.with_extension("tmp");
    let at = |p: &Path| {
        let p = p.display().to_string();
        move |e| (p, e)
    };
    let mut f = File::create(&tmp).map_err(at(&tmp))?;
    f.write_all(bytes).map_err(at(&tmp))?;
    f.sync_all().map_err(at(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(at(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Makes a rename in `dir` durable; not every platform allows opening a folder.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
