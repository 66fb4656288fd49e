//! Names the replica could not bring up to date, until the source has rebuilt them.
//!
//! An operation the applier cannot apply is refused (`Nak`), and the source remirrors the
//! names it named. Two things could still leave the replica wrong for good, and this
//! record is the target's answer to both (found by the replication fuzzer):
//!
//! - **What a refused name holds moves on.** Operations after the refusal are applied in
//!   order, and a rename, exchange or link among them carries the stale object of a
//!   refused name (or of a directory that holds one) to another name. The remirror of the
//!   refused name rebuilds that name only; the other keeps the stale object. So names
//!   follow the operations applied after them, and an operation that carried one is
//!   refused too, its names remirrored in turn.
//! - **A refusal lost with its connection.** A refusal travels before the acknowledgement
//!   that covers it, on the same connection; when the connection drops between the two,
//!   the source sends the operation again, and the target, which has applied past it,
//!   skips it. Refusals are therefore remembered by sequence number and repeated for a
//!   resent operation, until a connection starts past them (the source had the
//!   acknowledgement, so it had the refusal).
//!
//! # State
//! One record per job, kept across its connections (not across a restart of `rilld`).
//! `names` holds relative paths; a name leaves it when the replica removes it (a remirror
//! begins each file with its removal) or makes a directory under it. Both maps are
//! bounded by [`MAX_NAMES`]: past it new names are not followed (the refusals that named
//! them still reach the source).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rill_driver_linux::{Event, Op};

/// The most names and refusals remembered per job: far beyond what a healthy replica
/// ever holds, and small enough (about 100 bytes each) to bound the memory a bad one uses.
pub const MAX_NAMES: usize = 1 << 18;

#[derive(Debug, Default)]
pub struct Unsettled {
    names: BTreeSet<PathBuf>,
    refusals: BTreeMap<u64, String>,
}

impl Unsettled {
    /// Operation `seq` could not be applied: its names are not up to date.
    pub fn refused(&mut self, seq: u64, ev: &Event, why: &str) {
        for p in ev.paths() {
            if self.names.len() < MAX_NAMES {
                self.names.insert(p.clone());
            }
        }
        self.remember(seq, why);
    }

    /// Operation `seq` was applied: names follow it. Returns why it must be refused all
    /// the same when it carried a name that is not up to date to another name.
    pub fn applied(&mut self, seq: u64, ev: &Event) -> Option<String> {
        if self.names.is_empty() {
            return None;
        }
        let carried = match &ev.op {
            Op::Unlink | Op::Rmdir => {
                take_beneath(&mut self.names, &ev.path);
                return None;
            }
            Op::Mkdir { .. } | Op::Prune(_) => {
                self.names.remove(&ev.path);
                return None;
            }
            Op::Rename { new_path, flags } if *flags & libc::RENAME_EXCHANGE != 0 => {
                let (a, b) = (
                    take_beneath(&mut self.names, &ev.path),
                    take_beneath(&mut self.names, new_path),
                );
                let carried = !a.is_empty() || !b.is_empty();
                self.put(new_path, a);
                self.put(&ev.path, b);
                carried
            }
            Op::Rename { new_path, .. } => {
                take_beneath(&mut self.names, new_path);
                let moved = take_beneath(&mut self.names, &ev.path);
                let carried = !moved.is_empty();
                self.put(new_path, moved);
                carried
            }
            // The new name shares the existing file's object.
            Op::Link { target } if self.names.contains(target) => {
                if self.names.len() < MAX_NAMES {
                    self.names.insert(ev.path.clone());
                }
                true
            }
            _ => false,
        };
        if !carried {
            return None;
        }
        let why = "applied, but it carried names the replica could not bring up to date; \
                   they are remirrored"
            .to_string();
        self.remember(seq, &why);
        Some(why)
    }

    /// A resent operation the target had applied (or refused) before: the refusal to
    /// repeat, if it was refused.
    pub fn resent(&self, seq: u64) -> Option<&str> {
        self.refusals.get(&seq).map(String::as_str)
    }

    /// A connection starts with operation `seq`: the source had the acknowledgement of
    /// everything before it, so it had the refusals among them too.
    pub fn starts_at(&mut self, seq: u64) {
        self.refusals = self.refusals.split_off(&seq);
    }

    fn remember(&mut self, seq: u64, why: &str) {
        if self.refusals.len() < MAX_NAMES {
            self.refusals.insert(seq, why.to_string());
        }
    }

    /// Puts names, relative to a moved name, back under its new name.
    fn put(&mut self, to: &Path, rests: Vec<PathBuf>) {
        for rest in rests {
            if self.names.len() < MAX_NAMES {
                let name = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
                self.names.insert(name);
            }
        }
    }
}

/// Removes the names at or beneath `from`, returning them relative to it.
fn take_beneath(names: &mut BTreeSet<PathBuf>, from: &Path) -> Vec<PathBuf> {
    let beneath: Vec<PathBuf> = names
        .range(from.to_path_buf()..)
        .take_while(|p| p.starts_with(from))
        .cloned()
        .collect();
    beneath
        .into_iter()
        .filter_map(|p| {
            names.remove(&p);
            p.strip_prefix(from).ok().map(Path::to_path_buf)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(path: &str, op: Op) -> Event {
        Event::new(path, op)
    }

    fn rename(from: &str, to: &str, flags: u32) -> Event {
        ev(
            from,
            Op::Rename {
                new_path: to.into(),
                flags,
            },
        )
    }

    #[test]
    fn a_refused_name_carried_elsewhere_refuses_what_carried_it() {
        let mut u = Unsettled::default();
        u.refused(1, &rename("a/f", "b/f", 0), "ENOENT");
        // Carried by a directory's rename, then an exchange, then a link.
        assert!(u.applied(2, &rename("a", "c", 0)).is_some());
        assert!(u
            .applied(3, &rename("c/f", "d/g", libc::RENAME_EXCHANGE))
            .is_some());
        assert!(u
            .applied(
                4,
                &ev(
                    "e",
                    Op::Link {
                        target: "d/g".into()
                    }
                )
            )
            .is_some());
        // Unrelated names, and a removal, carry nothing.
        assert!(u.applied(5, &rename("x", "y", 0)).is_none());
        assert!(u.applied(6, &ev("d/g", Op::Unlink)).is_none());
        assert!(u.applied(7, &rename("d", "z", 0)).is_none(), "d/g is gone");
        assert_eq!(u.resent(3), u.resent(4));
        assert!(u.resent(1).is_some() && u.resent(5).is_none());
        u.starts_at(4);
        assert!(u.resent(1).is_none() && u.resent(4).is_some());
    }

    #[test]
    fn a_rebuilt_name_is_up_to_date() {
        let mut u = Unsettled::default();
        u.refused(1, &ev("d/f", Op::Unlink), "ENOTEMPTY");
        u.refused(2, &ev("e", Op::Rmdir), "ENOTEMPTY");
        // A remirror rebuilds a file starting with its removal, a directory with mkdir.
        assert!(u.applied(3, &ev("d/f", Op::Unlink)).is_none());
        assert!(u.applied(4, &ev("e", Op::Mkdir { mode: 0o755 })).is_none());
        assert!(u.applied(5, &rename("d", "x", 0)).is_none());
        assert!(u.applied(6, &rename("e", "y", 0)).is_none());
    }
}
