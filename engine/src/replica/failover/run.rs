//! A failover, a test failover and their undoing, step by step.
//!
//! # The last consistent applied point
//!
//! The target applies the source's operations one at a time, in the order the source
//! made them, each one whole before the next begins; so the replica after any operation
//! is a state the source's tree passed through (the stream's prefix), the point at which
//! a database's files agree with each other as they did on the source (the replication
//! test `sqlite_snapshots_of_the_replica_open_clean` checks that a copy taken between
//! any two operations opens clean). A failover therefore stops the job's session first
//! ([`stop_session`]): its applier finishes the operation in hand and nothing after it
//! (what was received and not applied is dropped with the session's queue: the source
//! would resend it, but it is refused from now on). Then the replica is synced and the
//! position of that last operation recorded ([`settle`]): the replica holds exactly the
//! stream up to it, durably. A replica still being mirrored (data state Mirroring) holds
//! a walk's mix of old and new files, not such a point: the failover goes on, as asked,
//! and its event says so.
//!
//! # State
//!
//! None of its own: a run moves the job's [`Watch`] state and writes its
//! `FailoverRecord` and target session in the job store.
//!
//! # Invariants
//!
//! - The state is Failing Over for the whole of a run (so the job's source is refused
//!   and no second run starts), and goes back to where it was if the run fails.
//! - A failover is recorded in the job store before the state says Failed Over, and
//!   only once the replica is settled: a crash between leaves a job that did not fail
//!   over, never a failed-over job at an unsettled point.
//! - A failback or an undone test forgets the job's position before it clears the
//!   record: the source that may then connect is remirrored, never resumed on top of a
//!   replica that changed while failed over.

use std::sync::Arc;

use rill_mgmt::{FailoverMode, FailoverState};

use super::scripts::{self, Script};
use super::{Action, Answer, Watch};
use crate::events::{self, Level};
use crate::replica::{apply_thread, kind, Context, JobKey};
use crate::storage::job_store::{DataState, FailedOver, TargetSession};

/// Carries out `action` on job `key`, once at a time per job.
pub(super) async fn act(ctx: &Arc<Context>, key: &JobKey, action: Action) -> Answer {
    let watch = ctx.stats.monitor.watch(key, &ctx.store);
    match action {
        Action::Failover(FailoverMode::Live) => failover(ctx, key, &watch, false).await,
        Action::Failover(FailoverMode::Test) => failover(ctx, key, &watch, true).await,
        Action::Failover(FailoverMode::UndoTest) => {
            end(ctx, key, &watch, FailoverState::TestFailover).await
        }
        Action::Failback => end(ctx, key, &watch, FailoverState::FailedOver).await,
    }
}

/// Fails job `key` over (or tests a failover): stop its session, settle the replica at
/// its last consistent point, run the pre-failover script (waited for with
/// `PreFailoverWait = 1`), record the failover, run the post-failover script.
async fn failover(ctx: &Arc<Context>, key: &JobKey, watch: &Watch, test: bool) -> Answer {
    let what = if test { "Test failover" } else { "Failover" };
    if !watch.shift(FailoverState::Protecting, FailoverState::FailingOver) {
        return Err(format!(
            "job {} is {}: nothing to fail over",
            key.1,
            watch.state().words()
        ));
    }
    // The refusals counted (and the one 4018 logged) are this failover's.
    watch.refused.store(0, std::sync::atomic::Ordering::Relaxed);
    ctx.log.event(
        Level::Information,
        events::FAILOVER_STARTED,
        &format!("{what} of job {} from source {} started", key.1, key.0),
    );
    let done = async {
        stop_session(ctx, key).await?;
        let settled = {
            let (ctx, key) = (Arc::clone(ctx), key.clone());
            tokio::task::spawn_blocking(move || settle(&ctx, &key))
                .await
                .map_err(|e| format!("settling the replica: {e}"))??
        };
        let config = ctx.config();
        let record = ctx
            .store
            .get_failover(&key.0, &key.1)
            .map_err(|e| e.to_string())?;
        let mode = if test { "test" } else { "live" };
        let env = scripts::env(key, &settled, mode);
        let pre = Script::new("pre-failover", record.scripts.pre_failover.clone(), &env);
        scripts::run(ctx, pre, config.failover.pre_failover_wait).await;
        let mut record = record;
        record.failed_over = Some(FailedOver {
            test,
            at_unix: crate::clock::wall_secs(),
            last_applied: settled.last_applied,
        });
        ctx.store
            .put_failover(&key.0, &key.1, &record)
            .map_err(|e| format!("recording the failover: {e}"))?;
        let post = Script::new("post-failover", record.scripts.post_failover.clone(), &env);
        scripts::run(ctx, post, true).await;
        Ok::<_, String>(settled)
    }
    .await;
    match done {
        Ok(settled) => {
            watch.set(if test {
                FailoverState::TestFailover
            } else {
                FailoverState::FailedOver
            });
            let (level, caveat) = match settled.data_state {
                DataState::Mirroring => (
                    Level::Warning,
                    "; the replica was being mirrored: it may not be consistent",
                ),
                _ => (Level::Information, ""),
            };
            let text = format!(
                "{what} of job {} from source {} succeeded: {} holds the source's operations \
                 up to {}{caveat}",
                key.1,
                key.0,
                settled.target_path.display(),
                settled.last_applied
            );
            ctx.log.event(level, events::FAILOVER_SUCCEEDED, &text);
            Ok(text)
        }
        Err(why) => {
            watch.set(FailoverState::Protecting);
            let text = format!(
                "{what} of job {} from source {} failed: {why}",
                key.1, key.0
            );
            ctx.log.event(Level::Error, events::FAILOVER_FAILED, &text);
            Err(text)
        }
    }
}

