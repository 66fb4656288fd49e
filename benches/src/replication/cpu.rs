//! CPU time used during a timed part, by the workload and by the replicating tool.
//!
//! Every process of a run shares the machine's few vCPUs, so no tool's time until equal
//! can drop below (the workload's CPU + the tool's CPU) / vCPUs, however well it overlaps
//! its work with the workload's. The report gives both next to the wall times, so a result
//! can be read against that bound, and a change to a tool can be judged by the CPU it saves,
//! which a shared machine disturbs less than wall time.
//!
//! The times are the kernel's accounting: `/proc/PID/stat` for the tools' processes (utime
//! and stime of all their threads, and with [`Proc::with_children`] cutime and cstime of the
//! children they reaped: an rsync daemon's per-connection processes, lsyncd's rsync runs),
//! and `getrusage` for the benchmark's own children (`tar`, `dd`, the rsync client) and
//! its calling thread (the overwrites of (c)). The resolution is the clock tick (10 ms).
//! rill's capture runs in the system calls it watches, so its cost shows in the
//! workload's CPU, not in rilld's.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A process whose CPU time counts for a tool.
#[derive(Clone, Copy, Debug)]
pub struct Proc {
    pub pid: u32,
    /// Count the children it reaped too.
    pub with_children: bool,
}

impl Proc {
    pub fn alone(pid: u32) -> Proc {
        Proc {
            pid,
            with_children: false,
        }
    }

    pub fn with_children(pid: u32) -> Proc {
        Proc {
            pid,
            with_children: true,
        }
    }

    /// CPU seconds used so far.
    fn seconds(self) -> Result<f64> {
        let path = format!("/proc/{}/stat", self.pid);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // The command name, in parentheses, may hold spaces and parentheses itself: the
        // fields that follow start after the last ')'.
        let rest = text
            .rsplit_once(')')
            .map(|(_, r)| r)
            .with_context(|| format!("{path}: no ')' after the command name"))?;
        // After the name: state (field 3) ... utime (14), stime (15), cutime (16), cstime (17).
        let field = |n: usize| -> Result<u64> {
            rest.split_whitespace()
                .nth(n - 3)
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("{path}: field {n} is missing or not a number"))
        };
        let mut ticks = field(14)? + field(15)?;
        if self.with_children {
            ticks += field(16)? + field(17)?;
        }
        Ok(ticks as f64 / clock_ticks_per_second())
    }

    /// Waits (at most 2 s) until the process has no child left unreaped, so that its
    /// children's time is in its own count.
    pub fn wait_children_reaped(self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while has_children(self.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system and has no other effect.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0,
    }
}

/// Whether any process, running or a zombie, has `pid` as its parent.
fn has_children(pid: u32) -> bool {
    // The kernel lists a thread's children in /proc/PID/task/TID/children; the daemons
    // counted here fork from their main thread, whose TID is the PID.
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .is_ok_and(|s| !s.trim().is_empty())
}

/// The summed CPU seconds of some processes.
pub fn seconds_of(procs: &[Proc]) -> Result<f64> {
    procs.iter().map(|p| p.seconds()).sum()
}

/// CPU seconds of this process's reaped children plus those of the calling thread.
pub fn own_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_CHILDREN) + rusage_seconds(libc::RUSAGE_THREAD)
}

/// CPU seconds of this process's reaped children.
pub fn children_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_CHILDREN)
}

fn rusage_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct it is given and nothing else; zeroed is a valid
    // value of the plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN and RUSAGE_THREAD are valid selectors.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count moves with real work: a child that spins for a while is in
    /// `own_seconds` once reaped, and this process's own count grows while it spins.
    #[test]
    fn counts_what_runs() {
        let me = Proc::alone(std::process::id());
        let before = (own_seconds(), seconds_of(&[me]).unwrap());
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        // A fixed amount of work (not of wall time, which a loaded machine stretches).
        let mut x = 0u64;
        for _ in 0..200_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = (own_seconds(), seconds_of(&[me]).unwrap());
        assert!(after.0 - before.0 > 0.05, "{before:?} -> {after:?}");
        assert!(after.1 - before.1 > 0.05, "{before:?} -> {after:?}");
        assert!(
            children_seconds() <= after.0,
            "children are part of own_seconds"
        );
    }

    #[test]
    fn a_missing_process_is_an_error() {
        // Beyond the largest pid Linux hands out (4,194,304).
        let e = seconds_of(&[Proc::alone(5_000_000)]).unwrap_err();
        assert!(format!("{e:#}").contains("/proc/5000000/stat"), "{e:#}");
    }
}
