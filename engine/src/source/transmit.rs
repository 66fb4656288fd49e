//! The transmit loop: the source queue and the mirror, interleaved into one ordered
//! stream toward the job's [`Destination`](crate::source::destination::Destination),
//! through its [`Outbox`], which resolves each operation once, here on the source, before
//! the destination sees it.
//!
//! Replication operations come from the source queue; mirror operations from a
//! [`Mirror`] walk, either the job's initial mirror or a remirror of what the change
//! journal holds (files whose operations were not all kept, or that the target could not
//! apply). The guide's `HPQueueRatio` says how many replication operations go for each
//! mirror group (an object's head, a data chunk, its attributes), so live changes are not starved by a long mirror; when the queue is
//! empty the mirror runs at full speed. The queue is acknowledged batch by batch once the
//! destination says a batch is durable, so what it has not made durable is still in the
//! queue after a crash; the loop does not wait for that, it keeps sending.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Result;

mod difference;
mod verify;

use crate::events::{self, EventLog, Level};
use crate::net::proto::{Marker, Stream};
use crate::repset::ReplicationSet;
use crate::source::destination::DestinationError;
use crate::source::mirror::{HandOuts, Handout, Method, Mirror, MirrorOptions, TakeOver};
use crate::source::outbox::Outbox;
use crate::storage::change_journal::{ChangeJournal, Entry, Mark, Reason};
use crate::storage::queue::{Consumer, QueueStats, QueueWatch};

/// How far a job's mirror walk is (the management API turns it into the guide's
/// `mirrorStatus`, which also depends on the target and the connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MirrorPhase {
    Idle = 0,
    Calculating = 1,
    InProgress = 2,
    Complete = 3,
    Paused = 4,
}

impl MirrorPhase {
    pub fn from_u8(v: u8) -> MirrorPhase {
        match v {
            1 => MirrorPhase::Calculating,
            2 => MirrorPhase::InProgress,
            3 => MirrorPhase::Complete,
            4 => MirrorPhase::Paused,
            _ => MirrorPhase::Idle,
        }
    }
}

/// What a running job shares with whoever watches or steers it (the daemon's API).
#[derive(Default)]
pub struct JobControl {
    /// Stop the job (drain what was captured, flush, return).
    pub stop: Arc<AtomicBool>,
    /// Hold transmission (`transmitMode` Paused): operations wait in the source queue.
    pub paused: AtomicBool,
    pub mirror_status: AtomicU8,
    /// Bytes of file data the mirror has to send (`CalculateOnConnect`), and has handed
    /// out so far.
    pub mirror_total_bytes: AtomicU64,
    pub mirror_sent_bytes: AtomicU64,
    /// The source queue, live; set when the job's queue is opened.
    pub queue: OnceLock<QueueWatch>,
    /// Files handed to the change journal for remirroring.
    pub remirrored_entries: AtomicU64,
    /// Change-journal entries waiting for a remirror: names the target could not apply,
    /// files whose operations were not all kept. The target's data is not known to equal
    /// the source's while any wait, so the job's target data state is Mirror Required.
    pub changes_pending: AtomicU64,
    /// Set once the capture runs: a mirror waits for it, so that every change made after
    /// the mirror read a file is captured.
    pub capturing: Arc<AtomicBool>,
    /// CLOCK_MONOTONIC ns before which everything captured under the job's source has
    /// been handed to the job's drain thread and queued (the ring was found empty after
    /// it; set once the operations read before are queued).
    pub ring_empty_ns: AtomicU64,
    /// CLOCK_MONOTONIC ns before which every operation captured under the job's source
    /// has been sent (or left to the mirror or the change journal): what a verification
    /// request entering the stream now follows (see `crate::verify`).
    pub sent_through_ns: AtomicU64,
    /// Verification requests waiting to enter the stream, and names a verification
    /// hands to the remirror.
    pub verify: crate::verify::VerifyInbox,
    /// The highest batch mark whose refusals (and whatever else the destination left to
    /// remirror) are in the change journal and counted in `changes_pending`: a
    /// verification judges a name against `changes_pending` only once this passed the
    /// mark of the batch before its request (the refusal of an operation sent before the
    /// request reaches the source before the acknowledgement of its batch).
    pub settled_mark: AtomicU64,
}

impl JobControl {
    pub fn mirror_status(&self) -> MirrorPhase {
        MirrorPhase::from_u8(self.mirror_status.load(Ordering::Relaxed))
    }

