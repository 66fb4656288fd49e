//! The consumer half: reads records in order across segments while the writer appends,
//! and commits.
//!
//! The reader keeps its own descriptor and read window per segment. It takes the shared
//! lock only when it reaches the end of what it last knew of its segment, to learn the new
//! end or that the segment is sealed, so a busy reader costs the writer one uncontended
//! lock per window rather than per record.
//!
//! `commit(seq)` writes the head file durably first, then deletes the segments that hold
//! nothing above `seq`; a crash in between leaves segments that open deletes again.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::head::Head;
use super::record::{Damage, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::segment::{read_record, segment_path, Step, Window};
use super::{io_err, CorruptSegment, DiskQueueError, DiskQueueStats, Shared, State};

/// One record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

struct Cursor {
    id: u64,
    file: File,
    win: Window,
    off: u64,
    /// Readable end as last learned from the shared state.
    end: u64,
}

/// Reads and commits records. One per journal; may move to another thread.
pub struct DiskQueueReader {
    shared: Arc<Shared>,
    head: Head,
    cur: Option<Cursor>,
    /// When `cur` is `None`: the lowest segment id still to read.
    next_id: u64,
    /// Committed position at open: records at or below it are skipped, not delivered.
    skip_through: Option<u64>,
    /// Last sequence number read (delivered or skipped), for the ordering check.
    prev: Option<u64>,
    last_delivered: Option<u64>,
    /// Delivered and not yet committed, oldest first.
    uncommitted: VecDeque<u64>,
}

impl DiskQueueReader {
    pub(crate) fn new(shared: Arc<Shared>, head: Head) -> Self {
        let committed = head.committed();
        DiskQueueReader {
            shared,
            head,
            cur: None,
            next_id: 0,
            skip_through: committed,
            prev: None,
            last_delivered: None,
            uncommitted: VecDeque::new(),
        }
    }

    pub fn stats(&self) -> DiskQueueStats {
        self.shared.stats()
    }

    /// The durable committed position.
    pub fn committed(&self) -> Option<u64> {
        self.head.committed()
    }

    /// The last sequence number returned by `next`.
    pub fn last_delivered(&self) -> Option<u64> {
        self.last_delivered
    }

    /// The next record, or `None` when the reader has caught up with the writer.
    // Not an `Iterator`: that would have to hide I/O errors or wrap every item in a Result.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record>, DiskQueueError> {
        let mut payload = Vec::new();
        Ok(self
            .next_into(&mut payload)?
            .map(|seq| Record { seq, payload }))
    }

    /// Like `next`, but copies the payload into `out` (replacing its contents) and returns
    /// the sequence number, so a consumer can reuse one buffer.
    ///
    /// [`DiskQueueError::Corrupt`] means a segment was found damaged while reading (it was
    /// fine when written or scanned); the rest of that segment is skipped and the next
    /// call continues with the following segment.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Result<Option<u64>, DiskQueueError> {
        loop {
            if self.cur.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let Some(c) = self.cur.as_mut() else {
                return Ok(None);
            };
            let path = || segment_path(&self.shared.dir, c.id);
            let step = read_record(&mut c.win, &c.file, c.off, c.end, self.prev)
                .map_err(|e| io_err("read", &path())(e))?;
            match step {
                Step::Record { seq, len, size } => {
                    let at = c.off + RECORD_HEADER_LEN;
                    let payload = c
                        .win
                        .get(&c.file, at, len, c.end)
                        .map_err(|e| io_err("read", &path())(e))?
                        .ok_or_else(|| {
                            io_err("read", &path())(io::ErrorKind::UnexpectedEof.into())
                        })?;
                    c.off += size;
                    self.prev = Some(seq);
                    if self.skip_through.is_some_and(|s| seq <= s) {
                        continue;
                    }
                    out.clear();
                    out.extend_from_slice(payload);
                    self.last_delivered = Some(seq);
                    self.uncommitted.push_back(seq);
                    self.shared.delivered.fetch_add(1, Ordering::AcqRel);
                    return Ok(Some(seq));
                }
                Step::End => {
                    let (id, off) = (c.id, c.off);
                    let known = {
                        let mut st = self.shared.lock();
                        st.find_mut(id).map(|m| (m.end, m.sealed))
                    };
                    match known {
                        Some((end, _)) if end > off => c.end = end,
                        // Deleted (fully committed) or finished: on to the next one.
                        None | Some((_, true)) => self.leave_segment(id),
                        Some((_, false)) => return Ok(None),
                    }
                }
                Step::Bad(damage) => return Err(self.damaged_while_reading(damage)),
            }
        }
    }

    /// Open the first segment at or after `next_id`; false when there is none yet.
    fn open_next(&mut self) -> Result<bool, DiskQueueError> {
        loop {
            let meta = {
                let st = self.shared.lock();
                st.segments
                    .iter()
                    .find(|m| m.id >= self.next_id)
                    .map(|m| (m.id, m.end))
            };
            let Some((id, end)) = meta else {
                return Ok(false);
            };
            let path = segment_path(&self.shared.dir, id);
            match File::open(&path) {
                Ok(file) => {
                    self.cur = Some(Cursor {
                        id,
                        file,
                        win: Window::default(),
                        off: SEGMENT_HEADER_LEN,
                        end,
                    });
                    return Ok(true);
                }
                // Deleted by the writer's rotation after everything in it was committed
                // (it left the list first); anything else deleted it behind our back.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let mut st = self.shared.lock();
                    if let Some(p) = st.segments.iter().position(|m| m.id == id) {
                        log::error!("journal: segment {} vanished unread", path.display());
                        if let Some(m) = st.segments.remove(p) {
                            self.shared
                                .bytes_on_disk
                                .fetch_sub(m.file_len, Ordering::AcqRel);
                        }
                    }
                    self.next_id = id + 1;
                }
                Err(e) => return Err(io_err("open", &path)(e)),
            }
        }
    }

    fn leave_segment(&mut self, id: u64) {
        self.cur = None;
        self.next_id = id + 1;
    }

    fn damaged_while_reading(&mut self, damage: Damage) -> DiskQueueError {
        let Some(c) = self.cur.take() else {
            return DiskQueueError::Failed;
        };
        {
            let mut st = self.shared.lock();
            if let Some(m) = st.find_mut(c.id) {
                m.damaged = true;
                m.end = c.off;
                if !m.sealed {
                    self.shared.force_rotate.store(true, Ordering::Relaxed);
                }
            }
        }
        log::error!(
            "journal: segment {} damaged at offset {}: {damage}",
            c.id,
            c.off
        );
        self.next_id = c.id + 1;
        DiskQueueError::Corrupt(CorruptSegment {
            segment: c.id,
            path: segment_path(&self.shared.dir, c.id),
            first_bad_offset: c.off,
            damage,
            seqs_lost_from: self.prev.map_or(0, |p| p.saturating_add(1)),
            seqs_lost_to: None,
            records_after_damage: 0,
        })
    }

    /// Whether a record may be readable now (a hint: `next` may still return `None`).
    fn has_data(&self, st: &State) -> bool {
        match &self.cur {
            Some(c) => st
                .segments
                .iter()
                .any(|m| m.id > c.id || (m.id == c.id && m.end > c.off)),
            None => st
                .segments
                .iter()
                .any(|m| m.id >= self.next_id && (m.sealed || m.end > SEGMENT_HEADER_LEN)),
        }
    }

    /// Block until the writer may have published something new, or `timeout` passes.
    /// Returns whether there may be data to read.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if self.has_data(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = match self.shared.data_ready.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Everything up to and including `seq` has been handed on: make that durable, then
    /// delete the segments holding nothing above it. `seq` must not exceed the last
    /// sequence number read; committing at or below the committed position is a no-op.
    pub fn commit(&mut self, seq: u64) -> Result<(), DiskQueueError> {
        let committed = self.head.committed();
        if committed.is_none_or(|c| seq > c) {
            if self.last_delivered.is_none_or(|d| seq > d) {
                return Err(DiskQueueError::CommitBeyondDelivered {
                    seq,
                    delivered: self.last_delivered,
                });
            }
            let head_path = self.shared.dir.join(super::head::HEAD_NAME);
            self.head
                .write(seq, self.shared.config.durable)
                .map_err(io_err("write head", &head_path))?;
            let mut n = 0;
            while self.uncommitted.front().is_some_and(|&s| s <= seq) {
                self.uncommitted.pop_front();
                n += 1;
            }
            self.shared.committed_records.fetch_add(n, Ordering::AcqRel);
        }
        self.delete_committed_segments();
        Ok(())
    }

    fn delete_committed_segments(&mut self) {
        let Some(committed) = self.head.committed() else {
            return;
        };
        // Segments below this id have been read to their end.
        let passed = self.cur.as_ref().map_or(self.next_id, |c| c.id);
        let mut doomed = Vec::new();
        {
            let mut st = self.shared.lock();
            st.committed = Some(committed);
            while let Some(m) = st.segments.front() {
                let all_committed = m.last_seq.is_none_or(|l| l <= committed);
                // A damaged or empty segment goes once the reader is past it; a normal one
                // as soon as its last record is committed (hence read).
                let ok = m.sealed
                    && all_committed
                    && (m.id < passed || (!m.damaged && m.last_seq.is_some()));
                if !ok {
                    break;
                }
                doomed.push((m.id, m.file_len));
                st.segments.pop_front();
            }
        }
        for (id, len) in doomed {
            let path = segment_path(&self.shared.dir, id);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("journal: cannot remove {}: {e}", path.display());
                }
            }
            self.shared.bytes_on_disk.fetch_sub(len, Ordering::AcqRel);
            if self.cur.as_ref().is_some_and(|c| c.id == id) {
                self.leave_segment(id);
            }
        }
    }
}

impl std::fmt::Debug for DiskQueueReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskQueueReader")
            .field("segment", &self.cur.as_ref().map(|c| (c.id, c.off)))
            .field("last_delivered", &self.last_delivered)
            .field("committed", &self.head.committed())
            .finish()
    }
}
