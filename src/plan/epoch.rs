//! Epoch streams: each subset as an endless sequence of equally long epochs, each a
//! fresh permutation of the subset's canonical ordinals (after per-category
//! resampling), built on demand and kept in a small cache.
//!
//! Part of the plan stage (store -> shard reader -> **plan** -> prefetch -> ...): the
//! schedule (`schedule.rs`) says how many samples a subset has given out before a step;
//! this module turns that position into (epoch, offset, ordinal). Because every epoch
//! of a subset has the same length, the position -> epoch map is a division, so
//! resuming at any step needs at most the one or two epochs it touches.
//!
//! How an epoch is built, for subset `s`, epoch `e` (all randomness from
//! [`crate::rng`], keyed by the plan seed):
//! 1. Slots. Without category weights every ordinal has one slot. With them, a category
//!    of `n` samples and weight `w` gets `round(n * w)` slots: `floor(round(n*w) / n)`
//!    copies of every member plus `r` extra members. The extras of successive epochs
//!    are consecutive runs of `r` from an endless chain of member permutations (chain
//!    link `j` keyed by `(seed, s, j, category id, CategoryResample)`; 8 stands for
//!    "no category"), so every member gets an extra before any gets a second one.
//! 2. Order. The slots, in canonical order, are permuted by a Fisher-Yates shuffle keyed
//!    by `(seed, s, e, 0, Shuffle)`; in block mode the same stream first shuffles the
//!    order of blocks, then shuffles inside each window of blocks.

use std::sync::{Arc, Mutex};

use crate::dataset::{Category, Subset};
use crate::rng::{Purpose, Rng};

use super::{PlanError, SampleRef};

/// Built epochs kept per subset. Ranks of one step read the same one or two epochs,
/// so a few suffice; more would only hold memory.
pub const EPOCH_CACHE_SIZE: usize = 4;

/// The largest subset and epoch, in samples: ordinals are stored as `u32`, which
/// halves the memory of a built epoch.
pub const MAX_EPOCH_SLOTS: u64 = u32::MAX as u64;

/// The resampling key used for samples that have no category.
const NO_CATEGORY_KEY: u64 = Category::ALL.len() as u64;

/// The members of one category with their per-epoch slot counts.
#[derive(Debug)]
struct Class {
    /// Category id, or [`NO_CATEGORY_KEY`].
    key: u64,
    /// Canonical ordinals, ascending.
    members: Vec<u32>,
    /// Slots every member gets in every epoch.
    copies: u32,
    /// Further slots per epoch, given to members in a cycling random order.
    extra: u64,
}

/// One subset's endless sequence of epochs.
#[derive(Debug)]
pub(crate) struct EpochSource {
    subset: Subset,
    seed: u64,
    len: u64,
    epoch_len: u64,
    /// `None` when every ordinal has exactly one slot per epoch.
    classes: Option<Vec<Class>>,
    /// `(block, window)` in samples and blocks, for block shuffle mode.
    block: Option<(u64, u64)>,
    /// False for an evaluation pass in canonical order: epochs are not permuted.
    shuffled: bool,
    /// Most recently used first.
    cache: Mutex<Vec<(u64, Arc<[u32]>)>>,
}

impl EpochSource {
    /// Prepares the epochs of a subset of `len` samples. `categories`, when given, has
    /// one entry per canonical ordinal; `weights` is indexed by `Category::id()`.
    pub(crate) fn new(
        subset: Subset,
        len: u64,
        categories: Option<&[Option<Category>]>,
        weights: &[f64; 8],
        seed: u64,
        block: Option<(u64, u64)>,
    ) -> Result<EpochSource, PlanError> {
        if len > MAX_EPOCH_SLOTS {
            return Err(PlanError::TooManySamples {
                subset,
                slots: len,
                max: MAX_EPOCH_SLOTS,
            });
        }
        let mut classes = None;
        let mut epoch_len = len;
        if let Some(categories) = categories {
            if categories.len() as u64 != len {
                return Err(PlanError::CategoryCount {
                    subset,
                    len,
                    categories: categories.len() as u64,
                });
            }
            let mut members: Vec<Vec<u32>> = vec![Vec::new(); Category::ALL.len() + 1];
            for (ordinal, category) in categories.iter().enumerate() {
                let key = category.map_or(NO_CATEGORY_KEY, |c| c.id() as u64);
                members[key as usize].push(ordinal as u32);
            }
            let mut list = Vec::new();
            epoch_len = 0;
            for (key, members) in members.into_iter().enumerate() {
                if members.is_empty() {
                    continue;
                }
                let n = members.len() as u64;
                let w = weights.get(key).copied().unwrap_or(1.0);
                let slots = (n as f64 * w).round();
                if slots > MAX_EPOCH_SLOTS as f64 {
                    return Err(PlanError::TooManySamples {
                        subset,
                        slots: slots as u64,
                        max: MAX_EPOCH_SLOTS,
                    });
                }
                let slots = slots as u64;
                epoch_len += slots;
                list.push(Class {
                    key: key as u64,
                    members,
                    copies: (slots / n) as u32,
                    extra: slots % n,
                });
            }
            if epoch_len > MAX_EPOCH_SLOTS {
                return Err(PlanError::TooManySamples {
                    subset,
                    slots: epoch_len,
                    max: MAX_EPOCH_SLOTS,
                });
            }
            // All weights 1 gives the same epochs as no weights; skip the bookkeeping.
            if list.iter().any(|c| c.copies != 1 || c.extra != 0) {
                classes = Some(list);
            }
        }
        if epoch_len == 0 {
            return Err(PlanError::EmptyEpoch { subset });
        }
        Ok(EpochSource {
            subset,
            seed,
            len,
            epoch_len,
            classes,
            block,
            shuffled: true,
            cache: Mutex::new(Vec::with_capacity(EPOCH_CACHE_SIZE)),
        })
    }

