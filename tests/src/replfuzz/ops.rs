//! The fuzzer's operations: one file-system change each, on names relative to the
//! workload's root, with a one-line text form so a failing run's operations can be saved,
//! replayed and minimized into a regression test.
//!
//! Each operation is performed with the system call rill's capture sees for it (a
//! `pwrite`, a `renameat2`, a `copy_file_range`...), through std where std issues exactly
//! that call and through libc where it does not. A call the kernel refuses (a name that
//! does not exist, a directory in the way, a move into its own subtree) is part of the
//! workload: only what succeeds is captured, and the refusal is returned for the log.

use std::ffi::CString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::data_pattern;

/// `fallocate` modes the workload uses: allocate (size grows), allocate keeping the size,
/// punch a hole, zero a range.
pub const FALLOCATE_MODES: [i32; 4] = [
    0,
    libc::FALLOC_FL_KEEP_SIZE,
    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
    libc::FALLOC_FL_ZERO_RANGE,
];

/// One change to the tree. Paths are relative to the workload's root; `fill` selects the
/// bytes written ([`data_pattern`]), so a shifted or mixed-up copy is caught.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WOp {
    /// `open(O_CREAT|O_WRONLY)` then `pwrite`.
    Write {
        path: PathBuf,
        off: u64,
        len: u32,
        fill: u8,
    },
    /// `open(O_CREAT|O_WRONLY|O_APPEND)` then `write`.
    Append {
        path: PathBuf,
        len: u32,
        fill: u8,
    },
    /// `pwritev` of two buffers.
    Writev {
        path: PathBuf,
        off: u64,
        len: u32,
        fill: u8,
    },
    /// `open(O_CREAT|O_WRONLY|O_TRUNC)`.
    CreateTrunc {
        path: PathBuf,
    },
    /// `truncate` by name.
    Truncate {
        path: PathBuf,
        size: u64,
    },
    /// `ftruncate` of an open file.
    Ftruncate {
        path: PathBuf,
        size: u64,
    },
    /// `fallocate` with one of [`FALLOCATE_MODES`].
    Fallocate {
        path: PathBuf,
        mode: i32,
        off: u64,
        len: u64,
    },
    /// `copy_file_range` of `len` bytes from the start of `from` into `to` at `off`.
    Copy {
        from: PathBuf,
        to: PathBuf,
        off: u64,
        len: u32,
    },
    /// `renameat2` with `flags` (0, `RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
    Rename {
        from: PathBuf,
        to: PathBuf,
        flags: u32,
    },
    Link {
        from: PathBuf,
        to: PathBuf,
    },
    Symlink {
        text: PathBuf,
        path: PathBuf,
    },
    Unlink {
        path: PathBuf,
    },
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    Rmdir {
        path: PathBuf,
    },
    /// `mknod` of a FIFO.
    Mkfifo {
        path: PathBuf,
    },
    Chmod {
        path: PathBuf,
        mode: u32,
    },
    /// `lchown`: a symlink's own owner.
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
    },
    /// `utimensat(AT_SYMLINK_NOFOLLOW)`, both times set to `sec.nsec`.
    Utimes {
        path: PathBuf,
        sec: i64,
        nsec: u32,
    },
    SetXattr {
        path: PathBuf,
        name: String,
        value: u32,
    },
    RemoveXattr {
        path: PathBuf,
        name: String,
    },
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| CString::from(c"\u{1}"))
}

/// The result of a libc call that returns -1 and sets errno on failure.
fn ok(ret: i64) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens for writing, creating a regular file if the name is free. `O_NONBLOCK` because
/// the name may be a FIFO the workload made: without it, the open would wait for a reader
/// forever; with it, it is refused (`ENXIO`) like any other impossible operation.
fn open(path: &Path, extra: i32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(extra | libc::O_NONBLOCK)
        .open(path)
}

