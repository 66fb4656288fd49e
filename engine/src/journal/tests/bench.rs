//! Write-through cost, measured side by side in one run (ignored by default):
//!
//! ```text
//! cargo test -p rill-engine --release --lib journal::tests::bench -- --ignored --nocapture
//! ```
//!
//! Appends of 4 KiB payloads through the journal with `O_DSYNC` and with `fdatasync`,
//! alternated over several rounds so drift in the disk affects both alike; plus, for
//! reference, buffered appends (without and with the per-append `statvfs` that a
//! free-space floor costs) and raw `pwrite`+`fdatasync` into a preallocated,
//! zero-filled file (what segment recycling would buy). Set `RILL_JOURNAL_BENCH_DIR` to
//! measure another file system than the temporary directory's.

use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::*;

const PAYLOAD: usize = 4096;
const APPENDS: u64 = 2000;
const ROUNDS: usize = 5;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("RILL_JOURNAL_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// Appends per second through the journal.
fn journal_rate(write_through: bool, mode: SyncMode, free_floor: bool) -> f64 {
    let dir = bench_dir();
    let mut c = cfg(dir.path(), 64 << 20);
    c.free_space_min_bytes = free_floor as u64; // nonzero: one statvfs per append
    c.write_through = write_through;
    c.sync_mode = mode;
    let (mut w, _r, _) = Journal::open(c).unwrap();
    let payload = vec![0x5a; PAYLOAD];
    w.append(0, &payload).unwrap(); // create the segment outside the timing
    let t = Instant::now();
    for seq in 1..=APPENDS {
        w.append(seq, &payload).unwrap();
    }
    w.flush().unwrap();
    APPENDS as f64 / t.elapsed().as_secs_f64()
}

/// Appends per second of raw `pwrite` + `fdatasync` over preallocated, zeroed blocks.
fn prealloc_rate() -> f64 {
    let dir = bench_dir();
    let f = fs::File::create(dir.path().join("pre")).unwrap();
    let frame = PAYLOAD as u64 + 24;
    let zeros = vec![0u8; 1 << 20];
    let total = APPENDS * frame;
    for i in 0..total.div_ceil(1 << 20) {
        f.write_all_at(&zeros, i << 20).unwrap();
    }
    f.sync_all().unwrap();
    let buf = vec![0x5a; frame as usize];
    let t = Instant::now();
    for i in 0..APPENDS {
        f.write_all_at(&buf, i * frame).unwrap();
        f.sync_data().unwrap();
    }
    APPENDS as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
#[ignore]
fn bench_write_through() {
    let (mut dsync, mut fdatasync, mut pre) = (vec![], vec![], vec![]);
    let (mut buffered, mut buffered_floor) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        dsync.push(journal_rate(true, SyncMode::Dsync, false));
        fdatasync.push(journal_rate(true, SyncMode::Fdatasync, false));
        buffered.push(journal_rate(false, SyncMode::Fdatasync, false));
        buffered_floor.push(journal_rate(false, SyncMode::Fdatasync, true));
        pre.push(prealloc_rate());
    }
    let show = |name: &str, v: &Vec<f64>| {
        let r: Vec<String> = v.iter().map(|x| format!("{x:.0}")).collect();
        println!(
            "{name:<37} median {:>9.0} appends/s  {:>7.1} us/append  rounds [{}]",
            median(v.clone()),
            1e6 / median(v.clone()),
            r.join(" ")
        );
    };
    println!("journal appends of {PAYLOAD}-byte payloads, {APPENDS} per round, {ROUNDS} rounds:");
    show("write-through O_DSYNC", &dsync);
    show("write-through fdatasync", &fdatasync);
    show("buffered (one flush at the end)", &buffered);
    show("buffered, free-space floor (statvfs)", &buffered_floor);
    show("raw pwrite+fdatasync, preallocated", &pre);
}
