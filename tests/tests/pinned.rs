//! The pinned driver (`rill-driver load`, pinned under /sys/fs/bpf/rill): the installed
//! driver that keeps capturing with no reader, as a loaded kernel driver would, while the
//! engine restarts. What must hold:
//!
//! - load and unload are idempotent and `status` tells which state the driver is in;
//! - a reader attaching later (`capture --attach`) gets every record the ring held, in
//!   order, nothing dropped;
//! - only one reader at a time (a second one would steal records);
//! - when the ring overflows, nothing is lost silently: writes are range-only above the
//!   throttle level, and every file whose create or write was not recorded is reported as
//!   `dirty` after an `overflow` event;
//! - file systems outside WatchedPaths are not captured.
//!
//! Every test holds a [`PinnedGuard`]: one test at a time, the driver unloaded afterwards.

use std::collections::HashSet;

use std::path::Path;

use rill_tests::events::{kind, path, path_str};
use rill_tests::{
    assert_ops, assert_seq_increasing, of_pid, op, CaptureProc, PinnedGuard, TestDir, Tmpfs,
    Workload, RUN_TIMEOUT,
};
use serde_json::Value;

const WORKLOAD: &str = env!("CARGO_BIN_EXE_rill-workload");

fn num(status: &Value, key: &str) -> f64 {
    status[key]
        .as_f64()
        .unwrap_or_else(|| panic!("status --json lacks a numeric {key}: {status}"))
}

/// `capture --attach` of `roots`, stopped at once: SIGTERM makes it drain what the ring
/// holds, so every record written before the attach is printed.
fn drain(g: &PinnedGuard, roots: &[&Path]) -> Vec<Value> {
    let cap = CaptureProc::start(&g.settings_file(), roots, &["--attach"]);
    let c = cap.stop();
    assert_seq_increasing(&c.events);
    c.events
}

#[test]
fn load_and_unload_are_idempotent_and_status_tells_the_state() {
    let g = PinnedGuard::acquire();
    assert_eq!(g.status()["loaded"], false, "status before load");
    g.driver_ok(&["load"]);
    g.driver_ok(&["load"]);
    let st = g.status();
    assert_eq!(st["loaded"], true, "status after load: {st}");
    for key in [
        "RingSizeBytes",
        "RingUsedBytes",
        "DriverQueuePercent",
        "RecordsEmitted",
        "RecordsDropped",
        "OpsStopped",
        "DirtyFiles",
    ] {
        num(&st, key);
    }
    assert!(
        st["dropped"].is_object(),
        "status lacks dropped{{..}}: {st}"
    );
    g.driver_ok(&["unload"]);
    g.driver_ok(&["unload"]);
    let st = g.status();
    assert_eq!(st["loaded"], false, "status after unload: {st}");
}

#[test]
fn reader_attaching_later_gets_every_record_in_order() {
    const N: usize = 1000;
    let g = PinnedGuard::acquire();
    // A file system of its own: the driver watches file systems, not directories, so the
    // records of whatever else writes to a shared one go to the same ring, and a ring that
    // fills past its throttling level records writes without their bytes (seen with
    // another test suite running beside this one).
    let dir = Tmpfs::mount("reattach");
    g.set("RingSizeMB", "4");
    g.set("WatchedPaths", &path_str(dir.path()));
    g.driver_ok(&["load"]);
    assert_eq!(num(&g.status(), "RingSizeBytes"), (4 << 20) as f64);
    // No reader is attached while the workload runs.
    let w = Workload::run(WORKLOAD, "many-files", dir.path(), &["n=1000"]);
    let before = g.status();
    assert_eq!(
        num(&before, "RecordsDropped") + num(&before, "OpsStopped"),
        0.0,
        "records lost with no reader and a 4 MiB ring: {before}"
    );
    let events = drain(&g, &[dir.path()]);
    let expected: Vec<Value> = (0..N)
        .flat_map(|i| {
            let f = dir.path().join(format!("f{i:05}"));
            [
                op!("create", f, mode = 0o644),
                op!("write", f, offset = 0, len = 16, inline = true),
            ]
        })
        .collect();
    assert_ops(
        &of_pid(&events, w.pid),
        &expected,
        "records of 1000 files written before the reader attached",
    );
    let after = g.status();
    assert_eq!(num(&after, "RecordsDropped"), 0.0, "status: {after}");
}

