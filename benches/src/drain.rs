//! The ring reader: a separate process, as the engine is.
//!
//! `rill-bench drain` (hidden subcommand, started by the benchmark) takes the pinned
//! ring's reader lock, attaches to the ring with the driver's [`RingReader`], prints
//! `ready`, and drains until SIGTERM, counting records and payload bytes. It drains in the
//! driver's bounded batches (at most [`RingReader::BATCH`] records per `poll` or `drain`),
//! as the engine does. Records are decoded into events (inline data copied) and then
//! discarded: decoding is what the engine pays per record, queueing and sending are not
//! part of the capture's cost. On SIGTERM it drains what is left and prints one JSON
//! [`DrainSummary`] line.
//!
//! The parent's side is [`DrainChild`]: it spawns the child in its own process group (a
//! Ctrl-C on the terminal reaches the benchmark, which then stops the child by pid) and
//! kills it on drop. The child also asks the kernel for SIGTERM when its parent dies, so a
//! killed benchmark does not leave a reader behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use rill_driver_linux::{
    maps::DriverMaps,
    ring::{ReaderLock, RingReader},
    status,
};
use rill_ops::{Event, Op};
use serde::{Deserialize, Serialize};

/// What the reader saw, printed by the child as one JSON line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DrainSummary {
    /// Records drained and decoded (including corrupt ones).
    pub records: u64,
    /// Payload bytes decoded: paths, names and inline write data.
    pub bytes: u64,
    /// From `ready` to the end of the final drain.
    pub seconds: f64,
    /// From the first record to the last one.
    pub busy_seconds: f64,
    /// Records that did not decode (a driver/ABI mismatch).
    pub corrupt: u64,
    /// Highest ring fill seen, sampled every 2 ms.
    pub peak_fill_percent: f64,
    /// Most records returned by one batch (at most [`RingReader::BATCH`]).
    pub largest_batch: u64,
    /// The reader's peak resident memory.
    pub max_rss_kib: u64,
    /// CPU time the reader process used (user + system), all threads.
    pub cpu_seconds: f64,
}

const SAMPLE_EVERY: Duration = Duration::from_millis(2);
const POLL_TIMEOUT: Duration = Duration::from_millis(10);

/// The body of `rill-bench drain`.
pub fn run_child() -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing a signal handler")?;
    }
    // Stop with the benchmark, even if it is killed.
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).context("prctl(PR_SET_PDEATHSIG)")?;

    let _lock = ReaderLock::acquire()?;
    let mut maps = DriverMaps::open_pinned()?;
    let ring = maps.ring.take().context("the pinned ring map is missing")?;
    let mut reader = RingReader::new(ring)?;
    // As every reader that attaches does (`capture --attach`, the engine): paths sent
    // before it attached are sent again.
    maps.bump_generation()?;
    // Ring fill is sampled by a thread of its own, on a clock: between batches the reader
    // has just taken records out, or has waited in `poll` for the ring to fill.
    let sampler = FillSampler::start(Arc::clone(&stop))?;

    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").context("writing to the benchmark")?;
    out.flush().context("writing to the benchmark")?;

    let start = Instant::now();
    let mut s = DrainSummary::default();
    let mut events: Vec<Event> = Vec::with_capacity(RingReader::BATCH);
    let mut first: Option<Instant> = None;
    let mut last = start;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let any = if stopping {
            reader.drain(&mut events)
        } else {
            reader.poll(POLL_TIMEOUT, &mut events)? > 0
        };
        let corrupt = reader.corrupt - s.corrupt;
        let n = events.len() as u64 + corrupt;
        if n > 0 {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            s.records += n;
            s.corrupt += corrupt;
            s.largest_batch = s.largest_batch.max(n);
            s.bytes += events.iter().map(payload_bytes).sum::<u64>();
            events.clear();
        }
        if stopping && !any {
            break;
        }
    }
    s.seconds = start.elapsed().as_secs_f64();
    s.busy_seconds = first.map_or(0.0, |f| (last - f).as_secs_f64());
    s.peak_fill_percent = sampler.finish()?;
    (s.max_rss_kib, s.cpu_seconds) = usage();
    writeln!(out, "{}", serde_json::to_string(&s)?).context("writing to the benchmark")?;
    out.flush().context("writing to the benchmark")?;
    Ok(())
}

