//! `rill-driver status`: what the driver is doing, in the statistics' own names.

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::Map;
use rill_abi::{maps::Category, Stat};
use serde_json::{json, Value};

use crate::{loader, maps::DriverMaps, settings::DriverSettings, DriverError, Result};

/// Ring occupancy read from the ring's consumer and producer pages.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingFill {
    pub size: u64,
    pub used: u64,
}

impl RingFill {
    pub fn percent(&self) -> f64 {
        if self.size == 0 {
            0.0
        } else {
            self.used as f64 * 100.0 / self.size as f64
        }
    }

    /// Ring fill as a percentage of the stop-replicating limit (the guide's
    /// `DriverQueuePercent`).
    pub fn driver_queue_percent(&self, stop_pct: u32) -> f64 {
        if stop_pct == 0 {
            0.0
        } else {
            (self.percent() * 100.0 / stop_pct as f64).min(100.0)
        }
    }
}

/// Reads the ring's positions. The kernel exposes the consumer position in the first page
/// of the map's mmap area and the producer position in the second; aya keeps these private
/// to its reader, and status must not become a reader, so they are mapped read-only here.
pub fn ring_fill(ring: &Map) -> Result<RingFill> {
    let Map::RingBuf(data) = ring else {
        return Err(DriverError::Ebpf("RILL_RING is not a ring buffer".into()));
    };
    let size = data
        .info()
        .map_err(|e| DriverError::Ebpf(e.to_string()))?
        .max_entries() as u64;
    ring_fill_fd(data.fd().as_fd().as_raw_fd(), size)
}

/// [`ring_fill`] for a ring known by its descriptor and size (a reader's own ring).
pub fn ring_fill_fd(fd: std::os::fd::RawFd, size: u64) -> Result<RingFill> {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize;
    let mut pos = [0u64; 2];
    for (i, p) in pos.iter_mut().enumerate() {
        // SAFETY: maps one page of the ring map read-only; read one u64; unmapped below.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                (i * page) as libc::off_t,
            );
            if addr == libc::MAP_FAILED {
                return Err(DriverError::Ebpf(format!(
                    "mmap of the ring: {}",
                    std::io::Error::last_os_error()
                )));
            }
            *p = std::ptr::read_volatile(addr as *const u64);
            libc::munmap(addr, page);
        }
    }
    Ok(RingFill {
        size,
        used: pos[1].saturating_sub(pos[0]),
    })
}

/// The pinned driver's status as JSON (the text form is rendered from it).
pub fn status(settings: &DriverSettings) -> Result<Value> {
    if !loader::is_loaded() {
        return Ok(
            json!({ "loaded": false, "mode": "not loaded", "settings_mode": format!("{:?}", settings.capture_mode).to_lowercase() }),
        );
    }
    let maps = DriverMaps::open_pinned()?;
    let cfg = maps.config()?;
    let fill = match &maps.ring {
        Some(r) => ring_fill(r)?,
        None => RingFill::default(),
    };
    let stats = maps.stats()?;
    let per_cat = |base: u32| -> Value {
        Category::ALL
            .iter()
            .map(|c| (c.name().to_string(), json!(stats.get(base + *c as u32))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let sum = |base: u32| -> u64 {
        Category::ALL
            .iter()
            .map(|c| stats.get(base + *c as u32))
            .sum()
    };
    let dirty = maps.dirty()?;
    let reader = crate::ring::ReaderLock::holder();
    Ok(json!({
        "loaded": true,
        "mode": "ebpf",
        "RingSizeBytes": fill.size,
        "RingUsedBytes": fill.used,
        "RingFillPercent": (fill.percent() * 100.0).round() / 100.0,
        "DriverQueuePercent": (fill.driver_queue_percent(cfg.stop_pct) * 100.0).round() / 100.0,
        "ThrottleStartPercent": cfg.throttle_start_pct,
        "StopReplicatingPercent": cfg.stop_pct,
        "InlineDataMax": cfg.inline_max,
        "RecordsEmitted": sum(Stat::EMITTED_BASE),
        "BytesEmitted": stats.get(Stat::BYTES),
        "RecordsDropped": sum(Stat::DROPPED_BASE),
        "OpsStopped": sum(Stat::STOPPED_BASE),
        "emitted": per_cat(Stat::EMITTED_BASE),
        "dropped": per_cat(Stat::DROPPED_BASE),
        "stopped": per_cat(Stat::STOPPED_BASE),
        "WritesRangeOnly": stats.get(Stat::RANGE_ONLY),
        "WritesThrottled": stats.get(Stat::THROTTLED),
        "DirtyFiles": dirty.len(),
        "DirtyMapFull": stats.get(Stat::DIRTY_MAP_FULL),
        "OpsExcluded": stats.get(Stat::EXCLUDED),
        "OpsUnwatched": stats.get(Stat::UNWATCHED),
        "WatchedPaths": settings.watched_paths,
        "WatchedFileSystems": maps.watched_devs()?.iter().map(|d| format!("{}:{}", d >> 20, d & 0xfffff)).collect::<Vec<_>>(),
        "ExcludedPids": maps.excluded_pids()?,
        "Reader": reader.unwrap_or_else(|| "none".to_string()),
    }))
}

/// Renders the JSON status as aligned `name: value` lines.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(m) = v {
        for (k, v) in m {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                other => other.to_string(),
            };
            out.push_str(&format!("{k:<24} {text}\n"));
        }
    }
    out
}
