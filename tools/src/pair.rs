//! Two `rilld` processes on this machine, a source and a target, paired and driven
//! through the management API: what the demo, the end-to-end tests and the replication
//! benchmark all start from.
//!
//! Each host gets its own directory (settings file, DataPath, queue, log), its own ports,
//! and its own identity; `pair` makes each trust the other's certificate fingerprint, as an
//! administrator would with `rillctl identity` and `rillctl trust add`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rill_engine::mgmt::{Client, JobAction, JobStatus, Request, Response};
use rill_engine::storage::job_store::{JobRule, JobSpec, JobTarget};

/// Which half a host runs (`LoadSourceTarget`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

/// One running `rilld serve`.
pub struct Host {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub net_port: u16,
    pub api: SocketAddr,
    rilld: PathBuf,
    child: Option<Child>,
    /// `rilld serve --capture`: `private` unless asked (see [`Host::start_capturing`]).
    capture: &'static str,
}

/// A free TCP port on loopback (bound and released: good enough for tests on one host).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `N` distinct free TCP ports on loopback: all held bound until each is chosen, as two
/// ports bound and released one after the other can be the same one (a host refused to
/// start with its network port equal to its management port).
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let held = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&held) {
        *p = l.local_addr()?.port();
    }
    Ok(ports)
}

impl Host {
    /// Writes the host's settings (`extra` lines are appended, TOML) and starts it, its
    /// jobs sharing a private capture instance: hosts of several tests run side by side
    /// on one machine, and only one process can drain the pinned driver's ring (which a
    /// benchmark may be using, and which a host would leave loaded).
    pub fn start(rilld: &Path, dir: &Path, role: Role, extra: &str) -> Result<Host> {
        Host::start_capturing(rilld, dir, role, extra, "private")
    }

    /// Like [`Host::start`], with `rilld serve --capture CAPTURE` (`shared`: the pinned
    /// driver, loaded if absent and left loaded).
    pub fn start_capturing(
        rilld: &Path,
        dir: &Path,
        role: Role,
        extra: &str,
        capture: &'static str,
    ) -> Result<Host> {
        std::fs::create_dir_all(dir)?;
        let [net_port, api_port] = free_ports()?;
        let config = dir.join("rill.toml");
        let text = format!(
            "LoadSourceTarget = {}\nNetPort = {net_port}\nManagementPort = {api_port}\n\
             DataPath = \"{d}/data\"\nQJournalDir = \"{d}/queue\"\nLogDir = \"{d}/log\"\n{extra}\n",
            match role {
                Role::Source => 1,
                Role::Target => 2,
            },
            d = dir.display(),
        );
        std::fs::write(&config, text)?;
        let mut host = Host {
            dir: dir.to_path_buf(),
            config,
            net_port,
            api: SocketAddr::from(([127, 0, 0, 1], api_port)),
            rilld: rilld.to_path_buf(),
            child: None,
            capture,
        };
        host.restart()?;
        Ok(host)
    }

