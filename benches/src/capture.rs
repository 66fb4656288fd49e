//! `rill-bench capture`: what the capture driver costs, against the floor the kernel sets,
//! and how fast its ring is drained.
//!
//! One run measures each workload of [`super::workloads`] in three variants: *baseline*
//! (no program attached), *floor* (on every attach point of the capture, a program that
//! returns at once: `ebpf/src/floor.rs`, attached by the driver's loader) and *loaded*
//! (the pinned driver loaded with the given settings and a separate reader process,
//! [`super::drain`], draining its ring). The floor is what any program on these hooks
//! costs on this kernel, whatever it does: loaded/floor is the share rill's programs and
//! reader can still do something about, floor/baseline the share they cannot.
//! Repetitions alternate the variants for each workload so that the machine's drift hits
//! all three, and the order rotates from one repetition to the next (B F L, F L B,
//! L B F, …) so that no variant always runs first after another workload (whose
//! writeback, for instance, may still slow the machine); the report gives medians and the
//! ratios next to the targets, which are stated against the floor.
//!
//! A loaded repetition: load and pin the driver, start the reader and wait until it has
//! attached, read the driver's counters, run the timed workload, wait until the reader has
//! emptied the ring (the *catch-up*), read the counters again, stop the reader (it reports
//! what it drained), unload. The drain rate is the reader's records (and the ring's bytes)
//! over the workload time plus the catch-up: the time it took to get every record of the
//! phase out of the ring. Drops are the driver's own count (RecordsDropped + OpsStopped)
//! over the phase. A floor repetition attaches the floor programs privately (they write
//! nothing, so there is no reader), runs the timed workload and detaches them.
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
//! - The reader drains the ring only. Dirty marks, which the second layer makes for (c)
//!   and (d), stay in the driver's map: naming their files is the engine's work and is
//!   not counted here.
//! - Any rill capture loaded by somebody else (a test, a `capture` session), or a floor,
//!   runs its programs on every syscall of every process. The benchmark waits until there
//!   is none before each repetition and discards and reruns a repetition if one appeared.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rill_driver_linux::{loader, settings::DriverSettings};
use serde::Serialize;

use super::drain::{DrainChild, DrainSummary};
use super::driver::{self, Counters, LoadedDriver};
use super::report;
use super::scratch_fs::ScratchFs;
use super::workloads::{
    self, MappedWorkload, PwriteWorkload, Tarball, TreeSpec, UringWorkload, Workload,
};
use super::{check_stop, StopFlag};

/// Targets from the capture-cost issue (loaded over floor), printed next to the
/// measurements.
pub const TARGET_PWRITE_RATIO: f64 = 1.5;
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
    /// 4 KiB stores through a shared mapping per repetition of workload (c).
    pub mapped_writes: u64,
    /// 4 KiB io_uring writes per repetition of workload (d).
    pub uring_writes: u64,
    /// Repetitions of each variant of each workload.
    pub reps: u32,
    pub tree: TreeSpec,
    pub ring_mb: Option<u32>,
    pub inline_max: Option<u32>,
    /// Unload a pinned driver found loaded at start.
    pub force: bool,
    /// Pause (after a sync) before each timed repetition, the same for every variant.
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

/// `num[i] / den[i]` for each repetition both have.
fn paired(num: &[f64], den: &[f64]) -> Vec<f64> {
    num.iter().zip(den).map(|(n, d)| rate(*n, *d)).collect()
}

fn rate(n: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        n / secs
    } else {
        0.0
    }
}

/// The variants of one repetition, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// No program attached.
    Baseline,
    /// A program that returns at once on every attach point of the capture.
    Floor,
    /// The pinned driver and a reader process.
    Loaded,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Baseline, Variant::Floor, Variant::Loaded];

    /// The order of repetition `rep` (from 1): [`Variant::ALL`] rotated by one more each
    /// repetition.
    pub fn order(rep: u32) -> [Variant; 3] {
        let mut v = Variant::ALL;
        v.rotate_left((rep.saturating_sub(1) % 3) as usize);
        v
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Floor => "floor   ",
            Variant::Loaded => "loaded  ",
        }
    }
}

