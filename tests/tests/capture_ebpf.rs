//! The eBPF capture against the real kernel: `rill-driver capture --mode ebpf --json`
//! (a private instance) while `rill-workload` performs one scenario with raw syscalls.
//!
//! Each test asserts the EXACT sequence of (kind, path, per-kind fields) of the workload's
//! own events (filtered by its pid: other processes may touch the capture root's file
//! system) and that `seq` is strictly increasing over everything the capture printed.
//! Exact sequences, not "contains", because the op stream is a redo log: a missing,
//! extra, reordered or mis-described op is a replication bug. The scenarios live in
//! `src/bin/rill-workload.rs`; each test lists what its scenario does.
//!
//! The mode is forced to `ebpf` so an eBPF failure cannot hide behind the fanotify fallback.
//! These tests use private instances only, never the pinned driver, so they run in parallel.

use std::path::Path;

use rill_tests::events::path;
use rill_tests::process::WorkloadResult;
use rill_tests::{
    assert_ops, assert_seq_increasing, of_pid, op, require_kernel_support, CaptureProc,
    SettingsFile, TestDir, Tmpfs, Workload,
};
use serde_json::{json, Value};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_rill-workload");

/// One scenario run under a private eBPF capture of its directory.
struct Run {
    dir: TestDir,
    /// The workload's own events.
    events: Vec<Value>,
    /// Everything the capture printed, dirty marks (which carry no pid) included.
    all: Vec<Value>,
    workload: WorkloadResult,
}

fn run_with(scenario: &str, settings: SettingsFile, params: &[&str]) -> Run {
    require_kernel_support();
    let dir = TestDir::new(scenario);
    let cap = CaptureProc::start(&settings.path(), &[dir.path()], &["--mode", "ebpf"]);
    let workload = Workload::run(WORKLOAD, scenario, dir.path(), params);
    let captured = cap.stop();
    assert_seq_increasing(&captured.events);
    Run {
        events: of_pid(&captured.events, workload.pid),
        all: captured.events,
        dir,
        workload,
    }
}

fn run(scenario: &str) -> Run {
    run_with(scenario, SettingsFile::new(), &[])
}

/// Runs `scenario` and asserts its exact sequence, built from the scenario's directory.
fn check(scenario: &str, expected: impl FnOnce(&Path) -> Vec<Value>) -> Run {
    let r = run(scenario);
    assert_ops(&r.events, &expected(r.dir.path()), scenario);
    r
}

fn create(p: impl AsRef<Path>, mode: u32) -> Value {
    op!("create", p.as_ref(), mode = mode)
}

fn write(p: impl AsRef<Path>, offset: u64, len: u64, inline: bool) -> Value {
    op!(
        "write",
        p.as_ref(),
        offset = offset,
        len = len,
        inline = inline
    )
}

/// Asserts that the truncates by name of `r` say they reached the file `file` (which the
/// scenario keeps), through a symlink or not: the capture's reader notes which file such a
/// call reached, and whether its name was a link.
fn assert_truncates_reached(r: &Run, file: &Path, through_link: bool) {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(file).map(|m| m.ino()).ok();
    let by_name: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["kind"] == "truncate" && e.get("reached_ino").is_some())
        .collect();
    assert!(
        !by_name.is_empty(),
        "no truncate by name says which file it reached"
    );
    for e in by_name {
        assert_eq!(e["reached_ino"].as_u64(), ino, "{e}");
        assert_eq!(
            e["reached_through_link"].as_bool().unwrap_or(false),
            through_link,
            "{e}"
        );
    }
}

#[test]
fn create_by_open_creat_openat_openat2_and_truncate_by_o_trunc() {
    check("create", |d| {
        vec![
            create(d.join("a"), 0o640),
            // creat(2) is open with O_CREAT | O_WRONLY | O_TRUNC.
            op!("create", d.join("b"), mode = 0o600, truncate = true),
            create(d.join("c"), 0o644),
            // openat mode 0666 with umask 022: the file's permission bits are 0644.
            create(d.join("d"), 0o644),
            op!("truncate", d.join("a"), size = 0),
        ]
    });
}

