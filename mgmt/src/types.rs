//! The requests and responses of the management API, and the status report.
//!
//! On the wire each is one JSON object on one line. A request names its operation in
//! `"op"` (`{"op":"job","name":"web","action":"start"}`); a response names its kind in
//! `"reply"` and carries its content in `"data"` (`{"reply":"done","data":{"message":"…"}}`),
//! adjacent tagging because several responses are lists. Statistics keep the names of the
//! reference guide (chapter 3: `conState`, `conOpsInRepQueue`, `ConRPL`, …) and states its
//! words (chapter 4: "In Progress", "Mirror Required", …) so that what `rillctl status
//! --json` prints can be looked up in the guide as it is.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use rill_settings::SettingDef;

use crate::failover::{FailoverMode, FailoverScripts, FailoverState};
use crate::jobs::words::guide_words;
use crate::jobs::JobSpec;

pub use crate::jobs::{DataState, JobState, MirrorState};

/// One request of a management client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Create a job (stopped); answered with `Done`.
    JobCreate(JobSpec),
    /// Every job; answered with `Jobs`.
    JobList,
    /// Start, stop, pause, resume or delete a job; answered with `Done`.
    Job { name: String, action: JobAction },
    /// The status of every job, or of the job `name`, and of this host as a target.
    Status {
        #[serde(default)]
        name: Option<String>,
    },
    /// Every engine setting; answered with `Settings`.
    SettingsList,
    /// One setting; answered with `Settings` (one row).
    SettingsGet { name: String },
    /// Change a setting (saved to the settings file); answered with `Done`.
    SettingsSet { name: String, value: String },
    /// This host's certificate; answered with `Identity`.
    Identity,
    /// Trust a peer, given as a certificate fingerprint or a PEM certificate.
    TrustAdd { name: String, peer: String },
    /// The trusted peers; answered with `Trust`.
    TrustList,
    /// Stop trusting the peer `name`.
    TrustRemove { name: String },
    /// Verify the replica of the running job `name` against its source; `checksums`
    /// compares file data too (as `ChecksumAll = 1` does), `remirror` sends what
    /// differs. Answered with `Done` once the verification started; its progress and
    /// result are in the job's status (`verification`).
    Verify {
        name: String,
        #[serde(default)]
        remirror: bool,
        #[serde(default)]
        checksums: bool,
    },
    /// Verify the job `name` on a schedule (`None`: no longer); answered with `Done`.
    VerifySchedule {
        name: String,
        schedule: Option<VerifySchedule>,
    },
    /// Fail the source job `name` over to this host (its target), test a failover or
    /// undo a test; answered with `Done` once it is done.
    Failover {
        name: String,
        #[serde(default)]
        mode: FailoverMode,
    },
    /// End the failover of the source job `name` on this host; answered with `Done`.
    Failback { name: String },
    /// Set the failover scripts of the source job `name` on this host (its target);
    /// answered with `Done`.
    FailoverScripts {
        name: String,
        scripts: FailoverScripts,
    },
}

/// What to do with a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobAction {
    Start,
    Stop,
    Pause,
    Resume,
    Delete,
}

impl JobAction {
    pub const ALL: [JobAction; 5] = [
        JobAction::Start,
        JobAction::Stop,
        JobAction::Pause,
        JobAction::Resume,
        JobAction::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobAction::Start => "start",
            JobAction::Stop => "stop",
            JobAction::Pause => "pause",
            JobAction::Resume => "resume",
            JobAction::Delete => "delete",
        }
    }
}

impl fmt::Display for JobAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", content = "data", rename_all = "snake_case")]
pub enum Response {
    /// The request was carried out; `message` says what happened.
    Done {
        message: String,
    },
    Jobs(Vec<JobInfo>),
    Status(StatusReport),
    Settings(Vec<SettingRow>),
    Identity {
        name: String,
        fingerprint: String,
        certificate_pem: String,
    },
    Trust(Vec<TrustedPeer>),
    /// The request was refused or failed; `message` says why and what is allowed.
    Error {
        message: String,
    },
}

impl Response {
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error {
            message: message.into(),
        }
    }

    pub fn done(message: impl Into<String>) -> Response {
        Response::Done {
            message: message.into(),
        }
    }
}

/// A job as `JobList` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    pub spec: JobSpec,
    pub state: JobState,
    pub mirror: MirrorState,
}

