//! Captured operations as userspace sees them.
//!
//! Every capture source (the eBPF ring, fanotify) produces [`Event`]s; sequence numbers are
//! assigned afterwards, in the order events leave the source, by the driver's capture. The
//! JSON form is the one `rill-driver capture --json` prints, one object per line.

use bytes::Bytes;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rill_abi::Kind;
use serde_json::{json, Map, Value};

/// One captured file-system operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Position in the capture's total order; strictly increasing, assigned by the reader.
    pub seq: u64,
    /// CLOCK_MONOTONIC nanoseconds when the operation completed (0 if the source lacks it).
    pub ktime_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// Absolute path of the object (for `link`, the new name).
    pub path: PathBuf,
    /// The object's (kernel device number, inode) when the driver knows it (operations on
    /// open files); used to name files that later become dirty.
    pub object: Option<(u64, u64)>,
    /// For a change by name whose file's times the source sends after it (`truncate(2)`,
    /// which follows a final symlink), the file the name led to when the capture's reader
    /// looked, close to the call. Not an `object`: the operation stays one by name, applied
    /// on a replica through the name as the call was. Boxed: rare, and every queued
    /// operation would carry its room.
    pub reached: Option<Box<Reached>>,
    pub op: Op,
}

/// The file a call by name reached, as the capture's reader found it ([`Event::reached`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reached {
    /// (kernel device number, inode).
    pub file: (u64, u64),
    /// CLOCK_MONOTONIC ns when the reader looked. A move of the name captured before then
    /// (after the call) may have given the name another file by the time it looked.
    pub at_ns: u64,
    /// The name was a symlink when the reader looked: `file` is the file it leads to, and
    /// the name holds only the link.
    pub through_link: bool,
}

/// What happened, with the details of each kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `data` holds the bytes when the driver copied them inline; `None` means range-only.
    /// Shared (`Bytes`), because a write's data is the bulk of what is replicated and
    /// passes through several hands (queue, sender, resend window; on a target, the frame
    /// it arrived in): each holds a reference, none makes a copy.
    Write {
        offset: u64,
        len: u64,
        data: Option<Bytes>,
    },
    /// `truncate`: the open also truncated an existing file (`O_TRUNC`).
    Create {
        mode: u32,
        truncate: bool,
    },
    Truncate {
        size: u64,
    },
    Fallocate {
        mode: u32,
        offset: u64,
        len: u64,
    },
    Unlink,
    Rmdir,
    Mkdir {
        mode: u32,
    },
    Mknod {
        mode: u32,
        rdev: u64,
    },
    Rename {
        new_path: PathBuf,
        flags: u32,
    },
    /// `target` is the existing file; the event's `path` is the new name.
    Link {
        target: PathBuf,
    },
    /// `target` is the link's text, stored verbatim.
    Symlink {
        target: OsString,
    },
    Chmod {
        mode: u32,
    },
    /// `None`: left unchanged by the call.
    Chown {
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// `times`: the file's access and modification times once the call was made, when
    /// they have been read from the source (the capture itself does not carry them).
    Utimes {
        times: Option<FileTimes>,
    },
    /// `value`: the attribute's value, when it has been read from the source.
    SetXattr {
        name: OsString,
        value: Option<Vec<u8>>,
    },
    RemoveXattr {
        name: OsString,
    },
    /// The file's operations were not all captured; it must be resynchronised.
    Dirty {
        reason: DirtyReason,
    },
    /// `count` records were lost; the affected files follow as `Dirty` events.
    Overflow {
        count: u64,
    },
    /// Never captured: a mirror's statement of the names the directory `path` holds. A
    /// replica removes the others.
    Prune(KeepRange),
}

/// The names of one directory to keep, among those in `(after, until]` in byte order
/// (empty `after`: from the first name; `None` `until`: to the last).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeepRange {
    pub after: OsString,
    pub until: Option<OsString>,
    pub keep: Vec<OsString>,
    /// Which names of the directory the replication set protects: the first rule that
    /// matches a name decides (most specific first); a name no rule matches is not
    /// protected. A name not protected is never an orphan: it is not the source's to
    /// judge. Empty: every name is protected (the plain case, a set without exclusions
    /// there).
    pub rules: Vec<NameRule>,
}

/// One rule of a [`KeepRange`]: which names it matches, and whether it protects them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameRule {
    pub names: NameMatch,
    pub include: bool,
}

