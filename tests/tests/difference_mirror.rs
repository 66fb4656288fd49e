//! The difference mirror between two real `rilld serve` processes on loopback: after a
//! `kill -9` of the source, its remirror sends about the changed blocks of a large file,
//! not the file, and the replica ends equal; each `AutoRemirror` mode and `MirrorOverwrite`
//! 0 and 2 leave the replica as the guide says; a file written while its difference is
//! sent ends equal.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rill_engine::mgmt::{MirrorState, Request, Response};
use rill_tests::data_pattern;
use rill_tests::hosts::{paired_hosts, Hosts};
use rill_tests::tree::equal_trees_with;
use rill_tools::pair::{in_sync, start_job, wait_until};

const JOB: &str = "diff";
/// Short network timers, so a restarted source reconnects at once.
const TIMERS: &str = "NetworkTimeout = 6\nNetworkRetry = 1\n";
/// How long a mirror or remirror of the test's files may take.
const CONVERGE_WITHIN: Duration = Duration::from_secs(180);
/// A block the tests change: a database page.
const PAGE: usize = 4096;
/// The size of the files the modes are told apart by: several checksum blocks.
const MODE_FILE: usize = 2 << 20;

/// Two paired hosts (see `rill_tests::hosts`) and the test's steps on them.
struct Pair(Hosts);

impl std::ops::Deref for Pair {
    type Target = Hosts;
    fn deref(&self) -> &Hosts {
        &self.0
    }
}

impl std::ops::DerefMut for Pair {
    fn deref_mut(&mut self) -> &mut Hosts {
        &mut self.0
    }
}

/// Two paired hosts with `source_extra` settings on the source.
fn pair(tag: &str, source_extra: &str) -> Pair {
    Pair(paired_hosts(
        tag,
        &format!("{TIMERS}{source_extra}"),
        TIMERS,
    ))
}

impl Pair {
    fn start(&self) {
        start_job(&self.source, &self.target, JOB, &self.src, &self.dst, &[]).expect("job");
    }

    /// Waits until the job says it is in sync (mirror done, nothing pending, queues empty).
    fn settle(&self) {
        self.until("settle", |p| in_sync(&p.source, JOB).unwrap_or(false));
    }

    fn converge(&self) {
        self.until("converge", |p| {
            in_sync(&p.source, JOB).unwrap_or(false) && equal_trees_with(&p.src, &p.dst, false)
        });
    }

    /// Waits until `ready` holds, within [`CONVERGE_WITHIN`], or fails the test.
    fn until(&self, what: &str, ready: impl Fn(&Pair) -> bool) {
        let ok = wait_until(CONVERGE_WITHIN, || Ok(ready(self))).unwrap_or(false);
        assert!(ok, "the job did not {what}\n{}", self.logs());
    }

    /// Remirrors the source's `rilld` said it began, in this process and those before.
    fn remirrors_begun(&self) -> usize {
        std::fs::read_to_string(self.source.dir.join("rilld.out"))
            .unwrap_or_default()
            .matches("change-journal entries")
            .count()
    }

    /// Whether the replica's `name` holds the source's bytes.
    fn same(&self, name: &str) -> bool {
        std::fs::read(self.src.join(name)).unwrap() == std::fs::read(self.dst.join(name)).unwrap()
    }

    /// Crashes the source, runs `meanwhile`, starts it again: its remirror follows. The
    /// first mirror is recorded as complete before the crash: else the restarted job
    /// mirrors everything again, and whole.
    fn crash_and_restart(&mut self, meanwhile: impl FnOnce(&Pair)) {
        let recorded = wait_until(CONVERGE_WITHIN, || {
            Ok(matches!(
                self.source.call(Request::JobList)?,
                Response::Jobs(jobs) if jobs.iter().all(|j| j.mirror == MirrorState::Complete)
            ))
        })
        .unwrap_or(false);
        assert!(recorded, "the first mirror was not recorded as complete");
        self.source.kill().expect("kill -9 of the source");
        meanwhile(self);
        self.source.restart().expect("source restart");
    }

    /// Bytes the source sent since it started.
    fn bytes_sent(&self) -> u64 {
        self.source.job_status(JOB).expect("status").con_bytes_tx
    }

    fn logs(&self) -> String {
        format!(
            "--- source events\n{}\n--- target events\n{}",
            self.source.event_log(),
            self.target.event_log()
        )
    }
}

