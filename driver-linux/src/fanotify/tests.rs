//! Tests against the running kernel (they need root and fail, not skip, without fanotify)
//! and of the translation of kernel events into operations.

use super::*;
use rill_abi::Kind;
use rill_ops::{DirtyReason, Op};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Instant;

/// Serialises the tests that watch the kernel: they all mark the same file system, and the
/// overflow test floods every group's queue.
static LIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn live() -> std::sync::MutexGuard<'static, ()> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `script` in `sh` (another pid, so its events are not ignored as our own).
fn sh(dir: &Path, script: &str) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "`{script}` failed: {st}");
}

/// Polls for up to 5 s until `done` holds for the events collected so far.
fn collect(src: &mut FanotifySource, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(&out) && Instant::now() < deadline {
        src.poll(Duration::from_millis(100), &mut out)
            .expect("poll");
    }
    // Pick up anything queued right behind the last expected event.
    src.poll(Duration::from_millis(200), &mut out)
        .expect("poll");
    out
}

fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = std::fs::canonicalize(t.path()).unwrap();
    (t, p)
}

#[test]
fn reports_namespace_operations_and_dirty_files() {
    let _live = live();
    let (_t, root) = tempdir();
    let mut src =
        FanotifySource::new(std::slice::from_ref(&root)).expect("fanotify must initialise");
    sh(&root, "touch a && echo hello > a && mkdir d && mv a d/a && ln -s d/a s && rm d/a && mkdir e && rmdir e");
    let e = root.join("e");
    let events = collect(&mut src, |evs| {
        evs.iter().any(|ev| ev.path == e && ev.op == Op::Rmdir)
    });
    let ops: Vec<(Kind, PathBuf, Option<PathBuf>)> = events
        .iter()
        .filter(|ev| !matches!(ev.op, Op::Dirty { .. }))
        .map(|ev| {
            let new = match &ev.op {
                Op::Rename { new_path, .. } => Some(new_path.clone()),
                _ => None,
            };
            (ev.op.kind(), ev.path.clone(), new)
        })
        .collect();
    let p = |s: &str| root.join(s);
    assert_eq!(
        ops,
        vec![
            (Kind::Create, p("a"), None),
            (Kind::Mkdir, p("d"), None),
            (Kind::Rename, p("a"), Some(p("d/a"))),
            (Kind::Symlink, p("s"), None),
            (Kind::Unlink, p("d/a"), None),
            (Kind::Mkdir, p("e"), None),
            (Kind::Rmdir, p("e"), None),
        ],
        "events: {events:#?}"
    );
    let sym = events.iter().find(|ev| ev.path == p("s")).unwrap();
    assert_eq!(
        sym.op,
        Op::Symlink {
            target: "d/a".into()
        }
    );
    let mkdir = events.iter().find(|ev| ev.path == p("d")).unwrap();
    assert_eq!(
        mkdir.op,
        Op::Mkdir {
            mode: std::fs::metadata(p("d")).unwrap().mode() & 0o7777
        }
    );
    let dirty = Op::Dirty {
        reason: DirtyReason::Modified,
    };
    assert!(
        events.iter().any(|ev| ev.path == p("a") && ev.op == dirty),
        "no dirty a: {events:#?}"
    );
    for ev in &events {
        assert!(
            ev.pid != 0 && ev.pid == ev.tid && ev.seq == 0 && ev.ktime_ns > 0,
            "{ev:?}"
        );
        assert!(ev.paths().all(|x| x.starts_with(&root)), "{ev:?}");
    }
}

#[test]
fn ignores_paths_outside_the_roots() {
    let _live = live();
    let (_t, root) = tempdir();
    let (_s, sibling) = tempdir();
    let mut src =
        FanotifySource::new(std::slice::from_ref(&root)).expect("fanotify must initialise");
    let script = format!(
        "touch {s}/x && echo data > {s}/x && mkdir {s}/y && mv {s}/x {s}/y/x && touch {r}/marker",
        s = sibling.display(),
        r = root.display()
    );
    sh(&root, &script);
    let marker = root.join("marker");
    let events = collect(&mut src, |evs| evs.iter().any(|ev| ev.path == marker));
    assert!(events
        .iter()
        .any(|ev| ev.path == marker && ev.op.kind() == Kind::Create));
    for ev in &events {
        assert!(
            ev.paths().all(|p| p.starts_with(&root)),
            "outside the root: {ev:?}"
        );
    }
}