/// One engine setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingRow {
    pub name: String,
    pub value: String,
    pub default: String,
    /// `MB`, `percent`, `seconds`…; empty for settings without a unit.
    pub unit: String,
    /// A change takes effect only when rilld restarts.
    pub restart: bool,
    pub help: String,
    /// The allowed values, as error messages say them.
    #[serde(default)]
    pub allowed: String,
}

impl SettingRow {
    /// The row of setting `def` holding `value` (as `Settings::get` shows it).
    pub fn new(def: &SettingDef, value: String) -> SettingRow {
        SettingRow {
            name: def.name.into(),
            value,
            default: def.default.to_string(),
            unit: def.unit.into(),
            restart: def.restart,
            help: def.help.into(),
            allowed: def.allowed(),
        }
    }
}

/// A peer this host trusts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedPeer {
    pub name: String,
    pub fingerprint: String,
    pub added_unix: u64,
}

guide_words! {
    /// The guide's `conState` (chapter 3): the state of a job's connection. Its numeric
    /// value, as DTStat prints it, is [`ConState::code`].
    #[derive(Default)]
    pub enum ConState {
        /// No active connection (not established, or the link is unavailable).
        #[default]
        None => "None",
        /// Functioning normally, allowed to transmit.
        Active => "Active",
        /// Paused.
        Paused => "Paused",
        /// Not transmitting because of a schedule or bandwidth restriction.
        Scheduled => "Scheduled",
        /// Not transmitting because something went wrong (e.g. the connection was lost).
        Error => "Error",
        /// Scheduled and in error at once: the only states that coexist (code 12).
        ScheduledError => "Scheduled, Error",
    }
}

impl ConState {
    /// The guide's number: 0, 1, 2, 4, 8, or 12 for Scheduled and Error together.
    pub fn code(self) -> u8 {
        match self {
            ConState::None => 0,
            ConState::Active => 1,
            ConState::Paused => 2,
            ConState::Scheduled => 4,
            ConState::Error => 8,
            ConState::ScheduledError => 12,
        }
    }
}

guide_words! {
    /// The guide's "Transmit Mode" (chapter 4).
    #[derive(Default)]
    pub enum TransmitMode {
        /// Data is being transmitted to the target.
        Active => "Active",
        Paused => "Paused",
        /// Waiting on schedule criteria.
        Scheduled => "Scheduled",
        /// Data is not being transmitted.
        Stopped => "Stopped",
        /// There is a transmission error.
        Error => "Error",
        #[default]
        Unknown => "Unknown",
    }
}

guide_words! {
    /// The guide's "Mirror Status" (chapter 4).
    #[derive(Default)]
    pub enum MirrorStatus {
        /// The amount of data to mirror is being calculated.
        Calculating => "Calculating",
        /// Data is being mirrored.
        InProgress => "In Progress",
        /// The mirror is complete but data is still being written to the target.
        Waiting => "Waiting",
        /// Data is not being mirrored.
        Idle => "Idle",
        Paused => "Paused",
        Stopped => "Stopped",
        RemovingOrphans => "Removing Orphans",
        Verifying => "Verifying",
        Restoring => "Restoring",
        #[default]
        Unknown => "Unknown",
    }
}

guide_words! {
    /// The guide's "Replication Status" (chapter 4).
    #[derive(Default)]
    pub enum ReplicationStatus {
        /// Data is being replicated to the target.
        Replicating => "Replicating",
        /// There is no data to replicate.
        Ready => "Ready",
        Pending => "Pending",
        Stopped => "Stopped",
        /// Replication memory has been exhausted.
        OutOfMemory => "Out of Memory",
        /// The engine is not receiving operations from the driver.
        Failed => "Failed",
        #[default]
        Unknown => "Unknown",
    }
}

/// The answer to `Status`: this host, its jobs (as a source) and its target sessions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub host: String,
    /// `source`, `target`, `source+target` or `none`.
    pub roles: String,
    /// The driver's throttling as a percentage of the stop-replicating limit.
    #[serde(rename = "DriverQueuePercent")]
    pub driver_queue_percent: f64,
    pub jobs: Vec<JobStatus>,
    /// This host as a target; `None` when the target role is not running.
    pub target: Option<TargetStatus>,
}

