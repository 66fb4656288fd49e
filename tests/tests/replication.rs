//! Replication between two real `rilld serve` processes on loopback, paired by their
//! certificate fingerprints: a random workload of every operation kind converges to equal
//! trees; a SQLite database written in transactions on the source opens clean from
//! snapshots of the replica taken at random moments; and `kill -9` of the target or the
//! source in the middle of a stream is followed by convergence.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rill_engine::mgmt::{
    ConErrorClass, JobAction, MirrorState, Request, Response, TargetSessionStatus,
};
use rill_tests::hosts::paired_hosts;
use rill_tests::tree::{assert_equal_trees, differences, equal_trees_with, snapshot_with};
use rill_tests::TestDir;
use rill_tools::pair::{failing, in_sync, start_job, wait_until, Host};
use rill_tools::rng::Rng;

/// Settings for both hosts: extended attributes replicated (the Linux default is off),
/// short network timers so a dead peer is noticed quickly.
const EXTRA: &str = "ExtendedAttributes = 1\nNetworkTimeout = 6\nNetworkRetry = 1\n";

struct Pair {
    source: Host,
    target: Host,
    src: PathBuf,
    dst: PathBuf,
    /// Whether extended attributes are replicated (and compared).
    xattrs: bool,
    _dirs: Vec<TestDir>,
}

fn start(tag: &str) -> Pair {
    start_with(tag, EXTRA)
}

fn start_with(tag: &str, extra: &str) -> Pair {
    start_each(tag, extra, extra)
}

/// Hosts with settings of their own; extended attributes are compared if the target
/// applies them.
fn start_each(tag: &str, source_extra: &str, target_extra: &str) -> Pair {
    let h = paired_hosts(tag, source_extra, target_extra);
    Pair {
        source: h.source,
        target: h.target,
        src: h.src,
        dst: h.dst,
        xattrs: target_extra.contains("ExtendedAttributes = 1"),
        _dirs: h.dirs,
    }
}

impl Pair {
    fn logs(&self) -> String {
        let out = |h: &Host| std::fs::read_to_string(h.dir.join("rilld.out")).unwrap_or_default();
        format!(
            "--- source events\n{}\n--- source stderr\n{}\n--- target events\n{}\n--- target stderr\n{}",
            self.source.event_log(),
            out(&self.source),
            self.target.event_log(),
            out(&self.target)
        )
    }

    /// Creates the job `name` (not started) toward the target through a relay that can cut
    /// the link, and returns the relay.
    fn job_through_relay(&self, name: &str) -> rill_tools::relay::Relay {
        use rill_engine::storage::job_store::{JobSpec, JobTarget};
        let relay = rill_tools::relay::Relay::start(([127, 0, 0, 1], self.target.net_port).into())
            .expect("starting the relay");
        self.source
            .call(Request::JobCreate(JobSpec {
                name: name.into(),
                source: self.src.clone(),
                target: JobTarget::Network {
                    host: "127.0.0.1".into(),
                    port: relay.port,
                    path: self.dst.clone(),
                },
                rules: Vec::new(),
            }))
            .expect("creating the job");
        relay
    }

    /// Waits until the job is in sync and the trees are equal, then checks them in full.
    fn converge(&self, job: &str, within: Duration) {
        let ok = wait_until(within, || {
            Ok(in_sync(&self.source, job).unwrap_or(false)
                && equal_trees_with(&self.src, &self.dst, self.xattrs))
        })
        .unwrap_or(false);
        if !ok {
            let status = self.source.job_status(job).map(|s| format!("{s:?}"));
            let differ = differences(
                &snapshot_with(&self.src, self.xattrs),
                &snapshot_with(&self.dst, self.xattrs),
                8,
            );
            panic!(
                "the replica did not converge within {within:?}: status {status:?}\ndiffering: {differ:#?}\n{}",
                self.logs()
            );
        }
        if self.xattrs {
            assert_equal_trees(&self.src, &self.dst);
        }
    }
}

