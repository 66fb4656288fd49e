//! `rillctl verify` between two real `rilld serve` processes on loopback: an equal
//! replica verifies clean; every kind of difference planted on the replica directly
//! (data of the same size and mtime, mode, owner, extended attribute, a missing file, an
//! extra file) is found, counted in the status report and written to the verification
//! log, and a verification with `--remirror` repairs it; a verification while a writer
//! keeps changing the source reports nothing false; events 4058 and 4062 are logged.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rill_tests::hosts::paired_hosts;
use rill_tests::process::output_within;
use rill_tests::tree::equal_trees_with;
use rill_tests::{rillctl_bin, TestDir};
use rill_tools::pair::{in_sync, start_job, wait_until, Host};

/// Extended attributes replicated (and so verified), short network timers, and a
/// verification that retries at once.
const EXTRA: &str = "ExtendedAttributes = 1\nNetworkTimeout = 6\nNetworkRetry = 1\n\
                     VerifyRetryInterval = 0\n";
const JOB: &str = "verified";
/// How long a verification of the test's small trees may take.
const VERIFY_WITHIN: Duration = Duration::from_secs(120);
/// How long replication may take to converge.
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

struct Pair {
    source: Host,
    target: Host,
    src: PathBuf,
    dst: PathBuf,
    _dirs: Vec<TestDir>,
}

/// Two paired hosts replicating a populated tree (see [`populate`]), converged.
fn started(tag: &str) -> Pair {
    let h = paired_hosts(tag, EXTRA, EXTRA);
    let p = Pair {
        source: h.source,
        target: h.target,
        src: h.src,
        dst: h.dst,
        _dirs: h.dirs,
    };
    populate(&p.src);
    start_job(&p.source, &p.target, JOB, &p.src, &p.dst, &[]).expect("job");
    p.converge();
    p
}

