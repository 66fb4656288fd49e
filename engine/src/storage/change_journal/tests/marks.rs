//! Marks on single files: byte ranges merging, whole-file and metadata-only marks, the
//! collapse to whole-file, reasons, times and counts, raw and normalised paths, and the order
//! and paging of `pending`.

use super::*;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn ranges_after(marks: &[Option<(u64, u64)>]) -> (bool, Vec<(u64, u64)>) {
    let (_d, j) = journal();
    let batch: Vec<Mark> = marks
        .iter()
        .map(|&range| Mark {
            path: p("/f"),
            range,
            reason: Reason::RingFull,
            ns: 1,
        })
        .collect();
    j.mark(&batch).unwrap();
    let e = get(&j, "/f").unwrap();
    // marking one by one gives the same result as one batch
    let (_d2, j2) = journal();
    for m in &batch {
        j2.mark(std::slice::from_ref(m)).unwrap();
    }
    let e2 = get(&j2, "/f").unwrap();
    assert_eq!((e.whole, &e.ranges), (e2.whole, &e2.ranges));
    (e.whole, e.ranges)
}

#[test]
fn ranges_overlapping_adjacent_contained_merge() {
    assert_eq!(
        ranges_after(&[Some((0, 10)), Some((5, 10))]),
        (false, vec![(0, 15)])
    );
    assert_eq!(
        ranges_after(&[Some((0, 10)), Some((10, 10))]),
        (false, vec![(0, 20)])
    );
    assert_eq!(
        ranges_after(&[Some((10, 10)), Some((0, 10))]),
        (false, vec![(0, 20)])
    );
    assert_eq!(
        ranges_after(&[Some((0, 100)), Some((10, 10))]),
        (false, vec![(0, 100)])
    );
    assert_eq!(
        ranges_after(&[Some((40, 10)), Some((0, 10)), Some((20, 10))]),
        (false, vec![(0, 10), (20, 10), (40, 10)])
    );
    assert_eq!(
        ranges_after(&[Some((0, 10)), Some((20, 10)), Some((40, 10)), Some((5, 40))]),
        (false, vec![(0, 50)])
    );
    // an offset near the end of the address space saturates instead of wrapping
    assert_eq!(
        ranges_after(&[Some((u64::MAX - 5, 100))]),
        (false, vec![(u64::MAX - 5, 5)])
    );
}

#[test]
fn whole_file_subsumes_ranges() {
    assert_eq!(
        ranges_after(&[Some((0, 10)), None, Some((50, 10))]),
        (true, vec![])
    );
    assert_eq!(ranges_after(&[None, Some((0, 10))]), (true, vec![]));
}

#[test]
fn metadata_only_marks() {
    assert_eq!(ranges_after(&[Some((7, 0))]), (false, vec![]));
    assert_eq!(
        ranges_after(&[Some((7, 0)), Some((0, 4))]),
        (false, vec![(0, 4)])
    );
    let (_d, j) = journal();
    j.mark(&[Mark::metadata("/m", Reason::Recovery, 3)])
        .unwrap();
    let e = get(&j, "/m").unwrap();
    assert!(e.metadata_only() && !e.whole && e.dirty_bytes() == Some(0));
}

#[test]
fn too_many_ranges_collapse_to_whole_file() {
    let n = DEFAULT_MAX_RANGES as u64;
    let exactly: Vec<_> = (0..n).map(|i| Some((i * 10, 5))).collect();
    let (whole, ranges) = ranges_after(&exactly);
    assert!(!whole);
    assert_eq!(ranges.len(), DEFAULT_MAX_RANGES);
    let mut one_more = exactly.clone();
    one_more.push(Some((n * 10, 5)));
    assert_eq!(ranges_after(&one_more), (true, vec![]));
    // a range that merges into existing ones does not count
    let mut merging = exactly;
    merging.push(Some((0, 7)));
    assert_eq!(ranges_after(&merging).1.len(), DEFAULT_MAX_RANGES);
    // the threshold is an option
    let dir = tempfile::tempdir().unwrap();
    let j = ChangeJournal::open_with(&dir.path().join("j"), Options { max_ranges: 2 }).unwrap();
    let marks: Vec<_> = (0..3)
        .map(|i| Mark::range("/f", i * 10, 1, Reason::RingFull, 0))
        .collect();
    j.mark(&marks[..2]).unwrap();
    assert!(!get(&j, "/f").unwrap().whole);
    j.mark(&marks[2..]).unwrap();
    assert!(get(&j, "/f").unwrap().whole);
}

