//! The target's defences against its peers, with real `rilld serve` processes on loopback.
//!
//! - A source whose certificate the target has not pinned is refused at the TLS handshake:
//!   a counted failed login, event 169 naming its fingerprint, nothing in the target path,
//!   and the source's job not Active. Once the target trusts it (`TrustAdd` through the
//!   API, no restart) the job converges.
//! - A peer the target trusts but which speaks the wire protocol by hand (a rogue, or a
//!   buggy source) cannot get anything applied outside the target path: not by `..`, an
//!   absolute name, a rename or a hard link that escapes, nor through symlinks in the
//!   replica (planted there, or made by its own ops). Its malformed frames (oversized,
//!   bad magic, bad checksum, out of order, garbage) are refused with a `Refused` frame and
//!   event 4071. All the while a legitimate job keeps replicating to the same target.
//!
//! Modules: [`rogue`] (the rogue peer and the frames it sends), [`arena`] (the scene of
//! each rogue test), [`symlinks`] and [`refusals`] (the attacks).

mod arena;
mod refusals;
mod rogue;
mod symlinks;

use std::path::Path;
use std::time::Duration;

use rill_engine::mgmt::{ConErrorClass, ConState, Request, Response, TargetStatus};
use rill_tests::tree::{assert_equal_trees, equal_trees, snapshot};
use rill_tests::{data_pattern, require_kernel_support, rilld_bin, TestDir};
use rill_tools::pair::{failing, in_sync, pair, start_job, wait_until, Host, Role};

/// Both hosts: extended attributes replicated (so xattr ops are really applied), short
/// network timers so a refused or dropped connection is retried quickly.
const EXTRA: &str = "ExtendedAttributes = 1\nNetworkTimeout = 6\nNetworkRetry = 1\n";

/// A source and a target `rilld`, each in a directory of its own named after `tag`, and a
/// directory for the replicated data. Not paired. Dropped in that order: the daemons stop
/// before their directories go.
struct Hosts {
    source: Host,
    target: Host,
    data: TestDir,
    _homes: [TestDir; 2],
}

impl Hosts {
    fn start(tag: &str) -> Hosts {
        require_kernel_support();
        let dir = |what: &str| TestDir::new(&format!("sec-{tag}-{what}"));
        let (s, t) = (dir("shost"), dir("thost"));
        Hosts {
            source: Host::start(rilld_bin(), s.path(), Role::Source, EXTRA).expect("source"),
            target: Host::start(rilld_bin(), t.path(), Role::Target, EXTRA).expect("target"),
            data: dir("data"),
            _homes: [s, t],
        }
    }
}

/// The daemons' event logs and standard error, for failure messages.
fn logs(source: &Host, target: &Host) -> String {
    let out = |h: &Host| std::fs::read_to_string(h.dir.join("rilld.out")).unwrap_or_default();
    format!(
        "--- source events\n{}\n--- source stderr\n{}\n--- target events\n{}\n--- target stderr\n{}",
        source.event_log(),
        out(source),
        target.event_log(),
        out(target)
    )
}

fn target_status(target: &Host) -> TargetStatus {
    match target.call(Request::Status { name: None }) {
        Ok(Response::Status(r)) => r.target.expect("the target role is running"),
        other => panic!("status of the target: {other:?}"),
    }
}

/// The lines of an event log with event `id` that contain `needle` (a line is
/// `date time pid tid sequence type id text`).
fn events_with(log: &str, id: u32, needle: &str) -> Vec<String> {
    let id = id.to_string();
    log.lines()
        .filter(|l| l.split(' ').nth(6) == Some(id.as_str()) && l.contains(needle))
        .map(str::to_string)
        .collect()
}

fn write_files(dir: &Path, prefix: &str, n: usize) {
    for i in 0..n {
        std::fs::write(
            dir.join(format!("{prefix}-{i}.txt")),
            data_pattern(100 + i * 37, i as u8),
        )
        .unwrap();
    }
}

/// Waits until the job is in sync and the trees are equal, then checks them in full.
fn converge(source: &Host, target: &Host, job: &str, src: &Path, dst: &Path, within: Duration) {
    let ok = wait_until(within, || {
        Ok(in_sync(source, job).unwrap_or(false) && dst.is_dir() && equal_trees(src, dst))
    })
    .unwrap_or(false);
    if !ok {
        let status = source.job_status(job).map(|s| format!("{s:?}"));
        panic!(
            "job {job} did not converge within {within:?}: {}\nstatus {status:?}\n{}",
            differences(src, dst),
            logs(source, target)
        );
    }
    assert_equal_trees(src, dst);
}

/// The regular files whose content differs between source and replica, with both sizes
/// and the first differing byte, for failure messages.
fn differences(src: &Path, dst: &Path) -> String {
    if !dst.is_dir() {
        return format!("the replica {} does not exist", dst.display());
    }
    let (a, b) = (snapshot(src), snapshot(dst));
    let mut out = Vec::new();
    for (path, node) in &a {
        match b.get(path) {
            None => out.push(format!("{}: missing on the replica", path.display())),
            Some(n) if n == node => {}
            Some(_) => {
                let (x, y) = (
                    std::fs::read(src.join(path)).unwrap_or_default(),
                    std::fs::read(dst.join(path)).unwrap_or_default(),
                );
                let at = x.iter().zip(&y).position(|(p, q)| p != q);
                out.push(format!(
                    "{}: {} bytes on the source, {} on the replica, first different byte at \
                     {at:?} (or attributes differ)",
                    path.display(),
                    x.len(),
                    y.len()
                ));
            }
        }
    }
    out.extend(
        b.keys()
            .filter(|p| !a.contains_key(*p))
            .map(|p| format!("{}: only on the replica", p.display())),
    );
    format!("{} paths differ:\n{}", out.len(), out.join("\n"))
}

