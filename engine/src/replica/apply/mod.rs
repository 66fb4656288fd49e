//! Applying operations beneath a replica root: the target's half of replication.
//!
//! An [`Applier`] takes operations whose paths are relative to the replicated source
//! directory and whose values were read on the source (see [`crate::source::resolve`]), and
//! applies them beneath one root directory. It never reads anything but the replica, so it
//! serves the target of a network connection and a local replica alike. It is the
//! directory kind of [`Replica`], the trait a target's session applies through.
//!
//! Confinement is the whole point of this file: every path must be relative and made of
//! normal components only (no `..`, no root, no `.`), and it is resolved with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` from the root, which the kernel
//! refuses the moment any step (a `..`, an absolute or escaping symlink, one raced into
//! the replica) would leave it. Symlinks that stay beneath the root are followed where the
//! source's call followed them (a `truncate` or `chmod` by the name of a symlink acts on
//! the file it points to, on the source as here); calls that act on a name itself
//! (`unlink`, `rename`, `lchown`-style owner and times) use `*at` calls on the parent
//! directory that never follow the last component. So neither a peer's `..`, an absolute
//! name, nor a symlink planted in the replica leads outside the root.
//!
//! Large writes bypass the page cache ([`direct`]).
//!
//! Operations are idempotent where a replay needs it (an `unlink` of a missing name, a
//! `mkdir` of an existing directory succeed): after a crash, a target may receive again
//! operations it applied but had not acknowledged.

mod direct;

use crate::net::proto::verify::{Ask, Inspected};
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rill_ops::{Event, FileTimes, KeepRange, Op};

use crate::replica::orphans::{remove_orphans, stat_at, Removed};
use crate::replica::{confined, ApplyError, Durability, Replica};
use crate::sys;

/// What the applier replicates besides names and data.
#[derive(Clone, Copy, Debug)]
pub struct ApplyOptions {
    /// Mode, owner and times (`DisableAttributeReplication` = 0).
    pub attributes: bool,
    /// Extended attributes (`ExtendedAttributes` = 1).
    pub xattrs: bool,
    /// How long a written file is kept open for the next write (`TGCloseDelay`).
    pub close_delay: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            attributes: true,
            xattrs: true,
            close_delay: Duration::from_millis(1000),
        }
    }
}

/// Applies operations beneath one root directory.
pub struct Applier {
    root: OwnedFd,
    options: ApplyOptions,
    /// Files written since the last flush (synced by `flush`), and when each was last used.
    open: HashMap<PathBuf, (File, Instant)>,
    /// Orphans removed so far.
    orphans: Removed,
    /// The names the last orphan removal took away, with what went with each.
    last_orphans: Vec<(PathBuf, Removed)>,
    /// The last file opened through a symlink, for the op at hand only (see `writable`).
    through_link: Option<File>,
    /// Whether the op at hand may reach its file through a final symlink: only a call by
    /// name (no object identity), which followed one on the source (see `writable`).
    by_name: bool,
    direct: direct::DirectWriter,
}

/// Tolerates the errors a replayed operation meets: the name is already gone or there.
fn replayed(r: io::Result<()>, tolerated: i32) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(tolerated) => Ok(()),
        other => other,
    }
}

impl Applier {
    /// Applies operations beneath the existing directory `root`.
    pub fn new(root: &Path, options: ApplyOptions) -> io::Result<Applier> {
        let c = sys::cstring(root.as_os_str().as_bytes())?;
        Ok(Applier {
            root: sys::fs::open(&c, libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)?,
            options,
            open: HashMap::new(),
            orphans: Removed::default(),
            last_orphans: Vec::new(),
            through_link: None,
            by_name: false,
            direct: direct::DirectWriter::default(),
        })
    }

    /// Opens `rel` beneath the root, never through a symlink.
    fn open(&self, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
        let p = if rel.as_os_str().is_empty() {
            OsStr::new(".")
        } else {
            rel.as_os_str()
        };
        let c = sys::cstring(p.as_bytes())?;
        let mode = if flags & libc::O_CREAT != 0 { mode } else { 0 };
        let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        sys::fs::openat2(&self.root, &c, flags | libc::O_CLOEXEC, mode, resolve)
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
        Ok((dir, sys::cstring(name.as_bytes())?))
    }

