//! The curriculum scheduler: which subset each global step draws from, and how many
//! steps each subset has had before any step, in closed form.
//!
//! Part of the plan stage (store -> shard reader -> **plan** -> prefetch -> ...): the
//! schedule turns resolved curriculum phases into a list of constant-mix segments
//! (ramps become at most [`MAX_RAMP_SEGMENTS`] stages), and the epoch streams
//! (`epoch.rs`) turn per-subset step counts into samples.
//!
//! Inside a segment the mix is a hierarchical Beatty split. With the active subsets in
//! id order and `q_k = p_k / (p_k + p_{k+1} + ...)`, subset k gets
//! `c_k(n) = floor(n * q_k + phi_k)` of the first `n` steps left over by subsets
//! `0..k`, and the last active subset gets what remains. Each `c_k` rises by 0 or 1
//! per step, so every step goes to exactly one subset, counts are monotone, any window
//! of `w` steps gives subset k within two steps of `w * p_k`, and the count before any
//! step costs a binary search over segments plus a few multiplications: no replay.
//! `q_k` is quantised to 32 fractional bits so that the arithmetic is exact integer
//! arithmetic, identical on every machine. The offsets `phi_k` come from the seed, so
//! different seeds interleave subsets differently.

use crate::rng::{Purpose, Rng};

use super::spec::ResolvedPhase;

/// The most constant-mix stages one ramp is cut into.
pub const MAX_RAMP_SEGMENTS: u64 = 64;

const ONE: u64 = 1 << 32;

/// A run of global steps with one constant mix.
#[derive(Debug, Clone)]
struct Segment {
    start: u64,
    /// Active subset ids (positive probability), in id order; only `len` are used.
    active: [u8; 3],
    len: u8,
    /// `q_k` for the active subsets but the last, as a fraction of 2^32.
    q: [u64; 3],
    /// `phi_k`, as a fraction of 2^32.
    phase: [u64; 3],
    /// Steps each subset (by id) had before this segment.
    base: [u64; 3],
}

impl Segment {
    fn new(start: u64, probs: [f64; 3], index: u64, seed: u64) -> Segment {
        let mut active = [0u8; 3];
        let mut len = 0u8;
        for (id, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                active[len as usize] = id as u8;
                len += 1;
            }
        }
        let mut q = [0u64; 3];
        let mut phase = [0u64; 3];
        for k in 0..len as usize {
            let id = active[k] as usize;
            // Summed afresh rather than by subtraction so rounding cannot drift.
            let rest: f64 = active[k..len as usize]
                .iter()
                .map(|&j| probs[j as usize])
                .sum();
            q[k] = ((probs[id] / rest) * ONE as f64).round().min(ONE as f64) as u64;
            phase[k] = Rng::keyed(seed, id as u64, index, 0, Purpose::Mix).next_u64() >> 32;
        }
        Segment {
            start,
            active,
            len,
            q,
            phase,
            base: [0; 3],
        }
    }

    /// Steps each subset (by id) gets among the first `n` steps of this segment.
    fn counts(&self, n: u64) -> [u64; 3] {
        let mut out = [0u64; 3];
        let mut rest = n;
        let last = self.len as usize - 1;
        for k in 0..last {
            // q <= 2^32 and phase < 2^32, so c <= rest and c rises by at most 1 per step.
            let c = ((rest as u128 * self.q[k] as u128 + self.phase[k] as u128) >> 32) as u64;
            out[self.active[k] as usize] = c;
            rest -= c;
        }
        out[self.active[last] as usize] = rest;
        out
    }
}

/// The whole curriculum as constant-mix segments with precomputed step counts.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    segments: Vec<Segment>,
    end: Option<u64>,
}

