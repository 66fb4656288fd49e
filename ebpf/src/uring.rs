//! io_uring requests that change names or attributes, as exact operations.
//!
//! A request the syscall layer cannot see (`io_uring_enter` carries no names) is
//! captured at its completion (`io_uring_complete`, via `below::rill_uring_done`), in
//! completion order, as the record the matching system call would have made: rename,
//! unlink or rmdir, mkdir, symlink, link, setxattr, create or truncate.
//!
//! What a completion can still read, and what it cannot. The request's own command
//! area (`io_rename`, `io_unlink`, `io_mkdir`, `io_link`, `io_open`, `io_xattr`, laid
//! over the `io_kiocb`) is intact: dirfds, flags, mode, the opened file's result. The
//! names are not: each is a `struct filename` the kernel put when the operation ran
//! (`do_renameat2` and its kin free them), and the attribute name of a setxattr is freed
//! with it. So `rill_uring_sub`, on `io_uring_submit_req` (after the request's prep,
//! while the names are live), copies them into `RILL_URING`, keyed by the request's
//! address, and the completion takes them out. The directories the names are relative
//! to are resolved at completion, as the syscall layer does at exit: the completion runs
//! in the submitter or one of its io-wq workers, which share its files and working
//! directory.
//!
//! A copy is used only if it is this request's: the submission removes any older copy
//! under the address (requests are recycled), and the copy carries the request's user
//! data and address at both ends, checked at completion (an LRU map may reuse an entry's
//! memory for another while it is read). Without a copy (the capture started between
//! submission and completion, more than `RILL_URING` holds in flight) a completion
//! makes the dirty mark for "unknown" (every root rescanned): always right, never a
//! wrong name. Files an operation opened or names (`OPENAT` with `O_CREAT`/`O_TRUNC`,
//! `FSETXATTR`) need no copy of a path: their `struct file` is walked like a syscall's.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use rill_abi::{
    record::{DIRTY_MODIFIED, DIRTY_PATH_UNKNOWN},
    DirtyKey, Kind,
};

use crate::emit::{config, excluded, mark_dirty, watched};
use crate::handlers::{fd_record, key, name_record, open_file, opened, two_names, Call};
use crate::kernel::{kptr, kread, off, umask, Off, AT_FDCWD};
use crate::maps::{RILL_URING, RILL_URING_OPS, RILL_URING_TMP};

/// Set by the loader when the running kernel keeps each request's names as `struct
/// filename *` (`rill_driver_linux::btf::uring_filenames_are_pointers`); otherwise no
/// name is copied and every such request is a rescan mark.
#[no_mangle]
static RILL_URING_NAMES: u64 = 0;

/// io_uring opcodes (uapi `enum io_uring_op`, fixed numbers).
pub const OP_OPENAT: u8 = 18;
pub const OP_OPENAT2: u8 = 28;
pub const OP_RENAMEAT: u8 = 35;
pub const OP_UNLINKAT: u8 = 36;
pub const OP_MKDIRAT: u8 = 37;
pub const OP_SYMLINKAT: u8 = 38;
pub const OP_LINKAT: u8 = 39;
pub const OP_FSETXATTR: u8 = 41;
pub const OP_SETXATTR: u8 = 42;

const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const AT_REMOVEDIR: i32 = 0x200;
/// PATH_MAX with its NUL: `getname` refuses longer names, so a copy is never cut short.
const NAME_BYTES: usize = 4096;

/// The names of one request, copied at submission.
#[repr(C)]
pub struct UringNames {
    req: u64,
    user_data: u64,
    opcode: u64,
    /// Bit `i` set: `names[i]` was read (an empty name counts: `AT_EMPTY_PATH`).
    read: u64,
    names: [[u8; NAME_BYTES]; 2],
    /// `req` and `user_data` again: a value overwritten while it was copied out differs
    /// from its head here.
    req_end: u64,
    user_data_end: u64,
}

/// Opcodes whose completion is handled here.
#[inline(always)]
pub fn changes_names(op: u8) -> bool {
    matches!(
        op,
        OP_OPENAT
            | OP_OPENAT2
            | OP_RENAMEAT
            | OP_UNLINKAT
            | OP_MKDIRAT
            | OP_SYMLINKAT
            | OP_LINKAT
            | OP_FSETXATTR
            | OP_SETXATTR
    )
}

/// The request's command area: the union that begins with its `struct file *` (each
/// operation's struct starts with that same member).
#[inline(always)]
fn cmd(o: &Off, req: u64) -> u64 {
    req + o.RILL_OFF_IO_REQ_FILE()
}

