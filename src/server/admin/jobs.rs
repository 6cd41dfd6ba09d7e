//! Background jobs of the Admin service: each has an id, its request, a state and
//! progress published through a watch channel (so `WatchJob` streams every change) and
//! persisted under `<state_dir>/jobs/<id>.json`. A job found queued or running when the
//! daemon starts was interrupted by a crash or kill; submitting the same request again
//! runs it to completion under the same id, taking over the shards it had completed
//! (each is appended to `<state_dir>/jobs/<id>.shards`, one JSON line, as it closes).
//!
//! The CPU budget: jobs run on dedicated std threads at low priority, at most
//! `reshard_threads` at once; the others wait in the queue.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::AdminError;
use crate::dataset::reshard::ClosedShard;
use crate::server::registry::RegistryError;
use crate::transport::proto::v1::{Job, JobState, ReshardPriority, ReshardRequest};

/// How often running progress is written to the job's file.
const SAVE_EVERY: Duration = Duration::from_secs(1);

fn literals_were_coded() -> bool {
    true
}

/// A job as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRecord {
    id: String,
    state: String,
    dataset: String,
    shard_samples: u64,
    shard_bytes: u64,
    destination: String,
    level: i32,
    /// Missing in records written before frames could be written without coded
    /// literals, whose jobs coded them: a resumed job keeps writing what it started.
    #[serde(default = "literals_were_coded")]
    compress_literals: bool,
    transcode_edits: String,
    max_side: u32,
    subsets: Vec<String>,
    activate: bool,
    #[serde(default)]
    priority: String,
    samples_done: u64,
    samples_total: u64,
    bytes_written: u64,
    shards_done: u64,
    error: String,
    version: String,
    created_unix: u64,
    #[serde(default)]
    samples_resumed: u64,
    #[serde(default)]
    source_version: String,
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Unspecified => "unspecified",
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
        JobState::Interrupted => "interrupted",
    }
}

fn state_from_name(s: &str) -> JobState {
    [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Interrupted,
    ]
    .into_iter()
    .find(|x| state_name(*x) == s)
    .unwrap_or(JobState::Unspecified)
}

/// Whether a job in this state will not change any more by itself.
pub fn is_finished(s: JobState) -> bool {
    matches!(
        s,
        JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::Interrupted
    )
}

impl JobRecord {
    fn from_job(j: &Job) -> JobRecord {
        let r = j.request.clone().unwrap_or_default();
        let priority = r.priority().as_str_name().into();
        JobRecord {
            id: j.id.clone(),
            state: state_name(j.state()).into(),
            dataset: r.dataset,
            shard_samples: r.shard_samples,
            shard_bytes: r.shard_bytes,
            destination: r.destination,
            level: r.level,
            compress_literals: r.compress_literals,
            transcode_edits: r.transcode_edits,
            max_side: r.max_side,
            subsets: r.subsets,
            activate: r.activate,
            priority,
            samples_done: j.samples_done,
            samples_total: j.samples_total,
            bytes_written: j.bytes_written,
            shards_done: j.shards_done,
            error: j.error.clone(),
            version: j.version.clone(),
            created_unix: j.created_unix,
            samples_resumed: j.samples_resumed,
            source_version: j.source_version.clone(),
        }
    }

    fn into_job(self) -> Job {
        Job {
            id: self.id,
            state: state_from_name(&self.state) as i32,
            request: Some(ReshardRequest {
                dataset: self.dataset,
                shard_samples: self.shard_samples,
                shard_bytes: self.shard_bytes,
                destination: self.destination,
                level: self.level,
                compress_literals: self.compress_literals,
                transcode_edits: self.transcode_edits,
                max_side: self.max_side,
                subsets: self.subsets,
                activate: self.activate,
                priority: ReshardPriority::from_str_name(&self.priority).unwrap_or_default() as i32,
            }),
            samples_done: self.samples_done,
            samples_total: self.samples_total,
            bytes_written: self.bytes_written,
            shards_done: self.shards_done,
            rate: 0.0,
            eta_seconds: 0.0,
            error: self.error,
            version: self.version,
            created_unix: self.created_unix,
            samples_resumed: self.samples_resumed,
            source_version: self.source_version,
        }
    }
}

