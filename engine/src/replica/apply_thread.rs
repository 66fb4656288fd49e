//! The session's applier thread: target queue in, durable replica and acknowledgements
//! out.
//!
//! Ops are applied strictly in the order they were received, one at a time, to the job's
//! [`Replica`] (which keeps them beneath the job's target path). Every so often (a batch of ops,
//! or a short interval) the applier asks the [`Syncer`] to make what it applied durable,
//! record the position in the job store, and only then acknowledge it: an acknowledged op
//! survives a crash of the target, and the replica on disk is always the source's state
//! at some point of the stream (crash-consistent).
//!
//! An op that fails with a transient error (a busy file, a full disk) is retried
//! `TGExecutionRetryLimit` times, `TGRetryLocked` apart; one that still fails is dropped,
//! counted and reported to the source (`Nak`), which remirrors the file.
//!
//! Acknowledging only what is applied (not what is merely queued) keeps the target's
//! queue free of state that must survive a restart: after a crash the source resends
//! everything past the last acknowledged point. The queue still lets the network run
//! ahead of the disk, and its fill drives `Pause`/`Resume` of the source's mirror.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rill_ops::{Event, Op};
use tokio::sync::mpsc;

use super::syncer::{Point, Syncer};
use super::unsettled::Unsettled;
use super::{ApplyError, Context, Holding, Replica, SessionStats};
use crate::events::{self, EventLog, Level};
use crate::net::proto::verify::Ask;
use crate::net::proto::{Frame, Marker};
use crate::storage::disk_queue::{DiskQueue, DiskQueueConfig};
use crate::storage::job_store::{DataState, TargetSession};
use crate::storage::queue::{queue, Consumer, Producer, Pushed};
use crate::sys::mem::SharedMap;

/// What the receiver hands the applier, in order.
pub(super) enum Entry {
    Op(u64, Event),
    Marker(u64, Marker),
    /// A verification request (its id and names), answered where it stands in the stream.
    Verify(u64, Vec<Ask>),
}

/// A point of the stream that is not an op: it waits in [`Pending`] for the ops before it.
#[derive(Debug)]
enum StreamPoint {
    /// A marker and its wire sequence.
    Marker(u64, Marker),
    Verify(u64, Vec<Ask>),
}

/// One entry of [`Pending`].
#[derive(Debug)]
enum Slot {
    /// An op: its queue sequence and its wire sequence.
    Op(u64, u64),
    Point(StreamPoint),
}

/// Sequence bookkeeping between receiver and applier: the queue numbers ops itself, so
/// each queued op's wire sequence is remembered here, and markers and verification
/// requests wait here for the ops before them.
struct Pending {
    entries: VecDeque<Slot>,
}

/// The receiver's handle on the applier.
pub(super) struct Shared {
    producer: Mutex<Producer>,
    /// The job's record of names not up to date (see `unsettled`), shared with its
    /// applier thread and its later connections.
    unsettled: Arc<Mutex<Unsettled>>,
    /// To the source: refusals repeated for resent operations.
    out: mpsc::UnboundedSender<Frame>,
    pending: Arc<Mutex<Pending>>,
    finish: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    paused: AtomicBool,
    high: u8,
    low: u8,
    stats: Arc<SessionStats>,
}

/// The data state's number in `TargetStats` frames.
pub fn state_code(s: DataState) -> u8 {
    match s {
        DataState::Ok => 1,
        DataState::Mirroring => 2,
        DataState::MirrorRequired => 3,
        DataState::Disconnected => 4,
        _ => 0,
    }
}

/// The inverse of [`state_code`].
pub fn state_of_code(c: u8) -> DataState {
    match c {
        1 => DataState::Ok,
        2 => DataState::Mirroring,
        3 => DataState::MirrorRequired,
        4 => DataState::Disconnected,
        _ => DataState::Unknown,
    }
}

