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
//! were written ([`written`]) and [`Resolver::times_of_written`] gives the source's current
//! times for each, to be sent after them.
//!
//! Each job has one resolver, held by its outbox ([`crate::source::outbox`]), which runs it
//! just before an operation goes out: operations are resolved once, on the source, and
//! every destination receives them resolved.

mod written;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use rill_abi::maps::user_dev_to_kernel;
use rill_ops::{Event, FileTimes, Op};

use crate::followed::Followed;
use crate::sys;

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
    /// Files written since the last `times_of_written`.
    written: written::Written,
    /// Names whose value (data, times, attribute) could not be read because the file had
    /// moved on by the time its operation was sent; see [`Resolver::take_stale`].
    stale: BTreeMap<PathBuf, ()>,
    /// Names whose object on the replica is stale from this point of the stream until a
    /// remirror rebuilds them (refused, overtaken by an older rename, or written where the
    /// drain could not read the bytes), followed through the moves sent after; see
    /// [`Resolver::suspect`].
    suspects: Followed,
    /// The suspects that may hold another object than the source's on the replica
    /// (refused, overtaken: see [`Resolver::suspect`]), as opposed to the right object
    /// missing a change the stream does not carry (an unreadable write, a capture's mark:
    /// [`Resolver::follow`]). Changes in place of these are left to their remirror
    /// ([`Resolver::suspected`]); those of the others go on in order, which a database's
    /// crash consistency on the replica depends on.
    other_objects: Followed,
    /// Names the moves carried a suspect object to, to be remirrored (`take_stale`).
    carried: Vec<PathBuf>,
    /// The files (kernel device, inode) whose change could not be read under the name it
    /// was made through (the name moved on, or the drain could not read the bytes): a
    /// file with hard links is remirrored under every name it has (`take_stale`), since
    /// the names followed from the one written through may all be gone by the remirror
    /// while the file lives on under another (found by the replication fuzzer: a
    /// `copy_file_range` into one name of a file, the name moved, then removed; the
    /// file's other name never got the bytes).
    unread: std::collections::BTreeSet<(u64, u64)>,
    /// Set when one of the bounded records above was full and a name or file was not
    /// kept: the whole source is remirrored then (`take_stale`), rather than one change
    /// going unremirrored.
    overflowed: bool,
    /// The capture time (CLOCK_MONOTONIC ns) of the latest operation resolved: how far the
    /// stream has come, for the written files' times (see `Written::take_due`).
    stream_at: u64,
}

/// The most bytes one resolved write carries: the bytes are read into memory to be sent.
pub const MAX_RESOLVED_WRITE: u64 = 4 << 20;

/// Stale names (and files, and written names) remembered at most at once: a bound for a
/// pathological storm. Past it the whole source is remirrored (`Resolver::overflowed`).
const MAX_STALE: usize = 65536;

/// The largest extended attribute value Linux allows (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 65536;