/// One job: its published status and its cancel flag.
pub struct JobHandle {
    status: watch::Sender<Job>,
    shards: Mutex<Vec<ClosedShard>>,
    shards_file: Option<PathBuf>,
    cancel: AtomicBool,
    file: Option<PathBuf>,
    saved: Mutex<Option<Instant>>,
}

impl JobHandle {
    /// The job's status now.
    pub fn get(&self) -> Job {
        self.status.borrow().clone()
    }

    /// A receiver of every change.
    pub fn watch(&self) -> watch::Receiver<Job> {
        self.status.subscribe()
    }

    /// The shards the job has completed (or an interrupted run of it had).
    pub fn shards(&self) -> Vec<ClosedShard> {
        self.shards.lock().expect("job shards lock").clone()
    }

    /// Records a completed shard at once, appending it to the job's shard log (a
    /// resumed run takes it over), or forgets them all (`None`, when a run starts and
    /// reports again those it takes over).
    pub fn record_shard(&self, shard: Option<ClosedShard>) {
        let mut shards = self.shards.lock().expect("job shards lock");
        let logged = match &shard {
            Some(s) => self.shards_file.as_ref().map(|path| {
                let mut line = serde_json::to_vec(s).expect("a shard serialises");
                line.push(b'\n');
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, &line))
                    .map_err(|e| (path, e))
            }),
            None => self
                .shards_file
                .as_ref()
                .map(|path| std::fs::write(path, b"").map_err(|e| (path, e))),
        };
        if let Some(Err((path, e))) = logged {
            // The shard is then written again by a resumed run.
            tracing::warn!(path = %path.display(), error = %e, "job shard log not written");
        }
        match shard {
            Some(s) => shards.push(s),
            None => shards.clear(),
        }
    }

    /// Whether a cancel was asked for.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    /// Changes the job and persists the change (progress at most once a second).
    pub fn update(&self, progress_only: bool, f: impl FnOnce(&mut Job)) {
        self.status.send_modify(f);
        let mut saved = self.saved.lock().expect("job save lock");
        if progress_only && saved.is_some_and(|t| t.elapsed() < SAVE_EVERY) {
            return;
        }
        *saved = Some(Instant::now());
        if let Err(e) = self.save() {
            tracing::warn!(error = %e, "job state not saved");
        }
    }

    fn save(&self) -> Result<(), RegistryError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let json =
            serde_json::to_vec_pretty(&JobRecord::from_job(&self.get())).expect("a job serialises");
        crate::dataset::writer::write_atomic(path, &json).map_err(|e| RegistryError::State {
            path: path.clone(),
            why: e.to_string(),
        })
    }
}

/// The shards a job's log records, up to the first line that does not parse (a line cut
/// short by a crash).
fn read_shard_log(path: &Path) -> Vec<ClosedShard> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map_while(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Limits how many jobs run at once.
struct Budget {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A running job's share of the budget; returned on drop.
struct Permit<'a>(&'a Budget);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().expect("budget lock") += 1;
        self.0.freed.notify_one();
    }
}

impl Budget {
    /// Waits for a free thread; `None` when the job was cancelled while waiting.
    fn acquire(&self, job: &JobHandle) -> Option<Permit<'_>> {
        let mut free = self.free.lock().expect("budget lock");
        loop {
            if job.cancelled() {
                return None;
            }
            if *free > 0 {
                *free -= 1;
                return Some(Permit(self));
            }
            free = self
                .freed
                .wait_timeout(free, Duration::from_millis(100))
                .expect("budget lock")
                .0;
        }
    }
}

