//! Operations as bytes, for the disk queue and the wire.
//!
//! An operation is stored as a `rill-abi` capture record whose path sections hold its
//! absolute path (an empty base and the path as the name), so the queue on disk and a
//! peer's Op frames speak the same versioned, self-delimiting format as the driver's ring,
//! and one decoder ([`crate::decode`]) serves all three. The sequence number is the
//! journal's (or the frame's), kept beside the record.

use std::borrow::Cow;
use std::os::unix::ffi::OsStrExt;

use std::path::PathBuf;

use bytes::Bytes;

use rill_abi::record::{
    FLAG_OBJECT_ID, FLAG_RANGE_ONLY, FLAG_REACHED_ID, FLAG_REACHED_THROUGH_LINK, FLAG_VALUES,
    OPEN_TRUNC,
};
use rill_abi::{Kind, Record, RecordHeader, Section, SECTION_COUNT};

use crate::decode::{to_event_in, PathCache};
use crate::event::{Event, KeepRange, NameMatch, NameRule, Op};

/// Why bytes are not an operation.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("operation too large to encode ({0} bytes)")]
    TooLarge(usize),
    #[error("corrupt operation record: {0}")]
    Corrupt(String),
    #[error("{0:?} is not a plain relative path (no `..`, `.`, empty components or leading /)")]
    NotBeneath(String),
}

/// Appends the encoding of `ev` to `out`.
pub fn encode(ev: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let data = encode_but_data(ev, out)?;
    out.extend_from_slice(&data);
    Ok(())
}

/// A `Prune`'s name rules as its record's name section (see `rill_abi::Kind`).
fn prune_rules(rules: &[NameRule]) -> Vec<u8> {
    use rill_abi::record::{
        PRUNE_MATCH_ALL, PRUNE_MATCH_EXACT, PRUNE_MATCH_WILDCARD, PRUNE_RULE_INCLUDE,
    };
    let mut b = Vec::new();
    for r in rules {
        let include = if r.include { PRUNE_RULE_INCLUDE } else { 0 };
        let (kind, name) = match &r.names {
            NameMatch::All => (PRUNE_MATCH_ALL, None),
            NameMatch::Exact(n) => (PRUNE_MATCH_EXACT, Some(n)),
            NameMatch::Wildcard(n) => (PRUNE_MATCH_WILDCARD, Some(n)),
        };
        b.push(kind | include);
        if let Some(n) = name {
            b.extend_from_slice(n.as_bytes());
            b.push(0);
        }
    }
    b
}

/// Appends the encoding of `ev` to `out` except a write's data, which comes last in the
/// record and is returned (shared, not copied) for the caller to send right after `out`.
/// Empty for every other operation.
pub fn encode_but_data(ev: &Event, out: &mut Vec<u8>) -> Result<Bytes, CodecError> {
    let mut p = Parts::of(&ev.op);
    let (dev, ino) = match (ev.object, ev.reached.as_deref()) {
        (Some(object), _) => {
            p.flags |= FLAG_OBJECT_ID;
            object
        }
        (None, Some(reached)) => {
            p.flags |= FLAG_REACHED_ID;
            if reached.through_link {
                p.flags |= FLAG_REACHED_THROUGH_LINK;
            }
            p.args[3] = reached.at_ns;
            reached.file
        }
        (None, None) => (0, 0),
    };
    let header = RecordHeader {
        kind: ev.op.kind() as u8,
        flags: p.flags,
        ktime_ns: ev.ktime_ns,
        pid: ev.pid,
        tid: ev.tid,
        dev,
        ino,
        args: p.args,
        version: p.version,
        ..Default::default()
    };
    let data: &[u8] = if p.write_data.is_empty() {
        &p.data
    } else {
        &p.write_data
    };
    let none: &[u8] = &[];
    let sections: [&[u8]; SECTION_COUNT] = [
        none,
        ev.path.as_os_str().as_bytes(),
        none,
        p.path2,
        &p.name,
        data,
    ];
    let total = rill_abi::HEADER_SIZE + sections.iter().map(|s| s.len()).sum::<usize>();
    // Appended piece by piece: a buffer made for the whole record would first be zeroed,
    // a pass over every byte of a write's data for nothing.
    let head = Record::encode_header(&header, sections.map(<[u8]>::len))
        .map_err(|_| CodecError::TooLarge(total))?;
    let [before @ .., last] = sections;
    out.reserve(total - p.write_data.len());
    out.extend_from_slice(&head);
    for s in before {
        out.extend_from_slice(s);
    }
    if p.write_data.is_empty() {
        out.extend_from_slice(last);
    }
    Ok(p.write_data)
}

