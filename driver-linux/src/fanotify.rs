//! fanotify fallback capture source, for kernels where the eBPF programs cannot load.
//!
//! It is only the fallback because fanotify tells *that* something changed, not *what*:
//! there are no write offsets or data, no truncate sizes, no chmod/chown values, and the
//! path of every event is resolved when the event is read, not when it happened (a later
//! rename of a parent directory shows up in earlier events' paths). Namespace operations
//! are exact; everything that changes a file's contents or attributes is reported as a
//! dirty file that the consumer must resynchronise from the live file system.
//!
//! What it reports, for paths under the watched roots (FID mode with
//! `FAN_REPORT_DFID_NAME | FAN_REPORT_FID | FAN_REPORT_TARGET_FID`, one
//! `FAN_MARK_FILESYSTEM` mark per file system):
//!
//! | fanotify | [`Op`](rill_ops::Op) |
//! |---|---|
//! | `FAN_CREATE` | `Create`, `Mkdir` (`FAN_ONDIR`), `Symlink`, `Mknod` (type from `lstat`) |
//! | `FAN_DELETE` | `Unlink`, `Rmdir` (`FAN_ONDIR`) |
//! | `FAN_RENAME` (or a `FAN_MOVED_FROM`/`FAN_MOVED_TO` pair) | `Rename` (`RENAME_EXCHANGE` for the reversed pair an exchange produces) |
//! | `FAN_MODIFY`, `FAN_ATTRIB`, `FAN_CLOSE_WRITE` | `Dirty{Modified}` |
//! | `FAN_Q_OVERFLOW` | `Overflow`, then `Dirty{RescanAll}` per root |
//! | directory handle gone stale | `Dirty{PathUnknown}` of the roots on that file system |
//!
//! Events of the capturing process itself are ignored. The kernel merges an event into an
//! equal queued one (same object, name and pid), so one event can carry e.g.
//! `CREATE|ATTRIB`; `translate::Emitter::entry` orders the operations of such a merged mask.

mod parse;
mod translate;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};

use crate::clock::monotonic_ns;
use crate::error::{DriverError, Result};
use parse::{FidInfo, RawEvent};
use rill_ops::Event;
use translate::{translate, Loc, Resolved};

/// Bytes read per `read(2)`; the largest FID event is well under 1 KiB.
const READ_BUF: usize = 64 * 1024;
/// Reads per [`FanotifySource::poll`], so a busy file system cannot keep it looping.
const MAX_READS: usize = 16;

/// A watched root: its canonical path, file system id and a descriptor on it, which serves
/// as the `mount_fd` of `open_by_handle_at(2)` for handles from that file system.
struct Root {
    path: PathBuf,
    fsid: [u8; 8],
    mount_fd: OwnedFd,
}

/// The fanotify capture source. See the module documentation.
pub struct FanotifySource {
    fan: Fanotify,
    roots: Vec<Root>,
    own_pid: i32,
    buf: Vec<u8>,
}