#[test]
fn a_second_reader_is_refused() {
    let g = PinnedGuard::acquire();
    let dir = TestDir::new("reader-lock");
    g.driver_ok(&["load"]);
    let first = CaptureProc::start(&g.settings_file(), &[dir.path()], &["--attach"]);
    let mut second = CaptureProc::spawn(&g.settings_file(), &[dir.path()], &["--attach"]);
    let status = second
        .wait_exit(RUN_TIMEOUT)
        .unwrap_or_else(|| panic!("a second attached reader kept running: {}", second.stderr()));
    let err = second.stderr();
    assert!(
        !status.success() && err.contains("another reader"),
        "second reader: {status}, stderr: {err}"
    );
    assert!(!err.contains("panicked"), "second reader panicked: {err}");
    first.stop();
}

/// Per file of the `overflow` scenario: its path and whether its create and its write
/// were captured.
struct FileSeen {
    path: String,
    create: bool,
    write: bool,
}

#[test]
fn overflow_loses_nothing_silently() {
    const N: usize = 2000;
    const RING: u64 = 1 << 20;
    const THROTTLE_PCT: u64 = 50;
    let g = PinnedGuard::acquire();
    let dir = TestDir::new("overflow");
    g.set("RingSizeMB", "1");
    g.set("ThrottleStartPercent", &THROTTLE_PCT.to_string());
    g.set("StopReplicatingPercent", "90");
    g.set("WatchedPaths", &path_str(dir.path()));
    g.driver_ok(&["load"]);
    let params = ["n=2000", "size=65536", "name_len=100", "mkdir_every=10"];
    let w = Workload::run(WORKLOAD, "overflow", dir.path(), &params);

    let st = g.status();
    assert!(
        num(&st, "DriverQueuePercent") > 0.0,
        "ring filled with no reader, yet DriverQueuePercent is 0: {st}"
    );
    assert!(
        num(&st, "RecordsDropped") + num(&st, "OpsStopped") > 0.0,
        "a 1 MiB ring took 2000 x 64 KiB writes with nothing dropped or stopped: {st}"
    );

    let events = drain(&g, &[dir.path()]);
    let overflow: Vec<&Value> = events.iter().filter(|e| kind(e) == "overflow").collect();
    assert!(
        overflow.iter().any(|e| e["count"].as_u64() > Some(0)),
        "no overflow event with a count > 0 (status before attach: {st})"
    );
    let dirty: Vec<&Value> = events.iter().filter(|e| kind(e) == "dirty").collect();
    for d in &dirty {
        let reason = d["reason"].as_str().unwrap_or("");
        assert!(
            [
                "ring-full",
                "stop-limit",
                "path-unknown",
                "modified",
                "rescan-all"
            ]
            .contains(&reason),
            "dirty event with an unknown reason: {d}"
        );
    }
    let covered = |p: &str| dirty_covers(&dirty, p);

    let mine = of_pid(&events, w.pid);
    let pad = "x".repeat(100);
    let mut files: Vec<FileSeen> = (0..N)
        .map(|i| FileSeen {
            path: path_str(dir.join(format!("{i:05}-{pad}"))),
            create: false,
            write: false,
        })
        .collect();
    let index: std::collections::HashMap<String, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.path.clone(), i))
        .collect();
    let mut mkdirs_seen = HashSet::new();
    // What was recorded must still be in the workload's order: file by file, create first.
    let mut last = None;
    for e in &mine {
        let step = match (kind(e), index.get(path(e))) {
            ("create", Some(&i)) => Some((i, 0)),
            ("write", Some(&i)) => Some((i, 1)),
            _ => None,
        };
        if let Some(step) = step {
            assert!(
                last < Some(step),
                "recorded out of order: {e} after {last:?}"
            );
            last = Some(step);
        }
        match (kind(e), index.get(path(e))) {
            ("create", Some(&i)) => files[i].create = true,
            ("write", Some(&i)) => {
                files[i].write = true;
                assert_eq!(
                    (e["offset"].as_u64(), e["len"].as_u64()),
                    (Some(0), Some(65536)),
                    "{e}"
                );
            }
            ("mkdir", None) => {
                mkdirs_seen.insert(path(e).to_string());
            }
            _ => panic!("unexpected event of the workload: {e}"),
        }
    }
    let lost: Vec<&FileSeen> = files.iter().filter(|f| !(f.create && f.write)).collect();
    assert!(
        !lost.is_empty(),
        "the ring overflowed, yet every file's create and write arrived"
    );
    let silent: Vec<String> = lost
        .iter()
        .filter(|f| !covered(&f.path))
        .map(|f| format!("{} (create {}, write {})", f.path, f.create, f.write))
        .collect();
    assert!(
        silent.is_empty(),
        "{} of {} files with a missing create or write have no dirty event (of {} dirty \
         events); first ones:\n{}",
        silent.len(),
        lost.len(),
        dirty.len(),
        silent[..silent.len().min(10)].join("\n")
    );
    // A mkdir that was not recorded must be covered by a dirty mark on it or a directory
    // above it (for a name op, the watched root).
    for i in (0..N).step_by(10) {
        let d = path_str(dir.join(format!("d{i:05}")));
        let above = dirty
            .iter()
            .any(|e| Path::new(&d).starts_with(Path::new(path(e))));
        assert!(
            mkdirs_seen.contains(&d) || above,
            "mkdir {d} was neither recorded nor covered by a dirty event"
        );
    }
    check_throttled_writes_range_only(&mine, RING * THROTTLE_PCT / 100);
}

