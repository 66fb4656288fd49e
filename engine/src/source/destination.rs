//! The queue's consumer: the [`Destination`] interface, and [`LocalDestination`], which replicates
//! to a directory on this host.
//!
//! A `LocalDestination` is the two halves of a network connection without the network: the
//! source's [`Resolver`] completes each operation (data, times, attribute values, relative
//! paths) and the target's [`Applier`] applies it beneath the replica root, through the
//! [`Replica`] trait the target's sessions apply through, with the target's confinement.
//! Single-host replication and the engine's tests use it; the transport is the other
//! `Destination`.
//!
//! What the daemon's status report shows of a job's destination (its connection, what it
//! sent, what waits for acknowledgement, the target's own report) comes through the trait
//! too, as a [`DestinationStatus`] read from a [`StatusHandle`]: the destination belongs to
//! the job's transmit thread, and the status is asked for from the management API's, so the
//! handle is shared and reads counters the destination keeps anyway (atomics, no locks on
//! the path of each operation).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rill_ops::Event;

use crate::mgmt::{ConError, DataState, TargetCounters};
use crate::net::proto::{Marker, Stream};
use crate::replica::apply::{Applier, ApplyOptions};
use crate::replica::{ApplyError, Replica};
use crate::source::resolve::{ResolveError, ResolveOptions, Resolver};

/// Where operations go, in order. `send` returns once the operation is applied or on its
/// way; `flush` returns once everything sent is durable at the destination, and the caller
/// acknowledges the source queue only then. `checkpoint` and `durable` are the same
/// without the wait, so the source keeps sending while the destination makes a batch
/// durable: a network destination would otherwise idle both hosts for a round trip and a sync
/// in every batch.
pub trait Destination {
    /// Sends one operation (absolute source paths) of the replication or mirror stream.
    fn send(&mut self, ev: &Event, stream: Stream) -> Result<(), DestinationError>;
    /// Marks a point of the stream (the mirror's start and end).
    fn marker(&mut self, _marker: Marker) -> Result<(), DestinationError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DestinationError>;
    /// Ends a batch: everything sent so far is to be made durable. Returns the batch's
    /// mark, which [`Destination::durable`] reaches once it is.
    fn checkpoint(&mut self) -> Result<u64, DestinationError>;
    /// The highest mark whose batch is durable at the destination.
    fn durable(&self) -> u64;
    /// Source paths to remirror, found since the last call.
    fn take_remirrors(&mut self) -> ToRemirror {
        ToRemirror::default()
    }
    /// `path` (absolute) may hold a stale object on the destination from here on in the
    /// stream, until it is rebuilt: the moves sent after now are followed from it (see
    /// `followed`), and the names they reach come back from `take_remirrors`.
    fn suspect(&mut self, _path: &Path) {}
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

/// Names (absolute) a destination has to have remirrored ([`Destination::take_remirrors`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ToRemirror {
    /// Names the destination could not apply operations on, with every name the files
    /// changed in place through them have.
    pub refused: Vec<PathBuf>,
    /// Names whose changes the stream does not carry: files the capture marked dirty and
    /// writes the drain could not read, followed through the moves after them to every
    /// name the file has, and the names moves carried a stale object to. Not the
    /// destination's doing: a name here again and again is a file that keeps changing.
    pub changed: Vec<PathBuf>,
}

impl ToRemirror {
    pub fn is_empty(&self) -> bool {
        self.refused.is_empty() && self.changed.is_empty()
    }