fn c(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// `steps` random operations of every kind under `root`, on a small set of names so they
/// collide: writes at random offsets, truncates, fallocate, renames (over existing names
/// too), hard links, symlinks, unlinks, mkdir/rmdir, chmod, chown, utimes, xattrs.
fn random_workload(root: &Path, seed: u64, steps: usize) {
    let mut rng = Rng::new(seed);
    let dirs = [
        root.to_path_buf(),
        root.join("d1"),
        root.join("d1/d2"),
        root.join("d3"),
    ];
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let name = |rng: &mut Rng| -> PathBuf {
        let d = &dirs[rng.below(dirs.len() as u64) as usize];
        d.join(format!("f{}", rng.below(12)))
    };
    for _ in 0..steps {
        let p = name(&mut rng);
        let cp = c(&p);
        let kind = rng.below(17);
        // Failures (a name that does not exist, a directory in the way) are part of the
        // workload: only what succeeds is captured.
        // SAFETY (all calls below): NUL-terminated paths, valid buffers, fds we opened.
        unsafe {
            match kind {
                0..=4 => {
                    let fd = libc::open(cp.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
                    if fd >= 0 {
                        let len = 1 + rng.below(20_000) as usize;
                        let data = rill_tests::data_pattern(len, rng.below(250) as u8);
                        let off = rng.below(100_000) as i64;
                        libc::pwrite(fd, data.as_ptr().cast(), len, off);
                        libc::close(fd);
                    }
                }
                5 => {
                    libc::truncate(cp.as_ptr(), rng.below(50_000) as i64);
                }
                6 => {
                    let fd = libc::open(cp.as_ptr(), libc::O_WRONLY);
                    if fd >= 0 {
                        libc::fallocate(fd, 0, rng.below(60_000) as i64, 4096);
                        libc::close(fd);
                    }
                }
                7 => {
                    let to = c(&name(&mut rng));
                    libc::rename(cp.as_ptr(), to.as_ptr());
                }
                8 => {
                    let to = c(&name(&mut rng));
                    libc::link(cp.as_ptr(), to.as_ptr());
                }
                9 => {
                    let text = c(Path::new(&format!("f{}", rng.below(12))));
                    libc::symlink(text.as_ptr(), cp.as_ptr());
                }
                10 => {
                    libc::unlink(cp.as_ptr());
                }
                11 => {
                    let sub =
                        c(&dirs[1 + rng.below(3) as usize].join(format!("sub{}", rng.below(3))));
                    if rng.below(2) == 0 {
                        libc::mkdir(sub.as_ptr(), 0o750);
                    } else {
                        libc::rmdir(sub.as_ptr());
                    }
                }
                12 => {
                    libc::chmod(cp.as_ptr(), 0o600 | (rng.below(0o100) as u32));
                }
                13 => {
                    libc::lchown(
                        cp.as_ptr(),
                        1000 + rng.below(5) as u32,
                        2000 + rng.below(5) as u32,
                    );
                }
                14 => {
                    let t = libc::timespec {
                        tv_sec: 1_600_000_000 + rng.below(10_000_000) as i64,
                        tv_nsec: rng.below(1_000_000_000) as i64,
                    };
                    let times = [t, t];
                    libc::utimensat(
                        libc::AT_FDCWD,
                        cp.as_ptr(),
                        times.as_ptr(),
                        libc::AT_SYMLINK_NOFOLLOW,
                    );
                }
                15 => {
                    // What `cp` does: bytes moved from one file into another in the kernel.
                    let to = c(&name(&mut rng));
                    let from = libc::open(cp.as_ptr(), libc::O_RDONLY);
                    let into = libc::open(to.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
                    if from >= 0 && into >= 0 {
                        let mut at = rng.below(50_000) as i64;
                        libc::copy_file_range(
                            from,
                            std::ptr::null_mut(),
                            into,
                            &mut at,
                            1 + rng.below(30_000) as usize,
                            0,
                        );
                    }
                    for fd in [from, into].into_iter().filter(|fd| *fd >= 0) {
                        libc::close(fd);
                    }
                }
                _ => {
                    let n = c(Path::new(&format!("user.k{}", rng.below(3))));
                    if rng.below(3) == 0 {
                        libc::removexattr(cp.as_ptr(), n.as_ptr());
                    } else {
                        let v = format!("v{}", rng.next_u64());
                        libc::setxattr(cp.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0);
                    }
                }
            }
        }
    }
}

#[test]
fn a_random_workload_of_every_kind_converges() {
    let p = start("rep-random");
    // Some of the tree exists before the job starts: the mirror brings it over.
    random_workload(&p.src, 7, 300);
    start_job(&p.source, &p.target, "random", &p.src, &p.dst, &[]).unwrap();
    random_workload(&p.src, 11, 3000);
    p.converge("random", Duration::from_secs(90));
    let s = p.source.job_status("random").unwrap();
    assert!(s.con_ops_tx > 0 && s.con_bytes_tx > 0, "{s:?}");
    let events = p.target.event_log();
    for id in [" 170 ", " 4016 ", " 4019 ", " 4023 "] {
        assert!(events.contains(id), "target log lacks event{id}:\n{events}");
    }
    // A job stopped on the source ends its connection cleanly (TLS close_notify): the
    // target logs the disconnection (4017) and no refusal (4071).
    p.source
        .call(Request::Job {
            name: "random".into(),
            action: JobAction::Stop,
        })
        .unwrap();
    let disconnected = wait_until(Duration::from_secs(20), || {
        Ok(p.target.event_log().contains(" 4017 "))
    })
    .unwrap();
    let events = p.target.event_log();
    assert!(disconnected, "no disconnection event 4017:\n{events}");
    assert!(
        !events.contains(" 4071 "),
        "a stopped job's connection was refused:\n{events}"
    );
}

/// A database written in transactions on the source; the replica, frozen at random
/// moments (the target process stopped with SIGSTOP, so nothing is applied while it is
/// copied), must open clean and hold whole transactions only.
#[test]
fn sqlite_snapshots_of_the_replica_open_clean() {
    let p = start("rep-sqlite");
    start_job(&p.source, &p.target, "db", &p.src, &p.dst, &[]).unwrap();
    p.converge("db", Duration::from_secs(60));
    let db = p.src.join("app.db");
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch(
                // One transaction: the replica never holds the tables without the counter.
                "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;
                 BEGIN;
                 CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
                 CREATE TABLE meta(n INTEGER); INSERT INTO meta VALUES(0);
                 COMMIT;",
            )
            .unwrap();
            for i in 0..1500u32 {
                let tx = conn.unchecked_transaction().unwrap();
                tx.execute(
                    "INSERT INTO t(v) VALUES (?1)",
                    [rill_tests::data_pattern(
                        3000 + (i as usize * 37) % 5000,
                        i as u8,
                    )],
                )
                .unwrap();
                if i % 7 == 0 {
                    tx.execute("DELETE FROM t WHERE id % 5 = 0", []).unwrap();
                }
                tx.execute("UPDATE meta SET n = (SELECT count(*) FROM t)", [])
                    .unwrap();
                tx.commit().unwrap();
            }
        })
    };
    let snaps = TestDir::new("rep-sqlite-snaps");
    let mut rng = Rng::new(42);
    let (mut taken, mut with_db) = (0, 0);
    while !writer.is_finished() || with_db < 10 {
        std::thread::sleep(Duration::from_millis(20 + rng.below(150)));
        p.target.freeze().unwrap();
        let snap = snaps.join(format!("s{taken}"));
        std::fs::create_dir_all(&snap).unwrap();
        for e in std::fs::read_dir(&p.dst).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), snap.join(e.file_name())).unwrap();
            }
        }
        p.target.signal(libc::SIGCONT).unwrap();
        if check_snapshot(&snap) {
            with_db += 1;
        }
        taken += 1;
        assert!(taken < 2000, "the replica never held the database");
    }
    writer.join().unwrap();
    p.converge("db", Duration::from_secs(60));
    assert!(check_snapshot(&p.dst), "the replica has no database");
    eprintln!("{with_db} of {taken} snapshots held the database");
}

