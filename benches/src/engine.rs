//! `rill-bench engine`: the source queue, each number beside a baseline from the same run.
//!
//! - memory queue throughput: push + pop of 4 KiB writes through the engine's queue, beside
//!   the same events through a `std::sync::mpsc` channel;
//! - spill throughput: operations pushed straight to the disk journal (encode, checksum,
//!   write, one `fdatasync` at the end), beside `dd` writing the same bytes with
//!   `conv=fdatasync` (the same sync policy);
//! - resident memory while a backlog of 4x `QMemoryBufferMax` builds with no consumer
//!   (the excess must go to disk, not to memory);
//! - recovery: time to reopen a journal of N MB and read it all back, per GB.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rill_engine::storage::disk_queue::{DiskQueue, DiskQueueConfig};
use rill_engine::storage::queue::{queue, AtLimit, Consumer, Limits, Producer, Pushed};
use rill_ops::{Event, Op};

/// The `i`th of a run of writes of `size` bytes, over 64 files (the criterion
/// micro-benchmarks queue the same operations).
pub fn event(i: u64, size: usize) -> Event {
    let data = Some(vec![(i % 251) as u8; size].into());
    let op = Op::Write {
        offset: i * size as u64,
        len: size as u64,
        data,
    };
    Event::new(format!("/data/file-{}", i % 64), op)
}

/// A queue over a fresh journal in `dir` that spills past `memory_bytes`.
pub fn open_queue(dir: &Path, memory_bytes: u64) -> Result<(Producer, Consumer)> {
    let mut cfg = DiskQueueConfig::new(dir);
    cfg.segment_bytes = 64 << 20;
    cfg.free_space_min_bytes = 0;
    let (w, r, rec) = DiskQueue::open(cfg)?;
    let limits = Limits {
        memory_bytes,
        memory_ops: u64::MAX,
        spill_percent: 100,
        alert_percent: 50,
        at_limit: AtLimit::QueueToDisk,
    };
    Ok(queue(limits, w, r, rec.last_seq))
}

