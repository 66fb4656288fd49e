//! The seeded generator: the next operation, chosen from what the tree holds now.
//!
//! Choosing from the live tree (rather than from a fixed list of names) keeps most
//! operations meaningful as the tree changes shape: a rename moves something that
//! exists, a write lands on a file that has other names, a directory moves into another
//! with everything beneath it. A small pool of new names makes creations collide with
//! what exists. The tree evolves deterministically from the seed (the workload is its
//! only writer), so a seed replays the same operations.
//!
//! # Shape
//! Names are `f0`..`f11` (files and other non-directories) and `d0`..`d5` (directories),
//! at most [`MAX_DEPTH`] directories deep. Writes land mostly within the first 300 KB,
//! some just past a file's end, and a few far past it ([`FAR_OFFSET`]), leaving holes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::ops::{WOp, FALLOCATE_MODES};
use rill_tools::rng::Rng;

/// How deep directories may nest beneath the root.
pub const MAX_DEPTH: usize = 6;
/// The furthest a "far past the end" write may land: holes of megabytes, small enough to
/// compare whole trees quickly.
pub const FAR_OFFSET: u64 = 8 << 20;
/// Most writes land within this many bytes of a file's start.
const NEAR_OFFSET: u64 = 300_000;

/// The operation kinds and their weights (out of their sum).
const KINDS: [(Kind, u64); 22] = [
    (Kind::Write, 16),
    (Kind::Append, 4),
    (Kind::Writev, 3),
    (Kind::CreateTrunc, 2),
    (Kind::Truncate, 5),
    (Kind::Ftruncate, 2),
    (Kind::Fallocate, 4),
    (Kind::Copy, 4),
    (Kind::Rename, 8),
    (Kind::MoveDir, 4),
    (Kind::Exchange, 6),
    (Kind::Link, 5),
    (Kind::Symlink, 3),
    (Kind::Unlink, 6),
    (Kind::Mkdir, 6),
    (Kind::Rmdir, 2),
    (Kind::Mkfifo, 1),
    (Kind::Chmod, 3),
    (Kind::Chown, 2),
    (Kind::Utimes, 3),
    (Kind::SetXattr, 3),
    (Kind::RemoveXattr, 1),
];

#[derive(Clone, Copy, Debug)]
enum Kind {
    Write,
    Append,
    Writev,
    CreateTrunc,
    Truncate,
    Ftruncate,
    Fallocate,
    Copy,
    Rename,
    MoveDir,
    Exchange,
    Link,
    Symlink,
    Unlink,
    Mkdir,
    Rmdir,
    Mkfifo,
    Chmod,
    Chown,
    Utimes,
    SetXattr,
    RemoveXattr,
}

/// What the tree holds now: directories (the root as the empty path) and other names,
/// in a stable order, with regular files' sizes.
struct Tree {
    dirs: Vec<PathBuf>,
    others: Vec<(PathBuf, Option<u64>)>,
}

impl Tree {
    fn read(root: &Path) -> Tree {
        let mut t = Tree {
            dirs: vec![PathBuf::new()],
            others: Vec::new(),
        };
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(root.join(&rel)) else {
                continue;
            };
            let mut names: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
            names.sort();
            for n in names {
                let p = rel.join(n);
                let Ok(m) = std::fs::symlink_metadata(root.join(&p)) else {
                    continue;
                };
                if m.is_dir() {
                    t.dirs.push(p.clone());
                    stack.push(p);
                } else {
                    t.others.push((p, m.is_file().then_some(m.size())));
                }
            }
        }
        t
    }
}

