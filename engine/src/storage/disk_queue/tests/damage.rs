//! Damaged files: torn tails at every byte, flipped bytes in a middle record, records out
//! of order, and random garbage, which must be reported or refused, never replayed and
//! never a panic.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use proptest::prelude::*;

use super::super::record::{encode_record, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::record_spans;
use super::*;

/// A journal of `n` records (seqs 1..=n, payloads from `payload_for(seq, max_len)`).
fn build(n: u64, segment_bytes: u64, max_len: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _r, _) = DiskQueue::open(cfg(dir.path(), segment_bytes)).unwrap();
    for seq in 1..=n {
        w.append(seq, &payload_for(seq, max_len)).unwrap();
    }
    w.flush().unwrap();
    dir
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

fn check_payloads(records: &[Record], max_len: usize) {
    for r in records {
        assert_eq!(
            r.payload,
            payload_for(r.seq, max_len),
            "payload of {}",
            r.seq
        );
    }
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record() {
    const N: u64 = 30;
    let src = build(N, 600, 120);
    let (last_id, last_path) = seg_files(src.path()).pop().unwrap();
    let spans = record_spans(&last_path);
    assert!(
        spans.len() >= 3,
        "the last segment should hold several records"
    );
    let (start, size) = *spans.last().unwrap();
    let orig = fs::read(&last_path).unwrap();
    let mut intact_seen = 0;
    for cut in start..start + size {
        for zero_fill in [false, true] {
            let dir = copy_dir(src.path());
            let seg = seg_files(dir.path()).pop().unwrap().1;
            let f = OpenOptions::new().write(true).open(&seg).unwrap();
            f.set_len(cut).unwrap();
            if zero_fill {
                // What a crash in ext4 writeback mode can leave: size grown, data not.
                f.set_len(start + size).unwrap();
            }
            let (mut w, mut r, rec) = DiskQueue::open(cfg(dir.path(), 600)).unwrap();
            // Zeroing only the (already zero) padding leaves the record whole.
            let intact = zero_fill
                && orig[cut as usize..(start + size) as usize]
                    .iter()
                    .all(|&b| b == 0);
            let kept = if intact { N } else { N - 1 };
            let dropped = if intact {
                0
            } else if zero_fill {
                size
            } else {
                cut - start
            };
            let want_tail = (dropped > 0).then_some((last_id, start, dropped));
            let got_tail = rec
                .torn_tail
                .as_ref()
                .map(|t| (t.segment, t.offset, t.bytes_dropped));
            assert_eq!(got_tail, want_tail, "cut at {cut}, zero fill {zero_fill}");
            assert!(rec.corrupt.is_empty(), "cut at {cut}: {:?}", rec.corrupt);
            assert_eq!(rec.records, kept);
            let len = if intact { start + size } else { start };
            assert_eq!(fs::metadata(&seg).unwrap().len(), len, "truncated");
            let got = drain(&mut r);
            assert_eq!(seqs(&got), (1..=kept).collect::<Vec<_>>());
            check_payloads(&got, 120);
            // The journal goes on, and the next open finds nothing torn.
            w.append(N + 1, b"again").unwrap();
            assert_eq!(r.next().unwrap().unwrap().payload, b"again");
            drop((w, r));
            let (_, _, rec) = DiskQueue::open(cfg(dir.path(), 600)).unwrap();
            assert!(rec.torn_tail.is_none() && rec.corrupt.is_empty());
            assert_eq!(rec.records, kept + 1);
            intact_seen += intact as usize;
        }
    }
    assert!(intact_seen < 8);
}

#[test]
fn a_torn_segment_header_removes_the_segment() {
    let src = build(10, 256, 100);
    let (id, _) = seg_files(src.path()).pop().unwrap();
    for cut in 0..SEGMENT_HEADER_LEN {
        let dir = copy_dir(src.path());
        let (_, seg) = seg_files(dir.path()).pop().unwrap();
        let before = drain(&mut DiskQueue::open(cfg(src.path(), 256)).unwrap().1).len() as u64;
        let in_last = record_spans(&seg).len() as u64;
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (_, mut r, rec) = DiskQueue::open(cfg(dir.path(), 256)).unwrap();
        assert!(!seg.exists());
        assert!(rec.corrupt.is_empty());
        assert_eq!(
            rec.torn_tail.map(|t| (t.segment, t.offset)),
            (cut > 0).then_some((id, 0))
        );
        assert_eq!(drain(&mut r).len() as u64, before - in_last);
    }
}

/// Records 1..=N across segments; flip each byte of a middle record of a middle segment.
#[test]
fn a_flipped_byte_in_a_middle_segment_is_reported_and_later_segments_still_delivered() {
    const N: u64 = 40;
    let src = build(N, 1024, 150);
    let files = seg_files(src.path());
    assert!(files.len() >= 4);
    let (mid_id, mid_path) = files[files.len() / 2].clone();
    let spans = record_spans(&mid_path);
    assert!(spans.len() >= 3);
    let k = spans.len() / 2;
    // Sequence numbers are 1..=N, in file order.
    let before: u64 = files[..files.len() / 2]
        .iter()
        .map(|(_, p)| record_spans(p).len() as u64)
        .sum();
    let bad_seq = before + k as u64 + 1;
    let next_first = before + spans.len() as u64 + 1;
    let (start, size) = spans[k];
    for at in start..start + size {
        let dir = copy_dir(src.path());
        let path = dir.path().join(mid_path.file_name().unwrap());
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x20], at).unwrap();
        for round in 0..2 {
            // Reported on every open until committed past.
            let (_, mut r, rec) = DiskQueue::open(cfg(dir.path(), 1024)).unwrap();
            assert!(rec.torn_tail.is_none());
            assert_eq!(rec.corrupt.len(), 1, "flip at {at}, round {round}");
            let c = &rec.corrupt[0];
            assert_eq!(
                (c.segment, c.first_bad_offset),
                (mid_id, start),
                "flip at {at}"
            );
            assert_eq!(
                (c.seqs_lost_from, c.seqs_lost_to),
                (bad_seq, Some(next_first - 1))
            );
            assert_eq!(
                c.records_after_damage,
                (spans.len() - k - 1) as u64,
                "flip at {at}"
            );
            let got = drain(&mut r);
            let want: Vec<u64> = (1..bad_seq).chain(next_first..=N).collect();
            assert_eq!(seqs(&got), want);
            check_payloads(&got, 150);
            if round == 1 {
                r.commit(N).unwrap();
            }
        }
        let (_, _, rec) = DiskQueue::open(cfg(dir.path(), 1024)).unwrap();
        assert!(rec.corrupt.is_empty() && rec.records == 0, "{rec:?}");
        assert!(!path.exists());
    }
}

