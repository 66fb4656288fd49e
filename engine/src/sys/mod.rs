//! The engine's raw system calls, behind safe functions: the one place its `unsafe` lives.
//!
//! # Why
//!
//! The data path is made of system calls: the replica applies operations with `openat2`,
//! `renameat2`, `mknodat`, `fsetxattr` and the like, and the resolver and the mirror read
//! the source with `getxattr` and `lseek(SEEK_DATA)`. Each raw call has a contract (a
//! NUL-terminated name, a descriptor that stays open, a buffer of the length passed, a
//! descriptor the caller now owns) that the compiler cannot check. Spread over the
//! engine, every caller had to get those contracts right in its own `unsafe` block; here
//! each one is kept once, beside the call, in a `// SAFETY:` comment, and the rest of the
//! engine calls safe functions that take Rust types (`&CStr`, [`AsFd`](std::os::fd::AsFd),
//! slices) and return [`std::io::Result`]. As in aya's `sys` module, the wrappers are thin:
//! what a call means for replication (which flags, which errors are tolerated) stays with
//! the caller, which passes the flags through unchanged.
//!
//! The `nix` crate's safe calls are used where it makes the call as the engine does (the
//! same kernel operation, the same flags); the rest is written here by hand, each with
//! the reason nix does not serve.
//!
//! # What is here
//!
//! - [`fs`]: names and descriptors (open, stat, make, remove, rename, link, list), and the
//!   calls on an open file (allocate, seek data and holes, flags, sync, lock, free space).
//! - [`attr`]: mode, owner and times.
//! - [`xattr`]: extended attributes.
//! - [`mem`]: an aligned buffer for direct I/O, a shared file mapping.
//! - [`process`]: the thread id, the allocator's thresholds.
//! - [`time`]: the monotonic clock.
//!
//! # Errors
//!
//! A failed call's error is `io::Error::from_raw_os_error(errno)`, what
//! `io::Error::last_os_error()` gives after a raw call, so callers match on
//! `raw_os_error()` (see [`errno`] for the one care nix needs).

pub(crate) mod attr;
pub(crate) mod fs;
pub(crate) mod mem;
pub(crate) mod process;
pub(crate) mod time;
pub(crate) mod xattr;

use std::ffi::CString;
use std::io;

use nix::errno::Errno;

/// `bytes` as the NUL-terminated name a call takes; a NUL within them is refused
/// (`InvalidInput`, "NUL in a name").
pub(crate) fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// The `io::Error` of a failed nix call, with the errno the kernel returned.
///
/// nix's [`Errno`] names only the values libc knows; any other (a kernel-internal code a
/// file system lets through, such as `ENOTSUPP` 524) becomes `UnknownErrno`, which is 0.
/// The value is still in `errno` right after the failed call (nix reads it there and
/// calls nothing after), so it is taken from there, as `last_os_error` did before.
/// Call it first thing on the error (`.map_err(errno)`).
pub(crate) fn errno(e: Errno) -> io::Error {
    if e == Errno::UnknownErrno {
        io::Error::last_os_error()
    } else {
        io::Error::from(e)
    }
}

/// `Ok(r)` for a call's non-negative return value, the call's errno otherwise.
fn cvt<T: Copy + PartialOrd + Default>(r: T) -> io::Result<T> {
    if r < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
