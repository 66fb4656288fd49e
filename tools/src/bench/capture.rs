//! `rill-bench capture`: what the capture driver costs, and how fast its ring is drained.
//!
//! One run measures both workloads of [`super::workloads`] twice over: *baseline* (no
//! driver loaded) and *loaded* (the pinned driver loaded with the given settings and a
//! separate reader process, [`super::drain`], draining its ring). Repetitions alternate
//! baseline and loaded for each workload (B L B L …) so that the machine's drift hits both;
//! the report gives medians and the ratio loaded/baseline next to the targets.
//!
//! A loaded repetition: load and pin the driver, start the reader and wait until it has
//! attached, read the driver's counters, run the timed workload, wait until the reader has
//! emptied the ring (the *catch-up*), read the counters again, stop the reader (it reports
//! what it drained), unload. The drain rate is the reader's records (and the ring's bytes)
//! over the workload time plus the catch-up: the time it took to get every record of the
//! phase out of the ring. Drops are the driver's own count (RecordsDropped + OpsStopped)
//! over the phase.
//!
//! Reading the numbers:
//! - A drain rate can only be as high as the workload produces records. When the reader
//!   kept up (no throttling, no loss, the ring empty right after the workload) the report
//!   says the target was *not demonstrated* rather than met or missed, and gives the
//!   reader's records per CPU-second as an estimate of its capacity.
//! - A loaded run in which the driver dropped or stopped operations did less work than a
//!   working capture would; its ratio is printed but marked as not valid. Throttled
//!   (range-only) writes are recorded, but without their data, which also makes the
//!   loaded run cheaper: their share is printed next to the ratio.
//! - Any rill capture loaded by somebody else (a test, a `capture` session) runs its
//!   programs on every syscall of every process. The benchmark waits until there is none
//!   before each repetition and discards and reruns a repetition if one appeared.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rill_driver_linux::settings::DriverSettings;
use serde::Serialize;

use super::drain::{DrainChild, DrainSummary};
use super::driver::{self, Counters, LoadedDriver};
use super::report;
use super::scratch_fs::ScratchFs;
use super::workloads::{self, PwriteWorkload, Tarball, TreeSpec};
use super::{check_stop, StopFlag};

/// Targets from the capture-overhead issue, printed next to the measurements.
pub const TARGET_PWRITE_RATIO: f64 = 2.0;
pub const TARGET_TAR_RATIO: f64 = 1.10;
pub const TARGET_DRAIN_RECORDS_PER_S: f64 = 500_000.0;
/// The drain target holds at the default ring size.
pub const TARGET_RING_MB: u32 = 32;

/// How long the reader may take to empty the ring after a workload.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for somebody else's rill capture to go before a repetition.
const OTHER_CAPTURE_WAIT: Duration = Duration::from_secs(600);
/// Repetitions disturbed by somebody else's capture are run again, this many times at most.
const MAX_RETRIES: u32 = 20;

#[derive(Clone, Debug)]
pub struct Config {
    /// Writes per repetition of workload (a).
    pub writes: u64,
    /// Repetitions of each variant of each workload.
    pub reps: u32,
    pub tree: TreeSpec,
    pub ring_mb: Option<u32>,
    pub inline_max: Option<u32>,
    /// Unload a pinned driver found loaded at start.
    pub force: bool,
    /// Pause (after a sync) before each timed repetition, the same for both variants.
    pub settle: Duration,
    /// The benchmark's executable, re-run as `drain` for the reader.
    pub exe: PathBuf,
    /// Delete each extracted tree right after its repetition instead of at the end.
    pub delete_between: bool,
}

/// One loaded repetition.
#[derive(Clone, Debug, Serialize)]
pub struct LoadedRep {
    /// The workload's time.
    pub seconds: f64,
    /// After the workload, until the ring was empty.
    pub catch_up_seconds: f64,
    /// Whether the ring was empty before the reader was stopped.
    pub drained: bool,
    /// The driver's counters over the phase.
    pub driver: Counters,
    /// What the reader saw (over its whole life, which brackets the phase).
    pub reader: DrainSummary,
    /// Other rill captures loaded beside the benchmark's at the end of the repetition.
    pub other_captures: usize,
}

impl LoadedRep {
    /// Seconds over which the phase's records left the ring.
    pub fn drain_window(&self) -> f64 {
        self.seconds + self.catch_up_seconds
    }

    pub fn drain_records_per_s(&self) -> f64 {
        rate(self.reader.records as f64, self.drain_window())
    }

