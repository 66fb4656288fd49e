//! The transmit loop: the source queue and the mirror, interleaved into one ordered
//! stream toward a [`Transmit`].
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

use crate::change_journal::{ChangeJournal, Entry, Mark, Reason};
use crate::events::{self, EventLog, Level};
use crate::mirror::{HandOuts, Mirror, MirrorOptions};
use crate::proto::{Marker, Stream};
use crate::queue::{Consumer, QueueStats, QueueWatch};
use crate::repset::ReplicationSet;
use crate::sink::{SinkError, Transmit};

/// `mirrorStatus`, as the guide words it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MirrorStatus {
    Idle = 0,
    Calculating = 1,
    InProgress = 2,
    Complete = 3,
    Paused = 4,
}

impl MirrorStatus {
    pub fn from_u8(v: u8) -> MirrorStatus {
        match v {
            1 => MirrorStatus::Calculating,
            2 => MirrorStatus::InProgress,
            3 => MirrorStatus::Complete,
            4 => MirrorStatus::Paused,
            _ => MirrorStatus::Idle,
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
    /// Set once the capture runs: a mirror waits for it, so that every change made after
    /// the mirror read a file is captured.
    pub capturing: Arc<AtomicBool>,
    /// CLOCK_MONOTONIC ns when the drain thread last found the capture ring empty, with
    /// everything it had read before queued.
    pub ring_empty_ns: AtomicU64,
}

impl JobControl {
    pub fn mirror_status(&self) -> MirrorStatus {
        MirrorStatus::from_u8(self.mirror_status.load(Ordering::Relaxed))
    }

    fn set_mirror(&self, s: MirrorStatus) {
        self.mirror_status.store(s as u8, Ordering::Relaxed);
    }
}

/// The settings the loop works by.
#[derive(Clone, Copy, Debug)]
pub struct TransmitOptions {
    /// `HPQueueRatio`: replication operations per mirror group.
    pub hp_queue_ratio: u64,
    pub mirror: MirrorOptions,
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
    pub sink: &'a mut dyn Transmit,
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
    pub on_failure: &'a mut dyn FnMut(&SinkError),
    pub log: &'a EventLog,
    /// The job ran before and its capture stopped cleanly at this time (wall-clock ns):
    /// once capturing again, the whole source is remirrored if anything beneath it changed
    /// since (`changed_since`).
    pub changed_since: Option<u64>,
    /// Operations the destination could not apply, so far.
    pub failures: u64,
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
    pub fn run(mut self, full_mirror: bool) -> Result<()> {
        while !self.control.capturing.load(Ordering::Acquire)
            && !self.drained.load(Ordering::Acquire)
            && !self.control.stop.load(Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Only now: a change made after the walk passed its inode is captured.
        if let Some(since) = self.changed_since {
            if crate::changed_since::changed_since(&self.source, since) {
                self.mark_whole_source()?;
            } else {
                log::info!(
                    "nothing beneath {} changed while the job was stopped: no remirror",
                    self.source.display()
                );
            }
        }
        let mut mirror = if full_mirror {
            Some(self.start_mirror(vec![self.source.clone()], Vec::new(), true)?)
        } else {
            None
        };
        // When mirror groups were handed out, for as long as operations captured before
        // then may still be queued, mirror done or not (see `HandOuts`).
        let mut handed_out = HandOuts::default();
        let (mut last, mut unflushed, mut flushed_at, mut tick_at) =
            (0u64, 0u32, Instant::now(), Instant::now());
        // Batches sent and not yet durable: (the sink's mark, the last queue sequence).
        let mut batches: VecDeque<(u64, u64)> = VecDeque::new();
        let mut remirror_at = Instant::now();
        // Grows while remirrors keep failing (a file the target cannot take), so one bad
        // file does not have the job remirror it in a tight loop.
        let mut remirror_every = REMIRROR_INTERVAL;
        let mut failures_then = 0;
        let mut since_mirror = 0u64;
        let ratio = self.options.hp_queue_ratio.max(1);
        loop {
            let stop = self.control.stop.load(Ordering::Relaxed);
            if tick_at.elapsed() >= Duration::from_secs(1) {
                (self.on_tick)(&self.consumer.stats())?;
                tick_at = Instant::now();
            }
            if self.control.paused.load(Ordering::Relaxed) && !stop {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let mirror_ready = mirror.is_some() && !self.sink.mirror_paused() && !stop;
            // Nothing left to send at once: the last operations' checkpoint (their files'
            // times, and the mark their acknowledgement waits for) goes now, not when the
            // interval is up.
            let mut idle = false;
            if let (true, Some(m)) = (mirror_ready && since_mirror >= ratio, mirror.as_mut()) {
                since_mirror = 0;
                match m.walk.next_group() {
                    // Whole: its values were read just now (see `mirror`).
                    Some(group) => {
                        handed_out.record(&group);
                        for ev in &group {
                            self.send(ev, Stream::Mirror)?;
                        }
                        self.control
                            .mirror_sent_bytes
                            .store(m.walk.progress().bytes, Ordering::Relaxed);
                        unflushed += group.len() as u32;
                    }
                    None => {
                        let done = mirror.take();
                        if let Some(done) = done {
                            self.finish_mirror(done)?;
                        }
                        unflushed += 1;
                    }
                }
            } else {
                // Short while a batch awaits its acknowledgement, so it is noticed soon.
                let wait = if mirror_ready {
                    Duration::ZERO
                } else if !batches.is_empty() {
                    Duration::from_millis(2)
                } else {
                    Duration::from_millis(50)
                };
                let popped = self.consumer.pop(wait)?;
                // Nothing queued: every operation captured before the ring was last found
                // empty has been sent.
                if popped.is_none() {
                    let empty = self.control.ring_empty_ns.load(Ordering::Relaxed);
                    let before = empty.saturating_sub(CAPTURE_SLACK_NS);
                    handed_out.forget_before(before);
                }
                match popped {
                    Some(q) => {
                        self.overtaken(&mut handed_out, &q.event)?;
                        self.send(&q.event, Stream::Replication)?;
                        last = q.seq;
                        unflushed += 1;
                        since_mirror += 1;
                    }
                    // Nothing to replicate: the mirror takes the turn.
                    None if mirror_ready => since_mirror = ratio,
                    None if self.drained.load(Ordering::Acquire) => break,
                    None => idle = mirror.is_none(),
                }
            }
            if unflushed > 0
                && (idle || unflushed >= FLUSH_OPS || flushed_at.elapsed() > FLUSH_INTERVAL)
            {
                match self.sink.checkpoint() {
                    Ok(mark) => batches.push_back((mark, last)),
                    Err(SinkError::Stopped) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
                (unflushed, flushed_at) = (0, Instant::now());
            }
            if batches
                .front()
                .is_some_and(|&(mark, _)| mark <= self.sink.durable())
            {
                let durable = self.sink.durable();
                let mut acked = 0;
                while let Some(&(mark, seq)) = batches.front() {
                    if mark > durable {
                        break;
                    }
                    acked = acked.max(seq);
                    batches.pop_front();
                }
                if acked > 0 {
                    self.consumer.ack(acked)?;
                }
                self.record_failures()?;
            }
            let lost = self.record_lost_state()?;
            if mirror.is_none()
                && !stop
                && self.options.use_change_journal
                && (lost || remirror_at.elapsed() >= remirror_every)
            {
                remirror_at = Instant::now();
                let failed_since = self.failures > failures_then;
                failures_then = self.failures;
                mirror = self.remirror()?;
                if mirror.is_some() {
                    remirror_every = if failed_since {
                        (remirror_every * 2).min(MAX_REMIRROR_INTERVAL)
                    } else {
                        REMIRROR_INTERVAL
                    };
                }
            }
        }
        match self.sink.flush() {
            Ok(()) | Err(SinkError::Stopped) => {}
            Err(e) => return Err(e.into()),
        }
        if last > 0 {
            self.consumer.ack(last)?;
        }
        self.record_failures()?;
        let q = self.consumer.stats();
        (self.on_tick)(&q)
    }

    fn send(&mut self, ev: &rill_driver_linux::Event, stream: Stream) -> Result<()> {
        match self.sink.send(ev, stream) {
            Ok(()) => Ok(()),
            Err(SinkError::Stopped) => Ok(()),
            Err(e) => {
                (self.on_failure)(&e);
                self.changes
                    .mark(&[Mark::whole(ev.path.clone(), Reason::Modified, now_ns())])?;
                Ok(())
            }
        }
    }

    /// A replication operation that a mirror overtook (see [`HandOuts::overtook`]) has its
    /// names remirrored by a later mirror; hand-out times no operation still to come can
    /// predate are forgotten.
    fn overtaken(&mut self, hand_outs: &mut HandOuts, ev: &rill_driver_linux::Event) -> Result<()> {
        if hand_outs.overtook(ev) {
            let at = now_ns();
            let marks: Vec<Mark> = ev
                .paths()
                .map(|p| Mark::whole(p.clone(), Reason::Modified, at))
                .collect();
            self.changes.mark(&marks)?;
        }
        hand_outs.forget_before(ev.ktime_ns.saturating_sub(CAPTURE_SLACK_NS));
        Ok(())
    }

    /// A destination that lost what it had acknowledged gets the whole source again, at
    /// once. Returns whether it did.
    fn record_lost_state(&mut self) -> Result<bool> {
        if !self.sink.take_lost_state() {
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
            .mark_subtree(&self.source, Reason::RescanAll, now_ns())?)
    }

    /// Files the destination could not apply go to the change journal, to be remirrored.
    fn record_failures(&mut self) -> Result<()> {
        let failed = self.sink.take_failures();
        self.failures += failed.len() as u64;
        if !failed.is_empty() {
            let marks: Vec<Mark> = failed
                .into_iter()
                .map(|p| Mark::whole(p, Reason::Modified, now_ns()))
                .collect();
            self.changes.mark(&marks)?;
        }
        Ok(())
    }

    fn start_mirror(
        &mut self,
        roots: Vec<PathBuf>,
        entries: Vec<Entry>,
        full: bool,
    ) -> Result<Running> {
        if self.options.calculate {
            self.control.set_mirror(MirrorStatus::Calculating);
            let total = Mirror::calculate(&roots, &self.set);
            self.control
                .mirror_total_bytes
                .store(total.bytes, Ordering::Relaxed);
        }
        self.control.mirror_sent_bytes.store(0, Ordering::Relaxed);
        self.control.set_mirror(MirrorStatus::InProgress);
        let marked = full || roots.contains(&self.source);
        if marked {
            self.sink.marker(Marker::MirrorStarted)?;
        }
        let (set, options) = (self.set.clone(), self.options.mirror);
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

    fn finish_mirror(&mut self, done: Running) -> Result<()> {
        if done.marked {
            self.sink.marker(Marker::MirrorComplete)?;
        }
        // Everything the mirror sent must be durable before the entries are dropped.
        match self.sink.flush() {
            Ok(()) => {}
            Err(SinkError::Stopped) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if !done.entries.is_empty() {
            self.changes.complete_entries(&done.entries)?;
            self.control
                .remirrored_entries
                .fetch_add(done.entries.len() as u64, Ordering::Relaxed);
        }
        self.control.set_mirror(MirrorStatus::Complete);
        Ok(())
    }

    /// A mirror of what the change journal holds, if anything.
    fn remirror(&mut self) -> Result<Option<Running>> {
        let entries = self.changes.pending(256)?;
        if entries.is_empty() {
            return Ok(None);
        }
        let roots: Vec<PathBuf> = entries
            .iter()
            .map(|e| e.path.clone())
            .filter(|p| p.starts_with(&self.source))
            .collect();
        log::info!("remirroring {} change-journal entries", entries.len());
        Ok(Some(self.start_mirror(roots, entries, false)?))
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