    /// The same source with every epoch in canonical order (an evaluation pass).
    pub(crate) fn in_canonical_order(mut self) -> EpochSource {
        self.shuffled = false;
        self
    }

    /// Samples per epoch (the same for every epoch).
    pub(crate) fn epoch_len(&self) -> u64 {
        self.epoch_len
    }

    /// The slots of epoch `epoch` in canonical order, before shuffling.
    fn slots(&self, epoch: u64) -> Vec<u32> {
        let Some(classes) = &self.classes else {
            return (0..self.len as u32).collect();
        };
        let mut counts = vec![0u32; self.len as usize];
        for class in classes {
            if class.copies > 0 {
                for &m in &class.members {
                    counts[m as usize] = class.copies;
                }
            }
            if class.extra == 0 {
                continue;
            }
            let n = class.members.len() as u128;
            let start = epoch as u128 * class.extra as u128;
            let end = start + class.extra as u128;
            // extra < n, so an epoch's run touches at most two links of the chain.
            for link in start / n..=(end - 1) / n {
                let mut chain = class.members.clone();
                let key = link as u64;
                Rng::keyed(
                    self.seed,
                    self.subset.id() as u64,
                    key,
                    class.key,
                    Purpose::CategoryResample,
                )
                .shuffle(&mut chain);
                let lo = (start.max(link * n) - link * n) as usize;
                let hi = (end.min((link + 1) * n) - link * n) as usize;
                for &m in &chain[lo..hi] {
                    counts[m as usize] += 1;
                }
            }
        }
        let mut slots = Vec::with_capacity(self.epoch_len as usize);
        for (ordinal, &c) in counts.iter().enumerate() {
            for _ in 0..c {
                slots.push(ordinal as u32);
            }
        }
        slots
    }

    /// Builds epoch `epoch` from scratch.
    fn build(&self, epoch: u64) -> Vec<u32> {
        let mut slots = self.slots(epoch);
        if !self.shuffled {
            return slots;
        }
        let mut rng = Rng::keyed(
            self.seed,
            self.subset.id() as u64,
            epoch,
            0,
            Purpose::Shuffle,
        );
        let Some((block, window)) = self.block else {
            rng.shuffle(&mut slots);
            return slots;
        };
        let block = block.min(slots.len() as u64).max(1) as usize;
        let mut order: Vec<usize> = (0..slots.len().div_ceil(block)).collect();
        rng.shuffle(&mut order);
        let mut out = Vec::with_capacity(slots.len());
        for b in order {
            out.extend_from_slice(&slots[b * block..((b + 1) * block).min(slots.len())]);
        }
        let window = (window as usize).saturating_mul(block).max(1);
        for chunk in out.chunks_mut(window) {
            rng.shuffle(chunk);
        }
        out
    }

    /// Epoch `epoch`, from the cache or freshly built.
    pub(crate) fn epoch(&self, epoch: u64) -> Arc<[u32]> {
        if let Some(hit) = self.cached(epoch) {
            return hit;
        }
        // Built outside the lock so that readers of other epochs are not held up; if
        // two threads race, both build the same thing and the first insert wins.
        let built: Arc<[u32]> = self.build(epoch).into();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cache.iter().position(|(e, _)| *e == epoch) {
            let entry = cache.remove(i);
            cache.insert(0, entry);
            return cache[0].1.clone();
        }
        cache.insert(0, (epoch, built.clone()));
        cache.truncate(EPOCH_CACHE_SIZE);
        built
    }

    fn cached(&self, epoch: u64) -> Option<Arc<[u32]>> {
        // A panic while holding the lock cannot leave the cache inconsistent (entries
        // are immutable), so a poisoned lock is still usable.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let i = cache.iter().position(|(e, _)| *e == epoch)?;
        let entry = cache.remove(i);
        let arc = entry.1.clone();
        cache.insert(0, entry);
        Some(arc)
    }

