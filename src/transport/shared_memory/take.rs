//! The client's side of a batch: reads every tensor that came as a file into the
//! message and gives the file back, for `editfeed fetch` and the tests.
//!
//! Stage: transport (see [`super`]).

use std::path::Path;

use bytes::Bytes;

use super::probe::check_name;
use super::{free_path, BadProbe};
use crate::transport::proto::v1::Batch;

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
        let want = crate::transport::wire::tensor_bytes(t);
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
    use super::super::stream::tests::batch;
    use super::*;

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
}
