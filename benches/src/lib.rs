//! rill-bench: rill's benchmarks, run as `rill-bench <name>`, and criterion
//! micro-benchmarks of the hot paths (`cargo bench -p rill-bench`, in `benches/benches/`).
//!
//! The harness measures whole stages against their baselines (capture overhead, the
//! engine's queues, replication against rsync and lsyncd); the micro-benchmarks time one
//! step each (record decode, queue push and pop, frame encode and decode, apply dispatch),
//! so a regression in one stage shows without running a replication. It is a crate of its
//! own so that neither the engine nor the tools carry benchmark code or its dependencies.
//!
//! Every throughput or overhead claim must come from a measurement taken side by side with
//! its baseline in the same run, never assumed or carried over from another run. The machines rill is
//! developed on are small, shared virtual machines whose speed drifts by tens of percent
//! over minutes, and the benchmarks are built around that:
//!
//! - **Alternation against noise.** Baseline and measured repetitions alternate
//!   (B L B L …; `capture` has a third variant, the floor, and rotates the order of the
//!   three) rather than running every baseline first: a slow minute then hits every
//!   variant, not one. Results are medians, so one disturbed repetition on either side does
//!   not move them, and the raw times are kept (`--json`) so the spread can be judged.
//! - **The driver as installed.** The measured variant loads the *pinned* driver (programs
//!   and maps under `/sys/fs/bpf/rill`, exactly what `rill-driver load` installs) with the
//!   default settings or those given on the command line, written to a temporary settings
//!   file; `/etc` is never read or written. The baseline runs with no driver loaded at all,
//!   and the benchmark refuses to start while somebody else's driver is loaded.
//! - **A separate reader process.** The capture costs the writer (the eBPF programs run in
//!   its syscall exits) and whoever drains the ring. In production the engine drains it
//!   from its own process, normally on another CPU, and the applications it watches are
//!   not excluded. [`drain`] does the same: the benchmark re-executes itself as
//!   `rill-bench drain`, which attaches to the pinned ring under the reader lock and
//!   drains it while the workload runs in the parent, whose pid is *not* excluded. A
//!   reader thread inside the benchmark would share its address space, allocator and
//!   scheduling, and would hide the cost of a context switch between processes.
//! - **Decode included.** The reader uses the driver's own [`RingReader`], which decodes
//!   every record into an event (copying inline data), because that is what the engine
//!   pays per record; the drain rate is therefore an engine-side rate, not a memcpy rate.
//! - **Warm caches, both sides.** Nothing is dropped from the page cache: the workloads
//!   are page-cache workloads on purpose (the capture overhead is largest relative to a
//!   fast syscall), each is run once untimed before measuring, and every repetition
//!   starts from the same state (same file for the writes, a fresh directory for `tar`).
//!
//! [`RingReader`]: rill_driver_linux::ring::RingReader

use std::sync::atomic::{AtomicBool, Ordering};

pub mod capture;
pub mod difference;
pub mod drain;
pub mod driver;
pub mod engine;
pub mod journal;
pub mod replication;
pub mod report;
pub mod scratch_fs;
pub mod workloads;

/// Set by SIGINT/SIGTERM; long loops check it and return [`interrupted`], so that every
/// guard (loaded driver, drain child, temporary directories) is dropped and cleans up.
pub type StopFlag = AtomicBool;

/// Fails with "interrupted" once the stop flag is set.
pub fn check_stop(stop: &StopFlag) -> anyhow::Result<()> {
    if stop.load(Ordering::Relaxed) {
        Err(interrupted())
    } else {
        Ok(())
    }
}

/// Runs `cmd`; its standard output, trimmed, or an error with its standard error.
pub fn run(cmd: &mut std::process::Command) -> anyhow::Result<String> {
    use anyhow::Context;
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn interrupted() -> anyhow::Error {
    anyhow::anyhow!("interrupted; the driver was unloaded and temporary files removed")
}