    /// Applies one operation. Paths are relative to the replicated source directory.
    ///
    /// Each operation has a method of its own; this only confines the names, lets go of
    /// the open files the operation replaces, and names the operation and its path in the
    /// error of a call that failed.
    pub fn apply(&mut self, ev: &Event) -> Result<(), ApplyError> {
        let rel = confined(&ev.path)?;
        self.by_name = ev.object.is_none();
        self.let_go_of_replaced(rel, &ev.op);
        let name = ev.op.kind().name();
        let err = |source| ApplyError::Apply {
            op: name,
            path: ev.path.clone(),
            source,
        };
        let unresolved = |what| ApplyError::Unresolved {
            what,
            path: ev.path.clone(),
        };
        let attributes = self.options.attributes;
        let r: io::Result<()> = match &ev.op {
            Op::Write {
                offset,
                data: Some(d),
                ..
            } => self.write(rel, d, *offset),
            Op::Write { data: None, .. } => return Err(unresolved("write")),
            Op::Create { mode, truncate } => self.create(rel, *mode, *truncate),
            Op::Truncate { size } => self.writable(rel, None).and_then(|f| f.set_len(*size)),
            Op::Fallocate { mode, offset, len } => self.fallocate(rel, *mode, *offset, *len),
            Op::Unlink | Op::Rmdir => self.remove_name(rel, matches!(ev.op, Op::Rmdir)),
            Op::Mkdir { mode } if rel.as_os_str().is_empty() => self.mkdir_root(rel, *mode),
            Op::Mkdir { mode } => self.mkdir(rel, *mode),
            Op::Mknod { mode, rdev } => self.mknod(rel, *mode, *rdev),
            Op::Rename { new_path, flags } => {
                let to = confined(new_path)?;
                self.rename(rel, to, *flags)
            }
            Op::Link { target } => {
                let existing = confined(target)?;
                self.link(rel, existing)
            }
            Op::Symlink { target } => self.symlink(rel, target),
            Op::Chmod { .. } | Op::Chown { .. } | Op::Utimes { .. } if !attributes => Ok(()),
            Op::Prune(range) => self.prune(rel, range),
            Op::Chmod { mode } => self.chmod(rel, *mode),
            Op::Chown { uid, gid } => self.chown(rel, *uid, *gid),
            Op::Utimes { times: Some(t) } => self.set_times(rel, t),
            Op::Utimes { times: None } => return Err(unresolved("utimes")),
            Op::SetXattr { .. } | Op::RemoveXattr { .. } if !self.options.xattrs => Ok(()),
            Op::SetXattr { value: None, .. } => return Err(unresolved("setxattr")),
            Op::SetXattr {
                name: attr,
                value: Some(value),
            } => self.xattr(rel, attr.as_bytes(), Some(value)),
            Op::RemoveXattr { name: attr } => self.xattr(rel, attr.as_bytes(), None),
            op @ (Op::Dirty { .. } | Op::Overflow { .. }) => {
                return Err(ApplyError::NotAnOperation(op.clone()))
            }
        };
        r.map_err(err)
    }

    /// Lets go of the open files an operation that makes a name replaces.
    fn let_go_of_replaced(&mut self, rel: &Path, op: &Op) {
        match op {
            // A name made anew does not hold the file held open under it: that file's
            // removal came first on the source (or was lost, and this is a remirror), so
            // nothing may reach it through the name any more, attributes included. A
            // directory made where one is keeps what it holds.
            Op::Mkdir { .. } => {
                self.open.remove(rel);
            }
            // These replace whatever holds the name, a directory with its content included
            // (`make_new`): files held open beneath it are gone from the replica's names,
            // and a later file made there must not reach them.
            Op::Mknod { .. } | Op::Symlink { .. } | Op::Link { .. } => {
                self.open.retain(|p, _| !p.starts_with(rel));
            }
            _ => {}
        }
    }

    /// `Create`: the only operation that makes a file (see [`Applier::writable`]), with
    /// its mode, emptied if the source's open truncated it.
    fn create(&mut self, rel: &Path, mode: u32, truncate: bool) -> io::Result<()> {
        let attributes = self.options.attributes;
        let f = self.writable(rel, Some(mode))?;
        if truncate {
            f.set_len(0)?;
        }
        if attributes {
            fchmod(f, mode)
        } else {
            Ok(())
        }
    }

    /// `Fallocate`, with the source's mode bits (space, holes, zero ranges).
    fn fallocate(&mut self, rel: &Path, mode: u32, offset: u64, len: u64) -> io::Result<()> {
        let f = self.writable(rel, None)?;
        sys::fs::fallocate(f, mode as i32, offset as i64, len as i64)
    }

