//! Failover: the target watches each source job it serves and, when the source is lost,
//! makes the replica the data in use.
//!
//! # Why here
//!
//! Only the target can tell that a source is gone, and only the target holds what a
//! failover makes available: so the monitor runs beside the target's sessions
//! ([`super::serve`]) and a failover acts on the target's record of the job (its target
//! session in the job store, and its failover record, [`FailoverRecord`]).
//!
//! # Heartbeats
//!
//! A session sends the source a keep-alive every second: that is the target's ping, and
//! the source answers each at once (`net::link::session`), besides its own heartbeat
//! every `HBExternalRate`. Every frame received from the source counts as an answer
//! ([`Watch::heard`]). The job's failover condition is met once the source has left
//! `MissedPackets` pings `PingFrequency` apart unanswered, that is once nothing was heard
//! for `MissedPackets` x `PingFrequency` (event 6010, status `failoverCondition`); with
//! `UserIntervention = 0` the target then fails over at once, with 1 it waits for
//! `rillctl failover JOB`. A source heard again before a failover clears the condition.
//! A source that ends the job's connection itself (a clean TLS close: the job or its rilld
//! stopped on purpose) has not been lost: its job meets no condition until it connects
//! again (`Watch::parted`); `rillctl failover` still fails it over when asked.
//! The monitor watches the jobs that connected since rilld started, and the jobs failed
//! over before it.
//!
//! # State
//!
//! - [`Monitor`] (in [`super::TargetStats`], so the status report reads it): a [`Watch`]
//!   per job, and the administrator's requests waiting for the monitor task, which owns
//!   the target's [`super::Context`] and so can stop a job's session.
//! - [`Watch::state`]: `Protecting`, `Failing Over` while a failover runs, `Failed Over`
//!   or `Test Failover` once it is done; the last two are also in the job store.
//!
//! # Invariants
//!
//! - A job that is not `Protecting` is refused any session ([`admit`], after the session
//!   took the job over: a failover sets the state before it stops the job's session, so
//!   either the failover sees the new session and stops it, or the session sees the
//!   state and refuses itself). So no operation of the source reaches a failed-over
//!   replica; the source is told why (refusal `FAILED_OVER`) and the target logs 4018.
//! - One failover (or failback) of a job at a time: it starts only by moving the state
//!   out of the one it expects, atomically.

mod run;
mod scripts;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rill_mgmt::{FailoverMode, FailoverState};

use super::{Context, JobKey};
use crate::events::{self, Level};
use crate::storage::job_store::{FailoverRecord, JobStore};

/// How often the monitor looks at its jobs and the requests waiting: well below the
/// smallest `PingFrequency` (1 s), so the condition is met within a quarter second of
/// its time.
const MONITOR_TICK: Duration = Duration::from_millis(250);

/// What an administrator asks of a job's failover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Failover(FailoverMode),
    Failback,
}

/// The answer to an [`Action`]: what was done, or why not.
pub type Answer = Result<String, String>;

/// A request waiting for the monitor task.
struct Ask {
    key: JobKey,
    action: Action,
    reply: mpsc::Sender<Answer>,
}

/// The monitor's view of one source job.
#[derive(Default)]
pub struct Watch {
    /// When the source was last heard from (`clock::monotonic_ns`).
    heard_ns: AtomicU64,
    condition: AtomicBool,
    /// A [`FailoverState`], by [`state_code`].
    state: AtomicU8,
    /// Connections refused since the job failed over.
    refused: AtomicU64,
    /// The source ended the job's last connection itself (a clean close: the job or its
    /// rilld stopped): no failover condition until the job connects again.
    parted: AtomicBool,
}

impl Watch {
    /// The source was heard from (any frame answers the target's ping).
    pub fn heard(&self) {
        self.heard_ns
            .store(crate::clock::monotonic_ns(), Ordering::Relaxed);
    }

    pub fn state(&self) -> FailoverState {
        state_of_code(self.state.load(Ordering::SeqCst))
    }

