//! The typed accessors the engine calls, in the units it works in.

use std::path::Path;

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

    fn path(&self, id: Id) -> &Path {
        match self.value(id) {
            Value::Path(p) => Path::new(p.as_ref()),
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