impl Shared {
    /// A resent operation the applier had already been through (at or below the position
    /// the connection began at): its refusal, if it was refused, goes to the source again
    /// (see `unsettled`).
    pub(super) fn resent(&self, seq: u64) {
        if let Some(why) = self
            .unsettled
            .lock()
            .ok()
            .and_then(|u| u.resent(seq).map(str::to_string))
        {
            let _ = self.out.send(Frame::nak(seq, 1, &why));
        }
    }

    /// A connection begins, its source holding acknowledgements up to `acked`: the
    /// refusals after that among the operations it will not send again (up to
    /// `last_applied`) are repeated, then `last_applied` is acknowledged, which the source
    /// waits for before it forgets those operations (it needs them to act on a refusal).
    /// Both go before anything else this connection answers (see `unsettled`).
    pub(super) fn connected(&self, acked: u64, last_applied: u64) {
        let repeat = self
            .unsettled
            .lock()
            .map(|mut u| u.connected(acked, last_applied))
            .unwrap_or_default();
        for (seq, why) in repeat {
            let _ = self.out.send(Frame::nak(seq, 1, &why));
        }
        let _ = self.out.send(Frame::Ack { seq: last_applied });
    }

    /// Queues `entry` for the applier without waking it: the receiver wakes it once for
    /// the frames of one read ([`Shared::wake`]), not once per op.
    pub(super) fn push_quietly(&self, entry: Entry) -> Result<()> {
        // The pending entry is recorded under the same lock as the push, so the applier
        // never sees an op before its sequence.
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| anyhow::anyhow!("applier state poisoned"))?;
        match entry {
            Entry::Marker(seq, m) => pending
                .entries
                .push_back(Slot::Point(StreamPoint::Marker(seq, m))),
            Entry::Verify(id, asks) => pending
                .entries
                .push_back(Slot::Point(StreamPoint::Verify(id, asks))),
            Entry::Op(seq, ev) => {
                let mut producer = self
                    .producer
                    .lock()
                    .map_err(|_| anyhow::anyhow!("target queue poisoned"))?;
                let q = match producer.push_quietly(ev)? {
                    Pushed::Memory(q) | Pushed::Disk(q) => q,
                    Pushed::Refused(_) | Pushed::NotKept(..) => {
                        anyhow::bail!("the target queue is full (memory and disk)")
                    }
                };
                // Write-through is the queue's business; the source keeps the op until
                // it is applied anyway.
                pending.entries.push_back(Slot::Op(q, seq));
                self.stats.ops_remaining.fetch_add(1, Ordering::Relaxed);
                let s = producer.stats();
                self.stats
                    .bytes_in_queue
                    .store(s.bytes_in_memory + s.bytes_on_disk, Ordering::Relaxed);
                self.stats
                    .bytes_in_disk_queue
                    .store(s.bytes_on_disk, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Wakes the applier if it waits for ops.
    pub(super) fn wake(&self) {
        if let Ok(p) = self.producer.lock() {
            p.wake();
        }
    }

    /// A `Pause` when the queue's memory reached `TGMirrorCapacityHigh`, a `Resume` once
    /// it is back at `TGMirrorCapacityLow`.
    pub(super) fn flow_frame(&self) -> Option<Frame> {
        let pct = self.producer.lock().ok()?.stats().memory_percent;
        let paused = self.paused.load(Ordering::Relaxed);
        if !paused && pct >= self.high {
            self.paused.store(true, Ordering::Relaxed);
            Some(Frame::Pause)
        } else if paused && pct <= self.low {
            self.paused.store(false, Ordering::Relaxed);
            Some(Frame::Resume)
        } else {
            None
        }
    }

    /// Lets the applier apply what is queued, flush, and stop; waits for it.
    pub(super) fn finish(&self) {
        self.finish.store(true, Ordering::Relaxed);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            // Called from the session's task: let the runtime move other tasks off this
            // worker thread while the applier drains.
            tokio::task::block_in_place(|| {
                let _ = h.join();
            });
        }
    }
}

/// The last op applied, rewritten in place after each one and never synced on its own:
/// a killed process leaves it exact in the page cache, so a restarted target resumes
/// after the very op it applied last instead of applying again ops after the last
/// durable flush (a rename or a write replayed out of its context would corrupt the
/// replica). After a power loss the job store's flushed position, which comes after the
/// data it covers is synced, is the one that counts: the page of this file may have been
/// written back before the data of the ops it counts, which the power loss then lost. So
/// the file also holds the boot it was written in (`boot_id`), and a position from
/// another boot is not read.
///
/// The file is mapped shared and the position stored into the mapping, which is its page
/// in the page cache: what a `pwrite` leaves behind a killed process, without a system
/// call per op (one for each of the tens of thousands of ops a tree extraction makes).
const APPLIED_FILE: &str = "applied";
/// The job's record of names not up to date and refusals to repeat (see `unsettled`).
const UNSETTLED_FILE: &str = "unsettled";

/// The mapped [`APPLIED_FILE`].
struct AppliedPosition {
    map: SharedMap,
}

impl AppliedPosition {
    fn open(path: &Path) -> Result<AppliedPosition> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // Kept if there: the last process's position is read before a session starts.
        if file.metadata()?.len() < POSITION_FILE_LEN {
            file.set_len(POSITION_FILE_LEN)
                .with_context(|| format!("sizing {}", path.display()))?;
        }
        // The file is this session's own (one applier per session): nothing else
        // truncates or writes it while it is mapped, as `SharedMap` requires.
        let mut map = SharedMap::new(&file, POSITION_FILE_LEN as usize)
            .with_context(|| format!("mapping {}", path.display()))?;
        // Before any position of this process is stored: one from an earlier boot, left
        // with this boot's mark, would be read as this boot's.
        map.bytes_mut()[8..16].copy_from_slice(&boot_mark().to_le_bytes());
        Ok(AppliedPosition { map })
    }

    fn record(&mut self, seq: u64) {
        // One aligned 8-byte store, so a process killed at any instant leaves the old
        // position or the new one, never a mix. Little-endian, as `last_position` reads it.
        self.map.store_u64_at_start(seq.to_le());
    }
}

/// Where a session keeps its queue and position.
fn session_dir(ctx: &Context, key: &(String, String)) -> std::path::PathBuf {
    let short: String = key
        .0
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect();
    ctx.config().state_dir.join(format!("{short}-{}", key.1))
}

/// The [`APPLIED_FILE`]'s length: the position (8 bytes, little-endian), then the mark of
/// the boot it was written in (8 bytes, see [`boot_mark`]).
const POSITION_FILE_LEN: u64 = 16;

/// Removes the session's [`APPLIED_FILE`] (a failback: the job starts again from 0);
/// called only while no session of the job runs.
pub(super) fn forget_position(ctx: &Context, key: &(String, String)) -> std::io::Result<()> {
    match std::fs::remove_file(session_dir(ctx, key).join(APPLIED_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The position the last process of this session left in its [`APPLIED_FILE`], if any.
pub(super) fn last_position(ctx: &Context, key: &(String, String)) -> Option<u64> {
    read_position(&session_dir(ctx, key).join(APPLIED_FILE))
}

/// The position in an [`APPLIED_FILE`], unless it was written in another boot (the host
/// lost power or was reset since: the position may count ops whose data never reached
/// the disk). A file of an earlier version (8 bytes, no mark) is read as it was.
fn read_position(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let word = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    match word(8) {
        Some(mark) if mark != boot_mark() => None,
        _ => word(0),
    }
}

/// This boot, as 8 bytes of the kernel's random `boot_id` (a new one at every boot); 0
/// when it cannot be read, which then matches only a file written without it either.
fn boot_mark() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .and_then(|id| {
            let hex = id.trim().replace('-', "");
            u64::from_str_radix(hex.get(..16)?, 16).ok()
        })
        .unwrap_or(0)
}

/// Opens the session's queue and starts its applier thread.
pub(super) fn start(
    ctx: &Arc<Context>,
    key: &(String, String),
    replica: Box<dyn Replica>,
    session: TargetSession,
    stats: Arc<SessionStats>,
    out: mpsc::UnboundedSender<Frame>,
    holding: Holding,
) -> Result<Arc<Shared>> {
    let config = ctx.config();
    let session_dir = session_dir(ctx, key);
    let dir = session_dir.join("queue");
    // Nothing in it was acknowledged: the source sends it again.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cfg = DiskQueueConfig::new(&dir);
    cfg.write_through = false;
    cfg.durable = false;
    let (writer, reader, recovery) = DiskQueue::open(cfg)?;
    let (producer, consumer) = queue(config.queue_limits, writer, reader, recovery.last_seq);
    let pending = Arc::new(Mutex::new(Pending {
        entries: VecDeque::new(),
    }));
    let finish = Arc::new(AtomicBool::new(false));
    let position = AppliedPosition::open(&session_dir.join(APPLIED_FILE))?;
    let unsettled = ctx
        .unsettled
        .lock()
        .map_err(|_| anyhow::anyhow!("the unsettled names' lock is poisoned"))?
        .entry(key.clone())
        .or_insert_with(|| {
            let file = session_dir.join(UNSETTLED_FILE);
            Arc::new(Mutex::new(Unsettled::open(file)))
        })
        .clone();
    let syncer = Syncer::start(super::syncer::Reporting {
        durability: replica.durability()?,
        store: Arc::clone(&ctx.store),
        key: key.clone(),
        out: out.clone(),
        stats: Arc::clone(&stats),
    })?;
    let mut worker = Worker {
        position,
        replica,
        syncer,
        consumer,
        pending: Arc::clone(&pending),
        finish: Arc::clone(&finish),
        cancel: Arc::clone(&holding.cancel),
        stats: Arc::clone(&stats),
        out: out.clone(),
        unsettled: Arc::clone(&unsettled),
        log: Arc::clone(&ctx.log),
        key: key.clone(),
        session,
        retry_limit: config.retry_limit,
        retry_wait: config.retry_wait,
        log_all_orphans: config.log_all_orphans,
    };
    let thread = std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || {
            if let Err(e) = worker.run() {
                // The session ends with it; the source resends what was not acknowledged.
                worker.cancel.store(true, Ordering::Relaxed);
                worker.log.event(
                    Level::Error,
                    events::DISCONNECTED,
                    &format!("applying job {}: {e:#}", worker.key.1),
                );
            }
            // Its position file, queue and syncer closed first: a session that replaces
            // this one reads the position once the holding is gone.
            drop(worker);
            drop(holding);
        })?;
    Ok(Arc::new(Shared {
        producer: Mutex::new(producer),
        unsettled,
        out,
        pending,
        finish,
        thread: Mutex::new(Some(thread)),
        paused: AtomicBool::new(false),
        high: config.capacity_high,
        low: config.capacity_low,
        stats,
    }))
}

struct Worker {
    /// The exact last applied sequence, written after every op (see [`APPLIED_FILE`]).
    position: AppliedPosition,
    /// What the ops are applied to: the job's target path.
    replica: Box<dyn Replica>,
    syncer: Syncer,
    consumer: Consumer,
    pending: Arc<Mutex<Pending>>,
    finish: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
    out: mpsc::UnboundedSender<Frame>,
    unsettled: Arc<Mutex<Unsettled>>,
    stats: Arc<SessionStats>,
    log: Arc<EventLog>,
    key: (String, String),
    session: TargetSession,
    retry_limit: u64,
    retry_wait: Duration,
    log_all_orphans: bool,
}

const FLUSH_OPS: u32 = 512;
/// Bounds `ConRPL` from below: an op is acknowledged at most this long after it is applied
/// (plus the sync).
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

impl Worker {
    fn run(&mut self) -> Result<()> {
        let (mut applied, mut unflushed, mut last_queue) = (self.session.last_applied, 0u32, 0u64);
        let mut flushed_at = Instant::now();
        loop {
            // A replaced session stops at once; its successor resends what was not
            // acknowledged.
            if self.cancel.load(Ordering::Relaxed) {
                return self.flush_and_wait(applied, last_queue, false);
            }
            if let Some(q) = self.syncer.take_durable()? {
                self.consumer.ack(q)?;
            }
            let finishing = self.finish.load(Ordering::Relaxed);
            // Markers and verification requests at the front: every op before them is
            // applied.
            while let Some(point) = self.front_point() {
                if let Some(seq) = self.point(point) {
                    applied = seq;
                    unflushed += 1;
                }
            }
            match self.consumer.pop(Duration::from_millis(20))? {
                Some(q) => {
                    let s = self.consumer.stats();
                    self.stats
                        .bytes_in_queue
                        .store(s.bytes_in_memory + s.bytes_on_disk, Ordering::Relaxed);
                    self.stats
                        .bytes_in_disk_queue
                        .store(s.bytes_on_disk, Ordering::Relaxed);
                    let (points, seq) = self.take_seq(q.seq)?;
                    // Points that arrived before this op (since the check above).
                    for point in points {
                        self.point(point);
                    }
                    let counter = match self.apply(seq, &q.event) {
                        true => &self.stats.ops_applied,
                        false => &self.stats.ops_dropped,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    self.stats.ops_remaining.fetch_sub(1, Ordering::Relaxed);
                    self.record_position(seq);
                    (applied, last_queue) = (seq, q.seq);
                    unflushed += 1;
                }
                None if finishing => {
                    if self.front_point_pending() {
                        continue;
                    }
                    return self.flush_and_wait(applied, last_queue, unflushed > 0);
                }
                None => {}
            }
            if unflushed > 0 && (unflushed >= FLUSH_OPS || flushed_at.elapsed() >= FLUSH_INTERVAL) {
                self.flush(applied, last_queue, true)?;
                (unflushed, flushed_at) = (0, Instant::now());
            }
        }
    }

    fn record_position(&mut self, seq: u64) {
        self.position.record(seq);
    }

    fn front_point(&self) -> Option<StreamPoint> {
        let mut p = self.pending.lock().ok()?;
        match p.entries.front() {
            Some(Slot::Point(_)) => match p.entries.pop_front() {
                Some(Slot::Point(point)) => Some(point),
                _ => None,
            },
            _ => None,
        }
    }

    fn front_point_pending(&self) -> bool {
        self.pending
            .lock()
            .is_ok_and(|p| matches!(p.entries.front(), Some(Slot::Point(_))))
    }

    /// Handles a point of the stream; the wire sequence it takes the position to (a
    /// marker's), if any.
    fn point(&mut self, point: StreamPoint) -> Option<u64> {
        match point {
            StreamPoint::Marker(seq, marker) => {
                self.marker(marker);
                self.record_position(seq);
                Some(seq)
            }
            StreamPoint::Verify(id, asks) => {
                self.verify(id, &asks);
                None
            }
        }
    }

    /// Answers a verification request with what the replica holds now, after every op
    /// received before it (see `verify`).
    fn verify(&mut self, id: u64, asks: &[Ask]) {
        let found = super::verify::answer(self.replica.as_ref(), asks, &self.key.1);
        let _ = self.out.send(Frame::Verified { id, found });
    }

    /// The wire sequence of the op the queue numbered `q`, and the points received
    /// before it that are still to be handled.
    fn take_seq(&self, q: u64) -> Result<(Vec<StreamPoint>, u64)> {
        let mut p = self
            .pending
            .lock()
            .map_err(|_| anyhow::anyhow!("applier state poisoned"))?;
        let mut points = Vec::new();
        loop {
            match p.entries.pop_front() {
                Some(Slot::Point(point)) => points.push(point),
                Some(Slot::Op(qs, seq)) if qs == q => {
                    // Counted as remaining until applied (or dropped), below.
                    return Ok((points, seq));
                }
                other => {
                    anyhow::bail!("target queue out of step: op {q} popped, {other:?} expected")
                }
            }
        }
    }

    /// Applies one op, retrying transient failures; reports one that cannot be applied
    /// (and returns false).
    fn apply(&mut self, seq: u64, ev: &Event) -> bool {
        log::debug!("job {}: applying op {seq}: {}", self.key.1, ev.to_text());
        if let Some(why) = self.unsettled().and_then(|u| u.stale(ev)) {
            return self.refuse(seq, ev, why);
        }
        let mut tries = 0;
        loop {
            match self.replica.apply(ev) {
                Ok(()) => {
                    if tries > 0 {
                        let text = format!(
                            "Target write to {} was completed successfully after {tries} retries",
                            ev.path.display()
                        );
                        self.log
                            .event(Level::Information, events::RETRY_SUCCEEDED, &text);
                    }
                    if matches!(ev.op, Op::Prune(_)) {
                        self.orphans_removed();
                    }
                    let carried = self.unsettled().and_then(|mut u| u.applied(seq, ev));
                    if let Some(why) = carried {
                        log::warn!("job {}: op {seq}: {why}", self.key.1);
                        let _ = self.out.send(Frame::nak(seq, 1, &why));
                    }
                    return true;
                }
                Err(e) if e.is_transient() && self.may_retry(tries) => {
                    if tries == 0 {
                        self.retrying(ev, &e);
                    }
                    tries += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(self.retry_wait);
                }
                Err(e) => {
                    if tries > 0 {
                        let text = format!(
                            "Target write {} failed after {tries} retries and will be discarded: {e}",
                            ev.path.display()
                        );
                        self.log.event(Level::Error, events::RETRY_DISCARDED, &text);
                    }
                    if matches!(ev.op, Op::Prune(_)) {
                        self.log.event(
                            Level::Warning,
                            events::ORPHANS_NOT_REMOVED,
                            &format!(
                                "Unable to delete some orphans in {} for job {}: {e}",
                                ev.path.display(),
                                self.key.1
                            ),
                        );
                    }
                    return self.refuse(seq, ev, e.to_string());
                }
            }
        }
    }

    /// Whether an op that failed for a reason that may pass, `tries` times retried so
    /// far, is tried again: up to `TGExecutionRetryLimit` times, or until it is applied
    /// when that is 0 (the guide's default), unless the session is being replaced or
    /// stopped (then it is refused, and its name remirrored after the next connection).
    fn may_retry(&self, tries: u64) -> bool {
        (self.retry_limit == 0 || tries < self.retry_limit) && !self.cancel.load(Ordering::Relaxed)
    }

    /// Logs the first retry of op `ev` with the guide's event for its cause.
    fn retrying(&self, ev: &Event, e: &ApplyError) {
        let (id, cause) = match e.os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => {
                (events::RETRY_DISK_FULL, "target disk being full")
            }
            Some(libc::EBUSY | libc::ETXTBSY) => (events::RETRY_BUSY, "a sharing violation"),
            _ => (events::RETRY_UNKNOWN, "an unknown reason"),
        };
        let times = match self.retry_limit {
            0 => "forever".to_string(),
            n => format!("{n} times"),
        };
        let text = format!(
            "Target can not write {} due to {cause} ({e}). Operation will be retried ({times})",
            ev.path.display()
        );
        self.log.event(Level::Warning, id, &text);
    }

    /// Reports op `seq` refused (recorded, so its names stay unsettled and the refusal can
    /// be repeated); returns false, as for every op not applied.
    fn refuse(&self, seq: u64, ev: &Event, why: String) -> bool {
        log::warn!("job {}: op {seq} not applied: {why}", self.key.1);
        if let Some(mut u) = self.unsettled() {
            u.refused(seq, ev, &why);
        }
        let _ = self.out.send(Frame::nak(seq, 1, &why));
        false
    }

    fn unsettled(&self) -> Option<std::sync::MutexGuard<'_, Unsettled>> {
        self.unsettled.lock().ok()
    }

    /// Counts what an orphan removal took away and, with `LogAllOrphans`, logs each name.
    fn orphans_removed(&self) {
        let o = self.replica.orphans();
        for (stat, n) in self.stats.orphans.iter().zip([o.files, o.dirs, o.bytes]) {
            stat.store(n, Ordering::Relaxed);
        }
        if !self.log_all_orphans {
            return;
        }
        for (path, r) in self.replica.last_orphans() {
            let what = if r.dirs == 0 {
                format!("{} bytes", r.bytes)
            } else {
                format!(
                    "a directory: {} directories, {} files, {} bytes",
                    r.dirs, r.files, r.bytes
                )
            };
            self.log.event(
                Level::Information,
                events::ORPHAN_REMOVED,
                &format!(
                    "Removed orphan {} ({what}) from the replica of job {}",
                    path.display(),
                    self.key.1
                ),
            );
        }
    }

    fn marker(&mut self, marker: Marker) {
        let (state, id, text) = match marker {
            Marker::MirrorStarted => (
                DataState::Mirroring,
                events::MIRROR_STARTED,
                "Mirror started",
            ),
            Marker::MirrorComplete => (DataState::Ok, events::MIRROR_COMPLETED, "Mirror completed"),
        };
        self.session.data_state = state;
        self.stats
            .data_state
            .store(state_code(state), Ordering::Relaxed);
        self.log.event(
            Level::Information,
            id,
            &format!(
                "{text} for job {} into {}",
                self.key.1,
                self.session.target_path.display()
            ),
        );
    }

    /// Has everything applied made durable, recorded, then acknowledged, in the
    /// background; the target queue is freed up to it once that is done.
    fn flush(&mut self, applied: u64, last_queue: u64, ack: bool) -> Result<()> {
        self.replica.close_idle();
        self.session.last_applied = applied;
        self.syncer.request(Point {
            session: self.session.clone(),
            queue_seq: last_queue,
            ack,
        })
    }

    /// [`Worker::flush`], waiting for it: the session ends.
    fn flush_and_wait(&mut self, applied: u64, last_queue: u64, ack: bool) -> Result<()> {
        self.flush(applied, last_queue, ack)?;
        self.syncer.wait()?;
        if let Some(q) = self.syncer.take_durable()? {
            self.consumer.ack(q)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{boot_mark, read_position, AppliedPosition};

    /// The position is in the file as soon as it is recorded (no sync, no close: what a
    /// killed process leaves), and a new session finds the last one's until it records.
    #[test]
    fn the_applied_position_is_in_the_file_at_once_and_kept_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("applied");
        let read = || u64::from_le_bytes(std::fs::read(&path).unwrap()[..8].try_into().unwrap());
        let mut p = AppliedPosition::open(&path).unwrap();
        assert_eq!(read(), 0, "a new file starts at nothing applied");
        for seq in [1, 2, 0x0102_0304_0506_0708, u64::MAX] {
            p.record(seq);
            assert_eq!(read(), seq);
        }
        p.record(77);
        let mut again = AppliedPosition::open(&path).unwrap();
        assert_eq!(read(), 77, "opening keeps the last position");
        again.record(78);
        assert_eq!(read(), 78);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        assert_eq!(read_position(&path), Some(78));
    }

    /// A position written in another boot is not read: the host lost power or was reset
    /// since, and the page holding it may have reached the disk before the data of the ops
    /// it counts. One of an earlier version, without a boot's mark, is read as it was.
    #[test]
    fn a_position_from_another_boot_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("applied");
        assert_ne!(boot_mark(), 0, "the kernel's boot_id is readable");
        let file = |seq: u64, mark: Option<u64>| {
            let mut bytes = seq.to_le_bytes().to_vec();
            bytes.extend(mark.map(u64::to_le_bytes).into_iter().flatten());
            std::fs::write(&path, bytes).unwrap();
        };
        file(90, Some(boot_mark()));
        assert_eq!(read_position(&path), Some(90));
        file(90, Some(boot_mark() ^ 1));
        assert_eq!(read_position(&path), None);
        file(90, None);
        assert_eq!(read_position(&path), Some(90));
    }
}