    /// Moves the state from `from` to `to`; false when it was not `from`.
    fn shift(&self, from: FailoverState, to: FailoverState) -> bool {
        self.state
            .compare_exchange(
                state_code(from),
                state_code(to),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }

    fn set(&self, to: FailoverState) {
        self.state.store(state_code(to), Ordering::SeqCst);
    }

    /// The source closed the connection cleanly (TLS close_notify, then the end of the
    /// stream): it stopped the job or its rilld on purpose, which is not a lost source.
    pub fn parted(&self) {
        self.parted.store(true, Ordering::Relaxed);
    }

    /// Whether the failover condition is met.
    pub fn condition(&self) -> bool {
        self.condition.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

fn state_code(s: FailoverState) -> u8 {
    match s {
        FailoverState::Protecting => 0,
        FailoverState::FailingOver => 1,
        FailoverState::FailedOver => 2,
        FailoverState::TestFailover => 3,
    }
}

fn state_of_code(c: u8) -> FailoverState {
    match c {
        1 => FailoverState::FailingOver,
        2 => FailoverState::FailedOver,
        3 => FailoverState::TestFailover,
        _ => FailoverState::Protecting,
    }
}

/// The state a stored failover record stands for.
fn stored_state(record: &FailoverRecord) -> FailoverState {
    match &record.failed_over {
        None => FailoverState::Protecting,
        Some(f) if f.test => FailoverState::TestFailover,
        Some(_) => FailoverState::FailedOver,
    }
}

/// Every watched job, and the requests waiting.
#[derive(Default)]
pub struct Monitor {
    jobs: Mutex<HashMap<JobKey, Arc<Watch>>>,
    asks: Mutex<VecDeque<Ask>>,
}

impl Monitor {
    /// The watch of job `key`, made on first use with the state its stored record says
    /// (a job whose record cannot be read is taken as failed over: refusing its source
    /// is safe, overwriting a failed-over replica is not).
    fn watch(&self, key: &JobKey, store: &JobStore) -> Arc<Watch> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let watch = jobs.entry(key.clone()).or_insert_with(|| {
            let state = match store.get_failover(&key.0, &key.1) {
                Ok(record) => stored_state(&record),
                Err(e) => {
                    log::error!("job {}: reading its failover record: {e}", key.1);
                    FailoverState::FailedOver
                }
            };
            let w = Watch::default();
            w.set(state);
            w.heard();
            Arc::new(w)
        });
        Arc::clone(watch)
    }

    /// The watch of job `key`, if it is watched.
    pub fn get(&self, key: &JobKey) -> Option<Arc<Watch>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.get(key).cloned()
    }

    /// Every watched job.
    pub fn watches(&self) -> Vec<(JobKey, Arc<Watch>)> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter()
            .map(|(k, w)| (k.clone(), Arc::clone(w)))
            .collect()
    }

    /// Asks the monitor task to act on job `key`; the answer comes on the receiver.
    pub fn ask(&self, key: JobKey, action: Action) -> mpsc::Receiver<Answer> {
        let (reply, answer) = mpsc::channel();
        let mut asks = self.asks.lock().unwrap_or_else(|e| e.into_inner());
        asks.push_back(Ask { key, action, reply });
        answer
    }

    fn take_asks(&self) -> Vec<Ask> {
        let mut asks = self.asks.lock().unwrap_or_else(|e| e.into_inner());
        asks.drain(..).collect()
    }
}

/// Lets a new session of job `key` go on, or refuses it (the reason, for the source)
/// when the job is not `Protecting`; called once the session holds the job.
pub(super) fn admit(ctx: &Context, key: &JobKey, who: &str) -> Result<Arc<Watch>, String> {
    let watch = ctx.stats.monitor.watch(key, &ctx.store);
    let state = watch.state();
    if state == FailoverState::Protecting {
        watch.heard();
        watch.condition.store(false, Ordering::Relaxed);
        watch.parted.store(false, Ordering::Relaxed);
        return Ok(watch);
    }
    let earlier = watch.refused.fetch_add(1, Ordering::Relaxed);
    let why = format!(
        "job {} is {} on this target: its source's operations are refused until a \
         failback (rillctl failback {} on the target)",
        key.1,
        state.words(),
        key.1
    );
    // Once per failover and process: a source retries every NetworkRetry for as long as
    // the failover lasts, and the status counts the refusals.
    if earlier == 0 {
        ctx.log.event(
            Level::Warning,
            events::RESTORE_REQUIRED,
            &format!("Restore required after failover: refusing {who}: {why}"),
        );
    }
    Err(why)
}

