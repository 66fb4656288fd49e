//! The failover scripts: programs of the target host an administrator names per job
//! (`rillctl failover-scripts`), run at the guide's moments with what they need to know
//! in their environment.
//!
//! A script run "without waiting" (`PreFailoverWait = 0`, `PreFailbackWait = 0`) is
//! started and left to run: its end is still logged, from a thread of its own, so no
//! finished script is left a zombie.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::super::{Context, JobKey};
use crate::events::{self, Level};
use crate::storage::job_store::TargetSession;

/// One script to run: its name in the guide's words, its path (none: nothing to run),
/// its environment.
pub(super) struct Script {
    what: &'static str,
    path: Option<PathBuf>,
    env: Vec<(&'static str, String)>,
}

impl Script {
    pub(super) fn new(
        what: &'static str,
        path: Option<PathBuf>,
        env: &[(&'static str, String)],
    ) -> Script {
        Script {
            what,
            path,
            env: env.to_vec(),
        }
    }
}

/// What a script is told: the job, its source, its replica, the position it holds, and
/// why it runs (`live`, `test`, `failback`).
pub(super) fn env(
    key: &JobKey,
    session: &TargetSession,
    mode: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("RILL_JOB", key.1.clone()),
        ("RILL_SOURCE", key.0.clone()),
        (
            "RILL_TARGET_PATH",
            session.target_path.display().to_string(),
        ),
        ("RILL_LAST_APPLIED", session.last_applied.to_string()),
        ("RILL_FAILOVER_MODE", mode.to_string()),
    ]
}

/// Runs `script`, waiting for it to end when `wait` is set; logs 5105 before, 5106 or
/// 5107 after. A script that fails does not stop the failover: the failover is about the
/// replica, which is settled already, and the event says what the script did.
pub(super) async fn run(ctx: &Context, script: Script, wait: bool) {
    let Some(path) = script.path.clone() else {
        return;
    };
    let log = std::sync::Arc::clone(&ctx.log);
    log.event(
        Level::Information,
        events::SCRIPT_STARTING,
        &format!(
            "Attempting to run the {} script {}",
            script.what,
            path.display()
        ),
    );
    let child = Command::new(&path)
        .envs(script.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let text = format!(
                "Error running the {} script {}: {e}",
                script.what,
                path.display()
            );
            return log.event(Level::Error, events::SCRIPT_FAILED, &text);
        }
    };
    let what = script.what;
    let reap = move || {
        let (level, id, text) = match child.wait() {
            Ok(s) if s.success() => (
                Level::Information,
                events::SCRIPT_SUCCEEDED,
                format!("The {what} script {} ran successfully", path.display()),
            ),
            Ok(s) => (
                Level::Error,
                events::SCRIPT_FAILED,
                format!("Error running the {what} script {}: {s}", path.display()),
            ),
            Err(e) => (
                Level::Error,
                events::SCRIPT_FAILED,
                format!("Error running the {what} script {}: {e}", path.display()),
            ),
        };
        log.event(level, id, &text);
    };
    if wait {
        let _ = tokio::task::spawn_blocking(reap).await;
    } else {
        std::thread::spawn(reap);
    }
}
