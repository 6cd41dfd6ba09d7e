//! Where an importer's named inputs live: a local folder, or a prefix in an object store
//! (`s3://`, `gs://`, `az://`, through the store layer, which bounds the concurrency of
//! its requests and retries transient failures).
//!
//! Local paths are confined as [`super::input_files`] describes: symlinks resolved, only
//! regular files opened, sizes checked before reading. Object names are normalised
//! without a request: `.` is dropped, `..` resolved, and a name that climbs out of the
//! prefix, or an absolute path, is refused. No object is listed or probed: a name is
//! taken as given and its read says whether it is there (an object's size is checked
//! as it is read).
//!
//! Flow: metadata row -> INPUT ROOT (here) -> image checks -> dataset writer.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::input_files::{read_bounded, InputFileError};
use crate::store::{AsLocation, Location, Store, StoreConfig, StoreError};

/// One input file, found under an [`InputDir`].
#[derive(Debug, Clone)]
pub enum InputFile {
    /// A local file, by its real path.
    Local(PathBuf),
    /// An object, by its name under the store's prefix.
    Remote {
        /// The store of the folder it was named in.
        store: Arc<Store>,
        /// Its name under the store's prefix.
        name: String,
    },
}

impl InputFile {
    /// The path or URL, for messages; also what tells two files apart.
    pub fn shown(&self) -> String {
        match self {
            InputFile::Local(p) => p.display().to_string(),
            InputFile::Remote { store, name } => store.url_of(name),
        }
    }

    /// Reads the file, refusing one of more than `max_bytes`.
    pub fn read_bounded(&self, max_bytes: u64) -> Result<Vec<u8>, InputFileError> {
        let (store, name) = match self {
            InputFile::Local(p) => return read_bounded(p, max_bytes),
            InputFile::Remote { store, name } => (store, name),
        };
        let url = store.url_of(name);
        let bytes = store.read(name).map_err(|e| match e {
            StoreError::NotFound { .. } => InputFileError::Missing {
                path: url.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not found"),
            },
            other => InputFileError::Read {
                path: PathBuf::from(&url),
                source: std::io::Error::other(other),
            },
        })?;
        if bytes.len() as u64 > max_bytes {
            return Err(InputFileError::TooLarge {
                path: PathBuf::from(url),
                bytes: bytes.len() as u64,
                max: max_bytes,
            });
        }
        Ok(bytes.to_vec())
    }
}

/// A folder of inputs: local, or an object-store prefix.
#[derive(Debug, Clone)]
pub enum InputDir {
    /// A local folder.
    Local(PathBuf),
    /// An object-store prefix.
    Remote(Arc<Store>),
}

impl InputDir {
    /// Opens a folder or URL, with the store configured from the environment.
    pub fn open(location: &Path) -> Result<InputDir, StoreError> {
        let parsed = location.as_location().map_err(|e| StoreError::Config {
            url: location.display().to_string(),
            why: e.to_string(),
        })?;
        match parsed {
            Location::Local(p) => Ok(InputDir::Local(p)),
            remote => Ok(InputDir::Remote(Arc::new(Store::open(
                &remote,
                &StoreConfig::from_env(),
            )?))),
        }
    }

    /// Whether this is an object-store prefix.
    pub fn is_remote(&self) -> bool {
        matches!(self, InputDir::Remote(_))
    }

    /// The folder or URL, for messages.
    pub fn shown(&self) -> String {
        match self {
            InputDir::Local(p) => p.display().to_string(),
            InputDir::Remote(s) => s.url_of(""),
        }
    }

    /// The local folder, if it is one.
    pub fn local(&self) -> Option<&Path> {
        match self {
            InputDir::Local(p) => Some(p),
            InputDir::Remote(_) => None,
        }
    }

    /// An object named by a row (relative to the prefix), normalised; refused when it
    /// leaves the prefix or is absolute. For a local folder, use a
    /// [`super::input_files::Confinement`], which also resolves symlinks.
    pub fn object(&self, written: &str) -> Result<InputFile, InputFileError> {
        let InputDir::Remote(store) = self else {
            unreachable!("local folders resolve through their confinement")
        };
        let outside = || InputFileError::Outside {
            path: written.to_string(),
            allowed: store.url_of(""),
        };
        if written.starts_with('/') || written.contains('\\') || written.contains("://") {
            return Err(outside());
        }
        let mut parts: Vec<&str> = Vec::new();
        for part in written.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop().ok_or_else(outside)?;
                }
                name => parts.push(name),
            }
        }
        if parts.is_empty() {
            return Err(outside());
        }
        Ok(InputFile::Remote {
            store: store.clone(),
            name: parts.join("/"),
        })
    }

    /// A text file of the folder read as a stream (`None` when it is not there).
    pub fn open_text(&self, name: &str) -> Result<Option<Box<dyn Read + Send>>, InputFileError> {
        match self {
            InputDir::Local(dir) => {
                let path = dir.join(name);
                match std::fs::File::open(&path) {
                    Ok(f) => Ok(Some(Box::new(f))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(InputFileError::Read { path, source }),
                }
            }
            InputDir::Remote(store) => {
                let read_err = |e: StoreError| InputFileError::Read {
                    path: PathBuf::from(store.url_of(name)),
                    source: std::io::Error::other(e),
                };
                if !store.exists(name).map_err(read_err)? {
                    return Ok(None);
                }
                Ok(Some(store.reader(name).map_err(read_err)?))
            }
        }
    }

    /// Where a text file of the folder is, for messages.
    pub fn path_of(&self, name: &str) -> PathBuf {
        match self {
            InputDir::Local(dir) => dir.join(name),
            InputDir::Remote(store) => PathBuf::from(store.url_of(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_normalised_and_kept_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &Location::Local(dir.path().to_path_buf()),
            &StoreConfig::default(),
        )
        .unwrap();
        let root = InputDir::Remote(Arc::new(store));
        let name = |w: &str| match root.object(w) {
            Ok(InputFile::Remote { name, .. }) => Ok(name),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(name("images/./a/../b.png").unwrap(), "images/b.png");
        assert_eq!(name("images//b.png").unwrap(), "images/b.png");
        for bad in [
            "../x.png",
            "images/../../x.png",
            "/etc/passwd",
            "s3://b/x",
            "a\\b",
            ".",
        ] {
            let e = name(bad).unwrap_err();
            assert!(e.contains("is outside"), "{bad}: {e}");
        }
    }
}
