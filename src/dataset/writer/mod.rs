//! Writes a dataset to a folder or straight to an object store: samples of any subset
//! in canonical order in, shards with sidecar indexes out, rolled over at a target
//! size, and `manifest.json` last. The packing end of the flow: packer -> WRITER ->
//! store; readers then go store -> shard reader -> plan -> ...
//!
//! Crash safety: a local shard is written under a `.partial` name and renamed when
//! complete; a remote shard is a multipart upload that only appears when completed (or
//! one request for a small shard). The manifest is written last (locally through a
//! synced temporary file and a rename), only after every shard and index is in place.
//! An existing manifest is removed before anything is overwritten, so an interrupted
//! pack never leaves a manifest pointing at half-written shards.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

mod adopt;
mod encoded;
mod open_shard;
mod options;
mod part;

use bytes::Bytes;

pub use adopt::{ClosedShard, KeyDigests};
pub use encoded::{EncodedSample, SampleAttrs, SampleEncoder};
pub use options::{check_level, ShardTarget, WriteError, WriteOptions};
pub use part::{PartSubset, WrittenPart};

use self::open_shard::{close_shard, OpenShard, SubsetState};
use super::manifest::{
    manifest_version, Manifest, ShardManifest, SubsetManifest, FORMAT, FORMAT_VERSION,
    MANIFEST_FILE, ORDER,
};
use super::sample::Sample;
use super::splits::{group_of, SplitError, SplitSource};
use super::{Category, Subset};
use crate::store::{AsLocation, Location, Store, StoreConfig, StoreError};

