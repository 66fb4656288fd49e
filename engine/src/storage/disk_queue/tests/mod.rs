//! DiskQueue tests: basic behaviour here; properties, damage, limits and a real crash test
//! in the submodules. The write-through cost is measured by `rill-bench journal`.

mod crash;
mod damage;
mod limits;
mod prop;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::segment::parse_segment_name;
use super::*;

/// A configuration with no space limits and small segments.
pub(super) fn cfg(dir: &Path, segment_bytes: u64) -> DiskQueueConfig {
    DiskQueueConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        space_max_bytes: 0,
        free_space_min_bytes: 0,
        write_through: false,
        sync_mode: SyncMode::default(),
        durable: true,
    }
}

/// The payload every test writes for `seq`: its length and bytes derive from `seq`, so a
/// reader can check any record it gets without a model.
pub(super) fn payload_for(seq: u64, max_len: usize) -> Vec<u8> {
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = (next() % (max_len as u64 + 1)) as usize;
    (0..len).map(|_| next() as u8).collect()
}

/// Segment files in `dir`, by id.
pub(super) fn seg_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            parse_segment_name(&e.file_name().to_string_lossy()).map(|id| (id, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// Total bytes of the segment files in `dir`.
pub(super) fn seg_bytes(dir: &Path) -> u64 {
    seg_files(dir)
        .iter()
        .map(|(_, p)| fs::metadata(p).unwrap().len())
        .sum()
}

/// `(offset, size, seq)` of the records of a segment file, from their length fields.
pub(super) fn record_spans(path: &Path) -> Vec<(u64, u64)> {
    record_spans_seqs(path)
        .into_iter()
        .map(|(o, s, _)| (o, s))
        .collect()
}

pub(super) fn record_spans_seqs(path: &Path) -> Vec<(u64, u64, u64)> {
    use super::record::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
    let bytes = fs::read(path).unwrap();
    let mut spans = Vec::new();
    let mut off = SEGMENT_HEADER_LEN as usize;
    while off + RECORD_HEADER_LEN as usize <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap()) as u64;
        let seq = u64::from_le_bytes(bytes[off + 8..off + 16].try_into().unwrap());
        let size = RECORD_HEADER_LEN + len.div_ceil(8) * 8;
        spans.push((off as u64, size, seq));
        off += size as usize;
    }
    spans
}

/// Read until the reader has caught up.
pub(super) fn drain(r: &mut DiskQueueReader) -> Vec<Record> {
    let mut v = Vec::new();
    while let Some(rec) = r.next().unwrap() {
        v.push(rec);
    }
    v
}

/// Copy every regular file of `from` into a fresh temporary directory.
pub(super) fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
        }
    }
    to
}

/// Durable or not (a target's queue), a journal hands back what it was given, in order.
#[test]
fn append_read_commit_across_segments() {
    for durable in [true, false] {
        append_read_commit(durable);
    }
}

fn append_read_commit(durable: bool) {
    let dir = tempfile::tempdir().unwrap();
    let config = DiskQueueConfig {
        durable,
        ..cfg(dir.path(), 256)
    };
    let (mut w, mut r, rec) = DiskQueue::open(config).unwrap();
    assert_eq!(rec.records, 0);
    assert_eq!(r.next().unwrap(), None);
    for seq in 1..=100u64 {
        w.append(seq * 3, &payload_for(seq, 300)).unwrap();
    }
    assert!(seg_files(dir.path()).len() > 10);
    let st = w.stats();
    assert_eq!((st.records_queued, st.records_unread), (100, 100));
    assert_eq!(st.bytes_on_disk, seg_bytes(dir.path()));
    let got = drain(&mut r);
    let want: Vec<_> = (1..=100u64).map(|s| (s * 3, payload_for(s, 300))).collect();
    let got: Vec<_> = got.into_iter().map(|r| (r.seq, r.payload)).collect();
    assert_eq!(got, want);
    assert_eq!(r.stats().records_unread, 0);
    r.commit(150).unwrap();
    assert_eq!(r.stats().records_queued, 50);
    r.commit(300).unwrap();
    let st = r.stats();
    assert_eq!(st.records_queued, 0);
    assert_eq!(st.committed, Some(300));
    // Only the writer's active segment is left.
    assert_eq!(st.segments, 1);
    assert_eq!(seg_files(dir.path()).len(), 1);
    assert_eq!(st.bytes_on_disk, seg_bytes(dir.path()));
}