impl Resolver {
    pub fn new(source: &Path, options: ResolveOptions) -> Resolver {
        Resolver {
            source: source.to_path_buf(),
            options,
            written: written::Written::default(),
            suspects: Followed::default(),
            other_objects: Followed::default(),
            carried: Vec::new(),
            unread: Default::default(),
            overflowed: false,
            stream_at: 0,
            stale: BTreeMap::new(),
        }
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
            _ => {
                out.extend(self.resolve_one(ev)?);
                Ok(())
            }
        }
    }

    fn resolve_one(&mut self, mut ev: Event) -> Result<Option<Event>, ResolveError> {
        self.stream_at = self.stream_at.max(ev.ktime_ns);
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
                            *data = Some(bytes.into());
                        }
                        Err(e) if gone(&e) => return Ok(self.went_stale(ev.path, ev.object)),
                        Err(e) => return Err(read("data", e)),
                    }
                }
                self.wrote(&ev);
            }
            Op::Create { .. } | Op::Truncate { .. } | Op::Fallocate { .. } => self.wrote(&ev),
            Op::Rename { new_path, flags } => {
                *new_path = self.relative(new_path)?;
                // Written and stale names (or ones beneath a renamed directory) move with
                // the rename; with an exchange, both ways.
                if *flags & libc::RENAME_EXCHANGE != 0 {
                    self.written.exchanged(&ev.path, new_path, ev.ktime_ns);
                    swap_beneath(&mut self.stale, &ev.path, new_path);
                } else {
                    self.written.renamed(&ev.path, new_path, ev.ktime_ns);
                    move_beneath(&mut self.stale, &ev.path, new_path);
                }
            }
            Op::Link { target } => {
                *target = self.relative(target)?;
                self.written
                    .linked(&self.source, target, &ev.path, ev.object);
            }
            Op::Chmod { .. } | Op::Chown { .. } | Op::Utimes { .. } if !self.options.attributes => {
                return Ok(None)
            }
            // Values the capture copied from the call: exact, nothing to read. Times set
            // after the file's writes are the ones it keeps: none need sending again.
            Op::Utimes { times: Some(_) } => self.written.times_set(&ev.path),
            Op::Utimes { times } => match file_times(&absolute) {
                Ok(t) => {
                    *times = Some(t);
                    self.written.times_set(&ev.path);
                }
                Err(e) if gone(&e) => return Ok(self.went_stale(ev.path, ev.object)),
                Err(e) => return Err(read("times", e)),
            },
            Op::SetXattr { .. } | Op::RemoveXattr { .. } if !self.options.xattrs => {
                return Ok(None)
            }
            Op::SetXattr { value: Some(_), .. } => {}
            Op::SetXattr { name, value } => match get_xattr(&absolute, name.as_bytes()) {
                Ok(v) => *value = Some(v),
                Err(e) if gone(&e) => return Ok(self.went_stale(ev.path, ev.object)),
                // Removed since: the removal follows in the stream.
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(None),
                Err(e) => return Err(read("extended attribute", e)),
            },
            // A write the drain could not read (its file gone from the name): the file
            // is remirrored under the name and every name the moves after it take it to.
            Op::Dirty { .. } => {
                self.unread_file(ev.object);
                self.suspects.insert(ev.path.clone());
                self.carry(std::iter::once(ev.path));
                return Ok(None);
            }
            Op::Overflow { .. } => return Err(ResolveError::NotAnOperation(ev.op.clone())),
            Op::Unlink => {
                self.written.unlinked(&ev.path);
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
        self.follow_suspects(&ev);
        Ok(Some(ev))
    }

    /// The file was renamed (or removed) after the operation and before it was sent: the
    /// value it set travels with the file under its new name, which a later rename in
    /// the stream tells. The name is followed through renames until the file is found
    /// again, and then remirrored (see [`Resolver::take_stale`]).
    fn went_stale(&mut self, rel: PathBuf, object: Option<(u64, u64)>) -> Option<Event> {
        log::debug!(
            "not sent: {} is gone from the source; followed until found again",
            rel.display()
        );
        if self.stale.len() < MAX_STALE {
            self.stale.insert(rel, ());
        } else {
            self.overflowed = true;
        }
        self.unread_file(object);
        None
    }

    fn unread_file(&mut self, object: Option<(u64, u64)>) {
        if let Some(o) = object {
            if self.unread.len() < MAX_STALE {
                self.unread.insert(o);
            } else {
                self.overflowed = true;
            }
        }
    }

    /// Names to remirror, up to the bound.
    fn carry(&mut self, names: impl IntoIterator<Item = PathBuf>) {
        for name in names {
            if self.carried.len() < MAX_STALE {
                self.carried.push(name);
            } else {
                self.overflowed = true;
            }
        }
    }

    /// `path` (absolute) may hold a stale object on the replica from this point of the
    /// stream: the moves resolved from now on are followed from it, and every name they
    /// carry it to is remirrored too (a remirror of `path` alone leaves the object where a
    /// later rename put it: found by the replication fuzzer). It is followed until it is
    /// removed or rebuilt (a remirror's group for a file begins with its removal, and the
    /// one for a directory judges its names: see `follow_suspects`).
    pub fn suspect(&mut self, path: &Path) {
        if let Ok(rel) = self.relative(path) {
            self.suspects.insert(rel.clone());
            self.other_objects.insert(rel);
        }
    }

    /// `path` (absolute) holds the right object on the replica, missing a change the
    /// stream does not carry until its remirror: the moves resolved from now on are
    /// followed from it, as from a suspect's, and every name they carry it to is
    /// remirrored too. Changes in place of it are still sent, in order.
    pub fn follow(&mut self, path: &Path) {
        if let Ok(rel) = self.relative(path) {
            self.suspects.insert(rel);
        }
    }

    /// Whether the replica's object under `rel` (or a directory above it) may be another
    /// object than the source's, from this point of the stream until a remirror rebuilds
    /// it (see [`Resolver::suspect`]).
    pub fn suspected(&self, rel: &Path) -> bool {
        self.other_objects.holds(rel)
    }

    /// Whether the replica's object under `rel` (or a directory above it) is followed as
    /// one that may be stale or lack a change the stream does not carry: a name a
    /// difference mirror must rebuild whole rather than patch (its rebuild is what takes
    /// it out of the suspects). A set grown to its bound may have missed names: then
    /// every name counts as followed.
    pub fn followed(&self, rel: &Path) -> bool {
        let full = |f: &Followed| f.len() >= crate::followed::MAX_FOLLOWED;
        full(&self.suspects)
            || full(&self.other_objects)
            || self.suspects.holds(rel)
            || self.other_objects.holds(rel)
    }

    /// `ev` (resolved: relative paths), a change in place of a suspect name (see
    /// [`Resolver::suspected`]), is not sent: applied to the replica's stale object
    /// there, it changed a file the replica may also hold under other names, which are
    /// up to date (found by the replication fuzzer: a symlink's owner set through a name
    /// whose exchange a remirror had overtaken, given on the replica to a file of two
    /// names, whose other name kept it). The name is remirrored (again, should its remirror
    /// have read it already), and so is every name the file the change was made to has.
    pub fn leave_to_remirror(&mut self, ev: &Event) {
        let file = ev
            .object
            .or(ev.reached.as_deref().map(|r| r.file))
            .or_else(|| self.file_changed_by_name(&ev.path));
        self.unread_file(file);
        self.carry(std::iter::once(ev.path.clone()));
    }

    /// What `ev` (relative paths) does to the suspect names.
    fn follow_suspects(&mut self, ev: &Event) {
        if self.suspects.is_empty() {
            return;
        }
        // A directory is rebuilt once its names are judged (a remirror's group for it
        // has its prune): made alone, as a remirror makes the directories above its
        // roots, it keeps what the replica held in it. Taken for rebuilt, the stale
        // content a later rename carried on was never remirrored (found by the
        // replication fuzzer: a directory left in a suspect one by a rename the mirror was
        // to read, the suspect made as a head and then renamed; the replica kept the
        // directory the source had moved away).
        if matches!(ev.op, Op::Prune(_)) {
            self.suspects.remove(&ev.path);
            self.other_objects.remove(&ev.path);
        }
        if !self.other_objects.is_empty() {
            self.other_objects.apply(&ev.path, &ev.op);
        }
        let reached = self.suspects.apply(&ev.path, &ev.op);
        self.carry(reached);
    }

    /// The file a change by name to `rel` was made to, which such an operation does not
    /// say: the one the stream showed under that name as one of a file's several names
    /// (right at this point of the stream, which the source may be ahead of), or else the
    /// one the name leads to on the source now. Through a symlink that is another file
    /// than the name's: the remirror of the refused name rebuilds the link, not the file
    /// the change reached (found by the replication fuzzer: a `chmod` and a `truncate`
    /// through links, refused, lost for good without this look).
    pub fn file_changed_by_name(&self, rel: &Path) -> Option<(u64, u64)> {
        self.written
            .file_named(rel)
            .or_else(|| named_file(&self.source.join(rel)))
    }

    /// The names (absolute) to remirror, besides `named`, so that changes to `files`
    /// (kernel device, inode) that did not reach the replica under the names they were
    /// made through reach it under every name the files have now: none for a file one of
    /// `named` holds as its only name; for any other, every name it has, found by one walk
    /// of the source. A file with hard links needs them all: the name that a remirror
    /// reads it through may be removed before it does (see [`Resolver::take_stale`]).
    pub fn names_of(&self, files: &[(u64, u64)], named: &[PathBuf]) -> Vec<PathBuf> {
        if files.is_empty() {
            return Vec::new();
        }
        let alone: Vec<(u64, u64)> = named.iter().filter_map(|p| lone_file_at(p)).collect();
        let wanted: Vec<(u64, u64)> = files
            .iter()
            .filter(|f| !alone.contains(f))
            .copied()
            .collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        find_files(std::iter::once(self.source.as_path()), &wanted)
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| !named.contains(p))
            .collect()
    }

    /// Stale names that exist again on the source (absolute), to be remirrored; they are
    /// forgotten once returned. With them, the names suspect objects were carried to (see
    /// [`Resolver::suspect`]), and the names of written files whose names in the stream
    /// were all removed (see `Written::take_homeless`).
    pub fn take_stale(&mut self) -> Vec<PathBuf> {
        let found: Vec<PathBuf> = self
            .stale
            .keys()
            .filter(|p| std::fs::symlink_metadata(self.source.join(p)).is_ok())
            .cloned()
            .collect();
        for p in &found {
            self.stale.remove(p);
        }
        let mut found: Vec<PathBuf> = found
            .into_iter()
            .chain(std::mem::take(&mut self.carried))
            .map(|p| self.source.join(p))
            .collect();
        found.extend(self.written.take_homeless(&self.source));
        let unread: Vec<(u64, u64)> = std::mem::take(&mut self.unread).into_iter().collect();
        let names = self.names_of(&unread, &found);
        found.extend(names);
        if std::mem::take(&mut self.overflowed) | self.written.take_overflowed() {
            log::warn!(
                "more changes to follow than the resolver keeps ({MAX_STALE}): the whole \
                 source is remirrored"
            );
            found.push(self.source.clone());
        }
        found
    }

    /// Remembers that the operation wrote its file, with the file's identity if the
    /// capture gave it (an operation by name leaves an identity known before in place).
    fn wrote(&mut self, ev: &Event) {
        self.written.wrote(
            &self.source,
            &ev.path,
            ev.object,
            ev.reached.as_deref().copied(),
        );
    }

    /// Every operation captured before `ns` (CLOCK_MONOTONIC) has been resolved: the
    /// transmit loop found the queue empty after the capture's ring was. With the stream
    /// idle no operation moves `stream_at` on, and a written file its name had stopped
    /// leading to waited for good (found by the replication fuzzer: a truncate through a
    /// symlink whose file was renamed, the workload's last operations; the file kept the
    /// replica's apply time, the job in sync).
    pub fn stream_passed(&mut self, ns: u64) {
        self.stream_at = self.stream_at.max(ns);
    }

    /// Whether a written file's times wait on a name that did not lead to it at the last
    /// checkpoint: the next checkpoint after the stream has passed that one looks for it.
    pub fn times_astray(&self) -> bool {
        self.written.astray()
    }

    /// A `Utimes` operation with the source's current times for every file written since
    /// the last call (writes moved the replica's times), relative paths.
    pub fn times_of_written(&mut self) -> Vec<Event> {
        if !self.options.attributes {
            self.written.clear();
            return Vec::new();
        }
        self.written
            .take_due(&self.source, self.stream_at)
            .into_iter()
            .map(|(rel, times)| Event::new(&rel, Op::Utimes { times: Some(times) }))
            .collect()
    }
}

