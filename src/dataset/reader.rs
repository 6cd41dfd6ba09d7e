//! Opens a dataset from its store (a local folder or a bucket prefix): validates its
//! manifest, maps a subset ordinal (a position in canonical order) to its shard and
//! sample, loads sidecar indexes on first use and reads one sample with one range read,
//! several samples of a shard with coalesced range reads, or a whole shard as a stream.
//! Sits after the store: store -> SHARD READER -> plan -> prefetch -> decode/augment.
//!
//! For object stores, [`ReadAhead`] fetches a stream's samples in plan order on the
//! store's I/O runtime, ahead of the worker threads that decode them, so store latency
//! is hidden behind concurrency instead of stalling a worker per read.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;

use super::manifest::{Manifest, ManifestError, ShardManifest, MANIFEST_FILE};
use super::sample::Sample;
use super::Subset;
use crate::shard::{decode_frame, stream_samples, RawSample, ShardError, ShardIndex};
use crate::store::{
    AsLocation, Location as StoreLocation, ReadAheadLimits, Store, StoreConfig, StoreError,
    UrlError,
};

/// Why a dataset could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The manifest is missing or unreadable (local folders).
    #[error("{path}: {source}")]
    Io {
        /// The manifest's path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is invalid.
    #[error("{path}: {source}")]
    Manifest {
        /// The manifest's path or URL.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ManifestError,
    },
    /// A shard or index is unusable.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// A sample read from a shard does not fit the editfeed schema.
    #[error("shard {shard}: {source}")]
    Sample {
        /// The shard's path in the manifest.
        shard: String,
        /// What is wrong with the sample.
        #[source]
        source: super::sample::SampleError,
    },
    /// The object store failed (the message names the object's URL).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The location does not parse.
    #[error(transparent)]
    Location(#[from] UrlError),
    /// The dataset was rewritten while it was being read: its manifest no longer has the
    /// version it was opened with (or is gone).
    #[error("dataset {root} changed while it was being read: opened as version {was}, its manifest now {now}; start a new stream to read the new version")]
    Changed {
        /// The dataset's folder or URL.
        root: String,
        /// The version it was opened with.
        was: String,
        /// What the manifest says now (`says version X`, or why it cannot be read).
        now: String,
    },
    /// The subset is not in the dataset.
    #[error("the dataset has no {0} subset")]
    NoSubset(Subset),
    /// The ordinal is past the subset's end.
    #[error("subset {subset} has {len} samples; ordinal {ordinal} is out of range")]
    OutOfRange {
        /// The subset.
        subset: Subset,
        /// The ordinal asked for.
        ordinal: u64,
        /// Samples in the subset.
        len: u64,
    },
}

impl DatasetError {
    /// Whether the store failed rather than a sample: the stream should end with this
    /// error instead of replacing samples (a replacement would change the stream's
    /// bytes, and would hit the same store).
    pub fn is_store_failure(&self) -> bool {
        matches!(self, DatasetError::Store(_))
    }

    /// Whether the stream must end rather than replace the sample: the store failed, or
    /// the dataset changed under it (every later read would be wrong too).
    pub fn ends_the_stream(&self) -> bool {
        matches!(self, DatasetError::Store(_) | DatasetError::Changed { .. })
    }
}

/// Where one sample lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The shard's position in its subset's list.
    pub shard: usize,
    /// The sample's position in its shard.
    pub local: u64,
}

/// An open dataset, local or in an object store.
pub struct Dataset {
    root: PathBuf,
    store: Store,
    manifest: Manifest,
    /// Per subset, the first ordinal of each shard (prefix sums of sample counts).
    starts: HashMap<Subset, Vec<u64>>,
    indexes: Mutex<HashMap<(Subset, usize), Arc<ShardIndex>>>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("location", &self.store.location().to_string())
            .field("version", &self.manifest.version)
            .finish()
    }
}

impl Dataset {
    /// Opens and validates the manifest of a folder or URL, with the store configured
    /// from the environment (see [`StoreConfig::with_env`]).
    pub fn open(location: impl AsLocation) -> Result<Dataset, DatasetError> {
        Dataset::open_with(location, &StoreConfig::from_env())
    }

    /// Opens and validates the manifest of a folder or URL with a store configuration.
    pub fn open_with(
        location: impl AsLocation,
        config: &StoreConfig,
    ) -> Result<Dataset, DatasetError> {
        let location = location.as_location()?;
        let store = Store::open(&location, config)?;
        Dataset::open_store(store)
    }

