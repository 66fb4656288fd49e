//! Comparing a replica with its source: what must match, per path.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What must match between source and replica, per relative path.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    content: Vec<u8>,
    link: Option<PathBuf>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// Modification time of regular files (directories' change as entries are made).
    mtime: Option<(i64, i64)>,
    /// Index of the hard-link group, for files with more than one name.
    group: Option<usize>,
}

impl Node {
    /// A one-line summary (content as its length and a checksum), for failure messages.
    pub fn describe(&self) -> String {
        let sum = self
            .content
            .iter()
            .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        format!(
            "{} mode {:o} owner {}:{} {} bytes (sum {sum:x}) link {:?} xattrs {:?} mtime {:?} group {:?}",
            self.kind, self.mode, self.uid, self.gid, self.content.len(), self.link,
            self.xattrs.keys().collect::<Vec<_>>(), self.mtime, self.group
        )
    }
}

/// The extended attributes of `p` (not following a symlink). A name removed between the
/// listing and the read is left out; a file gone is an error of kind `NotFound`.
pub fn xattrs(p: &Path) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: a NUL-terminated path and a buffer of the given size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = BTreeMap::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cn = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: as above.
        let l = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if l < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENODATA) {
                continue;
            }
            return Err(e);
        }
        v.truncate(l as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), v);
    }
    Ok(out)
}

pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    snapshot_with(root, true)
}

/// [`snapshot`], leaving extended attributes out when `with_xattrs` is false.
pub fn snapshot_with(root: &Path, with_xattrs: bool) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut groups: HashMap<u64, usize> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    // A tree still being replicated into may lose a name between the listing and the
    // lstat: it is left out (the snapshot then differs, and the caller looks again).
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if gone(&e) => continue,
            other => other.unwrap(),
        };
        for e in entries {
            let p = e.unwrap().path();
            let m = match std::fs::symlink_metadata(&p) {
                Err(e) if gone(&e) => continue,
                other => other.unwrap(),
            };
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else {
                "special"
            };
            if ft.is_dir() {
                stack.push(p.clone());
            }
            let content = match ft.is_file().then(|| std::fs::read(&p)).transpose() {
                Err(e) if gone(&e) => continue,
                other => other.unwrap().unwrap_or_default(),
            };
            let link = match ft.is_symlink().then(|| std::fs::read_link(&p)).transpose() {
                Err(e) if gone(&e) => continue,
                other => other.unwrap(),
            };
            let xattrs = match (ft.is_symlink() || !with_xattrs)
                .then(BTreeMap::new)
                .map_or_else(|| xattrs(&p), Ok)
            {
                Err(e) if gone(&e) => continue,
                other => other.unwrap(),
            };
            let next = groups.len();
            let group =
                (ft.is_file() && m.nlink() > 1).then(|| *groups.entry(m.ino()).or_insert(next));
            out.insert(
                p.strip_prefix(root).unwrap().to_path_buf(),
                Node {
                    kind,
                    mode: m.mode(),
                    uid: m.uid(),
                    gid: m.gid(),
                    content,
                    link,
                    xattrs,
                    mtime: ft.is_file().then(|| (m.mtime(), m.mtime_nsec())),
                    group,
                },
            );
        }
    }
    out
}

/// Panics, naming the first difference, unless the two trees are equal.
pub fn assert_equal_trees(source: &Path, replica: &Path) {
    let (a, b) = (snapshot(source), snapshot(replica));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same names"
    );
    for (path, node) in &a {
        assert_eq!(Some(node), b.get(path), "{}", path.display());
    }
}

/// The paths whose nodes differ between two snapshots (at most `limit`), each with both
/// sides summarised, for a failure message.
pub fn differences(
    a: &BTreeMap<PathBuf, Node>,
    b: &BTreeMap<PathBuf, Node>,
    limit: usize,
) -> Vec<String> {
    let d = |n: Option<&Node>| n.map(Node::describe);
    let mut keys: Vec<&PathBuf> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .take(limit)
        .map(|k| {
            format!(
                "{}:\n  source  {:?}\n  replica {:?}",
                k.display(),
                d(a.get(k)),
                d(b.get(k))
            )
        })
        .collect()
}

/// Whether the two trees are equal now, extended attributes counted or not.
pub fn equal_trees_with(source: &Path, replica: &Path, with_xattrs: bool) -> bool {
    snapshot_with(source, with_xattrs) == snapshot_with(replica, with_xattrs)
}

/// Whether the two trees are equal now (for waiting on a live replica).
pub fn equal_trees(source: &Path, replica: &Path) -> bool {
    snapshot(source) == snapshot(replica)
}
