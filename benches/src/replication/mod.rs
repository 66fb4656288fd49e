//! `rill-bench replication`: how long until the replica equals the source, rill against
//! rsync and lsyncd, measured in one run; bytes on the wire; rill's lag under a steady load.
//!
//! Three tools, each replicating to a target directory on this machine over loopback:
//! - **rill**: a source and a target `rilld serve` ([`rill_tools::pair`]), paired by their
//!   certificates, default settings; one job per run, created and deleted around it, so no
//!   capture is loaded while a peer runs.
//! - **rsync**: a real `rsync --daemon` with one module; after the workload, one
//!   `rsync -a --delete src/ rsync://127.0.0.1:PORT/bench/...` run.
//! - **lsyncd**: `lsyncd -nodaemon` with `sync { default.rsync, source, target }` and its
//!   default settings (so its batching delay), pushing to the same rsync daemon (or, if
//!   that fails, to a local directory: the report says which).
//!
//! Scenarios: (a) writing a 1 GiB file (`dd bs=1M` from a seeded pseudo-random file),
//! (b) `tar -xf` of a real source tree, (c) 10,000 random 4 KiB overwrites inside a 1 GiB
//! file that every replica already holds. Each run gets a fresh ext4 file system for the
//! source and one for the replica ([`super::scratch_fs`]), so no run inherits another's
//! deleted inodes or dirty pages; dirty pages are written back (`sync`) before the timed
//! part. Runs rotate the tools' order in every scenario and repetition, and the report
//! gives medians.
//!
//! **Time until equal**, always from the start of the workload:
//! - rsync: the workload, then one rsync run; its end is the time (the replica is then
//!   compared in full, untimed, and a difference fails the run).
//! - rill and lsyncd: after the workload, a cheap check (rill: `in_sync`, from its status,
//!   every 10 ms; lsyncd: none, every 100 ms). When it passes, the source (the first time)
//!   and the replica are snapshotted and compared by metadata (lsyncd: file mtimes
//!   included, which rsync's `-t` sets only once a file is complete), every file's bytes
//!   are compared, and the replica is snapshotted again. If all was equal, the replica did
//!   not change during the comparison (same ctimes) and its newest ctime is older than the
//!   poll's start, the replica was equal from that start on, and the start is the result:
//!   the bench's own walks and comparison are not counted (rsync's run is timed without
//!   them too). Otherwise polling goes on.
//!
//! **Bytes on the wire** in (c): every tool's connection goes through a counting relay
//! ([`relay`]); the report also gives what each tool counts itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::workloads::{self, Tarball, TreeSpec};
use super::{check_stop, StopFlag};
use rill_tools::pair::{pair, Host, Role};

pub mod converge;
pub mod cpu;
pub mod load;
pub mod peers;
pub mod report;
pub mod rill;
mod run_fs;
pub mod tree;

use converge::{wait_equal, Outcome, DIR_MODE_GRACE, POLL_STATUS, POLL_WALK};
use peers::{Lsyncd, LsyncdTarget, RsyncDaemon};
use rill::{run_lag, Lag, RillJob};
use rill_tools::relay::{Bytes, Relay};
use run_fs::{wait_files_closed, RunFs};
use tree::Snapshot;

/// Bytes the overwrites of (c) write: 10,000 x 4 KiB (with the default count).
pub fn overwritten_bytes(writes: u64) -> u64 {
    writes * load::PAGE as u64
}

/// Pause after `sync` before every timed part.
pub(crate) const SETTLE: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Tool {
    #[serde(rename = "rill")]
    Rill,
    #[serde(rename = "rsync")]
    Rsync,
    #[serde(rename = "lsyncd")]
    Lsyncd,
}