/// One workload, all variants.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadResult {
    pub name: String,
    /// What one operation is ("writes", "files").
    pub unit: String,
    /// Operations per repetition.
    pub ops: u64,
    /// The most loaded/floor may be, if this workload has a target.
    pub target_loaded_over_floor: Option<f64>,
    pub baseline_seconds: Vec<f64>,
    pub floor_seconds: Vec<f64>,
    pub loaded: Vec<LoadedRep>,
    /// Repetitions discarded and run again because somebody else's rill capture was
    /// loaded while they ran.
    pub discarded: u32,
}

impl WorkloadResult {
    fn new(name: String, unit: &str, ops: u64, target: Option<f64>) -> WorkloadResult {
        WorkloadResult {
            name,
            unit: unit.into(),
            ops,
            target_loaded_over_floor: target,
            baseline_seconds: Vec::new(),
            floor_seconds: Vec::new(),
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

    pub fn floor_median(&self) -> f64 {
        report::median(&self.floor_seconds)
    }

    pub fn loaded_median(&self) -> f64 {
        report::median(&self.loaded_seconds())
    }

    /// Loaded median over baseline median (how many times slower).
    pub fn loaded_over_baseline(&self) -> f64 {
        rate(self.loaded_median(), self.baseline_median())
    }

    /// Loaded median over floor median: what rill's programs and reader add to the floor.
    pub fn loaded_over_floor(&self) -> f64 {
        rate(self.loaded_median(), self.floor_median())
    }

    /// Floor median over baseline median: what an attached program costs by itself.
    pub fn floor_over_baseline(&self) -> f64 {
        rate(self.floor_median(), self.baseline_median())
    }

    /// Loaded over baseline within each repetition, which a drift of the machine between
    /// repetitions does not move.
    pub fn paired_loaded_over_baseline(&self) -> Vec<f64> {
        paired(&self.loaded_seconds(), &self.baseline_seconds)
    }

    /// Loaded over floor within each repetition.
    pub fn paired_loaded_over_floor(&self) -> Vec<f64> {
        paired(&self.loaded_seconds(), &self.floor_seconds)
    }

    fn record(&mut self, variant: Variant, a: Attempt) {
        match variant {
            Variant::Baseline => self.baseline_seconds.push(a.seconds),
            Variant::Floor => self.floor_seconds.push(a.seconds),
            Variant::Loaded => self.loaded.extend(a.loaded),
        }
    }

    /// Whether loaded/floor is within the target; `None` without a target.
    pub fn meets_target(&self) -> Option<bool> {
        self.target_loaded_over_floor
            .map(|t| self.loaded_over_floor() <= t)
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
    pub mapped: WorkloadResult,
    pub uring: WorkloadResult,
    pub drain: DrainResult,
    /// Whether a pinned driver was unloaded at start (--force).
    pub forced_unload: bool,
}

impl CaptureResult {
    /// The workloads, in the order they run.
    pub fn workloads(&self) -> [&WorkloadResult; 4] {
        [&self.pwrite, &self.tar, &self.mapped, &self.uring]
    }
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
    workloads::check_fio()?;
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
    let tarball = build_tarball(cfg, tmp.path())?;
    let scratch = scratch_fs(cfg, &tarball, tmp.path())?;
    let trees = Extractions::new(scratch.path(), cfg.delete_between, tree_room(cfg))?;
    let mut tar = Extraction::new(&tarball, trees, stop)?;
    let mut pw = PwriteWorkload::new(tmp.path(), cfg.writes)?;
    let mut mapped = MappedWorkload::new(tmp.path(), cfg.mapped_writes)?;
    let mut uring = UringWorkload::new(tmp.path(), cfg.uring_writes)?;
    let mut results = results(cfg, &tarball);

    let bench = Bench {
        cfg,
        settings: &settings,
        stop,
    };
    for rep in 1..=cfg.reps {
        let tag = format!("rep {rep}/{}", cfg.reps);
        let workloads: [&mut dyn Workload; 4] = [&mut pw, &mut tar, &mut mapped, &mut uring];
        for (res, w) in results.iter_mut().zip(workloads) {
            for variant in Variant::order(rep) {
                bench.measure(variant, &tag, res, w)?;
            }
        }
    }

    let [pwrite, tar, mapped, uring] = results;
    let drain = DrainResult::from(&pwrite, settings.ring_size_mb);
    Ok(CaptureResult {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        delete_between: cfg.delete_between,
        reps: cfg.reps,
        settings,
        tree: tarball,
        pwrite,
        tar,
        mapped,
        uring,
        drain,
        forced_unload,
    })
}

fn build_tarball(cfg: &Config, dir: &Path) -> Result<Tarball> {
    eprintln!(
        "rill-bench: building the tarball from {} (at most {} files, {} MB)",
        cfg.tree.root.display(),
        cfg.tree.max_files,
        cfg.tree.max_bytes / 1_000_000
    );
    let tarball = Tarball::build(&cfg.tree, dir)?;
    eprintln!(
        "rill-bench: tarball: {} files, {} dirs, {} symlinks, {:.1} MB",
        tarball.files,
        tarball.dirs,
        tarball.symlinks,
        tarball.bytes as f64 / 1e6
    );
    Ok(tarball)
}

/// How many extracted trees the scratch file system has room for (they are moved aside,
/// not deleted: see [`Extractions`]): three variants a repetition and the untimed first
/// extraction, twice over, for the attempts discarded because somebody else's capture
/// was loaded (each extracts a tree too). Its image is sparse: room unused costs nothing
/// but inode tables.
fn tree_room(cfg: &Config) -> u64 {
    2 * (Variant::ALL.len() as u64 * cfg.reps as u64 + 1)
}

/// The file system workload (b) extracts onto: room for [`tree_room`] trees, with a
/// margin for ext4's own metadata.
fn scratch_fs(cfg: &Config, tarball: &Tarball, dir: &Path) -> Result<ScratchFs> {
    let extractions = tree_room(cfg);
    ScratchFs::create(
        dir,
        tarball.tar_bytes * extractions * 3 / 2 + (256 << 20),
        (tarball.files + tarball.dirs + tarball.symlinks + 16) * extractions * 5 / 4 + 1024,
    )
}

/// The results to fill, one per workload, in the order they run.
fn results(cfg: &Config, tarball: &Tarball) -> [WorkloadResult; 4] {
    let n = report::thousands;
    [
        WorkloadResult::new(
            format!("(a) pwrite 4 KiB x {}", n(cfg.writes)),
            "writes",
            cfg.writes,
            Some(TARGET_PWRITE_RATIO),
        ),
        WorkloadResult::new(
            format!(
                "(b) tar -xf {} files, {:.0} MB",
                n(tarball.files),
                tarball.bytes as f64 / 1e6
            ),
            "files",
            tarball.files,
            Some(TARGET_TAR_RATIO),
        ),
        WorkloadResult::new(
            format!("(c) mmap stores 4 KiB x {}, msync", n(cfg.mapped_writes)),
            "writes",
            cfg.mapped_writes,
            None,
        ),
        WorkloadResult::new(
            format!("(d) io_uring (fio) 4 KiB x {}", n(cfg.uring_writes)),
            "writes",
            cfg.uring_writes,
            None,
        ),
    ]
}

/// What every repetition needs.
struct Bench<'a> {
    cfg: &'a Config,
    settings: &'a DriverSettings,
    stop: &'a StopFlag,
}

/// One timed repetition, before it is judged.
struct Attempt {
    seconds: f64,
    /// The loaded variant's figures.
    loaded: Option<LoadedRep>,
    /// Rill captures (or floors) of somebody else loaded when it ended.
    others: usize,
}

impl Bench<'_> {
    /// One repetition of `w` in `variant`, recorded in `res`; run again when somebody
    /// else's rill capture was loaded beside it. The workload's cleanup runs after each
    /// attempt, once the variant's programs are detached.
    fn measure(
        &self,
        variant: Variant,
        tag: &str,
        res: &mut WorkloadResult,
        w: &mut dyn Workload,
    ) -> Result<()> {
        for _ in 0..=MAX_RETRIES {
            driver::wait_no_capture(self.stop, OTHER_CAPTURE_WAIT)?;
            let attempt = match variant {
                Variant::Baseline => self.baseline(w),
                Variant::Floor => self.floor(w),
                Variant::Loaded => loaded_rep(self.cfg, self.settings, self.stop, || {
                    w.run(self.stop)
                })
                .map(|r| Attempt {
                    seconds: r.seconds,
                    others: r.other_captures,
                    loaded: Some(r),
                }),
            };
            w.cleanup()?;
            let attempt = attempt?;
            if attempt.others == 0 {
                progress(tag, res, variant, &attempt);
                res.record(variant, attempt);
                return Ok(());
            }
            res.discarded += 1;
            eprintln!(
                "rill-bench: {} rill capture(s) of somebody else loaded during a {} {} \
                 repetition; discarding it and running it again",
                attempt.others,
                letter(res),
                variant.label().trim_end()
            );
        }
        bail!("too many repetitions disturbed by other rill captures; run the benchmark on a quiet machine")
    }

    fn baseline(&self, w: &mut dyn Workload) -> Result<Attempt> {
        settle(self.cfg, self.stop)?;
        let t = w.run(self.stop)?;
        Ok(Attempt {
            seconds: t.as_secs_f64(),
            loaded: None,
            others: driver::captures_loaded(),
        })
    }

    /// The floor programs attached privately around the timed workload: they write
    /// nothing, so no reader runs.
    fn floor(&self, w: &mut dyn Workload) -> Result<Attempt> {
        check_stop(self.stop)?;
        let floor = loader::load_floor().context("attaching the floor programs")?;
        settle(self.cfg, self.stop)?;
        let t = w.run(self.stop)?;
        // The floor's own program on sys_exit is counted too.
        let others = driver::captures_loaded().saturating_sub(1);
        drop(floor);
        Ok(Attempt {
            seconds: t.as_secs_f64(),
            loaded: None,
            others,
        })
    }
}

/// Workload (b) as the benchmark repeats it: `tar -xf` into a fresh directory, which is
/// moved aside afterwards.
struct Extraction<'a> {
    tarball: &'a Tarball,
    trees: Extractions,
    stop: &'a StopFlag,
}