    /// `Mkdir` of the replica root, which exists: a mirror's mkdir of the source
    /// directory sets its mode (and clears extended attributes the source's does not have).
    fn mkdir_root(&mut self, rel: &Path, mode: u32) -> io::Result<()> {
        let dir = self.open(rel, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        if self.options.xattrs {
            clear_xattrs(&dir)?;
        }
        if !self.options.attributes {
            return Ok(());
        }
        fchmod(&dir, mode)
    }

    /// `Mkdir`. A directory already there (a replay, a mirror over a replica) stays, its
    /// stale extended attributes cleared; anything else under the name is replaced by the
    /// directory.
    fn mkdir(&mut self, rel: &Path, mode: u32) -> io::Result<()> {
        let (d, n) = self.parent(rel)?;
        let made = sys::fs::mkdirat(&d, &n, mode);
        let existed = made
            .as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::EEXIST));
        match made {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && !is_dir_at(&d, &n) => {
                sys::fs::unlinkat(&d, &n, false)?;
                sys::fs::mkdirat(&d, &n, mode)?;
            }
            other => replayed(other, libc::EEXIST)?,
        }
        let dir = self.open(rel, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        if existed && self.options.xattrs {
            clear_xattrs(&dir)?;
        }
        if !self.options.attributes {
            return Ok(());
        }
        fchmod(&dir, mode)
    }

    /// `Mknod`: a device, FIFO or socket node, replacing what holds the name unless it is
    /// the same node already (`make_new`).
    fn mknod(&mut self, rel: &Path, mode: u32, rdev: u64) -> io::Result<()> {
        let (d, n) = self.parent(rel)?;
        let kind = mode & libc::S_IFMT;
        make_new(
            &d,
            &n,
            || sys::fs::mknodat(&d, &n, mode, rdev),
            |st| st.st_mode & libc::S_IFMT == kind && st.st_rdev == rdev,
        )
    }

    /// `Rename` of `rel` to `to` (both confined), with the source's `renameat2` flags.
    fn rename(&mut self, rel: &Path, to: &Path, flags: u32) -> io::Result<()> {
        let ((fd, fname), (td, tname)) = (self.parent(rel)?, self.parent(to)?);
        let renamed = sys::fs::renameat2(&fd, &fname, &td, &tname, flags);
        // Only a rename that happened moves the open files: one refused leaves them under
        // their names, and moved in this record they would take the writes meant for the
        // names they moved to (found by the replication fuzzer).
        if renamed.is_ok() {
            self.moved_open(rel, to);
        }
        renamed
    }

    /// `Link`: `rel` made a hard link of the confined `existing`, replacing what holds the
    /// name unless it is that file already (`make_new`).
    fn link(&mut self, rel: &Path, existing: &Path) -> io::Result<()> {
        let ((ed, ename), (nd, nname)) = (self.parent(existing)?, self.parent(rel)?);
        let file = stat_at(&ed, &ename)?;
        make_new(
            &nd,
            &nname,
            // Flags 0: a final symlink is linked itself, never followed.
            || sys::fs::linkat(&ed, &ename, &nd, &nname, 0),
            |st| file.is_some_and(|f| (f.st_dev, f.st_ino) == (st.st_dev, st.st_ino)),
        )
    }

    /// `Symlink`: `rel` made a symlink holding `target`, replacing what holds the name
    /// unless it is that link already (`make_new`).
    fn symlink(&mut self, rel: &Path, target: &OsStr) -> io::Result<()> {
        let (d, n) = self.parent(rel)?;
        let t = sys::cstring(target.as_bytes())?;
        make_new(
            &d,
            &n,
            // The link text is stored, never followed here.
            || sys::fs::symlinkat(&t, &d, &n),
            |st| {
                st.st_mode & libc::S_IFMT == libc::S_IFLNK
                    && sys::fs::readlinkat(&d, &n).is_ok_and(|text| text == t.as_bytes())
            },
        )
    }

    /// `Prune`: removes the orphans of directory `rel` (the names `range` does not keep),
    /// and lets go of the files open beneath them.
    fn prune(&mut self, rel: &Path, range: &KeepRange) -> io::Result<()> {
        let dir = match self.open(rel, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
            // Nothing there, nothing to remove: the directory's own removal came first in
            // the stream.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            other => other?,
        };
        self.last_orphans.clear();
        for (name, removed) in remove_orphans(&dir, range)? {
            let gone = rel.join(name);
            self.open.retain(|p, _| !p.starts_with(&gone));
            self.orphans += removed;
            self.last_orphans.push((gone, removed));
        }
        Ok(())
    }

