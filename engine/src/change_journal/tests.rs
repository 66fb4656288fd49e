use super::*;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tempfile::TempDir;

fn journal() -> (TempDir, ChangeJournal) {
    let dir = tempfile::tempdir().unwrap();
    let j = ChangeJournal::open(&dir.path().join("cj.redb")).unwrap();
    (dir, j)
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn all(j: &ChangeJournal) -> Vec<Entry> {
    j.pending(usize::MAX).unwrap()
}

fn get(j: &ChangeJournal, path: &str) -> Option<Entry> {
    all(j).into_iter().find(|e| e.path == p(path))
}

fn paths(j: &ChangeJournal) -> Vec<String> {
    all(j)
        .iter()
        .map(|e| {
            let s = e.path.display().to_string();
            if e.subtree {
                format!("{s}/**")
            } else {
                s
            }
        })
        .collect()
}

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
    use rill_driver_linux::DirtyReason as D;
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

#[test]
fn subtree_folds_existing_entries_and_absorbs_later_marks() {
    let (_d, j) = journal();
    j.mark(&[
        Mark::range("/r/a/x", 0, 10, Reason::RingFull, 10),
        Mark::whole("/r/a/y/z", Reason::Recovery, 5),
        Mark::whole("/r/a", Reason::RingFull, 7), // metadata of the directory itself
        Mark::whole("/r/ab", Reason::RingFull, 1), // a sibling, not under /r/a
        Mark::whole("/r/a0", Reason::RingFull, 1),
    ])
    .unwrap();
    j.mark_subtree(Path::new("/r/a/y"), Reason::PathUnknown, 8)
        .unwrap();
    j.mark_subtree(Path::new("/r/a"), Reason::PathUnknown, 20)
        .unwrap();
    assert_eq!(paths(&j), ["/r/a/**", "/r/a0", "/r/ab"]);
    let s = get(&j, "/r/a").unwrap();
    assert!(s.subtree && s.whole && s.ranges.is_empty());
    assert_eq!(s.count, 5); // x, z, /r/a, subtree /r/a/y, subtree /r/a
    assert_eq!((s.first_ns, s.last_ns), (5, 20));
    assert_eq!(
        s.reasons,
        [Reason::RingFull, Reason::Recovery, Reason::PathUnknown]
            .into_iter()
            .collect()
    );

    // marks inside are absorbed, each with a new version
    j.mark(&[
        Mark::range("/r/a/new", 0, 1, Reason::Modified, 30),
        Mark::whole("/r/a", Reason::StopLimit, 31),
    ])
    .unwrap();
    j.mark_subtree(Path::new("/r/a/deeper"), Reason::RescanAll, 32)
        .unwrap();
    assert_eq!(paths(&j), ["/r/a/**", "/r/a0", "/r/ab"]);
    let s2 = get(&j, "/r/a").unwrap();
    assert_eq!(s2.count, 8);
    assert!(s2.version > s.version);
    assert!(s2.reasons.contains(Reason::Modified) && s2.reasons.contains(Reason::RescanAll));

    // a subtree at the root covers everything
    j.mark_subtree(Path::new("/"), Reason::RescanAll, 40)
        .unwrap();
    assert_eq!(paths(&j), ["//**"]);
    assert_eq!(get(&j, "/").unwrap().count, 11);
    j.mark(&[Mark::whole("/x/y", Reason::RingFull, 41)])
        .unwrap();
    assert_eq!(j.len().unwrap(), 1);
}

#[test]
fn rename_moves_files_and_subtrees() {
    let (_d, j) = journal();
    j.mark(&[
        Mark::range("/d/f", 0, 10, Reason::RingFull, 1),
        Mark::whole("/d/sub/g", Reason::RingFull, 2),
        Mark::whole("/d", Reason::RingFull, 3),
        Mark::whole("/d0", Reason::RingFull, 4),
        Mark::whole("/dx", Reason::RingFull, 4),
        Mark::whole("/e/old", Reason::RingFull, 5), // replaced by the rename
    ])
    .unwrap();
    j.mark_subtree(Path::new("/d/s"), Reason::PathUnknown, 6)
        .unwrap();
    let before = get(&j, "/d/f").unwrap();

    j.rename(Path::new("/d"), Path::new("/e")).unwrap();
    assert_eq!(
        paths(&j),
        ["/d0", "/dx", "/e", "/e/f", "/e/s/**", "/e/sub/g"]
    );
    let after = get(&j, "/e/f").unwrap();
    assert_eq!(after.ranges, before.ranges);
    assert_eq!(after.count, before.count);
    assert!(after.version > before.version);

    // a single file, onto an existing entry
    j.rename(Path::new("/e/f"), Path::new("/dx")).unwrap();
    assert_eq!(get(&j, "/dx").unwrap().ranges, [(0, 10)]);
    assert_eq!(paths(&j), ["/d0", "/dx", "/e", "/e/s/**", "/e/sub/g"]);

    // a path with no entry replaces one
    j.rename(Path::new("/nothing"), Path::new("/d0")).unwrap();
    assert_eq!(paths(&j), ["/dx", "/e", "/e/s/**", "/e/sub/g"]);

    // same path: nothing; into or over itself: refused
    j.rename(Path::new("/e"), Path::new("/e/")).unwrap();
    assert!(matches!(
        j.rename(Path::new("/e"), Path::new("/e/sub/x")),
        Err(Error::InvalidRename { .. })
    ));
    assert!(matches!(
        j.rename(Path::new("/e/sub"), Path::new("/e")),
        Err(Error::InvalidRename { .. })
    ));
    assert_eq!(paths(&j), ["/dx", "/e", "/e/s/**", "/e/sub/g"]);
}

#[test]
fn rename_into_and_out_of_a_subtree() {
    let (_d, j) = journal();
    j.mark_subtree(Path::new("/scan"), Reason::PathUnknown, 1)
        .unwrap();
    j.mark(&[
        Mark::range("/f", 0, 1, Reason::RingFull, 2),
        Mark::whole("/dir/a", Reason::Recovery, 3),
    ])
    .unwrap();
    let s = get(&j, "/scan").unwrap();

    // into: folded into the subtree
    j.rename(Path::new("/f"), Path::new("/scan/f")).unwrap();
    j.rename(Path::new("/dir"), Path::new("/scan/x/dir"))
        .unwrap();
    assert_eq!(paths(&j), ["/scan/**"]);
    let s2 = get(&j, "/scan").unwrap();
    assert_eq!(s2.count, s.count + 2);
    assert!(s2.reasons.contains(Reason::Recovery));
    assert!(s2.version > s.version);

    // out of: the renamed object becomes a subtree of its own
    j.rename(Path::new("/scan/x"), Path::new("/out")).unwrap();
    assert_eq!(paths(&j), ["/out/**", "/scan/**"]);
    assert_eq!(get(&j, "/out").unwrap().reasons, s2.reasons);

    // within the subtree: it stays, with a new version
    let v = get(&j, "/scan").unwrap().version;
    j.rename(Path::new("/scan/a"), Path::new("/scan/b"))
        .unwrap();
    assert_eq!(paths(&j), ["/out/**", "/scan/**"]);
    assert!(get(&j, "/scan").unwrap().version > v);
}

#[test]
fn remove_drops_files_and_subtrees() {
    let (_d, j) = journal();
    j.mark(&[
        Mark::whole("/d/f", Reason::RingFull, 1),
        Mark::whole("/d/g/h", Reason::RingFull, 1),
        Mark::whole("/d", Reason::RingFull, 1),
        Mark::whole("/d.txt", Reason::RingFull, 1),
        Mark::whole("/dd", Reason::RingFull, 1),
    ])
    .unwrap();
    j.mark_subtree(Path::new("/d/s"), Reason::PathUnknown, 1)
        .unwrap();
    j.mark_subtree(Path::new("/k"), Reason::PathUnknown, 1)
        .unwrap();
    assert_eq!(j.remove(Path::new("/d/f")).unwrap(), 1);
    assert_eq!(j.remove(Path::new("/d/missing")).unwrap(), 0);
    assert_eq!(j.remove(Path::new("/d")).unwrap(), 3);
    assert_eq!(paths(&j), ["/d.txt", "/dd", "/k/**"]);
    // inside a subtree: the subtree stays
    assert_eq!(j.remove(Path::new("/k/x")).unwrap(), 0);
    assert_eq!(j.remove(Path::new("/k")).unwrap(), 1);
    assert_eq!(paths(&j), ["/d.txt", "/dd"]);
}

#[test]
fn complete_keeps_entries_marked_after_pending_read_them() {
    let (_d, j) = journal();
    j.mark(&[
        Mark::range("/a", 0, 10, Reason::RingFull, 1),
        Mark::range("/b", 0, 10, Reason::RingFull, 1),
    ])
    .unwrap();
    j.mark_subtree(Path::new("/s"), Reason::PathUnknown, 1)
        .unwrap();
    let read = all(&j);
    // /a and /s are marked again while the remirror works
    j.mark(&[Mark::range("/a", 100, 10, Reason::RingFull, 2)])
        .unwrap();
    j.mark(&[Mark::whole("/s/x", Reason::RingFull, 2)]).unwrap();
    assert_eq!(j.complete_entries(&read).unwrap(), 1);
    assert_eq!(paths(&j), ["/a", "/s/**"]);
    assert_eq!(get(&j, "/a").unwrap().ranges, [(0, 10), (100, 10)]);
    // a version from before a reopen is still stale after it
    let stale = get(&j, "/a").unwrap().done();
    j.mark(&[Mark::range("/a", 200, 10, Reason::RingFull, 3)])
        .unwrap();
    let path = j.path().to_path_buf();
    drop(j);
    let j = ChangeJournal::open(&path).unwrap();
    assert_eq!(j.complete(&[stale]).unwrap(), 0);
    let read = all(&j);
    assert_eq!(j.complete_entries(&read).unwrap(), 2);
    assert!(j.is_empty().unwrap());
    // a removed and re-created entry does not match an old version either
    j.mark(&[Mark::whole("/a", Reason::RingFull, 4)]).unwrap();
    let old = get(&j, "/a").unwrap().done();
    j.remove(Path::new("/a")).unwrap();
    j.mark(&[Mark::whole("/a", Reason::RingFull, 5)]).unwrap();
    assert_eq!(j.complete(&[old]).unwrap(), 0);
    assert_eq!(j.len().unwrap(), 1);
}

/// Writers mark while a remirror loop reads and completes: every marked range ends up either
/// still pending or inside an entry that was read before `complete` removed it.
#[test]
fn complete_races_marks_without_losing_any() {
    let (_d, j) = journal();
    let j = Arc::new(j);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut marked = Vec::new();
                for i in 0..60u64 {
                    let path = format!("/w{w}/f{}", i % 4);
                    j.mark(&[Mark::range(path.as_str(), i * 10, 5, Reason::RingFull, i)])
                        .unwrap();
                    marked.push((p(&path), i * 10));
                }
                marked
            })
        })
        .collect();
    let remirror = {
        let (j, stop) = (j.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut remirrored: Vec<Entry> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for e in j.pending(usize::MAX).unwrap() {
                    if j.complete(&[e.done()]).unwrap() == 1 {
                        remirrored.push(e);
                    }
                }
            }
            remirrored
        })
    };
    let marked: Vec<_> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, Ordering::SeqCst);
    let remirrored = remirror.join().unwrap();
    let left = all(&j);
    let covered = |path: &PathBuf, off: u64| {
        remirrored
            .iter()
            .chain(left.iter())
            .any(|e| &e.path == path && e.ranges.iter().any(|r| r.0 <= off && off + 5 <= r.0 + r.1))
    };
    for (path, off) in &marked {
        assert!(covered(path, *off), "{path:?} at {off} was lost");
    }
    assert!(!remirrored.is_empty());
}

