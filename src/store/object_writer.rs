//! [`ObjectWriter`]: one object streamed into a store, invisible under its name until
//! [`ObjectWriter::finish`]. Locally a `.partial` file renamed into place, remotely an
//! [`Upload`]. Part of the first stage of the flow: STORE -> shard reader -> ...

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::files::sync_dir;
use super::upload::Upload;
use super::StoreError;

/// Streams one object into a store; see [`Store::writer`](super::Store::writer).
pub struct ObjectWriter {
    url: String,
    written: u64,
    inner: WriterInner,
}

enum WriterInner {
    Local {
        file: BufWriter<File>,
        partial: PathBuf,
        path: PathBuf,
    },
    Remote(Upload),
}

impl ObjectWriter {
    /// A writer into the local file `partial`, renamed to `path` by `finish`.
    pub(super) fn local(path: PathBuf, partial: PathBuf) -> Result<ObjectWriter, StoreError> {
        let file = File::create(&partial).map_err(|source| StoreError::Io {
            url: partial.display().to_string(),
            source,
        })?;
        Ok(ObjectWriter {
            url: path.display().to_string(),
            written: 0,
            inner: WriterInner::Local {
                file: BufWriter::with_capacity(1 << 20, file),
                partial,
                path,
            },
        })
    }

    /// A writer into a remote upload of the object at `url`.
    pub(super) fn remote(url: String, upload: Upload) -> ObjectWriter {
        ObjectWriter {
            url,
            written: 0,
            inner: WriterInner::Remote(upload),
        }
    }

    /// The object's path or URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Completes the object: flushes, syncs and renames a local file; completes a
    /// remote upload. Returns the object's length.
    pub fn finish(mut self) -> Result<u64, StoreError> {
        let url = self.url.clone();
        match &mut self.inner {
            WriterInner::Local {
                file,
                partial,
                path,
            } => {
                let io = |p: &Path| {
                    let url = p.display().to_string();
                    move |source| StoreError::Io { url, source }
                };
                file.flush().map_err(io(partial))?;
                file.get_ref().sync_all().map_err(io(partial))?;
                std::fs::rename(&*partial, &*path).map_err(io(path))?;
                sync_dir(path.parent().unwrap_or(Path::new(".")));
            }
            WriterInner::Remote(up) => up.finish().map_err(|e| match e {
                StoreError::Io { source, .. } => StoreError::Io { url, source },
                other => other,
            })?,
        }
        Ok(self.written)
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match &mut self.inner {
            WriterInner::Local { file, .. } => {
                let n = file.write(data)?;
                self.written += n as u64;
                Ok(n)
            }
            WriterInner::Remote(up) => {
                self.written += data.len() as u64;
                up.write(data).map_err(std::io::Error::other)?;
                Ok(data.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            WriterInner::Local { file, .. } => file.flush(),
            // Parts go out when full; finish() sends the rest.
            WriterInner::Remote(_) => Ok(()),
        }
    }
}