#[test]
fn ignores_own_events() {
    let _live = live();
    let (_t, root) = tempdir();
    let mut src =
        FanotifySource::new(std::slice::from_ref(&root)).expect("fanotify must initialise");
    std::fs::write(root.join("mine"), b"x").unwrap();
    sh(&root, "touch theirs");
    let theirs = root.join("theirs");
    let events = collect(&mut src, |evs| evs.iter().any(|ev| ev.path == theirs));
    assert!(
        events.iter().all(|ev| ev.path != root.join("mine")),
        "{events:#?}"
    );
    assert!(events.iter().any(|ev| ev.path == theirs));
}

#[test]
fn reports_exchange_as_one_rename() {
    let _live = live();
    let (_t, root) = tempdir();
    sh(&root, "echo 1 > a && mkdir b");
    let mut src =
        FanotifySource::new(std::slice::from_ref(&root)).expect("fanotify must initialise");
    let (a, b) = (root.join("a"), root.join("b"));
    let (ca, cb) = (
        CString::new(a.as_os_str().as_bytes()).unwrap(),
        CString::new(b.as_os_str().as_bytes()).unwrap(),
    );
    // A child process, so the kernel does not attribute the rename to us.
    // SAFETY: the child only makes async-signal-safe calls (renameat2, _exit) on memory
    // prepared before the fork.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => unsafe {
            let rc = libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            );
            libc::_exit(if rc == 0 { 0 } else { 1 });
        },
        nix::unistd::ForkResult::Parent { child } => {
            let st = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
        }
    }
    let events = collect(&mut src, |evs| {
        evs.iter().any(|ev| ev.op.kind() == Kind::Rename)
    });
    let renames: Vec<_> = events
        .iter()
        .filter(|ev| ev.op.kind() == Kind::Rename)
        .collect();
    assert_eq!(renames.len(), 1, "{events:#?}");
    assert_eq!(renames[0].path, a);
    assert_eq!(
        renames[0].op,
        Op::Rename {
            new_path: b,
            flags: libc::RENAME_EXCHANGE
        }
    );
}

#[test]
fn stale_directory_handle_is_path_unknown() {
    let _live = live();
    let (_t, root) = tempdir();
    let mut src =
        FanotifySource::new(std::slice::from_ref(&root)).expect("fanotify must initialise");
    sh(
        &root,
        "mkdir d && echo x > d/f && rm d/f && rmdir d && touch end",
    );
    let end = root.join("end");
    let events = collect(&mut src, |evs| evs.iter().any(|ev| ev.path == end));
    let unknown = Op::Dirty {
        reason: DirtyReason::PathUnknown,
    };
    // d's handle no longer opens when the events inside it are read.
    assert!(
        events.iter().any(|ev| ev.path == root && ev.op == unknown),
        "{events:#?}"
    );
    assert!(events
        .iter()
        .any(|ev| ev.path == root.join("d") && ev.op == Op::Rmdir));
    assert!(
        events.iter().all(|ev| ev.path.starts_with(&root)),
        "{events:#?}"
    );
}

#[test]
fn queue_overflow_asks_for_a_rescan() {
    let _live = live();
    let (_t, root) = tempdir();
    let mut src =
        FanotifySource::new(std::slice::from_ref(&root)).expect("fanotify must initialise");
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/fanotify/max_queued_events")
        .map_or(16384, |s| s.trim().parse().unwrap());
    sh(
        &root,
        &format!(
            "mkdir many && cd many && seq 1 {} | xargs touch",
            limit + 1000
        ),
    );
    let rescan = Op::Dirty {
        reason: DirtyReason::RescanAll,
    };
    let events = collect(&mut src, |evs| evs.iter().any(|ev| ev.op == rescan));
    let at = events
        .iter()
        .position(|ev| ev.op == Op::Overflow { count: 0 })
        .expect("no overflow reported");
    assert_eq!(events[at + 1].op, rescan);
    assert_eq!(events[at + 1].path, root);
}

#[test]
fn missing_root_is_an_error() {
    let err = FanotifySource::new(&[PathBuf::from("/nonexistent/rill-root")])
        .err()
        .unwrap();
    assert!(matches!(err, DriverError::Io { .. }), "{err}");
}

// --- translation of resolved kernel events ---

const FS: [u8; 8] = [1; 8];

fn raw(mask: u64, path: &str, new: Option<&str>, child: u8) -> Resolved {
    Resolved {
        mask,
        pid: 42,
        ktime_ns: 1,
        path: Loc::Known(PathBuf::from(path)),
        new_path: new.map(|n| Loc::Known(PathBuf::from(n))),
        child: Some(vec![child]),
    }
}