#[inline(always)]
fn user_data(o: &Off, req: u64) -> u64 {
    kread(req, o.RILL_OFF_IO_REQ_CQE() + o.RILL_OFF_IO_CQE_USER_DATA())
}

/// The text of the `struct filename *` at `at`, or 0.
#[inline(always)]
fn filename(o: &Off, at: u64) -> u64 {
    kptr(at, 0).map_or(0, |f| kread(f, o.RILL_OFF_FILENAME_NAME()))
}

/// The attribute name of an xattr request, or 0.
#[inline(always)]
fn xattr_name(o: &Off, c: u64) -> u64 {
    let kname: u64 = kread(c, o.RILL_OFF_IO_XATTR_CTX() + o.RILL_OFF_XATTR_CTX_KNAME());
    if kname == 0 {
        0
    } else {
        kname + o.RILL_OFF_XATTR_NAME_NAME()
    }
}

/// The kernel strings a request's completion needs, as (first, second); 0 for none.
/// An open is copied only when it creates or truncates into a fixed-file slot: any
/// other open's file is found through the descriptor it returns.
#[inline(always)]
fn names_of(o: &Off, req: u64, op: u8) -> (u64, u64) {
    let c = cmd(o, req);
    match op {
        OP_RENAMEAT => (
            filename(o, c + o.RILL_OFF_IO_RENAME_OLDPATH()),
            filename(o, c + o.RILL_OFF_IO_RENAME_NEWPATH()),
        ),
        OP_SYMLINKAT | OP_LINKAT => (
            filename(o, c + o.RILL_OFF_IO_LINK_OLDPATH()),
            filename(o, c + o.RILL_OFF_IO_LINK_NEWPATH()),
        ),
        OP_UNLINKAT => (filename(o, c + o.RILL_OFF_IO_UNLINK_FILENAME()), 0),
        OP_MKDIRAT => (filename(o, c + o.RILL_OFF_IO_MKDIR_FILENAME()), 0),
        OP_OPENAT | OP_OPENAT2 => {
            let flags: u64 = kread(c, o.RILL_OFF_IO_OPEN_HOW());
            let slot: u32 = kread(c, o.RILL_OFF_IO_OPEN_FILE_SLOT());
            if flags & (O_CREAT | O_TRUNC) == 0 || slot == 0 {
                return (0, 0);
            }
            (filename(o, c + o.RILL_OFF_IO_OPEN_FILENAME()), 0)
        }
        OP_SETXATTR => (
            filename(o, c + o.RILL_OFF_IO_XATTR_FILENAME()),
            xattr_name(o, c),
        ),
        OP_FSETXATTR => (0, xattr_name(o, c)),
        _ => (0, 0),
    }
}

/// Copies a kernel string into `to`; whether it was read whole.
#[inline(always)]
fn copy_name(to: &mut [u8; NAME_BYTES], from: u64) -> bool {
    if from == 0 {
        return false;
    }
    // SAFETY: the helper writes at most NAME_BYTES into `to`, NUL included.
    let n = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
            to.as_mut_ptr() as *mut _,
            NAME_BYTES as u32,
            from as *const _,
        )
    };
    n > 0
}

#[raw_tracepoint(tracepoint = "io_uring_submit_req")]
pub fn rill_uring_sub(ctx: RawTracePointContext) -> i32 {
    // (struct io_kiocb *): prepared, its names copied from the submitter.
    let req: u64 = ctx.arg(0);
    let o = off();
    let op: u8 = kread(req, o.RILL_OFF_IO_REQ_OPCODE());
    if req == 0 || !changes_names(op) {
        return 0;
    }
    // Requests are recycled: whatever was copied for this address before is not this one's.
    let _ = RILL_URING.remove(&req);
    // SAFETY: a .rodata global set by the loader; volatile so that LLVM does not fold it.
    let readable = unsafe { core::ptr::read_volatile(&RILL_URING_NAMES) } != 0;
    if !readable || config().is_none() || excluded() {
        return 0;
    }
    let (first, second) = names_of(&o, req, op);
    if first == 0 && second == 0 {
        return 0;
    }
    let Some(t) = RILL_URING_TMP.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot of a per-CPU array.
    let t = unsafe { &mut *t };
    t.req = req;
    t.user_data = user_data(&o, req);
    t.opcode = op as u64;
    t.read =
        copy_name(&mut t.names[0], first) as u64 | (copy_name(&mut t.names[1], second) as u64) << 1;
    t.req_end = t.req;
    t.user_data_end = t.user_data;
    let _ = RILL_URING.insert(&req, t, 0);
    0
}

