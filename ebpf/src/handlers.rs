//! One handler per syscall family. Each runs at syscall exit (the call has succeeded),
//! reads the arguments from the saved registers, resolves the object or the directory its
//! name is relative to, applies the filters and throttling, and submits one record.

use rill_abi::{
    record::{
        DIRTY_MODIFIED, FLAG_APPEND, FLAG_DATA_FAULT, FLAG_NOFOLLOW, FLAG_OBJECT_ID,
        FLAG_PATH_CACHED, FLAG_RANGE_ONLY, FLAG_THROTTLED, FLAG_VALUES,
    },
    DirtyKey, DriverConfig, Kind, Section,
};

use crate::emit::{config, excluded, level, stopped, watched, Builder, Level, MAX_CHUNK};
use crate::kernel::{
    file_of_fd, file_ref_one, inode_info, kptr, kread, name_base, off, path_inode, try_uread,
    umask, uread, InodeInfo, KPath, Off, Regs, AT_FDCWD,
};
use rill_abi::syscalls as nr;

const S_IFMT: u32 = 0o170000;
/// The `*at` flag for acting on a final symlink itself.
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const S_IFREG: u32 = 0o100000;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_APPEND: u32 = 0o2000;
const O_WRONLY: u64 = 0o1;
const RWF_APPEND: u64 = 0x10;
const AT_REMOVEDIR: u64 = 0x200;

/// Everything a handler needs: settings, offsets, the syscall's registers and result.
pub struct Call {
    pub cfg: &'static DriverConfig,
    pub o: Off,
    pub regs: Regs,
    pub nr: u64,
    pub ret: i64,
    /// The string arguments (names, attribute names, symlink targets) are kernel
    /// addresses: an io_uring request's names, copied when it was submitted (`uring`).
    /// Otherwise they are the caller's pointers.
    pub kernel_strs: bool,
}

impl Call {
    /// `None` when nothing should be captured: paused, excluded, an ia32 call, or failed.
    #[inline(always)]
    pub fn begin(regs_ptr: u64, ret: i64) -> Option<Call> {
        if ret < 0 {
            return None;
        }
        let cfg = config()?;
        let regs = Regs(regs_ptr);
        if regs.cs() != Regs::USER64_CS || excluded() {
            return None;
        }
        Some(Call {
            cfg,
            o: off(),
            nr: regs.nr(),
            regs,
            ret,
            kernel_strs: false,
        })
    }

    /// A completed io_uring request with result `ret`, done for the current task (its
    /// submitter or one of its io-wq workers, which share its files and working
    /// directory). There are no registers and no system call: `nr` matches none, so
    /// `values` copies nothing and the engine reads values from the source when sent.
    #[inline(always)]
    pub fn uring(cfg: &'static DriverConfig, ret: i64) -> Call {
        Call {
            cfg,
            o: off(),
            regs: Regs(0),
            nr: u64::MAX,
            ret,
            kernel_strs: true,
        }
    }

    #[inline(always)]
    fn arg(&self, n: u32) -> u64 {
        self.regs.arg(n)
    }
}

/// An open file: its `struct file`, path and inode.
pub struct Fd {
    file: u64,
    path: KPath,
    pub inode: InodeInfo,
}

#[inline(always)]
pub fn fd(c: &Call, fd: u64) -> Option<Fd> {
    open_file(c, file_of_fd(&c.o, fd)?)
}

/// The `Fd` of a `struct file`.
#[inline(always)]
pub fn open_file(c: &Call, file: u64) -> Option<Fd> {
    let inode = crate::kernel::kptr(file, c.o.RILL_OFF_FILE_INODE())?;
    Some(Fd {
        file,
        path: KPath::at(&c.o, file + c.o.RILL_OFF_FILE_PATH())?,
        inode: inode_info(&c.o, inode)?,
    })
}

#[inline(always)]
pub fn key(i: &InodeInfo) -> DirtyKey {
    DirtyKey {
        dev: i.dev,
        ino: i.ino,
    }
}

/// Whether a record names its open file by cookie (`FLAG_PATH_CACHED`) or carries the
/// walked path, which the driver then remembers for the file's later operations.
struct FilePath {
    generation: u64,
    cached: bool,
}

