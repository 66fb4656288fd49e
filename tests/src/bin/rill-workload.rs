//! `rill-workload SCENARIO DIR [NAME=VALUE...]`: performs one named file-system scenario
//! inside DIR with raw syscalls, in a process of its own.
//!
//! Why a separate process: the tests filter captured events by pid, so the operations
//! must come from a known pid and nothing else; a scenario may `chdir` or spawn threads
//! without disturbing the test harness; and the excluded-pid test needs the pid before
//! the operations start. Protocol: the workload starts, waits for a line `go` on stdin
//! (so a test can configure and start the capture knowing the pid), runs the scenario,
//! and prints one JSON object `{"pid":..,"scenario":..,"tids":[..]}` on stdout. Any
//! failed syscall panics, so the process exits non-zero and the test fails.
//!
//! The umask is set to 022 first so modes after umask are predictable. Each scenario's
//! comment lists its operations; the tests in `tests/` assert exactly those sequences.

use std::collections::HashMap;
use std::io::BufRead;

use libc::{O_APPEND, O_CREAT, O_DIRECTORY, O_PATH, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};
use rill_tests::sys::*;
use serde_json::{json, Value};

type Params = HashMap<String, String>;

fn param(p: &Params, name: &str, default: usize) -> usize {
    p.get(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("parameter {name}={v} is not a number"))
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: rill-workload SCENARIO DIR [NAME=VALUE...]");
        std::process::exit(2);
    }
    let (scenario, dir) = (args[1].as_str(), args[2].trim_end_matches('/'));
    let params: Params = args[3..]
        .iter()
        .map(|a| {
            let (k, v) = a.split_once('=').expect("parameters are NAME=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .expect("read stdin");
    if line.trim() != "go" {
        eprintln!("rill-workload: expected `go` on stdin, got {line:?}");
        std::process::exit(2);
    }
    umask(0o022);
    let (tids, extra) = match scenario {
        "threads" => (threads(dir, param(&params, "n", 50)), Value::Null),
        "shared-fd" => (shared_fd(dir, param(&params, "n", 50)), Value::Null),
        "reuse" => (vec![gettid()], reuse(dir, param(&params, "k", 20))),
        _ => {
            run(scenario, dir, &params);
            (vec![gettid()], Value::Null)
        }
    };
    println!(
        "{}",
        json!({ "pid": std::process::id(), "scenario": scenario, "tids": tids, "extra": extra })
    );
}

fn run(scenario: &str, d: &str, p: &Params) {
    match scenario {
        "create" => create(d),
        "writes" => writes(d),
        "data" => data(d),
        "tree" => tree(d),
        "sizes" => sizes(d),
        "remove" => remove(d),
        "make" => make(d),
        "rename" => rename_ops(d),
        "links" => links(d),
        "chmod" => chmod_ops(d),
        "chown" => chown_ops(d),
        "utimes" => utimes_ops(d),
        "symlink-attrs" => symlink_attrs(d),
        "xattr" => xattr(d),
        "dirfd" => dirfd(d),
        "cwd" => cwd(d),
        "renamed-ancestor" => renamed_ancestor(d),
        "hardlinks" => hardlinks(d),
        "append" => append(d),
        "cursor" => cursor(d),
        "big-write" => big_write(d),
        "unlinked-link" => unlinked_link(d),
        "unshared" => unshared(d),
        "copies" => copies(d),
        "basic" => basic(d),
        "inline-max" => inline_max(d),
        "many-files" => many_files(d, param(p, "n", 1000)),
        "overflow" => overflow(d, p),
        "names" => names(d),
        "modify" => modify(d),
        other => panic!("unknown scenario {other}"),
    }
}

fn dir_fd(path: &str) -> i32 {
    open(path, O_RDONLY | O_DIRECTORY, 0)
}

/// A new regular file, mode 0644, created with openat(AT_FDCWD, path, O_CREAT|O_WRONLY):
/// one `create` event.
fn new_file(path: &str) -> i32 {
    openat(AT_FDCWD, path, O_CREAT | O_WRONLY, 0o644)
}

/// create a 0640 (open), create b 0600 (creat), create c 0644 (openat2), create d 0644
/// (openat, 0666 & ~022), truncate a size 0 (open O_TRUNC without O_CREAT); a read-only
/// open of a reports nothing.
fn create(d: &str) {
    close(open(&format!("{d}/a"), O_CREAT | O_WRONLY, 0o640));
    close(creat(&format!("{d}/b"), 0o600));
    close(openat2(
        AT_FDCWD,
        &format!("{d}/c"),
        O_CREAT | O_WRONLY,
        0o644,
    ));
    close(openat(AT_FDCWD, &format!("{d}/d"), O_CREAT | O_RDWR, 0o666));
    close(open(&format!("{d}/a"), O_WRONLY | O_TRUNC, 0));
    close(open(&format!("{d}/a"), O_RDONLY, 0));
}

/// create w; write 0+5; pwrite64 100+3; writev 5+6; pwritev 200+6; pwritev2(-1) 11+4;
/// pwritev2(300) 300+4; write 15+2 (the explicit-offset calls left the position alone).
/// Writes whose bytes the test compares: [`rill_tests::DATA_SIZES`] through one file (the
/// first carries the path, later ones go through the driver's cached-path ring slots of
/// every size), a pwrite, and a writev (assembled through scratch).
fn data(d: &str) {
    let fd = new_file(&format!("{d}/data"));
    for (i, &len) in rill_tests::DATA_SIZES.iter().enumerate() {
        write(fd, &rill_tests::data_pattern(len, i as u8));
    }
    pwrite64(fd, &rill_tests::data_pattern(300, 200), 7);
    let (a, b) = (
        rill_tests::data_pattern(100, 201),
        rill_tests::data_pattern(5000, 202),
    );
    writev(fd, &[&a, &b]);
    close(fd);
}

/// Bytes moved into files inside the kernel: create in (3000 bytes, one write);
/// copy_file_range of all of it into a at a's position (a 0+3000); copy_file_range of 500
/// bytes from in+1000 into b at an explicit offset 100 (b 100+500); sendfile of 700 bytes
/// from in into c at c's position, after a 10-byte write (c 0+10, c 10+700); splice of
/// 400 bytes from a pipe into e at an explicit offset 50 (e 50+400). The last three
/// leave the explicit offsets' files positions alone.
fn copies(d: &str) {
    let input = new_file(&format!("{d}/in"));
    write(input, &rill_tests::data_pattern(3000, 9));
    close(input);
    let input = open(&format!("{d}/in"), O_RDONLY, 0);
    let a = new_file(&format!("{d}/a"));
    assert_eq!(copy_file_range(input, None, a, None, 3000), 3000);
    close(a);
    let b = new_file(&format!("{d}/b"));
    let (mut from, mut to) = (1000i64, 100i64);
    assert_eq!(
        copy_file_range(input, Some(&mut from), b, Some(&mut to), 500),
        500
    );
    close(b);
    let c = new_file(&format!("{d}/c"));
    write(c, b"0123456789");
    let mut from = 0i64;
    assert_eq!(sendfile(c, input, Some(&mut from), 700), 700);
    close(c);
    close(input);
    let (r, w) = pipe();
    write(w, &rill_tests::data_pattern(400, 10));
    let e = new_file(&format!("{d}/e"));
    let mut at = 50i64;
    assert_eq!(splice_from_pipe(r, e, Some(&mut at), 400), 400);
    close(e);
    close(r);
    close(w);
}

/// A small tree built with every kind of operation, for replication tests that compare
/// the replica with the source afterwards.
fn tree(d: &str) {
    mkdir(&format!("{d}/docs"), 0o750);
    mkdir(&format!("{d}/tmp"), 0o755);
    let fd = new_file(&format!("{d}/docs/a.txt"));
    write(fd, b"hello, ");
    write(fd, b"world\n");
    pwrite64(fd, b"HELLO", 0);
    fsetxattr(fd, "user.owner", b"ops");
    close(fd);
    let fd = open(
        &format!("{d}/docs/log"),
        O_CREAT | O_WRONLY | O_APPEND,
        0o640,
    );
    for i in 0..50u8 {
        write(fd, &[b'a' + (i % 26); 100]);
    }
    close(fd);
    let big = open(&format!("{d}/big.bin"), O_CREAT | O_WRONLY, 0o600);
    write(big, &rill_tests::data_pattern(200_000, 9));
    ftruncate(big, 150_000);
    close(big);
    link(&format!("{d}/docs/a.txt"), &format!("{d}/a-link.txt"));
    symlink("docs/a.txt", &format!("{d}/latest"));
    rename(&format!("{d}/docs/log"), &format!("{d}/docs/log.1"));
    chmod(&format!("{d}/docs/a.txt"), 0o604);
    chown(&format!("{d}/docs/log.1"), 1234, 5678);
    lchown(&format!("{d}/latest"), 42, 43);
    setxattr(&format!("{d}/docs/log.1"), "user.rotated", b"yes");
    setxattr(&format!("{d}/big.bin"), "user.gone", b"x");
    removexattr(&format!("{d}/big.bin"), "user.gone");
    let t = open(&format!("{d}/tmp/scratch"), O_CREAT | O_WRONLY, 0o600);
    write(t, b"temporary");
    close(t);
    unlink(&format!("{d}/tmp/scratch"));
    rmdir(&format!("{d}/tmp"));
    mknod(&format!("{d}/fifo"), libc::S_IFIFO | 0o644, 0);
    utimes(&format!("{d}/docs/log.1"));
}

fn writes(d: &str) {
    let fd = new_file(&format!("{d}/w"));
    write(fd, b"hello");
    pwrite64(fd, b"abc", 100);
    writev(fd, &[b"ab", b"cdef"]);
    pwritev(fd, &[b"123", b"456"], 200);
    pwritev2(fd, &[b"wxyz"], -1, 0);
    pwritev2(fd, &[b"WXYZ"], 300, 0);
    write(fd, b"!!");
    close(fd);
}

/// create t; truncate(path) 1000; ftruncate 10; fallocate mode 0 0+4096;
/// fallocate KEEP_SIZE(1) 8192+4096.
fn sizes(d: &str) {
    let path = format!("{d}/t");
    let fd = new_file(&path);
    truncate(&path, 1000);
    ftruncate(fd, 10);
    fallocate(fd, 0, 0, 4096);
    fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, 8192, 4096);
    close(fd);
}

/// mkdir d1, mkdir d2, create f1, create f2; unlink f1; unlinkat(dirfd, "f2");
/// rmdir d1; unlinkat(AT_FDCWD, d2, AT_REMOVEDIR).
fn remove(d: &str) {
    mkdir(&format!("{d}/d1"), 0o755);
    mkdir(&format!("{d}/d2"), 0o755);
    close(new_file(&format!("{d}/f1")));
    close(new_file(&format!("{d}/f2")));
    let dfd = dir_fd(d);
    unlink(&format!("{d}/f1"));
    unlinkat(dfd, "f2", 0);
    rmdir(&format!("{d}/d1"));
    unlinkat(AT_FDCWD, &format!("{d}/d2"), libc::AT_REMOVEDIR);
    close(dfd);
}

/// mkdir m1 0777 (→ 0755 after umask); mkdirat(dirfd, "m2", 0700); mknod fifo
/// S_IFIFO|0666 (→ 0o10644); mknodat(dirfd, "fifo2", S_IFIFO|0600).
fn make(d: &str) {
    mkdir(&format!("{d}/m1"), 0o777);
    let dfd = dir_fd(d);
    mkdirat(dfd, "m2", 0o700);
    mknod(&format!("{d}/fifo"), libc::S_IFIFO | 0o666, 0);
    mknodat(dfd, "fifo2", libc::S_IFIFO | 0o600, 0);
    close(dfd);
}

/// create r1, r2, x, y; rename r1→r1b; renameat(dirfd r2→r2b); renameat2 r1b→r1c
/// NOREPLACE(1); renameat2(dirfd x↔y, EXCHANGE(2)).
fn rename_ops(d: &str) {
    for n in ["r1", "r2", "x", "y"] {
        close(new_file(&format!("{d}/{n}")));
    }
    let dfd = dir_fd(d);
    rename(&format!("{d}/r1"), &format!("{d}/r1b"));
    renameat(dfd, "r2", dfd, "r2b");
    let (a, b) = (format!("{d}/r1b"), format!("{d}/r1c"));
    renameat2(AT_FDCWD, &a, AT_FDCWD, &b, libc::RENAME_NOREPLACE);
    renameat2(dfd, "x", dfd, "y", libc::RENAME_EXCHANGE);
    close(dfd);
}

/// create orig; link orig→l1; linkat(dirfd orig→l2); symlink "orig" at s1;
/// symlinkat "/some/abs/target" at dirfd s2.
fn links(d: &str) {
    close(new_file(&format!("{d}/orig")));
    link(&format!("{d}/orig"), &format!("{d}/l1"));
    let dfd = dir_fd(d);
    linkat(dfd, "orig", dfd, "l2", 0);
    symlink("orig", &format!("{d}/s1"));
    symlinkat("/some/abs/target", dfd, "s2");
    close(dfd);
}

/// create c; chmod 0600; fchmod 0640; fchmodat(dirfd, "c", 0755); chmod 04711; chmod through
/// /proc/self/fd/N of an O_PATH fd 0640.
fn chmod_ops(d: &str) {
    let path = format!("{d}/c");
    let fd = new_file(&path);
    chmod(&path, 0o600);
    fchmod(fd, 0o640);
    let dfd = dir_fd(d);
    fchmodat(dfd, "c", 0o755);
    chmod(&path, 0o4711);
    // What glibc's fchmodat(AT_SYMLINK_NOFOLLOW) does (tar): chmod through the magic link
    // of an O_PATH fd.
    let pfd = open(&path, libc::O_PATH, 0);
    chmod(&format!("/proc/self/fd/{pfd}"), 0o640);
    close(pfd);
    close(dfd);
    close(fd);
}

/// create o; chown 1000:1000; fchown -1:2000; lchown 3000:-1; fchownat(dirfd, "o", -1:-1).
fn chown_ops(d: &str) {
    let path = format!("{d}/o");
    let fd = new_file(&path);
    chown(&path, 1000, 1000);
    fchown(fd, -1, 2000);
    lchown(&path, 3000, -1);
    let dfd = dir_fd(d);
    fchownat(dfd, "o", -1, -1, 0);
    close(dfd);
    close(fd);
}

/// create u; utimensat(path, NULL times); utimensat(fd, NULL path); utimes(path, NULL);
/// utimensat(dirfd, "u", explicit times).
fn utimes_ops(d: &str) {
    let path = format!("{d}/u");
    let fd = new_file(&path);
    utimensat(AT_FDCWD, Some(&path), None);
    utimensat(fd, None, None);
    utimes(&path);
    let dfd = dir_fd(d);
    let atime = libc::timespec {
        tv_sec: 1_000_000_000,
        tv_nsec: 123_456_789,
    };
    let mtime = libc::timespec {
        tv_sec: 1_100_000_000,
        tv_nsec: 987_654_321,
    };
    utimensat(dfd, Some("u"), Some([atime, mtime]));
    close(dfd);
    close(fd);
}

/// create t; symlink s -> t; owner and times calls by the name s, each following the
/// link or not: chown (t), lchown (s), fchownat nofollow (s), fchownat (t), utimensat
/// nofollow (s), utimensat (t), utimes (t); then chmod (t) and truncate (t) by the name s,
/// which always follow it.
fn symlink_attrs(d: &str) {
    close(new_file(&format!("{d}/t")));
    let s = format!("{d}/s");
    symlink("t", &s);
    chown(&s, 1000, 1000);
    lchown(&s, 2000, 2000);
    let dfd = dir_fd(d);
    fchownat(dfd, "s", 3000, 3000, libc::AT_SYMLINK_NOFOLLOW);
    fchownat(dfd, "s", 4000, 4000, 0);
    let t = |sec| libc::timespec {
        tv_sec: sec,
        tv_nsec: 5,
    };
    utimensat_flags(
        dfd,
        Some("s"),
        Some([t(1_000_000_000), t(1_000_000_001)]),
        libc::AT_SYMLINK_NOFOLLOW,
    );
    utimensat_flags(
        dfd,
        Some("s"),
        Some([t(1_200_000_000), t(1_200_000_001)]),
        0,
    );
    utimes(&s);
    chmod(&s, 0o600);
    truncate(&s, 7);
    close(dfd);
}

/// create x; setxattr user.a; lsetxattr user.b; fsetxattr user.c; removexattr user.a;
/// lremovexattr user.b; fremovexattr user.c.
fn xattr(d: &str) {
    let path = format!("{d}/x");
    let fd = new_file(&path);
    setxattr(&path, "user.a", b"1");
    lsetxattr(&path, "user.b", b"22");
    fsetxattr(fd, "user.c", b"333");
    removexattr(&path, "user.a");
    lremovexattr(&path, "user.b");
    fremovexattr(fd, "user.c");
    close(fd);
}

/// mkdir sub; with O_PATH fd on sub: openat "f" (create sub/f), write 0+4 (sub/f),
/// mkdirat "inner" (sub/inner); with an O_DIRECTORY fd on sub/inner: renameat
/// sub/f → sub/inner/g; unlinkat(inner, "g").
fn dirfd(d: &str) {
    mkdir(&format!("{d}/sub"), 0o755);
    let opath = open(&format!("{d}/sub"), O_PATH | O_DIRECTORY, 0);
    let fd = openat(opath, "f", O_CREAT | O_WRONLY, 0o644);
    write(fd, b"data");
    close(fd);
    mkdirat(opath, "inner", 0o755);
    let inner = dir_fd(&format!("{d}/sub/inner"));
    renameat(opath, "f", inner, "g");
    unlinkat(inner, "g", 0);
    close(inner);
    close(opath);
}

/// mkdir cw; chdir cw; then relative to the cwd: create rel; write 0+3; mkdir sub;
/// rename rel → sub/rel2; chmod sub/rel2 0600; unlink sub/rel2; rmdir sub.
fn cwd(d: &str) {
    mkdir(&format!("{d}/cw"), 0o755);
    chdir(&format!("{d}/cw"));
    let fd = open("rel", O_CREAT | O_WRONLY, 0o644);
    write(fd, b"abc");
    close(fd);
    mkdir("sub", 0o755);
    rename("rel", "sub/rel2");
    chmod("sub/rel2", 0o600);
    unlink("sub/rel2");
    rmdir("sub");
}

/// mkdir a, mkdir a/b; create a/b/f; write 0+4 (a/b/f); rename a → z; write 4+4 through
/// the same fd, which must be reported as z/b/f.
fn renamed_ancestor(d: &str) {
    mkdir(&format!("{d}/a"), 0o755);
    mkdir(&format!("{d}/a/b"), 0o755);
    let fd = new_file(&format!("{d}/a/b/f"));
    write(fd, b"1234");
    rename(&format!("{d}/a"), &format!("{d}/z"));
    write(fd, b"5678");
    close(fd);
}

/// create h1; link h1 → h2; open h2 (no event); write 0+3 via h1; pwrite64 10+3 via h2;
/// write 3+3 via h1.
fn hardlinks(d: &str) {
    let fd1 = new_file(&format!("{d}/h1"));
    link(&format!("{d}/h1"), &format!("{d}/h2"));
    let fd2 = open(&format!("{d}/h2"), O_WRONLY, 0);
    write(fd1, b"one");
    pwrite64(fd2, b"two", 10);
    write(fd1, b"333");
    close(fd2);
    close(fd1);
}

/// create ap (O_APPEND); write 0+5; write 5+7; pwrite64(offset 0) lands at 12+3;
/// open ap again without O_APPEND; pwritev2(offset 0, RWF_APPEND) lands at 15+4.
fn append(d: &str) {
    let path = format!("{d}/ap");
    let fd = openat(AT_FDCWD, &path, O_CREAT | O_WRONLY | O_APPEND, 0o644);
    write(fd, b"hello");
    write(fd, b"world!!");
    pwrite64(fd, b"abc", 0);
    let fd2 = open(&path, O_WRONLY, 0);
    pwritev2(fd2, &[b"tail"], 0, libc::RWF_APPEND);
    close(fd2);
    close(fd);
}

/// create cur; lseek 1000; pwritev2(-1) 1000+6; pwritev2(-1) 1006+4; pwritev2(0) 0+2;
/// write 1010+1.
fn cursor(d: &str) {
    let fd = new_file(&format!("{d}/cur"));
    lseek(fd, 1000);
    pwritev2(fd, &[b"abc", b"def"], -1, 0);
    pwritev2(fd, &[b"ghij"], -1, 0);
    pwritev2(fd, &[b"zz"], 0, 0);
    write(fd, b"!");
    close(fd);
}

/// create big; write 0+100 (inline); write 100+1048576 (range-only); write 1048676+65536
/// (inline: exactly InlineDataMax); write 1114212+65537 (range-only).
fn big_write(d: &str) {
    let fd = new_file(&format!("{d}/big"));
    write(fd, &[b'a'; 100]);
    write(fd, &vec![b'b'; 1 << 20]);
    write(fd, &vec![b'c'; 65536]);
    write(fd, &vec![b'd'; 65537]);
    close(fd);
}

/// create th; two threads each pwrite64 `n` 16-byte blocks: thread t writes its i-th block
/// at offset (2i + t) * 16. Returns the threads' tids, thread 0 first.
fn threads(d: &str, n: usize) -> Vec<u32> {
    let fd = new_file(&format!("{d}/th"));
    let tids = two_threads(|t| {
        for i in 0..n {
            pwrite64(fd, &[b'0' + t as u8; 16], ((2 * i + t) * 16) as i64);
        }
    });
    close(fd);
    tids
}

/// create sh; two threads each write(2) `n` 16-byte blocks through the one descriptor
/// (no offset: each lands where the shared file position is). Returns the threads' tids.
fn shared_fd(d: &str, n: usize) -> Vec<u32> {
    let fd = new_file(&format!("{d}/sh"));
    let tids = two_threads(|t| {
        for _ in 0..n {
            write(fd, &[b'0' + t as u8; 16]);
        }
    });
    close(fd);
    tids
}

/// Runs `each(t)` on two threads (t = 0, 1) released together; returns their tids,
/// thread 0 first.
fn two_threads(each: impl Fn(usize) + Sync) -> Vec<u32> {
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (barrier, each) = (&barrier, &each);
                s.spawn(move || {
                    barrier.wait();
                    each(t);
                    gettid()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    })
}

/// create ul1; link ul1 → ul2; unlink ul1 (the descriptor keeps ul1's dentry, now
/// unhashed); then through the descriptor: write 6 bytes, ftruncate 3, fchmod 0600. None
/// of these may name ul1.
fn unlinked_link(d: &str) {
    let (ul1, ul2) = (format!("{d}/ul1"), format!("{d}/ul2"));
    let fd = new_file(&ul1);
    link(&ul1, &ul2);
    unlink(&ul1);
    write(fd, b"after!");
    ftruncate(fd, 3);
    fchmod(fd, 0o600);
    close(fd);
}

/// create un; dup the descriptor and close the copy (its description is back to one
/// reference); write 0+4; writev 4+6; open un again with O_APPEND and write 10+2 through
/// it (two descriptions of one file, each unshared).
fn unshared(d: &str) {
    let path = format!("{d}/un");
    let fd = new_file(&path);
    close(dup(fd));
    write(fd, b"abcd");
    writev(fd, &[b"ef", b"ghij"]);
    let ap = open(&path, O_WRONLY | O_APPEND, 0);
    write(ap, b"kl");
    close(ap);
    close(fd);
}

/// create f (absolute open); write 0+4; mkdir d; rename f → d/f; fchmodat(dirfd d, "f",
/// 0600); unlinkat(dirfd d, "f"); rmdir d. Absolute, fd-based and dirfd-relative names.
fn basic(d: &str) {
    let fd = new_file(&format!("{d}/f"));
    write(fd, b"data");
    close(fd);
    mkdir(&format!("{d}/d"), 0o755);
    rename(&format!("{d}/f"), &format!("{d}/d/f"));
    let dfd = dir_fd(&format!("{d}/d"));
    fchmodat(dfd, "f", 0o600);
    unlinkat(dfd, "f", 0);
    close(dfd);
    rmdir(&format!("{d}/d"));
}

/// create im; write 0+16; write 16+17; pwritev 33+17 (two iovecs); pwrite64 50+16.
fn inline_max(d: &str) {
    let fd = new_file(&format!("{d}/im"));
    write(fd, &[b'x'; 16]);
    write(fd, &[b'y'; 17]);
    pwritev(fd, &[b"0123456789", b"abcdefg"], 33);
    pwrite64(fd, &[b'z'; 16], 50);
    close(fd);
}

/// For i in 0..n: create f{i:05}, write 0+16.
fn many_files(d: &str, n: usize) {
    for i in 0..n {
        let fd = new_file(&format!("{d}/f{i:05}"));
        write(fd, &[b'm'; 16]);
        close(fd);
    }
}

/// First, for i in 0..churn (default 0): create c{i:05}, write 0+16, unlink c{i:05}
/// (recorded while the ring is nearly empty; their inode numbers are free for reuse).
/// Then for i in 0..n (default 1000): every `mkdir_every`-th i (default 10) first mkdirs
/// d{i:05}; then create {i:05}-{'x' * name_len} (default 100), write 0+size (default
/// 65536).
fn overflow(d: &str, p: &Params) {
    for i in 0..param(p, "churn", 0) {
        let path = format!("{d}/c{i:05}");
        let fd = new_file(&path);
        write(fd, &[b'c'; 16]);
        close(fd);
        unlink(&path);
    }
    let n = param(p, "n", 1000);
    let size = param(p, "size", 65536);
    let name_len = param(p, "name_len", 100);
    let every = param(p, "mkdir_every", 10).max(1);
    let data = vec![b'o'; size];
    let pad = "x".repeat(name_len);
    for i in 0..n {
        if i % every == 0 {
            mkdir(&format!("{d}/d{i:05}"), 0o755);
        }
        let fd = new_file(&format!("{d}/{i:05}-{pad}"));
        write(fd, &data);
        close(fd);
    }
}

/// Namespace operations only, all directly in DIR (which outlives the capture, so
/// fanotify can name the parent of every event): create f (O_CREAT|O_RDONLY, so no
/// close-after-write); mkdir d; rename f → g; symlink "g" at kept (left in place);
/// symlink "g" at s; unlink s; rmdir d; unlink g.
fn names(d: &str) {
    // fanotify merges queued events on the same name (a mkdir and a later rmdir become one
    // event) and resolves names only when it reads them, so a burst loses order and types.
    // The fallback's promise is exactness for a reader that keeps up: pace the operations.
    let settle = || std::thread::sleep(std::time::Duration::from_millis(100));
    close(openat(
        AT_FDCWD,
        &format!("{d}/f"),
        O_CREAT | O_RDONLY,
        0o644,
    ));
    settle();
    mkdir(&format!("{d}/d"), 0o755);
    settle();
    rename(&format!("{d}/f"), &format!("{d}/g"));
    settle();
    symlink("g", &format!("{d}/kept"));
    settle();
    symlink("g", &format!("{d}/s"));
    settle();
    unlink(&format!("{d}/s"));
    settle();
    rmdir(&format!("{d}/d"));
    settle();
    unlink(&format!("{d}/g"));
}

/// create m (O_CREAT|O_RDONLY); then modifications only: open for writing, write, close;
/// chmod 0600; setxattr user.m; truncate 2.
fn modify(d: &str) {
    let path = format!("{d}/m");
    close(openat(AT_FDCWD, &path, O_CREAT | O_RDONLY, 0o644));
    let fd = open(&path, O_WRONLY, 0);
    write(fd, b"modified");
    close(fd);
    chmod(&path, 0o600);
    setxattr(&path, "user.m", b"1");
    truncate(&path, 2);
}

fn ino(path: &str) -> u64 {
    std::fs::symlink_metadata(path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
}

/// Inode reuse under overflow. mkdir old, mkdir new; for k in 0..K: create old/x{k},
/// write 0+16 (recorded: the ring is empty). Then 24 writes of 64 KiB to `fill` (with
/// ThrottleStart = StopReplicating = 90 % of a 1 MiB ring, inline records stop the
/// ring). Then, with nothing recorded any more, for each k: unlinkat(old, "x{k}") and at
/// once create new/y{k}, write 0+16: ext4 hands y{k} the inode x{k} just freed. Returns
/// `[{"x": ino, "y": ino}, ...]` so the test knows which inodes were reused.
fn reuse(d: &str, k: usize) -> Value {
    mkdir(&format!("{d}/old"), 0o755);
    mkdir(&format!("{d}/new"), 0o755);
    let mut xs = Vec::new();
    for i in 0..k {
        let x = format!("{d}/old/x{i:03}");
        let fd = new_file(&x);
        write(fd, &[b'x'; 16]);
        close(fd);
        xs.push(ino(&x));
    }
    let fd = new_file(&format!("{d}/fill"));
    let block = vec![b'f'; 65536];
    for _ in 0..24 {
        write(fd, &block);
    }
    close(fd);
    let old = dir_fd(&format!("{d}/old"));
    let mut pairs = Vec::new();
    for (i, x) in xs.iter().enumerate() {
        unlinkat(old, &format!("x{i:03}"), 0);
        let y = format!("{d}/new/y{i:03}");
        let fd = new_file(&y);
        write(fd, &[b'y'; 16]);
        close(fd);
        pairs.push(json!({ "x": x, "y": ino(&y) }));
    }
    close(old);
    Value::Array(pairs)
}