impl Schedule {
    /// Builds the segments of validated phases (ends strictly increasing, ramps inside
    /// their phases, every phase with some positive probability).
    pub(crate) fn new(phases: &[ResolvedPhase], seed: u64) -> Schedule {
        let mut segments: Vec<Segment> = Vec::new();
        let mut start = 0u64;
        let mut prev: Option<[f64; 3]> = None;
        let push = |segments: &mut Vec<Segment>, at: u64, probs: [f64; 3]| {
            let index = segments.len() as u64;
            let mut seg = Segment::new(at, probs, index, seed);
            if let Some(last) = segments.last() {
                let counts = last.counts(at - last.start);
                seg.base = [0, 1, 2].map(|i| last.base[i] + counts[i]);
            }
            segments.push(seg);
        };
        for phase in phases {
            let end = phase.until_step;
            let ramp = match prev {
                Some(_) => phase.ramp_steps,
                None => 0,
            };
            if let (Some(from), true) = (prev, ramp > 0) {
                let stages = ramp.min(MAX_RAMP_SEGMENTS);
                for k in 0..stages {
                    let offset = (k as u128 * ramp as u128 / stages as u128) as u64;
                    // The stage's mix is the ramp's value at the stage's middle, so the
                    // stepped ramp has the same average as the linear one.
                    let t = (k as f64 + 0.5) / stages as f64;
                    let probs = [0, 1, 2].map(|i| from[i] + (phase.probs[i] - from[i]) * t);
                    push(&mut segments, start + offset, probs);
                }
            }
            if end.is_none_or(|e| start + ramp < e) {
                push(&mut segments, start + ramp, phase.probs);
            }
            prev = Some(phase.probs);
            match end {
                Some(e) => start = e,
                None => break,
            }
        }
        Schedule {
            segments,
            end: phases.last().and_then(|p| p.until_step),
        }
    }

    /// The first step past the stream, if the last phase has an end.
    pub(crate) fn end(&self) -> Option<u64> {
        self.end
    }

    fn segment(&self, step: u64) -> &Segment {
        let i = self.segments.partition_point(|s| s.start <= step);
        &self.segments[i.max(1) - 1]
    }

    /// Steps each subset (by id) had before `step`; past the end, the totals at the end.
    pub(crate) fn steps_before(&self, step: u64) -> [u64; 3] {
        let step = self.end.map_or(step, |e| step.min(e));
        let seg = self.segment(step);
        let counts = seg.counts(step - seg.start);
        [0, 1, 2].map(|i| seg.base[i] + counts[i])
    }

