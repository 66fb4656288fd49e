//! The disk queue: where the memory queue spills, in order, when it fills.
//!
//! An append-only log of checksummed segments rather than a database, because the queue
//! is only ever appended at one end and consumed at the other: a `pwrite` per record and
//! an `fdatasync` per policy is all it needs, and a torn tail is cut at the first bad
//! checksum. (It was named `journal`; the settings keep the guide's `QJournal*` names.)
//!
//! A producer ([`DiskQueueWriter`]) appends opaque payloads, each with a caller-assigned,
//! strictly increasing `u64` sequence number; a consumer ([`DiskQueueReader`]) reads them back
//! in the same order while the producer keeps appending, and acknowledges with
//! [`DiskQueueReader::commit`]. Both halves come from one [`DiskQueue::open`], which also
//! recovers whatever a crash left behind and says what it found ([`Recovery`]).
//!
//! # Files in `QJournalDir`
//! - `<id as 16 hex digits>.seg`: segment files, appended to until the next record would
//!   pass `segment_bytes` (`QJournalFileSize`); a record larger than that gets a segment
//!   of its own. Ids only grow. A segment is deleted once every record in it is committed.
//! - `head`: the committed position, two alternating checksummed slots (see `head.rs` for
//!   why this beats write-temp-and-rename for something written on every commit).
//! - `lock`: held with `flock` so two processes never open the same journal.
//!
//! Anything else in the directory is ignored (and listed in [`Recovery::ignored_files`]).
//!
//! # Segment header (24 bytes, little-endian)
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"RJSG"` |
//! | 4 | 2 | format version, 1 |
//! | 6 | 2 | header length, 24 |
//! | 8 | 8 | segment id (must match the file name: a renamed or copied file is caught) |
//! | 16 | 4 | reserved, zero |
//! | 20 | 4 | crc32c of bytes 0..20 |
//!
//! # Record frame (self-delimiting, 8-byte aligned)
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"RJR1"`: lets a scan find record starts again after damage |
//! | 4 | 4 | payload length `len` (at most [`MAX_PAYLOAD`]) |
//! | 8 | 8 | sequence number |
//! | 16 | 4 | crc32c over bytes 4..16 (length and sequence number) then the payload |
//! | 20 | 4 | reserved, zero (keeps the payload 8-aligned) |
//! | 24 | `len` | payload |
//! | 24+`len` | 0-7 | zero padding to a multiple of 8 (checked: must be zero) |
//!
//! The length is covered by the checksum, so a damaged length cannot silently re-frame the
//! stream; every length is checked against the bytes present before it is used.
//!
//! # Durability
//! - `write_through` (`QLogWriteThrough`): `append` returns only once the record is
//!   durable. A new segment's directory entry is synced when the segment is created.
//!   [`SyncMode`] picks `O_DSYNC` or an `fdatasync` after each `pwrite`. Measured side by
//!   side (`rill-bench journal`, release build, 4 KiB payloads, ext4 on the build host's
//!   virtio disk, median of 5 alternated rounds, four runs): `O_DSYNC` 15,100-17,900
//!   appends/s (56-66 us), `fdatasync` 15,100-19,100 appends/s (52-66 us): the same
//!   within noise in every run, since both cost one journal commit plus a device flush per
//!   append (a run disturbed by other I/O on the shared disk dropped both alike, to about
//!   2,000/s). The default is `fdatasync`: never slower, and segments open the same way in
//!   both modes. For scale: buffered appends 120,000-180,000/s, unchanged by the `statvfs`
//!   a free-space floor adds per append; raw `pwrite`+`fdatasync` into preallocated,
//!   zero-filled blocks 21,900-26,600/s (see Scope).
//! - Otherwise [`DiskQueueWriter::flush`] makes everything appended so far durable. A full
//!   segment is synced before the next one is created either way, so after a crash only
//!   the newest segment can have a torn tail; damage anywhere else is corruption.
//! - A journal configured not `durable` (a target's queue, emptied at every start) never
//!   syncs; the rest of this section is about durable ones.
//! - A commit is durable before [`DiskQueueReader::commit`] returns; only then are segments
//!   deleted. After a crash, records at or below the committed position are never
//!   delivered again; records above it are delivered exactly once, in order.
//!
//! # Recovery (at open)
//! Every segment is scanned in order and every record checked (magic, length, checksum,
//! padding, sequence number greater than its predecessor's). Where a segment stops being
//! valid, the scan looks for valid records after the damage at 8-byte boundaries:
//! - none found, newest segment: a torn tail (a write cut short by the crash); it is
//!   truncated and reported in [`Recovery::torn_tail`], never replayed;
//! - otherwise: corruption, reported in [`Recovery::corrupt`] with the range of sequence
//!   numbers it loses. Records before the damage are delivered, records after it in that
//!   segment are not, and reading continues with the next segment. Damaged segments are
//!   left on disk (reported again on every open) until the consumer commits past them.
//!
//! No file content makes open or read panic: bad content is reported or yields an error.
//!
//! # Concurrency
//! Writer and reader may live on different threads. They share the segment list (id,
//! readable end, sealed or not) under a mutex held only to read or update that list; all
//! file I/O happens outside it, each half with its own file descriptors. The reader sees
//! a record only once the writer has finished writing it (and, in write-through mode,
//! made it durable). Reading never stalls appending.
//!
//! # Scope
//! Plain files with `pwrite`/`pread` (`FileExt`). io_uring submission is out of scope for
//! now. Segments grow by appending rather than being preallocated and recycled: syncing
//! into preallocated blocks measured about 1.4x faster (no size change to journal), but
//! recycled segments need an end-of-data scheme that tells stale records from torn ones
//! (e.g. the segment id in every record's checksum); that is future work.