#[test]
fn reopen_continues_after_the_committed_position() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut w, mut r, _) = DiskQueue::open(cfg(dir.path(), 512)).unwrap();
        for seq in 1..=40 {
            w.append(seq, &payload_for(seq, 100)).unwrap();
        }
        for _ in 0..25 {
            r.next().unwrap().unwrap();
        }
        r.commit(17).unwrap();
    }
    let (mut w, mut r, rec) = DiskQueue::open(cfg(dir.path(), 512)).unwrap();
    assert_eq!(
        (rec.records, rec.committed, rec.last_seq),
        (23, Some(17), Some(40))
    );
    assert!(rec.torn_tail.is_none() && rec.corrupt.is_empty());
    assert_eq!(w.last_seq(), Some(40));
    assert!(matches!(
        w.append(40, b"x"),
        Err(DiskQueueError::SeqNotIncreasing { seq: 40, last: 40 })
    ));
    w.append(41, &payload_for(41, 100)).unwrap();
    let got: Vec<u64> = drain(&mut r).iter().map(|r| r.seq).collect();
    assert_eq!(got, (18..=41).collect::<Vec<_>>());
    // Commit everything: the next open starts empty but remembers the position.
    r.commit(41).unwrap();
    drop((w, r));
    let (w, mut r, rec) = DiskQueue::open(cfg(dir.path(), 512)).unwrap();
    assert_eq!((rec.records, rec.committed, rec.segments), (0, Some(41), 0));
    assert_eq!(w.last_seq(), Some(41));
    assert_eq!(r.next().unwrap(), None);
}

#[test]
fn misuse_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut r, _) = DiskQueue::open(cfg(dir.path(), 1024)).unwrap();
    assert!(matches!(
        DiskQueue::open(cfg(dir.path(), 1024)),
        Err(DiskQueueError::Locked(_))
    ));
    assert!(matches!(
        DiskQueue::open(cfg(&dir.path().join("x"), 10)),
        Err(DiskQueueError::InvalidConfig(_))
    ));
    w.append(5, b"five").unwrap();
    assert!(matches!(
        w.append(5, b"again"),
        Err(DiskQueueError::SeqNotIncreasing { .. })
    ));
    assert!(matches!(
        r.commit(5),
        Err(DiskQueueError::CommitBeyondDelivered { .. })
    ));
    assert_eq!(r.next().unwrap().unwrap().seq, 5);
    assert!(matches!(
        r.commit(6),
        Err(DiskQueueError::CommitBeyondDelivered { .. })
    ));
    r.commit(5).unwrap();
    r.commit(3).unwrap(); // below the committed position: a no-op
    assert_eq!(r.committed(), Some(5));
}

#[test]
fn a_record_larger_than_a_segment_gets_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut r, _) = DiskQueue::open(cfg(dir.path(), 256)).unwrap();
    w.append(1, &[1; 10]).unwrap();
    w.append(2, &[2; 5000]).unwrap();
    w.append(3, &[3; 10]).unwrap();
    assert_eq!(seg_files(dir.path()).len(), 3);
    let got = drain(&mut r);
    assert_eq!(got[1].payload, vec![2; 5000]);
    drop((w, r));
    let (_, mut r, rec) = DiskQueue::open(cfg(dir.path(), 256)).unwrap();
    assert_eq!(rec.records, 3);
    assert_eq!(drain(&mut r).len(), 3);
}

#[test]
fn reader_and_writer_on_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut r, _) = DiskQueue::open(cfg(dir.path(), 4096)).unwrap();
    const N: u64 = 20_000;
    let done = Arc::new(AtomicBool::new(false));
    let done_w = Arc::clone(&done);
    let producer = std::thread::spawn(move || {
        for seq in 1..=N {
            w.append(seq, &payload_for(seq, 200)).unwrap();
        }
        done_w.store(true, Ordering::Release);
        w
    });
    let mut want = 1;
    let mut buf = Vec::new();
    while want <= N {
        match r.next_into(&mut buf).unwrap() {
            Some(seq) => {
                assert_eq!(seq, want);
                assert_eq!(buf, payload_for(seq, 200));
                if seq % 97 == 0 {
                    r.commit(seq).unwrap();
                }
                want += 1;
            }
            None => {
                if !done.load(Ordering::Acquire) {
                    r.wait(Duration::from_millis(100));
                }
            }
        }
    }
    let w = producer.join().unwrap();
    assert_eq!(r.next().unwrap(), None);
    r.commit(N).unwrap();
    assert_eq!(w.stats().records_queued, 0);
    assert_eq!(w.stats().segments, 1);
}

#[test]
fn wait_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, r, _) = DiskQueue::open(cfg(dir.path(), 4096)).unwrap();
    assert!(!r.wait(Duration::from_millis(10)));
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        w.append(1, b"one").unwrap();
        w
    });
    assert!(r.wait(Duration::from_secs(10)));
    t.join().unwrap();
}