    /// The first step in `from..to` (`to` exclusive, `None` for no bound; either way
    /// no further than the end) that draws from subset `id`, or `None` if none does. A
    /// binary search over each segment's monotone counts: the cost does not depend on
    /// the steps.
    pub(crate) fn first_step_of(&self, id: usize, from: u64, to: Option<u64>) -> Option<u64> {
        let to = match (to, self.end) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(u64::MAX),
        };
        let first = self.segments.partition_point(|s| s.start <= from).max(1) - 1;
        for (i, seg) in self.segments.iter().enumerate().skip(first) {
            let start = from.max(seg.start);
            let end = self
                .segments
                .get(i + 1)
                .map_or(to, |next| next.start.min(to));
            if start >= to {
                break;
            }
            if start >= end || !seg.active[..seg.len as usize].contains(&(id as u8)) {
                continue;
            }
            let before = seg.counts(start - seg.start)[id];
            if seg.counts(end - seg.start)[id] == before {
                continue;
            }
            // The smallest step s in start..end whose count after it exceeds `before`.
            let (mut lo, mut hi) = (start, end - 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if seg.counts(mid + 1 - seg.start)[id] > before {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            return Some(lo);
        }
        None
    }

    /// The subset id of `step`, or `None` past the end.
    pub(crate) fn subset_at(&self, step: u64) -> Option<usize> {
        if self.end.is_some_and(|e| step >= e) || step == u64::MAX {
            return None;
        }
        let seg = self.segment(step);
        let n = step - seg.start;
        let (a, b) = (seg.counts(n), seg.counts(n + 1));
        (0..3).find(|&i| b[i] != a[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(until_step: Option<u64>, ramp_steps: u64, probs: [f64; 3]) -> ResolvedPhase {
        ResolvedPhase {
            until_step,
            ramp_steps,
            probs,
        }
    }

    #[test]
    fn first_step_of_finds_the_first_step_of_each_subset_in_a_range() {
        let phases = [
            phase(Some(50), 0, [1.0, 0.0, 0.0]),
            phase(Some(200), 30, [0.5, 0.5, 0.0]),
            phase(None, 10, [0.2, 0.0, 0.8]),
        ];
        let schedule = Schedule::new(&phases, 7);
        for (from, to) in [
            (0, Some(400)),
            (0, Some(50)),
            (49, Some(60)),
            (120, None),
            (190, Some(260)),
        ] {
            for id in 0..3 {
                let end = to.unwrap_or(400);
                let want = (from..end).find(|&s| schedule.subset_at(s) == Some(id));
                let got = schedule.first_step_of(id, from, to);
                match (to, want) {
                    (None, None) => assert!(got.is_none_or(|s| s >= end), "{id} from {from}"),
                    _ => assert_eq!(got, want, "subset {id} in {from}..{to:?}"),
                }
            }
        }
        assert_eq!(schedule.first_step_of(2, 0, Some(200)), None);
        assert_eq!(schedule.first_step_of(1, 200 + 10, None), None);
        let finite = Schedule::new(&[phase(Some(10), 0, [1.0, 0.0, 0.0])], 1);
        assert_eq!(finite.first_step_of(0, 10, None), None);
        assert_eq!(finite.first_step_of(0, 3, None), Some(3));
    }

    /// Replays the schedule step by step: the slow reference for `steps_before`.
    fn replay(schedule: &Schedule, steps: u64) -> Vec<[u64; 3]> {
        let mut counts = [0u64; 3];
        let mut out = vec![counts];
        for s in 0..steps {
            counts[schedule.subset_at(s).unwrap()] += 1;
            out.push(counts);
        }
        out
    }

    #[test]
    fn closed_form_counts_match_a_replay() {
        let phases = [
            phase(Some(100), 0, [1.0, 0.0, 0.0]),
            phase(Some(700), 250, [0.3, 0.7, 0.0]),
            phase(None, 77, [0.2, 0.3, 0.5]),
        ];
        let schedule = Schedule::new(&phases, 9);
        let replayed = replay(&schedule, 2000);
        for (s, counts) in replayed.iter().enumerate() {
            assert_eq!(schedule.steps_before(s as u64), *counts, "step {s}");
        }
        assert!(replayed[100] == [100, 0, 0]);
    }

    #[test]
    fn windows_follow_the_weights() {
        let probs = [0.17, 0.5, 0.33];
        let schedule = Schedule::new(&[phase(None, 0, probs)], 3);
        for start in (0..5000).step_by(7) {
            let a = schedule.steps_before(start);
            let b = schedule.steps_before(start + 100);
            for i in 0..3 {
                let got = (b[i] - a[i]) as f64;
                assert!((got - 100.0 * probs[i]).abs() < 2.0, "{start} {i} {got}");
            }
        }
    }

    #[test]
    fn ramps_are_staged_and_finite_streams_end() {
        let phases = [
            phase(Some(10), 0, [1.0, 0.0, 0.0]),
            phase(Some(20), 10, [0.0, 1.0, 0.0]),
        ];
        let schedule = Schedule::new(&phases, 0);
        assert_eq!(schedule.segments.len(), 11);
        assert_eq!(schedule.end(), Some(20));
        assert!(schedule.subset_at(19).is_some());
        assert_eq!(schedule.subset_at(20), None);
        let at_end = schedule.steps_before(20);
        assert_eq!(at_end.iter().sum::<u64>(), 20);
        assert_eq!(schedule.steps_before(1000), at_end);
        // A ramp of 10 single-step stages from sft to preference: sft gets about half.
        assert!((4..=6).contains(&(at_end[0] - 10)), "{at_end:?}");
    }

    #[test]
    fn huge_steps_cost_nothing_and_stay_consistent() {
        let schedule = Schedule::new(&[phase(None, 0, [0.25, 0.25, 0.5])], 1);
        let s = 10_000_000_000_000u64;
        let a = schedule.steps_before(s);
        let b = schedule.steps_before(s + 1);
        let i = schedule.subset_at(s).unwrap();
        assert_eq!(b[i], a[i] + 1);
        assert_eq!(a.iter().sum::<u64>(), s);
        assert!((a[2] as f64 / s as f64 - 0.5).abs() < 1e-9);
    }
}
