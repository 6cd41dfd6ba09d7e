//! Read-ahead for object stores: [`ReadAhead`] fetches a stream's samples in plan order on the
//! store's I/O runtime, ahead of the worker threads that decode them, so store latency
//! is hidden behind concurrency instead of stalling a worker per read. Part of the
//! shard reader stage (store -> SHARD READER -> plan -> prefetch -> decode/augment).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;

use super::{Dataset, DatasetError};
use crate::dataset::Subset;
use crate::store::{ReadAheadLimits, StoreError};

impl Dataset {
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