impl Fd {
    /// Whether the name the file was opened by has stopped being its name: its dentry is
    /// unhashed. The kernel unhashes (`__d_drop`) the dentry of a name unlinked while the
    /// file is open (`d_delete` turns it negative only when nobody else holds it), of a
    /// name a rename replaced, and never hashes an `O_TMPFILE`'s. The file may still have
    /// other names (hard links, a `linkat` of the temporary file): a record walked from
    /// this dentry would name the removed one, so the caller marks the file dirty by its
    /// inode instead, and the reader names it by a name it has (`capture.rs`). A read that
    /// faults gives 0 too, which marks: never wrong, only less exact.
    #[inline(always)]
    fn name_is_stale(&self, o: &Off) -> bool {
        kread::<u64>(
            self.path.dentry,
            o.RILL_OFF_DENTRY_HASH() + o.RILL_OFF_HLIST_BL_PPREV(),
        ) == 0
    }

    /// Whether another task may use this open file description, read at the call's exit:
    /// the test the kernel makes before it takes the description's `f_pos_lock`
    /// (`file_needs_f_pos_lock` in `fs/file.c`: a reference count other than one), with
    /// the reference the call itself held already dropped. A task whose files table is
    /// shared (threads) takes a reference of its own for each call (`fdget` clones when
    /// `files->count` is above 1), so another thread of ours can reach the description at
    /// any time even when its count reads one now: a shared table counts as shared too.
    /// An unshared description in an unshared table is reachable by this task alone,
    /// which is inside this call. Not seen: a sharer that let go of its every reference
    /// between the end of the call and this read (another process closing its copy right
    /// after writing through it, a thread exiting right after its write), in the window
    /// from the kernel's unlock to this program (short, unless the task is preempted).
    #[inline(always)]
    fn shared(&self, o: &Off) -> bool {
        if kread::<u64>(self.file, o.RILL_OFF_FILE_REF()) != file_ref_one() {
            return true;
        }
        // SAFETY: a helper without arguments.
        let task = unsafe { aya_ebpf::helpers::bpf_get_current_task() };
        match kptr(task, o.RILL_OFF_TASK_FILES()) {
            Some(files) => kread::<u32>(files, o.RILL_OFF_FILES_COUNT()) != 1,
            None => true,
        }
    }

    /// Starts a record on this file: the object id and its path, or the cached flag.
    #[inline(always)]
    fn path_into(&self, c: &Call, b: &mut Builder) -> FilePath {
        b.flags |= FLAG_OBJECT_ID;
        let generation = crate::emit::generation();
        let cached = crate::emit::path_sent(self.file, self.path.dentry, generation);
        if cached {
            b.flags |= FLAG_PATH_CACHED;
        } else {
            b.walk(&c.o, Section::PathBase, self.path);
        }
        FilePath { generation, cached }
    }

    /// Submits a record started with `path_into`; `args[3]` becomes the path cookie.
    #[inline(always)]
    fn submit(&self, b: Builder, kind: Kind, mut args: [u64; 4], fp: FilePath) {
        args[3] = self.file;
        if b.submit(kind, key(&self.inode), args) && !fp.cached {
            crate::emit::remember_path(self.file, self.path.dentry, fp.generation);
        }
    }
}

/// Submits an operation on an open file, with an optional string from the caller (an
/// attribute name) in the `Name` section.
#[inline(always)]
pub fn fd_record(c: &Call, f: &Fd, kind: Kind, args: [u64; 4], extra: u64) {
    fd_record_flags(c, f, kind, args, extra, 0)
}

/// `fd_record` with record flags set from the start (`FLAG_RANGE_ONLY`).
#[inline(always)]
fn fd_record_flags(c: &Call, f: &Fd, kind: Kind, mut args: [u64; 4], extra: u64, flags: u16) {
    if !watched(c.cfg, f.inode.dev) {
        return;
    }
    if level(c.cfg) == Level::Stopped {
        return stopped(kind, key(&f.inode));
    }
    // A file with no name left: what was done through it stays with it, and its last
    // name was recorded as removed (a record under that name would apply to whatever
    // the replica holds there now).
    if f.inode.nlink == 0 {
        return;
    }
    // Opened by a name it no longer has: the record would name the wrong file.
    if f.name_is_stale(&c.o) {
        return crate::emit::mark_dirty(key(&f.inode), DIRTY_MODIFIED);
    }
    let Some(mut b) = Builder::new() else { return };
    b.flags |= flags;
    let fp = f.path_into(c, &mut b);
    b.str(Section::Name, extra, c.kernel_strs);
    values(c, &mut b, kind, &mut args);
    f.submit(b, kind, args, fp);
}

/// A name the caller passed, resolved against its base directory.
struct Name {
    base: KPath,
    absolute: bool,
    key: DirtyKey,
    ptr: u64,
}

