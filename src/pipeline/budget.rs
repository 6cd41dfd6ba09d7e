//! The daemon-wide memory budget for batches in flight (`max_inflight_bytes`).
//!
//! A batch is charged [`batch_charge`] bytes from the moment its samples go to the
//! worker pool until gRPC asks for the stream's next message: that covers the samples'
//! buffers, collation, the message waiting in the stream's channel and its encoded
//! copy. A stream with batches in flight takes a charge only if the budget has room
//! now, and otherwise delivers what it has first; a stream with nothing in flight waits
//! for room, in arrival order. So every stream keeps moving, and the sum of the charges
//! never passes the budget, whatever the number of streams or their batch sizes.
//!
//! Charges are counted in KiB, the semaphore's unit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes a batch of `tensor_bytes` (its tensors' size) is charged: twice, since its
/// tensors exist twice while it is collated (the samples' buffers and the batch) and
/// while it is sent (the batch and its encoded message).
pub fn batch_charge(tensor_bytes: u64) -> u64 {
    tensor_bytes.saturating_mul(2)
}

/// The budget, shared by every stream.
#[derive(Debug)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    limit: u64,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    in_use: AtomicU64,
    peak: AtomicU64,
    waits: AtomicU64,
}

/// What the budget reports (`admin stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStats {
    /// `max_inflight_bytes`.
    pub limit: u64,
    /// Bytes charged now.
    pub in_use: u64,
    /// The most ever charged at once.
    pub peak: u64,
    /// Times a stream with nothing in flight had to wait for room.
    pub waits: u64,
}

/// A batch's charge; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    counters: Arc<Counters>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        let now = self.counters.in_use.fetch_sub(self.bytes, Ordering::AcqRel) - self.bytes;
        crate::metrics::inflight_bytes(now);
    }
}

fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).clamp(1, u32::MAX as u64) as u32
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> MemoryBudget {
        let units = (limit / 1024).clamp(1, Semaphore::MAX_PERMITS as u64) as usize;
        MemoryBudget {
            permits: Arc::new(Semaphore::new(units)),
            limit,
            counters: Arc::default(),
        }
    }

    /// `max_inflight_bytes`.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether a charge of `bytes` can ever be taken.
    pub fn fits(&self, bytes: u64) -> bool {
        bytes <= self.limit
    }

    /// A charge of `bytes` if the budget has room now.
    pub fn try_charge(&self, bytes: u64) -> Option<Charge> {
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(self.units(bytes))
            .ok()?;
        Some(self.charged(permit, bytes))
    }

    /// A charge of `bytes`, waiting for room behind the streams that asked first.
    pub async fn charge(&self, bytes: u64) -> Charge {
        if let Some(c) = self.try_charge(bytes) {
            return c;
        }
        self.counters.waits.fetch_add(1, Ordering::Relaxed);
        crate::metrics::budget_wait();
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(self.units(bytes))
            .await
            .expect("the budget's semaphore is never closed");
        self.charged(permit, bytes)
    }

    /// The counters now.
    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            limit: self.limit,
            in_use: self.counters.in_use.load(Ordering::Acquire),
            peak: self.counters.peak.load(Ordering::Acquire),
            waits: self.counters.waits.load(Ordering::Relaxed),
        }
    }

    /// Permits for `bytes`, at most the whole budget (so a charge larger than the
    /// budget, which requests are refused for, could still not wait forever).
    fn units(&self, bytes: u64) -> u32 {
        let total = (self.limit / 1024).clamp(1, u32::MAX as u64) as u32;
        kib(bytes).min(total)
    }

    fn charged(&self, permit: OwnedSemaphorePermit, bytes: u64) -> Charge {
        let now = self.counters.in_use.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.counters.peak.fetch_max(now, Ordering::AcqRel);
        crate::metrics::inflight_bytes(now);
        Charge {
            _permit: permit,
            bytes,
            counters: self.counters.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn charges_stay_within_the_limit_and_come_back_when_dropped() {
        let budget = MemoryBudget::new(10 << 20);
        let a = budget.try_charge(6 << 20).expect("room for the first");
        assert!(
            budget.try_charge(6 << 20).is_none(),
            "a second would pass the limit"
        );
        let b = budget.try_charge(4 << 20).expect("room for a smaller one");
        assert_eq!(budget.stats().in_use, 10 << 20);
        drop(a);
        assert_eq!(budget.stats().in_use, 4 << 20);
        let c = budget.try_charge(6 << 20).expect("room again");
        drop((b, c));
        let s = budget.stats();
        assert_eq!((s.in_use, s.peak, s.waits), (0, 10 << 20, 0));
    }

    #[tokio::test]
    async fn a_waiting_charge_is_served_when_room_comes_back() {
        let budget = Arc::new(MemoryBudget::new(8 << 20));
        let held = budget.try_charge(6 << 20).unwrap();
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.charge(4 << 20).await.bytes })
        };
        while budget.stats().waits == 0 {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // The 2 MiB left go to the stream waiting, not to a later smaller request.
        assert!(budget.try_charge(1 << 20).is_none());
        drop(held);
        assert_eq!(waiter.await.unwrap(), 4 << 20);
        assert_eq!(budget.stats().waits, 1);
    }
}