/// The snapshot's database (if the replica had it yet) passes `integrity_check`, and its
/// counter agrees with its rows: no half transaction. Whether there was a database.
fn check_snapshot(dir: &Path) -> bool {
    let db = dir.join("app.db");
    if !db.exists() {
        return false;
    }
    // Opening runs SQLite's recovery of a hot journal, as after a crash.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "snapshot {}", dir.display());
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('t', 'meta')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if tables == 2 {
        let (rows, n): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM t), (SELECT n FROM meta)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            rows,
            n,
            "snapshot {} holds half a transaction",
            dir.display()
        );
    }
    true
}

#[test]
fn kill_9_of_the_target_then_of_the_source_mid_stream_converges() {
    let mut p = start("rep-kill");
    // Removed while the source is down: only the remirror's orphan removal takes it away.
    let doomed = p.src.join("removed-while-the-source-is-down");
    std::fs::write(&doomed, b"soon an orphan").unwrap();
    start_job(&p.source, &p.target, "k", &p.src, &p.dst, &[]).unwrap();
    p.converge("k", Duration::from_secs(60));

    let writer =
        |root: PathBuf, seed: u64| std::thread::spawn(move || random_workload(&root, seed, 4000));
    let w = writer(p.src.clone(), 101);
    std::thread::sleep(Duration::from_millis(300));
    p.target.kill().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    p.target.restart().unwrap();
    w.join().unwrap();
    p.converge("k", Duration::from_secs(90));
    let resent = p.source.job_status("k").unwrap().con_resent_op_count;

    let w = writer(p.src.clone(), 202);
    std::thread::sleep(Duration::from_millis(300));
    p.source.kill().unwrap();
    w.join().unwrap();
    std::fs::remove_file(&doomed).unwrap();
    // Changes made while the source was down are found by the remirror that its unclean
    // stop starts (the whole source is a Recovery entry in its change journal).
    random_workload(&p.src, 303, 500);
    p.source.restart().unwrap();
    p.converge("k", Duration::from_secs(120));
    let log = p.source.event_log();
    assert!(log.contains(" 4007 "), "no unclean-stop event 4007:\n{log}");
    let Response::Status(report) = p.target.call(Request::Status { name: None }).unwrap() else {
        panic!("no status from the target");
    };
    let session = report
        .target
        .and_then(|t| t.sessions.into_iter().find(|s| s.job == "k"))
        .expect("the target's session for job k");
    assert!(
        session.orphan_files_removed >= 1 && session.orphan_bytes_removed >= 14,
        "the orphan removed on the replica is not counted: {session:?}"
    );
    eprintln!("ops resent after the target's restart: {resent}");
}

/// A target setting that needs no restart, changed through the management API, reaches
/// the job's next connection while the target keeps running: extended attributes, which
/// the target at first does not apply, are applied once `ExtendedAttributes` is set there
/// and the job has reconnected.
#[test]
fn a_target_setting_changed_through_the_api_reaches_the_next_connection() {
    let (xattrs_on, xattrs_off) = (EXTRA, "NetworkTimeout = 6\nNetworkRetry = 1\n");
    let mut p = start_each("rep-live", xattrs_on, xattrs_off);
    let set_tag = |name: &str, value: &[u8]| {
        rill_tests::sys::setxattr(&p.src.join(name).to_string_lossy(), "user.tag", value)
    };
    std::fs::write(p.src.join("before.txt"), b"tagged before").unwrap();
    set_tag("before.txt", b"1");
    start_job(&p.source, &p.target, "live", &p.src, &p.dst, &[]).unwrap();
    p.converge("live", Duration::from_secs(60));
    assert!(
        !equal_trees_with(&p.src, &p.dst, true),
        "the target applied extended attributes with ExtendedAttributes = 0"
    );

    let pid = p.target.pid();
    let set = p.target.call(Request::SettingsSet {
        name: "ExtendedAttributes".into(),
        value: "1".into(),
    });
    match set {
        Ok(Response::Done { message }) => assert!(
            message.contains("connections made from now on"),
            "{message}"
        ),
        other => panic!("setting ExtendedAttributes on the target: {other:?}"),
    }
    for action in [JobAction::Stop, JobAction::Start] {
        let r = p.source.call(Request::Job {
            name: "live".into(),
            action,
        });
        assert!(matches!(r, Ok(Response::Done { .. })), "{action:?}: {r:?}");
    }
    set_tag("before.txt", b"2");
    std::fs::write(p.src.join("after.txt"), b"tagged after").unwrap();
    set_tag("after.txt", b"3");
    p.xattrs = true;
    p.converge("live", Duration::from_secs(60));
    assert_eq!(p.target.pid(), pid, "the target was not restarted");
}