/// Overwrites one page of `p` at `at` with bytes unlike the pattern's.
fn change_page(p: &Path, at: u64, seed: u8) {
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.write_all_at(&[seed; PAGE], at).unwrap();
}

/// Changes a page of `p` and puts its mtime back: a difference only data shows.
fn change_page_keeping_times(p: &Path, at: u64) {
    let m = std::fs::metadata(p).unwrap();
    change_page(p, at, 0xEE);
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(m.modified().unwrap()).unwrap();
}

#[test]
fn a_remirror_after_kill_9_sends_about_the_changed_blocks_and_the_replica_ends_equal() {
    /// 256 MiB: large next to what changes, small enough for a test run.
    const BIG: usize = 256 << 20;
    const CHANGED: u64 = 10;
    let mut p = pair("dm-kill", "");
    std::fs::write(p.src.join("db.bin"), data_pattern(BIG, 3)).unwrap();
    std::fs::write(p.src.join("small.txt"), b"a small file, sent whole").unwrap();
    p.start();
    p.converge();
    p.crash_and_restart(|p| {
        let db = p.src.join("db.bin");
        // Scattered: each in a checksum block of its own.
        for i in 0..CHANGED {
            change_page(&db, i * (BIG as u64 / CHANGED) + 12_345, i as u8);
        }
        std::fs::write(
            p.src.join("small.txt"),
            b"changed while the source was down",
        )
        .unwrap();
    });
    p.converge();
    let sent = p.bytes_sent();
    // A differing 64 KiB block is resent whole, with the frames and the remirror's
    // directory and attribute operations around it.
    let bound = CHANGED * 64 * 1024 + (1 << 20);
    eprintln!("remirror sent {sent} bytes for {CHANGED} changed pages of {BIG}");
    assert!(
        sent < bound,
        "the remirror sent {sent} bytes (bound {bound})"
    );
    assert!(equal_trees_with(&p.src, &p.dst, false));
}

/// Runs one remirror after a crash with `extra` settings: `changed.bin` is changed on the
/// source while it is down (its mtime moves), `planted.bin` on the replica with its mtime
/// put back. Returns the pair and the bytes the restarted source sent.
fn remirror_with(tag: &str, extra: &str) -> (Pair, u64) {
    let mut p = pair(tag, extra);
    for (name, seed) in [("changed.bin", 1), ("planted.bin", 2)] {
        std::fs::write(p.src.join(name), data_pattern(MODE_FILE, seed)).unwrap();
    }
    p.start();
    p.converge();
    let before = p.source.event_log().matches(REMIRRORED).count();
    p.crash_and_restart(|p| {
        change_page(&p.src.join("changed.bin"), 1 << 20, 0x55);
        change_page_keeping_times(&p.dst.join("planted.bin"), 1 << 20);
    });
    if !extra.contains("AutoRemirror = 0") {
        // The status may say OK before the restarted job has read what it must remirror.
        let done = wait_until(CONVERGE_WITHIN, || {
            Ok(p.source.event_log().matches(REMIRRORED).count() > before)
        })
        .unwrap_or(false);
        assert!(done, "no remirror\n{}", p.logs());
    }
    p.settle();
    let sent = p.bytes_sent();
    eprintln!("{tag}: the remirror sent {sent} bytes");
    (p, sent)
}

/// What the source logs once a remirror is done (event 4065).
const REMIRRORED: &str = "every name that waited has been remirrored";

/// The bytes of one block difference at most: well below a whole file of the modes'.
const ABOUT_A_BLOCK: u64 = 512 * 1024;

#[test]
fn auto_remirror_0_sends_nothing_after_a_crash() {
    let (p, _) = remirror_with("dm-mode0", "AutoRemirror = 0\n");
    // What the remirror would have sent has not arrived a while later either.
    std::thread::sleep(Duration::from_secs(3));
    for name in ["changed.bin", "planted.bin"] {
        assert!(!p.same(name), "{name}");
    }
    assert!(p.source.event_log().contains("AutoRemirror = 0"));
}

#[test]
fn auto_remirror_1_without_checksum_all_sends_the_bytes_of_files_whose_dates_differ() {
    let (p, sent) = remirror_with("dm-mode1", "AutoRemirror = 1\nChecksumAll = 0\n");
    assert!(p.same("changed.bin"));
    // Same size and mtime: only the attributes compared, the planted page kept.
    assert!(!p.same("planted.bin"));
    assert!(sent < ABOUT_A_BLOCK, "{sent}");
}

