//! One fuzzer run: two real `rilld serve` processes paired on loopback, a relay between
//! them that can cut the link, a workload under the job's source, the plan's disruptions
//! while it runs, and at the end a comparison of the trees.
//!
//! # Verdict
//! A run passes when, within [`SETTLE`] of the workload's end, the source reports the job
//! in sync and the replica equals the source (names, types, modes, owners, file times,
//! bytes, symlink texts, extended attributes, hard-link groups). Otherwise it fails,
//! worst first: *silent* when the job said it was in sync over a replica that differed,
//! *stuck* when it never said so. A failed run keeps its directory: both hosts' logs, the
//! trees, and `ops.txt`, the operations as performed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rill_engine::mgmt::{JobAction, Request};
use rill_engine::storage::job_store::{JobRule, JobSpec, JobTarget};
use rill_tools::pair::{in_sync, pair, Host, Role};
use rill_tools::relay::Relay;

use super::generate::Generator;
use super::ops::WOp;
use super::plan::{Disruption, Plan, Start};
use crate::tree::{differences, snapshot};

/// Both hosts' settings: extended attributes replicated (compared too), and short
/// network timers so a silent cut or a dead peer is noticed within seconds.
const SETTINGS: &str = "ExtendedAttributes = 1\nNetworkTimeout = 6\nNetworkRetry = 1\n";
/// How long after the workload (and the last disruption) the replica has to converge. A
/// remirror of the tree after a `kill -9` takes seconds; this leaves ample room on a
/// loaded 2-core machine.
pub const SETTLE: Duration = Duration::from_secs(120);
/// How long the job may report in sync over a replica that differs before the run is
/// judged a silent divergence (a status read just before the last apply is not one).
const SILENT_AFTER: Duration = Duration::from_secs(10);
/// How long a killed host stays down before it is started again.
const DOWN: Duration = Duration::from_millis(300);
const JOB: &str = "fuzz";

/// Where a run's operations come from.
pub enum Ops<'a> {
    /// The seeded generator, choosing from the tree as it is.
    Generated,
    /// These, in order (a saved or minimized run); `prefill` of them come first.
    Recorded(&'a [WOp]),
}

/// How a run failed.
#[derive(Debug)]
pub enum Failure {
    /// The job reported itself in sync while the replica differed.
    Silent {
        differing: Vec<String>,
        dir: PathBuf,
    },
    /// The job never reported itself in sync (or the trees never matched while it did not).
    Stuck {
        status: String,
        differing: Vec<String>,
        dir: PathBuf,
    },
    /// The harness itself could not do what the plan says (a host would not start...).
    Harness(anyhow::Error),
}

impl Failure {
    /// The directory kept for a look at the run, if any.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Failure::Silent { dir, .. } | Failure::Stuck { dir, .. } => Some(dir),
            Failure::Harness(_) => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Silent { differing, dir } => write!(
                f,
                "SILENT DIVERGENCE: the job reports in sync, the replica differs (run kept in {}):\n{}",
                dir.display(),
                differing.join("\n")
            ),
            Failure::Stuck { status, differing, dir } => write!(
                f,
                "NOT CONVERGED within {SETTLE:?} (run kept in {}); status {status}\n{}",
                dir.display(),
                differing.join("\n")
            ),
            Failure::Harness(e) => write!(f, "harness: {e:#}"),
        }
    }
}

/// What a passing run did.
#[derive(Debug)]
pub struct Passed {
    pub ops: usize,
    /// Operations the kernel refused (part of the workload).
    pub refused: usize,
    /// From the workload's start until the replica was equal.
    pub elapsed: Duration,
}

/// The two hosts, the relay between them, and the trees.
struct Rig {
    source: Host,
    target: Host,
    relay: Relay,
    src: PathBuf,
    dst: PathBuf,
}

impl Rig {
    fn start(dir: &Path) -> Result<Rig> {
        let rilld = crate::rilld_bin();
        let source = Host::start(rilld, &dir.join("source-host"), Role::Source, SETTINGS)?;
        let target = Host::start(rilld, &dir.join("target-host"), Role::Target, SETTINGS)?;
        pair(&source, &target)?;
        let relay = Relay::start(([127, 0, 0, 1], target.net_port).into())?;
        let src = dir.join("src");
        std::fs::create_dir_all(&src)?;
        Ok(Rig {
            source,
            target,
            relay,
            src,
            dst: dir.join("replica"),
        })
    }

