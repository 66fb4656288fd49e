//! The typed accessors the engine calls, in the units it works in.

use std::path::Path;
use std::time::Duration;

use super::table::{name, Id, Value};
use super::{Settings, MAX_QUEUE_FILES, MB};

impl Settings {
    pub(super) fn value(&self, id: Id) -> &Value {
        &self.values[id as usize]
    }

    pub(super) fn int(&self, id: Id) -> u64 {
        match self.value(id) {
            Value::Int(n) => *n,
            other => unreachable!("{} holds {other:?}", name(id)),
        }
    }

    fn flag(&self, id: Id) -> bool {
        match self.value(id) {
            Value::Bool(b) => *b,
            other => unreachable!("{} holds {other:?}", name(id)),
        }
    }

    fn seconds(&self, id: Id) -> Duration {
        Duration::from_secs(self.int(id))
    }

    fn path(&self, id: Id) -> &Path {
        match self.value(id) {
            Value::Path(p) => Path::new(p.as_ref()),
            other => unreachable!("{} holds {other:?}", name(id)),
        }
    }

    fn text(&self, id: Id) -> &str {
        match self.value(id) {
            Value::Name(n) => n.as_ref(),
            other => unreachable!("{} holds {other:?}", name(id)),
        }
    }

    /// `QMemoryBufferMax`, in bytes.
    pub fn q_memory_buffer_max_bytes(&self) -> u64 {
        self.int(Id::QMemoryBufferMax) * MB
    }

    /// `MemoryQueueToDiskThreshold`, a percentage (1 to 100).
    pub fn memory_queue_to_disk_threshold(&self) -> u8 {
        self.int(Id::MemoryQueueToDiskThreshold) as u8
    }

    /// The memory-queue size, in bytes, at which `MemoryAllocatorCallbackMode` acts:
    /// `MemoryQueueToDiskThreshold` percent of `QMemoryBufferMax`.
    pub fn memory_queue_to_disk_threshold_bytes(&self) -> u64 {
        self.q_memory_buffer_max_bytes() * u64::from(self.memory_queue_to_disk_threshold()) / 100
    }

    /// `OpBufferSize`: the most operations in the memory queue; `None` for no limit (0).
    pub fn op_buffer_size(&self) -> Option<u64> {
        Some(self.int(Id::OpBufferSize)).filter(|&n| n != 0)
    }

    /// `QJournalDir`.
    pub fn q_journal_dir(&self) -> &Path {
        self.path(Id::QJournalDir)
    }

    /// `QJournalFileSize`, in bytes.
    pub fn q_journal_file_size_bytes(&self) -> u64 {
        self.int(Id::QJournalFileSize) * MB
    }

    /// `QJournalSpaceMax`, in bytes: `None` when unlimited, `Some(0)` when disk queuing is
    /// disabled.
    pub fn q_journal_space_max_bytes(&self) -> Option<u64> {
        match self.value(Id::QJournalSpaceMax) {
            Value::Unlimited => None,
            _ => Some(self.int(Id::QJournalSpaceMax) * MB),
        }
    }

    /// Whether operations may be queued to disk (`QJournalSpaceMax` is not 0).
    pub fn disk_queue_enabled(&self) -> bool {
        self.q_journal_space_max_bytes() != Some(0)
    }

    /// The most bytes the disk queue may hold: `QJournalSpaceMax`, and never more than
    /// [`MAX_QUEUE_FILES`] files of `QJournalFileSize`; 0 when disk queuing is disabled.
    pub fn disk_queue_limit_bytes(&self) -> u64 {
        let files = MAX_QUEUE_FILES * self.q_journal_file_size_bytes();
        self.q_journal_space_max_bytes()
            .map_or(files, |space| space.min(files))
    }

    /// `QJournalFreeSpaceMin`, in bytes.
    pub fn q_journal_free_space_min_bytes(&self) -> u64 {
        self.int(Id::QJournalFreeSpaceMin) * MB
    }

    /// `QLogWriteThrough`.
    pub fn q_log_write_through(&self) -> bool {
        self.flag(Id::QLogWriteThrough)
    }

    /// `QueueSizeAlertThreshold`, a percentage (1 to 100).
    pub fn queue_size_alert_threshold(&self) -> u8 {
        self.int(Id::QueueSizeAlertThreshold) as u8
    }

