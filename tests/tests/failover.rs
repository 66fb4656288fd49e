//! Failover with real processes: two `rilld serve` on loopback, the source killed with
//! SIGKILL (the host lost), the target's monitor meeting the failover condition and
//! failing over, the failover scripts, the source refused when it comes back, a test
//! failover and its undo, a failback, and bad input refused.
//!
//! The monitor's timers are small (`PingFrequency = 1`, `MissedPackets = 3`: the
//! condition is met 3 s after the source's last word).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rill_engine::mgmt::{
    FailoverMode, FailoverScripts, FailoverState, Request, Response, TargetSessionStatus,
};
use rill_tests::hosts::{paired_hosts, Hosts};
use rill_tests::process::output_within;
use rill_tests::rillctl_bin;
use rill_tests::tree::equal_trees;
use rill_tools::pair::{in_sync, start_job, wait_until, Host};

const JOB: &str = "fo";
/// The monitor's settings on the target: the condition after 3 s of silence.
const MONITOR: &str = "PingFrequency = 1\nMissedPackets = 3\n";
/// `MissedPackets` x `PingFrequency` above.
const CONDITION_AFTER: Duration = Duration::from_secs(3);
/// The target's ping interval: the source's last word may come this long before it dies.
const PING: Duration = Duration::from_secs(1);
/// How late the condition may come: the monitor's quarter-second look, the status
/// request's round trip, and a loaded machine's delays.
const CONDITION_SLACK: Duration = Duration::from_secs(3);
/// The source retries its target every second.
const SOURCE: &str = "NetworkRetry = 1\n";
/// Rows the database holds when the source is lost.
const ROWS: i64 = 500;
/// How long a pre-failover script sleeps between its two lines.
const PRE_SCRIPT_SLEEP: &str = "2";

/// The target's row of the job.
fn session(target: &Host) -> Option<TargetSessionStatus> {
    match target.call(Request::Status { name: None }).ok()? {
        Response::Status(r) => r.target?.sessions.into_iter().find(|s| s.job == JOB),
        _ => None,
    }
}

fn state(target: &Host) -> Option<FailoverState> {
    session(target).map(|s| s.failover_state)
}

/// Starts the job and writes a SQLite database of [`ROWS`] rows, committed in several
/// transactions, on the source; returns once the replica has all of it.
fn replicate_a_database(h: &Hosts) -> PathBuf {
    start_job(&h.source, &h.target, JOB, &h.src, &h.dst, &[]).expect("job");
    let db = h.src.join("app.db");
    let c = rusqlite::Connection::open(&db).expect("open");
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .expect("create");
    for chunk in 0..ROWS / 100 {
        let tx = c.unchecked_transaction().expect("tx");
        for i in 0..100 {
            tx.execute(
                "INSERT INTO t (v) VALUES (?1)",
                [format!("row {}", chunk * 100 + i)],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
    drop(c);
    let synced = wait_until(Duration::from_secs(60), || {
        Ok(in_sync(&h.source, JOB)? && equal_trees(&h.src, &h.dst))
    });
    assert!(synced.expect("status"), "the replica did not catch up");
    h.dst.join("app.db")
}

/// The replica's database opens, passes its integrity check and holds every row.
fn assert_database_whole(db: &Path) {
    let c = rusqlite::Connection::open(db).expect("open the replica's database");
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, ROWS);
}

/// Two scripts that write a timestamped line each to `log`; the pre-failover one writes
/// a second line after [`PRE_SCRIPT_SLEEP`] seconds.
fn scripts(dir: &Path, log: &Path) -> FailoverScripts {
    let write = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("script");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        p
    };
    let line = |what: &str| {
        format!(
            "echo \"{what} $(date +%s.%N) $RILL_JOB\" >> {}",
            log.display()
        )
    };
    FailoverScripts {
        pre_failover: Some(write(
            "pre.sh",
            &format!(
                "{}\nsleep {PRE_SCRIPT_SLEEP}\n{}",
                line("pre-start"),
                line("pre-end")
            ),
        )),
        post_failover: Some(write("post.sh", &line("post"))),
        ..FailoverScripts::default()
    }
}

/// The script log's lines in order: (what, when in seconds).
fn script_lines(log: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            let what = w.next().unwrap_or_default().to_string();
            let when = w.next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
            assert_eq!(w.next(), Some(JOB), "the script was told its job: {l}");
            (what, when)
        })
        .collect()
}

