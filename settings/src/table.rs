//! The table: every setting's definition, and the kinds of value a setting may hold.
//! How a value is read and checked is in `check.rs`.

use std::borrow::Cow;
use std::fmt;

/// The guide's settings are 32-bit registry values; where it says "any integer" or
/// "dependent on the disk space", this is the largest value accepted.
const DWORD_MAX: u64 = u32::MAX as u64;

/// The longest file name Linux file systems take (`NAME_MAX`).
pub const FILE_NAME_MAX: usize = 255;

/// The guide's ports: "1025 - 65535" (the privileged ports are refused).
const PORT: Kind = int(1025, 65_535);

/// What a setting holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An integer from `min` to `max` (in the setting's unit). `zero`, when set, is the
    /// meaning of 0 where 0 is allowed below `min`; `unlimited` allows the word
    /// `"unlimited"`.
    Integer {
        min: u64,
        max: u64,
        zero: Option<&'static str>,
        unlimited: bool,
    },
    /// 0 or 1 (TOML `false` and `true` are accepted too).
    Boolean,
    /// An absolute path to a directory.
    Path,
    /// A plain file name (no slash, not `.` or `..`, at most [`FILE_NAME_MAX`] bytes),
    /// for a file rill keeps in a directory another setting names (`VerifyLogName` in
    /// `LogDir`).
    FileName,
    /// One of the listed integers, each with its meaning.
    Enumeration(&'static [(u64, &'static str)]),
    /// Up to `max_items` short words such as file extensions, each 1 to `max_len`
    /// letters, digits, `_`, `-`, `+` or `~`, kept in lower case: a TOML array of strings,
    /// or one string of words delimited by periods as the guide writes it (commas and
    /// white space delimit too). Empty is allowed.
    List { max_items: usize, max_len: usize },
}

const fn int(min: u64, max: u64) -> Kind {
    Kind::Integer {
        min,
        max,
        zero: None,
        unlimited: false,
    }
}

/// A setting's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// The value of an integer or an enumeration.
    Int(u64),
    /// The word `unlimited`, where the setting allows it.
    Unlimited,
    Bool(bool),
    /// An absolute path (TOML strings are UTF-8, so paths are too).
    Path(Cow<'static, str>),
    /// A plain file name.
    Name(Cow<'static, str>),
    /// The words of a list, in lower case, in the order given.
    List(Cow<'static, [Cow<'static, str>]>),
}

impl fmt::Display for Value {
    /// The value as `get` shows it and `set` accepts it; a list in the guide's
    /// period-delimited form (`mp3.zip`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Unlimited => f.write_str("unlimited"),
            Value::Bool(b) => f.write_str(if *b { "1" } else { "0" }),
            Value::Path(p) | Value::Name(p) => f.write_str(p),
            Value::List(items) => f.write_str(&items.join(".")),
        }
    }
}

impl Value {
    /// The value as it is written in the settings file; a list as a TOML array, which
    /// reads more plainly in a file than the guide's period-delimited string.
    pub(super) fn to_toml(&self) -> String {
        match self {
            Value::Unlimited => "\"unlimited\"".into(),
            Value::Path(p) | Value::Name(p) => toml::Value::String(p.to_string()).to_string(),
            Value::List(items) => toml::Value::Array(
                items
                    .iter()
                    .map(|i| toml::Value::String(i.to_string()))
                    .collect(),
            )
            .to_string(),
            other => other.to_string(),
        }
    }
}

/// One setting's definition.
#[derive(Debug)]
pub struct SettingDef {
    /// The guide's name: the key in the settings file (case-sensitive).
    pub name: &'static str,
    pub kind: Kind,
    /// The unit of an integer (`MB`, `percent`, `ops`, `bytes`); empty otherwise.
    pub unit: &'static str,
    pub default: Value,
    /// Whether a change takes effect only after the service restarts.
    pub restart: bool,
    /// One line for `rilld settings list` and the settings file.
    pub help: &'static str,
}

