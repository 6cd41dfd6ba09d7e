//! The fingerprint of a stream spec: a short hex digest of a canonical text of every
//! field that affects the order of samples. Cursors carry it, so a stream is never
//! resumed under another spec.
//!
//! Part of the plan stage: store -> shard reader -> **plan** (spec + dataset -> schedule
//! and epochs) -> prefetch -> decode/augment -> collate -> gRPC.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::dataset::{Category, Subset};
use crate::plan::eval;

use super::stream_spec::StreamSpec;

/// How many hex characters of the sha256 digest a fingerprint keeps (64 bits).
pub const FINGERPRINT_HEX_LEN: usize = 16;

impl StreamSpec {
    /// A short hex fingerprint of everything in the spec that affects the order of
    /// samples. Cursors carry it so that a stream is never resumed under another spec.
    pub fn fingerprint(&self) -> String {
        self.fingerprint_with(&[])
    }

    /// The fingerprint with more settings mixed in: the serving layer passes a
    /// canonical encoding of whatever else shapes the stream (transforms, output size
    /// and format), so that changing those also invalidates old cursors.
    pub fn fingerprint_with(&self, extra: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.canonical().as_bytes());
        // Length-prefixed so that no spec text can collide with a different split
        // between spec and extra bytes.
        hasher.update((extra.len() as u64).to_le_bytes());
        hasher.update(extra);
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(FINGERPRINT_HEX_LEN);
        for byte in &digest[..FINGERPRINT_HEX_LEN / 2] {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }

    /// A canonical text of the spec: aliases resolved, maps sorted, zero subset
    /// weights and unit category weights (which change nothing) left out, floats as
    /// their exact bits. Two specs that plan identically almost always share it, and
    /// two that plan differently never do.
    fn canonical(&self) -> String {
        let mut out = String::from("editfeed.plan.spec.v1\n");
        let _ = writeln!(out, "seed={}", self.seed);
        let _ = writeln!(out, "global_batch={}", self.global_batch);
        if self.curriculum.is_empty() {
            out.push_str("curriculum=by_sample_count\n");
        }
        for phase in &self.curriculum {
            out.push_str("phase");
            match phase.until_step {
                Some(end) => {
                    let _ = write!(out, " until={end}");
                }
                None => out.push_str(" until=never"),
            }
            let _ = write!(out, " ramp={}", phase.ramp_steps);
            let mut weights: Vec<(u8, &'static str, f64)> = phase
                .weights
                .iter()
                .filter(|(_, &w)| w != 0.0)
                .map(|(k, &w)| match Subset::from_name(k) {
                    Some(s) => (s.id(), s.name(), w),
                    None => (u8::MAX, "?", w),
                })
                .collect();
            weights.sort_by_key(|(id, _, _)| *id);
            for (_, name, w) in weights {
                let _ = write!(out, " {name}={:016x}", w.to_bits());
            }
            out.push('\n');
        }
        for category in Category::ALL {
            let w = self.category_weights.get(category.name()).copied();
            if let Some(w) = w.filter(|&w| w != 1.0) {
                let _ = writeln!(out, "category {}={:016x}", category.name(), w.to_bits());
            }
        }
        match self.shuffle.block_mode() {
            None => out.push_str("shuffle=full\n"),
            Some((block, window)) => {
                let _ = writeln!(out, "shuffle=block:{block}:{window}");
            }
        }
        out.push_str(&self.select.canonical());
        out.push_str(&eval::canonical(self));
        out.push_str(self.multi_turn.canonical());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::spec::fixtures::{parse, EXAMPLE};
    use crate::plan::spec::ShuffleSpec;

    #[test]
    fn fingerprint_tracks_every_ordering_field() {
        let base = parse(EXAMPLE).unwrap();
        let fp = base.fingerprint();
        assert_eq!(fp.len(), FINGERPRINT_HEX_LEN);
        assert_eq!(fp, parse(EXAMPLE).unwrap().fingerprint());
        let mut variants = Vec::new();
        let mut s = base.clone();
        s.seed += 1;
        variants.push(s);
        let mut s = base.clone();
        s.global_batch *= 2;
        variants.push(s);
        let mut s = base.clone();
        s.curriculum[0].until_step = Some(20001);
        variants.push(s);
        let mut s = base.clone();
        s.curriculum[1].ramp_steps += 1;
        variants.push(s);
        let mut s = base.clone();
        s.curriculum[2].weights.insert("sft".into(), 0.25);
        variants.push(s);
        let mut s = base.clone();
        s.category_weights.insert("stylistic".into(), 3.0);
        variants.push(s);
        let mut s = base.clone();
        s.shuffle.window = Some(4);
        variants.push(s);
        let mut s = base.clone();
        s.shuffle = ShuffleSpec::default();
        variants.push(s);
        let mut s = base.clone();
        s.curriculum.clear();
        variants.push(s);
        for v in &variants {
            assert_ne!(v.fingerprint(), fp, "{v:?}");
        }
        assert_ne!(base.fingerprint_with(b"crop=0.8"), fp);
        assert_ne!(
            base.fingerprint_with(b"crop=0.8"),
            base.fingerprint_with(b"crop=0.9")
        );

        // Spellings that plan identically share the fingerprint.
        let mut s = base.clone();
        let w = s.curriculum[1].weights.remove("dpo").unwrap();
        s.curriculum[1].weights.insert("preference".into(), w);
        s.curriculum[1].weights.insert("multi_turn".into(), 0.0);
        s.category_weights.insert("stylistic".into(), 1.0);
        assert_eq!(s.fingerprint(), fp);
    }
}