    /// Opens the dataset of an already-open store (e.g. one over a custom
    /// `object_store` client).
    pub fn open_store(store: Store) -> Result<Dataset, DatasetError> {
        let path = PathBuf::from(store.url_of(MANIFEST_FILE));
        let bytes = store.read_revalidated(MANIFEST_FILE).map_err(|e| match e {
            StoreError::Io { source, .. } => DatasetError::Io {
                path: path.clone(),
                source,
            },
            other => DatasetError::Store(other),
        })?;
        let manifest =
            Manifest::parse(&bytes).map_err(|source| DatasetError::Manifest { path, source })?;
        Ok(Dataset::with_store(store, manifest))
    }

    fn with_store(store: Store, manifest: Manifest) -> Dataset {
        let starts = manifest
            .subsets
            .iter()
            .map(|(k, s)| {
                let mut acc = 0;
                let v = s
                    .shards
                    .iter()
                    .map(|sh| {
                        let start = acc;
                        acc += sh.samples;
                        start
                    })
                    .collect();
                (*k, v)
            })
            .collect();
        let root = match store.location() {
            StoreLocation::Local(p) => p.clone(),
            StoreLocation::Remote(u) => PathBuf::from(u.to_string()),
        };
        Dataset {
            root,
            store,
            manifest,
            starts,
            indexes: Mutex::new(HashMap::new()),
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The dataset folder; for an object store, its URL as a path (for messages).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store the dataset is read from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Bytes read from the store since the dataset was opened (manifest, indexes and
    /// samples; disk-cache hits excluded).
    pub fn bytes_read(&self) -> u64 {
        self.store.stats().bytes_read
    }

    /// Samples in a subset (0 when absent).
    pub fn len(&self, subset: Subset) -> u64 {
        self.manifest.subsets.get(&subset).map_or(0, |s| s.samples)
    }

    /// The subsets present, in canonical order.
    pub fn subsets(&self) -> Vec<Subset> {
        self.manifest.subsets.keys().copied().collect()
    }

    /// The shard entries of a subset.
    pub fn shards(&self, subset: Subset) -> Result<&[ShardManifest], DatasetError> {
        self.manifest
            .subsets
            .get(&subset)
            .map(|s| &s.shards[..])
            .ok_or(DatasetError::NoSubset(subset))
    }

    /// Maps a subset ordinal to its shard and position.
    pub fn locate(&self, subset: Subset, ordinal: u64) -> Result<Location, DatasetError> {
        let starts = self
            .starts
            .get(&subset)
            .ok_or(DatasetError::NoSubset(subset))?;
        let len = self.len(subset);
        if ordinal >= len {
            return Err(DatasetError::OutOfRange {
                subset,
                ordinal,
                len,
            });
        }
        let shard = starts.partition_point(|&s| s <= ordinal) - 1;
        Ok(Location {
            shard,
            local: ordinal - starts[shard],
        })
    }

    /// A store failure while reading `name`: a local I/O error stays a shard error (a
    /// bad sample, replaced by the next); a remote one is a store error.
    fn store_err(name: &str, e: StoreError) -> DatasetError {
        match e {
            StoreError::Io { source, .. } => ShardError::Io {
                shard: name.to_string(),
                source,
            }
            .into(),
            other => DatasetError::Store(other),
        }
    }

    fn cached_index(&self, subset: Subset, shard: usize) -> Option<Arc<ShardIndex>> {
        self.indexes
            .lock()
            .expect("index cache lock")
            .get(&(subset, shard))
            .cloned()
    }

    /// The index of one shard, read and checked on first use.
    pub fn index(&self, subset: Subset, shard: usize) -> Result<Arc<ShardIndex>, DatasetError> {
        if let Some(ix) = self.cached_index(subset, shard) {
            return Ok(ix);
        }
        let entry = &self.shards(subset)?[shard];
        let name = entry.path.clone();
        let Some(index_path) = &entry.index else {
            return Err(ShardError::Corrupt {
                shard: name,
                offset: 0,
                why: "the shard has no index; it can only be streamed".into(),
            }
            .into());
        };
        // The index's checksum pins its content, so a cached copy is never stale.
        let tag = entry.index_sha256.as_deref().unwrap_or(&entry.sha256);
        let bytes = self
            .store
            .read_versioned(index_path, tag)
            .map_err(|e| Self::store_err(index_path, e))?;
        if let Some(want) = &entry.index_sha256 {
            let got = crate::hex::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if &got != want {
                return Err(ShardError::Corrupt {
                    shard: index_path.clone(),
                    offset: 0,
                    why: format!(
                        "index sha256 is {got}, the manifest says {want}: the index is out of step with the manifest"
                    ),
                }
                .into());
            }
        }
        let index = ShardIndex::parse(&bytes).map_err(|source| ShardError::Index {
            shard: name.clone(),
            source,
        })?;
        if index.entries.len() as u64 != entry.samples || index.data_len != entry.bytes {
            return Err(ShardError::Corrupt {
                shard: name,
                offset: 0,
                why: format!(
                    "index describes {} samples in {} bytes, the manifest says {} in {}",
                    index.entries.len(),
                    index.data_len,
                    entry.samples,
                    entry.bytes
                ),
            }
            .into());
        }
        let index = Arc::new(index);
        self.indexes
            .lock()
            .expect("index cache lock")
            .insert((subset, shard), index.clone());
        Ok(index)
    }

    /// Checks that the dataset's manifest still has the version this dataset was opened
    /// with. Called when a sample fails to read, to tell a corrupt sample (replaced) from
    /// a dataset rewritten in place (the stream must end).
    pub fn check_unchanged(&self) -> Result<(), DatasetError> {
        let changed = |now: String| DatasetError::Changed {
            root: self.root.display().to_string(),
            was: self.manifest.version.clone(),
            now,
        };
        let bytes = match self.store.read_revalidated(MANIFEST_FILE) {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Err(changed("is missing".into())),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(changed("is missing".into()))
            }
            Err(e) => return Err(e.into()),
        };
        match Manifest::parse(&bytes) {
            Ok(m) if m.version == self.manifest.version => Ok(()),
            Ok(m) => Err(changed(format!("says version {}", m.version))),
            Err(e) => Err(changed(format!("does not parse ({e})"))),
        }
    }

    /// The key of the sample at an ordinal.
    pub fn key_of(&self, subset: Subset, ordinal: u64) -> Result<String, DatasetError> {
        let loc = self.locate(subset, ordinal)?;
        Ok(self.index(subset, loc.shard)?.entries[loc.local as usize]
            .key
            .clone())
    }

    /// Where a sample's frame is: its shard's name, the byte range and the shard's
    /// checksum (the cache tag).
    fn frame(
        &self,
        subset: Subset,
        ordinal: u64,
    ) -> Result<(String, std::ops::Range<u64>, String), DatasetError> {
        let loc = self.locate(subset, ordinal)?;
        let index = self.index(subset, loc.shard)?;
        let shard = &self.shards(subset)?[loc.shard];
        Ok((
            shard.path.clone(),
            index.entries[loc.local as usize].range(),
            shard.sha256.clone(),
        ))
    }

    /// Decodes a sample's frame (read by [`read_raw`](Self::read_raw), a coalesced read
    /// or read-ahead) and checks it holds the indexed key.
    pub fn decode_raw(
        &self,
        subset: Subset,
        ordinal: u64,
        frame: &[u8],
    ) -> Result<RawSample, DatasetError> {
        let loc = self.locate(subset, ordinal)?;
        let index = self.index(subset, loc.shard)?;
        let entry = &index.entries[loc.local as usize];
        let shard = &self.shards(subset)?[loc.shard].path;
        let raw = decode_frame(shard, entry.offset, frame, entry.raw_len)?;
        if raw.key != entry.key {
            return Err(ShardError::Corrupt {
                shard: shard.clone(),
                offset: entry.offset,
                why: format!(
                    "frame holds sample {:?}, the index says {:?}",
                    raw.key, entry.key
                ),
            }
            .into());
        }
        Ok(raw)
    }

    /// Reads one sample's members with one range read.
    pub fn read_raw(&self, subset: Subset, ordinal: u64) -> Result<RawSample, DatasetError> {
        let (shard, range, tag) = self.frame(subset, ordinal)?;
        let frame = self
            .store
            .read_range(&shard, range, Some(&tag))
            .map_err(|e| Self::store_err(&shard, e))?;
        self.decode_raw(subset, ordinal, &frame)
    }

    /// Reads several samples of a subset, in the order given. Samples are grouped by
    /// shard and frames that lie next to each other are fetched with one range read,
    /// so a run of consecutive ordinals costs one request per shard.
    pub fn read_raw_many(
        &self,
        subset: Subset,
        ordinals: &[u64],
    ) -> Result<Vec<RawSample>, DatasetError> {
        let mut by_shard: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, &o) in ordinals.iter().enumerate() {
            by_shard
                .entry(self.locate(subset, o)?.shard)
                .or_default()
                .push(i);
        }
        let mut out: Vec<Option<RawSample>> = vec![None; ordinals.len()];
        for (shard, members) in by_shard {
            let index = self.index(subset, shard)?;
            let entry = &self.shards(subset)?[shard];
            let ranges: Vec<_> = members
                .iter()
                .map(|&i| {
                    let local = self.locate(subset, ordinals[i]).map(|l| l.local)?;
                    Ok(index.entries[local as usize].range())
                })
                .collect::<Result<_, DatasetError>>()?;
            let frames = self
                .store
                .read_ranges(&entry.path, &ranges, Some(&entry.sha256))
                .map_err(|e| Self::store_err(&entry.path, e))?;
            for (&i, frame) in members.iter().zip(frames) {
                out[i] = Some(self.decode_raw(subset, ordinals[i], &frame)?);
            }
        }
        Ok(out
            .into_iter()
            .map(|s| s.expect("every ordinal read"))
            .collect())
    }

    /// Reads one sample and applies the schema.
    pub fn read_sample(&self, subset: Subset, ordinal: u64) -> Result<Sample, DatasetError> {
        let raw = self.read_raw(subset, ordinal)?;
        self.to_sample(subset, ordinal, raw)
    }

    /// Applies the schema to a sample read from `subset` at `ordinal`.
    pub fn to_sample(
        &self,
        subset: Subset,
        ordinal: u64,
        raw: RawSample,
    ) -> Result<Sample, DatasetError> {
        let shard = self.shards(subset)?[self.locate(subset, ordinal)?.shard]
            .path
            .clone();
        Sample::from_raw(raw).map_err(|source| DatasetError::Sample { shard, source })
    }

    /// Streams every sample of one shard in order, without its index.
    pub fn stream_shard(
        &self,
        subset: Subset,
        shard: usize,
        on_sample: impl FnMut(RawSample) -> Result<(), ShardError>,
    ) -> Result<(), DatasetError> {
        let name = self.shards(subset)?[shard].path.clone();
        let reader = self
            .store
            .reader(&name)
            .map_err(|e| Self::store_err(&name, e))?;
        let failed = std::rc::Rc::new(std::cell::RefCell::new(None));
        let watched = StoreErrorTap {
            inner: reader,
            failed: failed.clone(),
        };
        match stream_samples(&name, watched, on_sample) {
            Ok(()) => Ok(()),
            // The store broke mid-stream: say so, not that the shard is corrupt.
            Err(e) => Err(failed.take().map_or(e.into(), DatasetError::Store)),
        }
    }

    /// A whole file of the dataset (a shard or index named by the manifest).
    pub fn read_object(&self, name: &str) -> Result<Bytes, DatasetError> {
        self.store.read(name).map_err(|e| Self::store_err(name, e))
    }

    /// Starts reading ahead for one stream, in plan order, when the dataset is in an
    /// object store (`None` for local folders). `plan(step)` gives the samples of a step
    /// of this stream; `keep_steps` is how many steps behind the latest one read a
    /// worker may still be (the stream's prefetch depth plus one): older read-ahead is
    /// dropped as stale.
    pub fn read_ahead(
        self: &Arc<Self>,
        start_step: u64,
        end_step: Option<u64>,
        keep_steps: u64,
        plan: impl Fn(u64) -> Option<Vec<(Subset, u64)>> + Send + 'static,
    ) -> Option<Arc<ReadAhead>> {
        let limits = self.store.read_ahead_limits()?;
        let handle = self.store.io_handle()?;
        let shared = Arc::new(RaShared {
            state: Mutex::new(RaState::default()),
            filled: Condvar::new(),
            room: tokio::sync::Notify::new(),
            limits,
            keep_steps: keep_steps.max(1),
        });
        let driver = handle.spawn(drive(
            Arc::downgrade(self),
            shared.clone(),
            start_step,
            end_step,
            plan,
        ));
        Some(Arc::new(ReadAhead { shared, driver }))
    }
}

/// Reads one stream's samples ahead of its workers; see [`Dataset::read_ahead`].
/// Dropping it (when the stream ends) cancels what is still in flight.
pub struct ReadAhead {
    shared: Arc<RaShared>,
    driver: tokio::task::JoinHandle<()>,
}

struct RaShared {
    state: Mutex<RaState>,
    /// Wakes workers waiting for a read in flight.
    filled: Condvar,
    /// Wakes the driver when read-ahead room frees up.
    room: tokio::sync::Notify,
    limits: ReadAheadLimits,
    keep_steps: u64,
}

#[derive(Default)]
struct RaState {
    entries: VecDeque<RaEntry>,
    bytes: u64,
    /// The latest step a worker took a read-ahead sample of.
    consumer_step: u64,
    next_id: u64,
}

struct RaEntry {
    id: u64,
    step: u64,
    subset: Subset,
    ordinal: u64,
    bytes: u64,
    result: Option<Result<Bytes, StoreError>>,
    task: Option<tokio::task::AbortHandle>,
}

impl RaShared {
    fn complete(&self, id: u64, result: Result<Bytes, StoreError>) {
        let mut st = self.state.lock().expect("read-ahead lock");
        if let Some(e) = st.entries.iter_mut().find(|e| e.id == id) {
            if e.result.is_none() {
                e.result = Some(result);
            }
        }
        drop(st);
        self.filled.notify_all();
    }

