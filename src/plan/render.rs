//! A plain-text rendering of a stretch of the plan, for the CLI (`editfeed plan`) and
//! for eyeballing a curriculum before a run. Sits beside the plan stage; it reads the
//! plan and does no I/O itself.

use std::fmt::Write as _;
use std::ops::Range;

use crate::dataset::Subset;

use super::{Plan, PlanError};

/// Renders steps `steps` of `plan` split over `world_size` ranks: one line per step
/// (`step <n> <subset>`), then one line per rank (`  rank <r>: <key> <key> ...`),
/// where `key_of(subset, ordinal)` names a sample (e.g. its WebDataset key).
pub fn render_plan(
    plan: &Plan,
    world_size: u32,
    steps: Range<u64>,
    key_of: &dyn Fn(Subset, u64) -> String,
) -> Result<String, PlanError> {
    let global_batch = plan.spec().global_batch;
    // Checked up front so that an empty step range still reports a bad world size.
    if world_size == 0 || !global_batch.is_multiple_of(world_size) {
        return Err(PlanError::WorldSize {
            world_size,
            global_batch,
        });
    }
    let mut out = String::new();
    for step in steps {
        let subset = plan.subset_at(step)?;
        let _ = writeln!(out, "step {step} {subset}");
        for rank in 0..world_size {
            let batch = plan.rank_batch(step, rank, world_size)?;
            let _ = write!(out, "  rank {rank}:");
            for sample in &batch.samples {
                let _ = write!(out, " {}", key_of(sample.subset, sample.ordinal));
            }
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PlanDataset, PlanSubset, StreamSpec};

    fn plan() -> Plan {
        let dataset = PlanDataset {
            version: "v".into(),
            subsets: vec![
                PlanSubset {
                    subset: Subset::Sft,
                    len: 20,
                    categories: None,
                    selected: None,
                },
                PlanSubset {
                    subset: Subset::MultiTurn,
                    len: 20,
                    categories: None,
                    selected: None,
                },
            ],
        };
        Plan::new(&dataset, &StreamSpec::new(3, 4)).unwrap()
    }

    #[test]
    fn renders_every_rank_of_every_step() {
        let plan = plan();
        let key = |s: Subset, o: u64| format!("{}/{o:04}", s.name());
        let text = render_plan(&plan, 2, 5..7, &key).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        let b = plan.global_batch(5).unwrap();
        assert_eq!(lines[0], format!("step 5 {}", b.subset));
        let keys: Vec<String> = b.samples[2..]
            .iter()
            .map(|s| key(s.subset, s.ordinal))
            .collect();
        assert_eq!(lines[2], format!("  rank 1: {}", keys.join(" ")));
    }

    #[test]
    fn bad_world_sizes_are_errors() {
        let plan = plan();
        let key = |_: Subset, o: u64| o.to_string();
        assert!(render_plan(&plan, 3, 0..2, &key).is_err());
        assert!(render_plan(&plan, 0, 0..0, &key).is_err());
    }
}
