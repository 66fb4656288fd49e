//! Turning capture records into [`Event`]s: joining path sections and naming the details.
//!
//! One decoder for every reader of records: the driver's ring and the engine's queue and
//! wire (`crate::codec`) speak the same format.

use bytes::Bytes;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use rill_abi::{
    join_path,
    record::{
        FLAG_OBJECT_ID, FLAG_PARTIAL_MASK, FLAG_PATH_CACHED, FLAG_PATH_TRUNCATED, FLAG_REACHED_ID,
        FLAG_REACHED_THROUGH_LINK, FLAG_VALUES, OPEN_TRUNC,
    },
    Kind, Record, RecordHeader, Section,
};

use crate::event::{DirtyReason, Event, FileTimes, KeepRange, NameMatch, NameRule, Op, Reached};

/// Why a capture record is not an operation: what was wrong, naming the record's kind.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRecord(pub String);

type Result<T> = std::result::Result<T, BadRecord>;

fn path(r: &Record<'_>, base: Section, name: Section) -> Result<PathBuf> {
    // Each component's length byte becomes a '/', so the joined path is at most the two
    // sections plus a slash between them (and "/" for the root).
    let (b, n) = (r.section(base), r.section(name));
    let mut buf = vec![0u8; b.len() + n.len() + 2];
    let n = join_path(b, n, &mut buf)
        .map_err(|e| BadRecord(format!("{} record: {e}", r.kind.name())))?;
    buf.truncate(n);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

/// A `Prune`'s name list: NUL-terminated names, `after`, `until` if bounded, then the kept
/// names (see [`Kind`]).
fn prune(r: &Record<'_>) -> Result<Op> {
    let bad = |what: &str| BadRecord(format!("prune record: {what}"));
    let data = r.section(Section::Data);
    let body = data
        .strip_suffix(b"\0")
        .ok_or_else(|| bad("the name list is not NUL-terminated"))?;
    let mut names = body
        .split(|&b| b == 0)
        .map(|n| OsString::from_vec(n.to_vec()));
    let after = names.next().ok_or_else(|| bad("no lower bound"))?;
    let until = if r.header.args[0] & rill_abi::record::PRUNE_BOUNDED != 0 {
        Some(names.next().ok_or_else(|| bad("no upper bound"))?)
    } else {
        None
    };
    let keep: Vec<OsString> = names.collect();
    if keep
        .iter()
        .any(|n| n.is_empty() || n.as_encoded_bytes().contains(&b'/'))
    {
        return Err(bad("a kept name is empty or holds a '/'"));
    }
    let rules = prune_rules(r.section(Section::Name)).map_err(bad)?;
    Ok(Op::Prune(KeepRange {
        after,
        until,
        keep,
        rules,
    }))
}

/// A `Prune`'s name rules (version 2; the record's decoder allows none in version 1):
/// each a tag byte, and for an exact or wildcard rule a NUL-terminated name of 1 to 255
/// bytes without a '/'; at most `PRUNE_RULES_MAX` of them.
fn prune_rules(mut b: &[u8]) -> std::result::Result<Vec<NameRule>, &'static str> {
    use rill_abi::record::{
        PRUNE_MATCH_ALL, PRUNE_MATCH_EXACT, PRUNE_MATCH_WILDCARD, PRUNE_RULES_MAX,
        PRUNE_RULE_INCLUDE,
    };
    let mut rules = Vec::new();
    while let Some((&tag, rest)) = b.split_first() {
        if rules.len() == PRUNE_RULES_MAX {
            return Err("too many name rules");
        }
        b = rest;
        let mut name = || {
            let end = b
                .iter()
                .position(|&c| c == 0)
                .ok_or("a rule's name is not NUL-terminated")?;
            let (n, rest) = (&b[..end], &b[end + 1..]);
            b = rest;
            if n.is_empty() || n.len() > 255 || n.contains(&b'/') {
                return Err("a rule's name is empty, too long or holds a '/'");
            }
            Ok(OsString::from_vec(n.to_vec()))
        };
        let names = match tag & !PRUNE_RULE_INCLUDE {
            PRUNE_MATCH_ALL => NameMatch::All,
            PRUNE_MATCH_EXACT => NameMatch::Exact(name()?),
            PRUNE_MATCH_WILDCARD => NameMatch::Wildcard(name()?),
            _ => return Err("a rule of an unknown kind"),
        };
        rules.push(NameRule {
            names,
            include: tag & PRUNE_RULE_INCLUDE != 0,
        });
    }
    Ok(rules)
}

/// `part` as a view of `backing` when it lies inside it, else as a copy.
fn shared(backing: Option<&Bytes>, part: &[u8]) -> Bytes {
    match backing {
        Some(b)
            if b.as_ptr_range().start <= part.as_ptr_range().start
                && part.as_ptr_range().end <= b.as_ptr_range().end =>
        {
            b.slice_ref(part)
        }
        _ => Bytes::copy_from_slice(part),
    }
}

