//! Large writes straight to the disk, past the target's page cache.
//!
//! A replica is written and not read, and an op is acknowledged only once it is durable,
//! so a large write's trip through the page cache buys nothing: the bytes are copied into
//! freshly allocated cache pages, then written back by the next sync, and the pages hold
//! memory the host wants for itself. Measured on the 1 GiB scenario of `rill-bench
//! replication` (2 vCPUs), that copy was the target's largest cost, about 1 s of CPU per
//! GiB, more than both ends' TLS. With `O_DIRECT` the device reads the bytes from one
//! reused buffer.
//!
//! Only the aligned middle of a large write goes direct; its unaligned ends, and every
//! small write, stay buffered: a small direct write waits for the device, which costs more
//! than the copy it saves. The kernel keeps the two kinds coherent (a direct write first
//! writes back and drops cached pages it overlaps), and durability is unchanged: the
//! sync that precedes an acknowledgement commits the file system's journal and flushes
//! the device's cache, so direct writes are covered as buffered ones are.
//!
//! The bytes to write directly must sit at page-aligned addresses. The target's frame
//! reader receives a large write so that they do (`rill_ops::codec::data_alignment`), and then they
//! are written where they are; otherwise they are staged through one reused aligned buffer.
//!
//! `O_DIRECT` is switched on for the held descriptor only around the direct part
//! (`fcntl(F_SETFL)` may change it), so every other use of the file stays buffered. A file
//! system that refuses direct I/O (tmpfs before Linux 6.6, some FUSE file systems) is
//! written buffered from then on.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::sys;
use crate::sys::mem::AlignedBuf;

/// Alignment of a direct write's offset, length and memory. 4 KiB satisfies every block
/// device with logical blocks up to 4 KiB, which is every common one.
const ALIGN: usize = crate::net::proto::PAGE;
/// The least direct part worth the device's round trip (see the module documentation).
const DIRECT_MIN: usize = 512 * 1024;
/// Bytes copied to the aligned buffer and written per call.
const PIECE: usize = 1024 * 1024;

/// A reusable aligned buffer of `PIECE` bytes (allocated at the first direct write: a
/// `Vec<u8>` cannot promise the alignment, and allocating per write would fault fresh
/// pages in each time), and whether the replica's file system refused direct I/O.
#[derive(Default)]
pub(super) struct DirectWriter {
    buf: Option<AlignedBuf>,
    refused: bool,
}

impl DirectWriter {
    /// Writes all of `data` at `offset` in `file`, the aligned middle of a large write
    /// directly to the device.
    pub(super) fn write_all_at(&mut self, file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        let (head, middle) = match direct_part(offset, data.len()) {
            Some(part) if !self.refused => part,
            _ => return file.write_all_at(data, offset),
        };
        let (before, rest) = data.split_at(head);
        let (direct, after) = rest.split_at(middle);
        file.write_all_at(before, offset)?;
        let at = offset + head as u64;
        match self.write_direct(file, direct, at) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // Refused up front by this file system (or by its alignment): the rest of
                // the session writes buffered. A partial direct write is rewritten whole.
                self.refused = true;
                log::info!(
                    "the replica's file system refuses direct writes ({e}); \
                     writing through the page cache"
                );
                file.write_all_at(direct, at)?;
            }
            other => other?,
        }
        file.write_all_at(after, at + middle as u64)
    }

    fn write_direct(&mut self, file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        let flags = sys::fs::status_flags(file)?;
        sys::fs::set_status_flags(file, flags | libc::O_DIRECT)?;
        let written = self.write_pieces(file, data, offset);
        // Restored even if a write failed: the descriptor stays in the open set.
        let restored = sys::fs::set_status_flags(file, flags);
        written.and(restored)
    }

    fn write_pieces(&mut self, file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        // Received page-aligned (the target's frame reader places large writes so): the
        // device reads the bytes where they are.
        if (data.as_ptr() as usize).is_multiple_of(ALIGN) {
            return file.write_all_at(data, offset);
        }
        let buf = self
            .buf
            .get_or_insert_with(|| AlignedBuf::zeroed(PIECE, ALIGN))
            .as_mut_slice();
        for (i, piece) in data.chunks(PIECE).enumerate() {
            let staged = buf
                .get_mut(..piece.len())
                .ok_or_else(|| io::Error::other("direct piece larger than its buffer"))?;
            staged.copy_from_slice(piece);
            file.write_all_at(staged, offset + (i * PIECE) as u64)?;
        }
        Ok(())
    }
}

