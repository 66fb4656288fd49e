//! The engine's two clocks, read in one place.
//!
//! - [`monotonic_ns`]: `CLOCK_MONOTONIC`, the clock the capture stamps operations with
//!   (`bpf_ktime_get_ns`), so "captured before or after" questions compare like with like
//!   (the mirror's hand-outs, the resolver's look-ups). It never jumps, but it means
//!   nothing across a reboot, so nothing stored on disk uses it.
//! - [`wall_ns`] and [`wall_secs`]: the time of day, for what is stored or shown (a clean
//!   stop's time, which the next run compares with files' change times; job records; the
//!   transmit loop's time stamps in statistics). A clock set before 1970 reads as 0.

use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_MONOTONIC in nanoseconds, the clock of capture timestamps.
/// (The clock cannot fail; if it did, this would read 0.)
pub fn monotonic_ns() -> u64 {
    crate::sys::time::monotonic_ns().unwrap_or(0)
}

/// The time of day in nanoseconds since the Unix epoch.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The time of day in seconds since the Unix epoch.
pub fn wall_secs() -> u64 {
    wall_ns() / 1_000_000_000
}
