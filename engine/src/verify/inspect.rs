//! What one side holds under a name: the one reading of an object a verification
//! compares, done the same way on the source and on the replica so that the two can
//! only differ by what the trees hold.
//!
//! Names are opened beneath a root (`openat2` with `RESOLVE_BENEATH`), never following a
//! final symlink, so a peer's name cannot make the target read outside the replica.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

#[cfg(doc)]
use crate::net::proto::verify::MAX_LISTED;
use crate::net::proto::verify::{Ask, Inspected, ObjKind, MAX_XATTRS};
use crate::sys;

/// Bytes of one checksummed block. 64 KiB is the mirror's default chunk
/// (`MirrorChunkSize`), so a differing block is what one mirror write resends; blocks
/// this size keep a request's checksums few (32 by default cover 2 MiB) while crc32c,
/// computed by the CPU's own instruction, hashes them faster than the disk reads them.
pub const BLOCK: u64 = 64 * 1024;

/// The largest attribute list and value Linux allows (`XATTR_LIST_MAX`, `XATTR_SIZE_MAX`).
const XATTR_LIST_MAX: usize = 65_536;
const XATTR_SIZE_MAX: usize = 65_536;

/// Reads what `root` holds under `ask.path` (relative; empty: the root itself): its kind
/// and attributes, the checksums of the blocks asked for, a directory's names if asked,
/// at most `listed` of them (the replica's answer is capped at [`MAX_LISTED`]; the
/// source walks every name). A name that is not there (or whose parent is not a
/// directory) is `Missing`.
pub fn inspect(root: BorrowedFd<'_>, ask: &Ask, listed: usize) -> io::Result<Inspected> {
    let rel = Path::new(OsStr::from_bytes(&ask.path));
    let (dir, name) = match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => (open_beneath(root, parent)?, name),
        _ => (open_beneath(root, Path::new(""))?, OsStr::new(".")),
    };
    let Some(dir) = dir else {
        return Ok(missing());
    };
    let cname = sys::cstring(name.as_bytes())?;
    let st = match sys::fs::fstatat(&dir, &cname, libc::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(e) if gone(&e) => return Ok(missing()),
        Err(e) => return Err(e),
    };
    let mut found = attributes(&st);
    match found.kind() {
        ObjKind::Symlink => found.link = sys::fs::readlinkat(&dir, &cname)?,
        ObjKind::File | ObjKind::Dir => {
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
            let fd = match sys::fs::openat(&dir, &cname, flags) {
                Ok(fd) => fd,
                // Replaced by another kind of object since the stat: read as changed.
                Err(e) if gone(&e) || e.raw_os_error() == Some(libc::ELOOP) => return Ok(missing()),
                Err(e) => return Err(e),
            };
            found.xattrs = xattrs(&fd)?;
            if found.kind() == ObjKind::File {
                found.sums = sums(fd, ask.first_block, ask.blocks)?;
            } else if ask.list {
                list(&fd, &mut found, listed)?;
            }
        }
        ObjKind::Special | ObjKind::Missing => {}
    }
    Ok(found)
}

fn missing() -> Inspected {
    Inspected {
        kind: Some(ObjKind::Missing),
        ..Inspected::default()
    }
}

/// Errors that mean the name is not there to read.
fn gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

/// The directory `rel` beneath `root`, or `None` if it is not there.
fn open_beneath(root: BorrowedFd<'_>, rel: &Path) -> io::Result<Option<OwnedFd>> {
    let p = if rel.as_os_str().is_empty() {
        OsStr::new(".")
    } else {
        rel.as_os_str()
    };
    let c = sys::cstring(p.as_bytes())?;
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    match sys::fs::openat2(root, &c, flags, 0, resolve) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn attributes(st: &libc::stat) -> Inspected {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => ObjKind::File,
        libc::S_IFDIR => ObjKind::Dir,
        libc::S_IFLNK => ObjKind::Symlink,
        _ => ObjKind::Special,
    };
    Inspected {
        kind: Some(kind),
        mode: st.st_mode & !libc::S_IFMT,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
        mtime: (st.st_mtime, st.st_mtime_nsec as u32),
        links: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
        ..Inspected::default()
    }
}

/// The object's extended attributes, sorted by name; at most [`MAX_XATTRS`] (more are
/// not compared).
fn xattrs(fd: &OwnedFd) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let list = match sys::xattr::list_fd(fd.as_fd(), XATTR_LIST_MAX) {
        Ok(l) => l,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in sys::xattr::names(&list).take(MAX_XATTRS) {
        let c = sys::cstring(name)?;
        match sys::xattr::get_fd(fd.as_fd(), &c, XATTR_SIZE_MAX) {
            Ok(v) => out.push((name.to_vec(), v)),
            // Removed since the list was read.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// crc32c of `blocks` blocks from `first`; a block past the end is not there (the size
/// says so), a short last block is hashed as it is.
fn sums(fd: OwnedFd, first: u64, blocks: u32) -> io::Result<Vec<u32>> {
    let file = File::from(fd);
    let mut buf = vec![0u8; BLOCK as usize];
    let mut out = Vec::with_capacity(blocks as usize);
    for b in first..first.saturating_add(u64::from(blocks)) {
        let n = read_block(&file, &mut buf, b.saturating_mul(BLOCK))?;
        if n == 0 {
            break;
        }
        out.push(crc32c::crc32c(&buf[..n]));
    }
    Ok(out)
}

/// Fills `buf` from `at` as far as the file goes; the bytes read.
fn read_block(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A directory's names, sorted, cut at `max`.
fn list(fd: &OwnedFd, found: &mut Inspected, max: usize) -> io::Result<()> {
    let mut names: Vec<Vec<u8>> = sys::fs::dir_names(fd.as_fd())?
        .into_iter()
        .map(|n| n.as_bytes().to_vec())
        .collect();
    names.sort();
    found.names_cut = names.len() > max;
    names.truncate(max);
    found.names = names;
    Ok(())
}

/// What says whether an object changed: its inode, change time, size and mtime (a
/// change of any attribute or of the data moves the change time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub ino: u64,
    pub is_file: bool,
    /// Change time, wall-clock ns.
    pub ctime_ns: i128,
    pub size: u64,
    pub mtime: (i64, i64),
}

/// The [`Stamp`] of `rel` beneath `root`, `None` if it is not there.
pub fn stamp(root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<Option<Stamp>> {
    let rel = Path::new(OsStr::from_bytes(rel));
    let (dir, name) = match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => (open_beneath(root, parent)?, name),
        _ => (open_beneath(root, Path::new(""))?, OsStr::new(".")),
    };
    let Some(dir) = dir else { return Ok(None) };
    let cname = sys::cstring(name.as_bytes())?;
    match sys::fs::fstatat(&dir, &cname, libc::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Stamp {
            ino: st.st_ino,
            is_file: st.st_mode & libc::S_IFMT == libc::S_IFREG,
            ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
        })),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