fn ops(events: &[Resolved]) -> Vec<(PathBuf, Op)> {
    let roots = [(PathBuf::from("/r"), FS)];
    let mut out = Vec::new();
    translate(&roots, events, &mut out);
    out.into_iter().map(|e| (e.path, e.op)).collect()
}

#[test]
fn pairs_moved_from_and_moved_to() {
    let dirty = Op::Dirty {
        reason: DirtyReason::Modified,
    };
    let got = ops(&[
        raw(libc::FAN_MOVED_FROM, "/r/a", None, 1),
        raw(libc::FAN_MOVED_TO, "/r/d/a", None, 1),
        raw(libc::FAN_MOVED_FROM, "/r/d/b", None, 2),
        raw(libc::FAN_CREATE | libc::FAN_ONDIR, "/r/gone", None, 3),
    ]);
    assert_eq!(
        got,
        vec![
            (
                PathBuf::from("/r/a"),
                Op::Rename {
                    new_path: "/r/d/a".into(),
                    flags: 0
                }
            ),
            (PathBuf::from("/r/d"), dirty.clone()),
            (PathBuf::from("/r/gone"), Op::Mkdir { mode: 0 }),
        ]
    );
    // Moved in, and gone before the event was read: its type is unknown, so it is dirty
    // (once), not guessed to be a regular file.
    // Gone before the event was read: created as the likely regular file, and dirty (once)
    // because it may have been a symlink or a node.
    let got = ops(&[raw(libc::FAN_MOVED_TO, "/r/new", None, 1)]);
    let new = PathBuf::from("/r/new");
    assert_eq!(
        got,
        vec![
            (
                new.clone(),
                Op::Create {
                    mode: 0,
                    truncate: false
                }
            ),
            (new, dirty.clone())
        ]
    );
    let got = ops(&[raw(libc::FAN_CREATE, "/r/vanished", None, 1)]);
    let vanished = PathBuf::from("/r/vanished");
    assert_eq!(
        got,
        vec![
            (
                vanished.clone(),
                Op::Create {
                    mode: 0,
                    truncate: false
                }
            ),
            (vanished, dirty)
        ]
    );
}

#[test]
fn overflow_coalescing_filtering_and_unknown_paths() {
    let m = Op::Dirty {
        reason: DirtyReason::Modified,
    };
    let mut unknown = raw(libc::FAN_CREATE, "/r/x", None, 5);
    unknown.path = Loc::Unknown(FS);
    let got = ops(&[
        raw(libc::FAN_MODIFY, "/r/f", None, 1),
        raw(libc::FAN_CLOSE_WRITE, "/r/f", None, 1),
        raw(libc::FAN_MODIFY, "/elsewhere/f", None, 2),
        raw(libc::FAN_RENAME, "/elsewhere/g", Some("/r/g"), 3),
        raw(
            libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_ATTRIB,
            "/r/tmp",
            None,
            4,
        ),
        unknown,
        raw(libc::FAN_Q_OVERFLOW, "", None, 0),
        raw(libc::FAN_ATTRIB, "/r/f", None, 1),
    ]);
    assert_eq!(
        got,
        vec![
            (PathBuf::from("/r/f"), m.clone()),
            (
                PathBuf::from("/elsewhere/g"),
                Op::Rename {
                    new_path: "/r/g".into(),
                    flags: 0
                }
            ),
            (
                PathBuf::from("/r/tmp"),
                Op::Create {
                    mode: 0,
                    truncate: false
                }
            ),
            (PathBuf::from("/r/tmp"), m.clone()),
            (PathBuf::from("/r/tmp"), Op::Unlink),
            (
                PathBuf::from("/r"),
                Op::Dirty {
                    reason: DirtyReason::PathUnknown
                }
            ),
            (PathBuf::new(), Op::Overflow { count: 0 }),
            (
                PathBuf::from("/r"),
                Op::Dirty {
                    reason: DirtyReason::RescanAll
                }
            ),
            (PathBuf::from("/r/f"), m),
        ]
    );
}

#[test]
fn reversed_renames_of_one_object_are_not_an_exchange() {
    let got = ops(&[
        raw(libc::FAN_RENAME, "/r/a", Some("/r/b"), 1),
        raw(libc::FAN_RENAME, "/r/b", Some("/r/a"), 1),
    ]);
    assert_eq!(
        got,
        vec![
            (
                PathBuf::from("/r/a"),
                Op::Rename {
                    new_path: "/r/b".into(),
                    flags: 0
                }
            ),
            (
                PathBuf::from("/r/b"),
                Op::Rename {
                    new_path: "/r/a".into(),
                    flags: 0
                }
            ),
        ]
    );
}
