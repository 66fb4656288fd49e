//! The capture's clock.

use nix::time::{clock_gettime, ClockId};

/// CLOCK_MONOTONIC in nanoseconds, the clock the kernel programs stamp records with
/// (`bpf_ktime_get_ns`), so a time the reader takes compares with theirs (0 if the clock
/// could not be read, which Linux does not do for this clock).
pub(crate) fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |ts| {
        (ts.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec() as u64)
    })
}