/// Ends a failover (`from` = `FailedOver`: a failback) or a test failover (`from` =
/// `TestFailover`): the pre-failback script (waited for with `PreFailbackWait = 1`), the
/// failover record cleared, and the job's position forgotten, so that the source's next
/// connection is welcomed at 0, below what it holds acknowledged, and remirrors the
/// whole source over the replica (what was changed on the replica meanwhile is not kept:
/// restoring it to the source is not rill's yet). Then the post-failback script.
async fn end(ctx: &Arc<Context>, key: &JobKey, watch: &Watch, from: FailoverState) -> Answer {
    let what = match from {
        FailoverState::TestFailover => "Undoing the test failover",
        _ => "Failback",
    };
    if !watch.shift(from, FailoverState::FailingOver) {
        return Err(format!(
            "job {} is {}, not {}",
            key.1,
            watch.state().words(),
            from.words()
        ));
    }
    ctx.log.event(
        Level::Information,
        events::UNDO_FAILOVER_STARTED,
        &format!("{what} of job {} from source {} started", key.1, key.0),
    );
    let done = async {
        let mut record = ctx
            .store
            .get_failover(&key.0, &key.1)
            .map_err(|e| e.to_string())?;
        let session = ctx
            .store
            .get_session(&key.0, &key.1)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("job {} has no target session", key.1))?;
        let env = scripts::env(key, &session, "failback");
        if from == FailoverState::FailedOver {
            let pre = Script::new("pre-failback", record.scripts.pre_failback.clone(), &env);
            scripts::run(ctx, pre, ctx.config().failover.pre_failback_wait).await;
        }
        forget_position(ctx, key, session)?;
        record.failed_over = None;
        ctx.store
            .put_failover(&key.0, &key.1, &record)
            .map_err(|e| format!("clearing the failover: {e}"))?;
        if from == FailoverState::FailedOver {
            let post = Script::new("post-failback", record.scripts.post_failback.clone(), &env);
            scripts::run(ctx, post, true).await;
        }
        Ok::<_, String>(())
    }
    .await;
    match done {
        Ok(()) => {
            watch.heard();
            watch.set(FailoverState::Protecting);
            let text = format!(
                "{what} of job {} from source {} succeeded: the source's next connection \
                 remirrors it",
                key.1, key.0
            );
            ctx.log
                .event(Level::Information, events::UNDO_FAILOVER_SUCCEEDED, &text);
            Ok(text)
        }
        Err(why) => {
            watch.set(from);
            let text = format!(
                "{what} of job {} from source {} failed: {why}",
                key.1, key.0
            );
            ctx.log
                .event(Level::Error, events::UNDO_FAILOVER_FAILED, &text);
            Err(text)
        }
    }
}

/// Stops the job's session, if one runs, and waits until nothing of it can apply an
/// operation or record a position any more (as a newer connection of the job does).
async fn stop_session(ctx: &Context, key: &JobKey) -> Result<(), String> {
    let hold = ctx.active.lock().ok().and_then(|a| a.get(key).cloned());
    let Some(hold) = hold else { return Ok(()) };
    hold.cancel
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let limit = ctx.config().timeout;
    tokio::time::timeout(limit, hold.finished())
        .await
        .map_err(|_| format!("the job's session did not stop within {limit:?}"))
}

/// Brings the replica of job `key` to its last consistent applied point: the highest
/// position recorded (the job store's, or the applier's file when it is ahead of it),
/// made durable by a sync of the replica and recorded in the job store.
fn settle(ctx: &Context, key: &JobKey) -> Result<TargetSession, String> {
    let mut session = ctx
        .store
        .get_session(&key.0, &key.1)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("job {} has never replicated to this host", key.1))?;
    let replica =
        kind::open(&session.target_path, ctx.config().apply).map_err(|e| e.to_string())?;
    replica
        .durability()
        .and_then(|d| d.sync())
        .map_err(|e| format!("syncing {}: {e}", session.target_path.display()))?;
    let applied = apply_thread::last_position(ctx, key).unwrap_or(0);
    session.last_applied = session.last_applied.max(applied);
    ctx.store
        .put_session(&key.0, &key.1, &session)
        .map_err(|e| format!("recording the position: {e}"))
}

/// Forgets where job `key`'s replica stands (the job store's position and the applier's
/// file), so that the source's next connection remirrors it whole.
fn forget_position(ctx: &Context, key: &JobKey, mut session: TargetSession) -> Result<(), String> {
    apply_thread::forget_position(ctx, key).map_err(|e| format!("forgetting the position: {e}"))?;
    session.last_applied = 0;
    ctx.store
        .put_session(&key.0, &key.1, &session)
        .map(|_| ())
        .map_err(|e| format!("forgetting the position: {e}"))
}