#[inline(always)]
fn name(c: &Call, dirfd: u64, ptr: u64) -> Option<Name> {
    let (base, absolute) = name_base(&c.o, dirfd as i32, ptr, c.kernel_strs)?;
    let dir = inode_info(&c.o, path_inode(&c.o, &base)?)?;
    // An absolute name may lie on any file system, so it is filtered in userspace;
    // a relative one is filtered by the file system of its directory.
    if !absolute && !watched(c.cfg, dir.dev) {
        return None;
    }
    // Dirty marks for names key on their directory; (0, 0) for absolute names means
    // "rescan what is watched".
    let key = if absolute {
        DirtyKey::default()
    } else {
        key(&dir)
    };
    Some(Name {
        base,
        absolute,
        key,
        ptr,
    })
}

#[inline(always)]
fn append_name(c: &Call, b: &mut Builder, n: &Name, base: Section, user: Section) {
    if !n.absolute || c.o.RILL_OFF_FS_ROOT() != 0 {
        b.walk(&c.o, base, n.base);
    }
    b.str(user, n.ptr, c.kernel_strs);
}

/// Submits an operation on one name, with an optional extra string (symlink target,
/// attribute name).
#[inline(always)]
pub fn name_record(c: &Call, dirfd: u64, ptr: u64, kind: Kind, mut args: [u64; 4], extra: u64) {
    let Some(n) = name(c, dirfd, ptr) else { return };
    if level(c.cfg) == Level::Stopped {
        return stopped(kind, n.key);
    }
    let Some(mut b) = Builder::new() else { return };
    append_name(c, &mut b, &n, Section::PathBase, Section::PathName);
    b.str(Section::Name, extra, c.kernel_strs);
    values(c, &mut b, kind, &mut args);
    b.submit(kind, n.key, args);
}

/// The values an attribute call set, copied from the caller (`FLAG_VALUES`): an extended
/// attribute's value, explicit times. Read from the source file when the record is sent
/// instead, they would be lost if the name went first (unlinked with other names left,
/// renamed away) and would be the file's later values rather than this call's. Also
/// whether an owner or times call by name acted on a final symlink itself
/// (`FLAG_NOFOLLOW`).
#[inline(always)]
fn values(c: &Call, b: &mut Builder, kind: Kind, args: &mut [u64; 4]) {
    match (kind, c.nr) {
        (Kind::SetXattr, nr::SETXATTR | nr::LSETXATTR | nr::FSETXATTR) => {
            if b.user_data(c.arg(2), c.arg(3)) {
                b.flags |= FLAG_VALUES;
            } else {
                b.drop_data();
            }
        }
        (Kind::Utimes, nr::UTIMENSAT) => {
            if c.arg(3) & AT_SYMLINK_NOFOLLOW != 0 {
                b.flags |= FLAG_NOFOLLOW;
            }
            if let Some(t) = user_times(c.arg(2), 1) {
                *args = times_args(t, args[3]);
                b.flags |= FLAG_VALUES;
            }
        }
        (Kind::Chown, nr::LCHOWN) => b.flags |= FLAG_NOFOLLOW,
        (Kind::Chown, nr::FCHOWNAT) if c.arg(4) & AT_SYMLINK_NOFOLLOW != 0 => {
            b.flags |= FLAG_NOFOLLOW
        }
        (Kind::Utimes, nr::UTIMES) => {
            if let Some(t) = user_times(c.arg(1), 1000) {
                *args = times_args(t, args[3]);
                b.flags |= FLAG_VALUES;
            }
        }
        (Kind::Utimes, nr::FUTIMESAT) => {
            if let Some(t) = user_times(c.arg(2), 1000) {
                *args = times_args(t, args[3]);
                b.flags |= FLAG_VALUES;
            }
        }
        _ => {}
    }
}

/// `[atime s, atime ns, mtime s, mtime ns]` from the caller's two `timespec`s (`scale` 1)
/// or `timeval`s (`scale` 1000), or `None` when the kernel chose a time itself (a null
/// array, `UTIME_NOW`, `UTIME_OMIT`) or a value is out of range.
#[inline(always)]
fn user_times(ptr: u64, scale: u64) -> Option<[u64; 4]> {
    if ptr == 0 {
        return None;
    }
    let t: [u64; 4] = uread(ptr);
    let limit = 1_000_000_000 / scale;
    (t[1] < limit && t[3] < limit).then_some([t[0], t[1] * scale, t[2], t[3] * scale])
}

