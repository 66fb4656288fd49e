//! The change journal: a durable set of files whose operations rill could not keep.
//!
//! When the driver's ring overflows, the driver is at its stop-replicating limit, a queue limit
//! auto-disconnects a target, a disk-queue segment fails its checksum, or rilld restarts after
//! a crash, the operations themselves are gone. What must survive is *which files* they
//! touched and, where known, *which bytes*, so that after reconnect or reboot a remirror sends
//! only those (`UseChangeJournal`). Each entry is a path with:
//!
//! - the dirty byte ranges, or "whole file", or neither (metadata only: attributes, times,
//!   extended attributes; every entry implies the metadata is resent);
//! - the [`Reasons`] it was marked for, the time of its first and last mark and the number of
//!   marks folded into it;
//! - a `version`, fresh on every change, so [`ChangeJournal::complete`] removes an entry only if
//!   nothing marked it again after [`ChangeJournal::pending`] read it.
//!
//! A *subtree* entry ([`ChangeJournal::mark_subtree`]) says everything at or below a directory is
//! dirty (a rescan), e.g. after an operation whose path could not be resolved.
//!
//! # Why redb
//!
//! The journal is the product's last line against silent loss, so it must be durable when
//! `mark` returns and must survive a crash at any instant without a recovery procedure of our
//! own. [redb](https://docs.rs/redb) is an embedded, pure-Rust, single-file key-value store
//! with ACID transactions built on copy-on-write B-trees and checksummed commit slots: a
//! commit with the default `Durability::Immediate` is on disk when `commit` returns, and a
//! crash leaves exactly the last committed state (no log to replay, no torn batch). Keys are
//! ordered bytes, which gives path-ordered iteration and, because a directory's descendants
//! share the prefix `dir/`, contiguous key ranges for whole subtrees (rename and remove of a
//! directory are range scans). The file is locked against a second writer process, so two
//! rillds cannot share a journal. The alternatives were worse fits: a hand-written append log
//! needs its own compaction and torn-tail recovery; SQLite is a C dependency; sled is beta.
//!
//! # Merge rules
//!
//! Paths are normalised by their components (`/a//b/` is `/a/b`) and stored as raw `OsStr`
//! bytes, never lossy UTF-8. "At or under `d`" means `d` itself or any path beginning `d/`;
//! `/a/bc` is not under `/a/b`.
//!
//! 1. A byte-range mark adds `[offset, offset + len)` to the file's ranges; ranges that
//!    overlap, touch (end of one = start of the next) or contain one another merge, so the
//!    list is always sorted, disjoint and minimal. A zero-length range marks metadata only.
//! 2. A whole-file mark (`range: None`) subsumes all ranges; later range marks on a whole
//!    entry only add their reason and count.
//! 3. A file with more than `max_ranges` (default [`DEFAULT_MAX_RANGES`] = 64) ranges collapses
//!    to whole-file, bounding every entry to about 1 KiB.
//! 4. A mark (file or subtree) at or under an existing subtree entry is absorbed by it: the
//!    subtree gains the reason and count and a new version; no file entry is created. So no
//!    entry ever lies at or under another subtree entry.
//! 5. `mark_subtree(d)` folds every entry at or under `d` (their reasons, times and counts) into
//!    the new subtree entry and removes them.
//! 6. Every mark, absorbed or not, gives the entry it lands in a new version.
//! 7. `rename(from, to)` moves the entries at and under `from` to the same relative paths
//!    under `to`, with new versions, after dropping whatever was at or under `to` (it was
//!    replaced). If `to` lies under a subtree entry they are folded into it instead. If `from`
//!    lay under a subtree entry, the renamed object was dirty as a whole: `to` becomes a subtree
//!    entry (unless already covered).
//! 8. `remove(p)` drops the entries at and under `p`; a subtree entry above `p` stays.
//!
//! Marks are applied in the order given; a batch is one transaction, so after a crash either
//! all of a batch is in the journal or none of it is, and a batch whose `mark` returned is
//! always there.

