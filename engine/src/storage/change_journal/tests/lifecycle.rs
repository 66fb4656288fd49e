//! How entries fold, move and leave the journal: subtree entries absorbing marks, rename
//! (also into and out of a subtree), remove, and `complete` keeping entries marked again
//! after `pending` read them, also while writers race it.

use super::*;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