impl<'a> Extraction<'a> {
    /// Extracts once, untimed: warms the tarball, the tar binary and the allocator.
    fn new(
        tarball: &'a Tarball,
        mut trees: Extractions,
        stop: &'a StopFlag,
    ) -> Result<Extraction<'a>> {
        tarball.extract(&trees.dest)?;
        trees.clear(stop)?;
        Ok(Extraction {
            tarball,
            trees,
            stop,
        })
    }
}

impl Workload for Extraction<'_> {
    fn run(&mut self, _stop: &StopFlag) -> Result<Duration> {
        self.tarball.extract(&self.trees.dest)
    }

    fn cleanup(&mut self) -> Result<()> {
        self.trees.clear(self.stop)
    }
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
    moved: u64,
    /// How many trees the file system has room for.
    room: u64,
    delete_between: bool,
    /// How long to wait after deleting trees ([`RECENTLY_DELETED`]).
    purge_wait: Duration,
}

/// How long ext4 counts a deleted inode as recently deleted once its inode table block is
/// written back (`RECENTCY_MIN` in fs/ext4/ialloc.c), with a margin.
const RECENTLY_DELETED: Duration = Duration::from_secs(65);

impl Extractions {
    fn new(dir: &Path, delete_between: bool, room: u64) -> Result<Extractions> {
        let trash = dir.join("trash");
        std::fs::create_dir(&trash).with_context(|| format!("creating {}", trash.display()))?;
        Ok(Extractions {
            dest: dir.join("x"),
            trash,
            moved: 0,
            room,
            delete_between,
            purge_wait: RECENTLY_DELETED,
        })
    }

