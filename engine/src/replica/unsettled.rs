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
//!   the next one starts past the operation (the welcome tells the source what the target
//!   applied, and nothing up to there is sent again). Refusals are therefore remembered by
//!   sequence number and repeated when a connection begins, those after the last
//!   acknowledgement the source holds (its hello says which): until then it may not have
//!   had them (found by the replication fuzzer: a silent cut, then the target killed,
//!   and a rename the replica refused was never remirrored). A resent operation's refusal
//!   is repeated too.
//!
//! # State
//! One record per job, kept across its connections and, in the job's session directory
//! ([`Unsettled::open`]), across a restart of `rilld`: a target killed right after a
//! refusal loses the connection that carried it, and must repeat it when the operation
//! comes again. The file is rewritten (whole, by rename) whenever the record changes,
//! which only refusals and the operations that touch a recorded name do, and before the
//! applied position moves past the operation that changed it.
//! `names` holds relative paths ([`Followed`]); a name leaves it when the replica removes
//! it (a remirror begins each file with its removal) or makes a directory under it.
//! Refusals are bounded by [`MAX_NAMES`], names by [`crate::followed::MAX_FOLLOWED`]:
//! past them new ones are not remembered (the refusals themselves still reach the
//! source).

use std::collections::BTreeMap;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use rill_ops::{Event, Op};

use crate::followed::Followed;

/// The most refusals remembered per job: far beyond what a healthy replica ever holds,
/// and small enough (about 100 bytes each) to bound the memory a bad one uses.
pub const MAX_NAMES: usize = 1 << 18;

#[derive(Debug, Default)]
pub struct Unsettled {
    names: Followed,
    refusals: BTreeMap<u64, String>,
    /// Where the record is kept (none in unit tests).
    file: Option<PathBuf>,
}

impl Unsettled {
    /// The record kept in `file`, or an empty one if there is none (or it cannot be read:
    /// then it is logged, and the refusals it held are lost as they would be without it).
    pub fn open(file: PathBuf) -> Unsettled {
        let mut u = Unsettled {
            file: Some(file.clone()),
            ..Unsettled::default()
        };
        match std::fs::read_to_string(&file) {
            Ok(text) => u.parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("{}: {e}; starting without it", file.display()),
        }
        u
    }

    /// Operation `seq` could not be applied: its names are not up to date (a hard link's
    /// new name only: the file it names is as it was).
    pub fn refused(&mut self, seq: u64, ev: &Event, why: &str) {
        let names: Vec<&PathBuf> = match ev.op {
            Op::Link { .. } => vec![&ev.path],
            _ => ev.paths().collect(),
        };
        for p in names {
            self.names.insert(p.clone());
        }
        self.remember(seq, why);
        self.save();
    }

    /// Why operation `ev`, which would change in place what the replica holds under its
    /// name, must be refused instead: the name (or a directory above it) is not up to
    /// date, so the object there is stale, and may be a file the replica also holds under
    /// other names, which are up to date. Applied, a write or truncate meant for the file
    /// the source has under the name changed that other file (the likely cause of a
    /// replication fuzzer run with hard-linked files of other bytes on the replica: a
    /// refused rename left a hard-linked file under its old name, the source made a new
    /// file there, its bytes would reach the other names). The remirror that
    /// every such name has coming rebuilds it from the source, after which the name
    /// leaves the record (see [`Unsettled::applied`]).
    pub fn stale(&self, ev: &Event) -> Option<String> {
        (ev.op.changes_in_place() && self.names.holds(&ev.path)).then(|| {
            "not applied: the replica's object under this name is stale until it is \
             remirrored"
                .to_string()
        })
    }

