//! Is the replica equal to the source? A metadata snapshot (one `lstat` walk) for the cheap
//! checks, and a byte-for-byte comparison of every regular file for the full one.
//!
//! Equal means: the same names below the root, and for each the same kind, mode, owner and
//! group; regular files the same size and the same bytes; symlinks the same text. File
//! modification times are compared only where a caller asks (see [`Snapshot::matches`]):
//! rsync and lsyncd set them, and the report says whether each tool's replica had them.
//! Directory sizes and times are never compared (they depend on the file system's history).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Change time: any write, rename or attribute change moves it. Compared only between
    /// two snapshots of the same tree, to tell whether it changed in between.
    pub ctime_ns: i128,
    pub link: Option<PathBuf>,
}

/// Every entry below a root (the root itself excluded), by path relative to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub entries: BTreeMap<PathBuf, Meta>,
}

fn ns(secs: i64, nsec: i64) -> i128 {
    secs as i128 * 1_000_000_000 + nsec as i128
}

impl Snapshot {
    /// Walks `root`. Entries that vanish during the walk are skipped (the tree is live).
    pub fn take(root: &Path) -> Result<Snapshot> {
        let mut entries = BTreeMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.join(&rel);
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound && !rel.as_os_str().is_empty() =>
                {
                    continue
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            };
            for e in rd {
                let Ok(e) = e else { continue };
                let rel = rel.join(e.file_name());
                let path = root.join(&rel);
                let Ok(m) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                let ft = m.file_type();
                let kind = if ft.is_file() {
                    Kind::File
                } else if ft.is_dir() {
                    Kind::Dir
                } else if ft.is_symlink() {
                    Kind::Symlink
                } else {
                    Kind::Other
                };
                if kind == Kind::Dir {
                    stack.push(rel.clone());
                }
                let link = if kind == Kind::Symlink {
                    std::fs::read_link(&path).ok()
                } else {
                    None
                };
                entries.insert(
                    rel,
                    Meta {
                        kind,
                        mode: m.mode(),
                        uid: m.uid(),
                        gid: m.gid(),
                        size: m.len(),
                        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
                        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
                        link,
                    },
                );
            }
        }
        Ok(Snapshot { entries })
    }

    /// Whether `replica` has the same entries as `self` (a source), by metadata: names,
    /// kinds, modes, owners, file sizes, symlink texts, and file mtimes if `mtimes`.
    pub fn matches(&self, replica: &Snapshot, mtimes: bool) -> bool {
        self.first_difference(replica, mtimes, true).is_none()
    }

    /// The first metadata difference, described, or `None`; directory modes are compared
    /// only if `dir_modes`.
    pub fn first_difference(
        &self,
        replica: &Snapshot,
        mtimes: bool,
        dir_modes: bool,
    ) -> Option<String> {
        if self.entries.len() != replica.entries.len() {
            let missing = self
                .entries
                .keys()
                .find(|k| !replica.entries.contains_key(*k));
            let extra = replica
                .entries
                .keys()
                .find(|k| !self.entries.contains_key(*k));
            return Some(format!(
                "{} entries in the source, {} in the replica (first missing {:?}, first extra {:?})",
                self.entries.len(),
                replica.entries.len(),
                missing,
                extra
            ));
        }
        for (path, a) in &self.entries {
            let Some(b) = replica.entries.get(path) else {
                return Some(format!("{} missing from the replica", path.display()));
            };
            let what = if a.kind != b.kind {
                format!("kind differs ({:?} vs {:?})", a.kind, b.kind)
            } else if a.mode != b.mode && (dir_modes || a.kind != Kind::Dir) {
                format!("mode differs ({:o} vs {:o})", a.mode, b.mode)
            } else if a.uid != b.uid || a.gid != b.gid {
                format!("owner differs ({}:{} vs {}:{})", a.uid, a.gid, b.uid, b.gid)
            } else if a.kind == Kind::File && a.size != b.size {
                format!("size differs ({} vs {})", a.size, b.size)
            } else if a.link != b.link {
                "symlink text differs".into()
            } else if mtimes && a.kind == Kind::File && a.mtime_ns != b.mtime_ns {
                "mtime differs".into()
            } else {
                continue;
            };
            return Some(format!("{}: {what} (source vs replica)", path.display()));
        }
        None
    }

    /// Regular files whose modification time differs from `replica`'s.
    pub fn mtime_mismatches(&self, replica: &Snapshot) -> usize {
        self.entries
            .iter()
            .filter(|(p, a)| {
                a.kind == Kind::File
                    && replica
                        .entries
                        .get(*p)
                        .is_some_and(|b| b.mtime_ns != a.mtime_ns)
            })
            .count()
    }

    /// Entries whose mode differs from `replica`'s, summarised ("3 directories (755 vs 700
    /// e.g. a/b)"), or empty.
    pub fn mode_differences(&self, replica: &Snapshot) -> String {
        let mut dirs = 0;
        let mut other = 0;
        let mut example = None;
        for (p, a) in &self.entries {
            if let Some(b) = replica.entries.get(p) {
                if a.mode != b.mode {
                    if a.kind == Kind::Dir {
                        dirs += 1;
                    } else {
                        other += 1;
                    }
                    example.get_or_insert_with(|| {
                        format!(
                            "{:o} vs {:o}, e.g. {}",
                            a.mode & 0o7777,
                            b.mode & 0o7777,
                            p.display()
                        )
                    });
                }
            }
        }
        match example {
            None => String::new(),
            Some(e) => format!("{dirs} directories and {other} other entries ({e})"),
        }
    }

    pub fn files(&self) -> impl Iterator<Item = (&PathBuf, &Meta)> {
        self.entries.iter().filter(|(_, m)| m.kind == Kind::File)
    }
}

