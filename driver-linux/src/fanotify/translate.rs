//! From resolved kernel events to [`Op`]s: the mapping table of the module documentation,
//! rename pairing, merged-mask ordering, root filtering and dirty coalescing.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rill_ops::{DirtyReason, Event, Op};

const DIRTY_MASK: u64 = libc::FAN_MODIFY | libc::FAN_ATTRIB | libc::FAN_CLOSE_WRITE;
const MODIFIED: Op = Op::Dirty {
    reason: DirtyReason::Modified,
};
const PATH_UNKNOWN: Op = Op::Dirty {
    reason: DirtyReason::PathUnknown,
};

/// Where an event happened: a path, or a file system whose handle no longer resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Loc {
    Known(PathBuf),
    Unknown([u8; 8]),
}

/// One kernel event with its names resolved, before it becomes [`Event`]s.
#[derive(Clone, Debug)]
pub(super) struct Resolved {
    pub(super) mask: u64,
    pub(super) pid: u32,
    pub(super) ktime_ns: u64,
    /// The object (old name for renames); empty for an overflow.
    pub(super) path: Loc,
    /// The new name of a `FAN_RENAME`.
    pub(super) new_path: Option<Loc>,
    /// The object's own handle (`FAN_REPORT_TARGET_FID`), when reported.
    pub(super) child: Option<Vec<u8>>,
}

/// Turns resolved kernel events into [`Op`]s, in order; see the module documentation.
pub(super) fn translate(roots: &[(PathBuf, [u8; 8])], events: &[Resolved], out: &mut Vec<Event>) {
    let mut em = Emitter {
        roots,
        out,
        last: HashMap::new(),
    };
    let mut i = 0;
    while i < events.len() {
        let ev = &events[i];
        let next = events.get(i + 1).filter(|n| n.pid == ev.pid);
        i += 1;
        if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
            em.emit(ev, PathBuf::new(), Op::Overflow { count: 0 });
            em.last.clear(); // events were lost: nothing before this still stands for later ones
            for (root, _) in roots {
                em.emit(
                    ev,
                    root.clone(),
                    Op::Dirty {
                        reason: DirtyReason::RescanAll,
                    },
                );
            }
        } else if ev.mask & libc::FAN_RENAME != 0 {
            // renameat2(RENAME_EXCHANGE) is reported as two renames, a→b then b→a, of two
            // different objects; applied one after the other they would lose a file.
            let swapped = next.filter(|n| {
                n.mask & libc::FAN_RENAME != 0
                    && n.path == *ev.new_path.as_ref().unwrap_or(&ev.path)
                    && n.new_path.as_ref() == Some(&ev.path)
                    && matches!((&ev.child, &n.child), (Some(a), Some(b)) if a != b)
            });
            i += usize::from(swapped.is_some());
            let flags = if swapped.is_some() {
                libc::RENAME_EXCHANGE
            } else {
                0
            };
            let new = ev.new_path.clone().unwrap_or(ev.path.clone());
            em.rename(ev, &new, flags, ev.mask & DIRTY_MASK != 0);
        } else if ev.mask & libc::FAN_MOVED_FROM != 0 {
            // Pre-5.17 kernels: the two halves of a rename arrive consecutively.
            match next.filter(|n| {
                n.mask & libc::FAN_MOVED_TO != 0 && (n.child.is_none() || n.child == ev.child)
            }) {
                Some(to) => {
                    i += 1;
                    em.rename(ev, &to.path, 0, (ev.mask | to.mask) & DIRTY_MASK != 0);
                }
                // The other half was not seen: the old directory lost an entry.
                None => match &ev.path {
                    Loc::Known(p) => {
                        let parent = p.parent().unwrap_or(p).to_path_buf();
                        em.emit(ev, parent, MODIFIED);
                    }
                    Loc::Unknown(fsid) => em.unknown(ev, *fsid),
                },
            }
        } else {
            em.entry(ev, ev.mask & libc::FAN_MOVED_TO != 0);
        }
    }
}

/// Appends events to the output, filtering by root and coalescing repeated dirty marks.
struct Emitter<'a> {
    roots: &'a [(PathBuf, [u8; 8])],
    out: &'a mut Vec<Event>,
    /// The last operation emitted for each path in this batch.
    last: HashMap<PathBuf, Op>,
}

