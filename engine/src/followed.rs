//! Names whose object on the replica is suspect, followed through the moves after them.
//!
//! When an operation cannot be applied, or a mirror group may have been overtaken by an
//! older rename, the replica holds a stale object under some names until a remirror
//! rebuilds them. Operations after that point in the stream (renames, exchanges, hard
//! links, moves of a directory holding them) carry the stale object to other names, which
//! a remirror of the first names never reaches: the replica kept it there for good (found
//! by the replication fuzzer, from several directions). The source's resolver, the link
//! (for a refusal's own window) and the target's applier each follow such names with this
//! one set, in the order they send or apply operations.
//!
//! # Invariants
//! Paths are relative to the replication root, as on the wire. A name leaves the set when
//! it is removed, or when something rebuilds it; the set is bounded by [`MAX_FOLLOWED`],
//! past which new names are not followed (the caller's remirror of the names it knows
//! still happens).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rill_ops::Op;

/// The most names followed at once: far beyond a healthy stream, and a bound on memory
/// and on the work a rename of a large tree full of them costs.
pub const MAX_FOLLOWED: usize = 1 << 18;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Followed {
    names: BTreeSet<PathBuf>,
}

impl Followed {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether `name` is followed, or lies beneath a followed name (a directory whose
    /// stale content is suspect with it).
    pub fn holds(&self, name: &Path) -> bool {
        name.ancestors().any(|a| self.names.contains(a))
    }

    pub fn iter(&self) -> impl Iterator<Item = &PathBuf> {
        self.names.iter()
    }

    /// Follows `name` from here on.
    pub fn insert(&mut self, name: PathBuf) {
        if self.names.len() < MAX_FOLLOWED {
            self.names.insert(name);
        }
    }

    /// Stops following `name` and the names beneath it (removed). Returns whether any were.
    pub fn remove_beneath(&mut self, name: &Path) -> bool {
        !take_beneath(&mut self.names, name).is_empty()
    }

    /// Stops following `name` alone (rebuilt: a directory's names stay suspect).
    pub fn remove(&mut self, name: &Path) -> bool {
        self.names.remove(name)
    }

    /// Applies an operation on `path` that may move or share what a followed name holds
    /// (a rename, an exchange, a hard link), and returns the names it carried a followed
    /// object to, now followed too. A removal stops following the names it removed.
    pub fn apply(&mut self, path: &Path, op: &Op) -> Vec<PathBuf> {
        if self.names.is_empty() {
            return Vec::new();
        }
        match op {
            Op::Unlink | Op::Rmdir => {
                self.remove_beneath(path);
                Vec::new()
            }
            Op::Rename { new_path, flags } if flags & libc::RENAME_EXCHANGE != 0 => {
                let (a, b) = (self.moved_out(path), self.moved_out(new_path));
                let mut reached = self.put(new_path, a);
                reached.extend(self.put(path, b));
                reached
            }
            Op::Rename { new_path, .. } => {
                // What `new_path` named is replaced; what `path` named moves there.
                take_beneath(&mut self.names, new_path);
                let moved = self.moved_out(path);
                self.put(new_path, moved)
            }
            // The new name is another name of the file `target` names (or a file in a
            // followed directory).
            Op::Link { target } if self.holds(target) => {
                self.insert(path.to_path_buf());
                vec![path.to_path_buf()]
            }
            _ => Vec::new(),
        }
    }

    /// Stops following the names at or beneath `from`, which a move takes away, and
    /// returns them relative to it; with `from` itself (the empty path) when it lies in a
    /// followed directory: the object it holds is as stale as the rest of the directory,
    /// and the move carries it out (found by the replication fuzzer: a rename of a
    /// directory the replica held another's content under, then an exchange of a file in
    /// it with one outside; the remirror of the directory rebuilt what the exchange left
    /// there, and the stale file it carried out stayed on the replica under its new name).
    fn moved_out(&mut self, from: &Path) -> Vec<PathBuf> {
        let in_followed_directory = from.ancestors().skip(1).any(|a| self.names.contains(a));
        let mut moved = take_beneath(&mut self.names, from);
        if in_followed_directory && !moved.iter().any(|r| r.as_os_str().is_empty()) {
            moved.push(PathBuf::new());
        }
        moved
    }

    /// Puts names, relative to a moved name, under its new name; returns them.
    fn put(&mut self, to: &Path, rests: Vec<PathBuf>) -> Vec<PathBuf> {
        let reached: Vec<PathBuf> = rests
            .into_iter()
            .map(|rest| {
                if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                }
            })
            .collect();
        for r in &reached {
            self.insert(r.clone());
        }
        reached
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

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn rename(to: &str, flags: u32) -> Op {
        Op::Rename {
            new_path: to.into(),
            flags,
        }
    }

    #[test]
    fn followed_names_move_with_renames_exchanges_and_links() {
        let mut f = Followed::default();
        f.insert(p("d/f"));
        assert_eq!(f.apply(Path::new("d"), &rename("e", 0)), [p("e/f")]);
        assert!(f.apply(Path::new("x"), &rename("y", 0)).is_empty());
        assert_eq!(
            f.apply(Path::new("z"), &rename("e/f", libc::RENAME_EXCHANGE)),
            [p("z")]
        );
        let link = Op::Link { target: "z".into() };
        assert_eq!(f.apply(Path::new("hard"), &link), [p("hard")]);
        assert!(
            f.apply(Path::new("de"), &rename("q", 0)).is_empty(),
            "whole components"
        );
        assert_eq!(f.iter().cloned().collect::<Vec<_>>(), [p("hard"), p("z")]);
        // A rename over a followed name replaces it; a removal ends it.
        assert!(f.apply(Path::new("other"), &rename("z", 0)).is_empty());
        f.apply(Path::new("hard"), &Op::Unlink);
        assert!(f.is_empty());
    }

    /// A followed directory's content is stale with it: a move out of it (a rename, an
    /// exchange, a hard link) carries a stale object to the new name, which is followed
    /// too; the directory stays followed.
    #[test]
    fn what_moves_out_of_a_followed_directory_is_followed() {
        let mut f = Followed::default();
        f.insert(p("d"));
        assert_eq!(f.apply(Path::new("d/f"), &rename("g", 0)), [p("g")]);
        assert_eq!(
            f.apply(Path::new("h"), &rename("d/x", libc::RENAME_EXCHANGE)),
            [p("h")]
        );
        let link = Op::Link {
            target: "d/y".into(),
        };
        assert_eq!(f.apply(Path::new("k"), &link), [p("k")]);
        assert!(f.apply(Path::new("e/f"), &rename("l", 0)).is_empty());
        assert_eq!(
            f.iter().cloned().collect::<Vec<_>>(),
            [p("d"), p("g"), p("h"), p("k")]
        );
    }
}
