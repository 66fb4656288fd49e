//! The head file: the durable committed position.
//!
//! Why two slots instead of write-temp-then-rename: a commit happens every time the
//! consumer hands a batch on, so its cost matters. Rename needs the temporary file's data
//! synced, the rename, and the directory synced (two flushes plus metadata journalling).
//! Here a commit overwrites one 32-byte slot inside an already allocated file and issues one
//! `fdatasync` (no size or block change, so ext4 flushes data only). The two slots sit in
//! different 512-byte sectors and alternate by generation: a torn write can damage only
//! the slot being written, whose crc then fails, and the other slot still holds the
//! previous commit. Open takes the valid slot with the highest generation.
//!
//! The file itself is created once, written to a temporary name, synced, and renamed into
//! place (then the directory synced), so it never exists half-written.
//!
//! Slot layout (32 bytes, little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"RJHD"` |
//! | 4 | 2 | format version (1) |
//! | 6 | 2 | flags: bit 0 = a position is committed |
//! | 8 | 8 | generation (one more per commit) |
//! | 16 | 8 | committed sequence number (0 when flag bit 0 is clear) |
//! | 24 | 4 | crc32c of bytes 0..24 |
//! | 28 | 4 | reserved, zero |

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const HEAD_MAGIC: u32 = u32::from_le_bytes(*b"RJHD");
const SLOT_LEN: usize = 32;
const SLOT_STRIDE: u64 = 512;
const FILE_LEN: usize = 1024;

pub(crate) const HEAD_NAME: &str = "head";
const HEAD_TMP_NAME: &str = "head.tmp";

/// The open head file and the last generation written.
pub(crate) struct Head {
    file: File,
    generation: u64,
    committed: Option<u64>,
}

fn encode_slot(generation: u64, committed: Option<u64>) -> [u8; SLOT_LEN] {
    let mut s = [0u8; SLOT_LEN];
    s[0..4].copy_from_slice(&HEAD_MAGIC.to_le_bytes());
    s[4..6].copy_from_slice(&1u16.to_le_bytes());
    s[6..8].copy_from_slice(&(committed.is_some() as u16).to_le_bytes());
    s[8..16].copy_from_slice(&generation.to_le_bytes());
    s[16..24].copy_from_slice(&committed.unwrap_or(0).to_le_bytes());
    let crc = crc32c::crc32c(&s[0..24]);
    s[24..28].copy_from_slice(&crc.to_le_bytes());
    s
}

/// `(generation, committed)` of a valid slot.
fn decode_slot(s: &[u8]) -> Option<(u64, Option<u64>)> {
    let u32_at = |at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    let u16_at = |at: usize| u16::from_le_bytes(s[at..at + 2].try_into().unwrap());
    if s.len() < SLOT_LEN
        || u32_at(0) != HEAD_MAGIC
        || u16_at(4) != 1
        || u16_at(6) > 1
        || u32_at(28) != 0
        || u32_at(24) != crc32c::crc32c(&s[0..24])
    {
        return None;
    }
    let committed = (u16_at(6) == 1).then(|| u64_at(16));
    Some((u64_at(8), committed))
}

/// Outcome of reading the head file at open.
pub(crate) enum HeadState {
    /// No head file.
    Missing,
    /// A file exists but neither slot is valid.
    Corrupt,
    Valid(Head),
}

impl Head {
    /// Open and read an existing head file.
    pub(crate) fn open(dir: &Path) -> io::Result<HeadState> {
        let path = dir.join(HEAD_NAME);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HeadState::Missing),
            Err(e) => return Err(e),
        };
        let mut best: Option<(u64, Option<u64>)> = None;
        let mut slot = [0u8; SLOT_LEN];
        for i in 0..2u64 {
            match file.read_exact_at(&mut slot, i * SLOT_STRIDE) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => continue,
                Err(e) => return Err(e),
            }
            if let Some(s) = decode_slot(&slot) {
                if best.is_none_or(|b| s.0 > b.0) {
                    best = Some(s);
                }
            }
        }
        Ok(match best {
            None => HeadState::Corrupt,
            Some((generation, committed)) => HeadState::Valid(Head {
                file,
                generation,
                committed,
            }),
        })
    }

    /// Create a fresh head file (nothing committed) atomically: temporary file, sync,
    /// rename, sync directory.
    pub(crate) fn create(dir: &Path, dir_file: &File) -> io::Result<Head> {
        let tmp: PathBuf = dir.join(HEAD_TMP_NAME);
        let mut bytes = vec![0u8; FILE_LEN];
        bytes[..SLOT_LEN].copy_from_slice(&encode_slot(0, None));
        {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all_at(&bytes, 0)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join(HEAD_NAME))?;
        dir_file.sync_all()?;
        match Head::open(dir)? {
            HeadState::Valid(h) => Ok(h),
            _ => Err(io::Error::other(
                "head file unreadable right after creation",
            )),
        }
    }

    /// Remove a leftover temporary head file from an interrupted `create`.
    pub(crate) fn remove_leftover_tmp(dir: &Path) {
        let _ = fs::remove_file(dir.join(HEAD_TMP_NAME));
    }

    pub(crate) fn committed(&self) -> Option<u64> {
        self.committed
    }

    /// Record `committed`: overwrite the older slot, then (if `durable`) `fdatasync`.
    pub(crate) fn write(&mut self, committed: u64, durable: bool) -> io::Result<()> {
        let generation = self.generation + 1;
        let slot = encode_slot(generation, Some(committed));
        self.file
            .write_all_at(&slot, (generation % 2) * SLOT_STRIDE)?;
        if durable {
            self.file.sync_data()?;
        }
        self.generation = generation;
        self.committed = Some(committed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_alternate_and_a_torn_slot_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let dir_file = File::open(dir.path()).unwrap();
        assert!(matches!(
            Head::open(dir.path()).unwrap(),
            HeadState::Missing
        ));
        let mut h = Head::create(dir.path(), &dir_file).unwrap();
        assert_eq!(h.committed(), None);
        h.write(10, true).unwrap();
        h.write(20, true).unwrap();
        let reopen = |p: &Path| match Head::open(p).unwrap() {
            HeadState::Valid(h) => h.committed(),
            _ => panic!("head not valid"),
        };
        assert_eq!(reopen(dir.path()), Some(20));
        // Tear the newest slot (generation 2 lives in slot 0): the previous commit wins.
        let f = OpenOptions::new()
            .write(true)
            .open(dir.path().join(HEAD_NAME))
            .unwrap();
        f.write_all_at(&[0xff; 8], 12).unwrap();
        assert_eq!(reopen(dir.path()), Some(10));
        f.write_all_at(&[0xff; 8], SLOT_STRIDE + 12).unwrap();
        assert!(matches!(
            Head::open(dir.path()).unwrap(),
            HeadState::Corrupt
        ));
    }
}