/// Moves the names in `map` that are `from` or beneath it to the same place under `to`
/// (replacing what was there, as the rename did). Paths order by component, so those
/// names are the ones right from `from` on.
fn move_beneath<V>(map: &mut BTreeMap<PathBuf, V>, from: &Path, to: &Path) {
    for (rest, v) in take_beneath(map, from) {
        map.insert(join_rest(to, &rest), v);
    }
}

/// What is at or beneath `a` moves to `b`, and what is at or beneath `b` to `a` (an
/// exchange: neither holds the other, or the kernel refuses it).
fn swap_beneath<V>(map: &mut BTreeMap<PathBuf, V>, a: &Path, b: &Path) {
    let (at_a, at_b) = (take_beneath(map, a), take_beneath(map, b));
    for (rest, v) in at_a {
        map.insert(join_rest(b, &rest), v);
    }
    for (rest, v) in at_b {
        map.insert(join_rest(a, &rest), v);
    }
}

/// Removes what is at or beneath `from`, each with its path relative to `from`.
fn take_beneath<V>(map: &mut BTreeMap<PathBuf, V>, from: &Path) -> Vec<(PathBuf, V)> {
    let beneath: Vec<PathBuf> = map
        .range(from.to_path_buf()..)
        .take_while(|(p, _)| p.starts_with(from))
        .map(|(p, _)| p.clone())
        .collect();
    beneath
        .into_iter()
        .filter_map(|p| {
            let rest = p.strip_prefix(from).ok()?.to_path_buf();
            map.remove(&p).map(|v| (rest, v))
        })
        .collect()
}

