//! The producer half: appends records, rotates segments, enforces the space limits.
//!
//! Limits are checked before anything is written, so a refused append leaves no trace. A
//! write that fails part-way (a full disk racing the free-space check) is cut back to the
//! previous end. A failed sync is different: what reached the disk is then unknown (Linux
//! may have dropped the dirty pages), so the writer refuses further appends until the
//! journal is reopened and recovery has looked at the files.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::record::{encode_record, encode_segment_header, record_size, SEGMENT_HEADER_LEN};
use super::segment::segment_path;
use super::{
    io_err, DiskQueueError, DiskQueueStats, FullReason, SegMeta, Shared, SyncMode, MAX_PAYLOAD,
};

struct Active {
    id: u64,
    file: File,
    len: u64,
    last_seq: Option<u64>,
}

/// Appends records. One per journal; may move to another thread.
pub struct DiskQueueWriter {
    shared: Arc<Shared>,
    /// The writer's own copy of the limits, changeable while running ([`Self::set_limits`]).
    config: super::DiskQueueConfig,
    active: Option<Active>,
    next_id: u64,
    last_seq: Option<u64>,
    buf: Vec<u8>,
    /// A segment was created and its directory entry is not yet synced.
    dir_dirty: bool,
    failed: bool,
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl DiskQueueWriter {
    pub(crate) fn new(shared: Arc<Shared>, next_id: u64, last_seq: Option<u64>) -> Self {
        DiskQueueWriter {
            config: shared.config.clone(),
            shared,
            active: None,
            next_id,
            last_seq,
            buf: Vec::new(),
            dir_dirty: false,
            failed: false,
        }
    }

    /// Changes the limits while running: `QJournalFileSize` (from the next segment on),
    /// `QJournalSpaceMax`, `QJournalFreeSpaceMin` and `QLogWriteThrough` (from the next
    /// append on). These settings need no service restart.
    pub fn set_limits(
        &mut self,
        segment_bytes: u64,
        space_max_bytes: u64,
        free_space_min_bytes: u64,
        write_through: bool,
    ) {
        self.config.segment_bytes = segment_bytes;
        self.config.space_max_bytes = space_max_bytes;
        self.config.free_space_min_bytes = free_space_min_bytes;
        self.config.write_through = write_through;
    }

    /// The highest sequence number appended (or recovered, or committed); the next append
    /// must use a greater one.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    pub fn stats(&self) -> DiskQueueStats {
        self.shared.stats()
    }