/// Replication goes on after a failover ended: the job protects again and the replica
/// comes back to what the source holds.
fn assert_back_to_the_source(h: &Hosts) {
    let back = wait_until(Duration::from_secs(60), || {
        Ok(equal_trees(&h.src, &h.dst) && in_sync(&h.source, JOB)?)
    });
    assert!(
        back.expect("status"),
        "the replica did not come back to the source"
    );
    assert_eq!(state(&h.target), Some(FailoverState::Protecting));
}

/// The source comes back and writes; its operations never reach the failed-over
/// replica, and the target says it refused it.
fn assert_returning_source_refused(h: &mut Hosts) {
    h.source.restart().expect("source back");
    std::fs::write(h.src.join("after.txt"), b"written after the failover").expect("write");
    let refused = wait_until(Duration::from_secs(20), || {
        Ok(session(&h.target).is_some_and(|s| s.refused_after_failover > 0))
    });
    assert!(
        refused.expect("status"),
        "the returning source was not refused"
    );
    // The source says why it cannot connect.
    let told = wait_until(Duration::from_secs(20), || {
        let s = h.source.job_status(JOB)?;
        Ok(s.con_error
            .is_some_and(|e| e.message.contains("Failed Over on this target")))
    });
    assert!(
        told.expect("source status"),
        "{:?}",
        h.source.job_status(JOB)
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !h.dst.join("after.txt").exists(),
        "the source wrote to the replica"
    );
    assert!(h
        .target
        .event_log()
        .contains(" 4018 Restore required after failover"));
}

#[test]
fn a_lost_source_fails_over_on_its_own_and_is_refused_when_it_returns() {
    let mut h = paired_hosts(
        "failover-auto",
        SOURCE,
        &format!("{MONITOR}UserIntervention = 0\nPreFailoverWait = 1\n"),
    );
    let replica_db = replicate_a_database(&h);
    let log = h.dirs[2].join("scripts.log");
    let set = h.target.call(Request::FailoverScripts {
        name: JOB.into(),
        scripts: scripts(h.dirs[2].path(), &log),
    });
    set.expect("failover scripts");
    let lost = Instant::now();
    h.source.kill().expect("kill the source");
    let failed_over = wait_until(Duration::from_secs(30), || {
        Ok(state(&h.target) == Some(FailoverState::FailedOver))
    });
    assert!(
        failed_over.expect("status"),
        "no failover: {:?}",
        session(&h.target)
    );
    let took = lost.elapsed();
    assert!(took >= CONDITION_AFTER, "failed over after {took:?}");
    let events = h.target.event_log();
    let at = |id: &str| events.find(&format!(" {id} ")).unwrap_or(usize::MAX);
    assert!(
        at("6010") < at("6110") && at("6110") < at("6111"),
        "{events}"
    );
    assert!(
        events.contains("Failover condition met for job fo"),
        "{events}"
    );
    // PreFailoverWait = 1: the post-failover script starts after the pre one ended.
    let lines = script_lines(&log);
    let names: Vec<&str> = lines.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(names, ["pre-start", "pre-end", "post"]);
    assert!(lines[1].1 <= lines[2].1);
    assert_database_whole(&replica_db);
    // rillctl shows it.
    let table = rillctl(&h.target, &["status"]);
    assert!(table.contains("Failed Over"), "{table}");
    assert_returning_source_refused(&mut h);
    // The failover is kept across a restart of the target.
    h.target.stop().expect("stop the target");
    h.target.restart().expect("restart the target");
    assert_eq!(state(&h.target), Some(FailoverState::FailedOver));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !h.dst.join("after.txt").exists(),
        "the source wrote to the replica"
    );
    assert_database_whole(&replica_db);
}