/// One job's state and statistics, with the guide's names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub source: String,
    /// `host:port`.
    pub target: String,
    #[serde(rename = "targetPath")]
    pub target_path: String,
    /// What the administrator asked for.
    pub state: JobState,
    #[serde(rename = "conState")]
    pub con_state: ConState,
    #[serde(rename = "transmitMode")]
    pub transmit_mode: TransmitMode,
    #[serde(rename = "mirrorStatus")]
    pub mirror_status: MirrorStatus,
    #[serde(rename = "replicationStatus")]
    pub replication_status: ReplicationStatus,
    #[serde(rename = "targetDataState")]
    pub target_data_state: DataState,
    #[serde(rename = "conOpsInRepQueue")]
    pub con_ops_in_rep_queue: u64,
    #[serde(rename = "conBytesInRepQueue")]
    pub con_bytes_in_rep_queue: u64,
    #[serde(rename = "conOpsInMirQueue")]
    pub con_ops_in_mir_queue: u64,
    #[serde(rename = "conBytesInMirQueue")]
    pub con_bytes_in_mir_queue: u64,
    #[serde(rename = "conBytesInDiskQueue")]
    pub con_bytes_in_disk_queue: u64,
    #[serde(rename = "conOpsTx")]
    pub con_ops_tx: u64,
    #[serde(rename = "conBytesTx")]
    pub con_bytes_tx: u64,
    #[serde(rename = "conBytesCompressedTx")]
    pub con_bytes_compressed_tx: u64,
    #[serde(rename = "conResentOpCount")]
    pub con_resent_op_count: u64,
    /// 0 to 100.
    #[serde(rename = "conMirrorPercent")]
    pub con_mirror_percent: f64,
    #[serde(rename = "conMirrorBytesRemaining")]
    pub con_mirror_bytes_remaining: u64,
    /// The guide's ConRPT: the UTC time (RFC 3339, see [`utc_time`]) up to which the target
    /// holds the source's data; `None` before anything was acknowledged.
    #[serde(rename = "ConRPT")]
    pub con_rpt: Option<String>,
    /// The guide's ConRPL: how many seconds the target is behind the source (the data a
    /// failure now would lose).
    #[serde(rename = "ConRPL")]
    pub con_rpl: f64,
    #[serde(rename = "DriverQueuePercent")]
    pub driver_queue_percent: f64,
    /// The target's counters for this job, as it last reported them; `None` when unknown
    /// (never connected). Not `target`, which is the address above.
    #[serde(rename = "targetStats")]
    pub target_stats: Option<TargetCounters>,
    /// Why the job is not connected: the reason its last attempt failed, until an attempt
    /// succeeds; `None` while connected or before the first attempt failed.
    #[serde(rename = "conError", default)]
    pub con_error: Option<ConError>,
    /// The job's running verification, or its last result since the job started; `None`
    /// when none ran.
    #[serde(default)]
    pub verification: Option<VerifyStatus>,
    /// How often the job is verified on its own, if it is.
    #[serde(rename = "verifySchedule", default)]
    pub verify_schedule: Option<VerifySchedule>,
}

/// The shortest interval of a verification schedule: a verification of a small tree
/// takes seconds, and one started while the last runs is refused anyway.
pub const MIN_VERIFY_EVERY_SECONDS: u64 = 10;

/// A job's verification schedule (`rillctl verify JOB --every DURATION`): a verification
/// starts this long after the job started or the last one did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySchedule {
    #[serde(rename = "everySeconds")]
    pub every_seconds: u64,
    /// Send what differs again (`--remirror`).
    #[serde(default)]
    pub remirror: bool,
    /// Compare data by checksums whatever `ChecksumAll` says (`--checksums`).
    #[serde(default)]
    pub checksums: bool,
}

/// A verification's progress, or its result once it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyStatus {
    /// `running`, `paused` (waiting to retry after a failure), `completed` or `stopped`.
    pub state: String,
    /// The verification's ID (events 4058 to 4062 name it).
    pub id: u64,
    /// Names compared and found equal, and the bytes of data they hold.
    #[serde(rename = "filesVerified")]
    pub files_verified: u64,
    #[serde(rename = "bytesVerified")]
    pub bytes_verified: u64,
    /// Names whose replica differs (not counting missing ones).
    pub differing: u64,
    /// Names the source holds and the replica does not.
    pub missing: u64,
    /// Names only the replica holds.
    pub extra: u64,
    /// Names that kept changing while they were looked at: not compared.
    pub changed: u64,
    /// Names handed to the job's remirror (`--remirror`).
    pub remirrored: u64,
}