#[test]
fn a_record_out_of_order_is_corruption() {
    const N: u64 = 20;
    let src = build(N, 100_000, 50);
    let (id, path) = seg_files(src.path()).pop().unwrap();
    let spans = record_spans(&path);
    // Rewrite record 10 (seq 10) as a valid record with seq 3 and the same size.
    let (start, size) = spans[9];
    let mut frame = Vec::new();
    let mut payload = vec![0u8; (size - RECORD_HEADER_LEN) as usize];
    loop {
        encode_record(&mut frame, 3, &payload);
        if frame.len() as u64 == size {
            break;
        }
        payload.pop();
    }
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&frame, start).unwrap();
    let (_, mut r, rec) = DiskQueue::open(cfg(src.path(), 100_000)).unwrap();
    assert_eq!(rec.corrupt.len(), 1, "{rec:?}");
    let c = &rec.corrupt[0];
    assert_eq!((c.segment, c.first_bad_offset), (id, start));
    assert_eq!(c.damage, Damage::SeqNotIncreasing { prev: 9, seq: 3 });
    // In the newest segment, with valid records after it: corruption, not a torn tail.
    assert_eq!((c.seqs_lost_from, c.seqs_lost_to), (10, Some(N)));
    assert!(rec.torn_tail.is_none());
    assert_eq!(seqs(&drain(&mut r)), (1..10).collect::<Vec<_>>());
}

