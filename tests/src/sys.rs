//! Raw system calls for the workload binary.
//!
//! The capture driver hooks individual syscalls (`open` vs `openat` vs `openat2`, `unlink`
//! vs `unlinkat`, ...), and glibc's wrappers are free to implement one with another (its
//! `open` is `openat`, its `creat` may be too). Each function here therefore issues exactly
//! the syscall it is named after with `libc::syscall`, every argument widened to `c_long`
//! (a variadic `i32` would leave the register's upper half undefined), and panics with the
//! call, its arguments and errno when the kernel refuses it: a workload that could not do
//! what the test expects must fail loudly, not produce a shorter sequence.

use std::ffi::CString;
use std::io::Error;

use libc::{c_long, c_void};

pub const AT_FDCWD: i32 = libc::AT_FDCWD;

fn cs(s: &str) -> CString {
    CString::new(s).expect("path without NUL")
}

fn check(ret: c_long, what: &str) -> c_long {
    if ret < 0 {
        panic!("{what} failed: {}", Error::last_os_error());
    }
    ret
}

macro_rules! sys {
    ($what:expr, $nr:expr $(, $arg:expr)* $(,)?) => {
        // SAFETY: every pointer argument points into a live CString, buffer or iovec array
        // owned by the caller for the duration of the call.
        check(unsafe { libc::syscall($nr $(, $arg as c_long)*) }, &$what)
    };
}

fn iovecs(bufs: &[&[u8]]) -> Vec<libc::iovec> {
    bufs.iter()
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut c_void,
            iov_len: b.len(),
        })
        .collect()
}

fn total(bufs: &[&[u8]]) -> c_long {
    bufs.iter().map(|b| b.len() as c_long).sum()
}

fn full(n: c_long, want: c_long, what: &str) {
    assert_eq!(n, want, "{what}: short write");
}

pub fn open(path: &str, flags: i32, mode: u32) -> i32 {
    let p = cs(path);
    sys!(
        format!("open({path}, {flags:#o})"),
        libc::SYS_open,
        p.as_ptr(),
        flags,
        mode
    ) as i32
}

pub fn openat(dirfd: i32, name: &str, flags: i32, mode: u32) -> i32 {
    let p = cs(name);
    let what = format!("openat({dirfd}, {name}, {flags:#o})");
    sys!(what, libc::SYS_openat, dirfd, p.as_ptr(), flags, mode) as i32
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

pub fn openat2(dirfd: i32, name: &str, flags: i32, mode: u32) -> i32 {
    let p = cs(name);
    let how = OpenHow {
        flags: flags as u64,
        mode: mode as u64,
        resolve: 0,
    };
    let size = std::mem::size_of::<OpenHow>();
    let what = format!("openat2({dirfd}, {name}, {flags:#o})");
    sys!(
        what,
        libc::SYS_openat2,
        dirfd,
        p.as_ptr(),
        &how as *const OpenHow,
        size
    ) as i32
}

pub fn creat(path: &str, mode: u32) -> i32 {
    let p = cs(path);
    sys!(format!("creat({path})"), libc::SYS_creat, p.as_ptr(), mode) as i32
}

pub fn close(fd: i32) {
    sys!(format!("close({fd})"), libc::SYS_close, fd);
}

pub fn dup(fd: i32) -> i32 {
    sys!(format!("dup({fd})"), libc::SYS_dup, fd) as i32
}

pub fn write(fd: i32, buf: &[u8]) {
    let n = sys!("write", libc::SYS_write, fd, buf.as_ptr(), buf.len());
    full(n, buf.len() as c_long, "write");
}

pub fn pwrite64(fd: i32, buf: &[u8], offset: i64) {
    let n = sys!(
        "pwrite64",
        libc::SYS_pwrite64,
        fd,
        buf.as_ptr(),
        buf.len(),
        offset
    );
    full(n, buf.len() as c_long, "pwrite64");
}

pub fn writev(fd: i32, bufs: &[&[u8]]) {
    let iov = iovecs(bufs);
    let n = sys!("writev", libc::SYS_writev, fd, iov.as_ptr(), iov.len());
    full(n, total(bufs), "writev");
}

/// copy_file_range(fd_in, off_in, fd_out, off_out, len, 0); `None` offsets use (and move)
/// the files' positions, given ones are read and advanced by the kernel. Returns the bytes
/// copied.
pub fn copy_file_range(
    fd_in: i32,
    off_in: Option<&mut i64>,
    fd_out: i32,
    off_out: Option<&mut i64>,
    len: usize,
) -> usize {
    let ptr = |o: Option<&mut i64>| o.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    sys!(
        "copy_file_range",
        libc::SYS_copy_file_range,
        fd_in,
        ptr(off_in),
        fd_out,
        ptr(off_out),
        len,
        0
    ) as usize
}

/// sendfile(out_fd, in_fd, offset, count): writes at `out_fd`'s position.
pub fn sendfile(out_fd: i32, in_fd: i32, offset: Option<&mut i64>, count: usize) -> usize {
    let off = offset.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    sys!("sendfile", libc::SYS_sendfile, out_fd, in_fd, off, count) as usize
}

/// splice(fd_in, NULL, fd_out, off_out, len, 0) from a pipe into a file.
pub fn splice_from_pipe(pipe_r: i32, fd_out: i32, off_out: Option<&mut i64>, len: usize) -> usize {
    let off = off_out.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    sys!(
        "splice",
        libc::SYS_splice,
        pipe_r,
        std::ptr::null_mut::<i64>(),
        fd_out,
        off,
        len,
        0
    ) as usize
}

/// pipe2(fds, 0): (read end, write end).
pub fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    sys!("pipe2", libc::SYS_pipe2, fds.as_mut_ptr(), 0);
    (fds[0], fds[1])
}