#[test]
fn write_pwrite64_writev_pwritev_pwritev2_offsets() {
    check("writes", |d| {
        let w = d.join("w");
        vec![
            create(&w, 0o644),
            write(&w, 0, 5, true),
            write(&w, 100, 3, true),
            write(&w, 5, 6, true),
            write(&w, 200, 6, true),
            write(&w, 11, 4, true),
            write(&w, 300, 4, true),
            write(&w, 15, 2, true),
        ]
    });
}

/// Bytes moved into a file inside the kernel (what `cp` does with copy_file_range) are
/// range-only writes at the right offsets: the engine reads them from the file.
#[test]
fn copy_file_range_sendfile_and_splice_are_writes() {
    check("copies", |d| {
        let (input, a, b, c, e) = (
            d.join("in"),
            d.join("a"),
            d.join("b"),
            d.join("c"),
            d.join("e"),
        );
        vec![
            create(&input, 0o644),
            write(&input, 0, 3000, true),
            create(&a, 0o644),
            write(&a, 0, 3000, false),
            create(&b, 0o644),
            write(&b, 100, 500, false),
            create(&c, 0o644),
            write(&c, 0, 10, true),
            write(&c, 10, 700, false),
            create(&e, 0o644),
            write(&e, 50, 400, false),
        ]
    });
}

#[test]
fn truncate_ftruncate_fallocate() {
    let r = check("sizes", |d| {
        let t = d.join("t");
        vec![
            create(&t, 0o644),
            op!("truncate", t, size = 1000),
            op!("truncate", t, size = 10),
            op!("fallocate", t, mode = 0, offset = 0, len = 4096),
            op!("fallocate", t, mode = 1, offset = 8192, len = 4096),
        ]
    });
    assert_truncates_reached(&r, &r.dir.path().join("t"), false);
}

#[test]
fn unlink_unlinkat_rmdir_and_unlinkat_removedir() {
    check("remove", |d| {
        vec![
            op!("mkdir", d.join("d1"), mode = 0o755),
            op!("mkdir", d.join("d2"), mode = 0o755),
            create(d.join("f1"), 0o644),
            create(d.join("f2"), 0o644),
            op!("unlink", d.join("f1")),
            op!("unlink", d.join("f2")),
            op!("rmdir", d.join("d1")),
            op!("rmdir", d.join("d2")),
        ]
    });
}

#[test]
fn mkdir_mkdirat_mknod_fifo() {
    check("make", |d| {
        vec![
            op!("mkdir", d.join("m1"), mode = 0o755),
            op!("mkdir", d.join("m2"), mode = 0o700),
            op!("mknod", d.join("fifo"), mode = 0o010644, rdev = 0),
            op!("mknod", d.join("fifo2"), mode = 0o010600, rdev = 0),
        ]
    });
}

#[test]
fn rename_renameat_renameat2_noreplace_and_exchange() {
    check("rename", |d| {
        let mut v: Vec<Value> = ["r1", "r2", "x", "y"]
            .iter()
            .map(|n| create(d.join(n), 0o644))
            .collect();
        let ren = |a: &str, b: &str, flags: u32| {
            op!(
                "rename",
                d.join(a),
                new_path = rill_tests::events::path_str(d.join(b)),
                flags = flags
            )
        };
        v.extend([
            ren("r1", "r1b", 0),
            ren("r2", "r2b", 0),
            ren("r1b", "r1c", 1),
            ren("x", "y", 2),
        ]);
        v
    });
}