impl Tool {
    pub const ALL: [Tool; 3] = [Tool::Rill, Tool::Rsync, Tool::Lsyncd];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Rill => "rill",
            Tool::Rsync => "rsync",
            Tool::Lsyncd => "lsyncd",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Scenario {
    /// (a) writing a large file.
    #[serde(rename = "a")]
    BigFile,
    /// (b) extracting a tarball.
    #[serde(rename = "b")]
    Tree,
    /// (c) random overwrites inside a large file.
    #[serde(rename = "c")]
    Overwrites,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::BigFile, Scenario::Tree, Scenario::Overwrites];

    pub fn letter(self) -> &'static str {
        match self {
            Scenario::BigFile => "a",
            Scenario::Tree => "b",
            Scenario::Overwrites => "c",
        }
    }

    fn index(self) -> usize {
        match self {
            Scenario::BigFile => 0,
            Scenario::Tree => 1,
            Scenario::Overwrites => 2,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The `rilld` binary.
    pub rilld: PathBuf,
    /// Where the temporary directory (images, hosts, tarball) is made.
    pub dir: PathBuf,
    pub reps: u32,
    /// Size of the file of (a) and (c).
    pub file_bytes: u64,
    /// Overwrites in (c).
    pub overwrites: u64,
    pub tree: TreeSpec,
    pub scenarios: Vec<Scenario>,
    pub tools: Vec<Tool>,
    /// The lag measurement: duration (zero: skipped) and writes per second.
    pub lag: Duration,
    pub lag_rate: u64,
    /// Longest wait for a replica to become equal, per run.
    pub timeout: Duration,
    pub seed: u64,
    /// Copy the rill hosts' and peers' logs here at the end.
    pub keep_logs: Option<PathBuf>,
}

/// One timed run of one tool in one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub tool: Tool,
    pub scenario: Scenario,
    pub rep: u32,
    /// The workload alone.
    pub workload_seconds: f64,
    /// CPU seconds the workload used (see [`cpu`]).
    pub workload_cpu_seconds: Option<f64>,
    /// CPU seconds the tool's processes used from the workload's start until the replica
    /// was found equal (rill: both rilld; rsync: the client and the daemon's side; lsyncd:
    /// lsyncd, its rsync runs and the daemon's side).
    pub tool_cpu_seconds: Option<f64>,
    /// From the workload's start until the replica was equal; `None`: failed or timed out.
    pub seconds: Option<f64>,
    /// When the replica was equal except for directory modes (the same as `seconds` when it
    /// became fully equal; earlier, or alone, when directory modes lagged or never came).
    pub seconds_except_dir_modes: Option<f64>,
    /// Why `seconds` is missing, or anything else worth knowing.
    pub note: String,
    /// Regular files whose mtime differs from the source's once equal.
    pub mtime_mismatches: usize,
    /// Cheap checks and full comparisons made while waiting.
    pub polls: u32,
    pub full_compares: u32,
    /// (c): TCP payload bytes through the relay during the timed part.
    pub wire: Option<Bytes>,
    /// (c): what the tool counts itself (rill: conBytesTx; rsync: --stats "Total bytes
    /// sent"), and back (rsync: "Total bytes received").
    pub own_bytes: Option<u64>,
    pub own_bytes_back: Option<u64>,
    /// (c): distinct 4 KiB pages the overwrites touched.
    pub distinct_pages: Option<u64>,
    /// Where lsyncd sent its rsync runs.
    pub lsyncd_target: Option<LsyncdTarget>,
}

impl Run {
    fn new(tool: Tool, scenario: Scenario, rep: u32) -> Run {
        Run {
            tool,
            scenario,
            rep,
            workload_seconds: 0.0,
            workload_cpu_seconds: None,
            tool_cpu_seconds: None,
            seconds: None,
            seconds_except_dir_modes: None,
            note: String::new(),
            mtime_mismatches: 0,
            polls: 0,
            full_compares: 0,
            wire: None,
            own_bytes: None,
            own_bytes_back: None,
            distinct_pages: None,
            lsyncd_target: None,
        }
    }
}