#[test]
fn auto_remirror_2_sends_every_file_whole() {
    let (p, sent) = remirror_with("dm-mode2", "AutoRemirror = 2\n");
    assert!(equal_trees_with(&p.src, &p.dst, false));
    assert!(sent >= 2 * MODE_FILE as u64, "{sent}");
}

#[test]
fn auto_remirror_3_sends_whole_the_files_whose_dates_differ() {
    let (p, sent) = remirror_with("dm-mode3", "AutoRemirror = 3\n");
    assert!(p.same("changed.bin"));
    assert!(!p.same("planted.bin"));
    assert!(
        sent >= MODE_FILE as u64 && sent < 2 * MODE_FILE as u64,
        "{sent}"
    );
}

#[test]
fn auto_remirror_4_sends_the_bytes_that_differ_in_every_file() {
    let (p, sent) = remirror_with("dm-mode4", "AutoRemirror = 4\nChecksumAll = 0\n");
    assert!(equal_trees_with(&p.src, &p.dst, false));
    assert!(sent < ABOUT_A_BLOCK, "{sent}");
}

/// A replica made before the job's first mirror: `older.txt` modified before the source's,
/// `newer.txt` after it; `new.txt` only on the source.
fn first_mirror_over_a_replica(tag: &str, overwrite: u8) -> Pair {
    let p = pair(tag, &format!("MirrorOverwrite = {overwrite}\n"));
    std::fs::create_dir_all(&p.dst).unwrap();
    let hour = Duration::from_secs(3600);
    let now = SystemTime::now();
    for (name, replica_mtime) in [("older.txt", now - hour), ("newer.txt", now + hour)] {
        std::fs::write(p.src.join(name), b"the source's").unwrap();
        let r = p.dst.join(name);
        std::fs::write(&r, b"the replica's, made before the mirror").unwrap();
        let f = std::fs::File::options().write(true).open(&r).unwrap();
        f.set_modified(replica_mtime).unwrap();
    }
    std::fs::write(p.src.join("new.txt"), b"only on the source").unwrap();
    p.start();
    p.settle();
    p
}

#[test]
fn mirror_overwrite_0_never_overwrites_a_file_the_replica_holds() {
    let p = first_mirror_over_a_replica("dm-over0", 0);
    for name in ["older.txt", "newer.txt"] {
        let kept = std::fs::read(p.dst.join(name)).unwrap();
        assert_eq!(kept, b"the replica's, made before the mirror", "{name}");
    }
    assert!(p.same("new.txt"));
}

#[test]
fn mirror_overwrite_2_overwrites_only_older_files() {
    let p = first_mirror_over_a_replica("dm-over2", 2);
    assert!(p.same("older.txt"));
    let kept = std::fs::read(p.dst.join("newer.txt")).unwrap();
    assert_eq!(kept, b"the replica's, made before the mirror");
    assert!(p.same("new.txt"));
}

#[test]
fn a_file_written_while_its_difference_is_sent_ends_equal() {
    const SIZE: usize = 64 << 20;
    let mut p = pair("dm-busy", "");
    let db = p.src.join("db.bin");
    std::fs::write(&db, data_pattern(SIZE, 9)).unwrap();
    p.start();
    p.converge();
    let before = p.remirrors_begun();
    p.crash_and_restart(|p| {
        for i in 0..20u64 {
            change_page(&p.src.join("db.bin"), i * 3_000_000, 0x33);
        }
    });
    // Written from the restart on, while the remirror compares and sends.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, db) = (Arc::clone(&stop), db.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                change_page(
                    &db,
                    (i * 7_919 * PAGE as u64) % (SIZE - PAGE) as u64,
                    i as u8,
                );
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    {
        // The writer stops when this block ends, a failed wait included.
        let _stop = StopOnDrop(Arc::clone(&stop));
        // Until the remirror has begun and a while after, so that the writes overlap its
        // comparison and sends (each write it overtakes has the file remirrored again,
        // so it cannot be waited for while the writer runs).
        p.until("start its remirror", |p| p.remirrors_begun() > before);
        std::thread::sleep(Duration::from_secs(2));
    }
    writer.join().unwrap();
    p.converge();
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