/// Watches every job until the target stops: meets failover conditions, fails over the
/// jobs whose condition is met when `UserIntervention` is 0, and carries out the
/// administrator's requests.
pub(super) async fn monitor(ctx: Arc<Context>) {
    {
        // Jobs failed over before this process: watched, so their state shows and
        // their sources stay refused.
        let sessions = ctx.store.list_sessions().unwrap_or_default();
        for s in sessions {
            let key = (s.peer, s.job);
            if ctx
                .store
                .get_failover(&key.0, &key.1)
                .is_ok_and(|r| r.failed_over.is_some())
            {
                ctx.stats.monitor.watch(&key, &ctx.store);
            }
        }
    }
    let mut tick = tokio::time::interval(MONITOR_TICK);
    while !ctx.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        for ask in ctx.stats.monitor.take_asks() {
            let ctx = Arc::clone(&ctx);
            tokio::spawn(async move {
                let answer = run::act(&ctx, &ask.key, ask.action).await;
                // The asker may have given up waiting: the event log has the outcome.
                let _ = ask.reply.send(answer);
            });
        }
        check_conditions(&ctx);
    }
}

/// Meets (or clears) each protected job's failover condition, and fails over at once
/// where `UserIntervention` is 0.
fn check_conditions(ctx: &Arc<Context>) {
    let config = ctx.config();
    let limit = config.failover.ping_frequency * config.failover.missed_packets;
    let now = crate::clock::monotonic_ns();
    for (key, watch) in ctx.stats.monitor.watches() {
        if watch.state() != FailoverState::Protecting || watch.parted.load(Ordering::Relaxed) {
            continue;
        }
        let silent =
            Duration::from_nanos(now.saturating_sub(watch.heard_ns.load(Ordering::Relaxed)));
        if silent < limit {
            if watch.condition.swap(false, Ordering::Relaxed) {
                log::info!("job {}: its source answers again", key.1);
            }
            continue;
        }
        if watch.condition.swap(true, Ordering::Relaxed) {
            continue;
        }
        let then = if config.failover.user_intervention {
            "waiting for `rillctl failover` (UserIntervention = 1)"
        } else {
            "failing over (UserIntervention = 0)"
        };
        ctx.log.event(
            Level::Warning,
            events::FAILOVER_CONDITION,
            &format!(
                "Failover condition met for job {} from source {}: {} pings {} s apart \
                 unanswered; {then}",
                key.1,
                key.0,
                config.failover.missed_packets,
                config.failover.ping_frequency.as_secs()
            ),
        );
        if !config.failover.user_intervention {
            let ctx = Arc::clone(ctx);
            tokio::spawn(async move {
                let _ = run::act(&ctx, &key, Action::Failover(FailoverMode::Live)).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::job_store::FailedOver;

    #[test]
    fn a_failover_starts_only_from_the_state_it_expects() {
        let w = Watch::default();
        assert_eq!(w.state(), FailoverState::Protecting);
        assert!(w.shift(FailoverState::Protecting, FailoverState::FailingOver));
        // A second request while the first runs, or a failback of a protected job.
        assert!(!w.shift(FailoverState::Protecting, FailoverState::FailingOver));
        assert!(!w.shift(FailoverState::FailedOver, FailoverState::FailingOver));
        w.set(FailoverState::TestFailover);
        for s in [
            FailoverState::Protecting,
            FailoverState::FailingOver,
            FailoverState::FailedOver,
            FailoverState::TestFailover,
        ] {
            assert_eq!(state_of_code(state_code(s)), s);
        }
    }

    #[test]
    fn the_stored_record_says_the_state_a_restarted_target_starts_in() {
        let mut record = FailoverRecord::default();
        assert_eq!(stored_state(&record), FailoverState::Protecting);
        record.failed_over = Some(FailedOver {
            test: true,
            at_unix: 1,
            last_applied: 9,
        });
        assert_eq!(stored_state(&record), FailoverState::TestFailover);
        if let Some(f) = record.failed_over.as_mut() {
            f.test = false;
        }
        assert_eq!(stored_state(&record), FailoverState::FailedOver);
    }

    #[test]
    fn requests_wait_for_the_monitor_in_order_and_are_answered() {
        let monitor = Monitor::default();
        let key = |j: &str| ("ab".to_string(), j.to_string());
        let first = monitor.ask(key("a"), Action::Failback);
        let _second = monitor.ask(key("b"), Action::Failover(FailoverMode::Test));
        let asks = monitor.take_asks();
        assert_eq!(asks.len(), 2);
        assert_eq!(
            (asks[0].key.1.as_str(), asks[0].action),
            ("a", Action::Failback)
        );
        assert!(monitor.take_asks().is_empty());
        asks[0].reply.send(Ok("done".into())).unwrap();
        assert_eq!(first.recv().unwrap(), Ok("done".to_string()));
    }
}
