//! Child processes with bounded lifetimes: the capture, the workload, one-shot CLI calls.
//!
//! Every wait has a deadline and ends in a panic that shows the process's stderr, so a hung
//! driver fails its test within about a minute instead of hanging the suite. Exit is
//! observed with `waitid(WNOWAIT)` on a helper thread: the child stays unreaped (its pid
//! cannot be reused) until the owner reaps it, so signalling the pid we spawned is always
//! safe. Every child still running when its owner is dropped (a panicking test) is killed
//! with SIGKILL by that pid and reaped.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::events::parse_events;
use crate::{driver_bin, READY_TIMEOUT, RUN_TIMEOUT};

/// A channel that yields once the process `pid` has exited (without reaping it).
fn exit_watch(pid: u32) -> Receiver<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        loop {
            // SAFETY: siginfo_t is plain data; waitid writes it. WNOWAIT leaves the child
            // for Child::wait to reap.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let r =
                unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        let _ = tx.send(());
    });
    rx
}

fn read_all(r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut r = r;
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A spawned child with its exit watch, killed on drop unless reaped.
struct Proc {
    child: Child,
    exit: Receiver<()>,
    status: Option<ExitStatus>,
    what: String,
}

impl Proc {
    fn spawn(mut cmd: Command, what: String) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        let exit = exit_watch(child.id());
        Proc {
            child,
            exit,
            status: None,
            what,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for exit; reaps and returns the status, or None on timeout.
    fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.exit.recv_timeout(timeout) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    self.status = Some(self.child.wait().expect("reap child"));
                }
                Err(RecvTimeoutError::Timeout) => return None,
            }
        }
        self.status
    }

    fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            let _ = kill(Pid::from_raw(self.pid() as i32), sig);
        }
    }

    fn kill_and_reap(&mut self) {
        if self.status.is_none() {
            self.signal(Signal::SIGKILL);
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            eprintln!("killing {} (pid {}) left running", self.what, self.pid());
            self.kill_and_reap();
        }
    }
}

/// Runs `cmd` to completion within `timeout` (stdin closed), killing it and panicking with
/// what it printed if it takes longer.
pub fn output_within(mut cmd: Command, timeout: Duration, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn(cmd, what.to_string());
    let out = read_all(p.child.stdout.take().expect("piped stdout"));
    let err = read_all(p.child.stderr.take().expect("piped stderr"));
    let status = p.wait_for(timeout);
    if status.is_none() {
        p.kill_and_reap();
    }
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => Output {
            status,
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
        },
        None => {
            panic!("{what} did not finish within {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
        }
    }
}

/// `rill-driver --settings SETTINGS ARGS...`, bounded by [`RUN_TIMEOUT`].
pub fn run_driver(settings: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(driver_bin());
    cmd.arg("--settings").arg(settings).args(args);
    output_within(cmd, RUN_TIMEOUT, &format!("rill-driver {}", args.join(" ")))
}

