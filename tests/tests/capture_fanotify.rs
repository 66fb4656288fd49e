//! The fanotify capture (`rill-driver capture --mode fanotify`), the fallback for kernels
//! where the eBPF programs cannot load. fanotify tells *that* something changed, not
//! *what*: namespace operations (create, mkdir, rename, symlink, unlink, rmdir) must be
//! reported exactly, in order, with their names; anything that changes a file's contents
//! or attributes must be reported as `dirty` (reason `modified`) for that file, so the
//! consumer resynchronises it. Fields fanotify cannot know (modes, offsets) are not
//! compared; kind, path, new_path and link target are.
//!
//! The scenarios keep every event's parent directory alive until the capture has read it,
//! because fanotify resolves names when events are read (a documented limitation), and the
//! workload paces its operations so queued events are not merged. The type of an object
//! removed before its creation event is read is unknown (fanotify says only whether it was
//! a directory): such a name is reported `dirty`, never guessed; the driver's unit tests
//! cover that case.

use std::path::Path;

use rill_tests::events::path_str;
use rill_tests::{
    assert_ops, assert_seq_increasing, of_pid, op, require_kernel_support, CaptureProc,
    SettingsFile, TestDir, Workload,
};
use serde_json::{Map, Value};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_rill-workload");

/// The fields fanotify can know.
fn names_only(ev: &Value) -> Value {
    let mut m = Map::new();
    for k in ["kind", "path", "new_path", "target", "reason"] {
        if let Some(v) = ev.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    Value::Object(m)
}

/// Runs `scenario` in a fresh directory under a fanotify capture; the workload's events,
/// projected on [`names_only`].
fn run(scenario: &str) -> (TestDir, Vec<Value>) {
    require_kernel_support();
    let dir = TestDir::new(scenario);
    let settings = SettingsFile::new();
    let cap = CaptureProc::start(&settings.path(), &[dir.path()], &["--mode", "fanotify"]);
    let w = Workload::run(WORKLOAD, scenario, dir.path(), &[]);
    let c = cap.stop();
    assert!(
        c.stderr.contains("Fanotify"),
        "the capture did not say it uses fanotify: {}",
        c.stderr
    );
    assert_seq_increasing(&c.events);
    let events = of_pid(&c.events, w.pid).iter().map(names_only).collect();
    (dir, events)
}

#[test]
fn namespace_operations_are_reported_exactly() {
    let (dir, events) = run("names");
    let d: &Path = dir.path();
    let (f, g, s) = (d.join("f"), d.join("g"), d.join("s"));
    assert_ops(
        &events,
        &[
            op!("create", f),
            op!("mkdir", d.join("d")),
            op!("rename", f, new_path = path_str(&g)),
            op!("symlink", d.join("kept"), target = "g"),
            op!("symlink", s, target = "g"),
            op!("unlink", s),
            op!("rmdir", d.join("d")),
            op!("unlink", g),
        ],
        "fanotify namespace operations",
    );
}

#[test]
fn modifications_are_reported_as_dirty_files() {
    let (dir, events) = run("modify");
    let m = dir.join("m");
    assert!(
        events.first() == Some(&op!("create", m)),
        "the first event must be the create of {}: {events:#?}",
        m.display()
    );
    let rest = &events[1..];
    let dirty = op!("dirty", m, reason = "modified");
    assert!(
        !rest.is_empty() && rest.iter().all(|e| *e == dirty),
        "write, chmod, setxattr and truncate must show as dirty(modified) {} and nothing \
         else; got: {rest:#?}",
        m.display()
    );
}