/// The seeded stream of operations.
pub struct Generator {
    rng: Rng,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: Rng::new(seed),
        }
    }

    /// The next operation for the tree under `root` as it is now.
    pub fn next(&mut self, root: &Path) -> WOp {
        let tree = Tree::read(root);
        let total: u64 = KINDS.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.below(total);
        let kind = KINDS
            .iter()
            .find(|(_, w)| {
                let hit = roll < *w;
                roll = roll.saturating_sub(*w);
                hit
            })
            .map_or(Kind::Write, |(k, _)| *k);
        self.op(kind, &tree)
    }

    fn op(&mut self, kind: Kind, t: &Tree) -> WOp {
        let r = &mut self.rng;
        match kind {
            Kind::Write
            | Kind::Writev
            | Kind::Append
            | Kind::CreateTrunc
            | Kind::Truncate
            | Kind::Ftruncate
            | Kind::Fallocate
            | Kind::Copy => data_op(r, kind, t),
            Kind::Rename
            | Kind::MoveDir
            | Kind::Exchange
            | Kind::Link
            | Kind::Symlink
            | Kind::Unlink
            | Kind::Mkdir
            | Kind::Rmdir
            | Kind::Mkfifo => name_op(r, kind, t),
            Kind::Chmod | Kind::Chown | Kind::Utimes | Kind::SetXattr | Kind::RemoveXattr => {
                attribute_op(r, kind, t)
            }
        }
    }
}

/// An operation on a file's data.
fn data_op(r: &mut Rng, kind: Kind, t: &Tree) -> WOp {
    match kind {
        Kind::Write | Kind::Writev => {
            let (path, size) = file_or_new(r, t);
            let off = offset(r, size);
            let len = if r.chance(10) {
                1 + r.below(300_000)
            } else {
                1 + r.below(65_536)
            };
            let (len, fill) = (len as u32, r.below(250) as u8);
            match kind {
                Kind::Write => WOp::Write {
                    path,
                    off,
                    len,
                    fill,
                },
                _ => WOp::Writev {
                    path,
                    off,
                    len,
                    fill,
                },
            }
        }
        Kind::Append => WOp::Append {
            path: file_or_new(r, t).0,
            len: 1 + r.below(20_000) as u32,
            fill: r.below(250) as u8,
        },
        Kind::CreateTrunc => WOp::CreateTrunc {
            path: file_or_new(r, t).0,
        },
        Kind::Truncate | Kind::Ftruncate => {
            let (path, size) = file_or_new(r, t);
            let size = match size {
                Some(s) if r.chance(60) => r.below(s + 1),
                _ => r.below(NEAR_OFFSET),
            };
            match kind {
                Kind::Truncate => WOp::Truncate { path, size },
                _ => WOp::Ftruncate { path, size },
            }
        }
        Kind::Fallocate => WOp::Fallocate {
            path: file_or_new(r, t).0,
            mode: *r.pick(&FALLOCATE_MODES),
            off: r.below(NEAR_OFFSET),
            len: 1 + r.below(65_536),
        },
        _ => WOp::Copy {
            from: file_or_new(r, t).0,
            to: file_or_new(r, t).0,
            off: offset(r, None),
            len: 1 + r.below(100_000) as u32,
        },
    }
}

/// An operation that makes, moves or removes a name.
fn name_op(r: &mut Rng, kind: Kind, t: &Tree) -> WOp {
    match kind {
        Kind::Rename => WOp::Rename {
            from: any(r, t),
            to: if r.chance(50) {
                any(r, t)
            } else {
                new_name(r, t, 'f')
            },
            flags: if r.chance(10) {
                libc::RENAME_NOREPLACE
            } else {
                0
            },
        },
        Kind::MoveDir => WOp::Rename {
            from: dir(r, t),
            to: if r.chance(30) {
                dir(r, t)
            } else {
                new_name(r, t, 'd')
            },
            flags: 0,
        },
        Kind::Exchange => {
            let (from, to) = if r.chance(25) {
                (dir(r, t), dir(r, t))
            } else {
                (any(r, t), any(r, t))
            };
            WOp::Rename {
                from,
                to,
                flags: libc::RENAME_EXCHANGE,
            }
        }
        Kind::Link => WOp::Link {
            from: any(r, t),
            to: new_name(r, t, 'f'),
        },
        Kind::Symlink => WOp::Symlink {
            text: PathBuf::from(format!("f{}", r.below(12))),
            path: new_name(r, t, 'f'),
        },
        Kind::Unlink => WOp::Unlink { path: any(r, t) },
        Kind::Mkdir => WOp::Mkdir {
            path: new_name(r, t, 'd'),
            mode: 0o700 | (r.below(0o100) as u32),
        },
        Kind::Rmdir => WOp::Rmdir { path: dir(r, t) },
        _ => WOp::Mkfifo {
            path: new_name(r, t, 'f'),
        },
    }
}

