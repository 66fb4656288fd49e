//! The bytes a capture carries inline are the bytes written: through the path that copies
//! into ring slots directly (writes after a file's first) at every slot size, through the
//! scratch path (first write, writev), and at the inline limit. Uses the driver library
//! in-process, since `capture --json` prints whether data is inline, not the data.

use std::time::{Duration, Instant};

use rill_ops::Op;
use rill_tests::{data_pattern, require_kernel_support, TestDir, DATA_SIZES};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_rill-workload");

#[test]
fn inline_data_is_the_data_written() {
    require_kernel_support();
    let dir = TestDir::new("data");
    let (mut capture, pid) = rill_tests::capture_workload(WORKLOAD, "data", dir.path());

    let expected: Vec<(u64, Vec<u8>)> = {
        let mut at = 0u64;
        let mut v: Vec<(u64, Vec<u8>)> = DATA_SIZES
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let w = (at, data_pattern(len, i as u8));
                at += len as u64;
                w
            })
            .collect();
        v.push((7, data_pattern(300, 200)));
        let mut vec = data_pattern(100, 201);
        vec.extend(data_pattern(5000, 202));
        v.push((at, vec));
        v
    };
    let mut writes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut events = Vec::new();
    while writes.len() < expected.len() && Instant::now() < deadline {
        capture
            .poll(Duration::from_millis(50), &mut events)
            .expect("poll");
        for ev in events.drain(..).filter(|e| e.pid == pid) {
            if let Op::Write { offset, data, .. } = ev.op {
                writes.push((
                    offset,
                    data.expect("every write here is within the inline limit"),
                ));
            }
        }
    }
    assert_eq!(writes.len(), expected.len(), "writes captured");
    for (i, ((off, data), (want_off, want))) in writes.iter().zip(&expected).enumerate() {
        assert_eq!(off, want_off, "write {i}: offset");
        assert_eq!(data.len(), want.len(), "write {i}: length");
        assert!(
            data == want,
            "write {i} ({} bytes): captured bytes differ from those written",
            want.len()
        );
    }
}