impl FanotifySource {
    /// Watches the file systems holding `roots` (FAN_MARK_FILESYSTEM), reporting only events
    /// whose path lies under one of the roots (absolute, canonicalized at construction).
    /// Events caused by `std::process::id()` itself are ignored.
    pub fn new(roots: &[PathBuf]) -> Result<FanotifySource> {
        if roots.is_empty() {
            return Err(DriverError::Fanotify(
                "no directory to watch was given".into(),
            ));
        }
        let fan = init()?;
        let mut watched: Vec<Root> = Vec::new();
        for root in roots {
            let path = std::fs::canonicalize(root).map_err(|e| DriverError::io(root, e))?;
            if watched.iter().any(|r| r.path == path) {
                continue;
            }
            let dir = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| DriverError::io(&path, e))?;
            let fsid = fsid(&dir).map_err(|e| DriverError::io(&path, e))?;
            if fsid == [0; 8] {
                return Err(DriverError::Fanotify(format!(
                    "{}: the file system reports no fsid, which fanotify's FID mode needs",
                    path.display()
                )));
            }
            if !watched.iter().any(|r| r.fsid == fsid) {
                mark(&fan, &dir, &path)?;
            }
            watched.push(Root {
                path,
                fsid,
                mount_fd: dir.into(),
            });
        }
        Ok(FanotifySource {
            fan,
            roots: watched,
            own_pid: std::process::id() as i32,
            buf: vec![0; READ_BUF],
        })
    }

    /// Waits up to `timeout` for events, appends them to `out` in the order the kernel
    /// reported them, returns how many were appended. `seq` is left 0 (the caller numbers
    /// events).
    pub fn poll(&mut self, timeout: Duration, out: &mut Vec<Event>) -> Result<usize> {
        // Round up so a sub-millisecond timeout still waits, and clamp to poll(2)'s range.
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.fan.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) | Err(Errno::EINTR) => return Ok(0),
            Ok(_) => {}
            Err(e) => return Err(DriverError::Fanotify(format!("poll: {e}"))),
        }
        let mut buf = std::mem::take(&mut self.buf);
        let result = self.drain(&mut buf);
        self.buf = buf;
        let events = result?;
        let before = out.len();
        let roots: Vec<(PathBuf, [u8; 8])> = self
            .roots
            .iter()
            .map(|r| (r.path.clone(), r.fsid))
            .collect();
        translate(&roots, &events, out);
        Ok(out.len() - before)
    }

    /// Reads until the queue is empty (or [`MAX_READS`]), resolving every event's names.
    fn drain(&self, buf: &mut [u8]) -> Result<Vec<Resolved>> {
        let mut events = Vec::new();
        let mut dirs = HashMap::new();
        for _ in 0..MAX_READS {
            let n = match nix::unistd::read(&self.fan, buf) {
                Ok(0) | Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(DriverError::Fanotify(format!("read: {e}"))),
                Ok(n) => n,
            };
            let now = monotonic_ns();
            let raw = parse::parse_events(&buf[..n]).map_err(DriverError::Fanotify)?;
            for ev in &raw {
                if ev.fd >= 0 {
                    // SAFETY: a non-negative fd in an event is a new descriptor the kernel
                    // installed for the reader, owned by nobody else. (FID mode always
                    // reports FAN_NOFD; this is defence against leaking one.)
                    drop(unsafe { OwnedFd::from_raw_fd(ev.fd) });
                }
                if ev.pid == self.own_pid && ev.mask & libc::FAN_Q_OVERFLOW == 0 {
                    continue;
                }
                events.extend(self.resolve(ev, now, &mut dirs));
            }
        }
        Ok(events)
    }

    /// Turns the file handles of `ev` into paths; `None` for events with no directory
    /// information (an object that has no name any more, e.g. a write to an unlinked file).
    fn resolve(
        &self,
        ev: &RawEvent<'_>,
        ktime_ns: u64,
        dirs: &mut HashMap<Vec<u8>, Option<PathBuf>>,
    ) -> Option<Resolved> {
        use libc::{
            FAN_EVENT_INFO_TYPE_DFID, FAN_EVENT_INFO_TYPE_DFID_NAME, FAN_EVENT_INFO_TYPE_FID,
        };
        use libc::{FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, FAN_EVENT_INFO_TYPE_OLD_DFID_NAME};
        let find = |t: u8| ev.fids.iter().find(|f| f.info_type == t);
        let mut r = Resolved {
            mask: ev.mask,
            pid: ev.pid as u32,
            ktime_ns,
            path: Loc::Known(PathBuf::new()),
            new_path: None,
            child: find(FAN_EVENT_INFO_TYPE_FID).map(handle_key),
        };
        if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
            return Some(r);
        }
        if ev.mask & libc::FAN_RENAME != 0 {
            let old = find(FAN_EVENT_INFO_TYPE_OLD_DFID_NAME)?;
            r.path = self.locate(old, dirs);
            // A missing new name cannot happen with a file-system mark; treat it as unknown.
            r.new_path = Some(match find(FAN_EVENT_INFO_TYPE_NEW_DFID_NAME) {
                Some(new) => self.locate(new, dirs),
                None => Loc::Unknown(old.fsid),
            });
        } else {
            // DFID_NAME: parent + name; DFID alone: an event on the directory itself.
            let dir =
                find(FAN_EVENT_INFO_TYPE_DFID_NAME).or_else(|| find(FAN_EVENT_INFO_TYPE_DFID))?;
            r.path = self.locate(dir, dirs);
        }
        Some(r)
    }

    /// The path of a directory handle + name, with directories cached for one poll.
    fn locate(&self, info: &FidInfo<'_>, dirs: &mut HashMap<Vec<u8>, Option<PathBuf>>) -> Loc {
        let dir = dirs
            .entry(handle_key(info))
            .or_insert_with(|| self.dir_path(info));
        match (dir, info.name) {
            (None, _) => Loc::Unknown(info.fsid),
            (Some(d), None | Some(b"" | b".")) => Loc::Known(d.clone()),
            (Some(_), Some(name)) if name.contains(&b'/') => Loc::Unknown(info.fsid),
            (Some(d), Some(name)) => Loc::Known(d.join(OsStr::from_bytes(name))),
        }
    }

    /// Opens a directory handle and reads back its path; `None` if stale or deleted.
    fn dir_path(&self, info: &FidInfo<'_>) -> Option<PathBuf> {
        let root = self.roots.iter().find(|r| r.fsid == info.fsid)?;
        let fd = match open_handle(root.mount_fd.as_fd(), info.handle_type, info.handle) {
            Ok(fd) => fd,
            Err(e) => {
                log::debug!("fanotify: directory handle on {}: {e}", root.path.display());
                return None;
            }
        };
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        // An unlinked directory that is still cached resolves to "<path> (deleted)".
        let deleted = path.as_os_str().as_bytes().ends_with(b" (deleted)");
        (path.is_absolute() && !deleted).then_some(path)
    }
}