/// `renameat2(a, b, RENAME_EXCHANGE)`, for tests.
#[cfg(test)]
pub(crate) fn exchange_names(a: &Path, b: &Path) {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    let done = renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE);
    assert_eq!(done, Ok(()), "exchange");
}

/// `to` followed by `rest` (`join` of an empty path would add a trailing slash).
pub(crate) fn join_rest(to: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() {
        to.to_path_buf()
    } else {
        to.join(rest)
    }
}

/// A file's (kernel device, inode), as the capture names it.
pub(crate) fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (user_dev_to_kernel(m.dev()), m.ino())
}

/// The file (kernel device, inode) a change by name to `path` was made to, as it names
/// one now: through a symlink, the file it leads to (`chmod`, `truncate` and user
/// extended attributes reach only that).
fn named_file(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if m.file_type().is_symlink() {
        return std::fs::metadata(path).ok().map(|m| identity(&m));
    }
    Some(identity(&m))
}

/// The file (kernel device, inode) that `path` names now (without following a final
/// symlink), if that is its only name.
fn lone_file_at(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.nlink() == 1)
        .map(|m| identity(&m))
}

/// Every name beneath `roots` of each of `files` (kernel device, inode), by one walk that
/// does not follow symlinks; files not found have none.
pub fn find_files<'a>(
    roots: impl Iterator<Item = &'a Path>,
    files: &[(u64, u64)],
) -> Vec<((u64, u64), PathBuf)> {
    // Looked up per entry of the walk, so by hash: the inode number first, which the
    // directory listing gives without a `stat`.
    let wanted: std::collections::HashSet<(u64, u64)> = files.iter().copied().collect();
    let inodes: std::collections::HashSet<u64> = files.iter().map(|f| f.1).collect();
    let mut found = Vec::new();
    let mut dirs: Vec<PathBuf> = roots.map(Path::to_path_buf).collect();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if inodes.contains(&e.ino()) {
                if let Some(file) = e.metadata().ok().map(|m| identity(&m)) {
                    if wanted.contains(&file) {
                        found.push((file, e.path()));
                    }
                }
            }
            if kind.is_dir() {
                dirs.push(e.path());
            }
        }
    }
    found
}

