//! Extended attributes.
//!
//! Written by hand: neither nix nor std wraps the `*xattr` calls. A value or a list is
//! read into a buffer of the capacity the caller gives (`ERANGE` if it does not fit) and
//! comes back cut to what the call filled.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::cvt;

/// A buffer of `capacity` bytes filled by `call` (which returns the length it filled, or
/// -1 with errno), cut to that length.
fn read_into(capacity: usize, call: impl FnOnce(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; capacity];
    let len = cvt(call(&mut buf))?;
    buf.truncate(len as usize);
    Ok(buf)
}

/// The names in a list `flistxattr` or `llistxattr` returned (NUL-separated).
pub(crate) fn names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0).filter(|n| !n.is_empty())
}

/// `getxattr(path, name)`: the value, following a final symlink.
pub(crate) fn get(path: &CStr, name: &CStr, capacity: usize) -> io::Result<Vec<u8>> {
    read_into(capacity, |buf| {
        // SAFETY: NUL-terminated strings and a buffer of the length passed, which the call
        // fills up to that length.
        unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }
    })
}

/// `fgetxattr(fd, name)`: the value of the open file's attribute.
pub(crate) fn get_fd(fd: impl AsFd, name: &CStr, capacity: usize) -> io::Result<Vec<u8>> {
    read_into(capacity, |buf| {
        // SAFETY: a descriptor open for the call, a NUL-terminated name and a buffer of
        // the length passed, which the call fills up to that length.
        unsafe {
            libc::fgetxattr(
                fd.as_fd().as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }
    })
}

/// `llistxattr(path)`: the names of a file's attributes, not following a final symlink.
pub(crate) fn list_nofollow(path: &CStr, capacity: usize) -> io::Result<Vec<u8>> {
    read_into(capacity, |buf| {
        // SAFETY: a NUL-terminated path and a buffer of the length passed.
        unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
    })
}

/// `flistxattr(fd)`: the names of the open file's attributes.
pub(crate) fn list_fd(fd: impl AsFd, capacity: usize) -> io::Result<Vec<u8>> {
    read_into(capacity, |buf| {
        // SAFETY: a descriptor open for the call and a buffer of the length passed.
        unsafe { libc::flistxattr(fd.as_fd().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
    })
}

/// `fsetxattr(fd, name, value, 0)`: set, made if missing.
pub(crate) fn set_fd(fd: impl AsFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: a descriptor open for the call, a NUL-terminated name and a value of the
    // length passed, which the call only reads.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_fd().as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    cvt(r).map(drop)
}

/// `fremovexattr(fd, name)` (`ENODATA` if the file has no such attribute).
pub(crate) fn remove_fd(fd: impl AsFd, name: &CStr) -> io::Result<()> {
    // SAFETY: a descriptor open for the call and a NUL-terminated name.
    cvt(unsafe { libc::fremovexattr(fd.as_fd().as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// `lsetxattr(path, name, value, 0)`: set on the symlink itself if `path` is one.
#[cfg(test)]
pub(crate) fn set_nofollow(path: &CStr, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: NUL-terminated strings and a value of the length passed, only read.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    cvt(r).map(drop)
}
