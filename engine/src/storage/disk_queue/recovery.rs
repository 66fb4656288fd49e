//! Open: lock the directory, read the committed position, scan every segment, truncate a
//! torn tail, report corruption, delete what is fully committed, and hand out the halves.
//!
//! Why a full scan: the report has to say what a crash cost before the engine starts
//! (which sequence numbers are gone, so their files can be remirrored), and the reader
//! must never meet unchecked bytes. Scanning is sequential reads at disk speed, bounded by
//! `QJournalSpaceMax`.
//!
//! The writer always starts a new segment after open; recovered segments are read-only.
//! That keeps an append from ever landing behind damage the scan did not understand.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::head::{Head, HeadState, HEAD_NAME};
use super::record::SEGMENT_HEADER_LEN;
use super::segment::{parse_segment_name, scan, segment_path, Scan};
use super::{
    io_err, CorruptSegment, DiskQueueConfig, DiskQueueError, DiskQueueReader, DiskQueueWriter,
    Recovery, SegMeta, Shared, State, TornTail,
};

const LOCK_NAME: &str = "lock";
/// How long open waits for the lock file before saying the journal is open elsewhere.
const LOCK_PATIENCE: Duration = Duration::from_millis(500);
/// Smallest `segment_bytes` accepted: a header and a record with a few bytes of payload.
const MIN_SEGMENT_BYTES: u64 = 64;

fn lock_dir(dir: &Path) -> Result<File, DiskQueueError> {
    let path = dir.join(LOCK_NAME);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("open", &path))?;
    // A lock released a moment ago can still be held for a few milliseconds by a child
    // process this process is forking (the child shares the open file until its exec
    // closes it), so "busy" is retried briefly before it means "open elsewhere".
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        let Err(e) = crate::sys::fs::lock_exclusive_now(&f) else {
            return Ok(f);
        };
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_err("lock", &path)(e));
        }
        if Instant::now() >= deadline {
            return Err(DiskQueueError::Locked(dir.to_path_buf()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A scanned segment on its way into the shared list.
struct Found {
    id: u64,
    file: File,
    scan: Scan,
}

/// Opens the journal in `config.dir`, in named steps: check the settings, lock the
/// directory, list its segments, read the head, scan every segment (cutting a torn
/// tail), report damage, drop what holds nothing to deliver, and hand out the halves.
pub(crate) fn open(
    config: DiskQueueConfig,
) -> Result<(DiskQueueWriter, DiskQueueReader, Recovery), DiskQueueError> {
    if config.segment_bytes < MIN_SEGMENT_BYTES {
        return Err(DiskQueueError::InvalidConfig(format!(
            "segment size {} bytes is below the minimum of {MIN_SEGMENT_BYTES}",
            config.segment_bytes
        )));
    }
    let dir = config.dir.clone();
    fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
    let dir_file = File::open(&dir).map_err(io_err("open directory", &dir))?;
    let lock = lock_dir(&dir)?;
    Head::remove_leftover_tmp(&dir);

    let mut rec = Recovery::default();
    let ids = list_segments(&dir, &mut rec)?;
    let head = open_head(&dir, &dir_file, &ids)?;
    let committed = head.committed();
    rec.committed = committed;
    let (found, prev) = scan_segments(&dir, &ids, committed, &mut rec)?;
    report_damage(&dir, &found, committed, &mut rec);
    let (segments, bytes, pending) = keep_pending(&dir, found, &mut rec)?;
    if rec.deleted_segments > 0 {
        dir_file.sync_all().map_err(io_err("fsync", &dir))?;
    }

    rec.records = pending;
    rec.last_seq = prev.max(committed);
    rec.segments = segments.len();
    let next_id = ids.last().map_or(0, |&l| l.saturating_add(1));
    let shared = Arc::new(Shared {
        dir,
        dir_file,
        config,
        state: Mutex::new(State {
            segments,
            committed,
        }),
        data_ready: Condvar::new(),
        force_rotate: AtomicBool::new(false),
        bytes_on_disk: AtomicU64::new(bytes),
        queued: AtomicU64::new(pending),
        delivered: AtomicU64::new(0),
        committed_records: AtomicU64::new(0),
        _lock: lock,
    });
    let writer = DiskQueueWriter::new(Arc::clone(&shared), next_id, rec.last_seq);
    let reader = DiskQueueReader::new(shared, head);
    Ok((writer, reader, rec))
}

/// The segment ids in `dir`, in order. Anything else but the head and the lock is listed
/// in `rec.ignored_files` (and logged), never touched.
fn list_segments(dir: &Path, rec: &mut Recovery) -> Result<Vec<u64>, DiskQueueError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == HEAD_NAME || name == LOCK_NAME {
            continue;
        }
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        match parse_segment_name(&name) {
            Some(id) if is_file => ids.push(id),
            _ => rec.ignored_files.push(entry.path()),
        }
    }
    ids.sort_unstable();
    for f in &rec.ignored_files {
        log::warn!("journal: ignoring {}", f.display());
    }
    Ok(ids)
}

/// The head (the committed position): made for a new journal, an error when segments
/// are there without it or it does not check out (what was committed is not known).
fn open_head(dir: &Path, dir_file: &File, ids: &[u64]) -> Result<Head, DiskQueueError> {
    let head_path = dir.join(HEAD_NAME);
    match Head::open(dir).map_err(io_err("read", &head_path))? {
        HeadState::Valid(h) => Ok(h),
        HeadState::Missing if ids.is_empty() => {
            Head::create(dir, dir_file).map_err(io_err("create", &head_path))
        }
        HeadState::Missing => Err(DiskQueueError::HeadMissing(head_path)),
        HeadState::Corrupt => Err(DiskQueueError::HeadCorrupt(head_path)),
    }
}

/// Scans the segments in order, cutting a torn tail off the newest (see [`cut_torn_tail`]).
/// Also returns the highest sequence number seen.
fn scan_segments(
    dir: &Path,
    ids: &[u64],
    committed: Option<u64>,
    rec: &mut Recovery,
) -> Result<(Vec<Found>, Option<u64>), DiskQueueError> {
    // `prev` is the highest sequence number seen so far.
    let mut prev: Option<u64> = None;
    let mut found: Vec<Found> = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let path = segment_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let mut s = scan(&file, id, prev, committed).map_err(io_err("scan", &path))?;
        let newest = i + 1 == ids.len();
        if newest {
            cut_torn_tail(&file, &path, id, &mut s, rec)?;
        }
        let resync_last = s
            .damage
            .as_ref()
            .and_then(|d| d.resync.as_ref())
            .map(|r| r.last_seq);
        prev = prev.max(s.last_seq).max(resync_last);
        found.push(Found { id, file, scan: s });
    }
    Ok((found, prev))
}

