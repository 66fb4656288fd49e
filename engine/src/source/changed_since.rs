//! Whether anything beneath a job's source changed while its capture was detached.
//!
//! A job stopped cleanly and started again has missed whatever changed in between, and
//! nothing recorded what: the safe answer is a remirror of its whole source. Most restarts
//! (an upgrade, a reboot of the target, a job paused by stopping it) find nothing changed,
//! though, and a whole remirror resends every byte. Every change to a file or directory
//! sets its inode's change time (ctime) to the current time, which no system call can set
//! back, and every name added, removed or moved changes its directory's: so if no inode
//! beneath the source has a ctime from the moment the capture stopped on, nothing changed,
//! and the remirror is skipped. Anything found, or anything that cannot be read, means the
//! whole source is remirrored.
//!
//! The kernel stamps ctimes from a coarse clock (up to a tick behind the time read here),
//! so the comparison allows [`SLACK_NS`]; a change that early was captured anyway, and
//! flagging it only costs the remirror this module exists to avoid. Only setting the
//! system clock back could date a change before the stop; a clock found behind the
//! recorded stop counts as a change.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// How much earlier than the capture's stop a ctime still counts as a change.
pub const SLACK_NS: u64 = 1_000_000_000;

/// Whether `root` or anything beneath it (symlinks not followed) has a ctime at or after
/// `since_ns - SLACK_NS` (wall-clock nanoseconds since the Unix epoch). An error reading
/// any part of the tree counts as a change.
pub fn changed_since(root: &Path, since_ns: u64) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    if now < since_ns {
        return true;
    }
    let from = since_ns.saturating_sub(SLACK_NS);
    walk(root, from).unwrap_or(true)
}

fn walk(root: &Path, from: u64) -> io::Result<bool> {
    let changed = |m: &fs::Metadata| ctime_ns(m) >= from;
    let top = fs::symlink_metadata(root)?;
    if changed(&top) {
        return Ok(true);
    }
    // An explicit stack: no recursion a deep tree could exhaust.
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let m = entry.metadata()?;
            if changed(&m) {
                return Ok(true);
            }
            if m.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(false)
}

fn ctime_ns(m: &fs::Metadata) -> u64 {
    let secs = u64::try_from(m.ctime()).unwrap_or(0);
    let nanos = u64::try_from(m.ctime_nsec()).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `n` trees made, then a stop time past the slack: unchanged until something is
    /// touched.
    fn settled(n: usize) -> (Vec<tempfile::TempDir>, u64) {
        let trees: Vec<_> = (0..n)
            .map(|_| {
                let d = tempfile::tempdir().unwrap();
                let r = d.path();
                std::fs::create_dir_all(r.join("a/b/c")).unwrap();
                std::fs::write(r.join("a/b/c/deep"), b"x").unwrap();
                std::fs::write(r.join("top"), b"y").unwrap();
                std::os::unix::fs::symlink("/nowhere", r.join("a/link")).unwrap();
                d
            })
            .collect();
        std::thread::sleep(Duration::from_nanos(SLACK_NS) + Duration::from_millis(50));
        (trees, crate::clock::wall_ns())
    }

    #[test]
    fn an_untouched_tree_has_not_changed() {
        let (d, stopped) = settled(1);
        assert!(!changed_since(d[0].path(), stopped));
        assert!(
            changed_since(&d[0].path().join("missing"), stopped),
            "a source gone"
        );
        let later = crate::clock::wall_ns() + 3_600_000_000_000;
        assert!(changed_since(d[0].path(), later), "a clock set back");
    }

    #[test]
    fn every_kind_of_change_is_seen_however_deep() {
        type Change = (&'static str, fn(&Path));
        let changes: [Change; 7] = [
            ("a write deep down", |r| {
                std::fs::write(r.join("a/b/c/deep"), b"changed").unwrap()
            }),
            ("a new name", |r| {
                std::fs::write(r.join("a/b/new"), b"").unwrap()
            }),
            ("a removal", |r| {
                std::fs::remove_file(r.join("a/b/c/deep")).unwrap()
            }),
            ("a rename within", |r| {
                std::fs::rename(r.join("a/b/c/deep"), r.join("a/b/c/moved")).unwrap()
            }),
            ("a mode", |r| {
                use std::os::unix::fs::PermissionsExt;
                let p = std::fs::Permissions::from_mode(0o600);
                std::fs::set_permissions(r.join("top"), p).unwrap()
            }),
            ("a hard link", |r| {
                std::fs::hard_link(r.join("top"), r.join("a/b/c/other")).unwrap()
            }),
            ("a symlink replaced", |r| {
                std::fs::remove_file(r.join("a/link")).unwrap();
                std::os::unix::fs::symlink("/elsewhere", r.join("a/link")).unwrap()
            }),
        ];
        let (trees, stopped) = settled(changes.len());
        for ((what, change), d) in changes.iter().zip(&trees) {
            change(d.path());
            assert!(changed_since(d.path(), stopped), "{what} was not seen");
        }
    }
}
