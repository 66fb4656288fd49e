//! `rilld run` as a real process: live replication to a replica that becomes equal to the
//! source, a clean stop on SIGTERM, and after `kill -9` a restart that hands the whole
//! source to the change journal (what was in memory cannot be proven sent).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rill_tests::{require_kernel_support, rilld_bin, TestDir};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_rill-workload");

struct Rilld(Child);

impl Rilld {
    /// Starts `rilld run` and waits for it to say it is capturing.
    fn start(config: &Path, src: &Path, dst: &Path) -> Rilld {
        Rilld::start_with(config, src, dst, &[])
    }

    fn start_with(config: &Path, src: &Path, dst: &Path, extra: &[String]) -> Rilld {
        let mut child = Command::new(rilld_bin())
            .arg("--config")
            .arg(config)
            .args(["run", "--source"])
            .arg(src)
            .arg("--target")
            .arg(dst)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rilld");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.contains("rilld: running") => return Rilld(child),
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!("rilld did not start capturing within 30 s");
                }
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling the child this test spawned, by its pid.
        assert_eq!(unsafe { libc::kill(self.0.id() as i32, sig) }, 0);
    }

    fn wait(mut self) -> std::process::ExitStatus {
        self.0.wait().expect("wait for rilld")
    }
}

impl Drop for Rilld {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The settings of every test here. Extended attributes on: the workloads set some, and a
/// remirror (after a crash, or of what changed while rilld was stopped) copies them only then.
fn config(dir: &Path) -> std::path::PathBuf {
    config_with(dir, "ExtendedAttributes = 1\n")
}

fn config_with(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("rill.toml");
    let text = format!(
        "DataPath = \"{0}/data\"\nQJournalDir = \"{0}/queue\"\nLogDir = \"{0}/log\"\nQJournalFreeSpaceMin = 0\nQMemoryBufferMax = 32\n{extra}",
        dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run_workload(scenario: &str, dir: &Path) {
    use std::io::Write;
    let mut child = Command::new(WORKLOAD)
        .args([scenario, &dir.display().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn rilld_replicates_live_and_stops_cleanly() {
    require_kernel_support();
    let (src, dst, state) = (
        TestDir::new("rilld-src"),
        TestDir::new("rilld-dst"),
        TestDir::new("rilld-state"),
    );
    let cfg = config(state.path());
    let rilld = Rilld::start(&cfg, src.path(), dst.path());
    run_workload("tree", src.path());
    converge_then_stop(rilld, src.path(), dst.path(), "the workload");
    assert!(
        !state.path().join("data/rilld.running").exists(),
        "a clean stop removes the marker"
    );
    let stats: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.path().join("data/statistics.json")).unwrap(),
    )
    .unwrap();
    assert!(stats["RepOpsGenerated"].as_u64().unwrap() > 20, "{stats}");
    assert_eq!(stats["FailedRepCount"], 0, "{stats}");
    let dqp = stats["DriverQueuePercent"].as_f64();
    assert!(dqp.is_some_and(|p| (0.0..=100.0).contains(&p)), "{stats}");
    let log = event_log(state.path());
    assert!(
        log.contains(" Information 4002 ") && log.contains(" Information 4003 "),
        "{log}"
    );

    // What changes while it is stopped reaches the replica when it runs again.
    std::fs::write(src.path().join("while-stopped.txt"), b"made while stopped").unwrap();
    std::fs::create_dir(src.path().join("stopped-dir")).unwrap();
    std::fs::write(src.path().join("stopped-dir/f"), b"also").unwrap();
    let rilld = Rilld::start(&cfg, src.path(), dst.path());
    converge_then_stop(
        rilld,
        src.path(),
        dst.path(),
        "what changed while it was stopped",
    );
}

/// Waits (60 s at most) until the replica equals the source, then stops rilld with SIGTERM
/// and checks that it exits 0 and the trees are still equal.
fn converge_then_stop(rilld: Rilld, src: &Path, dst: &Path, after: &str) {
    converge(src, dst, after, Duration::from_secs(60));
    rilld.signal(libc::SIGTERM);
    assert!(rilld.wait().success(), "rilld exits 0 on SIGTERM");
    rill_tests::tree::assert_equal_trees(src, dst);
}

/// Waits until the replica equals the source; panics, naming the differences, after
/// `limit`. Returns how long it took.
fn converge(src: &Path, dst: &Path, after: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    while !rill_tests::tree::equal_trees(src, dst) {
        if start.elapsed() > limit {
            let (a, b) = (
                rill_tests::tree::snapshot(src),
                rill_tests::tree::snapshot(dst),
            );
            panic!(
                "the replica did not converge within {limit:?} after {after}:\n{}",
                rill_tests::tree::differences(&a, &b, 5).join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// The engine's event log (LogDir/rilld.log).
fn event_log(state: &Path) -> String {
    std::fs::read_to_string(state.join("log/rilld.log")).unwrap_or_default()
}

#[test]
fn after_kill_9_the_source_is_handed_to_the_change_journal() {
    require_kernel_support();
    let (src, dst, state) = (
        TestDir::new("rilld9-src"),
        TestDir::new("rilld9-dst"),
        TestDir::new("rilld9-state"),
    );
    let cfg = config(state.path());
    let rilld = Rilld::start(&cfg, src.path(), dst.path());
    run_workload("tree", src.path());
    rilld.signal(libc::SIGKILL);
    let _ = rilld.wait();
    let rilld = Rilld::start(&cfg, src.path(), dst.path());
    rilld.signal(libc::SIGTERM);
    assert!(rilld.wait().success());
    let out = Command::new(rilld_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("changes")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let src_real = src.path().canonicalize().unwrap();
    assert!(
        text.lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["path"] == src_real.to_string_lossy().as_ref()
                && v["subtree"] == true
                && v["reasons"].as_str().unwrap().contains("Recovery")
        }),
        "the source must be a Recovery subtree entry: {text}"
    );
    let log = event_log(state.path());
    assert!(
        log.lines()
            .any(|l| l.contains(" Warning 4007 ") && l.contains("unclean stop")),
        "{log}"
    );
}

/// Kills rilld with SIGKILL at varying moments while a workload runs, restarting it each
/// time: every restart recovers (the disk queue's torn tails included) and reports the
/// unclean stop, and afterwards the engine still replicates: a fresh workload's subtree
/// converges to an equal replica.
#[test]
fn repeated_kill_9_always_recovers_and_replication_continues() {
    require_kernel_support();
    let (src, dst, state) = (
        TestDir::new("rilldk-src"),
        TestDir::new("rilldk-dst"),
        TestDir::new("rilldk-state"),
    );
    let cfg = config(state.path());
    const TRIALS: u64 = 6;
    for trial in 0..TRIALS {
        let dir = src.path().join(format!("t{trial}"));
        std::fs::create_dir(&dir).unwrap();
        let rilld = Rilld::start(&cfg, src.path(), dst.path());
        let mut workload = Command::new(WORKLOAD)
            .args(["many-files", &dir.display().to_string(), "n=2000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            workload.stdin.take().unwrap().write_all(b"go\n").unwrap();
        }
        // Spread the kills over the workload: early, mid-stream, near its end.
        std::thread::sleep(Duration::from_millis(20 + trial * 70));
        rilld.signal(libc::SIGKILL);
        assert!(!rilld.wait().success(), "killed");
        assert!(workload.wait().unwrap().success());
    }
    let rilld = Rilld::start(&cfg, src.path(), dst.path());
    let fresh = src.path().join("after");
    std::fs::create_dir(&fresh).unwrap();
    run_workload("tree", &fresh);
    let replica = dst.path().join("after");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(replica.is_dir() && rill_tests::tree::equal_trees(&fresh, &replica)) {
        assert!(
            Instant::now() < deadline,
            "replication did not continue after the kills"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rilld.signal(libc::SIGTERM);
    assert!(rilld.wait().success());
    let unclean = event_log(state.path())
        .lines()
        .filter(|l| l.contains(" 4007 ") && l.contains("unclean stop"))
        .count();
    assert_eq!(
        unclean as u64, TRIALS,
        "every unclean stop is reported once"
    );
}

/// SIGHUP re-reads the settings file: a setting that needs no restart takes effect, one
/// that needs a restart is reported as waiting for it; `rilld stats` reads the statistics.
#[test]
fn sighup_applies_live_settings_and_reports_the_rest() {
    require_kernel_support();
    let (src, dst, state) = (
        TestDir::new("rilldh-src"),
        TestDir::new("rilldh-dst"),
        TestDir::new("rilldh-state"),
    );
    let cfg = config(state.path());
    let rilld = Rilld::start(&cfg, src.path(), dst.path());
    let mut text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("QMemoryBufferMax = 32", "QMemoryBufferMax = 64");
    text.push_str("MaxWriteChunkSize = 4096\n");
    std::fs::write(&cfg, text).unwrap();
    rilld.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = event_log(state.path());
        if log.contains("settings reloaded")
            && log.contains("take effect at the next start: QMemoryBufferMax")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no reload events: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1200)); // one statistics interval
    let out = Command::new(rilld_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("stats")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        stats.get("RepOpsGenerated").is_some() && stats.get("DriverQueuePercent").is_some(),
        "{stats}"
    );
    rilld.signal(libc::SIGTERM);
    assert!(rilld.wait().success());
}

/// Replication-set rules on the command line: excluded names and directories never reach
/// the replica, the rest does.
#[test]
fn excluded_paths_are_not_replicated() {
    require_kernel_support();
    let (src, dst, state) = (
        TestDir::new("rillde-src"),
        TestDir::new("rillde-dst"),
        TestDir::new("rillde-state"),
    );
    let cfg = config(state.path());
    let s = src.path().canonicalize().unwrap();
    let rules = [
        "--exclude".to_string(),
        format!("{}/*.tmp", s.display()),
        "--exclude".to_string(),
        format!("{}/cache", s.display()),
    ];
    let rilld = Rilld::start_with(&cfg, src.path(), dst.path(), &rules);
    std::fs::create_dir(s.join("cache")).unwrap();
    std::fs::write(s.join("cache/c"), b"cached").unwrap();
    std::fs::write(s.join("scratch.tmp"), b"temp").unwrap();
    std::fs::create_dir(s.join("sub")).unwrap();
    std::fs::write(s.join("sub/deep.tmp"), b"temp").unwrap();
    std::fs::write(s.join("keep.txt"), b"kept").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read(dst.path().join("keep.txt")).ok().as_deref() != Some(&b"kept"[..]) {
        assert!(Instant::now() < deadline, "keep.txt was not replicated");
        std::thread::sleep(Duration::from_millis(50));
    }
    rilld.signal(libc::SIGTERM);
    assert!(rilld.wait().success());
    assert!(dst.path().join("sub").is_dir());
    for gone in ["cache", "scratch.tmp", "sub/deep.tmp"] {
        assert!(
            !dst.path().join(gone).exists(),
            "{gone} is excluded but was replicated"
        );
    }
}

/// `DisableAttributeReplication` and `ExtendedAttributes` hold for live replication too:
/// with both saying no, a file's data reaches the replica but a later mode change and an
/// extended attribute do not.
#[test]
fn attribute_settings_hold_for_live_replication() {
    use std::os::unix::fs::PermissionsExt;
    require_kernel_support();
    let (src, dst, state) = (
        TestDir::new("rillda-src"),
        TestDir::new("rillda-dst"),
        TestDir::new("rillda-state"),
    );
    let cfg = config_with(
        state.path(),
        "ExtendedAttributes = 0\nDisableAttributeReplication = 1\n",
    );
    let rilld = Rilld::start(&cfg, src.path(), dst.path());
    let file = src.path().join("f");
    // Written by a process of one thread: a write of this (multi-threaded) test process
    // through a descriptor without an offset is a dirty mark, and the remirror it asks
    // for creates the replica's file with the source's mode, attributes off or not.
    let written = std::process::Command::new("sh")
        .args(["-c", "printf data > \"$0\""])
        .arg(&file)
        .status()
        .unwrap();
    assert!(written.success());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o751)).unwrap();
    rill_tests::sys::setxattr(&file.display().to_string(), "user.rill", b"x");
    // Then a file written last: once it is there, everything before it was applied.
    std::fs::write(src.path().join("last"), b"end").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read(dst.path().join("last")).ok().as_deref() != Some(&b"end"[..]) {
        assert!(Instant::now() < deadline, "the files were not replicated");
        std::thread::sleep(Duration::from_millis(50));
    }
    rilld.signal(libc::SIGTERM);
    assert!(rilld.wait().success());
    let copy = dst.path().join("f");
    assert_eq!(std::fs::read(&copy).unwrap(), b"data");
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o7777;
    assert_ne!(
        mode, 0o751,
        "the mode was replicated with DisableAttributeReplication = 1"
    );
    let source_xattrs = rill_tests::tree::xattrs(&file).unwrap();
    assert!(source_xattrs.contains_key("user.rill"), "{source_xattrs:?}");
    let replica_xattrs = rill_tests::tree::xattrs(&copy).unwrap();
    assert!(
        replica_xattrs.is_empty(),
        "extended attributes were replicated with ExtendedAttributes = 0: {replica_xattrs:?}"
    );
}

/// Every way of changing a file beneath the write-family system calls reaches the replica
/// within seconds, the source on a loop-mounted XFS with reflinks: stores into a shared
/// mapping (msynced; and a store into a page already dirty, written back by syncfs),
/// io_uring writes (buffered and O_DIRECT), AIO O_DIRECT writes, reflink copies with
/// `cp` (plain and `--reflink=always`), FICLONERANGE and FIDEDUPERANGE (`xfs_io`), and a
/// reflink copy partly overwritten. Before the second layer of capture and the reflink
/// ioctls, each left the replica with old bytes or an empty file, silently.
#[test]
fn writes_beneath_the_syscalls_reach_the_replica() {
    require_kernel_support();
    let src = rill_tests::Xfs::mount("rilldb-src");
    let (dst, state) = (TestDir::new("rilldb-dst"), TestDir::new("rilldb-state"));
    let cfg = config(state.path());
    let rilld = Rilld::start(&cfg, src.path(), dst.path());
    let mut took = Vec::new();
    rill_tests::beneath::every_way(src.path(), &mut |what, limit| {
        took.push((
            what.to_string(),
            converge(src.path(), dst.path(), what, limit),
        ));
    });
    eprintln!("converged after each step: {took:?}");
    rilld.signal(libc::SIGTERM);
    assert!(rilld.wait().success(), "rilld exits 0 on SIGTERM");
    rill_tests::tree::assert_equal_trees(src.path(), dst.path());
}

/// What one meets before anything runs: a start from a bad settings file names every problem
/// with its line, as `rilld settings check` lists them, and `rilld changes` with no journal
/// says once where it looked and why, and makes no journal there.
#[test]
fn a_start_names_every_settings_problem_and_changes_says_where_it_looked() {
    let state = TestDir::new("rilld-first-steps");
    let rilld = |config: &Path, args: &[&str]| {
        Command::new(rilld_bin())
            .arg("--config")
            .arg(config)
            .args(args)
            .output()
            .unwrap()
    };
    let bad = state.path().join("bad.toml");
    std::fs::write(&bad, "QMemoryBufferMax = 0\nFoo = 1\n").unwrap();
    let check = rilld(&bad, &["settings", "check"]);
    let listed = String::from_utf8_lossy(&check.stdout).into_owned();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    for args in [
        &["serve", "--capture", "private"][..],
        &["run", "--source", "/", "--target", "/nonexistent"],
        &["changes"],
        &["settings", "list"],
    ] {
        let out = rilld(&bad, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        for line in listed.lines() {
            assert!(err.contains(line), "{args:?}: {line:?} missing from {err}");
        }
    }

    let cfg = config(state.path());
    let out = rilld(&cfg, &["changes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let journal = state.path().join("data/change-journal.redb");
    assert!(
        err.starts_with(&format!(
            "rilld: no change journal at {}",
            journal.display()
        )) && err.contains("`rilld run`")
            && err.contains(&cfg.display().to_string()),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!journal.exists(), "listing made a journal");
}

/// `rilld settings list` reads in a terminal of 100 columns: no line is wider, whatever the
/// length of a setting's allowed values or description, and every setting is listed.
#[test]
fn settings_list_keeps_within_100_columns() {
    let state = TestDir::new("rilld-list-width");
    let cfg = config(state.path());
    let out = Command::new(rilld_bin())
        .arg("--config")
        .arg(&cfg)
        .args(["settings", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wide: Vec<String> = text
        .lines()
        .filter(|l| l.chars().count() > 100)
        .map(|l| format!("{} columns: {l}", l.chars().count()))
        .collect();
    assert!(
        wide.is_empty(),
        "lines wider than 100 columns:\n{}",
        wide.join("\n")
    );
    // each setting heads a block at the left margin, with its value from the file
    let heads: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    let names: Vec<&str> = heads.iter().filter_map(|h| h.split(' ').next()).collect();
    let all: Vec<&str> = rill_engine::settings::SETTINGS
        .iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, all, "{text}");
    assert!(
        heads.contains(&"QMemoryBufferMax = 32 (default 256; a change needs a restart)"),
        "{text}"
    );
    let data = format!("DataPath = {}/data ", state.path().display());
    assert!(heads.iter().any(|h| h.starts_with(&data)), "{text}");
}