    /// Append one record. In write-through mode it is durable when this returns.
    ///
    /// Errors: [`DiskQueueError::Full`] when a limit would be crossed (nothing written),
    /// [`DiskQueueError::SeqNotIncreasing`], [`DiskQueueError::RecordTooLarge`], I/O errors,
    /// and [`DiskQueueError::Failed`] after a failed sync.
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> Result<(), DiskQueueError> {
        if self.failed {
            return Err(DiskQueueError::Failed);
        }
        if let Some(last) = self.last_seq {
            if seq <= last {
                return Err(DiskQueueError::SeqNotIncreasing { seq, last });
            }
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(DiskQueueError::RecordTooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let size = record_size(payload.len());
        let seg_bytes = self.config.segment_bytes;
        let rotate = match &self.active {
            None => true,
            Some(a) => {
                self.shared.force_rotate.load(Ordering::Relaxed)
                    || (a.len + size > seg_bytes && a.len > SEGMENT_HEADER_LEN)
            }
        };
        // Rotation deletes the active segment right away if all of it is committed.
        let reclaim = match &self.active {
            Some(a) if rotate && self.fully_committed(a) => a.len,
            _ => 0,
        };
        let needed = size + if rotate { SEGMENT_HEADER_LEN } else { 0 };
        self.check_space(needed, reclaim)?;
        if rotate {
            self.rotate()?;
        }
        let Some(a) = self.active.as_mut() else {
            return Err(DiskQueueError::Failed);
        };
        encode_record(&mut self.buf, seq, payload);
        let path = segment_path(&self.shared.dir, a.id);
        if let Err(e) = a.file.write_all_at(&self.buf, a.len) {
            if a.file.set_len(a.len).is_err() {
                self.failed = true;
            }
            if is_no_space(&e) {
                return Err(self.out_of_space(needed));
            }
            if self.config.write_through {
                self.failed = true; // O_DSYNC: an error may mean a failed flush
            }
            return Err(io_err("write", &path)(e));
        }
        let wt = &self.config;
        if wt.durable && wt.write_through && wt.sync_mode == SyncMode::Fdatasync {
            if let Err(e) = a.file.sync_data() {
                let _ = a.file.set_len(a.len);
                self.failed = true;
                return Err(io_err("fdatasync", &path)(e));
            }
        }
        a.len += size;
        a.last_seq = Some(seq);
        {
            let mut st = self.shared.lock();
            if let Some(m) = st.find_mut(a.id) {
                m.end = a.len;
                m.file_len = a.len;
                m.last_seq = Some(seq);
            }
            self.shared.bytes_on_disk.fetch_add(size, Ordering::AcqRel);
            self.shared.queued.fetch_add(1, Ordering::AcqRel);
        }
        self.shared.data_ready.notify_all();
        self.last_seq = Some(seq);
        Ok(())
    }

    /// Make everything appended so far durable (a no-op in write-through mode, apart from
    /// nothing being left to sync).
    pub fn flush(&mut self) -> Result<(), DiskQueueError> {
        if self.failed {
            return Err(DiskQueueError::Failed);
        }
        if !self.config.durable {
            return Ok(());
        }
        if let Some(a) = &self.active {
            if let Err(e) = a.file.sync_data() {
                self.failed = true;
                return Err(io_err("fdatasync", &segment_path(&self.shared.dir, a.id))(
                    e,
                ));
            }
        }
        if self.dir_dirty {
            self.shared
                .dir_file
                .sync_all()
                .map_err(io_err("fsync", &self.shared.dir))?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// The file system said ENOSPC although the free-space check passed (someone else
    /// filled it, or no floor is configured).
    fn out_of_space(&self, needed: u64) -> DiskQueueError {
        DiskQueueError::Full {
            reason: FullReason::FreeSpace,
            needed,
            available: free_bytes(&self.shared.dir_file).unwrap_or(0),
            limit: self.config.free_space_min_bytes,
        }
    }

    fn fully_committed(&self, a: &Active) -> bool {
        let committed = self.shared.lock().committed;
        match (a.last_seq, committed) {
            (None, _) => true,
            (Some(l), Some(c)) => l <= c,
            (Some(_), None) => false,
        }
    }

    fn check_space(&self, needed: u64, reclaim: u64) -> Result<(), DiskQueueError> {
        let cfg = &self.config;
        if cfg.space_max_bytes > 0 {
            let used = self
                .shared
                .bytes_on_disk
                .load(Ordering::Acquire)
                .saturating_sub(reclaim);
            if used + needed > cfg.space_max_bytes {
                return Err(DiskQueueError::Full {
                    reason: FullReason::SpaceMax,
                    needed,
                    available: cfg.space_max_bytes.saturating_sub(used),
                    limit: cfg.space_max_bytes,
                });
            }
        }
        if cfg.free_space_min_bytes > 0 {
            let free =
                free_bytes(&self.shared.dir_file).map_err(io_err("statvfs", &self.shared.dir))?;
            if free < needed.saturating_add(cfg.free_space_min_bytes) {
                return Err(DiskQueueError::Full {
                    reason: FullReason::FreeSpace,
                    needed,
                    available: free,
                    limit: cfg.free_space_min_bytes,
                });
            }
        }
        Ok(())
    }

    /// Seal the active segment (synced, so only the newest segment can ever be torn) and
    /// start the next one.
    fn rotate(&mut self) -> Result<(), DiskQueueError> {
        let cfg = &self.config;
        if let Some(old) = self.active.take() {
            let path = segment_path(&self.shared.dir, old.id);
            // Write-through: every record and the header are durable already.
            if cfg.durable && !cfg.write_through {
                if let Err(e) = old.file.sync_data() {
                    self.failed = true;
                    return Err(io_err("fdatasync", &path)(e));
                }
            }
            let fully_committed = self.fully_committed(&old);
            let delete = {
                let mut st = self.shared.lock();
                self.shared.force_rotate.store(false, Ordering::Relaxed);
                let pos = st.segments.iter().position(|m| m.id == old.id);
                match pos {
                    Some(p) if fully_committed => {
                        st.segments.remove(p);
                        true
                    }
                    Some(p) => {
                        st.segments[p].sealed = true;
                        false
                    }
                    None => false,
                }
            };
            if delete {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) => log::warn!("journal: cannot remove {}: {e}", path.display()),
                }
                self.shared
                    .bytes_on_disk
                    .fetch_sub(old.len, Ordering::AcqRel);
            }
            self.shared.data_ready.notify_all();
        }
        let id = self.next_id;
        let path = segment_path(&self.shared.dir, id);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        if cfg.durable && cfg.write_through && cfg.sync_mode == SyncMode::Dsync {
            opts.custom_flags(libc::O_DSYNC);
        }
        let file = match opts.open(&path) {
            Ok(f) => f,
            Err(e) if is_no_space(&e) => return Err(self.out_of_space(SEGMENT_HEADER_LEN)),
            Err(e) => return Err(io_err("create", &path)(e)),
        };
        self.next_id += 1;
        let header = encode_segment_header(id);
        let written = file.write_all_at(&header, 0).and_then(|()| {
            if cfg.durable && cfg.write_through {
                file.sync_data()?;
                self.shared.dir_file.sync_all()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            if is_no_space(&e) {
                return Err(self.out_of_space(SEGMENT_HEADER_LEN));
            }
            return Err(io_err("write header", &path)(e));
        }
        self.dir_dirty |= !cfg.write_through;
        {
            let mut st = self.shared.lock();
            st.segments.push_back(SegMeta {
                id,
                end: SEGMENT_HEADER_LEN,
                file_len: SEGMENT_HEADER_LEN,
                last_seq: None,
                sealed: false,
                damaged: false,
            });
            self.shared
                .bytes_on_disk
                .fetch_add(SEGMENT_HEADER_LEN, Ordering::AcqRel);
        }
        self.active = Some(Active {
            id,
            file,
            len: SEGMENT_HEADER_LEN,
            last_seq: None,
        });
        Ok(())
    }
}

/// Bytes an unprivileged process may still allocate on the file system holding `dir`.
#[allow(clippy::unnecessary_cast)] // the field types differ between targets
fn free_bytes(dir: &File) -> io::Result<u64> {
    let s = crate::sys::fs::fstatvfs(dir)?;
    Ok((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

impl Drop for DiskQueueWriter {
    fn drop(&mut self) {
        // Wake a reader waiting for data so it can notice the producer is gone.
        self.shared.data_ready.notify_all();
    }
}
