//! The store's writes: whole objects, streamed objects, deletions and the local root
//! folder. Part of the first stage of the flow: STORE -> shard reader -> plan -> ...

use bytes::Bytes;

use super::files::{sync_dir, write_atomic};
use super::object_writer::ObjectWriter;
use super::upload::Upload;
use super::{Backend, Store, StoreError};

impl Store {
    /// Writes a whole object atomically: a local file through a synced temporary file
    /// and a rename; a remote object in one request.
    pub fn put(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(root) => write_atomic(&Self::local_path(root, name), &bytes)
                .map_err(|(url, source)| StoreError::Io { url, source }),
            Backend::Remote(r) => {
                let name = name.to_string();
                Self::remote_call(r, |c| async move { c.put(&name, bytes).await })
            }
        }
    }

    /// Deletes an object; a missing one is fine.
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(root) => {
                let path = Self::local_path(root, name);
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        sync_dir(path.parent().unwrap_or(root));
                        Ok(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(self.io_err(name)(e)),
                }
            }
            Backend::Remote(r) => {
                let name = name.to_string();
                Self::remote_call(r, |c| async move { c.delete(&name).await })
            }
        }
    }

    /// Makes the folder of a local store (nothing to do for a bucket prefix).
    pub fn create_root(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(root) => std::fs::create_dir_all(root).map_err(self.io_err("")),
            Backend::Remote(_) => Ok(()),
        }
    }

    /// A writer that streams an object in: locally a `.partial` file renamed into
    /// place by [`ObjectWriter::finish`]; remotely a multipart upload whose parts go
    /// out while the rest is written (or one request for a small object). Until
    /// `finish`, nothing is visible under `name`.
    pub fn writer(&self, name: &str) -> Result<ObjectWriter, StoreError> {
        match &self.backend {
            Backend::Local(root) => {
                let path = Self::local_path(root, name);
                let partial = Self::local_path(root, &format!("{name}.partial"));
                ObjectWriter::local(path, partial)
            }
            Backend::Remote(r) => Ok(ObjectWriter::remote(
                r.core.url_of(name),
                Upload::new(r.core.clone(), r.io.clone(), name),
            )),
        }
    }
}
