//! Property: any interleaving of appends, reads, commits and reopens, with any segment and
//! payload sizes, delivers exactly the appended records in order, each once after the
//! committed position, nothing lost, nothing duplicated.

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    /// Append a record with this payload length, its seq this far above the last.
    Append {
        len: usize,
        gap: u64,
    },
    /// Read up to this many records.
    Read(usize),
    /// Commit a point chosen by this fraction between committed and last read.
    Commit(u8),
    /// Drop both halves and open again.
    Reopen,
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop_oneof![4 => 0usize..200, 2 => 200usize..3000, 1 => 3000usize..70_000], 1u64..4)
            .prop_map(|(len, gap)| Op::Append { len, gap }),
        4 => (1usize..30).prop_map(Op::Read),
        2 => any::<u8>().prop_map(Op::Commit),
        1 => Just(Op::Reopen),
        1 => Just(Op::Flush),
    ]
}

fn content(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

fn run(segment_bytes: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = cfg(dir.path(), segment_bytes);
    let (mut w, mut r, _) = DiskQueue::open(config.clone()).unwrap();
    // The model: everything appended, how far it was read, how far committed.
    let mut appended: Vec<(u64, usize)> = Vec::new();
    let mut read = 0usize;
    let mut committed = 0usize;
    let mut last_seq = 0u64;
    let mut buf = Vec::new();
    for op in ops {
        match op {
            Op::Append { len, gap } => {
                let seq = last_seq + gap;
                w.append(seq, &content(seq, len)).unwrap();
                appended.push((seq, len));
                last_seq = seq;
            }
            Op::Read(n) => {
                for _ in 0..n {
                    let got = r.next_into(&mut buf).unwrap();
                    match appended.get(read) {
                        Some(&(seq, len)) => {
                            prop_assert_eq!(got, Some(seq));
                            prop_assert!(buf == content(seq, len), "payload of {}", seq);
                            read += 1;
                        }
                        None => prop_assert_eq!(got, None),
                    }
                }
            }
            Op::Commit(frac) => {
                if read > committed {
                    let k = committed + 1 + (read - committed - 1) * frac as usize / 255;
                    r.commit(appended[k - 1].0).unwrap();
                    committed = k;
                }
            }
            Op::Flush => w.flush().unwrap(),
            Op::Reopen => {
                drop((w, r));
                let rec;
                (w, r, rec) = DiskQueue::open(config.clone()).unwrap();
                prop_assert_eq!(rec.records as usize, appended.len() - committed);
                prop_assert!(rec.torn_tail.is_none(), "{:?}", rec.torn_tail);
                prop_assert!(rec.corrupt.is_empty(), "{:?}", rec.corrupt);
                prop_assert_eq!(
                    rec.committed,
                    committed.checked_sub(1).map(|i| appended[i].0)
                );
                prop_assert_eq!(w.last_seq(), appended.last().map(|a| a.0));
                read = committed;
            }
        }
        let st = w.stats();
        prop_assert_eq!(st.records_queued as usize, appended.len() - committed);
        prop_assert_eq!(st.records_unread as usize, appended.len() - read);
        prop_assert_eq!(st.bytes_on_disk, seg_bytes(dir.path()));
        prop_assert_eq!(st.segments, seg_files(dir.path()).len());
    }
    // Whatever is left comes out in order, then nothing.
    for &(seq, len) in &appended[read..] {
        prop_assert_eq!(r.next_into(&mut buf).unwrap(), Some(seq));
        prop_assert!(buf == content(seq, len));
    }
    prop_assert_eq!(r.next().unwrap(), None);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Failing cases are saved next to this file, inside the journal's folder.
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("regressions"))),
        cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn order_is_kept_and_nothing_is_lost_or_duplicated(
        segment_bytes in prop_oneof![256u64..1024, 1024u64..8192, 8192u64..65_536],
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(segment_bytes, ops)?;
    }
}
