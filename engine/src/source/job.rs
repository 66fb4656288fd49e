//! One source job: from the driver, through the source queue and the job's [`Outbox`] (which
//! resolves each operation once), to its destination (a local replica for `rilld run`, a
//! target over the network for the daemon's jobs).
//!
//! Two threads, joined by the source queue: the drain thread reads the driver's ring (a
//! capture session of the job's source directory), passes events through the [`Drain`],
//! and pushes operations; the transmit thread ([`TransmitLoop`]) pops them in order,
//! interleaves the mirror, sends them to the destination, and acknowledges the queue after each
//! durable flush. Nothing is dropped silently:
//! whatever the queue does not keep (auto-disconnect, disk queue full), whatever the drain
//! cannot fill, and whatever the destination cannot apply goes to the change journal.
//!
//! An unclean stop is detected at the next start by a marker file in `DataPath` that only
//! a clean stop removes; operations that were in memory then are lost, so the job's whole
//! source becomes a `Recovery` subtree entry in the change journal (to be remirrored).
//! Statistics are written to `DataPath/statistics.json` every second, under the reference
//! guide's names.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::events::{self, EventLog, Level};
use crate::options;
use crate::repset::{ReplicationSet, Rule};
use crate::settings::Settings;
use crate::source::capture_hub::CaptureHub;
use crate::source::drain::Drain;
use crate::source::outbox::Outbox;
use crate::source::transmit::{JobControl, TransmitLoop};
use crate::storage::change_journal::{ChangeJournal, Reason};
use crate::storage::disk_queue::{DiskQueue, DiskQueueConfig};
use crate::storage::job_store::JobTarget;
use crate::storage::queue::{queue, Consumer, Producer};

mod drain_thread;
use drain_thread::DrainThread;

/// What one running source job needs: a source directory replicated (recursively) to a
/// destination. The job store keeps what an administrator created as a
/// [`StoredJob`](crate::storage::job_store::StoredJob); the daemon makes this from it.
pub struct SourceJob {
    /// Canonical, absolute.
    pub source: PathBuf,
    /// Where it goes, for the log (the destination is the caller's, in the outbox it passes
    /// to [`run`]: a [`NetworkDestination`](crate::net::link::NetworkDestination) for a
    /// network target, a [`LocalDestination`](crate::source::destination::LocalDestination)
    /// for a local one).
    pub target: JobTarget,
    /// The job's own state, under `DataPath` and `QJournalDir` (the daemon runs several
    /// jobs); `None` keeps them directly there (`rilld run`).
    pub state_dir: Option<String>,
    /// Send a full mirror first.
    pub mirror: bool,
    /// The job ran before and its capture has been detached since (the job was stopped,
    /// or rilld was): nothing saw what changed meanwhile. Once the capture is attached
    /// again the whole source is remirrored if anything beneath it changed since the
    /// recorded stop (`changed_since`), or, without a record, in any case.
    pub resync: bool,
    pub control: Arc<JobControl>,
    /// Rules beyond "the source, recursively": (absolute path or wildcard, include).
    /// All recursive, as `Rec` in the guide's replication sets.
    pub rules: Vec<(String, bool)>,
    /// The settings file, re-read when `reload` is set (SIGHUP).
    pub config: Option<PathBuf>,
    pub reload: Arc<AtomicBool>,
    /// The capture the job subscribes to: the daemon's one for all its jobs, or `rilld
    /// run`'s own.
    pub capture: Arc<CaptureHub>,
}

/// Counters under the guide's statistic names.
#[derive(Default)]
struct Counters {
    rep_ops_generated: AtomicU64,
    rep_bytes_generated: AtomicU64,
    failed_rep_count: AtomicU64,
    auto_disconnects: AtomicU64,
    /// The driver's `DriverQueuePercent`, in hundredths.
    driver_queue_percent_x100: AtomicU64,
    /// In an auto-disconnect episode (operations not kept since the last one that was).
    disconnected: AtomicBool,
    change_journal_marks: AtomicU64,
}

const MARKER: &str = "rilld.running";
/// A job's change journal, in its data directory.
const CHANGE_JOURNAL: &str = "change-journal.redb";
/// When a cleanly stopped run's capture stopped (wall-clock ns): where the next run looks
/// for changes from (see `changed_since`).
const STOPPED_AT: &str = "capture-stopped-at";