/// Hands a completed request that changes names to its program in `RILL_URING_OPS`.
#[inline(always)]
pub fn completed(ctx: &RawTracePointContext, req: u64, op: u8, res: i32) {
    if res < 0 {
        // Nothing changed; its copy is of no use.
        let _ = RILL_URING.remove(&req);
        return;
    }
    // SAFETY: on success the tail call does not return; every opcode here has a program.
    let _ = unsafe { RILL_URING_OPS.tail_call(ctx, op as u32) };
}

/// A completion as the programs below see it.
struct Done {
    c: Call,
    req: u64,
    cmd: u64,
    op: u8,
    /// This request's copied names, if any.
    names: Option<&'static UringNames>,
}

impl Done {
    #[inline(always)]
    fn begin(ctx: &RawTracePointContext) -> Option<Done> {
        // (struct io_ring_ctx *, void *req, struct io_uring_cqe *)
        let req: u64 = ctx.arg(1);
        let cqe: u64 = ctx.arg(2);
        let cfg = config()?;
        let o = off();
        let res: i32 = kread(cqe, o.RILL_OFF_CQE_RES());
        let op: u8 = kread(req, o.RILL_OFF_IO_REQ_OPCODE());
        let names = take_names(&o, req, op);
        Some(Done {
            c: Call::uring(cfg, res as i64),
            cmd: cmd(&o, req),
            req,
            op,
            names,
        })
    }

    /// Name `i` (a kernel address), if it was copied.
    #[inline(always)]
    fn name(&self, i: usize) -> Option<u64> {
        let n = self.names?;
        (n.read & (1 << i) != 0).then(|| n.names[i & 1].as_ptr() as u64)
    }

    #[inline(always)]
    fn dfd(&self, at: u64) -> u64 {
        kread::<i32>(self.cmd, at) as i64 as u64
    }
}

/// Moves this request's names out of `RILL_URING` into this CPU's room, if they are its.
#[inline(always)]
fn take_names(o: &Off, req: u64, op: u8) -> Option<&'static UringNames> {
    // SAFETY: only read through the helper below.
    let v = unsafe { RILL_URING.get(&req) }? as *const UringNames;
    let t = RILL_URING_TMP.get_ptr_mut(1)?;
    // SAFETY: copies one map value into this CPU's slot of a per-CPU array.
    let r = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            t as *mut _,
            core::mem::size_of::<UringNames>() as u32,
            v as *const _,
        )
    };
    let _ = RILL_URING.remove(&req);
    // SAFETY: as above; the slot stays this program's until it returns.
    let t: &'static UringNames = unsafe { &*t };
    let ud = user_data(o, req);
    let ours = r == 0
        && t.req == req
        && t.req_end == req
        && t.user_data == ud
        && t.user_data_end == ud
        && t.opcode == op as u64;
    ours.then_some(t)
}

/// A change whose names are unknown: only a rescan of every root is sure to see it.
#[inline(always)]
fn unknown() {
    mark_dirty(DirtyKey::default(), DIRTY_PATH_UNKNOWN);
}

/// `RENAMEAT` and `LINKAT`: two names.
#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn rill_iou_two(ctx: RawTracePointContext) -> i32 {
    let Some(d) = Done::begin(&ctx) else { return 0 };
    let o = &d.c.o;
    let (Some(old), Some(new)) = (d.name(0), d.name(1)) else {
        unknown();
        return 0;
    };
    match d.op {
        OP_RENAMEAT => {
            let flags: u32 = kread(d.cmd, o.RILL_OFF_IO_RENAME_FLAGS());
            let (od, nd) = (
                d.dfd(o.RILL_OFF_IO_RENAME_OLD_DFD()),
                d.dfd(o.RILL_OFF_IO_RENAME_NEW_DFD()),
            );
            // Before the record, so no write recorded after it reuses a path it changed.
            crate::emit::bump_generation();
            two_names(
                &d.c,
                od,
                old,
                nd,
                new,
                Kind::Rename,
                [flags as u64, 0, 0, 0],
            );
        }
        _ => {
            let flags: u32 = kread(d.cmd, o.RILL_OFF_IO_LINK_FLAGS());
            let (od, nd) = (
                d.dfd(o.RILL_OFF_IO_LINK_OLD_DFD()),
                d.dfd(o.RILL_OFF_IO_LINK_NEW_DFD()),
            );
            // A link record's first path is the new name, the second the existing file.
            two_names(&d.c, nd, new, od, old, Kind::Link, [flags as u64, 0, 0, 0]);
        }
    }
    0
}