/// Opens an existing file, never waiting on a FIFO (see [`open`]).
fn open_existing(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

impl WOp {
    /// The name of the object the operation changed or made, once it is done, and whether
    /// the operation followed a symlink there (opened the file by name): what `ops.txt`
    /// gives the inode of, so a file can be followed through names and links.
    pub fn changed(&self) -> Option<(&Path, bool)> {
        use WOp::*;
        match self {
            Write { path, .. }
            | Append { path, .. }
            | Writev { path, .. }
            | CreateTrunc { path }
            | Truncate { path, .. }
            | Ftruncate { path, .. }
            | Fallocate { path, .. }
            | Chmod { path, .. } => Some((path, true)),
            Copy { to, .. } => Some((to, true)),
            Rename { to, .. } | Link { to, .. } => Some((to, false)),
            Symlink { path, .. }
            | Mkdir { path, .. }
            | Mkfifo { path }
            | Chown { path, .. }
            | Utimes { path, .. }
            | SetXattr { path, .. }
            | RemoveXattr { path, .. } => Some((path, false)),
            Unlink { .. } | Rmdir { .. } => None,
        }
    }

    /// Performs the operation beneath `root`.
    pub fn apply(&self, root: &Path) -> io::Result<()> {
        let at = |p: &Path| root.join(p);
        match self {
            WOp::Write {
                path,
                off,
                len,
                fill,
            } => {
                let data = data_pattern(*len as usize, *fill);
                open(&at(path), 0)?.write_all_at(&data, *off)
            }
            WOp::Append { path, len, fill } => {
                let data = data_pattern(*len as usize, *fill);
                io::Write::write_all(&mut open(&at(path), libc::O_APPEND)?, &data)
            }
            WOp::Writev {
                path,
                off,
                len,
                fill,
            } => {
                let data = data_pattern(*len as usize, *fill);
                pwritev_in_halves(&open(&at(path), 0)?, &data, *off)
            }
            WOp::CreateTrunc { path } => open(&at(path), libc::O_TRUNC).map(drop),
            WOp::Truncate { path, size } => {
                // SAFETY: a NUL-terminated path.
                ok(unsafe { libc::truncate(c(&at(path)).as_ptr(), *size as i64) }.into())
            }
            WOp::Ftruncate { path, size } => open_existing(&at(path), true)?.set_len(*size),
            WOp::Fallocate {
                path,
                mode,
                off,
                len,
            } => {
                let f = open_existing(&at(path), true)?;
                // SAFETY: an fd we own.
                let r = unsafe { libc::fallocate(f.as_raw_fd(), *mode, *off as i64, *len as i64) };
                ok(r.into())
            }
            WOp::Copy { from, to, off, len } => {
                let src = open_existing(&at(from), false)?;
                copy_file_range(&src, &open(&at(to), 0)?, *off, *len)
            }
            WOp::Rename { from, to, flags } => rename2(&at(from), &at(to), *flags),
            WOp::Link { from, to } => std::fs::hard_link(at(from), at(to)),
            WOp::Symlink { text, path } => std::os::unix::fs::symlink(text, at(path)),
            WOp::Unlink { path } => std::fs::remove_file(at(path)),
            WOp::Mkdir { path, mode } => {
                std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), *mode)
                    .create(at(path))
            }
            WOp::Rmdir { path } => std::fs::remove_dir(at(path)),
            WOp::Mkfifo { path } => {
                // SAFETY: a NUL-terminated path.
                ok(unsafe { libc::mknod(c(&at(path)).as_ptr(), libc::S_IFIFO | 0o640, 0) }.into())
            }
            WOp::Chmod { path, mode } => {
                // SAFETY: a NUL-terminated path.
                ok(unsafe { libc::chmod(c(&at(path)).as_ptr(), *mode) }.into())
            }
            WOp::Chown { path, uid, gid } => {
                std::os::unix::fs::lchown(at(path), Some(*uid), Some(*gid))
            }
            WOp::Utimes { path, sec, nsec } => set_times(&at(path), *sec, *nsec),
            WOp::SetXattr { path, name, value } => {
                let (p, n) = (c(&at(path)), c(Path::new(name)));
                let v = format!("v{value}");
                // SAFETY: NUL-terminated path and name, a value buffer of the given length.
                let r = unsafe {
                    libc::lsetxattr(p.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0)
                };
                ok(r.into())
            }
            WOp::RemoveXattr { path, name } => {
                let (p, n) = (c(&at(path)), c(Path::new(name)));
                // SAFETY: NUL-terminated path and name.
                ok(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) }.into())
            }
        }
    }
}

/// `pwritev` of `data` at `off` as two vectors, the first half and the rest.
fn pwritev_in_halves(f: &File, data: &[u8], off: u64) -> io::Result<()> {
    let (a, b) = data.split_at(data.len() / 2);
    let iov = [a, b].map(|s| libc::iovec {
        iov_base: s.as_ptr() as *mut libc::c_void,
        iov_len: s.len(),
    });
    // SAFETY: two iovecs over `data`, alive for the call; an fd the caller owns.
    ok(unsafe { libc::pwritev(f.as_raw_fd(), iov.as_ptr(), 2, off as i64) as i64 })
}