/// A `Utimes` record's arguments (see `Kind`), keeping the path cookie in `args[3]`.
#[inline(always)]
fn times_args(t: [u64; 4], cookie: u64) -> [u64; 4] {
    [t[0], t[1] | (t[3] << 32), t[2], cookie]
}

/// Submits an operation on two names (rename, link).
#[inline(always)]
pub fn two_names(c: &Call, d1: u64, p1: u64, d2: u64, p2: u64, kind: Kind, args: [u64; 4]) {
    let Some(n1) = name(c, d1, p1) else { return };
    let Some(n2) = name(c, d2, p2) else { return };
    if level(c.cfg) == Level::Stopped {
        stopped(kind, n2.key);
        return stopped(kind, n1.key);
    }
    let Some(mut b) = Builder::new() else { return };
    append_name(c, &mut b, &n1, Section::PathBase, Section::PathName);
    append_name(c, &mut b, &n2, Section::Path2Base, Section::Path2Name);
    b.submit(kind, n1.key, args);
}

/// Writes into a file: the `write` family, and the calls that move bytes into a file from
/// another file or a pipe inside the kernel (`sendfile`, `splice`, `copy_file_range`:
/// what `cp` uses), which are range-only since the data is not in the caller's memory.
#[inline(always)]
pub fn write(c: &Call) {
    if c.ret <= 0 {
        return;
    }
    let written = c.ret as u64;
    let out_fd = match c.nr {
        nr::SPLICE | nr::COPY_FILE_RANGE => c.arg(2),
        _ => c.arg(0),
    };
    let Some(f) = fd(c, out_fd) else { return };
    // A file whose last name is gone has nothing to replicate: its name was already
    // recorded as removed, and replaying the write under that name would bring the file
    // back on a replica (or write into whatever holds that name there now).
    if f.inode.mode & S_IFMT != S_IFREG || f.inode.nlink == 0 || !watched(c.cfg, f.inode.dev) {
        return;
    }
    let lvl = level(c.cfg);
    if lvl == Level::Stopped {
        return stopped(Kind::Write, key(&f.inode));
    }
    // Written through a name it no longer has while other names remain (a hard link kept
    // it alive): a write record would name the removed name, so the file is marked by
    // its inode and remirrored under the names it has.
    if f.name_is_stale(&c.o) {
        return crate::emit::mark_dirty(key(&f.inode), DIRTY_MODIFIED);
    }
    match placed(c, &f, written) {
        Some(p) => submit_write(c, &f, lvl, written, p),
        None => crate::emit::mark_dirty(key(&f.inode), DIRTY_MODIFIED),
    }
}

/// Where a write's bytes went in the file.
struct Placed {
    offset: u64,
    /// An append: placed at the size read after the call (see [`placed`]).
    append: bool,
}

/// Where the `written` bytes of the call went, or `None` when that is not knowable here
/// and the file is to be marked dirty instead.
#[inline(always)]
fn placed(c: &Call, f: &Fd, written: u64) -> Option<Placed> {
    let flags: u32 = kread(f.file, c.o.RILL_OFF_FILE_FLAGS());
    let pos: i64 = kread(f.file, c.o.RILL_OFF_FILE_POS());
    let explicit = match c.nr {
        nr::PWRITE64 | nr::PWRITEV => Some(c.arg(3)),
        nr::PWRITEV2 if c.arg(3) as i64 != -1 => Some(c.arg(3)),
        // The kernel has advanced the caller's output offset past what it wrote.
        nr::SPLICE | nr::COPY_FILE_RANGE if c.arg(3) != 0 => {
            let Some(end) = try_uread::<u64>(c.arg(3)) else {
                // Where the bytes went is unknown: the whole file is to be sent again.
                return None;
            };
            Some(end.saturating_sub(written))
        }
        _ => None,
    };
    let append = flags & O_APPEND != 0 || (c.nr == nr::PWRITEV2 && c.arg(5) & RWF_APPEND != 0);
    // Where the write went is read after the call: the description's position (a write
    // without an offset) or the file's size (an append). The kernel advances the position
    // under the description's `f_pos_lock` and the size under the inode's lock, and both
    // are released before the call returns, so another task using the same description
    // may have moved them by now (two threads writing one descriptor). When it may
    // (`Fd::shared`), the offset is not knowable here, not even as [pos - written, pos):
    // the file is marked dirty (the whole file, remirrored) *instead of* a write record.
    // Not in addition: a record at a wrong offset would put bytes on the replica where the
    // source never had them, and if the remirror were read before that record was sent
    // (the mark is collected as soon as the reader polls, the record may wait in the
    // queue), the wrong bytes would be the replica's last word. A write at an explicit
    // offset (pwrite) does not depend on either and stays an exact record.
    //
    // An append stays a record too: its place is the file's size, which any writer of the
    // file can move in that window, through this description or another (the limit the
    // README states), so a shared description does not make it less exact. Marked, the
    // appends of every threaded program went through remirrors, which name a file by one
    // of its names: one removed before the remirror read it left the file's other names
    // without the bytes (found by the replication fuzzer).
    if !append && explicit.is_none() && f.shared(&c.o) {
        return None;
    }
    // Appends land at end-of-file whatever the offset argument says (pwrite on an
    // O_APPEND file included), and the size read here is the size after this write.
    let offset = if append {
        (f.inode.size as u64).saturating_sub(written)
    } else if let Some(o) = explicit {
        o
    } else {
        (pos as u64).saturating_sub(written)
    };
    Some(Placed { offset, append })
}