    fn job(&self, action: JobAction) -> Result<()> {
        self.source.call(Request::Job {
            name: JOB.into(),
            action,
        })?;
        Ok(())
    }

    fn start_job(&self) -> Result<()> {
        self.source.call(Request::JobCreate(JobSpec {
            name: JOB.into(),
            source: self.src.clone(),
            target: JobTarget::Network {
                host: "127.0.0.1".into(),
                port: self.relay.port,
                path: self.dst.clone(),
            },
            rules: Vec::<JobRule>::new(),
        }))?;
        self.job(JobAction::Start)
    }

    fn disrupt(&mut self, what: Disruption) -> Result<()> {
        match what {
            Disruption::Stop { ms } => {
                self.job(JobAction::Stop)?;
                std::thread::sleep(Duration::from_millis(ms));
                self.job(JobAction::Start)
            }
            Disruption::KillSource | Disruption::KillTarget => {
                let host = match what {
                    Disruption::KillSource => &mut self.source,
                    _ => &mut self.target,
                };
                host.kill()?;
                std::thread::sleep(DOWN);
                host.restart()
            }
            Disruption::Cut { how, ms } => {
                self.relay.cut(how);
                std::thread::sleep(Duration::from_millis(ms));
                self.relay.restore();
                Ok(())
            }
        }
    }
}

/// Runs `plan` in a fresh directory under `base`, removed if the run passes.
pub fn run(plan: &Plan, ops: Ops, base: &Path) -> Result<Passed, Failure> {
    let dir = base.join(format!(
        "rill-replfuzz-{}-{}",
        plan.seed,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let result = std::fs::create_dir_all(&dir)
        .context("creating the run's directory")
        .map_err(Failure::Harness)
        .and_then(|()| run_in(plan, ops, &dir));
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run_in(plan: &Plan, ops: Ops, dir: &Path) -> Result<Passed, Failure> {
    let mut rig = Rig::start(dir).map_err(Failure::Harness)?;
    let log = std::fs::File::create(dir.join("ops.txt"))
        .context("creating ops.txt")
        .map_err(Failure::Harness)?;
    let mut workload = Workload {
        generator: Generator::new(plan.seed),
        recorded: match ops {
            Ops::Generated => None,
            Ops::Recorded(o) => Some(o.iter()),
        },
        log: std::io::BufWriter::new(log),
        root: rig.src.clone(),
        refused: 0,
    };
    writeln!(workload.log, "# {plan}").map_err(|e| Failure::Harness(e.into()))?;
    for _ in 0..plan.prefill {
        workload.step();
    }
    if plan.start == Start::Before {
        rig.start_job().map_err(Failure::Harness)?;
    }
    let began = Instant::now();
    let done = AtomicUsize::new(0);
    let (disrupted, refused) = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let t0 = Instant::now();
            for i in 0..plan.ops {
                if !workload.step() {
                    break;
                }
                done.store(i + 1, Ordering::SeqCst);
                let due = t0 + Duration::from_secs_f64((i + 1) as f64 / f64::from(plan.rate));
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            done.store(usize::MAX, Ordering::SeqCst);
            let _ = workload.log.flush();
            workload.refused
        });
        let disrupted = drive(&mut rig, plan, &done);
        (disrupted, worker.join().unwrap_or(0))
    });
    disrupted.map_err(Failure::Harness)?;
    if plan.start == Start::After {
        rig.start_job().map_err(Failure::Harness)?;
    }
    settle(&rig, dir)?;
    Ok(Passed {
        ops: plan.ops,
        refused,
        elapsed: began.elapsed(),
    })
}