/// pwritev(fd, iov, cnt, pos_l, pos_h): on 64-bit kernels pos_l is the whole offset.
pub fn pwritev(fd: i32, bufs: &[&[u8]], offset: i64) {
    let iov = iovecs(bufs);
    let n = sys!(
        "pwritev",
        libc::SYS_pwritev,
        fd,
        iov.as_ptr(),
        iov.len(),
        offset,
        0
    );
    full(n, total(bufs), "pwritev");
}

/// pwritev2(fd, iov, cnt, pos_l, pos_h, flags); offset -1 means "at the file position".
pub fn pwritev2(fd: i32, bufs: &[&[u8]], offset: i64, flags: i32) {
    let iov = iovecs(bufs);
    let n = sys!(
        "pwritev2",
        libc::SYS_pwritev2,
        fd,
        iov.as_ptr(),
        iov.len(),
        offset,
        0,
        flags
    );
    full(n, total(bufs), "pwritev2");
}

pub fn lseek(fd: i32, offset: i64) {
    sys!("lseek", libc::SYS_lseek, fd, offset, libc::SEEK_SET);
}

pub fn truncate(path: &str, len: i64) {
    let p = cs(path);
    sys!(
        format!("truncate({path})"),
        libc::SYS_truncate,
        p.as_ptr(),
        len
    );
}

pub fn ftruncate(fd: i32, len: i64) {
    sys!("ftruncate", libc::SYS_ftruncate, fd, len);
}

pub fn fallocate(fd: i32, mode: i32, offset: i64, len: i64) {
    sys!("fallocate", libc::SYS_fallocate, fd, mode, offset, len);
}

pub fn unlink(path: &str) {
    let p = cs(path);
    sys!(format!("unlink({path})"), libc::SYS_unlink, p.as_ptr());
}

pub fn unlinkat(dirfd: i32, name: &str, flags: i32) {
    let p = cs(name);
    let what = format!("unlinkat({dirfd}, {name}, {flags:#x})");
    sys!(what, libc::SYS_unlinkat, dirfd, p.as_ptr(), flags);
}

pub fn rmdir(path: &str) {
    let p = cs(path);
    sys!(format!("rmdir({path})"), libc::SYS_rmdir, p.as_ptr());
}

