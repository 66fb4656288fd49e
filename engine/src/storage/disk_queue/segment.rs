//! Segment files: names, buffered positional reads, and the record-by-record scan that
//! recovery and the live reader share.
//!
//! A segment is `<16 hex digits of its id>.seg`; ids only grow, so name order is append
//! order. Files with any other name are not the journal's and are left alone.
//!
//! The scan trusts nothing it reads: every length is checked against the bytes that are
//! actually there before anything is allocated or sliced, so no file content can make it
//! panic or allocate more than the file's size (bounded by `MAX_PAYLOAD` per record).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{
    check_record, parse_record_header, record_size, segment_header_ok, Damage, RECORD_HEADER_LEN,
    RECORD_MAGIC, SEGMENT_HEADER_LEN,
};

const SEGMENT_SUFFIX: &str = ".seg";
/// Bytes fetched per positional read when scanning or reading sequentially.
const CHUNK: usize = 256 * 1024;

pub(crate) fn segment_name(id: u64) -> String {
    format!("{id:016x}{SEGMENT_SUFFIX}")
}

pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_name(id))
}

/// The segment id a file name stands for, if it is a segment name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SEGMENT_SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// A window of a file kept in memory so sequential record reads cost one `pread` per
/// `CHUNK` rather than two per record.
#[derive(Default)]
pub(crate) struct Window {
    buf: Vec<u8>,
    start: u64,
}

impl Window {
    /// Bytes `[off, off + n)` of `file`, never reading at or past `limit`. `None` when the
    /// range crosses `limit` or the file turns out shorter.
    pub(crate) fn get(
        &mut self,
        file: &File,
        off: u64,
        n: usize,
        limit: u64,
    ) -> io::Result<Option<&[u8]>> {
        let Some(end) = off.checked_add(n as u64) else {
            return Ok(None);
        };
        if end > limit {
            return Ok(None);
        }
        let have = off >= self.start && end <= self.start + self.buf.len() as u64;
        if !have {
            let want = (n.max(CHUNK) as u64).min(limit - off) as usize;
            self.buf.clear();
            self.buf.resize(want, 0);
            self.start = off;
            let mut got = 0;
            while got < want {
                match file.read_at(&mut self.buf[got..], off + got as u64) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.clear();
                        return Err(e);
                    }
                }
            }
            self.buf.truncate(got);
            if got < n {
                return Ok(None);
            }
        }
        let at = (off - self.start) as usize;
        Ok(Some(&self.buf[at..at + n]))
    }
}

/// One step of reading records.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// `off == limit`: no more records.
    End,
    /// A valid record: its sequence number, payload length and frame size.
    Record { seq: u64, len: usize, size: u64 },
    /// The bytes at `off` are not a valid record.
    Bad(Damage),
}

/// Read and fully check the record at `off`, which must follow `prev` in sequence.
pub(crate) fn read_record(
    win: &mut Window,
    file: &File,
    off: u64,
    limit: u64,
    prev: Option<u64>,
) -> io::Result<Step> {
    if off >= limit {
        return Ok(Step::End);
    }
    let Some(h) = win.get(file, off, RECORD_HEADER_LEN as usize, limit)? else {
        return Ok(Step::Bad(Damage::Truncated));
    };
    let (seq, len) = match parse_record_header(h) {
        Ok(v) => v,
        Err(d) => return Ok(Step::Bad(d)),
    };
    let size = record_size(len);
    let Some(frame) = win.get(file, off, size as usize, limit)? else {
        return Ok(Step::Bad(Damage::Truncated));
    };
    if let Err(d) = check_record(frame, len) {
        return Ok(Step::Bad(d));
    }
    if let Some(prev) = prev {
        if seq <= prev {
            return Ok(Step::Bad(Damage::SeqNotIncreasing { prev, seq }));
        }
    }
    Ok(Step::Record { seq, len, size })
}

/// Valid records found again after damage, by stepping over 8-byte boundaries.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resync {
    pub last_seq: u64,
    pub records: u64,
}

/// Where a segment stops being readable, and why.
#[derive(Clone, Debug)]
pub(crate) struct ScanDamage {
    pub offset: u64,
    pub kind: Damage,
    /// Valid records after the damage, if any: tells middle corruption from a torn tail.
    pub resync: Option<Resync>,
}

/// What a full scan of one segment found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scan {
    pub file_len: u64,
    /// End of the last valid record before any damage (the header length if none).
    pub valid_end: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub records: u64,
    /// Valid records with a sequence number above the committed position.
    pub records_pending: u64,
    pub damage: Option<ScanDamage>,
}

/// Scan segment `id` from its header to its end. `prev` is the last sequence number of
/// the segments before it; `committed` only decides which records count as pending.
pub(crate) fn scan(
    file: &File,
    id: u64,
    prev: Option<u64>,
    committed: Option<u64>,
) -> io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut win = Window::default();
    let mut s = Scan {
        file_len,
        valid_end: SEGMENT_HEADER_LEN,
        ..Scan::default()
    };
    let header_ok = win
        .get(file, 0, SEGMENT_HEADER_LEN as usize, file_len)?
        .is_some_and(|h| segment_header_ok(h, id));
    if !header_ok {
        s.valid_end = 0;
        s.damage = Some(ScanDamage {
            offset: 0,
            kind: Damage::BadHeader,
            resync: resync(&mut win, file, SEGMENT_HEADER_LEN, file_len, prev)?,
        });
        return Ok(s);
    }
    let mut last = prev;
    let mut off = SEGMENT_HEADER_LEN;
    loop {
        match read_record(&mut win, file, off, file_len, last)? {
            Step::End => break,
            Step::Record { seq, size, .. } => {
                s.first_seq.get_or_insert(seq);
                s.last_seq = Some(seq);
                s.records += 1;
                if committed.is_none_or(|c| seq > c) {
                    s.records_pending += 1;
                }
                last = Some(seq);
                off += size;
            }
            Step::Bad(kind) => {
                s.damage = Some(ScanDamage {
                    offset: off,
                    kind,
                    resync: resync(&mut win, file, off + 8, file_len, last)?,
                });
                break;
            }
        }
    }
    s.valid_end = off;
    Ok(s)
}

/// Look for the first valid record at an 8-aligned offset from `from` on, then count the
/// run of valid records that follows it.
fn resync(
    win: &mut Window,
    file: &File,
    from: u64,
    limit: u64,
    prev: Option<u64>,
) -> io::Result<Option<Resync>> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut off = from;
    while off + RECORD_HEADER_LEN <= limit {
        let hit = win.get(file, off, 4, limit)?.is_some_and(|m| m == magic);
        if hit {
            if let Step::Record { seq, size, .. } = read_record(win, file, off, limit, prev)? {
                let mut r = Resync {
                    last_seq: seq,
                    records: 1,
                };
                let mut at = off + size;
                while let Step::Record { seq, size, .. } =
                    read_record(win, file, at, limit, Some(r.last_seq))?
                {
                    r.last_seq = seq;
                    r.records += 1;
                    at += size;
                }
                return Ok(Some(r));
            }
        }
        off += 8;
    }
    Ok(None)
}