    /// Like [`Applier::parent`], but the root itself (an empty name) is the root with an
    /// empty name, for the `AT_EMPTY_PATH` forms of the attribute calls.
    fn parent_or_root(&self, rel: &Path) -> io::Result<(OwnedFd, CString)> {
        if rel.as_os_str().is_empty() {
            Ok((
                self.open(rel, libc::O_RDONLY | libc::O_DIRECTORY, 0)?,
                CString::default(),
            ))
        } else {
            self.parent(rel)
        }
    }

    /// `rel` was renamed to `to` (or exchanged with it). The open file keeps its data; it
    /// is synced under its new name. A file held open under the new name was replaced (or
    /// moved to `rel`): later writes to that name must not reach it, and it is let go. A
    /// renamed directory moves what is open beneath it.
    fn moved_open(&mut self, rel: &Path, to: &Path) {
        let moved: Vec<PathBuf> = self
            .open
            .keys()
            .filter(|p| p.starts_with(rel) || p.starts_with(to))
            .cloned()
            .collect();
        // All taken out first: an entry moved under `to` must not meet the removal of the
        // one it replaces there.
        let taken: Vec<(PathBuf, (File, Instant))> = moved
            .into_iter()
            .filter_map(|p| self.open.remove(&p).map(|f| (p, f)))
            .collect();
        for (p, f) in taken {
            if let Ok(rest) = p.strip_prefix(rel) {
                self.open.insert(to.join(rest), f);
            }
        }
    }