    /// Makes `dest` free for the next extraction.
    fn clear(&mut self, stop: &StopFlag) -> Result<()> {
        if self.delete_between || !self.dest.exists() {
            return remove_tree(&self.dest);
        }
        // The trees moved aside and the next one must fit.
        if self.moved + 2 > self.room {
            self.purge(stop)?;
        }
        self.moved += 1;
        let to = self.trash.join(self.moved.to_string());
        std::fs::rename(&self.dest, &to)
            .with_context(|| format!("moving {} to {}", self.dest.display(), to.display()))
    }

    /// Deletes the trees moved aside when there is no room for another (more attempts
    /// were discarded than [`tree_room`] allows for), then waits until ext4 no longer
    /// scans their inodes as recently deleted, so the extractions after it are not slowed.
    fn purge(&mut self, stop: &StopFlag) -> Result<()> {
        eprintln!(
            "rill-bench: no room for another extracted tree ({} kept); deleting them and \
             waiting {} s for ext4 to stop scanning their inodes",
            self.moved,
            self.purge_wait.as_secs()
        );
        remove_tree(&self.trash)?;
        std::fs::create_dir(&self.trash)
            .with_context(|| format!("creating {}", self.trash.display()))?;
        self.moved = 0;
        // SAFETY: sync(2) has no arguments and cannot fail.
        unsafe { libc::sync() };
        let t0 = std::time::Instant::now();
        while t0.elapsed() < self.purge_wait {
            check_stop(stop)?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// The workload's letter: "(a)".
pub fn letter(w: &WorkloadResult) -> &str {
    w.name.split_whitespace().next().unwrap_or("")
}

fn progress(tag: &str, res: &WorkloadResult, variant: Variant, a: &Attempt) {
    let extra = a.loaded.as_ref().map_or(String::new(), |r| {
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
    eprintln!(
        "rill-bench: {tag} {} {} {:>8.3} s{extra}",
        letter(res),
        variant.label(),
        a.seconds
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(seconds: f64) -> LoadedRep {
        LoadedRep {
            seconds,
            catch_up_seconds: 0.0,
            drained: true,
            driver: Counters::default(),
            reader: DrainSummary::default(),
            other_captures: 0,
        }
    }

    fn result(target: Option<f64>) -> WorkloadResult {
        let mut w = WorkloadResult::new("(x) test".into(), "writes", 100, target);
        for (b, f, l) in [(1.0, 1.2, 1.8), (2.0, 2.0, 2.0), (1.0, 1.0, 1.5)] {
            let attempt = |seconds, loaded| Attempt {
                seconds,
                loaded,
                others: 0,
            };
            w.record(Variant::Baseline, attempt(b, None));
            w.record(Variant::Floor, attempt(f, None));
            w.record(Variant::Loaded, attempt(l, Some(loaded(l))));
        }
        w
    }

    #[test]
    fn ratios_are_of_medians_and_paired_within_repetitions() {
        let w = result(Some(1.5));
        assert_eq!(w.baseline_median(), 1.0);
        assert_eq!(w.floor_median(), 1.2);
        assert_eq!(w.loaded_median(), 1.8);
        assert!((w.loaded_over_floor() - 1.5).abs() < 1e-9);
        assert!((w.floor_over_baseline() - 1.2).abs() < 1e-9);
        assert_eq!(w.paired_loaded_over_floor(), vec![1.5, 1.0, 1.5]);
        assert_eq!(w.paired_loaded_over_baseline(), vec![1.8, 1.0, 1.5]);
        assert_eq!(w.meets_target(), Some(true));
    }

    #[test]
    fn the_order_rotates_through_every_variant() {
        use Variant::*;
        assert_eq!(Variant::order(1), [Baseline, Floor, Loaded]);
        assert_eq!(Variant::order(2), [Floor, Loaded, Baseline]);
        assert_eq!(Variant::order(3), [Loaded, Baseline, Floor]);
        assert_eq!(Variant::order(4), Variant::order(1));
    }

    #[test]
    fn extracted_trees_are_moved_aside_until_the_room_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut trees = Extractions::new(dir.path(), false, 4).unwrap();
        trees.purge_wait = Duration::ZERO;
        let stop = StopFlag::new(false);
        let kept = |t: &Extractions| std::fs::read_dir(&t.trash).unwrap().count();
        for expect in [1, 2, 3, 1, 2, 3, 1] {
            std::fs::create_dir(&trees.dest).unwrap();
            trees.clear(&stop).unwrap();
            assert!(!trees.dest.exists());
            // With the next extraction, never more trees than there is room for.
            assert_eq!(kept(&trees), expect);
        }
    }

    #[test]
    fn a_workload_without_target_is_not_judged() {
        assert_eq!(result(None).meets_target(), None);
        assert_eq!(result(Some(1.4)).meets_target(), Some(false));
    }
}
