//! The source's connection to a target: a [`Destination`] over the network.
//!
//! [`NetworkDestination`] is what the job's transmit thread calls, synchronously, exactly as it
//! calls the local destination, through the job's outbox ([`crate::source::outbox`]), which
//! resolved each operation before: `send` hands a resolved operation to the link task;
//! `flush` returns once the target has acknowledged everything sent so far, which is when
//! the source queue may drop it. The link task ([`session`]) runs on the daemon's tokio
//! runtime: it connects with mutual TLS, says which job it carries, numbers operations,
//! keeps at most `SourcePendingAcks` unacknowledged, resends them after a reconnect (the
//! target skips what it already applied), and sends keep-alives.
//!
//! The target refuses an operation after `send` returned, with a `Nak`: the link keeps
//! the names it refused and the files its in-place changes were made to (given with each
//! by the outbox), as the target's stream names them, and hands them back from
//! `take_refused`; the outbox, which holds the source's records of names, makes names to
//! remirror of them.
//!
//! While the target is unreachable `send` blocks once the window is full, so operations
//! wait in the source queue (memory, then disk), which is what the queue is for.

mod carried;
mod session;
mod verifies;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rill_ops::Event;
use tokio::sync::{mpsc, watch};

use crate::clock::monotonic_ns;
use crate::mgmt::{utc_time, ConError, ConErrorClass, TargetCounters};
use crate::net::proto::{Marker, Stream};
use crate::replica::state_of_code;
use crate::source::destination::{
    ConnectionState, Destination, DestinationError, DestinationStatus, ReadStatus, Refused,
    StatusHandle, TargetReport,
};
use crate::verify::VerifyCall;

pub use session::LinkConfig;

/// Counters of one link, under the guide's names where it has them. The link task and the
/// destination count into it; the status report reads it as the destination's
/// [`StatusHandle`] ([`ReadStatus`]).
#[derive(Default)]
pub struct LinkStats {
    state: AtomicU8,
    /// `conOpsTx`, `conBytesTx` (bytes on the wire), `conBytesCompressedTx` (bytes of
    /// operations sent compressed, as sent), `conResentOpCount`.
    pub ops_tx: AtomicU64,
    pub bytes_tx: AtomicU64,
    pub bytes_compressed_tx: AtomicU64,
    pub resent: AtomicU64,
    /// Operations handed to the link and not yet acknowledged (in its window or on the
    /// way), by stream.
    pub rep_ops_pending: AtomicU64,
    pub mir_ops_pending: AtomicU64,
    pub mir_bytes_pending: AtomicU64,
    /// CLOCK_MONOTONIC ns when the oldest unacknowledged operation was captured (0: none).
    pub oldest_unacked_ns: AtomicU64,
    /// The target's statistics, from its last `TargetStats`.
    pub target: [AtomicU64; 7],
    /// Whether the target asked for a pause of the mirror (its queue is at
    /// `TGMirrorCapacityHigh`).
    pub target_paused: AtomicBool,
    /// Why the link is not connected, until an attempt succeeds (`conError`).
    error: Mutex<Option<Failure>>,
    /// Highest sequence number the target acknowledged.
    pub acked_seq: AtomicU64,
    /// Set when the target welcomed the link with less than it had acknowledged: its
    /// state was lost or restored (see [`crate::source::destination::Destination::take_lost_state`]).
    pub target_lost_state: AtomicBool,
    /// The mirror's markers acknowledged by the target.
    pub mirror_started_acked: AtomicBool,
    pub mirror_complete_acked: AtomicBool,
}

/// The reason the link's attempts fail, and since when.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub class: ConErrorClass,
    pub message: String,
    pub since: SystemTime,
    pub attempts: u64,
}