/// The file is gone (or a directory on its way was replaced): a later operation says so.
fn gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

/// Up to `len` bytes at `offset`; fewer when the file has shrunk since.
pub fn read_range(path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    read_file_range(&mut open_data(path)?, offset, len)
}

/// Opens the regular file `path` names, to read its data.
///
/// The name was a regular file when its operation was captured or its directory walked,
/// but it may hold anything by now. A FIFO must not stop the reader: a plain open for
/// reading waits for a writer, forever, and with it the drain, the transmit loop or the
/// mirror (found by the replication fuzzer: a file renamed away, a FIFO made under its
/// name). So the open never blocks (`O_NONBLOCK`, which changes nothing for a regular
/// file), and a name that holds something other than a regular file now is reported as
/// gone (`ENOENT`): the operation that replaced the file follows in the stream.
pub fn open_data(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    Ok(f)
}

/// Up to `len` bytes at `offset` of an open file; fewer when it ends before.
pub fn read_file_range(file: &mut File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    // read_to_end fills the spare capacity directly: no zeroing of up to 4 MiB per write.
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A file's access and modification times, not following a final symlink.
pub fn file_times(path: &Path) -> io::Result<FileTimes> {
    std::fs::symlink_metadata(path).map(|m| times_of(&m))
}

fn times_of(m: &std::fs::Metadata) -> FileTimes {
    FileTimes {
        atime: (m.atime(), m.atime_nsec() as u32),
        mtime: (m.mtime(), m.mtime_nsec() as u32),
    }
}

/// An extended attribute's value, following a final symlink as setxattr(2) does (user
/// attributes cannot be set on a symlink itself), and as the replica applies it.
pub fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let (p, n) = (
        sys::cstring(path.as_os_str().as_bytes())?,
        sys::cstring(name)?,
    );
    sys::xattr::get(&p, &n, XATTR_SIZE_MAX)
}

