//! The benchmark's report: a markdown table for people, JSON for machines.
//!
//! The table shows medians (robust to one disturbed repetition) of the three variants
//! and their ratios: loaded/baseline (what capture costs), floor/baseline (what the
//! kernel charges for any program on those hooks) and loaded/floor (what rill's programs
//! and reader add, which is what the targets judge), with "met" or "MISSED" spelled out:
//! a missed target is reported, never hidden. The raw per-repetition numbers go to the
//! JSON file, and the paired ratios below the table, so the spread can be checked.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use rill_driver_linux::ring::RingReader;

use super::capture::{
    letter, CaptureResult, WorkloadResult, TARGET_DRAIN_RECORDS_PER_S, TARGET_RING_MB,
};

/// The median (mean of the middle two for an even count); 0 for no values.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// 1234567 -> "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with an SI prefix: "1.63 M", "812 k".
pub fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**MISSED**"
    }
}

/// A median time and the rate it makes: "1.091 s (917.0 k writes/s)".
fn time_cell(w: &WorkloadResult, secs: f64) -> String {
    let per_s = if secs > 0.0 { w.ops as f64 / secs } else { 0.0 };
    format!("{secs:.3} s ({} {}/s)", si(per_s), w.unit)
}

/// The target cell: the verdict on loaded/floor, and what would make it doubtful.
fn target_cell(w: &WorkloadResult) -> String {
    let mut judged = match (w.target_loaded_over_floor, w.meets_target()) {
        (Some(t), Some(ok)) => format!("<= {t:.2}x: {}", verdict(ok)),
        _ => "none".to_string(),
    };
    let lost = w.lost_fraction();
    if lost > 0.0 {
        // The loaded variant skipped work a working capture does: say so next to the ratio.
        let _ = write!(
            judged,
            ", **but not valid**: {:.1}% of the phase's ops were not recorded (dropped or \
             stopped), which makes the loaded run cheaper",
            lost * 100.0
        );
    }
    let throttled = w.throttled_fraction();
    if throttled > 0.01 {
        let _ = write!(
            judged,
            "; {:.0}% of recorded writes throttled to range-only",
            throttled * 100.0
        );
    }
    judged
}

fn row(out: &mut String, w: &WorkloadResult) {
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {:.2}x | **{:.2}x** | {:.2}x | {} |",
        w.name,
        time_cell(w, w.baseline_median()),
        time_cell(w, w.floor_median()),
        time_cell(w, w.loaded_median()),
        w.loaded_over_baseline(),
        w.loaded_over_floor(),
        w.floor_over_baseline(),
        target_cell(w)
    );
}

fn joined(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Per workload: the raw times and the ratios within each repetition, in run order.
fn spread(out: &mut String, r: &CaptureResult) {
    let _ = writeln!(out, "\nRaw times (s), in run order:");
    for w in r.workloads() {
        let _ = writeln!(
            out,
            "- {}: baseline [{}] floor [{}] loaded [{}]",
            w.name,
            joined(&w.baseline_seconds, 3),
            joined(&w.floor_seconds, 3),
            joined(&w.loaded_seconds(), 3)
        );
    }
    let _ = writeln!(
        out,
        "\nPaired ratios (within each repetition), in run order:"
    );
    for w in r.workloads() {
        let (lf, lb) = (
            w.paired_loaded_over_floor(),
            w.paired_loaded_over_baseline(),
        );
        let _ = writeln!(
            out,
            "- {}: loaded/floor [{}] median {:.2}x; loaded/baseline [{}] median {:.2}x",
            w.name,
            joined(&lf, 2),
            median(&lf),
            joined(&lb, 2),
            median(&lb)
        );
    }
}

/// The report printed to stdout.
pub fn markdown(r: &CaptureResult) -> String {
    let mut out = String::new();
    let s = &r.settings;
    let _ = writeln!(
        out,
        "## rill-bench capture: kernel {}, {} CPUs, {} repetitions per variant (alternated, order rotated), \
         RingSizeMB {}, InlineDataMax {}, reader RingReader (as the engine, batches of {} \
         records), extracted trees {}\n",
        r.kernel,
        r.cpus,
        r.reps,
        s.ring_size_mb,
        s.inline_data_max,
        RingReader::BATCH,
        if r.delete_between {
            "deleted between repetitions"
        } else {
            "deleted at the end"
        }
    );
    let _ = writeln!(
        out,
        "| workload | baseline (no program) | floor (programs that return at once) | loaded \
         (driver + reader) | loaded/baseline | loaded/floor | floor/baseline | target \
         (loaded/floor) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for w in r.workloads() {
        row(&mut out, w);
    }
    drain(&mut out, r);
    for w in [&r.tar, &r.mapped, &r.uring] {
        let t = w.driver_total();
        let _ = writeln!(
            out,
            "\nLoaded {}, summed over repetitions: {} records emitted, {} dirty marks, drops {} \
             (RecordsDropped {} + OpsStopped {}), range-only {}, throttled {}.",
            letter(w),
            thousands(t.records_emitted),
            thousands(t.dirty_marks),
            t.lost(),
            t.records_dropped,
            t.ops_stopped,
            thousands(t.writes_range_only),
            thousands(t.writes_throttled)
        );
    }
    spread(&mut out, r);
    let discarded: u32 = r.workloads().iter().map(|w| w.discarded).sum();
    if discarded > 0 {
        let _ = writeln!(
            out,
            "\n{discarded} repetition(s) were discarded and run again because somebody else's \
             rill capture was loaded while they ran."
        );
    }
    out
}

/// The paragraph on the reader's drain of loaded (a), judged against the target.
fn drain(out: &mut String, r: &CaptureResult) {
    let d = &r.drain;
    let target = if d.target_applies {
        let judged = if !d.meets_target && d.lost == 0 && d.reader_kept_up {
            format!(
                "**not demonstrated**: the workload produced only {} records/s and the reader \
                 kept up; from its CPU time it could drain about {} records/s",
                si(d.produced_records_per_s_median),
                si(d.reader_records_per_cpu_s_median)
            )
        } else {
            verdict(d.meets_target).to_string()
        };
        format!(
            ">= {} records/s with 0 drops at {} MB: {}",
            si(TARGET_DRAIN_RECORDS_PER_S),
            TARGET_RING_MB,
            judged
        )
    } else {
        format!(
            "target (>= {} records/s, 0 drops) is stated at the default {} MB ring: not judged",
            si(TARGET_DRAIN_RECORDS_PER_S),
            TARGET_RING_MB
        )
    };
    let _ = writeln!(
        out,
        "\nDrain (reader process, loaded (a), median of {}): {} records/s, {:.0} MB/s through the \
         ring ({:.0} MB/s decoded payload); drops {} (RecordsDropped {} + OpsStopped {}); \
         range-only {}, throttled {}; peak ring fill {:.1}% of {} MB; catch-up after the \
         workload <= {:.3} s; reader max RSS {} MiB, largest batch {} records, {} records per \
         CPU-second. Target {}",
        r.pwrite.loaded.len(),
        si(d.records_per_s_median),
        d.ring_mb_per_s_median,
        d.payload_mb_per_s_median,
        d.lost,
        d.records_dropped,
        d.ops_stopped,
        thousands(d.writes_range_only),
        thousands(d.writes_throttled),
        d.peak_fill_percent,
        d.ring_mb,
        d.catch_up_seconds_max,
        d.reader_max_rss_kib / 1024,
        thousands(d.reader_largest_batch),
        si(d.reader_records_per_cpu_s_median),
        target
    );
}

/// Writes the raw result as pretty JSON.
pub fn write_json(r: &CaptureResult, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(r)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