/// Records a write placed at `p`: straight into a ring slot when it can, else through a
/// builder, with its bytes inline or as a range the drain reads back.
#[inline(always)]
fn submit_write(c: &Call, f: &Fd, lvl: Level, written: u64, p: Placed) {
    let Placed { offset, append } = p;
    let mut flags = FLAG_OBJECT_ID;
    if append {
        flags |= FLAG_APPEND;
    }
    // The common case, a write through a file whose path was sent, goes straight into a
    // ring slot: one copy of the data instead of two.
    let direct = lvl == Level::Normal
        && matches!(c.nr, nr::WRITE | nr::PWRITE64)
        && written <= c.cfg.inline_max as u64
        && written <= MAX_CHUNK;
    if direct {
        let generation = crate::emit::generation();
        if crate::emit::path_sent(f.file, f.path.dentry, generation) {
            let args = [offset, written, 0, f.file];
            crate::emit::submit_write_direct(
                key(&f.inode),
                flags | FLAG_PATH_CACHED,
                args,
                c.arg(1),
            );
            return;
        }
    }
    let Some(mut b) = Builder::new() else { return };
    b.flags |= flags;
    let fp = f.path_into(c, &mut b);
    if lvl == Level::Throttled {
        b.flags |= FLAG_THROTTLED;
        crate::emit::stat_add(rill_abi::Stat::THROTTLED, 1);
    } else if written > c.cfg.inline_max as u64
        || written > MAX_CHUNK
        || matches!(c.nr, nr::SENDFILE | nr::SPLICE | nr::COPY_FILE_RANGE)
    {
        b.flags |= FLAG_RANGE_ONLY;
        crate::emit::stat_add(rill_abi::Stat::RANGE_ONLY, 1);
    } else if !copy_data(c, &mut b, written) {
        b.drop_data();
        b.flags |= FLAG_DATA_FAULT;
    }
    f.submit(b, Kind::Write, [offset, written, 0, 0], fp);
}

/// Copies the `written` bytes from the caller's buffer or iovecs.
#[inline(always)]
fn copy_data(c: &Call, b: &mut Builder, written: u64) -> bool {
    match c.nr {
        nr::WRITE | nr::PWRITE64 => b.user_data(c.arg(1), written),
        nr::WRITEV | nr::PWRITEV | nr::PWRITEV2 => b.user_iov(c.arg(1), written),
        _ => false,
    }
}

/// `ioctl` requests that share extents between files (reflinks): the destination's bytes
/// change without passing through the caller's memory, so each becomes a range-only write
/// on the destination, whose bytes the drain reads back (as for `copy_file_range`).
const FICLONE: u64 = 0x4004_9409;
const FICLONERANGE: u64 = 0x4020_940d;
const FIDEDUPERANGE: u64 = 0xc018_9436;
/// `FIDEDUPERANGE` destinations recorded per call; further ones held the same bytes
/// already (a dedupe only shares extents whose contents are equal).
const DEDUPE_MAX: u64 = 4;

