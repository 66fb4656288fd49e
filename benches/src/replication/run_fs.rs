//! A run's two file systems, made fresh for it, and the wait before they go: nothing of
//! one run (deleted inodes, dirty pages, files a peer still holds open) reaches the next.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::super::scratch_fs::ScratchFs;
use super::Env;

/// A run's two file systems: the source's and the replica's (inside the rsync module).
pub(super) struct RunFs {
    // Field order is drop order: the replica's file system first.
    dst_fs: ScratchFs,
    src_fs: ScratchFs,
    pub(super) src: PathBuf,
    pub(super) dst: PathBuf,
}

impl RunFs {
    pub(super) fn create(env: &Env, id: u32, bytes: u64, inodes: u64) -> Result<RunFs> {
        let sdir = env.tmp.join("runs").join(id.to_string());
        let ddir = env.tmp.join("rsync-root").join(id.to_string());
        std::fs::create_dir_all(&sdir)?;
        std::fs::create_dir_all(&ddir)?;
        let src_fs = ScratchFs::create(&sdir, bytes, inodes)?;
        let dst_fs = ScratchFs::create(&ddir, 2 * bytes + (256 << 20), inodes)?;
        let src = src_fs.path().join("src");
        let dst = dst_fs.path().join("replica");
        std::fs::create_dir(&src)?;
        std::fs::create_dir(&dst)?;
        Ok(RunFs {
            dst_fs,
            src_fs,
            src,
            dst,
        })
    }

    pub(super) fn mounts(&self) -> [&Path; 2] {
        [self.src_fs.path(), self.dst_fs.path()]
    }
}

/// Whether any process has its working directory or an open file under one of `mounts`.
fn busy(mounts: &[&Path]) -> Option<u32> {
    let under = |p: &Path| mounts.iter().any(|m| p.starts_with(m));
    let rd = std::fs::read_dir("/proc").ok()?;
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let dir = e.path();
        if std::fs::read_link(dir.join("cwd")).is_ok_and(|p| under(&p)) {
            return Some(pid);
        }
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            if fds
                .flatten()
                .filter_map(|f| std::fs::read_link(f.path()).ok())
                .any(|p| under(&p))
            {
                return Some(pid);
            }
        }
    }
    None
}

/// Waits (at most 15 s) until no process keeps a finished run's file systems busy: the
/// target rilld holds files open for TGCloseDelay, and the rsync daemon's children may
/// still be exiting when the client returns.
pub(super) fn wait_files_closed(mounts: &[&Path]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        last = busy(mounts);
        if last.is_none() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(pid) = last {
        eprintln!(
            "rill-bench: warning: process {pid} still uses a finished run's file system after 15 s"
        );
    }
}
