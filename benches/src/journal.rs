//! `rill-bench journal`: what write-through costs the disk queue.
//!
//! Appends of 4 KiB payloads through the engine's journal with `O_DSYNC` and with
//! `fdatasync` per append, alternated over rounds so the disk's drift hits both; beside
//! them, as baselines in the same run, buffered appends (one flush at the end), buffered
//! appends paying the free-space floor's `statvfs`, and raw `pwrite` + `fdatasync` into a
//! preallocated zeroed file (what recycling segments could buy).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use rill_engine::storage::disk_queue::{DiskQueue, DiskQueueConfig, SyncMode};

use super::report::median;

const PAYLOAD: usize = 4096;

/// Appends per second through the journal.
fn journal_rate(
    dir: &Path,
    appends: u64,
    write_through: bool,
    mode: SyncMode,
    free_floor: bool,
) -> Result<f64> {
    let dir = tempfile::tempdir_in(dir).context("creating a journal directory")?;
    let mut c = DiskQueueConfig::new(dir.path());
    c.segment_bytes = 64 << 20;
    c.space_max_bytes = 0;
    // Non-zero: one statvfs per append, the cost of QJournalFreeSpaceMin.
    c.free_space_min_bytes = u64::from(free_floor);
    c.write_through = write_through;
    c.sync_mode = mode;
    let (mut w, _r, _) = DiskQueue::open(c)?;
    let payload = vec![0x5a; PAYLOAD];
    w.append(0, &payload)?; // creates the segment outside the timing
    let t = Instant::now();
    for seq in 1..=appends {
        w.append(seq, &payload)?;
    }
    w.flush()?;
    Ok(appends as f64 / t.elapsed().as_secs_f64())
}

/// Appends per second of raw `pwrite` + `fdatasync` over preallocated, zeroed blocks.
fn prealloc_rate(dir: &Path, appends: u64) -> Result<f64> {
    let dir = tempfile::tempdir_in(dir)?;
    let f = std::fs::File::create(dir.path().join("pre"))?;
    let frame = PAYLOAD as u64 + 24;
    let zeros = vec![0u8; 1 << 20];
    for i in 0..(appends * frame).div_ceil(1 << 20) {
        f.write_all_at(&zeros, i << 20)?;
    }
    f.sync_all()?;
    let buf = vec![0x5a; frame as usize];
    let t = Instant::now();
    for i in 0..appends {
        f.write_all_at(&buf, i * frame)?;
        f.sync_data()?;
    }
    Ok(appends as f64 / t.elapsed().as_secs_f64())
}

/// Runs `rounds` alternated rounds of `appends` appends in a directory under `dir`.
pub fn run(dir: &Path, appends: u64, rounds: usize) -> Result<String> {
    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("write-through, O_DSYNC", vec![]),
        ("write-through, fdatasync", vec![]),
        ("buffered, one flush (baseline)", vec![]),
        ("buffered + free-space floor (statvfs)", vec![]),
        ("raw pwrite+fdatasync, preallocated", vec![]),
    ];
    for _ in 0..rounds {
        rows[0]
            .1
            .push(journal_rate(dir, appends, true, SyncMode::Dsync, false)?);
        rows[1].1.push(journal_rate(
            dir,
            appends,
            true,
            SyncMode::Fdatasync,
            false,
        )?);
        rows[2].1.push(journal_rate(
            dir,
            appends,
            false,
            SyncMode::Fdatasync,
            false,
        )?);
        rows[3].1.push(journal_rate(
            dir,
            appends,
            false,
            SyncMode::Fdatasync,
            true,
        )?);
        rows[4].1.push(prealloc_rate(dir, appends)?);
    }
    let base = median(&rows[2].1);
    let mut out = format!(
        "## rill-bench journal: {appends} appends of {PAYLOAD} bytes per round, {rounds} alternated rounds, in {}\n\n\
         | variant | median appends/s | us/append | vs buffered |\n|---|---|---|---|\n",
        dir.display()
    );
    for (name, v) in &rows {
        let m = median(v);
        out.push_str(&format!(
            "| {name} | {m:.0} | {:.1} | {:.3}x |\n",
            1e6 / m,
            m / base
        ));
    }
    Ok(out)
}