/// Everything one run of the benchmark measured.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicationResult {
    pub kernel: String,
    pub cpus: usize,
    pub rsync_version: String,
    pub lsyncd_version: String,
    pub reps: u32,
    pub file_bytes: u64,
    pub overwrites: u64,
    pub tarball: Option<Tarball>,
    pub runs: Vec<Run>,
    pub lag: Option<Lag>,
}

/// The p-quantile (0..=1) by nearest rank; 0 for no values.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = (p * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn preflight(cfg: &Config) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "rill-bench replication must run as root: rill's capture loads eBPF programs, and \
             the benchmark mounts scratch file systems"
        );
    }
    if !cfg.rilld.is_file() {
        bail!(
            "rilld not found at {}: build it beside rill-bench with \
             `cargo build --release -p rill-engine -p rill-bench`, or give --rilld",
            cfg.rilld.display()
        );
    }
    if cfg.tools.contains(&Tool::Rsync) || cfg.tools.contains(&Tool::Lsyncd) {
        peers::check_program("rsync")?;
    }
    if cfg.tools.contains(&Tool::Lsyncd) {
        peers::check_program("lsyncd")?;
    }
    if cfg.scenarios.contains(&Scenario::Tree) {
        workloads::check_tar()?;
    }
    Ok(())
}

/// What stays up for the whole benchmark.
struct Env<'a> {
    cfg: &'a Config,
    stop: &'a StopFlag,
    tmp: PathBuf,
    random: PathBuf,
    tarball: Option<Tarball>,
    rsyncd: Option<RsyncDaemon>,
    source: Host,
    target: Host,
    lsyncd_target: LsyncdTarget,
    runs: u32,
}

/// Runs the benchmark; progress goes to stderr.
pub fn run(cfg: &Config, stop: &StopFlag) -> Result<ReplicationResult> {
    preflight(cfg)?;
    // Declared first, dropped last: everything below lives inside it.
    let tmp = tempfile::Builder::new()
        .prefix("rill-bench-replication-")
        .tempdir_in(&cfg.dir)
        .with_context(|| format!("creating a temporary directory in {}", cfg.dir.display()))?;
    let result = run_in(cfg, stop, tmp.path());
    if let Some(keep) = &cfg.keep_logs {
        if let Err(e) = keep_logs(tmp.path(), keep) {
            eprintln!("rill-bench: keeping the logs in {}: {e:#}", keep.display());
        } else {
            eprintln!("rill-bench: logs kept in {}", keep.display());
        }
    }
    result
}

fn run_in(cfg: &Config, stop: &StopFlag, tmp: &Path) -> Result<ReplicationResult> {
    let random = tmp.join("random.bin");
    let big =
        cfg.scenarios.contains(&Scenario::BigFile) || cfg.scenarios.contains(&Scenario::Overwrites);
    let random_bytes = if big { cfg.file_bytes } else { 64 << 20 };
    eprintln!(
        "rill-bench: writing {} MiB of pseudo-random data",
        random_bytes >> 20
    );
    load::make_random_file(&random, random_bytes, cfg.seed)?;
    check_stop(stop)?;
    let tarball = if cfg.scenarios.contains(&Scenario::Tree) {
        let t = Tarball::build(&cfg.tree, tmp)?;
        eprintln!(
            "rill-bench: tarball of {}: {} files, {} dirs, {} symlinks, {:.1} MB",
            t.source.display(),
            t.files,
            t.dirs,
            t.symlinks,
            t.bytes as f64 / 1e6
        );
        Some(t)
    } else {
        None
    };
    let rsyncd = if cfg.tools.iter().any(|t| *t != Tool::Rill) {
        Some(RsyncDaemon::start(
            &tmp.join("rsyncd"),
            &tmp.join("rsync-root"),
        )?)
    } else {
        None
    };
    let source = Host::start(&cfg.rilld, &tmp.join("hosts/source"), Role::Source, "")?;
    let target = Host::start(&cfg.rilld, &tmp.join("hosts/target"), Role::Target, "")?;
    pair(&source, &target)?;
    let mut env = Env {
        cfg,
        stop,
        tmp: tmp.to_path_buf(),
        random,
        tarball,
        rsyncd,
        source,
        target,
        lsyncd_target: LsyncdTarget::Daemon,
        runs: 0,
    };

    let runs = run_every_tool(&mut env)?;
    let lag = if cfg.lag > Duration::ZERO && cfg.tools.contains(&Tool::Rill) {
        Some(lag_of_rill(&mut env)?)
    } else {
        None
    };
    Ok(ReplicationResult {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        rsync_version: peers::version("rsync", "--version"),
        lsyncd_version: peers::version("lsyncd", "--version"),
        reps: cfg.reps,
        file_bytes: cfg.file_bytes,
        overwrites: cfg.overwrites,
        tarball: env.tarball.clone(),
        runs,
        lag,
    })
}

