//! `rilld serve`: the long-running engine, as source, target or both.
//!
//! On start it loads (or creates, on the first start) this host's identity and its trust
//! store, opens the job store, serves the management API on localhost, listens for
//! sources on `NetPort` when it is a target (`LoadSourceTarget`), and starts every job
//! whose stored state is Running, so a running job resumes after a restart. Each job is a
//! [`job::run`] with an [`Outbox`] resolving for a [`NetworkDestination`] on the daemon's
//! tokio runtime; all of them subscribe to one [`CaptureHub`] (the pinned driver, loaded
//! when absent).

mod control;
mod failover;
mod status;
mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::events::{self, EventLog, Level};
use crate::net::link::NetworkDestination;
use crate::net::tls::{Identity, TrustStore};
use crate::options;
use crate::replica::{LiveConfig, TargetStats};
use crate::settings::Settings;
use crate::source::capture_hub::{CaptureHub, HubSource};
use crate::source::destination::{Destination, StatusHandle};
use crate::source::job;
use crate::source::outbox::Outbox;
use crate::source::transmit::JobControl;
use crate::storage::job_store::{JobState, JobStore, MirrorState, StoredJob};

/// A job running in this daemon.
struct Runner {
    control: Arc<JobControl>,
    /// Its destination's status, which the job's thread sends through.
    destination: StatusHandle,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    /// The job's verification running or last run, and the thread running it.
    verification: Option<verify::Verification>,
    /// The job's replication set, for a verification's walk.
    set: crate::repset::ReplicationSet,
    source: PathBuf,
    /// The job's verification schedule, and since when the next verification counts
    /// (the job's start, or the last verification's).
    verify_schedule: Option<crate::mgmt::VerifySchedule>,
    verify_due_from: std::time::Instant,
}

/// The daemon's state, shared by the API and the housekeeping task.
pub struct Daemon {
    config: PathBuf,
    settings: RwLock<Settings>,
    host: String,
    identity: Identity,
    trust: Arc<TrustStore>,
    store: Arc<JobStore>,
    log: Arc<EventLog>,
    runtime: tokio::runtime::Handle,
    runners: Mutex<HashMap<String, Runner>>,
    target: Option<TargetRole>,
    /// The one capture every job subscribes to.
    capture: Arc<CaptureHub>,
}

/// The target role's state the daemon keeps: its counters, and its settings, replaced when
/// a setting that needs no restart changes.
struct TargetRole {
    stats: Arc<TargetStats>,
    config: LiveConfig,
}

/// Why a job whose target is a directory on this host is refused: the daemon's jobs
/// replicate to a target rilld (a `NetworkDestination`).
const LOCAL_TARGET: &str = "its target is a directory on this host (no target_host), which \
                            `rilld run --target` replicates to; the jobs of rilld serve \
                            replicate to a target host (give target_host and target_port)";