/// Nothing captures a job's source while the job is stopped, or while rilld is: what
/// changed meanwhile (every op kind, removals and renames included) reaches the replica
/// when the job runs again, by the remirror its start asks for.
#[test]
fn what_changed_while_a_job_was_stopped_reaches_the_replica_when_it_runs_again() {
    let mut p = start("rep-stopped");
    random_workload(&p.src, 21, 300);
    start_job(&p.source, &p.target, "s", &p.src, &p.dst, &[]).unwrap();
    p.converge("s", Duration::from_secs(60));
    let job = |action| {
        let r = p.source.call(Request::Job {
            name: "s".into(),
            action,
        });
        assert!(matches!(r, Ok(Response::Done { .. })), "{action:?}: {r:?}");
    };

    // Recorded as mirrored, so the start below sends no full mirror of its own.
    let mirrored = wait_until(Duration::from_secs(30), || {
        Ok(matches!(
            p.source.call(Request::JobList)?,
            Response::Jobs(jobs) if jobs.iter().any(|j| j.mirror == MirrorState::Complete)
        ))
    })
    .unwrap();
    assert!(mirrored, "the job's mirror was not recorded as complete");
    let mirrors = || p.target.event_log().matches(" 4019 ").count();

    // Nothing changes while it is stopped (the last change older than the slack): the
    // start finds so and sends no remirror.
    std::thread::sleep(Duration::from_nanos(rill_engine::source::changed_since::SLACK_NS) * 3 / 2);
    job(JobAction::Stop);
    job(JobAction::Start);
    p.converge("s", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        mirrors(),
        1,
        "a remirror with nothing changed:\n{}",
        p.logs()
    );

    job(JobAction::Stop);
    random_workload(&p.src, 22, 500);
    job(JobAction::Start);
    p.converge("s", Duration::from_secs(90));
    let restarted = p.source.event_log();
    assert!(
        restarted.contains("what changed while it was stopped is remirrored"),
        "the job's start does not say it remirrors:\n{restarted}"
    );
    // The replica was marked Mirroring while it was rebuilt: the first mirror and this.
    assert_eq!(mirrors(), 2, "mirror starts (4019):\n{}", p.logs());

    // A clean stop of the source's rilld: the job resumes when it starts again.
    p.source.stop().unwrap();
    random_workload(&p.src, 23, 500);
    p.source.restart().unwrap();
    p.converge("s", Duration::from_secs(90));
}

/// This host's target session of `job`, as its status reports it.
fn target_session(target: &Host, job: &str) -> TargetSessionStatus {
    match target.call(Request::Status { name: None }) {
        Ok(Response::Status(r)) => r
            .target
            .and_then(|t| t.sessions.into_iter().find(|s| s.job == job))
            .unwrap_or_else(|| panic!("no target session of job {job}")),
        other => panic!("status: {other:?}"),
    }
}

/// Deletions made while a job with exclusions was stopped reach the replica when it runs
/// again (its remirror removes them as orphans), in the root and beneath it, while the
/// names the exclusions match stay on the replica.
#[test]
fn deletions_while_a_job_with_exclusions_was_stopped_reach_the_replica() {
    let p = start("rep-excl-orphans");
    for d in ["sub/deep", "olddir"] {
        std::fs::create_dir_all(p.src.join(d)).unwrap();
    }
    let files = [
        "a.txt",
        "gone.txt",
        "sub/b.txt",
        "sub/gone2.txt",
        "sub/deep/gone3.txt",
        "olddir/f",
    ];
    for f in files {
        std::fs::write(p.src.join(f), f.as_bytes()).unwrap();
    }
    start_job(
        &p.source,
        &p.target,
        "x",
        &p.src,
        &p.dst,
        &["*.tmp", "cache"],
    )
    .unwrap();
    let mirrored = wait_until(Duration::from_secs(60), || {
        Ok(in_sync(&p.source, "x")?
            && files.iter().all(|f| p.dst.join(f).exists())
            && matches!(
                p.source.call(Request::JobList)?,
                Response::Jobs(jobs) if jobs.iter().any(|j| j.mirror == MirrorState::Complete)
            ))
    })
    .unwrap();
    assert!(mirrored, "the first mirror did not complete:\n{}", p.logs());
    let job = |action| {
        let r = p.source.call(Request::Job {
            name: "x".into(),
            action,
        });
        assert!(matches!(r, Ok(Response::Done { .. })), "{action:?}: {r:?}");
    };

    job(JobAction::Stop);
    let gone = ["gone.txt", "sub/gone2.txt", "sub/deep/gone3.txt", "olddir"];
    for g in &gone[..3] {
        std::fs::remove_file(p.src.join(g)).unwrap();
    }
    std::fs::remove_dir_all(p.src.join("olddir")).unwrap();
    // Names the exclusions match, on the replica only: not the source's to judge.
    let excluded = ["keep.tmp", "sub/keep2.tmp", "sub/deep/keep3.tmp", "cache/x"];
    std::fs::create_dir_all(p.dst.join("cache")).unwrap();
    for e in excluded {
        std::fs::write(p.dst.join(e), b"replica only").unwrap();
    }
    job(JobAction::Start);

    let converged = wait_until(Duration::from_secs(60), || {
        Ok(in_sync(&p.source, "x")? && gone.iter().all(|g| !p.dst.join(g).exists()))
    })
    .unwrap();
    let left: Vec<_> = gone.iter().filter(|g| p.dst.join(g).exists()).collect();
    assert!(
        converged,
        "deleted while stopped, still on the replica: {left:?}\n{}",
        p.logs()
    );
    for name in excluded.iter().chain(&["a.txt", "sub/b.txt"]) {
        assert!(p.dst.join(name).exists(), "{name} went from the replica");
    }
    let session = target_session(&p.target, "x");
    assert_eq!(
        (
            session.orphan_files_removed,
            session.orphan_directories_removed
        ),
        (4, 1),
        "orphans removed (files, directories): {session:?}"
    );
    // A remirror's markers are not ops: the counters agree once it is applied.
    target_counters_agree(&p, "x");
}

