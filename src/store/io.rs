//! The store's own small tokio runtime for network I/O, and the bridge from blocking
//! callers to it. Shard reads are called from CPU worker threads (and from command-line
//! code with no runtime at all); they hand the request to this runtime and park until
//! it answers, so no thread of the gRPC server's runtime ever blocks on a store.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

/// A dedicated multi-threaded runtime, shut down without waiting when dropped.
pub(crate) struct IoRuntime {
    rt: Option<Runtime>,
    thread_prefix: String,
}

impl IoRuntime {
    /// Starts `threads` I/O threads.
    pub fn new(threads: usize) -> std::io::Result<IoRuntime> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let thread_prefix = format!("editfeed-store-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(thread_prefix.clone())
            .enable_all()
            .build()?;
        Ok(IoRuntime {
            rt: Some(rt),
            thread_prefix,
        })
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        self.rt.as_ref().expect("runtime lives until drop").handle()
    }

    /// Runs a task on the runtime.
    pub fn spawn<F>(&self, f: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle().spawn(f)
    }

    /// Runs `f` on the runtime and parks the calling thread until it finishes. Works
    /// from any thread, inside another runtime or not (it never calls that runtime's
    /// `block_on`), including this runtime's blocking threads; must not be called from
    /// an async task of this runtime.
    pub fn block_on<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn(async move {
            let _ = tx.send(f.await);
        });
        match rx.recv() {
            Ok(v) => v,
            // The task panicked (a bug in the store code): surface it on the caller.
            Err(_) => panic!("a store i/o task panicked"),
        }
    }

    fn on_own_thread(&self) -> bool {
        std::thread::current()
            .name()
            .is_some_and(|n| n == self.thread_prefix)
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            if self.on_own_thread() {
                // The last user of the store was one of its own tasks: shut the runtime
                // down from another thread rather than from under itself.
                std::thread::spawn(move || rt.shutdown_background());
            } else {
                // Never blocks, so a store may be dropped anywhere, even in a runtime.
                rt.shutdown_background();
            }
        }
    }
}
