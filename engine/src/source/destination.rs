//! Where resolved operations go: the [`Destination`] interface, and [`LocalDestination`],
//! which applies them to a directory on this host.
//!
//! A destination receives operations already resolved, once, on the source side by the
//! job's [`Outbox`](crate::source::outbox::Outbox): paths relative to the job's source,
//! data, times and attribute values read there. Resolving needs the source tree and the
//! stream's history (files written, names gone stale or suspect), which belong to the
//! source whatever the operations are sent to; so a destination holds no resolver. It
//! carries or applies what it is given, makes it durable, and hands back what it refused
//! as it saw it ([`Refused`]: relative names, and the files changed in place through
//! them); the outbox turns that into the names to remirror. Another kind of replica (an
//! object store) implements only this: where resolved operations go.
//!
//! A `LocalDestination` is the target's half of a connection without the network: the
//! target's [`Applier`] applies each operation beneath the replica root, through the
//! [`Replica`] trait the target's sessions apply through, with the target's confinement.
//! Single-host replication (`rilld run`) and the engine's tests use it; the network link
//! (`crate::net::link`) is the other `Destination`.
//!
//! What the daemon's status report shows of a job's destination (its connection, what it
//! sent, what waits for acknowledgement, the target's own report) comes through the trait
//! too, as a [`DestinationStatus`] read from a [`StatusHandle`]: the destination belongs to
//! the job's transmit thread, and the status is asked for from the management API's, so the
//! handle is shared and reads counters the destination keeps anyway (atomics, no locks on
//! the path of each operation).

use crate::verify::VerifyCall;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rill_ops::Event;

use crate::mgmt::{ConError, DataState, TargetCounters};
use crate::net::proto::{Marker, Stream};
use crate::replica::apply::{Applier, ApplyOptions};
use crate::replica::{ApplyError, Replica};
use crate::source::resolve::ResolveError;

/// Where resolved operations go, in order. `send` returns once the operation is applied or
/// on its way; `flush` returns once everything sent is durable at the destination, and the
/// caller acknowledges the source queue only then. `checkpoint` and `durable` are the same
/// without the wait, so the source keeps sending while the destination makes a batch
/// durable: a network destination would otherwise idle both hosts for a round trip and a sync
/// in every batch.
///
/// A destination belongs to the job's transmit thread, which the daemon starts: it is
/// `Send`, as a [`Replica`] is.
pub trait Destination: Send {
    /// Sends one resolved operation (paths relative to the job's source, values complete)
    /// of the replication or mirror stream. `file` is the file (kernel device, inode) an
    /// in-place change of the replication stream was made to, given only to a destination
    /// that [`refuses_later`](Destination::refuses_later), to hand back with a refusal.
    fn send(
        &mut self,
        ev: Event,
        stream: Stream,
        file: Option<(u64, u64)>,
    ) -> Result<(), DestinationError>;
    /// Marks a point of the stream (the mirror's start and end).
    fn marker(&mut self, _marker: Marker) -> Result<(), DestinationError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DestinationError>;
    /// Asks what the replica holds under some names, once everything sent before is
    /// applied; the answer goes back through the call (see `crate::verify`). A
    /// destination that cannot answer says so in the answer.
    fn verify(&mut self, call: VerifyCall) -> Result<(), DestinationError> {
        call.answer(Err("this destination cannot verify its replica".into()));
        Ok(())
    }
    /// Ends a batch: everything sent so far is to be made durable. Returns the batch's
    /// mark, which [`Destination::durable`] reaches once it is.
    fn checkpoint(&mut self) -> Result<u64, DestinationError>;
    /// The highest mark whose batch is durable at the destination.
    fn durable(&self) -> u64;
    /// Whether operations `send` accepted may be refused afterwards (a target applies them
    /// later) and come back from [`Destination::take_refused`]. Only then does the sender
    /// find the file each in-place change was made to, which costs a look at the source
    /// per change made by name; a destination that applies at once refuses through
    /// `send`'s error instead.
    fn refuses_later(&self) -> bool {
        false
    }
    /// What the destination refused since the last call.
    fn take_refused(&mut self) -> Refused {
        Refused::default()
    }
    /// Whether the destination asked to hold the mirror back (its queue is full).
    fn mirror_paused(&self) -> bool {
        false
    }
    /// Whether, since the last call, the destination turned out to have lost operations
    /// it had acknowledged (restored or rebuilt): nothing it holds can be trusted, so the
    /// whole source is to be remirrored.
    fn take_lost_state(&mut self) -> bool {
        false
    }
    /// A handle on the destination's status, for other threads to read while this one
    /// sends (the daemon takes it before handing the destination to the job's thread).
    fn status(&self) -> StatusHandle;
}