    fn set_mirror(&self, s: MirrorPhase) {
        self.mirror_status.store(s as u8, Ordering::Relaxed);
    }
}

/// The settings the loop works by.
#[derive(Clone, Copy, Debug)]
pub struct TransmitOptions {
    /// `HPQueueRatio`: replication operations per mirror group.
    pub hp_queue_ratio: u64,
    pub mirror: MirrorOptions,
    /// How a remirror compares files with the replica (`AutoRemirror`, `ChecksumAll`).
    pub remirror_method: Method,
    /// How long a difference mirror waits for the replica's answer before it rebuilds
    /// the file whole.
    pub answer_wait: Duration,
    /// `CalculateOnConnect`: size the mirror before it starts.
    pub calculate: bool,
    /// `UseChangeJournal`: remirror what the change journal holds.
    pub use_change_journal: bool,
}

/// A mirror being sent, and the change-journal entries it resolves when it is done.
struct Running {
    walk: Mirror,
    entries: Vec<Entry>,
    /// Bracketed by markers, so the target's data state is Mirroring until it ends: the
    /// job's initial mirror, and a remirror of its whole source (after an unclean stop, or
    /// a start after a stop), which rebuilds files the replica holds.
    marked: bool,
}

/// The loop's inputs.
pub struct TransmitLoop<'a> {
    /// The job's resolver and destination.
    pub outbox: &'a mut Outbox,
    pub consumer: &'a mut Consumer,
    pub changes: &'a ChangeJournal,
    pub control: &'a JobControl,
    pub set: ReplicationSet,
    pub source: PathBuf,
    pub options: TransmitOptions,
    /// Set by the drain thread once it has pushed its last operation.
    pub drained: &'a AtomicBool,
    /// Called about once a second with the queue's statistics.
    pub on_tick: &'a mut dyn FnMut(&QueueStats) -> Result<()>,
    /// Called when an operation could not be sent or applied (the mark is recorded).
    pub on_failure: &'a mut dyn FnMut(&DestinationError),
    pub log: &'a EventLog,
    /// The job ran before and its capture stopped cleanly at this time (wall-clock ns):
    /// once capturing again, the whole source is remirrored if anything beneath it changed
    /// since (`changed_since`).
    pub changed_since: Option<u64>,
}

/// The loop's state from one pass to the next.
struct Progress {
    mirror: Option<Running>,
    /// When mirror groups were handed out, for as long as operations captured before
    /// then may still be queued, mirror done or not (see `HandOuts`).
    handed_out: HandOuts,
    /// The queue sequence of the last operation sent.
    last: u64,
    /// Operations and groups sent since the last checkpoint, and when that was.
    unflushed: u32,
    flushed_at: Instant,
    /// When the statistics were last passed on.
    tick_at: Instant,
    /// Batches sent and not yet durable: (the destination's mark, the last queue sequence).
    batches: VecDeque<(u64, u64)>,
    remirrors: Remirrors,
    /// Replication operations sent since the mirror's last turn.
    since_mirror: u64,
    /// The destination's mark of the last batch ended.
    last_mark: u64,
}

impl Progress {
    fn new(mirror: Option<Running>) -> Progress {
        Progress {
            mirror,
            handed_out: HandOuts::default(),
            last: 0,
            unflushed: 0,
            flushed_at: Instant::now(),
            tick_at: Instant::now(),
            batches: VecDeque::new(),
            remirrors: Remirrors::new(),
            since_mirror: 0,
            last_mark: 0,
        }
    }
}

const FLUSH_OPS: u32 = 1024;
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// How often the change journal is looked at for files to remirror.
const REMIRROR_INTERVAL: Duration = Duration::from_secs(2);
const MAX_REMIRROR_INTERVAL: Duration = Duration::from_secs(300);
/// How far capture timestamps may be out of order in the ring (a record's time is taken
/// before its slot is reserved, on whichever CPU), with a wide margin.
const CAPTURE_SLACK_NS: u64 = 10_000_000;

