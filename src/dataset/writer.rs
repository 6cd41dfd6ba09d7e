//! Writes a dataset folder: samples of any subset in canonical order in, shards with
//! sidecar indexes out, rolled over at a target size, and `manifest.json` last.
//!
//! Crash safety: a shard is written under a `.partial` name and renamed when complete;
//! the manifest is written to a temporary file, synced and renamed, only after every
//! shard is in place. An existing manifest is removed before anything is overwritten,
//! so an interrupted pack never leaves a manifest pointing at half-written shards.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{
    category_char, dataset_version, ContentHasher, Manifest, ShardManifest, SubsetManifest, FORMAT,
    FORMAT_VERSION, MANIFEST_FILE, ORDER,
};
use super::sample::{Role, Sample};
use super::{Category, Subset};
use crate::shard::writer::hex;
use crate::shard::ShardWriter;

/// When to close a shard and start the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardTarget {
    /// At most this many samples per shard.
    Samples(u64),
    /// Close a shard once it reaches this many bytes.
    Bytes(u64),
}

/// How to write a dataset.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Shard size target.
    pub target: ShardTarget,
    /// zstd level (1..=19).
    pub level: i32,
    /// Replace an existing dataset in the output folder.
    pub overwrite: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            target: ShardTarget::Bytes(256 << 20),
            level: 3,
            overwrite: false,
        }
    }
}

/// Why a dataset could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The output folder already holds a dataset.
    #[error("{0} already holds a dataset (manifest.json); pass --overwrite to replace it")]
    Exists(PathBuf),
    /// Two samples of one subset share a key.
    #[error("subset {subset}: duplicate sample key {key:?}")]
    DuplicateKey { subset: Subset, key: String },
    /// A sample does not fit the schema.
    #[error(transparent)]
    Sample(#[from] super::sample::SampleError),
    /// Nothing was written.
    #[error("no samples to write")]
    Empty,
    /// A bad option.
    #[error("{0}")]
    Options(String),
}

struct OpenShard {
    name: String,
    writer: ShardWriter<BufWriter<File>>,
    categories: String,
}

#[derive(Default)]
struct SubsetState {
    shards: Vec<ShardManifest>,
    open: Option<OpenShard>,
    content: ContentHasher,
    keys: HashSet<String>,
    max_turns: u32,
}