/// Once a job is in sync, its target's counters of this connection agree: every op
/// received was applied, none remains (markers and resends count in none of them).
fn target_counters_agree(p: &Pair, job: &str) {
    let agree = |s: &TargetSessionStatus| {
        let c = &s.counters;
        c.ops_received > 0
            && c.ops_received == s.ops_applied
            && c.ops_remaining == 0
            && c.ops_dropped == 0
    };
    let settled = wait_until(Duration::from_secs(10), || {
        Ok(agree(&target_session(&p.target, job)))
    })
    .unwrap();
    let s = target_session(&p.target, job);
    assert!(
        settled,
        "received {}, applied {}, remaining {}, dropped {}: {s:?}",
        s.counters.ops_received, s.ops_applied, s.counters.ops_remaining, s.counters.ops_dropped
    );
    // As the source sees them (from the target's last TargetStats).
    let reported = wait_until(Duration::from_secs(10), || {
        Ok(p.source
            .job_status(job)?
            .target_stats
            .is_some_and(|t| t.ops_remaining == 0 && t.ops_received == s.counters.ops_received))
    })
    .unwrap();
    assert!(reported, "{:?}", p.source.job_status(job));
}

/// A job whose target address has nothing listening says why in its status (class
/// Connection Refused) and logs it once as event 4011, not at every retry; its mirror is
/// not shown complete and its replication not Pending as if all were well.
#[test]
fn a_job_whose_target_refuses_connections_says_so() {
    let p = start("rep-refused");
    std::fs::write(p.src.join("a.txt"), b"waiting for a target").unwrap();
    let port = rill_tools::pair::free_port().unwrap();
    p.source
        .call(Request::JobCreate(
            rill_engine::storage::job_store::JobSpec {
                name: "r".into(),
                source: p.src.clone(),
                target: rill_engine::storage::job_store::JobTarget::Network {
                    host: "127.0.0.1".into(),
                    port,
                    path: p.dst.clone(),
                },
                rules: Vec::new(),
            },
        ))
        .unwrap();
    p.source
        .call(Request::Job {
            name: "r".into(),
            action: JobAction::Start,
        })
        .unwrap();
    // NetworkRetry = 1: several attempts within a few seconds.
    let retried = wait_until(Duration::from_secs(30), || {
        Ok(p.source
            .job_status("r")?
            .con_error
            .is_some_and(|e| e.attempts >= 3))
    })
    .unwrap();
    let job = p.source.job_status("r").unwrap();
    assert!(retried, "{job:?}\n{}", p.logs());
    let error = failing(&job).unwrap_or_else(|| panic!("not shown as failing: {job:?}"));
    assert_eq!(error.class, ConErrorClass::Refused, "{job:?}");
    assert!(error.message.contains("refused"), "{job:?}");
    let log = p.source.event_log();
    let failed: Vec<_> = log
        .lines()
        .filter(|l| l.split(' ').nth(6) == Some("4011"))
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one event per reason, not per retry:\n{log}"
    );
    assert!(
        failed[0].contains("job r") && failed[0].contains("Connection Refused"),
        "{}",
        failed[0]
    );
}

/// The first mirror removes what the target path held that the source does not have, and
/// with `LogAllOrphans` the target logs each name it removed (event 4052).
#[test]
fn orphans_in_the_target_path_are_removed_and_each_is_logged_with_log_all_orphans() {
    let target_extra = format!("{EXTRA}LogAllOrphans = 1\n");
    let p = start_each("rep-orphans", EXTRA, &target_extra);
    std::fs::write(p.src.join("kept.txt"), b"the source's copy").unwrap();
    std::fs::create_dir_all(p.dst.join("old-dir/sub")).unwrap();
    std::fs::write(p.dst.join("kept.txt"), b"stale").unwrap();
    std::fs::write(p.dst.join("stale.txt"), b"12345").unwrap();
    std::fs::write(p.dst.join("old-dir/a"), b"1").unwrap();
    std::fs::write(p.dst.join("old-dir/sub/b"), b"22").unwrap();
    start_job(&p.source, &p.target, "o", &p.src, &p.dst, &[]).unwrap();
    p.converge("o", Duration::from_secs(60));
    let expected = [
        "Removed orphan stale.txt (5 bytes) from the replica of job o",
        "Removed orphan old-dir (a directory: 2 directories, 2 files, 3 bytes) from the replica of job o",
    ];
    let removals = || -> Vec<String> {
        let log = p.target.event_log();
        log.lines()
            .filter(|l| l.split(' ').nth(6) == Some("4052"))
            .map(str::to_string)
            .collect()
    };
    let logged = wait_until(Duration::from_secs(10), || {
        Ok(expected
            .iter()
            .all(|e| removals().iter().any(|l| l.ends_with(e))))
    })
    .unwrap();
    assert!(logged, "expected {expected:#?}\n{}", p.logs());
    assert_eq!(removals().len(), 2, "one event per orphan:\n{}", p.logs());
}

