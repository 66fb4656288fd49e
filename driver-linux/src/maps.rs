//! Userspace access to the driver's maps: settings in, statistics and dirty files out.
//!
//! The same [`DriverMaps`] serves a private instance (maps taken from the loaded object)
//! and the pinned driver (maps opened from `/sys/fs/bpf/rill`), so `status`, `set` and the
//! ring reader do not care which one they talk to.

use std::os::unix::fs::MetadataExt;

use aya::{
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    Ebpf, Pod,
};
use rill_abi::{maps::user_dev_to_kernel, DirtyKey, DirtyValue, DriverConfig, Stat};

use crate::{loader, settings::DriverSettings, DriverError, Result};

// aya's Pod is a foreign trait and the ABI types are foreign too, hence the wrappers.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct PodConfig(pub DriverConfig);
// SAFETY: repr(C) plain-old-data with no padding-sensitive invariants.
unsafe impl Pod for PodConfig {}

#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct PodDirtyKey(pub DirtyKey);
// SAFETY: repr(C) of two u64.
unsafe impl Pod for PodDirtyKey {}

#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct PodDirtyValue(pub DirtyValue);
// SAFETY: repr(C) of three u64.
unsafe impl Pod for PodDirtyValue {}

fn ebpf_err(what: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError::Ebpf(format!("{what}: {e}"))
}

/// The driver's maps, owned.
pub struct DriverMaps {
    pub ring: Option<Map>,
    config: Map,
    stats: Map,
    dirty: Map,
    excluded: Map,
    watched: Map,
    generation: Map,
}

/// Counters summed over CPUs, indexed by [`Stat`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats(pub Vec<u64>);

impl Stats {
    pub fn get(&self, i: u32) -> u64 {
        self.0.get(i as usize).copied().unwrap_or(0)
    }
}

