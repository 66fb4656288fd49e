//! Names and descriptors: open, stat, make, remove, rename, link, list; and the calls on
//! an open file (allocate, seek data and holes, status flags, sync, lock, free space).
//!
//! Flags are passed through as the caller gives them (`libc` constants), unchanged.

use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use libc::c_int;
use nix::dir::Dir;
use nix::fcntl::ResolveFlag;
use nix::fcntl::{self, AtFlags, FallocateFlags, FcntlArg, OFlag, OpenHow, RenameFlags};
use nix::sys::stat::{self, Mode, SFlag};
use nix::sys::statvfs::{self, Statvfs};
use nix::unistd::{self, UnlinkatFlags, Whence};

use super::{cvt, errno};

/// `open(path, flags)`, for flags without `O_CREAT` (no mode).
pub(crate) fn open(path: &CStr, flags: c_int) -> io::Result<OwnedFd> {
    fcntl::open(path, OFlag::from_bits_retain(flags), Mode::empty()).map_err(errno)
}

/// `openat2(dir, path, {flags, mode, resolve})`: `resolve` is the `RESOLVE_*` bits.
pub(crate) fn openat2(
    dir: impl AsFd,
    path: &CStr,
    flags: c_int,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::from_bits_retain(flags))
        .mode(Mode::from_bits_retain(mode))
        .resolve(ResolveFlag::from_bits_retain(resolve));
    fcntl::openat2(dir, path, how).map_err(errno)
}

/// `openat(dir, name, flags)`, for flags without `O_CREAT` (no mode).
pub(crate) fn openat(dir: impl AsFd, name: &CStr, flags: c_int) -> io::Result<OwnedFd> {
    fcntl::openat(dir, name, OFlag::from_bits_retain(flags), Mode::empty()).map_err(errno)
}

/// `fstatat(dir, name, flags)`.
pub(crate) fn fstatat(dir: impl AsFd, name: &CStr, flags: c_int) -> io::Result<libc::stat> {
    stat::fstatat(dir, name, AtFlags::from_bits_retain(flags)).map_err(errno)
}

/// `mkdirat(dir, name, mode)`.
pub(crate) fn mkdirat(dir: impl AsFd, name: &CStr, mode: u32) -> io::Result<()> {
    stat::mkdirat(dir, name, Mode::from_bits_retain(mode)).map_err(errno)
}

/// `mknodat(dir, name, mode, rdev)`, `mode` with its file type bits.
pub(crate) fn mknodat(dir: impl AsFd, name: &CStr, mode: u32, rdev: u64) -> io::Result<()> {
    // nix passes `kind | perm` as the mode: the whole of `mode` as the kind is the same.
    stat::mknodat(
        dir,
        name,
        SFlag::from_bits_retain(mode),
        Mode::empty(),
        rdev,
    )
    .map_err(errno)
}

/// `unlinkat(dir, name, AT_REMOVEDIR if remove_dir else 0)`.
pub(crate) fn unlinkat(dir: impl AsFd, name: &CStr, remove_dir: bool) -> io::Result<()> {
    let flags = if remove_dir {
        UnlinkatFlags::RemoveDir
    } else {
        UnlinkatFlags::NoRemoveDir
    };
    unistd::unlinkat(dir, name, flags).map_err(errno)
}

/// `renameat2(from_dir, from, to_dir, to, flags)`, `flags` the `RENAME_*` bits.
pub(crate) fn renameat2(
    from_dir: impl AsFd,
    from: &CStr,
    to_dir: impl AsFd,
    to: &CStr,
    flags: u32,
) -> io::Result<()> {
    let flags = RenameFlags::from_bits_retain(flags);
    fcntl::renameat2(from_dir, from, to_dir, to, flags).map_err(errno)
}

/// `linkat(from_dir, from, to_dir, to, flags)`.
pub(crate) fn linkat(
    from_dir: impl AsFd,
    from: &CStr,
    to_dir: impl AsFd,
    to: &CStr,
    flags: c_int,
) -> io::Result<()> {
    let flags = AtFlags::from_bits_retain(flags);
    unistd::linkat(from_dir, from, to_dir, to, flags).map_err(errno)
}