    /// Ring bytes (the driver's BytesEmitted) per second.
    pub fn drain_ring_mb_per_s(&self) -> f64 {
        rate(self.driver.bytes_emitted as f64 / 1e6, self.drain_window())
    }

    /// Records per second of the reader's CPU time: what it could drain with a CPU to
    /// itself, an estimate of its capacity when the workload did not saturate it.
    pub fn reader_records_per_cpu_s(&self) -> f64 {
        rate(self.reader.records as f64, self.reader.cpu_seconds)
    }

    /// Decoded payload (paths and inline data) per second.
    pub fn drain_payload_mb_per_s(&self) -> f64 {
        rate(self.reader.bytes as f64 / 1e6, self.drain_window())
    }
}

fn rate(n: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        n / secs
    } else {
        0.0
    }
}

/// One workload, both variants.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadResult {
    pub name: String,
    /// What one operation is ("writes", "files").
    pub unit: String,
    /// Operations per repetition.
    pub ops: u64,
    pub target_ratio: f64,
    pub baseline_seconds: Vec<f64>,
    pub loaded: Vec<LoadedRep>,
    /// Repetitions discarded and run again because somebody else's rill capture was
    /// loaded while they ran.
    pub discarded: u32,
}

impl WorkloadResult {
    fn new(name: String, unit: &str, ops: u64, target_ratio: f64) -> WorkloadResult {
        WorkloadResult {
            name,
            unit: unit.into(),
            ops,
            target_ratio,
            baseline_seconds: Vec::new(),
            loaded: Vec::new(),
            discarded: 0,
        }
    }

    pub fn loaded_seconds(&self) -> Vec<f64> {
        self.loaded.iter().map(|r| r.seconds).collect()
    }

    pub fn baseline_median(&self) -> f64 {
        report::median(&self.baseline_seconds)
    }

    pub fn loaded_median(&self) -> f64 {
        report::median(&self.loaded_seconds())
    }

    /// Loaded median over baseline median (how many times slower).
    pub fn ratio(&self) -> f64 {
        rate(self.loaded_median(), self.baseline_median())
    }

    /// Loaded over baseline within each alternated pair (baseline i, loaded i), which a
    /// drift of the machine between pairs does not move.
    pub fn paired_ratios(&self) -> Vec<f64> {
        self.baseline_seconds
            .iter()
            .zip(self.loaded.iter())
            .map(|(b, l)| rate(l.seconds, *b))
            .collect()
    }

    pub fn meets_target(&self) -> bool {
        self.ratio() <= self.target_ratio
    }

    /// The share of the loaded phases' operations the driver did not record
    /// (RecordsDropped + OpsStopped over emitted + those). Above zero, the loaded variant
    /// did less work than a working capture would, and its ratio flatters the driver.
    pub fn lost_fraction(&self) -> f64 {
        let t = self.driver_total();
        rate(t.lost() as f64, (t.records_emitted + t.lost()) as f64)
    }

    /// The share of recorded writes that lost their inline data to throttling.
    pub fn throttled_fraction(&self) -> f64 {
        let t = self.driver_total();
        rate(t.writes_throttled as f64, t.records_emitted as f64)
    }

    /// The driver's counters summed over the loaded repetitions.
    pub fn driver_total(&self) -> Counters {
        let mut c = Counters::default();
        for r in &self.loaded {
            c.add(&r.driver);
        }
        c
    }
}

/// The drain figures over the loaded (a) repetitions.
#[derive(Clone, Debug, Serialize)]
pub struct DrainResult {
    pub ring_mb: u32,
    pub records_per_s_median: f64,
    pub ring_mb_per_s_median: f64,
    pub payload_mb_per_s_median: f64,
    /// RecordsDropped + OpsStopped, summed over the loaded (a) repetitions.
    pub lost: u64,
    pub records_dropped: u64,
    pub ops_stopped: u64,
    pub writes_range_only: u64,
    pub writes_throttled: u64,
    pub peak_fill_percent: f64,
    pub catch_up_seconds_max: f64,
    pub reader_max_rss_kib: u64,
    /// Most records the reader got from one batch.
    pub reader_largest_batch: u64,
    /// Median of records per second of the reader's CPU time (its capacity, estimated).
    pub reader_records_per_cpu_s_median: f64,
    /// Median of the workload's own record rate (records emitted over workload seconds).
    pub produced_records_per_s_median: f64,
    /// The reader emptied the ring within 100 ms of the workload's end every time, and the
    /// driver neither throttled nor lost anything: the drain rate was set by the producer.
    pub reader_kept_up: bool,
    /// Whether the target applies (it is stated at the default ring size) and is met.
    pub target_applies: bool,
    pub meets_target: bool,
}