/// `copy_file_range` of `len` bytes from `src`'s file position to `dst` at `off`.
fn copy_file_range(src: &File, dst: &File, off: u64, len: u32) -> io::Result<()> {
    let mut o = off as i64;
    // SAFETY: fds the caller owns; `o` outlives the call; a null input offset means the
    // input's file position.
    let r = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            std::ptr::null_mut(),
            dst.as_raw_fd(),
            &mut o,
            len as usize,
            0,
        )
    };
    ok(r as i64)
}

/// `renameat2` with `flags` (exchange, no-replace).
fn rename2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let (f, t) = (c(from), c(to));
    // SAFETY: NUL-terminated paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    };
    ok(r.into())
}

/// Both times of `path` itself (a symlink's own, not its target's).
fn set_times(path: &Path, sec: i64, nsec: u32) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: sec,
        tv_nsec: i64::from(nsec),
    };
    let times = [t, t];
    let p = c(path);
    // SAFETY: a NUL-terminated path and two timespecs alive for the call.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    ok(r.into())
}

/// Renames' flags by name in the text form.
const RENAME_FLAGS: [(&str, u32); 3] = [
    ("rename", 0),
    ("rename-noreplace", libc::RENAME_NOREPLACE),
    ("exchange", libc::RENAME_EXCHANGE),
];

impl fmt::Display for WOp {
    /// `kind arg...`, paths as they are (the generator's names hold no spaces).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |p: &PathBuf| p.display().to_string();
        match self {
            WOp::Write {
                path,
                off,
                len,
                fill,
            } => {
                write!(f, "write {} {off} {len} {fill}", d(path))
            }
            WOp::Append { path, len, fill } => write!(f, "append {} {len} {fill}", d(path)),
            WOp::Writev {
                path,
                off,
                len,
                fill,
            } => {
                write!(f, "writev {} {off} {len} {fill}", d(path))
            }
            WOp::CreateTrunc { path } => write!(f, "create-trunc {}", d(path)),
            WOp::Truncate { path, size } => write!(f, "truncate {} {size}", d(path)),
            WOp::Ftruncate { path, size } => write!(f, "ftruncate {} {size}", d(path)),
            WOp::Fallocate {
                path,
                mode,
                off,
                len,
            } => {
                write!(f, "fallocate {} {mode} {off} {len}", d(path))
            }
            WOp::Copy { from, to, off, len } => {
                write!(f, "copy {} {} {off} {len}", d(from), d(to))
            }
            WOp::Rename { from, to, flags } => {
                let name = RENAME_FLAGS
                    .iter()
                    .find(|(_, v)| v == flags)
                    .map_or("rename", |(n, _)| n);
                write!(f, "{name} {} {}", d(from), d(to))
            }
            WOp::Link { from, to } => write!(f, "link {} {}", d(from), d(to)),
            WOp::Symlink { text, path } => write!(f, "symlink {} {}", d(text), d(path)),
            WOp::Unlink { path } => write!(f, "unlink {}", d(path)),
            WOp::Mkdir { path, mode } => write!(f, "mkdir {} {mode:o}", d(path)),
            WOp::Rmdir { path } => write!(f, "rmdir {}", d(path)),
            WOp::Mkfifo { path } => write!(f, "mkfifo {}", d(path)),
            WOp::Chmod { path, mode } => write!(f, "chmod {} {mode:o}", d(path)),
            WOp::Chown { path, uid, gid } => write!(f, "chown {} {uid} {gid}", d(path)),
            WOp::Utimes { path, sec, nsec } => write!(f, "utimes {} {sec} {nsec}", d(path)),
            WOp::SetXattr { path, name, value } => {
                write!(f, "setxattr {} {name} {value}", d(path))
            }
            WOp::RemoveXattr { path, name } => write!(f, "removexattr {} {name}", d(path)),
        }
    }
}

/// Why a line is not an operation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("operation `{line}`: {why}")]
pub struct ParseError {
    line: String,
    why: String,
}

impl FromStr for WOp {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<WOp, ParseError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (&kind, args) = words.split_first().ok_or_else(|| ParseError {
            line: line.into(),
            why: "empty".into(),
        })?;
        let w = Words { line, kind, args };
        match kind {
            "write" | "writev" | "append" | "create-trunc" | "truncate" | "ftruncate"
            | "fallocate" | "copy" => w.data_op(),
            "link" | "symlink" | "unlink" | "rmdir" | "mkfifo" | "mkdir" => w.name_op(),
            "chmod" | "chown" | "utimes" | "setxattr" | "removexattr" => w.attribute_op(),
            _ => w.rename(),
        }
    }
}

/// One line of the text form split into its operation's name (`kind`) and arguments, with
/// the typed readings of an argument that every operation shares.
struct Words<'a> {
    line: &'a str,
    kind: &'a str,
    args: &'a [&'a str],
}

