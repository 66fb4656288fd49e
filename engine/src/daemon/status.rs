//! `Status`: the daemon's jobs and target sessions under the guide's statistic names.
//!
//! A job's connection, transmit counters and the target's report on it come from its
//! destination's status ([`DestinationStatus`], read through the handle the daemon took
//! from the destination when it started the job), whatever kind of destination it is; the
//! queue and the mirror walk from the job's control.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::mgmt::{
    utc_time, ConState, JobStatus, MirrorStatus, ReplicationStatus, StatusReport, TargetCounters,
    TargetSessionStatus, TargetStatus, TransmitMode,
};
use std::sync::Arc;

use crate::replica::failover::Watch;
use crate::replica::{state_of_code, SessionStats, TargetStats};
use crate::source::destination::{ConnectionState as Link, DestinationStatus};
use crate::source::transmit::{JobControl, MirrorPhase as Walk};
use crate::storage::job_store::{DataState, JobState, MirrorState, StoredJob};
use crate::storage::queue::QueueWatch;

use super::{Daemon, Runner};

impl Daemon {
    pub(super) fn status(&self, only: Option<&str>) -> anyhow::Result<StatusReport> {
        let settings = self.settings();
        let roles = settings.load_source_target();
        let jobs: Vec<StoredJob> = self
            .store
            .list()?
            .into_iter()
            .filter(|j| only.is_none_or(|n| j.spec.name == n))
            .collect();
        if let (Some(n), true) = (only, jobs.is_empty()) {
            anyhow::bail!("no job named `{n}`");
        }
        let runners = self
            .runners
            .lock()
            .map_err(|_| anyhow::anyhow!("job table poisoned"))?;
        let mut out = Vec::new();
        let mut driver_max = 0.0f64;
        for job in jobs {
            let driver = driver_queue_percent(settings.data_path(), &job.spec.name);
            driver_max = driver_max.max(driver);
            out.push(job_status(&job, runners.get(&job.spec.name), driver));
        }
        let target = self.target.as_ref().map(|t| TargetStatus {
            logins: t.stats.logins.load(Ordering::Relaxed),
            failed_logins: t.stats.failed_logins.load(Ordering::Relaxed),
            sessions: self.session_rows(&t.stats),
        });
        Ok(StatusReport {
            host: self.host.clone(),
            roles: match (roles.source(), roles.target()) {
                (true, true) => "source+target",
                (true, false) => "source",
                (false, true) => "target",
                (false, false) => "none",
            }
            .into(),
            driver_queue_percent: driver_max,
            jobs: out,
            target,
        })
    }
}

/// The mirror's status, percent done and bytes remaining: done when the job store
/// says so, or the target acknowledged the mirror's end, or the walk is over and
/// nothing of it waits; otherwise what the target acknowledged of what the walk sized.
fn mirror_progress(
    job: &StoredJob,
    c: &JobControl,
    d: &DestinationStatus,
    failing: bool,
) -> (MirrorStatus, f64, u64) {
    let total = c.mirror_total_bytes.load(Ordering::Relaxed);
    let handed = c.mirror_sent_bytes.load(Ordering::Relaxed);
    // Handed to the destination and not acknowledged, whether sent or waiting for a
    // connection.
    let in_flight = d.mir_bytes_pending;
    let acked = handed.saturating_sub(in_flight);
    let walk = c.mirror_status();
    let complete = job.mirror == MirrorState::Complete
        || d.mirror_complete
        || (walk == Walk::Complete && in_flight == 0 && d.mir_ops_pending == 0);
    let status = match walk {
        Walk::Calculating => MirrorStatus::Calculating,
        // Held until the target is reachable again.
        Walk::InProgress if failing => MirrorStatus::Paused,
        Walk::InProgress if d.mirror_paused => MirrorStatus::Paused,
        Walk::InProgress => MirrorStatus::InProgress,
        Walk::Paused => MirrorStatus::Paused,
        // Walked, but not all of it is on the target yet.
        Walk::Complete if !complete => MirrorStatus::Waiting,
        Walk::Idle | Walk::Complete => MirrorStatus::Idle,
    };
    let (percent, remaining) = if complete {
        (100.0, 0)
    } else if total > 0 {
        (
            (acked as f64 * 100.0 / total as f64).min(100.0),
            total.saturating_sub(acked),
        )
    } else {
        (0.0, 0)
    };
    (status, percent, remaining)
}

