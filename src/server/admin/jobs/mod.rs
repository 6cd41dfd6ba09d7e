//! Background jobs of the Admin service: each has an id, its request, a state and
//! progress published through a watch channel (so `WatchJob` streams every change) and
//! persisted under `<state_dir>/jobs/<id>.json`. A job found queued or running when the
//! daemon starts was interrupted by a crash or kill; submitting the same request again
//! runs it to completion under the same id, taking over the shards it had completed
//! (each is appended to `<state_dir>/jobs/<id>.shards`, one JSON line, as it closes).
//!
//! This module holds the table of every job; `record` the persisted form, `handle` one
//! job's published status and logs, `runner` the threads jobs run on. Stage: server
//! (Admin service).

mod handle;
mod record;
mod runner;

pub use handle::JobHandle;
pub use runner::{JobFailure, JobResult};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use handle::read_shard_log;
use record::{state_name, JobRecord};
use runner::Budget;

use super::AdminError;
use crate::dataset::writer::ClosedShard;
use crate::server::registry::RegistryError;
use crate::transport::proto::v1::{Job, JobState, ReshardRequest};

/// Whether a job in this state will not change any more by itself.
pub fn is_finished(s: JobState) -> bool {
    matches!(
        s,
        JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::Interrupted
    )
}

/// Every job of the daemon.
pub struct Jobs {
    dir: Option<PathBuf>,
    jobs: Mutex<BTreeMap<u64, Arc<JobHandle>>>,
    next: AtomicU64,
    budget: Arc<Budget>,
    claiming: Mutex<()>,
}