    /// Every name, refused first.
    pub fn names(&self) -> impl Iterator<Item = &PathBuf> {
        self.refused.iter().chain(&self.changed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("the job is stopping")]
    Stopped,
}

/// Replicates `source` into a directory on this host.
pub struct LocalDestination {
    resolver: Resolver,
    replica: Box<dyn Replica>,
    resolved: Vec<Event>,
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
    /// Replicates `source` (absolute) into the existing directory `root`, reading and
    /// applying what the options (from the settings: [`crate::options::resolve_options`],
    /// [`crate::options::apply_options`]) ask for.
    pub fn new(
        source: &Path,
        root: &Path,
        resolve: ResolveOptions,
        apply: ApplyOptions,
    ) -> io::Result<LocalDestination> {
        Ok(LocalDestination {
            resolver: Resolver::new(source, resolve),
            replica: Box::new(Applier::new(root, apply)?),
            resolved: Vec::new(),
            batches: 0,
            status: Arc::default(),
        })
    }
}

impl Destination for LocalDestination {
    fn send(&mut self, ev: &Event, _stream: Stream) -> Result<(), DestinationError> {
        self.resolver.resolve(ev.clone(), &mut self.resolved)?;
        for ev in self.resolved.drain(..) {
            self.replica.apply(&ev)?;
            self.status.ops_applied.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Gives the files written since the last flush the source's times (writes on the
    /// replica moved them), then makes the replica durable.
    fn flush(&mut self) -> Result<(), DestinationError> {
        for ev in self.resolver.times_of_written() {
            self.replica.apply(&ev)?;
        }
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

    fn take_remirrors(&mut self) -> ToRemirror {
        ToRemirror {
            refused: Vec::new(),
            changed: self.resolver.take_stale(),
        }
    }

    fn suspect(&mut self, path: &Path) {
        self.resolver.suspect(path);
    }

    fn status(&self) -> StatusHandle {
        Arc::clone(&self.status) as StatusHandle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::resolve::ResolveError;
    use rill_ops::Op;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// A destination with the default options: every attribute, extended ones included.
    fn destination(src: &Path, dst: &Path) -> LocalDestination {
        LocalDestination::new(src, dst, Default::default(), Default::default()).unwrap()
    }

    fn op(path: &Path, op: Op) -> Event {
        Event::new(path, op)
    }

    fn create(path: &Path) -> Event {
        op(
            path,
            Op::Create {
                mode: 0o644,
                truncate: false,
            },
        )
    }

    fn write(path: &Path) -> Event {
        op(
            path,
            Op::Write {
                offset: 0,
                len: 3,
                data: Some(b"abc".to_vec().into()),
            },
        )
    }

    /// The source wrote through a symlink, removed the file behind it, and wrote through
    /// the link again (creating the file anew): the replica must hold the new file, not
    /// keep writing to the removed one through a descriptor cached under the link's name.
    #[test]
    fn writes_through_a_symlink_follow_the_file_it_names_now() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut destination = destination(src.path(), dst.path());
        let (link, real) = (src.path().join("link"), src.path().join("real"));
        for ev in [
            create(&real),
            op(
                &link,
                Op::Symlink {
                    target: "real".into(),
                },
            ),
            write(&link),
            op(&real, Op::Unlink),
            create(&link),
            write(&link),
        ] {
            destination.send(&ev, Stream::Replication).unwrap();
        }
        assert_eq!(std::fs::read(dst.path().join("real")).unwrap(), b"abc");
    }

    /// A file's chown, chmod and utimes after its writes go through the descriptor held
    /// for the writes, and land on the file; a name made anew over a held file (its
    /// removal lost, and the name remirrored as a directory) takes them instead.
    #[test]
    fn attributes_reach_the_file_the_name_holds_now() {
        use std::os::unix::fs::MetadataExt;
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut destination = destination(src.path(), dst.path());
        let f = src.path().join("f");
        let times = rill_ops::FileTimes {
            atime: (1_600_000_000, 5),
            mtime: (1_500_000_000, 7),
        };
        let attributes = |p: &Path, mode: u32| {
            [
                op(
                    p,
                    Op::Chown {
                        uid: Some(4321),
                        gid: Some(8765),
                    },
                ),
                op(p, Op::Chmod { mode }),
                op(p, Op::Utimes { times: Some(times) }),
            ]
        };
        let made = [
            op(
                &f,
                Op::Create {
                    mode: 0o600,
                    truncate: false,
                },
            ),
            write(&f),
        ];
        for ev in made.iter().chain(&attributes(&f, 0o640)) {
            destination.send(ev, Stream::Replication).unwrap();
        }
        let m = std::fs::metadata(dst.path().join("f")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (4321, 8765, 0o640));
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 7));
        assert_eq!((m.atime(), m.atime_nsec()), (1_600_000_000, 5));

        let held = std::fs::File::open(dst.path().join("f")).unwrap();
        destination
            .send(&op(&f, Op::Mkdir { mode: 0o700 }), Stream::Replication)
            .unwrap();
        for ev in attributes(&f, 0o751) {
            destination.send(&ev, Stream::Replication).unwrap();
        }
        let dir = std::fs::metadata(dst.path().join("f")).unwrap();
        assert!(dir.is_dir());
        assert_eq!(
            (dir.uid(), dir.gid(), dir.mode() & 0o7777),
            (4321, 8765, 0o751)
        );
        assert_eq!((dir.mtime(), dir.mtime_nsec()), (1_500_000_000, 7));
        let gone = held.metadata().unwrap();
        assert_eq!(
            (gone.nlink(), gone.mode() & 0o7777),
            (0, 0o640),
            "the removed file kept what it had"
        );
    }

    #[test]
    fn nothing_escapes_the_replica_root() {
        let (src, dst, outside) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let mut destination = destination(src.path(), dst.path());
        // A symlink planted in the replica, pointing out of it: not followed, as a directory
        // on the way or as the last component.
        std::os::unix::fs::symlink(outside.path(), dst.path().join("evil")).unwrap();
        std::fs::write(outside.path().join("victim"), b"keep").unwrap();
        assert!(destination
            .send(&write(&src.path().join("evil/victim")), Stream::Replication)
            .is_err());
        assert!(destination
            .send(&write(&src.path().join("evil")), Stream::Replication)
            .is_err());
        assert!(destination
            .send(
                &op(&src.path().join("evil"), Op::Chmod { mode: 0o777 }),
                Stream::Replication
            )
            .is_err());
        assert!(destination
            .send(
                &op(&src.path().join("evil/victim"), Op::Unlink),
                Stream::Replication
            )
            .is_err());
        assert_eq!(
            std::fs::read(outside.path().join("victim")).unwrap(),
            b"keep"
        );
        assert_ne!(
            std::fs::metadata(outside.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o777
        );
        // `..` and paths outside the source are refused before any system call.
        let dotdot = PathBuf::from(format!("{}/../x", src.path().display()));
        assert!(refused_outside(
            destination.send(&write(&dotdot), Stream::Replication)
        ));
        assert!(refused_outside(
            destination.send(&write(Path::new("/etc/passwd")), Stream::Replication)
        ));
        let rename_out = op(
            &src.path().join("a"),
            Op::Rename {
                new_path: "/tmp/elsewhere".into(),
                flags: 0,
            },
        );
        assert!(refused_outside(
            destination.send(&rename_out, Stream::Replication)
        ));
    }

    #[test]
    fn a_local_destination_reports_what_it_applied_through_its_status() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(src.path().join("f"), b"abc").unwrap();
        let mut destination = destination(src.path(), dst.path());
        let status = destination.status();
        let before = status.read();
        assert_eq!(before.connection, ConnectionState::Connected);
        assert!(!before.acknowledged);
        destination
            .send(&create(&src.path().join("f")), Stream::Replication)
            .unwrap();
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
    fn replayed_operations_are_harmless() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut destination = destination(src.path(), dst.path());
        let d = src.path().join("d");
        for _ in 0..2 {
            destination
                .send(&op(&d, Op::Mkdir { mode: 0o750 }), Stream::Replication)
                .unwrap();
            destination
                .send(&create(&d.join("f")), Stream::Replication)
                .unwrap();
            destination
                .send(&write(&d.join("f")), Stream::Replication)
                .unwrap();
            destination
                .send(&op(&d.join("f"), Op::Unlink), Stream::Replication)
                .unwrap();
        }
        destination.flush().unwrap();
        assert!(dst.path().join("d").is_dir());
        assert!(!dst.path().join("d/f").exists());
    }

    #[test]
    fn range_only_writes_times_and_xattrs_are_read_from_the_source() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut destination = destination(src.path(), dst.path());
        let f = src.path().join("f");
        // Larger than one resolved write, so the range is sent in pieces.
        let content: Vec<u8> = (0..(crate::source::resolve::MAX_RESOLVED_WRITE as usize * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&f, &content).unwrap();
        let range = Op::Write {
            offset: 0,
            // The file is shorter than the captured range: it shrank since.
            len: content.len() as u64 + 100,
            data: None,
        };
        destination.send(&create(&f), Stream::Replication).unwrap();
        destination
            .send(&op(&f, range), Stream::Replication)
            .unwrap();
        xattr_set(&f, "user.k", b"v1");
        destination
            .send(
                &op(
                    &f,
                    Op::SetXattr {
                        name: "user.k".into(),
                        value: None,
                    },
                ),
                Stream::Replication,
            )
            .unwrap();
        // A file gone by the time it is sent is skipped: its removal follows.
        destination
            .send(
                &op(&src.path().join("gone"), Op::Utimes { times: None }),
                Stream::Replication,
            )
            .unwrap();
        destination.flush().unwrap();
        let replica = dst.path().join("f");
        assert_eq!(std::fs::read(&replica).unwrap(), content);
        assert_eq!(
            crate::source::resolve::get_xattr(&replica, b"user.k").unwrap(),
            b"v1"
        );
        let (a, b) = (
            crate::source::resolve::file_times(&f).unwrap(),
            crate::source::resolve::file_times(&replica).unwrap(),
        );
        assert_eq!(a.mtime, b.mtime);
    }

    fn refused_outside(r: Result<(), DestinationError>) -> bool {
        matches!(
            r,
            Err(DestinationError::Resolve(ResolveError::Outside(_)))
                | Err(DestinationError::Apply(ApplyError::Outside(_)))
        )
    }

    fn xattr_set(path: &Path, name: &str, value: &[u8]) {
        use std::os::unix::ffi::OsStrExt;
        let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let n = std::ffi::CString::new(name).unwrap();
        crate::sys::xattr::set_nofollow(&p, &n, value).unwrap();
    }
}
