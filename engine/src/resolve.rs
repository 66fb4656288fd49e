//! Completing captured operations on the source, so they can be applied elsewhere.
//!
//! The capture records what a call did, not always the values it left: a range-only write
//! (too large to copy inline, or copied while the driver throttled) has no bytes, a
//! `utimes` that let the kernel pick the time (or seen by the fanotify fallback) no times,
//! a `setxattr` the driver could not copy no value. The [`Resolver`] reads them from the source
//! file when the operation is sent, and makes every path relative to the replicated
//! directory, so what leaves the source host is self-contained and the target never needs
//! to see an absolute source path.
//!
//! Values read at send time are the file's current ones, not necessarily the ones of the
//! moment of the call; later operations in the stream carry the rest, so the replica
//! converges. A file gone by then is not an error: its removal or rename follows.
//!
//! Writes also move a file's times on the replica, so the resolver remembers which files
//! were written and [`Resolver::times_of_written`] gives the source's current times for
//! each, to be sent after them.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rill_driver_linux::{Event, FileTimes, Op};

/// Why an operation cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0} is not under the replicated source directory")]
    Outside(PathBuf),
    #[error("{0:?} is not an operation to send: the file goes through the change journal")]
    NotAnOperation(Op),
    #[error("reading {what} of {path} on the source: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// What the source sends besides names and data.
#[derive(Clone, Copy, Debug)]
pub struct ResolveOptions {
    /// Mode, owner and times (`DisableAttributeReplication` = 0).
    pub attributes: bool,
    /// Extended attributes (`ExtendedAttributes` = 1).
    pub xattrs: bool,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            attributes: true,
            xattrs: true,
        }
    }
}

/// Turns captured operations on files under `source` into self-contained ones.
pub struct Resolver {
    source: PathBuf,
    options: ResolveOptions,
    /// Files written since the last `times_of_written`, relative.
    written: BTreeSet<PathBuf>,
    /// Names whose value (data, times, attribute) could not be read because the file had
    /// moved on by the time its operation was sent; see [`Resolver::take_stale`].
    stale: BTreeSet<PathBuf>,
}

/// The most bytes one resolved write carries: the bytes are read into memory to be sent.
pub const MAX_RESOLVED_WRITE: u64 = 4 << 20;

/// Stale names followed at most at once: past it, one more goes unremirrored until the
/// file is written again (a bound for a pathological rename storm).
const MAX_STALE: usize = 65536;

/// The largest extended attribute value Linux allows (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 65536;

impl Resolver {
    pub fn new(source: &Path, options: ResolveOptions) -> Resolver {
        Resolver {
            source: source.to_path_buf(),
            options,
            written: BTreeSet::new(),
            stale: BTreeSet::new(),
        }
    }

    /// The replicated source directory.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// `path` relative to the source directory.
    pub fn relative(&self, path: &Path) -> Result<PathBuf, ResolveError> {
        path.strip_prefix(&self.source)
            .map(Path::to_path_buf)
            .map_err(|_| ResolveError::Outside(path.into()))
    }

    /// The operation, completed and with relative paths, appended to `out`: nothing when
    /// there is nothing to send (the file is gone, or the options leave the operation
    /// out), several writes of at most [`MAX_RESOLVED_WRITE`] bytes for a large range.
    pub fn resolve(&mut self, ev: Event, out: &mut Vec<Event>) -> Result<(), ResolveError> {
        match ev.op {
            Op::Write {
                offset,
                len,
                data: None,
            } if len > MAX_RESOLVED_WRITE => {
                let mut at = 0;
                while at < len {
                    let n = (len - at).min(MAX_RESOLVED_WRITE);
                    let piece = Event {
                        op: Op::Write {
                            offset: offset + at,
                            len: n,
                            data: None,
                        },
                        ..ev.clone()
                    };
                    let before = out.len();
                    out.extend(self.resolve_one(piece)?);
                    // A short read means the file ends here: the rest does not exist.
                    if out.len() == before
                        || matches!(out.last(), Some(Event { op: Op::Write { len: got, .. }, .. }) if *got < n)
                    {
                        break;
                    }
                    at += n;
                }
                Ok(())
            }
            _ if names_a_symlink(&ev) => {
                for ev in self.through_symlink(ev) {
                    out.extend(self.resolve_one(ev)?);
                }
                Ok(())
            }
            _ => {
                out.extend(self.resolve_one(ev)?);
                Ok(())
            }
        }
    }

