//! Capture to replica on one host: the real driver captures a workload of every kind of
//! operation, the engine's drain and queue carry it, the outbox resolves it, and the local
//! destination applies it to another directory; then the two trees must be equal in content, type, mode, owner,
//! extended attributes, symlink targets, hard links, and file times.

use std::time::{Duration, Instant};

use rill_engine::repset::{ReplicationSet, Rule};
use rill_engine::source::destination::LocalDestination;
use rill_engine::source::drain::{Drain, Drained};
use rill_engine::source::outbox::Outbox;
use rill_engine::storage::disk_queue::{DiskQueue, DiskQueueConfig};
use rill_engine::storage::queue::{queue, AtLimit, Limits, Pushed};
use rill_tests::{require_kernel_support, TestDir};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_rill-workload");

#[test]
fn a_captured_workload_replicates_to_an_equal_tree() {
    require_kernel_support();
    let src = TestDir::new("pipeline-src");
    let dst = TestDir::new("pipeline-dst");
    let (mut capture, _pid) = rill_tests::capture_workload(WORKLOAD, "tree", src.path());

    // Capture until the stream is quiet: the workload has exited, so everything it did is
    // in the ring by now; a short quiet period covers the reader's batching.
    let mut events = Vec::new();
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while quiet_since.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
        if capture
            .poll(Duration::from_millis(50), &mut events)
            .unwrap()
            > 0
        {
            quiet_since = Instant::now();
        }
    }
    capture.flush(&mut events).unwrap();
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.op, rill_ops::Op::Overflow { .. })),
        "no loss"
    );

    let set = ReplicationSet::new(vec![
        Rule::new(src.path().to_str().unwrap(), true, true).unwrap()
    ]);
    let mut drained = Vec::new();
    Drain::new(set, 65536).process(events, &mut drained);

    let qdir = tempfile::tempdir().unwrap();
    let mut cfg = DiskQueueConfig::new(qdir.path());
    cfg.free_space_min_bytes = 0;
    let (w, r, rec) = DiskQueue::open(cfg).unwrap();
    // A small memory queue, so part of the stream goes through the disk journal.
    let limits = Limits {
        memory_bytes: 64 << 10,
        memory_ops: 64,
        spill_percent: 50,
        alert_percent: 50,
        at_limit: AtLimit::QueueToDisk,
    };
    let (mut producer, mut consumer) = queue(limits, w, r, rec.last_seq);
    let mut spilled = 0;
    for d in drained {
        match d {
            Drained::Op(ev) => match producer.push(ev).unwrap() {
                Pushed::Memory(_) => {}
                Pushed::Disk(_) => spilled += 1,
                other => panic!("queue-to-disk keeps everything: {other:?}"),
            },
            Drained::Dirty { path, .. } => panic!(
                "nothing should need the change journal here: {}",
                path.display()
            ),
        }
    }
    assert!(spilled > 0, "the test must exercise the disk queue");
    let destination = LocalDestination::new(dst.path(), Default::default()).unwrap();
    let mut outbox = Outbox::new(src.path(), Default::default(), Box::new(destination));
    let mut last = 0;
    while let Some(q) = consumer.pop(Duration::ZERO).unwrap() {
        outbox
            .send(&q.event, rill_engine::net::proto::Stream::Replication)
            .unwrap_or_else(|e| panic!("op {}: {e}", q.seq));
        last = q.seq;
    }
    outbox.flush().unwrap();
    consumer.ack(last).unwrap();

    rill_tests::tree::assert_equal_trees(src.path(), dst.path());
}