    /// Removes `rel` (an `Unlink`, or an `Rmdir` when `dir`), and with it the files held
    /// open beneath it.
    ///
    /// After the operation the source had nothing under the name, and neither may the
    /// replica, whatever it holds there: an (empty) directory goes too (a remirror's
    /// removal of a name the source no longer has), and so does a directory that is not
    /// empty. The source removed its own directory only once it was empty, so what is left
    /// in the replica's is what operations the replica could not apply left behind;
    /// refusing it would keep it for good, the remirror that follows a refusal sending the
    /// same removal again (found by the replication fuzzer: directories the source had
    /// moved away stayed on the replica). A name beneath directories the replica does not
    /// have is removed already.
    fn remove_name(&mut self, rel: &Path, dir: bool) -> io::Result<()> {
        self.open.retain(|p, _| !p.starts_with(rel));
        let (d, n) = match self.parent(rel) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Ok(())
            }
            other => other?,
        };
        // `dir`: AT_REMOVEDIR.
        match sys::fs::unlinkat(&d, &n, dir) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR | libc::ENOTEMPTY)) => {
                let mut removed = crate::replica::orphans::Removed::default();
                crate::replica::orphans::remove_entry(
                    &d,
                    OsStr::from_bytes(n.to_bytes()),
                    &mut removed,
                )?;
                if removed.files > 0 || removed.dirs > 1 {
                    log::warn!(
                        "{}: removed with what the replica held beneath it ({} files, {} \
                         directories) that the source did not",
                        rel.display(),
                        removed.files,
                        removed.dirs - 1
                    );
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The descriptor held open for `rel` (see [`Applier::writable`]): the regular file
    /// the name holds on the replica, reached without a symlink. A file's attributes are
    /// set through it, which spares resolving the name again for each of the chown, chmod
    /// and utimes that follow a file's writes.
    fn held(&self, rel: &Path) -> Option<&File> {
        self.open.get(rel).map(|(f, _)| f)
    }

    /// The replica file for a data operation, kept open for `close_delay` after its last
    /// use so a stream of writes does not reopen it each time.
    ///
    /// Only a `Create` makes the file (with its mode): every other data operation found
    /// its file on the source, so a name the replica lacks is one it fell behind on, and
    /// the operation is refused (and the name remirrored). Made by a truncate or a write,
    /// the file was a phantom the source never had, which nothing removed (found by the
    /// replication fuzzer: a file of zeros on the replica only).
    fn writable(&mut self, rel: &Path, create: Option<u32>) -> io::Result<&File> {
        if !self.open.contains_key(rel) {
            // O_NONBLOCK: a FIFO under the name (the replica behind the stream after an
            // operation it could not apply) refuses the open (ENXIO) instead of waiting
            // for a reader forever, and the applier with it. A regular file ignores it.
            let made = if create.is_some() { libc::O_CREAT } else { 0 };
            let flags = libc::O_WRONLY | made | libc::O_NONBLOCK;
            let create_mode = create.unwrap_or(0);
            match self.open(rel, flags | libc::O_NOFOLLOW, create_mode) {
                Ok(fd) => {
                    self.open
                        .insert(rel.to_path_buf(), (File::from(fd), Instant::now()));
                }
                // The name is a symlink. An operation on an open file names the file
                // itself (the capture walks its dentry), never a link to it, so a symlink
                // here means the replica is behind the source (an operation it could not
                // apply): refused (and the name remirrored) rather than written through,
                // which would change the other file the link names (found by the
                // replication fuzzer). A call by name that followed a link on the source
                // (`truncate`) is written through it, and not kept open: the cache is
                // keyed by name, and the file behind the link can be removed or replaced
                // by its own name, which would leave a later write on a file no name holds.
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) && self.by_name => {
                    let fd = self.open(rel, flags, create_mode)?;
                    return Ok(self.through_link.insert(File::from(fd)));
                }
                Err(e) => return Err(e),
            }
        }
        let (file, used) = self
            .open
            .get_mut(rel)
            .ok_or_else(|| io::Error::other("replica file vanished from the open set"))?;
        *used = Instant::now();
        Ok(file)
    }

    fn write(&mut self, rel: &Path, data: &[u8], offset: u64) -> io::Result<()> {
        // Taken out for the call: `writable` borrows the applier for as long as the file.
        let mut direct = std::mem::take(&mut self.direct);
        let written = self
            .writable(rel, None)
            .and_then(|f| direct.write_all_at(f, data, offset));
        self.direct = direct;
        written
    }

    fn chmod(&self, rel: &Path, mode: u32) -> io::Result<()> {
        if let Some(f) = self.held(rel) {
            return fchmod(f, mode);
        }
        // Symlinks have no mode of their own: chmod acts on what the name resolves to,
        // opened beneath the root (O_PATH: no read access needed, a FIFO does not block).
        let f = self.open(rel, libc::O_PATH, 0)?;
        sys::attr::fchmodat2(&f, c"", mode, libc::AT_EMPTY_PATH)
    }

    fn chown(&self, rel: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        // None (-1) leaves an id as it is.
        if let Some(f) = self.held(rel) {
            return sys::attr::fchown(f, uid, gid);
        }
        let (d, n) = self.parent_or_root(rel)?;
        let flags = libc::AT_SYMLINK_NOFOLLOW | at_empty(&n);
        sys::attr::fchownat(&d, &n, uid, gid, flags)
    }

    fn set_times(&self, rel: &Path, t: &FileTimes) -> io::Result<()> {
        if let Some(f) = self.held(rel) {
            return sys::attr::futimens(f, t.atime, t.mtime);
        }
        let (d, n) = self.parent_or_root(rel)?;
        let flags = libc::AT_SYMLINK_NOFOLLOW | at_empty(&n);
        sys::attr::utimensat(&d, &n, t.atime, t.mtime, flags)
    }

    fn xattr(&self, rel: &Path, attr: &[u8], value: Option<&Vec<u8>>) -> io::Result<()> {
        let name = sys::cstring(attr)?;
        // Follows a symlink beneath the root as setxattr(2) does; O_NONBLOCK: a FIFO must not block.
        let target = File::from(self.open(rel, libc::O_RDONLY | libc::O_NONBLOCK, 0)?);
        match value {
            Some(v) => sys::xattr::set_fd(&target, &name, v),
            None => replayed(sys::xattr::remove_fd(&target, &name), libc::ENODATA),
        }
    }
}

/// The local directory as a session's replica (see [`Replica`]).
impl Replica for Applier {
    fn apply(&mut self, ev: &Event) -> Result<(), ApplyError> {
        Applier::apply(self, ev)
    }

    /// Closes files not written for `close_delay` (what they hold is in the page cache
    /// either way; a sync makes it durable).
    fn close_idle(&mut self) {
        let delay = self.options.close_delay;
        self.open.retain(|_, (_, used)| used.elapsed() < delay);
    }