/// `UNLINKAT`, `MKDIRAT`, `SYMLINKAT`, `SETXATTR`: one name (and a symlink's target or
/// an attribute's name).
#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn rill_iou_one(ctx: RawTracePointContext) -> i32 {
    let Some(d) = Done::begin(&ctx) else { return 0 };
    let o = &d.c.o;
    let Some(first) = d.name(0) else {
        unknown();
        return 0;
    };
    match d.op {
        OP_UNLINKAT => {
            let flags: i32 = kread(d.cmd, o.RILL_OFF_IO_UNLINK_FLAGS());
            let kind = if flags & AT_REMOVEDIR != 0 {
                Kind::Rmdir
            } else {
                Kind::Unlink
            };
            let dfd = d.dfd(o.RILL_OFF_IO_UNLINK_DFD());
            name_record(&d.c, dfd, first, kind, [0; 4], 0);
        }
        OP_MKDIRAT => {
            let mode = kread::<u16>(d.cmd, o.RILL_OFF_IO_MKDIR_MODE()) as u32;
            let mode = (mode & 0o7777) & !umask(o);
            let dfd = d.dfd(o.RILL_OFF_IO_MKDIR_DFD());
            name_record(&d.c, dfd, first, Kind::Mkdir, [mode as u64, 0, 0, 0], 0);
        }
        OP_SYMLINKAT => {
            // The first name is the target text, the second the link.
            let Some(link) = d.name(1) else {
                unknown();
                return 0;
            };
            let dfd = d.dfd(o.RILL_OFF_IO_LINK_NEW_DFD());
            name_record(&d.c, dfd, link, Kind::Symlink, [0; 4], first);
        }
        _ => {
            // A path (relative to the working directory) and the attribute's name.
            let Some(attr) = d.name(1) else {
                unknown();
                return 0;
            };
            let args = xattr_args(o, d.cmd);
            name_record(&d.c, AT_FDCWD as u64, first, Kind::SetXattr, args, attr);
        }
    }
    0
}

/// A setxattr record's arguments: flags and the value's size.
#[inline(always)]
fn xattr_args(o: &Off, cmd: u64) -> [u64; 4] {
    let ctx = cmd + o.RILL_OFF_IO_XATTR_CTX();
    let flags: u32 = kread(ctx, o.RILL_OFF_XATTR_CTX_FLAGS());
    let size: u64 = kread(ctx, o.RILL_OFF_XATTR_CTX_SIZE());
    [flags as u64, size, 0, 0]
}

/// `OPENAT`, `OPENAT2` and `FSETXATTR`: a file, found through the request rather than
/// by name.
#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn rill_iou_file(ctx: RawTracePointContext) -> i32 {
    let Some(d) = Done::begin(&ctx) else { return 0 };
    let o = &d.c.o;
    if d.op == OP_FSETXATTR {
        let Some(f) = kptr(d.req, o.RILL_OFF_IO_REQ_FILE()).and_then(|f| open_file(&d.c, f)) else {
            return 0;
        };
        match d.name(1) {
            Some(attr) => fd_record(&d.c, &f, Kind::SetXattr, xattr_args(o, d.cmd), attr),
            // Its attribute's name is unknown: the file is sent again, attributes and all.
            None if watched(d.c.cfg, f.inode.dev) => mark_dirty(key(&f.inode), DIRTY_MODIFIED),
            None => {}
        }
        return 0;
    }
    let flags: u64 = kread(d.cmd, o.RILL_OFF_IO_OPEN_HOW());
    if flags & (O_CREAT | O_TRUNC) == 0 {
        return 0;
    }
    let slot: u32 = kread(d.cmd, o.RILL_OFF_IO_OPEN_FILE_SLOT());
    if slot == 0 {
        // The result is a descriptor in the submitter's table, which the task shares.
        opened(&d.c, d.c.ret as u64, flags);
        return 0;
    }
    // Into a fixed-file slot: no descriptor names the file, its name does.
    match d.name(0) {
        Some(name) => {
            let dfd = d.dfd(o.RILL_OFF_IO_OPEN_DFD());
            name_record(&d.c, dfd, name, Kind::Dirty, [DIRTY_MODIFIED, 0, 0, 0], 0);
        }
        None => unknown(),
    }
    0
}
