//! One capture for every job of a `rilld serve` (`engine/src/capture_hub.rs`): three jobs
//! with disjoint sources on one source host, replicating to one target host, share the
//! pinned driver (loaded by rilld, which holds no programs of its own); each replica
//! equals its source and holds none of another job's files; a rename from one job's
//! source into another's is a removal in the first replica and a creation in the second;
//! a stopped job leaves the others replicating; the reader stops with the last job and the
//! driver stays loaded after rilld exits.
//!
//! The tests hold the pinned-driver guard: nothing else may drain the pinned ring
//! meanwhile (rilld would fall back to a private instance), and the guard unloads what
//! rilld left loaded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rill_driver_linux::{loader, ring::ReaderLock};
use rill_engine::mgmt::{JobAction, Request};
use rill_tests::tree::{differences, equal_trees, snapshot};
use rill_tests::{rilld_bin, PinnedGuard, TestDir};
use rill_tools::pair::{in_sync, pair, start_job, wait_until, Host, Role};

const JOBS: [&str; 3] = ["alpha", "bravo", "charlie"];
const CONVERGE: Duration = Duration::from_secs(90);

struct Scene {
    source: Host,
    _target: Host,
    srcs: Vec<PathBuf>,
    dsts: Vec<PathBuf>,
    _dirs: Vec<TestDir>,
    // Last: the hosts stop before the guard unloads the driver.
    _guard: PinnedGuard,
}

/// Three jobs started on one source host, each with a few files named after it.
fn scene(tag: &str) -> Scene {
    let guard = PinnedGuard::acquire();
    assert!(!loader::is_loaded(), "the guard leaves no driver loaded");
    let (s, t, data) = (
        TestDir::new(&format!("{tag}-shost")),
        TestDir::new(&format!("{tag}-thost")),
        TestDir::new(&format!("{tag}-data")),
    );
    let extra = "NetworkTimeout = 6\nNetworkRetry = 1\n";
    let source = Host::start_capturing(rilld_bin(), s.path(), Role::Source, extra, "shared")
        .expect("source");
    let target = Host::start(rilld_bin(), t.path(), Role::Target, extra).expect("target");
    pair(&source, &target).expect("pairing");
    let (mut srcs, mut dsts) = (Vec::new(), Vec::new());
    for job in JOBS {
        let src = data.subdir(&format!("src-{job}"));
        for i in 0..3 {
            std::fs::write(src.join(format!("{job}-pre{i}")), job.repeat(100 + i)).unwrap();
        }
        let dst = data.join(format!("replica-{job}"));
        start_job(&source, &target, job, &src, &dst, &[]).expect("job");
        srcs.push(src);
        dsts.push(dst);
    }
    Scene {
        source,
        _target: target,
        srcs,
        dsts,
        _dirs: vec![s, t, data],
        _guard: guard,
    }
}

impl Scene {
    /// Waits until the jobs `which` are in sync over replicas equal to their sources.
    fn converge(&self, which: &[usize], what: &str) {
        let ok = wait_until(CONVERGE, || {
            Ok(which.iter().all(|&i| {
                in_sync(&self.source, JOBS[i]).unwrap_or(false)
                    && equal_trees(&self.srcs[i], &self.dsts[i])
            }))
        })
        .unwrap();
        if !ok {
            let diffs: Vec<String> = which
                .iter()
                .map(|&i| {
                    let (a, b) = (snapshot(&self.srcs[i]), snapshot(&self.dsts[i]));
                    format!("{}: {}", JOBS[i], differences(&a, &b, 10).join("\n"))
                })
                .collect();
            panic!(
                "{what}: not converged within {CONVERGE:?}: {}\n--- source stderr\n{}\n--- events\n{}",
                diffs.join("\n"),
                std::fs::read_to_string(self.source.dir.join("rilld.out")).unwrap_or_default(),
                self.source.event_log()
            );
        }
    }

    fn job(&self, name: &str, action: JobAction) {
        self.source
            .call(Request::Job {
                name: name.into(),
                action,
            })
            .unwrap_or_else(|e| panic!("{action:?} {name}: {e}"));
    }

