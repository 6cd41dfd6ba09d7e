//! One background job of the Admin service: its status, published through a watch
//! channel and persisted to `<state_dir>/jobs/<id>.json`, its cancel flag, and the log
//! of the shards it has completed. Stage: server (Admin service).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::record::JobRecord;
use crate::dataset::writer::ClosedShard;
use crate::server::registry::RegistryError;
use crate::transport::proto::v1::Job;

/// How often running progress is written to the job's file.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// One job: its published status and its cancel flag.
pub struct JobHandle {
    status: watch::Sender<Job>,
    shards: Mutex<Vec<ClosedShard>>,
    shards_file: Option<PathBuf>,
    pub(super) cancel: AtomicBool,
    file: Option<PathBuf>,
    saved: Mutex<Option<Instant>>,
}

impl JobHandle {
    /// A handle publishing `job`, with the shards it has completed, persisted to `file`
    /// and logging shards to `shards_file` (none of them when there is no state folder).
    pub(super) fn new(
        job: Job,
        shards: Vec<ClosedShard>,
        file: Option<PathBuf>,
        shards_file: Option<PathBuf>,
    ) -> JobHandle {
        JobHandle {
            status: watch::channel(job).0,
            shards: Mutex::new(shards),
            shards_file,
            cancel: AtomicBool::new(false),
            file,
            saved: Mutex::new(None),
        }
    }

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
pub(super) fn read_shard_log(path: &Path) -> Vec<ClosedShard> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map_while(|line| serde_json::from_str(line).ok())
        .collect()
}