/// Starts the job (if the plan says during) and performs each disruption as the workload
/// reaches its point.
fn drive(rig: &mut Rig, plan: &Plan, done: &AtomicUsize) -> Result<()> {
    let wait_for = |at: usize| {
        while done.load(Ordering::SeqCst) < at {
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let mut started = plan.start == Start::Before;
    for e in &plan.events {
        if let Start::During(at) = plan.start {
            if !started && at <= e.at {
                wait_for(at);
                rig.start_job()?;
                started = true;
            }
        }
        wait_for(e.at);
        if started {
            rig.disrupt(e.what)
                .with_context(|| format!("{} at op {}", e.what, e.at))?;
        }
    }
    if let (Start::During(at), false) = (plan.start, started) {
        wait_for(at);
        rig.start_job()?;
    }
    Ok(())
}

/// Waits for the job to report in sync over an equal replica, and judges the run.
fn settle(rig: &Rig, dir: &Path) -> Result<(), Failure> {
    let deadline = Instant::now() + SETTLE;
    let mut synced_since: Option<Instant> = None;
    loop {
        let synced = in_sync(&rig.source, JOB).unwrap_or(false);
        if synced {
            let (a, b) = (snapshot(&rig.src), snapshot(&rig.dst));
            if a == b {
                return Ok(());
            }
            // In sync over a different replica. An operation applied between the status
            // and the walk is not a divergence, so it must stay so for a while.
            let since = *synced_since.get_or_insert_with(Instant::now);
            if since.elapsed() > SILENT_AFTER {
                keep_evidence(rig);
                return Err(Failure::Silent {
                    differing: differences(&a, &b, 12),
                    dir: dir.to_path_buf(),
                });
            }
        } else {
            synced_since = None;
        }
        if Instant::now() > deadline {
            keep_evidence(rig);
            let status = rig
                .source
                .job_status(JOB)
                .map_or_else(|e| e.to_string(), |s| format!("{s:?}"));
            return Err(Failure::Stuck {
                status,
                differing: differences(&snapshot(&rig.src), &snapshot(&rig.dst), 12),
                dir: dir.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Keeps, beside each host's logs, what a failed run's processes were doing: the job's
/// status as the source reports it, and every thread's stack (by `gdb`, when installed),
/// since a job that claims to be in sync while it sends nothing is stuck somewhere its
/// logs do not say.
fn keep_evidence(rig: &Rig) {
    let status = rig
        .source
        .job_status(JOB)
        .map_or_else(|e| e.to_string(), |s| format!("{s:#?}"));
    let _ = std::fs::write(rig.source.dir.join("status.txt"), status);
    for host in [&rig.source, &rig.target] {
        let Some(pid) = host.pid() else { continue };
        let out = std::process::Command::new("gdb")
            .args([
                "-p",
                &pid.to_string(),
                "-batch",
                "-ex",
                "thread apply all bt",
            ])
            .output();
        let text = match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(e) => format!("gdb: {e}"),
        };
        let _ = std::fs::write(host.dir.join("stacks.txt"), text);
    }
}

/// The workload's state: where operations come from, and the log of those performed.
struct Workload<'a> {
    generator: Generator,
    recorded: Option<std::slice::Iter<'a, WOp>>,
    log: std::io::BufWriter<std::fs::File>,
    root: PathBuf,
    refused: usize,
}

impl Workload<'_> {
    /// Performs the next operation; false when a recorded list is exhausted.
    fn step(&mut self) -> bool {
        let op = match &mut self.recorded {
            Some(it) => match it.next() {
                Some(op) => op.clone(),
                None => return false,
            },
            None => self.generator.next(&self.root),
        };
        let result = op.apply(&self.root);
        self.refused += usize::from(result.is_err());
        // The wall-clock time, to find the operation in the hosts' logs.
        let at = humantime_utc();
        let _ = match result {
            Ok(()) => writeln!(self.log, "{op}\t# {at}{}", self.inode(&op)),
            Err(e) => writeln!(self.log, "{op}\t# {at} {e}"),
        };
        true
    }
}

impl Workload<'_> {
    /// ` ino=N`: the inode the operation changed or made, to follow a file through its
    /// names, links and the symlinks written through when a run is looked at.
    fn inode(&self, op: &WOp) -> String {
        use std::os::unix::fs::MetadataExt;
        let Some((path, follows)) = op.changed() else {
            return String::new();
        };
        let path = self.root.join(path);
        let m = if follows {
            std::fs::metadata(&path)
        } else {
            std::fs::symlink_metadata(&path)
        };
        m.map_or_else(|_| String::new(), |m| format!(" ino={}", m.ino()))
    }
}

/// Now as `HH:MM:SS.mmm` UTC, the form the hosts' logs use.
fn humantime_utc() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let day = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        day % 3600 / 60,
        day % 60,
        now.subsec_millis()
    )
}
