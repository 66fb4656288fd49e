//! The workloads: a pseudo-random source file made once, the 1 GiB write (dd), the random
//! 4 KiB overwrites and the paced writer of the lag measurement.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::super::{check_stop, StopFlag};
use rill_tools::rng::Rng;

/// Size of each overwrite and of each paced write.
pub const PAGE: usize = 4096;

/// Writes `bytes` of seeded pseudo-random data (incompressible) to `path`.
pub fn make_random_file(path: &Path, bytes: u64, seed: u64) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])
            .with_context(|| format!("writing {}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

/// `dd if=FROM of=TO bs=1M`: plain read/write calls, as an application writes a file.
/// (Not `cp`: coreutils' cp copies with copy_file_range, which never passes through write.)
pub fn dd(from: &Path, to: &Path, count_mb: Option<u64>) -> Result<()> {
    let mut cmd = Command::new("dd");
    cmd.arg(format!("if={}", from.display()))
        .arg(format!("of={}", to.display()))
        .args(["bs=1M", "status=none"]);
    if let Some(n) = count_mb {
        cmd.arg(format!("count={n}"));
    }
    let out = cmd.stdin(Stdio::null()).output().context("running dd")?;
    if !out.status.success() {
        bail!(
            "dd {} -> {} failed ({}): {}",
            from.display(),
            to.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Scenario (c): `writes` pwrites of 4 KiB of fresh pseudo-random data at random 4 KiB
/// aligned offsets inside `path`, all from `seed`. Returns the distinct pages written.
pub fn overwrite(path: &Path, writes: u64, seed: u64, stop: &StopFlag) -> Result<u64> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let pages = f.metadata()?.len() / PAGE as u64;
    if pages == 0 {
        bail!("{} is smaller than one page", path.display());
    }
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; PAGE];
    let mut seen = std::collections::HashSet::new();
    for i in 0..writes {
        let page = rng.below(pages);
        seen.insert(page);
        rng.fill(&mut buf);
        pwrite(&f, &buf, page * PAGE as u64, path)?;
        if i % 1024 == 1023 {
            check_stop(stop)?;
        }
    }
    Ok(seen.len() as u64)
}

fn pwrite(f: &File, buf: &[u8], off: u64, path: &Path) -> Result<()> {
    // SAFETY: `buf` is valid for its length and outlives the call; the fd is open.
    let r = unsafe {
        libc::pwrite(
            f.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            off as libc::off_t,
        )
    };
    if r != buf.len() as isize {
        bail!(
            "pwrite to {} at {off}: {r}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// What the paced writer did.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Paced {
    pub writes: u64,
    pub seconds: f64,
    /// The largest shortfall behind the schedule, in writes (the writer was late).
    pub max_behind: u64,
}

/// Writes 4 KiB pages of `path` at random offsets at `rate` writes/s for `duration`, on a
/// schedule (every millisecond, as many writes as are due), so the rate is steady.
pub fn paced(
    path: &Path,
    rate: u64,
    duration: Duration,
    seed: u64,
    stop: &StopFlag,
) -> Result<Paced> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let pages = f.metadata()?.len() / PAGE as u64;
    if pages == 0 {
        bail!("{} is smaller than one page", path.display());
    }
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; PAGE];
    let t0 = Instant::now();
    let mut done = 0u64;
    let mut max_behind = 0u64;
    loop {
        let elapsed = t0.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * rate as f64) as u64;
        max_behind = max_behind.max(due.saturating_sub(done));
        while done < due {
            rng.fill(&mut buf[..64]);
            pwrite(&f, &buf, rng.below(pages) * PAGE as u64, path)?;
            done += 1;
        }
        check_stop(stop)?;
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(Paced {
        writes: done,
        seconds: t0.elapsed().as_secs_f64(),
        max_behind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrites_are_reproducible() {
        let d = tempfile::tempdir().unwrap();
        let stop = StopFlag::new(false);
        for name in ["a", "b"] {
            make_random_file(&d.path().join(name), 64 * 4096, 7).unwrap();
            overwrite(&d.path().join(name), 100, 3, &stop).unwrap();
        }
        let a = std::fs::read(d.path().join("a")).unwrap();
        let b = std::fs::read(d.path().join("b")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64 * 4096);
    }
}