impl LinkStats {
    /// Records a failed attempt (or a connection lost). True when its reason is not the
    /// standing one: that is when it is logged, not at every retry.
    pub(crate) fn failed(&self, class: ConErrorClass, message: &str) -> bool {
        let mut e = self.error.lock().unwrap_or_else(|e| e.into_inner());
        match e.as_mut() {
            Some(f) if f.class == class && f.message == message => {
                f.attempts += 1;
                false
            }
            _ => {
                *e = Some(Failure {
                    class,
                    message: message.to_string(),
                    since: SystemTime::now(),
                    attempts: 1,
                });
                true
            }
        }
    }

    /// A connection succeeded: clears the standing reason and returns it.
    pub(crate) fn connected(&self) -> Option<Failure> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Why the link is not connected (`conError`), `None` if nothing failed since the
    /// last connection.
    pub fn error(&self) -> Option<ConError> {
        let e = self.error.lock().unwrap_or_else(|e| e.into_inner());
        e.as_ref().map(|f| ConError {
            class: f.class,
            message: f.message.clone(),
            since: utc_time(f.since),
            attempts: f.attempts,
        })
    }

    pub fn state(&self) -> ConnectionState {
        ConnectionState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub(crate) fn set_state(&self, s: ConnectionState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// `ConRPL`: seconds between now and the capture of the oldest operation the target
    /// has not acknowledged.
    pub fn lag_seconds(&self) -> f64 {
        match self.oldest_unacked_ns.load(Ordering::Relaxed) {
            0 => 0.0,
            t => monotonic_ns().saturating_sub(t) as f64 / 1e9,
        }
    }
}

impl ReadStatus for LinkStats {
    fn read(&self) -> DestinationStatus {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // The target's counters in the order `TargetStats` carries them (see `handle` in
        // `session.rs`), then its data state.
        let [counters @ .., data_state] = self.target.each_ref().map(load);
        let acknowledged = load(&self.acked_seq) > 0;
        DestinationStatus {
            connection: self.state(),
            error: self.error(),
            ops_tx: load(&self.ops_tx),
            bytes_tx: load(&self.bytes_tx),
            bytes_compressed_tx: load(&self.bytes_compressed_tx),
            resent: load(&self.resent),
            mir_ops_pending: load(&self.mir_ops_pending),
            mir_bytes_pending: load(&self.mir_bytes_pending),
            lag_seconds: self.lag_seconds(),
            acknowledged,
            // Known once the target reported (ops received) or acknowledged anything.
            target: (acknowledged || counters[0] > 0).then(|| TargetReport {
                counters: TargetCounters::from(counters),
                data_state: state_of_code(data_state as u8),
            }),
            mirror_paused: self.target_paused.load(Ordering::Relaxed),
            mirror_complete: self.mirror_complete_acked.load(Ordering::Relaxed),
        }
    }

    fn take_mirror_complete(&self) -> bool {
        self.mirror_complete_acked.swap(false, Ordering::Relaxed)
    }
}

/// What the transmit thread hands the link task. Nearly every item is an operation: the
/// size of the rare marker does not matter, and boxing the operation would cost an
/// allocation per operation sent.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outgoing {
    Op {
        ev: Event,
        stream: Stream,
        /// When it was captured (CLOCK_MONOTONIC ns), for `ConRPL`.
        captured_ns: u64,
        /// The file an in-place change was made to, to remirror under every name it has
        /// if the target refuses the change (see [`Refused::files`]).
        file: Option<(u64, u64)>,
    },
    Marker(Marker),
    /// A verification request: written after what came before it, outside the window
    /// (not numbered, not resent; see `crate::verify`).
    Verify(VerifyCall),
}

/// State shared by the destination and its link task.
pub(crate) struct Shared {
    pub stats: Arc<LinkStats>,
    /// Count of items handed to the link and acknowledged by the target.
    pub acked_items: watch::Sender<u64>,
    /// What the target could not apply, to remirror.
    pub failed: Mutex<Refused>,
    pub stop: Arc<AtomicBool>,
    /// Wakes the session when the destination goes, so it can end the connection cleanly.
    pub stopping: tokio::sync::Notify,
}

/// A [`Destination`] to a target over the network.
pub struct NetworkDestination {
    tx: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
    acked: watch::Receiver<u64>,
    submitted: u64,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The transmit thread is a plain thread: it waits for acknowledgements through the
    /// runtime's handle.
    runtime: tokio::runtime::Handle,
}

impl NetworkDestination {
    /// Starts the link task on `runtime` and returns the destination feeding it; its
    /// counters are read through [`Destination::status`].
    pub fn start(
        runtime: &tokio::runtime::Handle,
        config: LinkConfig,
        stop: Arc<AtomicBool>,
    ) -> NetworkDestination {
        let (tx, rx) = mpsc::channel(64);
        let (acked_tx, acked) = watch::channel(0);
        let shared = Arc::new(Shared {
            stats: Arc::new(LinkStats::default()),
            acked_items: acked_tx,
            failed: Mutex::new(Refused::default()),
            stop,
            stopping: tokio::sync::Notify::new(),
        });
        let task = runtime.spawn(session::run(config, rx, Arc::clone(&shared)));
        NetworkDestination {
            tx,
            shared,
            acked,
            submitted: 0,
            task: Some(task),
            runtime: runtime.clone(),
        }
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Hands one item to the link task, waiting while its channel is full (the window is
    /// full: the target is slow or unreachable) unless the job stops.
    fn submit(&mut self, item: Outgoing) -> Result<(), DestinationError> {
        // A verification request is never acknowledged: it does not count as submitted.
        let counted = !matches!(item, Outgoing::Verify(_));
        loop {
            // A slot is reserved first, so a wait that times out (to look at `stop`) does
            // not drop the item.
            let tx = &self.tx;
            let reserved = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(100), tx.reserve()).await
            });
            match reserved {
                Ok(Ok(permit)) => {
                    permit.send(item);
                    self.submitted += u64::from(counted);
                    return Ok(());
                }
                Ok(Err(_)) => return Err(DestinationError::Stopped),
                Err(_) if self.stopped() => return Err(DestinationError::Stopped),
                Err(_) => {}
            }
        }
    }
}