    /// The file system that holds the replica, to be synced from another thread while
    /// applying goes on.
    fn durability(&self) -> Result<Box<dyn Durability>, ApplyError> {
        // The root is held as O_PATH, which syncfs refuses, so it is opened for reading.
        self.open(Path::new(""), libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map(|fd| Box::new(SyncFs(fd)) as Box<dyn Durability>)
            .map_err(|source| ApplyError::Apply {
                op: "flush",
                path: PathBuf::new(),
                source,
            })
    }

    fn orphans(&self) -> Removed {
        self.orphans
    }

    /// The names beneath the root the last orphan removal took away.
    fn last_orphans(&self) -> &[(PathBuf, Removed)] {
        &self.last_orphans
    }

    fn inspect(&self, ask: &Ask) -> io::Result<Inspected> {
        crate::verify::inspect(
            self.root.as_fd(),
            ask,
            crate::net::proto::verify::MAX_LISTED,
        )
    }
}

/// The replica's file system, opened to be synced.
struct SyncFs(OwnedFd);

impl Durability for SyncFs {
    /// Makes everything applied before the call durable with one `syncfs` of the file
    /// system that holds the replica: the data of every file written, and names and
    /// attributes. (A `fdatasync` per file held open as well cost one journal commit each
    /// and added nothing.)
    fn sync(&self) -> Result<(), ApplyError> {
        sys::fs::syncfs(&self.0).map_err(|source| ApplyError::Apply {
            op: "flush",
            path: PathBuf::new(),
            source,
        })
    }
}

/// Whether `name` in `dir` is a directory (not following a symlink).
/// Makes a new name with `make` (a `*at` call returning 0 or -1 with errno). On the
/// source the call succeeded, so the name did not exist: one the replica has already is
/// either this very operation applied before (a replay after a crash: `same` holds for
/// it, and it stays) or something operations the replica could not apply left there,
/// which is removed (with what it holds, if a directory) and the name made again. Taken
/// for a replay, it stayed for good: a hard link's new name kept another file, and the
/// writes made through that name on the source went to it on the replica (found by the
/// replication fuzzer).
fn make_new(
    dir: &OwnedFd,
    name: &CString,
    make: impl Fn() -> io::Result<()>,
    same: impl Fn(&libc::stat) -> bool,
) -> io::Result<()> {
    match make() {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            if stat_at(dir, name)?.is_some_and(|st| same(&st)) {
                return Ok(());
            }
            let mut removed = crate::replica::orphans::Removed::default();
            crate::replica::orphans::remove_entry(
                dir,
                OsStr::from_bytes(name.to_bytes()),
                &mut removed,
            )?;
            make()
        }
        other => other,
    }
}