/// This host's name, for certificates, hellos and the log.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Runs the daemon until `stop` is set (SIGINT / SIGTERM); its jobs share one capture
/// from `capture`.
pub fn serve(config: &Path, stop: Arc<AtomicBool>, capture: HubSource) -> Result<()> {
    let settings = Settings::for_start(config)?;
    let data = settings.data_path().to_path_buf();
    std::fs::create_dir_all(&data)
        .with_context(|| format!("creating DataPath {}", data.display()))?;
    let log = Arc::new(
        EventLog::open(settings.log_dir())
            .with_context(|| format!("LogDir {}", settings.log_dir().display()))?,
    );
    let host = host_name();
    let identity = Identity::load_or_create(&data.join("identity"), &host)?;
    let trust = Arc::new(TrustStore::open(&data)?);
    let store = Arc::new(JobStore::open(&data.join("jobs.redb"))?);
    let roles = settings.load_source_target();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("rilld-net")
        .build()
        .context("starting the network runtime")?;

    // Bind before anything else, so a port conflict is reported at once.
    let target = if roles.target() {
        let services = crate::replica::Services {
            store: Arc::clone(&store),
            trust: Arc::clone(&trust),
            log: Arc::clone(&log),
            stats: Arc::new(TargetStats::default()),
            stop: Arc::clone(&stop),
        };
        Some(start_target(
            &runtime, &settings, &host, &identity, services,
        )?)
    } else {
        None
    };
    let api_addr = format!("127.0.0.1:{}", settings.management_port());
    let api = runtime
        .block_on(tokio::net::TcpListener::bind(&api_addr))
        .with_context(|| format!("serving the management API on {api_addr} (ManagementPort)"))?;
    let token = crate::mgmt::load_or_create_token(&crate::mgmt::token_path(&data))
        .context("the management token")?;

    let daemon = Arc::new(Daemon {
        config: config.to_path_buf(),
        settings: RwLock::new(settings),
        host,
        identity,
        trust,
        store,
        log: Arc::clone(&log),
        runtime: runtime.handle().clone(),
        runners: Mutex::new(HashMap::new()),
        target,
        capture: Arc::new(CaptureHub::new(capture)),
    });
    {
        let log = Arc::clone(&log);
        let control: Arc<dyn crate::mgmt::Control> = Arc::clone(&daemon) as _;
        runtime.spawn(crate::mgmt::serve(api, token, control, move |peer| {
            log.event(
                Level::Warning,
                events::LOGIN_FAILED,
                &format!("Management API: failed login from {peer}"),
            )
        }));
    }
    daemon.run_until(&stop, &api_addr)?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// Listens for sources on `NetPort` and serves them on `runtime`; event 4001.
fn start_target(
    runtime: &tokio::runtime::Runtime,
    settings: &Settings,
    host: &str,
    identity: &Identity,
    services: crate::replica::Services,
) -> Result<TargetRole> {
    let addr = format!("0.0.0.0:{}", settings.net_port());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&addr))
        .with_context(|| format!("listening for sources on {addr} (NetPort)"))?;
    let config = Arc::new(RwLock::new(options::target_config(settings, host)));
    let tls = crate::net::tls::server_config(identity, Arc::clone(&services.trust))?;
    let (stats, log) = (Arc::clone(&services.stats), Arc::clone(&services.log));
    runtime.spawn(crate::replica::serve(
        listener,
        tls,
        Arc::clone(&config),
        services,
    ));
    log.event(
        Level::Information,
        events::TARGET_STARTED,
        &format!("Target started on port {}", settings.net_port()),
    );
    Ok(TargetRole { stats, config })
}

impl Daemon {
    /// Starts the jobs the store holds as running, serves until `stop`, then stops them.
    fn run_until(&self, stop: &AtomicBool, api_addr: &str) -> Result<()> {
        let log = &self.log;
        for job in self.store.list()? {
            if job.state != JobState::Stopped {
                if let Err(e) = self.start_job(&job) {
                    log.event(
                        Level::Error,
                        events::SOURCE_STOPPED,
                        &format!("job {} not started: {e:#}", job.spec.name),
                    );
                }
            }
        }
        eprintln!("rilld: serving (API on {api_addr})");
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            self.housekeeping();
        }
        let names: Vec<String> = self
            .runners
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        for name in names {
            self.stop_job(&name);
        }
        if self.target.is_some() {
            log.event(Level::Information, events::TARGET_STOPPED, "Target stopped");
        }
        Ok(())
    }
}