guide_words! {
    /// The class of a failed connection, what an administrator acts on (the guide logs
    /// the reason only as text, in event 4011).
    pub enum ConErrorClass {
        /// Nothing listens at the target's address (TCP connection refused).
        Refused => "Connection Refused",
        /// No answer within `NetworkTimeout` (connecting, the handshake, or silence).
        TimedOut => "Timed Out",
        /// The TLS handshake failed on a certificate: one side does not trust the other
        /// (`rillctl trust add`).
        NotTrusted => "Certificate Not Trusted",
        /// The target refused the job (unknown job, target path, busy, stopping).
        Rejected => "Rejected By Target",
        /// A peer broke the wire protocol (or speaks another version).
        Protocol => "Protocol Error",
        /// The connection failed below the protocol: unreachable, reset, closed.
        Network => "Network Error",
    }
}

/// Why a job's connection failed (`conError`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConError {
    pub class: ConErrorClass,
    /// The reason, as the log says it.
    pub message: String,
    /// When attempts started failing for this reason (UTC, see [`utc_time`]).
    pub since: String,
    /// Attempts that failed for it in a row.
    pub attempts: u64,
}

/// The guide's Target statistics for one source job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCounters {
    #[serde(rename = "OpsReceived")]
    pub ops_received: u64,
    #[serde(rename = "OpsRemaining")]
    pub ops_remaining: u64,
    #[serde(rename = "Retries")]
    pub retries: u64,
    #[serde(rename = "OpsDropped")]
    pub ops_dropped: u64,
    #[serde(rename = "BytesInTargetQueue")]
    pub bytes_in_target_queue: u64,
    #[serde(rename = "BytesInTargetDiskQueue")]
    pub bytes_in_target_disk_queue: u64,
}

impl From<[u64; 6]> for TargetCounters {
    /// The counters in the order of the fields, which is also the order the wire's
    /// `TargetStats` carries them in.
    fn from(v: [u64; 6]) -> TargetCounters {
        let [ops_received, ops_remaining, retries, ops_dropped, bytes_in_target_queue, bytes_in_target_disk_queue] =
            v;
        TargetCounters {
            ops_received,
            ops_remaining,
            retries,
            ops_dropped,
            bytes_in_target_queue,
            bytes_in_target_disk_queue,
        }
    }
}

/// This host as a target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// The guide's Security statistics: successful and failed logins of sources.
    #[serde(rename = "Logins")]
    pub logins: u64,
    #[serde(rename = "FailedLogins")]
    pub failed_logins: u64,
    pub sessions: Vec<TargetSessionStatus>,
}

/// One source job replicating to this host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSessionStatus {
    /// The name the source is trusted under.
    #[serde(rename = "peerName")]
    pub peer_name: String,
    #[serde(rename = "peerFingerprint")]
    pub peer_fingerprint: String,
    /// The guide's Target, PeerAddress: the source's address while connected.
    #[serde(rename = "PeerAddress")]
    pub peer_address: Option<String>,
    pub job: String,
    #[serde(rename = "targetPath")]
    pub target_path: String,
    #[serde(rename = "targetDataState")]
    pub target_data_state: DataState,
    /// The sequence number of the last operation or marker applied (numbered by the
    /// source for the job, across connections): a position, not a count.
    #[serde(rename = "lastApplied")]
    pub last_applied: u64,
    #[serde(flatten)]
    pub counters: TargetCounters,
    /// Operations of this connection applied: `OpsReceived` = `OpsApplied` + `OpsDropped`
    /// + `OpsRemaining` once the ops in hand are applied (rill's; the guide has none).
    #[serde(rename = "OpsApplied", default)]
    pub ops_applied: u64,
    /// The guide's Target, Orphan Files Removed, Orphan Directories Removed and Orphan
    /// Bytes Removed, in this connection.
    #[serde(rename = "OrphanFilesRemoved", default)]
    pub orphan_files_removed: u64,
    #[serde(rename = "OrphanDirectoriesRemoved", default)]
    pub orphan_directories_removed: u64,
    #[serde(rename = "OrphanBytesRemoved", default)]
    pub orphan_bytes_removed: u64,
    /// Whether the failover condition is met: the source left `MissedPackets` pings
    /// unanswered (event 6010).
    #[serde(rename = "failoverCondition", default)]
    pub failover_condition: bool,
    #[serde(rename = "failoverState", default)]
    pub failover_state: FailoverState,
    /// Connections of the source refused since the job failed over (event 4018).
    #[serde(rename = "refusedAfterFailover", default)]
    pub refused_after_failover: u64,
}

/// A time as the guide's UTC statistics (ConRPT) are given: RFC 3339 to the second, UTC
/// (`2026-01-31T12:00:00Z`).
pub fn utc_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
