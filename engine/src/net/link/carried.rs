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

use std::path::PathBuf;

use rill_ops::Op;

use crate::followed::Followed;

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

/// `names` (a refused operation's paths) and every name the operations `later` (in stream
/// order, with their paths) carried them to.
pub(super) fn follow<'a>(
    names: Vec<PathBuf>,
    later: impl Iterator<Item = (Carry, &'a [PathBuf])>,
) -> Vec<PathBuf> {
    let mut followed = Followed::default();
    for n in &names {
        followed.insert(n.clone());
    }
    let mut all = names;
    for (carry, paths) in later {
        let [a, b] = paths else { continue };
        let op = match carry {
            Carry::Rename => Op::Rename {
                new_path: b.clone(),
                flags: 0,
            },
            Carry::Exchange => Op::Rename {
                new_path: b.clone(),
                flags: libc::RENAME_EXCHANGE,
            },
            Carry::Link => Op::Link { target: b.clone() },
        };
        for reached in followed.apply(a, &op) {
            if !all.contains(&reached) {
                all.push(reached);
            }
        }
    }
    all
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