/// What a destination could not apply (or, without retransmission, may not have applied),
/// as it knows it ([`Destination::take_refused`]): the source's outbox turns it into names
/// to remirror (see `Outbox::take_remirrors`).
#[derive(Debug, Default)]
pub struct Refused {
    /// Relative paths the operations named, and the names later operations carried what
    /// they held to.
    pub names: Vec<PathBuf>,
    /// The files (kernel device, inode) that refused in-place changes (writes, truncates,
    /// attributes) were made to. A file with hard links has names the operation did not
    /// name, and by the time the remirror reads, the name it did may be gone or hold
    /// another file: the change then reached the replica under none of the file's names
    /// (found by the replication fuzzer: a write through a symlink to a hard link's name,
    /// refused, that name then removed; the file's other name kept other bytes).
    pub files: BTreeSet<(u64, u64)>,
}

impl Refused {
    /// Remembers the operation's names, and its file if it changed one in place.
    pub fn add(&mut self, paths: &[PathBuf], file: Option<(u64, u64)>) {
        self.names.extend(paths.iter().cloned());
        if let Some(f) = file {
            if self.files.len() < MAX_REFUSED_FILES {
                self.files.insert(f);
            }
        }
    }
}

/// The most files remembered for a remirror by identity at once: a bound on memory far
/// past what a healthy link sees (together they cost one walk of the source, and none
/// when the refused names still hold them as their only names); past it, only the names
/// are remirrored.
const MAX_REFUSED_FILES: usize = 4096;

/// A destination's status as other threads read it ([`Destination::status`]).
pub type StatusHandle = Arc<dyn ReadStatus>;

/// Reads a destination's status. Implementations read what the destination counts anyway,
/// so that reading costs the destination nothing and needs no lock on its path.
pub trait ReadStatus: Send + Sync {
    fn read(&self) -> DestinationStatus;
    /// Whether the destination acknowledged the end of a full mirror since the last call,
    /// so the caller records the mirror as complete once.
    fn take_mirror_complete(&self) -> bool {
        false
    }
}

/// Whether a destination is reached: a network destination's connection to its target (the
/// management API turns it into the guide's `conState`, which also depends on the job); a
/// local destination always is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnectionState {
    #[default]
    Disconnected = 0,
    Connecting = 1,
    Connected = 2,
    /// The target refused the connection (authentication, path): retried all the same.
    Refused = 3,
}

impl ConnectionState {
    /// The state stored as `s as u8`.
    pub(crate) fn from_u8(v: u8) -> ConnectionState {
        match v {
            1 => ConnectionState::Connecting,
            2 => ConnectionState::Connected,
            3 => ConnectionState::Refused,
            _ => ConnectionState::Disconnected,
        }
    }
}

/// What the status report shows of a destination, read at one instant
/// ([`ReadStatus::read`]); the guide's names where it has them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DestinationStatus {
    pub connection: ConnectionState,
    /// Why the destination is not reached, until an attempt succeeds (`conError`).
    pub error: Option<ConError>,
    /// `conOpsTx`, `conBytesTx`, `conBytesCompressedTx`, `conResentOpCount`.
    pub ops_tx: u64,
    pub bytes_tx: u64,
    pub bytes_compressed_tx: u64,
    pub resent: u64,
    /// Mirror operations, and their bytes, handed over and not yet acknowledged.
    pub mir_ops_pending: u64,
    pub mir_bytes_pending: u64,
    /// `ConRPL`: seconds since the capture of the oldest operation not acknowledged.
    pub lag_seconds: f64,
    /// Whether the destination acknowledged anything yet.
    pub acknowledged: bool,
    /// The target's own report on the job, once it made one or acknowledged anything.
    pub target: Option<TargetReport>,
    /// The target asked to hold the mirror back (its queue is full).
    pub mirror_paused: bool,
    /// The target acknowledged the end of a full mirror.
    pub mirror_complete: bool,
}

