//! `rill-bench difference`: what a remirror sends of a large file with a few changed pages,
//! rill's difference mirror against `rsync` (its delta transfer), in one run.
//!
//! # How
//!
//! One file of `--size-mib` seeded pseudo-random bytes, replicated by a rill job (two
//! `rilld serve` on loopback) and pushed by `rsync -a` to an `rsync --daemon`, each
//! connection through a counting relay ([`Relay`]). Then, for each count of changes: the
//! source `rilld` is killed (`SIGKILL`), that many random 4 KiB pages of the file are
//! overwritten (the same for both tools, [`load::overwrite`]), and
//! - rill: the source is started again; the time runs from its restart until the job is in
//!   sync again after its remirror and the replica's bytes equal the source's (compared
//!   once in sync; the comparison itself is not counted when it passes at once);
//! - rsync: one `rsync -a` run, timed;
//!
//! and the bytes each relay carried (both directions) are the bytes on the wire.
//!
//! # What it does not do
//!
//! No fresh file system per run (the replication benchmark's scratch file systems): the
//! file lives in `--dir`, and the page cache holds it for both tools alike.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rill_engine::mgmt::{MirrorState, Request, Response};
use rill_tools::pair::{pair, Host, Role};
use rill_tools::relay::Relay;

use crate::replication::load::{self, make_random_file};
use crate::replication::peers::{rsync_push, RsyncDaemon};
use crate::replication::rill::RillJob;
use crate::StopFlag;

/// How long one convergence may take before the run fails.
const CONVERGE_WITHIN: Duration = Duration::from_secs(1800);
/// How often rill's status is polled.
const POLL: Duration = Duration::from_millis(20);
/// What the source logs once a remirror is done (event 4065).
const REMIRRORED: &str = "every name that waited has been remirrored";
const JOB: &str = "difference";
const FILE: &str = "db.bin";

/// One row of the result.
#[derive(Clone, Debug)]
pub struct Row {
    pub changes: u64,
    pub rill_bytes: u64,
    pub rill_seconds: f64,
    pub rsync_bytes: u64,
    pub rsync_seconds: f64,
}

/// Runs the comparison in a temporary directory made in `dir`; a Markdown table.
pub fn run(rilld: &Path, dir: &Path, size_mib: u64, changes: &[u64]) -> Result<String> {
    let tmp = tempfile::Builder::new()
        .prefix("rill-bench-difference-")
        .tempdir_in(dir)
        .with_context(|| format!("a temporary directory in {}", dir.display()))?;
    let t = tmp.path();
    let mut source = Host::start(rilld, &t.join("hosts/source"), Role::Source, "")?;
    let target = Host::start(rilld, &t.join("hosts/target"), Role::Target, "")?;
    pair(&source, &target)?;
    let (src, dst) = (t.join("src"), t.join("rill-replica"));
    std::fs::create_dir_all(&src)?;
    make_random_file(&src.join(FILE), size_mib << 20, 1)?;
    let rill_relay = Relay::start(([127, 0, 0, 1], target.net_port).into())?;
    let rsync_root = t.join("rsync");
    let rsyncd = RsyncDaemon::start(&t.join("rsyncd"), &rsync_root)?;
    let rsync_relay = Relay::start(rsyncd.addr())?;
    let rsync_dir = rsync_root.join("replica");
    std::fs::create_dir_all(&rsync_dir)?;
    let url = rsyncd.url(rsync_relay.port, &rsync_dir)?;
    rsync_push(&src, &url)?;
    // Ends with the hosts, which the temporary directory's removal follows.
    RillJob::create(&source, JOB, &src, &dst, rill_relay.port)?;
    converge(&source, &src, &dst, 0)?;
    let mut rows = Vec::new();
    for (i, &n) in changes.iter().enumerate() {
        mirror_recorded(&source)?;
        let remirrors = source.event_log().matches(REMIRRORED).count();
        source.kill()?;
        load::overwrite(&src.join(FILE), n, 100 + i as u64, &StopFlag::new(false))?;
        let before = rill_relay.bytes();
        let t0 = Instant::now();
        source.restart()?;
        converge(&source, &src, &dst, remirrors)?;
        let rill_seconds = t0.elapsed().as_secs_f64();
        let rill = rill_relay.bytes().since(&before);
        let before = rsync_relay.bytes();
        let rs = rsync_push(&src, &url)?;
        let rsync = rsync_relay.bytes().since(&before);
        if !same_bytes(&src.join(FILE), &rsync_dir.join(FILE))? {
            bail!("rsync's replica differs after its run");
        }
        rows.push(Row {
            changes: n,
            rill_bytes: rill.up + rill.down,
            rill_seconds,
            rsync_bytes: rsync.up + rsync.down,
            rsync_seconds: rs.seconds,
        });
    }
    Ok(table(size_mib, &rows))
}

/// Waits until the source logged more than `remirrors` finished remirrors (none asked
/// for: 0 and the first mirror), the job is in sync and the replica's file equals the
/// source's.
fn converge(source: &Host, src: &Path, dst: &Path, remirrors: usize) -> Result<()> {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let remirrored =
            remirrors == 0 || source.event_log().matches(REMIRRORED).count() > remirrors;
        if remirrored
            && rill_tools::pair::in_sync(source, JOB).unwrap_or(false)
            && same_bytes(&src.join(FILE), &dst.join(FILE)).unwrap_or(false)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("rill's replica did not converge within {CONVERGE_WITHIN:?}");
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until the daemon recorded the job's mirror as complete: a source killed before
/// that mirrors everything again at its restart.
fn mirror_recorded(source: &Host) -> Result<()> {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    while Instant::now() < deadline {
        if let Response::Jobs(jobs) = source.call(Request::JobList)? {
            if jobs.iter().all(|j| j.mirror == MirrorState::Complete) {
                return Ok(());
            }
        }
        std::thread::sleep(POLL);
    }
    bail!("the job's mirror was not recorded as complete")
}

/// Whether two files hold the same bytes, read a MiB at a time.
fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn table(size_mib: u64, rows: &[Row]) -> String {
    let mut out = format!(
        "A {size_mib} MiB file, random 4 KiB pages overwritten while the source was down\n\n\
         | pages overwritten | rill bytes on the wire | rill time to equal | rsync bytes on the wire | rsync time to equal |\n\
         |---:|---:|---:|---:|---:|\n"
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.1} s | {} | {:.1} s |\n",
            r.changes, r.rill_bytes, r.rill_seconds, r.rsync_bytes, r.rsync_seconds
        ));
    }
    out
}