#[test]
fn entries_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cj.redb");
    let j = ChangeJournal::open(&path).unwrap();
    j.mark(&[
        Mark::range("/a", 0, 10, Reason::RingFull, 1),
        Mark::whole("/b", Reason::AutoDisconnect, 2),
        Mark::metadata("/c", Reason::QueueCorrupt, 3),
    ])
    .unwrap();
    j.mark_subtree(Path::new("/s"), Reason::Recovery, 4)
        .unwrap();
    let before = all(&j);
    drop(j);
    let j = ChangeJournal::open(&path).unwrap();
    assert_eq!(all(&j), before);
    // versions keep growing after a reopen
    j.mark(&[Mark::whole("/d", Reason::RingFull, 5)]).unwrap();
    let max_before = before.iter().map(|e| e.version).max().unwrap();
    assert!(get(&j, "/d").unwrap().version > max_before);
}

#[test]
fn a_file_that_is_not_a_journal_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut noise = vec![0u8; 64 * 1024];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "text",
            b"this is a settings file, not a database\n".to_vec(),
        ),
        ("short", b"re".to_vec()),
        ("zeros", vec![0; 8192]),
        ("noise", noise),
        ("magic-then-noise", {
            let mut v = b"redb\x1a\x0a\xa9\x0d\x0a".to_vec();
            v.extend(std::iter::repeat_n(0xA5u8, 5000));
            v
        }),
    ];
    for (name, content) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &content).unwrap();
        match ChangeJournal::open(&path) {
            Err(Error::NotAJournal { path: p, detail }) => {
                assert_eq!(p, path);
                assert!(!detail.is_empty());
                let msg = Error::NotAJournal {
                    path: p,
                    detail: detail.clone(),
                }
                .to_string();
                assert!(msg.contains("not a rill change journal"), "{msg}");
            }
            other => panic!("{name}: expected NotAJournal, got {other:?}"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            content,
            "{name} was modified"
        );
    }
    // a directory
    assert!(matches!(
        ChangeJournal::open(dir.path()),
        Err(Error::NotAJournal { .. })
    ));
    // a missing parent directory
    assert!(matches!(
        ChangeJournal::open(&dir.path().join("no/such/dir/cj")),
        Err(Error::Io { .. })
    ));
    // a redb database of something else
    let other = dir.path().join("other.redb");
    {
        let db = Database::create(&other).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let def: TableDefinition<u64, u64> = TableDefinition::new("something_else");
            tx.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        tx.commit().unwrap();
    }
    match ChangeJournal::open(&other) {
        Err(Error::NotAJournal { detail, .. }) => assert!(detail.contains("something_else")),
        other => panic!("expected NotAJournal, got {other:?}"),
    }
    // an empty file becomes a journal
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    ChangeJournal::open(&empty).unwrap();
}