/// The names a [`NameRule`] matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameMatch {
    /// Every name.
    All,
    /// This name exactly.
    Exact(OsString),
    /// The names this wildcard matches (`*` any run, `?` one character; valid UTF-8 names
    /// only, as the replication set matches them).
    Wildcard(OsString),
}

impl KeepRange {
    /// Whether `name` is one this range decides about.
    pub fn covers(&self, name: &std::ffi::OsStr) -> bool {
        let n = name.as_bytes();
        n > self.after.as_bytes() && self.until.as_ref().is_none_or(|u| n <= u.as_bytes())
    }
}

/// A file's access and modification times: seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileTimes {
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
}

/// Why a file became dirty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirtyReason {
    /// The ring had no room for the record.
    RingFull,
    /// The ring was at the stop-replicating percentage.
    StopLimit,
    /// The driver could not resolve the full path.
    PathUnknown,
    /// Modified by a path the driver does not see per operation (fanotify, mmap).
    Modified,
    /// Too many dirty files to track one by one: rescan everything watched.
    RescanAll,
}

impl DirtyReason {
    pub fn from_abi(v: u64) -> DirtyReason {
        use rill_abi::record::*;
        match v {
            DIRTY_RING_FULL => DirtyReason::RingFull,
            DIRTY_STOP_LIMIT => DirtyReason::StopLimit,
            DIRTY_PATH_UNKNOWN => DirtyReason::PathUnknown,
            DIRTY_MODIFIED => DirtyReason::Modified,
            _ => DirtyReason::RescanAll,
        }
    }

    /// The ABI's number for this reason (inverse of [`DirtyReason::from_abi`]).
    pub fn to_abi(self) -> u64 {
        use rill_abi::record::*;
        match self {
            DirtyReason::RingFull => DIRTY_RING_FULL,
            DirtyReason::StopLimit => DIRTY_STOP_LIMIT,
            DirtyReason::PathUnknown => DIRTY_PATH_UNKNOWN,
            DirtyReason::Modified => DIRTY_MODIFIED,
            DirtyReason::RescanAll => DIRTY_RESCAN_ALL,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DirtyReason::RingFull => "ring-full",
            DirtyReason::StopLimit => "stop-limit",
            DirtyReason::PathUnknown => "path-unknown",
            DirtyReason::Modified => "modified",
            DirtyReason::RescanAll => "rescan-all",
        }
    }
}

impl Op {
    pub fn kind(&self) -> Kind {
        match self {
            Op::Write { .. } => Kind::Write,
            Op::Create { .. } => Kind::Create,
            Op::Truncate { .. } => Kind::Truncate,
            Op::Fallocate { .. } => Kind::Fallocate,
            Op::Unlink => Kind::Unlink,
            Op::Rmdir => Kind::Rmdir,
            Op::Mkdir { .. } => Kind::Mkdir,
            Op::Mknod { .. } => Kind::Mknod,
            Op::Rename { .. } => Kind::Rename,
            Op::Link { .. } => Kind::Link,
            Op::Symlink { .. } => Kind::Symlink,
            Op::Chmod { .. } => Kind::Chmod,
            Op::Chown { .. } => Kind::Chown,
            Op::Utimes { .. } => Kind::Utimes,
            Op::SetXattr { .. } => Kind::SetXattr,
            Op::RemoveXattr { .. } => Kind::RemoveXattr,
            Op::Dirty { .. } => Kind::Dirty,
            Op::Overflow { .. } => Kind::Overflow,
            Op::Prune(_) => Kind::Prune,
        }
    }

    /// Whether the operation changes the object under its name rather than the names (a
    /// write, a truncate, an attribute, a create that may truncate an existing file). On a
    /// file with hard links such a change reaches every name, not only the one it was
    /// made through.
    pub fn changes_in_place(&self) -> bool {
        match self {
            Op::Write { .. }
            | Op::Create { .. }
            | Op::Truncate { .. }
            | Op::Fallocate { .. }
            | Op::Chmod { .. }
            | Op::Chown { .. }
            | Op::Utimes { .. }
            | Op::SetXattr { .. }
            | Op::RemoveXattr { .. } => true,
            Op::Unlink
            | Op::Rmdir
            | Op::Mkdir { .. }
            | Op::Mknod { .. }
            | Op::Rename { .. }
            | Op::Link { .. }
            | Op::Symlink { .. }
            | Op::Dirty { .. }
            | Op::Overflow { .. }
            | Op::Prune(_) => false,
        }
    }
}

