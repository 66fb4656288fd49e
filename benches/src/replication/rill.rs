//! rill's side: one job per run, and the ConRPL measurement under a steady load.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rill_engine::mgmt::{JobAction, Request};
use rill_engine::storage::job_store::{JobSpec, JobTarget};
use serde::Serialize;

use super::converge::{wait_equal, POLL_STATUS};
use super::{
    initial_sync, load, percentile, wait_files_closed, Env, Peer, Run, RunFs, Scenario, Tool,
    SETTLE,
};
use rill_tools::pair::{in_sync, Host};

/// How often ConRPL is sampled during the lag measurement.
const LAG_SAMPLE: Duration = Duration::from_millis(50);

/// The lag measurement.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Lag {
    pub rate: u64,
    pub writer: load::Paced,
    /// ConRPL samples during the writer's run, milliseconds, in order.
    pub samples_ms: Vec<f64>,
    pub sample_errors: u32,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// After the writer stopped, until the replica was equal.
    pub catch_up_seconds: Option<f64>,
    pub note: String,
}

/// A rill job for one run, deleted (which stops it and unloads its capture) on drop.
pub struct RillJob<'a> {
    source: &'a Host,
    pub name: String,
}

impl<'a> RillJob<'a> {
    pub fn start(source: &'a Host, name: &str, src: &Path, dst: &Path, port: u16) -> Result<Self> {
        let job = RillJob {
            source,
            name: name.into(),
        };
        Self::create(source, name, src, dst, port)?;
        Ok(job)
    }

    /// Creates and starts the job `name` from `src` to `dst` on the target reached at
    /// `port` on loopback (the target's, or a relay's); nothing deletes it.
    pub fn create(source: &Host, name: &str, src: &Path, dst: &Path, port: u16) -> Result<()> {
        source.call(Request::JobCreate(JobSpec {
            name: name.into(),
            source: src.to_path_buf(),
            target: JobTarget::Network {
                host: "127.0.0.1".into(),
                port,
                path: dst.to_path_buf(),
            },
            rules: Vec::new(),
        }))?;
        source.call(Request::Job {
            name: name.into(),
            action: JobAction::Start,
        })?;
        Ok(())
    }

    pub fn in_sync(&self) -> Result<bool> {
        in_sync(self.source, &self.name)
    }

    pub fn bytes_tx(&self) -> Result<u64> {
        Ok(self.source.job_status(&self.name)?.con_bytes_tx)
    }
}

impl Drop for RillJob<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.source.call(Request::Job {
            name: self.name.clone(),
            action: JobAction::Delete,
        }) {
            eprintln!("rill-bench: deleting rill job {}: {e:#}", self.name);
        }
    }
}

/// rill's ConRPL under a steady write load: a paced writer of 4 KiB pwrites into a 64 MiB
/// file the replica already holds, ConRPL sampled every 50 ms from the job's status.
pub(super) fn run_lag(env: &mut Env) -> Result<Lag> {
    env.runs += 1;
    let id = env.runs;
    let fs = RunFs::create(env, id, 512 << 20, 4096)?;
    let result = lag_on(env, &fs, id);
    wait_files_closed(&fs.mounts());
    drop(fs);
    result
}

fn lag_on(env: &Env, fs: &RunFs, id: u32) -> Result<Lag> {
    let cfg = env.cfg;
    let file = fs.src.join("lag.bin");
    load::dd(&env.random, &file, Some(64))?;
    let job = RillJob::start(
        &env.source,
        &format!("bench-{id}"),
        &fs.src,
        &fs.dst,
        env.target.net_port,
    )?;
    let mut peer = Peer::Rill(job);
    initial_sync(env, fs, &mut peer, None)?;
    let Peer::Rill(job) = peer else {
        bail!("the lag measurement runs rill");
    };
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(SETTLE);
    eprintln!(
        "rill-bench: lag: {} writes/s of 4 KiB for {} s, ConRPL sampled every {} ms",
        cfg.lag_rate,
        cfg.lag.as_secs_f64(),
        LAG_SAMPLE.as_millis()
    );
    let done = AtomicBool::new(false);
    let (writer, samples, errors) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut samples = Vec::new();
            let mut errors = 0u32;
            let mut next = Instant::now();
            while !done.load(Ordering::Relaxed) {
                match env.source.job_status(&job.name) {
                    Ok(st) => samples.push(st.con_rpl * 1000.0),
                    Err(_) => errors += 1,
                }
                next += LAG_SAMPLE;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
            (samples, errors)
        });
        let w = load::paced(&file, cfg.lag_rate, cfg.lag, cfg.seed, env.stop);
        done.store(true, Ordering::Relaxed);
        let (samples, errors) = sampler.join().unwrap_or_default();
        (w, samples, errors)
    });
    let writer = writer?;
    let t_end = Instant::now();
    let mut scratch = Run::new(Tool::Rill, Scenario::Overwrites, 0);
    let c = wait_equal(
        t_end,
        t_end + cfg.timeout,
        &fs.src,
        &fs.dst,
        false,
        POLL_STATUS,
        &mut scratch,
        env.stop,
        || job.in_sync(),
    )?;
    let mut lag = Lag {
        rate: cfg.lag_rate,
        writer,
        p50_ms: percentile(&samples, 0.50),
        p99_ms: percentile(&samples, 0.99),
        max_ms: samples.iter().copied().fold(0.0, f64::max),
        samples_ms: samples,
        sample_errors: errors,
        catch_up_seconds: c.at.map(|d| d.as_secs_f64()),
        note: String::new(),
    };
    if c.at.is_none() {
        lag.note = format!(
            "the replica did not become equal after the writer stopped: {}",
            c.diff
        );
    }
    drop(job);
    Ok(lag)
}
