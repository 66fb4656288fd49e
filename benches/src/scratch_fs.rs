//! A fresh ext4 file system for workload (b), loop-mounted from a sparse image.
//!
//! ext4 avoids reusing inodes deleted in the last minutes, and every create then scans
//! them: a file system that earlier runs (or anything else on the machine) filled and
//! emptied made `tar -xf` up to 6x slower for minutes, in both variants, which swamped the
//! driver's share. A file system made for the run starts with no deleted inodes, and
//! unmounting it at the end deletes nothing the next run would trip over. Inode tables are
//! initialised by mkfs, so no background `ext4lazyinit` competes with the measurements.
//!
//! The loop device reads and writes its image with direct I/O. A buffered loop device
//! copies every block written back a second time, into the image's page cache, before the
//! disk sees it: a cost a disk does not have, paid by whichever tool makes its writes
//! durable (measured: about 0.9 s of CPU per GiB synced, on 2 vCPUs that also run the
//! workload).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::run;

pub struct ScratchFs {
    image: PathBuf,
    mount: PathBuf,
    device: PathBuf,
}

impl ScratchFs {
    /// Makes a file system of `bytes` with room for `inodes` files in `dir` and mounts it.
    pub fn create(dir: &Path, bytes: u64, inodes: u64) -> Result<ScratchFs> {
        let image = dir.join("scratch-ext4.img");
        let mount = dir.join("scratch");
        let file = std::fs::File::create(&image)
            .with_context(|| format!("creating {}", image.display()))?;
        file.set_len(bytes)
            .with_context(|| format!("sizing {}", image.display()))?;
        drop(file);
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-N", &inodes.to_string()])
            .args(["-E", "lazy_itable_init=0,lazy_journal_init=0"])
            .arg(&image))
        .context("making the scratch file system (mkfs.ext4 from e2fsprogs)")?;
        std::fs::create_dir(&mount).with_context(|| format!("creating {}", mount.display()))?;
        let device = PathBuf::from(
            run(Command::new("losetup")
                .args(["--direct-io=on", "--find", "--show"])
                .arg(&image))
            .context("attaching the scratch image to a loop device (losetup from util-linux)")?,
        );
        if let Err(e) = run(Command::new("mount").arg(&device).arg(&mount)) {
            let _ = run(Command::new("losetup").arg("-d").arg(&device));
            return Err(e.context("mounting the scratch file system"));
        }
        Ok(ScratchFs {
            image,
            mount,
            device,
        })
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("umount").arg(&self.mount)) {
            eprintln!(
                "rill-bench: {e}; unmount {} and detach {} by hand",
                self.mount.display(),
                self.device.display()
            );
            return;
        }
        let _ = std::fs::remove_dir(&self.mount);
        if let Err(e) = run(Command::new("losetup").arg("-d").arg(&self.device)) {
            eprintln!("rill-bench: {e}; detach {} by hand", self.device.display());
            return;
        }
        let _ = std::fs::remove_file(&self.image);
    }
}