pub fn mkdir(path: &str, mode: u32) {
    let p = cs(path);
    sys!(format!("mkdir({path})"), libc::SYS_mkdir, p.as_ptr(), mode);
}

pub fn mkdirat(dirfd: i32, name: &str, mode: u32) {
    let p = cs(name);
    sys!(
        format!("mkdirat({dirfd}, {name})"),
        libc::SYS_mkdirat,
        dirfd,
        p.as_ptr(),
        mode
    );
}

pub fn mknod(path: &str, mode: u32, dev: u64) {
    let p = cs(path);
    sys!(
        format!("mknod({path})"),
        libc::SYS_mknod,
        p.as_ptr(),
        mode,
        dev
    );
}

pub fn mknodat(dirfd: i32, name: &str, mode: u32, dev: u64) {
    let p = cs(name);
    let what = format!("mknodat({dirfd}, {name})");
    sys!(what, libc::SYS_mknodat, dirfd, p.as_ptr(), mode, dev);
}

pub fn rename(from: &str, to: &str) {
    let (a, b) = (cs(from), cs(to));
    sys!(
        format!("rename({from}, {to})"),
        libc::SYS_rename,
        a.as_ptr(),
        b.as_ptr()
    );
}

pub fn renameat(d1: i32, from: &str, d2: i32, to: &str) {
    let (a, b) = (cs(from), cs(to));
    let what = format!("renameat({d1}, {from}, {d2}, {to})");
    sys!(what, libc::SYS_renameat, d1, a.as_ptr(), d2, b.as_ptr());
}

pub fn renameat2(d1: i32, from: &str, d2: i32, to: &str, flags: u32) {
    let (a, b) = (cs(from), cs(to));
    let what = format!("renameat2({d1}, {from}, {d2}, {to}, {flags})");
    sys!(
        what,
        libc::SYS_renameat2,
        d1,
        a.as_ptr(),
        d2,
        b.as_ptr(),
        flags
    );
}

pub fn link(existing: &str, new: &str) {
    let (a, b) = (cs(existing), cs(new));
    sys!(
        format!("link({existing}, {new})"),
        libc::SYS_link,
        a.as_ptr(),
        b.as_ptr()
    );
}

pub fn linkat(d1: i32, existing: &str, d2: i32, new: &str, flags: i32) {
    let (a, b) = (cs(existing), cs(new));
    let what = format!("linkat({d1}, {existing}, {d2}, {new})");
    sys!(
        what,
        libc::SYS_linkat,
        d1,
        a.as_ptr(),
        d2,
        b.as_ptr(),
        flags
    );
}

pub fn symlink(target: &str, path: &str) {
    let (a, b) = (cs(target), cs(path));
    sys!(
        format!("symlink({target}, {path})"),
        libc::SYS_symlink,
        a.as_ptr(),
        b.as_ptr()
    );
}

pub fn symlinkat(target: &str, dirfd: i32, name: &str) {
    let (a, b) = (cs(target), cs(name));
    let what = format!("symlinkat({target}, {dirfd}, {name})");
    sys!(what, libc::SYS_symlinkat, a.as_ptr(), dirfd, b.as_ptr());
}

pub fn chmod(path: &str, mode: u32) {
    let p = cs(path);
    sys!(format!("chmod({path})"), libc::SYS_chmod, p.as_ptr(), mode);
}

pub fn fchmod(fd: i32, mode: u32) {
    sys!("fchmod", libc::SYS_fchmod, fd, mode);
}

pub fn fchmodat(dirfd: i32, name: &str, mode: u32) {
    let p = cs(name);
    sys!(
        format!("fchmodat({dirfd}, {name})"),
        libc::SYS_fchmodat,
        dirfd,
        p.as_ptr(),
        mode
    );
}

/// uid/gid -1 leave the id unchanged (passed as the kernel's 32-bit (uid_t)-1).
pub fn chown(path: &str, uid: i32, gid: i32) {
    let p = cs(path);
    let (u, g) = (uid as u32, gid as u32);
    sys!(format!("chown({path})"), libc::SYS_chown, p.as_ptr(), u, g);
}

