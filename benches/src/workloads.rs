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
//!
//! (c) [`MappedWorkload`] and (d) [`UringWorkload`] change file data with no `write(2)`:
//! they are what the capture's second layer (`ebpf/src/below.rs`) exists for, and what
//! its tracepoints cost. (c) stores 4 KiB into each page of a shared mapping of a file
//! and `msync`s at the end of each pass over it; (d) has `fio` write 4 KiB blocks through
//! io_uring. Both run over a region of [`REGION_BYTES`] kept in the page cache, as (a).

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

use super::{check_stop, run, StopFlag};

/// Size of each write in workload (a).
pub const WRITE_SIZE: usize = 4096;
/// The region the writes' offsets wrap over.
pub const REGION_BYTES: u64 = 64 << 20;

/// A workload as the benchmark repeats it: one timed run, then untimed cleanup, which
/// the benchmark calls once the variant's programs are detached so they never see it.
pub trait Workload {
    /// One timed repetition.
    fn run(&mut self, stop: &StopFlag) -> Result<Duration>;

    /// Makes the next repetition start from the same state.
    fn cleanup(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Workload (a).
pub struct PwriteWorkload {
    file: File,
    path: PathBuf,
    writes: u64,
    buf: Vec<u8>,
}

impl PwriteWorkload {
    /// Creates the file in `dir` and writes the whole region once more (untimed) through
    /// the timed loop, which warms it too.
    pub fn new(dir: &Path, writes: u64) -> Result<PwriteWorkload> {
        let (file, path) = region_file(dir, "pwrite.dat")?;
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

impl Workload for PwriteWorkload {
    fn run(&mut self, stop: &StopFlag) -> Result<Duration> {
        PwriteWorkload::run(self, stop)
    }
}

/// Creates `name` in `dir` holding [`REGION_BYTES`] of data, written back (untimed), so
/// that the workloads overwrite pages already in the page cache.
fn region_file(dir: &Path, name: &str) -> Result<(File, PathBuf)> {
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let chunk = vec![0x5a_u8; 1 << 20];
    for _ in 0..REGION_BYTES / chunk.len() as u64 {
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok((file, path))
}

/// Workload (c): 4 KiB stores through a shared writable mapping of a file.
///
/// A repetition maps the file (inside the timed region: the capture learns of a shared
/// mapping from the `mmap` call, so it must be made while the variant's programs are
/// attached), copies 4 KiB into one page after another, and `msync(MS_SYNC)`s when a
/// pass over the region ends and after the last store. The `msync` is what makes each
/// store count: the first store into a clean page faults and dirties it (the
/// `writeback_dirty_folio` tracepoint), while stores into a page that is already dirty
/// are plain memory writes that no hook sees; written back, the pages are clean and
/// write-protected again for the next pass. So every store here is one page dirtied and
/// written back: the data goes to the disk, which sets the pace.
pub struct MappedWorkload {
    file: File,
    path: PathBuf,
    writes: u64,
    buf: Vec<u8>,
}

impl MappedWorkload {
    pub fn new(dir: &Path, writes: u64) -> Result<MappedWorkload> {
        let (file, path) = region_file(dir, "mapped.dat")?;
        Ok(MappedWorkload {
            file,
            path,
            writes,
            buf: (0..WRITE_SIZE).map(|i| (i % 253) as u8).collect(),
        })
    }

    pub fn writes(&self) -> u64 {
        self.writes
    }
}

impl Workload for MappedWorkload {
    fn run(&mut self, stop: &StopFlag) -> Result<Duration> {
        let t0 = Instant::now();
        // SAFETY: the file is in the benchmark's private directory and nothing truncates
        // it while mapped (a store beyond its end would fault).
        let mut map = unsafe { memmap2::MmapOptions::new().map_mut(&self.file) }
            .with_context(|| format!("mapping {}", self.path.display()))?;
        let pages = REGION_BYTES / WRITE_SIZE as u64;
        for i in 0..self.writes {
            let page = i % pages;
            let at = page as usize * WRITE_SIZE;
            map.get_mut(at..at + WRITE_SIZE)
                .with_context(|| format!("{} is shorter than expected", self.path.display()))?
                .copy_from_slice(&self.buf);
            if page == pages - 1 || i + 1 == self.writes {
                // msync(MS_SYNC) of the whole mapping.
                map.flush()
                    .with_context(|| format!("msync of {}", self.path.display()))?;
            }
            if i % 4096 == 4095 {
                check_stop(stop)?;
            }
        }
        // Unmapping is part of the repetition, as the mapping was.
        drop(map);
        Ok(t0.elapsed())
    }
}

/// Fails with a clear message when `fio` cannot be run.
pub fn check_fio() -> Result<()> {
    check_tool(
        "fio",
        "workload (d) writes through io_uring with fio",
        "./scripts/setup installs it (or apt-get install fio)",
    )
}

/// Fails with a clear message when `tool --version` does not run: `why` the benchmark
/// needs it, `how` to install it.
fn check_tool(tool: &str, why: &str, how: &str) -> Result<()> {
    match Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("`{tool} --version` failed ({s}); {why}"),
        Err(e) => bail!("{tool} not found ({e}); {why}: {how}"),
    }
}

/// Workload (d): 4 KiB buffered writes through io_uring, by `fio --ioengine=io_uring`
/// (32 in flight), wrapping over a file of [`REGION_BYTES`] whose pages stay cached
/// (`--invalidate=0`).
///
/// The time is fio's own: the job's run time, which it reports in milliseconds. The
/// wall-clock time of the `fio` process would add about 0.3 s of fio's start-up (it
/// sleeps for its job to start and to finish, in steps of 10 to 100 ms) to a second of
/// writing, which would dilute every variant's difference.
pub struct UringWorkload {
    path: PathBuf,
    writes: u64,
}

impl UringWorkload {
    /// Lays the file out and runs fio once over it, untimed: the file's pages, the fio
    /// binary and the io_uring workers are warm for the first repetition.
    pub fn new(dir: &Path, writes: u64) -> Result<UringWorkload> {
        let (_, path) = region_file(dir, "uring.dat")?;
        let w = UringWorkload { path, writes };
        w.fio(REGION_BYTES / WRITE_SIZE as u64)?;
        Ok(w)
    }

    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Runs fio for `writes` 4 KiB writes; fio's run time of the job.
    fn fio(&self, writes: u64) -> Result<Duration> {
        let bytes = writes * WRITE_SIZE as u64;
        let report = run(Command::new("fio")
            .args(["--name=rill-bench", "--rw=write", "--bs=4096", "--thread"])
            .args(["--ioengine=io_uring", "--iodepth=32"])
            // The file's pages stay cached, as in (a); no disk statistics thread.
            .args(["--invalidate=0", "--disk_util=0"])
            .arg(format!("--filename={}", fio_escape(&self.path)))
            .arg(format!("--size={REGION_BYTES}"))
            .arg(format!("--io_size={bytes}"))
            .arg("--output-format=json")
            .stdin(Stdio::null()))
        .with_context(|| format!("fio --ioengine=io_uring on {}", self.path.display()))?;
        fio_runtime(report.as_bytes(), bytes)
    }
}

impl Workload for UringWorkload {
    fn run(&mut self, _stop: &StopFlag) -> Result<Duration> {
        self.fio(self.writes)
    }
}

/// fio splits `--filename` at `:`; a `\:` is a colon in the name.
fn fio_escape(path: &Path) -> String {
    path.to_string_lossy().replace(':', "\\:")
}

/// The job's run time from fio's JSON report, after checking that the job wrote
/// `bytes` without an error.
fn fio_runtime(stdout: &[u8], bytes: u64) -> Result<Duration> {
    let text = String::from_utf8_lossy(stdout);
    // fio may print notes before its report.
    let json = text.find('{').map_or("", |i| &text[i..]);
    let v: serde_json::Value = serde_json::from_str(json).context("reading fio's JSON report")?;
    let job = &v["jobs"][0];
    let error = job["error"].as_i64();
    let written = job["write"]["io_bytes"].as_u64();
    let ms = job["job_runtime"].as_u64();
    match (error, written, ms) {
        (Some(0), Some(w), Some(ms)) if w == bytes => Ok(Duration::from_millis(ms)),
        (Some(0), Some(w), Some(_)) => bail!("fio wrote {w} bytes where {bytes} were asked"),
        (Some(0), _, _) => bail!("fio's report has no write bytes or run time"),
        (e, _, _) => bail!("fio's job failed (error {})", e.unwrap_or(-1)),
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
    check_tool(
        "tar",
        "workload (b) extracts a tarball with GNU tar",
        "apt-get install tar",
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(error: i64, io_bytes: u64, ms: u64) -> Vec<u8> {
        format!(
            "note: a line fio printed first\n{{\"jobs\": [{{\"error\": {error}, \"job_runtime\": \
             {ms}, \"write\": {{\"io_bytes\": {io_bytes}}}}}]}}"
        )
        .into_bytes()
    }

    #[test]
    fn fio_runtime_is_the_jobs_when_it_wrote_everything() {
        let t = fio_runtime(&report(0, 8192, 1234), 8192).unwrap();
        assert_eq!(t, Duration::from_millis(1234));
    }

    #[test]
    fn fio_runtime_refuses_a_short_or_failed_job() {
        assert!(fio_runtime(&report(0, 4096, 10), 8192).is_err());
        assert!(fio_runtime(&report(5, 8192, 10), 8192).is_err());
        assert!(fio_runtime(b"not json", 8192).is_err());
        assert!(fio_runtime(b"{\"jobs\": []}", 8192).is_err());
    }

    #[test]
    fn fio_file_names_escape_colons() {
        assert_eq!(fio_escape(Path::new("/tmp/a:b")), "/tmp/a\\:b");
        assert_eq!(fio_escape(Path::new("/tmp/ab")), "/tmp/ab");
    }
}