    fn has_room(&self, st: &RaState) -> bool {
        st.entries.len() < self.limits.samples && st.bytes < self.limits.bytes
    }
}

/// Marks a read-ahead entry failed if its task ends without a result (cancelled or
/// panicked), so no worker waits for it forever.
struct Completion {
    shared: Arc<RaShared>,
    id: u64,
    url: String,
    done: bool,
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.done {
            self.shared.complete(
                self.id,
                Err(StoreError::Failed {
                    url: std::mem::take(&mut self.url),
                    message: "the read-ahead of this sample was cancelled".into(),
                }),
            );
        }
    }
}

impl ReadAhead {
    /// The frame of a sample if it was read ahead (waiting for it if it is in flight);
    /// `None` when it was not, and the caller reads it itself.
    pub fn take(&self, subset: Subset, ordinal: u64) -> Option<Result<Bytes, DatasetError>> {
        let sh = &self.shared;
        let mut st = sh.state.lock().expect("read-ahead lock");
        let first = st
            .entries
            .iter()
            .find(|e| e.subset == subset && e.ordinal == ordinal)?;
        let (id, step) = (first.id, first.step);
        let entry = loop {
            let pos = st.entries.iter().position(|e| e.id == id)?;
            if st.entries[pos].result.is_some() {
                break st.entries.remove(pos).expect("position is valid");
            }
            st = sh.filled.wait(st).expect("read-ahead lock");
        };
        st.bytes -= entry.bytes;
        st.consumer_step = st.consumer_step.max(step);
        // Entries of steps the workers have moved well past will never be taken (their
        // sample was read directly before the read-ahead got to it): drop them.
        while st
            .entries
            .front()
            .is_some_and(|e| e.step + sh.keep_steps < step)
        {
            let stale = st.entries.pop_front().expect("front exists");
            st.bytes -= stale.bytes;
            if let Some(t) = stale.task {
                t.abort();
            }
        }
        drop(st);
        sh.room.notify_one();
        Some(
            entry
                .result
                .expect("checked above")
                .map_err(DatasetError::Store),
        )
    }