/// What an operation's kind puts in its record besides the path: the arguments, flags
/// and format version, the second path, name and data sections, and a write's data,
/// which is handed back to the caller rather than copied (see [`encode_but_data`]).
struct Parts<'a> {
    args: [u64; 4],
    flags: u16,
    version: u8,
    path2: &'a [u8],
    name: Cow<'a, [u8]>,
    data: Cow<'a, [u8]>,
    write_data: Bytes,
}

impl<'a> Parts<'a> {
    fn of(op: &'a Op) -> Parts<'a> {
        let mut p = Parts {
            args: [0; 4],
            flags: 0,
            version: 0,
            path2: &[],
            name: Cow::Borrowed(&[]),
            data: Cow::Borrowed(&[]),
            write_data: Bytes::new(),
        };
        let id = |v: Option<u32>| v.map_or(u32::MAX as u64, u64::from);
        let args = &mut p.args;
        match op {
            Op::Write { offset, len, data } => {
                args[..2].copy_from_slice(&[*offset, *len]);
                match data {
                    Some(d) => p.write_data = d.clone(),
                    None => p.flags |= FLAG_RANGE_ONLY,
                }
            }
            Op::Create { mode, truncate } => {
                args[0] = *mode as u64;
                args[1] = if *truncate { OPEN_TRUNC } else { 0 };
            }
            Op::Mkdir { mode } | Op::Chmod { mode } => args[0] = *mode as u64,
            Op::Truncate { size } => args[0] = *size,
            Op::Fallocate { mode, offset, len } => {
                args[..3].copy_from_slice(&[*mode as u64, *offset, *len])
            }
            Op::Mknod { mode, rdev } => args[..2].copy_from_slice(&[*mode as u64, *rdev]),
            Op::Rename { new_path, flags } => {
                p.path2 = new_path.as_os_str().as_bytes();
                args[0] = *flags as u64;
            }
            Op::Link { target } => p.path2 = target.as_os_str().as_bytes(),
            Op::Symlink { target } => p.name = Cow::Borrowed(target.as_bytes()),
            Op::Chown { uid, gid } => args[..2].copy_from_slice(&[id(*uid), id(*gid)]),
            Op::SetXattr { name, value } => {
                p.name = Cow::Borrowed(name.as_bytes());
                if let Some(v) = value {
                    p.data = Cow::Borrowed(v);
                    p.flags |= FLAG_VALUES;
                }
            }
            Op::RemoveXattr { name } => p.name = Cow::Borrowed(name.as_bytes()),
            Op::Utimes { times: Some(t) } => {
                p.flags |= FLAG_VALUES;
                args[..3].copy_from_slice(&[
                    t.atime.0 as u64,
                    u64::from(t.atime.1) | u64::from(t.mtime.1) << 32,
                    t.mtime.0 as u64,
                ]);
            }
            Op::Dirty { reason } => args[0] = reason.to_abi(),
            Op::Overflow { count } => args[0] = *count,
            Op::Prune(r) => p.prune(r),
            Op::Unlink | Op::Rmdir | Op::Utimes { times: None } => {}
        }
        p
    }

    /// A prune's kept names, NUL-terminated, in the data section; its rules, if any, in
    /// the name section (format version 2).
    fn prune(&mut self, r: &KeepRange) {
        if r.until.is_some() {
            self.args[0] = rill_abi::record::PRUNE_BOUNDED;
        }
        let mut names = Vec::new();
        for n in std::iter::once(&r.after).chain(&r.until).chain(&r.keep) {
            names.extend_from_slice(n.as_bytes());
            names.push(0);
        }
        self.data = Cow::Owned(names);
        if !r.rules.is_empty() {
            self.name = Cow::Owned(prune_rules(&r.rules));
            self.version = 2;
        }
    }
}

/// For an encoded write whose first bytes are `prefix` (at least its record header): the
/// address, modulo `page`, at which the encoding should start so that every byte of the
/// data bound for a `page`-aligned file offset sits at a `page`-aligned address. A target
/// receives large writes so, and writes them to the disk straight from the bytes received
/// (the engine's `apply::direct`). `None` for anything but a write carrying data.
pub fn data_alignment(prefix: &[u8], page: usize) -> Option<usize> {
    let h = rill_abi::RecordHeader::peek(prefix)?;
    let data = Section::Data as usize;
    if h.kind != Kind::Write as u8 || h.flags & FLAG_RANGE_ONLY != 0 || h.sections[data] == 0 {
        return None;
    }
    let before: u64 = h.sections[..data].iter().map(|&l| u64::from(l)).sum();
    let data_at = rill_abi::HEADER_SIZE as u64 + before;
    let page = page as u64;
    // (start + data_at) must be congruent to the file offset: offsets and addresses then
    // cross page boundaries together.
    Some(((h.args[0] % page + page - data_at % page) % page) as usize)
}

/// Decodes one operation encoded by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Event, CodecError> {
    decode_in(bytes, None)
}