/// What a target reports of the job it applies (the guide's Target statistics).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetReport {
    pub counters: TargetCounters,
    pub data_state: DataState,
}

/// Why an operation was not sent or applied. `Resolve` comes from the outbox, which
/// resolves before the destination sees the operation.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("the job is stopping")]
    Stopped,
}

/// Applies resolved operations to a directory on this host.
pub struct LocalDestination {
    replica: Box<dyn Replica>,
    /// Batches made durable so far (each `checkpoint` flushes).
    batches: u64,
    status: Arc<LocalStatus>,
}

/// What a [`LocalDestination`] knows of its status: it is always reached, applies each
/// operation as it is sent, and acknowledges each batch when it returns from `checkpoint`.
#[derive(Default)]
struct LocalStatus {
    ops_applied: AtomicU64,
    batches: AtomicU64,
}

impl ReadStatus for LocalStatus {
    fn read(&self) -> DestinationStatus {
        DestinationStatus {
            connection: ConnectionState::Connected,
            ops_tx: self.ops_applied.load(Ordering::Relaxed),
            acknowledged: self.batches.load(Ordering::Relaxed) > 0,
            ..DestinationStatus::default()
        }
    }
}

impl LocalDestination {
    /// Applies into the existing directory `root` as the options (from the settings:
    /// [`crate::options::apply_options`]) ask.
    pub fn new(root: &Path, apply: ApplyOptions) -> io::Result<LocalDestination> {
        Ok(LocalDestination {
            replica: Box::new(Applier::new(root, apply)?),
            batches: 0,
            status: Arc::default(),
        })
    }
}

impl Destination for LocalDestination {
    /// Applies the operation at once: a refusal is `send`'s error, so `file` is not needed.
    fn send(
        &mut self,
        ev: Event,
        _stream: Stream,
        _file: Option<(u64, u64)>,
    ) -> Result<(), DestinationError> {
        self.replica.apply(&ev)?;
        self.status.ops_applied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes the replica durable (the outbox sent the written files' times before).
    fn flush(&mut self) -> Result<(), DestinationError> {
        Ok(self.replica.flush()?)
    }

    fn checkpoint(&mut self) -> Result<u64, DestinationError> {
        self.flush()?;
        self.batches += 1;
        self.status.batches.store(self.batches, Ordering::Relaxed);
        Ok(self.batches)
    }

    fn durable(&self) -> u64 {
        self.batches
    }

    fn status(&self) -> StatusHandle {
        Arc::clone(&self.status) as StatusHandle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_ops::Op;

    /// What resolving the creation of `f` under the source gives: a relative name. (The
    /// operations a destination is given in full are tested through the outbox, which
    /// resolves them, in `outbox.rs`.)
    fn created(name: &str) -> Event {
        Event::new(
            name,
            Op::Create {
                mode: 0o644,
                truncate: false,
            },
        )
    }

    #[test]
    fn a_local_destination_reports_what_it_applied_through_its_status() {
        let dst = tempfile::tempdir().unwrap();
        let mut destination = LocalDestination::new(dst.path(), Default::default()).unwrap();
        let status = destination.status();
        let before = status.read();
        assert_eq!(before.connection, ConnectionState::Connected);
        assert!(!before.acknowledged);
        destination
            .send(created("f"), Stream::Replication, None)
            .unwrap();
        assert!(dst.path().join("f").is_file());
        assert!(status.read().ops_tx >= 1);
        assert!(
            !status.read().acknowledged,
            "nothing is durable before a checkpoint"
        );
        destination.checkpoint().unwrap();
        let after = status.read();
        assert!(after.acknowledged);
        assert_eq!((after.error, after.target), (None, None));
        assert!(!status.take_mirror_complete());
    }

    #[test]
    fn refused_files_are_bounded_and_names_are_not() {
        let mut r = Refused::default();
        for i in 0..MAX_REFUSED_FILES as u64 + 10 {
            r.add(&[PathBuf::from(format!("f{i}"))], Some((1, i)));
        }
        r.add(&[PathBuf::from("g")], None);
        assert_eq!(r.names.len(), MAX_REFUSED_FILES + 11);
        assert_eq!(r.files.len(), MAX_REFUSED_FILES);
    }
}