/// A target that loses what it acknowledged (rebuilt, or its DataPath and replica restored
/// from an old backup) welcomes the job back with less than it acknowledged: the source
/// remirrors its whole source instead of carrying on as if the replica were whole.
#[test]
fn a_target_that_lost_what_it_acknowledged_gets_the_whole_source_again() {
    let mut p = start("rep-lost");
    random_workload(&p.src, 31, 300);
    start_job(&p.source, &p.target, "l", &p.src, &p.dst, &[]).unwrap();
    p.converge("l", Duration::from_secs(60));
    random_workload(&p.src, 32, 300);
    p.converge("l", Duration::from_secs(60));

    // The target's host loses its sessions and the replica; its identity and trust stay.
    p.target.stop().unwrap();
    let data = p.target.dir.join("data");
    std::fs::remove_file(data.join("jobs.redb")).unwrap();
    std::fs::remove_dir_all(data.join("target")).unwrap();
    std::fs::remove_dir_all(&p.dst).unwrap();
    p.target.restart().unwrap();
    p.converge("l", Duration::from_secs(90));
    let log = p.source.event_log();
    assert!(
        log.contains(" 4065 ") && log.contains("lost operations it had acknowledged"),
        "no 4065 event for the target's lost state:\n{log}"
    );
}

/// Writes the engine does not see as plain `write(2)`s of modest size reach the replica
/// whole: one `write(2)` larger than the largest frame (40 MiB at once), and a file copied
/// in with `cp`, which moves the bytes with copy_file_range(2) inside the kernel.
#[test]
fn a_single_huge_write_and_a_cp_copy_replicate() {
    use std::io::Write;
    let p = start("rep-bigwrite");
    start_job(&p.source, &p.target, "big", &p.src, &p.dst, &[]).unwrap();
    p.converge("big", Duration::from_secs(60));
    let data = rill_tests::data_pattern(40 << 20, 7);
    let mut f = std::fs::File::create(p.src.join("big.bin")).unwrap();
    f.write_all(&data).unwrap();
    drop(f);
    let outside = TestDir::new("rep-bigwrite-outside");
    let original = outside.path().join("copied.bin");
    std::fs::write(&original, rill_tests::data_pattern(5 << 20, 8)).unwrap();
    let cp = std::process::Command::new("cp")
        .arg(&original)
        .arg(p.src.join("copied.bin"))
        .status()
        .unwrap();
    assert!(cp.success());
    p.converge("big", Duration::from_secs(90));
}

/// Every way of changing a file beneath the write-family system calls reaches the replica
/// on another host (the source on a loop-mounted XFS with reflinks): mapped stores, msynced
/// or written back, io_uring and libaio writes, `cp` (a reflink on XFS), FICLONERANGE,
/// FIDEDUPERANGE, a reflink copy partly overwritten (`rill_tests::beneath::every_way`).
#[test]
fn writes_beneath_the_syscalls_replicate() {
    let mut p = start("rep-beneath");
    let xfs = rill_tests::Xfs::mount("rep-beneath-src");
    p.src = xfs.path().to_path_buf();
    start_job(&p.source, &p.target, "beneath", &p.src, &p.dst, &[]).unwrap();
    p.converge("beneath", Duration::from_secs(60));
    rill_tests::beneath::every_way(&p.src, &mut |what, limit| {
        eprintln!("{what}");
        p.converge("beneath", limit);
    });
}

/// Writes whose place the capture cannot read exactly reach the replica: two threads
/// writing through one shared descriptor (the file position, read after each call, may
/// have been moved by the other thread), and a file written, truncated and chmodded
/// through a name unlinked while it was open, the file living on under a hard link. Each
/// is a dirty mark of the file, remirrored under the name it has. Before, the second was
/// recorded under the removed name, which the replica no longer had: its other name kept
/// the old contents.
#[test]
fn writes_through_a_shared_descriptor_or_an_unlinked_name_replicate() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let p = start("rep-shared-fd");
    std::fs::write(p.src.join("h1"), rill_tests::data_pattern(5000, 1)).unwrap();
    std::fs::hard_link(p.src.join("h1"), p.src.join("h2")).unwrap();
    start_job(&p.source, &p.target, "fd", &p.src, &p.dst, &[]).unwrap();
    p.converge("fd", Duration::from_secs(60));

    let shared = std::fs::File::create(p.src.join("shared")).unwrap();
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let f = &shared;
            s.spawn(move || {
                for i in 0..2000usize {
                    let block = rill_tests::data_pattern(1 + (i * 7 + t as usize) % 64, t);
                    (&*f).write_all(&block).unwrap();
                }
            });
        }
    });
    drop(shared);

    let mut h1 = std::fs::OpenOptions::new()
        .write(true)
        .open(p.src.join("h1"))
        .unwrap();
    std::fs::remove_file(p.src.join("h1")).unwrap();
    h1.write_all(b"written after the name was unlinked")
        .unwrap();
    h1.set_len(3000).unwrap();
    h1.set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap();
    drop(h1);
    p.converge("fd", Duration::from_secs(60));
}

