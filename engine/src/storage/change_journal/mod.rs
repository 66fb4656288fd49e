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
mod journal;
mod keys;
mod ranges;
mod store;
#[cfg(test)]
mod tests;
mod types;

use std::path::PathBuf;

use store::FORMAT;

pub use journal::ChangeJournal;
pub use types::{Entry, Mark, Options, Reason, Reasons, DEFAULT_MAX_RANGES};

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

crate::storage::database::store_open_errors!(Error, NotAJournal);

pub type Result<T, E = Error> = std::result::Result<T, E>;
