//! The workloads whose slowdown under capture is measured.
//!
//! (a) [`PwriteWorkload`]: N `pwrite(fd, buf, 4096, off)` calls from the benchmark process
//! into one file in the page cache, offsets wrapping over a 64 MiB region so the file
//! stays in memory and no repetition waits for the disk. This is the worst case for the
//! capture, relative to the work: a 4 KiB page-cache write costs well under a microsecond,
//! and every one of them becomes a record carrying its 4 KiB inline.
//!
//! (b) [`Tarball`]: a real small-file workload. A tarball of a real source tree (by
//! default the crates in `~/.cargo/registry/src`, capped in files and bytes) is built once;
//! each repetition times `tar -xf` into a fresh directory on a file system made for the
//! run ([`super::scratch_fs`]), which is moved aside afterwards (untimed). As root, tar also restores owners and times, so each file costs a create,
//! its writes, a chown and a utimensat: the mix a build or a package install produces.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{check_stop, StopFlag};

/// Size of each write in workload (a).
pub const WRITE_SIZE: usize = 4096;
/// The region the writes' offsets wrap over.
pub const REGION_BYTES: u64 = 64 << 20;

/// Workload (a).
pub struct PwriteWorkload {
    file: File,
    path: PathBuf,
    writes: u64,
    buf: Vec<u8>,
}

impl PwriteWorkload {
    /// Creates the file in `dir` and writes the whole region once (untimed), so every
    /// repetition overwrites pages already in the page cache.
    pub fn new(dir: &Path, writes: u64) -> Result<PwriteWorkload> {
        let path = dir.join("pwrite.dat");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let buf: Vec<u8> = (0..WRITE_SIZE).map(|i| (i % 251) as u8).collect();
        let w = PwriteWorkload {
            file,
            path,
            writes,
            buf,
        };
        w.write(REGION_BYTES / WRITE_SIZE as u64, None)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// One timed repetition: `writes` pwrites of 4 KiB.
    pub fn run(&self, stop: &StopFlag) -> Result<Duration> {
        let t0 = Instant::now();
        self.write(self.writes, Some(stop))?;
        Ok(t0.elapsed())
    }

    fn write(&self, n: u64, stop: Option<&StopFlag>) -> Result<()> {
        let fd = self.file.as_raw_fd();
        let pages = REGION_BYTES / WRITE_SIZE as u64;
        for i in 0..n {
            let off = ((i % pages) * WRITE_SIZE as u64) as libc::off_t;
            // SAFETY: `buf` is WRITE_SIZE bytes and outlives the call; `fd` is open.
            let r = unsafe { libc::pwrite(fd, self.buf.as_ptr().cast(), WRITE_SIZE, off) };
            if r != WRITE_SIZE as isize {
                let e = std::io::Error::last_os_error();
                bail!(
                    "pwrite to {} at offset {off} returned {r}: {e}",
                    self.path.display()
                );
            }
            // The same cheap check in both variants; a Ctrl-C takes effect within ~1 ms.
            if i % 4096 == 4095 {
                if let Some(stop) = stop {
                    check_stop(stop)?;
                }
            }
        }
        Ok(())
    }
}

/// Where workload (b)'s tree comes from, and how much of it.
#[derive(Clone, Debug, Serialize)]
pub struct TreeSpec {
    pub root: PathBuf,
    pub max_files: u64,
    pub max_bytes: u64,
}

impl TreeSpec {
    /// `$CARGO_HOME/registry/src` (default `~/.cargo/registry/src`): the extracted crates,
    /// a real tree of many small source files present on every machine that builds rill.
    pub fn default_root() -> PathBuf {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/root"))
                    .join(".cargo")
            });
        cargo_home.join("registry").join("src")
    }
}

/// Workload (b)'s tarball, built once.
#[derive(Clone, Debug, Serialize)]
pub struct Tarball {
    pub path: PathBuf,
    pub source: PathBuf,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of the regular files.
    pub bytes: u64,
    /// Size of the tarball.
    pub tar_bytes: u64,
}

