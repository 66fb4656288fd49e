//! Dirty byte ranges of one file: a sorted list of half-open `[start, end)` intervals that
//! neither overlap nor touch (adjacent intervals are merged, so the list is canonical).

/// Adds `[start, end)` to `ranges`, merging it with every interval it overlaps or touches.
/// An empty interval (`start >= end`) changes nothing.
pub(super) fn insert(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    if start >= end {
        return;
    }
    // The intervals to merge are those with `r.end >= start && r.start <= end`; in a sorted,
    // disjoint list they are one contiguous run `i..j`.
    let i = ranges.partition_point(|r| r.1 < start);
    let j = ranges.partition_point(|r| r.0 <= end);
    if i == j {
        ranges.insert(i, (start, end));
        return;
    }
    let merged = (start.min(ranges[i].0), end.max(ranges[j - 1].1));
    ranges.splice(i..j, [merged]);
}

/// Whether `ranges` is canonical: every interval non-empty, sorted, with a gap between
/// neighbours.
pub(super) fn is_canonical(ranges: &[(u64, u64)]) -> bool {
    ranges.iter().all(|r| r.0 < r.1) && ranges.windows(2).all(|w| w[0].1 < w[1].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(parts: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let mut r = Vec::new();
        for &(s, e) in parts {
            insert(&mut r, s, e);
            assert!(is_canonical(&r), "{r:?}");
        }
        r
    }

    #[test]
    fn disjoint_ranges_stay_sorted() {
        assert_eq!(
            build(&[(50, 60), (10, 20), (30, 40)]),
            [(10, 20), (30, 40), (50, 60)]
        );
    }

    #[test]
    fn overlapping_ranges_merge() {
        assert_eq!(build(&[(10, 20), (15, 30)]), [(10, 30)]);
        assert_eq!(build(&[(15, 30), (10, 20)]), [(10, 30)]);
    }

    #[test]
    fn adjacent_ranges_merge() {
        assert_eq!(build(&[(10, 20), (20, 30)]), [(10, 30)]);
        assert_eq!(build(&[(20, 30), (10, 20)]), [(10, 30)]);
        // a one-byte gap keeps them apart
        assert_eq!(build(&[(10, 20), (21, 30)]), [(10, 20), (21, 30)]);
    }

    #[test]
    fn contained_range_changes_nothing() {
        assert_eq!(build(&[(10, 100), (20, 30)]), [(10, 100)]);
        assert_eq!(build(&[(10, 100), (10, 100)]), [(10, 100)]);
    }

    #[test]
    fn covering_range_swallows_many() {
        assert_eq!(
            build(&[(10, 20), (30, 40), (50, 60), (70, 80), (25, 55)]),
            [(10, 20), (25, 60), (70, 80)]
        );
        assert_eq!(build(&[(10, 20), (30, 40), (50, 60), (0, 100)]), [(0, 100)]);
        // bridging two neighbours exactly
        assert_eq!(build(&[(10, 20), (30, 40), (20, 30)]), [(10, 40)]);
    }

    #[test]
    fn empty_range_is_ignored() {
        assert_eq!(build(&[(10, 20), (5, 5), (30, 29)]), [(10, 20)]);
    }

    #[test]
    fn extremes() {
        assert_eq!(
            build(&[(u64::MAX - 1, u64::MAX), (0, 1)]),
            [(0, 1), (u64::MAX - 1, u64::MAX)]
        );
        assert_eq!(build(&[(0, u64::MAX), (5, 6)]), [(0, u64::MAX)]);
    }
}
