//! The network link between a source and a target cut and restored, for real: the target
//! `rilld serve` runs in its own network namespace, reached from the source (in the root
//! namespace) over a veth pair, and the test takes the namespace's end of the pair down
//! (every packet dropped, nothing rerouted). The target is administered with `rillctl`
//! run inside its namespace, where its management API listens.
//!
//! - A quiet cut (nothing in flight): the job leaves Active within `NetworkTimeout`, the
//!   files written meanwhile queue on the source (`conOpsInRepQueue`), and once the link
//!   is back the job reconnects by itself (a new connection in the target's log) and the
//!   replica converges.
//! - A cut with a large write on its way (more than the socket's send buffer holds): the
//!   same, and the operation lost on the way is resent (`conResentOpCount`) on the new
//!   connection.
//!
//! Namespace, veth pair and processes are removed by guards, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rill_engine::mgmt::{ConState, JobAction, JobStatus, Request, StatusReport};
use rill_engine::storage::job_store::{JobSpec, JobTarget};
use rill_tests::process::output_within;
use rill_tests::tree::{assert_equal_trees, equal_trees};
use rill_tests::{
    data_pattern, require_kernel_support, rilld_bin, target_dir, workspace_dir, TestDir,
};
use rill_tools::pair::{free_ports, in_sync, wait_until, Host, Role};

/// Short network timers (seconds): a dead link is noticed after `NetworkTimeout` of
/// silence and retried every `NetworkRetry`.
const EXTRA: &str = "NetworkTimeout = 6\nNetworkRetry = 1\n";
/// How long an `ip` or `rillctl` invocation may take.
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds `rillctl` (once per test process) and returns its path.
fn rillctl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = target_dir();
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(workspace_dir())
            .args([
                "build",
                "-p",
                "rill-ctl",
                "--bin",
                "rillctl",
                "--target-dir",
            ])
            .arg(&target);
        let out = output_within(cmd, Duration::from_secs(900), "cargo build of rillctl");
        assert!(
            out.status.success(),
            "`cargo build -p rill-ctl --bin rillctl` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let path = target.join("debug/rillctl");
        assert!(path.is_file(), "{} was not built", path.display());
        path
    })
}

/// Runs a command within `CMD_TIMEOUT`; returns its output whatever its status.
fn run(program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args);
    output_within(cmd, CMD_TIMEOUT, &format!("{program} {}", args.join(" ")))
}

/// Runs `ip ARGS`, panicking with its error output unless it succeeds.
fn ip(args: &[&str]) {
    let out = run("ip", args);
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fails (never skips) unless `ip` with network-namespace support is there: in CI
/// (`CI=true`) a runner without it is a broken runner.
fn require_netns_support() {
    let ok = Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        panic!(
            "this test needs iproute2's `ip` with network namespaces (`ip netns`), as root{}",
            if ci {
                "; CI=true: the runner must provide it (failing, not skipping)"
            } else {
                " (it fails rather than skips, so a missing tool is never mistaken for a pass)"
            }
        );
    }
}

/// A network namespace for the target and a veth pair to it from the root namespace:
/// `10.231.X.1/24` on the root end, `10.231.X.2/24` inside. Removed on drop (with the
/// processes in it already ended by their own guards), even when the test fails.
struct Net {
    ns: String,
    root_dev: String,
    ns_dev: String,
    subnet: u8,
}

/// Held for the whole of a scenario (see `Net::create`).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

