//! The daemon-wide memory budget for batches in flight (`max_inflight_bytes`).
//!
//! A stream is admitted with a base charge of [`stream_base`] bytes, three times its
//! largest batch, which it keeps while it lasts: one batch's tensors, its encoded
//! message, and the message before it, which gRPC's encoding buffer keeps until it
//! encodes the next. The base covers one batch in flight at a time, from the submission
//! of its samples to the workers until gRPC asks for the stream's next message. A
//! stream prepares more batches ahead only with extra charges of [`batch_charge`]
//! bytes, taken when the budget has room now and never waited for.
//!
//! So the only wait is admission, in arrival order; an admitted stream always has its
//! base, so every stream keeps moving, and the sum of the charges never passes the
//! budget, whatever the number of streams or their batch sizes.
//!
//! Charges are counted in KiB, the semaphore's unit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes an extra batch of `tensor_bytes` (its tensors' size) is charged: twice, since
/// its tensors exist twice while it is collated (the samples' buffers and the batch)
/// and while it is sent (the batch and its encoded message).
pub fn batch_charge(tensor_bytes: u64) -> u64 {
    tensor_bytes.saturating_mul(2)
}

/// A stream's base charge, for its largest batch of `largest_bytes`: the batch charge
/// and the previous message kept by gRPC's encoding buffer.
pub fn stream_base(largest_bytes: u64) -> u64 {
    batch_charge(largest_bytes).saturating_add(largest_bytes)
}

/// The budget, shared by every stream.
#[derive(Debug)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    limit: u64,
    /// The semaphore's permits: `limit` in KiB.
    units: u32,
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
    /// Times a stream waited for room to be admitted.
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

/// What one batch in flight holds: the stream's base, which covers one batch at a
/// time, or an extra charge. Given back when dropped.
#[derive(Debug)]
pub enum BatchCharge {
    /// The stream's one-batch slot.
    Base(OwnedSemaphorePermit),
    /// Room taken from the budget for a batch ahead.
    Extra(Charge),
}

/// A stream's share of the budget: its base charge (until the producer hands it to the
/// transport, which keeps it until the stream ends) and the one-batch slot it covers.
#[derive(Debug)]
pub struct StreamBudget {
    budget: Arc<MemoryBudget>,
    base: Option<Charge>,
    slot: Arc<Semaphore>,
}

impl StreamBudget {
    /// Admits a stream whose largest batch has `largest_bytes` of tensors, waiting for
    /// room behind the streams that asked first.
    pub async fn admit(budget: Arc<MemoryBudget>, largest_bytes: u64) -> StreamBudget {
        let base = budget.charge(stream_base(largest_bytes)).await;
        StreamBudget {
            budget,
            base: Some(base),
            slot: Arc::new(Semaphore::new(1)),
        }
    }

    /// A charge for a batch of `tensor_bytes` now: the base slot if it is free, else
    /// extra room if the budget has it.
    pub fn try_batch(&self, tensor_bytes: u64) -> Option<BatchCharge> {
        if let Ok(p) = self.slot.clone().try_acquire_owned() {
            return Some(BatchCharge::Base(p));
        }
        self.budget
            .try_charge(batch_charge(tensor_bytes))
            .map(BatchCharge::Extra)
    }

    /// The base slot, once the batch that holds it is on its way (gRPC asked for the
    /// stream's next message). Waits on this stream alone.
    pub async fn batch(&self) -> BatchCharge {
        let p = self.slot.clone().acquire_owned().await;
        BatchCharge::Base(p.expect("a stream's slot is never closed"))
    }

    /// The base charge, once: for the transport to keep until the stream ends.
    pub fn take_base(&mut self) -> Option<Charge> {
        self.base.take()
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> MemoryBudget {
        let units = (limit / 1024).clamp(1, u32::MAX as u64) as u32;
        MemoryBudget {
            permits: Arc::new(Semaphore::new(units as usize)),
            limit,
            units,
            counters: Arc::default(),
        }
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

    /// A charge of `bytes`, waiting for room behind the streams that asked first (a
    /// stream's admission).
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
        bytes.div_ceil(1024).clamp(1, self.units as u64) as u32
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
    async fn a_stream_has_its_base_slot_and_extras_only_when_there_is_room() {
        let budget = Arc::new(MemoryBudget::new(10 << 20));
        // Largest batch 2 MiB: a base of 6 MiB, extras of 4 MiB.
        let stream = StreamBudget::admit(budget.clone(), 2 << 20).await;
        assert_eq!(budget.stats().in_use, 6 << 20);
        let first = stream.try_batch(2 << 20).expect("the base slot");
        assert!(matches!(first, BatchCharge::Base(_)));
        let second = stream.try_batch(2 << 20).expect("room for an extra");
        assert!(matches!(second, BatchCharge::Extra(_)));
        assert!(stream.try_batch(2 << 20).is_none(), "no more room");
        // The base slot comes back when its batch is done with, and no sooner.
        let waiting = tokio::spawn(async move {
            let charge = stream.batch().await;
            (stream, charge)
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        let (mut stream, third) = waiting.await.unwrap();
        assert!(matches!(third, BatchCharge::Base(_)));
        let base = stream.take_base().expect("the base, once");
        assert!(stream.take_base().is_none());
        drop((second, third, stream));
        assert_eq!(
            budget.stats().in_use,
            6 << 20,
            "the transport keeps the base"
        );
        drop(base);
        assert_eq!(budget.stats().in_use, 0);
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