impl Words<'_> {
    fn fail(&self, why: &str) -> ParseError {
        ParseError {
            line: self.line.into(),
            why: why.into(),
        }
    }

    fn arity(&self, n: usize) -> Result<(), ParseError> {
        (self.args.len() == n)
            .then_some(())
            .ok_or_else(|| self.fail(&format!("`{}` takes {n} arguments", self.kind)))
    }

    fn path(&self, i: usize) -> Result<PathBuf, ParseError> {
        let s = self.args[i];
        if s.starts_with('/') || Path::new(s).components().any(|c| c.as_os_str() == "..") {
            return Err(self.fail("paths are relative to the root and never hold `..`"));
        }
        Ok(PathBuf::from(s))
    }

    fn number(&self, i: usize) -> Result<u64, ParseError> {
        self.args[i]
            .parse()
            .map_err(|_| self.fail(&format!("`{}` is not a number", self.args[i])))
    }

    fn octal(&self, i: usize) -> Result<u32, ParseError> {
        u32::from_str_radix(self.args[i], 8)
            .map_err(|_| self.fail(&format!("`{}` is not an octal mode", self.args[i])))
    }

    fn small(&self, i: usize) -> Result<u32, ParseError> {
        u32::try_from(self.number(i)?)
            .map_err(|_| self.fail(&format!("`{}` is too large", self.args[i])))
    }

    fn byte(&self, i: usize) -> Result<u8, ParseError> {
        u8::try_from(self.number(i)?)
            .map_err(|_| self.fail(&format!("`{}` is not a byte", self.args[i])))
    }

    /// Operations on a file's data.
    fn data_op(&self) -> Result<WOp, ParseError> {
        Ok(match self.kind {
            "write" | "writev" => {
                self.arity(4)?;
                let (path, off) = (self.path(0)?, self.number(1)?);
                let (len, fill) = (self.small(2)?, self.byte(3)?);
                if self.kind == "write" {
                    WOp::Write {
                        path,
                        off,
                        len,
                        fill,
                    }
                } else {
                    WOp::Writev {
                        path,
                        off,
                        len,
                        fill,
                    }
                }
            }
            "append" => {
                self.arity(3)?;
                let (path, len, fill) = (self.path(0)?, self.small(1)?, self.byte(2)?);
                WOp::Append { path, len, fill }
            }
            "create-trunc" => {
                self.arity(1)?;
                WOp::CreateTrunc {
                    path: self.path(0)?,
                }
            }
            "truncate" | "ftruncate" => {
                self.arity(2)?;
                let (path, size) = (self.path(0)?, self.number(1)?);
                if self.kind == "truncate" {
                    WOp::Truncate { path, size }
                } else {
                    WOp::Ftruncate { path, size }
                }
            }
            "fallocate" => {
                self.arity(4)?;
                let mode = self.args[1]
                    .parse()
                    .ok()
                    .filter(|m| FALLOCATE_MODES.contains(m))
                    .ok_or_else(|| self.fail("the mode is one of FALLOCATE_MODES"))?;
                let (path, off, len) = (self.path(0)?, self.number(2)?, self.number(3)?);
                WOp::Fallocate {
                    path,
                    mode,
                    off,
                    len,
                }
            }
            _ => {
                self.arity(4)?;
                let (from, to) = (self.path(0)?, self.path(1)?);
                let (off, len) = (self.number(2)?, self.small(3)?);
                WOp::Copy { from, to, off, len }
            }
        })
    }

    /// Operations that make or remove a name.
    fn name_op(&self) -> Result<WOp, ParseError> {
        Ok(match self.kind {
            "link" => {
                self.arity(2)?;
                let (from, to) = (self.path(0)?, self.path(1)?);
                WOp::Link { from, to }
            }
            "symlink" => {
                self.arity(2)?;
                let text = PathBuf::from(self.args[0]);
                WOp::Symlink {
                    text,
                    path: self.path(1)?,
                }
            }
            "mkdir" => {
                self.arity(2)?;
                let (path, mode) = (self.path(0)?, self.octal(1)?);
                WOp::Mkdir { path, mode }
            }
            kind => {
                self.arity(1)?;
                let path = self.path(0)?;
                match kind {
                    "unlink" => WOp::Unlink { path },
                    "rmdir" => WOp::Rmdir { path },
                    _ => WOp::Mkfifo { path },
                }
            }
        })
    }

    /// Operations on a name's attributes.
    fn attribute_op(&self) -> Result<WOp, ParseError> {
        Ok(match self.kind {
            "chmod" => {
                self.arity(2)?;
                let (path, mode) = (self.path(0)?, self.octal(1)?);
                WOp::Chmod { path, mode }
            }
            "chown" => {
                self.arity(3)?;
                let (path, uid, gid) = (self.path(0)?, self.small(1)?, self.small(2)?);
                WOp::Chown { path, uid, gid }
            }
            "utimes" => {
                self.arity(3)?;
                let sec =
                    i64::try_from(self.number(1)?).map_err(|_| self.fail("seconds too large"))?;
                let nsec = self.small(2)?.min(999_999_999);
                WOp::Utimes {
                    path: self.path(0)?,
                    sec,
                    nsec,
                }
            }
            "setxattr" => {
                self.arity(3)?;
                let (path, value) = (self.path(0)?, self.small(2)?);
                let name = self.args[1].into();
                WOp::SetXattr { path, name, value }
            }
            _ => {
                self.arity(2)?;
                let name = self.args[1].into();
                WOp::RemoveXattr {
                    path: self.path(0)?,
                    name,
                }
            }
        })
    }

    /// The renames, by their flags' names, or no operation at all.
    fn rename(&self) -> Result<WOp, ParseError> {
        let Some(&(_, flags)) = RENAME_FLAGS.iter().find(|(n, _)| *n == self.kind) else {
            return Err(self.fail("unknown operation"));
        };
        self.arity(2)?;
        let (from, to) = (self.path(0)?, self.path(1)?);
        Ok(WOp::Rename { from, to, flags })
    }
}