#[inline(always)]
pub fn ioctl(c: &Call) {
    match c.arg(1) as u32 as u64 {
        // ioctl(dest, FICLONE, src): the whole source, so the destination's whole size.
        FICLONE => {
            if let Some(f) = fd(c, c.arg(0)) {
                let size = f.inode.size as u64;
                range_write(c, &f, 0, size);
            }
        }
        // struct file_clone_range { s64 src_fd; u64 src_offset, src_length, dest_offset }
        FICLONERANGE => {
            let r: [u64; 4] = uread(c.arg(2));
            if let Some(f) = fd(c, c.arg(0)) {
                // A length of 0 clones to the source's end, which the destination's size
                // now covers.
                let len = if r[2] == 0 {
                    (f.inode.size as u64).saturating_sub(r[3])
                } else {
                    r[2]
                };
                range_write(c, &f, r[3], len);
            }
        }
        // struct file_dedupe_range { u64 src_offset, src_length; u16 dest_count; ...;
        // struct { s64 dest_fd; u64 dest_offset, bytes_deduped; s32 status; u32 } info[] }
        FIDEDUPERANGE => {
            let arg = c.arg(2);
            let count = uread::<u16>(arg + 16) as u64;
            for i in 0..DEDUPE_MAX {
                if i >= count {
                    break;
                }
                let info: [u64; 4] = uread(arg + 24 + 32 * i);
                // status 0: FILE_DEDUPE_RANGE_SAME, the range now shares the source's extents.
                if info[3] as u32 == 0 && info[2] > 0 {
                    if let Some(f) = fd(c, info[0]) {
                        range_write(c, &f, info[1], info[2]);
                    }
                }
            }
        }
        _ => {}
    }
}

/// A range-only write of `len` bytes at `offset` on an open regular file.
#[inline(always)]
fn range_write(c: &Call, f: &Fd, offset: u64, len: u64) {
    if len == 0 || f.inode.mode & S_IFMT != S_IFREG || f.inode.nlink == 0 {
        return;
    }
    fd_record_flags(
        c,
        f,
        Kind::Write,
        [offset, len, 0, 0],
        0,
        FLAG_RANGE_ONLY | FLAG_OBJECT_ID,
    );
}

const PROT_WRITE: u64 = 0x2;
const MAP_SHARED: u64 = 0x1;
const MAP_TYPE: u64 = 0xf;
/// `struct iocb` opcodes that write (`IOCB_CMD_PWRITE`, `IOCB_CMD_PWRITEV`).
const IOCB_CMD_PWRITE: u16 = 1;
const IOCB_CMD_PWRITEV: u16 = 8;
/// `io_submit` iocbs examined per call; a call submitting more marks the files of the
/// first ones only (see README, Known limits).
const AIO_MAX: u64 = 8;

/// Calls after which a file's data changes without a system call describing it: a shared
/// writable `mmap` (its pages are then watched by the second layer, `below`), and
/// `io_submit` (AIO; buffered writes are done at exit, direct ones also complete in
/// `below`). Both make dirty marks, not operations.
#[inline(always)]
pub fn map(c: &Call) {
    match c.nr {
        nr::MMAP => {
            let shared = matches!(c.arg(3) & MAP_TYPE, MAP_SHARED | 0x3);
            if c.arg(2) & PROT_WRITE == 0 || !shared {
                return;
            }
            if let Some(f) = fd(c, c.arg(4) as u32 as u64) {
                let inode = crate::kernel::kptr(f.file, c.o.RILL_OFF_FILE_INODE());
                if f.inode.mode & S_IFMT == S_IFREG && watched(c.cfg, f.inode.dev) {
                    if let Some(inode) = inode {
                        crate::below::track_mapped(inode);
                    }
                }
            }
        }
        nr::IO_SUBMIT => {
            let iocbs = c.arg(2);
            for i in 0..AIO_MAX {
                if i >= c.ret as u64 {
                    break;
                }
                let iocb: u64 = uread(iocbs + 8 * i);
                // struct iocb: u16 aio_lio_opcode at 16, u32 aio_fildes at 20.
                let op: u16 = uread(iocb + 16);
                if op == IOCB_CMD_PWRITE || op == IOCB_CMD_PWRITEV {
                    if let Some(file) = file_of_fd(&c.o, uread::<u32>(iocb + 20) as u64) {
                        crate::below::mark_file(c.cfg, &c.o, file);
                    }
                }
            }
        }
        _ => {}
    }
}

#[inline(always)]
pub fn open(c: &Call) {
    let flags = match c.nr {
        nr::OPEN => c.arg(1),
        nr::OPENAT => c.arg(2),
        nr::OPENAT2 => uread::<u64>(c.arg(2)),
        nr::CREAT => O_CREAT | O_WRONLY | O_TRUNC,
        _ => return,
    };
    opened(c, c.ret as u64, flags);
}

