//! A run's plan: how many operations at what rate, when the job starts, and what goes
//! wrong meanwhile (a stop and start of the job, `kill -9` of either host, a link cut).
//!
//! A plan is drawn from a seed ([`Plan::from_seed`]) and has a one-line text form
//! (`seed=7 ops=4000 rate=400 prefill=200 start=during:1200 events=kill-target@2000,...`)
//! that `rill-replfuzz --plan` takes back, so a failing run is replayed exactly as it ran.

use std::fmt;
use std::str::FromStr;

use rill_tools::relay::Cut;

use rill_tools::rng::Rng;

/// When the job starts, relative to the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Before the first operation: everything the workload does is replicated live.
    Before,
    /// Once this many operations are done: the mirror races the workload.
    During(usize),
    /// After the last operation: the mirror alone brings the tree over.
    After,
}

/// Something that goes wrong while the workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disruption {
    /// The job is stopped, and started again `ms` later.
    Stop { ms: u64 },
    /// The source `rilld` is killed with SIGKILL and started again.
    KillSource,
    /// The target `rilld` is killed with SIGKILL and started again.
    KillTarget,
    /// The link between them is cut for `ms`.
    Cut { how: Cut, ms: u64 },
}

/// A disruption, once `at` operations are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub at: usize,
    pub what: Disruption,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The generator's seed (also what the plan was drawn from, if it was).
    pub seed: u64,
    /// Operations of the workload proper.
    pub ops: usize,
    /// Operations per second.
    pub rate: u32,
    /// Operations done at full speed before the job exists (the first mirror's tree).
    pub prefill: usize,
    pub start: Start,
    /// In order of `at`.
    pub events: Vec<Event>,
}

/// The default workload: 4,000 operations at 400 a second, the rate at which a job's
/// queues stay busy without the ring throttling.
pub const DEFAULT_OPS: usize = 4000;
pub const DEFAULT_RATE: u32 = 400;

impl Plan {
    /// A plan drawn from `seed`: the start, and up to three disruptions after it.
    pub fn from_seed(seed: u64, ops: usize, rate: u32) -> Plan {
        // The schedule's choices come from a stream of their own, so the generator's
        // stream (same seed) is the same whatever the schedule drew.
        let mut r = Rng::new(seed ^ 0x5eed_5c4e_d01e_0000);
        let start = match r.below(10) {
            0..=5 => Start::Before,
            6..=8 => Start::During(r.below(ops as u64 / 2 + 1) as usize),
            _ => Start::After,
        };
        let from = match start {
            Start::Before => 0,
            Start::During(i) => i,
            Start::After => ops,
        };
        let mut events: Vec<Event> = (0..r.below(4))
            .filter(|_| from < ops)
            .map(|_| Event {
                at: from + r.below((ops - from) as u64) as usize,
                what: match r.below(6) {
                    0 => Disruption::Stop {
                        ms: 200 + r.below(2000),
                    },
                    1 => Disruption::KillSource,
                    2 => Disruption::KillTarget,
                    3 => Disruption::Cut {
                        how: Cut::Reset,
                        ms: 100 + r.below(3000),
                    },
                    4 => Disruption::Cut {
                        how: Cut::Silent,
                        ms: 1000 + r.below(9000),
                    },
                    _ => Disruption::Cut {
                        how: Cut::Answers,
                        ms: 1000 + r.below(9000),
                    },
                },
            })
            .collect();
        events.sort_by_key(|e| e.at);
        Plan {
            seed,
            ops,
            rate,
            prefill: r.below(400) as usize,
            start,
            events,
        }
    }
}

impl fmt::Display for Disruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disruption::Stop { ms } => write!(f, "stop:{ms}"),
            Disruption::KillSource => write!(f, "kill-source"),
            Disruption::KillTarget => write!(f, "kill-target"),
            Disruption::Cut {
                how: Cut::Reset,
                ms,
            } => write!(f, "cut-reset:{ms}"),
            Disruption::Cut {
                how: Cut::Silent,
                ms,
            } => write!(f, "cut-silent:{ms}"),
            Disruption::Cut {
                how: Cut::Answers,
                ms,
            } => write!(f, "cut-answers:{ms}"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let start = match self.start {
            Start::Before => "before".to_string(),
            Start::During(i) => format!("during:{i}"),
            Start::After => "after".to_string(),
        };
        let events: Vec<String> = self
            .events
            .iter()
            .map(|e| format!("{}@{}", e.what, e.at))
            .collect();
        write!(
            f,
            "seed={} ops={} rate={} prefill={} start={start} events={}",
            self.seed,
            self.ops,
            self.rate,
            self.prefill,
            if events.is_empty() {
                "none".into()
            } else {
                events.join(",")
            }
        )
    }
}

