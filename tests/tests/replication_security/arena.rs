//! The scene of every rogue test: a source and a target `rilld`, a legitimate job that
//! replicates a steady stream of writes all through the attacks (a refusal must cost the
//! target nothing but the rogue's connection), and beside the rogue's target path a
//! sentinel directory, with a file, a subdirectory and an extended attribute, that nothing
//! may ever touch.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rill_tests::tree::{snapshot, Node};
use rill_tests::{data_pattern, TestDir};
use rill_tools::pair::{pair, start_job, wait_until};

use crate::rogue::{create, event, op_frame, write, Heard, Rogue};
use crate::{converge, logs, target_status, write_files, Hosts};

pub struct Arena {
    pub hosts: Hosts,
    pub rogue: Rogue,
    /// The rogue's target path.
    pub replica: PathBuf,
    /// Beside the replica: must never change.
    pub sentinel: PathBuf,
    /// The legitimate job's source and replica.
    src: PathBuf,
    dst: PathBuf,
    untouched: BTreeMap<PathBuf, Node>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    checkpoints: usize,
    // The rogue's home and the area around its replica, dropped after the daemons stop.
    _dirs: [TestDir; 2],
}

impl Arena {
    /// Sets the scene in directories named after `tag`, and has the rogue replicate
    /// `victim.txt` through a session of its own: its refusals later are for what it sent,
    /// not for who it is.
    pub fn new(tag: &str) -> Arena {
        let hosts = Hosts::start(tag);
        let (source, target, data) = (&hosts.source, &hosts.target, &hosts.data);
        let dir = |what: &str| TestDir::new(&format!("sec-{tag}-{what}"));
        let (rogue_home, area) = (dir("rogue"), dir("area"));
        pair(source, target).unwrap();

        let (src, dst) = (data.subdir("src"), data.join("replica"));
        std::fs::create_dir(src.join("bg")).unwrap();
        write_files(&src, "before", 20);
        start_job(source, target, "legit", &src, &dst, &[]).unwrap();
        converge(source, target, "legit", &src, &dst, Duration::from_secs(60));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, bg) = (Arc::clone(&stop), src.join("bg"));
            std::thread::spawn(move || {
                for i in 0..20_000usize {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::fs::write(
                        bg.join(format!("f{}.txt", i % 40)),
                        // Growing: a file rewritten shorter has a test of its own.
                        data_pattern(200 + i, i as u8),
                    )
                    .unwrap();
                    // Pacing: a steady stream, not a flood.
                    std::thread::sleep(Duration::from_millis(15));
                }
            })
        };

        let (replica, sentinel) = (area.join("replica"), area.join("sentinel"));
        let rogue = Rogue::trusted_by(target, rogue_home.path(), replica.clone());
        std::fs::create_dir_all(sentinel.join("sub")).unwrap();
        std::fs::write(sentinel.join("secret.txt"), "the sentinel's secret\n").unwrap();
        std::fs::write(sentinel.join("sub/inner.txt"), "inner\n").unwrap();
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let (secret, keep) = (c(&sentinel.join("secret.txt")), c(Path::new("user.keep")));
        // SAFETY: NUL-terminated strings and a buffer of the given length.
        let r =
            unsafe { libc::setxattr(secret.as_ptr(), keep.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
        assert_eq!(
            r,
            0,
            "setxattr on the sentinel: {}",
            std::io::Error::last_os_error()
        );
        let untouched = outside(area.path());
        let arena = Arena {
            hosts,
            rogue,
            replica,
            sentinel,
            src,
            dst,
            untouched,
            stop,
            writer: Some(writer),
            checkpoints: 0,
            _dirs: [area, rogue_home],
        };

        let (mut conn, first) = arena.rogue.session();
        let frames = [
            op_frame(first, &create("victim.txt")),
            op_frame(first + 1, &event("victim.txt", write(b"victim\n"))),
        ]
        .concat();
        arena.rogue.send(&mut conn, &frames).unwrap();
        let mut heard = Heard::default();
        arena
            .rogue
            .listen(&mut conn, &mut heard, |h| h.acked > first);
        assert!(
            heard.acked > first && heard.refused.is_none() && heard.naks.is_empty(),
            "the rogue's legitimate ops: {heard:?}\n{}",
            arena.logs()
        );
        assert_eq!(
            std::fs::read(arena.replica.join("victim.txt")).unwrap(),
            b"victim\n"
        );
        arena.rogue.close(conn);
        arena
    }

    /// The directory holding the rogue's replica and the sentinel.
    pub fn area(&self) -> &Path {
        self.replica
            .parent()
            .expect("the replica is inside the area")
    }

    /// Both daemons' event logs and standard error, for failure messages.
    pub fn logs(&self) -> String {
        logs(&self.hosts.source, &self.hosts.target)
    }

    /// Fails, naming what changed, if anything outside the rogue's target path did.
    pub fn check_outside(&self, after: &str) {
        let now = outside(self.area());
        if now != self.untouched {
            let changed: Vec<_> = now
                .keys()
                .chain(self.untouched.keys())
                .filter(|k| now.get(*k) != self.untouched.get(*k))
                .collect();
            panic!(
                "SECURITY: {after} changed what is outside the target path: {changed:?}\n\
                 before {:#?}\nafter {now:#?}\n{}",
                self.untouched,
                self.logs()
            );
        }
    }

    /// Fails unless a file written on the legitimate source now reaches its replica.
    pub fn checkpoint(&mut self, after: &str) {
        self.checkpoints += 1;
        let n = self.checkpoints;
        let (name, text) = (
            format!("checkpoint-{n}.txt"),
            format!("checkpoint {n} after {after}"),
        );
        std::fs::write(self.src.join(&name), &text).unwrap();
        let arrived = wait_until(Duration::from_secs(30), || {
            Ok(std::fs::read_to_string(self.dst.join(&name)).is_ok_and(|t| t == text))
        })
        .unwrap();
        if !arrived {
            panic!(
                "the legitimate job stopped replicating after {after}: the replica's \
                 {name} is {:?}, expected {text:?}; status {:?}\n{}",
                std::fs::read_to_string(self.dst.join(&name)),
                self.hosts.source.job_status("legit"),
                self.logs()
            );
        }
    }

    /// The end of every rogue test: the legitimate job is whole and never lost its link,
    /// nothing outside changed, and the rogue's refusals were not failed logins.
    pub fn finish(mut self) {
        self.stop_writer()
            .expect("the legitimate job's writer panicked");
        converge(
            &self.hosts.source,
            &self.hosts.target,
            "legit",
            &self.src,
            &self.dst,
            Duration::from_secs(90),
        );
        self.check_outside("the whole run");
        let status = target_status(&self.hosts.target);
        assert_eq!(status.failed_logins, 0, "{status:?}");
        assert!(
            status
                .sessions
                .iter()
                .any(|s| s.job == "legit" && s.last_applied > 0 && s.peer_name == "source"),
            "the target's session of the legitimate job: {status:?}"
        );
        let legit = self.hosts.source.job_status("legit").unwrap();
        assert_eq!(
            legit.con_resent_op_count, 0,
            "the legitimate link never dropped: {legit:?}"
        );
    }

    fn stop_writer(&mut self) -> std::thread::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.take().map_or(Ok(()), JoinHandle::join)
    }
}

impl Drop for Arena {
    /// Also when a test fails before [`Arena::finish`]: the writer must not outlive its
    /// directories.
    fn drop(&mut self) {
        let _ = self.stop_writer();
    }
}

/// Everything in `area` but the replica.
fn outside(area: &Path) -> BTreeMap<PathBuf, Node> {
    snapshot(area)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("replica"))
        .collect()
}
