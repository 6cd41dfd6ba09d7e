//! How the importers open the files their metadata names: a path is resolved against the
//! folders the user allowed (the import root, the source folders), symlinks included, and
//! refused when it leaves them; only regular files are opened, without ever blocking on a
//! FIFO or a device; and no more than a configured number of bytes is read, checked
//! before reading. A metadata file is data, not a list of files the user agreed to
//! publish, so a row naming `../../home/x/.ssh/id.png`, `/etc/shadow` or a symlink out of
//! the root must neither be packed nor tell whether that file exists.
//!
//! Flow: metadata row -> INPUT FILES (here) -> image checks -> dataset writer.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The default most bytes one image file may have (published edits are a few MB).
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 64 << 20;

/// Why a named input file was refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputFileError {
    /// The path leaves every allowed folder (through `..`, an absolute path or a
    /// symlink).
    #[error("{path} is outside {allowed}")]
    Outside {
        /// The path as written.
        path: String,
        /// The allowed folders, as given.
        allowed: String,
    },
    /// The path names nothing (or something that cannot be resolved).
    #[error("{path}")]
    Missing {
        /// The path as written.
        path: String,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// The path names a FIFO, a device, a socket or a folder.
    #[error("{path} is a {kind}, not a regular file")]
    NotRegular {
        /// The resolved path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The file is larger than the limit.
    #[error("{path} has {bytes} bytes, more than max_image_bytes {max}")]
    TooLarge {
        /// The resolved path.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// Reading the file failed.
    #[error("read {path}")]
    Read {
        /// The resolved path.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
}

impl InputFileError {
    /// The message with its cause, for reports that keep a string.
    pub fn full(&self) -> String {
        match self {
            InputFileError::Missing { path, source } => format!("{path}: {source}"),
            InputFileError::Read { path, source } => format!("read {}: {source}", path.display()),
            other => other.to_string(),
        }
    }
}

/// Removes `.` and resolves `..` without looking at the file system; `None` when a `..`
/// climbs above the start.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return None;
                }
                depth -= 1;
                out.pop();
            }
            Component::Normal(n) => {
                depth += 1;
                out.push(n);
            }
        }
    }
    Some(out)
}

/// The folders paths may resolve into, each as given and after symlink resolution.
#[derive(Debug, Clone)]
pub struct Confinement {
    roots: Vec<(PathBuf, PathBuf)>,
}

