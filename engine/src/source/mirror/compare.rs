//! Files a mirror compares with the replica before sending them: the difference mirror
//! (`AutoRemirror`, `ChecksumAll`) and the mirror that does not overwrite
//! (`MirrorOverwrite` 0 and 2).
//!
//! # Why
//!
//! A remirror after an unclean stop resends every file it is handed, and most of a large
//! file is usually on the replica already. For a file worth comparing the mirror hands the
//! transmit loop a [`Compare`] instead of the file's groups; the loop asks the target what
//! it holds under the name (a `Verify` request, answered by the target's applier in the
//! stream's order, `crate::verify`), and [`judge`] says what to send: nothing, the
//! attributes, the blocks whose checksums differ (then the size and the attributes), or the
//! whole file as the mirror always did ([`Mirror::rebuild_whole`]).
//!
//! # State
//!
//! [`Mirror`] keeps at most one [`Compare`] handed out and not yet judged (`compare`), and
//! the one name the transmit loop asked to have rebuilt whole (`whole`) while it is
//! visited again.
//!
//! # Invariants
//!
//! - Only a regular file with one link on the source is compared; a file with several
//!   names is rebuilt under all of them, as before.
//! - Data is written in place only into a regular file that has one link on the replica,
//!   holds no extended attribute the mirror would not set, and only with attributes
//!   replicated and (with `EnableSparseFileMirroring`) a source file without holes: then
//!   the file the difference leaves is the one a rebuild would make. Anything else, and
//!   any doubt (no answer, an answer for another kind of object), is rebuilt whole.

use std::path::{Path, PathBuf};

use rill_ops::Event;

use super::{Mirror, Step};
use crate::net::proto::verify::{Inspected, ObjKind};

/// `MirrorOverwrite`: what a mirror does with a file the replica already holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// 0: a name the replica holds anything under is left as it is.
    Never,
    /// 1: every file is sent.
    Always,
    /// 2: sent only over a replica file modified before the source's.
    IfOlder,
}

impl Overwrite {
    /// The setting's value (the settings table allows 0 to 2).
    pub fn from_setting(v: u64) -> Overwrite {
        match v {
            0 => Overwrite::Never,
            2 => Overwrite::IfOlder,
            _ => Overwrite::Always,
        }
    }
}

/// How a remirror sends a file (`AutoRemirror`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// 0 (for the names the change journal holds, which are remirrored whatever the value)
    /// and 2: every file whole.
    Whole,
    /// 3: whole when the replica's size or mtime differ, else only the attributes.
    Dates,
    /// 1 and 4: the blocks whose checksums differ, then the size and the attributes. With
    /// `all` false (1 with `ChecksumAll` = 0) a file whose size and mtime match the
    /// replica's has only its attributes sent.
    Blocks { all: bool },
}

impl Method {
    /// `AutoRemirror`'s value (0 to 4) with `ChecksumAll`.
    pub fn from_setting(auto_remirror: u64, checksum_all: bool) -> Method {
        match auto_remirror {
            1 => Method::Blocks { all: checksum_all },
            3 => Method::Dates,
            4 => Method::Blocks { all: true },
            _ => Method::Whole,
        }
    }
}

/// What the mirror compares, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompareOptions {
    pub overwrite: Overwrite,
    /// How a remirror sends files; a first mirror sends them whole (`Method::Whole`).
    pub method: Method,
    /// Block checksums per request (`MaxChecksumBlocks`).
    pub max_blocks: u32,
}

impl CompareOptions {
    /// Nothing compared: every file rebuilt whole, as the mirror always did.
    pub const NONE: CompareOptions = CompareOptions {
        overwrite: Overwrite::Always,
        method: Method::Whole,
        max_blocks: 1,
    };
}

/// A file handed to the transmit loop to compare with the replica before anything of it
/// is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// Absolute source path.
    pub path: PathBuf,
    pub options: CompareOptions,
    /// Whether the file's data may be compared by blocks: large enough
    /// (`SmallFileThreshold`), attributes replicated, no holes to keep.
    pub blocks: bool,
}