impl NetworkDestination {
    /// Hands an operation to the link, counted as pending until the target acknowledges
    /// it. Counted before it is handed over (the acknowledgement that uncounts it may come
    /// at once), so what waits for a connection counts as not acknowledged too.
    fn submit_op(
        &mut self,
        ev: Event,
        stream: Stream,
        captured_ns: u64,
        file: Option<(u64, u64)>,
    ) -> Result<(), DestinationError> {
        let stats = &self.shared.stats;
        match stream {
            Stream::Replication => {
                stats.rep_ops_pending.fetch_add(1, Ordering::Relaxed);
            }
            Stream::Mirror => {
                stats.mir_ops_pending.fetch_add(1, Ordering::Relaxed);
                let bytes = match &ev.op {
                    rill_ops::Op::Write { len, .. } => *len,
                    _ => 0,
                };
                stats.mir_bytes_pending.fetch_add(bytes, Ordering::Relaxed);
            }
        }
        self.submit(Outgoing::Op {
            ev,
            stream,
            captured_ns,
            file,
        })
    }
}

impl Destination for NetworkDestination {
    /// Hands the operation to the link, with the file an in-place change was made to
    /// (kept in case the target refuses it: see [`Refused::files`]).
    fn send(
        &mut self,
        ev: Event,
        stream: Stream,
        file: Option<(u64, u64)>,
    ) -> Result<(), DestinationError> {
        // An operation no capture timed (the mirror's, a checkpoint's times) counts from
        // now, for `ConRPL`.
        let captured_ns = if ev.ktime_ns != 0 {
            ev.ktime_ns
        } else {
            monotonic_ns()
        };
        self.submit_op(ev, stream, captured_ns, file)
    }

    fn marker(&mut self, marker: Marker) -> Result<(), DestinationError> {
        self.submit(Outgoing::Marker(marker))
    }

    fn verify(&mut self, call: VerifyCall) -> Result<(), DestinationError> {
        self.submit(Outgoing::Verify(call))
    }

