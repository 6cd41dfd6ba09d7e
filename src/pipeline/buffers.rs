//! Recycled batch buffers. A batch tensor is megabytes; a fresh allocation of that size
//! is mapped from the OS, and the kernel faults in and zeroes every page on first write,
//! then unmaps it when the message is sent: on the pass-through path that cost more CPU
//! than the copy itself. Collation takes its buffers from here, and the `Bytes` it hands
//! to the transport gives its buffer back when the last reference drops, so steady
//! streaming writes into memory that is already mapped.
//!
//! Bounded: at most [`MAX_BUFFERS`] buffers and [`MAX_BYTES`] bytes wait for reuse; past
//! that the smallest are freed. Buffers in use are not counted here: they belong to
//! batches in flight, which the streams' prefetch limits bound.

use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

/// Buffers kept for reuse, at most.
pub const MAX_BUFFERS: usize = 32;
/// Bytes kept for reuse, at most.
pub const MAX_BYTES: usize = 256 << 20;

/// A bounded set of free buffers.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    max_buffers: usize,
    max_bytes: usize,
}

impl BufferPool {
    /// A pool keeping at most `max_buffers` buffers and `max_bytes` bytes.
    pub fn new(max_buffers: usize, max_bytes: usize) -> Self {
        Self {
            free: Mutex::new(Vec::new()),
            max_buffers,
            max_bytes,
        }
    }

    /// The process's pool for batch tensors.
    pub fn batches() -> &'static BufferPool {
        static POOL: OnceLock<BufferPool> = OnceLock::new();
        POOL.get_or_init(|| BufferPool::new(MAX_BUFFERS, MAX_BYTES))
    }

    /// The process's pool for the pixels of single samples, copied into a batch at
    /// collation and then given back.
    pub fn samples() -> &'static BufferPool {
        static POOL: OnceLock<BufferPool> = OnceLock::new();
        POOL.get_or_init(|| BufferPool::new(MAX_BUFFERS, MAX_BYTES / 2))
    }

    /// An empty buffer with room for `len` bytes: the smallest free one that fits, or a
    /// new one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let mut buf = self.pop(len).unwrap_or_default();
        buf.clear();
        buf.reserve_exact(len);
        buf
    }

    /// A buffer of exactly `len` bytes, for a writer that overwrites every one of them:
    /// a free buffer keeps the bytes it held (those past its old length are zeroed), so
    /// reuse costs no zeroing.
    pub fn take_to_overwrite(&self, len: usize) -> Vec<u8> {
        let mut buf = self.pop(len).unwrap_or_default();
        buf.truncate(len);
        buf.resize(len, 0);
        buf
    }

    /// The smallest free buffer with room for `len` bytes, as it was given back.
    fn pop(&self, len: usize) -> Option<Vec<u8>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i)?;
        Some(free.swap_remove(best))
    }

    /// Hands `buf` out as `Bytes`; its memory comes back to this pool once every
    /// reference to it is dropped.
    pub fn freeze(&'static self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Recycled { buf, pool: self })
    }

    /// Buffers waiting for reuse, and their bytes.
    pub fn idle(&self) -> (usize, usize) {
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        (free.len(), free.iter().map(Vec::capacity).sum())
    }

    /// Keeps `buf` for reuse, within the bounds.
    pub fn give(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > self.max_bytes {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.push(buf);
        let mut total: usize = free.iter().map(Vec::capacity).sum();
        while free.len() > self.max_buffers || total > self.max_bytes {
            let smallest = free
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)
                .expect("not empty while over a bound");
            total -= free.swap_remove(smallest).capacity();
        }
    }
}

/// A pooled buffer lent to `Bytes`.
struct Recycled {
    buf: Vec<u8>,
    pool: &'static BufferPool,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked(max_buffers: usize, max_bytes: usize) -> &'static BufferPool {
        Box::leak(Box::new(BufferPool::new(max_buffers, max_bytes)))
    }

    #[test]
    fn a_dropped_batch_buffer_is_reused_with_its_memory() {
        let pool = leaked(4, 1 << 20);
        let mut buf = pool.take(1000);
        buf.extend_from_slice(&[7u8; 1000]);
        let at = buf.as_ptr();
        let bytes = pool.freeze(buf);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle().0, 0, "a slice still holds the buffer");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert_eq!(pool.idle().0, 1);
        let again = pool.take(800);
        assert_eq!(again.as_ptr(), at);
        assert!(again.is_empty());
        // Too small for the request: a new buffer, the small one stays.
        let mut small = pool.take(10);
        small.push(1);
        drop(pool.freeze(small));
        let big = pool.take(5000);
        assert!(big.capacity() >= 5000);
        assert_eq!(pool.idle().0, 1);
    }

    #[test]
    fn a_buffer_taken_to_overwrite_keeps_its_bytes_and_has_the_length_asked() {
        let pool = leaked(4, 1 << 20);
        let mut buf = pool.take_to_overwrite(100);
        assert_eq!(buf, vec![0u8; 100]);
        buf.fill(9);
        let at = buf.as_ptr();
        pool.give(buf);
        let again = pool.take_to_overwrite(60);
        assert_eq!(again.as_ptr(), at);
        assert_eq!(again, vec![9u8; 60]);
        pool.give(again);
        // Longer than it was given back: the bytes past its old length are zeroed.
        let longer = pool.take_to_overwrite(100);
        assert_eq!(longer.as_ptr(), at);
        assert_eq!(&longer[..60], &[9u8; 60]);
        assert_eq!(&longer[60..], &[0u8; 40]);
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_bounds() {
        let pool = leaked(3, 10_000);
        for cap in [1000, 2000, 3000, 4000] {
            let mut b = Vec::with_capacity(cap);
            b.push(0u8);
            drop(pool.freeze(b));
        }
        let (n, bytes) = pool.idle();
        assert_eq!(n, 3, "the smallest went first");
        assert!((9000..=10_000).contains(&bytes), "{bytes}");
        let mut b = Vec::with_capacity(9000);
        b.push(0u8);
        drop(pool.freeze(b));
        let (_, bytes) = pool.idle();
        assert!(bytes <= 10_000, "{bytes}");
        // A buffer over the byte bound is never kept.
        let mut huge = Vec::with_capacity(20_000);
        huge.push(0u8);
        drop(pool.freeze(huge));
        assert!(pool.idle().1 <= 10_000);
    }
}
