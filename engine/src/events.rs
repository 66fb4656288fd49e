//! The engine's event log: events with the reference guide's IDs, one line each, in
//! `LogDir/rilld.log`, and on standard error through `log`.
//!
//! A line is `date time pid tid sequence type id text`, the fields of the guide's engine
//! log, so an administrator's filters (by ID, by type) carry over. IDs are the guide's:
//! 4002/4003 source started/stopped, 4007 auto-disconnect (with its reason: a full disk
//! queue, a disk-queue read or write error, or an unclean stop, all of which hand files to
//! the change journal for remirroring), 4072 `QueueSizeAlertThreshold` exceeded; and 149,
//! settings reloaded (after the guide's code -149, "new option applied"); the connection,
//! mirror and target events of the guide's chapter 6 (4001/4004, 4010/4011, 4016/4017,
//! 4019/4023, 4065, 4071); 4052/4409, orphans removed or not; the target's retries of
//! writes that failed for a reason that may pass (4110/4111/4113, 4120, 4150); and
//! 169/170, failed and successful logins; the failover events (6010, 6110-6122, 4018,
//! 5105-5107).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

pub const SOURCE_STARTED: u32 = 4002;
pub const SOURCE_STOPPED: u32 = 4003;
pub const AUTO_DISCONNECT: u32 = 4007;
pub const QUEUE_SIZE_ALERT: u32 = 4072;
pub const TARGET_STARTED: u32 = 4001;
pub const TARGET_STOPPED: u32 = 4004;
/// Connection established / disconnected.
pub const CONNECTED: u32 = 4016;
pub const DISCONNECTED: u32 = 4017;
/// Auto-reconnect succeeded. (The guide's 4009, auto-reconnecting, is not logged: each
/// failed attempt's 4011 says that it is retried, and when.)
pub const RECONNECTED: u32 = 4010;
/// Auto-reconnect failed: a connection could not be made, or was lost (logged with its
/// reason, once per reason, not at every retry).
pub const RECONNECT_FAILED: u32 = 4011;
pub const MIRROR_STARTED: u32 = 4019;
pub const MIRROR_COMPLETED: u32 = 4023;
/// The target data state of a connection changed.
pub const DATA_STATE: u32 = 4065;
/// A target write that failed for a reason that may pass (the guide's 4110 disk full,
/// 4111 sharing violation, 4113 unknown reason) and is retried per
/// `TGExecutionRetryLimit`; 4120 when it then succeeded, 4150 when the retries ran out.
pub const RETRY_DISK_FULL: u32 = 4110;
pub const RETRY_BUSY: u32 = 4111;
pub const RETRY_UNKNOWN: u32 = 4113;
pub const RETRY_SUCCEEDED: u32 = 4120;
pub const RETRY_DISCARDED: u32 = 4150;
/// A network message failed its checksum (or any other frame check).
pub const BAD_MESSAGE: u32 = 4071;
/// An orphan removed from a replica (one event each, with `LogAllOrphans`): the guide's
/// "completed a delete orphans task".
pub const ORPHAN_REMOVED: u32 = 4052;
/// A verification task started, paused, resumed, stopped, completed (all Information).
pub const VERIFY_STARTED: u32 = 4058;
pub const VERIFY_PAUSED: u32 = 4059;
pub const VERIFY_RESUMED: u32 = 4060;
pub const VERIFY_STOPPED: u32 = 4061;
pub const VERIFY_COMPLETED: u32 = 4062;
/// Orphans that could not be removed from a replica.
pub const ORPHANS_NOT_REMOVED: u32 = 4409;
/// The failover events of the guide's §2.13, on the target: the failover condition met
/// (W), a failover started / succeeded / failed (I / I / E), its undo (a failback, or the
/// end of a test failover) started / succeeded / failed; and 4018 (§2.9), a source
/// refused because its job failed over ("restore required after failover").
pub const FAILOVER_CONDITION: u32 = 6010;
pub const FAILOVER_STARTED: u32 = 6110;
pub const FAILOVER_SUCCEEDED: u32 = 6111;
pub const FAILOVER_FAILED: u32 = 6112;
pub const UNDO_FAILOVER_STARTED: u32 = 6120;
pub const UNDO_FAILOVER_SUCCEEDED: u32 = 6121;
pub const UNDO_FAILOVER_FAILED: u32 = 6122;
pub const RESTORE_REQUIRED: u32 = 4018;
/// A failover script about to run, run, failed (§2.12: 5105 / 5106 / 5107).
pub const SCRIPT_STARTING: u32 = 5105;
pub const SCRIPT_SUCCEEDED: u32 = 5106;
pub const SCRIPT_FAILED: u32 = 5107;
/// A source logged in to this target. The guide has no login event (only the error codes
/// -138 "insufficient security access" and -169 "login failed"); 169 and 170 are rill's
/// own, after that code, outside the guide's event ranges.
pub const LOGIN: u32 = 170;
pub const LOGIN_FAILED: u32 = 169;
/// Settings re-read while running. The guide has an error code for "new option applied"
/// (-149) but no event; this one is rill's own, outside the guide's ranges.
pub const SETTINGS: u32 = 149;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Information,
    Warning,
    Error,
}

pub struct EventLog {
    file: Mutex<File>,
    seq: AtomicU64,
}

impl EventLog {
    pub fn open(dir: &Path) -> std::io::Result<EventLog> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("rilld.log"))?;
        Ok(EventLog {
            file: Mutex::new(file),
            seq: AtomicU64::new(0),
        })
    }

    /// Records an event. A failure to write the log is reported on standard error but
    /// never stops replication.
    pub fn event(&self, level: Level, id: u32, text: &str) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let when = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let (date, time) = when.split_once('T').unwrap_or((&when, ""));
        let tid = crate::sys::process::gettid();
        let line = format!(
            "{date} {} {} {tid} {seq} {level:?} {id} {text}\n",
            time.trim_end_matches('Z'),
            std::process::id()
        );
        match level {
            Level::Information => log::info!("{id}: {text}"),
            Level::Warning => log::warn!("{id}: {text}"),
            Level::Error => log::error!("{id}: {text}"),
        }
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            eprintln!("rilld: cannot write the event log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_guides_fields_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.event(
            Level::Warning,
            QUEUE_SIZE_ALERT,
            "QueueSizeAlertThreshold of 50 has been exceeded.",
        );
        log.event(Level::Information, SOURCE_STOPPED, "stopped");
        let text = std::fs::read_to_string(dir.path().join("rilld.log")).unwrap();
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.splitn(8, ' ').collect()).collect();
        assert_eq!(lines.len(), 2);
        let l = &lines[0];
        assert_eq!(l[0].len(), 10, "date: {l:?}");
        assert!(l[1].contains(':'), "time: {l:?}");
        assert_eq!(l[2], std::process::id().to_string());
        assert_eq!((l[4], l[5], l[6]), ("1", "Warning", "4072"));
        assert_eq!(l[7], "QueueSizeAlertThreshold of 50 has been exceeded.");
        assert_eq!((lines[1][4], lines[1][6]), ("2", "4003"));
    }
}
