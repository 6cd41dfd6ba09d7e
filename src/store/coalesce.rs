//! Merging the byte ranges of one object into fewer reads: ranges that touch, or lie
//! within a gap of each other, become one span. Used by local positioned reads and by
//! remote range gets. Part of the first stage of the flow: STORE -> shard reader -> ...

use std::ops::Range;

/// Groups the ranges `which` of `ranges` into spans to fetch: sorted by start, merged
/// when a range begins at most `gap` bytes after the span ends. Returns each span with
/// the indexes of the ranges it serves.
pub(crate) fn coalesce(
    ranges: &[Range<u64>],
    which: &[usize],
    gap: u64,
) -> Vec<(Range<u64>, Vec<usize>)> {
    let mut order: Vec<usize> = which.to_vec();
    order.sort_by_key(|&i| (ranges[i].start, ranges[i].end));
    let mut out: Vec<(Range<u64>, Vec<usize>)> = Vec::new();
    for i in order {
        let r = &ranges[i];
        match out.last_mut() {
            Some((span, members)) if r.start <= span.end.saturating_add(gap) => {
                span.end = span.end.max(r.end);
                members.push(i);
            }
            _ => out.push((r.clone(), vec![i])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_ranges_coalesce_and_gaps_split() {
        let r = vec![10..20, 0..10, 30..40, 20..25];
        let spans = coalesce(&r, &[0, 1, 2, 3], 0);
        assert_eq!(spans, vec![(0..25, vec![1, 0, 3]), (30..40, vec![2])]);
        let spans = coalesce(&r, &[0, 1, 2, 3], 5);
        assert_eq!(spans, vec![(0..40, vec![1, 0, 3, 2])]);
        let spans = coalesce(&r, &[2], 0);
        assert_eq!(spans, vec![(30..40, vec![2])]);
    }
}