/// Every repetition of every scenario with every tool, the tools' order rotated; a run
/// that fails is kept with its error as its note (the stop flag ends them all).
fn run_every_tool(env: &mut Env) -> Result<Vec<Run>> {
    let (cfg, stop) = (env.cfg, env.stop);
    let mut runs = Vec::new();
    for rep in 1..=cfg.reps {
        for &sc in &cfg.scenarios {
            // Rotate the order of the tools in every scenario and repetition.
            let n = cfg.tools.len();
            for i in 0..n {
                let tool = cfg.tools[(i + rep as usize + sc.index()) % n];
                let r = match run_one(env, tool, sc, rep) {
                    Ok(r) => r,
                    Err(e) if stop.load(std::sync::atomic::Ordering::Relaxed) => return Err(e),
                    Err(e) => {
                        let mut r = Run::new(tool, sc, rep);
                        r.note = format!("{e:#}");
                        r
                    }
                };
                progress(cfg, &r);
                runs.push(r);
            }
        }
    }
    Ok(runs)
}

/// The lag measurement (rill only), reported as it ends.
fn lag_of_rill(env: &mut Env) -> Result<Lag> {
    let l = run_lag(env)?;
    eprintln!(
        "rill-bench: lag: {} writes in {:.1} s, ConRPL p50 {:.1} ms p99 {:.1} ms max {:.1} ms \
         ({} samples){}",
        l.writer.writes,
        l.writer.seconds,
        l.p50_ms,
        l.p99_ms,
        l.max_ms,
        l.samples_ms.len(),
        if l.note.is_empty() {
            String::new()
        } else {
            format!("; {}", l.note)
        }
    );
    Ok(l)
}

fn progress(cfg: &Config, r: &Run) {
    let secs = r
        .seconds
        .map_or("FAILED".to_string(), |s| format!("{s:.3} s"));
    let relaxed = match (r.seconds, r.seconds_except_dir_modes) {
        (None, Some(x)) => format!("  (equal except directory modes at {x:.3} s)"),
        _ => String::new(),
    };
    let wire = r.wire.map_or(String::new(), |w| {
        format!("  wire {} B up, {} B down", w.up, w.down)
    });
    eprintln!(
        "rill-bench: rep {}/{} ({}) {:<6} {secs:>10}{relaxed} (workload {:.3} s, {} polls, {} full compares){wire}{}",
        r.rep,
        cfg.reps,
        r.scenario.letter(),
        r.tool.name(),
        r.workload_seconds,
        r.polls,
        r.full_compares,
        if r.note.is_empty() {
            String::new()
        } else {
            format!("  -- {}", r.note)
        }
    );
}

/// A peer kept running through a run.
enum Peer<'a> {
    Rill(RillJob<'a>),
    Lsyncd(Lsyncd),
    Rsync,
}