impl DrainResult {
    fn from(pwrite: &WorkloadResult, ring_mb: u32) -> DrainResult {
        let reps = &pwrite.loaded;
        let med =
            |f: fn(&LoadedRep) -> f64| report::median(&reps.iter().map(f).collect::<Vec<_>>());
        let total = pwrite.driver_total();
        let records_per_s_median = med(LoadedRep::drain_records_per_s);
        DrainResult {
            ring_mb,
            records_per_s_median,
            ring_mb_per_s_median: med(LoadedRep::drain_ring_mb_per_s),
            payload_mb_per_s_median: med(LoadedRep::drain_payload_mb_per_s),
            lost: total.lost(),
            records_dropped: total.records_dropped,
            ops_stopped: total.ops_stopped,
            writes_range_only: total.writes_range_only,
            writes_throttled: total.writes_throttled,
            peak_fill_percent: reps
                .iter()
                .map(|r| r.reader.peak_fill_percent)
                .fold(0.0, f64::max),
            catch_up_seconds_max: reps.iter().map(|r| r.catch_up_seconds).fold(0.0, f64::max),
            reader_max_rss_kib: reps.iter().map(|r| r.reader.max_rss_kib).max().unwrap_or(0),
            reader_largest_batch: reps
                .iter()
                .map(|r| r.reader.largest_batch)
                .max()
                .unwrap_or(0),
            reader_records_per_cpu_s_median: med(LoadedRep::reader_records_per_cpu_s),
            produced_records_per_s_median: med(|r| {
                rate(r.driver.records_emitted as f64, r.seconds)
            }),
            reader_kept_up: total.lost() == 0
                && total.writes_throttled == 0
                && reps.iter().all(|r| r.drained && r.catch_up_seconds < 0.1),
            target_applies: ring_mb == TARGET_RING_MB,
            meets_target: records_per_s_median >= TARGET_DRAIN_RECORDS_PER_S
                && total.lost() == 0
                && reps.iter().all(|r| r.drained),
        }
    }
}

/// Everything one run measured; `--json` writes it as is.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureResult {
    pub kernel: String,
    pub cpus: usize,
    pub reps: u32,
    /// Whether extracted trees were deleted between repetitions (`--delete-between`).
    pub delete_between: bool,
    pub settings: DriverSettings,
    pub tree: Tarball,
    pub pwrite: WorkloadResult,
    pub tar: WorkloadResult,
    pub drain: DrainResult,
    /// Whether a pinned driver was unloaded at start (--force).
    pub forced_unload: bool,
}

/// Checks what the benchmark needs before it touches anything.
pub fn preflight(force: bool) -> Result<bool> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "rill-bench capture must run as root: it loads the eBPF capture driver (CAP_BPF, \
             CAP_SYS_ADMIN) and pins it under /sys/fs/bpf"
        );
    }
    workloads::check_tar()?;
    driver::ensure_unloaded(force)
}

/// The driver's settings for this run: defaults, then the flags, validated by the driver's
/// own rules, saved to and read back from a settings file in the run's temporary directory.
fn settings(cfg: &Config, dir: &Path) -> Result<DriverSettings> {
    let mut s = DriverSettings::default();
    if let Some(mb) = cfg.ring_mb {
        s.set("RingSizeMB", &mb.to_string()).context("--ring-mb")?;
    }
    if let Some(b) = cfg.inline_max {
        s.set("InlineDataMax", &b.to_string())
            .context("--inline-max")?;
    }
    let path = dir.join("driver.toml");
    s.save(&path)?;
    Ok(DriverSettings::load(&path)?)
}

