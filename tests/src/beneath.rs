//! Changing files beneath the write-family system calls, for the tests of the second layer
//! of capture: a shared writable mapping, `fio` (io_uring, libaio), `cp`, `xfs_io`, and
//! one sequence of all of them that replication tests run against a live replica.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A shared writable mapping of the first `len` bytes of a file; unmapped on drop.
pub struct Mapping {
    addr: *mut u8,
    len: usize,
}

impl Mapping {
    pub fn new(f: &std::fs::File, len: usize) -> Mapping {
        // SAFETY: a fresh mapping of an open file; checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED, "mmap");
        Mapping {
            addr: addr as *mut u8,
            len,
        }
    }

    /// Stores `bytes` at `at` through the mapping (no system call).
    pub fn store(&self, at: usize, bytes: &[u8]) {
        assert!(at + bytes.len() <= self.len);
        // SAFETY: inside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.addr.add(at), bytes.len()) };
    }

    pub fn msync(&self) {
        // SAFETY: the whole mapping.
        let r = unsafe { libc::msync(self.addr as *mut _, self.len, libc::MS_SYNC) };
        assert_eq!(r, 0, "msync: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.addr as *mut _, self.len) };
    }
}

/// syncfs on the file system holding `f`: writes back every dirty page on it.
pub fn syncfs(f: &std::fs::File) {
    // SAFETY: syncfs on an open fd.
    assert_eq!(unsafe { libc::syncfs(f.as_raw_fd()) }, 0, "syncfs");
}

/// Runs a command to success, panicking with its stderr otherwise.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `fio` writing 4 KiB blocks of `size` bytes (`64k`, `256k`) into `file`, in order or
/// at random (`rw`: `write`, `randwrite`), with `engine` (`io_uring`, `libaio`), direct
/// or buffered. `scripts/setup` installs fio.
pub fn fio(file: &Path, engine: &str, direct: bool, rw: &str, size: &str) {
    run(Command::new("fio")
        .args(["--name=rill", "--bs=4k", "--iodepth=8", "--fallocate=none"])
        .args([
            "--randrepeat=0",
            &format!("--rw={rw}"),
            &format!("--size={size}"),
        ])
        .arg(format!("--ioengine={engine}"))
        .arg(format!("--direct={}", u8::from(direct)))
        .arg(format!("--filename={}", file.display())));
}

/// Every way of changing files beneath the write-family system calls, in `src` (an XFS
/// with reflinks: see `Xfs`), one step at a time; after each, `converge(step, limit)`
/// must see the replica equal the source within `limit`. Stores into a shared mapping
/// (msynced; a store into a clean page; one into a page already dirty, written back by
/// syncfs; five msynced rounds in a row, within 6 s each), io_uring writes buffered and
/// O_DIRECT, libaio O_DIRECT writes, `cp --reflink=always` and plain `cp` (a reflink on
/// XFS), FICLONERANGE and FIDEDUPERANGE (`xfs_io`), a reflink copy partly overwritten.
pub fn every_way(src: &Path, converge: &mut dyn FnMut(&str, Duration)) {
    let limit = Duration::from_secs(20);
    let mut step = |what: &str, limit: Duration, f: &mut dyn FnMut()| {
        f();
        converge(what, limit);
    };
    step("ordinary writes", limit, &mut || {
        std::fs::write(src.join("mapped"), crate::data_pattern(65536, 1)).unwrap();
        std::fs::write(src.join("big"), crate::data_pattern(4 << 20, 5)).unwrap();
        std::fs::write(src.join("one-mib"), vec![0u8; 1 << 20]).unwrap();
    });
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(src.join("mapped"))
        .unwrap();
    let m = Mapping::new(&f, 65536);
    step("stores into a shared mapping, msync", limit, &mut || {
        m.store(1000, b"stored, then msynced");
        m.store(40000, b"another page");
        m.msync();
    });
    step(
        "a store into a clean page of the mapping",
        limit,
        &mut || {
            m.store(2000, b"first store, never msynced");
        },
    );
    step(
        "a store into the same dirty page, then syncfs",
        limit,
        &mut || {
            m.store(3000, b"second store into the dirty page");
            syncfs(&f);
        },
    );
    // A file changed again and again reaches the replica each time as fast: its remirrors
    // in a row are not taken for a name the target keeps refusing (whose remirrors slow
    // down, up to 5 minutes apart).
    for round in 0..5u8 {
        let what = format!("msynced stores, round {round}");
        step(&what, Duration::from_secs(6), &mut || {
            m.store(4000, &[b'a' + round; 64]);
            m.msync();
        });
    }
    drop(m);
    let big = src.join("big");
    for (what, engine, direct) in [
        ("fio io_uring buffered writes", "io_uring", false),
        ("fio io_uring O_DIRECT writes", "io_uring", true),
        ("fio libaio O_DIRECT writes", "libaio", true),
    ] {
        step(what, limit, &mut || {
            fio(&big, engine, direct, "randwrite", "256k")
        });
    }
    let cp = |from: &Path, to: &Path, reflink: bool| {
        let mut cmd = Command::new("cp");
        if reflink {
            cmd.arg("--reflink=always");
        }
        run(cmd.arg(from).arg(to));
    };
    step("cp --reflink=always, and plain cp", limit, &mut || {
        cp(&big, &src.join("reflinked"), true);
        cp(&big, &src.join("copied"), false);
    });
    step(
        "FICLONERANGE and FIDEDUPERANGE (xfs_io)",
        limit,
        &mut || {
            let from = big.display().to_string();
            run(Command::new("xfs_io")
                .args(["-c", &format!("reflink {from} 65536 262144 131072")])
                .arg(src.join("one-mib")));
            run(Command::new("xfs_io")
                .args(["-c", &format!("dedupe {from} 0 0 65536")])
                .arg(src.join("copied")));
        },
    );
    step(
        "a reflink copy with 3 blocks overwritten by dd",
        limit,
        &mut || {
            let copy = src.join("overwritten");
            cp(&big, &copy, true);
            run(Command::new("dd")
                .args([
                    "if=/dev/urandom",
                    "bs=4096",
                    "count=3",
                    "seek=10",
                    "conv=notrunc",
                ])
                .arg(format!("of={}", copy.display())));
        },
    );
}