fn lossy(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

impl Event {
    /// An event with no process, time or object identity: one a reader synthesizes
    /// (overflow, dirty) or one made outside a capture.
    pub fn new(path: impl Into<PathBuf>, op: Op) -> Event {
        Event {
            seq: 0,
            ktime_ns: 0,
            pid: 0,
            tid: 0,
            path: path.into(),
            object: None,
            reached: None,
            op,
        }
    }

    /// The object printed by `capture --json`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("seq".into(), json!(self.seq));
        m.insert("kind".into(), json!(self.op.kind().name()));
        m.insert("path".into(), lossy(self.path.as_os_str().as_bytes()));
        m.insert("pid".into(), json!(self.pid));
        m.insert("tid".into(), json!(self.tid));
        m.insert("ktime_ns".into(), json!(self.ktime_ns));
        // Which file a call by name reached, as the reader found it (see `reached`).
        if let Some(r) = &self.reached {
            m.insert("reached_ino".into(), json!(r.file.1));
            if r.through_link {
                m.insert("reached_through_link".into(), json!(true));
            }
        }
        let mut put = |k: &str, v: Value| {
            m.insert(k.into(), v);
        };
        match &self.op {
            Op::Write { offset, len, data } => {
                put("offset", json!(offset));
                put("len", json!(len));
                put("inline", json!(data.is_some()));
            }
            Op::Create { mode, truncate } => {
                put("mode", json!(mode));
                // Only when set: most creates do not truncate an existing file.
                if *truncate {
                    put("truncate", json!(true));
                }
            }
            Op::Mkdir { mode } | Op::Chmod { mode } => put("mode", json!(mode)),
            Op::Mknod { mode, rdev } => {
                put("mode", json!(mode));
                put("rdev", json!(rdev));
            }
            Op::Truncate { size } => put("size", json!(size)),
            Op::Fallocate { mode, offset, len } => {
                put("mode", json!(mode));
                put("offset", json!(offset));
                put("len", json!(len));
            }
            Op::Rename { new_path, flags } => {
                put("new_path", lossy(new_path.as_os_str().as_bytes()));
                put("flags", json!(flags));
            }
            Op::Link { target } => put("target", lossy(target.as_os_str().as_bytes())),
            Op::Symlink { target } => put("target", lossy(target.as_bytes())),
            Op::Chown { uid, gid } => {
                put("uid", json!(uid));
                put("gid", json!(gid));
            }
            Op::SetXattr { name, value } => {
                put("name", lossy(name.as_bytes()));
                if let Some(v) = value {
                    put("value", lossy(v));
                }
            }
            Op::RemoveXattr { name } => put("name", lossy(name.as_bytes())),
            Op::Utimes { times: Some(t) } => {
                put("atime", json!([t.atime.0, t.atime.1]));
                put("mtime", json!([t.mtime.0, t.mtime.1]));
            }
            Op::Dirty { reason } => put("reason", json!(reason.name())),
            Op::Overflow { count } => put("count", json!(count)),
            Op::Prune(r) => {
                put("after", lossy(r.after.as_bytes()));
                if let Some(u) = &r.until {
                    put("until", lossy(u.as_bytes()));
                }
                put("kept", json!(r.keep.len()));
                if !r.rules.is_empty() {
                    put("rules", json!(r.rules.len()));
                }
            }
            Op::Unlink | Op::Rmdir | Op::Utimes { times: None } => {}
        }
        Value::Object(m)
    }

    /// Every path the event names (rename and link name two).
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        let second = match &self.op {
            Op::Rename { new_path, .. } => Some(new_path),
            Op::Link { target } => Some(target),
            _ => None,
        };
        std::iter::once(&self.path).chain(second)
    }
}

impl Event {
    /// One human-readable line: sequence, kind, path, then the kind's details.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{:>8} {:<11} {}",
            self.seq,
            self.op.kind().name(),
            self.path.display()
        );
        if let Value::Object(m) = self.to_json() {
            for (k, v) in m.iter().filter(|(k, _)| {
                !["seq", "kind", "path", "pid", "tid", "ktime_ns"].contains(&k.as_str())
            }) {
                match (k.as_str(), v.as_u64()) {
                    ("mode", Some(m)) => s.push_str(&format!(" mode=0{m:o}")),
                    _ => s.push_str(&format!(" {k}={v}")),
                }
            }
        }
        s
    }
}