/// Damage in the newest segment with nothing readable after it is a torn tail (a write
/// the crash cut short): cut off, and reported in `rec.torn_tail` when it held bytes.
fn cut_torn_tail(
    file: &File,
    path: &Path,
    id: u64,
    s: &mut Scan,
    rec: &mut Recovery,
) -> Result<(), DiskQueueError> {
    let Some(d) = s.damage.clone() else {
        return Ok(());
    };
    if d.resync.is_some() {
        return Ok(());
    }
    let cut = if d.offset < SEGMENT_HEADER_LEN {
        0
    } else {
        d.offset
    };
    let dropped = s.file_len - cut;
    file.set_len(cut)
        .and_then(|()| file.sync_all())
        .map_err(io_err("truncate", path))?;
    if dropped > 0 {
        log::warn!(
            "journal: torn tail in segment {id}: {dropped} bytes from offset {cut} dropped ({})",
            d.kind
        );
        rec.torn_tail = Some(TornTail {
            segment: id,
            offset: cut,
            bytes_dropped: dropped,
            damage: d.kind,
        });
    }
    s.file_len = cut;
    s.valid_end = cut.max(SEGMENT_HEADER_LEN);
    s.damage = None;
    Ok(())
}

/// Reports damage in `rec.corrupt`, with the range of sequence numbers lost where it can
/// be bounded; damage that lost only committed records is logged, not reported.
fn report_damage(dir: &Path, found: &[Found], committed: Option<u64>, rec: &mut Recovery) {
    let mut prev_last: Option<u64> = None;
    for i in 0..found.len() {
        let f = &found[i];
        if let Some(d) = &f.scan.damage {
            let from = prev_last
                .max(f.scan.last_seq)
                .max(committed)
                .map_or(0, |s| s.saturating_add(1));
            let next_first = found[i + 1..].iter().find_map(|n| n.scan.first_seq);
            let to = match (next_first, &d.resync) {
                (Some(n), _) => Some(n.saturating_sub(1)),
                (None, Some(r)) => Some(r.last_seq),
                (None, None) => None,
            };
            if to.is_some_and(|t| t < from) {
                log::info!(
                    "journal: segment {} damaged, but only committed records were lost",
                    f.id
                );
            } else {
                let c = CorruptSegment {
                    segment: f.id,
                    path: segment_path(dir, f.id),
                    first_bad_offset: d.offset,
                    damage: d.kind,
                    seqs_lost_from: from,
                    seqs_lost_to: to,
                    records_after_damage: d.resync.as_ref().map_or(0, |r| r.records),
                };
                log::error!(
                    "journal: segment {} corrupt at offset {} ({}): sequence numbers {}..={:?} lost",
                    c.segment, c.first_bad_offset, c.damage, c.seqs_lost_from, c.seqs_lost_to
                );
                rec.corrupt.push(c);
            }
        }
        prev_last = prev_last.max(found[i].scan.last_seq);
    }
}

/// Drops what holds nothing to deliver: fully committed segments at the front, and empty
/// undamaged ones anywhere. Damaged segments stay (and are reported again) until the
/// reader commits past them, unless they only lost committed records. Returns the
/// segments kept, their bytes and their records pending.
fn keep_pending(
    dir: &Path,
    found: Vec<Found>,
    rec: &mut Recovery,
) -> Result<(VecDeque<SegMeta>, u64, u64), DiskQueueError> {
    let mut segments = VecDeque::with_capacity(found.len());
    let mut bytes = 0u64;
    let mut pending = 0u64;
    let mut at_front = true;
    for f in found {
        let s = &f.scan;
        let nothing_pending = s.records_pending == 0;
        let reported = rec.corrupt.iter().any(|c| c.segment == f.id);
        let damaged = s.damage.is_some();
        let remove = (!damaged && s.records == 0)
            || (at_front && nothing_pending && (!damaged || !reported));
        if remove {
            let path = segment_path(dir, f.id);
            drop(f.file);
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            rec.deleted_segments += 1;
            continue;
        }
        at_front = false;
        bytes += s.file_len;
        pending += s.records_pending;
        segments.push_back(SegMeta {
            id: f.id,
            end: s.valid_end,
            file_len: s.file_len,
            last_seq: s.last_seq,
            sealed: true,
            damaged,
        });
    }
    Ok((segments, bytes, pending))
}