fn is_dir_at(dir: &OwnedFd, name: &CString) -> bool {
    matches!(stat_at(dir, name), Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

fn at_empty(name: &CString) -> i32 {
    if name.as_bytes().is_empty() {
        libc::AT_EMPTY_PATH
    } else {
        0
    }
}

/// Removes the extended attributes of a directory that a `Mkdir` found already there.
///
/// After a `mkdir` the source's directory had none: what the replica's holds was left by
/// operations it could not apply (a lost `removexattr`), and a remirror of the directory,
/// which keeps the directory itself, would never take it away (found by the replication
/// fuzzer). The attributes the source has follow in the mirror's group. `security.` names
/// stay: they are the target host's (its security labels), not the replication's.
fn clear_xattrs(dir: &OwnedFd) -> io::Result<()> {
    let names = sys::xattr::list_fd(dir, 65536)?;
    for name in sys::xattr::names(&names) {
        if name.starts_with(b"security.") {
            continue;
        }
        let c = sys::cstring(name)?;
        replayed(sys::xattr::remove_fd(dir, &c), libc::ENODATA)?;
    }
    Ok(())
}

/// `fchmod` with the permission bits of `mode` (its file type bits dropped).
fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    sys::attr::fchmod(fd, mode & 0o7777)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `f` on a thread of its own and fails the test if it has not returned within
    /// 10 s: what it calls would otherwise hang the test run.
    pub(crate) fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the call blocked (a FIFO opened without O_NONBLOCK?)")
    }

    /// A write to a name that holds a FIFO on the replica (the replica behind the stream
    /// after an operation it could not apply) is refused at once; it used to wait for a
    /// reader forever, and every later operation of the job with it (found by the
    /// replication fuzzer).
    #[test]
    fn a_write_to_a_fifo_on_the_replica_is_refused_not_waited_on() {
        let d = tempfile::tempdir().unwrap();
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
        nix::unistd::mkfifo(&d.path().join("q"), mode).unwrap();
        let root = d.path().to_path_buf();
        let result = within_10s(move || {
            let mut a = Applier::new(&root, ApplyOptions::default()).unwrap();
            let write = Op::Write {
                offset: 0,
                len: 3,
                data: Some(b"abc".to_vec().into()),
            };
            a.apply(&Event::new("q", write)).map_err(|e| e.to_string())
        });
        assert!(result.is_err(), "a FIFO took a write: {result:?}");
    }

    fn create() -> Op {
        Op::Create {
            mode: 0o644,
            truncate: false,
        }
    }

    /// A rename the replica refuses moves nothing, the files held open under the old name
    /// included: a later write by the new name must fail (and be remirrored), not reach
    /// the file still under the old name (found by the replication fuzzer).
    #[test]
    fn a_refused_rename_leaves_open_files_under_their_names() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Applier::new(d.path(), ApplyOptions::default()).unwrap();
        a.apply(&Event::new("a", Op::Mkdir { mode: 0o755 }))
            .unwrap();
        a.apply(&Event::new("a/f", create())).unwrap();
        a.apply(&Event::new("a/f", write(b"old"))).unwrap();
        let to_missing = Op::Rename {
            new_path: "gone/b".into(),
            flags: 0,
        };
        assert!(a.apply(&Event::new("a", to_missing)).is_err());
        assert!(a.apply(&Event::new("gone/b/f", write(b"new"))).is_err());
        assert_eq!(std::fs::read(d.path().join("a/f")).unwrap(), b"old");
        a.apply(&Event::new("a/f", write(b"add"))).unwrap();
        assert_eq!(std::fs::read(d.path().join("a/f")).unwrap(), b"add");
    }

    /// A symlink, device node or hard link made where the replica has a directory
    /// replaces it with what it holds; files held open beneath it are let go, so a file
    /// made later under one of their names is a new file that gets its writes.
    #[test]
    fn a_name_made_over_a_directory_lets_go_of_the_files_open_beneath_it() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Applier::new(d.path(), ApplyOptions::default()).unwrap();
        let made = |a: &mut Applier| {
            a.apply(&Event::new("d", Op::Mkdir { mode: 0o755 }))
                .unwrap();
            a.apply(&Event::new("d/f", create())).unwrap();
            a.apply(&Event::new("d/f", write(b"bytes"))).unwrap();
        };
        made(&mut a);
        let link = Op::Symlink {
            target: "elsewhere".into(),
        };
        a.apply(&Event::new("d", link)).unwrap();
        // A remirror's directory group, made over what the replica has under the name.
        made(&mut a);
        assert_eq!(std::fs::read(d.path().join("d/f")).unwrap(), b"bytes");
    }

    /// A write to a name the replica lacks is refused, not made into a file: only a
    /// `Create` makes one (on the source every other data operation found its file).
    #[test]
    fn only_a_create_makes_a_file() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Applier::new(d.path(), ApplyOptions::default()).unwrap();
        let truncate = Op::Truncate { size: 10 };
        for op in [write(b"x"), truncate] {
            assert!(a.apply(&Event::new("phantom", op)).is_err());
        }
        assert!(!d.path().join("phantom").exists());
    }

    fn write(data: &[u8]) -> Op {
        Op::Write {
            offset: 0,
            len: data.len() as u64,
            data: Some(data.to_vec().into()),
        }
    }

    /// A removal of a name that holds a directory with content on the replica (left by
    /// operations the replica could not apply) removes the tree: the source had nothing
    /// under the name after it. Refused, it came back with every remirror and the
    /// directory stayed for good (found by the replication fuzzer). A file held open
    /// beneath it is let go, so a later write by the same name makes a new file. A name
    /// beneath missing directories is removed already.
    #[test]
    fn removing_a_name_that_holds_a_directory_with_content_removes_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Applier::new(d.path(), ApplyOptions::default()).unwrap();
        for op in [Op::Rmdir, Op::Unlink] {
            a.apply(&Event::new("d", Op::Mkdir { mode: 0o755 }))
                .unwrap();
            a.apply(&Event::new("d/e", Op::Mkdir { mode: 0o755 }))
                .unwrap();
            a.apply(&Event::new("d/e/f", create())).unwrap();
            a.apply(&Event::new("d/e/f", write(b"old"))).unwrap();
            a.apply(&Event::new("d", op.clone())).unwrap();
            assert!(!d.path().join("d").exists(), "{op:?} left the tree");
        }
        a.apply(&Event::new("d", Op::Mkdir { mode: 0o755 }))
            .unwrap();
        a.apply(&Event::new("d/e", Op::Mkdir { mode: 0o755 }))
            .unwrap();
        a.apply(&Event::new("d/e/f", create())).unwrap();
        a.apply(&Event::new("d/e/f", write(b"new"))).unwrap();
        a.flush().unwrap();
        assert_eq!(std::fs::read(d.path().join("d/e/f")).unwrap(), b"new");
        // Beneath directories the replica does not have, or beneath a file: nothing to
        // remove, and nothing to refuse (a remirror would send it again, for good).
        for gone in ["none/x/y", "d/e/f/g"] {
            a.apply(&Event::new(gone, Op::Unlink)).unwrap();
        }
    }

    /// A write on an open file (it carries the file's identity) to a name that is a
    /// symlink on the replica is refused, not written through to the file the link names:
    /// on the source the capture named the file itself, so the link is a replica behind
    /// the source, and the file behind it another one (found by the replication fuzzer).
    #[test]
    fn a_write_on_an_open_file_never_goes_through_a_symlink_on_the_replica() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("other"), b"keep").unwrap();
        std::os::unix::fs::symlink("other", d.path().join("f")).unwrap();
        let mut a = Applier::new(d.path(), ApplyOptions::default()).unwrap();
        let on_open_file = Event {
            object: Some((1, 2)),
            ..Event::new("f", write(b"new"))
        };
        assert!(a.apply(&on_open_file).is_err());
        a.flush().unwrap();
        assert_eq!(std::fs::read(d.path().join("other")).unwrap(), b"keep");
    }

    /// A directory made again (a mirror over a replica that has it) keeps none of the
    /// extended attributes it had: after `mkdir` the source's had none, and the mirror
    /// sends those it has now after it.
    #[test]
    fn a_directory_made_again_loses_its_stale_extended_attributes() {
        let d = tempfile::tempdir().unwrap();
        let options = ApplyOptions {
            xattrs: true,
            ..ApplyOptions::default()
        };
        let mut a = Applier::new(d.path(), options).unwrap();
        for dir in ["", "d"] {
            a.apply(&Event::new(dir, Op::Mkdir { mode: 0o755 }))
                .unwrap();
            let set = Op::SetXattr {
                name: "user.stale".into(),
                value: Some(b"v".to_vec()),
            };
            a.apply(&Event::new(dir, set)).unwrap();
            a.apply(&Event::new(dir, Op::Mkdir { mode: 0o750 }))
                .unwrap();
            let path = d.path().join(dir);
            let names = crate::source::resolve::list_xattrs(&path).unwrap();
            assert!(
                !names.iter().any(|n| n == b"user.stale"),
                "{dir:?}: {names:?}"
            );
        }
    }

    /// A new name (hard link, symlink, FIFO) where the replica already has something else
    /// replaces it: on the source the name was free. The same operation applied again (a
    /// replay) leaves the name as it is.
    #[test]
    fn a_new_name_replaces_what_the_replica_left_there_and_a_replay_keeps_it() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let d = tempfile::tempdir().unwrap();
        let at = |n: &str| d.path().join(n);
        std::fs::write(at("f"), b"file").unwrap();
        std::fs::write(at("stale"), b"stale").unwrap();
        std::fs::create_dir_all(at("dir/sub")).unwrap();
        let mut a = Applier::new(d.path(), ApplyOptions::default()).unwrap();
        let link = Op::Link { target: "f".into() };
        let symlink = Op::Symlink { target: "f".into() };
        let fifo = Op::Mknod {
            mode: libc::S_IFIFO | 0o640,
            rdev: 0,
        };
        for _replayed in 0..2 {
            a.apply(&Event::new("stale", link.clone())).unwrap();
            a.apply(&Event::new("dir", symlink.clone())).unwrap();
            a.apply(&Event::new("f2", fifo.clone())).unwrap();
        }
        let ino = |n: &str| std::fs::symlink_metadata(at(n)).unwrap().ino();
        assert_eq!(ino("stale"), ino("f"), "the new name is the file's");
        assert_eq!(std::fs::read_link(at("dir")).unwrap(), Path::new("f"));
        assert!(std::fs::symlink_metadata(at("f2"))
            .unwrap()
            .file_type()
            .is_fifo());
    }
}