/// A file opened as descriptor `fd` with open flags `flags`: its creation or truncation.
#[inline(always)]
pub fn opened(c: &Call, fd_nr: u64, flags: u64) {
    if flags & (O_CREAT | O_TRUNC) == 0 {
        return;
    }
    let Some(f) = fd(c, fd_nr) else { return };
    if f.inode.mode & S_IFMT != S_IFREG {
        return;
    }
    if flags & O_CREAT != 0 {
        fd_record(
            c,
            &f,
            Kind::Create,
            [(f.inode.mode & 0o7777) as u64, flags, 0, 0],
            0,
        );
    } else {
        fd_record(c, &f, Kind::Truncate, [0; 4], 0);
    }
}

#[inline(always)]
pub fn size(c: &Call) {
    match c.nr {
        nr::TRUNCATE => name_record(
            c,
            AT_FDCWD as u64,
            c.arg(0),
            Kind::Truncate,
            [c.arg(1), 0, 0, 0],
            0,
        ),
        nr::FTRUNCATE => {
            if let Some(f) = fd(c, c.arg(0)) {
                fd_record(c, &f, Kind::Truncate, [c.arg(1), 0, 0, 0], 0);
            }
        }
        nr::FALLOCATE => {
            if let Some(f) = fd(c, c.arg(0)) {
                fd_record(c, &f, Kind::Fallocate, [c.arg(1), c.arg(2), c.arg(3), 0], 0);
            }
        }
        _ => {}
    }
}

#[inline(always)]
pub fn remove(c: &Call) {
    let cwd = AT_FDCWD as u64;
    match c.nr {
        nr::UNLINK => name_record(c, cwd, c.arg(0), Kind::Unlink, [0; 4], 0),
        nr::RMDIR => name_record(c, cwd, c.arg(0), Kind::Rmdir, [0; 4], 0),
        nr::UNLINKAT => {
            let kind = if c.arg(2) & AT_REMOVEDIR != 0 {
                Kind::Rmdir
            } else {
                Kind::Unlink
            };
            name_record(c, c.arg(0), c.arg(1), kind, [0; 4], 0)
        }
        _ => {}
    }
}

#[inline(always)]
pub fn make(c: &Call) {
    let cwd = AT_FDCWD as u64;
    let (dirfd, path, mode, rdev, kind) = match c.nr {
        nr::MKDIR => (cwd, c.arg(0), c.arg(1), 0, Kind::Mkdir),
        nr::MKDIRAT => (c.arg(0), c.arg(1), c.arg(2), 0, Kind::Mkdir),
        nr::MKNOD => (cwd, c.arg(0), c.arg(1), c.arg(2), Kind::Mknod),
        nr::MKNODAT => (c.arg(0), c.arg(1), c.arg(2), c.arg(3), Kind::Mknod),
        _ => return,
    };
    let perm = (mode as u32 & 0o7777) & !umask(&c.o);
    let mode = match kind {
        Kind::Mkdir => perm,
        _ => (mode as u32 & S_IFMT) | perm,
    };
    name_record(c, dirfd, path, kind, [mode as u64, rdev, 0, 0], 0);
}

#[inline(always)]
pub fn rename(c: &Call) {
    let cwd = AT_FDCWD as u64;
    let (old_dir, old, new_dir, new) = match c.nr {
        nr::RENAME => (cwd, c.arg(0), cwd, c.arg(1)),
        nr::RENAMEAT | nr::RENAMEAT2 => (c.arg(0), c.arg(1), c.arg(2), c.arg(3)),
        _ => return,
    };
    let flags = if c.nr == nr::RENAMEAT2 { c.arg(4) } else { 0 };
    // Before the record, so no write recorded after it can reuse a path it changed.
    crate::emit::bump_generation();
    two_names(
        c,
        old_dir,
        old,
        new_dir,
        new,
        Kind::Rename,
        [flags, 0, 0, 0],
    );
}

#[inline(always)]
pub fn link(c: &Call) {
    let cwd = AT_FDCWD as u64;
    // A link record's first path is the new name, the second the existing file.
    let (new_dir, new, old_dir, old, flags) = match c.nr {
        nr::LINK => (cwd, c.arg(1), cwd, c.arg(0), 0),
        nr::LINKAT => (c.arg(2), c.arg(3), c.arg(0), c.arg(1), c.arg(4)),
        nr::SYMLINK => return name_record(c, cwd, c.arg(1), Kind::Symlink, [0; 4], c.arg(0)),
        nr::SYMLINKAT => {
            return name_record(c, c.arg(1), c.arg(2), Kind::Symlink, [0; 4], c.arg(0))
        }
        _ => return,
    };
    two_names(c, new_dir, new, old_dir, old, Kind::Link, [flags, 0, 0, 0]);
}