/// Every job of the daemon.
pub struct Jobs {
    dir: Option<PathBuf>,
    jobs: Mutex<BTreeMap<u64, Arc<JobHandle>>>,
    next: AtomicU64,
    budget: Arc<Budget>,
    claiming: Mutex<()>,
}

/// What a job's work returns on success: the new dataset version.
pub type JobResult = Result<String, JobFailure>;

/// Why a job's work stopped.
#[derive(Debug)]
pub enum JobFailure {
    /// The cancel flag was seen.
    Cancelled,
    /// Anything else, as the message users see.
    Failed(String),
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
            budget: Arc::new(Budget {
                free: Mutex::new(threads.max(1)),
                freed: Condvar::new(),
            }),
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
        let handle = Arc::new(JobHandle {
            status: watch::channel(job).0,
            shards: Mutex::new(shards),
            shards_file,
            cancel: AtomicBool::new(false),
            file,
            saved: Mutex::new(None),
        });
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

    /// Runs `work` for a queued job on a dedicated low-priority thread once the budget
    /// allows, and records how it ended.
    pub fn spawn(
        &self,
        handle: Arc<JobHandle>,
        work: impl FnOnce(&JobHandle) -> JobResult + Send + 'static,
    ) -> Result<(), AdminError> {
        let budget = self.budget.clone();
        let job = handle.get();
        let id = job.id;
        let priority = job.request.map(|r| r.priority()).unwrap_or_default();
        std::thread::Builder::new()
            .name(format!("editfeed-{id}"))
            .spawn(move || {
                lower_priority(priority);
                let Some(_permit) = budget.acquire(&handle) else {
                    handle.update(false, |j| j.set_state(JobState::Cancelled));
                    return;
                };
                handle.update(false, |j| j.set_state(JobState::Running));
                tracing::info!(job = %id, "job started");
                let result = work(&handle);
                handle.update(false, |j| {
                    j.eta_seconds = 0.0;
                    match result {
                        Ok(version) => {
                            j.set_state(JobState::Succeeded);
                            j.version = version;
                        }
                        Err(JobFailure::Cancelled) => j.set_state(JobState::Cancelled),
                        Err(JobFailure::Failed(why)) => {
                            j.set_state(JobState::Failed);
                            j.error = why;
                        }
                    }
                });
                let job = handle.get();
                tracing::info!(job = %id, state = state_name(job.state()), error = %job.error, "job ended");
            })
            .map(|_| ())
            .map_err(|e| AdminError::Internal(format!("cannot start a job thread: {e}")))
    }
}

/// Lowers this thread's CPU priority as asked: `Idle` is SCHED_IDLE (it runs on CPU
/// time nothing else wants, and any serving thread that wakes takes the CPU at once),
/// `Low` is nice 10.
fn lower_priority(priority: ReshardPriority) {
    #[cfg(target_os = "linux")]
    // SAFETY: these calls only change the scheduling of the calling thread (by its id).
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
        let ok = match priority {
            ReshardPriority::Unspecified | ReshardPriority::Idle => {
                let param = libc::sched_param { sched_priority: 0 };
                libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) == 0
            }
            ReshardPriority::Low => {
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10) == 0
            }
            ReshardPriority::Normal => true,
        };
        if !ok {
            tracing::warn!(?priority, "cannot lower the job thread's priority");
        }
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
    fn a_record_from_before_the_literals_switch_keeps_coded_literals() {
        let job = Job {
            id: "job-1".into(),
            request: Some(ReshardRequest {
                dataset: "d".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut json = serde_json::to_value(JobRecord::from_job(&job)).unwrap();
        assert_eq!(json["compress_literals"], false);
        json.as_object_mut().unwrap().remove("compress_literals");
        let old: JobRecord = serde_json::from_value(json).unwrap();
        assert!(old.into_job().request.unwrap().compress_literals);
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