    /// `MemoryAllocatorCallbackMode`.
    pub fn memory_allocator_callback_mode(&self) -> CallbackMode {
        match self.int(Id::MemoryAllocatorCallbackMode) {
            0 => CallbackMode::AutoDisconnect,
            1 => CallbackMode::StopDraining,
            _ => CallbackMode::QueueToDisk,
        }
    }

    /// `MaxWriteChunkSize`, in bytes.
    pub fn max_write_chunk_size(&self) -> u32 {
        self.int(Id::MaxWriteChunkSize) as u32
    }

    /// `UseChangeJournal`.
    pub fn use_change_journal(&self) -> bool {
        self.flag(Id::UseChangeJournal)
    }

    /// `DataPath`.
    pub fn data_path(&self) -> &Path {
        self.path(Id::DataPath)
    }

    /// `LogDir`.
    pub fn log_dir(&self) -> &Path {
        self.path(Id::LogDir)
    }

    /// `LoadSourceTarget`: the roles this host may take.
    pub fn load_source_target(&self) -> Roles {
        match self.int(Id::LoadSourceTarget) {
            0 => Roles::Neither,
            1 => Roles::Source,
            2 => Roles::Target,
            _ => Roles::Both,
        }
    }

    /// `NetPort`, the replication engine's TCP port.
    pub fn net_port(&self) -> u16 {
        self.port(Id::NetPort)
    }

    /// `ManagementPort`, the management API's TCP port.
    pub fn management_port(&self) -> u16 {
        self.port(Id::ManagementPort)
    }

    fn port(&self, id: Id) -> u16 {
        // The table allows 1025 to 65535 only.
        u16::try_from(self.int(id)).unwrap_or_else(|_| unreachable!("{} is a port", name(id)))
    }

    /// `SourcePendingAcks`, in operations.
    pub fn source_pending_acks(&self) -> u64 {
        self.int(Id::SourcePendingAcks)
    }

    /// `NetworkTimeout`: how long a connection may stay silent before it is closed.
    pub fn network_timeout(&self) -> Duration {
        self.seconds(Id::NetworkTimeout)
    }

    /// The interval of keep-alives on an idle connection: the guide's 1/6 of
    /// `NetworkTimeout`.
    pub fn network_keep_alive_interval(&self) -> Duration {
        self.network_timeout() / 6
    }

    /// `NetworkRetry`: the interval between attempts to reconnect to a target.
    pub fn network_retry(&self) -> Duration {
        self.seconds(Id::NetworkRetry)
    }

    /// `AutoReconnect`.
    pub fn auto_reconnect(&self) -> bool {
        self.flag(Id::AutoReconnect)
    }

    /// `AutoRetransmit`.
    pub fn auto_retransmit(&self) -> bool {
        self.flag(Id::AutoRetransmit)
    }

    /// `HPQueueRatio`: replication packets sent for each mirror packet (1 to 65535).
    pub fn hp_queue_ratio(&self) -> u64 {
        self.int(Id::HPQueueRatio)
    }

    /// `BandwidthLimit`, in bytes per second (1 Kbps = 125 bytes/s); `None` for unlimited.
    pub fn bandwidth_limit_bytes_per_sec(&self) -> Option<u64> {
        match self.value(Id::BandwidthLimit) {
            Value::Unlimited => None,
            _ => Some(self.int(Id::BandwidthLimit) * 125),
        }
    }

    /// Whether data is compressed before it is sent (`CompressionLevel` is not 0).
    pub fn compression_enabled(&self) -> bool {
        self.compression_level() != 0
    }

    /// `CompressionLevel`, a zstd level from 1 to 19; 0 when compression is off. zstd
    /// reads 0 as its default level, so check [`Settings::compression_enabled`] first.
    pub fn compression_level(&self) -> i32 {
        // The table allows 0 to 19 only.
        i32::try_from(self.int(Id::CompressionLevel)).unwrap_or(0)
    }

    /// `MinCompressionFileSize`, in bytes.
    pub fn min_compression_file_size_bytes(&self) -> u64 {
        self.int(Id::MinCompressionFileSize)
    }