/// Operations from their text form, one per line; blank lines and `#` comments (a whole
/// line, or after an operation: `ops.txt` notes there what the kernel refused) are skipped.
pub fn parse_ops(text: &str) -> Result<Vec<WOp>, ParseError> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_survives_its_text_form() {
        let p = |s: &str| PathBuf::from(s);
        let ops = vec![
            WOp::Write {
                path: p("a/f"),
                off: 7,
                len: 9,
                fill: 3,
            },
            WOp::Append {
                path: p("f"),
                len: 1,
                fill: 0,
            },
            WOp::Writev {
                path: p("f"),
                off: 0,
                len: 2,
                fill: 9,
            },
            WOp::CreateTrunc { path: p("f") },
            WOp::Truncate {
                path: p("f"),
                size: 5,
            },
            WOp::Ftruncate {
                path: p("f"),
                size: 0,
            },
            WOp::Fallocate {
                path: p("f"),
                mode: FALLOCATE_MODES[2],
                off: 1,
                len: 2,
            },
            WOp::Copy {
                from: p("a"),
                to: p("b"),
                off: 3,
                len: 4,
            },
            WOp::Rename {
                from: p("a"),
                to: p("b/c"),
                flags: 0,
            },
            WOp::Rename {
                from: p("a"),
                to: p("b"),
                flags: libc::RENAME_EXCHANGE,
            },
            WOp::Rename {
                from: p("a"),
                to: p("b"),
                flags: libc::RENAME_NOREPLACE,
            },
            WOp::Link {
                from: p("a"),
                to: p("b"),
            },
            WOp::Symlink {
                text: p("../x"),
                path: p("l"),
            },
            WOp::Unlink { path: p("a") },
            WOp::Mkdir {
                path: p("d"),
                mode: 0o750,
            },
            WOp::Rmdir { path: p("d") },
            WOp::Mkfifo { path: p("q") },
            WOp::Chmod {
                path: p("a"),
                mode: 0o4755,
            },
            WOp::Chown {
                path: p("a"),
                uid: 1000,
                gid: 2000,
            },
            WOp::Utimes {
                path: p("a"),
                sec: 1_600_000_000,
                nsec: 5,
            },
            WOp::SetXattr {
                path: p("a"),
                name: "user.k1".into(),
                value: 42,
            },
            WOp::RemoveXattr {
                path: p("a"),
                name: "user.k1".into(),
            },
        ];
        let text: String = ops.iter().map(|o| format!("{o}\n")).collect();
        assert_eq!(parse_ops(&format!("# header\n\n{text}")).unwrap(), ops);
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let err = |l: &str| l.parse::<WOp>().unwrap_err().to_string();
        assert!(err("write f 1 2").contains("takes 4 arguments"));
        assert!(err("write /etc/passwd 0 1 1").contains("relative"));
        assert!(err("rename a/../../b c").contains("`..`"));
        assert!(err("truncate f x").contains("not a number"));
        assert!(err("chmod f 9").contains("octal"));
        assert!(err("fallocate f 77 0 1").contains("FALLOCATE_MODES"));
        assert!(err("write f 0 1 300").contains("not a byte"));
        assert!(err("frobnicate f").contains("unknown operation"));
    }
}