    /// Operation `seq` was applied: names follow it. Returns why it must be refused all
    /// the same when it carried a name that is not up to date to another name.
    pub fn applied(&mut self, seq: u64, ev: &Event) -> Option<String> {
        if self.names.is_empty() {
            return None;
        }
        let before = self.names.len();
        // A directory made again counts as rebuilt here, though a remirror also makes the
        // directories above its roots that way, keeping what they hold: the source follows
        // such a directory itself until its names are judged, and sends no change in place
        // beneath it meanwhile (`Outbox::left_to_remirror`). Refused here instead, the
        // attributes sent with every such head came back refused, a remirror round each
        // (found by the replication fuzzer: a run that took minutes to converge).
        let rebuilt =
            matches!(ev.op, Op::Mkdir { .. } | Op::Prune(_)) && self.names.remove(&ev.path);
        let carried = !self.names.apply(&ev.path, &ev.op).is_empty();
        if !carried {
            if rebuilt || self.names.len() != before {
                self.save();
            }
            return None;
        }
        let why = "applied, but it carried names the replica could not bring up to date; \
                   they are remirrored"
            .to_string();
        self.remember(seq, &why);
        self.save();
        Some(why)
    }

    /// A resent operation the target had applied (or refused) before: the refusal to
    /// repeat, if it was refused.
    pub fn resent(&self, seq: u64) -> Option<&str> {
        self.refusals.get(&seq).map(String::as_str)
    }

    /// A connection begins: the source holds the acknowledgement of everything up to
    /// `acked`, so it had the refusals among them, which are forgotten; the refusals after
    /// it, up to `last_applied` (which the source will not send again), are returned to be
    /// repeated. They are kept until a later connection's source acknowledges past them.
    pub fn connected(&mut self, acked: u64, last_applied: u64) -> Vec<(u64, String)> {
        let before = self.refusals.len();
        self.refusals = self.refusals.split_off(&acked.saturating_add(1));
        if self.refusals.len() != before {
            self.save();
        }
        self.refusals
            .range(..=last_applied)
            .map(|(&seq, why)| (seq, why.clone()))
            .collect()
    }

    /// Writes the record to its file (a new file renamed over the old one, so a crash
    /// leaves one or the other whole). A failure is logged: the record in memory still
    /// serves this process.
    fn save(&self) {
        let Some(file) = &self.file else { return };
        let tmp = file.with_extension("new");
        let written =
            std::fs::write(&tmp, self.to_text()).and_then(|()| std::fs::rename(&tmp, file));
        if let Err(e) = written {
            log::warn!("{}: {e}", file.display());
        }
    }

    /// One line per name (`n` and its bytes in hex: a name may hold any byte but NUL and
    /// `/` within a component) and per refusal (`r`, its sequence, its text in hex).
    fn to_text(&self) -> String {
        let mut out = String::new();
        for n in self.names.iter() {
            out.push_str(&format!("n {}\n", hex(n.as_os_str().as_bytes())));
        }
        for (seq, why) in &self.refusals {
            out.push_str(&format!("r {seq} {}\n", hex(why.as_bytes())));
        }
        out
    }

