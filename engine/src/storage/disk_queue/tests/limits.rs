//! Space limits: `QJournalSpaceMax`, `QJournalFreeSpaceMin` on a small loop-mounted ext4,
//! and a file system that really runs out.

use std::process::Command;

use super::*;

/// A 32 MiB ext4 image loop-mounted in a temporary directory, unmounted on drop (also when
/// the test panics).
struct LoopMount {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopMount {
    fn new() -> LoopMount {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        fs::File::create(&img).unwrap().set_len(32 << 20).unwrap();
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfs.ext4 failed");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let ok = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "mount -o loop failed (the test needs root and loop devices)"
        );
        LoopMount { mnt, _dir: dir }
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        // MNT_DETACH so a leaked descriptor cannot keep the mount (and its loop device)
        // alive.
        if let Err(e) = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("umount {}: {e}", self.mnt.display());
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[allow(clippy::unnecessary_cast)] // the field types differ between targets
fn free_bytes(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).unwrap();
    s.blocks_available() as u64 * s.fragment_size() as u64
}

/// File sizes in `dir`, to show a refused append wrote nothing.
fn sizes(dir: &Path) -> Vec<(u64, u64)> {
    seg_files(dir)
        .into_iter()
        .map(|(id, p)| (id, fs::metadata(p).unwrap().len()))
        .collect()
}

#[test]
fn space_max_refuses_then_commits_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), 4096);
    c.space_max_bytes = 16 * 1024;
    let (mut w, mut r, _) = DiskQueue::open(c.clone()).unwrap();
    let payload = vec![0xab; 1000];
    let mut seq = 0;
    let err = loop {
        match w.append(seq + 1, &payload) {
            Ok(()) => seq += 1,
            Err(e) => break e,
        }
    };
    match err {
        DiskQueueError::Full {
            reason: FullReason::SpaceMax,
            needed,
            available,
            limit,
        } => {
            assert_eq!(limit, 16 * 1024);
            assert!(needed > available);
        }
        e => panic!("expected Full(SpaceMax), got {e}"),
    }
    let full = seq;
    assert!(full >= 12, "only {full} records fit");
    let before = sizes(dir.path());
    assert!(seg_bytes(dir.path()) <= 16 * 1024);
    assert_eq!(w.stats().bytes_on_disk, seg_bytes(dir.path()));
    // Refused again, and nothing written.
    assert!(matches!(
        w.append(seq + 1, &payload),
        Err(DiskQueueError::Full { .. })
    ));
    assert_eq!(sizes(dir.path()), before);
    // Consume and commit half: room again.
    for _ in 0..full / 2 {
        r.next().unwrap().unwrap();
    }
    r.commit(full / 2).unwrap();
    let mut more = 0;
    while w.append(seq + 1, &payload).is_ok() {
        seq += 1;
        more += 1;
    }
    assert!(more >= 3, "after committing half, only {more} appends fit");
    assert!(seg_bytes(dir.path()) <= 16 * 1024);
    // Everything arrives in order, across a reopen.
    let got: Vec<u64> = drain(&mut r).iter().map(|r| r.seq).collect();
    assert_eq!(got, (full / 2 + 1..=seq).collect::<Vec<_>>());
    r.commit(seq).unwrap();
    drop((w, r));
    let (_, _, rec) = DiskQueue::open(c).unwrap();
    assert_eq!((rec.records, rec.committed), (0, Some(seq)));
}

#[test]
fn free_space_min_on_a_small_ext4() {
    if !is_root() {
        eprintln!("skipped: needs root to loop-mount");
        return;
    }
    let m = LoopMount::new();
    let jdir = m.mnt.join("queue");
    let free = free_bytes(&m.mnt);
    assert!(
        free > 16 << 20,
        "only {free} bytes free on a fresh 32 MiB ext4"
    );
    let mut c = cfg(&jdir, 64 * 1024);
    c.free_space_min_bytes = free - (1 << 20);
    let (mut w, mut r, _) = DiskQueue::open(c.clone()).unwrap();
    let payload = vec![7u8; 4096];
    let mut seq = 0;
    fill_until_free_space_floor(&mut w, &mut seq, |_| payload.clone());
    // About 1 MiB fit (less what ext4 spends on metadata).
    assert!((100..=260).contains(&seq), "{seq} appends before Full");
    let before = sizes(&jdir);
    assert!(w.append(seq + 1, &payload).is_err());
    assert_eq!(sizes(&jdir), before);
    assert!(free_bytes(&m.mnt) >= c.free_space_min_bytes);
    assert_eq!(drain(&mut r).len() as u64, seq);
    drop((w, r));
    let (_, mut r, rec) = DiskQueue::open(c).unwrap();
    assert_eq!(rec.records, seq);
    assert_eq!(drain(&mut r).len() as u64, seq);
}

/// With no free-space floor the file system itself fills up: the failed write is cut back
/// and reported as Full, and everything before it survives a reopen.
#[test]
fn a_really_full_file_system_is_full_not_torn() {
    if !is_root() {
        eprintln!("skipped: needs root to loop-mount");
        return;
    }
    let m = LoopMount::new();
    let jdir = m.mnt.join("queue");
    let c = cfg(&jdir, 1 << 20);
    let (mut w, _r, _) = DiskQueue::open(c.clone()).unwrap();
    let mut seq = 0;
    fill_until_free_space_floor(&mut w, &mut seq, |seq| payload_for(seq, 20_000));
    assert!(seq > 1000, "only {seq} appends on 32 MiB");
    // Still refused cleanly, and the writer is still usable for what fits.
    let _ = w.append(seq + 1, &payload_for(seq + 1, 20_000));
    w.flush().unwrap();
    drop(w);
    drop(_r);
    let (_, mut r, rec) = DiskQueue::open(c).unwrap();
    assert!(rec.torn_tail.is_none() && rec.corrupt.is_empty(), "{rec:?}");
    let got = drain(&mut r);
    assert!(got.len() as u64 >= seq);
    for (i, rec) in got.iter().enumerate() {
        assert_eq!(rec.seq, i as u64 + 1);
        assert_eq!(rec.payload, payload_for(rec.seq, 20_000));
    }
}

/// Appends until the journal refuses, which must be for the free-space floor; `seq` ends
/// at the last sequence number appended.
fn fill_until_free_space_floor(
    w: &mut DiskQueueWriter,
    seq: &mut u64,
    payload: impl Fn(u64) -> Vec<u8>,
) {
    let err = loop {
        match w.append(*seq + 1, &payload(*seq + 1)) {
            Ok(()) => *seq += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            err,
            DiskQueueError::Full {
                reason: FullReason::FreeSpace,
                ..
            }
        ),
        "{err}"
    );
}