/// Damage that appears after open, in the segment the writer is still appending to: the
/// reader reports it once, skips the rest of that segment, and the writer moves on to a
/// new segment so later records are not lost with it.
#[test]
fn damage_found_while_reading_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut r, _) = DiskQueue::open(cfg(dir.path(), 4 << 20)).unwrap();
    for seq in 1..=1000 {
        w.append(seq, &[seq as u8; 1000]).unwrap();
    }
    assert_eq!(r.next().unwrap().unwrap().seq, 1); // the window now holds the first 256 KiB
    let (id, path) = seg_files(dir.path()).pop().unwrap();
    let (start, _) = record_spans(&path)[599];
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xee], start + 30).unwrap();
    let mut n = 1;
    let err = loop {
        match r.next() {
            Ok(Some(rec)) => {
                n += 1;
                assert_eq!(rec.seq, n);
            }
            Ok(None) => panic!("no error reported"),
            Err(e) => break e,
        }
    };
    match err {
        DiskQueueError::Corrupt(c) => {
            assert_eq!((c.segment, c.first_bad_offset), (id, start));
            assert_eq!(c.damage, Damage::BadChecksum);
            assert_eq!(c.seqs_lost_from, 600);
        }
        e => panic!("{e}"),
    }
    assert_eq!(n, 599);
    assert_eq!(r.next().unwrap(), None);
    w.append(1001, b"later").unwrap();
    assert_eq!(
        seg_files(dir.path()).len(),
        2,
        "the writer moved to a new segment"
    );
    assert_eq!(r.next().unwrap().unwrap().seq, 1001);
    // Committing past it deletes the damaged segment.
    r.commit(1001).unwrap();
    assert!(!path.exists());
}

#[test]
fn the_halves_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<DiskQueueWriter>();
    send::<DiskQueueReader>();
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Overwrite bytes of the n-th file (segments and head, by name order).
    Overwrite {
        file: usize,
        at: u64,
        bytes: Vec<u8>,
    },
    Truncate {
        file: usize,
        len: u64,
    },
    /// Add a file named like a segment (or not) with these contents.
    Add {
        id: u64,
        segment_name: bool,
        bytes: Vec<u8>,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (
            any::<usize>(),
            0u64..6000,
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(file, at, bytes)| Mutation::Overwrite { file, at, bytes }),
        (any::<usize>(), 0u64..6000).prop_map(|(file, len)| Mutation::Truncate { file, len }),
        (
            0u64..40,
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..3000)
        )
            .prop_map(|(id, segment_name, bytes)| Mutation::Add {
                id,
                segment_name,
                bytes
            }),
    ]
}

fn apply(dir: &Path, m: &Mutation) {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "lock")
        .collect();
    files.sort();
    match m {
        Mutation::Overwrite { file, at, bytes } if !files.is_empty() => {
            let f = OpenOptions::new()
                .write(true)
                .open(&files[file % files.len()])
                .unwrap();
            f.write_all_at(bytes, *at).unwrap();
        }
        Mutation::Truncate { file, len } if !files.is_empty() => {
            let f = OpenOptions::new()
                .write(true)
                .open(&files[file % files.len()])
                .unwrap();
            f.set_len(*len).unwrap();
        }
        Mutation::Add {
            id,
            segment_name,
            bytes,
        } => {
            let name = if *segment_name {
                super::super::segment::segment_name(*id)
            } else {
                format!("junk-{id}")
            };
            fs::write(dir.join(name), bytes).unwrap();
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Failing cases are saved next to this file, inside the journal's folder.
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("regressions"))),
        cases: 200, ..ProptestConfig::default() })]

    /// Whatever happens to the files, open and read never panic, and whatever is delivered
    /// is a real record: in order, above the committed position, with its own payload.
    #[test]
    fn garbage_is_reported_or_refused_never_replayed(
        n in 0u64..40,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let dir = build(n, 700, 200);
        {
            // Commit part of it so the head has a position.
            let (_, mut r, _) = DiskQueue::open(cfg(dir.path(), 700)).unwrap();
            let got = drain(&mut r);
            if let Some(rec) = got.get(got.len() / 3) {
                r.commit(rec.seq).unwrap();
            }
        }
        for m in &mutations {
            apply(dir.path(), m);
        }
        if let Ok((mut w, mut r, rec)) = DiskQueue::open(cfg(dir.path(), 700)) {
            let mut prev = rec.committed;
            let mut buf = Vec::new();
            for _ in 0..10_000 {
                match r.next_into(&mut buf) {
                    Ok(Some(seq)) => {
                        prop_assert!(prev.is_none_or(|p| seq > p));
                        prop_assert!(seq >= 1 && seq <= n);
                        prop_assert!(buf == payload_for(seq, 200));
                        prev = Some(seq);
                    }
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
            let next = w.last_seq().map_or(1, |s| s + 1);
            w.append(next, b"after").unwrap();
            prop_assert_eq!(r.next().unwrap().map(|r| r.seq), Some(next));
        }
    }
}
