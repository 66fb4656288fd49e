//! `Failover`, `Failback` and `FailoverScripts`: the administrator's failover requests,
//! on the target.
//!
//! The target knows a source job by (source fingerprint, job name); a request names only
//! the job, so it must name one job of one source here ([`Daemon::source_job`]). The
//! failover itself runs on the target's monitor task (`replica::failover`), which holds
//! the sessions; these requests hand it over and wait for its answer.

use std::time::Duration;

use rill_mgmt::{FailoverMode, FailoverScripts};

use crate::mgmt::Response;
use crate::replica::failover::Action;

use super::Daemon;

/// How long a request waits for the failover's answer: below the management client's
/// own timeout (60 s), so the administrator reads an answer rather than a lost call. A
/// failover still running then (a long script) goes on; its end is in the event log and
/// the status.
const ANSWER_WAIT: Duration = Duration::from_secs(50);

impl Daemon {
    /// Fails the source job `name` over to this host (or tests or undoes a test).
    pub(super) fn failover(&self, name: &str, mode: FailoverMode) -> anyhow::Result<Response> {
        self.ask(name, Action::Failover(mode))
    }

    /// Ends the failover of the source job `name`.
    pub(super) fn failback(&self, name: &str) -> anyhow::Result<Response> {
        self.ask(name, Action::Failback)
    }

    /// Sets the failover scripts of the source job `name`; each must be an executable
    /// file of this host.
    pub(super) fn set_failover_scripts(
        &self,
        name: &str,
        scripts: FailoverScripts,
    ) -> anyhow::Result<Response> {
        scripts.check().map_err(anyhow::Error::msg)?;
        for (what, path) in scripts.named() {
            if let Some(p) = path {
                check_executable(what, p)?;
            }
        }
        let (peer, job) = self.source_job(name)?;
        let mut record = self.store.get_failover(&peer, &job)?;
        record.scripts = scripts;
        self.store.put_failover(&peer, &job, &record)?;
        let set: Vec<String> = record
            .scripts
            .named()
            .iter()
            .filter_map(|(what, p)| p.map(|p| format!("{what} {}", p.display())))
            .collect();
        Ok(Response::done(if set.is_empty() {
            format!("job {job}: no failover scripts")
        } else {
            format!("job {job}: failover scripts {}", set.join(", "))
        }))
    }

    fn ask(&self, name: &str, action: Action) -> anyhow::Result<Response> {
        let Some(target) = &self.target else {
            anyhow::bail!("this host is not a target (LoadSourceTarget): nothing fails over to it");
        };
        let key = self.source_job(name)?;
        let answer = target.stats.monitor.ask(key, action);
        match answer.recv_timeout(ANSWER_WAIT) {
            Ok(Ok(message)) => Ok(Response::done(message)),
            Ok(Err(message)) => Ok(Response::error(message)),
            Err(_) => Ok(Response::done(format!(
                "job {name}: still under way after {} s; `rillctl status` and the event \
                 log say when it is done",
                ANSWER_WAIT.as_secs()
            ))),
        }
    }

    /// The one source job named `name` that replicates to this host.
    fn source_job(&self, name: &str) -> anyhow::Result<(String, String)> {
        let mut found: Vec<(String, String)> = self
            .store
            .list_sessions()?
            .into_iter()
            .filter(|s| s.job == name)
            .map(|s| (s.peer, s.job))
            .collect();
        match found.len() {
            0 => anyhow::bail!(
                "no source job named `{name}` replicates to this host (failover is asked of \
                 the job's target)"
            ),
            1 => Ok(found.remove(0)),
            n => anyhow::bail!(
                "{n} sources replicate a job named `{name}` to this host ({}): rename one",
                found
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Refuses a script that is not an executable regular file of this host.
fn check_executable(what: &str, path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("the {what} script {}: {e}", path.display()))?;
    // Any of the execute bits: rilld runs as root, for whom one is enough.
    const ANY_EXECUTE: u32 = 0o111;
    if !meta.is_file() || meta.permissions().mode() & ANY_EXECUTE == 0 {
        anyhow::bail!(
            "the {what} script {} is not an executable file",
            path.display()
        );
    }
    Ok(())
}