impl Pair {
    /// `rillctl --config SOURCE ARGS`, which must succeed; its standard output.
    fn ctl(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(rillctl_bin());
        cmd.arg("--config").arg(&self.source.config).args(args);
        let out = output_within(cmd, Duration::from_secs(30), "rillctl");
        assert!(
            out.status.success(),
            "rillctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The job's `verification` in `rillctl status --json`.
    fn verification(&self) -> serde_json::Value {
        let report: serde_json::Value =
            serde_json::from_str(&self.ctl(&["status", JOB, "--json"])).expect("status JSON");
        report["jobs"][0]["verification"].clone()
    }

    fn converge(&self) {
        let ok = wait_until(CONVERGE_WITHIN, || {
            Ok(in_sync(&self.source, JOB).unwrap_or(false)
                && equal_trees_with(&self.src, &self.dst, true))
        })
        .unwrap_or(false);
        assert!(ok, "the replica did not converge\n{}", self.logs());
    }

    /// Runs `rillctl verify JOB ARGS` and returns the result once it completed; the
    /// status table shows the verification too.
    fn verify(&self, args: &[&str]) -> serde_json::Value {
        let before = self.verification()["id"].as_u64();
        let mut all = vec!["verify", JOB];
        all.extend_from_slice(args);
        self.ctl(&all);
        let last = self.wait_for(|v| v["id"].as_u64() != before && v["state"] == "completed");
        let table = self.ctl(&["status", JOB]);
        assert!(table.contains("verification"), "{table}");
        last
    }

    /// The job's verification once `ready` holds for it, within [`VERIFY_WITHIN`].
    fn wait_for(&self, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let done = wait_until(VERIFY_WITHIN, || {
            last = self.verification();
            Ok(ready(&last))
        })
        .unwrap_or(false);
        assert!(
            done,
            "the verification did not get there: {last}\n{}",
            self.logs()
        );
        last
    }

    fn verify_log(&self) -> String {
        std::fs::read_to_string(self.source.dir.join("log/DTVerify.log")).unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!(
            "--- source events\n{}\n--- target events\n{}\n--- verification log\n{}",
            self.source.event_log(),
            self.target.event_log(),
            self.verify_log()
        )
    }
}

/// Counts of a verification's result: (differing, missing, extra).
fn found(v: &serde_json::Value) -> (u64, u64, u64) {
    let n = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
    (n("differing"), n("missing"), n("extra"))
}

/// A tree of a few kinds of objects, one file per difference the tests plant.
fn populate(src: &Path) {
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    for (name, len) in [
        ("same.bin", 300_000),
        ("mode.txt", 10),
        ("owner.txt", 10),
        ("xattr.txt", 10),
        ("missing.txt", 10),
        ("sub/deeper/big.bin", 3_000_000),
    ] {
        std::fs::write(src.join(name), rill_tests::data_pattern(len, len as u8)).unwrap();
    }
    std::os::unix::fs::symlink("mode.txt", src.join("sub/link")).unwrap();
    set_xattr(&src.join("sub/deeper/big.bin"), "user.kept", b"yes");
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let (p, n) = (
        CString::new(path.as_os_str().as_bytes()).unwrap(),
        CString::new(name).unwrap(),
    );
    // SAFETY: NUL-terminated strings and a value of the length passed, only read.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// An equal replica verifies with nothing different, through the CLI, and the event log
/// has the verification's start (4058) and completion (4062).
#[test]
fn an_equal_replica_verifies_clean() {
    let p = started("verify-equal");
    let v = p.verify(&[]);
    assert_eq!(found(&v), (0, 0, 0), "{v}\n{}", p.logs());
    assert!(v["filesVerified"].as_u64().unwrap_or(0) >= 9, "{v}");
    assert!(v["bytesVerified"].as_u64().unwrap_or(0) >= 3_300_000, "{v}");
    let events = p.source.event_log();
    for id in ["4058", "4062"] {
        assert!(
            events.contains(&format!(" {id} Service has ")),
            "no event {id}:\n{events}"
        );
    }
    assert!(p.verify_log().contains("completed: "), "{}", p.verify_log());
}

/// Each kind of difference planted on the replica is found and logged with what differs;
/// `--remirror` repairs them, and a verification after finds nothing.
#[test]
fn planted_differences_are_found_logged_and_remirrored() {
    let p = started("verify-planted");
    plant(&p.dst);
    let v = p.verify(&[]);
    assert_eq!(found(&v), (4, 1, 1), "{v}\n{}", p.logs());
    let log = p.verify_log();
    for line in [
        "DIFFERENT same.bin: data",
        "DIFFERENT mode.txt: mode 644 (replica 600)",
        "DIFFERENT owner.txt: owner 0:0 (replica 4321:4321)",
        "DIFFERENT xattr.txt: extended attributes user.planted",
        "MISSING missing.txt",
        "EXTRA extra.txt",
    ] {
        assert!(
            log.contains(line),
            "no {line:?} in the verification log:\n{log}"
        );
    }
    let repaired = p.verify(&["--remirror"]);
    assert_eq!(found(&repaired), (4, 1, 1), "{repaired}");
    assert_eq!(repaired["remirrored"].as_u64(), Some(6), "{repaired}");
    p.converge();
    let after = p.verify(&[]);
    assert_eq!(found(&after), (0, 0, 0), "{after}\n{}", p.logs());
}

/// On the replica directly: data changed in place with size and mtime kept, a mode, an
/// owner, an extended attribute, a file removed, a file only the replica has.
fn plant(dst: &Path) {
    let same = dst.join("same.bin");
    let mtime = std::fs::metadata(&same).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&same).unwrap();
    bytes[200_000] ^= 0xff;
    std::fs::write(&same, &bytes).unwrap();
    let f = std::fs::File::options().write(true).open(&same).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dst.join("mode.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(dst.join("owner.txt"), Some(4321), Some(4321)).unwrap();
    set_xattr(&dst.join("xattr.txt"), "user.planted", b"1");
    std::fs::remove_file(dst.join("missing.txt")).unwrap();
    std::fs::write(dst.join("extra.txt"), b"only here").unwrap();
}

/// While a writer keeps changing files (data, modes, renames, new and removed files),
/// verifications report no difference, time after time.
#[test]
fn a_verification_while_the_source_changes_reports_nothing_false() {
    let p = started("verify-busy");
    let writer = Writer::start(p.src.join("busy"));
    for round in 0..3 {
        let v = p.verify(&[]);
        assert_eq!(found(&v), (0, 0, 0), "round {round}: {v}\n{}", p.logs());
        let looked = v["filesVerified"].as_u64().unwrap_or(0) + v["changed"].as_u64().unwrap_or(0);
        assert!(
            looked >= 20,
            "round {round}: the busy files were not looked at: {v}"
        );
        eprintln!("round {round}: {v}");
    }
    drop(writer);
    p.converge();
}

/// A thread running [`keep_writing`], stopped and joined when dropped (a failed
/// assertion included, so it does not write on into a removed directory).
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(dir: PathBuf) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || keep_writing(&dir, &flag));
        Writer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Files the writer keeps changing, round robin: each is left alone for about a tenth of
/// a second between changes, so some are compared and some found changing.
const FILES: u64 = 32;

/// Changes files in `dir` until `stop`: writes of every size, modes, renames, new and
/// removed files, a few milliseconds apart.
fn keep_writing(dir: &Path, stop: &AtomicBool) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let name = dir.join(format!("f{}", i % FILES));
        let len = ((i * 7919) % 200_000) as usize;
        std::fs::write(&name, rill_tests::data_pattern(len, i as u8)).unwrap();
        match i % 4 {
            0 => {
                let mode = if i.is_multiple_of(8) { 0o600 } else { 0o644 };
                let _ = std::fs::set_permissions(&name, std::fs::Permissions::from_mode(mode));
            }
            1 => {
                let _ = std::fs::rename(&name, dir.join(format!("r{}", i % 5)));
            }
            2 => {
                let _ = std::fs::remove_file(dir.join(format!("r{}", i % 5)));
            }
            _ => {}
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// A verification whose requests find the target down pauses (4059), retries after
/// `VerifyRetryInterval` (4060), and completes once the target is back.
#[test]
fn a_verification_retries_while_the_target_is_down() {
    let mut p = started("verify-retry");
    p.target.stop().expect("stopping the target");
    p.ctl(&["verify", JOB]);
    // Paused for VerifyRetryInterval (0 here): the event says it was.
    let paused = wait_until(VERIFY_WITHIN, || {
        Ok(p.source.event_log().contains(" 4059 "))
    });
    assert!(paused.unwrap_or(false), "no pause\n{}", p.logs());
    p.target.restart().expect("restarting the target");
    let v = p.wait_for(|v| v["state"] == "completed");
    assert_eq!(found(&v), (0, 0, 0), "{v}\n{}", p.logs());
    let events = p.source.event_log();
    for id in ["4058", "4059", "4060", "4062"] {
        assert!(
            events.contains(&format!(" {id} Service has ")),
            "no event {id}:\n{events}"
        );
    }
}

/// A job verified `--every 10s` is verified on its own, more than once, and a schedule
/// set `off` shows no more; the schedule is kept in the job store and in the status.
#[test]
fn a_scheduled_verification_runs_on_its_own() {
    let p = started("verify-scheduled");
    p.ctl(&["verify", JOB, "--every", "10s"]);
    let first = p.wait_for(|v| v["state"] == "completed");
    let first_id = first["id"].as_u64();
    p.wait_for(|v| v["state"] == "completed" && v["id"].as_u64() != first_id);
    let report: serde_json::Value =
        serde_json::from_str(&p.ctl(&["status", JOB, "--json"])).expect("status JSON");
    assert_eq!(
        report["jobs"][0]["verifySchedule"]["everySeconds"], 10,
        "{report}"
    );
    p.ctl(&["verify", JOB, "--every", "off"]);
    let report: serde_json::Value =
        serde_json::from_str(&p.ctl(&["status", JOB, "--json"])).expect("status JSON");
    assert!(report["jobs"][0]["verifySchedule"].is_null(), "{report}");
}