impl Net {
    fn create() -> Net {
        let pid = std::process::id();
        // A /24 no interface of this host uses (another run of this test included).
        let used = String::from_utf8_lossy(&run("ip", &["-4", "addr"]).stdout).into_owned();
        let subnet = (0..200u32)
            .map(|k| ((pid + k) % 200 + 20) as u8)
            .find(|x| !used.contains(&format!("10.231.{x}.")))
            .expect("a free 10.231.X.0/24");
        let net = Net {
            ns: format!("rill-tgt-{pid}"),
            root_dev: format!("rl{pid}s"),
            ns_dev: format!("rl{pid}t"),
            subnet,
        };
        // The guard exists before the first command, so a half-made setup is removed too.
        let (ns, root_dev, ns_dev) = (&net.ns, &net.root_dev, &net.ns_dev);
        ip(&["netns", "add", ns]);
        ip(&[
            "link", "add", root_dev, "type", "veth", "peer", "name", ns_dev,
        ]);
        ip(&["link", "set", ns_dev, "netns", ns]);
        ip(&[
            "addr",
            "add",
            &format!("10.231.{subnet}.1/24"),
            "dev",
            root_dev,
        ]);
        ip(&["link", "set", root_dev, "up"]);
        net.ip_in(&[
            "addr",
            "add",
            &format!("10.231.{subnet}.2/24"),
            "dev",
            ns_dev,
        ]);
        net.ip_in(&["link", "set", ns_dev, "up"]);
        // The target's management API listens on the namespace's own 127.0.0.1.
        net.ip_in(&["link", "set", "lo", "up"]);
        net
    }