impl Jobs {
    /// Loads the jobs persisted under `<state_dir>/jobs` (none when `state_dir` is
    /// empty); those that were queued or running are now interrupted.
    pub fn load(state_dir: &str, threads: usize) -> Result<Jobs, RegistryError> {
        let dir = (!state_dir.is_empty()).then(|| Path::new(state_dir).join("jobs"));
        let jobs = Jobs {
            dir: dir.clone(),
            jobs: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(1),
            budget: Arc::new(Budget::new(threads)),
            claiming: Mutex::new(()),
        };
        let Some(dir) = dir else {
            return Ok(jobs);
        };
        let err = |path: &Path, why: String| RegistryError::State {
            path: path.to_path_buf(),
            why,
        };
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e.to_string()))?;
        let entries = std::fs::read_dir(&dir).map_err(|e| err(&dir, e.to_string()))?;
        for entry in entries {
            let path = entry.map_err(|e| err(&dir, e.to_string()))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| err(&path, e.to_string()))?;
            let record: JobRecord =
                serde_json::from_slice(&bytes).map_err(|e| err(&path, e.to_string()))?;
            let Some(num) = record.id.strip_prefix("job-").and_then(|n| n.parse().ok()) else {
                return Err(err(&path, format!("{:?} is not a job id", record.id)));
            };
            let mut job = record.into_job();
            let shards = read_shard_log(&dir.join(format!("{}.shards", job.id)));
            let interrupted = !is_finished(job.state());
            if interrupted {
                job.set_state(JobState::Interrupted);
                job.error = "the daemon stopped while the job ran; submit the same request again to finish it".into();
            }
            let handle = jobs.insert(num, job, shards);
            if interrupted {
                tracing::warn!(job = %handle.get().id, "reshard job was interrupted");
                handle.update(false, |_| {});
            }
            jobs.next.fetch_max(num + 1, Ordering::AcqRel);
        }
        Ok(jobs)
    }

    fn insert(&self, num: u64, job: Job, shards: Vec<ClosedShard>) -> Arc<JobHandle> {
        let file = self
            .dir
            .as_ref()
            .map(|d| d.join(format!("{}.json", job.id)));
        let shards_file = self
            .dir
            .as_ref()
            .map(|d| d.join(format!("{}.shards", job.id)));
        let handle = Arc::new(JobHandle::new(job, shards, file, shards_file));
        self.jobs
            .lock()
            .expect("jobs lock")
            .insert(num, handle.clone());
        handle
    }

    /// Registers a new queued job for `request`, copying `source_version` (persisted at
    /// once).
    pub fn create(
        &self,
        request: ReshardRequest,
        samples_total: u64,
        source_version: &str,
    ) -> Arc<JobHandle> {
        let num = self.next.fetch_add(1, Ordering::AcqRel);
        let created_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let job = Job {
            id: format!("job-{num}"),
            state: JobState::Queued as i32,
            request: Some(request),
            samples_total,
            created_unix,
            source_version: source_version.to_string(),
            ..Default::default()
        };
        let handle = self.insert(num, job, Vec::new());
        handle.update(false, |_| {});
        handle
    }

    /// Makes an interrupted job queued again, with its progress reset.
    pub fn requeue(&self, handle: &JobHandle, samples_total: u64) {
        handle.cancel.store(false, Ordering::Release);
        handle.update(false, |j| {
            *j = Job {
                id: j.id.clone(),
                state: JobState::Queued as i32,
                request: j.request.clone(),
                samples_total,
                created_unix: j.created_unix,
                source_version: j.source_version.clone(),
                ..Default::default()
            };
        });
    }

    /// Held while a request checks destinations and creates its job, so two requests
    /// cannot both claim one destination.
    pub fn claim(&self) -> std::sync::MutexGuard<'_, ()> {
        self.claiming.lock().expect("jobs claim lock")
    }

    /// A job by id.
    pub fn get(&self, id: &str) -> Result<Arc<JobHandle>, AdminError> {
        let num = id.strip_prefix("job-").and_then(|n| n.parse::<u64>().ok());
        num.and_then(|n| self.jobs.lock().expect("jobs lock").get(&n).cloned())
            .ok_or_else(|| AdminError::UnknownJob { id: id.to_string() })
    }

    /// Every job, oldest first.
    pub fn all(&self) -> Vec<Arc<JobHandle>> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .values()
            .cloned()
            .collect()
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.all()
            .iter()
            .filter(|j| j.get().state() == JobState::Queued)
            .count()
    }

    /// Jobs queued or running.
    pub fn active(&self) -> usize {
        self.all()
            .iter()
            .filter(|j| !is_finished(j.get().state()))
            .count()
    }

    /// Asks a queued or running job to stop; an interrupted job becomes cancelled.
    pub fn cancel(&self, id: &str) -> Result<Job, AdminError> {
        let handle = self.get(id)?;
        let job = handle.get();
        match job.state() {
            JobState::Queued | JobState::Running => {
                handle.cancel.store(true, Ordering::Release);
            }
            JobState::Interrupted => {
                handle.update(false, |j| j.set_state(JobState::Cancelled));
            }
            s => {
                return Err(AdminError::JobFinished {
                    id: id.to_string(),
                    state: state_name(s),
                })
            }
        }
        Ok(handle.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::manifest::ShardManifest;
    use crate::dataset::Subset;

    fn shard(i: u64) -> ClosedShard {
        ClosedShard {
            subset: Subset::Sft,
            shard: ShardManifest {
                path: format!("sft-{i:06}.tar.zst"),
                index: Some(format!("sft-{i:06}.tar.zst.idx")),
                samples: 3,
                bytes: 100 + i,
                sha256: "0".repeat(64),
                index_sha256: Some("1".repeat(64)),
                categories: "012".into(),
                ..Default::default()
            },
            max_turns: 0,
        }
    }

    #[test]
    fn jobs_found_running_are_interrupted_and_keep_their_logged_shards() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_str().unwrap();
        let jobs = Jobs::load(state, 1).unwrap();
        let request = ReshardRequest {
            dataset: "d".into(),
            shard_samples: 3,
            destination: "/out".into(),
            ..Default::default()
        };
        let h = jobs.create(request.clone(), 9, "sha256:v");
        h.update(false, |j| j.set_state(JobState::Running));
        h.record_shard(Some(shard(0)));
        h.record_shard(Some(shard(1)));
        // A line cut short by the crash is ignored.
        let log = dir.path().join("jobs/job-1.shards");
        let mut text = std::fs::read(&log).unwrap();
        text.extend_from_slice(b"{\"subset\": \"sft\", \"sha");
        std::fs::write(&log, text).unwrap();

        let again = Jobs::load(state, 1).unwrap();
        let h = again.get("job-1").unwrap();
        let job = h.get();
        assert_eq!(job.state(), JobState::Interrupted);
        assert_eq!(job.request, Some(request.clone()));
        assert_eq!(job.source_version, "sha256:v");
        assert_eq!(h.shards(), [shard(0), shard(1)]);
        assert_eq!(again.create(request, 9, "sha256:v").get().id, "job-2");
        assert!(matches!(
            again.cancel("job-9"),
            Err(AdminError::UnknownJob { .. })
        ));
        assert_eq!(again.cancel("job-1").unwrap().state(), JobState::Cancelled);
    }
}