/// Fails with a clear message when `tar` cannot be run.
pub fn check_tar() -> Result<()> {
    match Command::new("tar")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("`tar --version` failed ({s}); workload (b) needs GNU tar"),
        Err(e) => bail!(
            "tar not found ({e}); workload (b) extracts a tarball with tar: install it (apt-get install tar)"
        ),
    }
}

impl Tarball {
    /// Walks `spec.root` in name order, taking directories, symlinks and regular files
    /// until `max_files` files or `max_bytes` bytes, and archives them to `dir/tree.tar`.
    pub fn build(spec: &TreeSpec, dir: &Path) -> Result<Tarball> {
        let root = &spec.root;
        let md = std::fs::metadata(root)
            .with_context(|| format!("the tree for workload (b), {}", root.display()))?;
        if !md.is_dir() {
            bail!(
                "the tree for workload (b), {}, is not a directory",
                root.display()
            );
        }
        let mut t = Tarball {
            path: dir.join("tree.tar"),
            source: root.clone(),
            files: 0,
            dirs: 0,
            symlinks: 0,
            bytes: 0,
            tar_bytes: 0,
        };
        // NUL-separated names relative to the root, for `tar --null -T`.
        let mut list: Vec<u8> = Vec::new();
        let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
        'walk: while let Some(rel) = stack.pop() {
            let mut entries: Vec<OsString> = std::fs::read_dir(root.join(&rel))
                .with_context(|| format!("reading {}", root.join(&rel).display()))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            entries.sort();
            let mut subdirs = Vec::new();
            for name in entries {
                let rel = rel.join(&name);
                let Ok(md) = std::fs::symlink_metadata(root.join(&rel)) else {
                    continue;
                };
                let ft = md.file_type();
                if ft.is_file() {
                    if t.files >= spec.max_files || t.bytes + md.len() > spec.max_bytes {
                        break 'walk;
                    }
                    t.files += 1;
                    t.bytes += md.len();
                } else if ft.is_dir() {
                    t.dirs += 1;
                    subdirs.push(rel.clone());
                } else if ft.is_symlink() {
                    t.symlinks += 1;
                } else {
                    continue;
                }
                list.extend_from_slice(rel.as_os_str().as_bytes());
                list.push(0);
            }
            // Depth first, in name order.
            stack.extend(subdirs.into_iter().rev());
        }
        if t.files == 0 {
            bail!(
                "the tree for workload (b), {}, has no regular files; give another with --tree",
                root.display()
            );
        }
        let list_path = dir.join("tree.list");
        File::create(&list_path)
            .and_then(|mut f| f.write_all(&list))
            .with_context(|| format!("writing {}", list_path.display()))?;
        let out = Command::new("tar")
            .arg("--create")
            .arg("--file")
            .arg(&t.path)
            .arg("--directory")
            .arg(root)
            .args(["--no-recursion", "--null", "--files-from"])
            .arg(&list_path)
            .stdin(Stdio::null())
            .output()
            .context("running tar to build the tarball")?;
        if !out.status.success() {
            bail!(
                "building the tarball of {} failed ({}): {}",
                root.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        t.tar_bytes = std::fs::metadata(&t.path)
            .with_context(|| format!("{}", t.path.display()))?
            .len();
        Ok(t)
    }

    /// One timed repetition: `tar -xf` into `dest`, which must not exist yet (it is
    /// created, untimed, first).
    pub fn extract(&self, dest: &Path) -> Result<Duration> {
        std::fs::create_dir(dest).with_context(|| format!("creating {}", dest.display()))?;
        let t0 = Instant::now();
        let out = Command::new("tar")
            .arg("-xf")
            .arg(&self.path)
            .arg("-C")
            .arg(dest)
            .stdin(Stdio::null())
            .output()
            .context("running tar -xf")?;
        let dt = t0.elapsed();
        if !out.status.success() {
            bail!(
                "tar -xf {} failed ({}): {}",
                self.path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(dt)
    }
}