/// [`decode`], with a write's data a view of `backing` (which holds `bytes`) when given.
fn decode_in(bytes: &[u8], backing: Option<&Bytes>) -> Result<Event, CodecError> {
    let (record, _) = Record::decode(bytes).map_err(|e| CodecError::Corrupt(e.to_string()))?;
    if record.kind == Kind::Write && record.flags() & FLAG_RANGE_ONLY == 0 {
        let len = record.section(rill_abi::Section::Data).len() as u64;
        if len != record.arg(1) {
            return Err(CodecError::Corrupt(format!(
                "write of {} bytes carries {len}",
                record.arg(1)
            )));
        }
    }
    // Stored paths are complete: no cookie is ever set, the cache stays empty.
    let mut ev = to_event_in(&record, &mut PathCache::default(), backing)
        .map_err(|e| CodecError::Corrupt(e.to_string()))?;
    // The record format reads every name as absolute. A name stored without its leading
    // `/` was relative (a target's queue holds its peer's names, relative to the replica,
    // the replica itself being the empty name) and is given back as it was stored.
    let relative = |p: &mut PathBuf, section: Section| {
        if !record.section(section).starts_with(b"/") {
            if let Ok(r) = p.strip_prefix("/") {
                *p = r.to_path_buf();
            }
        }
    };
    relative(&mut ev.path, Section::PathName);
    match &mut ev.op {
        Op::Rename { new_path, .. } => relative(new_path, Section::Path2Name),
        Op::Link { target } => relative(target, Section::Path2Name),
        _ => {}
    }
    Ok(ev)
}