    /// `chown` and `utimes` by the name of a symlink acted on the link or on the file it
    /// points to (`lchown` or `chown`, `AT_SYMLINK_NOFOLLOW` or not): the capture does not
    /// say which. The replica gets both, with the values both have on the source now: the
    /// file the link resolves to (when it is replicated too), and the link itself; times
    /// the call carried are dropped for that reason. (Calls that always follow, like
    /// `truncate` or `chmod`, follow on the replica as well.)
    fn through_symlink(&self, mut ev: Event) -> Vec<Event> {
        let mut out = Vec::new();
        let ambiguous = matches!(ev.op, Op::Chown { .. } | Op::Utimes { .. });
        if let Op::Utimes { times } = &mut ev.op {
            *times = None;
        }
        let with_owner = |path: &Path, follow: bool| {
            let m = if follow {
                std::fs::metadata(path)
            } else {
                std::fs::symlink_metadata(path)
            };
            m.ok().map(|m| Op::Chown {
                uid: Some(m.uid()),
                gid: Some(m.gid()),
            })
        };
        if let Ok(real) = std::fs::canonicalize(&ev.path) {
            if real.starts_with(&self.source) {
                let op = match ev.op {
                    Op::Chown { .. } => with_owner(&real, true),
                    ref op => Some(op.clone()),
                };
                if let Some(op) = op {
                    out.push(Event {
                        path: real,
                        op,
                        ..ev.clone()
                    });
                }
            }
        }
        if ambiguous {
            let op = match ev.op {
                Op::Chown { .. } => with_owner(&ev.path, false),
                ref op => Some(op.clone()),
            };
            if let Some(op) = op {
                out.push(Event { op, ..ev });
            }
        }
        out
    }

    fn resolve_one(&mut self, mut ev: Event) -> Result<Option<Event>, ResolveError> {
        let absolute = ev.path.clone();
        ev.path = self.relative(&absolute)?;
        let read = |what, source| ResolveError::Read {
            what,
            path: absolute.clone(),
            source,
        };
        match &mut ev.op {
            Op::Write { offset, len, data } => {
                if data.is_none() {
                    match read_range(&absolute, *offset, *len) {
                        Ok(bytes) => {
                            *len = bytes.len() as u64;
                            *data = Some(bytes);
                        }
                        Err(e) if gone(&e) => return Ok(self.went_stale(ev.path)),
                        Err(e) => return Err(read("data", e)),
                    }
                }
                self.written.insert(ev.path.clone());
            }
            Op::Create { .. } | Op::Truncate { .. } | Op::Fallocate { .. } => {
                self.written.insert(ev.path.clone());
            }
            Op::Rename { new_path, .. } => {
                *new_path = self.relative(new_path)?;
                if self.written.remove(&ev.path) {
                    self.written.insert(new_path.clone());
                }
                // A stale name (or one beneath a renamed directory) moves with the rename.
                let moved: Vec<PathBuf> = self
                    .stale
                    .iter()
                    .filter(|p| p.starts_with(&ev.path))
                    .cloned()
                    .collect();
                for p in moved {
                    self.stale.remove(&p);
                    if let Ok(rest) = p.strip_prefix(&ev.path) {
                        self.stale.insert(new_path.join(rest));
                    }
                }
            }
            Op::Link { target } => *target = self.relative(target)?,
            Op::Chmod { .. } | Op::Chown { .. } | Op::Utimes { .. } if !self.options.attributes => {
                return Ok(None)
            }
            // Values the capture copied from the call: exact, nothing to read. Times set
            // after the file's writes are the ones it keeps: none need sending again.
            Op::Utimes { times: Some(_) } => {
                self.written.remove(&ev.path);
            }
            Op::Utimes { times } => match file_times(&absolute) {
                Ok(t) => {
                    *times = Some(t);
                    self.written.remove(&ev.path);
                }
                Err(e) if gone(&e) => return Ok(self.went_stale(ev.path)),
                Err(e) => return Err(read("times", e)),
            },
            Op::SetXattr { .. } | Op::RemoveXattr { .. } if !self.options.xattrs => {
                return Ok(None)
            }
            Op::SetXattr { value: Some(_), .. } => {}
            Op::SetXattr { name, value } => match get_xattr(&absolute, name.as_bytes()) {
                Ok(v) => *value = Some(v),
                Err(e) if gone(&e) => return Ok(self.went_stale(ev.path)),
                // Removed since: the removal follows in the stream.
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(None),
                Err(e) => return Err(read("extended attribute", e)),
            },
            Op::Dirty { .. } | Op::Overflow { .. } => {
                return Err(ResolveError::NotAnOperation(ev.op.clone()))
            }
            Op::Unlink => {
                self.written.remove(&ev.path);
                self.stale.remove(&ev.path);
            }
            Op::Rmdir
            | Op::Chmod { .. }
            | Op::Chown { .. }
            | Op::Mkdir { .. }
            | Op::Mknod { .. }
            | Op::Symlink { .. }
            | Op::RemoveXattr { .. }
            | Op::Prune(_) => {}
        }
        Ok(Some(ev))
    }