impl Confinement {
    /// Allows the files under `roots` (each must exist).
    pub fn new<'a>(roots: impl IntoIterator<Item = &'a Path>) -> std::io::Result<Confinement> {
        let roots = roots
            .into_iter()
            .map(|r| {
                let canonical = std::fs::canonicalize(r)?;
                let given = std::path::absolute(r)
                    .ok()
                    .and_then(|a| normalise(&a))
                    .unwrap_or_else(|| canonical.clone());
                Ok((given, canonical))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Confinement { roots })
    }

    fn allowed(&self) -> String {
        let names: Vec<String> = self
            .roots
            .iter()
            .map(|(g, _)| g.display().to_string())
            .collect();
        names.join(" or ")
    }

    fn outside(&self, written: &str) -> InputFileError {
        InputFileError::Outside {
            path: written.to_string(),
            allowed: self.allowed(),
        }
    }

    /// Resolves `written` (relative to `base`, or absolute) to its real path, which
    /// must lie inside one of the folders. A path that leaves them as written is refused
    /// before the file system is asked about it; one that leaves them through a symlink
    /// is refused after. The result is the canonical path, so two spellings of one file
    /// resolve to the same path.
    pub fn resolve(&self, base: &Path, written: &str) -> Result<PathBuf, InputFileError> {
        let path = Path::new(written);
        let joined = if path.is_absolute() {
            let norm = normalise(path).ok_or_else(|| self.outside(written))?;
            if !self
                .roots
                .iter()
                .any(|(g, c)| norm.starts_with(g) || norm.starts_with(c))
            {
                return Err(self.outside(written));
            }
            path.to_path_buf()
        } else {
            normalise(path).ok_or_else(|| self.outside(written))?;
            base.join(path)
        };
        let real = std::fs::canonicalize(&joined).map_err(|source| InputFileError::Missing {
            path: written.to_string(),
            source,
        })?;
        if !self.roots.iter().any(|(_, c)| real.starts_with(c)) {
            return Err(self.outside(written));
        }
        Ok(real)
    }
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "folder"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Reads the regular file at `path`, at most `max_bytes` of it. It is opened without
/// blocking (a FIFO would otherwise wait for a writer forever), its type and size are
/// checked on the open descriptor before anything is read, and the read itself stops
/// one byte past the limit in case the file grows meanwhile.
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>, InputFileError> {
    let read_err = |source| InputFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let (file, len) = open_regular_with_len(path)?;
    let too_large = |bytes| InputFileError::TooLarge {
        path: path.to_path_buf(),
        bytes,
        max: max_bytes,
    };
    if len > max_bytes {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    Read::take(&file, max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Opens a regular file for streaming (an input shard), refusing FIFOs and devices
/// without blocking on them.
pub fn open_regular(path: &Path) -> Result<File, InputFileError> {
    open_regular_with_len(path).map(|(file, _)| file)
}

/// [`open_regular`], with the file's length from the same `fstat`.
fn open_regular_with_len(path: &Path) -> Result<(File, u64), InputFileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| InputFileError::Missing {
            path: path.display().to_string(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| InputFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(InputFileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok((file, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_their_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("images")).unwrap();
        std::fs::write(root.join("images/a.png"), b"a").unwrap();
        std::fs::write(dir.path().join("secret.png"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.png"), root.join("images/out.png"))
            .unwrap();
        std::os::unix::fs::symlink(root.join("images/a.png"), root.join("images/in.png")).unwrap();
        let c = Confinement::new([root.as_path()]).unwrap();
        let a = c.resolve(&root, "images/a.png").unwrap();
        assert_eq!(c.resolve(&root, "./images/../images/a.png").unwrap(), a);
        assert_eq!(c.resolve(&root, "images/in.png").unwrap(), a);
        let abs = root.join("images/a.png").display().to_string();
        assert_eq!(c.resolve(&root, &abs).unwrap(), a);
        for bad in [
            "../secret.png".to_string(),
            "images/../../secret.png".to_string(),
            dir.path().join("secret.png").display().to_string(),
            format!("{}/../secret.png", root.display()),
            "images/out.png".to_string(),
            "/dev/zero".to_string(),
        ] {
            let e = c.resolve(&root, &bad).unwrap_err();
            assert!(matches!(e, InputFileError::Outside { .. }), "{bad}: {e:?}");
        }
        // Outside paths are refused whether or not they exist.
        assert!(matches!(
            c.resolve(&root, "../nothing.png"),
            Err(InputFileError::Outside { .. })
        ));
        assert!(matches!(
            c.resolve(&root, "images/nothing.png"),
            Err(InputFileError::Missing { .. })
        ));
    }

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"12345").unwrap();
        assert_eq!(read_bounded(&small, 5).unwrap(), b"12345");
        assert!(matches!(
            read_bounded(&small, 4),
            Err(InputFileError::TooLarge {
                bytes: 5,
                max: 4,
                ..
            })
        ));
        // /dev/zero never ends: it must be refused by type, not read until memory runs out.
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(matches!(e, InputFileError::NotRegular { .. }), "{e:?}");
        assert!(matches!(
            read_bounded(dir.path(), 1 << 20),
            Err(InputFileError::NotRegular { kind: "folder", .. })
        ));
        assert!(matches!(
            open_regular(Path::new("/dev/zero")),
            Err(InputFileError::NotRegular { .. })
        ));
    }
}
