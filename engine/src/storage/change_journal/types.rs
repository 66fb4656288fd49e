//! The journal's public values: why a file was marked ([`Reason`], [`Reasons`]), what a
//! caller marks ([`Mark`]), what [`ChangeJournal::pending`] hands back ([`Entry`]) and the
//! tuning of a journal ([`Options`]). Plain data with no storage in it, kept apart from the
//! redb store so the types callers build and read can be seen at a glance.

use std::fmt;
use std::path::PathBuf;

use super::codec::Rec;
use super::keys::path_of;
#[cfg(doc)]
use super::ChangeJournal;

/// Ranges per file beyond which the entry collapses to whole-file.
pub const DEFAULT_MAX_RANGES: usize = 64;

/// Why a file was marked dirty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Reason {
    /// The driver's ring overflowed and records were dropped.
    RingFull = 1 << 0,
    /// The driver was at its stop-replicating limit and only marked files dirty.
    StopLimit = 1 << 1,
    /// A queue limit auto-disconnected the target and the queued operations were discarded.
    AutoDisconnect = 1 << 2,
    /// A disk-queue segment failed its checksum.
    QueueCorrupt = 1 << 3,
    /// rilld or the host stopped uncleanly with operations in flight.
    Recovery = 1 << 4,
    /// An operation's path could not be resolved (its directory is rescanned).
    PathUnknown = 1 << 5,
    /// A rescan of everything was requested.
    RescanAll = 1 << 6,
    /// A write no syscall showed (mmap, io_uring), seen by writeback tracing or fanotify.
    Modified = 1 << 7,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::RingFull,
        Reason::StopLimit,
        Reason::AutoDisconnect,
        Reason::QueueCorrupt,
        Reason::Recovery,
        Reason::PathUnknown,
        Reason::RescanAll,
        Reason::Modified,
    ];

    pub fn bit(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            Reason::RingFull => "RingFull",
            Reason::StopLimit => "StopLimit",
            Reason::AutoDisconnect => "AutoDisconnect",
            Reason::QueueCorrupt => "QueueCorrupt",
            Reason::Recovery => "Recovery",
            Reason::PathUnknown => "PathUnknown",
            Reason::RescanAll => "RescanAll",
            Reason::Modified => "Modified",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<rill_ops::DirtyReason> for Reason {
    /// The driver's reason for a dirty-file record.
    fn from(r: rill_ops::DirtyReason) -> Reason {
        use rill_ops::DirtyReason as D;
        match r {
            D::RingFull => Reason::RingFull,
            D::StopLimit => Reason::StopLimit,
            D::PathUnknown => Reason::PathUnknown,
            D::Modified => Reason::Modified,
            D::RescanAll => Reason::RescanAll,
        }
    }
}

/// A set of [`Reason`]s. Bits this build does not know (from a newer rilld) are kept.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Reasons(u32);

impl Reasons {
    pub const EMPTY: Reasons = Reasons(0);

    pub fn from_bits(bits: u32) -> Reasons {
        Reasons(bits)
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn contains(self, reason: Reason) -> bool {
        self.0 & reason.bit() != 0
    }

    pub fn insert(&mut self, reason: Reason) {
        self.0 |= reason.bit();
    }

    pub fn union(self, other: Reasons) -> Reasons {
        Reasons(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl From<Reason> for Reasons {
    fn from(r: Reason) -> Reasons {
        Reasons(r.bit())
    }
}

impl FromIterator<Reason> for Reasons {
    fn from_iter<I: IntoIterator<Item = Reason>>(iter: I) -> Reasons {
        let mut out = Reasons::EMPTY;
        iter.into_iter().for_each(|r| out.insert(r));
        out
    }
}

impl fmt::Display for Reasons {
    /// `RingFull|Recovery`; unknown bits as hex; `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: u32 = Reason::ALL.iter().map(|r| r.bit()).fold(0, |a, b| a | b);
        let mut sep = "";
        for r in self.iter() {
            write!(f, "{sep}{r}")?;
            sep = "|";
        }
        if self.0 & !known != 0 {
            write!(f, "{sep}{:#x}", self.0 & !known)?;
        } else if self.0 == 0 {
            f.write_str("-")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reasons({self})")
    }
}

/// One file to mark dirty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub path: PathBuf,
    /// `None`: the whole file. `Some((offset, len))`: those bytes; `len == 0` means only the
    /// metadata (attributes, times, xattrs) is dirty.
    pub range: Option<(u64, u64)>,
    pub reason: Reason,
    /// When the loss happened (the caller's clock, nanoseconds).
    pub ns: u64,
}

impl Mark {
    pub fn whole(path: impl Into<PathBuf>, reason: Reason, ns: u64) -> Mark {
        Mark {
            path: path.into(),
            range: None,
            reason,
            ns,
        }
    }

    pub fn range(path: impl Into<PathBuf>, offset: u64, len: u64, reason: Reason, ns: u64) -> Mark {
        Mark {
            path: path.into(),
            range: Some((offset, len)),
            reason,
            ns,
        }
    }

    pub fn metadata(path: impl Into<PathBuf>, reason: Reason, ns: u64) -> Mark {
        Mark {
            path: path.into(),
            range: Some((0, 0)),
            reason,
            ns,
        }
    }
}

/// One pending entry, as returned by [`ChangeJournal::pending`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    /// Everything at or below `path` is dirty (a rescan); `whole` is then true too.
    pub subtree: bool,
    /// The whole file is dirty; `ranges` is empty.
    pub whole: bool,
    /// Dirty `(offset, len)` ranges: sorted, disjoint, not touching. Empty and not `whole`:
    /// only the metadata is dirty.
    pub ranges: Vec<(u64, u64)>,
    pub reasons: Reasons,
    /// The earliest and latest `ns` of the marks folded into this entry.
    pub first_ns: u64,
    pub last_ns: u64,
    /// How many marks were folded into this entry.
    pub count: u64,
    /// Changes whenever the entry does; pass it back to [`ChangeJournal::complete`].
    pub version: u64,
}

impl Entry {
    /// Only attributes, times or extended attributes are dirty.
    pub fn metadata_only(&self) -> bool {
        !self.whole && self.ranges.is_empty()
    }

    /// Dirty bytes (for a whole file or subtree: `None`, unknown).
    pub fn dirty_bytes(&self) -> Option<u64> {
        (!self.whole).then(|| self.ranges.iter().map(|r| r.1).sum())
    }

    /// The `(path, version)` pair [`ChangeJournal::complete`] takes once this entry has been
    /// remirrored.
    pub fn done(&self) -> (PathBuf, u64) {
        (self.path.clone(), self.version)
    }

    pub(super) fn from_rec(key: &[u8], rec: Rec, subtree: bool) -> Entry {
        Entry {
            path: path_of(key),
            subtree,
            whole: rec.whole || subtree,
            ranges: rec.ranges.iter().map(|&(s, e)| (s, e - s)).collect(),
            reasons: Reasons(rec.reasons),
            first_ns: rec.first_ns,
            last_ns: rec.last_ns,
            count: rec.count,
            version: rec.version,
        }
    }
}

/// Tuning of a journal.
#[derive(Clone, Debug)]
pub struct Options {
    /// More ranges than this in one file collapse it to whole-file (at least 1).
    pub max_ranges: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_ranges: DEFAULT_MAX_RANGES,
        }
    }
}