/// Names and attributes changed through io_uring reach the replica: the system call layer
/// sees only `io_uring_enter`, so each of these left the replica silently different before
/// the second layer made them operations (`ebpf/src/uring.rs`). Names relative to a
/// directory descriptor and absolute ones; a file created, written and given extended
/// attributes by descriptor and by path; a hard link, a symlink, renames of a file and of
/// a directory, unlinks, an rmdir, a truncating open and a create into a fixed-file slot.
#[test]
fn io_uring_names_and_attributes_replicate() {
    use rill_tests::uring::{Dir, Uring};
    let p = start("rep-uring");
    std::fs::write(p.src.join("old"), b"made before the job").unwrap();
    std::fs::create_dir(p.src.join("gone")).unwrap();
    start_job(&p.source, &p.target, "uring", &p.src, &p.dst, &[]).unwrap();
    p.converge("uring", Duration::from_secs(60));
    let mut ring = Uring::new();
    let at = Dir::open(&p.src);
    ring.mkdir(&at, "d", 0o750);
    let fd = ring.open(&at, "d/f", libc::O_CREAT | libc::O_WRONLY, 0o640);
    ring.write(&fd, 0, &rill_tests::data_pattern(10000, 3));
    ring.write(&fd, 65536, b"after a hole");
    ring.fsetxattr(&fd, "user.by_fd", b"one");
    ring.setxattr(&p.src.join("d/f"), "user.by_path", b"two");
    drop(fd);
    let d = Dir::open(&p.src.join("d"));
    ring.link(&d, "f", &d, "hard");
    ring.symlink("f", &d, "sym");
    ring.rename(&d, "hard", &at, "moved");
    ring.unlink(&at, "old", false);
    ring.unlink(&at, "gone", true);
    p.converge("uring", Duration::from_secs(30));
    ring.mkdir(&at, "e", 0o700);
    ring.rename(&at, "d", &at, "e/d");
    let abs = Dir::open(Path::new("/"));
    let moved = p.src.join("moved");
    ring.rename(&abs, moved.to_str().unwrap(), &at, "e/moved");
    drop(ring.open(&at, "e/d/f", libc::O_TRUNC | libc::O_WRONLY, 0));
    ring.open_fixed(
        &at,
        "e/fixed",
        (libc::O_CREAT | libc::O_WRONLY) as u64,
        0o600,
    );
    ring.unlink(&at, "e/d/sym", false);
    p.converge("uring", Duration::from_secs(30));
}

/// Sets or clears the immutable attribute of a replica file (`chattr`), which no process,
/// the target's applier included, can write, rename or remove while it is set.
fn immutable(path: &Path, on: bool) {
    let flag = if on { "+i" } else { "-i" };
    let ok = std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("running chattr (e2fsprogs): {e}"));
    assert!(ok.success(), "chattr {flag} {}", path.display());
}

/// A name the target cannot apply (its replica file made immutable): the job never says
/// the target's data is OK while the name is unrepaired, the remirrors that fail on it are
/// retried and reported with the name (4065), and nothing is dropped: once the file can be
/// written again the replica converges and the state goes back to OK.
#[test]
fn a_name_the_target_cannot_apply_keeps_the_data_state_from_ok_until_repaired() {
    use rill_engine::storage::job_store::DataState;
    let p = start("rep-unrepaired");
    std::fs::write(p.src.join("stuck"), b"first").unwrap();
    std::fs::write(p.src.join("free"), b"first").unwrap();
    start_job(&p.source, &p.target, "stuck", &p.src, &p.dst, &[]).unwrap();
    p.converge("stuck", Duration::from_secs(60));
    immutable(&p.dst.join("stuck"), true);
    std::fs::write(p.src.join("stuck"), b"second, longer").unwrap();
    std::fs::write(p.src.join("free"), b"second").unwrap();
    let reported = wait_until(Duration::from_secs(60), || {
        Ok(p.source
            .event_log()
            .contains("could not apply the last 2 remirrors"))
    })
    .unwrap();
    let status = p.source.job_status("stuck").unwrap();
    let events = p.source.event_log();
    immutable(&p.dst.join("stuck"), false);
    assert!(
        reported,
        "no report of the failing remirrors:\n{}",
        p.logs()
    );
    assert_eq!(
        status.target_data_state,
        DataState::MirrorRequired,
        "{status:?}"
    );
    assert!(!in_sync(&p.source, "stuck").unwrap());
    let report = events
        .lines()
        .find(|l| l.contains(" 4065 ") && l.contains("could not apply the last"))
        .unwrap_or_default();
    assert!(
        report.contains("\"stuck\""),
        "the name is not reported: {report}"
    );
    assert_eq!(std::fs::read(p.dst.join("free")).unwrap(), b"second");
    p.converge("stuck", Duration::from_secs(120));
    assert!(
        p.source
            .event_log()
            .lines()
            .any(|l| l.contains(" 4065 ") && l.contains("changed to OK")),
        "{}",
        p.source.event_log()
    );
}