#[test]
fn a_newer_format_is_refused() {
    let (_d, j) = journal();
    let path = j.path().to_path_buf();
    drop(j);
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert(META_FORMAT, FORMAT + 1)
            .unwrap();
        tx.commit().unwrap();
    }
    assert!(matches!(
        ChangeJournal::open(&path),
        Err(Error::UnsupportedFormat { found, .. }) if found == FORMAT + 1
    ));
}

#[test]
fn a_damaged_entry_is_an_error_not_a_panic() {
    let (_d, j) = journal();
    j.mark(&[Mark::whole("/ok", Reason::RingFull, 1)]).unwrap();
    {
        let tx = j.db.begin_write().unwrap();
        tx.open_table(FILES)
            .unwrap()
            .insert(b"/bad".as_slice(), b"\x01garbage".as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    match j.pending(10) {
        Err(Error::CorruptEntry { entry, .. }) => assert_eq!(entry, p("/bad")),
        other => panic!("expected CorruptEntry, got {other:?}"),
    }
    assert!(matches!(
        j.mark(&[Mark::whole("/bad", Reason::RingFull, 1)]),
        Err(Error::CorruptEntry { .. })
    ));
    // the failed batch left nothing behind
    assert_eq!(j.len().unwrap(), 2);
}

#[test]
fn a_second_open_is_refused() {
    let (_d, j) = journal();
    assert!(matches!(
        ChangeJournal::open(j.path()),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn journal_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ChangeJournal>();
}

// ---------------------------------------------------------------------------------------
// Model-based property test
// ---------------------------------------------------------------------------------------

const MODEL_MAX_RANGES: usize = 4;

/// A deliberately different representation: dirty bytes as a set, coverage by
/// `Path::starts_with`, a linear scan for everything.
#[derive(Clone, Debug)]
struct MEntry {
    subtree: bool,
    whole: bool,
    bytes: BTreeSet<u64>,
    reasons: u32,
    first: u64,
    last: u64,
    count: u64,
    touched: u64,
}

impl MEntry {
    fn new(subtree: bool) -> MEntry {
        MEntry {
            subtree,
            whole: subtree,
            bytes: BTreeSet::new(),
            reasons: 0,
            first: u64::MAX,
            last: 0,
            count: 0,
            touched: 0,
        }
    }

    fn note(&mut self, reason: u32, ns: u64) {
        self.reasons |= reason;
        self.first = self.first.min(ns);
        self.last = self.last.max(ns);
        self.count += 1;
    }

    fn fold(&mut self, o: &MEntry) {
        self.reasons |= o.reasons;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        self.count += o.count;
    }

    fn runs(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &b in &self.bytes {
            match out.last_mut() {
                Some(r) if r.0 + r.1 == b => r.1 += 1,
                _ => out.push((b, 1)),
            }
        }
        out
    }
}

/// path, subtree, whole, ranges, reasons, first_ns, last_ns, count
type Seen = (PathBuf, bool, bool, Vec<(u64, u64)>, u32, u64, u64, u64);
/// path index, range, reason index, ns
type MarkSpec = (usize, Option<(u64, u64)>, usize, u64);

#[derive(Default)]
struct Model {
    map: BTreeMap<Vec<u8>, MEntry>,
    tick: u64,
}

fn under(path: &[u8], dir: &[u8]) -> bool {
    Path::new(OsStr::from_bytes(path)).starts_with(Path::new(OsStr::from_bytes(dir)))
}

impl Model {
    fn tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn cover(&self, path: &[u8]) -> Option<Vec<u8>> {
        self.map
            .iter()
            .find(|(k, e)| e.subtree && under(path, k))
            .map(|(k, _)| k.clone())
    }

    fn take(&mut self, path: &[u8]) -> Vec<(Vec<u8>, MEntry)> {
        let keys: Vec<_> = self
            .map
            .keys()
            .filter(|k| under(k, path))
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| {
                let e = self.map.remove(&k).unwrap();
                (k, e)
            })
            .collect()
    }

    fn mark(&mut self, path: &[u8], range: Option<(u64, u64)>, reason: u32, ns: u64) {
        let t = self.tick();
        if let Some(s) = self.cover(path) {
            let e = self.map.get_mut(&s).unwrap();
            e.note(reason, ns);
            e.touched = t;
            return;
        }
        let e = self
            .map
            .entry(path.to_vec())
            .or_insert_with(|| MEntry::new(false));
        e.note(reason, ns);
        e.touched = t;
        match range {
            None => {
                e.whole = true;
                e.bytes.clear();
            }
            Some((off, len)) => {
                if !e.whole {
                    e.bytes.extend(off..off + len);
                    if e.runs().len() > MODEL_MAX_RANGES {
                        e.whole = true;
                        e.bytes.clear();
                    }
                }
            }
        }
    }

    fn mark_subtree(&mut self, path: &[u8], reason: u32, ns: u64) {
        let t = self.tick();
        if let Some(s) = self.cover(path) {
            let e = self.map.get_mut(&s).unwrap();
            e.note(reason, ns);
            e.touched = t;
            return;
        }
        let mut e = MEntry::new(true);
        e.note(reason, ns);
        for (_, old) in self.take(path) {
            e.fold(&old);
        }
        e.touched = t;
        self.map.insert(path.to_vec(), e);
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) {
        let moved = self.take(from);
        let cover_from = self.cover(from).map(|s| self.map[&s].clone());
        self.take(to);
        if let Some(s) = self.cover(to) {
            let t = self.tick();
            let e = self.map.get_mut(&s).unwrap();
            for (_, old) in &moved {
                e.fold(old);
            }
            if let Some(c) = &cover_from {
                e.reasons |= c.reasons;
            }
            e.touched = t;
            return;
        }
        if let Some(c) = cover_from {
            let mut e = MEntry::new(true);
            e.reasons = c.reasons;
            e.first = c.first;
            e.last = c.last;
            e.count = 1;
            for (_, old) in &moved {
                e.fold(old);
            }
            e.touched = self.tick();
            self.map.insert(to.to_vec(), e);
            return;
        }
        for (k, mut e) in moved {
            let mut nk = to.to_vec();
            nk.extend_from_slice(&k[from.len()..]);
            e.touched = self.tick();
            self.map.insert(nk, e);
        }
    }

    fn expected(&self) -> Vec<Seen> {
        self.map
            .iter()
            .map(|(k, e)| {
                (
                    path_of(k),
                    e.subtree,
                    e.whole,
                    e.runs(),
                    e.reasons,
                    e.first,
                    e.last,
                    e.count,
                )
            })
            .collect()
    }
}

fn actual(j: &ChangeJournal) -> Vec<Seen> {
    all(j)
        .into_iter()
        .map(|e| {
            (
                e.path,
                e.subtree,
                e.whole,
                e.ranges,
                e.reasons.bits(),
                e.first_ns,
                e.last_ns,
                e.count,
            )
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    Mark(Vec<MarkSpec>),
    Subtree(usize, usize, u64),
    Rename(usize, usize),
    Remove(usize),
    Snapshot,
    CompleteSnapshot,
    Reopen,
}

/// `/r/...` paths up to three deep over names chosen to sit next to `/` in byte order.
fn model_paths() -> Vec<Vec<u8>> {
    let names = ["a", "b", "a0", "a.b"];
    let mut out = Vec::new();
    let mut level = vec![b"/r".to_vec()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for base in &level {
            for n in names {
                let mut k = base.clone();
                k.push(b'/');
                k.extend_from_slice(n.as_bytes());
                next.push(k);
            }
        }
        out.extend(next.iter().cloned());
        level = next;
    }
    out
}

fn op_strategy(npaths: usize) -> impl Strategy<Value = Op> {
    let range = prop_oneof![
        1 => Just(None),
        1 => (0u64..48).prop_map(|o| Some((o, 0))),
        6 => (0u64..48, 1u64..8).prop_map(|(o, l)| Some((o, l))),
    ];
    let mark = (0..npaths, range, 0..Reason::ALL.len(), 0u64..1000);
    prop_oneof![
        10 => prop::collection::vec(mark, 1..5).prop_map(Op::Mark),
        2 => (0..npaths, 0..Reason::ALL.len(), 0u64..1000)
            .prop_map(|(p, r, ns)| Op::Subtree(p, r, ns)),
        2 => (0..npaths, 0..npaths).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (0..npaths).prop_map(Op::Remove),
        1 => Just(Op::Snapshot),
        1 => Just(Op::CompleteSnapshot),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    // every op is a durable commit, so the default is modest; PROPTEST_CASES raises it
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn journal_matches_an_in_memory_model(
        ops in prop::collection::vec(op_strategy(model_paths().len()), 1..40)
    ) {
        let paths = model_paths();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cj.redb");
        let opts = Options { max_ranges: MODEL_MAX_RANGES };
        let mut j = Some(ChangeJournal::open_with(&file, opts.clone()).unwrap());
        let mut model = Model::default();
        let mut snapshot: Vec<(PathBuf, u64)> = Vec::new();
        let mut model_snapshot: Vec<(Vec<u8>, u64)> = Vec::new();
        for op in ops {
            let jj = j.as_ref().unwrap();
            match op {
                Op::Mark(batch) => {
                    let marks: Vec<Mark> = batch
                        .iter()
                        .map(|&(i, range, r, ns)| Mark {
                            path: path_of(&paths[i]),
                            range,
                            reason: Reason::ALL[r],
                            ns,
                        })
                        .collect();
                    jj.mark(&marks).unwrap();
                    for (i, range, r, ns) in batch {
                        model.mark(&paths[i], range, Reason::ALL[r].bit(), ns);
                    }
                }
                Op::Subtree(i, r, ns) => {
                    jj.mark_subtree(&path_of(&paths[i]), Reason::ALL[r], ns).unwrap();
                    model.mark_subtree(&paths[i], Reason::ALL[r].bit(), ns);
                }
                Op::Rename(a, b) => {
                    let (from, to) = (&paths[a], &paths[b]);
                    let res = jj.rename(&path_of(from), &path_of(to));
                    if from == to {
                        prop_assert!(res.is_ok());
                    } else if under(to, from) || under(from, to) {
                        let refused = matches!(res, Err(Error::InvalidRename { .. }));
                        prop_assert!(refused, "{:?}", res);
                    } else {
                        res.unwrap();
                        model.rename(from, to);
                    }
                }
                Op::Remove(i) => {
                    let n = jj.remove(&path_of(&paths[i])).unwrap();
                    prop_assert_eq!(n, model.take(&paths[i]).len());
                }
                Op::Snapshot => {
                    snapshot = all(jj).iter().map(Entry::done).collect();
                    model_snapshot = model.map.iter().map(|(k, e)| (k.clone(), e.touched)).collect();
                }
                Op::CompleteSnapshot => {
                    let n = jj.complete(&snapshot).unwrap();
                    let mut expect = 0;
                    for (k, t) in &model_snapshot {
                        if model.map.get(k).is_some_and(|e| e.touched == *t) {
                            model.map.remove(k);
                            expect += 1;
                        }
                    }
                    prop_assert_eq!(n, expect);
                }
                Op::Reopen => {
                    drop(j.take());
                    j = Some(ChangeJournal::open_with(&file, opts.clone()).unwrap());
                }
            }
            let jj = j.as_ref().unwrap();
            prop_assert_eq!(actual(jj), model.expected());
            prop_assert_eq!(jj.len().unwrap(), model.map.len() as u64);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Crash test: SIGKILL a writer at random moments; every acknowledged batch must survive.
// ---------------------------------------------------------------------------------------

const CRASH_CHILD_ENV: &str = "RILL_CJ_CRASH_CHILD";
const CRASH_START_ENV: &str = "RILL_CJ_CRASH_START";
const CRASH_FILES_PER_BATCH: u64 = 8;

fn crash_batch(id: u64) -> Vec<Mark> {
    (0..CRASH_FILES_PER_BATCH)
        .map(|k| {
            let path = format!("/crash/d{}/b{id}-{k}", id % 13);
            if k == 0 {
                Mark::whole(path.as_str(), Reason::Recovery, id)
            } else {
                Mark::range(path.as_str(), k * 4096, 4096, Reason::RingFull, id)
            }
        })
        .collect()
}

fn crash_batch_present(entries: &BTreeMap<PathBuf, Entry>, id: u64) -> bool {
    if id % 10 == 9 {
        return entries
            .get(Path::new(&format!("/crash/s{id}")))
            .is_some_and(|e| e.subtree);
    }
    crash_batch(id).iter().all(|m| {
        entries.get(&m.path).is_some_and(|e| match m.range {
            None => e.whole,
            Some((off, len)) => {
                e.whole
                    || e.ranges
                        .iter()
                        .any(|r| r.0 <= off && off + len <= r.0 + r.1)
            }
        })
    })
}

/// The child: marks batches forever, printing each id after `mark` returns.
fn crash_child(db: &Path, start: u64) {
    let j = ChangeJournal::open(db).unwrap();
    let mut out = std::io::stdout().lock();
    // on a line of its own: the harness may have left "test ... " unterminated
    writeln!(out, "\nOPEN").unwrap();
    out.flush().unwrap();
    for id in start.. {
        if id % 10 == 9 {
            j.mark_subtree(Path::new(&format!("/crash/s{id}")), Reason::PathUnknown, id)
                .unwrap();
        } else {
            j.mark(&crash_batch(id)).unwrap();
        }
        writeln!(out, "BATCH {id}").unwrap();
        out.flush().unwrap();
    }
}

fn crash_test_name() -> String {
    // the harness names tests without the crate: change_journal::tests::<fn>
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::sigkill_at_random_moments_loses_no_acknowledged_batch")
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_batch() {
    if let Some(db) = std::env::var_os(CRASH_CHILD_ENV) {
        let start = std::env::var(CRASH_START_ENV).unwrap().parse().unwrap();
        crash_child(Path::new(&db), start);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.redb");
    let exe = std::env::current_exe().unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut acked: Vec<u64> = Vec::new();
    let mut kills_before_open = 0;
    for trial in 0..15u64 {
        let mut child = Command::new(&exe)
            .args([
                crash_test_name().as_str(),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, &db)
            .env(CRASH_START_ENV, (trial * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut opened = false;
            let mut ids = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "OPEN" {
                    opened = true;
                } else if let Some(id) = line.strip_prefix("BATCH ") {
                    ids.push(id.parse::<u64>().unwrap());
                }
            }
            (opened, ids)
        });
        // anywhere from during the open (which repairs the previous crash) to many batches in
        let delay = Duration::from_millis(if rand(4) == 0 {
            rand(30)
        } else {
            5 + rand(400)
        });
        let started = Instant::now();
        while started.elapsed() < delay {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the crash child exited by itself: {status}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (opened, ids) = reader.join().unwrap();
        if !opened {
            kills_before_open += 1;
        }
        acked.extend(ids);

        let j = ChangeJournal::open(&db).unwrap();
        let entries: BTreeMap<PathBuf, Entry> =
            all(&j).into_iter().map(|e| (e.path.clone(), e)).collect();
        let missing: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|&id| !crash_batch_present(&entries, id))
            .collect();
        assert!(
            missing.is_empty(),
            "trial {trial}: acknowledged batches missing after SIGKILL: {missing:?}"
        );
        // a batch is all or nothing, acknowledged or not
        let mut files_of: BTreeMap<u64, u64> = BTreeMap::new();
        for e in entries.values().filter(|e| !e.subtree) {
            let name = e.path.file_name().unwrap().to_str().unwrap();
            let id = name[1..].split_once('-').unwrap().0.parse().unwrap();
            *files_of.entry(id).or_default() += 1;
        }
        for (id, n) in files_of {
            assert_eq!(
                n, CRASH_FILES_PER_BATCH,
                "trial {trial}: batch {id} is torn"
            );
            assert!(crash_batch_present(&entries, id));
        }
        drop(j);
    }
    assert!(
        acked.len() >= 15,
        "only {} batches acknowledged ({kills_before_open} kills before open)",
        acked.len()
    );
    eprintln!(
        "crash test: {} acknowledged batches survived 15 SIGKILLs ({kills_before_open} during open)",
        acked.len()
    );
}