/// Writes one dataset, to a folder or a bucket prefix.
pub struct DatasetWriter {
    root: PathBuf,
    store: Store,
    opts: WriteOptions,
    subsets: BTreeMap<Subset, SubsetState>,
    splits: Option<SplitSource>,
    /// Samples the split file assigned, to find the file's keys the dataset lacks.
    split_keys_used: HashSet<(Subset, String)>,
    /// Encodes the samples added as members.
    encoder: SampleEncoder,
    /// Shards closed since [`take_closed`](Self::take_closed) was last called.
    closed: Vec<ClosedShard>,
    /// How the manifest describes where splits came from, when they were given.
    split_note: Option<String>,
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| {
        // A remote upload fails inside `Write`: unwrap its store error (which names
        // the object) instead of naming the object twice.
        if source.get_ref().is_some_and(|e| e.is::<StoreError>()) {
            if let Ok(e) = source
                .into_inner()
                .expect("checked")
                .downcast::<StoreError>()
            {
                return WriteError::Store(*e);
            }
            unreachable!("checked the type above");
        }
        WriteError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl DatasetWriter {
    /// Prepares a folder or URL for writing, with the store configured from the
    /// environment: creates the folder, refuses an existing dataset unless
    /// `overwrite`, in which case the old manifest is removed first.
    pub fn create(out: impl AsLocation, opts: WriteOptions) -> Result<DatasetWriter, WriteError> {
        DatasetWriter::create_with(out, opts, &StoreConfig::from_env())
    }

    /// [`create`](Self::create) with a store configuration.
    pub fn create_with(
        out: impl AsLocation,
        opts: WriteOptions,
        config: &StoreConfig,
    ) -> Result<DatasetWriter, WriteError> {
        match opts.target {
            ShardTarget::Samples(0) | ShardTarget::Bytes(0) => {
                return Err(WriteError::Options(
                    "the shard target must be positive".into(),
                ))
            }
            _ => {}
        }
        check_level(opts.level).map_err(WriteError::Options)?;
        let location = out.as_location()?;
        let store = Store::open(&location, config)?;
        DatasetWriter::with_store(store, opts)
    }

    /// Prepares an already-open store for writing (see [`create`](Self::create)).
    pub fn with_store(store: Store, opts: WriteOptions) -> Result<DatasetWriter, WriteError> {
        let root = match store.location() {
            Location::Local(p) => p.clone(),
            Location::Remote(u) => PathBuf::from(u.to_string()),
        };
        store.create_root()?;
        if store.exists(MANIFEST_FILE)? {
            if !opts.overwrite {
                return Err(WriteError::Exists(root));
            }
            store.delete(MANIFEST_FILE)?;
        }
        let encoder = SampleEncoder::new(&opts)?;
        Ok(DatasetWriter {
            root,
            store,
            encoder,
            closed: Vec::new(),
            split_note: None,
            opts,
            subsets: BTreeMap::new(),
            splits: None,
            split_keys_used: HashSet::new(),
        })
    }

    /// Where samples' splits come from, if the dataset gets splits.
    pub fn split_source(&self) -> Option<&SplitSource> {
        self.splits.as_ref()
    }

    /// Gives every sample a split from `source` (see [`super::splits`]); without it
    /// the dataset has no splits.
    pub fn with_splits(mut self, source: Option<SplitSource>) -> DatasetWriter {
        self.splits = source;
        self
    }

    /// The folder being written; for an object store, its URL as a path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store being written to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes a side file (e.g. an import report) at `path`: through the store when
    /// `path` is inside the dataset's location (or any other bucket URL), else as a
    /// local file written atomically.
    pub fn write_side_file(&self, path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
        let inside = path
            .strip_prefix(&self.root)
            .ok()
            .and_then(|p| p.to_str())
            .filter(|p| !p.is_empty());
        if let (true, Some(name)) = (self.store.is_remote(), inside) {
            self.store.put(name, Bytes::copy_from_slice(bytes))?;
            return Ok(());
        }
        if let Location::Remote(u) = path.as_location()? {
            // Another bucket or prefix: a store rooted at the file's parent.
            let (parent, name) = u.prefix.rsplit_once('/').unwrap_or(("", &u.prefix));
            let parent = crate::store::RemoteUrl {
                prefix: parent.to_string(),
                ..u.clone()
            };
            let store = Store::open(&Location::Remote(parent), &StoreConfig::from_env())?;
            store.put(name, Bytes::copy_from_slice(bytes))?;
            return Ok(());
        }
        write_atomic(path, bytes)
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
        self.add_members_with_split(subset, category, None, key, members)
    }

    /// [`add_members`](Self::add_members) with the sample's split id given (required
    /// with [`SplitSource::Given`], otherwise it overrides the source).
    pub fn add_members_with_split<'a>(
        &mut self,
        subset: Subset,
        category: Option<Category>,
        split: Option<u8>,
        key: &str,
        members: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> Result<u64, WriteError> {
        let encoded = self.encoder.encode(subset, category, key, members)?;
        self.add_encoded(encoded, split)
    }

    /// An encoder for this writer's options, for encoding samples on other threads
    /// and handing them to [`add_encoded`](Self::add_encoded) in canonical order.
    pub fn encoder(&self) -> Result<SampleEncoder, WriteError> {
        SampleEncoder::new(&self.opts)
    }

    /// Appends a sample encoded by a [`SampleEncoder`] of this writer's options, with
    /// its split id when given (as in
    /// [`add_members_with_split`](Self::add_members_with_split)); returns the bytes its
    /// frame took.
    pub fn add_encoded(
        &mut self,
        sample: EncodedSample,
        split: Option<u8>,
    ) -> Result<u64, WriteError> {
        let (subset, key) = (sample.subset, sample.key().to_string());
        let split = match (split, &self.splits) {
            (_, None) => None,
            (Some(id), Some(_)) => Some(id),
            (None, Some(SplitSource::Rule(r))) => {
                Some(r.assign(&group_of(subset, &key, sample.attrs.source_url.as_deref())))
            }
            (None, Some(SplitSource::File(f))) => {
                let (id, _) = f.get(subset, &key).ok_or_else(|| {
                    WriteError::Options(
                        SplitError::Missing {
                            path: f.path.clone(),
                            key: format!("{subset}/{key}"),
                        }
                        .to_string(),
                    )
                })?;
                self.split_keys_used.insert((subset, key.clone()));
                Some(id)
            }
            (None, Some(SplitSource::Given(_))) => {
                return Err(WriteError::Options(format!(
                    "sample {subset}/{key}: no split given"
                )))
            }
        };
        let state = self.subsets.entry(subset).or_default();
        if !state.keys.insert(key.clone()) {
            return Err(WriteError::DuplicateKey { subset, key });
        }
        if state.open.is_none() {
            let name = format!("{}-{:06}.tar.zst", subset.name(), state.shards.len());
            state.open = Some(OpenShard::create(
                &self.store,
                name,
                self.opts.level,
                self.opts.compress_literals,
            )?);
        }
        state.max_turns = state.max_turns.max(sample.attrs.turns);
        let open = state.open.as_mut().expect("opened above");
        let frame = open.add(&self.store, sample.frame, &sample.attrs, split)?;
        state.content.add(&key, &open.last_digest());
        let full = match self.opts.target {
            ShardTarget::Samples(n) => open.writer.samples() as u64 >= n,
            ShardTarget::Bytes(n) => open.writer.bytes_written() >= n,
        };
        if full {
            close_shard(&self.store, state)?;
            self.closed.push(ClosedShard::last_of(subset, state));
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

    /// Shards closed so far, over all subsets.
    pub fn shards_written(&self) -> u64 {
        self.subsets.values().map(|s| s.shards.len() as u64).sum()
    }

    /// The last shard closed in `subset`, with the longest chain of the subset so far.
    pub fn last_closed(&self, subset: Subset) -> Option<(&ShardManifest, u32)> {
        let state = self.subsets.get(&subset)?;
        state.shards.last().map(|s| (s, state.max_turns))
    }

    /// Closes every open shard and writes its index, without the manifest: a failed
    /// shard write shows here, before side files such as an import report are written.
    pub fn close_shards(&mut self) -> Result<(), WriteError> {
        let subsets: Vec<Subset> = self.subsets.keys().copied().collect();
        for subset in subsets {
            self.close_subset(subset)?;
        }
        Ok(())
    }

    /// Closes the open shard of `subset`, if any: when no more samples of it will come,
    /// its last shard is complete now rather than at the end.
    pub fn close_subset(&mut self, subset: Subset) -> Result<(), WriteError> {
        let Some(state) = self.subsets.get_mut(&subset) else {
            return Ok(());
        };
        if state.open.is_some() {
            close_shard(&self.store, state)?;
            self.closed.push(ClosedShard::last_of(subset, state));
        }
        Ok(())
    }

    /// The shards closed since the last call, in the order they were closed.
    pub fn take_closed(&mut self) -> Vec<ClosedShard> {
        std::mem::take(&mut self.closed)
    }

    /// How the manifest describes the splits given by [`SplitSource::Given`] (by
    /// default it says nothing).
    pub fn describe_splits(mut self, note: Option<String>) -> DatasetWriter {
        self.split_note = note;
        self
    }

    /// The options shards are written with.
    pub fn options(&self) -> &WriteOptions {
        &self.opts
    }

    /// The split names and how the manifest says where they came from.
    pub fn split_description(&self) -> (Vec<String>, Option<String>) {
        let Some(splits) = &self.splits else {
            return (Vec::new(), None);
        };
        let source = match splits {
            SplitSource::File(f) => Some(format!("file {}", f.path)),
            SplitSource::Rule(r) => Some(format!("rule {}", r.text())),
            SplitSource::Given(_) => self.split_note.clone(),
        };
        (splits.names().to_vec(), source)
    }

    /// Closes every shard and writes the manifest atomically; returns it.
    pub fn finish(mut self) -> Result<Manifest, WriteError> {
        self.write_manifest()
    }

    /// [`finish`](Self::finish), keeping the writer for its store: nothing more can be
    /// added after it.
    pub fn write_manifest(&mut self) -> Result<Manifest, WriteError> {
        let mut subsets = BTreeMap::new();
        for (subset, mut state) in std::mem::take(&mut self.subsets) {
            close_shard(&self.store, &mut state)?;
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
        if let Some(SplitSource::File(f)) = &self.splits {
            f.check_all_used(&self.split_keys_used)
                .map_err(|e| WriteError::Options(e.to_string()))?;
        }
        let (splits, split_source) = self.split_description();
        let mut manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            version: String::new(),
            created_by: format!("editfeed {}", env!("CARGO_PKG_VERSION")),
            order: ORDER.into(),
            subsets,
            splits,
            split_source,
        };
        manifest.version = manifest_version(&manifest);
        manifest
            .validate()
            .map_err(|e| WriteError::Options(e.to_string()))?;
        // Last: the manifest makes the dataset exist.
        self.store
            .put(MANIFEST_FILE, Bytes::from(manifest.to_json()))?;
        Ok(manifest)
    }
}

/// Writes a local file through a temporary name, syncs it and renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    crate::store::write_atomic(path, bytes).map_err(|(p, source)| WriteError::Io {
        path: PathBuf::from(p),
        source,
    })
}
