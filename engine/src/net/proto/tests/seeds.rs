//! The fuzz target's seed corpus, generated from this code so it follows the format:
//! `cargo test -p rill-engine --lib proto::tests::seeds -- --ignored` rewrites
//! `fuzz/corpus/frame_decode/seed-*` (or the directory in `RILL_FUZZ_SEEDS`).

use std::path::PathBuf;

use rill_ops::{codec, Event, Op};

use super::*;

/// Ops whose bodies are real `codec` records, so the fuzzer starts inside both decoders.
fn codec_ops() -> Vec<Frame> {
    let events = [
        Event::new(
            "/srv/data/report.txt",
            Op::Write {
                offset: 4096,
                len: 72,
                data: Some(b"quarterly numbers\n".repeat(4).into()),
            },
        ),
        Event::new(
            "/srv/data/a.tmp",
            Op::Rename {
                new_path: "/srv/data/a".into(),
                flags: 0,
            },
        ),
        Event::new("/srv/data/old", Op::Unlink),
        Event::new("/srv/data/big.bin", Op::Truncate { size: 1 << 30 }),
        // A version 2 record: a directory's names with the rules that spare excluded ones.
        Event::new(
            "/srv/data",
            Op::Prune(rill_ops::KeepRange {
                after: "a".into(),
                until: Some("m".into()),
                keep: vec!["b".into(), "cache".into()],
                rules: vec![
                    rill_ops::NameRule {
                        names: rill_ops::NameMatch::Exact("cache".into()),
                        include: false,
                    },
                    rill_ops::NameRule {
                        names: rill_ops::NameMatch::Wildcard("*.tmp".into()),
                        include: false,
                    },
                    rill_ops::NameRule {
                        names: rill_ops::NameMatch::All,
                        include: true,
                    },
                ],
            }),
        ),
    ];
    events
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            let mut body = Vec::new();
            codec::encode(ev, &mut body).unwrap();
            Frame::Op {
                seq: 100 + i as u64,
                stream: Stream::Replication,
                body: body.into(),
            }
        })
        .collect()
}

#[test]
fn codec_bodies_survive_the_frame() {
    for f in codec_ops() {
        let bytes = encoded(&f, Policy::zstd(3));
        let (Frame::Op { body, .. }, _) = Frame::decode(&bytes, MAX_FRAME).unwrap() else {
            panic!("not an op")
        };
        codec::decode(&body).unwrap();
    }
}

#[test]
#[ignore = "writes the fuzz seed corpus; run on purpose after a format change"]
fn write_fuzz_seeds() {
    let dir = std::env::var_os("RILL_FUZZ_SEEDS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/frame_decode"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for frame in samples().into_iter().chain(codec_ops()) {
        for (policy, how) in [(Policy::PLAIN, "plain"), (Policy::zstd(3), "zstd")] {
            let bytes = encoded(&frame, policy);
            if how == "zstd" && bytes[7] & FLAG_ZSTD == 0 {
                continue; // the same bytes as the plain seed
            }
            let name = format!("seed-{n:02}-{}-{how}", frame.kind().name().to_lowercase());
            std::fs::write(dir.join(name), bytes).unwrap();
            n += 1;
        }
    }
    // Two frames back to back: the target must decode only the first.
    let mut two = encoded(&Frame::Ack { seq: 1 }, Policy::PLAIN);
    Frame::KeepAlive.encode(Policy::PLAIN, &mut two).unwrap();
    std::fs::write(dir.join(format!("seed-{n:02}-two-frames")), two).unwrap();
}