/// What the mirror hands out next.
#[derive(Debug)]
pub enum Handout {
    /// Operations to send whole, as they are.
    Group(Vec<Event>),
    /// A file to compare with the replica first (see the module's doc).
    Compare(Compare),
}

/// What to send of a compared file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing (`MirrorOverwrite` keeps the replica's).
    Keep,
    /// The mode, owner, extended attributes and times.
    Attributes,
    /// The blocks whose checksums differ, the size, then the attributes.
    Blocks,
    /// Everything, the name rebuilt.
    Whole,
}

/// What to send of a file whose source side is `src` (its attributes, read when the
/// answer came) given what the replica holds under its name, `rep`.
pub fn judge(c: &Compare, src: &Inspected, rep: &Inspected, xattrs: bool) -> Verdict {
    let o = c.options;
    if rep.kind() == ObjKind::Missing {
        return Verdict::Whole;
    }
    match o.overwrite {
        Overwrite::Never => return Verdict::Keep,
        Overwrite::IfOlder if rep.mtime >= src.mtime => return Verdict::Keep,
        _ => {}
    }
    // The replica's object stands for the file only if nothing but this name reaches it
    // and nothing on it would survive that a rebuild drops.
    let fits = rep.kind() == ObjKind::File
        && rep.links == 1
        && rep
            .xattrs
            .iter()
            .all(|(n, _)| xattrs && src.xattrs.iter().any(|(s, _)| s == n));
    let same_dates = rep.size == src.size && rep.mtime == src.mtime;
    match o.method {
        Method::Whole => Verdict::Whole,
        _ if !fits => Verdict::Whole,
        Method::Dates | Method::Blocks { all: false } if same_dates => Verdict::Attributes,
        Method::Dates => Verdict::Whole,
        Method::Blocks { .. } if c.blocks => Verdict::Blocks,
        Method::Blocks { .. } => Verdict::Whole,
    }
}

impl Mirror {
    /// Whether the regular file `p` (of one link) is compared with the replica before it
    /// is sent, and how (see the module's doc).
    pub(super) fn to_compare(&self, p: &Path, size: u64) -> Option<Compare> {
        let options = self.options.compare;
        let nothing_asked =
            options.overwrite == Overwrite::Always && options.method == Method::Whole;
        if nothing_asked || self.whole.as_deref() == Some(p) {
            return None;
        }
        let blocks = size >= self.options.small_file_bytes.max(1)
            && self.options.attributes
            && !(self.options.sparse && has_holes(p, size));
        Some(Compare {
            path: p.to_path_buf(),
            options,
            blocks,
        })
    }

    /// Has `p` sent whole after all, as an uncompared mirror sends it: the transmit loop's
    /// answer when the comparison cannot be made or says so.
    pub fn rebuild_whole(&mut self, p: &Path) {
        self.whole = Some(p.to_path_buf());
        self.todo.push(Step::Visit(p.to_path_buf()));
    }

    /// Has `p`'s attributes sent next (read when they are handed out), after what the
    /// transmit loop sent of it.
    pub fn attributes_next(&mut self, p: &Path) {
        self.todo.push(Step::Attributes(p.to_path_buf()));
    }
}

