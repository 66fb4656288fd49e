//! Which file system a path lies on, from the mount table, without a syscall per path.
//!
//! The kernel filters operations by watched file system when it knows the object or the
//! directory a name is relative to; an absolute name is resolved only after the call, so
//! those operations are filtered here, by the longest mount point that prefixes the path.
//! The table is re-read when `/proc/self/mountinfo` signals a change (POLLPRI).

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::{DriverError, Result};

const MOUNTINFO: &str = "/proc/self/mountinfo";

pub struct MountTable {
    file: File,
    /// (mount point, kernel device number), in mount order: later entries are on top.
    mounts: Vec<(PathBuf, u64)>,
}

impl MountTable {
    pub fn open() -> Result<MountTable> {
        let file = File::open(MOUNTINFO).map_err(|e| DriverError::io(MOUNTINFO, e))?;
        let mut t = MountTable {
            file,
            mounts: Vec::new(),
        };
        t.reload()?;
        Ok(t)
    }

    fn reload(&mut self) -> Result<()> {
        let mut text = String::new();
        self.file
            .rewind()
            .map_err(|e| DriverError::io(MOUNTINFO, e))?;
        self.file
            .read_to_string(&mut text)
            .map_err(|e| DriverError::io(MOUNTINFO, e))?;
        self.mounts = parse(&text);
        Ok(())
    }

    /// Re-reads the table if mounts changed since the last read.
    pub fn refresh(&mut self) -> Result<()> {
        let mut fds = [libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        }];
        // SAFETY: one valid pollfd for the duration of the call; zero timeout.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        if n > 0 && fds[0].revents & (libc::POLLPRI | libc::POLLERR) != 0 {
            self.reload()?;
        }
        Ok(())
    }

    /// The kernel device number of the file system `path` lies on (absolute paths only).
    pub fn device_of(&self, path: &Path) -> Option<u64> {
        // max_by_key keeps the last of equal keys: the mount on top.
        self.mounts
            .iter()
            .filter(|(point, _)| is_beneath(path, point))
            .max_by_key(|(point, _)| point.as_os_str().len())
            .map(|&(_, dev)| dev)
    }
}

/// Whether `path` is `prefix` or lies beneath it, by bytes. Both are absolute and
/// normalised (the capture's paths are joined from components), and this runs for every
/// captured operation against every mount point and root: `Path::starts_with` parses
/// components on each call, and was the largest cost of the capture reader on a tree
/// extraction.
pub fn is_beneath(path: &Path, prefix: &Path) -> bool {
    let p = path.as_os_str().as_bytes();
    let mut q = prefix.as_os_str().as_bytes();
    while q.len() > 1 && q.ends_with(b"/") {
        q = &q[..q.len() - 1];
    }
    if q == b"/" {
        return p.starts_with(b"/");
    }
    p.starts_with(q) && (p.len() == q.len() || p[q.len()] == b'/')
}

/// Parses mountinfo lines: `id parent major:minor root mount-point options ...`.
fn parse(text: &str) -> Vec<(PathBuf, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let (_, _, dev, _, point) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
            let (major, minor) = dev.split_once(':')?;
            let dev = (major.parse::<u64>().ok()? << 20) | minor.parse::<u64>().ok()?;
            Some((
                PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(point))),
                dev,
            ))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as three octal digits.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_beneath_agrees_with_path_starts_with_on_normal_paths() {
        let paths = [
            "/",
            "/data",
            "/data/x",
            "/database",
            "/data/x/y",
            "/dat",
            "/other/data",
        ];
        let prefixes = ["/", "/data", "/data/", "/data/x", "/dat", "/other"];
        for p in paths {
            for q in prefixes {
                assert_eq!(
                    is_beneath(Path::new(p), Path::new(q)),
                    Path::new(p).starts_with(q),
                    "{p} beneath {q}"
                );
            }
        }
    }

    #[test]
    fn longest_mount_point_wins_and_later_mounts_shadow_earlier() {
        let text = "22 1 254:0 / / rw - ext4 /dev/vda rw\n\
                    30 22 0:40 / /tmp/a\\040b rw - tmpfs tmpfs rw\n\
                    31 22 0:41 / /tmp/x rw - tmpfs tmpfs rw\n\
                    32 31 0:42 / /tmp/x rw - tmpfs tmpfs rw\n";
        let t = parse(text);
        let find = |p: &str| {
            t.iter()
                .filter(|(m, _)| Path::new(p).starts_with(m))
                .max_by_key(|(m, _)| m.as_os_str().len())
                .map(|x| x.1)
        };
        assert_eq!(find("/etc/passwd"), Some(254 << 20));
        assert_eq!(find("/tmp/a b/f"), Some(40));
        assert_eq!(
            find("/tmp/a bc"),
            Some(254 << 20),
            "prefixes match whole components"
        );
        assert_eq!(find("/tmp/x/f"), Some(42), "the mount on top");
    }

    #[test]
    fn the_live_table_names_the_root_file_system() {
        let t = MountTable::open().expect("mountinfo");
        let root = std::fs::metadata("/").expect("stat /");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            t.device_of(Path::new("/")),
            Some(rill_abi::maps::user_dev_to_kernel(root.dev()))
        );
    }
}
