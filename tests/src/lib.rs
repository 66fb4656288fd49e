//! Shared helpers for rill's integration tests against the real kernel.
//!
//! The tests drive the real `rill-driver` binary and a real workload process
//! (`rill-workload`), because what matters is what an administrator and the engine see:
//! the JSON lines `rill-driver capture --json` prints for operations a separate process
//! performed. Modules:
//!
//! - [`driver_bin`]: builds `rill-driver` once per test process and returns its path;
//! - [`require_kernel_support`]: root and BTF, failing (never skipping) when missing;
//! - [`process`]: the capture process, the workload process, one-shot CLI runs, all with
//!   bounded timeouts and killed (by the pid spawned) on drop;
//! - [`events`]: parsing and exact comparison of captured events;
//! - [`fs`]: temporary test directories and tmpfs mounts, removed on drop;
//! - [`pinned`]: serialises tests that use the pinned driver and unloads it afterwards;
//! - [`sys`]: raw syscalls for the workload;
//! - [`beneath`]: changes beneath the write-family syscalls (mappings, fio, reflinks);
//! - [`replfuzz`]: the replication fuzzer (`rill-replfuzz`).

pub mod beneath;
pub mod events;
pub mod fs;
pub mod hosts;
pub mod pinned;
pub mod process;
pub mod replfuzz;
pub mod sys;
pub mod tree;
pub mod uring;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub use events::{assert_ops, assert_seq_increasing, of_pid, summary};
pub use fs::{LoopFs, SettingsFile, TestDir, Tmpfs, Xfs};
pub use pinned::PinnedGuard;
pub use process::{run_driver, CaptureProc, Captured, Workload};

/// How long a capture may take to report that it is capturing (a private load takes about
/// half a second; parallel tests load several at once).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a workload, a CLI call or a capture's flush-and-exit may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Building the driver binary (usually a no-op link check: `cargo test` built the crate).
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// The workspace root: `CARGO_MANIFEST_DIR/..`.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The target directory: `CARGO_TARGET_DIR` (relative to the workspace if relative) or
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
        Some(t) => workspace_dir().join(t),
        None => workspace_dir().join("target"),
    }
}

/// Builds `rill-driver` (once per test process) and returns its path. Panics with cargo's
/// output if the build fails: a test must never run against a stale binary.
pub fn driver_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("rill-driver-linux", "rill-driver"))
}

/// Builds `rilld` (once per test process) and returns its path, as [`driver_bin`].
pub fn rilld_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("rill-engine", "rilld"))
}

/// Builds `rillctl` (once per test process) and returns its path, as [`driver_bin`].
pub fn rillctl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("rill-ctl", "rillctl"))
}

fn build_bin(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = target_dir();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_dir())
        .args(["build", "-p", package, "--bin", bin])
        .arg("--target-dir")
        .arg(&target);
    let out = process::output_within(cmd, BUILD_TIMEOUT, &format!("cargo build of {bin}"));
    if !out.status.success() {
        panic!(
            "`cargo build -p {package} --bin {bin}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = target.join("debug").join(bin);
    assert!(
        path.is_file(),
        "cargo built {bin} but {} does not exist",
        path.display()
    );
    path
}

/// Fails the test unless it runs as root on a kernel with BTF. Never skips: in CI
/// (`CI=true`) a runner without them is a broken runner, and elsewhere a silently skipped
/// kernel test would look like a pass.
pub fn require_kernel_support() {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (loading eBPF programs and fanotify need CAP_BPF and CAP_SYS_ADMIN)");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        missing.push("kernel BTF at /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF=y)");
    }
    if missing.is_empty() {
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if ci {
        panic!(
            "CI=true: this kernel test needs {}; the CI runner must provide it (failing, not skipping)",
            missing.join(" and ")
        );
    }
    panic!(
        "this kernel test needs {}; run the suite as root on a BTF kernel, e.g. \
         `sudo -E cargo test -p rill-tests` (it fails rather than skips, so a missing \
         capability is never mistaken for a pass)",
        missing.join(" and ")
    );
}

/// Write sizes at every boundary of the driver's ring slot sizes (64, 512, 4096, 16384,
/// 65536 bytes of data) and its inline limit.
pub const DATA_SIZES: [usize; 12] = [
    1, 64, 65, 512, 513, 4096, 4097, 16384, 16385, 65535, 65536, 3,
];

/// Bytes that differ by position and by `seed`, so a shifted or mixed-up copy is caught.
pub fn data_pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed as usize * 7) % 251) as u8)
        .collect()
}

/// Starts an in-process eBPF capture of `dir` (through the driver library, for tests that
/// need what `capture --json` does not print), then runs `rill-workload SCENARIO dir` to
/// completion in a child process. Returns the capture and the workload's pid.
pub fn capture_workload(
    workload: &str,
    scenario: &str,
    dir: &Path,
) -> (rill_driver_linux::capture::Capture, u32) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let capture = rill_driver_linux::capture::Capture::start(
        &[dir.to_path_buf()],
        rill_driver_linux::capture::Source::Private,
        rill_driver_linux::settings::CaptureMode::Ebpf,
        &rill_driver_linux::settings::DriverSettings::default(),
    )
    .expect("start an eBPF capture");
    let mut child = Command::new(workload)
        .args([scenario, &dir.display().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn rill-workload");
    let pid = child.id();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("say go");
    assert!(
        child.wait().expect("wait for the workload").success(),
        "rill-workload {scenario} failed"
    );
    (capture, pid)
}