impl TransmitLoop<'_> {
    /// Runs until the drain thread is done and the queue is empty (or the job stops),
    /// with a full mirror first when `full_mirror`.
    ///
    /// Each pass of the loop: the second's statistics, a turn of the mirror or of
    /// replication (`HPQueueRatio` replication operations to a mirror group), a
    /// checkpoint when one is due, the queue acknowledged up to what the destination made
    /// durable, and a remirror of what the change journal holds when one is due.
    pub fn run(mut self, full_mirror: bool) -> Result<()> {
        // What the last run left to remirror (an unclean stop marks the whole source) is
        // pending from the start: the status must not call the target's data OK until it
        // is done, however long the first pass takes.
        self.note_pending()?;
        self.wait_for_capture();
        self.look_for_changes_while_stopped()?;
        let mirror = if full_mirror {
            Some(self.start_mirror(vec![self.source.clone()], Vec::new(), true)?)
        } else {
            None
        };
        let mut p = Progress::new(mirror);
        let ratio = self.options.hp_queue_ratio.max(1);
        loop {
            let stop = self.control.stop.load(Ordering::Relaxed);
            if p.tick_at.elapsed() >= Duration::from_secs(1) {
                (self.on_tick)(&self.consumer.stats())?;
                self.note_pending()?;
                p.tick_at = Instant::now();
            }
            if self.control.paused.load(Ordering::Relaxed) && !stop {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let mirror_ready = p.mirror.is_some() && !self.outbox.mirror_paused() && !stop;
            // Nothing left to send at once: the last operations' checkpoint (their files'
            // times, and the mark their acknowledgement waits for) goes now, not when the
            // interval is up.
            let idle = if mirror_ready && p.since_mirror >= ratio {
                self.mirror_turn(&mut p)?;
                false
            } else {
                match self.replication_turn(&mut p, mirror_ready, ratio)? {
                    Some(idle) => idle,
                    None => break,
                }
            };
            if !self.checkpoint_if_due(&mut p, idle)? || !self.verify_turn(&mut p)? {
                return Ok(());
            }
            self.settle_durable(&mut p)?;
            let lost = self.record_lost_state()?;
            if p.mirror.is_none()
                && !stop
                && self.options.use_change_journal
                && (lost || p.remirrors.due())
            {
                p.mirror = self.remirror(&mut p.remirrors)?;
            }
        }
        self.finish(p.last)
    }

    /// Waits until the capture runs (or the drain thread is done, or the job stops): a
    /// mirror must not read a file before changes made after it are captured.
    fn wait_for_capture(&self) {
        while !self.control.capturing.load(Ordering::Acquire)
            && !self.drained.load(Ordering::Acquire)
            && !self.control.stop.load(Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A job whose capture stopped cleanly remirrors its whole source if anything beneath
    /// it changed since. Only once capturing: a change made after the walk passed its
    /// inode is captured.
    fn look_for_changes_while_stopped(&mut self) -> Result<()> {
        let Some(since) = self.changed_since else {
            return Ok(());
        };
        if crate::source::changed_since::changed_since(&self.source, since) {
            self.mark_whole_source()?;
        } else {
            log::info!(
                "nothing beneath {} changed while the job was stopped: no remirror",
                self.source.display()
            );
        }
        Ok(())
    }

    /// The mirror's turn: its next group is sent whole (its values were read just now, see
    /// `mirror`), or, when the walk is done, the mirror is finished.
    fn mirror_turn(&mut self, p: &mut Progress) -> Result<()> {
        p.since_mirror = 0;
        let Some(m) = p.mirror.as_mut() else {
            return Ok(());
        };
        let remirror = !m.entries.is_empty();
        match m.walk.next() {
            Some(Handout::Group(group)) => self.send_group(p, &group, remirror)?,
            Some(Handout::Compare(c)) => self.compare_turn(p, c)?,
            None => {
                if let Some(done) = p.mirror.take() {
                    p.remirrors.failed(self.finish_mirror(done)?);
                }
                p.unflushed += 1;
            }
        }
        Ok(())
    }

    /// Replication's turn: the next queued operation is sent (or left to the running
    /// mirror). Whether the loop is idle (nothing to send at once), or `None` once the
    /// drain thread is done and everything queued has been sent.
    fn replication_turn(
        &mut self,
        p: &mut Progress,
        mirror_ready: bool,
        ratio: u64,
    ) -> Result<Option<bool>> {
        // Short while a batch awaits its acknowledgement, so it is noticed soon.
        let wait = if mirror_ready {
            Duration::ZERO
        } else if !p.batches.is_empty() {
            Duration::from_millis(2)
        } else {
            Duration::from_millis(50)
        };
        // Read before the pop: the drain thread sets it once what was captured before it
        // is queued, so if the pop then finds the queue empty, all of that has been sent
        // (read after, it could cover operations pushed since).
        let empty = self.control.ring_empty_ns.load(Ordering::Acquire);
        let popped = self.consumer.pop(wait)?;
        // Nothing queued: every operation captured before the ring was last found empty
        // has been sent.
        if popped.is_none() {
            let before = empty.saturating_sub(CAPTURE_SLACK_NS);
            p.handed_out.forget_before(before);
            self.sent_through(before);
            self.outbox.stream_passed(before);
        }
        match popped {
            Some(q) => {
                self.overtaken(&mut p.handed_out, &q.event)?;
                let walk = p.mirror.as_mut().map(|m| &mut m.walk);
                if let Some(failed) = self.replicate(&q.event, walk)? {
                    p.remirrors.failed([failed]);
                }
                p.last = q.seq;
                p.unflushed += 1;
                p.since_mirror += 1;
                // Captured in order within the slack: everything captured before this
                // one's time, less the slack, was popped before it.
                self.sent_through(q.event.ktime_ns.saturating_sub(CAPTURE_SLACK_NS));
            }
            // Nothing to replicate: the mirror takes the turn.
            None if mirror_ready => p.since_mirror = ratio,
            None if self.drained.load(Ordering::Acquire) => return Ok(None),
            None => return Ok(Some(p.mirror.is_none())),
        }
        Ok(Some(false))
    }

    /// Asks the destination for a checkpoint of what was sent, when one is due (a full batch,
    /// the interval, or nothing more to send at once; or, idle, times of a written file that
    /// wait for the stream to pass: see `Outbox::times_astray`). False when the destination
    /// has stopped.
    fn checkpoint_if_due(&mut self, p: &mut Progress, idle: bool) -> Result<bool> {
        let sent = p.unflushed > 0
            && (idle || p.unflushed >= FLUSH_OPS || p.flushed_at.elapsed() > FLUSH_INTERVAL);
        if sent || (idle && self.outbox.times_astray()) {
            match self.outbox.checkpoint() {
                Ok(mark) => {
                    p.batches.push_back((mark, p.last));
                    p.last_mark = mark;
                }
                Err(DestinationError::Stopped) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
            (p.unflushed, p.flushed_at) = (0, Instant::now());
        }
        Ok(true)
    }

    /// Acknowledges the queue up to the last batch the destination made durable, and
    /// records the failures it reported.
    fn settle_durable(&mut self, p: &mut Progress) -> Result<()> {
        let Some(&(first, _)) = p.batches.front() else {
            return Ok(());
        };
        if first > self.outbox.durable() {
            return Ok(());
        }
        let durable = self.outbox.durable();
        let mut acked = 0;
        while let Some(&(mark, seq)) = p.batches.front() {
            if mark > durable {
                break;
            }
            acked = acked.max(seq);
            p.batches.pop_front();
        }
        // What is to be remirrored is in the change journal and counted before the queue
        // lets go of the operations that found it: a status read in between would see an
        // empty queue and nothing pending (the capture's dirty marks reach the journal
        // this way, see `Drained::Op`) and call the replica in sync.
        let (refused, any) = self.record_failures()?;
        p.remirrors.failed(refused);
        if any {
            self.note_pending()?;
        }
        self.control
            .settled_mark
            .fetch_max(durable, Ordering::AcqRel);
        if acked > 0 {
            self.consumer.ack(acked)?;
        }
        Ok(())
    }

    /// The loop is over: flushes the destination and acknowledges the queue up to `last` if the
    /// flush went through.
    ///
    /// Only what the destination made durable leaves the queue. A flush the stop cut short
    /// (the link down as the job stopped) acknowledged nothing: taking the rest for
    /// acknowledged dropped it for good, and the next start, which looks only for changes
    /// made since the capture stopped, never sent it (found by the replication fuzzer:
    /// whole directories missing, the job in sync). Left unacknowledged, the stop is not a
    /// clean one (`job::run`), and the next start remirrors.
    fn finish(&mut self, last: u64) -> Result<()> {
        let flushed = match self.outbox.flush() {
            Ok(()) => true,
            Err(DestinationError::Stopped) => false,
            Err(e) => return Err(e.into()),
        };
        // Before the acknowledgement, as in `settle_durable`.
        self.record_failures()?;
        if last > 0 && flushed {
            self.consumer.ack(last)?;
        }
        let q = self.consumer.stats();
        (self.on_tick)(&q)
    }

    /// Sends one replication operation, unless the running mirror takes it over (it reads
    /// what the operation did later: `mirror::pending`; an unfinished mirror is done
    /// again, so nothing is lost by a stop). The name it failed on, if any.
    fn replicate(
        &mut self,
        ev: &rill_ops::Event,
        mirror: Option<&mut Mirror>,
    ) -> Result<Option<PathBuf>> {
        let remirror = match mirror.map(|m| m.takes_over(ev)) {
            Some(TakeOver::Left) => {
                log::debug!("left to the mirror: {}", ev.to_text());
                return Ok(None);
            }
            Some(TakeOver::Send { remirror }) => remirror,
            None => Vec::new(),
        };
        let failed = self.send(ev, Stream::Replication)?;
        self.stale_after(remirror.iter())?;
        Ok(failed)
    }

    /// Sends one operation; the name it failed on (now in the change journal), if any.
    fn send(&mut self, ev: &rill_ops::Event, stream: Stream) -> Result<Option<PathBuf>> {
        match self.outbox.send(ev, stream) {
            Ok(()) => Ok(None),
            Err(DestinationError::Stopped) => Ok(None),
            Err(e) => {
                (self.on_failure)(&e);
                self.changes.mark(&[Mark::whole(
                    ev.path.clone(),
                    Reason::Modified,
                    crate::clock::wall_ns(),
                )])?;
                Ok(Some(ev.path.clone()))
            }
        }
    }

    /// A replication operation that a mirror overtook (see [`HandOuts::overtook`]) has its
    /// names remirrored by a later mirror; hand-out times no operation still to come can
    /// predate are forgotten.
    fn overtaken(&mut self, hand_outs: &mut HandOuts, ev: &rill_ops::Event) -> Result<()> {
        if hand_outs.overtook(ev) {
            self.stale_after(ev.paths())?;
        }
        hand_outs.forget_before(ev.ktime_ns.saturating_sub(CAPTURE_SLACK_NS));
        Ok(())
    }

    /// Names stale on the replica once the operation just sent (or about to be) is applied
    /// there: remirrored, and followed meanwhile through the moves after it, which carry
    /// what they hold on.
    fn stale_after<'p>(&mut self, names: impl Iterator<Item = &'p PathBuf>) -> Result<()> {
        let at = crate::clock::wall_ns();
        let names: Vec<&PathBuf> = names.collect();
        if names.is_empty() {
            return Ok(());
        }
        let marks: Vec<Mark> = names
            .iter()
            .map(|p| Mark::whole((*p).clone(), Reason::Modified, at))
            .collect();
        log::debug!("stale on the replica, to remirror: {names:?}");
        self.changes.mark(&marks)?;
        for p in names {
            self.outbox.suspect(p);
        }
        Ok(())
    }

    /// A destination that lost what it had acknowledged gets the whole source again, at
    /// once. Returns whether it did.
    fn record_lost_state(&mut self) -> Result<bool> {
        if !self.outbox.take_lost_state() {
            return Ok(false);
        }
        self.log.event(
            Level::Warning,
            events::DATA_STATE,
            &format!(
                "Target data state for {} changed because the target lost operations it had \
                 acknowledged: the whole source is remirrored",
                self.source.display()
            ),
        );
        self.mark_whole_source()?;
        Ok(true)
    }

    /// Has the whole source remirrored (the next remirror takes it, bracketed by the
    /// mirror markers).
    fn mark_whole_source(&self) -> Result<()> {
        Ok(self
            .changes
            .mark_subtree(&self.source, Reason::RescanAll, crate::clock::wall_ns())?)
    }

    /// What the destination has to have remirrored goes to the change journal. Returns
    /// the names it refused (see [`Remirrors`]), and whether there was anything.
    fn record_failures(&mut self) -> Result<(Vec<PathBuf>, bool)> {
        let to = self.outbox.take_remirrors();
        if to.is_empty() {
            return Ok((Vec::new(), false));
        }
        log::debug!("to remirror: {to:?}");
        let marks: Vec<Mark> = to
            .names()
            .map(|p| Mark::whole(p.clone(), Reason::Modified, crate::clock::wall_ns()))
            .collect();
        self.changes.mark(&marks)?;
        Ok((to.refused, true))
    }

    /// Publishes how many change-journal entries wait for a remirror (see
    /// `JobControl::changes_pending`) and logs the target data state's changes it makes
    /// (4065): to Mirror Required when names start waiting, back to OK when every one has
    /// been remirrored and acknowledged.
    fn note_pending(&mut self) -> Result<()> {
        let n = self.changes.len()?;
        let before = self.control.changes_pending.swap(n, Ordering::Relaxed);
        let text = match (before, n) {
            (0, 1..) => format!(
                "Target data state for {} changed to Mirror Required because {n} names wait to \
                 be remirrored (operations the target could not apply, or not all kept): {}",
                self.source.display(),
                self.first_pending()?
            ),
            (1.., 0) => format!(
                "Target data state for {} changed to OK: every name that waited has been \
                 remirrored",
                self.source.display()
            ),
            _ => return Ok(()),
        };
        let level = if n > 0 {
            Level::Warning
        } else {
            Level::Information
        };
        self.log.event(level, events::DATA_STATE, &text);
        Ok(())
    }

    /// Remirrors keep failing on some names: says which, so an administrator can look.
    /// They stay in the change journal and are tried again, never dropped.
    fn report_failing(&mut self, rounds: u32) -> Result<()> {
        let text = format!(
            "Target data state for {} is Mirror Required: the target could not apply the \
             last {rounds} remirrors in full; still waiting: {}",
            self.source.display(),
            self.first_pending()?
        );
        self.log.event(Level::Warning, events::DATA_STATE, &text);
        Ok(())
    }

    /// The first few names waiting for a remirror, relative to the source, for events.
    fn first_pending(&self) -> Result<String> {
        const SHOWN: usize = 8;
        let names: Vec<String> = self
            .changes
            .pending(SHOWN)?
            .iter()
            .map(|e| {
                let rel = e.path.strip_prefix(&self.source).unwrap_or(&e.path);
                format!("\"{}\"", rel.display())
            })
            .collect();
        Ok(names.join(", "))
    }

    fn start_mirror(
        &mut self,
        roots: Vec<PathBuf>,
        entries: Vec<Entry>,
        full: bool,
    ) -> Result<Running> {
        if self.options.calculate {
            self.control.set_mirror(MirrorPhase::Calculating);
            let total = Mirror::calculate(&roots, &self.set);
            self.control
                .mirror_total_bytes
                .store(total.bytes, Ordering::Relaxed);
        }
        self.control.mirror_sent_bytes.store(0, Ordering::Relaxed);
        self.control.set_mirror(MirrorPhase::InProgress);
        let marked = full || roots.contains(&self.source);
        if marked {
            self.outbox.marker(Marker::MirrorStarted)?;
        }
        let (set, mut options) = (self.set.clone(), self.options.mirror);
        // `MirrorOverwrite` is the first mirror's; a remirror repairs what the replica
        // lacks, so it overwrites, by `AutoRemirror`'s method.
        if !full {
            options.compare.overwrite = crate::source::mirror::Overwrite::Always;
            options.compare.method = self.options.remirror_method;
        }
        Ok(Running {
            walk: if full {
                Mirror::new(roots, set, options)
            } else {
                Mirror::remirror(roots, self.source.clone(), set, options)
            },
            entries,
            marked,
        })
    }

    /// Records a finished mirror; returns the names the target refused of it.
    fn finish_mirror(&mut self, done: Running) -> Result<Vec<PathBuf>> {
        if done.marked {
            self.outbox.marker(Marker::MirrorComplete)?;
        }
        // Everything the mirror sent must be durable before the entries are dropped.
        match self.outbox.flush() {
            Ok(()) => {}
            Err(DestinationError::Stopped) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        let mut refused = Vec::new();
        if !done.entries.is_empty() {
            self.changes.complete_entries(&done.entries)?;
            self.control
                .remirrored_entries
                .fetch_add(done.entries.len() as u64, Ordering::Relaxed);
            // What the target refused of this remirror waits again (its refusals came
            // before the acknowledgement the flush waited for).
            refused = self.record_failures()?.0;
            self.note_pending()?;
        }
        self.control.set_mirror(MirrorPhase::Complete);
        Ok(refused)
    }

    /// A mirror of what the change journal holds, if anything.
    fn remirror(&mut self, remirrors: &mut Remirrors) -> Result<Option<Running>> {
        remirrors.at = Instant::now();
        let entries = self.changes.pending(REMIRROR_ENTRIES)?;
        if entries.is_empty() {
            return Ok(None);
        }
        let roots: Vec<PathBuf> = entries
            .iter()
            .map(|e| e.path.clone())
            .filter(|p| p.starts_with(&self.source))
            .collect();
        if let Some(rounds) = remirrors.started(&roots) {
            self.report_failing(rounds)?;
        }
        log::info!("remirroring {} change-journal entries", entries.len());
        Ok(Some(self.start_mirror(roots, entries, false)?))
    }
}

/// The most change-journal entries one remirror takes: a bounded walk, so replication
/// keeps its turns and a remirror's completion is recorded before the next begins.
const REMIRROR_ENTRIES: usize = 256;

/// When the next remirror of the change journal's entries is due.
///
/// Remirrors come every `REMIRROR_INTERVAL` while they succeed. A name that a remirror
/// could not get applied comes back to the change journal and into the next remirror:
/// while names come back (in the last remirror, and failed since it started), the
/// interval doubles (up to `MAX_REMIRROR_INTERVAL`), so a file
/// the target cannot take does not have the job remirror it in a tight loop; and every
/// time the rounds in a row reach a power of two (2, 4, 8...) the names still waiting are
/// reported (event 4065). Entries are never dropped. Names failed by live operations,
/// which a first remirror usually repairs, do not slow the next remirror down; nor do
/// names in the next remirror again because they changed again (a file written through
/// a shared mapping is marked dirty after every few stores), which must reach the
/// replica within seconds each time.
struct Remirrors {
    at: Instant,
    every: Duration,
    /// The roots of the last remirror.
    last: std::collections::HashSet<PathBuf>,
    /// Remirrors in a row that took up names of the one before.
    rounds: u32,
    /// Names that failed since the last remirror started.
    failed: std::collections::HashSet<PathBuf>,
}

impl Remirrors {
    fn new() -> Remirrors {
        Remirrors {
            at: Instant::now(),
            every: REMIRROR_INTERVAL,
            last: Default::default(),
            rounds: 0,
            failed: Default::default(),
        }
    }

    /// Names that could not be sent or applied, just marked in the change journal.
    fn failed(&mut self, names: impl IntoIterator<Item = PathBuf>) {
        self.failed.extend(names);
    }

    fn due(&self) -> bool {
        self.at.elapsed() >= self.every
    }

    /// A remirror of `roots` starts; the number of failing rounds in a row, when it is
    /// time to report them.
    fn started(&mut self, roots: &[PathBuf]) -> Option<u32> {
        let again = roots
            .iter()
            .any(|r| self.last.contains(r) && self.failed.contains(r));
        self.failed.clear();
        self.last = roots.iter().cloned().collect();
        if again {
            self.rounds += 1;
            self.every = (self.every * 2).min(MAX_REMIRROR_INTERVAL);
        } else {
            self.rounds = 0;
            self.every = REMIRROR_INTERVAL;
        }
        (self.rounds >= 2 && self.rounds.is_power_of_two()).then_some(self.rounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remirrors_slow_down_and_report_only_while_names_come_back() {
        let mut r = Remirrors::new();
        let (a, b) = (vec![PathBuf::from("/s/a")], vec![PathBuf::from("/s/b")]);
        assert_eq!(r.started(&a), None);
        assert_eq!(r.every, REMIRROR_INTERVAL);
        // `a` came back, failed: twice as long to the next, reported from the second
        // round on.
        let reports: Vec<Option<u32>> = (0..8)
            .map(|_| {
                r.failed(a.clone());
                r.started(&a)
            })
            .collect();
        assert_eq!(
            reports,
            [None, Some(2), None, Some(4), None, None, None, Some(8)]
        );
        assert_eq!(r.every, MAX_REMIRROR_INTERVAL.min(REMIRROR_INTERVAL * 256));
        // Other names: back to the short interval.
        assert_eq!(r.started(&b), None);
        assert_eq!((r.every, r.rounds), (REMIRROR_INTERVAL, 0));
        // `b` again, changed again but not failed: the short interval still; a failure
        // of a name the next remirror does not hold slows nothing either.
        assert_eq!(r.started(&b), None);
        r.failed(b.clone());
        assert_eq!(r.started(&a), None);
        assert_eq!(r.started(&a), None);
        assert_eq!((r.every, r.rounds), (REMIRROR_INTERVAL, 0));
    }
}
