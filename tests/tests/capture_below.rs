//! Changes of a file's data that no write-family system call describes, against the real
//! kernel: `rill-driver capture --mode ebpf --json` (a private instance) while this test
//! process (or `fio`) changes files beneath the syscalls.
//!
//! - Reflinks (`ioctl` FICLONE, FICLONERANGE, FIDEDUPERANGE, on a loop-mounted XFS with
//!   reflinks) are exact: range-only writes on the destination, at the range the call
//!   names.
//! - Stores into a shared mapping, io_uring writes and asynchronous direct writes are
//!   dirty marks on their file (reason `modified`), made by the second layer of capture
//!   (`ebpf/src/below.rs`).
//!
//! Each of these changes went uncaptured before the second layer and the ioctl handler: no
//! event at all named the file after its creation.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rill_tests::beneath::{syncfs, Mapping};
use rill_tests::events::{kind, path, path_str};
use rill_tests::uring::{Dir, Uring};
use rill_tests::{
    assert_ops, data_pattern, of_pid, op, require_kernel_support, CaptureProc, Captured, LoopFs,
    SettingsFile, TestDir, Xfs,
};
use serde_json::Value;

/// Captures `root` while `f` runs.
fn capture(root: &Path, f: impl FnOnce()) -> Captured {
    require_kernel_support();
    let settings = SettingsFile::new();
    let cap = CaptureProc::start(&settings.path(), &[root], &["--mode", "ebpf"]);
    f();
    cap.stop()
}

/// Panics unless the capture marked `file` dirty as modified.
fn assert_marked(c: &Captured, file: &Path, what: &str) {
    let want = path_str(file);
    let marked = c
        .events
        .iter()
        .any(|e| kind(e) == "dirty" && path(e) == want && e["reason"] == "modified");
    assert!(
        marked,
        "{what}: no dirty mark (modified) on {want}; captured:\n{}",
        c.events
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A file of `len` bytes whose pages are clean (written back) when this returns.
fn clean_file(p: &Path, len: usize) -> std::fs::File {
    std::fs::write(p, data_pattern(len, 3)).expect("write the file");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .expect("open the file");
    f.sync_all().expect("fsync");
    f
}

/// A store into a clean page of a shared mapping makes the page dirty: the file is marked
/// at once, with no msync or writeback.
#[test]
fn a_store_into_a_shared_mapping_marks_the_file_dirty() {
    let dir = TestDir::new("below-store");
    let file = dir.join("mapped");
    let f = clean_file(&file, 8192);
    let c = capture(dir.path(), || {
        let m = Mapping::new(&f, 8192);
        m.store(5000, b"stored through the mapping");
    });
    assert_marked(&c, &file, "a store into a clean page");
}

/// A store into a page that is already dirty makes no dirty-page event: the mark comes
/// when the page is written back, by `write_back`. The page is made dirty before the
/// capture starts, through a first mapping; the capture sees a second one made, and a
/// store through it into the dirty page.
fn store_into_a_dirty_page_then(tag: &str, write_back: impl FnOnce(&Mapping, &std::fs::File)) {
    let dir = TestDir::new(tag);
    let file = dir.join("mapped");
    let f = clean_file(&file, 8192);
    let first = Mapping::new(&f, 8192);
    first.store(100, b"dirty before the capture");
    let c = capture(dir.path(), || {
        let m = Mapping::new(&f, 8192);
        m.store(200, b"into the dirty page");
        write_back(&m, &f);
    });
    drop(first);
    assert_marked(&c, &file, &format!("a store into a dirty page ({tag})"));
}

#[test]
fn a_store_into_a_dirty_page_is_marked_when_msync_writes_it_back() {
    store_into_a_dirty_page_then("below-msync", |m, _| m.msync());
}

/// Written back by syncfs instead (what background writeback or sync(1) do for a mapping
/// that is never msynced).
#[test]
fn a_mapping_never_msynced_is_marked_when_written_back() {
    store_into_a_dirty_page_then("below-syncfs", |_, f| syncfs(f));
}

/// The second layer marks any mapped file on a watched file system: one outside the
/// capture's roots is none of its business, and names nothing (a lost operation's mark
/// on an unknown file names every root instead, to be rescanned).
#[test]
fn a_mapped_file_outside_the_roots_marks_nothing() {
    let dir = TestDir::new("below-outside");
    let root = dir.subdir("root");
    let file = dir.join("outside");
    let f = clean_file(&file, 8192);
    let c = capture(&root, || {
        let m = Mapping::new(&f, 8192);
        m.store(10, b"outside the roots");
        m.msync();
    });
    let dirty: Vec<&Value> = c.events.iter().filter(|e| kind(e) == "dirty").collect();
    assert!(dirty.is_empty(), "dirty marks: {dirty:?}");
}

/// A file under the roots given the inode number of a removed one the capture had found
/// outside them is ours: its mark names it. The mark is listed as soon as it is made, and
/// the record of the file's creation may still wait in the ring behind others then (here
/// the reader is held while a flood of records, the creation and the mark are made);
/// judged at once, by the inode number alone, the mark was dropped as another outside
/// file's (found by the replication security tests: a file written from a thread, its
/// create on the replica, its data never).
#[test]
fn a_file_given_the_inode_number_of_one_found_outside_is_marked() {
    require_kernel_support();
    // A file system of its own: the inode number freed is the next one given, and no other
    // test makes a file in between.
    let dir = LoopFs::ext4("below-reused");
    let root = dir.join("root");
    std::fs::create_dir(&root).expect("make the root");
    let busy = root.join("busy");
    std::fs::write(&busy, b"").expect("write the busy file");
    let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).unwrap_or(0);
    // Made before the capture starts, so it has seen no record naming them.
    let outside: Vec<(PathBuf, std::fs::File)> = (0..REUSE_ATTEMPTS)
        .map(|i| {
            let p = dir.join(format!("outside-{i}"));
            let f = clean_file(&p, 4096);
            (p, f)
        })
        .collect();
    let settings = SettingsFile::new();
    let cap = CaptureProc::start(&settings.path(), &[&root], &["--mode", "ebpf"]);
    let reader = nix::unistd::Pid::from_raw(cap.pid() as i32);
    let signal = |s| nix::sys::signal::kill(reader, s).expect("signal the capture");
    let mut reused = Vec::new();
    for (attempt, (path, f)) in outside.into_iter().enumerate() {
        Mapping::new(&f, 4096).store(0, b"outside the roots");
        // Collected (the reader polls every few milliseconds when idle), and found
        // outside the roots.
        std::thread::sleep(Duration::from_millis(300));
        let was = ino(&path);
        drop(f);
        signal(nix::sys::signal::Signal::SIGSTOP);
        for i in 0..FLOOD {
            let mode = if i % 2 == 0 { 0o600 } else { 0o644 };
            std::fs::set_permissions(&busy, std::fs::Permissions::from_mode(mode))
                .expect("chmod the busy file");
        }
        // Behind the flood, as the creation is: the removal of a file whose records the
        // capture never sees (a process it excludes, such as the engine's own queue
        // files) makes none at all.
        std::fs::remove_file(&path).expect("remove the outside file");
        let inside = root.join(format!("inside-{attempt}"));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&inside)
            .expect("create the file under the root");
        f.set_len(4096).expect("size the file");
        Mapping::new(&f, 4096).store(0, b"inside the roots");
        signal(nix::sys::signal::Signal::SIGCONT);
        if ino(&inside) == was {
            reused.push(inside);
        }
    }
    let c = cap.stop();
    assert!(
        !reused.is_empty(),
        "no file under the root got the inode number of a removed outside one in \
         {REUSE_ATTEMPTS} attempts ({}): the file system did not reuse them at once",
        dir.path().display()
    );
    for f in &reused {
        assert_marked(&c, f, "a store into a file with a reused inode number");
    }
}