fn text(r: &Record<'_>, s: Section) -> OsString {
    OsString::from_vec(r.section(s).to_vec())
}

fn opt_id(v: u64) -> Option<u32> {
    (v != u32::MAX as u64).then_some(v as u32)
}

/// Paths the driver sent once per open file, by cookie (see `FLAG_PATH_CACHED`).
///
/// Two generations of maps: lookups promote, and when the current one fills it becomes the
/// previous one. That keeps at least the `CAPACITY` most recently used cookies, more than
/// the driver's own table of open files (16384), so a cookie the driver still treats as
/// sent is never forgotten here.
#[derive(Default)]
pub struct PathCache {
    current: HashMap<u64, PathBuf>,
    previous: HashMap<u64, PathBuf>,
}

impl PathCache {
    const CAPACITY: usize = 65536;

    pub fn put(&mut self, cookie: u64, path: PathBuf) {
        if self.current.len() >= Self::CAPACITY {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(cookie, path);
    }

    pub fn get(&mut self, cookie: u64) -> Option<PathBuf> {
        if let Some(p) = self.current.get(&cookie) {
            return Some(p.clone());
        }
        let p = self.previous.remove(&cookie)?;
        self.put(cookie, p.clone());
        Some(p)
    }
}

/// Decodes one record. A record whose path the driver could not resolve completely
/// becomes a `Dirty` event for what it did resolve, so the file is resynchronised; so does
/// a write whose cached path this reader never saw (it attached after the path was sent),
/// with an empty path for the caller to name from the object id.
pub fn to_event(r: &Record<'_>, cache: &mut PathCache) -> Result<Event> {
    to_event_in(r, cache, None)
}

/// [`to_event`] for a record decoded from `backing`: a write's data becomes a view of
/// `backing` instead of a copy. A section that is not inside `backing` is copied.
pub fn to_event_in(
    r: &Record<'_>,
    cache: &mut PathCache,
    backing: Option<&Bytes>,
) -> Result<Event> {
    let h = &r.header;
    let p = record_path(r, cache)?;
    let unknown = p.is_none() || h.flags & FLAG_PATH_TRUNCATED != 0;
    let p = p.unwrap_or_default();
    let op = if unknown {
        Op::Dirty {
            reason: DirtyReason::PathUnknown,
        }
    } else {
        match r.kind {
            Kind::Write => Op::Write {
                offset: h.args[0],
                len: h.args[1],
                data: (h.flags & FLAG_PARTIAL_MASK == 0)
                    .then(|| shared(backing, r.section(Section::Data))),
            },
            Kind::Create => Op::Create {
                mode: h.args[0] as u32,
                truncate: h.args[1] & OPEN_TRUNC != 0,
            },
            Kind::Truncate => Op::Truncate { size: h.args[0] },
            Kind::Fallocate => Op::Fallocate {
                mode: h.args[0] as u32,
                offset: h.args[1],
                len: h.args[2],
            },
            Kind::Unlink => Op::Unlink,
            Kind::Rmdir => Op::Rmdir,
            Kind::Mkdir => Op::Mkdir {
                mode: h.args[0] as u32,
            },
            Kind::Mknod => Op::Mknod {
                mode: h.args[0] as u32,
                rdev: h.args[1],
            },
            Kind::Rename => Op::Rename {
                new_path: path(r, Section::Path2Base, Section::Path2Name)?,
                flags: h.args[0] as u32,
            },
            Kind::Link => Op::Link {
                target: path(r, Section::Path2Base, Section::Path2Name)?,
            },
            Kind::Symlink => Op::Symlink {
                target: text(r, Section::Name),
            },
            Kind::Chmod => Op::Chmod {
                mode: h.args[0] as u32,
            },
            Kind::Chown => Op::Chown {
                uid: opt_id(h.args[0]),
                gid: opt_id(h.args[1]),
            },
            Kind::Utimes => Op::Utimes {
                times: (h.flags & FLAG_VALUES != 0).then(|| FileTimes {
                    atime: (h.args[0] as i64, h.args[1] as u32),
                    mtime: (h.args[2] as i64, (h.args[1] >> 32) as u32),
                }),
            },
            Kind::SetXattr => Op::SetXattr {
                name: text(r, Section::Name),
                value: (h.flags & FLAG_VALUES != 0).then(|| r.section(Section::Data).to_vec()),
            },
            Kind::RemoveXattr => Op::RemoveXattr {
                name: text(r, Section::Name),
            },
            Kind::Dirty => Op::Dirty {
                reason: DirtyReason::from_abi(h.args[0]),
            },
            Kind::Overflow => Op::Overflow { count: h.args[0] },
            Kind::Prune => prune(r)?,
        }
    };
    Ok(Event {
        seq: 0,
        ktime_ns: h.ktime_ns,
        pid: h.pid,
        tid: h.tid,
        path: p,
        object: (h.flags & FLAG_OBJECT_ID != 0).then_some((h.dev, h.ino)),
        reached: reached(h),
        op,
    })
}

/// The record's path: its own, remembered under its cookie for the records after it that
/// carry none, or the one remembered (`None` when this reader never saw it sent).
fn record_path(r: &Record<'_>, cache: &mut PathCache) -> Result<Option<PathBuf>> {
    let h = &r.header;
    let cookie = if h.flags & FLAG_OBJECT_ID != 0 {
        h.args[3]
    } else {
        0
    };
    if h.flags & FLAG_PATH_CACHED != 0 {
        return Ok(cache.get(cookie));
    }
    let p = path(r, Section::PathBase, Section::PathName)?;
    if cookie != 0 {
        cache.put(cookie, p.clone());
    }
    Ok(Some(p))
}

/// The file a call by name reached, when the record says (`FLAG_REACHED_ID`, never with an
/// object's own identity).
fn reached(h: &RecordHeader) -> Option<Box<Reached>> {
    (h.flags & (FLAG_OBJECT_ID | FLAG_REACHED_ID) == FLAG_REACHED_ID).then(|| {
        Box::new(Reached {
            file: (h.dev, h.ino),
            at_ns: h.args[3],
            through_link: h.flags & FLAG_REACHED_THROUGH_LINK != 0,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_abi::record::FLAG_RANGE_ONLY;

    fn leaf_first(components: &[&str]) -> Vec<u8> {
        components
            .iter()
            .rev()
            .flat_map(|c| std::iter::once(c.len() as u8).chain(c.bytes()))
            .collect()
    }

    fn write(flags: u16, cookie: u64, base: &[u8], data: &[u8]) -> Vec<u8> {
        let h = RecordHeader {
            kind: Kind::Write as u8,
            flags: flags | FLAG_OBJECT_ID,
            dev: 7,
            ino: 9,
            args: [4096, 5, 0, cookie],
            ..Default::default()
        };
        let mut out = vec![0u8; 1024];
        let n = Record::encode(&h, [base, b"", b"", b"", b"", data], &mut out).expect("encode");
        out.truncate(n);
        out
    }

    fn decode(bytes: &[u8], cache: &mut PathCache) -> Event {
        let (r, _) = Record::decode(bytes).expect("decode");
        to_event(&r, cache).expect("event")
    }

    #[test]
    fn a_cached_path_is_the_one_sent_with_the_same_cookie() {
        let mut cache = PathCache::default();
        let first = decode(
            &write(0, 42, &leaf_first(&["tmp", "w", "f"]), b"hello"),
            &mut cache,
        );
        assert_eq!(first.path, PathBuf::from("/tmp/w/f"));
        assert_eq!(
            first.op,
            Op::Write {
                offset: 4096,
                len: 5,
                data: Some(Bytes::from_static(b"hello"))
            }
        );
        assert_eq!(first.object, Some((7, 9)));
        let again = decode(
            &write(FLAG_PATH_CACHED | FLAG_RANGE_ONLY, 42, b"", b""),
            &mut cache,
        );
        assert_eq!(again.path, PathBuf::from("/tmp/w/f"));
        assert_eq!(
            again.op,
            Op::Write {
                offset: 4096,
                len: 5,
                data: None
            }
        );
    }

    #[test]
    fn an_unknown_cookie_becomes_an_unnamed_dirty_file() {
        let mut cache = PathCache::default();
        let ev = decode(&write(FLAG_PATH_CACHED, 99, b"", b""), &mut cache);
        assert_eq!(
            ev.op,
            Op::Dirty {
                reason: DirtyReason::PathUnknown
            }
        );
        assert!(ev.path.as_os_str().is_empty());
        assert_eq!(ev.object, Some((7, 9)), "named later from the object id");
    }

    #[test]
    fn the_cache_keeps_recent_cookies_across_a_generation_switch() {
        let mut cache = PathCache::default();
        for i in 0..(PathCache::CAPACITY as u64 + 10) {
            cache.put(i, PathBuf::from(format!("/f{i}")));
        }
        // The oldest moved to the previous generation; still found, and promoted.
        assert_eq!(cache.get(0), Some(PathBuf::from("/f0")));
        assert_eq!(
            cache.get(PathCache::CAPACITY as u64 + 9),
            Some(PathBuf::from(format!("/f{}", PathCache::CAPACITY + 9)))
        );
    }

    #[test]
    fn a_corrupt_path_section_is_an_error_not_a_panic() {
        let mut cache = PathCache::default();
        let bytes = write(0, 1, &[9, b'x'], b"");
        let (r, _) = Record::decode(&bytes).expect("decode");
        assert!(to_event(&r, &mut cache).is_err());
    }
}