    /// `SkipCompressionFileExt`: extensions in lower case, without the dot.
    pub fn skip_compression_file_ext(&self) -> Vec<String> {
        match self.value(Id::SkipCompressionFileExt) {
            Value::List(items) => items.iter().map(|i| i.to_string()).collect(),
            other => unreachable!("SkipCompressionFileExt holds {other:?}"),
        }
    }

    /// Whether the data of the file `path` is sent uncompressed because its extension
    /// (the last one, in any case) is in `SkipCompressionFileExt`.
    pub fn compression_skipped_for(&self, path: &Path) -> bool {
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            return false;
        };
        let ext = ext.to_lowercase();
        match self.value(Id::SkipCompressionFileExt) {
            Value::List(items) => items.iter().any(|i| &**i == ext.as_str()),
            _ => false,
        }
    }

    /// `EncryptNetworkData`.
    pub fn encrypt_network_data(&self) -> bool {
        self.flag(Id::EncryptNetworkData)
    }

    /// `CalculateOnConnect`.
    pub fn calculate_on_connect(&self) -> bool {
        self.flag(Id::CalculateOnConnect)
    }

    /// `MaxRemoveOrphansOpSize`: names per orphan-removal operation (0: a directory's
    /// names in one).
    pub fn max_remove_orphans_op_size(&self) -> u64 {
        self.int(Id::MaxRemoveOrphansOpSize)
    }

    /// `LogAllOrphans`: the target logs every orphan it removes.
    pub fn log_all_orphans(&self) -> bool {
        self.flag(Id::LogAllOrphans)
    }

    /// `MirrorChunkSize`, in bytes.
    pub fn mirror_chunk_size_bytes(&self) -> u64 {
        self.int(Id::MirrorChunkSize)
    }

    /// `SmallFileThreshold`, in bytes: smaller files are mirrored whole.
    pub fn small_file_threshold_bytes(&self) -> u64 {
        self.int(Id::SmallFileThreshold)
    }

    /// `MirrorZeroKFiles`: whether empty files are mirrored (false: skipped).
    pub fn mirror_zero_k_files(&self) -> bool {
        self.flag(Id::MirrorZeroKFiles)
    }

    /// `MirrorOverwrite`: 0 never overwrite, 1 always, 2 if the target's file is older.
    pub fn mirror_overwrite(&self) -> u64 {
        self.int(Id::MirrorOverwrite)
    }

    /// `AutoRemirror`: how a remirror compares and sends files (0 to 4, the guide's
    /// values).
    pub fn auto_remirror(&self) -> u64 {
        self.int(Id::AutoRemirror)
    }

    /// `EnableSparseFileMirroring`.
    pub fn enable_sparse_file_mirroring(&self) -> bool {
        self.flag(Id::EnableSparseFileMirroring)
    }

    /// `DisableAttributeReplication`: true when owner, group and permissions are not
    /// replicated.
    pub fn disable_attribute_replication(&self) -> bool {
        self.flag(Id::DisableAttributeReplication)
    }

    /// `ExtendedAttributes`: whether extended attributes are mirrored and replicated.
    pub fn extended_attributes(&self) -> bool {
        self.flag(Id::ExtendedAttributes)
    }

    /// `ChecksumAll`: whether verifications compare file data by block checksums.
    pub fn checksum_all(&self) -> bool {
        self.flag(Id::ChecksumAll)
    }

    /// `MaxChecksumBlocks`: block checksums asked of the target per verification request.
    pub fn max_checksum_blocks(&self) -> u32 {
        // The table caps it at 4096.
        self.int(Id::MaxChecksumBlocks) as u32
    }

    /// `VerifyLogName`: the verification log's file name, in `LogDir`.
    pub fn verify_log_name(&self) -> &str {
        self.text(Id::VerifyLogName)
    }

    /// `VerifyLogAppend`: whether a verification appends to the log (else overwrites it).
    pub fn verify_log_append(&self) -> bool {
        self.flag(Id::VerifyLogAppend)
    }

    /// `VerifyLogLimit`, in bytes.
    pub fn verify_log_limit_bytes(&self) -> u64 {
        self.int(Id::VerifyLogLimit)
    }

    /// `VerifyRetryInterval` (minutes in the file); zero retries at once.
    pub fn verify_retry_interval(&self) -> Duration {
        Duration::from_secs(self.int(Id::VerifyRetryInterval) * 60)
    }

    /// `VerifyRetryLimit`: times a failed verification is retried; 0 never.
    pub fn verify_retry_limit(&self) -> u64 {
        self.int(Id::VerifyRetryLimit)
    }

    /// `TGCloseDelay`: how long the target keeps a file open (milliseconds in the file).
    pub fn tg_close_delay(&self) -> Duration {
        Duration::from_millis(self.int(Id::TGCloseDelay))
    }

    /// `TGMirrorCapacityHigh`, a percentage of system memory (2 to 75).
    pub fn tg_mirror_capacity_high(&self) -> u8 {
        self.int(Id::TGMirrorCapacityHigh) as u8
    }

    /// `TGMirrorCapacityLow`, a percentage of system memory (1 to 75, at most
    /// `TGMirrorCapacityHigh`).
    pub fn tg_mirror_capacity_low(&self) -> u8 {
        self.int(Id::TGMirrorCapacityLow) as u8
    }

    /// `TGRetryLocked`: the least wait before a failed operation is retried on the
    /// target (seconds in the file).
    pub fn tg_retry_locked(&self) -> Duration {
        self.seconds(Id::TGRetryLocked)
    }

    /// `TGExecutionRetryLimit`, a count of retries; 0 means an operation is retried until
    /// it is applied, never discarded.
    pub fn tg_execution_retry_limit(&self) -> u64 {
        self.int(Id::TGExecutionRetryLimit)
    }

    /// `PingFrequency`: how often a monitoring target pings each source.
    pub fn ping_frequency(&self) -> Duration {
        self.seconds(Id::PingFrequency)
    }

    /// `MissedPackets`: pings a source leaves unanswered before the failover condition.
    pub fn missed_packets(&self) -> u32 {
        // At most 65535 by the table.
        self.int(Id::MissedPackets) as u32
    }

    /// `HBExternalRate`: the source's heartbeat interval; `None` when 0 (heartbeats off).
    pub fn hb_external_rate(&self) -> Option<Duration> {
        Some(self.seconds(Id::HBExternalRate)).filter(|d| !d.is_zero())
    }

    /// `HBTTL`: how long a source waits for a heartbeat of its target before it drops the
    /// connection; `None` when 0 (never).
    pub fn hb_ttl(&self) -> Option<Duration> {
        Some(self.seconds(Id::HBTTL)).filter(|d| !d.is_zero())
    }

    /// `UserIntervention`: false (0) when a met failover condition fails over at once.
    pub fn user_intervention(&self) -> bool {
        self.int(Id::UserIntervention) == 1
    }

    /// `PreFailoverWait`: whether a failover waits for its pre-failover script.
    pub fn pre_failover_wait(&self) -> bool {
        self.int(Id::PreFailoverWait) == 1
    }

    /// `PreFailbackWait`: whether a failback waits for its pre-failback script.
    pub fn pre_failback_wait(&self) -> bool {
        self.int(Id::PreFailbackWait) == 1
    }
}

/// `MemoryAllocatorCallbackMode`: what the engine does when the memory queue reaches
/// `MemoryQueueToDiskThreshold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CallbackMode {
    /// 0: auto-disconnect; the connection is re-established by auto-reconnect and the
    /// change journal's files are remirrored.
    AutoDisconnect = 0,
    /// 1: stop draining the driver (the target pauses the source) until the target says
    /// to resume; the driver throttles meanwhile.
    StopDraining = 1,
    /// 2: queue operations to disk (source and target).
    QueueToDisk = 2,
}

/// `LoadSourceTarget`: which of the engine's halves run on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Roles {
    /// 0: neither the source nor the target half.
    Neither = 0,
    /// 1: only the source half (captures and sends).
    Source = 1,
    /// 2: only the target half (receives and applies).
    Target = 2,
    /// 3: both.
    Both = 3,
}

impl Roles {
    /// Whether this host may be a source.
    pub fn source(self) -> bool {
        matches!(self, Roles::Source | Roles::Both)
    }

    /// Whether this host may be a target.
    pub fn target(self) -> bool {
        matches!(self, Roles::Target | Roles::Both)
    }
}