    /// Samples read ahead now (fetched or in flight).
    pub fn len(&self) -> usize {
        self.shared
            .state
            .lock()
            .expect("read-ahead lock")
            .entries
            .len()
    }

    /// Whether nothing is read ahead now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.driver.abort();
        let st = self.shared.state.lock().expect("read-ahead lock");
        for e in &st.entries {
            if let Some(t) = &e.task {
                t.abort();
            }
        }
    }
}

/// The read-ahead driver: walks the stream's plan from `step` and starts one range
/// read per sample while the limits allow, then waits for workers to take some.
async fn drive(
    dataset: std::sync::Weak<Dataset>,
    shared: Arc<RaShared>,
    mut step: u64,
    end: Option<u64>,
    plan: impl Fn(u64) -> Option<Vec<(Subset, u64)>> + Send + 'static,
) {
    // Shards whose index failed to load: not asked for again by the read-ahead (the
    // workers still try, and report the error with the sample's context).
    let mut broken: std::collections::HashSet<(Subset, usize)> = Default::default();
    loop {
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let st = shared.state.lock().expect("read-ahead lock");
                // Never read steps the workers are already past.
                step = step.max(st.consumer_step);
                if shared.has_room(&st) {
                    break;
                }
            }
            room.await;
        }
        if end.is_some_and(|e| step >= e) {
            return;
        }
        let Some(samples) = plan(step) else { return };
        // The indexes this step needs that are not loaded yet, loaded concurrently (one
        // request each, on first use) on blocking threads, since loading blocks.
        {
            let Some(ds) = dataset.upgrade() else { return };
            let mut missing: Vec<(Subset, usize)> = samples
                .iter()
                .filter_map(|&(subset, ordinal)| {
                    let shard = ds.locate(subset, ordinal).ok()?.shard;
                    (ds.cached_index(subset, shard).is_none() && !broken.contains(&(subset, shard)))
                        .then_some((subset, shard))
                })
                .collect();
            missing.sort();
            missing.dedup();
            let loads: Vec<_> = missing
                .iter()
                .map(|&(subset, shard)| {
                    let d = ds.clone();
                    tokio::task::spawn_blocking(move || {
                        // A failure shows again, with context, when the sample is read.
                        let _ = d.index(subset, shard);
                    })
                })
                .collect();
            for l in loads {
                let _ = l.await;
            }
            broken.extend(
                missing
                    .into_iter()
                    .filter(|&(subset, shard)| ds.cached_index(subset, shard).is_none()),
            );
        }
        for (subset, ordinal) in samples {
            let Some(ds) = dataset.upgrade() else { return };
            // A sample whose index did not load is left to the worker, which reads it
            // itself and reports the error with the sample's context.
            let Some((shard, range, tag)) = ds.frame_if_indexed(subset, ordinal) else {
                continue;
            };
            let len = range.end - range.start;
            let url = ds.store.url_of(&shard);
            let Some(fetch) = ds.store.range_task(&shard, range, Some(&tag)) else {
                return;
            };
            drop(ds);
            let id = {
                let mut st = shared.state.lock().expect("read-ahead lock");
                let id = st.next_id;
                st.next_id += 1;
                st.entries.push_back(RaEntry {
                    id,
                    step,
                    subset,
                    ordinal,
                    bytes: len,
                    result: None,
                    task: None,
                });
                st.bytes += len;
                id
            };
            let mut done = Completion {
                shared: shared.clone(),
                id,
                url,
                done: false,
            };
            let task = tokio::spawn(async move {
                let result = fetch.await;
                done.done = true;
                done.shared.complete(done.id, result);
            });
            let mut st = shared.state.lock().expect("read-ahead lock");
            if let Some(e) = st.entries.iter_mut().find(|e| e.id == id) {
                e.task = Some(task.abort_handle());
            }
        }
        step += 1;
    }
}