impl DriverMaps {
    /// Takes the maps out of a freshly loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<DriverMaps> {
        let mut take = |n: &str| ebpf.take_map(n).ok_or_else(|| loader::missing(n));
        Ok(DriverMaps {
            ring: Some(take("RILL_RING")?),
            config: take("RILL_CONFIG")?,
            stats: take("RILL_STATS")?,
            dirty: take("RILL_DIRTY")?,
            excluded: take("RILL_EXCLUDED")?,
            watched: take("RILL_WATCHED")?,
            generation: take("RILL_GEN")?,
        })
    }

    /// Opens the pinned driver's maps.
    pub fn open_pinned() -> Result<DriverMaps> {
        if !loader::is_loaded() {
            return Err(DriverError::NotLoaded);
        }
        let open = |n: &str| {
            let data = MapData::from_pin(loader::pin_path(n)).map_err(|e| ebpf_err(n, e))?;
            Map::from_map_data(data).map_err(|e| ebpf_err(n, e))
        };
        Ok(DriverMaps {
            ring: Some(open("RILL_RING")?),
            config: open("RILL_CONFIG")?,
            stats: open("RILL_STATS")?,
            dirty: open("RILL_DIRTY")?,
            excluded: open("RILL_EXCLUDED")?,
            watched: open("RILL_WATCHED")?,
            generation: open("RILL_GEN")?,
        })
    }

    pub fn config(&self) -> Result<DriverConfig> {
        let a: Array<&MapData, PodConfig> =
            Array::try_from(&self.config).map_err(|e| ebpf_err("RILL_CONFIG", e))?;
        Ok(a.get(&0, 0).map_err(|e| ebpf_err("RILL_CONFIG", e))?.0)
    }

    pub fn set_config(&mut self, cfg: DriverConfig) -> Result<()> {
        let mut a: Array<&mut MapData, PodConfig> =
            Array::try_from(&mut self.config).map_err(|e| ebpf_err("RILL_CONFIG", e))?;
        a.set(0, PodConfig(cfg), 0)
            .map_err(|e| ebpf_err("RILL_CONFIG", e))
    }

    /// Writes the settings the programs read: config, excluded pids, watched file systems.
    /// `extra_excluded` are pids excluded for this instance only (the reader itself).
    pub fn apply(&mut self, s: &DriverSettings) -> Result<()> {
        self.apply_with(s, &[])
    }

    pub fn apply_with(&mut self, s: &DriverSettings, extra_excluded: &[u32]) -> Result<()> {
        let mut excluded: HashMap<&mut MapData, u32, u8> =
            HashMap::try_from(&mut self.excluded).map_err(|e| ebpf_err("RILL_EXCLUDED", e))?;
        let old: Vec<u32> = excluded.keys().filter_map(|k| k.ok()).collect();
        let want: Vec<u32> = s
            .excluded_pids
            .iter()
            .chain(extra_excluded)
            .copied()
            .collect();
        for k in old.iter().filter(|k| !want.contains(k)) {
            let _ = excluded.remove(k);
        }
        for pid in &want {
            excluded
                .insert(pid, 1, 0)
                .map_err(|e| ebpf_err("RILL_EXCLUDED", e))?;
        }
        let mut watched: HashMap<&mut MapData, u64, u8> =
            HashMap::try_from(&mut self.watched).map_err(|e| ebpf_err("RILL_WATCHED", e))?;
        let old: Vec<u64> = watched.keys().filter_map(|k| k.ok()).collect();
        let mut devs = Vec::new();
        for p in &s.watched_paths {
            match std::fs::metadata(p) {
                Ok(md) => devs.push(user_dev_to_kernel(md.dev())),
                // Still watched by name: nothing on it is captured until it is back.
                Err(e) => log::warn!(
                    "WatchedPaths: {}: {e}; its file system is not captured",
                    p.display()
                ),
            }
        }
        for k in old.iter().filter(|k| !devs.contains(k)) {
            let _ = watched.remove(k);
        }
        for d in &devs {
            watched
                .insert(d, 1, 0)
                .map_err(|e| ebpf_err("RILL_WATCHED", e))?;
        }
        let mut cfg = s.driver_config();
        cfg.paused = 0;
        self.set_config(cfg)
    }

    /// Makes the driver send every open file's path again: a reader that attaches has not
    /// seen the paths sent before it.
    pub fn bump_generation(&mut self) -> Result<()> {
        let mut a: Array<&mut MapData, u64> =
            Array::try_from(&mut self.generation).map_err(|e| ebpf_err("RILL_GEN", e))?;
        let g = a.get(&0, 0).map_err(|e| ebpf_err("RILL_GEN", e))?;
        a.set(0, g.wrapping_add(1), 0)
            .map_err(|e| ebpf_err("RILL_GEN", e))
    }

    pub fn stats(&self) -> Result<Stats> {
        (0..Stat::COUNT)
            .map(|i| self.stat(i))
            .collect::<Result<Vec<u64>>>()
            .map(Stats)
    }

    /// One counter of [`Stat`], summed over the CPUs (one system call, where
    /// [`DriverMaps::stats`] makes one per counter).
    pub fn stat(&self, index: u32) -> Result<u64> {
        let a: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(&self.stats).map_err(|e| ebpf_err("RILL_STATS", e))?;
        let v = a.get(&index, 0).map_err(|e| ebpf_err("RILL_STATS", e))?;
        Ok(v.iter().sum())
    }

    /// The dirty-file map's entries, without removing them.
    pub fn dirty(&self) -> Result<Vec<(DirtyKey, DirtyValue)>> {
        let m: HashMap<&MapData, PodDirtyKey, PodDirtyValue> =
            HashMap::try_from(&self.dirty).map_err(|e| ebpf_err("RILL_DIRTY", e))?;
        Ok(m.iter()
            .filter_map(|r| r.ok())
            .map(|(k, v)| (k.0, v.0))
            .collect())
    }

    /// Removes one entry once it has been handed on (to the engine's change journal, or
    /// printed by `capture`).
    pub fn clear_dirty(&mut self, key: &DirtyKey) -> Result<()> {
        let mut m: HashMap<&mut MapData, PodDirtyKey, PodDirtyValue> =
            HashMap::try_from(&mut self.dirty).map_err(|e| ebpf_err("RILL_DIRTY", e))?;
        match m.remove(&PodDirtyKey(*key)) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(ebpf_err("RILL_DIRTY", e)),
        }
    }

    pub fn excluded_pids(&self) -> Result<Vec<u32>> {
        let m: HashMap<&MapData, u32, u8> =
            HashMap::try_from(&self.excluded).map_err(|e| ebpf_err("RILL_EXCLUDED", e))?;
        let mut v: Vec<u32> = m.keys().filter_map(|k| k.ok()).collect();
        v.sort_unstable();
        Ok(v)
    }

    pub fn watched_devs(&self) -> Result<Vec<u64>> {
        let m: HashMap<&MapData, u64, u8> =
            HashMap::try_from(&self.watched).map_err(|e| ebpf_err("RILL_WATCHED", e))?;
        let mut v: Vec<u64> = m.keys().filter_map(|k| k.ok()).collect();
        v.sort_unstable();
        Ok(v)
    }
}