    /// Starts the process again (after `kill` or `stop`), and waits for its API.
    pub fn restart(&mut self) -> Result<()> {
        // Appended, so what a killed process said is still there after its restart.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rilld.out"))?;
        let child = Command::new(&self.rilld)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .arg("--capture")
            .arg(self.capture)
            .env(
                "RUST_LOG",
                std::env::var("RILL_HOST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.rilld.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.client().is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "rilld exited ({status}) at start: {}",
                        std::fs::read_to_string(self.dir.join("rilld.out")).unwrap_or_default()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("rilld's API did not come up on {} within 30 s", self.api);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn client(&self) -> Result<Client> {
        let token = std::fs::read_to_string(self.dir.join("data/mgmt.token"))?;
        Ok(Client::connect(self.api, token.trim())?)
    }

    /// One management request; an `Error` response is an error.
    pub fn call(&self, req: Request) -> Result<Response> {
        match self.client()?.call(&req)? {
            Response::Error { message } => bail!("{message}"),
            r => Ok(r),
        }
    }

    pub fn fingerprint(&self) -> Result<String> {
        match self.call(Request::Identity)? {
            Response::Identity { fingerprint, .. } => Ok(fingerprint),
            other => bail!("unexpected answer to identity: {other:?}"),
        }
    }

    pub fn job_status(&self, name: &str) -> Result<JobStatus> {
        match self.call(Request::Status {
            name: Some(name.into()),
        })? {
            Response::Status(r) => r.jobs.into_iter().next().context("status without the job"),
            other => bail!("unexpected answer to status: {other:?}"),
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) -> Result<()> {
        self.signal(libc::SIGTERM)?;
        if let Some(mut c) = self.child.take() {
            c.wait()?;
        }
        Ok(())
    }

    /// SIGKILL and wait: a crash.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(libc::SIGKILL)?;
        if let Some(mut c) = self.child.take() {
            c.wait()?;
        }
        Ok(())
    }

    /// Sends `sig` to the process this host started (by its id).
    pub fn signal(&self, sig: i32) -> Result<()> {
        if let Some(pid) = self.pid() {
            // SAFETY: signalling the child this harness spawned, by its pid.
            if unsafe { libc::kill(pid as i32, sig) } != 0 {
                bail!("signal {sig} to {pid}: {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Stops the process (SIGSTOP) and returns once every one of its threads has
    /// stopped: `kill` returns before they have, and a thread may still finish the call it
    /// is in, so what the process writes is only frozen from here on.
    pub fn freeze(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)?;
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(pid)? {
            if Instant::now() > deadline {
                bail!("process {pid} did not stop within 10 s of SIGSTOP");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// The engine log (LogDir/rilld.log).
    pub fn event_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/rilld.log")).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Makes each host trust the other, as `rillctl trust add` does.
pub fn pair(source: &Host, target: &Host) -> Result<()> {
    let (sf, tf) = (source.fingerprint()?, target.fingerprint()?);
    target.call(Request::TrustAdd {
        name: "source".into(),
        peer: sf,
    })?;
    source.call(Request::TrustAdd {
        name: "target".into(),
        peer: tf,
    })?;
    Ok(())
}

/// Creates and starts job `name` replicating `src` to `dst` on `target`.
pub fn start_job(
    source: &Host,
    target: &Host,
    name: &str,
    src: &Path,
    dst: &Path,
    excludes: &[&str],
) -> Result<()> {
    source.call(Request::JobCreate(JobSpec {
        name: name.into(),
        source: src.to_path_buf(),
        target: JobTarget::Network {
            host: "127.0.0.1".into(),
            port: target.net_port,
            path: dst.to_path_buf(),
        },
        rules: excludes
            .iter()
            .map(|p| JobRule {
                pattern: p.to_string(),
                include: false,
            })
            .collect(),
    }))?;
    source.call(Request::Job {
        name: name.into(),
        action: JobAction::Start,
    })?;
    Ok(())
}

/// Waits until `ready` holds, checking every 50 ms, for at most `timeout`.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready()? {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

/// Whether the job has nothing left to send and the target has applied all of it.
pub fn in_sync(source: &Host, job: &str) -> Result<bool> {
    let s = source.job_status(job)?;
    Ok(s.con_mirror_percent >= 100.0
        && s.con_ops_in_rep_queue == 0
        && s.con_ops_in_mir_queue == 0
        && s.target_data_state == rill_engine::storage::job_store::DataState::Ok
        && s.con_state == rill_engine::mgmt::ConState::Active)
}

/// Why the job's connection fails, if its status shows it as failing and nothing as
/// healthy: `conState` Error, no mirror at 100%, replication neither Pending nor
/// Replicating, no mirror In Progress. `None` if any of that does not hold.
pub fn failing(s: &JobStatus) -> Option<rill_engine::mgmt::ConError> {
    use rill_engine::mgmt::{ConState, MirrorStatus, ReplicationStatus};
    let healthy_looking = matches!(
        s.replication_status,
        ReplicationStatus::Pending | ReplicationStatus::Replicating
    ) || s.mirror_status == MirrorStatus::InProgress
        || s.con_mirror_percent >= 100.0;
    (s.con_state == ConState::Error && !healthy_looking)
        .then(|| s.con_error.clone())
        .flatten()
}

/// Whether every thread of `pid` is stopped (state `T` in `/proc/PID/task/TID/stat`) or
/// has exited (`Z`, `X`).
fn all_threads_stopped(pid: u32) -> Result<bool> {
    let tasks = format!("/proc/{pid}/task");
    for t in std::fs::read_dir(&tasks).with_context(|| format!("listing {tasks}"))? {
        let stat = std::fs::read_to_string(t?.path().join("stat"))?;
        // The state follows the command name, which is in parentheses and may hold any
        // character: it is the first field after the last ')'.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if !matches!(state, Some('T' | 'Z' | 'X')) {
            return Ok(false);
        }
    }
    Ok(true)
}