/// Decodes an operation a peer sent, whose paths must be plain names relative to the
/// replicated directory: no `..` or `.` component, no empty component, not absolute (the
/// record format would otherwise resolve `..` lexically and hide the attempt). Returns the
/// operation with relative paths (the replicated directory itself is the empty path). A
/// write's data is a view of `bytes`, not a copy.
pub fn decode_relative(bytes: &Bytes) -> Result<Event, CodecError> {
    let (record, _) = Record::decode(bytes).map_err(|e| CodecError::Corrupt(e.to_string()))?;
    for base in [Section::PathBase, Section::Path2Base] {
        if !record.section(base).is_empty() {
            return Err(CodecError::Corrupt(format!(
                "{base:?} is set in a peer's operation"
            )));
        }
    }
    for name in [Section::PathName, Section::Path2Name] {
        let text = record.section(name);
        let plain = |c: &[u8]| !c.is_empty() && c != b"." && c != b"..";
        if !text.is_empty() && !text.split(|&b| b == b'/').all(plain) {
            return Err(CodecError::NotBeneath(
                String::from_utf8_lossy(text).into_owned(),
            ));
        }
    }
    decode_in(bytes, Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{DirtyReason, FileTimes, KeepRange, NameMatch, NameRule, Reached};
    use proptest::prelude::*;
    use std::ffi::OsString;
    use std::path::PathBuf;

    /// An absolute path (a source's queue), or one relative to a replica, the replica
    /// itself being the empty path (a target's queue).
    fn path() -> impl Strategy<Value = PathBuf> {
        let names = proptest::collection::vec("[a-zA-Z0-9 ._-]{1,12}", 0..6)
            .prop_filter("no dot components", |c| {
                !c.iter().any(|n| n == "." || n == "..")
            });
        (names, any::<bool>()).prop_map(|(c, absolute)| match absolute {
            true => PathBuf::from(format!("/{}", c.join("/"))),
            false => PathBuf::from(c.join("/")),
        })
    }

    #[test]
    fn data_alignment_puts_page_aligned_offsets_at_page_aligned_addresses() {
        const PAGE: usize = 4096;
        for (offset, name) in [
            (0u64, "a"),
            (1000, "dir/some file"),
            (4095, ""),
            (1 << 40, "x"),
        ] {
            let ev = Event::new(
                name,
                Op::Write {
                    offset,
                    len: 3 * PAGE as u64,
                    data: Some(vec![1u8; 3 * PAGE].into()),
                },
            );
            let mut enc = Vec::new();
            encode(&ev, &mut enc).unwrap();
            let start = data_alignment(&enc, PAGE).unwrap();
            assert!(start < PAGE);
            // Lay the encoding out at an address congruent to `start`, decode it there,
            // and find the byte bound for the first page-aligned offset.
            let mut backing = vec![0u8; enc.len() + 2 * PAGE];
            let shift = (start + PAGE - backing.as_ptr() as usize % PAGE) % PAGE;
            backing[shift..shift + enc.len()].copy_from_slice(&enc);
            let at = backing.as_ptr();
            let placed = Bytes::from(backing);
            assert_eq!(
                placed.as_ptr(),
                at,
                "the bytes stayed where they were laid out"
            );
            let body = placed.slice(shift..shift + enc.len());
            let back = decode_relative(&body).unwrap();
            let Op::Write { data: Some(d), .. } = &back.op else {
                panic!("{back:?}")
            };
            let to_page = (offset.next_multiple_of(PAGE as u64) - offset) as usize;
            assert_eq!(
                (d.as_ptr() as usize + to_page) % PAGE,
                0,
                "offset {offset}, name {name:?}"
            );
        }
        // Not a write with data, or not enough of it to judge: no placement.
        let mut enc = Vec::new();
        encode(&Event::new("a", Op::Unlink), &mut enc).unwrap();
        assert_eq!(data_alignment(&enc, PAGE), None);
        let range_only = Event::new(
            "a",
            Op::Write {
                offset: 0,
                len: 10,
                data: None,
            },
        );
        enc.clear();
        encode(&range_only, &mut enc).unwrap();
        assert_eq!(data_alignment(&enc, PAGE), None);
        assert_eq!(data_alignment(&[0u8; 50], PAGE), None);
    }

    #[test]
    fn split_encoding_is_the_encoding_and_decoding_shares_a_peers_data() {
        let data = Bytes::from(vec![7u8; 5000]);
        let ev = Event::new(
            "dir/file",
            Op::Write {
                offset: 3,
                len: 5000,
                data: Some(data.clone()),
            },
        );
        let mut whole = Vec::new();
        encode(&ev, &mut whole).unwrap();
        let mut head = Vec::new();
        let tail = encode_but_data(&ev, &mut head).unwrap();
        assert_eq!(
            tail.as_ptr(),
            data.as_ptr(),
            "the data is handed back, not copied"
        );
        assert_eq!([&head[..], &tail[..]].concat(), whole);

        let received = Bytes::from(whole);
        let back = decode_relative(&received).unwrap();
        assert_eq!(back, ev);
        let Op::Write { data: Some(d), .. } = &back.op else {
            panic!("{back:?}")
        };
        let inside = received.as_ptr_range();
        assert!(
            inside.contains(&d.as_ptr()),
            "the data is a view of the bytes received"
        );
    }

    fn op() -> impl Strategy<Value = Op> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            (any::<u64>(), bytes.clone()).prop_map(|(offset, d)| Op::Write {
                offset,
                len: d.len() as u64,
                data: Some(d.into())
            }),
            (any::<u64>(), 1u64..1 << 40).prop_map(|(offset, len)| Op::Write {
                offset,
                len,
                data: None
            }),
            (any::<u32>(), any::<bool>())
                .prop_map(|(mode, truncate)| Op::Create { mode, truncate }),
            any::<u64>().prop_map(|size| Op::Truncate { size }),
            (any::<u32>(), any::<u64>(), any::<u64>())
                .prop_map(|(mode, offset, len)| Op::Fallocate { mode, offset, len }),
            Just(Op::Unlink),
            Just(Op::Rmdir),
            Just(Op::Utimes { times: None }),
            (
                any::<i64>(),
                0u32..1_000_000_000,
                any::<i64>(),
                0u32..1_000_000_000
            )
                .prop_map(|(a, an, m, mn)| Op::Utimes {
                    times: Some(FileTimes {
                        atime: (a, an),
                        mtime: (m, mn)
                    })
                }),
            any::<u32>().prop_map(|mode| Op::Mkdir { mode }),
            (any::<u32>(), any::<u64>()).prop_map(|(mode, rdev)| Op::Mknod { mode, rdev }),
            (path(), any::<u32>()).prop_map(|(new_path, flags)| Op::Rename { new_path, flags }),
            path().prop_map(|target| Op::Link { target }),
            "[ -~]{1,40}".prop_map(|t| Op::Symlink {
                target: OsString::from(t)
            }),
            any::<u32>().prop_map(|mode| Op::Chmod { mode }),
            (
                proptest::option::of(0u32..u32::MAX),
                proptest::option::of(0u32..u32::MAX)
            )
                .prop_map(|(uid, gid)| Op::Chown { uid, gid }),
            (
                "user\\.[a-z]{1,10}",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))
            )
                .prop_map(|(n, value)| Op::SetXattr {
                    name: OsString::from(n),
                    value
                }),
            "user\\.[a-z]{1,10}".prop_map(|n| Op::RemoveXattr {
                name: OsString::from(n)
            }),
            Just(Op::Dirty {
                reason: DirtyReason::StopLimit
            }),
            any::<u64>().prop_map(|count| Op::Overflow { count }),
            prune(),
        ]
    }

    #[test]
    fn only_a_prune_with_rules_needs_a_newer_record_and_bad_rules_are_errors() {
        let plain = KeepRange {
            keep: vec!["a".into()],
            ..KeepRange::default()
        };
        let mut enc = Vec::new();
        encode(&Event::new("d", Op::Prune(plain.clone())), &mut enc).unwrap();
        assert_eq!(enc[4], rill_abi::ABI_VERSION, "an older target reads it");
        let ruled = KeepRange {
            rules: vec![NameRule {
                names: NameMatch::Wildcard("*.tmp".into()),
                include: false,
            }],
            ..plain
        };
        let ev = Event::new("d", Op::Prune(ruled));
        enc.clear();
        encode(&ev, &mut enc).unwrap();
        assert_eq!(
            enc[4], 2,
            "an older target refuses it, rather than ignore the rules"
        );
        assert_eq!(decode_relative(&Bytes::from(enc.clone())).unwrap(), ev);
        // The rules are the name section, just before the data (`a\0` and `\0`).
        let rules_at = enc.len() - 3 - b"\x04*.tmp\0".len();
        assert_eq!(&enc[rules_at..rules_at + 7], b"\x04*.tmp\0");
        // An unknown tag, a '/' in a name, a name without its NUL.
        for (at, byte) in [(0, 0x7f), (2, b'/'), (6, b'x')] {
            let mut bad = enc.clone();
            bad[rules_at + at] = byte;
            assert!(decode_relative(&Bytes::from(bad)).is_err(), "{at} {byte}");
        }
    }

    fn prune() -> impl Strategy<Value = Op> {
        let name = || "[a-z*?.]{1,12}".prop_map(OsString::from);
        let matcher = prop_oneof![
            Just(NameMatch::All),
            name().prop_map(NameMatch::Exact),
            name().prop_map(NameMatch::Wildcard),
        ];
        let rule =
            (matcher, any::<bool>()).prop_map(|(names, include)| NameRule { names, include });
        (
            "[a-z]{0,8}",
            proptest::option::of(name()),
            proptest::collection::vec(name(), 0..5),
            proptest::collection::vec(rule, 0..5),
        )
            .prop_map(|(after, until, keep, rules)| {
                Op::Prune(KeepRange {
                    after: after.into(),
                    until,
                    keep,
                    rules,
                })
            })
    }

    proptest! {
        #[test]
        fn every_operation_round_trips(op in op(), path in path(), pid: u32, ns: u64, object: Option<(u64, u64)>, reached: Option<((u64, u64), u64, bool)>) {
            // An operation on an open file names its file; only one by name says which
            // file the name reached.
            let reached = reached
                .filter(|_| object.is_none())
                .map(|(file, at_ns, through_link)| Box::new(Reached { file, at_ns, through_link }));
            let ev = Event { seq: 0, ktime_ns: ns, pid, tid: pid, path, object, reached, op };
            let mut buf = Vec::new();
            encode(&ev, &mut buf).unwrap();
            prop_assert_eq!(decode(&buf).unwrap(), ev);
        }

        #[test]
        fn damaged_bytes_are_errors_not_panics(op in op(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
            let ev = Event { seq: 0, ktime_ns: 1, pid: 1, tid: 1, path: "/a/b".into(), object: None, reached: None, op };
            let mut buf = Vec::new();
            encode(&ev, &mut buf).unwrap();
            for (at, v) in flips {
                let i = at % buf.len();
                buf[i] = v;
            }
            let _ = decode(&buf);
        }
    }
}