impl AsRawFd for FanotifySource {
    fn as_raw_fd(&self) -> RawFd {
        self.fan.as_raw_fd()
    }
}

/// `fanotify_init` in FID mode, without `FAN_REPORT_TARGET_FID` on kernels before 5.17.
fn init() -> Result<Fanotify> {
    let base = libc::FAN_CLASS_NOTIF
        | libc::FAN_CLOEXEC
        | libc::FAN_NONBLOCK
        | libc::FAN_REPORT_DFID_NAME
        | libc::FAN_REPORT_FID;
    let event_flags = EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE;
    // nix's InitFlags lacks the FID-mode flags, hence from_bits_retain.
    match Fanotify::init(
        InitFlags::from_bits_retain(base | libc::FAN_REPORT_TARGET_FID),
        event_flags,
    ) {
        Err(Errno::EINVAL) => Fanotify::init(InitFlags::from_bits_retain(base), event_flags),
        other => other,
    }
    .map_err(|e| {
        DriverError::Fanotify(format!(
            "fanotify_init in FID mode: {e} (needs CAP_SYS_ADMIN and Linux 5.9 or later)"
        ))
    })
}

/// Marks the file system holding `dir`, dropping what the kernel refuses: `FAN_CLOSE_WRITE`
/// first, then `FAN_RENAME` (before 5.17) in favour of the `MOVED_FROM`/`MOVED_TO` pair.
fn mark(fan: &Fanotify, dir: &File, path: &Path) -> Result<()> {
    let common = libc::FAN_CREATE
        | libc::FAN_DELETE
        | libc::FAN_MODIFY
        | libc::FAN_ATTRIB
        | libc::FAN_ONDIR
        | libc::FAN_EVENT_ON_CHILD;
    // FAN_DELETE_SELF is left out: FAN_DELETE already reports every removed name, and a
    // DELETE_SELF event carries only the dead inode's handle, which resolves to no path.
    let moves = libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO;
    let attempts = [
        common | libc::FAN_RENAME | libc::FAN_CLOSE_WRITE,
        common | libc::FAN_RENAME,
        common | moves | libc::FAN_CLOSE_WRITE,
        common | moves,
    ];
    let flags = MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM;
    let mut err = Errno::EINVAL;
    for mask in attempts {
        match fan.mark(flags, MaskFlags::from_bits_retain(mask), dir, None::<&Path>) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) => log::debug!("fanotify_mark refused mask {mask:#x}"),
            Err(e) => {
                err = e;
                break;
            }
        }
    }
    Err(DriverError::Fanotify(format!(
        "cannot watch the file system of {}: {err} (it must support file handles and report an fsid)",
        path.display()
    )))
}

/// `statfs(2)`'s `f_fsid` as raw bytes, the form fanotify reports it in.
fn fsid(dir: &File) -> std::io::Result<[u8; 8]> {
    let id = nix::sys::statfs::fstatfs(dir)?.filesystem_id();
    // SAFETY: libc::fsid_t is #[repr(C)] { [c_int; 2] } with no padding (transmute checks the
    // size); every bit pattern is a valid [u8; 8]. Its field is private, hence no field access.
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [u8; 8]>(id) })
}

/// `open_by_handle_at(mount_fd, handle, O_PATH)`.
fn open_handle(
    mount_fd: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
) -> std::io::Result<OwnedFd> {
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }, built in a
    // u32 buffer so that the header is aligned.
    let mut fh = vec![0u32; 2 + handle.len().div_ceil(4)];
    fh[0] = handle.len() as u32;
    fh[1] = handle_type as u32;
    for (word, chunk) in fh[2..].iter_mut().zip(handle.chunks(4)) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        *word = u32::from_ne_bytes(b);
    }
    // SAFETY: `fh` is an aligned struct file_handle whose handle_bytes bytes of f_handle lie
    // inside the buffer; the kernel only reads it, and `mount_fd` is a live descriptor.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount_fd.as_raw_fd(),
            fh.as_mut_ptr().cast(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// fsid + handle type + handle: identifies an object across events.
fn handle_key(info: &FidInfo<'_>) -> Vec<u8> {
    let mut key = info.fsid.to_vec();
    key.extend_from_slice(&info.handle_type.to_ne_bytes());
    key.extend_from_slice(info.handle);
    key
}

#[cfg(test)]
mod tests;
