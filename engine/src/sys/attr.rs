//! Mode, owner and times, on a descriptor or on a name in a directory.
//!
//! Times are `(seconds, nanoseconds)`. An owner `None` leaves that id as it is (-1).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use libc::c_int;
use nix::fcntl::AtFlags;
use nix::sys::stat::{self, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid};

use super::{cvt, errno};

/// `fchmod(fd, mode)`.
pub(crate) fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    stat::fchmod(fd, Mode::from_bits_retain(mode)).map_err(errno)
}

/// `fchmodat2(dir, name, mode, flags)`.
///
/// Written by hand: nix's `fchmodat` calls glibc's `fchmodat`, which takes neither
/// `AT_EMPTY_PATH` nor the `fchmodat2` system call.
pub(crate) fn fchmodat2(dir: impl AsFd, name: &CStr, mode: u32, flags: c_int) -> io::Result<()> {
    // SAFETY: a descriptor open for the call, a NUL-terminated name, and two integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            mode,
            flags,
        )
    };
    cvt(r).map(drop)
}

/// `fchown(fd, uid, gid)`.
pub(crate) fn fchown(fd: impl AsFd, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    unistd::fchown(fd, uid.map(Uid::from_raw), gid.map(Gid::from_raw)).map_err(errno)
}

/// `fchownat(dir, name, uid, gid, flags)`.
pub(crate) fn fchownat(
    dir: impl AsFd,
    name: &CStr,
    uid: Option<u32>,
    gid: Option<u32>,
    flags: c_int,
) -> io::Result<()> {
    let (uid, gid) = (uid.map(Uid::from_raw), gid.map(Gid::from_raw));
    unistd::fchownat(dir, name, uid, gid, AtFlags::from_bits_retain(flags)).map_err(errno)
}

fn timespec((s, ns): (i64, u32)) -> libc::timespec {
    libc::timespec {
        tv_sec: s,
        tv_nsec: i64::from(ns),
    }
}

/// `futimens(fd, [atime, mtime])`.
pub(crate) fn futimens(fd: impl AsFd, atime: (i64, u32), mtime: (i64, u32)) -> io::Result<()> {
    let (a, m) = (
        TimeSpec::from(timespec(atime)),
        TimeSpec::from(timespec(mtime)),
    );
    stat::futimens(fd, &a, &m).map_err(errno)
}

/// `utimensat(dir, name, [atime, mtime], flags)`.
///
/// Written by hand: nix's `utimensat` takes a follow / no-follow choice, not flags, so it
/// cannot pass `AT_EMPTY_PATH`.
pub(crate) fn utimensat(
    dir: impl AsFd,
    name: &CStr,
    atime: (i64, u32),
    mtime: (i64, u32),
    flags: c_int,
) -> io::Result<()> {
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: a descriptor open for the call, a NUL-terminated name and two timespecs,
    // which the call only reads.
    let r = unsafe {
        libc::utimensat(
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            flags,
        )
    };
    cvt(r).map(drop)
}