/// Writes one dataset folder.
pub struct DatasetWriter {
    root: PathBuf,
    opts: WriteOptions,
    subsets: BTreeMap<Subset, SubsetState>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl DatasetWriter {
    /// Prepares `root` for writing: creates it, refuses an existing dataset unless
    /// `overwrite`, in which case the old manifest is removed first.
    pub fn create(root: &Path, opts: WriteOptions) -> Result<DatasetWriter, WriteError> {
        match opts.target {
            ShardTarget::Samples(0) | ShardTarget::Bytes(0) => {
                return Err(WriteError::Options(
                    "the shard target must be positive".into(),
                ))
            }
            _ => {}
        }
        if !(1..=22).contains(&opts.level) {
            return Err(WriteError::Options(format!(
                "zstd level {} is not in 1..=22",
                opts.level
            )));
        }
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        let manifest = root.join(MANIFEST_FILE);
        if manifest.exists() {
            if !opts.overwrite {
                return Err(WriteError::Exists(root.to_path_buf()));
            }
            std::fs::remove_file(&manifest).map_err(io_err(&manifest))?;
            sync_dir(root)?;
        }
        Ok(DatasetWriter {
            root: root.to_path_buf(),
            opts,
            subsets: BTreeMap::new(),
        })
    }

    /// The folder being written.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Appends a sample to its subset (after checking it against the schema).
    pub fn add(&mut self, sample: &Sample) -> Result<u64, WriteError> {
        sample.check()?;
        let members = sample.to_members();
        let category = sample.meta.category;
        self.add_members(
            sample.subset(),
            category,
            &sample.key,
            members.iter().map(|(f, b)| (f.as_str(), &b[..])),
        )
    }

    /// Appends a sample given as raw members; returns the bytes its frame took.
    pub fn add_members<'a>(
        &mut self,
        subset: Subset,
        category: Option<Category>,
        key: &str,
        members: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> Result<u64, WriteError> {
        let state = self.subsets.entry(subset).or_default();
        if !state.keys.insert(key.to_string()) {
            return Err(WriteError::DuplicateKey {
                subset,
                key: key.to_string(),
            });
        }
        if state.open.is_none() {
            let name = format!("{}-{:06}.tar.zst", subset.name(), state.shards.len());
            let partial = self.root.join(format!("{name}.partial"));
            let file = File::create(&partial).map_err(io_err(&partial))?;
            let writer = ShardWriter::new(BufWriter::with_capacity(1 << 20, file), self.opts.level)
                .map_err(io_err(&partial))?;
            state.open = Some(OpenShard {
                name,
                writer,
                categories: String::new(),
            });
        }
        let turns = members
            .clone()
            .into_iter()
            .filter(|(f, _)| {
                f.split_once('.')
                    .and_then(|(name, _)| Role::from_field(name))
                    .is_some_and(|r| matches!(r, Role::Turn(_)))
            })
            .count() as u32;
        state.max_turns = state.max_turns.max(turns);
        let open = state.open.as_mut().expect("opened above");
        let path = self.root.join(&open.name);
        let frame = open.writer.add(key, members).map_err(io_err(&path))?;
        open.categories.push(category_char(category));
        let digest = open.writer_last_digest();
        state.content.add(key, &digest);
        let full = match self.opts.target {
            ShardTarget::Samples(n) => open.writer.samples() as u64 >= n,
            ShardTarget::Bytes(n) => open.writer.bytes_written() >= n,
        };
        if full {
            close_shard(&self.root, state)?;
        }
        Ok(frame)
    }

    /// Samples written so far per subset.
    pub fn counts(&self) -> BTreeMap<Subset, u64> {
        self.subsets
            .iter()
            .map(|(k, s)| (*k, s.content.samples()))
            .collect()
    }

    /// Closes every shard and writes the manifest atomically; returns it.
    pub fn finish(mut self) -> Result<Manifest, WriteError> {
        let mut subsets = BTreeMap::new();
        for (subset, mut state) in std::mem::take(&mut self.subsets) {
            close_shard(&self.root, &mut state)?;
            let samples = state.content.samples();
            if samples == 0 {
                continue;
            }
            let bytes = state.shards.iter().map(|s| s.bytes).sum();
            subsets.insert(
                subset,
                SubsetManifest {
                    samples,
                    bytes,
                    content_sha256: state.content.finish(),
                    max_turns: state.max_turns,
                    shards: state.shards,
                },
            );
        }
        if subsets.is_empty() {
            return Err(WriteError::Empty);
        }
        let version =
            dataset_version(subsets.iter().map(|(k, s): (&Subset, &SubsetManifest)| {
                (*k, s.samples, s.content_sha256.as_str())
            }));
        let manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            version,
            created_by: format!("editfeed {}", env!("CARGO_PKG_VERSION")),
            order: ORDER.into(),
            subsets,
        };
        manifest
            .validate()
            .map_err(|e| WriteError::Options(e.to_string()))?;
        write_atomic(&self.root.join(MANIFEST_FILE), &manifest.to_json())?;
        Ok(manifest)
    }
}

impl OpenShard {
    fn writer_last_digest(&self) -> [u8; 32] {
        self.writer.last_digest().expect("a sample was just added")
    }
}

fn close_shard(root: &Path, state: &mut SubsetState) -> Result<(), WriteError> {
    let Some(open) = state.open.take() else {
        return Ok(());
    };
    let path = root.join(&open.name);
    let partial = root.join(format!("{}.partial", open.name));
    let (buf, done) = open.writer.finish().map_err(io_err(&partial))?;
    let file = buf.into_inner().map_err(|e| WriteError::Io {
        path: partial.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(&partial))?;
    drop(file);
    let index_name = format!("{}.idx", open.name);
    let index_bytes = done.index.encode();
    write_atomic(&root.join(&index_name), &index_bytes)?;
    std::fs::rename(&partial, &path).map_err(io_err(&path))?;
    state.shards.push(ShardManifest {
        path: open.name,
        index: Some(index_name),
        samples: done.index.entries.len() as u64,
        bytes: done.bytes,
        sha256: done.sha256,
        index_sha256: Some(hex(&Sha256::digest(&index_bytes))),
        categories: open.categories,
    });
    Ok(())
}

/// Writes a file through a temporary name, syncs it and renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    // Directory fsync makes the rename durable; not every platform allows opening one.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