    /// Waits until the target has acknowledged everything handed to the link (durably
    /// applied there).
    fn flush(&mut self) -> Result<(), DestinationError> {
        while *self.acked.borrow() < self.submitted {
            if self.stopped() {
                return Err(DestinationError::Stopped);
            }
            // The watch wakes on every acknowledgement; the timeout re-checks `stop`.
            let acked = &mut self.acked;
            let woke = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(100), acked.changed()).await
            });
            if matches!(woke, Ok(Err(_))) || self.tx.is_closed() {
                return Err(DestinationError::Stopped);
            }
        }
        Ok(())
    }

    /// The mark is the count of items handed to the link, which the target's
    /// acknowledgements reach.
    fn checkpoint(&mut self) -> Result<u64, DestinationError> {
        Ok(self.submitted)
    }

    fn durable(&self) -> u64 {
        *self.acked.borrow()
    }

    /// The target refuses with a `Nak`, long after `send`.
    fn refuses_later(&self) -> bool {
        true
    }

    fn take_refused(&mut self) -> Refused {
        self.shared
            .failed
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default()
    }

    fn take_lost_state(&mut self) -> bool {
        // Asked once per operation sent: a load, and a swap only when it is set.
        let lost = &self.shared.stats.target_lost_state;
        lost.load(Ordering::Relaxed) && lost.swap(false, Ordering::Relaxed)
    }

    fn mirror_paused(&self) -> bool {
        self.shared.stats.target_paused.load(Ordering::Relaxed)
    }

    fn status(&self) -> StatusHandle {
        Arc::clone(&self.shared.stats) as StatusHandle
    }
}

/// How long a stopping session may take to send what it holds and close the connection.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl Drop for NetworkDestination {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // A permit if the session is not waiting right now: its next wait ends at once.
        self.shared.stopping.notify_one();
        if let Some(t) = self.task.take() {
            // Waited for from this plain thread without the runtime's timers, which would
            // panic if the runtime were already shutting down.
            let until = std::time::Instant::now() + CLOSE_GRACE;
            while !t.is_finished() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::DataState;

    #[test]
    fn link_statistics_read_as_the_destination_status() {
        let stats = LinkStats::default();
        let read = |s: &LinkStats| ReadStatus::read(s);
        assert_eq!(read(&stats), DestinationStatus::default());
        stats.set_state(ConnectionState::Connected);
        stats.ops_tx.store(5, Ordering::Relaxed);
        stats.bytes_tx.store(500, Ordering::Relaxed);
        stats.mir_ops_pending.store(2, Ordering::Relaxed);
        stats.target_paused.store(true, Ordering::Relaxed);
        let d = read(&stats);
        assert_eq!(d.connection, ConnectionState::Connected);
        assert_eq!((d.ops_tx, d.bytes_tx, d.mir_ops_pending), (5, 500, 2));
        assert!(d.mirror_paused);
        // The target's report is unknown until it reports or acknowledges.
        assert_eq!((d.acknowledged, d.target), (false, None));
        for (slot, v) in stats.target.iter().zip([9, 1, 2, 3, 4, 5, 1]) {
            slot.store(v, Ordering::Relaxed);
        }
        let t = read(&stats).target.unwrap();
        assert_eq!(
            t.counters,
            TargetCounters {
                ops_received: 9,
                ops_remaining: 1,
                retries: 2,
                ops_dropped: 3,
                bytes_in_target_queue: 4,
                bytes_in_target_disk_queue: 5,
            }
        );
        assert_eq!(t.data_state, DataState::Ok);
        stats.acked_seq.store(3, Ordering::Relaxed);
        assert!(read(&stats).acknowledged);
        // The end of the mirror is taken once.
        stats.mirror_complete_acked.store(true, Ordering::Relaxed);
        assert!(read(&stats).mirror_complete);
        assert!(stats.take_mirror_complete());
        assert!(!stats.take_mirror_complete());
    }
}
