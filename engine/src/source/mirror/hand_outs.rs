//! When the mirror's groups were handed out, to find the operations they overtook.
//!
//! A group's values are read when it is handed out, and an operation captured before that
//! read may still wait in the source queue: it is sent after the group, and applied to the
//! group's newer state of the name. For most operations that converges, because whatever
//! happened after the operation follows it in the stream and sets its values again. Two
//! kinds of operations break that:
//!
//! - one that moves or shares a file by name (`rename`, `link`), after any group: it
//!   moves a later file, or replaces what the mirror just rebuilt;
//! - any operation on a name a *remirror* rebuilt. A remirror rebuilds the names the
//!   change journal holds, and the journal's entries are changes that are not in the
//!   stream (a write through a descriptor other threads share, a store into a mapping, an
//!   operation the driver had no room for): the remirror's read is their only way to the
//!   replica, and its entries are gone once it is done. An older operation applied after
//!   it undoes them for good (found by the replication security tests: a file created and
//!   then written from a thread, its write a mark; a remirror rebuilt it while its
//!   `O_TRUNC` create still waited in the queue, and the create applied after emptied it
//!   on the replica, the job in sync). A full mirror consumes no entries: what it raced
//!   stays in the journal for the remirror after it.
//!
//! Such an operation's names are remirrored again ([`HandOuts::overtook`]).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use rill_ops::{Event, Op};

/// When (CLOCK_MONOTONIC ns) each name's latest mirror group was handed out, for as long
/// as an operation captured before then may still be on its way (see the module's doc).
/// This holds after the mirror is done too, until every operation captured before its last
/// group has been sent, so the record belongs to the transmit loop, not to one mirror.
///
/// A rename of a directory moves every name beneath it, so the names looked at are the
/// operation's own and those beneath them: a group read beneath a directory after its
/// rename was captured holds what the rename brought there, and the rename applied after
/// it on the replica moves that away (found by the replication fuzzer: an exchange of two
/// directories, captured while the mirror walked one of them, left the replica with the
/// other's files).
///
/// A directory's orphan removal (`Prune`) judges the names in it, so a name is also
/// overtaken by a prune of its directory read after the operation was captured: the
/// listing no longer had a name the operation renames away, the prune removed the
/// replica's file under it, and the rename applied after it moved whatever operations in
/// between made there (found by the replication fuzzer: a file short of all but its last
/// write, under the name it was renamed to).
#[derive(Default)]
pub struct HandOuts {
    /// Ordered, to find the names beneath a directory.
    at: BTreeMap<PathBuf, u64>,
    /// Directories whose names a prune judged, and when it was read.
    pruned: BTreeMap<PathBuf, u64>,
    /// Names a remirror rebuilt, and when it read them.
    rebuilt: BTreeMap<PathBuf, u64>,
    /// The same hand-outs in the order they happened (so in time order), for
    /// [`HandOuts::forget_before`] to drop from the front: it runs for every operation
    /// sent.
    order: VecDeque<(u64, PathBuf, Table)>,
}

/// Which of the maps a hand-out went to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    At,
    Pruned,
    Rebuilt,
}

impl HandOuts {
    /// A group's names, handed out (its values read) by now; by a remirror, which takes
    /// its names' changes out of the change journal, when `remirror`.
    pub fn record(&mut self, group: &[Event], remirror: bool) {
        let now = crate::clock::monotonic_ns();
        for ev in group {
            if matches!(ev.op, Op::Prune(_)) {
                self.hand_out(Table::Pruned, &ev.path, now);
                continue;
            }
            self.hand_out(Table::At, &ev.path, now);
            if remirror {
                self.hand_out(Table::Rebuilt, &ev.path, now);
            }
        }
    }

    fn hand_out(&mut self, table: Table, path: &std::path::Path, now: u64) {
        if self.map(table).insert(path.to_path_buf(), now) != Some(now) {
            self.order.push_back((now, path.to_path_buf(), table));
        }
    }

    fn map(&mut self, table: Table) -> &mut BTreeMap<PathBuf, u64> {
        match table {
            Table::At => &mut self.at,
            Table::Pruned => &mut self.pruned,
            Table::Rebuilt => &mut self.rebuilt,
        }
    }

    /// Whether `ev`, a replication operation about to be sent after the groups handed
    /// out, was captured before one of them was read and does not converge (see the
    /// module's doc): a `rename` or `link` captured before a group naming one of its paths
    /// (or one beneath them, or a prune of the directory holding them), or any operation
    /// captured before a remirror's group naming one of its paths. Its names are to be
    /// remirrored.
    pub fn overtook(&self, ev: &Event) -> bool {
        let after = |at: Option<&u64>| at.is_some_and(|&at| at > ev.ktime_ns);
        let moved = matches!(ev.op, Op::Rename { .. } | Op::Link { .. })
            && ev.paths().any(|p| {
                self.at
                    .range(p.clone()..)
                    .take_while(|(q, _)| q.starts_with(p))
                    .any(|(_, at)| after(Some(at)))
                    || p.parent().is_some_and(|d| after(self.pruned.get(d)))
            });
        moved || ev.paths().any(|p| after(self.rebuilt.get(p)))
    }

