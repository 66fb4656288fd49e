//! `rillctl verify JOB`: starting a job's verification on a thread of its own, and
//! keeping its progress for the status report.
//!
//! # State
//!
//! A running job holds at most one [`Verification`]: the one running, or the last one's
//! result, until the next starts or the job stops.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::mgmt::Response;
use crate::verify::run::Verifier;
use crate::verify::{Phase, VerifyProgress};

use super::Daemon;

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
        let job = self
            .store
            .get(name)?
            .ok_or_else(|| anyhow::anyhow!("no job named `{name}`"))?;
        let settings = self.settings();
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
        Ok(Response::done(format!(
            "verification {id} of job {name} started; `rillctl status {name}` shows its \
             progress"
        )))
    }
}
