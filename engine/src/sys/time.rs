//! Clocks.

use std::io;

use nix::time::{clock_gettime, ClockId};

use super::errno;

/// `CLOCK_MONOTONIC` in nanoseconds.
pub(crate) fn monotonic_ns() -> io::Result<u64> {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(errno)?;
    Ok(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
}