/// Now on the clock inode change times are read from, in nanoseconds since the epoch.
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// When anything in the tree at `root` last changed: the newest inode change time among
/// `snap` (a snapshot of it) and `root` itself (which changes when a name directly below
/// it comes or goes). Every write, name change, mode, owner or time set moves an inode's
/// ctime, so a tree equal now was equal from this moment on (ctimes are read from the
/// kernel's clock, which may trail the real time by up to a tick).
pub fn newest_change(root: &Path, snap: &Snapshot) -> Result<i128> {
    let m =
        std::fs::symlink_metadata(root).with_context(|| format!("reading {}", root.display()))?;
    let own = ns(m.ctime(), m.ctime_nsec());
    Ok(snap
        .entries
        .values()
        .map(|e| e.ctime_ns)
        .fold(own, i128::max))
}

/// Compares the bytes of every regular file of `snap` (a snapshot of `src`) under `src` and
/// `dst`; stops at the first difference. `Ok(None)` when all are equal.
pub fn first_content_difference(
    src: &Path,
    dst: &Path,
    snap: &Snapshot,
) -> Result<Option<PathBuf>> {
    const CHUNK: usize = 1 << 20;
    let mut a = vec![0u8; CHUNK];
    let mut b = vec![0u8; CHUNK];
    for (rel, _) in snap.files() {
        let pa = src.join(rel);
        let mut fa = File::open(&pa).with_context(|| format!("opening {}", pa.display()))?;
        let Ok(mut fb) = File::open(dst.join(rel)) else {
            return Ok(Some(rel.clone()));
        };
        loop {
            let na =
                read_full(&mut fa, &mut a).with_context(|| format!("reading {}", pa.display()))?;
            let nb = read_full(&mut fb, &mut b)
                .with_context(|| format!("reading {}", dst.join(rel).display()))?;
            if na != nb || a[..na] != b[..nb] {
                return Ok(Some(rel.clone()));
            }
            if na < CHUNK {
                break;
            }
        }
    }
    Ok(None)
}

/// Reads until `buf` is full or the end of the file.
fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The full comparison: metadata (without mtimes) and every file's bytes. `Ok(None)` when
/// equal, else what differs.
pub fn full_difference(src: &Path, dst: &Path) -> Result<Option<String>> {
    let s = Snapshot::take(src)?;
    let d = Snapshot::take(dst)?;
    if let Some(diff) = s.first_difference(&d, false, true) {
        return Ok(Some(diff));
    }
    Ok(
        first_content_difference(src, dst, &s)?
            .map(|p| format!("{}: contents differ", p.display())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_and_different_trees() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for root in [a.path(), b.path()] {
            std::fs::create_dir(root.join("d")).unwrap();
            std::fs::write(root.join("d/f"), b"hello").unwrap();
            std::os::unix::fs::symlink("d/f", root.join("l")).unwrap();
        }
        assert_eq!(full_difference(a.path(), b.path()).unwrap(), None);
        std::fs::write(b.path().join("d/f"), b"hellO").unwrap();
        let diff = full_difference(a.path(), b.path()).unwrap();
        assert!(diff.is_some_and(|d| d.contains("contents")));
        std::fs::write(b.path().join("d/f"), b"hello!").unwrap();
        let diff = full_difference(a.path(), b.path()).unwrap();
        assert!(diff.is_some_and(|d| d.contains("size")));
        std::fs::write(b.path().join("extra"), b"").unwrap();
        assert!(full_difference(a.path(), b.path()).unwrap().is_some());
    }

    #[test]
    fn directory_modes_can_be_left_out() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::create_dir(a.path().join("d")).unwrap();
        std::fs::create_dir(b.path().join("d")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let p = std::fs::Permissions::from_mode(0o700);
        std::fs::set_permissions(b.path().join("d"), p).unwrap();
        let (sa, sb) = (
            Snapshot::take(a.path()).unwrap(),
            Snapshot::take(b.path()).unwrap(),
        );
        assert!(!sa.matches(&sb, false));
        assert!(sa.first_difference(&sb, false, false).is_none());
        assert!(sa.mode_differences(&sb).contains("1 directories"));
    }

    #[test]
    fn ctime_moves_on_write() {
        let a = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("f"), b"1").unwrap();
        let s1 = Snapshot::take(a.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(a.path().join("f"), b"2").unwrap();
        let s2 = Snapshot::take(a.path()).unwrap();
        assert!(s1.matches(&s2, false));
        assert_ne!(s1, s2);
    }

    #[test]
    fn the_newest_change_is_the_last_write_or_removal() {
        let a = tempfile::tempdir().unwrap();
        std::fs::create_dir(a.path().join("d")).unwrap();
        std::fs::write(a.path().join("d/f"), b"1").unwrap();
        std::fs::write(a.path().join("g"), b"1").unwrap();
        let before = now_ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let settled = newest_change(a.path(), &Snapshot::take(a.path()).unwrap()).unwrap();
        assert!(
            settled <= before,
            "nothing changed after {before}: {settled}"
        );

        std::fs::write(a.path().join("d/f"), b"2").unwrap();
        let written = newest_change(a.path(), &Snapshot::take(a.path()).unwrap()).unwrap();
        assert!(written > before, "a write moves it: {written} <= {before}");

        // A name removed directly below the root leaves no entry behind, only the root's
        // own change.
        let mid = now_ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::remove_file(a.path().join("g")).unwrap();
        let removed = newest_change(a.path(), &Snapshot::take(a.path()).unwrap()).unwrap();
        assert!(removed > mid, "a removal moves it: {removed} <= {mid}");
    }
}