/// Runs `job` until its control's `stop` is set, then drains what was captured, flushes
/// and returns.
///
/// In named steps: what the last run left behind ([`begin`]), the source queue
/// ([`open_queue`]), the drain thread ([`DrainThread`]) and the transmit loop, joined by the
/// queue, and the record of a clean stop ([`end`]).
pub fn run(settings: &Settings, job: SourceJob, outbox: &mut Outbox) -> Result<()> {
    debug_assert_eq!(
        outbox.source(),
        job.source,
        "the outbox resolves another source"
    );
    let stop = Arc::clone(&job.control.stop);
    let (data, queue_dir) = job_dirs(settings, job.state_dir.as_deref());
    let data = data.as_path();
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating DataPath {}", data.display()))?;
    let source = job.source.clone();
    let log_dir = settings.log_dir();
    let log =
        Arc::new(EventLog::open(log_dir).with_context(|| format!("LogDir {}", log_dir.display()))?);
    let Start {
        changes,
        marker,
        resync,
        look_since,
    } = begin(
        data,
        &source,
        job.resync,
        settings.auto_remirror() != AUTO_REMIRROR_OFF,
        &log,
    )?;
    let (producer, mut consumer) = open_queue(settings, &queue_dir, &source, &changes, &log)?;
    // Each run of a job gets a fresh control, so this is its only queue.
    let _ = job.control.queue.set(consumer.watch());
    let changes = Arc::new(changes);
    let counters = Arc::new(Counters::default());
    let drained = Arc::new(AtomicBool::new(false));
    let capture_stopped = Arc::new(AtomicU64::new(0));
    log_started(&log, &source, &job.target, resync, look_since);
    let set = replication_set(&source, &job.rules)?;
    let drain_thread = DrainThread {
        hub: Arc::clone(&job.capture),
        root: source.clone(),
        drain: Drain::new(set.clone(), settings.max_write_chunk_size() as u64),
        producer,
        changes: Arc::clone(&changes),
        counters: Arc::clone(&counters),
        control: Arc::clone(&job.control),
        log: Arc::clone(&log),
        stop: Arc::clone(&stop),
        drained: Arc::clone(&drained),
        capture_stopped: Arc::clone(&capture_stopped),
        settings: settings.clone(),
        config: job.config.clone(),
        reload: Arc::clone(&job.reload),
    }
    .spawn()?;

    let mut alerted = false;
    let mut on_tick = |q: &crate::storage::queue::QueueStats| -> Result<()> {
        if q.alert && !alerted {
            let pct = settings.queue_size_alert_threshold();
            log.event(
                Level::Warning,
                events::QUEUE_SIZE_ALERT,
                &format!("QueueSizeAlertThreshold of {pct} has been exceeded."),
            );
        }
        alerted = q.alert;
        write_stats(data, &counters, q)
    };
    let mut on_failure = |e: &crate::source::destination::DestinationError| {
        log::warn!("{e}; recorded in the change journal");
        counters.failed_rep_count.fetch_add(1, Ordering::Relaxed);
        counters
            .change_journal_marks
            .fetch_add(1, Ordering::Relaxed);
    };
    let transmitted = TransmitLoop {
        outbox,
        consumer: &mut consumer,
        changes: &changes,
        control: &job.control,
        set,
        source: source.clone(),
        options: options::transmit_options(settings),
        drained: &drained,
        on_tick: &mut on_tick,
        on_failure: &mut on_failure,
        log: &log,
        changed_since: look_since,
    }
    .run(job.mirror);
    if transmitted.is_err() {
        // The drain thread stops with the job; its error, if any, is the second one.
        stop.store(true, Ordering::Relaxed);
    }
    drain_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the drain thread panicked"))??;
    transmitted?;
    let stopped_ns = capture_stopped.load(Ordering::Relaxed);
    let unacked = consumer.stats().ops_unacked;
    end(data, &source, &marker, stopped_ns, unacked, &log)
}