mod codec;
mod ranges;
#[cfg(test)]
mod tests;

use crate::database::OpenError;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::ops::Bound;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};

use codec::Rec;

/// Files (and metadata-only entries), keyed by raw path bytes.
const FILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rill_cj_files");
/// Subtree entries, keyed by the directory's raw path bytes.
const SUBTREES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rill_cj_subtrees");
/// `format` and `next_version`.
const META: TableDefinition<&str, u64> = TableDefinition::new("rill_cj_meta");
const META_FORMAT: &str = "format";
const META_NEXT_VERSION: &str = "next_version";
/// The journal's schema version.
const FORMAT: u64 = 1;
/// redb's page cache: the journal is small and read mostly at remirror time.
const CACHE_BYTES: usize = 16 << 20;
const SEP: u8 = b'/';

/// Ranges per file beyond which the entry collapses to whole-file.
pub const DEFAULT_MAX_RANGES: usize = 64;

/// Errors of the change journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: not a rill change journal: {detail}", path.display())]
    NotAJournal { path: PathBuf, detail: String },
    #[error("{}: the change journal is already open (another rilld?)", path.display())]
    Locked { path: PathBuf },
    #[error(
        "{}: change journal format {found} is newer than this rilld understands ({FORMAT})",
        path.display()
    )]
    UnsupportedFormat { path: PathBuf, found: u64 },
    #[error("{}: the entry for {entry:?} is damaged: {detail}", path.display())]
    CorruptEntry {
        path: PathBuf,
        entry: PathBuf,
        detail: String,
    },
    #[error("{path:?} cannot be journaled: {why}")]
    InvalidPath { path: PathBuf, why: &'static str },
    #[error("cannot rename {from:?} to {to:?} in the change journal: {why}")]
    InvalidRename {
        from: PathBuf,
        to: PathBuf,
        why: &'static str,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: change journal storage: {source}", path.display())]
    Storage { path: PathBuf, source: redb::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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

impl From<rill_driver_linux::DirtyReason> for Reason {
    /// The driver's reason for a dirty-file record.
    fn from(r: rill_driver_linux::DirtyReason) -> Reason {
        use rill_driver_linux::DirtyReason as D;
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

    fn from_rec(key: &[u8], rec: Rec, subtree: bool) -> Entry {
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

/// The durable change journal. All methods take `&self`; write transactions are serialised
/// by redb, so one journal may be shared between threads.
pub struct ChangeJournal {
    db: Database,
    path: PathBuf,
    max_ranges: usize,
}

impl fmt::Debug for ChangeJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeJournal")
            .field("path", &self.path)
            .field("max_ranges", &self.max_ranges)
            .finish()
    }
}

impl ChangeJournal {
    /// Opens the journal at `path`, creating it if it does not exist (or is empty).
    pub fn open(path: &Path) -> Result<ChangeJournal> {
        ChangeJournal::open_with(path, Options::default())
    }

    pub fn open_with(path: &Path, options: Options) -> Result<ChangeJournal> {
        let db = match crate::database::open(path, CACHE_BYTES) {
            Ok(db) => db,
            Err(OpenError::NotADatabase(detail)) => {
                return Err(Error::NotAJournal {
                    path: path.to_path_buf(),
                    detail,
                })
            }
            Err(OpenError::Locked) => {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(OpenError::Io(source)) => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
            Err(OpenError::Storage(source)) => {
                return Err(Error::Storage {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let journal = ChangeJournal {
            db,
            path: path.to_path_buf(),
            max_ranges: options.max_ranges.max(1),
        };
        journal.init()?;
        Ok(journal)
    }

    /// Creates the tables of a new journal, or checks that an existing database is one.
    fn init(&self) -> Result<()> {
        let tx = self.db.begin_write().db(&self.path)?;
        {
            let tables: Vec<String> = tx
                .list_tables()
                .db(&self.path)?
                .map(|t| t.name().to_string())
                .collect();
            if !tables.is_empty() && !tables.iter().any(|t| t == META.name()) {
                return Err(Error::NotAJournal {
                    path: self.path.clone(),
                    detail: format!(
                        "a redb database of something else (tables: {})",
                        tables.join(", ")
                    ),
                });
            }
            let mut meta = tx.open_table(META).db(&self.path)?;
            let format = meta.get(META_FORMAT).db(&self.path)?.map(|g| g.value());
            match format {
                None => {
                    meta.insert(META_FORMAT, FORMAT).db(&self.path)?;
                    meta.insert(META_NEXT_VERSION, 1).db(&self.path)?;
                }
                Some(FORMAT) => {}
                Some(found) => {
                    return Err(Error::UnsupportedFormat {
                        path: self.path.clone(),
                        found,
                    })
                }
            }
            tx.open_table(FILES).db(&self.path)?;
            tx.open_table(SUBTREES).db(&self.path)?;
        }
        tx.commit().db(&self.path)?;
        Ok(())
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks files dirty: one durable transaction for the whole batch, applied in order.
    /// When this returns `Ok`, every mark survives a crash.
    pub fn mark(&self, marks: &[Mark]) -> Result<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let keys = marks
            .iter()
            .map(|m| key_of(&m.path))
            .collect::<Result<Vec<_>>>()?;
        let max_ranges = self.max_ranges;
        self.write(|t| {
            // Entries touched by this batch, written back once at the end.
            let mut files: HashMap<&[u8], Rec> = HashMap::new();
            let mut subtrees: HashMap<Vec<u8>, Rec> = HashMap::new();
            let mut cover_of_parent: HashMap<&[u8], Option<Vec<u8>>> = HashMap::new();
            let any_subtrees = !t.subtrees.is_empty().db(&t.journal.path)?;
            for (m, key) in marks.iter().zip(&keys) {
                let cover = if !any_subtrees {
                    None
                } else if let Some(s) = t.subtree_at(key)? {
                    Some(s)
                } else {
                    let parent = parent_key(key);
                    match cover_of_parent.get(parent) {
                        Some(c) => c.clone(),
                        None => {
                            let c = t.covering_subtree(parent)?;
                            cover_of_parent.insert(parent, c.clone());
                            c
                        }
                    }
                };
                let version = t.next_version();
                if let Some(skey) = cover {
                    let rec = match subtrees.remove(&skey) {
                        Some(r) => r,
                        None => t.covering(&skey)?,
                    };
                    let mut rec = rec;
                    rec.note(m.reason.bit(), m.ns);
                    rec.version = version;
                    subtrees.insert(skey, rec);
                    continue;
                }
                let rec = match files.get_mut(key.as_slice()) {
                    Some(r) => r,
                    None => {
                        let r = t.get(Table::Files, key)?.unwrap_or_else(Rec::empty);
                        files.entry(key.as_slice()).or_insert(r)
                    }
                };
                rec.apply(m.range, m.reason.bit(), m.ns, max_ranges);
                rec.version = version;
            }
            for (key, rec) in &files {
                t.put(Table::Files, key, rec)?;
            }
            for (key, rec) in &subtrees {
                t.put(Table::Subtrees, key, rec)?;
            }
            Ok(())
        })
    }

    /// Marks everything at or below `dir` dirty (a rescan), folding the entries there into
    /// one subtree entry. Durable when it returns.
    pub fn mark_subtree(&self, dir: &Path, reason: Reason, ns: u64) -> Result<()> {
        let key = key_of(dir)?;
        self.write(|t| {
            let version = t.next_version();
            if let Some(skey) = t.covering_subtree(&key)? {
                let mut rec = t.covering(&skey)?;
                rec.note(reason.bit(), ns);
                rec.version = version;
                return t.put(Table::Subtrees, &skey, &rec);
            }
            let mut rec = Rec::empty();
            rec.make_whole();
            rec.note(reason.bit(), ns);
            for (_, old) in t.take_at_or_under(&key)? {
                rec.fold(&old);
            }
            rec.version = version;
            t.put(Table::Subtrees, &key, &rec)
        })
    }

    /// Up to `limit` entries in path order (raw byte order of the paths).
    pub fn pending(&self, limit: usize) -> Result<Vec<Entry>> {
        self.pending_after(None, limit)
    }

    /// Up to `limit` entries whose paths sort after `after` (to page through the journal
    /// without completing entries), in path order.
    pub fn pending_after(&self, after: Option<&Path>, limit: usize) -> Result<Vec<Entry>> {
        let after = after.map(key_of).transpose()?;
        let start: Bound<&[u8]> = match &after {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Unbounded,
        };
        let tx = self.db.begin_read().db(&self.path)?;
        let mut lists = Vec::with_capacity(2);
        for (def, subtree) in [(FILES, false), (SUBTREES, true)] {
            let table = tx.open_table(def).db(&self.path)?;
            let mut list = Vec::new();
            for item in table
                .range::<&[u8]>((start, Bound::Unbounded))
                .db(&self.path)?
            {
                if list.len() >= limit {
                    break;
                }
                let (k, v) = item.db(&self.path)?;
                let rec = self.decode(k.value(), v.value())?;
                list.push(Entry::from_rec(k.value(), rec, subtree));
            }
            lists.push(list);
        }
        let subtrees = lists.pop().unwrap_or_default();
        let files = lists.pop().unwrap_or_default();
        let mut out = Vec::with_capacity(limit.min(files.len() + subtrees.len()));
        let (mut f, mut s) = (
            files.into_iter().peekable(),
            subtrees.into_iter().peekable(),
        );
        while out.len() < limit {
            let take_file = match (f.peek(), s.peek()) {
                (Some(a), Some(b)) => a.path.as_os_str().as_bytes() < b.path.as_os_str().as_bytes(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            out.extend(if take_file { f.next() } else { s.next() });
        }
        Ok(out)
    }

    /// The number of entries (files and subtrees).
    pub fn len(&self) -> Result<u64> {
        let tx = self.db.begin_read().db(&self.path)?;
        let files = tx.open_table(FILES).db(&self.path)?.len().db(&self.path)?;
        let subtrees = tx
            .open_table(SUBTREES)
            .db(&self.path)?
            .len()
            .db(&self.path)?;
        Ok(files + subtrees)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes entries that have been remirrored: each `(path, version)` as returned by
    /// [`Entry::done`]. An entry whose version changed since (it was marked, folded into or
    /// moved after `pending` read it) stays. Returns how many entries were removed.
    pub fn complete(&self, done: &[(PathBuf, u64)]) -> Result<usize> {
        let keys = done
            .iter()
            .map(|(p, v)| Ok((key_of(p)?, *v)))
            .collect::<Result<Vec<_>>>()?;
        self.write(|t| {
            let mut removed = 0;
            for (key, version) in &keys {
                for table in [Table::Files, Table::Subtrees] {
                    if let Some(rec) = t.get(table, key)? {
                        if rec.version == *version {
                            t.delete(table, key)?;
                            removed += 1;
                        }
                    }
                }
            }
            Ok(removed)
        })
    }

    /// [`complete`](Self::complete) for entries as `pending` returned them.
    pub fn complete_entries(&self, entries: &[Entry]) -> Result<usize> {
        self.complete(&entries.iter().map(Entry::done).collect::<Vec<_>>())
    }

    /// `from` was renamed to `to` before being remirrored: the entries at and under `from`
    /// move under `to` (merge rule 7).
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (fk, tk) = (key_of(from)?, key_of(to)?);
        if fk == tk {
            return Ok(());
        }
        let invalid = |why| Error::InvalidRename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            why,
        };
        if is_at_or_under(&tk, &fk) {
            return Err(invalid("the destination is inside the source"));
        }
        if is_at_or_under(&fk, &tk) {
            return Err(invalid("the source is inside the destination"));
        }
        self.write(|t| {
            let moved = t.take_at_or_under(&fk)?;
            let cover_from = match t.covering_subtree(&fk)? {
                Some(s) => t.get(Table::Subtrees, &s)?,
                None => None,
            };
            t.take_at_or_under(&tk)?;
            if let Some(skey) = t.covering_subtree(&tk)? {
                let mut rec = t.covering(&skey)?;
                for (_, old) in &moved {
                    rec.fold(old);
                }
                if let Some(s) = &cover_from {
                    rec.reasons |= s.reasons;
                }
                rec.version = t.next_version();
                return t.put(Table::Subtrees, &skey, &rec);
            }
            if let Some(s) = cover_from {
                let mut rec = Rec::empty();
                rec.make_whole();
                rec.reasons = s.reasons;
                rec.first_ns = s.first_ns;
                rec.last_ns = s.last_ns;
                rec.count = 1;
                for (_, old) in &moved {
                    rec.fold(old);
                }
                rec.version = t.next_version();
                return t.put(Table::Subtrees, &tk, &rec);
            }
            for ((table, key), mut rec) in moved {
                let mut new_key = tk.clone();
                new_key.extend_from_slice(&key[fk.len()..]);
                rec.version = t.next_version();
                t.put(table, &new_key, &rec)?;
            }
            Ok(())
        })
    }

    /// `path` was deleted before being remirrored: drops the entries at and under it (a
    /// subtree entry above it stays). Returns how many were dropped.
    pub fn remove(&self, path: &Path) -> Result<usize> {
        let key = key_of(path)?;
        self.write(|t| Ok(t.take_at_or_under(&key)?.len()))
    }

    /// Runs `f` in one write transaction and commits it durably, or aborts it on error.
    fn write<T>(&self, f: impl FnOnce(&mut Tables<'_>) -> Result<T>) -> Result<T> {
        let tx = self.db.begin_write().db(&self.path)?;
        let out = {
            let mut meta = tx.open_table(META).db(&self.path)?;
            let next_version = meta
                .get(META_NEXT_VERSION)
                .db(&self.path)?
                .map_or(1, |g| g.value());
            let mut t = Tables {
                files: tx.open_table(FILES).db(&self.path)?,
                subtrees: tx.open_table(SUBTREES).db(&self.path)?,
                next_version,
                journal: self,
            };
            let out = f(&mut t)?;
            if t.next_version != next_version {
                meta.insert(META_NEXT_VERSION, t.next_version)
                    .db(&self.path)?;
            }
            out
        };
        tx.commit().db(&self.path)?;
        Ok(out)
    }

    fn decode(&self, key: &[u8], value: &[u8]) -> Result<Rec> {
        Rec::decode(value).map_err(|detail| Error::CorruptEntry {
            path: self.path.clone(),
            entry: path_of(key),
            detail,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Files,
    Subtrees,
}

/// The journal's tables inside one write transaction.
struct Tables<'t> {
    files: redb::Table<'t, &'static [u8], &'static [u8]>,
    subtrees: redb::Table<'t, &'static [u8], &'static [u8]>,
    next_version: u64,
    journal: &'t ChangeJournal,
}

impl<'t> Tables<'t> {
    fn table(&self, table: Table) -> &redb::Table<'t, &'static [u8], &'static [u8]> {
        match table {
            Table::Files => &self.files,
            Table::Subtrees => &self.subtrees,
        }
    }

    fn next_version(&mut self) -> u64 {
        let v = self.next_version;
        self.next_version += 1;
        v
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Rec>> {
        match self.table(table).get(key).db(&self.journal.path)? {
            Some(v) => Ok(Some(self.journal.decode(key, v.value())?)),
            None => Ok(None),
        }
    }

    /// The subtree entry `covering_subtree` just found in this transaction; its absence
    /// would mean a damaged table, reported as such rather than a panic.
    fn covering(&self, key: &[u8]) -> Result<Rec> {
        self.get(Table::Subtrees, key)?
            .ok_or_else(|| Error::CorruptEntry {
                path: self.journal.path.clone(),
                entry: path_of(key),
                detail: "a covering subtree entry vanished within a transaction".into(),
            })
    }

    fn put(&mut self, table: Table, key: &[u8], rec: &Rec) -> Result<()> {
        let value = rec.encode();
        let t = match table {
            Table::Files => &mut self.files,
            Table::Subtrees => &mut self.subtrees,
        };
        t.insert(key, value.as_slice()).db(&self.journal.path)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<()> {
        let t = match table {
            Table::Files => &mut self.files,
            Table::Subtrees => &mut self.subtrees,
        };
        t.remove(key).db(&self.journal.path)?;
        Ok(())
    }

    /// The key of `key` itself if it is a subtree entry.
    fn subtree_at(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .subtrees
            .get(key)
            .db(&self.journal.path)?
            .is_some()
            .then(|| key.to_vec()))
    }

    /// The subtree entry at `key` or at one of its ancestors, if any.
    fn covering_subtree(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.subtrees.is_empty().db(&self.journal.path)? {
            return Ok(None);
        }
        for ancestor in Path::new(OsStr::from_bytes(key)).ancestors() {
            let a = ancestor.as_os_str().as_bytes();
            if a.is_empty() {
                break;
            }
            if let Some(k) = self.subtree_at(a)? {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    /// Removes and returns the entries (files and subtrees) at and under `key`.
    #[allow(clippy::type_complexity)]
    fn take_at_or_under(&mut self, key: &[u8]) -> Result<Vec<((Table, Vec<u8>), Rec)>> {
        let (lo, hi) = under_bounds(key);
        let mut found = Vec::new();
        for table in [Table::Files, Table::Subtrees] {
            if lo != key {
                if let Some(rec) = self.get(table, key)? {
                    found.push(((table, key.to_vec()), rec));
                }
            }
            for item in self
                .table(table)
                .range::<&[u8]>(lo.as_slice()..hi.as_slice())
                .db(&self.journal.path)?
            {
                let (k, v) = item.db(&self.journal.path)?;
                let rec = self.journal.decode(k.value(), v.value())?;
                found.push(((table, k.value().to_vec()), rec));
            }
        }
        for ((table, k), _) in &found {
            self.delete(*table, k)?;
        }
        Ok(found)
    }
}

/// Attaches the journal's path to a redb error.
trait Db<T> {
    fn db(self, path: &Path) -> Result<T>;
}

impl<T, E: Into<redb::Error>> Db<T> for Result<T, E> {
    fn db(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::Storage {
            path: path.to_path_buf(),
            source: e.into(),
        })
    }
}

/// The normalised key of `path`: its components joined, as raw bytes.
fn key_of(path: &Path) -> Result<Vec<u8>> {
    let normal: PathBuf = path.components().collect();
    let bytes = normal.into_os_string().into_vec();
    if bytes.is_empty() {
        return Err(Error::InvalidPath {
            path: path.to_path_buf(),
            why: "the path is empty",
        });
    }
    Ok(bytes)
}

fn path_of(key: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(key))
}

/// The parent's key, or `key` itself at the top (`/` or a single relative name).
fn parent_key(key: &[u8]) -> &[u8] {
    match Path::new(OsStr::from_bytes(key)).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.as_os_str().as_bytes(),
        _ => key,
    }
}

/// The key range `[lo, hi)` of the paths strictly under `key`: those starting `key/`.
fn under_bounds(key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut lo = key.to_vec();
    if lo.last() != Some(&SEP) {
        lo.push(SEP);
    }
    let mut hi = lo.clone();
    *hi.last_mut().expect("not empty") = SEP + 1;
    (lo, hi)
}

/// Whether `key` is `dir` or lies under it.
fn is_at_or_under(key: &[u8], dir: &[u8]) -> bool {
    let (lo, _) = under_bounds(dir);
    key == dir || key.starts_with(&lo)
}