#[inline(always)]
pub fn attr(c: &Call) {
    let cwd = AT_FDCWD as u64;
    let unchanged = |v: u64| {
        if v as u32 == u32::MAX {
            u32::MAX as u64
        } else {
            v as u32 as u64
        }
    };
    let (dirfd, path, kind, args) = match c.nr {
        nr::CHMOD => (cwd, c.arg(0), Kind::Chmod, [c.arg(1) & 0o7777, 0, 0, 0]),
        nr::FCHMODAT | nr::FCHMODAT2 => (
            c.arg(0),
            c.arg(1),
            Kind::Chmod,
            [c.arg(2) & 0o7777, 0, 0, 0],
        ),
        nr::CHOWN | nr::LCHOWN => (
            cwd,
            c.arg(0),
            Kind::Chown,
            [unchanged(c.arg(1)), unchanged(c.arg(2)), 0, 0],
        ),
        nr::FCHOWNAT => (
            c.arg(0),
            c.arg(1),
            Kind::Chown,
            [unchanged(c.arg(2)), unchanged(c.arg(3)), 0, 0],
        ),
        nr::UTIME | nr::UTIMES => (cwd, c.arg(0), Kind::Utimes, [0; 4]),
        nr::FUTIMESAT | nr::UTIMENSAT => (c.arg(0), c.arg(1), Kind::Utimes, [0; 4]),
        nr::FCHMOD => return on_fd(c, Kind::Chmod, [c.arg(1) & 0o7777, 0, 0, 0]),
        nr::FCHOWN => {
            return on_fd(
                c,
                Kind::Chown,
                [unchanged(c.arg(1)), unchanged(c.arg(2)), 0, 0],
            )
        }
        _ => return,
    };
    if path == 0 {
        // utimensat(fd, NULL, ...) changes the file behind fd.
        return on_fd(c, kind, args);
    }
    // glibc (fchmodat with AT_SYMLINK_NOFOLLOW, used by tar) changes a file it holds as an
    // O_PATH fd through the magic link /proc/self/fd/N: the file is the fd's, not the name.
    if let Some(f) = proc_self_fd(path).and_then(|n| fd(c, n)) {
        return fd_record(c, &f, kind, args, 0);
    }
    name_record(c, dirfd, path, kind, args, 0);
}

/// The fd number of a name `/proc/self/fd/N` (N at most 7 digits), read from the caller.
#[inline(always)]
fn proc_self_fd(ptr: u64) -> Option<u64> {
    const PREFIX: &[u8; 14] = b"/proc/self/fd/";
    let head: [u8; 14] = uread(ptr);
    if &head != PREFIX {
        return None;
    }
    let digits: [u8; 8] = uread(ptr + 14);
    let mut n = 0u64;
    let mut i = 0;
    while i < 8 {
        let d = digits[i];
        if d == 0 {
            return (i > 0).then_some(n);
        }
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (d - b'0') as u64;
        i += 1;
    }
    None
}

#[inline(always)]
fn on_fd(c: &Call, kind: Kind, args: [u64; 4]) {
    if let Some(f) = fd(c, c.arg(0)) {
        fd_record(c, &f, kind, args, 0);
    }
}

#[inline(always)]
pub fn xattr(c: &Call) {
    let cwd = AT_FDCWD as u64;
    let (kind, args) = match c.nr {
        nr::SETXATTR | nr::LSETXATTR | nr::FSETXATTR => {
            (Kind::SetXattr, [c.arg(4), c.arg(3), 0, 0])
        }
        nr::SETXATTRAT => (Kind::SetXattr, [0; 4]),
        _ => (Kind::RemoveXattr, [0; 4]),
    };
    match c.nr {
        nr::SETXATTR | nr::LSETXATTR | nr::REMOVEXATTR | nr::LREMOVEXATTR => {
            name_record(c, cwd, c.arg(0), kind, args, c.arg(1))
        }
        nr::SETXATTRAT | nr::REMOVEXATTRAT => {
            name_record(c, c.arg(0), c.arg(1), kind, args, c.arg(3))
        }
        nr::FSETXATTR | nr::FREMOVEXATTR => {
            if let Some(f) = fd(c, c.arg(0)) {
                fd_record(c, &f, kind, args, c.arg(1));
            }
        }
        _ => {}
    }
}
