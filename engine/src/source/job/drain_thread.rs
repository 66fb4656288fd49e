//! The job's drain thread: the driver's ring in, the source queue out.
//!
//! It reads the records of a capture session of the job's source directory, passes them
//! through the [`Drain`] (sequence numbers, the replication set's rules, dirty files) and
//! pushes the operations into the source queue; what the queue does not keep and what the
//! drain cannot fill goes to the change journal. It also samples `DriverQueuePercent`
//! and takes a reloaded settings file (SIGHUP) into account. Once the job stops, it reads
//! what was captured before the stop, queues it, flushes the queue and ends.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use rill_ops::{DirtyReason, Event, Op};

use super::Counters;
use crate::events::{self, EventLog, Level};
use crate::options::queue_limits;
use crate::settings::Settings;
use crate::source::capture_hub::{CaptureHub, Subscription};
use crate::source::drain::{Drain, Drained};
use crate::source::transmit::JobControl;
use crate::storage::change_journal::{ChangeJournal, Mark, Reason};
use crate::storage::queue::{NotKept, Producer, Pushed};

/// How often `DriverQueuePercent` is read: sampled, not per batch, since reading it maps
/// two pages of the ring.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// How long one read of the ring waits for records.
const POLL: Duration = Duration::from_millis(50);

/// What the drain thread works with; [`DrainThread::spawn`] starts it.
pub(super) struct DrainThread {
    /// The capture the job subscribes to, and the job's source directory in it.
    pub hub: Arc<CaptureHub>,
    pub root: PathBuf,
    pub drain: Drain,
    pub producer: Producer,
    pub changes: Arc<ChangeJournal>,
    pub counters: Arc<Counters>,
    pub control: Arc<JobControl>,
    pub log: Arc<EventLog>,
    /// The job's stop.
    pub stop: Arc<AtomicBool>,
    /// Set once the thread has pushed its last operation (or failed).
    pub drained: Arc<AtomicBool>,
    /// When the capture stopped (wall-clock ns), set at the stop, before the last read:
    /// what changes after it is not drained.
    pub capture_stopped: Arc<AtomicU64>,
    /// The settings in effect, the file they come from, and the flag asking to re-read it.
    pub settings: Settings,
    pub config: Option<PathBuf>,
    pub reload: Arc<AtomicBool>,
}

impl DrainThread {
    /// Starts the thread; it returns once the job has stopped and what was captured
    /// before the stop is queued, or on the first error.
    pub fn spawn(self) -> std::io::Result<JoinHandle<Result<()>>> {
        std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || {
                let drained = Arc::clone(&self.drained);
                let result = self.run();
                drained.store(true, Ordering::Release);
                result
            })
    }

    /// Subscribes to the capture, then drains it pass by pass until the job stops.
    fn run(mut self) -> Result<()> {
        let mut capture = self.hub.subscribe(std::slice::from_ref(&self.root))?;
        self.control.capturing.store(true, Ordering::Release);
        eprintln!("rilld: running");
        let mut events = Vec::new();
        let mut out = Vec::new();
        let mut sampled = Instant::now();
        loop {
            if sampled.elapsed() >= SAMPLE_INTERVAL {
                self.sample_queue_percent(&capture)?;
                sampled = Instant::now();
            }
            if self.reload.swap(false, Ordering::Relaxed) {
                self.reload_settings();
            }
            if self.pass(&mut capture, &mut events, &mut out)? {
                return Ok(());
            }
        }
    }

    /// Publishes the driver's `DriverQueuePercent` (in hundredths).
    fn sample_queue_percent(&self, capture: &Subscription) -> Result<()> {
        if let Some(p) = capture.driver_queue_percent()? {
            let x100 = (p * 100.0) as u64;
            self.counters
                .driver_queue_percent_x100
                .store(x100, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Re-reads the settings file, if the job has one (see [`reload`]).
    fn reload_settings(&mut self) {
        if let Some(config) = &self.config {
            reload(
                &mut self.settings,
                config,
                &mut self.producer,
                &mut self.drain,
                &self.log,
            );
        }
    }

    /// One read of the ring, drained into the queue (or the change journal). At the stop
    /// the read takes everything captured before it, and the queue is flushed: true, the
    /// thread is done.
    fn pass(
        &mut self,
        capture: &mut Subscription,
        events: &mut Vec<Event>,
        out: &mut Vec<Drained>,
    ) -> Result<bool> {
        let stopping = self.stop.load(Ordering::Relaxed);
        if stopping {
            // Before the last read: what changes after it is not drained.
            self.capture_stopped
                .store(crate::clock::wall_ns(), Ordering::Relaxed);
            capture.flush(events)?;
        } else {
            capture.poll(POLL, events)?;
        }
        let caught_up = capture.caught_up_ns();
        self.drain.process(events.drain(..), out);
        for d in out.drain(..) {
            keep(
                d,
                &mut self.producer,
                &self.changes,
                &self.counters,
                &self.stop,
                &self.log,
            )?;
        }
        self.producer.wake();
        // Only now: what was captured before it is in the queue.
        self.control
            .ring_empty_ns
            .store(caught_up, Ordering::Release);
        if stopping {
            self.producer.flush()?;
        }
        Ok(stopping)
    }
}

fn reason(r: DirtyReason) -> Reason {
    match r {
        DirtyReason::RingFull => Reason::RingFull,
        DirtyReason::StopLimit => Reason::StopLimit,
        DirtyReason::PathUnknown => Reason::PathUnknown,
        DirtyReason::Modified => Reason::Modified,
        DirtyReason::RescanAll => Reason::RescanAll,
    }
}

/// Re-reads the settings file: settings that need no restart take effect now (queue and
/// disk-queue limits, write-through, the write chunk size); the others are reported as
/// waiting for a restart. A file that does not check out changes nothing.
fn reload(
    current: &mut Settings,
    config: &Path,
    producer: &mut Producer,
    drain: &mut Drain,
    log: &EventLog,
) {
    let next = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            log.event(
                Level::Warning,
                events::SETTINGS,
                &format!("settings not reloaded: {e}"),
            );
            return;
        }
    };
    let before = current.clone();
    let waiting = current.apply_live(&next);
    if *current != before {
        let mut limits = queue_limits(current);
        // Memory size, spill threshold, alert and mode need a restart: keep those.
        let running = producer.limits();
        (
            limits.memory_bytes,
            limits.spill_percent,
            limits.alert_percent,
            limits.at_limit,
        ) = (
            running.memory_bytes,
            running.spill_percent,
            running.alert_percent,
            running.at_limit,
        );
        producer.set_limits(limits);
        producer.disk_queue().set_limits(
            current.q_journal_file_size_bytes(),
            current.disk_queue_limit_bytes(),
            current.q_journal_free_space_min_bytes(),
            current.q_log_write_through(),
        );
        drain.set_max_write_chunk(current.max_write_chunk_size() as u64);
        log.event(
            Level::Information,
            events::SETTINGS,
            "settings reloaded; changes that need no restart are in effect",
        );
    }
    if !waiting.is_empty() {
        log.event(
            Level::Warning,
            events::SETTINGS,
            &format!("take effect at the next start: {}", waiting.join(", ")),
        );
    }
}