    /// The file was renamed (or removed) after the operation and before it was sent: the
    /// value it set travels with the file under its new name, which a later rename in
    /// the stream tells. The name is followed through renames until the file is found
    /// again, and then remirrored (see [`Resolver::take_stale`]).
    fn went_stale(&mut self, rel: PathBuf) -> Option<Event> {
        if self.stale.len() < MAX_STALE {
            self.stale.insert(rel);
        }
        None
    }

    /// Stale names that exist again on the source (absolute), to be remirrored; they are
    /// forgotten once returned.
    pub fn take_stale(&mut self) -> Vec<PathBuf> {
        let found: Vec<PathBuf> = self
            .stale
            .iter()
            .filter(|p| std::fs::symlink_metadata(self.source.join(p)).is_ok())
            .cloned()
            .collect();
        for p in &found {
            self.stale.remove(p);
        }
        found.into_iter().map(|p| self.source.join(p)).collect()
    }

    /// A `Utimes` operation with the source's current times for every file written since
    /// the last call (writes moved the replica's times), relative paths.
    pub fn times_of_written(&mut self) -> Vec<Event> {
        if !self.options.attributes {
            self.written.clear();
            return Vec::new();
        }
        std::mem::take(&mut self.written)
            .into_iter()
            .filter_map(|rel| {
                let times = file_times(&self.source.join(&rel)).ok()?;
                Some(Event::new(&rel, Op::Utimes { times: Some(times) }))
            })
            .collect()
    }
}

/// Whether `ev` is a call by name that follows a final symlink, on a path that is one.
fn names_a_symlink(ev: &Event) -> bool {
    matches!(ev.op, Op::Chown { .. } | Op::Utimes { .. })
        && std::fs::symlink_metadata(&ev.path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The file is gone (or a directory on its way was replaced): a later operation says so.
fn gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

/// Up to `len` bytes at `offset`; fewer when the file has shrunk since.
pub fn read_range(path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    // read_to_end fills the spare capacity directly: no zeroing of up to 4 MiB per write.
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A file's access and modification times, not following a final symlink.
pub fn file_times(path: &Path) -> io::Result<FileTimes> {
    let m = std::fs::symlink_metadata(path)?;
    Ok(FileTimes {
        atime: (m.atime(), m.atime_nsec() as u32),
        mtime: (m.mtime(), m.mtime_nsec() as u32),
    })
}

/// An extended attribute's value, following a final symlink as setxattr(2) does (user
/// attributes cannot be set on a symlink itself), and as the replica applies it.
pub fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let invalid = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name");
    let (p, n) = (
        CString::new(path.as_os_str().as_bytes()).map_err(invalid)?,
        CString::new(name).map_err(invalid)?,
    );
    let mut value = vec![0u8; XATTR_SIZE_MAX];
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let got = unsafe {
        libc::getxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    value.truncate(got as usize);
    Ok(value)
}

/// The names of a file's extended attributes, not following a final symlink.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let p = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))?;
    let mut buf = vec![0u8; XATTR_SIZE_MAX];
    // SAFETY: a NUL-terminated path and a buffer of the given length.
    let got = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(got as usize);
    Ok(buf
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}