/// A field of /proc/self/status in KiB (VmRSS: now, VmHWM: the peak so far).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Push `n` events then pop them all; ops/s.
fn queue_rate(dir: &Path, n: u64) -> Result<f64> {
    let (mut p, mut c) = open_queue(dir, 4 << 30)?;
    let events: Vec<Event> = (0..n).map(|i| event(i, 4096)).collect();
    let t = Instant::now();
    for ev in events {
        if !matches!(p.push(ev)?, Pushed::Memory(_)) {
            bail!("the memory queue spilled during the in-memory measurement");
        }
    }
    let mut got = 0;
    while c.pop(Duration::ZERO)?.is_some() {
        got += 1;
    }
    anyhow::ensure!(got == n, "popped {got} of {n}");
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn channel_rate(n: u64) -> f64 {
    let events: Vec<Event> = (0..n).map(|i| event(i, 4096)).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = Instant::now();
    for ev in events {
        let _ = tx.send(ev);
    }
    drop(tx);
    let got = rx.iter().count() as u64;
    assert_eq!(got, n);
    n as f64 / t.elapsed().as_secs_f64()
}

/// MB/s of operations pushed straight to disk, made durable at the end.
fn spill_rate(dir: &Path, bytes: u64) -> Result<f64> {
    let (mut p, _c) = open_queue(dir, 1)?;
    let size = 64 << 10;
    let n = bytes / size as u64;
    let events: Vec<Event> = (0..n).map(|i| event(i, size)).collect();
    let t = Instant::now();
    for ev in events {
        if !matches!(p.push(ev)?, Pushed::Disk(_)) {
            bail!("expected every operation on disk");
        }
    }
    p.flush()?;
    Ok(bytes as f64 / 1e6 / t.elapsed().as_secs_f64())
}

fn dd_rate(dir: &Path, bytes: u64) -> Result<f64> {
    let out = dir.join("dd.out");
    let t = Instant::now();
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", out.display()))
        .args([
            "bs=64k",
            &format!("count={}", bytes / (64 << 10)),
            "conv=fdatasync",
            "status=none",
        ])
        .status()
        .context("running dd")?;
    anyhow::ensure!(status.success(), "dd failed: {status}");
    let rate = bytes as f64 / 1e6 / t.elapsed().as_secs_f64();
    std::fs::remove_file(&out)?;
    Ok(rate)
}

/// Peak resident-memory growth (MiB) while pushing 4x `memory_mb` with no consumer.
/// Measured first in the run: the allocator keeps what earlier measurements freed, which
/// would hide growth.
fn backlog_rss(dir: &Path, memory_mb: u64) -> Result<(f64, u64, u64)> {
    let before = status_kib("VmRSS:");
    let (mut p, _c) = open_queue(dir, memory_mb << 20)?;
    let size = 64 << 10;
    let n = ((4 * memory_mb) << 20) / size as u64;
    let mut disk = 0;
    for i in 0..n {
        if matches!(p.push(event(i, size))?, Pushed::Disk(_)) {
            disk += 1;
        }
    }
    p.flush()?;
    let peak = status_kib("VmHWM:");
    Ok((peak.saturating_sub(before) as f64 / 1024.0, n, disk))
}

/// Seconds per GB to reopen (recover) a journal and read every record back.
fn recovery_rate(dir: &Path, bytes: u64) -> Result<f64> {
    {
        let (mut p, _c) = open_queue(dir, 1)?;
        for i in 0..bytes / (64 << 10) {
            p.push(event(i, 64 << 10))?;
        }
        p.flush()?;
    }
    // Cold-ish: written back, but still in the page cache (dropping it needs the whole
    // machine); what is measured is the scan, checksums and decode.
    let t = Instant::now();
    let (_p, mut c) = open_queue(dir, 1)?;
    let mut n = 0u64;
    while c.pop(Duration::ZERO)?.is_some() {
        n += 1;
    }
    anyhow::ensure!(n == bytes / (64 << 10), "recovered {n} records");
    Ok(t.elapsed().as_secs_f64() / (bytes as f64 / 1e9))
}

pub fn run(dir: &Path, ops: u64, spill_mb: u64, memory_mb: u64) -> Result<String> {
    let tmp = tempfile::tempdir_in(dir).context("creating a temporary directory")?;
    let sub = |name: &str| -> Result<std::path::PathBuf> {
        let p = tmp.path().join(name);
        std::fs::create_dir(&p)?;
        Ok(p)
    };
    let (rss, backlog_ops, on_disk) = backlog_rss(&sub("backlog")?, memory_mb)?;
    let q = queue_rate(&sub("q")?, ops)?;
    let ch = channel_rate(ops);
    let spill = spill_rate(&sub("spill")?, spill_mb << 20)?;
    let dd = dd_rate(tmp.path(), spill_mb << 20)?;
    let rec = recovery_rate(&sub("recovery")?, spill_mb << 20)?;
    Ok(format!(
        "## rill-bench engine ({})\n\n\
         | measure | rill | baseline | ratio | target |\n|---|---|---|---|---|\n\
         | memory queue, 4 KiB writes, push+pop | {:.0} ops/s | std mpsc channel {:.0} ops/s | {:.2}x | |\n\
         | spill to disk, 64 KiB writes, {} MB, fdatasync at end | {:.0} MB/s | dd conv=fdatasync {:.0} MB/s | {:.2}x | >= 0.8x: {} |\n\
         | peak resident memory growth, backlog of 4 x QMemoryBufferMax ({} MB) | {:.0} MiB ({} of {} ops on disk) | limit {} MB + 64 MB | | {} |\n\
         | recovery: reopen + read back {} MB | {:.2} s per GB | | | |\n",
        dir.display(),
        q, ch, q / ch,
        spill_mb, spill, dd, spill / dd, if spill / dd >= 0.8 { "met" } else { "**missed**" },
        memory_mb, rss, on_disk, backlog_ops, memory_mb,
        if rss <= (memory_mb + 64) as f64 { "met" } else { "**missed**" },
        spill_mb, rec,
    ))
}