/// Queues one drained item, or hands it to the change journal.
fn keep(
    d: Drained,
    producer: &mut Producer,
    changes: &ChangeJournal,
    counters: &Counters,
    stop: &AtomicBool,
    log: &EventLog,
) -> Result<()> {
    let mut ev = match d {
        Drained::Op(ev) => ev,
        Drained::Dirty {
            path,
            range,
            reason: r,
        } => {
            let m = match range {
                Some((off, len)) => Mark::range(path, off, len, reason(r), crate::clock::wall_ns()),
                None => Mark::whole(path, reason(r), crate::clock::wall_ns()),
            };
            return mark(changes, counters, m);
        }
    };
    loop {
        let bytes = op_bytes(&ev);
        // The batch's ops wake the consumer once, after the last (see the caller).
        match producer.push_quietly(ev)? {
            Pushed::Memory(_) | Pushed::Disk(_) => {
                counters.disconnected.store(false, Ordering::Relaxed);
                counters.rep_ops_generated.fetch_add(1, Ordering::Relaxed);
                counters
                    .rep_bytes_generated
                    .fetch_add(bytes, Ordering::Relaxed);
                return Ok(());
            }
            // StopDraining: hold it and stop reading the driver until there is room; the
            // driver's own throttling takes over meanwhile.
            Pushed::Refused(back) if !stop.load(Ordering::Relaxed) => {
                ev = back;
                producer.wake();
                std::thread::sleep(Duration::from_millis(10));
            }
            Pushed::Refused(back) => {
                return mark(
                    changes,
                    counters,
                    Mark::whole(back.path, Reason::AutoDisconnect, crate::clock::wall_ns()),
                )
            }
            Pushed::NotKept(back, why) => {
                // One event per episode: the first operation not kept after some were.
                if !counters.disconnected.swap(true, Ordering::Relaxed) {
                    counters.auto_disconnects.fetch_add(1, Ordering::Relaxed);
                    let why = match &why {
                        NotKept::AutoDisconnect => {
                            "the memory queue reached MemoryQueueToDiskThreshold".to_string()
                        }
                        NotKept::DiskFull(e) => format!("the source disk queue is full ({e})"),
                    };
                    log.event(
                        Level::Warning,
                        events::AUTO_DISCONNECT,
                        &format!("Auto-disconnecting due to {why}: operations are recorded in the change journal for remirroring"),
                    );
                }
                return mark(
                    changes,
                    counters,
                    Mark::whole(back.path, Reason::AutoDisconnect, crate::clock::wall_ns()),
                );
            }
        }
    }
}

fn mark(changes: &ChangeJournal, counters: &Counters, m: Mark) -> Result<()> {
    log::debug!(
        "not kept, to remirror: {} ({:?})",
        m.path.display(),
        m.reason
    );
    counters
        .change_journal_marks
        .fetch_add(1, Ordering::Relaxed);
    Ok(changes.mark(&[m])?)
}

fn op_bytes(ev: &Event) -> u64 {
    match &ev.op {
        Op::Write { len, .. } => *len,
        _ => 0,
    }
}