/// The job's last sampled `DriverQueuePercent`, from the statistics file its drain
/// thread writes (0 when there is none yet).
fn driver_queue_percent(data_path: &std::path::Path, job: &str) -> f64 {
    std::fs::read_to_string(data_path.join("jobs").join(job).join("statistics.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["DriverQueuePercent"].as_f64())
        .unwrap_or(0.0)
}

impl Daemon {
    /// A row for every session of this process, with its failover state; and one for
    /// every job failed over before it (no session since: the job store's record).
    fn session_rows(&self, stats: &TargetStats) -> Vec<TargetSessionStatus> {
        let mut rows = Vec::new();
        let live: Vec<_> = stats
            .sessions
            .lock()
            .map(|s| s.iter().map(|(k, s)| (k.clone(), Arc::clone(s))).collect())
            .unwrap_or_default();
        for (key, s) in &live {
            let mut row = session_status(s);
            if let Some(w) = stats.monitor.get(key) {
                with_failover(&mut row, &w);
            }
            rows.push(row);
        }
        for (key, w) in stats.monitor.watches() {
            if live.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let Ok(Some(stored)) = self.store.get_session(&key.0, &key.1) else {
                continue;
            };
            let mut row = TargetSessionStatus {
                peer_name: key.0.clone(),
                peer_fingerprint: key.0.clone(),
                job: key.1.clone(),
                target_path: stored.target_path.display().to_string(),
                target_data_state: DataState::Disconnected,
                last_applied: stored.last_applied,
                ..TargetSessionStatus::default()
            };
            with_failover(&mut row, &w);
            rows.push(row);
        }
        rows
    }
}

/// The failover monitor's view of a job, in its row.
fn with_failover(row: &mut TargetSessionStatus, w: &Watch) {
    row.failover_condition = w.condition();
    row.failover_state = w.state();
    row.refused_after_failover = w.refused();
}

/// One target session's statistics under the guide's names.
fn session_status(s: &SessionStats) -> TargetSessionStatus {
    let text = |m: &std::sync::Mutex<String>| m.lock().map(|v| v.clone()).unwrap_or_default();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let connected = s.connected.load(Ordering::Relaxed);
    TargetSessionStatus {
        peer_name: text(&s.peer_name),
        peer_fingerprint: text(&s.fingerprint),
        peer_address: connected.then(|| text(&s.peer_address)),
        job: text(&s.job),
        target_path: s
            .target_path
            .lock()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        target_data_state: if connected {
            state_of_code(s.data_state.load(Ordering::Relaxed))
        } else {
            DataState::Disconnected
        },
        last_applied: load(&s.last_applied),
        ops_applied: load(&s.ops_applied),
        counters: TargetCounters {
            ops_received: load(&s.ops_received),
            ops_remaining: load(&s.ops_remaining),
            retries: load(&s.retries),
            ops_dropped: load(&s.ops_dropped),
            bytes_in_target_queue: load(&s.bytes_in_queue),
            bytes_in_target_disk_queue: load(&s.bytes_in_disk_queue),
        },
        orphan_files_removed: load(&s.orphans[0]),
        orphan_directories_removed: load(&s.orphans[1]),
        orphan_bytes_removed: load(&s.orphans[2]),
        ..TargetSessionStatus::default()
    }
}

fn job_status(job: &StoredJob, runner: Option<&Runner>, driver: f64) -> JobStatus {
    let mut s = JobStatus {
        name: job.spec.name.clone(),
        source: job.spec.source.display().to_string(),
        target: job.spec.target.address().unwrap_or_default(),
        target_path: job.spec.target.path().display().to_string(),
        state: job.state,
        driver_queue_percent: driver,
        verify_schedule: job.verify_schedule,
        ..Default::default()
    };
    let Some(r) = runner else {
        s.con_state = ConState::None;
        s.transmit_mode = TransmitMode::Stopped;
        s.replication_status = ReplicationStatus::Stopped;
        s.mirror_status = MirrorStatus::Stopped;
        s.target_data_state = DataState::Unknown;
        return s;
    };
    s.verification = r.verification.as_ref().map(|v| v.progress.snapshot());
    let (d, c) = (r.destination.read(), &r.control);
    let paused = c.paused.load(Ordering::Relaxed);
    let link = d.connection;
    // Why the last attempt failed, until one succeeds: a retry in progress does not
    // make a failing link look healthy.
    s.con_error = match link {
        Link::Connected => None,
        _ => d.error.clone(),
    };
    let failing = s.con_error.is_some();
    s.con_state = match (link, paused) {
        (Link::Connected, true) => ConState::Paused,
        (Link::Connected, false) => ConState::Active,
        (Link::Connecting, _) if !failing => ConState::None,
        (Link::Connecting | Link::Disconnected | Link::Refused, _) => ConState::Error,
    };
    s.transmit_mode = match (link, paused) {
        (_, true) => TransmitMode::Paused,
        (Link::Connected, false) => TransmitMode::Active,
        _ => TransmitMode::Error,
    };
    s.replication_status = match (link, job.state) {
        (_, JobState::Stopped) => ReplicationStatus::Stopped,
        (Link::Connected, _) => ReplicationStatus::Replicating,
        // Nothing reaches the target while its link fails (`conError` says why).
        _ if failing => ReplicationStatus::Stopped,
        _ => ReplicationStatus::Pending,
    };
    (
        s.mirror_status,
        s.con_mirror_percent,
        s.con_mirror_bytes_remaining,
    ) = mirror_progress(job, c, &d, failing);
    // The guide's mirrorStatus has a state for it: a verification runs while no mirror
    // does (it waits for one).
    let verifying = s
        .verification
        .as_ref()
        .is_some_and(|v| v.state == crate::verify::Phase::Running.name());
    if verifying && s.mirror_status == MirrorStatus::Idle {
        s.mirror_status = MirrorStatus::Verifying;
    }
    let q = c.queue.get().map(QueueWatch::stats).unwrap_or_default();
    // Everything queued and not yet durable on the target, sent or not: an op leaves the
    // queue's count only when the checkpoint after it (which also carries the times of
    // the files it wrote) is acknowledged.
    s.con_ops_in_rep_queue = q.ops_unacked;
    s.con_bytes_in_rep_queue = q.bytes_in_memory + q.bytes_on_disk;
    s.con_bytes_in_disk_queue = q.bytes_on_disk;
    s.con_ops_in_mir_queue = d.mir_ops_pending;
    s.con_bytes_in_mir_queue = d.mir_bytes_pending;
    s.con_ops_tx = d.ops_tx;
    s.con_bytes_tx = d.bytes_tx;
    s.con_bytes_compressed_tx = d.bytes_compressed_tx;
    s.con_resent_op_count = d.resent;
    s.con_rpl = d.lag_seconds;
    if d.acknowledged {
        let behind = Duration::from_secs_f64(s.con_rpl);
        s.con_rpt = Some(utc_time(SystemTime::now() - behind));
    }
    s.target_data_state = match &d.target {
        None => DataState::Unknown,
        // The target applied all it was sent, but names it could not apply (or whose
        // operations were not all kept) wait for a remirror: not OK until they are done.
        Some(t)
            if t.data_state == DataState::Ok && c.changes_pending.load(Ordering::Relaxed) > 0 =>
        {
            DataState::MirrorRequired
        }
        Some(t) => t.data_state,
    };
    s.target_stats = d.target.map(|t| t.counters);
    s
}
