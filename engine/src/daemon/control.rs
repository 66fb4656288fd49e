//! The management API's requests, carried out on the daemon.

use std::sync::atomic::Ordering;

use crate::mgmt::{Control, JobAction, JobInfo, Request, Response, SettingRow, TrustedPeer};
use crate::settings::{find, set_in_file, Settings};
use crate::storage::job_store::JobState;

use super::Daemon;

impl Control for Daemon {
    fn call(&self, req: Request) -> Response {
        match self.handle(req) {
            Ok(r) => r,
            Err(e) => Response::error(format!("{e:#}")),
        }
    }
}

impl Daemon {
    fn handle(&self, req: Request) -> anyhow::Result<Response> {
        Ok(match req {
            Request::JobCreate(spec) => {
                if spec.target.address().is_none() {
                    anyhow::bail!("job {}: {}", spec.name, super::LOCAL_TARGET);
                }
                if !spec.source.is_dir() {
                    anyhow::bail!(
                        "source {} is not a directory on this host",
                        spec.source.display()
                    );
                }
                let job = self.store.create(spec)?;
                Response::done(format!(
                    "job {} created (stopped): {} -> {}; start it with `rillctl job start {}`",
                    job.spec.name,
                    job.spec.source.display(),
                    job.spec.target,
                    job.spec.name
                ))
            }
            Request::JobList => {
                Response::Jobs(self.store.list()?.into_iter().map(JobInfo::from).collect())
            }
            Request::Job { name, action } => self.job_action(&name, action)?,
            Request::Verify {
                name,
                remirror,
                checksums,
            } => self.verify(&name, remirror, checksums)?,
            Request::VerifySchedule { name, schedule } => {
                self.set_verify_schedule(&name, schedule)?
            }
            Request::Failover { name, mode } => self.failover(&name, mode)?,
            Request::Failback { name } => self.failback(&name)?,
            Request::FailoverScripts { name, scripts } => {
                self.set_failover_scripts(&name, scripts)?
            }
            Request::Status { name } => Response::Status(self.status(name.as_deref())?),
            Request::SettingsList => Response::Settings(
                self.settings()
                    .list()
                    .into_iter()
                    .map(|(def, value)| SettingRow::new(def, value))
                    .collect(),
            ),
            Request::SettingsGet { name } => {
                let def = find(&name)?;
                Response::Settings(vec![SettingRow::new(def, self.settings().get(&name)?)])
            }
            Request::SettingsSet { name, value } => {
                let change = set_in_file(&self.config, &name, &value)?;
                let next = Settings::load(&self.config)?;
                let waiting = match self.settings.write() {
                    Ok(mut s) => s.apply_live(&next),
                    Err(_) => Vec::new(),
                };
                self.refresh_target_config();
                let note = if change.restart_required || !waiting.is_empty() {
                    "; takes effect when rilld restarts"
                } else {
                    "; in effect for jobs started and connections made from now on"
                };
                Response::done(format!(
                    "{} = {} (was {}){note}",
                    change.name, change.new, change.old
                ))
            }
            Request::Identity => Response::Identity {
                name: self.identity.name.clone(),
                fingerprint: self.identity.fingerprint.clone(),
                certificate_pem: self.identity.certificate_pem(),
            },
            Request::TrustAdd { name, peer } => {
                let p = self.trust.add(&name, &peer)?;
                Response::done(format!("trusting {} ({})", p.name, p.fingerprint))
            }
            Request::TrustList => Response::Trust(
                self.trust
                    .list()
                    .into_iter()
                    .map(|p| TrustedPeer {
                        name: p.name,
                        fingerprint: p.fingerprint,
                        added_unix: p.added_unix,
                    })
                    .collect(),
            ),
            Request::TrustRemove { name } => {
                if self.trust.remove(&name)? {
                    Response::done(format!("{name} is no longer trusted"))
                } else {
                    anyhow::bail!("no trusted peer named {name}")
                }
            }
        })
    }

    fn job_action(&self, name: &str, action: JobAction) -> anyhow::Result<Response> {
        let job = self
            .store
            .get(name)?
            .ok_or_else(|| anyhow::anyhow!("no job named `{name}`"))?;
        let runner_control = |f: &dyn Fn(&crate::source::transmit::JobControl)| {
            if let Ok(r) = self.runners.lock() {
                if let Some(r) = r.get(name) {
                    f(&r.control);
                }
            }
        };
        match action {
            JobAction::Start => {
                self.store.set_state(name, JobState::Running)?;
                let job = self.store.get(name)?.unwrap_or(job);
                self.start_job(&job)?;
                Ok(Response::done(format!("job {name} started")))
            }
            JobAction::Stop => {
                self.stop_job(name);
                self.store.set_state(name, JobState::Stopped)?;
                Ok(Response::done(format!("job {name} stopped")))
            }
            JobAction::Pause => {
                runner_control(&|c| c.paused.store(true, Ordering::Relaxed));
                self.store.set_state(name, JobState::Paused)?;
                Ok(Response::done(format!(
                    "job {name} paused: operations wait in the source queue"
                )))
            }
            JobAction::Resume => {
                runner_control(&|c| c.paused.store(false, Ordering::Relaxed));
                self.store.set_state(name, JobState::Running)?;
                Ok(Response::done(format!("job {name} resumed")))
            }
            JobAction::Delete => {
                self.stop_job(name);
                self.store.delete(name)?;
                let settings = self.settings();
                for dir in [
                    settings.data_path().join("jobs").join(name),
                    settings.q_journal_dir().join(name),
                ] {
                    if dir.exists() {
                        std::fs::remove_dir_all(&dir)?;
                    }
                }
                Ok(Response::done(format!("job {name} deleted")))
            }
        }
    }
}