#[test]
fn an_untrusted_source_is_refused_until_the_target_trusts_it() {
    let hosts = Hosts::start("untrusted");
    let (source, target, data) = (&hosts.source, &hosts.target, &hosts.data);
    let (sf, tf) = (source.fingerprint().unwrap(), target.fingerprint().unwrap());
    // Only the source trusts the target: the target does not know the source.
    source
        .call(Request::TrustAdd {
            name: "target".into(),
            peer: tf,
        })
        .unwrap();
    let (src, dst) = (data.subdir("src"), data.join("replica"));
    write_files(&src, "before", 20);
    start_job(source, target, "untrusted", &src, &dst, &[]).unwrap();
    write_files(&src, "during", 20);

    // Every attempt is a failed login; two means the source also retried and was
    // refused again.
    let refused = wait_until(Duration::from_secs(60), || {
        Ok(target_status(target).failed_logins >= 2)
    })
    .unwrap();
    if !refused {
        panic!(
            "the target counted {} failed logins within 60 s, expected at least 2\n{}",
            target_status(target).failed_logins,
            logs(source, target)
        );
    }
    let status = target_status(target);
    assert_eq!(
        (status.logins, status.sessions.len()),
        (0, 0),
        "an untrusted source must neither log in nor get a session: {status:?}"
    );
    let failed = events_with(&target.event_log(), 169, &sf);
    assert!(
        !failed.is_empty(),
        "no event 169 naming the refused fingerprint {sf}\n{}",
        logs(source, target)
    );
    let received: Vec<_> = std::fs::read_dir(&dst)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(
        received.is_empty(),
        "the target path received {received:?} from an untrusted source"
    );
    let job = source.job_status("untrusted").unwrap();
    assert_ne!(
        job.con_state,
        ConState::Active,
        "the refused job's connection is not Active: {job:?}"
    );
    assert_eq!(job.con_rpt, None, "nothing was acknowledged: {job:?}");
    // The source says why, in its status and once in its event log (4011).
    let error = failing(&job).unwrap_or_else(|| panic!("not shown as failing: {job:?}"));
    assert_eq!(error.class, ConErrorClass::NotTrusted, "{job:?}");
    assert!(error.message.contains("trust"), "{job:?}");
    let not_trusted = events_with(&source.event_log(), 4011, "Certificate Not Trusted");
    assert_eq!(
        not_trusted.len(),
        1,
        "one event 4011 for the reason, not one per retry\n{}",
        logs(source, target)
    );

    // Trust takes effect at the next attempt, without restarting either daemon.
    let pids = (source.pid(), target.pid());
    target
        .call(Request::TrustAdd {
            name: "source".into(),
            peer: sf.clone(),
        })
        .unwrap();
    write_files(&src, "after", 20);
    converge(
        source,
        target,
        "untrusted",
        &src,
        &dst,
        Duration::from_secs(60),
    );
    assert_eq!(pids, (source.pid(), target.pid()), "no restart");
    let job = source.job_status("untrusted").unwrap();
    assert_eq!(job.con_error, None, "{job:?}");
    assert!(
        !events_with(&source.event_log(), 4010, "job untrusted").is_empty(),
        "no event 4010 once connected\n{}",
        logs(source, target)
    );
    let status = target_status(target);
    assert!(status.logins >= 1, "{status:?}");
    assert!(
        !events_with(&target.event_log(), 170, "Source source ").is_empty(),
        "no event 170 for the now trusted source\n{}",
        logs(source, target)
    );
}

/// Found while writing the tests above: a file rewritten shorter through
/// `open(O_CREAT | O_TRUNC)` (what `>` in a shell, `fopen("w")` and `std::fs::write` do)
/// keeps its old tail on the replica, so data the source removed stays readable on the
/// target. A truncating open without `O_CREAT` is the control.
#[test]
fn a_file_rewritten_shorter_leaves_no_stale_tail_on_the_replica() {
    let hosts = Hosts::start("trunc");
    let (source, target, data) = (&hosts.source, &hosts.target, &hosts.data);
    pair(source, target).unwrap();
    let (src, dst) = (data.subdir("src"), data.join("replica"));
    start_job(source, target, "trunc", &src, &dst, &[]).unwrap();
    let secret = b"password=hunter2 and other things to be removed later\n";
    for name in ["o_trunc.txt", "o_creat_o_trunc.txt"] {
        std::fs::write(src.join(name), secret).unwrap();
    }
    converge(source, target, "trunc", &src, &dst, Duration::from_secs(60));
    // open(O_WRONLY | O_TRUNC), then a short write.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(src.join("o_trunc.txt"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"short\n").unwrap();
    drop(f);
    // open(O_WRONLY | O_CREAT | O_TRUNC) of the existing file, then a short write.
    std::fs::write(src.join("o_creat_o_trunc.txt"), b"short\n").unwrap();
    converge(source, target, "trunc", &src, &dst, Duration::from_secs(30));
}