/// What the job's last run left behind, as this run begins.
struct Start {
    changes: ChangeJournal,
    /// The marker of a run in progress (see [`MARKER`]).
    marker: PathBuf,
    /// What changed while the job was stopped is looked for and remirrored.
    resync: bool,
    /// When the last run's capture stopped, if it stopped cleanly and the job resyncs:
    /// only what changed since is remirrored.
    look_since: Option<u64>,
}

/// `AutoRemirror` 0: no remirror when the source comes back after an auto-disconnect.
const AUTO_REMIRROR_OFF: u64 = 0;

/// Opens the job's change journal and reads what its last run left: an unclean stop (the
/// marker is still there) marks the whole source for remirroring unless `auto_remirror`
/// is off (`AutoRemirror` 0: the guide's "do not compare or send any files"; what the
/// change journal already holds is still remirrored), as does a resync without a record
/// of when the capture stopped. Then marks this run as in progress.
fn begin(
    data: &Path,
    source: &Path,
    resync: bool,
    auto_remirror: bool,
    log: &EventLog,
) -> Result<Start> {
    let changes = ChangeJournal::open(&data.join(CHANGE_JOURNAL))?;
    let marker = data.join(MARKER);
    let resync = resync && !marker.exists();
    // Taken in any case, so a later unclean stop never finds an old one.
    let stopped_at = take_stopped_at(&data.join(STOPPED_AT));
    let look_since = stopped_at.filter(|_| resync);
    if marker.exists() && auto_remirror {
        let text = format!(
            "Auto-disconnecting {} due to an unclean stop of rilld: it is marked for remirroring",
            source.display()
        );
        log.event(Level::Warning, events::AUTO_DISCONNECT, &text);
        changes.mark_subtree(source, Reason::Recovery, crate::clock::wall_ns())?;
    } else if marker.exists() {
        let text = format!(
            "Auto-disconnecting {} due to an unclean stop of rilld: not remirrored \
             (AutoRemirror = 0); the replica may lack changes made before the stop",
            source.display()
        );
        log.event(Level::Warning, events::AUTO_DISCONNECT, &text);
    }
    if resync && look_since.is_none() {
        changes.mark_subtree(source, Reason::RescanAll, crate::clock::wall_ns())?;
    }
    std::fs::write(&marker, std::process::id().to_string())
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(Start {
        changes,
        marker,
        resync,
        look_since,
    })
}

/// Opens the source queue over the disk queue in `queue_dir`. A disk queue the last run
/// left damaged (a torn tail, corrupt segments) lost operations: the whole source is
/// marked for remirroring.
fn open_queue(
    settings: &Settings,
    queue_dir: &Path,
    source: &Path,
    changes: &ChangeJournal,
    log: &EventLog,
) -> Result<(Producer, Consumer)> {
    let mut cfg = DiskQueueConfig::new(queue_dir);
    cfg.segment_bytes = settings.q_journal_file_size_bytes();
    cfg.space_max_bytes = settings.disk_queue_limit_bytes();
    cfg.free_space_min_bytes = settings.q_journal_free_space_min_bytes();
    cfg.write_through = settings.q_log_write_through();
    let (writer, reader, recovery) = DiskQueue::open(cfg)?;
    if recovery.torn_tail.is_some() || !recovery.corrupt.is_empty() {
        let text = format!(
            "Auto-disconnecting {} due to a disk queue read/write error (torn tail {:?}, \
             corrupt segments {:?}): it is marked for remirroring",
            source.display(),
            recovery.torn_tail,
            recovery.corrupt
        );
        log.event(Level::Warning, events::AUTO_DISCONNECT, &text);
        changes.mark_subtree(source, Reason::QueueCorrupt, crate::clock::wall_ns())?;
    }
    Ok(queue(
        options::queue_limits(settings),
        writer,
        reader,
        recovery.last_seq,
    ))
}

fn log_started(
    log: &EventLog,
    source: &Path,
    target: &JobTarget,
    resync: bool,
    since: Option<u64>,
) {
    log.event(
        Level::Information,
        events::SOURCE_STARTED,
        &format!(
            "Source started: {} replicating to {target}{}",
            source.display(),
            match (resync, since) {
                (false, _) => "",
                (true, None) => "; what changed while it was stopped is remirrored (all of it)",
                (true, Some(_)) => {
                    "; what changed while it was stopped is remirrored (if anything did)"
                }
            }
        ),
    );
}

