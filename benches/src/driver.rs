//! The pinned driver, loaded for one measured repetition and unloaded after it.
//!
//! Each measured repetition loads the driver afresh and unloads it before the next
//! baseline, because the baseline must run with no programs attached at all (the
//! `sys_exit` program runs on every syscall of every process once attached). Loading is
//! outside the timed region. [`LoadedDriver`] unloads on drop, so an error or Ctrl-C in the
//! middle of a repetition never leaves the benchmark's driver behind.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rill_abi::{maps::Category, Stat};
use rill_driver_linux::{loader, maps::DriverMaps, settings::DriverSettings, status};
use serde::Serialize;

use super::{check_stop, StopFlag};

/// The driver's counters the benchmark reports, summed over CPUs (and over categories for
/// the per-category ones). Names follow `rill-driver status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Counters {
    pub records_emitted: u64,
    pub bytes_emitted: u64,
    pub records_dropped: u64,
    pub ops_stopped: u64,
    pub writes_range_only: u64,
    pub writes_throttled: u64,
    pub ops_excluded: u64,
    pub dirty_map_full: u64,
    /// Files marked dirty (the second layer's marks, and every loss).
    pub dirty_marks: u64,
}

impl Counters {
    pub fn read(maps: &DriverMaps) -> Result<Counters> {
        let s = maps.stats().context("reading the driver's statistics")?;
        let sum =
            |base: u32| -> u64 { Category::ALL.iter().map(|c| s.get(base + *c as u32)).sum() };
        Ok(Counters {
            records_emitted: sum(Stat::EMITTED_BASE),
            bytes_emitted: s.get(Stat::BYTES),
            records_dropped: sum(Stat::DROPPED_BASE),
            ops_stopped: sum(Stat::STOPPED_BASE),
            writes_range_only: s.get(Stat::RANGE_ONLY),
            writes_throttled: s.get(Stat::THROTTLED),
            ops_excluded: s.get(Stat::EXCLUDED),
            dirty_map_full: s.get(Stat::DIRTY_MAP_FULL),
            dirty_marks: s.get(Stat::DIRTY_MARKS),
        })
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            records_emitted: self.records_emitted.saturating_sub(before.records_emitted),
            bytes_emitted: self.bytes_emitted.saturating_sub(before.bytes_emitted),
            records_dropped: self.records_dropped.saturating_sub(before.records_dropped),
            ops_stopped: self.ops_stopped.saturating_sub(before.ops_stopped),
            writes_range_only: self
                .writes_range_only
                .saturating_sub(before.writes_range_only),
            writes_throttled: self
                .writes_throttled
                .saturating_sub(before.writes_throttled),
            ops_excluded: self.ops_excluded.saturating_sub(before.ops_excluded),
            dirty_map_full: self.dirty_map_full.saturating_sub(before.dirty_map_full),
            dirty_marks: self.dirty_marks.saturating_sub(before.dirty_marks),
        }
    }

    /// Operations the driver could not record in full: RecordsDropped + OpsStopped.
    pub fn lost(&self) -> u64 {
        self.records_dropped + self.ops_stopped
    }

    pub fn add(&mut self, o: &Counters) {
        self.records_emitted += o.records_emitted;
        self.bytes_emitted += o.bytes_emitted;
        self.records_dropped += o.records_dropped;
        self.ops_stopped += o.ops_stopped;
        self.writes_range_only += o.writes_range_only;
        self.writes_throttled += o.writes_throttled;
        self.ops_excluded += o.ops_excluded;
        self.dirty_map_full += o.dirty_map_full;
        self.dirty_marks += o.dirty_marks;
    }
}

/// How many rill captures are loaded in the kernel right now, anybody's: the pinned
/// driver, the private instance of a `rill-driver capture` session or a test, or a
/// benchmark's floor; each has one program on `sys_exit`, found by its name. A baseline
/// repetition is only valid with none, a loaded or floor one with exactly the benchmark's.
pub fn captures_loaded() -> usize {
    aya::programs::loaded_programs()
        // A program may vanish between being listed and being read.
        .filter_map(|p| p.ok())
        .filter(|p| {
            p.name_as_str()
                .is_some_and(|n| n == loader::DISPATCHER || n == loader::FLOOR_EXIT)
        })
        .count()
}