/// Tries at making a file under the roots with a removed outside file's inode number
/// (ext4 gives the number freed last to the next file made nearby).
const REUSE_ATTEMPTS: usize = 3;
/// Records queued ahead of the new file's creation: more than the reader takes in one
/// batch (4,096), well within the ring (32 MiB).
const FLOOD: usize = 10_000;

/// fio: 16 writes of 4 KiB into `file`, in order.
fn fio(file: &Path, engine: &str, direct: bool) {
    rill_tests::beneath::fio(file, engine, direct, "write", "64k");
}

#[test]
fn io_uring_buffered_and_direct_writes_mark_the_file_dirty() {
    let dir = TestDir::new("below-uring");
    let (buffered, direct) = (dir.join("buffered"), dir.join("direct"));
    // The files exist first, so that fio's writes are all the capture could see of them.
    clean_file(&buffered, 0);
    clean_file(&direct, 0);
    let c = capture(dir.path(), || {
        fio(&buffered, "io_uring", false);
        fio(&direct, "io_uring", true);
    });
    assert_marked(&c, &buffered, "io_uring buffered writes");
    assert_marked(&c, &direct, "io_uring O_DIRECT writes");
}

#[test]
fn aio_direct_writes_mark_the_file_dirty() {
    let dir = TestDir::new("below-aio");
    let file = dir.join("aio");
    clean_file(&file, 0);
    let c = capture(dir.path(), || fio(&file, "libaio", true));
    assert_marked(&c, &file, "io_submit O_DIRECT writes");
}