mod head;
mod reader;
mod record;
mod recovery;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

pub use reader::{DiskQueueReader, Record};
pub use record::{Damage, MAX_PAYLOAD};
pub use writer::DiskQueueWriter;

/// How write-through appends are made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Call `fdatasync` after each append's `pwrite`.
    #[default]
    Fdatasync,
    /// Open segments with `O_DSYNC`: each `pwrite` returns once durable.
    Dsync,
}

/// Where and how big the journal is.
#[derive(Clone, Debug)]
pub struct DiskQueueConfig {
    /// `QJournalDir`; created if missing.
    pub dir: PathBuf,
    /// `QJournalFileSize`: bytes per segment file.
    pub segment_bytes: u64,
    /// `QJournalSpaceMax`: bytes all segments may use together; 0 = unbounded.
    pub space_max_bytes: u64,
    /// `QJournalFreeSpaceMin`: bytes that must stay free on the file system.
    pub free_space_min_bytes: u64,
    /// `QLogWriteThrough`: every append durable before it returns.
    pub write_through: bool,
    pub sync_mode: SyncMode,
    /// Whether the journal is to survive a crash at all. A queue emptied at every start
    /// (a target's: the source resends whatever was not acknowledged) gains nothing from
    /// syncs, which stopped its consumer for a device flush at every commit; without, no
    /// append, rotation, commit or flush syncs, whatever `write_through` says.
    pub durable: bool,
}

impl DiskQueueConfig {
    /// The reference guide's defaults: 5 MB segments, no space limit, 250 MB kept free,
    /// not write-through.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskQueueConfig {
            dir: dir.into(),
            segment_bytes: 5 << 20,
            space_max_bytes: 0,
            free_space_min_bytes: 250 << 20,
            write_through: false,
            sync_mode: SyncMode::default(),
            durable: true,
        }
    }
}

/// Which limit a refused append would have crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullReason {
    /// `QJournalSpaceMax`.
    SpaceMax,
    /// `QJournalFreeSpaceMin`.
    FreeSpace,
}

impl fmt::Display for FullReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FullReason::SpaceMax => "QJournalSpaceMax reached",
            FullReason::FreeSpace => "QJournalFreeSpaceMin would be crossed",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiskQueueError {
    /// The append was refused and nothing was written. For `SpaceMax`, `available` is what
    /// is left under `limit` = `QJournalSpaceMax`; for `FreeSpace`, `available` is the file
    /// system's free space and `limit` = `QJournalFreeSpaceMin`.
    #[error("disk queue full: {reason} (append needs {needed} bytes, {available} available, limit {limit})")]
    Full {
        reason: FullReason,
        needed: u64,
        available: u64,
        limit: u64,
    },
    #[error("sequence number {seq} is not greater than the last one appended ({last})")]
    SeqNotIncreasing { seq: u64, last: u64 },
    #[error("payload of {len} bytes exceeds the journal's maximum of {max}")]
    RecordTooLarge { len: usize, max: usize },
    #[error("cannot commit {seq}: the last sequence number read is {delivered:?}")]
    CommitBeyondDelivered { seq: u64, delivered: Option<u64> },
    #[error("journal {0} is already open (lock file held)")]
    Locked(PathBuf),
    #[error("journal head file {0} is corrupt: the committed position is unknown")]
    HeadCorrupt(PathBuf),
    #[error(
        "journal head file {0} is missing but segments exist: the committed position is unknown"
    )]
    HeadMissing(PathBuf),
    #[error("invalid journal configuration: {0}")]
    InvalidConfig(String),
    /// Found while reading (the data changed on disk after it was written or scanned).
    #[error("journal segment {} corrupt at offset {}: {}", .0.segment, .0.first_bad_offset, .0.damage)]
    Corrupt(CorruptSegment),
    /// A sync failed earlier; what reached the disk is unknown. Reopen to recover.
    #[error("journal writer failed earlier and refuses further appends; reopen the journal")]
    Failed,
    #[error("journal {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DiskQueueError {
    let path = path.to_path_buf();
    move |source| DiskQueueError::Io { op, path, source }
}