/// An operation on a name's attributes.
fn attribute_op(r: &mut Rng, kind: Kind, t: &Tree) -> WOp {
    match kind {
        Kind::Chmod => WOp::Chmod {
            path: any_or_dir(r, t),
            mode: 0o700 | (r.below(0o100) as u32),
        },
        Kind::Chown => WOp::Chown {
            path: any_or_dir(r, t),
            uid: 1000 + r.below(5) as u32,
            gid: 2000 + r.below(5) as u32,
        },
        Kind::Utimes => WOp::Utimes {
            path: any(r, t),
            sec: 1_600_000_000 + r.below(10_000_000) as i64,
            nsec: r.below(1_000_000_000) as u32,
        },
        Kind::SetXattr => WOp::SetXattr {
            path: any_or_dir(r, t),
            name: format!("user.k{}", r.below(3)),
            value: r.below(1 << 20) as u32,
        },
        _ => WOp::RemoveXattr {
            path: any_or_dir(r, t),
            name: format!("user.k{}", r.below(3)),
        },
    }
}

/// Where a write lands: mostly near the start, some just past the end, a few far past it.
fn offset(r: &mut Rng, size: Option<u64>) -> u64 {
    match r.below(100) {
        0..=4 => r.below(FAR_OFFSET),
        5..=29 => size.unwrap_or(0) + r.below(4096),
        _ => r.below(NEAR_OFFSET),
    }
}

/// An existing non-directory (and its size, if a regular file), or now and then a new name.
fn file_or_new(r: &mut Rng, t: &Tree) -> (PathBuf, Option<u64>) {
    if t.others.is_empty() || r.chance(15) {
        return (new_name(r, t, 'f'), None);
    }
    r.pick(&t.others).clone()
}

/// An existing non-directory, or a new name when there is none.
fn any(r: &mut Rng, t: &Tree) -> PathBuf {
    if t.others.is_empty() {
        return new_name(r, t, 'f');
    }
    r.pick(&t.others).0.clone()
}

/// An existing directory other than the root, or a new name when there is none.
fn dir(r: &mut Rng, t: &Tree) -> PathBuf {
    match &t.dirs[1..] {
        [] => new_name(r, t, 'd'),
        dirs => r.pick(dirs).clone(),
    }
}

fn any_or_dir(r: &mut Rng, t: &Tree) -> PathBuf {
    if r.chance(20) {
        dir(r, t)
    } else {
        any(r, t)
    }
}

/// A name in an existing directory (not too deep): `f0`..`f11` or `d0`..`d5`, which may
/// exist already.
fn new_name(r: &mut Rng, t: &Tree, prefix: char) -> PathBuf {
    let shallow: Vec<&PathBuf> = t
        .dirs
        .iter()
        .filter(|d| d.components().count() < MAX_DEPTH)
        .collect();
    let parent = shallow
        .get(r.below(shallow.len() as u64) as usize)
        .map_or(PathBuf::new(), |d| (*d).clone());
    let n = if prefix == 'd' {
        r.below(6)
    } else {
        r.below(12)
    };
    parent.join(format!("{prefix}{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first operations of `seed`, each performed in a fresh tree as it is drawn.
    fn drawn(seed: u64, n: usize) -> Vec<String> {
        let root = tempfile::tempdir().expect("a temporary directory");
        let mut g = Generator::new(seed);
        (0..n)
            .map(|_| {
                let op = g.next(root.path());
                // Refusals are part of the workload (see `ops`): the tree is what they leave.
                let _ = op.apply(root.path());
                op.to_string()
            })
            .collect()
    }

    #[test]
    fn a_seed_draws_the_same_operations_again() {
        let ops = drawn(7, 1500);
        assert_eq!(ops, drawn(7, 1500));
        assert_ne!(ops, drawn(8, 1500));
    }

    /// The plans recorded with failures (the README's open findings, regression tests'
    /// notes) replay only while a seed draws what it drew when they were found: a change
    /// to what the generator draws must be deliberate, and then updates this value.
    #[test]
    fn the_generator_draws_what_recorded_plans_drew() {
        let text = drawn(7, 1500).join("\n");
        assert_eq!(
            crc32c::crc32c(text.as_bytes()),
            729_395_934,
            "the operations seed 7 draws changed"
        );
    }
}
