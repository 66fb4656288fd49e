//! Criterion micro-benchmarks of the data path's hot steps, one group each:
//!
//! - `record_decode`: a capture record as the driver writes it → an `Event` (the reader's
//!   cost per record: header checks, the path, the write's data copied);
//! - `queue`: one 4 KiB write pushed and popped through the source queue, in memory and
//!   spilled to the disk journal (encode, checksum, append, read back, commit; the append
//!   and the commit are durable, so the disk's sync latency dominates that variant);
//! - `frame`: an Op frame of a 4 KiB write encoded and decoded (checksum both ways),
//!   plain and zstd-compressed;
//! - `apply`: an operation applied beneath a temporary target root (dispatch, the name
//!   confined and opened, the system call), one write, one chmod, and a small batch of
//!   seven (mkdir, create, write, chmod, rename, unlink, rmdir).
//!
//! `cargo bench -p rill-bench --bench hot_paths [-- GROUP]`. The whole-stage benchmarks
//! against baselines are `rill-bench` (capture, engine, journal, replication).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill_abi::record::FLAG_OBJECT_ID;
use rill_abi::{Kind, Record, RecordHeader, Section, SECTION_COUNT};
use rill_bench::engine::{event, open_queue};
use rill_engine::net::proto::{Frame, Policy, Stream, MAX_FRAME};
use rill_engine::replica::apply::{Applier, ApplyOptions};
use rill_ops::decode::{to_event, PathCache};
use rill_ops::{codec, Event, Op};

/// The size of the write every group moves.
const WRITE: usize = 4096;

/// Text-like data (compressible, as most replicated files are, but not a single repeated
/// byte).
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("{i:08} the quick brown fox {}\n", i * 7919 % 1000).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// A 4 KiB write record through an open file (`/src/dir/f`, with its path cookie), as
/// the eBPF programs write it: the base directory leaf first, each component after its
/// length byte; the object's identity (`dev`, `ino`) beside it.
fn write_record() -> Vec<u8> {
    let header = RecordHeader {
        kind: Kind::Write as u8,
        flags: FLAG_OBJECT_ID,
        args: [0, WRITE as u64, 0, 11],
        dev: 8 << 20 | 1,
        ino: 1000,
        ..Default::default()
    };
    let data = text(WRITE);
    let mut sections: [&[u8]; SECTION_COUNT] = [&[]; SECTION_COUNT];
    sections[Section::PathBase as usize] = b"\x03src";
    sections[Section::PathName as usize] = b"dir/f";
    sections[Section::Data as usize] = &data;
    let mut out = vec![0u8; WRITE + 1024];
    let n = Record::encode(&header, sections, &mut out).unwrap();
    out.truncate(n);
    out
}

fn record_decode(c: &mut Criterion) {
    let record = write_record();
    let mut cache = PathCache::default();
    let mut g = c.benchmark_group("record_decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("write_4k", |b| {
        b.iter(|| {
            let (r, _) = Record::decode(black_box(&record)).unwrap();
            to_event(&r, &mut cache).unwrap()
        })
    });
    g.finish();
}

fn queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Bytes(WRITE as u64));
    // A budget the memory variant never reaches, and one byte, so that every operation
    // of the disk variant spills.
    for (name, memory_bytes) in [("memory_push_pop_4k", 4u64 << 30), ("disk_push_pop_4k", 1)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut producer, mut consumer) = open_queue(dir.path(), memory_bytes).unwrap();
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                producer.push(event(i, WRITE)).unwrap();
                let queued = consumer.pop(Duration::ZERO).unwrap().unwrap();
                // Commits a disk record, so the journal does not grow with the run.
                consumer.ack(queued.seq).unwrap();
                queued
            })
        });
    }
    g.finish();
}

fn frame(c: &mut Criterion) {
    let ev = Event::new(
        "dir/f",
        Op::Write {
            offset: 0,
            len: WRITE as u64,
            data: Some(text(WRITE).into()),
        },
    );
    let mut body = Vec::new();
    codec::encode(&ev, &mut body).unwrap();
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(body.len() as u64));
    for (name, policy) in [("plain", Policy::PLAIN), ("zstd3", Policy::zstd(3))] {
        let mut out = Vec::new();
        g.bench_function(format!("encode_{name}_4k"), |b| {
            b.iter(|| {
                out.clear();
                Frame::encode_op(7, Stream::Replication, black_box(&body), policy, &mut out)
                    .unwrap()
            })
        });
        let mut wire = Vec::new();
        Frame::encode_op(7, Stream::Replication, &body, policy, &mut wire).unwrap();
        g.bench_function(format!("decode_{name}_4k"), |b| {
            b.iter(|| Frame::decode(black_box(&wire), MAX_FRAME).unwrap())
        });
    }
    g.finish();
}

fn apply(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut applier = Applier::new(dir.path(), ApplyOptions::default()).unwrap();
    let create = Op::Create {
        mode: 0o644,
        truncate: false,
    };
    applier.apply(&Event::new("f", create)).unwrap();
    let write = Event::new(
        "f",
        Op::Write {
            offset: 0,
            len: WRITE as u64,
            data: Some(text(WRITE).into()),
        },
    );
    let chmod = Event::new("f", Op::Chmod { mode: 0o640 });
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(1));
    g.bench_function("write_4k", |b| {
        b.iter(|| applier.apply(black_box(&write)).unwrap())
    });
    g.bench_function("chmod", |b| {
        b.iter(|| applier.apply(black_box(&chmod)).unwrap())
    });
    // A small batch that leaves the tree as it found it, so every round applies the same
    // calls: a directory made, a file created in it, written, its mode set, renamed,
    // removed, and the directory removed.
    let batch = [
        Event::new("d", Op::Mkdir { mode: 0o755 }),
        Event::new(
            "d/f",
            Op::Create {
                mode: 0o644,
                truncate: false,
            },
        ),
        Event::new("d/f", write.op.clone()),
        Event::new("d/f", Op::Chmod { mode: 0o600 }),
        Event::new(
            "d/f",
            Op::Rename {
                new_path: "d/g".into(),
                flags: 0,
            },
        ),
        Event::new("d/g", Op::Unlink),
        Event::new("d", Op::Rmdir),
    ];
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("batch_of_7", |b| {
        b.iter(|| {
            for ev in &batch {
                applier.apply(black_box(ev)).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(hot_paths, record_decode, queue, frame, apply);
criterion_main!(hot_paths);