/// Waits (untimed) until the replica equals the source before a timed part.
fn initial_sync(env: &Env, fs: &RunFs, peer: &mut Peer, target_url: Option<&str>) -> Result<()> {
    let t0 = Instant::now();
    let deadline = t0 + env.cfg.timeout;
    let mut scratch = Run::new(Tool::Rill, Scenario::BigFile, 0);
    let ok = match peer {
        Peer::Rsync => {
            let url = target_url.context("rsync without a target")?;
            peers::rsync_push(&fs.src, url)?;
            return match tree::full_difference(&fs.src, &fs.dst)? {
                None => Ok(()),
                Some(d) => bail!("rsync's initial copy differs from the source: {d}"),
            };
        }
        Peer::Rill(job) => wait_equal(
            t0,
            deadline,
            &fs.src,
            &fs.dst,
            false,
            POLL_STATUS,
            &mut scratch,
            env.stop,
            || job.in_sync(),
        )?,
        Peer::Lsyncd(l) => wait_equal(
            t0,
            deadline,
            &fs.src,
            &fs.dst,
            true,
            POLL_WALK,
            &mut scratch,
            env.stop,
            || {
                l.check_running()?;
                Ok(true)
            },
        )?,
    };
    if let Outcome { at: None, diff, .. } = ok {
        bail!(
            "the replica did not become equal to the source within {} s before the timed part: {diff}",
            env.cfg.timeout.as_secs()
        );
    }
    Ok(())
}

fn run_one(env: &mut Env, tool: Tool, sc: Scenario, rep: u32) -> Result<Run> {
    env.runs += 1;
    let id = env.runs;
    let cfg = env.cfg;
    let (bytes, inodes) = match sc {
        Scenario::BigFile | Scenario::Overwrites => {
            (cfg.file_bytes + (cfg.file_bytes / 8) + (256 << 20), 4096)
        }
        Scenario::Tree => {
            let t = env.tarball.as_ref().context("no tarball")?;
            (
                2 * t.tar_bytes + (256 << 20),
                2 * (t.files + t.dirs + t.symlinks) + 1024,
            )
        }
    };
    let fs = RunFs::create(env, id, bytes, inodes)?;
    let result = run_on(env, &fs, id, tool, sc, rep);
    wait_files_closed(&fs.mounts());
    drop(fs);
    result
}

fn run_on(env: &mut Env, fs: &RunFs, id: u32, tool: Tool, sc: Scenario, rep: u32) -> Result<Run> {
    let mut run = Run::new(tool, sc, rep);
    let big = fs.src.join("big.bin");
    if sc == Scenario::Overwrites {
        load::dd(&env.random, &big, None)?;
    }
    // (c) goes through the counting relay.
    let upstream = match tool {
        Tool::Rill => std::net::SocketAddr::from(([127, 0, 0, 1], env.target.net_port)),
        _ => env.rsyncd.as_ref().context("no rsync daemon")?.addr(),
    };
    let relay = if sc == Scenario::Overwrites {
        Some(Relay::start(upstream)?)
    } else {
        None
    };
    let port = relay.as_ref().map_or(upstream.port(), |r| r.port);
    let url = match &env.rsyncd {
        Some(d) => Some(d.url(port, &fs.dst)?),
        None => None,
    };

    let mut peer = match tool {
        Tool::Rsync => Peer::Rsync,
        Tool::Rill => Peer::Rill(RillJob::start(
            &env.source,
            &format!("bench-{id}"),
            &fs.src,
            &fs.dst,
            port,
        )?),
        Tool::Lsyncd => start_lsyncd(env, fs, id, url.as_deref())?,
    };
    if tool == Tool::Lsyncd {
        run.lsyncd_target = Some(env.lsyncd_target);
    } else {
        initial_sync(env, fs, &mut peer, url.as_deref())?;
    }
    if tool == Tool::Lsyncd && env.lsyncd_target == LsyncdTarget::Local && relay.is_some() {
        run.note = "lsyncd to a local directory: no wire bytes".into();
    }

    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(SETTLE);
    check_stop(env.stop)?;
    let wire0 = relay.as_ref().map(Relay::bytes);
    let own0 = match &peer {
        Peer::Rill(job) => Some(job.bytes_tx()?),
        _ => None,
    };

    let procs = tool_procs(env, &peer);
    let tool_cpu0 = cpu::seconds_of(&procs)?;
    let own_cpu0 = cpu::own_seconds();
    let t0 = Instant::now();
    run_workload(env, fs, sc, rep, &mut run)?;
    run.workload_seconds = t0.elapsed().as_secs_f64();
    let own_cpu1 = cpu::own_seconds();
    run.workload_cpu_seconds = Some(own_cpu1 - own_cpu0);
    // The rsync client runs as this process's child, measured around it alone: the
    // comparison of the trees that follows is the benchmark's, not the tool's.
    let client_cpu = wait_for_peer(env, fs, &mut peer, url.as_deref(), t0, own0, &mut run)?;
    // The daemon's side (and lsyncd's rsync runs) count once their processes are reaped.
    for p in procs.iter().filter(|p| p.with_children) {
        p.wait_children_reaped();
    }
    run.tool_cpu_seconds = Some(client_cpu + cpu::seconds_of(&procs)? - tool_cpu0);
    if let (Some(r), Some(w0)) = (&relay, wire0) {
        if !(tool == Tool::Lsyncd && env.lsyncd_target == LsyncdTarget::Local) {
            run.wire = Some(r.bytes().since(&w0));
        }
    }
    // Stop the peer (delete the job, end lsyncd) before the relay and the file systems go.
    drop(peer);
    drop(relay);
    Ok(run)
}

