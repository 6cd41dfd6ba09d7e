//! A remote object read as a blocking stream: a task on the store's I/O runtime
//! ([`Core::stream`]) fills a bounded [`ChunkQueue`], and [`RemoteReader`] drains it
//! on the calling thread. Part of the first stage of the flow: STORE -> shard reader ->
//! ...

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::io::IoRuntime;
use super::remote::Core;
use super::StoreError;

/// A remote object as a `Read`: takes chunks off the queue as they arrive; dropping it
/// stops the task that fetches them.
pub(super) struct RemoteReader {
    queue: Arc<ChunkQueue>,
    current: Bytes,
    task: tokio::task::JoinHandle<()>,
}

impl RemoteReader {
    /// Starts streaming object `name` on the I/O runtime, at most 16 chunks ahead of
    /// the reader.
    pub(super) fn start(core: Arc<Core>, io: &IoRuntime, name: &str) -> RemoteReader {
        let queue = Arc::new(ChunkQueue::new(16));
        let (q, n) = (queue.clone(), name.to_string());
        let task = io.spawn(async move { core.stream(&n, q).await });
        RemoteReader {
            queue,
            current: Bytes::new(),
            task,
        }
    }
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.queue.pop() {
                Ok(Some(b)) => self.current = b,
                Ok(None) => return Ok(0),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

impl Drop for RemoteReader {
    fn drop(&mut self) {
        self.queue.close();
        self.task.abort();
    }
}

/// A bounded queue of body chunks from an async producer to a blocking reader.
pub(crate) struct ChunkQueue {
    state: std::sync::Mutex<ChunkState>,
    ready: std::sync::Condvar,
    space: Semaphore,
}

#[derive(Default)]
struct ChunkState {
    chunks: std::collections::VecDeque<Bytes>,
    end: Option<Result<(), StoreError>>,
    closed: bool,
}

impl ChunkQueue {
    /// A queue holding at most `chunks` chunks.
    pub fn new(chunks: usize) -> ChunkQueue {
        ChunkQueue {
            state: std::sync::Mutex::new(ChunkState::default()),
            ready: std::sync::Condvar::new(),
            space: Semaphore::new(chunks.max(1)),
        }
    }

    /// Adds a chunk, waiting (asynchronously) for room; false when the reader is gone.
    pub(super) async fn push(&self, b: Bytes) -> bool {
        match self.space.acquire().await {
            // The reader gives the permit back when it takes the chunk.
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        let mut st = self.state.lock().expect("chunk queue lock");
        if st.closed {
            return false;
        }
        st.chunks.push_back(b);
        self.ready.notify_one();
        true
    }

    pub(super) fn finish(&self, result: Result<(), StoreError>) {
        let mut st = self.state.lock().expect("chunk queue lock");
        st.end = Some(result);
        self.ready.notify_one();
    }

    /// The next chunk, blocking; `Ok(None)` at the end of the object.
    pub fn pop(&self) -> Result<Option<Bytes>, StoreError> {
        let mut st = self.state.lock().expect("chunk queue lock");
        loop {
            if let Some(b) = st.chunks.pop_front() {
                self.space.add_permits(1);
                return Ok(Some(b));
            }
            match st.end.take() {
                Some(Ok(())) => {
                    st.end = Some(Ok(()));
                    return Ok(None);
                }
                Some(Err(e)) => {
                    st.end = Some(Ok(()));
                    return Err(e);
                }
                None => st = self.ready.wait(st).expect("chunk queue lock"),
            }
        }
    }

    /// Tells the producer to stop.
    pub fn close(&self) {
        self.state.lock().expect("chunk queue lock").closed = true;
        self.space.close();
    }
}