/// `symlinkat(target, dir, name)`: the link text is stored, never followed.
pub(crate) fn symlinkat(target: &CStr, dir: impl AsFd, name: &CStr) -> io::Result<()> {
    unistd::symlinkat(target, dir, name).map_err(errno)
}

/// The text of the symlink `name` in `dir` (`readlinkat`), whole.
pub(crate) fn readlinkat(dir: impl AsFd, name: &CStr) -> io::Result<Vec<u8>> {
    fcntl::readlinkat(dir, name)
        .map(OsString::into_vec)
        .map_err(errno)
}

/// The names in the directory `dir` (without `.` and `..`), read from its start through a
/// duplicate of `dir` (`fdopendir` takes the descriptor it is given): the caller's
/// descriptor stays open. The duplicate shares the caller's offset, which is left at the
/// start. A read error ends the listing, as the end of the directory does.
pub(crate) fn dir_names(dir: impl AsFd) -> io::Result<Vec<OsString>> {
    let mut stream = Dir::from_fd(dir.as_fd().try_clone_to_owned()?).map_err(errno)?;
    // nix's iterator rewinds the stream (`rewinddir`) when dropped: this one, dropped
    // unused, rewinds it before it is read, because the duplicate shares the offset.
    drop(stream.iter());
    let names = stream
        .iter()
        .map_while(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_bytes();
            (name != b"." && name != b"..").then(|| OsStr::from_bytes(name).to_os_string())
        })
        .collect();
    Ok(names)
}

/// `fallocate(fd, mode, offset, len)`.
pub(crate) fn fallocate(fd: impl AsFd, mode: c_int, offset: i64, len: i64) -> io::Result<()> {
    fcntl::fallocate(fd, FallocateFlags::from_bits_retain(mode), offset, len).map_err(errno)
}

/// `lseek(fd, at, SEEK_DATA)`: where the next data at or after `at` starts (`ENXIO`: none).
pub(crate) fn seek_data(fd: impl AsFd, at: i64) -> io::Result<i64> {
    unistd::lseek(fd, at, Whence::SeekData).map_err(errno)
}

/// `lseek(fd, at, SEEK_HOLE)`: where the next hole at or after `at` starts.
pub(crate) fn seek_hole(fd: impl AsFd, at: i64) -> io::Result<i64> {
    unistd::lseek(fd, at, Whence::SeekHole).map_err(errno)
}

/// `fcntl(fd, F_GETFL)`: the descriptor's status flags.
pub(crate) fn status_flags(fd: impl AsFd) -> io::Result<c_int> {
    fcntl::fcntl(fd, FcntlArg::F_GETFL).map_err(errno)
}

/// `fcntl(fd, F_SETFL, flags)`.
pub(crate) fn set_status_flags(fd: impl AsFd, flags: c_int) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(flags);
    fcntl::fcntl(fd, FcntlArg::F_SETFL(flags))
        .map(drop)
        .map_err(errno)
}

/// `syncfs(fd)`: everything written to the file system that holds `fd`, made durable.
pub(crate) fn syncfs(fd: impl AsFd) -> io::Result<()> {
    unistd::syncfs(fd).map_err(errno)
}

/// `fstatvfs(fd)`.
pub(crate) fn fstatvfs(fd: impl AsFd) -> io::Result<Statvfs> {
    statvfs::fstatvfs(fd).map_err(errno)
}

/// `flock(file, LOCK_EX | LOCK_NB)`: an exclusive lock, held until the file is closed
/// (`EWOULDBLOCK` while another open file holds it).
///
/// Written by hand: nix's `Flock` unlocks when dropped (a child process sharing the open
/// file would lose the lock with it), its `flock` is deprecated, and std's
/// `File::try_lock` is newer than the workspace's `rust-version`.
pub(crate) fn lock_exclusive_now(file: &File) -> io::Result<()> {
    // SAFETY: flock takes a descriptor, open for `file`'s lifetime, and two flags; no
    // memory is involved.
    cvt(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }).map(drop)
}