#[test]
fn link_linkat_symlink_symlinkat() {
    check("links", |d| {
        let orig = rill_tests::events::path_str(d.join("orig"));
        vec![
            create(d.join("orig"), 0o644),
            op!("link", d.join("l1"), target = orig),
            op!("link", d.join("l2"), target = orig),
            op!("symlink", d.join("s1"), target = "orig"),
            op!("symlink", d.join("s2"), target = "/some/abs/target"),
        ]
    });
}

#[test]
fn chmod_fchmod_fchmodat() {
    check("chmod", |d| {
        let c = d.join("c");
        vec![
            create(&c, 0o644),
            op!("chmod", c, mode = 0o600),
            op!("chmod", c, mode = 0o640),
            op!("chmod", c, mode = 0o755),
            op!("chmod", c, mode = 0o4711),
            // chmod("/proc/self/fd/N") names the fd's file.
            op!("chmod", c, mode = 0o640),
        ]
    });
}

#[test]
fn chown_fchown_lchown_fchownat_with_unchanged_ids_as_null() {
    check("chown", |d| {
        let o = d.join("o");
        vec![
            create(&o, 0o644),
            op!("chown", o, uid = 1000, gid = 1000),
            op!("chown", o, uid = Value::Null, gid = 2000),
            op!("chown", o, uid = 3000, gid = Value::Null),
            op!("chown", o, uid = Value::Null, gid = Value::Null),
        ]
    });
}

#[test]
fn utimensat_path_and_fd_forms_and_utimes() {
    check("utimes", |d| {
        let u = d.join("u");
        // The kernel picks the times of the first three (null arrays): only the explicit
        // ones are copied from the call.
        let mut v = vec![create(&u, 0o644)];
        v.extend((0..3).map(|_| op!("utimes", u)));
        v.push(op!(
            "utimes",
            u,
            atime = [1_000_000_000u64, 123_456_789],
            mtime = [1_100_000_000u64, 987_654_321]
        ));
        v
    });
}

/// Owner and times calls by the name of a symlink: one that follows the link names the
/// file it reached, one with `AT_SYMLINK_NOFOLLOW` (or `lchown`) names the link; a
/// `chmod` or `truncate` by the link's name (which always follow it, on the replica too)
/// names the link, as the caller did; the truncate also says which file it reached.
#[test]
fn owner_and_times_through_a_symlink_name_what_they_changed() {
    let r = check("symlink-attrs", |d| {
        let (t, s) = (d.join("t"), d.join("s"));
        let times = |a: u64, m: u64| (vec![a, 5u64], vec![m, 5u64]);
        let (nofollow, follow) = (
            times(1_000_000_000, 1_000_000_001),
            times(1_200_000_000, 1_200_000_001),
        );
        vec![
            create(&t, 0o644),
            op!("symlink", s, target = "t"),
            op!("chown", t, uid = 1000, gid = 1000),
            op!("chown", s, uid = 2000, gid = 2000),
            op!("chown", s, uid = 3000, gid = 3000),
            op!("chown", t, uid = 4000, gid = 4000),
            op!("utimes", s, atime = nofollow.0, mtime = nofollow.1),
            op!("utimes", t, atime = follow.0, mtime = follow.1),
            op!("utimes", t),
            op!("chmod", s, mode = 0o600),
            op!("truncate", s, size = 7),
        ]
    });
    assert_truncates_reached(&r, &r.dir.path().join("t"), true);
}

#[test]
fn setxattr_removexattr_families() {
    check("xattr", |d| {
        let x = d.join("x");
        vec![
            create(&x, 0o644),
            op!("setxattr", x, name = "user.a", value = "1"),
            op!("setxattr", x, name = "user.b", value = "22"),
            op!("setxattr", x, name = "user.c", value = "333"),
            op!("removexattr", x, name = "user.a"),
            op!("removexattr", x, name = "user.b"),
            op!("removexattr", x, name = "user.c"),
        ]
    });
}