/// Samples the ring's fill every [`SAMPLE_EVERY`] through a second, read-only handle on
/// the pinned ring (as `rill-driver status` does; it never consumes) and keeps the peak.
struct FillSampler {
    thread: std::thread::JoinHandle<Result<f64>>,
}

impl FillSampler {
    fn start(stop: Arc<AtomicBool>) -> Result<FillSampler> {
        let probe = DriverMaps::open_pinned()?;
        let thread = std::thread::Builder::new()
            .name("fill-sampler".into())
            .spawn(move || -> Result<f64> {
                let ring = probe
                    .ring
                    .as_ref()
                    .context("the pinned ring map is missing")?;
                let mut peak: f64 = 0.0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(status::ring_fill(ring)?.percent());
                    std::thread::sleep(SAMPLE_EVERY);
                }
                Ok(peak)
            })
            .context("starting the fill sampler")?;
        Ok(FillSampler { thread })
    }

    /// The peak fill, once the stop flag is set.
    fn finish(self) -> Result<f64> {
        match self.thread.join() {
            Ok(r) => r,
            Err(_) => bail!("the fill sampler panicked"),
        }
    }
}

/// Bytes of an event the engine would carry: its paths and names, and inline data.
fn payload_bytes(ev: &Event) -> u64 {
    let extra = match &ev.op {
        Op::Write { data: Some(d), .. } => d.len(),
        Op::Rename { new_path, .. } => new_path.as_os_str().len(),
        Op::Link { target } => target.as_os_str().len(),
        Op::Symlink { target } => target.len(),
        Op::SetXattr { name, .. } | Op::RemoveXattr { name } => name.len(),
        _ => 0,
    };
    (ev.path.as_os_str().len() + extra) as u64
}

/// The process's (peak RSS in KiB, CPU seconds).
fn usage() -> (u64, f64) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return (0, 0.0);
        }
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        ru.ru_maxrss.max(0) as u64,
        secs(ru.ru_utime) + secs(ru.ru_stime),
    )
}

/// The running reader, seen from the benchmark.
pub struct DrainChild {
    child: Option<Child>,
    out: BufReader<ChildStdout>,
}

impl DrainChild {
    /// Starts `exe drain` and waits until it has attached to the ring.
    pub fn spawn(exe: &Path) -> Result<DrainChild> {
        let mut child = Command::new(exe)
            .arg("drain")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting the reader `{} drain`", exe.display()))?;
        let Some(stdout) = child.stdout.take() else {
            bail!("the reader's stdout was not captured");
        };
        let mut me = DrainChild {
            child: Some(child),
            out: BufReader::new(stdout),
        };
        let mut line = String::new();
        me.out
            .read_line(&mut line)
            .context("waiting for the reader to attach")?;
        if line.trim() != "ready" {
            let status = me.child.take().map(|mut c| c.wait());
            bail!(
                "the reader (`rill-bench drain`) did not attach to the ring ({}); its error is above",
                match status {
                    Some(Ok(s)) => s.to_string(),
                    _ => "no exit status".into(),
                }
            );
        }
        Ok(me)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Stops the reader (SIGTERM by pid), which drains what is left, and returns its summary.
    pub fn stop(mut self) -> Result<DrainSummary> {
        let Some(mut child) = self.child.take() else {
            bail!("the reader already stopped");
        };
        signal(&child, Signal::SIGTERM);
        let mut text = String::new();
        let read = self.out.read_to_string(&mut text);
        let status = child.wait().context("waiting for the reader")?;
        read.context("reading the reader's summary")?;
        if !status.success() {
            bail!("the reader failed ({status}); its error is above");
        }
        let line = text.lines().last().unwrap_or_default();
        serde_json::from_str(line)
            .with_context(|| format!("the reader's summary is not valid JSON: {line:?}"))
    }
}

impl Drop for DrainChild {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(&child, Signal::SIGKILL);
        let _ = child.wait();
    }
}

fn signal(child: &Child, sig: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}