    /// Forgets hand-out times before `ns`: every operation captured before then has been
    /// sent (the caller knows when that is).
    pub fn forget_before(&mut self, ns: u64) {
        while let Some(&(at, _, _)) = self.order.front() {
            if at >= ns {
                break;
            }
            if let Some((at, path, table)) = self.order.pop_front() {
                let map = self.map(table);
                // Unless the name was handed out again since.
                if map.get(&path) == Some(&at) {
                    map.remove(&path);
                }
            }
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{options, set};
    use super::super::Mirror;
    use super::*;

    /// Hands out every group of a mirror of `roots` (a remirror when `remirror`).
    fn handed_out(roots: Vec<PathBuf>, scope: &std::path::Path, remirror: bool) -> HandOuts {
        let mut hand_outs = HandOuts::default();
        let mut m = if remirror {
            Mirror::remirror(roots, scope.to_path_buf(), set(scope), options())
        } else {
            Mirror::new(roots, set(scope), options())
        };
        while let Some(group) = m.next_group() {
            hand_outs.record(&group, remirror);
        }
        hand_outs
    }

    /// A directory's rename (an exchange here) captured before the mirror read a name
    /// beneath it is overtaken too: the group holds what the rename brought there.
    #[test]
    fn a_directory_rename_captured_before_a_name_beneath_it_was_mirrored_is_overtaken() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("d0")).unwrap();
        std::fs::write(r.join("d0/f"), b"x").unwrap();
        let before = crate::clock::monotonic_ns();
        let hand_outs = handed_out(vec![r.join("d0/f")], r, false);
        let exchange = |from: &str, to: &str| Event {
            ktime_ns: before,
            ..Event::new(
                r.join(from),
                Op::Rename {
                    new_path: r.join(to),
                    flags: libc::RENAME_EXCHANGE,
                },
            )
        };
        assert!(hand_outs.overtook(&exchange("d0", "d5/d4")));
        assert!(hand_outs.overtook(&exchange("d5/d4", "d0")));
        assert!(
            !hand_outs.overtook(&exchange("d5/d4", "d0x")),
            "whole components"
        );
    }

    /// A rename captured before the mirror read the directory it renames a file out of:
    /// the directory's prune (read after the file left) removed the replica's file, so
    /// the rename applied after it moves whatever operations in between made there. It is
    /// overtaken, though the mirror handed out neither of its names.
    #[test]
    fn a_rename_out_of_a_directory_pruned_after_its_capture_is_overtaken() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("d")).unwrap();
        std::fs::create_dir_all(r.join("elsewhere")).unwrap();
        let before = crate::clock::monotonic_ns();
        let mut hand_outs = handed_out(vec![r.join("d")], r, false);
        let rename = |from: &str, to: &str| Event {
            ktime_ns: before,
            ..Event::new(
                r.join(from),
                Op::Rename {
                    new_path: r.join(to),
                    flags: 0,
                },
            )
        };
        assert!(hand_outs.overtook(&rename("d/f", "elsewhere/g")));
        assert!(
            !hand_outs.overtook(&rename("d/sub/f", "elsewhere/g")),
            "only the names the prune judged"
        );
        hand_outs.forget_before(u64::MAX);
        assert!(hand_outs.is_empty());
        assert!(!hand_outs.overtook(&rename("d/f", "elsewhere/g")));
    }

    #[test]
    fn a_rename_captured_before_its_names_were_mirrored_is_overtaken() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::write(r.join("a"), b"x").unwrap();
        let captured = |ktime_ns, op| Event {
            ktime_ns,
            ..Event::new(r.join("elsewhere"), op)
        };
        let rename = |ktime_ns| {
            let to = r.join("a");
            captured(
                ktime_ns,
                Op::Rename {
                    new_path: to,
                    flags: 0,
                },
            )
        };
        let before = crate::clock::monotonic_ns();
        let mut m = handed_out(vec![r.to_path_buf()], r, false);
        assert!(
            m.overtook(&rename(before)),
            "made before the mirror read `a`"
        );
        assert!(!m.overtook(&rename(u64::MAX)), "made after it");
        let write = Op::Write {
            offset: 0,
            len: 1,
            data: None,
        };
        assert!(!m.overtook(&captured(before, write)), "values converge");
        m.forget_before(before);
        assert!(
            m.overtook(&rename(before)),
            "kept while all before may be queued"
        );
        m.forget_before(u64::MAX);
        assert!(
            !m.overtook(&rename(before)) && m.is_empty(),
            "forgotten once all before was sent"
        );
    }

    /// Any operation captured before a remirror read its name is overtaken: the change
    /// the remirror carried (a mark, not in the stream) is undone by the older operation
    /// applied after it. Not so after a full mirror, which leaves the journal's entries
    /// for a remirror after it, nor for an operation on another name or captured after.
    #[test]
    fn any_operation_captured_before_a_remirror_read_its_name_is_overtaken() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::write(r.join("f"), b"written by a thread, a mark").unwrap();
        std::fs::write(r.join("g"), b"not remirrored").unwrap();
        let before = crate::clock::monotonic_ns();
        let captured = |name: &str, ktime_ns, op| Event {
            ktime_ns,
            ..Event::new(r.join(name), op)
        };
        let create = || Op::Create {
            mode: 0o644,
            truncate: true,
        };
        let remirror = handed_out(vec![r.join("f")], r, true);
        for op in [create(), Op::Truncate { size: 0 }, Op::Unlink] {
            assert!(
                remirror.overtook(&captured("f", before, op.clone())),
                "{op:?} captured before"
            );
        }
        assert!(
            !remirror.overtook(&captured("f", u64::MAX, create())),
            "after"
        );
        assert!(
            !remirror.overtook(&captured("g", before, create())),
            "another"
        );
        let full = handed_out(vec![r.to_path_buf()], r, false);
        assert!(
            !full.overtook(&captured("f", before, create())),
            "full mirror"
        );
        let mut remirror = remirror;
        remirror.forget_before(u64::MAX);
        assert!(remirror.is_empty());
        assert!(!remirror.overtook(&captured("f", before, create())));
    }
}