#[test]
fn names_relative_to_o_path_and_o_directory_fds() {
    check("dirfd", |d| {
        let (f, g) = (d.join("sub/f"), d.join("sub/inner/g"));
        vec![
            op!("mkdir", d.join("sub"), mode = 0o755),
            create(&f, 0o644),
            write(&f, 0, 4, true),
            op!("mkdir", d.join("sub/inner"), mode = 0o755),
            op!(
                "rename",
                f,
                new_path = rill_tests::events::path_str(&g),
                flags = 0
            ),
            op!("unlink", g),
        ]
    });
}

#[test]
fn names_relative_to_the_cwd_after_chdir() {
    check("cwd", |d| {
        let (rel, rel2) = (d.join("cw/rel"), d.join("cw/sub/rel2"));
        vec![
            op!("mkdir", d.join("cw"), mode = 0o755),
            create(&rel, 0o644),
            write(&rel, 0, 3, true),
            op!("mkdir", d.join("cw/sub"), mode = 0o755),
            op!(
                "rename",
                rel,
                new_path = rill_tests::events::path_str(&rel2),
                flags = 0
            ),
            op!("chmod", rel2, mode = 0o600),
            op!("unlink", rel2),
            op!("rmdir", d.join("cw/sub")),
        ]
    });
}

#[test]
fn write_after_an_ancestor_rename_names_the_new_path() {
    check("renamed-ancestor", |d| {
        vec![
            op!("mkdir", d.join("a"), mode = 0o755),
            op!("mkdir", d.join("a/b"), mode = 0o755),
            create(d.join("a/b/f"), 0o644),
            write(d.join("a/b/f"), 0, 4, true),
            op!(
                "rename",
                d.join("a"),
                new_path = rill_tests::events::path_str(d.join("z")),
                flags = 0
            ),
            write(d.join("z/b/f"), 4, 4, true),
        ]
    });
}

#[test]
fn hard_links_each_write_names_the_name_it_went_through() {
    check("hardlinks", |d| {
        let (h1, h2) = (d.join("h1"), d.join("h2"));
        vec![
            create(&h1, 0o644),
            op!("link", h2, target = rill_tests::events::path_str(&h1)),
            write(&h1, 0, 3, true),
            write(&h2, 10, 3, true),
            write(&h1, 3, 3, true),
        ]
    });
}

#[test]
fn o_append_and_rwf_append_writes_are_at_end_of_file() {
    check("append", |d| {
        let ap = d.join("ap");
        vec![
            create(&ap, 0o644),
            write(&ap, 0, 5, true),
            write(&ap, 5, 7, true),
            write(&ap, 12, 3, true),
            write(&ap, 15, 4, true),
        ]
    });
}

#[test]
fn pwritev2_offset_minus_one_uses_and_advances_the_file_position() {
    check("cursor", |d| {
        let cur = d.join("cur");
        vec![
            create(&cur, 0o644),
            write(&cur, 1000, 6, true),
            write(&cur, 1006, 4, true),
            write(&cur, 0, 2, true),
            write(&cur, 1010, 1, true),
        ]
    });
}

#[test]
fn one_mib_write_is_range_only_with_the_right_offset() {
    check("big-write", |d| {
        let big = d.join("big");
        vec![
            create(&big, 0o644),
            write(&big, 0, 100, true),
            write(&big, 100, 1 << 20, false),
            // Exactly InlineDataMax (default 65536) is still inline; one byte more is not.
            write(&big, 100 + (1 << 20), 65536, true),
            write(&big, 100 + (1 << 20) + 65536, 65537, false),
        ]
    });
}