/// Starts lsyncd for a run, through its initial sync; when pushing to the rsync daemon
/// fails, falls back (for this and later runs) to a local directory.
fn start_lsyncd(env: &mut Env, fs: &RunFs, id: u32, url: Option<&str>) -> Result<Peer<'static>> {
    let dir = env.tmp.join("lsyncd").join(id.to_string());
    loop {
        let target = match env.lsyncd_target {
            LsyncdTarget::Daemon => url.map(str::to_owned).context("no rsync daemon")?,
            LsyncdTarget::Local => fs.dst.to_string_lossy().into_owned(),
        };
        let mut p = Peer::Lsyncd(Lsyncd::start(&dir, &fs.src, &target)?);
        match initial_sync(env, fs, &mut p, url) {
            Ok(()) => return Ok(p),
            Err(e) if env.lsyncd_target == LsyncdTarget::Daemon => {
                let out = match &p {
                    Peer::Lsyncd(l) => l.output(),
                    _ => String::new(),
                };
                eprintln!(
                    "rill-bench: lsyncd pushing to the rsync daemon failed ({e:#}); \
                     falling back to default.rsync to a local directory. Its output:\n{out}"
                );
                env.lsyncd_target = LsyncdTarget::Local;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The scenario's workload on the source, timed.
fn run_workload(env: &Env, fs: &RunFs, sc: Scenario, rep: u32, run: &mut Run) -> Result<()> {
    let cfg = env.cfg;
    let big = fs.src.join("big.bin");
    match sc {
        Scenario::BigFile => load::dd(&env.random, &big, None)?,
        Scenario::Tree => {
            env.tarball
                .as_ref()
                .context("no tarball")?
                .extract(&fs.src.join("tree"))?;
        }
        Scenario::Overwrites => {
            let seed = cfg.seed ^ (u64::from(rep) << 32);
            run.distinct_pages = Some(load::overwrite(&big, cfg.overwrites, seed, env.stop)?);
        }
    }
    Ok(())
}

/// Waits until the replica equals the source (rsync: pushes once), filling the run's
/// times and bytes; returns the CPU seconds of the rsync client run as a child.
fn wait_for_peer(
    env: &Env,
    fs: &RunFs,
    peer: &mut Peer,
    url: Option<&str>,
    t0: Instant,
    own0: Option<u64>,
    run: &mut Run,
) -> Result<f64> {
    let cfg = env.cfg;
    let mut client_cpu = 0.0;
    let deadline = t0 + cfg.timeout;

    match peer {
        Peer::Rsync => {
            let url = url.context("no rsync daemon")?;
            let children0 = cpu::children_seconds();
            let r = peers::rsync_push(&fs.src, url)?;
            client_cpu = cpu::children_seconds() - children0;
            run.seconds = Some(t0.elapsed().as_secs_f64());
            run.seconds_except_dir_modes = run.seconds;
            run.polls = 1;
            run.full_compares = 1;
            if let Some(d) = tree::full_difference(&fs.src, &fs.dst)? {
                run.seconds = None;
                run.seconds_except_dir_modes = None;
                run.note = format!("the replica differs after the rsync run: {d}");
            }
            run.mtime_mismatches =
                Snapshot::take(&fs.src)?.mtime_mismatches(&Snapshot::take(&fs.dst)?);
            run.own_bytes = Some(r.bytes_sent);
            run.own_bytes_back = Some(r.bytes_received);
        }
        Peer::Rill(job) => {
            let c = wait_equal(
                t0,
                deadline,
                &fs.src,
                &fs.dst,
                false,
                POLL_STATUS,
                run,
                env.stop,
                || job.in_sync(),
            )?;
            finish(run, c, cfg);
            if let Some(b0) = own0 {
                run.own_bytes = Some(job.bytes_tx()?.saturating_sub(b0));
            }
        }
        Peer::Lsyncd(l) => {
            let c = wait_equal(
                t0,
                deadline,
                &fs.src,
                &fs.dst,
                true,
                POLL_WALK,
                run,
                env.stop,
                || {
                    l.check_running()?;
                    Ok(true)
                },
            )?;
            finish(run, c, cfg);
        }
    }
    Ok(client_cpu)
}

/// The long-running processes whose CPU counts for a run's tool.
fn tool_procs(env: &Env, peer: &Peer) -> Vec<cpu::Proc> {
    let daemon = env
        .rsyncd
        .as_ref()
        .map(|d| cpu::Proc::with_children(d.pid()));
    match peer {
        Peer::Rill(_) => [env.source.pid(), env.target.pid()]
            .into_iter()
            .flatten()
            .map(cpu::Proc::alone)
            .collect(),
        Peer::Rsync => daemon.into_iter().collect(),
        Peer::Lsyncd(l) => {
            let mut procs = vec![cpu::Proc::with_children(l.pid())];
            if env.lsyncd_target == LsyncdTarget::Daemon {
                procs.extend(daemon);
            }
            procs
        }
    }
}

fn finish(run: &mut Run, c: Outcome, cfg: &Config) {
    run.seconds_except_dir_modes = c.relaxed_at.map(|d| d.as_secs_f64());
    match c.at {
        Some(at) => {
            run.seconds = Some(at.as_secs_f64());
            run.mtime_mismatches = c.mtime_mismatches;
        }
        None => {
            let waited = match c.relaxed_at {
                Some(_) => format!(
                    "{} s after it was equal except for directory modes",
                    DIR_MODE_GRACE.as_secs()
                ),
                None => format!("{} s after the workload started", cfg.timeout.as_secs()),
            };
            run.note = format!(
                "the replica was not equal to the source {waited} ({})",
                c.diff
            )
        }
    }
}

/// Copies the rill hosts' logs, the rsync daemon's and lsyncd's, to `to`.
fn keep_logs(tmp: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    let copy = |from: PathBuf, name: String| {
        if from.is_file() {
            let _ = std::fs::copy(&from, to.join(name));
        }
    };
    for h in ["source", "target"] {
        let d = tmp.join("hosts").join(h);
        copy(d.join("rilld.out"), format!("{h}-rilld.out"));
        copy(d.join("log/rilld.log"), format!("{h}-rilld.log"));
        copy(d.join("rill.toml"), format!("{h}-rill.toml"));
    }
    copy(tmp.join("rsyncd/rsyncd.log"), "rsyncd.log".into());
    if let Ok(rd) = std::fs::read_dir(tmp.join("lsyncd")) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            copy(e.path().join("lsyncd.out"), format!("lsyncd-{n}.out"));
            copy(e.path().join("lsyncd.log"), format!("lsyncd-{n}.log"));
        }
    }
    Ok(())
}