/// A job stopped while its link is down (what it captured not yet acknowledged) and
/// started again before the link is back: what the target never got reaches it. The stop
/// counted as clean, the next start looked only for changes made after it (less a second
/// of slack), and what was captured earlier and lost with the link was never sent again
/// (found by the replication fuzzer: whole directories missing, the job in sync).
#[test]
fn a_job_stopped_while_its_link_is_down_sends_what_the_target_never_got() {
    use rill_tools::relay::Cut;
    let p = start("rep-stopcut");
    std::fs::write(p.src.join("before"), b"before").unwrap();
    let relay = p.job_through_relay("cut");
    let job = |action| {
        p.source
            .call(Request::Job {
                name: "cut".into(),
                action,
            })
            .unwrap()
    };
    job(JobAction::Start);
    p.converge("cut", Duration::from_secs(60));
    relay.cut(Cut::Silent);
    std::fs::create_dir_all(p.src.join("made/while/down")).unwrap();
    std::fs::write(p.src.join("made/while/down/f"), b"during the cut").unwrap();
    // Captured and queued, not acknowledged; well before the stop, so a look for what
    // changed after the capture stopped does not see it.
    std::thread::sleep(Duration::from_secs(3));
    job(JobAction::Stop);
    // Started again while the link is still down, as the fuzzer's run did.
    job(JobAction::Start);
    std::thread::sleep(Duration::from_secs(2));
    relay.restore();
    p.converge("cut", Duration::from_secs(90));
}

/// A refusal lost with its connection: the target refused an operation (a rename of a
/// name the replica had lost), its answer was held by a link that went deaf one way, and
/// the next connection started past the operation, which the target had applied. The
/// source never heard of the refusal and reported the job in sync over a replica without
/// the renamed file (found by the replication fuzzer: a silent cut, then the target
/// killed). The target now repeats, when a connection begins, the refusals after the last
/// acknowledgement the source holds.
#[test]
fn a_refusal_lost_with_its_connection_is_repeated_by_the_next() {
    use rill_tools::relay::Cut;
    let p = start("rep-lostnak");
    std::fs::write(p.src.join("f"), b"the file").unwrap();
    let relay = p.job_through_relay("lostnak");
    p.source
        .call(Request::Job {
            name: "lostnak".into(),
            action: JobAction::Start,
        })
        .unwrap();
    p.converge("lostnak", Duration::from_secs(60));
    std::fs::remove_file(p.dst.join("f")).unwrap();
    relay.cut(Cut::Answers);
    std::fs::rename(p.src.join("f"), p.src.join("g")).unwrap();
    // The target applies (refuses) the rename; its refusal and acknowledgement are held.
    let refused = || {
        std::fs::read_to_string(p.target.dir.join("rilld.out"))
            .is_ok_and(|out| out.contains("not applied: applying rename to f"))
    };
    let applied = wait_until(Duration::from_secs(30), || Ok(refused())).unwrap_or(false);
    assert!(applied, "the target never got the rename: {}", p.logs());
    relay.restore();
    p.converge("lostnak", Duration::from_secs(60));
    assert_eq!(std::fs::read(p.dst.join("g")).unwrap(), b"the file");
}

/// A refused write through one name of a file with two, that name then removed: the
/// write reaches the file's other name. The source remirrored the names the refused
/// write named, and by then the one it was made through was gone, so the file's other
/// name kept its old bytes on a replica the job called in sync (found by the replication
/// fuzzer: a write through a symlink to a hard link's name the replica did not hold, the
/// name removed just after). The file the write changed is now remirrored wherever its
/// names are.
#[test]
fn a_refused_write_through_a_removed_hard_link_reaches_the_other_name() {
    use std::os::unix::fs::FileExt;
    let p = start("rep-refusedlink");
    std::fs::write(p.src.join("a"), vec![b'a'; 64 << 10]).unwrap();
    start_job(&p.source, &p.target, "refusedlink", &p.src, &p.dst, &[]).unwrap();
    p.converge("refusedlink", Duration::from_secs(60));
    // Linked while the job runs, so the stream shows both names of the file.
    std::fs::hard_link(p.src.join("a"), p.src.join("b")).unwrap();
    p.converge("refusedlink", Duration::from_secs(60));
    // The replica loses `b`: the write through it is refused there.
    std::fs::remove_file(p.dst.join("b")).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(p.src.join("b"))
        .unwrap();
    f.write_all_at(b"written through b", 1000).unwrap();
    drop(f);
    std::fs::remove_file(p.src.join("b")).unwrap();
    p.converge("refusedlink", Duration::from_secs(60));
    let replica = std::fs::read(p.dst.join("a")).unwrap();
    assert_eq!(&replica[1000..1017], b"written through b", "{}", p.logs());
    // The same with a change by name, which does not say which file it made: an
    // extended attribute set through `b`.
    std::fs::hard_link(p.src.join("a"), p.src.join("b")).unwrap();
    p.converge("refusedlink", Duration::from_secs(60));
    std::fs::remove_file(p.dst.join("b")).unwrap();
    let (name, value) = (c(Path::new("user.through")), b"b");
    // SAFETY: NUL-terminated path and name, a value alive for the call.
    let set = unsafe {
        libc::lsetxattr(
            c(&p.src.join("b")).as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
    std::fs::remove_file(p.src.join("b")).unwrap();
    p.converge("refusedlink", Duration::from_secs(60));
}