/// io_uring requests that change names and attributes: each is the operation the
/// matching system call makes, in completion order, with names relative to a directory
/// descriptor or absolute; an open into a fixed-file slot (no descriptor to find the file
/// by) is a dirty mark by its name.
#[test]
fn io_uring_namespace_and_attribute_requests_are_operations() {
    let dir = TestDir::new("below-uring-names");
    let d = dir.path();
    let (sub, f, g, h) = (d.join("sub"), d.join("sub/f"), d.join("sub/g"), d.join("h"));
    let (s, n) = (d.join("sub/s"), d.join("sub/n"));
    let c = capture(d, || {
        let mut ring = Uring::new();
        let at = Dir::open(d);
        ring.mkdir(&at, "sub", 0o700);
        let fd = ring.open(&at, "sub/f", libc::O_CREAT | libc::O_WRONLY, 0o600);
        ring.fsetxattr(&fd, "user.by_fd", b"1");
        ring.setxattr(&f, "user.by_path", b"22");
        let inner = Dir::open(&sub);
        ring.link(&inner, "f", &inner, "g");
        ring.symlink("f", &inner, "s");
        ring.rename(&inner, "g", &at, "h");
        ring.unlink(&at, "h", false);
        drop(ring.open(&inner, "f", libc::O_TRUNC | libc::O_WRONLY, 0));
        ring.open_fixed(&inner, "n", (libc::O_CREAT | libc::O_WRONLY) as u64, 0o600);
        ring.unlink(&inner, "s", false);
        ring.unlink(&at, "sub/f", false);
        ring.unlink(&inner, "n", false);
        ring.unlink(&at, "sub", true);
    });
    let ops = of_pid(&c.events, std::process::id());
    let p = |x: &Path| path_str(x);
    assert_ops(
        &ops,
        &[
            op!("mkdir", sub, mode = 0o700),
            op!("create", f, mode = 0o600),
            op!("setxattr", f, name = "user.by_fd"),
            op!("setxattr", f, name = "user.by_path"),
            op!("link", g, target = p(&f)),
            op!("symlink", s, target = "f"),
            op!("rename", g, new_path = p(&h), flags = 0),
            op!("unlink", h),
            op!("truncate", f, size = 0),
            op!("dirty", n, reason = "modified"),
            op!("unlink", s),
            op!("unlink", f),
            op!("unlink", n),
            op!("rmdir", sub),
        ],
        "io_uring requests",
    );
}

const FICLONE: libc::c_ulong = 0x4004_9409;
const FICLONERANGE: libc::c_ulong = 0x4020_940d;
const FIDEDUPERANGE: libc::c_ulong = 0xc018_9436;

#[repr(C)]
struct CloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

#[repr(C)]
struct DedupeRange {
    src_offset: u64,
    src_length: u64,
    dest_count: u16,
    reserved1: u16,
    reserved2: u32,
    dest_fd: i64,
    dest_offset: u64,
    bytes_deduped: u64,
    status: i32,
    reserved: u32,
}

fn ioctl(fd: i32, request: libc::c_ulong, arg: usize, what: &str) {
    // SAFETY: each request's argument is an fd or a pointer to its struct.
    let r = unsafe { libc::ioctl(fd, request, arg) };
    assert_eq!(r, 0, "{what}: {}", std::io::Error::last_os_error());
}

/// Reflinks are range-only writes on the destination at the range the call names; the
/// drain reads the bytes from the file.
#[test]
fn ficlone_ficlonerange_and_fideduperange_are_range_only_writes() {
    let fs = Xfs::mount("below-reflink");
    let (src, a, b, c) = (fs.join("src"), fs.join("a"), fs.join("b"), fs.join("c"));
    let data = data_pattern(65536, 7);
    let open_new = |p: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(p)
            .expect("create")
    };
    let captured = capture(fs.path(), || {
        std::fs::write(&src, &data).expect("write src");
        let s = OpenOptions::new().read(true).open(&src).expect("open src");
        let fa = open_new(&a);
        ioctl(fa.as_raw_fd(), FICLONE, s.as_raw_fd() as usize, "FICLONE");
        let fb = open_new(&b);
        let range = CloneRange {
            src_fd: s.as_raw_fd() as i64,
            src_offset: 4096,
            src_length: 8192,
            dest_offset: 8192,
        };
        ioctl(
            fb.as_raw_fd(),
            FICLONERANGE,
            &range as *const _ as usize,
            "FICLONERANGE",
        );
        std::fs::write(&c, &data).expect("write c");
        let fc = OpenOptions::new().read(true).write(true).open(&c).unwrap();
        let mut dedupe = DedupeRange {
            src_offset: 0,
            src_length: 65536,
            dest_count: 1,
            reserved1: 0,
            reserved2: 0,
            dest_fd: fc.as_raw_fd() as i64,
            dest_offset: 0,
            bytes_deduped: 0,
            status: 0,
            reserved: 0,
        };
        ioctl(
            s.as_raw_fd(),
            FIDEDUPERANGE,
            &mut dedupe as *mut _ as usize,
            "FIDEDUPERANGE",
        );
        assert_eq!(
            (dedupe.status, dedupe.bytes_deduped),
            (0, 65536),
            "dedupe result"
        );
    });
    let range_only: Vec<Value> = of_pid(&captured.events, std::process::id())
        .into_iter()
        .filter(|e| kind(e) == "write" && e["inline"] == false)
        .collect();
    let write = |p: &Path, offset: u64, len: u64| {
        op!("write", p, offset = offset, len = len, inline = false)
    };
    assert_ops(
        &range_only,
        &[
            write(&a, 0, 65536),
            write(&b, 8192, 8192),
            write(&c, 0, 65536),
        ],
        "reflinks",
    );
}