/// For a write of `len` bytes at `offset`: the length of its unaligned head and of the
/// aligned middle to write directly, if that middle is large enough.
fn direct_part(offset: u64, len: usize) -> Option<(usize, usize)> {
    let align = ALIGN as u64;
    let end = offset.checked_add(len as u64)?;
    let start = offset.checked_next_multiple_of(align)?;
    let stop = end - end % align;
    let middle = usize::try_from(stop.checked_sub(start)?).ok()?;
    (middle >= DIRECT_MIN).then(|| ((start - offset) as usize, middle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Which of the file's first `len` bytes' pages are in the page cache (pages of the
    /// system's page size, which is `ALIGN` on the machines the tests run on).
    fn cached_pages(file: &File, len: usize) -> Vec<bool> {
        sys::mem::resident_pages(file, len).expect("mincore")
    }

    #[test]
    fn only_a_large_aligned_middle_goes_direct() {
        let mib = 1 << 20;
        assert_eq!(direct_part(0, mib), Some((0, mib)));
        assert_eq!(direct_part(100, mib), Some((ALIGN - 100, mib - ALIGN)));
        assert_eq!(direct_part(0, DIRECT_MIN - 1), None);
        assert_eq!(
            direct_part(1, DIRECT_MIN),
            None,
            "the middle is one block short"
        );
        assert_eq!(direct_part(u64::MAX - 10, mib), None);
    }

    /// A large unaligned write over cached data: its middle goes past the page cache (the
    /// kernel drops the cached pages it overlaps, whole folios, so the ends' pages may go
    /// too), and the file reads back exactly as a plain write would have left it.
    #[test]
    fn a_large_write_lands_whole_with_its_middle_past_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica");
        let len = 3 << 20;
        std::fs::write(&path, vec![b'a'; len]).unwrap();
        let file = File::options().read(true).write(true).open(&path).unwrap();
        assert!(
            cached_pages(&file, len).iter().all(|&c| c),
            "written through the cache"
        );

        let (offset, data): (usize, Vec<u8>) =
            (1000, (0..2 * PIECE + 123).map(|i| i as u8).collect());
        let mut w = DirectWriter::default();
        w.write_all_at(&file, &data, offset as u64).unwrap();
        assert!(!w.refused, "the test's file system takes direct I/O");

        let (head, middle) = direct_part(offset as u64, data.len()).unwrap();
        let first = (offset + head) / ALIGN;
        let cached = cached_pages(&file, len);
        assert!(
            cached[first..first + middle / ALIGN].iter().all(|&c| !c),
            "the direct middle left no page in the cache"
        );

        let mut expected = vec![b'a'; len];
        expected[offset..offset + data.len()].copy_from_slice(&data);
        let mut got = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut got).unwrap();
        assert!(got == expected, "the file holds the write");
        // O_DIRECT was switched off again for the descriptor.
        let flags = sys::fs::status_flags(&file).unwrap();
        assert_eq!(flags & libc::O_DIRECT, 0);
    }

    /// Bytes that arrive where offsets and addresses cross pages together (as the target's
    /// frame reader places them) are written without the staging copy.
    #[test]
    fn data_placed_in_step_with_its_offset_is_written_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let (offset, len) = (1000usize, 2 * PIECE + 123);
        let backing: Vec<u8> = (0..len + 2 * ALIGN).map(|i| (i % 251) as u8).collect();
        let shift = (offset % ALIGN + ALIGN - backing.as_ptr() as usize % ALIGN) % ALIGN;
        let data = &backing[shift..shift + len];
        let mut w = DirectWriter::default();
        w.write_all_at(&file, data, offset as u64).unwrap();
        assert!(!w.refused, "the test's file system takes direct I/O");
        assert!(w.buf.is_none(), "nothing was staged");

        let (head, middle) = direct_part(offset as u64, len).unwrap();
        let first = (offset + head) / ALIGN;
        let cached = cached_pages(&file, offset + len);
        assert!(
            cached[first..first + middle / ALIGN].iter().all(|&c| !c),
            "the middle went past the page cache"
        );
        let mut got = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut got).unwrap();
        assert!(got[..offset].iter().all(|&b| b == 0));
        assert!(&got[offset..] == data, "the file holds the write");
    }
}