    /// The record from [`Unsettled::to_text`]'s form; a line it cannot read is skipped
    /// (and logged), never trusted.
    fn parse(&mut self, text: &str) {
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            let ok = match words.as_slice() {
                ["n", name] => unhex(name).map(|b| {
                    self.names
                        .insert(PathBuf::from(std::ffi::OsString::from_vec(b)));
                }),
                ["r", seq, why] => seq.parse().ok().zip(unhex(why)).map(|(seq, b)| {
                    self.refusals
                        .insert(seq, String::from_utf8_lossy(&b).into_owned());
                }),
                _ => None,
            };
            if ok.is_none() {
                log::warn!("unsettled names: skipping the line {line:?}");
            }
        }
    }

    fn remember(&mut self, seq: u64, why: &str) {
        if self.refusals.len() < MAX_NAMES {
            self.refusals.insert(seq, why.to_string());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
        let repeated = |u: &mut Unsettled, acked, applied| -> Vec<u64> {
            u.connected(acked, applied)
                .into_iter()
                .map(|(s, _)| s)
                .collect()
        };
        assert_eq!(repeated(&mut u, 0, 3), [1, 2, 3], "up to what was applied");
        assert_eq!(repeated(&mut u, 0, 7), [1, 2, 3, 4]);
        assert_eq!(repeated(&mut u, 3, 7), [4], "the source had those up to 3");
        assert!(u.resent(1).is_none() && u.resent(4).is_some());
    }

    #[test]
    fn a_rebuilt_name_is_up_to_date() {
        let mut u = Unsettled::default();
        u.refused(1, &ev("d/f", Op::Unlink), "ENOTEMPTY");
        u.refused(2, &ev("e", Op::Rmdir), "ENOTEMPTY");
        // A remirror rebuilds a file starting with its removal, a directory by making it
        // (the source follows one only made until its names are judged) or judging its
        // names (its prune).
        u.refused(3, &ev("g", Op::Rmdir), "ENOTEMPTY");
        assert!(u.applied(4, &ev("d/f", Op::Unlink)).is_none());
        assert!(u.applied(5, &ev("e", Op::Mkdir { mode: 0o755 })).is_none());
        assert!(u.stale(&ev("e", Op::Chmod { mode: 0o700 })).is_none());
        let prune = Op::Prune(rill_ops::KeepRange::default());
        assert!(u.stale(&ev("g", Op::Chmod { mode: 0o700 })).is_some());
        assert!(u.applied(6, &ev("g", prune)).is_none());
        assert!(u.applied(7, &rename("d", "x", 0)).is_none());
        assert!(u.applied(8, &rename("e", "y", 0)).is_none());
        assert!(u.applied(9, &rename("g", "z", 0)).is_none());
    }

    /// A refused rename leaves the replica's object under the old name, a file with
    /// another name there. What the source then makes under the old name must not be
    /// written into it: the replica's other name would take the new file's bytes.
    /// Refused instead, until the name's remirror removes it.
    #[test]
    fn an_in_place_change_of_a_stale_name_is_refused_until_it_is_rebuilt() {
        let d = tempfile::tempdir().unwrap();
        let mut a = crate::replica::apply::Applier::new(d.path(), Default::default()).unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/f"), b"shared").unwrap();
        std::fs::hard_link(d.path().join("a/f"), d.path().join("other")).unwrap();
        let mut u = Unsettled::default();
        let moved = rename("a", "gone/b", 0);
        assert!(
            a.apply(&moved).is_err(),
            "no directory gone/ on the replica"
        );
        u.refused(1, &moved, "ENOENT");
        let made = [
            ev(
                "a/f",
                Op::Create {
                    mode: 0o644,
                    truncate: true,
                },
            ),
            ev(
                "a/f",
                Op::Write {
                    offset: 0,
                    len: 3,
                    data: Some(b"new"[..].into()),
                },
            ),
            ev("a/f", Op::Chmod { mode: 0o600 }),
        ];
        for op in &made {
            assert!(u.stale(op).is_some(), "{op:?}");
        }
        assert_eq!(std::fs::read(d.path().join("other")).unwrap(), b"shared");
        // Other names, and what makes or removes names, go on.
        assert!(u.stale(&ev("other", Op::Chmod { mode: 0o600 })).is_none());
        assert!(u.stale(&ev("a/g", Op::Mkdir { mode: 0o755 })).is_none());
        // The remirror begins with the removal of the stale name: then it is rebuilt.
        assert!(u.applied(2, &ev("a", Op::Unlink)).is_none());
        for op in &made {
            assert!(u.stale(op).is_none(), "{op:?}");
        }
    }

    /// The record survives a restart: a refusal whose connection was lost is repeated by
    /// the next process, and the names it holds are still followed.
    #[test]
    fn the_record_is_kept_in_its_file() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("unsettled");
        let mut u = Unsettled::open(file.clone());
        let odd = std::ffi::OsStr::from_bytes(b"odd \xff name");
        u.refused(7, &ev("x", Op::Unlink), "EBUSY: busy");
        u.refused(8, &rename("d", "e", 0), "ENOENT");
        u.names.insert(PathBuf::from(odd));
        u.save();
        let again = Unsettled::open(file.clone());
        assert_eq!(again.names, u.names);
        assert_eq!(again.resent(7), Some("EBUSY: busy"));
        std::fs::write(&file, "n zz\nr x y\nn 61\n").unwrap();
        let damaged = Unsettled::open(file);
        assert_eq!(damaged.names.iter().collect::<Vec<_>>(), [Path::new("a")]);
        assert!(damaged.refusals.is_empty());
    }
}
