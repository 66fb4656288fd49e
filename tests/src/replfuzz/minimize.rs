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
    shrink(ops, budget, &mut |candidate| {
        let failed = fails(plan, candidate, base);
        report(candidate.len(), &failed);
        failed.is_err()
    })
}

/// Delta debugging: the smallest sublist (in order) of `items` found for which `fails`
/// holds, trying at most `budget` candidates; each removes one of `chunks` equal parts,
/// and the parts get finer when no removal keeps the failure.
pub fn shrink<T: Clone>(
    items: Vec<T>,
    budget: usize,
    fails: &mut dyn FnMut(&[T]) -> bool,
) -> Vec<T> {
    let mut best = items;
    let mut chunks = 2usize;
    let mut tried = 0;
    while tried < budget && best.len() > 1 {
        let size = best.len().div_ceil(chunks);
        let mut shrunk = None;
        for i in 0..chunks {
            let (from, to) = (i * size, ((i + 1) * size).min(best.len()));
            if tried >= budget || from >= to {
                continue;
            }
            let candidate: Vec<T> = best[..from].iter().chain(&best[to..]).cloned().collect();
            tried += 1;
            if fails(&candidate) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replfuzz::plan::{Disruption, Event};

    #[test]
    fn shrinking_keeps_exactly_what_the_failure_needs() {
        let items: Vec<u32> = (0..1000).collect();
        let mut runs = 0;
        let needs = |c: &[u32]| c.contains(&17) && c.contains(&600) && c.contains(&601);
        let best = shrink(items, 500, &mut |c| {
            runs += 1;
            needs(c)
        });
        assert_eq!(best, [17, 600, 601]);
        assert!(runs < 200, "{runs} candidates");
    }

    #[test]
    fn shrinking_stops_at_its_budget_with_a_list_that_still_fails() {
        let items: Vec<u32> = (0..1000).collect();
        let best = shrink(items, 5, &mut |c| c.contains(&999));
        assert!(best.contains(&999) && best.len() < 1000);
    }

    #[test]
    fn a_scaled_plan_keeps_its_events_among_the_same_operations() {
        let plan = Plan {
            seed: 1,
            ops: 900,
            rate: 100,
            prefill: 100,
            start: Start::During(300),
            events: vec![Event {
                at: 600,
                what: Disruption::KillTarget,
            }],
        };
        let p = scale(&plan, 100);
        assert_eq!((p.prefill, p.ops, p.start), (10, 90, Start::During(30)));
        assert_eq!(p.events[0].at, 60);
    }
}
