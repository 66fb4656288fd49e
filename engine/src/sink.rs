//! The queue's consumer: the [`Transmit`] interface, and [`LocalSink`], which applies
//! operations to a directory on this host.
//!
//! The transport (issue 4) implements `Transmit` toward a target; `LocalSink` serves tests
//! and single-host replication, and its confinement is the target's: every path is resolved
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` from the
//! root, and the last component is acted on with `*at` calls that do not follow symlinks,
//! so neither `..` nor a symlink planted in the replica leads outside it.
//!
//! What the capture does not carry (the new times of a `utimes`, an extended attribute's
//! value) is read from the source when the operation is sent, as a transport's sender on
//! the source host does. Writes move a file's times on the replica too, so `flush` copies
//! the source's current times onto every file written since the last flush. Operations
//! are idempotent where a replay after a crash needs it (an `unlink` of a missing name, a
//! `mkdir` of an existing directory succeed).

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use rill_driver_linux::{Event, Op};

use crate::queue::Queued;

/// Where operations go. `send` returns once the operation is applied or queued durably
/// enough that `flush` makes it durable; the caller acknowledges the queue after `flush`.
pub trait Transmit {
    fn send(&mut self, op: &Queued) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0} is not under the replicated source directory")]
    Outside(PathBuf),
    #[error("write to {0} carries no data (range-only): it must go through the change journal")]
    NoData(PathBuf),
    #[error("{0:?} is not an operation to apply")]
    NotAnOperation(Op),
    #[error("applying {op} to {path}: {source}")]
    Apply {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Applies operations under `root`, for paths under `source`.
pub struct LocalSink {
    source: PathBuf,
    root: OwnedFd,
    /// Files written since the last flush: synced, and given the source's times, by `flush`.
    written: HashMap<PathBuf, File>,
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Tolerates the errors a replayed operation meets: the name is already gone or there.
fn replayed(r: io::Result<()>, tolerated: i32) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(tolerated) => Ok(()),
        other => other,
    }
}

impl LocalSink {
    /// Replicates `source` (absolute) into the existing directory `root`.
    pub fn new(source: &Path, root: &Path) -> io::Result<LocalSink> {
        let c = cstr(root.as_os_str().as_bytes())?;
        // SAFETY: a NUL-terminated path; the fd is owned on success.
        let fd = cvt(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        } as libc::c_long)?;
        Ok(LocalSink {
            source: source.to_path_buf(),
            // SAFETY: a fresh descriptor from open.
            root: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
            written: HashMap::new(),
        })
    }

    /// `path` relative to the replica root; normal components only.
    fn rel(&self, path: &Path) -> Result<PathBuf, SinkError> {
        let rel = path
            .strip_prefix(&self.source)
            .map_err(|_| SinkError::Outside(path.into()))?;
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(SinkError::Outside(path.into()));
        }
        Ok(rel.to_path_buf())
    }

    /// Opens `rel` beneath the root, never through a symlink.
    fn open(&self, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
        let p = if rel.as_os_str().is_empty() {
            OsStr::new(".")
        } else {
            rel.as_os_str()
        };
        let c = cstr(p.as_bytes())?;
        let how = OpenHow {
            flags: (flags | libc::O_CLOEXEC) as u64,
            mode: if flags & libc::O_CREAT != 0 {
                mode as u64
            } else {
                0
            },
            resolve: libc::RESOLVE_BENEATH
                | libc::RESOLVE_NO_SYMLINKS
                | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: valid pointers for the call; the fd is owned on success.
        let fd = cvt(unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.root.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        })?;
        // SAFETY: a fresh descriptor from openat2.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    /// The directory holding `rel` (opened beneath the root) and the last component.
    fn parent(&self, rel: &Path) -> io::Result<(OwnedFd, CString)> {
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let dir = self.open(
            rel.parent().unwrap_or(Path::new("")),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
        Ok((dir, cstr(name.as_bytes())?))
    }

    fn apply(&mut self, ev: &Event) -> Result<(), SinkError> {
        let rel = self.rel(&ev.path)?;
        let name = ev.op.kind().name();
        let err = |source| SinkError::Apply {
            op: name,
            path: ev.path.clone(),
            source,
        };
        let r: io::Result<()> = match &ev.op {
            Op::Write {
                offset,
                data: Some(d),
                ..
            } => self
                .writable(&rel, ev)
                .and_then(|f| f.write_all_at(d, *offset)),
            Op::Write { data: None, .. } => return Err(SinkError::NoData(ev.path.clone())),
            Op::Create { mode } => self
                .writable(&rel, ev)
                .and_then(|f| fchmod(f.as_raw_fd(), *mode)),
            Op::Truncate { size } => self.writable(&rel, ev).and_then(|f| f.set_len(*size)),
            Op::Fallocate { mode, offset, len } => self.writable(&rel, ev).and_then(|f| {
                // SAFETY: a valid fd and plain integers.
                cvt(unsafe {
                    libc::fallocate(f.as_raw_fd(), *mode as i32, *offset as i64, *len as i64)
                } as libc::c_long)
                .map(drop)
            }),
            Op::Unlink | Op::Rmdir => {
                self.parent(&rel).and_then(|(d, n)| {
                    let flags = if matches!(ev.op, Op::Rmdir) {
                        libc::AT_REMOVEDIR
                    } else {
                        0
                    };
                    // SAFETY: a valid dirfd and NUL-terminated name.
                    replayed(
                        cvt(unsafe { libc::unlinkat(d.as_raw_fd(), n.as_ptr(), flags) }
                            as libc::c_long)
                        .map(drop),
                        libc::ENOENT,
                    )
                })
            }
            Op::Mkdir { mode } => self.parent(&rel).and_then(|(d, n)| {
                // SAFETY: as above.
                replayed(
                    cvt(unsafe { libc::mkdirat(d.as_raw_fd(), n.as_ptr(), *mode) } as libc::c_long)
                        .map(drop),
                    libc::EEXIST,
                )?;
                let dir = self.open(&rel, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                fchmod(dir.as_raw_fd(), *mode)
            }),
            Op::Mknod { mode, rdev } => self.parent(&rel).and_then(|(d, n)| {
                // SAFETY: as above.
                replayed(
                    cvt(
                        unsafe { libc::mknodat(d.as_raw_fd(), n.as_ptr(), *mode, *rdev) }
                            as libc::c_long,
                    )
                    .map(drop),
                    libc::EEXIST,
                )
            }),
            Op::Rename { new_path, flags } => {
                let to = self.rel(new_path)?;
                self.written.remove(&rel);
                let ((fd, fname), (td, tname)) = (
                    self.parent(&rel).map_err(err)?,
                    self.parent(&to).map_err(err)?,
                );
                // SAFETY: valid dirfds and NUL-terminated names.
                cvt(unsafe {
                    libc::syscall(
                        libc::SYS_renameat2,
                        fd.as_raw_fd(),
                        fname.as_ptr(),
                        td.as_raw_fd(),
                        tname.as_ptr(),
                        *flags,
                    )
                })
                .map(drop)
            }
            Op::Link { target } => {
                let existing = self.rel(target)?;
                let ((ed, ename), (nd, nname)) = (
                    self.parent(&existing).map_err(err)?,
                    self.parent(&rel).map_err(err)?,
                );
                // SAFETY: valid dirfds and NUL-terminated names; flags 0 never follows.
                replayed(
                    cvt(unsafe {
                        libc::linkat(
                            ed.as_raw_fd(),
                            ename.as_ptr(),
                            nd.as_raw_fd(),
                            nname.as_ptr(),
                            0,
                        )
                    } as libc::c_long)
                    .map(drop),
                    libc::EEXIST,
                )
            }
            Op::Symlink { target } => self.parent(&rel).and_then(|(d, n)| {
                let t = cstr(target.as_bytes())?;
                // SAFETY: as above. The link text is stored, never followed here.
                replayed(
                    cvt(
                        unsafe { libc::symlinkat(t.as_ptr(), d.as_raw_fd(), n.as_ptr()) }
                            as libc::c_long,
                    )
                    .map(drop),
                    libc::EEXIST,
                )
            }),
            Op::Chmod { mode } => self.parent(&rel).and_then(|(d, n)| {
                // fchmodat2 with AT_SYMLINK_NOFOLLOW: the last component is never followed.
                // SAFETY: as above.
                cvt(unsafe {
                    libc::syscall(
                        libc::SYS_fchmodat2,
                        d.as_raw_fd(),
                        n.as_ptr(),
                        *mode,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                })
                .map(drop)
            }),
            Op::Chown { uid, gid } => self.parent(&rel).and_then(|(d, n)| {
                let id = |v: Option<u32>| v.unwrap_or(u32::MAX);
                // SAFETY: as above.
                cvt(unsafe {
                    libc::fchownat(
                        d.as_raw_fd(),
                        n.as_ptr(),
                        id(*uid),
                        id(*gid),
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                } as libc::c_long)
                .map(drop)
            }),
            Op::Utimes => self.copy_times(&ev.path, &rel),
            Op::SetXattr { name: attr } | Op::RemoveXattr { name: attr } => self.xattr(
                &ev.path,
                &rel,
                attr.as_bytes(),
                matches!(ev.op, Op::SetXattr { .. }),
            ),
            op @ (Op::Dirty { .. } | Op::Overflow { .. }) => {
                return Err(SinkError::NotAnOperation(op.clone()))
            }
        };
        r.map_err(err)
    }

    /// The replica file for a data operation, opened once per flush interval.
    fn writable(&mut self, rel: &Path, ev: &Event) -> io::Result<&File> {
        if !self.written.contains_key(rel) {
            let create_mode = match ev.op {
                Op::Create { mode } => mode,
                _ => 0o600,
            };
            let fd = self.open(rel, libc::O_WRONLY | libc::O_CREAT, create_mode)?;
            self.written.insert(rel.to_path_buf(), File::from(fd));
        }
        Ok(&self.written[rel])
    }

    fn copy_times(&self, source: &Path, rel: &Path) -> io::Result<()> {
        let m = std::fs::symlink_metadata(source)?;
        let ts = |s: i64, ns: i64| libc::timespec {
            tv_sec: s,
            tv_nsec: ns,
        };
        let times = [ts(m.atime(), m.atime_nsec()), ts(m.mtime(), m.mtime_nsec())];
        let (d, n) = self.parent(rel)?;
        // SAFETY: a valid dirfd, name and two timespecs.
        cvt(unsafe {
            libc::utimensat(
                d.as_raw_fd(),
                n.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } as libc::c_long)
        .map(drop)
    }

    fn xattr(&self, source: &Path, rel: &Path, attr: &[u8], set: bool) -> io::Result<()> {
        let name = cstr(attr)?;
        let target = File::from(self.open(rel, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?);
        if set {
            let src = cstr(source.as_os_str().as_bytes())?;
            let mut value = vec![0u8; 65536];
            // SAFETY: NUL-terminated strings and a buffer of the given length.
            let n = unsafe {
                libc::lgetxattr(
                    src.as_ptr(),
                    name.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            match cvt(n as libc::c_long) {
                // Removed since: the removal follows in the stream.
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(()),
                Err(e) => return Err(e),
                Ok(n) => value.truncate(n as usize),
            }
            // SAFETY: as above, on a valid fd.
            cvt(unsafe {
                libc::fsetxattr(
                    target.as_raw_fd(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            } as libc::c_long)
            .map(drop)
        } else {
            // SAFETY: as above.
            replayed(
                cvt(
                    unsafe { libc::fremovexattr(target.as_raw_fd(), name.as_ptr()) }
                        as libc::c_long,
                )
                .map(drop),
                libc::ENODATA,
            )
        }
    }
}

/// `struct open_how` of `linux/openat2.h` (kernel ABI). libc declares it non-exhaustive,
/// so it cannot be built with a struct expression; this is the same three u64s.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    // SAFETY: a valid fd.
    cvt(unsafe { libc::fchmod(fd, mode & 0o7777) } as libc::c_long).map(drop)
}

impl Transmit for LocalSink {
    fn send(&mut self, q: &Queued) -> Result<(), SinkError> {
        self.apply(&q.event)
    }

    /// Syncs every file written since the last flush and gives it the source's times
    /// (writes on the replica moved them), then syncs the root.
    fn flush(&mut self) -> Result<(), SinkError> {
        for (rel, file) in std::mem::take(&mut self.written) {
            let err = |source| SinkError::Apply {
                op: "flush",
                path: rel.clone(),
                source,
            };
            file.sync_data().map_err(err)?;
            let source = self.source.join(&rel);
            if source.exists() {
                self.copy_times(&source, &rel).map_err(err)?;
            }
        }
        let root = File::from(self.root.try_clone().map_err(|source| SinkError::Apply {
            op: "flush",
            path: self.source.clone(),
            source,
        })?);
        // O_PATH descriptors cannot be synced; a sync of the file system covers the tree.
        // SAFETY: a valid fd.
        unsafe { libc::syncfs(root.as_raw_fd()) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn op(path: &Path, op: Op) -> Queued {
        let event = Event::new(path, op);
        Queued {
            seq: 1,
            event,
            from_disk: false,
        }
    }

    fn write(path: &Path) -> Queued {
        op(
            path,
            Op::Write {
                offset: 0,
                len: 3,
                data: Some(b"abc".to_vec()),
            },
        )
    }

    #[test]
    fn nothing_escapes_the_replica_root() {
        let (src, dst, outside) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let mut sink = LocalSink::new(src.path(), dst.path()).unwrap();
        // A symlink planted in the replica, pointing out of it: not followed, as a directory
        // on the way or as the last component.
        std::os::unix::fs::symlink(outside.path(), dst.path().join("evil")).unwrap();
        std::fs::write(outside.path().join("victim"), b"keep").unwrap();
        assert!(sink.send(&write(&src.path().join("evil/victim"))).is_err());
        assert!(sink.send(&write(&src.path().join("evil"))).is_err());
        assert!(sink
            .send(&op(&src.path().join("evil"), Op::Chmod { mode: 0o777 }))
            .is_err());
        assert!(sink
            .send(&op(&src.path().join("evil/victim"), Op::Unlink))
            .is_err());
        assert_eq!(
            std::fs::read(outside.path().join("victim")).unwrap(),
            b"keep"
        );
        assert_ne!(
            std::fs::metadata(outside.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o777
        );
        // `..` and paths outside the source are refused before any system call.
        let dotdot = PathBuf::from(format!("{}/../x", src.path().display()));
        assert!(matches!(
            sink.send(&write(&dotdot)),
            Err(SinkError::Outside(_))
        ));
        assert!(matches!(
            sink.send(&write(Path::new("/etc/passwd"))),
            Err(SinkError::Outside(_))
        ));
        let rename_out = op(
            &src.path().join("a"),
            Op::Rename {
                new_path: "/tmp/elsewhere".into(),
                flags: 0,
            },
        );
        assert!(matches!(sink.send(&rename_out), Err(SinkError::Outside(_))));
    }

    #[test]
    fn replayed_operations_are_harmless() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut sink = LocalSink::new(src.path(), dst.path()).unwrap();
        let d = src.path().join("d");
        for _ in 0..2 {
            sink.send(&op(&d, Op::Mkdir { mode: 0o750 })).unwrap();
            sink.send(&write(&d.join("f"))).unwrap();
            sink.send(&op(&d.join("f"), Op::Unlink)).unwrap();
        }
        sink.flush().unwrap();
        assert!(dst.path().join("d").is_dir());
        assert!(!dst.path().join("d/f").exists());
    }

    #[test]
    fn a_range_only_write_is_refused_for_the_change_journal() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut sink = LocalSink::new(src.path(), dst.path()).unwrap();
        let q = op(
            &src.path().join("f"),
            Op::Write {
                offset: 0,
                len: 10,
                data: None,
            },
        );
        assert!(matches!(sink.send(&q), Err(SinkError::NoData(_))));
    }
}