#[test]
fn reasons_times_and_counts_accumulate() {
    let (_d, j) = journal();
    j.mark(&[
        Mark::range("/f", 0, 1, Reason::RingFull, 50),
        Mark::range("/f", 2, 1, Reason::Recovery, 20),
    ])
    .unwrap();
    j.mark(&[Mark::whole("/f", Reason::RingFull, 90)]).unwrap();
    let e = get(&j, "/f").unwrap();
    assert_eq!(
        e.reasons,
        [Reason::RingFull, Reason::Recovery].into_iter().collect()
    );
    assert_eq!(e.reasons.to_string(), "RingFull|Recovery");
    assert_eq!((e.first_ns, e.last_ns, e.count), (20, 90, 3));
    assert!(!e.subtree);
}

#[test]
fn driver_reasons_map_one_to_one() {
    use rill_ops::DirtyReason as D;
    let all = [
        D::RingFull,
        D::StopLimit,
        D::PathUnknown,
        D::Modified,
        D::RescanAll,
    ];
    let mapped: Reasons = all.into_iter().map(Reason::from).collect();
    assert_eq!(mapped.iter().count(), all.len());
    assert_eq!(Reason::from(D::StopLimit), Reason::StopLimit);
    assert_eq!(
        Reasons::from_bits(1 << 31 | 1).to_string(),
        "RingFull|0x80000000"
    );
    assert_eq!(Reasons::EMPTY.to_string(), "-");
}

#[test]
fn paths_are_raw_bytes_and_normalised() {
    let (_d, j) = journal();
    let raw = PathBuf::from(OsStr::from_bytes(b"/d/\xff\xfe-not-utf8"));
    j.mark(&[Mark::whole(raw.clone(), Reason::RingFull, 0)])
        .unwrap();
    j.mark(&[Mark::range("/a//b/", 0, 1, Reason::RingFull, 0)])
        .unwrap();
    j.mark(&[Mark::range("/a/./b", 5, 1, Reason::RingFull, 0)])
        .unwrap();
    let entries = all(&j);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].path, p("/a/b"));
    assert_eq!(entries[0].ranges, [(0, 1), (5, 1)]);
    assert_eq!(
        entries[1].path.as_os_str().as_bytes(),
        raw.as_os_str().as_bytes()
    );
    assert!(matches!(
        j.mark(&[Mark::whole("", Reason::RingFull, 0)]),
        Err(Error::InvalidPath { .. })
    ));
}

#[test]
fn pending_is_in_byte_order_with_limit_and_paging() {
    let (_d, j) = journal();
    let names = ["/r/b", "/r/a/x", "/r/a.b", "/r/a0", "/r/a", "/q"];
    j.mark(
        &names
            .iter()
            .map(|n| Mark::whole(*n, Reason::RingFull, 0))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    j.mark_subtree(Path::new("/r/c"), Reason::PathUnknown, 0)
        .unwrap();
    assert_eq!(
        paths(&j),
        ["/q", "/r/a", "/r/a.b", "/r/a/x", "/r/a0", "/r/b", "/r/c/**"]
    );
    assert_eq!(j.len().unwrap(), 7);
    let first: Vec<_> = j.pending(3).unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(first, [p("/q"), p("/r/a"), p("/r/a.b")]);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = j.pending_after(after.as_deref(), 2).unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().path.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all(&j));
    assert_eq!(j.pending(0).unwrap(), []);
}
