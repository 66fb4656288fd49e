//! Where the object of a refused operation went next, in the stream the target applies.
//!
//! A `Nak` names the paths of the operation the target could not apply, and those are
//! remirrored. But the target goes on applying the operations sent after it, and a rename,
//! an exchange or a hard link among them carries what the refused name held on the
//! replica (stale now) to another name, which the remirror of the refused name does not
//! rebuild: the replica kept the stale object there for good (found by the replication
//! fuzzer). Those operations are all still in the window when the refusal arrives (the
//! target refuses an operation before it applies, let alone acknowledges, the ones after
//! it), so the names are followed through them, in order, and remirrored too.

use std::path::{Path, PathBuf};

use rill_driver_linux::Op;

/// How an operation moves or shares what its first path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Carry {
    /// `[from, to]`: what is at or beneath `from` is at `to` afterwards.
    Rename,
    /// `[a, b]`: each moves to the other's name.
    Exchange,
    /// `[new, existing]`: `new` is another name of the file `existing` names.
    Link,
}

impl Carry {
    pub(super) fn of(op: &Op) -> Option<Carry> {
        match op {
            Op::Rename { flags, .. } if flags & libc::RENAME_EXCHANGE != 0 => Some(Carry::Exchange),
            Op::Rename { .. } => Some(Carry::Rename),
            Op::Link { .. } => Some(Carry::Link),
            _ => None,
        }
    }
}

/// The most names one refusal is followed to: a bound on the work a stream of renames of
/// a large tree could otherwise cost (the names beyond it are left to the change
/// journal's next remirror of the refused names).
const MAX_FOLLOWED: usize = 4096;

/// `names` (a refused operation's paths) and every name the operations `later` (in stream
/// order, with their paths) carried them to.
pub(super) fn follow<'a>(
    mut names: Vec<PathBuf>,
    later: impl Iterator<Item = (Carry, &'a [PathBuf])>,
) -> Vec<PathBuf> {
    for (carry, paths) in later {
        let [a, b] = paths else { continue };
        let mut reached = Vec::new();
        for n in &names {
            match carry {
                Carry::Rename => reached.extend(moved(n, a, b)),
                Carry::Exchange => reached.extend(moved(n, a, b).or_else(|| moved(n, b, a))),
                Carry::Link if n == b => reached.push(a.clone()),
                Carry::Link => {}
            }
        }
        for r in reached {
            if names.len() >= MAX_FOLLOWED {
                return names;
            }
            if !names.contains(&r) {
                names.push(r);
            }
        }
    }
    names
}

/// Where `n` is after what is at `from` moved to `to`, if it was at or beneath `from`.
fn moved(n: &Path, from: &Path, to: &Path) -> Option<PathBuf> {
    let rest = n.strip_prefix(from).ok()?;
    Some(if rest.as_os_str().is_empty() {
        to.to_path_buf()
    } else {
        to.join(rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn a_refused_name_is_followed_through_later_moves() {
        let later: Vec<(Carry, Vec<PathBuf>)> = vec![
            (Carry::Rename, vec![p("d"), p("e")]),
            (Carry::Rename, vec![p("unrelated"), p("x")]),
            (Carry::Exchange, vec![p("z"), p("e/f")]),
            (Carry::Link, vec![p("hard"), p("z")]),
            (Carry::Rename, vec![p("de"), p("y")]),
        ];
        let got = follow(
            vec![p("d/f")],
            later.iter().map(|(c, v)| (*c, v.as_slice())),
        );
        assert_eq!(got, [p("d/f"), p("e/f"), p("z"), p("hard")]);
    }
}