/// A source that hangs (SIGSTOP: its connection open and silent, as over a cut network)
/// meets the condition while its session still runs; the failover stops that session,
/// and the source, woken, is refused.
#[test]
fn a_silent_source_with_its_connection_open_is_failed_over() {
    let mut h = paired_hosts(
        "failover-silent",
        SOURCE,
        &format!("{MONITOR}UserIntervention = 0\n"),
    );
    let replica_db = replicate_a_database(&h);
    h.source.freeze().expect("freeze the source");
    let failed_over = wait_until(Duration::from_secs(30), || {
        Ok(state(&h.target) == Some(FailoverState::FailedOver))
    });
    h.source.signal(libc::SIGCONT).expect("wake the source");
    assert!(failed_over.expect("status"), "{:?}", session(&h.target));
    assert_database_whole(&replica_db);
    // Woken, it finds its connection gone, reconnects and is refused.
    let refused = wait_until(Duration::from_secs(30), || {
        Ok(session(&h.target).is_some_and(|s| s.refused_after_failover > 0))
    });
    assert!(refused.expect("status"), "{:?}", session(&h.target));
    std::fs::write(h.src.join("after.txt"), b"after").expect("write");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !h.dst.join("after.txt").exists(),
        "the source wrote to the replica"
    );
    h.source.kill().expect("stop the source");
}

#[test]
fn with_user_intervention_the_condition_waits_for_rillctl_failover_and_failback_ends_it() {
    let mut h = paired_hosts("failover-manual", SOURCE, MONITOR);
    let replica_db = replicate_a_database(&h);
    let log = h.dirs[2].join("scripts.log");
    let scripts = scripts(h.dirs[2].path(), &log);
    let out = rillctl(
        &h.target,
        &[
            "failover-scripts",
            JOB,
            "--pre-failover",
            &scripts.pre_failover.unwrap().display().to_string(),
            "--post-failover",
            &scripts.post_failover.unwrap().display().to_string(),
        ],
    );
    assert!(out.contains("pre-failover"), "{out}");
    let lost = Instant::now();
    h.source.kill().expect("kill the source");
    let met = wait_until(Duration::from_secs(20), || {
        Ok(session(&h.target).is_some_and(|s| s.failover_condition))
    });
    assert!(met.expect("status"), "the condition was not met");
    // About MissedPackets x PingFrequency after the source's last word (a ping a second).
    let took = lost.elapsed();
    assert!(
        took >= CONDITION_AFTER - PING && took <= CONDITION_AFTER + CONDITION_SLACK,
        "the condition was met after {took:?}"
    );
    assert!(h.target.event_log().contains(" 6010 "));
    let json = rillctl(&h.target, &["status", "--json"]);
    assert!(json.contains("\"failoverCondition\": true"), "{json}");
    // Nothing happens on its own.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&h.target), Some(FailoverState::Protecting));
    let out = rillctl(&h.target, &["failover", JOB]);
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(state(&h.target), Some(FailoverState::FailedOver));
    // PreFailoverWait = 0: the post-failover script ran while the pre one slept (which
    // of the two wrote first is the scheduler's choice).
    let ended = wait_until(Duration::from_secs(10), || {
        Ok(script_lines(&log).iter().any(|(w, _)| w == "pre-end"))
    });
    assert!(
        ended.expect("script log"),
        "the pre-failover script did not end"
    );
    let lines = script_lines(&log);
    let when = |what: &str| lines.iter().find(|(w, _)| w == what).map(|(_, t)| *t);
    let (post, pre_end) = (when("post").expect("post ran"), when("pre-end"));
    assert!(post < pre_end.unwrap_or(0.0), "{lines:?}");
    assert_database_whole(&replica_db);
    assert_returning_source_refused(&mut h);
    // A failback: the source is accepted again and remirrors the replica.
    let out = rillctl(&h.target, &["failback", JOB]);
    assert!(out.contains("succeeded"), "{out}");
    assert_back_to_the_source(&h);
}

