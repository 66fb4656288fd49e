//! The session's syncer thread: makes applied ops durable while the applier goes on.
//!
//! A sync of the replica (for a directory, a `syncfs` of its file system) with tens of
//! megabytes dirty takes longer than applying the next thousand ops. Done on the
//! applier's thread it stopped applying for that long, the source's window filled, and
//! both hosts idled. So the applier only asks
//! ([`Syncer::request`]) and goes on; this thread syncs, records the position in the job
//! store, then acknowledges it to the source. A sync started after op N was applied
//! covers N and everything before it, which is all an acknowledgement of N promises; ops
//! applied meanwhile may reach the disk too, as they could before a crash anyway.
//!
//! Requests made while a sync runs are coalesced into the newest: one sync covers them.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use anyhow::{anyhow, Result};
use tokio::sync::mpsc;

use super::Durability;
use super::SessionStats;
use crate::net::proto::Frame;
use crate::storage::job_store::{JobStore, TargetSession};

/// A position to make durable.
#[derive(Clone, Debug)]
pub(super) struct Point {
    /// The session as it is to be stored, `last_applied` being the op to acknowledge.
    pub session: TargetSession,
    /// The target queue's sequence of that op (0: none), freed once durable.
    pub queue_seq: u64,
    /// Whether the source is sent an `Ack`.
    pub ack: bool,
}

#[derive(Default)]
struct State {
    /// The newest request not yet taken by the thread.
    wanted: Option<Point>,
    /// Whether the thread is syncing.
    busy: bool,
    /// The newest queue sequence made durable and not yet collected.
    durable_queue_seq: Option<u64>,
    /// Why the thread stopped, if it failed.
    failed: Option<String>,
    stop: bool,
}

/// The applier's handle on the syncer thread; dropping it stops the thread.
pub(super) struct Syncer {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// What the thread needs to make a position durable and report it: the replica's
/// [`Durability`], the job store, and the way back to the source.
pub(super) struct Reporting {
    pub durability: Box<dyn Durability>,
    pub store: Arc<JobStore>,
    pub key: (String, String),
    pub out: mpsc::UnboundedSender<Frame>,
    pub stats: Arc<SessionStats>,
}

impl Syncer {
    pub(super) fn start(ctx: Reporting) -> Result<Syncer> {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("sync".into())
            .spawn(move || run(&theirs, &ctx))?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.shared
            .0
            .lock()
            .map_err(|_| anyhow!("syncer state poisoned"))
    }

    /// Asks for `point` to be made durable, replacing an earlier request not yet taken.
    /// Fails if an earlier sync failed.
    pub(super) fn request(&self, point: Point) -> Result<()> {
        let mut s = self.lock()?;
        if let Some(why) = &s.failed {
            return Err(anyhow!("{why}"));
        }
        s.wanted = Some(point);
        self.shared.1.notify_all();
        Ok(())
    }

    /// The newest target-queue sequence made durable since the last call.
    pub(super) fn take_durable(&self) -> Result<Option<u64>> {
        let mut s = self.lock()?;
        if let Some(why) = &s.failed {
            return Err(anyhow!("{why}"));
        }
        Ok(s.durable_queue_seq.take())
    }

    /// Waits until every request is durable (or a sync failed).
    pub(super) fn wait(&self) -> Result<()> {
        let mut s = self.lock()?;
        while (s.busy || s.wanted.is_some()) && s.failed.is_none() {
            s = self
                .shared
                .1
                .wait(s)
                .map_err(|_| anyhow!("syncer state poisoned"))?;
        }
        match &s.failed {
            Some(why) => Err(anyhow!("{why}")),
            None => Ok(()),
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.0.lock() {
            s.stop = true;
            self.shared.1.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &(Mutex<State>, Condvar), ctx: &Reporting) {
    let (lock, cv) = shared;
    loop {
        let point = {
            let Ok(mut s) = lock.lock() else { return };
            while s.wanted.is_none() && !s.stop {
                s = match cv.wait(s) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            // Stopping: what is still wanted was asked for with `wait` behind it, or
            // belongs to a session being replaced, whose successor resends it.
            let Some(point) = s.wanted.take().filter(|_| !s.stop) else {
                return;
            };
            s.busy = true;
            point
        };
        let done = make_durable(ctx, &point);
        let Ok(mut s) = lock.lock() else { return };
        s.busy = false;
        match done {
            Ok(()) if point.queue_seq > 0 => s.durable_queue_seq = Some(point.queue_seq),
            Ok(()) => {}
            Err(e) => s.failed = Some(format!("{e:#}")),
        }
        cv.notify_all();
        if s.failed.is_some() {
            return;
        }
    }
}

/// Syncs, records, acknowledges: in this order, so nothing is acknowledged before it is
/// durable and recorded.
fn make_durable(ctx: &Reporting, point: &Point) -> Result<()> {
    ctx.durability.sync()?;
    ctx.store
        .put_session(&ctx.key.0, &ctx.key.1, &point.session)?;
    let applied = point.session.last_applied;
    ctx.stats
        .last_applied
        .store(applied, std::sync::atomic::Ordering::Relaxed);
    if point.ack {
        let _ = ctx.out.send(Frame::Ack { seq: applied });
    }
    Ok(())
}
