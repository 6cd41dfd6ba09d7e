//! The CPU worker pool: OS threads shared by every stream, fair across them. Each stream
//! owns a bounded queue of jobs; workers take jobs from the streams in round-robin
//! order, so a stream with a deep queue cannot starve one with a shallow queue. Decode,
//! resize and zstd work runs here, never on tokio's threads.
//!
//! Sits between prefetch (which submits sample jobs in plan order) and collation (which
//! the worker finishing a batch's last sample performs).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A unit of CPU work.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

struct Queue {
    id: u64,
    jobs: VecDeque<Job>,
    capacity: usize,
}

#[derive(Default)]
struct State {
    queues: VecDeque<Queue>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    space: tokio::sync::Notify,
    busy: AtomicUsize,
    done: AtomicU64,
}

/// Use of the pool, for stats and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Worker threads.
    pub workers: usize,
    /// Workers running a job now.
    pub busy: usize,
    /// Jobs waiting in all queues.
    pub queued: usize,
    /// Streams with a queue.
    pub streams: usize,
    /// Jobs finished since start.
    pub completed: u64,
}

/// The shared pool of worker threads.
pub struct WorkerPool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    workers: usize,
    next_id: AtomicU64,
}

impl WorkerPool {
    /// Starts `workers` threads (at least one).
    pub fn new(workers: usize) -> Arc<WorkerPool> {
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            space: tokio::sync::Notify::new(),
            busy: AtomicUsize::new(0),
            done: AtomicU64::new(0),
        });
        let threads = (0..workers)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("editfeed-worker-{i}"))
                    .spawn(move || worker_loop(&shared))
                    .expect("spawning a worker thread")
            })
            .collect();
        Arc::new(WorkerPool {
            shared,
            threads: Mutex::new(threads),
            workers,
            next_id: AtomicU64::new(1),
        })
    }

    /// Opens a queue for one stream holding at most `capacity` waiting jobs.
    pub fn open_queue(self: &Arc<Self>, capacity: usize) -> StreamQueue {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut st = self.shared.state.lock().expect("pool lock");
        st.queues.push_back(Queue {
            id,
            jobs: VecDeque::new(),
            capacity: capacity.max(1),
        });
        StreamQueue {
            pool: self.clone(),
            id,
        }
    }

    /// Current use.
    pub fn stats(&self) -> PoolStats {
        let st = self.shared.state.lock().expect("pool lock");
        PoolStats {
            workers: self.workers,
            busy: self.shared.busy.load(Ordering::Relaxed),
            queued: st.queues.iter().map(|q| q.jobs.len()).sum(),
            streams: st.queues.len(),
            completed: self.shared.done.load(Ordering::Relaxed),
        }
    }

    /// Worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Stops the workers after the jobs already taken; queued jobs are dropped.
    pub fn shutdown(&self) {
        self.shared.state.lock().expect("pool lock").shutdown = true;
        self.shared.work.notify_all();
        for t in self.threads.lock().expect("threads lock").drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn worker_loop(shared: &Shared) {
    loop {
        let job = {
            let mut st = shared.state.lock().expect("pool lock");
            loop {
                if st.shutdown {
                    return;
                }
                // Round robin: take from the first queue with work, then move it to the
                // back so the next worker serves the next stream.
                if let Some(pos) = st.queues.iter().position(|q| !q.jobs.is_empty()) {
                    let mut q = st.queues.remove(pos).expect("position is valid");
                    let job = q.jobs.pop_front().expect("queue is non-empty");
                    st.queues.push_back(q);
                    break job;
                }
                st = shared.work.wait(st).expect("pool lock");
            }
        };
        shared.space.notify_waiters();
        shared.busy.fetch_add(1, Ordering::Relaxed);
        // A panicking job must not take the worker down with it; the job's own result
        // channel reports the failure (its sender is dropped).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        shared.busy.fetch_sub(1, Ordering::Relaxed);
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// One stream's handle on the pool. Dropping it discards the stream's waiting jobs, so a
/// client that leaves frees its share at once.
pub struct StreamQueue {
    pool: Arc<WorkerPool>,
    id: u64,
}

impl StreamQueue {
    /// Queues a job, waiting (asynchronously) while the stream's queue is full.
    pub async fn submit(&self, job: Job) {
        let mut job = Some(job);
        loop {
            let notified = self.pool.shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.pool.shared.state.lock().expect("pool lock");
                let q = st
                    .queues
                    .iter_mut()
                    .find(|q| q.id == self.id)
                    .expect("queue is open");
                if q.jobs.len() < q.capacity {
                    q.jobs.push_back(job.take().expect("job is submitted once"));
                    drop(st);
                    self.pool.shared.work.notify_one();
                    return;
                }
            }
            notified.await;
        }
    }

    /// Jobs of this stream waiting for a worker.
    pub fn queued(&self) -> usize {
        let st = self.pool.shared.state.lock().expect("pool lock");
        st.queues
            .iter()
            .find(|q| q.id == self.id)
            .map_or(0, |q| q.jobs.len())
    }
}

impl Drop for StreamQueue {
    fn drop(&mut self) {
        let mut st = self.pool.shared.state.lock().expect("pool lock");
        if let Some(pos) = st.queues.iter().position(|q| q.id == self.id) {
            let q = st.queues.remove(pos).expect("position is valid");
            drop(st);
            drop(q); // drops the waiting jobs outside the lock
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_off_the_runtime_and_streams_share_fairly() {
        let pool = WorkerPool::new(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        // Block the single worker so both queues fill before anything runs.
        let g = gate.clone();
        let a = pool.open_queue(8);
        let b = pool.open_queue(8);
        a.submit(Box::new(move || {
            let (m, c) = &*g;
            let mut open = m.lock().unwrap();
            while !*open {
                open = c.wait(open).unwrap();
            }
        }))
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        for i in 0..4 {
            let o = order.clone();
            a.submit(Box::new(move || o.lock().unwrap().push(format!("a{i}"))))
                .await;
        }
        for i in 0..2 {
            let o = order.clone();
            b.submit(Box::new(move || o.lock().unwrap().push(format!("b{i}"))))
                .await;
        }
        let main_thread = std::thread::current().id();
        let (tx, rx) = tokio::sync::oneshot::channel();
        b.submit(Box::new(move || {
            let _ = tx.send(std::thread::current().id());
        }))
        .await;
        {
            let (m, c) = &*gate;
            *m.lock().unwrap() = true;
            c.notify_all();
        }
        let worker_thread = rx.await.unwrap();
        assert_ne!(worker_thread, main_thread);
        let order = order.lock().unwrap().clone();
        // Interleaved, not all of a first.
        assert_eq!(order[..4], ["b0", "a0", "b1", "a1"], "{order:?}");
    }

    #[tokio::test]
    async fn a_full_queue_waits_and_a_dropped_queue_discards_its_jobs() {
        let pool = WorkerPool::new(1);
        let ran = Arc::new(AtomicUsize::new(0));
        let (block_tx, block_rx) = std::sync::mpsc::channel::<()>();
        let q = pool.open_queue(2);
        q.submit(Box::new(move || {
            let _ = block_rx.recv();
        }))
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        for _ in 0..2 {
            let r = ran.clone();
            q.submit(Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }))
            .await;
        }
        let r = ran.clone();
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            q.submit(Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            })),
        )
        .await;
        assert!(blocked.is_err(), "a third job must wait for space");
        assert_eq!(q.queued(), 2);
        drop(q);
        block_tx.send(()).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "jobs of a dropped queue never run"
        );
        assert_eq!(pool.stats().streams, 0);
    }
}
