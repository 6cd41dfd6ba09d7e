//! Running background jobs of the Admin service within the CPU budget of
//! `reshard_threads` threads: a job runs on a dedicated std thread at low priority,
//! takes one thread of the budget to start and every other one free then (its worker
//! threads, spawned from its thread, inherit the priority); jobs that find none free
//! wait in the queue. Stage: server (Admin service).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::record::state_name;
use super::{JobHandle, Jobs};
use crate::server::admin::AdminError;
use crate::transport::proto::v1::{JobState, ReshardPriority};

/// Limits how many jobs run at once.
pub(super) struct Budget {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A running job's share of the budget; returned on drop.
/// Threads of the budget a running job holds.
struct Permit<'a>(&'a Budget, usize);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().expect("budget lock") += self.1;
        self.0.freed.notify_all();
    }
}

impl Budget {
    /// A budget of `threads` jobs at once (at least one).
    pub(super) fn new(threads: usize) -> Budget {
        Budget {
            free: Mutex::new(threads.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free thread; `None` when the job was cancelled while waiting.
    fn acquire(&self, job: &JobHandle) -> Option<Permit<'_>> {
        let mut free = self.free.lock().expect("budget lock");
        loop {
            if job.cancelled() {
                return None;
            }
            if *free > 0 {
                let taken = std::mem::take(&mut *free);
                return Some(Permit(self, taken));
            }
            free = self
                .freed
                .wait_timeout(free, Duration::from_millis(100))
                .expect("budget lock")
                .0;
        }
    }
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
    /// Runs `work` for a queued job on a dedicated low-priority thread once the budget
    /// allows, and records how it ended.
    pub fn spawn(
        &self,
        handle: Arc<JobHandle>,
        work: impl FnOnce(&JobHandle, usize) -> JobResult + Send + 'static,
    ) -> Result<(), AdminError> {
        let budget = self.budget.clone();
        let job = handle.get();
        let id = job.id;
        let priority = job.request.map(|r| r.priority()).unwrap_or_default();
        std::thread::Builder::new()
            .name(format!("editfeed-{id}"))
            .spawn(move || {
                lower_priority(priority);
                let Some(permit) = budget.acquire(&handle) else {
                    handle.update(false, |j| j.set_state(JobState::Cancelled));
                    return;
                };
                handle.update(false, |j| j.set_state(JobState::Running));
                tracing::info!(job = %id, threads = permit.1, "job started");
                let result = work(&handle, permit.1);
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