    /// Some work of every common kind in job `i`'s source, under names of its own.
    fn work(&self, i: usize, round: &str) {
        let (src, job) = (&self.srcs[i], JOBS[i]);
        let dir = src.join(format!("{job}-{round}-dir"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(format!("{job}-{round}-inner")), round.repeat(1000)).unwrap();
        std::fs::write(src.join(format!("{job}-{round}-a")), b"first").unwrap();
        std::fs::rename(
            src.join(format!("{job}-{round}-a")),
            src.join(format!("{job}-{round}-b")),
        )
        .unwrap();
        std::fs::remove_file(src.join(format!("{job}-pre0"))).ok();
    }
}

/// Every name in `replica` starts with `job`'s own prefix (a directory's names too).
fn only_own_names(replica: &Path, job: &str) -> Vec<PathBuf> {
    let mut foreign = Vec::new();
    let mut stack = vec![replica.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(job) {
                foreign.push(e.path());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    foreign
}

/// Descriptors of eBPF programs and links a process holds: a private instance of the
/// capture holds its programs and their attachments; a reader of the pinned driver
/// holds only maps.
fn bpf_programs_held(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|l| {
            let l = l.to_string_lossy();
            l == "anon_inode:bpf-prog" || l == "anon_inode:bpf_link"
        })
        .count()
}

/// Three jobs: one capture (the pinned driver rilld loaded, drained by rilld, which holds
/// no programs of its own), each replica equal to its source with none of the others'
/// files, a rename between two jobs' sources replicated as a removal and a creation.
#[test]
fn three_jobs_share_one_capture_and_each_replica_holds_its_own_files() {
    let s = scene("shared");
    s.converge(&[0, 1, 2], "the first mirrors");
    let pid = s.source.pid().expect("source pid");
    assert!(loader::is_loaded(), "rilld loaded and pinned the driver");
    let holder = ReaderLock::holder().expect("somebody drains the pinned ring");
    assert!(
        holder.starts_with(&format!("pid {pid} ")),
        "the pinned ring's reader is {holder:?}, not rilld (pid {pid})"
    );
    assert_eq!(
        bpf_programs_held(pid),
        0,
        "rilld holds eBPF programs or links of its own: a private capture besides the pinned one"
    );

    for (i, round) in ["r1", "r2"].iter().enumerate() {
        for j in 0..JOBS.len() {
            s.work(j, round);
        }
        s.converge(&[0, 1, 2], &format!("live round {}", i + 1));
    }
    for (i, job) in JOBS.iter().enumerate() {
        let foreign = only_own_names(&s.dsts[i], job);
        assert!(foreign.is_empty(), "{job}'s replica holds {foreign:?}");
    }

    // A rename from alpha's source into bravo's: gone from alpha's replica, new in
    // bravo's (named for bravo, so the check of own names still holds).
    std::fs::write(
        s.srcs[0].join("alpha-moving"),
        b"moving between jobs".repeat(50),
    )
    .unwrap();
    s.converge(&[0], "the file to move");
    assert!(s.dsts[0].join("alpha-moving").exists());
    std::fs::rename(
        s.srcs[0].join("alpha-moving"),
        s.srcs[1].join("bravo-moved-in"),
    )
    .unwrap();
    s.converge(&[0, 1, 2], "the rename between jobs");
    assert!(!s.dsts[0].join("alpha-moving").exists());
    assert_eq!(
        std::fs::read(s.dsts[1].join("bravo-moved-in")).unwrap(),
        b"moving between jobs".repeat(50)
    );
    assert_eq!(bpf_programs_held(pid), 0, "after the rename");
}

/// Stopping one job leaves the others replicating through the same capture; the reader
/// stops with the last job, and the driver stays loaded after rilld exits.
#[test]
fn a_stopped_job_leaves_the_others_replicating() {
    let mut s = scene("stopone");
    s.converge(&[0, 1, 2], "the first mirrors");
    s.job("bravo", JobAction::Stop);
    let before = equal_trees(&s.srcs[1], &s.dsts[1]);
    assert!(before, "bravo's replica was equal when it stopped");
    for j in 0..JOBS.len() {
        s.work(j, "after-stop");
    }
    s.converge(&[0, 2], "the jobs still running");
    // Bravo's replica did not move: its job is stopped.
    assert!(!s.dsts[1].join("bravo-after-stop-b").exists());
    let pid = s.source.pid().expect("source pid");
    let holder = ReaderLock::holder().expect("the others still drain the ring");
    assert!(holder.starts_with(&format!("pid {pid} ")), "{holder:?}");

    // Started again, bravo catches up (what changed while it was stopped is remirrored).
    s.job("bravo", JobAction::Start);
    s.converge(&[0, 1, 2], "bravo started again");

    for job in JOBS {
        s.job(job, JobAction::Stop);
    }
    let released = wait_until(Duration::from_secs(20), || {
        Ok(ReaderLock::holder().is_none())
    });
    assert!(
        released.unwrap(),
        "the ring is still drained after every job stopped: {:?}",
        ReaderLock::holder()
    );
    assert!(
        loader::is_loaded(),
        "the pinned driver stays while no job runs"
    );
    s.source.stop().expect("stopping rilld");
    assert!(
        loader::is_loaded(),
        "the pinned driver stays after rilld exits"
    );
}