#[test]
fn two_threads_pwriting_one_file_keep_every_write_and_each_threads_order() {
    const N: usize = 200;
    let r = run_with("threads", SettingsFile::new(), &["n=200"]);
    let th = r.dir.join("th");
    assert_ops(
        &r.events[..1.min(r.events.len())],
        &[create(&th, 0o644)],
        "threads",
    );
    let writes = &r.events[1..];
    assert_eq!(
        writes.len(),
        2 * N,
        "expected {} writes, captured {}: {writes:#?}",
        2 * N,
        writes.len()
    );
    let tids = &r.workload.tids;
    assert_eq!(tids.len(), 2, "workload reports two writer tids");
    for (t, tid) in tids.iter().enumerate() {
        let mine: Vec<Value> = writes
            .iter()
            .filter(|e| e["tid"].as_u64() == Some(*tid as u64))
            .cloned()
            .collect();
        let expected: Vec<Value> = (0..N)
            .map(|i| write(&th, ((2 * i + t) * 16) as u64, 16, true))
            .collect();
        assert_ops(
            &mine,
            &expected,
            &format!("writes of thread {t} (tid {tid})"),
        );
    }
}

/// The dirty marks (reason `modified`) the capture printed for `file`.
fn marks_on<'a>(events: &'a [Value], file: &Path) -> Vec<&'a Value> {
    let want = rill_tests::events::path_str(file);
    events
        .iter()
        .filter(|e| e["kind"] == "dirty" && path(e) == want && e["reason"] == "modified")
        .collect()
}

/// Two threads write(2) through one descriptor: where each write went is the shared file
/// position, read after the call, and the other thread may have moved it by then. No
/// write is recorded at an offset that may be wrong; the file is marked dirty instead
/// (the engine remirrors it). Before, each write was recorded at the position read after
/// it, which two racing threads could both read past their own bytes.
#[test]
fn two_threads_writing_one_descriptor_mark_the_file_dirty_instead_of_guessing_offsets() {
    let r = run_with("shared-fd", SettingsFile::new(), &["n=200"]);
    let sh = r.dir.join("sh");
    assert_ops(&r.events, &[create(&sh, 0o644)], "shared-fd");
    assert!(
        !marks_on(&r.all, &sh).is_empty(),
        "no dirty mark on {}: {:#?}",
        sh.display(),
        r.all
    );
    assert_eq!(r.workload.tids.len(), 2, "workload reports two writer tids");
}

/// A file with two names, opened by one, that name unlinked, then written, truncated and
/// chmodded through the descriptor: the descriptor's name is gone, so no record may name
/// it (on a replica it would act on whatever holds that name, or be refused and leave the
/// other name stale). The file is marked dirty by its inode and named by the name it
/// has. Before, all three were recorded under the removed name.
#[test]
fn changes_through_a_name_unlinked_while_open_mark_the_file_by_its_remaining_name() {
    let r = run("unlinked-link");
    let (ul1, ul2) = (r.dir.join("ul1"), r.dir.join("ul2"));
    assert_ops(
        &r.events,
        &[
            create(&ul1, 0o644),
            op!("link", ul2, target = rill_tests::events::path_str(&ul1)),
            op!("unlink", ul1),
        ],
        "unlinked-link",
    );
    assert!(
        !marks_on(&r.all, &ul2).is_empty(),
        "no dirty mark on {}: {:#?}",
        ul2.display(),
        r.all
    );
    let on_removed: Vec<&Value> = r
        .all
        .iter()
        .filter(|e| path(e) == rill_tests::events::path_str(&ul1))
        .filter(|e| !matches!(e["kind"].as_str(), Some("create" | "link" | "unlink")))
        .collect();
    assert!(
        on_removed.is_empty(),
        "events on the removed name: {on_removed:#?}"
    );
}

/// The guard against marking too much: one thread, a descriptor whose copy (dup) was
/// closed again, and a second description of the same file with O_APPEND: each
/// description has one reference in an unshared table, so every write is an exact record
/// and nothing is marked.
#[test]
fn writes_through_unshared_descriptions_stay_exact_records() {
    let r = run("unshared");
    let un = r.dir.join("un");
    assert_ops(
        &r.events,
        &[
            create(&un, 0o644),
            write(&un, 0, 4, true),
            write(&un, 4, 6, true),
            write(&un, 10, 2, true),
        ],
        "unshared",
    );
    let dirty: Vec<&Value> = r.all.iter().filter(|e| e["kind"] == "dirty").collect();
    assert!(dirty.is_empty(), "dirty marks: {dirty:#?}");
}