impl Emitter<'_> {
    fn emit(&mut self, ev: &Resolved, path: PathBuf, op: Op) {
        let under = |p: &Path| self.roots.iter().any(|(root, _)| p.starts_with(root));
        let new_path = match &op {
            Op::Rename { new_path, .. } => Some(new_path.clone()),
            _ => None,
        };
        let wanted = matches!(op, Op::Overflow { .. })
            || under(&path)
            || new_path.as_deref().is_some_and(under);
        if !wanted || (matches!(op, Op::Dirty { .. }) && self.last.get(&path) == Some(&op)) {
            return;
        }
        if let Some(p) = new_path {
            self.last.insert(p, op.clone());
        }
        self.last.insert(path.clone(), op.clone());
        self.out.push(Event {
            seq: 0,
            ktime_ns: ev.ktime_ns,
            pid: ev.pid,
            tid: ev.pid,
            path,
            object: None,
            reached: None,
            op,
        });
    }

    /// A name on the file system `fsid` whose directory could not be resolved.
    fn unknown(&mut self, ev: &Resolved, fsid: [u8; 8]) {
        for (root, _) in self.roots.iter().filter(|(_, f)| *f == fsid) {
            self.emit(ev, root.clone(), PATH_UNKNOWN);
        }
    }

    fn rename(&mut self, ev: &Resolved, new: &Loc, flags: u32, dirty: bool) {
        match (&ev.path, new) {
            (Loc::Known(old), Loc::Known(new)) => {
                self.emit(
                    ev,
                    old.clone(),
                    Op::Rename {
                        new_path: new.clone(),
                        flags,
                    },
                );
                if dirty {
                    self.emit(ev, new.clone(), MODIFIED);
                }
            }
            // Half known: resynchronise the known name and whatever the other one was under.
            (old, new) => {
                for loc in [old, new] {
                    match loc {
                        Loc::Known(p) => self.emit(ev, p.clone(), MODIFIED),
                        Loc::Unknown(fsid) => self.unknown(ev, *fsid),
                    }
                }
            }
        }
    }

    /// Create/delete/dirty bits of one (possibly merged) event on a name. A merged
    /// `CREATE|DELETE` is ordered by whether the name exists now, which yields the right
    /// final state whichever came first. `moved_in`: an unpaired `FAN_MOVED_TO`, a create
    /// whose contents were not written through this name, hence also dirty.
    fn entry(&mut self, ev: &Resolved, moved_in: bool) {
        let path = match &ev.path {
            Loc::Known(p) => p.clone(),
            Loc::Unknown(fsid) => return self.unknown(ev, *fsid),
        };
        let ondir = ev.mask & libc::FAN_ONDIR != 0;
        let create = moved_in || ev.mask & libc::FAN_CREATE != 0;
        let delete = ev.mask & libc::FAN_DELETE != 0;
        let meta = if create || delete {
            std::fs::symlink_metadata(&path).ok()
        } else {
            None
        };
        let gone = if ondir { Op::Rmdir } else { Op::Unlink };
        if delete && (!create || meta.is_none()) {
            if create {
                self.create(ev, &path, ondir, None);
            }
            // Any modification merged in is moot: the name is gone.
            return self.emit(ev, path, gone);
        }
        if delete {
            self.emit(ev, path.clone(), gone);
        }
        if create {
            self.create(ev, &path, ondir, meta.as_ref());
        }
        if moved_in || ev.mask & DIRTY_MASK != 0 {
            self.emit(ev, path, MODIFIED);
        }
    }

    /// The creation of `path`, typed by `lstat` when that still agrees with `FAN_ONDIR`.
    fn create(&mut self, ev: &Resolved, path: &Path, ondir: bool, meta: Option<&Metadata>) {
        let Some(m) = meta.filter(|m| m.is_dir() == ondir) else {
            // Gone (or replaced) before the event was read. fanotify says only whether it
            // was a directory. A regular file is the likely guess, and a name must exist for
            // a following rename to move, but it may have been a symlink or a node: the
            // name is also dirty, so its type and contents are resynchronised.
            if ondir {
                return self.emit(ev, path.to_path_buf(), Op::Mkdir { mode: 0 });
            }
            self.emit(
                ev,
                path.to_path_buf(),
                Op::Create {
                    mode: 0,
                    truncate: false,
                },
            );
            return self.emit(ev, path.to_path_buf(), MODIFIED);
        };
        let (ft, perm) = (m.file_type(), m.mode() & 0o7777);
        let op = if ondir {
            Op::Mkdir { mode: perm }
        } else if ft.is_symlink() {
            match std::fs::read_link(path) {
                Ok(target) => Op::Symlink {
                    target: target.into_os_string(),
                },
                Err(_) => MODIFIED, // replaced since lstat: resynchronise whatever is there
            }
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
            Op::Mknod {
                mode: m.mode(),
                rdev: m.rdev(),
            }
        } else {
            Op::Create {
                mode: perm,
                truncate: false,
            }
        };
        self.emit(ev, path.to_path_buf(), op);
        // link(2) is reported as FAN_CREATE too: the new name shares existing contents.
        if ft.is_file() && m.nlink() > 1 {
            self.emit(ev, path.to_path_buf(), MODIFIED);
        }
    }
}
