//! The second layer: changes of a file's data that no system call describes.
//!
//! The syscall programs see what a call wrote. Data also changes without one: stores into
//! a shared writable mapping, io_uring requests (run by the kernel on the submitter's
//! behalf, often from a worker), and asynchronous direct I/O that completes after
//! `io_submit` returned. These programs hang on subsystem tracepoints below the system
//! calls and turn such a change into a dirty mark on its file (`DIRTY_MODIFIED`), which
//! the reader names and the engine remirrors. They make no data operations: what they
//! see carries no data, and the exact operations of the syscall layer stay exact. (The
//! io_uring requests that change names are the exception, see `uring`: what they did is
//! all in the request, so they become operations.)
//!
//! - `writeback_dirty_folio` (a page-cache folio turned dirty) and
//!   `sb_clear_inode_writeback` (the last page of an inode under writeback written back,
//!   after `msync`, `fsync`, `sync` or background writeback) mark files in `RILL_MAPPED`,
//!   those with a shared writable mapping. Only those: the same event fires inside every
//!   buffered `write(2)`, already captured exactly. Writeback matters because a store into
//!   a page that is already dirty makes no event; once the page has been written back it
//!   is write-protected again and the next store dirties it anew.
//! - `io_uring_complete`: a request that changes its file's data (write, fallocate,
//!   splice into it, ftruncate) completed; the bytes are in place. A request that
//!   changes names or attributes (rename, unlink, mkdir, symlink, link, open with
//!   `O_CREAT` or `O_TRUNC`, setxattr) is handed to `uring`, which makes it the exact
//!   operation the matching system call would have.
//! - `iomap_dio_complete`: an asynchronous direct write completed (AIO, io_uring) on a
//!   file system using iomap (ext4, XFS). A synchronous one is inside its system call.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use rill_abi::{record::DIRTY_MODIFIED, DirtyKey, DriverConfig};

use crate::emit::{config, excluded, mark_dirty, watched};
use crate::kernel::{kptr, kread, off, Off};
use crate::maps::RILL_MAPPED;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
/// `kiocb.ki_flags`: the request writes.
const IOCB_WRITE: u32 = 1 << 18;

/// Remembers a file with a shared writable mapping, by its `struct inode` address: the
/// tracepoints give that address, so a page dirtied in any other file costs one map
/// lookup and no kernel read. An address reused by another inode once this one is freed
/// can only mark that file needlessly.
#[inline(always)]
pub fn track_mapped(inode: u64) {
    let _ = RILL_MAPPED.insert(&inode, &1, 0);
}

/// (dev, ino) of an inode.
#[inline(always)]
fn inode_key(o: &Off, inode: u64) -> Option<DirtyKey> {
    let sb = kptr(inode, o.RILL_OFF_INODE_SB())?;
    Some(DirtyKey {
        dev: kread::<u32>(sb, o.RILL_OFF_SB_DEV()) as u64,
        ino: kread(inode, o.RILL_OFF_INODE_INO()),
    })
}

/// Marks a regular file with a name on a watched file system dirty.
#[inline(always)]
pub fn mark_file(cfg: &DriverConfig, o: &Off, file: u64) {
    let Some(inode) = kptr(file, o.RILL_OFF_FILE_INODE()) else {
        return;
    };
    let mode = kread::<u16>(inode, o.RILL_OFF_INODE_MODE()) as u32;
    let nlink: u32 = kread(inode, o.RILL_OFF_INODE_NLINK());
    if mode & S_IFMT != S_IFREG || nlink == 0 {
        return;
    }
    let Some(key) = inode_key(o, inode) else {
        return;
    };
    if watched(cfg, key.dev) {
        mark_dirty(key, DIRTY_MODIFIED);
    }
}

/// Marks a mapped file's inode dirty.
#[inline(always)]
fn mapped_changed(inode: u64) {
    // SAFETY: the value is only tested for presence.
    if unsafe { RILL_MAPPED.get(&inode) }.is_none() || config().is_none() {
        return;
    }
    if let Some(key) = inode_key(&off(), inode) {
        mark_dirty(key, DIRTY_MODIFIED);
    }
}

#[raw_tracepoint(tracepoint = "writeback_dirty_folio")]
pub fn rill_dirtied(ctx: RawTracePointContext) -> i32 {
    // (struct folio *, struct address_space *)
    let mapping: u64 = ctx.arg(1);
    if let Some(inode) = kptr(mapping, off().RILL_OFF_MAPPING_HOST()) {
        mapped_changed(inode);
    }
    0
}

#[raw_tracepoint(tracepoint = "sb_clear_inode_writeback")]
pub fn rill_wrote_back(ctx: RawTracePointContext) -> i32 {
    // (struct inode *)
    mapped_changed(ctx.arg(0));
    0
}

/// io_uring opcodes that change the data of the request's file: WRITEV, WRITE_FIXED,
/// FALLOCATE, WRITE, SPLICE (into the file), FTRUNCATE, WRITEV_FIXED.
#[inline(always)]
fn uring_writes(op: u8) -> bool {
    matches!(op, 2 | 5 | 17 | 23 | 30 | 55 | 61)
}

#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn rill_uring_done(ctx: RawTracePointContext) -> i32 {
    // (struct io_ring_ctx *, void *req, struct io_uring_cqe *)
    let req: u64 = ctx.arg(1);
    let cqe: u64 = ctx.arg(2);
    let Some(cfg) = config() else { return 0 };
    let o = off();
    if req == 0 {
        return 0;
    }
    let op: u8 = kread(req, o.RILL_OFF_IO_REQ_OPCODE());
    let res: i32 = kread(cqe, o.RILL_OFF_CQE_RES());
    if crate::uring::changes_names(op) && !excluded() {
        crate::uring::completed(&ctx, req, op, res);
        return 0;
    }
    if !uring_writes(op) || res < 0 || excluded() {
        return 0;
    }
    if let Some(file) = kptr(req, o.RILL_OFF_IO_REQ_FILE()) {
        mark_file(cfg, &o, file);
    }
    0
}

#[raw_tracepoint(tracepoint = "iomap_dio_complete")]
pub fn rill_dio_done(ctx: RawTracePointContext) -> i32 {
    // (struct kiocb *, int error, ssize_t ret)
    let iocb: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(2);
    let Some(cfg) = config() else { return 0 };
    let o = off();
    let flags: u32 = kread(iocb, o.RILL_OFF_KIOCB_FLAGS());
    // No completion callback: a synchronous call, captured by the syscall layer.
    let asynchronous = kread::<u64>(iocb, o.RILL_OFF_KIOCB_COMPLETE()) != 0;
    if ret <= 0 || flags & IOCB_WRITE == 0 || !asynchronous {
        return 0;
    }
    if let Some(file) = kptr(iocb, o.RILL_OFF_KIOCB_FILP()) {
        mark_file(cfg, &o, file);
    }
    0
}