/// Whether `dirty` events cover the file `p`: one names it, or a `rescan-all` one names a
/// directory above it. (A plain dirty directory stands for the operations on its names,
/// which is what a name operation's mark keys on; a file's create and writes key on the
/// file itself, so it must be named.)
fn dirty_covers(dirty: &[&Value], p: &str) -> bool {
    dirty.iter().any(|d| {
        path(d) == p
            || (d["reason"] == "rescan-all" && Path::new(p).starts_with(Path::new(path(d))))
    })
}

#[test]
fn overflow_dirty_names_the_file_not_an_old_name_of_its_reused_inode() {
    const K: usize = 20;
    let g = PinnedGuard::acquire();
    let dir = TestDir::new("reuse");
    g.set("RingSizeMB", "1");
    g.set("StopReplicatingPercent", "90");
    g.set("ThrottleStartPercent", "90");
    g.set("WatchedPaths", &path_str(dir.path()));
    g.driver_ok(&["load"]);
    let w = Workload::run(WORKLOAD, "reuse", dir.path(), &["k=20"]);
    let pairs = w.extra.as_array().expect("inode pairs").clone();
    let reused: Vec<usize> = (0..K).filter(|&k| pairs[k]["x"] == pairs[k]["y"]).collect();
    assert!(
        !reused.is_empty(),
        "precondition: the file system reused none of the freed inodes ({pairs:?})"
    );
    let events = drain(&g, &[dir.path()]);
    let mine = of_pid(&events, w.pid);
    let dirty: Vec<&Value> = events.iter().filter(|e| kind(e) == "dirty").collect();
    let recorded = |k: &str, p: &str| mine.iter().any(|e| kind(e) == k && path(e) == p);
    let mut lost = Vec::new();
    for &k in &reused {
        let y = path_str(dir.join(format!("new/y{k:03}")));
        if !(recorded("create", &y) && recorded("write", &y)) {
            lost.push(y);
        }
    }
    assert!(
        !lost.is_empty(),
        "precondition: the creates after the ring filled were recorded, so the ring never \
         reached StopReplicatingPercent"
    );
    let silent: Vec<&String> = lost.iter().filter(|y| !dirty_covers(&dirty, y)).collect();
    assert!(
        silent.is_empty(),
        "{} of {} files created (while replication was stopped) on a reused inode have no \
         dirty event naming them; the dirty events were:\n{}",
        silent.len(),
        lost.len(),
        dirty
            .iter()
            .map(|d| rill_tests::summary(d).to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// With no reader the ring only fills, so once a write was range-only because of the
/// throttle level, every later write must be range-only too, and the inline data recorded
/// before that cannot exceed the throttle level (plus the one record that crossed it).
fn check_throttled_writes_range_only(events: &[Value], throttle_bytes: u64) {
    let writes: Vec<&Value> = events.iter().filter(|e| kind(e) == "write").collect();
    let first_range_only = writes
        .iter()
        .position(|e| e["inline"] == false)
        .unwrap_or_else(|| panic!("no write became range-only although the ring overflowed"));
    if let Some(late) = writes[first_range_only..]
        .iter()
        .find(|e| e["inline"] == true)
    {
        panic!("write carried data inline after the ring passed ThrottleStartPercent: {late}");
    }
    let inline_bytes: u64 = writes[..first_range_only]
        .iter()
        .map(|e| e["len"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        inline_bytes <= throttle_bytes + 65536,
        "{inline_bytes} bytes were recorded inline, more than the throttle level \
         ({throttle_bytes} bytes) allows"
    );
}

#[test]
fn unwatched_file_system_is_not_captured_by_the_pinned_driver() {
    let g = PinnedGuard::acquire();
    let watched = TestDir::new("pinned-watched");
    let tmpfs = Tmpfs::mount("pinned-unwatched");
    g.set("WatchedPaths", &path_str(watched.path()));
    g.driver_ok(&["load"]);
    let st = g.status();
    assert_eq!(
        st["WatchedFileSystems"].as_array().map(Vec::len),
        Some(1),
        "one watched file system: {st}"
    );
    let on_tmpfs = Workload::run(WORKLOAD, "basic", tmpfs.path(), &[]);
    let on_ext4 = Workload::run(WORKLOAD, "basic", watched.path(), &[]);
    let st = g.status();
    assert!(
        num(&st, "OpsUnwatched") > 0.0,
        "operations on the tmpfs were not counted as unwatched: {st}"
    );
    let events = drain(&g, &[watched.path(), tmpfs.path()]);
    let leaked: Vec<String> = events
        .iter()
        .filter(|e| Path::new(path(e)).starts_with(tmpfs.path()))
        .map(|e| rill_tests::summary(e).to_string())
        .collect();
    assert!(
        leaked.is_empty(),
        "operations on the unwatched tmpfs were captured by the pinned driver (pid {}):\n{}",
        on_tmpfs.pid,
        leaked.join("\n")
    );
    let (f, df) = (watched.join("f"), watched.join("d/f"));
    assert_ops(
        &of_pid(&events, on_ext4.pid),
        &[
            op!("create", f, mode = 0o644),
            op!("write", f, offset = 0, len = 4, inline = true),
            op!("mkdir", watched.join("d"), mode = 0o755),
            op!("rename", f, new_path = path_str(&df), flags = 0),
            op!("chmod", df, mode = 0o600),
            op!("unlink", df),
            op!("rmdir", watched.join("d")),
        ],
        "operations on the watched file system",
    );
}

/// An administrator removes a watched directory: the driver must still be inspectable and
/// removable. (`load` may rightly refuse such settings; `status` and `unload` do not need
/// WatchedPaths at all.)
#[test]
fn status_and_unload_work_after_a_watched_directory_is_removed() {
    let g = PinnedGuard::acquire();
    let dir = TestDir::new("removed-watched");
    g.set("WatchedPaths", &path_str(dir.path()));
    g.driver_ok(&["load"]);
    let removed = path_str(dir.path());
    drop(dir);
    assert!(!Path::new(&removed).exists());
    let status = g.driver(&["status", "--json"]);
    let unload = g.driver(&["unload"]);
    let show = |o: &std::process::Output| {
        format!(
            "{}: {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(
        status.status.success() && unload.status.success(),
        "with WatchedPaths = {removed} (since removed):\nstatus --json -> {}\nunload -> {}",
        show(&status),
        show(&unload)
    );
}
