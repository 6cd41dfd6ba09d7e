//! The skipped-items part of an import summary, shared by the Pico-Banana importer (rows)
//! and the WebDataset importer (samples): counts per reason, the first few items with
//! where they were and why, and the path of the full report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One skipped item as the summary shows it.
pub struct Skip {
    /// Where it was (`sft.jsonl:17`, `shard-000.tar key`).
    pub at: String,
    /// The reason's stable short name.
    pub reason: &'static str,
    /// The reason in words.
    pub detail: String,
}

/// Appends the skip counts by reason, the first `first` skips and the report path.
pub fn write_skips(
    s: &mut String,
    noun: &str,
    skips: &[Skip],
    first: usize,
    report_path: Option<&Path>,
) {
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for skip in skips {
        *by_reason.entry(skip.reason).or_default() += 1;
    }
    let _ = writeln!(s, "{noun} skipped: {}", skips.len());
    for (reason, n) in by_reason {
        let _ = writeln!(s, "  {reason}: {n}");
    }
    if !skips.is_empty() {
        let shown = first.min(skips.len());
        let _ = writeln!(s, "first {shown} skipped {noun}:");
        for skip in &skips[..shown] {
            let _ = writeln!(s, "  {}: {}: {}", skip.at, skip.reason, skip.detail);
        }
    }
    if let Some(p) = report_path {
        let _ = writeln!(s, "full report: {}", p.display());
    }
}
