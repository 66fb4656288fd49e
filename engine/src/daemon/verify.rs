//! `rillctl verify JOB`: starting a job's verification on a thread of its own, now or
//! on the job's schedule (`--every`), and keeping its progress for the status report.
//!
//! # State
//!
//! A running job holds at most one [`Verification`]: the one running, or the last one's
//! result, until the next starts or the job stops; and its schedule, if it has one, with
//! the instant the next scheduled verification counts from.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mgmt::{Response, VerifySchedule, MIN_VERIFY_EVERY_SECONDS};
use crate::verify::run::Verifier;
use crate::verify::{Phase, VerifyProgress};

use super::{Daemon, Runner};

/// A job's verification: its progress and the thread running it.
pub(super) struct Verification {
    pub progress: Arc<VerifyProgress>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Verification {
    /// Stops the verification and waits for its thread.
    pub fn stop(mut self) {
        self.progress.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn running(&self) -> bool {
        matches!(self.progress.phase(), Phase::Running | Phase::Paused)
    }
}

impl Daemon {
    /// Starts a verification of the running job `name`; refused while one runs.
    pub(super) fn verify(
        &self,
        name: &str,
        remirror: bool,
        checksums: bool,
    ) -> anyhow::Result<Response> {
        let mut runners = self
            .runners
            .lock()
            .map_err(|_| anyhow::anyhow!("the jobs' lock is poisoned"))?;
        let runner = runners.get_mut(name).ok_or_else(|| {
            anyhow::anyhow!("job {name} is not running: start it before verifying it")
        })?;
        if runner
            .verification
            .as_ref()
            .is_some_and(Verification::running)
        {
            anyhow::bail!("job {name} is being verified already (see `rillctl status {name}`)");
        }
        let id = self.start_verification(name, runner, remirror, checksums)?;
        Ok(Response::done(format!(
            "verification {id} of job {name} started; `rillctl status {name}` shows its \
             progress"
        )))
    }

    /// Sets or clears the job's verification schedule, kept in the job store and taken
    /// up at once by the job if it runs.
    pub(super) fn set_verify_schedule(
        &self,
        name: &str,
        schedule: Option<VerifySchedule>,
    ) -> anyhow::Result<Response> {
        if let Some(s) = &schedule {
            if s.every_seconds < MIN_VERIFY_EVERY_SECONDS {
                anyhow::bail!(
                    "a verification schedule of {} s is too short: at least \
                     {MIN_VERIFY_EVERY_SECONDS} s",
                    s.every_seconds
                );
            }
        }
        if self.store.get(name)?.is_none() {
            anyhow::bail!("no job named `{name}`");
        }
        self.store.set_verify_schedule(name, schedule)?;
        if let Ok(mut runners) = self.runners.lock() {
            if let Some(r) = runners.get_mut(name) {
                r.verify_schedule = schedule;
            }
        }
        Ok(Response::done(match schedule {
            Some(s) => format!("job {name} is verified every {} s", s.every_seconds),
            None => format!("job {name} is no longer verified on a schedule"),
        }))
    }

    /// Starts the verifications their jobs' schedules say are due (at the housekeeping's
    /// turn, the jobs' lock held).
    pub(super) fn start_scheduled_verifications(&self, runners: &mut HashMap<String, Runner>) {
        for (name, r) in runners.iter_mut() {
            let Some(s) = r.verify_schedule else { continue };
            let running = r.verification.as_ref().is_some_and(Verification::running);
            if running || r.verify_due_from.elapsed() < Duration::from_secs(s.every_seconds) {
                continue;
            }
            if let Err(e) = self.start_verification(name, r, s.remirror, s.checksums) {
                log::warn!("job {name}: starting its scheduled verification: {e:#}");
                r.verify_due_from = Instant::now();
            }
        }
    }

    /// Starts a verification of the job `runner` runs; its ID.
    fn start_verification(
        &self,
        name: &str,
        runner: &mut Runner,
        remirror: bool,
        checksums: bool,
    ) -> anyhow::Result<u64> {
        let job = self
            .store
            .get(name)?
            .ok_or_else(|| anyhow::anyhow!("no job named `{name}`"))?;
        let settings = self.settings();
        let id = super::next_verification_id();
        let progress = Arc::new(VerifyProgress::default());
        progress.id.store(id, Ordering::Relaxed);
        let address = job.spec.target.address().unwrap_or_default();
        let host = address
            .rsplit_once(':')
            .map_or(address.as_str(), |(h, _)| h);
        let verifier = Verifier {
            job: name.to_string(),
            target: format!("{host} ({address})"),
            source: runner.source.clone(),
            set: runner.set.clone(),
            control: Arc::clone(&runner.control),
            progress: Arc::clone(&progress),
            log: Arc::clone(&self.log),
            options: crate::options::verify_options(&settings, checksums, remirror),
        };
        let thread = std::thread::Builder::new()
            .name(format!("verify-{name}"))
            .spawn(move || verifier.run())?;
        if let Some(old) = runner.verification.take() {
            old.stop();
        }
        runner.verification = Some(Verification {
            progress,
            thread: Some(thread),
        });
        runner.verify_due_from = Instant::now();
        Ok(id)
    }
}