    /// Appends the samples at positions `start..start + count` of the endless stream.
    pub(crate) fn fill(&self, start: u64, count: u64, out: &mut Vec<SampleRef>) {
        let mut pos = start;
        let end = start + count;
        while pos < end {
            let epoch = pos / self.epoch_len;
            let offset = pos % self.epoch_len;
            let take = (self.epoch_len - offset).min(end - pos);
            let slots = self.epoch(epoch);
            for (i, &ordinal) in slots[offset as usize..(offset + take) as usize]
                .iter()
                .enumerate()
            {
                out.push(SampleRef {
                    subset: self.subset,
                    ordinal: ordinal as u64,
                    epoch,
                    offset: offset + i as u64,
                    turn: 0,
                });
            }
            pos += take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(pattern: &[Option<Category>], len: usize) -> Vec<Option<Category>> {
        (0..len).map(|i| pattern[i % pattern.len()]).collect()
    }

    #[test]
    fn unweighted_epochs_are_fresh_permutations() {
        let src = EpochSource::new(Subset::Sft, 1000, None, &[1.0; 8], 7, None).unwrap();
        let a = src.epoch(0);
        let b = src.epoch(1);
        assert_ne!(a, b);
        for e in [a, b] {
            let mut v = e.to_vec();
            v.sort();
            assert_eq!(v, (0..1000).collect::<Vec<u32>>());
        }
    }

    #[test]
    fn unit_weights_equal_no_weights() {
        let c = cats(
            &[Some(Category::Stylistic), None, Some(Category::TextSymbol)],
            500,
        );
        let plain = EpochSource::new(Subset::Sft, 500, None, &[1.0; 8], 3, None).unwrap();
        let unit = EpochSource::new(Subset::Sft, 500, Some(&c), &[1.0; 8], 3, None).unwrap();
        assert!(unit.classes.is_none());
        assert_eq!(plain.epoch(4), unit.epoch(4));
    }

    #[test]
    fn weights_give_exact_slots_and_cycle_fairly() {
        let c = cats(
            &[
                Some(Category::Stylistic),
                Some(Category::TextSymbol),
                Some(Category::HumanCentric),
                None,
            ],
            400,
        );
        let mut w = [1.0; 8];
        w[Category::Stylistic.id() as usize] = 2.5;
        w[Category::TextSymbol.id() as usize] = 0.3;
        w[Category::HumanCentric.id() as usize] = 0.0;
        let src = EpochSource::new(Subset::Preference, 400, Some(&c), &w, 11, None).unwrap();
        assert_eq!(src.epoch_len(), 250 + 30 + 100);
        let epochs = 10u64;
        let mut seen = vec![0u64; 400];
        for e in 0..epochs {
            let mut per_cat = [0u64; 4];
            for &o in src.epoch(e).iter() {
                seen[o as usize] += 1;
                per_cat[o as usize % 4] += 1;
            }
            assert_eq!(per_cat, [250, 30, 0, 100]);
        }
        for (o, &n) in seen.iter().enumerate() {
            let expect: &[u64] = match o % 4 {
                // 2 copies each epoch, plus 50 extras over 100 members per epoch.
                0 => &[25],
                // 30 of 100 per epoch: 3 full cycles over 10 epochs.
                1 => &[3],
                2 => &[0],
                _ => &[10],
            };
            assert!(expect.contains(&n), "ordinal {o} seen {n} times");
        }
    }

    #[test]
    fn all_zero_weights_are_refused() {
        let c = vec![Some(Category::Stylistic); 10];
        let err = EpochSource::new(Subset::Sft, 10, Some(&c), &[0.0; 8], 0, None).unwrap_err();
        assert!(err.to_string().contains("sft"), "{err}");
        let err = EpochSource::new(Subset::Sft, 11, Some(&c), &[1.0; 8], 0, None).unwrap_err();
        assert!(err.to_string().contains("11"), "{err}");
    }

    #[test]
    fn block_mode_keeps_blocks_together() {
        let src =
            EpochSource::new(Subset::MultiTurn, 1000, None, &[1.0; 8], 5, Some((10, 4))).unwrap();
        let e = src.epoch(0);
        let mut v = e.to_vec();
        v.sort();
        assert_eq!(v, (0..1000).collect::<Vec<u32>>());
        for window in e.chunks(40) {
            let mut blocks: Vec<u32> = window.iter().map(|o| o / 10).collect();
            blocks.sort();
            blocks.dedup();
            assert_eq!(blocks.len(), 4, "{window:?}");
        }
    }

    #[test]
    fn cache_is_bounded_and_fill_crosses_epochs() {
        let src = EpochSource::new(Subset::Sft, 10, None, &[1.0; 8], 1, None).unwrap();
        for e in 0..10 {
            src.epoch(e);
        }
        assert_eq!(src.cache.lock().unwrap().len(), EPOCH_CACHE_SIZE);
        let mut out = Vec::new();
        src.fill(7, 6, &mut out);
        let e0 = src.epoch(0);
        let e1 = src.epoch(1);
        let want: Vec<(u64, u64)> = (7..10)
            .map(|i| (0, e0[i] as u64))
            .chain((0..3).map(|i| (1, e1[i] as u64)))
            .collect();
        let got: Vec<(u64, u64)> = out.iter().map(|s| (s.epoch, s.ordinal)).collect();
        assert_eq!(got, want);
        assert_eq!(out[3].offset, 0);
    }
}
