//! Orphans: names on a replica that its source does not have.
//!
//! The replication stream removes what the source removes, but only while it is kept
//! whole. When it was not (the source crashed with operations in memory, a job was
//! stopped and the source changed meanwhile, or the target path held files before the
//! job), the mirror that follows rebuilds every file the source has and must also remove
//! what it no longer has: for each directory it sends the names it holds, and the
//! target removes the others ([`remove_orphans`]).
//!
//! Large directories are cut into ranges of names (`MaxRemoveOrphansOpSize` each): an
//! operation lists the names kept in `(after, until]`, in byte order, and only names in
//! that range are considered, so each piece is a self-contained operation.
//!
//! Everything here works on directory file descriptors with `*at` calls and never
//! follows a symlink: a symlink is removed, not what it points to; a directory is emptied
//! depth first with an explicit stack (no recursion a deep tree could exhaust).

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rill_ops::{KeepRange, NameRule};

use crate::repset::protected_by;
use crate::sys;

/// What a pass removed (the guide's Orphan Files, Orphan Directories, Orphan Bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Removed {
    fn add_assign(&mut self, o: Removed) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.bytes += o.bytes;
    }
}

impl std::iter::Sum for Removed {
    fn sum<I: Iterator<Item = Removed>>(iter: I) -> Removed {
        iter.fold(Removed::default(), |mut all, r| {
            all += r;
            all
        })
    }
}

/// The ranges covering a directory whose names are `names` (any order), at most `per_op`
/// names each (`MaxRemoveOrphansOpSize`); one range even for an empty directory. Each
/// carries `rules`, the directory's name rules (empty: every name is protected).
pub fn keep_ranges(mut names: Vec<OsString>, per_op: usize, rules: &[NameRule]) -> Vec<KeepRange> {
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut chunks = names.chunks(per_op.max(1)).peekable();
    if chunks.peek().is_none() {
        return vec![KeepRange {
            rules: rules.to_vec(),
            ..KeepRange::default()
        }];
    }
    let mut out = Vec::new();
    let mut after = OsString::new();
    while let Some(chunk) = chunks.next() {
        let until = chunks.peek().map(|_| chunk[chunk.len() - 1].clone());
        out.push(KeepRange {
            after: std::mem::take(&mut after),
            until: until.clone(),
            keep: chunk.to_vec(),
            rules: rules.to_vec(),
        });
        after = until.unwrap_or_default();
    }
    out
}

/// Removes from the directory `dir` every entry the range covers and does not keep,
/// directories with all they hold, sparing the names its rules do not protect. Returns each name removed with what went with it (for
/// the caller's open-file cache, its counters and `LogAllOrphans`).
pub fn remove_orphans(dir: &OwnedFd, range: &KeepRange) -> io::Result<Vec<(OsString, Removed)>> {
    let keep: HashSet<&[u8]> = range.keep.iter().map(|k| k.as_bytes()).collect();
    let mut gone = Vec::new();
    for name in sys::fs::dir_names(dir)? {
        if range.covers(&name)
            && !keep.contains(name.as_bytes())
            && protected_by(&range.rules, name.as_bytes())
        {
            let mut removed = Removed::default();
            remove_entry(dir, &name, &mut removed)?;
            gone.push((name, removed));
        }
    }
    Ok(gone)
}

/// Removes `name` from `dir`, emptying it first if it is a directory.
pub fn remove_entry(dir: &OwnedFd, name: &OsStr, removed: &mut Removed) -> io::Result<()> {
    let c = cstring(name)?;
    match stat_at(dir, &c)? {
        Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
        Some(st) => return unlink_file(dir, &c, st.st_size as u64, removed),
        None => return Ok(()),
    }
    // Depth first: a stack of open directories, each with the name it has in its parent.
    let mut stack: Vec<(OwnedFd, CString)> = vec![(open_dir(dir, &c)?, c)];
    while let Some((top, _)) = stack.last() {
        let mut descended = None;
        for child in sys::fs::dir_names(top)? {
            let cc = cstring(&child)?;
            match stat_at(top, &cc)? {
                Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                    descended = Some((open_dir(top, &cc)?, cc));
                    break;
                }
                Some(st) => unlink_file(top, &cc, st.st_size as u64, removed)?,
                None => {}
            }
        }
        match descended {
            Some(next) => stack.push(next),
            None => {
                let Some((_, own_name)) = stack.pop() else {
                    break;
                };
                let parent = stack.last().map_or(dir, |(fd, _)| fd);
                ignore_gone(sys::fs::unlinkat(parent, &own_name, true))?;
                removed.dirs += 1;
            }
        }
    }
    Ok(())
}

fn unlink_file(dir: &OwnedFd, name: &CStr, size: u64, removed: &mut Removed) -> io::Result<()> {
    ignore_gone(sys::fs::unlinkat(dir, name, false))?;
    removed.files += 1;
    removed.bytes += size;
    Ok(())
}