/// A torn tail found at open and truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: u64,
    /// Where the last segment now ends (0: the segment was removed).
    pub offset: u64,
    pub bytes_dropped: u64,
    pub damage: Damage,
}

/// A damaged segment: records from `first_bad_offset` on are not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptSegment {
    pub segment: u64,
    pub path: PathBuf,
    pub first_bad_offset: u64,
    pub damage: Damage,
    /// Every lost record has a sequence number of at least this.
    pub seqs_lost_from: u64,
    /// ... and at most this, when known (from the next segment's first record, or the last
    /// valid record found after the damage).
    pub seqs_lost_to: Option<u64>,
    /// Valid records found after the damage (lost too; at least this many were lost).
    pub records_after_damage: u64,
}

/// What open found and did.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Records waiting to be read (above the committed position).
    pub records: u64,
    pub committed: Option<u64>,
    /// Highest sequence number seen; appends must go above it.
    pub last_seq: Option<u64>,
    pub segments: usize,
    pub torn_tail: Option<TornTail>,
    pub corrupt: Vec<CorruptSegment>,
    /// Fully committed (or empty) segments removed at open.
    pub deleted_segments: usize,
    /// Files in the directory that are not the journal's.
    pub ignored_files: Vec<PathBuf>,
}

/// Statistics for the Source category.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskQueueStats {
    /// Bytes of all segment files.
    pub bytes_on_disk: u64,
    /// Records not yet committed.
    pub records_queued: u64,
    /// Records not yet handed to the reader.
    pub records_unread: u64,
    pub segments: usize,
    pub committed: Option<u64>,
}

/// Opens journals.
pub struct DiskQueue;

impl DiskQueue {
    /// Open (creating if needed) the journal in `config.dir`, recovering from any crash.
    pub fn open(
        config: DiskQueueConfig,
    ) -> Result<(DiskQueueWriter, DiskQueueReader, Recovery), DiskQueueError> {
        recovery::open(config)
    }
}

/// Bookkeeping for one segment, shared by writer and reader.
#[derive(Clone, Debug)]
pub(crate) struct SegMeta {
    pub id: u64,
    /// End of the last record the reader may read.
    pub end: u64,
    pub file_len: u64,
    pub last_seq: Option<u64>,
    /// No more appends will go here.
    pub sealed: bool,
    /// Found damaged; holds records the reader skipped.
    pub damaged: bool,
}

pub(crate) struct State {
    pub segments: VecDeque<SegMeta>,
    pub committed: Option<u64>,
}

impl State {
    pub fn find_mut(&mut self, id: u64) -> Option<&mut SegMeta> {
        // The writer's segment is the back; the reader's is usually near the front.
        self.segments.iter_mut().rev().find(|m| m.id == id)
    }
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    pub dir_file: File,
    pub config: DiskQueueConfig,
    state: Mutex<State>,
    /// Signalled whenever the writer publishes a record or a segment.
    pub data_ready: Condvar,
    /// Set by the reader when it finds the active segment damaged: start a new one.
    pub force_rotate: AtomicBool,
    pub bytes_on_disk: AtomicU64,
    /// Records ever queued (recovered above the committed position, plus appended).
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    pub committed_records: AtomicU64,
    _lock: File,
}

impl Shared {
    /// The state lock. A panic elsewhere while holding it leaves the bookkeeping
    /// consistent (every update is a plain field store), so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> DiskQueueStats {
        let st = self.lock();
        let queued = self.queued.load(Ordering::Acquire);
        DiskQueueStats {
            bytes_on_disk: self.bytes_on_disk.load(Ordering::Acquire),
            records_queued: queued.saturating_sub(self.committed_records.load(Ordering::Acquire)),
            records_unread: queued.saturating_sub(self.delivered.load(Ordering::Acquire)),
            segments: st.segments.len(),
            committed: st.committed,
        }
    }
}