#[test]
fn excluded_pid_is_not_captured() {
    require_kernel_support();
    let dir = TestDir::new("excluded");
    let (ex, inc) = (dir.subdir("excluded"), dir.subdir("included"));
    let mut excluded = Workload::spawn(WORKLOAD, "basic", &ex, &[]);
    let settings = SettingsFile::new().with("ExcludedPids", json!([excluded.pid()]));
    let cap = CaptureProc::start(&settings.path(), &[dir.path()], &["--mode", "ebpf"]);
    excluded.go();
    let excluded = excluded.finish();
    let included = Workload::run(WORKLOAD, "basic", &inc, &[]);
    let c = cap.stop();
    assert_seq_increasing(&c.events);
    let leaked: Vec<&Value> = c
        .events
        .iter()
        .filter(|e| {
            e["pid"].as_u64() == Some(excluded.pid as u64) || Path::new(path(e)).starts_with(&ex)
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "operations of excluded pid {} were captured: {leaked:#?}",
        excluded.pid
    );
    assert_ops(
        &of_pid(&c.events, included.pid),
        &basic_ops(&inc),
        "the non-excluded workload",
    );
}

/// What the `basic` scenario does in `d`.
fn basic_ops(d: &Path) -> Vec<Value> {
    let (f, df) = (d.join("f"), d.join("d/f"));
    vec![
        create(&f, 0o644),
        write(&f, 0, 4, true),
        op!("mkdir", d.join("d"), mode = 0o755),
        op!(
            "rename",
            f,
            new_path = rill_tests::events::path_str(&df),
            flags = 0
        ),
        op!("chmod", df, mode = 0o600),
        op!("unlink", df),
        op!("rmdir", d.join("d")),
    ]
}

#[test]
fn unwatched_file_system_is_not_captured() {
    require_kernel_support();
    let watched = TestDir::new("watched");
    let tmpfs = Tmpfs::mount("unwatched");
    let settings = SettingsFile::new().with("WatchedPaths", json!([watched.path()]));
    // Both directories are capture roots: only the WatchedPaths setting keeps the tmpfs out.
    let cap = CaptureProc::start(
        &settings.path(),
        &[watched.path(), tmpfs.path()],
        &["--mode", "ebpf"],
    );
    let on_tmpfs = Workload::run(WORKLOAD, "basic", tmpfs.path(), &[]);
    let on_ext4 = Workload::run(WORKLOAD, "basic", watched.path(), &[]);
    let c = cap.stop();
    assert_seq_increasing(&c.events);
    let leaked: Vec<Value> = c
        .events
        .iter()
        .filter(|e| Path::new(path(e)).starts_with(tmpfs.path()))
        .map(rill_tests::summary)
        .collect();
    assert!(
        leaked.is_empty(),
        "operations on the unwatched tmpfs {} (WatchedPaths = {}) were captured (workload pid {}):\n{}",
        tmpfs.path().display(),
        watched.path().display(),
        on_tmpfs.pid,
        leaked
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_ops(
        &of_pid(&c.events, on_ext4.pid),
        &basic_ops(watched.path()),
        "operations on the watched file system",
    );
}

#[test]
fn inline_data_max_setting_limits_inline_writes() {
    let r = run_with(
        "inline-max",
        SettingsFile::new().with("InlineDataMax", json!(16)),
        &[],
    );
    let im = r.dir.join("im");
    assert_ops(
        &r.events,
        &[
            create(&im, 0o644),
            write(&im, 0, 16, true),
            write(&im, 16, 17, false),
            write(&im, 33, 17, false),
            write(&im, 50, 16, true),
        ],
        "InlineDataMax = 16",
    );
}