impl Dataset {
    /// [`frame`](Self::frame) when the shard's index is already loaded (no I/O).
    fn frame_if_indexed(
        &self,
        subset: Subset,
        ordinal: u64,
    ) -> Option<(String, std::ops::Range<u64>, String)> {
        let loc = self.locate(subset, ordinal).ok()?;
        let index = self.cached_index(subset, loc.shard)?;
        let shard = &self.shards(subset).ok()?[loc.shard];
        Some((
            shard.path.clone(),
            index.entries[loc.local as usize].range(),
            shard.sha256.clone(),
        ))
    }
}

/// Passes reads through, keeping a store error that ends the stream so that it can be
/// reported as such (the tar reader only sees an I/O error).
struct StoreErrorTap<R> {
    inner: R,
    failed: std::rc::Rc<std::cell::RefCell<Option<StoreError>>>,
}

impl<R: std::io::Read> std::io::Read for StoreErrorTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if !e.get_ref().is_some_and(|x| x.is::<StoreError>()) {
                return e;
            }
            let se = e
                .into_inner()
                .and_then(|x| x.downcast::<StoreError>().ok())
                .expect("checked the type above");
            let msg = se.to_string();
            *self.failed.borrow_mut() = Some(*se);
            std::io::Error::other(msg)
        })
    }
}

/// Reads `len` bytes at `offset` of a file (one positioned read).
pub fn read_range(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    crate::store::pread(&std::fs::File::open(path)?, offset, len)
}