/// Runs the benchmark. Progress goes to stderr.
pub fn run(cfg: &Config, stop: &StopFlag) -> Result<CaptureResult> {
    let forced_unload = preflight(cfg.force)?;
    let tmp = tempfile::Builder::new()
        .prefix("rill-bench-")
        .tempdir_in("/tmp")
        .context("creating a temporary directory under /tmp")?;
    let settings = settings(cfg, tmp.path())?;

    eprintln!(
        "rill-bench: building the tarball from {} (at most {} files, {} MB)",
        cfg.tree.root.display(),
        cfg.tree.max_files,
        cfg.tree.max_bytes / 1_000_000
    );
    let tarball = Tarball::build(&cfg.tree, tmp.path())?;
    eprintln!(
        "rill-bench: tarball: {} files, {} dirs, {} symlinks, {:.1} MB",
        tarball.files,
        tarball.dirs,
        tarball.symlinks,
        tarball.bytes as f64 / 1e6
    );
    let pw = PwriteWorkload::new(tmp.path(), cfg.writes)?;
    // One untimed extraction: warms the tarball, the tar binary and the allocator.
    // Room for every extraction of the run (they are moved aside, not deleted), with a
    // margin for ext4's own metadata.
    let extractions = 2 * cfg.reps as u64 + 2;
    let scratch = ScratchFs::create(
        tmp.path(),
        tarball.tar_bytes * extractions * 3 / 2 + (256 << 20),
        (tarball.files + tarball.dirs + tarball.symlinks + 16) * extractions * 5 / 4 + 1024,
    )?;
    let mut trees = Extractions::new(scratch.path(), cfg.delete_between)?;
    let extract_dir = trees.dest.clone();
    tarball.extract(&extract_dir)?;
    trees.clear()?;

    let mut a = WorkloadResult::new(
        format!("(a) pwrite 4 KiB x {}", report::thousands(cfg.writes)),
        "writes",
        cfg.writes,
        TARGET_PWRITE_RATIO,
    );
    let mut b = WorkloadResult::new(
        format!(
            "(b) tar -xf {} files, {:.0} MB",
            report::thousands(tarball.files),
            tarball.bytes as f64 / 1e6
        ),
        "files",
        tarball.files,
        TARGET_TAR_RATIO,
    );

    for rep in 1..=cfg.reps {
        let tag = format!("rep {rep}/{}", cfg.reps);

        let t = baseline_rep(cfg, stop, &mut a, || pw.run(stop))?;
        progress(&tag, "(a) baseline", t, None);
        a.baseline_seconds.push(t.as_secs_f64());

        let r = retry_loaded(cfg, &settings, stop, &mut a, || pw.run(stop), || Ok(()))?;
        progress(
            &tag,
            "(a) loaded  ",
            Duration::from_secs_f64(r.seconds),
            Some(&r),
        );
        a.loaded.push(r);

        let t = baseline_rep(cfg, stop, &mut b, || {
            let t = tarball.extract(&extract_dir);
            trees.clear()?;
            t
        })?;
        progress(&tag, "(b) baseline", t, None);
        b.baseline_seconds.push(t.as_secs_f64());

        // The tree is cleared after the driver is unloaded, so that is not captured.
        let r = retry_loaded(
            cfg,
            &settings,
            stop,
            &mut b,
            || tarball.extract(&extract_dir),
            || trees.clear(),
        )?;
        progress(
            &tag,
            "(b) loaded  ",
            Duration::from_secs_f64(r.seconds),
            Some(&r),
        );
        b.loaded.push(r);
    }

    let drain = DrainResult::from(&a, settings.ring_size_mb);
    Ok(CaptureResult {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        delete_between: cfg.delete_between,
        reps: cfg.reps,
        settings,
        tree: tarball,
        pwrite: a,
        tar: b,
        drain,
        forced_unload,
    })
}

/// One baseline repetition of `workload`, run with no rill capture loaded, anybody's;
/// run again if one appeared meanwhile.
fn baseline_rep(
    cfg: &Config,
    stop: &StopFlag,
    w: &mut WorkloadResult,
    mut workload: impl FnMut() -> Result<Duration>,
) -> Result<Duration> {
    for _ in 0..=MAX_RETRIES {
        driver::wait_no_capture(stop, OTHER_CAPTURE_WAIT)?;
        settle(cfg, stop)?;
        let t = workload()?;
        let others = driver::captures_loaded();
        if others == 0 {
            return Ok(t);
        }
        w.discarded += 1;
        eprintln!(
            "rill-bench: {others} rill capture(s) of somebody else loaded during a {} baseline \
             repetition; discarding it and running it again",
            w.unit
        );
    }
    bail!("too many repetitions disturbed by other rill captures; run the benchmark on a quiet machine")
}