/// The names of a file's extended attributes, not following a final symlink.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let p = sys::cstring(path.as_os_str().as_bytes())?;
    let list = sys::xattr::list_nofollow(&p, XATTR_SIZE_MAX)?;
    Ok(sys::xattr::names(&list).map(<[u8]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_abi::maps::user_dev_to_kernel;

    /// A range-only write whose name holds a FIFO by the time it is read: the file went
    /// away from that name (nothing is sent; a later operation in the stream says where),
    /// and the read does not wait for a writer on the FIFO (found by the replication
    /// fuzzer: the transmit loop hung there, for good).
    #[test]
    fn a_name_that_now_holds_a_fifo_is_read_as_gone_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().to_path_buf();
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
        nix::unistd::mkfifo(&src.join("f"), mode).unwrap();
        let out = crate::replica::apply::tests::within_10s(move || {
            let mut r = Resolver::new(&src, ResolveOptions::default());
            let write = Op::Write {
                offset: 0,
                len: 10,
                data: None,
            };
            resolved(&mut r, Event::new(src.join("f"), write))
        });
        assert!(out.is_empty(), "{out:?}");
        let err = read_range(&d.path().join("f"), 0, 10).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    /// Writes the file `name` beneath `src` and resolves the write, as captured (with
    /// the file's identity).
    fn write_file(r: &mut Resolver, src: &Path, name: &str) {
        std::fs::write(src.join(name), name).unwrap();
        let m = std::fs::metadata(src.join(name)).unwrap();
        let write = Op::Write {
            offset: 0,
            len: 1,
            data: Some(name.as_bytes().to_vec().into()),
        };
        let ev = Event {
            object: Some((user_dev_to_kernel(m.dev()), m.ino())),
            ..Event::new(src.join(name), write)
        };
        resolved(r, ev);
    }

    fn resolved(r: &mut Resolver, ev: Event) -> Vec<Event> {
        let mut out = Vec::new();
        r.resolve(ev, &mut out).unwrap();
        out
    }

    /// A file written, then renamed (its own name and a directory above it) before the
    /// renames are sent: its times are due under the name the renames lead to, not lost
    /// with the old name.
    #[test]
    fn times_of_a_written_file_follow_renames_not_sent_yet() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::create_dir(src.join("dir")).unwrap();
        std::fs::write(src.join("dir/a"), b"data").unwrap();
        let write = Op::Write {
            offset: 0,
            len: 4,
            data: Some(b"data".to_vec().into()),
        };
        let mut r = Resolver::new(src, ResolveOptions::default());
        resolved(&mut r, Event::new(src.join("dir/a"), write));
        std::fs::rename(src.join("dir/a"), src.join("dir/b")).unwrap();
        std::fs::rename(src.join("dir"), src.join("moved")).unwrap();
        assert!(
            r.times_of_written().is_empty(),
            "dir/a is gone on the source"
        );
        for (from, to) in [("dir/a", "dir/b"), ("dir", "moved")] {
            let rename = Op::Rename {
                new_path: src.join(to),
                flags: 0,
            };
            resolved(&mut r, Event::new(src.join(from), rename));
        }
        let due: Vec<PathBuf> = r.times_of_written().into_iter().map(|e| e.path).collect();
        assert_eq!(due, [PathBuf::from("moved/b")]);
        assert_eq!(due[0].as_os_str(), "moved/b", "no trailing slash");
        assert!(r.times_of_written().is_empty(), "sent once");
    }

    /// A file renamed over another written one, before the rename is sent: the name's
    /// times now are the other file's, not the ones due for what was written there.
    #[test]
    fn times_are_not_read_from_a_file_renamed_over_the_one_written() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        let mut r = Resolver::new(src, ResolveOptions::default());
        for name in ["x", "y"] {
            write_file(&mut r, src, name);
        }
        std::fs::rename(src.join("y"), src.join("x")).unwrap();
        assert!(
            r.times_of_written().is_empty(),
            "x is y's file now, y is gone"
        );
        let rename = Op::Rename {
            new_path: src.join("x"),
            flags: 0,
        };
        resolved(&mut r, Event::new(src.join("y"), rename));
        let due: Vec<PathBuf> = r.times_of_written().into_iter().map(|e| e.path).collect();
        assert_eq!(due, [PathBuf::from("x")]);
    }

    /// Two written files exchanged (`RENAME_EXCHANGE`, in different directories) before
    /// the exchange is sent: each file's times are due under the name it has after it.
    /// The exchange was taken for a rename over the second name, whose file then lost the
    /// times due for its writes.
    #[test]
    fn times_of_exchanged_files_follow_both_ways() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::create_dir(src.join("d1")).unwrap();
        std::fs::create_dir(src.join("d2")).unwrap();
        let mut r = Resolver::new(src, ResolveOptions::default());
        for name in ["d1/a", "d2/b"] {
            write_file(&mut r, src, name);
        }
        exchange_names(&src.join("d1/a"), &src.join("d2/b"));
        let exchange = Op::Rename {
            new_path: src.join("d2/b"),
            flags: libc::RENAME_EXCHANGE,
        };
        resolved(&mut r, Event::new(src.join("d1/a"), exchange));
        let mut due: Vec<PathBuf> = r.times_of_written().into_iter().map(|e| e.path).collect();
        due.sort();
        assert_eq!(due, [PathBuf::from("d1/a"), PathBuf::from("d2/b")]);
    }

    /// A write the drain could not read (a dirty mark in the stream): the file is
    /// remirrored under its name and under every name the moves after it take it to, a
    /// directory's rename and an exchange here.
    #[test]
    fn a_dirty_mark_in_the_stream_follows_the_file_through_later_moves() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        let mut r = Resolver::new(src, ResolveOptions::default());
        let mark = Op::Dirty {
            reason: rill_ops::DirtyReason::Modified,
        };
        assert!(resolved(&mut r, Event::new(src.join("d/f"), mark)).is_empty());
        for (from, to, flags) in [("d", "e", 0), ("e/f", "g", libc::RENAME_EXCHANGE)] {
            let rename = Op::Rename {
                new_path: src.join(to),
                flags,
            };
            resolved(&mut r, Event::new(src.join(from), rename));
        }
        let remirrored = r.take_stale();
        assert!(remirrored.contains(&src.join("d/f")), "{remirrored:?}");
        assert!(remirrored.contains(&src.join("g")), "{remirrored:?}");
    }

    /// A truncate by name through the symlink `l`, the file it reached renamed (by nothing
    /// the stream shows, as with a rename the capture could not name), then the stream
    /// idle: once told the stream has passed, the file is looked for and remirrored, not
    /// kept waiting for an operation that never comes (found by the replication fuzzer).
    #[test]
    fn an_idle_stream_lets_a_file_its_name_left_be_looked_for() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::write(src.join("f"), b"the file").unwrap();
        std::os::unix::fs::symlink("f", src.join("l")).unwrap();
        let file = identity(&std::fs::metadata(src.join("f")).unwrap());
        let mut r = Resolver::new(src, ResolveOptions::default());
        std::fs::rename(src.join("f"), src.join("g")).unwrap();
        let reached = rill_ops::Reached {
            file,
            at_ns: 1,
            through_link: true,
        };
        let truncate = Event {
            reached: Some(Box::new(reached)),
            ..Event::new(src.join("l"), Op::Truncate { size: 3 })
        };
        assert_eq!(resolved(&mut r, truncate).len(), 1);
        assert!(r.times_of_written().is_empty(), "`l` leads nowhere now");
        assert!(r.times_astray());
        assert!(r.times_of_written().is_empty());
        assert!(r.take_stale().is_empty(), "the stream may still tell");
        r.stream_passed(crate::clock::monotonic_ns());
        assert!(r.times_of_written().is_empty());
        assert!(!r.times_astray());
        assert_eq!(r.take_stale(), [src.join("g")]);
    }

    /// A write the drain could not read, made through one name of a file with two, that
    /// name moved and then removed: the file is remirrored under the name it lives on
    /// under, which no move in the stream led to (found by the replication fuzzer).
    #[test]
    fn an_unread_write_reaches_the_names_its_file_lives_on_under() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::write(src.join("a"), b"the file").unwrap();
        std::fs::hard_link(src.join("a"), src.join("b")).unwrap();
        let object = Some(identity(&std::fs::metadata(src.join("a")).unwrap()));
        let mut r = Resolver::new(src, ResolveOptions::default());
        let mark = Op::Dirty {
            reason: rill_ops::DirtyReason::Modified,
        };
        let unread = Event {
            object,
            ..Event::new(src.join("b"), mark)
        };
        assert!(resolved(&mut r, unread).is_empty());
        std::fs::rename(src.join("b"), src.join("c")).unwrap();
        let rename = Op::Rename {
            new_path: src.join("c"),
            flags: 0,
        };
        resolved(&mut r, Event::new(src.join("b"), rename));
        std::fs::remove_file(src.join("c")).unwrap();
        resolved(&mut r, Event::new(src.join("c"), Op::Unlink));
        let remirrored = r.take_stale();
        assert!(remirrored.contains(&src.join("a")), "{remirrored:?}");
        // A file the names followed still hold as their only name needs no walk.
        let unread = Event {
            object,
            ..Event::new(
                src.join("a"),
                Op::Dirty {
                    reason: rill_ops::DirtyReason::Modified,
                },
            )
        };
        resolved(&mut r, unread);
        assert_eq!(r.take_stale(), [src.join("a")]);
    }

    /// A name suspected stale on the replica (refused, or overtaken) is followed through
    /// the renames resolved after it: the names its object reaches are handed back to be
    /// remirrored; a name made again is no longer followed.
    #[test]
    fn suspect_names_are_followed_through_later_renames() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::write(src.join("d/f"), b"x").unwrap();
        let mut r = Resolver::new(src, ResolveOptions::default());
        r.suspect(&src.join("d/f"));
        std::fs::rename(src.join("d"), src.join("e")).unwrap();
        let rename = Op::Rename {
            new_path: src.join("e"),
            flags: 0,
        };
        resolved(&mut r, Event::new(src.join("d"), rename));
        assert_eq!(r.take_stale(), [src.join("e/f")]);
        resolved(&mut r, Event::new(src.join("e/f"), Op::Unlink));
        std::fs::remove_file(src.join("e/f")).unwrap();
        let again = Op::Rename {
            new_path: src.join("g"),
            flags: 0,
        };
        std::fs::rename(src.join("e"), src.join("g")).unwrap();
        resolved(&mut r, Event::new(src.join("e"), again));
        assert!(r.take_stale().is_empty(), "removed, no longer followed");
    }

    /// A suspect directory made alone (as a remirror makes the directories above its
    /// roots) keeps what the replica held in it: it is still followed, and a rename
    /// carries it on; once a remirror judges its names (its prune), it is rebuilt.
    #[test]
    fn a_suspect_directory_is_followed_until_its_names_are_judged() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::create_dir(src.join("d")).unwrap();
        let mut r = Resolver::new(src, ResolveOptions::default());
        r.suspect(&src.join("d"));
        resolved(&mut r, Event::new(src.join("d"), Op::Mkdir { mode: 0o755 }));
        let rename = |to: &str| Op::Rename {
            new_path: src.join(to),
            flags: 0,
        };
        std::fs::rename(src.join("d"), src.join("e")).unwrap();
        resolved(&mut r, Event::new(src.join("d"), rename("e")));
        assert_eq!(r.take_stale(), [src.join("e")], "made, not rebuilt");
        let prune = Op::Prune(rill_ops::KeepRange::default());
        resolved(&mut r, Event::new(src.join("e"), prune));
        std::fs::rename(src.join("e"), src.join("f")).unwrap();
        resolved(&mut r, Event::new(src.join("e"), rename("f")));
        assert!(r.take_stale().is_empty(), "rebuilt, no longer followed");
    }
}