/// `rill-driver status --json`, parsed; panics if it fails.
pub fn status_json(settings: &Path) -> Value {
    let out = run_driver(settings, &["status", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rill-driver status --json failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("status --json printed no JSON ({e}): {text}"))
}

/// What a stopped capture printed.
pub struct Captured {
    pub events: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

/// A running `rill-driver capture --json`. Start it with [`CaptureProc::start`] (which
/// waits for the "capturing" line), stop it with [`CaptureProc::stop`] (SIGTERM: the
/// driver drains the ring, prints the rest and exits 0).
pub struct CaptureProc {
    proc: Proc,
    stdout: Option<JoinHandle<String>>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
    ready: Receiver<()>,
}

impl CaptureProc {
    /// Spawns `rill-driver --settings S capture --json --path P... EXTRA...` without
    /// waiting for it to be ready.
    pub fn spawn(settings: &Path, paths: &[&Path], extra: &[&str]) -> CaptureProc {
        let mut cmd = Command::new(driver_bin());
        cmd.arg("--settings")
            .arg(settings)
            .args(["capture", "--json"]);
        for p in paths {
            cmd.arg("--path").arg(p);
        }
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("rill-driver capture {paths:?} {extra:?}");
        let mut proc = Proc::spawn(cmd, what);
        let stdout = read_all(proc.child.stdout.take().expect("piped stdout"));
        let err = proc.child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, ready) = mpsc::channel();
        let buf = Arc::clone(&stderr);
        let stderr_thread = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let is_ready = line.contains("capturing under");
                let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                b.push_str(&line);
                b.push('\n');
                drop(b);
                if is_ready {
                    let _ = tx.send(());
                }
            }
        });
        CaptureProc {
            proc,
            stdout: Some(stdout),
            stderr,
            stderr_thread: Some(stderr_thread),
            ready,
        }
    }

    /// Spawns the capture and waits until it reports that it is capturing.
    pub fn start(settings: &Path, paths: &[&Path], extra: &[&str]) -> CaptureProc {
        let mut c = Self::spawn(settings, paths, extra);
        c.wait_ready();
        c
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// What the capture printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for the "rill-driver: capturing under ..." line; panics with stderr if the
    /// capture exits first or takes longer than [`READY_TIMEOUT`].
    pub fn wait_ready(&mut self) {
        match self.ready.recv_timeout(READY_TIMEOUT) {
            Ok(()) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.proc.wait_for(Duration::from_secs(10));
                if let Some(t) = self.stderr_thread.take() {
                    let _ = t.join();
                }
                panic!(
                    "{} exited before capturing ({status:?}); stderr:\n{}",
                    self.proc.what,
                    self.stderr()
                );
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "{} did not report capturing within {READY_TIMEOUT:?}; stderr:\n{}",
                self.proc.what,
                self.stderr()
            ),
        }
    }

    /// Waits up to `timeout` for the capture to exit by itself; its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let st = self.proc.wait_for(timeout)?;
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        Some(st)
    }

    /// SIGTERM, then waits for the capture to flush and exit 0; returns what it printed.
    /// Panics (after SIGKILL) if it does not exit within [`RUN_TIMEOUT`] or exits non-zero.
    pub fn stop(mut self) -> Captured {
        self.proc.signal(Signal::SIGTERM);
        let status = self.wait_exit(RUN_TIMEOUT);
        if status.is_none() {
            self.proc.kill_and_reap();
        }
        let stdout = self.stdout.take().unwrap().join().unwrap_or_default();
        let stderr = self.stderr();
        match status {
            None => panic!(
                "{} did not exit within {RUN_TIMEOUT:?} of SIGTERM; stderr:\n{stderr}",
                self.proc.what
            ),
            Some(s) if !s.success() => panic!(
                "{} exited with {s} after SIGTERM (expected 0); stderr:\n{stderr}",
                self.proc.what
            ),
            Some(_) => {}
        }
        Captured {
            events: parse_events(&stdout),
            stdout,
            stderr,
        }
    }
}

/// What a workload reported: its pid and the tids of the threads that did the work.
#[derive(Debug)]
pub struct WorkloadResult {
    pub pid: u32,
    pub tids: Vec<u32>,
    /// Scenario-specific facts (e.g. inode numbers), or null.
    pub extra: Value,
}

/// A `rill-workload` process, waiting for `go` on stdin until [`Workload::go`].
pub struct Workload {
    proc: Proc,
    stdin: Option<ChildStdin>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl Workload {
    /// Spawns `BIN SCENARIO DIR PARAMS...`; the pid is known at once.
    pub fn spawn(bin: &str, scenario: &str, dir: &Path, params: &[&str]) -> Workload {
        let mut cmd = Command::new(bin);
        cmd.arg(scenario)
            .arg(dir)
            .args(params)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut proc = Proc::spawn(cmd, format!("rill-workload {scenario}"));
        let stdin = proc.child.stdin.take();
        let stdout = Some(read_all(proc.child.stdout.take().unwrap()));
        let stderr = Some(read_all(proc.child.stderr.take().unwrap()));
        Workload {
            proc,
            stdin,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Lets the workload run its scenario.
    pub fn go(&mut self) {
        let mut stdin = self.stdin.take().expect("go sent once");
        stdin
            .write_all(b"go\n")
            .unwrap_or_else(|e| panic!("telling {} to go: {e}", self.proc.what));
    }

    /// Waits for the workload to finish (within [`RUN_TIMEOUT`]) and checks it succeeded.
    pub fn finish(mut self) -> WorkloadResult {
        let status = self.proc.wait_for(RUN_TIMEOUT);
        if status.is_none() {
            self.proc.kill_and_reap();
        }
        let out = self.stdout.take().unwrap().join().unwrap_or_default();
        let err = self.stderr.take().unwrap().join().unwrap_or_default();
        let what = &self.proc.what;
        match status {
            None => panic!("{what} did not finish within {RUN_TIMEOUT:?}; stderr:\n{err}"),
            Some(s) if !s.success() => panic!("{what} failed ({s}); stderr:\n{err}"),
            Some(_) => {}
        }
        let v: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{what} printed no JSON ({e}): {out:?}"));
        let pid = v["pid"].as_u64().expect("pid") as u32;
        assert_eq!(pid, self.proc.pid(), "{what} reported another pid");
        let tids = v["tids"]
            .as_array()
            .expect("tids")
            .iter()
            .map(|t| t.as_u64().expect("tid") as u32)
            .collect();
        WorkloadResult {
            pid,
            tids,
            extra: v["extra"].clone(),
        }
    }

    /// Spawns, says go and finishes: the whole scenario.
    pub fn run(bin: &str, scenario: &str, dir: &Path, params: &[&str]) -> WorkloadResult {
        let mut w = Self::spawn(bin, scenario, dir, params);
        w.go();
        w.finish()
    }
}