/// Why a plan's text is not a plan.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("plan: {0} (form: seed=N ops=N rate=N prefill=N start=before|during:N|after events=none|WHAT@N,... with WHAT one of stop:MS, kill-source, kill-target, cut-reset:MS, cut-silent:MS, cut-answers:MS)")]
pub struct PlanError(String);

fn number<T: FromStr>(what: &str, v: &str) -> Result<T, PlanError> {
    v.parse()
        .map_err(|_| PlanError(format!("`{what}={v}`: not a number")))
}

fn disruption(s: &str) -> Result<Disruption, PlanError> {
    let (name, ms) = match s.split_once(':') {
        Some((n, ms)) => (n, Some(number::<u64>(n, ms)?)),
        None => (s, None),
    };
    Ok(match (name, ms) {
        ("stop", Some(ms)) => Disruption::Stop { ms },
        ("kill-source", None) => Disruption::KillSource,
        ("kill-target", None) => Disruption::KillTarget,
        ("cut-reset", Some(ms)) => Disruption::Cut {
            how: Cut::Reset,
            ms,
        },
        ("cut-silent", Some(ms)) => Disruption::Cut {
            how: Cut::Silent,
            ms,
        },
        ("cut-answers", Some(ms)) => Disruption::Cut {
            how: Cut::Answers,
            ms,
        },
        _ => return Err(PlanError(format!("`{s}` is not a disruption"))),
    })
}

impl FromStr for Plan {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Plan, PlanError> {
        let mut p = Plan::from_seed(0, DEFAULT_OPS, DEFAULT_RATE);
        p.events.clear();
        p.start = Start::Before;
        for word in s.split_whitespace() {
            let (k, v) = word
                .split_once('=')
                .ok_or_else(|| PlanError(format!("`{word}` is not NAME=VALUE")))?;
            match k {
                "seed" => p.seed = number(k, v)?,
                "ops" => p.ops = number(k, v)?,
                "rate" => p.rate = number::<u32>(k, v)?.max(1),
                "prefill" => p.prefill = number(k, v)?,
                "start" => {
                    p.start = match v.split_once(':') {
                        Some(("during", n)) => Start::During(number(k, n)?),
                        None if v == "before" => Start::Before,
                        None if v == "after" => Start::After,
                        _ => return Err(PlanError(format!("`start={v}`"))),
                    }
                }
                "events" if v == "none" => p.events.clear(),
                "events" => {
                    p.events = v
                        .split(',')
                        .map(|e| {
                            let (what, at) = e
                                .split_once('@')
                                .ok_or_else(|| PlanError(format!("`{e}` lacks @N")))?;
                            Ok(Event {
                                at: number(what, at)?,
                                what: disruption(what)?,
                            })
                        })
                        .collect::<Result<_, PlanError>>()?;
                    p.events.sort_by_key(|e| e.at);
                }
                _ => return Err(PlanError(format!("unknown `{k}`"))),
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_plans_survive_their_text_form() {
        for seed in 0..200 {
            let p = Plan::from_seed(seed, 1000, 300);
            assert_eq!(p.to_string().parse::<Plan>().unwrap(), p, "{p}");
            let from = match p.start {
                Start::Before => 0,
                Start::During(i) => i,
                Start::After => p.ops,
            };
            assert!(p.events.iter().all(|e| e.at >= from && e.at < p.ops), "{p}");
        }
    }

    #[test]
    fn bad_plans_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Plan>().unwrap_err().to_string();
        assert!(err("seed=x").contains("not a number"));
        assert!(err("start=sometime").contains("start=sometime"));
        assert!(err("events=explode@3").contains("not a disruption"));
        assert!(err("events=stop:100").contains("lacks @N"));
        assert!(err("colour=red").contains("unknown"));
        assert!(err("seed").contains("NAME=VALUE"));
    }
}