/// Waits until no rill capture is loaded (freeing an unloaded one takes the kernel a
/// moment; another engineer's test may take longer), saying so if it has to wait long.
pub fn wait_no_capture(stop: &StopFlag, max: Duration) -> Result<()> {
    let t0 = Instant::now();
    let mut told = false;
    loop {
        let n = captures_loaded();
        if n == 0 {
            return Ok(());
        }
        if t0.elapsed() >= max {
            bail!(
                "{n} rill capture(s) of somebody else (pinned driver or private `capture` \
                 session) stayed loaded for {} s; the baseline cannot run beside them",
                max.as_secs()
            );
        }
        if !told && t0.elapsed() >= Duration::from_secs(2) {
            eprintln!(
                "rill-bench: {n} other rill capture(s) loaded (a test or a capture session?); \
                 waiting for them to go (at most {} s)",
                max.as_secs()
            );
            told = true;
        }
        check_stop(stop)?;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Makes sure no pinned driver is loaded before the benchmark starts. Somebody else's
/// driver (an engine's) is never unloaded silently: without `force` this is an error.
/// Returns whether a driver was unloaded.
pub fn ensure_unloaded(force: bool) -> Result<bool> {
    if !loader::is_loaded() {
        return Ok(false);
    }
    if !force {
        bail!(
            "the pinned rill driver is loaded ({}): the baseline must run without it, and \
             rill-bench will not unload somebody else's driver. Stop its user and run \
             `rill-driver unload`, or pass --force to let rill-bench unload it (it is not \
             reloaded afterwards)",
            loader::PIN_DIR
        );
    }
    loader::unload().context("unloading the pinned driver (--force)")?;
    eprintln!("rill-bench: --force: unloaded the pinned driver that was loaded at start");
    Ok(true)
}

/// The pinned driver, loaded by this benchmark. Unloaded by [`LoadedDriver::unload`] or,
/// failing that, on drop.
pub struct LoadedDriver {
    maps: Option<DriverMaps>,
    /// Whether the pins are (possibly) ours to remove.
    armed: bool,
}

impl LoadedDriver {
    /// Loads and pins the driver with `settings`, as `rill-driver load` does.
    pub fn load(settings: &DriverSettings) -> Result<LoadedDriver> {
        if loader::is_loaded() {
            bail!(
                "a pinned rill driver appeared at {} while the benchmark ran (somebody \
                 else loaded it); stopping rather than measuring or unloading it",
                loader::PIN_DIR
            );
        }
        // The guard exists before the load so a half-done load (maps pinned, attach
        // refused) is cleaned up too.
        let mut guard = LoadedDriver {
            maps: None,
            armed: true,
        };
        let instance = loader::load(settings, true).context("loading the pinned driver")?;
        // The attachment is pinned; the loading process's handles are not needed.
        drop(instance);
        let maps = DriverMaps::open_pinned().context("opening the pinned driver's maps")?;
        let me = std::process::id();
        if maps
            .excluded_pids()
            .context("reading ExcludedPids")?
            .contains(&me)
        {
            bail!("the benchmark's own pid {me} is excluded from capture; the measurement would be void");
        }
        guard.maps = Some(maps);
        Ok(guard)
    }

    fn maps(&self) -> Result<&DriverMaps> {
        self.maps
            .as_ref()
            .context("the driver was already unloaded")
    }

    pub fn counters(&self) -> Result<Counters> {
        Counters::read(self.maps()?)
    }

    /// Waits until the reader has emptied the ring (or `timeout` passed); returns how long
    /// that took and whether the ring was empty at the end.
    pub fn wait_drained(&self, timeout: Duration, stop: &StopFlag) -> Result<(Duration, bool)> {
        let ring = self
            .maps()?
            .ring
            .as_ref()
            .context("the pinned ring map is missing")?;
        let t0 = Instant::now();
        loop {
            let fill = status::ring_fill(ring).context("reading the ring's fill")?;
            if fill.used == 0 {
                return Ok((t0.elapsed(), true));
            }
            if t0.elapsed() >= timeout {
                return Ok((t0.elapsed(), false));
            }
            check_stop(stop)?;
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    pub fn unload(mut self) -> Result<()> {
        self.maps = None;
        self.armed = false;
        loader::unload().context("unloading the driver")?;
        Ok(())
    }
}

impl Drop for LoadedDriver {
    fn drop(&mut self) {
        self.maps = None;
        if !self.armed {
            return;
        }
        if let Err(e) = loader::unload() {
            eprintln!("rill-bench: could not unload the driver: {e}; run `rill-driver unload`");
        }
    }
}