pub fn fchown(fd: i32, uid: i32, gid: i32) {
    sys!("fchown", libc::SYS_fchown, fd, uid as u32, gid as u32);
}

pub fn lchown(path: &str, uid: i32, gid: i32) {
    let p = cs(path);
    let (u, g) = (uid as u32, gid as u32);
    sys!(
        format!("lchown({path})"),
        libc::SYS_lchown,
        p.as_ptr(),
        u,
        g
    );
}

pub fn fchownat(dirfd: i32, name: &str, uid: i32, gid: i32, flags: i32) {
    let p = cs(name);
    let (u, g) = (uid as u32, gid as u32);
    let what = format!("fchownat({dirfd}, {name})");
    sys!(what, libc::SYS_fchownat, dirfd, p.as_ptr(), u, g, flags);
}

/// utimensat(dirfd, name, times, 0); `name` None is the fd form (NULL path), `times`
/// None sets both times to now.
pub fn utimensat(dirfd: i32, name: Option<&str>, times: Option<[libc::timespec; 2]>) {
    utimensat_flags(dirfd, name, times, 0);
}

/// [`utimensat`] with `flags` (`AT_SYMLINK_NOFOLLOW`).
pub fn utimensat_flags(
    dirfd: i32,
    name: Option<&str>,
    times: Option<[libc::timespec; 2]>,
    flags: i32,
) {
    let p = name.map(cs);
    let pp = p.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
    let tp = times.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
    let what = format!("utimensat({dirfd}, {name:?}, {flags:#x})");
    sys!(what, libc::SYS_utimensat, dirfd, pp, tp, flags);
}

pub fn utimes(path: &str) {
    let p = cs(path);
    sys!(format!("utimes({path})"), libc::SYS_utimes, p.as_ptr(), 0);
}

pub fn setxattr(path: &str, name: &str, value: &[u8]) {
    let (p, n) = (cs(path), cs(name));
    let what = format!("setxattr({path}, {name})");
    let (v, l) = (value.as_ptr(), value.len());
    sys!(what, libc::SYS_setxattr, p.as_ptr(), n.as_ptr(), v, l, 0);
}

pub fn lsetxattr(path: &str, name: &str, value: &[u8]) {
    let (p, n) = (cs(path), cs(name));
    let what = format!("lsetxattr({path}, {name})");
    let (v, l) = (value.as_ptr(), value.len());
    sys!(what, libc::SYS_lsetxattr, p.as_ptr(), n.as_ptr(), v, l, 0);
}

pub fn fsetxattr(fd: i32, name: &str, value: &[u8]) {
    let n = cs(name);
    let (v, l) = (value.as_ptr(), value.len());
    sys!(
        format!("fsetxattr({name})"),
        libc::SYS_fsetxattr,
        fd,
        n.as_ptr(),
        v,
        l,
        0
    );
}

pub fn removexattr(path: &str, name: &str) {
    let (p, n) = (cs(path), cs(name));
    let what = format!("removexattr({path}, {name})");
    sys!(what, libc::SYS_removexattr, p.as_ptr(), n.as_ptr());
}

pub fn lremovexattr(path: &str, name: &str) {
    let (p, n) = (cs(path), cs(name));
    let what = format!("lremovexattr({path}, {name})");
    sys!(what, libc::SYS_lremovexattr, p.as_ptr(), n.as_ptr());
}

pub fn fremovexattr(fd: i32, name: &str) {
    let n = cs(name);
    sys!(
        format!("fremovexattr({name})"),
        libc::SYS_fremovexattr,
        fd,
        n.as_ptr()
    );
}

pub fn chdir(path: &str) {
    let p = cs(path);
    sys!(format!("chdir({path})"), libc::SYS_chdir, p.as_ptr());
}

pub fn umask(mask: u32) {
    // SAFETY: umask cannot fail.
    unsafe { libc::syscall(libc::SYS_umask, mask as c_long) };
}

pub fn gettid() -> u32 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}