/// One loaded repetition, run again if somebody else's capture was loaded beside it.
/// `cleanup` runs after each attempt, once the driver is unloaded.
fn retry_loaded(
    cfg: &Config,
    settings: &DriverSettings,
    stop: &StopFlag,
    w: &mut WorkloadResult,
    mut workload: impl FnMut() -> Result<Duration>,
    mut cleanup: impl FnMut() -> Result<()>,
) -> Result<LoadedRep> {
    for _ in 0..=MAX_RETRIES {
        driver::wait_no_capture(stop, OTHER_CAPTURE_WAIT)?;
        let r = loaded_rep(cfg, settings, stop, &mut workload);
        cleanup()?;
        let r = r?;
        if r.other_captures == 0 {
            return Ok(r);
        }
        w.discarded += 1;
        eprintln!(
            "rill-bench: {} other rill capture(s) loaded beside the benchmark's during a {} \
             repetition; discarding it and running it again",
            r.other_captures, w.unit
        );
    }
    bail!("too many repetitions disturbed by other rill captures; run the benchmark on a quiet machine")
}

/// One loaded repetition around the timed `workload` (see the module documentation).
fn loaded_rep(
    cfg: &Config,
    settings: &DriverSettings,
    stop: &StopFlag,
    workload: impl FnOnce() -> Result<Duration>,
) -> Result<LoadedRep> {
    check_stop(stop)?;
    let drv = LoadedDriver::load(settings)?;
    let reader = DrainChild::spawn(&cfg.exe)?;
    settle(cfg, stop)?;
    let before = drv.counters()?;
    let t = workload()?;
    let (catch_up, drained) = drv.wait_drained(CATCH_UP_TIMEOUT, stop)?;
    let after = drv.counters()?;
    let other_captures = driver::captures_loaded().saturating_sub(1);
    if !drained {
        eprintln!(
            "rill-bench: warning: the reader (pid {}) had not emptied the ring {} s after the workload",
            reader.pid().unwrap_or(0),
            CATCH_UP_TIMEOUT.as_secs()
        );
    }
    let summary = reader.stop()?;
    drv.unload()?;
    Ok(LoadedRep {
        seconds: t.as_secs_f64(),
        catch_up_seconds: catch_up.as_secs_f64(),
        drained,
        driver: after.since(&before),
        reader: summary,
        other_captures,
    })
}

/// The same untimed preparation before every timed repetition, baseline or loaded: write
/// back dirty pages (so each repetition starts from clean, cached pages; nothing is
/// evicted) and pause briefly.
fn settle(cfg: &Config, stop: &StopFlag) -> Result<()> {
    check_stop(stop)?;
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(cfg.settle);
    check_stop(stop)
}

/// Where workload (b) extracts, and what becomes of each extracted tree.
///
/// By default a tree is moved aside (renamed into `trash/`) after its repetition and all
/// are deleted when the run ends. Deleting between repetitions is what one would write
/// first, but ext4 then avoids reusing the inodes deleted in the last minute: every inode
/// tar creates scans the recently deleted ones (`find_inode_bit` -> `recently_deleted`),
/// which a profile here showed taking over half of tar's time and doubling its spread,
/// a cost of the benchmark's own cleanup that would dilute the driver's share.
/// `--delete-between` restores immediate deletion.
struct Extractions {
    dest: PathBuf,
    trash: PathBuf,
    moved: u32,
    delete_between: bool,
}

impl Extractions {
    fn new(dir: &Path, delete_between: bool) -> Result<Extractions> {
        let trash = dir.join("trash");
        std::fs::create_dir(&trash).with_context(|| format!("creating {}", trash.display()))?;
        Ok(Extractions {
            dest: dir.join("x"),
            trash,
            moved: 0,
            delete_between,
        })
    }

    /// Makes `dest` free for the next extraction.
    fn clear(&mut self) -> Result<()> {
        if self.delete_between || !self.dest.exists() {
            return remove_tree(&self.dest);
        }
        self.moved += 1;
        let to = self.trash.join(self.moved.to_string());
        std::fs::rename(&self.dest, &to)
            .with_context(|| format!("moving {} to {}", self.dest.display(), to.display()))
    }
}

fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

fn progress(tag: &str, what: &str, t: Duration, loaded: Option<&LoadedRep>) {
    let extra = loaded.map_or(String::new(), |r| {
        format!(
            "  records {}  lost {}  range-only {}  throttled {}  catch-up {:.3} s  peak fill {:.1}%",
            r.reader.records,
            r.driver.lost(),
            r.driver.writes_range_only,
            r.driver.writes_throttled,
            r.catch_up_seconds,
            r.reader.peak_fill_percent
        )
    });
    eprintln!("rill-bench: {tag} {what} {:>8.3} s{extra}", t.as_secs_f64());
}
