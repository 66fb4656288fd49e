//! What a mirror has yet to do, and which names it has yet to read.
//!
//! The mirror walks depth first with a stack of steps. A directory's step, until it is
//! taken, stands for everything beneath it: the mirror lists the directory when it gets
//! there, judges the replica's names in it against that listing (its prune) and rebuilds
//! every name it finds, each read when it is handed out. A replication operation that
//! changes only names beneath such a directory therefore changes nothing the mirror would
//! not read later anyway, and the transmit loop leaves it to the mirror instead of
//! sending it to a replica that has not got the directory yet (where it was refused, and
//! the refusal remirrored, racing the workload again: most of the refusals the
//! replication fuzzer saw came from there). See [`Pending::leaves`] for which operations
//! qualify: an object's names are not all beneath the directory when it has hard links,
//! and a file the mirror already sent under another name is not sent again, only linked.
//!
//! Whether a directory's step is taken yet is decided when the operation is sent, in the
//! thread that also hands out the mirror's groups: a step not taken then is read after
//! the operation was sent, so after it was captured, and its listing shows what it did.
//!
//! A step names a path, and the source moves on while the step waits: an operation that
//! renames a name with steps at or beneath it moves the steps too ([`Pending::follow`]),
//! so the mirror reads the directory where it is now; an exchange swaps the steps beneath
//! its two names and leaves each name a step of its own, both holding another object
//! than before. And an
//! operation that is sent but carries an object from beneath such a directory to a name
//! outside (a rename, an exchange, a link) carries what the replica holds there, which
//! may lack what the mirror was left to read: its names outside are remirrored.
//!
//! # State
//! `steps` is the stack; `unread` counts, per path, the `Visit` and `Root` steps waiting
//! in it (a path may wait twice: a hard link's other names are visited where they are).
//! Every push and pop goes through this type, so the two agree.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rill_ops::{Event, Op};

use super::Step;
use crate::source::resolve::join_rest;

#[derive(Default)]
pub(super) struct Pending {
    steps: Vec<Step>,
    unread: BTreeMap<PathBuf, u32>,
}

impl Pending {
    pub(super) fn push(&mut self, step: Step) {
        if let Step::Visit(p) | Step::Root(p) = &step {
            *self.unread.entry(p.clone()).or_default() += 1;
        }
        self.steps.push(step);
    }

    pub(super) fn extend(&mut self, steps: impl IntoIterator<Item = Step>) {
        for s in steps {
            self.push(s);
        }
    }

    pub(super) fn pop(&mut self) -> Option<Step> {
        let step = self.steps.pop()?;
        if let Step::Visit(p) | Step::Root(p) = &step {
            if let Some(n) = self.unread.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    self.unread.remove(p);
                }
            }
        }
        Some(step)
    }

    /// Whether `p` lies beneath a directory whose step is not taken yet.
    fn beneath_unread(&self, p: &Path) -> bool {
        p.ancestors().skip(1).any(|a| self.unread.contains_key(a))
    }

    /// Whether the mirror reads what `ev` did later, so it need not be sent: every name
    /// it touches lies beneath a directory whose step is not taken yet, and it either
    /// changes names only (made or removed there, or moved within), or changes a file or
    /// directory that has no name elsewhere (the capture said which, and it is the one
    /// the name holds now, with one link). A hard link is always sent: its file may have
    /// been sent already under a name outside, which the mirror links to rather than
    /// sending the file again.
    pub(super) fn leaves(&self, ev: &Event) -> bool {
        if !ev.paths().all(|p| self.beneath_unread(p)) {
            return false;
        }
        match &ev.op {
            Op::Mkdir { .. }
            | Op::Symlink { .. }
            | Op::Mknod { .. }
            | Op::Unlink
            | Op::Rmdir
            | Op::Rename { .. }
            | Op::Prune(_)
            | Op::Create {
                truncate: false, ..
            } => true,
            Op::Link { .. } | Op::Overflow { .. } => false,
            _ => no_other_name(&ev.path, ev.object),
        }
    }

    /// The names outside the directories not read yet that `ev`, sent, gives an object
    /// from beneath one of them: the replica's copy there may lack what was left to the
    /// mirror, so they are remirrored.
    pub(super) fn carried_out(&self, ev: &Event) -> Vec<PathBuf> {
        let (a, b) = match &ev.op {
            Op::Rename { new_path, flags } if flags & libc::RENAME_EXCHANGE != 0 => {
                (&ev.path, new_path)
            }
            Op::Rename { new_path, .. } => {
                let out = self.beneath_unread(&ev.path) && !self.beneath_unread(new_path);
                return if out {
                    vec![new_path.clone()]
                } else {
                    Vec::new()
                };
            }
            // `[new, existing]`: the new name shares what the existing one holds.
            Op::Link { target } => {
                let out = self.beneath_unread(target) && !self.beneath_unread(&ev.path);
                return if out {
                    vec![ev.path.clone()]
                } else {
                    Vec::new()
                };
            }
            _ => return Vec::new(),
        };
        match (self.beneath_unread(a), self.beneath_unread(b)) {
            (true, false) => vec![b.clone()],
            (false, true) => vec![a.clone()],
            _ => Vec::new(),
        }
    }

    /// A replication operation sent while the mirror runs: the steps at or beneath a name
    /// it renames move with it (both ways for an exchange).
    pub(super) fn follow(&mut self, ev: &Event) {
        let Op::Rename { new_path, flags } = &ev.op else {
            return;
        };
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let (from, to) = (ev.path.as_path(), new_path.as_path());
        let waits = |p: &Path| {
            self.unread
                .range(p.to_path_buf()..)
                .take_while(|(q, _)| q.starts_with(p))
                .next()
                .is_some()
        };
        if !(waits(from) || exchange && waits(to)) {
            return;
        }
        // A rename takes the object, and the steps at and beneath its name, to the new
        // name. An exchange swaps what is beneath the two names, but each name keeps a
        // step of its own: it holds the other object now, which the walk has to read
        // wherever that object was (found by the replication fuzzer: the step of a name
        // exchanged went with its object, and the name, listed already, was never read
        // again, with the object the exchange brought there).
        let moved = |p: &Path| -> Option<PathBuf> {
            if exchange && (p == from || p == to) {
                return None;
            }
            if let Ok(rest) = p.strip_prefix(from) {
                return Some(join_rest(to, rest));
            }
            match p.strip_prefix(to) {
                Ok(rest) if exchange => Some(join_rest(from, rest)),
                _ => None,
            }
        };
        for step in &mut self.steps {
            let (Step::Visit(p) | Step::Root(p) | Step::Attributes(p) | Step::DirDone(p)) = step;
            if let Some(n) = moved(p) {
                *p = n;
            }
        }
        let unread = std::mem::take(&mut self.unread);
        for (p, n) in unread {
            *self.unread.entry(moved(&p).unwrap_or(p)).or_default() += n;
        }
        if exchange {
            for name in [from, to] {
                if !self.unread.contains_key(name) {
                    self.push(Step::Visit(name.to_path_buf()));
                }
            }
        }
    }
}

/// Whether the object `path` names now is `object` (as the capture identified it) and has
/// no other name: a directory, or a file with one link.
fn no_other_name(path: &Path, object: Option<(u64, u64)>) -> bool {
    let Some(object) = object else {
        return false;
    };
    std::fs::symlink_metadata(path).is_ok_and(|m| {
        crate::source::resolve::identity(&m) == object && (m.is_dir() || m.nlink() == 1)
    })
}