/// Whether `p` has a hole within its `size` bytes (its data extents do not cover it); a
/// file that cannot be read for that counts as having one.
fn has_holes(p: &Path, size: u64) -> bool {
    match super::data_extents(p, size) {
        Ok(extents) => size > 0 && extents != [(0, size)],
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_ops::Op;

    fn file(size: u64, mtime: i64) -> Inspected {
        Inspected {
            kind: Some(ObjKind::File),
            size,
            mtime: (mtime, 0),
            links: 1,
            ..Inspected::default()
        }
    }

    fn compare(overwrite: Overwrite, method: Method) -> Compare {
        Compare {
            path: PathBuf::from("/s/f"),
            options: CompareOptions {
                overwrite,
                method,
                max_blocks: 32,
            },
            blocks: true,
        }
    }

    #[test]
    fn each_mode_sends_what_the_guide_says() {
        let src = file(10, 5);
        let blocks = |all| Method::Blocks { all };
        let cases = [
            (Method::Whole, file(10, 5), Verdict::Whole),
            (Method::Dates, file(10, 5), Verdict::Attributes),
            (Method::Dates, file(11, 5), Verdict::Whole),
            (blocks(false), file(10, 5), Verdict::Attributes),
            (blocks(false), file(10, 4), Verdict::Blocks),
            (blocks(true), file(10, 5), Verdict::Blocks),
        ];
        for (method, rep, want) in cases {
            let c = compare(Overwrite::Always, method);
            assert_eq!(judge(&c, &src, &rep, false), want, "{method:?} {rep:?}");
        }
    }

    #[test]
    fn a_replica_object_that_may_not_be_the_file_is_rebuilt_whole() {
        let src = file(10, 5);
        let c = compare(Overwrite::Always, Method::Blocks { all: true });
        let linked = Inspected {
            links: 2,
            ..file(10, 5)
        };
        let dir = Inspected {
            kind: Some(ObjKind::Dir),
            ..file(10, 5)
        };
        let stray_xattr = Inspected {
            xattrs: vec![(b"user.x".to_vec(), b"1".to_vec())],
            ..file(10, 5)
        };
        for rep in [linked, dir, stray_xattr, Inspected::default()] {
            assert_eq!(judge(&c, &src, &rep, true), Verdict::Whole, "{rep:?}");
        }
        let small = Compare { blocks: false, ..c };
        assert_eq!(judge(&small, &src, &file(10, 5), true), Verdict::Whole);
    }

    #[test]
    fn only_a_large_file_of_one_link_is_handed_out_to_compare_and_comes_back_whole() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::write(r.join("big"), vec![7u8; 4096]).unwrap();
        std::fs::write(r.join("linked"), vec![7u8; 4096]).unwrap();
        std::fs::hard_link(r.join("linked"), r.join("other")).unwrap();
        let mut o = crate::source::mirror::tests::options();
        o.compare = CompareOptions {
            overwrite: Overwrite::Always,
            method: Method::Blocks { all: true },
            max_blocks: 32,
        };
        let set = crate::source::mirror::tests::set(r);
        let mut m = Mirror::remirror(vec![r.join("big"), r.join("linked")], r.into(), set, o);
        let Some(Handout::Compare(c)) = m.next() else {
            panic!("big was not handed out to compare");
        };
        assert_eq!(c.path, r.join("big"));
        assert!(
            c.blocks,
            "4096 bytes are above the options' small-file size"
        );
        // Handed back whole: the mirror's groups for it, and no second comparison.
        m.rebuild_whole(&c.path);
        let mut ops = Vec::new();
        while let Some(h) = m.next() {
            match h {
                Handout::Group(g) => ops.extend(g.into_iter().map(|e| (e.path, e.op))),
                Handout::Compare(c) => panic!("{} handed out to compare", c.path.display()),
            }
        }
        let big = r.join("big");
        assert!(ops.contains(&(big.clone(), Op::Unlink)), "{ops:?}");
        assert!(ops.contains(&(big, Op::Truncate { size: 4096 })), "{ops:?}");
        // The file of two names is rebuilt under both, uncompared.
        assert!(ops
            .iter()
            .any(|(p, op)| p == &r.join("other") && matches!(op, Op::Link { .. })));
    }

    #[test]
    fn overwrite_never_keeps_what_exists_and_if_older_keeps_what_is_newer() {
        let src = file(10, 5);
        let never = compare(Overwrite::Never, Method::Whole);
        assert_eq!(judge(&never, &src, &file(3, 1), false), Verdict::Keep);
        assert_eq!(
            judge(&never, &src, &Inspected::default(), false),
            Verdict::Whole
        );
        let older = compare(Overwrite::IfOlder, Method::Whole);
        assert_eq!(judge(&older, &src, &file(3, 9), false), Verdict::Keep);
        assert_eq!(judge(&older, &src, &file(3, 5), false), Verdict::Keep);
        assert_eq!(judge(&older, &src, &file(3, 4), false), Verdict::Whole);
    }
}