/// A name that went meanwhile is not an error: nothing else writes beneath a replica but
/// the applier, yet an administrator might.
fn ignore_gone(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

fn cstring(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `fstatat` without following a symlink; `None` if the name is gone.
pub fn stat_at(dir: &OwnedFd, name: &CStr) -> io::Result<Option<libc::stat>> {
    match sys::fs::fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens a subdirectory for listing, refusing a symlink in its place.
fn open_dir(dir: &OwnedFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    sys::fs::openat(dir, name, flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn open(p: &std::path::Path) -> OwnedFd {
        std::fs::File::open(p).unwrap().into()
    }

    #[test]
    fn ranges_cover_every_name_once() {
        let ranges = keep_ranges(names(&["d", "a", "c", "b", "e"]), 2, &[]);
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges[0].keep, names(&["a", "b"]));
        assert_eq!(ranges[2].until, None);
        for probe in ["", "0", "a", "b", "bb", "c", "e", "zz"] {
            let n = OsStr::new(probe);
            let covering = ranges.iter().filter(|r| r.covers(n)).count();
            assert_eq!(covering, usize::from(!probe.is_empty()), "{probe}");
        }
        assert_eq!(keep_ranges(Vec::new(), 10, &[]), vec![KeepRange::default()]);
    }

    #[test]
    fn removes_what_is_not_kept_without_following_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), b"x").unwrap();
        let r = d.path();
        std::fs::write(r.join("keep"), b"k").unwrap();
        std::fs::write(r.join("gone"), b"12345").unwrap();
        std::fs::create_dir_all(r.join("tree/a/b")).unwrap();
        std::fs::write(r.join("tree/a/b/f"), b"123").unwrap();
        symlink(outside.path(), r.join("tree/a/escape")).unwrap();
        symlink(outside.path(), r.join("link")).unwrap();
        let range = KeepRange {
            keep: names(&["keep"]),
            ..KeepRange::default()
        };
        let mut gone = remove_orphans(&open(r), &range).unwrap();
        gone.sort_by(|a, b| a.0.cmp(&b.0));
        let link = symlink_len(outside.path());
        let file = |bytes| Removed {
            files: 1,
            dirs: 0,
            bytes,
        };
        let tree = Removed {
            files: 2,
            dirs: 3,
            bytes: 3 + link,
        };
        let expected = [("gone", file(5)), ("link", file(link)), ("tree", tree)];
        assert_eq!(gone, expected.map(|(n, r)| (OsString::from(n), r)).to_vec());
        assert_eq!(
            gone.iter().map(|(_, r)| *r).sum::<Removed>(),
            Removed {
                files: 4,
                dirs: 3,
                bytes: 8 + link * 2
            }
        );
        let left: Vec<_> = std::fs::read_dir(r)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, names(&["keep"]));
        assert!(outside.path().join("precious").exists());
    }

    fn symlink_len(target: &std::path::Path) -> u64 {
        target.as_os_str().len() as u64
    }

    #[test]
    fn a_range_leaves_names_outside_it_alone() {
        let d = tempfile::tempdir().unwrap();
        for n in ["a", "b", "c", "d"] {
            std::fs::write(d.path().join(n), b"").unwrap();
        }
        let range = KeepRange {
            after: "a".into(),
            until: Some("c".into()),
            keep: names(&["c"]),
            ..KeepRange::default()
        };
        let gone = remove_orphans(&open(d.path()), &range).unwrap();
        let empty_file = Removed {
            files: 1,
            ..Removed::default()
        };
        assert_eq!(gone, vec![(OsString::from("b"), empty_file)]);
    }

    #[test]
    fn names_the_rules_do_not_protect_are_spared() {
        use rill_ops::NameMatch;
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for n in ["kept", "gone", "x.tmp", "y.tmp", "cache", "cache.tmp"] {
            std::fs::write(r.join(n), b"").unwrap();
        }
        std::fs::create_dir(r.join("sub")).unwrap();
        std::fs::write(r.join("sub/a.tmp"), b"12").unwrap();
        let rule = |names, include| NameRule { names, include };
        // As a set with `/d` Inc, `/d/*.tmp` Exc and `/d/cache` Exc derives them; `y.tmp`
        // is named by an Inc rule more specific than the wildcard.
        let rules = vec![
            rule(NameMatch::Exact("cache".into()), false),
            rule(NameMatch::Exact("y.tmp".into()), true),
            rule(NameMatch::Wildcard("*.tmp".into()), false),
            rule(NameMatch::All, true),
        ];
        let mut ranges = keep_ranges(names(&["kept"]), 1000, &rules);
        assert_eq!(ranges.len(), 1);
        let mut gone = remove_orphans(&open(r), &ranges[0]).unwrap();
        gone.sort_by(|a, b| a.0.cmp(&b.0));
        let gone: Vec<_> = gone.into_iter().map(|(n, _)| n).collect();
        assert_eq!(gone, names(&["gone", "sub", "y.tmp"]));
        let mut left: Vec<_> = std::fs::read_dir(r)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, names(&["cache", "cache.tmp", "kept", "x.tmp"]));
        // Rules that protect nothing spare everything; none at all protect every name.
        ranges[0].rules = vec![rule(NameMatch::Wildcard("*.tmp".into()), false)];
        assert!(remove_orphans(&open(r), &ranges[0]).unwrap().is_empty());
        ranges[0].rules.clear();
        assert_eq!(remove_orphans(&open(r), &ranges[0]).unwrap().len(), 3);
    }
}