#[test]
fn a_test_failover_holds_the_replica_and_its_undo_brings_it_back_to_the_source() {
    let h = paired_hosts("failover-test", SOURCE, MONITOR);
    let replica_db = replicate_a_database(&h);
    let ask = |mode| {
        h.target.call(Request::Failover {
            name: JOB.into(),
            mode,
        })
    };
    ask(FailoverMode::Test).expect("test failover");
    assert_eq!(state(&h.target), Some(FailoverState::TestFailover));
    // The source runs on; its changes wait while the replica is checked.
    std::fs::write(h.src.join("during.txt"), b"written during the test").expect("write");
    std::thread::sleep(Duration::from_secs(3));
    assert!(!h.dst.join("during.txt").exists());
    assert_database_whole(&replica_db);
    // What the check leaves on the replica goes at the undo.
    std::fs::write(h.dst.join("checked.txt"), b"left by the check").expect("write");
    let again = ask(FailoverMode::Test).unwrap_err().to_string();
    assert!(again.contains("Test Failover"), "{again}");
    ask(FailoverMode::UndoTest).expect("undo the test");
    assert_back_to_the_source(&h);
    let events = h.target.event_log();
    assert!(
        events.contains(" 6120 ") && events.contains(" 6121 "),
        "{events}"
    );
}

#[test]
fn bad_failover_requests_and_settings_are_refused_with_clear_errors() {
    let h = paired_hosts("failover-bad", SOURCE, MONITOR);
    replicate_a_database(&h);
    let refused = |args: &[&str]| {
        let out = rillctl_out(&h.target, args);
        assert!(!out.status.success(), "rillctl {args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(refused(&["failover", "nosuch"]).contains("no source job named `nosuch`"));
    assert!(refused(&["failback", JOB]).contains("is Protecting, not Failed Over"));
    assert!(refused(&["failover", JOB, "--undo-test"]).contains("not Test Failover"));
    assert!(refused(&["failover", JOB, "--test", "--undo-test"]).contains("cannot be used with"));
    assert!(
        refused(&["failover-scripts", JOB, "--pre-failover", "pre.sh"])
            .contains("the pre-failover script pre.sh is not an absolute path")
    );
    assert!(refused(&[
        "failover-scripts",
        JOB,
        "--post-failover",
        "/nonexistent/post.sh"
    ])
    .contains("the post-failover script /nonexistent/post.sh"));
    assert!(refused(&["settings", "set", "PingFrequency", "0"]).contains("1 to 65535"));
    assert!(refused(&["settings", "set", "UserIntervention", "2"])
        .contains("0 (user intervention is not required) or 1"));
    // A job its source stops is not a lost source: no condition, no failover.
    h.source
        .call(Request::Job {
            name: JOB.into(),
            action: rill_engine::mgmt::JobAction::Stop,
        })
        .expect("stop the job");
    std::thread::sleep(CONDITION_AFTER + CONDITION_SLACK);
    let s = session(&h.target).expect("the job's row");
    assert!(!s.failover_condition && s.failover_state == FailoverState::Protecting);
    assert!(!h.target.event_log().contains(" 6010 "));
    // The source's own host is not the job's target.
    let on_source = rillctl_out(&h.source, &["failover", JOB]);
    assert!(String::from_utf8_lossy(&on_source.stderr).contains("not a target"));
}

/// Runs rillctl against `host`.
fn rillctl_out(host: &Host, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(rillctl_bin());
    cmd.arg("--config").arg(&host.config).args(args);
    output_within(cmd, Duration::from_secs(90), "rillctl")
}

/// Runs rillctl against `host`; its output, which must be a success.
fn rillctl(host: &Host, args: &[&str]) -> String {
    let out = rillctl_out(host, args);
    assert!(
        out.status.success(),
        "rillctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