    fn ip_in(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.ns, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// The target's address, as the source's job names it.
    fn target_ip(&self) -> String {
        format!("10.231.{}.2", self.subnet)
    }

    /// Takes the namespace's end of the pair down: the root end loses its carrier, and
    /// every packet either way is dropped (nothing is rerouted elsewhere).
    fn cut(&self) {
        self.ip_in(&["link", "set", &self.ns_dev, "down"]);
    }

    fn restore(&self) {
        self.ip_in(&["link", "set", &self.ns_dev, "up"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting the namespace destroys the veth end in it, and with it the pair.
        for args in [
            vec!["netns", "del", self.ns.as_str()],
            vec!["link", "del", self.root_dev.as_str()],
        ] {
            let _ = Command::new("ip")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A target `rilld serve` inside the namespace (`ip netns exec` execs rilld in place, so
/// the child's pid is rilld's), administered with `rillctl` run in the namespace too.
struct NsTarget {
    ns: String,
    dir: PathBuf,
    config: PathBuf,
    net_port: u16,
    child: Option<Child>,
}

impl NsTarget {
    /// Writes the settings as `Host::start` does and starts the daemon; waits for its API.
    fn start(net: &Net, dir: &Path) -> NsTarget {
        let [net_port, api_port] = free_ports().unwrap();
        let config = dir.join("rill.toml");
        std::fs::write(
            &config,
            format!(
                "LoadSourceTarget = 2\nNetPort = {net_port}\nManagementPort = {api_port}\n\
                 DataPath = \"{d}/data\"\nQJournalDir = \"{d}/queue\"\nLogDir = \"{d}/log\"\n{EXTRA}",
                d = dir.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("rilld.out")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &net.ns])
            .arg(rilld_bin())
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ip netns exec rilld");
        let mut t = NsTarget {
            ns: net.ns.clone(),
            dir: dir.to_path_buf(),
            config,
            net_port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if t.ctl(&["identity"]).status.success() {
                return t;
            }
            if let Some(status) = t.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "the target rilld exited ({status}) at start:\n{}",
                    t.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the target's API did not come up within 30 s:\n{}",
                t.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `rillctl --config CONFIG ARGS` inside the namespace.
    fn ctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(rillctl_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args);
        output_within(cmd, CMD_TIMEOUT, &format!("rillctl {}", args.join(" ")))
    }

    /// `rillctl ARGS` that must succeed; its standard output.
    fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "rillctl {} in {} failed ({}): {}",
            args.join(" "),
            self.ns,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fingerprint(&self) -> String {
        let text = self.ctl_ok(&["identity"]);
        text.split_whitespace()
            .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_else(|| panic!("no fingerprint in `rillctl identity`:\n{text}"))
            .to_string()
    }

    fn status(&self) -> StatusReport {
        serde_json::from_str(&self.ctl_ok(&["status", "--json"])).expect("status --json")
    }

    fn event_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/rilld.log")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("rilld.out")).unwrap_or_default()
    }
}

impl Drop for NsTarget {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn write_files(dir: &Path, prefix: &str, n: usize) {
    for i in 0..n {
        std::fs::write(
            dir.join(format!("{prefix}-{i}.txt")),
            data_pattern(500 + i * 97, i as u8),
        )
        .unwrap();
    }
}

/// The root namespace's TCP sockets to `ip`, with their queues and timers, for failure
/// messages.
fn sockets_to(ip: &str) -> String {
    let out = run("ss", &["-tnoi", "dst", ip]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const JOB: &str = "cut";

/// A source in the root namespace replicating job `JOB` to a target in its own namespace.
/// Fields drop in order: the daemons, their directories, then the namespace.
struct Scenario {
    source: Host,
    target: NsTarget,
    src: PathBuf,
    dst: PathBuf,
    _dirs: Vec<TestDir>,
    net: Net,
}

impl Scenario {
    /// Both daemons up and paired, `files` written, the job started and converged.
    fn start(files: usize) -> Scenario {
        require_kernel_support();
        require_netns_support();
        let net = Net::create();
        let (s, t, data) = (
            TestDir::new("netns-shost"),
            TestDir::new("netns-thost"),
            TestDir::new("netns-data"),
        );
        let target = NsTarget::start(&net, t.path());
        let source = Host::start(rilld_bin(), s.path(), Role::Source, EXTRA).expect("source");
        // Paired as an administrator would: the source through its API, the target with
        // rillctl in its namespace.
        source
            .call(Request::TrustAdd {
                name: "target".into(),
                peer: target.fingerprint(),
            })
            .unwrap();
        target.ctl_ok(&["trust", "add", "source", &source.fingerprint().unwrap()]);
        let (src, dst) = (data.subdir("src"), data.join("replica"));
        write_files(&src, "before", files);
        source
            .call(Request::JobCreate(JobSpec {
                name: JOB.into(),
                source: src.clone(),
                target: JobTarget::Network {
                    host: net.target_ip(),
                    port: target.net_port,
                    path: dst.clone(),
                },
                rules: Vec::new(),
            }))
            .unwrap();
        source
            .call(Request::Job {
                name: JOB.into(),
                action: JobAction::Start,
            })
            .unwrap();
        let sc = Scenario {
            source,
            target,
            src,
            dst,
            _dirs: vec![s, t, data],
            net,
        };
        sc.converge(Duration::from_secs(60), "before the cut");
        let sessions = sc
            .target
            .status()
            .target
            .expect("the target role runs")
            .sessions;
        assert!(
            sessions.iter().any(|s| s.job == JOB),
            "the target (rillctl in its namespace) shows the job's session: {sessions:?}"
        );
        assert_eq!(sc.connections(), 1, "one connection so far\n{}", sc.logs());
        sc
    }

    fn status(&self) -> JobStatus {
        self.source.job_status(JOB).unwrap()
    }

    fn logs(&self) -> String {
        format!(
            "--- source events\n{}\n--- source stderr\n{}\n--- target events\n{}\n--- target stderr\n{}",
            self.source.event_log(),
            std::fs::read_to_string(self.source.dir.join("rilld.out")).unwrap_or_default(),
            self.target.event_log(),
            self.target.stderr()
        )
    }

    /// Whether the job is in sync and the trees equal within `within`.
    fn converged(&self, within: Duration) -> bool {
        wait_until(within, || {
            Ok(in_sync(&self.source, JOB).unwrap_or(false)
                && self.dst.is_dir()
                && equal_trees(&self.src, &self.dst))
        })
        .unwrap_or(false)
    }

    fn converge(&self, within: Duration, when: &str) {
        if !self.converged(within) {
            panic!(
                "{when}: the replica did not converge within {within:?}: {:?}\n{}",
                self.status(),
                self.logs()
            );
        }
        assert_equal_trees(&self.src, &self.dst);
    }

    /// Target log lines of event 4016 (connection established) for the job.
    fn connections(&self) -> usize {
        self.target
            .event_log()
            .lines()
            .filter(|l| {
                l.split(' ').nth(6) == Some("4016") && l.contains(&format!("for job {JOB} "))
            })
            .count()
    }

    /// Waits (bounded) for the job to leave Active after a cut made at `cut_at`; returns
    /// how long that took, or what the job and its socket looked like after 30 s.
    fn wait_noticed(&self, cut_at: Instant) -> Result<Duration, String> {
        let left = wait_until(Duration::from_secs(30), || {
            Ok(self.status().con_state != ConState::Active)
        })
        .unwrap();
        if left {
            return Ok(cut_at.elapsed());
        }
        Err(format!(
            "the job was still Active {:?} after the link was cut (NetworkTimeout = 6 s): \
             {:?}\nthe source's sockets to the target then (`ss -tnoi`):\n{}",
            cut_at.elapsed(),
            self.status(),
            sockets_to(&self.net.target_ip())
        ))
    }

    /// After `files` files were written during the cut: the job counts their operations
    /// as queued (at least one per file; none of them reached the target).
    fn wait_queued(&self, files: u64) -> Result<JobStatus, String> {
        let ok = wait_until(Duration::from_secs(20), || {
            Ok(self.status().con_ops_in_rep_queue >= files)
        })
        .unwrap();
        let s = self.status();
        if ok {
            return Ok(s);
        }
        Err(format!(
            "{files} files were written while the link was cut, but conOpsInRepQueue is {} \
             after 20 s (it must count at least one operation per file): {s:?}",
            s.con_ops_in_rep_queue
        ))
    }

    /// Failures found along the way, reported once the whole scenario has run.
    fn finish(&self, failures: Vec<String>) {
        if !failures.is_empty() {
            panic!("{}\n{}", failures.join("\n\n"), self.logs());
        }
    }
}

/// The link cut while nothing is in flight: the job notices within NetworkTimeout, what is
/// written meanwhile queues on the source, and once the link is back the job reconnects by
/// itself and catches up.
#[test]
fn a_quiet_link_cut_is_noticed_queues_and_converges_once_restored() {
    // The namespace, veth and subnet are named after this process: one scenario at a time.
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let sc = Scenario::start(30);
    let mut failures = Vec::new();
    let (resent_before, connections_before) = (sc.status().con_resent_op_count, sc.connections());

    let cut_at = Instant::now();
    sc.net.cut();
    let noticed = sc
        .wait_noticed(cut_at)
        .unwrap_or_else(|why| panic!("{why}\n{}", sc.logs()));
    let files = 200;
    write_files(&sc.src, "cut", files);
    let during = sc.wait_queued(files as u64).unwrap_or_else(|why| {
        failures.push(why);
        sc.status()
    });
    assert_ne!(during.con_state, ConState::Active, "still cut: {during:?}");
    assert!(
        !sc.dst.join("cut-0.txt").exists(),
        "a file written while the link was cut reached the replica: the link was not cut"
    );

    let restored_at = Instant::now();
    sc.net.restore();
    sc.converge(Duration::from_secs(60), "after the link was restored");
    let caught_up = restored_at.elapsed();
    let after = sc.status();
    let reconnections = sc.connections() - connections_before;
    assert!(
        reconnections >= 1,
        "no new connection (4016) in the target's log after the restore; conResentOpCount {} \
         (was {resent_before})\n{}",
        after.con_resent_op_count,
        sc.logs()
    );
    eprintln!(
        "quiet cut noticed after {noticed:?}; while cut: conState {:?}, conOpsInRepQueue {}; \
         caught up {caught_up:?} after the restore; conResentOpCount {} (was {resent_before}); \
         {reconnections} new connection(s) on the target",
        during.con_state, during.con_ops_in_rep_queue, after.con_resent_op_count
    );
    sc.finish(failures);
}

/// The link cut with a large write on its way: the job must still notice within
/// NetworkTimeout, not when TCP gives up on the connection many minutes later. One 8 MiB
/// write is one operation and one frame, more than the socket's send buffer can hold
/// (`net.ipv4.tcp_wmem` allows at most 4 MiB here), so the link is writing to a peer
/// that no longer answers. Once the link is back the operation is resent on a new
/// connection and the replica converges.
#[test]
fn a_link_cut_with_a_large_write_in_flight_is_noticed_and_resent_once_restored() {
    // The namespace, veth and subnet are named after this process: one scenario at a time.
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let sc = Scenario::start(10);
    let mut failures = Vec::new();
    // The file exists on both sides and is open for writing before the cut: an open
    // without O_CREAT or O_TRUNC is no operation, so the write below is the first thing
    // the job sends after the cut.
    let big = sc.src.join("big.bin");
    std::fs::write(&big, b"small at first\n").unwrap();
    sc.converge(Duration::from_secs(60), "before the cut");
    let mut file = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    let (resent_before, connections_before) = (sc.status().con_resent_op_count, sc.connections());

    let cut_at = Instant::now();
    sc.net.cut();
    // Incompressible, so no compression setting can make the frame small.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..8 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::io::Write::write_all(&mut file, &data).unwrap();
    drop(file);
    write_files(&sc.src, "cut", 20);
    let noticed = sc
        .wait_noticed(cut_at)
        .map_err(|why| failures.push(why))
        .ok();
    let during = sc.status();
    assert!(
        !sc.dst.join("cut-19.txt").exists()
            && std::fs::metadata(sc.dst.join("big.bin")).unwrap().len() < data.len() as u64,
        "what was written while the link was cut reached the replica: the link was not cut"
    );

    let restored_at = Instant::now();
    sc.net.restore();
    // Generous: while the job has not noticed the cut, only TCP's retransmissions (backed
    // off to tens of seconds apart by then) find that the target dropped the old connection.
    let within = Duration::from_secs(120);
    let converged = sc.converged(within);
    let caught_up = restored_at.elapsed();
    let after = sc.status();
    let reconnections = sc.connections() - connections_before;
    let replica_big = std::fs::metadata(sc.dst.join("big.bin")).map_or(0, |m| m.len());
    let replica_cut = (0..20)
        .filter(|i| sc.dst.join(format!("cut-{i}.txt")).exists())
        .count();
    if !converged {
        // Does the job still replicate at all, or has it stopped?
        std::fs::write(sc.src.join("probe.txt"), b"probe\n").unwrap();
        let probe = wait_until(Duration::from_secs(15), || {
            Ok(sc.dst.join("probe.txt").exists())
        })
        .unwrap();
        failures.push(format!(
            "after the link was restored the replica did not converge within {within:?}: \
             big.bin has {replica_big} of {} bytes and {replica_cut} of the 20 files written \
             during the cut arrived; {reconnections} new connection(s), conResentOpCount {} \
             (was {resent_before}), conOpsInRepQueue {}, conState {:?}: the write in flight at \
             the cut was neither resent nor acknowledged, and a file written after that {} \
             the replica within 15 s. {after:?}",
            data.len(),
            after.con_resent_op_count,
            after.con_ops_in_rep_queue,
            after.con_state,
            if probe { "reached" } else { "did not reach" },
        ));
    } else if after.con_resent_op_count <= resent_before || reconnections == 0 {
        failures.push(format!(
            "the write in flight at the cut must be resent on a new connection: \
             conResentOpCount {} (was {resent_before}), {reconnections} new connection(s)",
            after.con_resent_op_count
        ));
    }
    eprintln!(
        "cut with a write in flight noticed after {noticed:?} (None: not within 30 s); then \
         conState {:?}, conOpsInRepQueue {}; converged {converged} {caught_up:?} after the \
         restore; conResentOpCount {} (was {resent_before}); {reconnections} new \
         connection(s) on the target",
        during.con_state, during.con_ops_in_rep_queue, after.con_resent_op_count
    );
    sc.finish(failures);
}