impl Daemon {
    fn settings(&self) -> Settings {
        self.settings.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Hands the settings in effect to the target role, for its next connections.
    fn refresh_target_config(&self) {
        if let Some(target) = &self.target {
            let next = options::target_config(&self.settings(), &self.host);
            match target.config.write() {
                Ok(mut c) => *c = next,
                Err(poisoned) => *poisoned.into_inner() = next,
            }
        }
    }

    /// Starts a stored job's threads (its state in the store is the caller's business).
    fn start_job(&self, job: &StoredJob) -> Result<()> {
        let settings = self.settings();
        if !settings.load_source_target().source() {
            anyhow::bail!("this host is not a source (LoadSourceTarget)");
        }
        let name = job.spec.name.clone();
        if self.runners.lock().is_ok_and(|r| r.contains_key(&name)) {
            return Ok(());
        }
        let source = job
            .spec
            .source
            .canonicalize()
            .with_context(|| format!("source {}", job.spec.source.display()))?;
        let full_mirror = job.mirror != MirrorState::Complete;
        let control = Arc::new(JobControl::default());
        control
            .paused
            .store(job.state == JobState::Paused, Ordering::Relaxed);
        let link = options::link_config(
            &settings,
            job,
            &self.host,
            crate::net::tls::client_config(&self.identity, Arc::clone(&self.trust))?,
            full_mirror,
            Some(Arc::clone(&self.log)),
        )
        .with_context(|| format!("job {name}: {LOCAL_TARGET}"))?;
        let destination = NetworkDestination::start(&self.runtime, link, Arc::clone(&control.stop));
        let status = destination.status();
        // Operations are resolved here on the source, once, before the link sees them.
        let resolve = options::resolve_options(&settings);
        let mut outbox = Outbox::new(&source, resolve, Box::new(destination));
        let rules: Vec<(String, bool)> = job
            .spec
            .rules
            .iter()
            .map(|r| (r.pattern.clone(), r.include))
            .collect();
        let set = job::replication_set(&source, &rules)?;
        let verify_source = source.clone();
        let run = job::SourceJob {
            source,
            target: job.spec.target.clone(),
            state_dir: Some(name.clone()),
            mirror: full_mirror,
            // A full mirror covers it anyway.
            resync: !full_mirror,
            control: Arc::clone(&control),
            rules,
            config: self.config.exists().then(|| self.config.clone()),
            reload: Arc::new(AtomicBool::new(false)),
            capture: Arc::clone(&self.capture),
        };
        if full_mirror {
            self.store.set_mirror_state(&name, MirrorState::Mirroring)?;
        }
        let thread = std::thread::Builder::new()
            .name(format!("job-{name}"))
            .spawn(move || job::run(&settings, run, &mut outbox))?;
        if let Ok(mut r) = self.runners.lock() {
            r.insert(
                name,
                Runner {
                    control,
                    destination: status,
                    thread: Some(thread),
                    verification: None,
                    set,
                    source: verify_source,
                    verify_schedule: job.verify_schedule,
                    verify_due_from: std::time::Instant::now(),
                },
            );
        }
        Ok(())
    }

    /// Stops a job's threads and waits for them (what was captured is queued on disk).
    fn stop_job(&self, name: &str) {
        let runner = self.runners.lock().ok().and_then(|mut r| r.remove(name));
        if let Some(mut runner) = runner {
            runner.control.stop.store(true, Ordering::Relaxed);
            if let Some(v) = runner.verification.take() {
                v.stop();
            }
            if let Some(t) = runner.thread.take() {
                match t.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => log::warn!("job {name} stopped with an error: {e:#}"),
                    Err(_) => log::warn!("job {name}: its thread panicked"),
                }
            }
        }
    }

    /// Once a second or so: record finished mirrors, notice jobs whose thread ended.
    fn housekeeping(&self) {
        let Ok(mut runners) = self.runners.lock() else {
            return;
        };
        let mut ended = Vec::new();
        for (name, r) in runners.iter() {
            if r.destination.take_mirror_complete() {
                if let Err(e) = self.store.set_mirror_state(name, MirrorState::Complete) {
                    log::warn!("job {name}: recording the mirror as complete: {e}");
                }
            }
            if r.thread.as_ref().is_some_and(|t| t.is_finished()) {
                ended.push(name.clone());
            }
        }
        self.start_scheduled_verifications(&mut runners);
        for name in ended {
            if let Some(mut r) = runners.remove(&name) {
                let result = r.thread.take().map(|t| t.join());
                let text = match result {
                    Some(Ok(Err(e))) => format!("job {name} stopped: {e:#}"),
                    Some(Err(_)) => format!("job {name} stopped: its thread panicked"),
                    _ => format!("job {name} stopped"),
                };
                self.log.event(Level::Error, events::SOURCE_STOPPED, &text);
            }
        }
    }
}

/// A verification's ID (events 4058 to 4062 name it): the wall clock's seconds at its
/// start, made unique within this process, so IDs do not repeat across restarts either.
fn next_verification_id() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = crate::clock::wall_secs();
    LAST.fetch_max(now, Ordering::Relaxed);
    LAST.fetch_add(1, Ordering::Relaxed) + 1
}
