//! Shrinking a failing run: delta debugging over its operations.
//!
//! Each candidate is a full run (two hosts, the plan's start and disruptions, at the
//! plan's rate), so a candidate costs seconds and a minimization minutes; it stops at a
//! budget of runs and keeps the smallest list that still failed. A run that passes with a
//! chunk removed keeps the chunk: the failure needs it (or was a matter of timing that
//! this candidate missed, which only makes the result larger, never wrong).

use std::path::Path;

use super::ops::WOp;
use super::plan::{Plan, Start};
use super::run::{run, Failure, Ops};

/// The smallest list of operations found for which `plan` still fails, trying at most
/// `budget` runs. `report` hears of each candidate (its length and whether it failed).
pub fn minimize(
    plan: &Plan,
    ops: Vec<WOp>,
    base: &Path,
    budget: usize,
    report: &mut dyn FnMut(usize, &Result<(), String>),
) -> Vec<WOp> {
    let mut best = ops;
    let mut chunks = 2usize;
    let mut runs = 0;
    while runs < budget && best.len() > 1 {
        let size = best.len().div_ceil(chunks);
        let mut shrunk = None;
        for i in 0..chunks {
            let (from, to) = (i * size, ((i + 1) * size).min(best.len()));
            if runs >= budget || from >= to {
                continue;
            }
            let candidate: Vec<WOp> = best[..from].iter().chain(&best[to..]).cloned().collect();
            runs += 1;
            let failed = fails(plan, &candidate, base);
            report(candidate.len(), &failed);
            if failed.is_err() {
                shrunk = Some(candidate);
                break;
            }
        }
        match shrunk {
            Some(smaller) => {
                best = smaller;
                chunks = (chunks - 1).max(2);
            }
            None if size == 1 => break,
            None => chunks = (chunks * 2).min(best.len()),
        }
    }
    best
}

/// Whether the plan fails with these operations (all performed after the prefill point
/// the plan names, with its disruptions scaled to the shorter list).
fn fails(plan: &Plan, ops: &[WOp], base: &Path) -> Result<(), String> {
    let scaled = scale(plan, ops.len());
    match run(&scaled, Ops::Recorded(ops), base) {
        Ok(_) => Ok(()),
        Err(Failure::Harness(e)) => {
            eprintln!("  (harness: {e:#}; counted as a pass)");
            Ok(())
        }
        Err(f) => {
            if let Some(d) = f.dir() {
                let _ = std::fs::remove_dir_all(d);
            }
            Err(f.to_string().lines().next().unwrap_or_default().to_string())
        }
    }
}

/// The plan for a list of `n` operations: prefill, start and disruptions moved in
/// proportion, so they fall among the same operations as before.
pub fn scale(plan: &Plan, n: usize) -> Plan {
    let total = (plan.prefill + plan.ops).max(1);
    let at = |i: usize| i * n / total;
    let mut p = plan.clone();
    p.prefill = at(plan.prefill);
    p.ops = n - p.prefill;
    let shift = |i: usize| at(plan.prefill + i).saturating_sub(p.prefill);
    if let Start::During(i) = plan.start {
        p.start = Start::During(shift(i));
    }
    for e in &mut p.events {
        e.at = shift(e.at);
    }
    p
}
