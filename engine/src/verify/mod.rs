//! Verification: comparing a job's replica with its source while replication goes on
//! (`rillctl verify JOB`).
//!
//! # Why it is built this way
//!
//! The replica is the source's state some way back in the stream of operations, so a
//! comparison of the two trees at one instant finds every file in flight "different". A
//! verification therefore asks its questions *through the stream*: the source reads its
//! side of a batch of names ([`inspect`]), the job's transmit loop puts the request
//! ([`VerifyCall`]) into the stream after everything it sent before, and the target's
//! applier answers once it has applied all of that, in the stream's order (a `Verify`
//! frame, answered by `Verified`). The answer is the replica at that point of the stream.
//!
//! A name is reported as different only when the source side is known to belong to the
//! same point, that is, when nothing changed it that the stream had not carried before
//! the request:
//!
//! - its stamp (inode, change time, size, mtime) is the same after the answer as before
//!   the source read it: nothing changed it since;
//! - its change time is older than the instant up to which every captured operation had
//!   been sent when the request entered the stream (`JobControl::sent_through_ns`): no
//!   operation on it was still queued;
//! - the job's change journal holds nothing to remirror (a name it holds is pending, not
//!   different), counted once everything the target refused before the request is in it
//!   (`JobControl::settled_mark`: a refusal reaches the source before the acknowledgement
//!   of its batch, and the transmit loop journals refusals when it takes that in);
//! - and it was found different a second time, a little later, unchanged in between: a
//!   check on top of the others, which hold on their own in the tests, so that a case
//!   they miss costs a look more rather than a false report.
//!
//! A name that fails one of these is looked at again later, a few times at most
//! ([`run::MAX_LOOKS`]), and then counted as changed during the verification, never as
//! different.
//!
//! # State
//!
//! A verification runs on a thread of its own ([`run::Verifier`]) and keeps its progress
//! in a [`VerifyProgress`] the status report reads. Requests wait in the job's
//! [`VerifyInbox`] for the transmit loop; answers come back on a channel of their own.
//!
//! # Invariants
//!
//! - A file changed during the verification is never reported as different.
//! - The target reads only beneath the replica (`openat2` with `RESOLVE_BENEATH`), never
//!   following a final symlink, and answers at most what the wire's caps allow
//!   (`net::proto::verify`).

mod compare;
mod inspect;
pub mod log;
pub mod run;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Mutex;

pub use compare::{differences, extra_names, Compared};
pub use inspect::{inspect, stamp, Stamp, BLOCK};

use crate::net::proto::verify::{Ask, Inspected};

/// One request of a verification, on its way to the target.
pub struct VerifyCall {
    pub id: u64,
    pub asks: Vec<Ask>,
    /// Set by the transmit loop as the request enters the stream (see
    /// `JobControl::sent_through_ns`).
    pub sent_through_ns: u64,
    /// Set by the transmit loop: the mark of the last batch ended before the request
    /// (see `JobControl::settled_mark`).
    pub mark: u64,
    pub reply: SyncSender<Answer>,
}

/// The target's answer to a [`VerifyCall`], or why there is none.
pub struct Answer {
    pub found: Result<Vec<Inspected>, String>,
    pub sent_through_ns: u64,
    pub mark: u64,
}

impl VerifyCall {
    /// Answers the call (a verifier that stopped waiting is not an error).
    pub fn answer(self, found: Result<Vec<Inspected>, String>) {
        let _ = self.reply.try_send(Answer {
            found,
            sent_through_ns: self.sent_through_ns,
            mark: self.mark,
        });
    }
}

/// Requests waiting for the job's transmit loop, and names a verification hands to the
/// job's remirror.
#[derive(Default)]
pub struct VerifyInbox {
    waiting: AtomicBool,
    inner: Mutex<Inbox>,
}

#[derive(Default)]
struct Inbox {
    calls: VecDeque<VerifyCall>,
    remirror: Vec<std::path::PathBuf>,
}

impl VerifyInbox {
    pub fn call(&self, call: VerifyCall) {
        if let Ok(mut i) = self.inner.lock() {
            i.calls.push_back(call);
            self.waiting.store(true, Ordering::Release);
        }
    }

    /// Source paths to remirror.
    pub fn remirror(&self, paths: Vec<std::path::PathBuf>) {
        if let Ok(mut i) = self.inner.lock() {
            i.remirror.extend(paths);
            self.waiting.store(true, Ordering::Release);
        }
    }

    /// What waits, if anything (one atomic load when nothing does).
    pub fn take(&self) -> Option<(Vec<VerifyCall>, Vec<std::path::PathBuf>)> {
        if !self.waiting.load(Ordering::Acquire) {
            return None;
        }
        let mut i = self.inner.lock().ok()?;
        self.waiting.store(false, Ordering::Release);
        Some((i.calls.drain(..).collect(), std::mem::take(&mut i.remirror)))
    }
}

/// Where a verification is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Idle = 0,
    Running = 1,
    /// Waiting `VerifyRetryInterval` after a failure.
    Paused = 2,
    Completed = 3,
    /// Stopped: asked to, or failed more than `VerifyRetryLimit` times.
    Stopped = 4,
}

impl Phase {
    pub fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Running,
            2 => Phase::Paused,
            3 => Phase::Completed,
            4 => Phase::Stopped,
            _ => Phase::Idle,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Completed => "completed",
            Phase::Stopped => "stopped",
        }
    }
}

/// A verification's progress and result, as the status report shows it.
#[derive(Default)]
pub struct VerifyProgress {
    pub phase: AtomicU8,
    pub id: AtomicU64,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub differing: AtomicU64,
    pub missing: AtomicU64,
    pub extra: AtomicU64,
    /// Names that kept changing while they were looked at: not compared.
    pub changed: AtomicU64,
    pub remirrored: AtomicU64,
    pub stop: AtomicBool,
}

impl VerifyProgress {
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    pub fn snapshot(&self) -> rill_mgmt::VerifyStatus {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        rill_mgmt::VerifyStatus {
            state: self.phase().name().to_string(),
            id: n(&self.id),
            files_verified: n(&self.files),
            bytes_verified: n(&self.bytes),
            differing: n(&self.differing),
            missing: n(&self.missing),
            extra: n(&self.extra),
            changed: n(&self.changed),
            remirrored: n(&self.remirrored),
        }
    }
}
