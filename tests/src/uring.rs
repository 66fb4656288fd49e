//! Changing names and attributes through io_uring, one request at a time: the system
//! call layer sees only `io_uring_enter`, so these reach a replica only through the
//! second layer of capture (`ebpf/src/uring.rs`).
//!
//! Each method submits one request, waits for its completion and panics unless it
//! succeeded. Names are passed as the kernel gets them: relative to a directory
//! descriptor ([`Dir`]) or absolute.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use io_uring::{opcode, squeue, types, IoUring};

/// A directory descriptor names are relative to (`O_PATH | O_DIRECTORY`).
pub struct Dir(OwnedFd);

impl Dir {
    pub fn open(p: &Path) -> Dir {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(p)
            .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
        Dir(f.into())
    }

    fn fd(&self) -> types::Fd {
        types::Fd(self.0.as_raw_fd())
    }
}

fn c(s: impl AsRef<std::ffi::OsStr>) -> CString {
    CString::new(s.as_ref().as_bytes()).expect("no NUL in test names")
}

/// An io_uring instance with one registered (sparse) fixed-file slot.
pub struct Uring(IoUring);

impl Default for Uring {
    fn default() -> Self {
        Self::new()
    }
}

impl Uring {
    pub fn new() -> Uring {
        let ring = IoUring::new(8).expect("io_uring_setup");
        ring.submitter()
            .register_files_sparse(1)
            .expect("register a fixed-file slot");
        Uring(ring)
    }

    /// Submits `e` and waits for its completion; its result, which must not be an error.
    pub fn run(&mut self, what: &str, e: squeue::Entry) -> i32 {
        // SAFETY: every pointer in `e` outlives this call, which waits for completion.
        unsafe { self.0.submission().push(&e) }.expect("room in the submission queue");
        self.0.submit_and_wait(1).expect("io_uring_enter");
        let cqe = self.0.completion().next().expect("a completion");
        let res = cqe.result();
        assert!(
            res >= 0,
            "io_uring {what}: {}",
            std::io::Error::from_raw_os_error(-res)
        );
        res
    }

    pub fn rename(&mut self, from_dir: &Dir, from: &str, to_dir: &Dir, to: &str) {
        let (a, b) = (c(from), c(to));
        let e = opcode::RenameAt::new(from_dir.fd(), a.as_ptr(), to_dir.fd(), b.as_ptr());
        self.run("rename", e.build());
    }

    /// `unlinkat`; with `dir` set, `AT_REMOVEDIR` (an rmdir).
    pub fn unlink(&mut self, at: &Dir, name: &str, dir: bool) {
        let n = c(name);
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        let e = opcode::UnlinkAt::new(at.fd(), n.as_ptr()).flags(flags);
        self.run("unlink", e.build());
    }

    pub fn mkdir(&mut self, at: &Dir, name: &str, mode: u32) {
        let n = c(name);
        let e = opcode::MkDirAt::new(at.fd(), n.as_ptr()).mode(mode);
        self.run("mkdir", e.build());
    }

    pub fn symlink(&mut self, target: &str, at: &Dir, link: &str) {
        let (t, l) = (c(target), c(link));
        let e = opcode::SymlinkAt::new(at.fd(), t.as_ptr(), l.as_ptr());
        self.run("symlink", e.build());
    }

    pub fn link(&mut self, from_dir: &Dir, from: &str, to_dir: &Dir, to: &str) {
        let (a, b) = (c(from), c(to));
        let e = opcode::LinkAt::new(from_dir.fd(), a.as_ptr(), to_dir.fd(), b.as_ptr());
        self.run("link", e.build());
    }

    /// `openat` with `flags` (`O_CREAT`, `O_TRUNC`...) into a descriptor, which it
    /// returns.
    pub fn open(&mut self, at: &Dir, name: &str, flags: i32, mode: u32) -> OwnedFd {
        let n = c(name);
        let e = opcode::OpenAt::new(at.fd(), n.as_ptr())
            .flags(flags | libc::O_CLOEXEC)
            .mode(mode);
        let fd = self.run("openat", e.build());
        // SAFETY: a descriptor the kernel just opened for this process.
        unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
    }

    /// `openat2` with `flags` into the fixed-file slot 0 (no descriptor), which is
    /// closed again after.
    pub fn open_fixed(&mut self, at: &Dir, name: &str, flags: u64, mode: u64) {
        let n = c(name);
        let how = types::OpenHow::new().flags(flags).mode(mode);
        let slot = types::DestinationSlot::try_from_slot_target(0).expect("slot 0");
        let e = opcode::OpenAt2::new(at.fd(), n.as_ptr(), &how).file_index(Some(slot));
        self.run("openat2 into a fixed slot", e.build());
        let close = opcode::Close::new(types::Fixed(0));
        self.run("close the fixed slot", close.build());
    }

    /// Writes `data` at `offset` of `fd`.
    pub fn write(&mut self, fd: &OwnedFd, offset: u64, data: &[u8]) {
        let e = opcode::Write::new(types::Fd(fd.as_raw_fd()), data.as_ptr(), data.len() as u32)
            .offset(offset);
        let n = self.run("write", e.build());
        assert_eq!(n as usize, data.len(), "a short io_uring write");
    }

    /// `setxattr` by (absolute) path.
    pub fn setxattr(&mut self, path: &Path, name: &str, value: &[u8]) {
        let (p, n) = (c(path.as_os_str()), c(name));
        let e = opcode::SetXattr::new(
            n.as_ptr(),
            value.as_ptr().cast(),
            p.as_ptr(),
            value.len() as u32,
        );
        self.run("setxattr", e.build());
    }

    pub fn fsetxattr(&mut self, fd: &impl AsRawFd, name: &str, value: &[u8]) {
        let n = c(name);
        let e = opcode::FSetXattr::new(
            types::Fd(fd.as_raw_fd()),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len() as u32,
        );
        self.run("fsetxattr", e.build());
    }
}