/// Defines [`SETTINGS`] and, from the same names, the private `Id` used by the accessors,
/// so a setting's name is written once.
macro_rules! settings_table {
    ($($name:ident { $($field:ident: $value:expr),* $(,)? })*) => {
        /// A setting's position in [`SETTINGS`]. The names are the guide's, spelled as
        /// it spells them (`HBTTL`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(clippy::upper_case_acronyms)]
        pub(super) enum Id { $($name),* }

        /// Every setting of the engine, in the order `list` and the settings file show them.
        pub const SETTINGS: &[SettingDef] = &[
            $(SettingDef { name: stringify!($name), $($field: $value),* }),*
        ];
    };
}

settings_table! {
    // Memory queue.
    QMemoryBufferMax {
        kind: int(32, 4095),
        unit: "MB",
        default: Value::Int(256),
        restart: true,
        help: "system memory, in MB, for the memory queue; past it operations are queued to disk",
    }
    // Linux section: "any valid percentage", default 100, restart rule not given: the
    // Windows section's "Yes" is used. 0 is refused: with MemoryAllocatorCallbackMode 1 it
    // would stop draining the driver before the first operation and never resume.
    MemoryQueueToDiskThreshold {
        kind: int(1, 100),
        unit: "percent",
        default: Value::Int(100),
        restart: true,
        help: "percentage of QMemoryBufferMax that triggers MemoryAllocatorCallbackMode",
    }
    // The guide: "0 no limit, 1 or any larger integer"; capped at a 32-bit value.
    OpBufferSize {
        kind: Kind::Integer { min: 1, max: DWORD_MAX, zero: Some("no limit"), unlimited: false },
        unit: "ops",
        default: Value::Int(0),
        restart: false,
        help: "operations the memory queue holds before queuing to disk",
    }
    // Disk queue. The guide's default is "the location specified during the installation";
    // rill installs under /var/lib/rill. The guide applies a change live, but a job's disk
    // queue is not moved while it is open (and a job started meanwhile would leave its
    // queue apart from the others'), so a change waits for the next start.
    QJournalDir {
        kind: Kind::Path,
        unit: "",
        default: Value::Path(Cow::Borrowed("/var/lib/rill/queue")),
        restart: true,
        help: "directory of the disk queue (best on a dedicated, fast local volume)",
    }
    QJournalFileSize {
        kind: int(1, 4095),
        unit: "MB",
        default: Value::Int(5),
        restart: false,
        help: "size, in MB, of each disk-queue file",
    }
    // Default "Unlimited"; 0 disables disk queuing (the guide). Its Linux entry gives no
    // restart rule: the Windows section's "No" is used. Upper bound: a 32-bit value.
    QJournalSpaceMax {
        kind: Kind::Integer {
            min: 1,
            max: DWORD_MAX,
            zero: Some("disk queuing disabled"),
            unlimited: true,
        },
        unit: "MB",
        default: Value::Unlimited,
        restart: false,
        help: "disk space, in MB, the disk queue may use in QJournalDir; reaching it auto-disconnects",
    }
    // Range "dependent on the amount of physical disk space": 0 (no reserve) to 32 bits.
    QJournalFreeSpaceMin {
        kind: int(0, DWORD_MAX),
        unit: "MB",
        default: Value::Int(250),
        restart: false,
        help: "disk space, in MB, that must stay free in QJournalDir",
    }
    QLogWriteThrough {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(false),
        restart: false,
        help: "write the disk queue through to the disk (fewer auto-disconnects, slower source)",
    }
    // "any valid percentage": 0 is refused, it would raise the alert with an empty queue.
    QueueSizeAlertThreshold {
        kind: int(1, 100),
        unit: "percent",
        default: Value::Int(50),
        restart: true,
        help: "percentage of the queue in use that raises an alert (event 4072)",
    }
    // Not in the Linux section: values, default 2 and restart "Yes" from the Windows section.
    MemoryAllocatorCallbackMode {
        kind: Kind::Enumeration(&[
            (0, "auto-disconnect"),
            (1, "stop draining the driver until the target resumes the source"),
            (2, "queue to disk"),
        ]),
        unit: "",
        default: Value::Int(2),
        restart: true,
        help: "what happens when MemoryQueueToDiskThreshold is reached",
    }
    // Transmit.
    MaxWriteChunkSize {
        kind: int(1, 131_072),
        unit: "bytes",
        default: Value::Int(65_536),
        restart: false,
        help: "largest merged write operation, in bytes, sent during replication",
    }
    // Not in the Linux section: default 1 and restart "Yes" from the Windows section.
    UseChangeJournal {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(true),
        restart: true,
        help: "track changed files so only they are remirrored after a reboot or auto-disconnect",
    }
    // Default "the location where the files were installed": /var/lib/rill (FHS). The guide
    // applies a change live, but the open change journal, job store, identity and token are
    // not moved (and a job started meanwhile would keep its state apart from the job
    // store), so a change waits for the next start.
    DataPath {
        kind: Kind::Path,
        unit: "",
        default: Value::Path(Cow::Borrowed("/var/lib/rill")),
        restart: true,
        help: "directory of the engine's databases (change journal, replication sets, connections)",
    }
    // Default "the location where the files were installed": /var/log/rill (FHS).
    LogDir {
        kind: Kind::Path,
        unit: "",
        default: Value::Path(Cow::Borrowed("/var/log/rill")),
        restart: true,
        help: "directory of the engine log, verification logs and statistics files",
    }
    // Roles and ports.
    LoadSourceTarget {
        kind: Kind::Enumeration(&[
            (0, "neither source nor target"),
            (1, "source only"),
            (2, "target only"),
            (3, "source and target"),
        ]),
        unit: "",
        default: Value::Int(3),
        restart: true,
        help: "whether this host may be a source, a target, both or neither",
    }
    // Linux only (Windows has `Port`, 6320).
    NetPort {
        kind: PORT,
        unit: "TCP port",
        default: Value::Int(1500),
        restart: true,
        help: "TCP port of the replication engine",
    }
    // The guide names no setting for it: chapter 13 lists the Linux management service
    // (console, job management, REST API) on 6326. The name is rill's own.
    ManagementPort {
        kind: PORT,
        unit: "TCP port",
        default: Value::Int(6326),
        restart: true,
        help: "TCP port of the management API (rillctl)",
    }
    // Transmit.
    SourcePendingAcks {
        kind: int(100, 20_000),
        unit: "ops",
        default: Value::Int(2000),
        restart: false,
        help: "operations sent to the target and not yet acknowledged before the source waits",
    }
    // "any integer": 0 is refused, it would close every connection at once (and send
    // keep-alives continuously); capped at a 32-bit value.
    NetworkTimeout {
        kind: int(1, DWORD_MAX),
        unit: "seconds",
        default: Value::Int(120),
        restart: false,
        help: "seconds without data after which a connection is closed; keep-alives at 1/6 of it",
    }
    // "any positive number"; capped at a 32-bit value.
    NetworkRetry {
        kind: int(1, DWORD_MAX),
        unit: "seconds",
        default: Value::Int(10),
        restart: false,
        help: "interval, in seconds, between attempts to reconnect to the target",
    }
    AutoReconnect {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(true),
        restart: true,
        help: "reinstate the connections to targets when the source comes back after a failure",
    }
    AutoRetransmit {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(true),
        restart: false,
        help: "try to reconnect to a target after the connection to it is lost",
    }
    // Restart: "No for future connections, Yes for the current connection": a change
    // applies to connections made after it. The Linux section's meaning of 5 (5 to 1) is
    // used; the Windows section makes 5 a dynamic ratio.
    HPQueueRatio {
        kind: int(1, 65_535),
        unit: "replication packets per mirror packet",
        default: Value::Int(5),
        restart: false,
        help: "replication packets sent for each mirror packet (applies to new connections)",
    }
    // Not in the guide's chapter 12: bandwidth limits are a job property there (the
    // statistic conBandwidthLimit, shown as "Bandwidth Limit (Kbps)" with the keyword
    // Unlimited). The name is rill's own; the unit and keyword are the guide's.
    BandwidthLimit {
        kind: Kind::Integer { min: 1, max: DWORD_MAX, zero: None, unlimited: true },
        unit: "Kbps",
        default: Value::Unlimited,
        restart: false,
        help: "most each connection may send, in kilobits (1000 bits) per second",
    }
    // Compression and encryption.
    // Not in the guide's chapter 12: compression is a job property there, "On / Level" or
    // "Off". The name is rill's own; the levels are zstd's, capped at 19 because 20-22
    // need windows of up to 128 MiB on both ends for little gain on replication data.
    // Off by default: it costs CPU on both ends and only a slow link repays it.
    CompressionLevel {
        kind: Kind::Integer { min: 1, max: 19, zero: Some("compression off"), unlimited: false },
        unit: "zstd level",
        default: Value::Int(0),
        restart: false,
        help: "how hard data is compressed before it is sent (higher: smaller, more CPU)",
    }
    // "any file size": capped at a 32-bit value.
    MinCompressionFileSize {
        kind: int(0, DWORD_MAX),
        unit: "bytes",
        default: Value::Int(1024),
        restart: false,
        help: "smallest file, in bytes, whose data is compressed",
    }
    // The Linux section's default (the Windows one is shorter and has `tar`).
    SkipCompressionFileExt {
        kind: Kind::List { max_items: 256, max_len: 32 },
        unit: "",
        default: Value::List(Cow::Borrowed(&[
            Cow::Borrowed("mp3"), Cow::Borrowed("exe"), Cow::Borrowed("wmv"),
            Cow::Borrowed("wma"), Cow::Borrowed("qt"), Cow::Borrowed("mpg"),
            Cow::Borrowed("mpeg"), Cow::Borrowed("zip"), Cow::Borrowed("jpg"),
            Cow::Borrowed("jpeg"), Cow::Borrowed("tiff"), Cow::Borrowed("rar"),
            Cow::Borrowed("cab"), Cow::Borrowed("tgz"), Cow::Borrowed("bz"),
            Cow::Borrowed("bz2"), Cow::Borrowed("z"), Cow::Borrowed("pkg"),
            Cow::Borrowed("sea"), Cow::Borrowed("sit"), Cow::Borrowed("sitx"),
        ])),
        restart: false,
        help: "extensions of files never compressed (already compressed data), any case",
    }
    // "Changing this option will cause jobs to auto-reconnect and possibly remirror."
    EncryptNetworkData {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(false),
        restart: false,
        help: "encrypt data sent to targets (on either end encrypts all its connections)",
    }
    // Mirror.
    CalculateOnConnect {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(true),
        restart: true,
        help: "calculate the amount of data to mirror when a connection is made",
    }
    // 0 (allowed by the guide's range) sends a directory's names in one operation.
    MaxRemoveOrphansOpSize {
        kind: int(0, 131_072),
        unit: "names",
        default: Value::Int(1000),
        restart: false,
        help: "names of a directory sent per orphan-removal operation of a mirror (0: all)",
    }
    LogAllOrphans {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(false),
        restart: false,
        help: "log each orphan the target removes (event 4052), not only count it",
    }
    MirrorChunkSize {
        kind: int(1, 1_048_576),
        unit: "bytes",
        default: Value::Int(65_536),
        restart: false,
        help: "block size, in bytes, read and sent by a mirror",
    }
    // Linux only. "any integer": 0 makes no file small; capped at a 32-bit value.
    SmallFileThreshold {
        kind: int(0, DWORD_MAX),
        unit: "bytes",
        default: Value::Int(65_536),
        restart: false,
        help: "files smaller than this, in bytes, are mirrored whole without comparing blocks",
    }
    // The guide's note says "enabled (0)" skips zero-byte files; the values (0 skip,
    // 1 mirror) are what is followed.
    MirrorZeroKFiles {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(true),
        restart: false,
        help: "mirror empty files (0: skip them in mirrors and verifications)",
    }
    // The guide's values and default. 0 and 2 have the mirror ask the target what it
    // holds under each file's name before sending it (see the engine's `mirror::compare`).
    MirrorOverwrite {
        kind: Kind::Enumeration(&[
            (0, "never overwrite"),
            (1, "always overwrite"),
            (2, "overwrite if older"),
        ]),
        unit: "",
        default: Value::Int(1),
        restart: false,
        help: "whether a mirror overwrites files that exist on the target",
    }
    // The guide's values, default 1 and restart rule. "When a source is brought online
    // after an auto-disconnect" is, in rill, the remirror after an unclean stop or a
    // target that lost state; names the change journal holds are remirrored whatever the
    // value (0 included: they are what replication could not carry), by the mode's method.
    AutoRemirror {
        kind: Kind::Enumeration(&[
            (0, "do not compare or send any files"),
            (1, "compare attributes, send the attributes and bytes that differ"),
            (2, "send every file whole"),
            (3, "compare attributes, send whole the files that differ"),
            (4, "compare attributes and data, send the attributes and bytes that differ"),
        ]),
        unit: "",
        default: Value::Int(1),
        restart: false,
        help: "how a remirror compares and sends files",
    }
    // Linux only.
    EnableSparseFileMirroring {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(true),
        restart: false,
        help: "mirror sparse files as sparse (holes are not sent)",
    }
    // Attributes. The Linux section's meaning (owner, group and permissions) and restart
    // rule ("Yes"; the Windows section says "No").
    DisableAttributeReplication {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(false),
        restart: true,
        help: "do not replicate owner, group and permissions to the target",
    }
    // Linux only.
    ExtendedAttributes {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(false),
        restart: false,
        help: "mirror and replicate extended attributes",
    }
    // Verification. The Linux section's names, defaults and restart rules. ChecksumAll
    // also speaks of mirrors and restores there; rill's mirror sends every file whole, so
    // only verifications read it.
    ChecksumAll {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(true),
        restart: false,
        help: "compare file data by block checksums in verifications (0: attributes only)",
    }
    // "any integer", default 32. The target reads and hashes every block a request asks
    // for while its applier waits (the request is answered in the stream's order), so the
    // upper bound keeps one request to 256 MiB of reading (4096 blocks of 64 KiB).
    MaxChecksumBlocks {
        kind: int(1, 4096),
        unit: "blocks",
        default: Value::Int(32),
        restart: false,
        help: "block checksums asked of the target per verification request (blocks of 64 KiB)",
    }
    // The guide's default name; the file is written in LogDir.
    VerifyLogName {
        kind: Kind::FileName,
        unit: "",
        default: Value::Name(Cow::Borrowed("DTVerify.log")),
        restart: false,
        help: "name of the verification log, in LogDir",
    }
    VerifyLogAppend {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(true),
        restart: false,
        help: "append to the verification log (0: each verification overwrites it)",
    }
    // "up to 4 GB", default 1048576: capped at a 32-bit value. Below 4 KiB a log would not
    // hold one verification's summary and a few differences.
    VerifyLogLimit {
        kind: int(4096, DWORD_MAX),
        unit: "bytes",
        default: Value::Int(1_048_576),
        restart: false,
        help: "largest size, in bytes, of the verification log; past it lines are dropped",
    }
    // "any valid number" of minutes, default 3; 0 retries at once, a week at most.
    VerifyRetryInterval {
        kind: Kind::Integer { min: 1, max: 10_080, zero: Some("retry at once"), unlimited: false },
        unit: "minutes",
        default: Value::Int(3),
        restart: false,
        help: "time, in minutes, after a verification fails before it is retried",
    }
    // "any valid number", default 5; 0 never retries.
    VerifyRetryLimit {
        kind: Kind::Integer { min: 1, max: DWORD_MAX, zero: Some("never retry"), unlimited: false },
        unit: "retries",
        default: Value::Int(5),
        restart: false,
        help: "times a failed verification is retried before it stops",
    }
    // Target.
    TGCloseDelay {
        kind: int(0, 2000),
        unit: "ms",
        default: Value::Int(1000),
        restart: false,
        help: "time, in milliseconds, a file is held open on the target after an operation",
    }
    TGMirrorCapacityHigh {
        kind: int(2, 75),
        unit: "percent",
        default: Value::Int(20),
        restart: false,
        help: "percentage of memory holding mirror data at which the target pauses the mirror",
    }
    // "The maximum value ... is either 75 or TGMirrorCapacityHigh, whichever is lower":
    // equal to TGMirrorCapacityHigh is allowed.
    TGMirrorCapacityLow {
        kind: int(1, 75),
        unit: "percent",
        default: Value::Int(15),
        restart: false,
        help: "percentage of memory holding mirror data at which the target resumes the mirror",
    }
    TGRetryLocked {
        kind: int(0, 65_536),
        unit: "seconds",
        default: Value::Int(3),
        restart: false,
        help: "least time, in seconds, before a failed operation is retried on the target",
    }
    TGExecutionRetryLimit {
        kind: Kind::Integer {
            min: 1,
            max: 65_536,
            zero: Some("retry until applied"),
            unlimited: false,
        },
        unit: "retries",
        default: Value::Int(0),
        restart: false,
        help: "times an operation is retried on the target before it is discarded",
    }
    // Failover monitoring (the target watches each source it serves). The guide's Linux
    // list, ranges and defaults as given; none needs a restart.
    PingFrequency {
        kind: int(1, 65_535),
        unit: "seconds",
        default: Value::Int(5),
        restart: false,
        help: "seconds between the pings a monitoring target sends to each source",
    }
    MissedPackets {
        kind: int(1, 65_535),
        unit: "pings",
        default: Value::Int(5),
        restart: false,
        help: "pings a source leaves unanswered before the failover condition is met",
    }
    // "0 turns the heartbeats off". The source's own heartbeat toward the target.
    HBExternalRate {
        kind: Kind::Integer { min: 1, max: 65_535, zero: Some("heartbeats off"), unlimited: false },
        unit: "seconds",
        default: Value::Int(3),
        restart: false,
        help: "seconds between the heartbeats a source sends its targets",
    }
    // The guide gives 0 - 65535 without a meaning for 0; 0 is read as "never".
    HBTTL {
        kind: Kind::Integer { min: 1, max: 65_535, zero: Some("never"), unlimited: false },
        unit: "seconds",
        default: Value::Int(10),
        restart: false,
        help: "seconds without a heartbeat from the target before a source drops the connection",
    }
    UserIntervention {
        kind: Kind::Enumeration(&[
            (0, "user intervention is not required"),
            (1, "user intervention is required"),
        ]),
        unit: "",
        default: Value::Int(1),
        restart: false,
        help: "whether failover waits for `rillctl failover` once the failover condition is met",
    }
    PreFailoverWait {
        kind: Kind::Enumeration(&[(0, "do not wait"), (1, "wait")]),
        unit: "",
        default: Value::Int(0),
        restart: false,
        help: "whether a failover waits for the target's pre-failover script to complete",
    }
    PreFailbackWait {
        kind: Kind::Enumeration(&[(0, "do not wait"), (1, "wait")]),
        unit: "",
        default: Value::Int(0),
        restart: false,
        help: "whether a failback waits for the target's pre-failback script to complete",
    }
}

/// The name of the setting `id`.
pub(super) fn name(id: Id) -> &'static str {
    SETTINGS[id as usize].name
}
