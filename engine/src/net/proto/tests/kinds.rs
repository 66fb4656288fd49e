//! The guard for new operation kinds: a record of every kind goes the data path's
//! encodings, capture record → event → disk queue → Op frame (plain and compressed) →
//! event, and comes out as it went in.
//!
//! [`sample`] matches every `rill_abi::Kind` without a wildcard, so a kind added to the
//! ABI does not compile here until it has a sample record; then the trip fails where a
//! stage leaves the kind to a `_` arm: the decoder making it another kind, the codec
//! dropping a field or a second name, `Event::paths` not listing a name a target must
//! confine. The checklist of the files a new kind touches is on `rill_abi::Kind`.

use std::path::PathBuf;

use rill_abi::record::{
    DIRTY_MODIFIED, FLAG_OBJECT_ID, FLAG_VALUES, OPEN_TRUNC, PRUNE_BOUNDED, PRUNE_MATCH_ALL,
    PRUNE_MATCH_WILDCARD, PRUNE_RULE_INCLUDE,
};
use rill_abi::{Kind, Record, RecordHeader, Section, SECTION_COUNT};
use rill_ops::decode::{to_event, PathCache};
use rill_ops::{codec, Event, Op};

use super::*;

/// A record of `kind` as a driver writes it, on `/src/dir/f` (and `/src/dir/g` for a
/// second name), each value the kind carries set to one of its own. A name is a base
/// directory as the driver walks it (`/src`: a length byte before each component, leaf
/// first) and the name the caller passed, relative to it.
fn sample(kind: Kind) -> (RecordHeader, [Vec<u8>; SECTION_COUNT]) {
    let mut h = RecordHeader {
        kind: kind as u8,
        ktime_ns: 123_456_789,
        pid: 42,
        tid: 43,
        dev: 0x800001,
        ino: 77,
        ..Default::default()
    };
    let mut s: [Vec<u8>; SECTION_COUNT] = Default::default();
    s[Section::PathBase as usize] = b"\x03src".to_vec();
    s[Section::PathName as usize] = b"dir/f".to_vec();
    let second = |s: &mut [Vec<u8>; SECTION_COUNT]| {
        s[Section::Path2Base as usize] = b"\x03src".to_vec();
        s[Section::Path2Name as usize] = b"dir/g".to_vec();
    };
    match kind {
        Kind::Write => {
            // Through an open file: the object's identity and a path cookie.
            h.flags = FLAG_OBJECT_ID;
            h.args = [4096, 5, 0, 11];
            s[Section::Data as usize] = b"hello".to_vec();
        }
        Kind::Create => h.args[..2].copy_from_slice(&[0o640, OPEN_TRUNC | 1]),
        Kind::Truncate => h.args[0] = 1234,
        Kind::Fallocate => h.args[..3].copy_from_slice(&[1, 4096, 8192]),
        Kind::Unlink | Kind::Rmdir => {}
        Kind::Mkdir => h.args[0] = 0o755,
        Kind::Mknod => h.args[..2].copy_from_slice(&[0o020600, 0x0501]),
        Kind::Rename => {
            h.args[0] = 1;
            second(&mut s);
        }
        Kind::Link => second(&mut s),
        Kind::Symlink => s[Section::Name as usize] = b"../target".to_vec(),
        Kind::Chmod => h.args[0] = 0o600,
        // The group left unchanged.
        Kind::Chown => h.args[..2].copy_from_slice(&[1000, u32::MAX as u64]),
        Kind::Utimes => {
            h.flags = FLAG_VALUES;
            h.args[..3].copy_from_slice(&[1_700_000_000, 5 | 7 << 32, 1_700_000_100]);
        }
        Kind::SetXattr => {
            h.flags = FLAG_VALUES;
            h.args[1] = 3;
            s[Section::Name as usize] = b"user.k".to_vec();
            s[Section::Data as usize] = b"val".to_vec();
        }
        Kind::RemoveXattr => s[Section::Name as usize] = b"user.k".to_vec(),
        Kind::Dirty => h.args[0] = DIRTY_MODIFIED,
        Kind::Overflow => {
            h.args[0] = 3;
            s[Section::PathBase as usize].clear();
            s[Section::PathName as usize].clear();
        }
        Kind::Prune => {
            h.version = 2;
            h.args[0] = PRUNE_BOUNDED;
            s[Section::Data as usize] = b"a\0m\0b\0c\0".to_vec();
            let mut rules = vec![PRUNE_MATCH_WILDCARD];
            rules.extend_from_slice(b"*.tmp\0");
            rules.push(PRUNE_MATCH_ALL | PRUNE_RULE_INCLUDE);
            s[Section::Name as usize] = rules;
        }
    }
    (h, s)
}

/// `ev` with its names relative to the root, as a source sends them. Every operation is
/// listed: one that names a second path says so here too.
fn sent(mut ev: Event) -> Event {
    let relative = |p: &mut PathBuf| *p = p.strip_prefix("/").unwrap().to_path_buf();
    relative(&mut ev.path);
    match &mut ev.op {
        Op::Rename { new_path, .. } => relative(new_path),
        Op::Link { target } => relative(target),
        Op::Write { .. }
        | Op::Create { .. }
        | Op::Truncate { .. }
        | Op::Fallocate { .. }
        | Op::Unlink
        | Op::Rmdir
        | Op::Mkdir { .. }
        | Op::Mknod { .. }
        | Op::Symlink { .. }
        | Op::Chmod { .. }
        | Op::Chown { .. }
        | Op::Utimes { .. }
        | Op::SetXattr { .. }
        | Op::RemoveXattr { .. }
        | Op::Dirty { .. }
        | Op::Overflow { .. }
        | Op::Prune(_) => {}
    }
    ev
}

#[test]
fn every_kind_comes_through_capture_queue_and_wire_as_it_went_in() {
    for kind in Kind::ALL {
        let (header, sections) = sample(kind);
        let mut record = vec![0u8; 4096];
        let n =
            Record::encode(&header, sections.each_ref().map(Vec::as_slice), &mut record).unwrap();
        let (record, _) = Record::decode(&record[..n]).unwrap();
        let captured = to_event(&record, &mut PathCache::default()).unwrap();
        assert_eq!(captured.op.kind(), kind, "{captured:?}");
        let names = 1 + usize::from(!sections[Section::Path2Name as usize].is_empty());
        assert_eq!(
            captured.paths().count(),
            names,
            "{kind:?}: the names a target confines"
        );

        let mut queued = Vec::new();
        codec::encode(&captured, &mut queued).unwrap();
        assert_eq!(codec::decode(&queued).unwrap(), captured, "{kind:?}: queue");

        let sent = sent(captured);
        let mut body = Vec::new();
        codec::encode(&sent, &mut body).unwrap();
        for policy in [Policy::PLAIN, Policy::zstd(3)] {
            let frame = Frame::Op {
                seq: 7,
                stream: Stream::Replication,
                body: body.clone().into(),
            };
            let (received, _) = Frame::decode(&encoded(&frame, policy), MAX_FRAME).unwrap();
            assert_eq!(received, frame, "{kind:?}: frame");
            let Frame::Op { body, .. } = received else {
                unreachable!()
            };
            assert_eq!(
                codec::decode_relative(&body).unwrap(),
                sent,
                "{kind:?}: wire"
            );
        }
    }
}