/// The job's replication set: its source, recursively, and its own rules.
pub(crate) fn replication_set(source: &Path, extra: &[(String, bool)]) -> Result<ReplicationSet> {
    let mut rules = vec![Rule::new(&source.to_string_lossy(), true, true)?];
    for (path, include) in extra {
        rules.push(Rule::new(path, *include, true)?);
    }
    Ok(ReplicationSet::new(rules))
}

/// The run is over: records when the capture stopped, if the stop was clean, and removes
/// the marker of a run in progress.
///
/// A stop is clean only if the target acknowledged everything captured before it: what
/// it did not (the link was down when the job stopped) is not kept for the next run, and
/// a look for what changed after the capture stopped would not find it again (found by
/// the replication fuzzer: whole directories missing, the job in sync). Without the
/// record, the next start remirrors the source.
fn end(
    data: &Path,
    source: &Path,
    marker: &Path,
    stopped_ns: u64,
    unacked: u64,
    log: &EventLog,
) -> Result<()> {
    if unacked > 0 {
        log::warn!(
            "{}: stopped with {unacked} operations the target had not acknowledged; the next \
             start remirrors the source",
            source.display()
        );
    }
    if stopped_ns > 0 && unacked == 0 {
        let path = data.join(STOPPED_AT);
        std::fs::write(&path, stopped_ns.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::remove_file(marker).with_context(|| format!("removing {}", marker.display()))?;
    log.event(
        Level::Information,
        events::SOURCE_STOPPED,
        &format!("Source stopped: {}", source.display()),
    );
    Ok(())
}

/// A job's state directory and queue directory (see [`SourceJob::state_dir`]).
fn job_dirs(settings: &Settings, state_dir: Option<&str>) -> (PathBuf, PathBuf) {
    match state_dir {
        Some(name) => (
            settings.data_path().join("jobs").join(name),
            settings.q_journal_dir().join(name),
        ),
        None => (
            settings.data_path().to_path_buf(),
            settings.q_journal_dir().to_path_buf(),
        ),
    }
}

/// The change journal of the job kept in `state_dir` (`None`: the job of `rilld run`).
pub fn change_journal_path(settings: &Settings, state_dir: Option<&str>) -> PathBuf {
    job_dirs(settings, state_dir).0.join(CHANGE_JOURNAL)
}

/// Whether the last run of the job kept in `state_dir` stopped cleanly and recorded when
/// its capture stopped, so a [`SourceJob::resync`] start can look for what changed since.
pub fn stopped_cleanly_before(settings: &Settings, state_dir: Option<&str>) -> bool {
    job_dirs(settings, state_dir).0.join(STOPPED_AT).exists()
}

/// The capture's stop time a clean run recorded, removed as it is read (a file that does
/// not parse is no record: the caller remirrors everything).
fn take_stopped_at(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let _ = std::fs::remove_file(path);
    text.trim().parse().ok()
}

fn write_stats(data: &Path, c: &Counters, q: &crate::storage::queue::QueueStats) -> Result<()> {
    let v = serde_json::json!({
        "DriverQueuePercent": c.driver_queue_percent_x100.load(Ordering::Relaxed) as f64 / 100.0,
        "RepOpsGenerated": c.rep_ops_generated.load(Ordering::Relaxed),
        "RepBytesGenerated": c.rep_bytes_generated.load(Ordering::Relaxed),
        "FailedRepCount": c.failed_rep_count.load(Ordering::Relaxed),
        "autoDisConnects": c.auto_disconnects.load(Ordering::Relaxed),
        "IQAllocatorTotalBytes": q.bytes_in_memory,
        "conOpsInRepQueue": q.ops_unacked,
        "conBytesInRepQueue": q.bytes_in_memory,
        "conBytesInDiskQueue": q.bytes_on_disk,
        "QueueMemoryPercent": q.memory_percent,
        "QueueSizeAlert": q.alert,
        "ChangeJournalMarks": c.change_journal_marks.load(Ordering::Relaxed),
    });
    let path = data.join("statistics.json");
    let tmp = data.join("statistics.json.tmp");
    std::fs::write(&tmp, v.to_string())?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}
