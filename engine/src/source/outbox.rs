//! Where the transmit loop's operations go: resolved once, on the source, then handed to
//! the job's [`Destination`].
//!
//! A captured operation names absolute source paths and may lack values the capture did not
//! copy (a range-only write's bytes, times the kernel picked, an extended attribute's
//! value). The [`Outbox`] owns the job's one [`Resolver`], which completes each operation
//! from the source tree and makes its paths relative (see [`crate::source::resolve`]), and
//! the job's destination, which receives only what the resolver made of it. Resolving is
//! the source's business whatever the operations go to: it reads the source and keeps the
//! stream's history (files written since the last checkpoint, names gone stale, names
//! that may hold a stale object on the replica). Done here, it is done once, the same way
//! for every destination; a destination (a directory on this host, a target `rilld`, some
//! day an object store) is only where resolved operations go.
//!
//! So the outbox also does what needs that history around a destination's calls: before a
//! checkpoint or a flush it sends the source's times of the files written since the last
//! one (writes on the replica moved them); for an in-place change of the replication stream
//! it finds the file the change was made to, which a destination that refuses operations
//! after accepting them keeps with each; and it turns what the destination refused
//! (relative names and those files) into the names to remirror ([`ToRemirror`]), following
//! each refused name through the moves sent after it and finding every name a refused
//! file has now.

use std::path::{Path, PathBuf};

use rill_ops::Event;

use crate::net::proto::{Marker, Stream};
use crate::source::destination::{Destination, DestinationError, Refused, StatusHandle};
use crate::source::resolve::{ResolveOptions, Resolver};

/// The job's resolver and its destination: the transmit loop's one way out.
pub struct Outbox {
    /// The job's source directory (absolute): what refused relative names are joined to.
    source: PathBuf,
    resolver: Resolver,
    destination: Box<dyn Destination>,
    /// What one operation resolved to, a buffer reused from one `send` to the next.
    resolved: Vec<Event>,
}

/// Names (absolute) to have remirrored ([`Outbox::take_remirrors`]).
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

impl Outbox {
    /// Resolves operations on files under `source` (absolute) as `options` (from the
    /// settings: [`crate::options::resolve_options`]) ask, for `destination`.
    pub fn new(
        source: &Path,
        options: ResolveOptions,
        destination: Box<dyn Destination>,
    ) -> Outbox {
        Outbox {
            source: source.to_path_buf(),
            resolver: Resolver::new(source, options),
            destination,
            resolved: Vec::new(),
        }
    }

    /// The source directory whose operations it resolves.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Resolves one operation (absolute source paths) of the replication or mirror stream
    /// and sends what it resolves to: nothing, one operation, or a large write's pieces.
    pub fn send(&mut self, ev: &Event, stream: Stream) -> Result<(), DestinationError> {
        self.resolver.resolve(ev.clone(), &mut self.resolved)?;
        let keeps_files = stream == Stream::Replication && self.destination.refuses_later();
        // Taken out and put back, so the buffer is reused and `send` can borrow `self`.
        let mut resolved = std::mem::take(&mut self.resolved);
        for ev in resolved.drain(..) {
            if stream == Stream::Replication && self.left_to_remirror(&ev) {
                continue;
            }
            // The file an in-place change was made to, in case the destination refuses it
            // (see `Refused::files`). Only for captured operations: a checkpoint's times
            // are sent under the name of the file written itself, and asking for each
            // would cost a look at the source per written file.
            let file = if keeps_files && ev.op.changes_in_place() {
                ev.object
                    .or_else(|| self.resolver.file_changed_by_name(&ev.path))
            } else {
                None
            };
            self.destination.send(ev, stream, file)?;
        }
        self.resolved = resolved;
        Ok(())
    }

    /// Puts a verification request into the stream after everything sent so far (see
    /// `crate::verify`).
    pub fn verify(&mut self, call: crate::verify::VerifyCall) -> Result<(), DestinationError> {
        self.destination.verify(call)
    }

    /// Marks a point of the stream (the mirror's start and end).
    pub fn marker(&mut self, marker: Marker) -> Result<(), DestinationError> {
        self.destination.marker(marker)
    }

    /// Ends a batch (see [`Destination::checkpoint`]), after the times of the files written
    /// in it.
    pub fn checkpoint(&mut self) -> Result<u64, DestinationError> {
        self.send_times_of_written()?;
        self.destination.checkpoint()
    }

    /// Returns once everything sent is durable at the destination (see
    /// [`Destination::flush`]), the times of the files written since the last checkpoint
    /// sent first.
    pub fn flush(&mut self) -> Result<(), DestinationError> {
        self.send_times_of_written()?;
        self.destination.flush()
    }

    /// Every operation captured before `ns` (CLOCK_MONOTONIC) has been sent (see
    /// [`Resolver::stream_passed`]).
    pub fn stream_passed(&mut self, ns: u64) {
        self.resolver.stream_passed(ns);
    }

    /// Whether a checkpoint is wanted for the times of a written file whose name led
    /// elsewhere at the last one, even with nothing else sent (see
    /// [`Resolver::times_astray`]).
    pub fn times_astray(&self) -> bool {
        self.resolver.times_astray()
    }

    /// Writes moved the replica's times: the source's times of every file written since
    /// the last checkpoint go after them, as replication operations.
    fn send_times_of_written(&mut self) -> Result<(), DestinationError> {
        for ev in self.resolver.times_of_written() {
            if !self.left_to_remirror(&ev) {
                self.destination.send(ev, Stream::Replication, None)?;
            }
        }
        Ok(())
    }

    /// Whether `ev` (resolved), a replication operation, changes in place what the
    /// replica holds under a name suspect there until a remirror rebuilds it: such a
    /// change is not sent but left to that remirror (see [`Resolver::leave_to_remirror`]).
    /// The replica refuses the names it knows stale itself; these are the ones the source
    /// found (a remirror overtaken by an older operation, a stale object carried on).
    fn left_to_remirror(&mut self, ev: &Event) -> bool {
        let left = ev.op.changes_in_place() && self.resolver.suspected(&ev.path);
        if left {
            log::debug!("left to the remirror of a stale name: {}", ev.to_text());
            self.resolver.leave_to_remirror(ev);
        }
        left
    }

    /// The highest mark whose batch is durable at the destination.
    pub fn durable(&self) -> u64 {
        self.destination.durable()
    }

    /// Source names (absolute) to remirror, found since the last call: what the
    /// destination refused, with every name the files changed in place through the
    /// refused names have now, and what the resolver found the stream does not carry.
    pub fn take_remirrors(&mut self) -> ToRemirror {
        let Refused { names, files } = self.destination.take_refused();
        let mut refused: Vec<PathBuf> = Vec::with_capacity(names.len());
        for name in names {
            let p = self.source.join(name);
            // What the replica holds there is stale until the remirror rebuilds it, and the
            // moves still to be sent would carry it on.
            self.resolver.suspect(&p);
            refused.push(p);
        }
        // A file changed in place is remirrored under the names it has now.
        let files: Vec<(u64, u64)> = files.into_iter().collect();
        let names = self.resolver.names_of(&files, &refused);
        refused.extend(names);
        let changed = self.resolver.take_stale();
        // A name to remirror lacks a change until its remirror reads it, and a move sent
        // before then takes what the replica holds there to another name, which the
        // remirror of this one never reaches: followed like the refused ones (found by the
        // replication fuzzer: a `chmod` made through a symlink, remirrored under the name
        // of the file it reached, which a rename took away before the remirror ran; the
        // file kept its old mode on the replica).
        for p in &changed {
            self.resolver.follow(p);
        }
        ToRemirror { refused, changed }
    }

    /// `path` (absolute) may hold a stale object on the destination from here on in the
    /// stream, until it is rebuilt: the moves sent after now are followed from it (see
    /// `followed`), and the names they reach come back from `take_remirrors`.
    pub fn suspect(&mut self, path: &Path) {
        self.resolver.suspect(path);
    }

    /// Whether `path` (absolute, beneath the source) names a replica object that may be
    /// stale or another file (see `Resolver::followed`); a path outside the source counts
    /// as one.
    pub fn followed(&self, path: &Path) -> bool {
        match self.resolver.relative(path) {
            Ok(rel) => self.resolver.followed(&rel),
            Err(_) => true,
        }
    }

    /// Whether the destination asked to hold the mirror back (its queue is full).
    pub fn mirror_paused(&self) -> bool {
        self.destination.mirror_paused()
    }

    /// Whether the destination lost what it had acknowledged, since the last call (see
    /// [`Destination::take_lost_state`]).
    pub fn take_lost_state(&mut self) -> bool {
        self.destination.take_lost_state()
    }

    /// The destination's status handle (see [`Destination::status`]).
    pub fn status(&self) -> StatusHandle {
        self.destination.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::ApplyError;
    use crate::source::destination::LocalDestination;
    use crate::source::resolve::ResolveError;
    use rill_ops::Op;
    use std::os::unix::fs::PermissionsExt;

    /// An outbox to a local destination, both with the default options: every attribute,
    /// extended ones included.
    fn destination(src: &Path, dst: &Path) -> Outbox {
        let local = LocalDestination::new(dst, Default::default()).unwrap();
        Outbox::new(src, Default::default(), Box::new(local))
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

    /// What a [`Recorder`] was given, in order.
    #[derive(Debug, PartialEq)]
    enum Given {
        Sent {
            path: PathBuf,
            op: Op,
            stream: Stream,
            file: Option<(u64, u64)>,
        },
        Checkpoint,
        Flush,
    }

    /// A destination that records what it is given and hands back the refusals a test
    /// puts in `refused`, as a target does after the fact.
    struct Recorder {
        given: Shared<Vec<Given>>,
        refused: Shared<Refused>,
        refuses_later: bool,
    }

    /// Kept by the test, and by the recorder inside the outbox.
    type Shared<T> = std::sync::Arc<std::sync::Mutex<T>>;

    impl Destination for Recorder {
        fn send(
            &mut self,
            ev: Event,
            stream: Stream,
            file: Option<(u64, u64)>,
        ) -> Result<(), DestinationError> {
            let (path, op) = (ev.path, ev.op);
            self.given.lock().unwrap().push(Given::Sent {
                path,
                op,
                stream,
                file,
            });
            Ok(())
        }

        fn flush(&mut self) -> Result<(), DestinationError> {
            self.given.lock().unwrap().push(Given::Flush);
            Ok(())
        }

        fn checkpoint(&mut self) -> Result<u64, DestinationError> {
            self.given.lock().unwrap().push(Given::Checkpoint);
            Ok(0)
        }

        fn durable(&self) -> u64 {
            0
        }

        fn refuses_later(&self) -> bool {
            self.refuses_later
        }

        fn take_refused(&mut self) -> Refused {
            std::mem::take(&mut *self.refused.lock().unwrap())
        }

        fn status(&self) -> StatusHandle {
            unreachable!("not asked for in these tests")
        }
    }

    /// An outbox over a [`Recorder`], with what the recorder was given and what it is to
    /// refuse.
    fn recording(src: &Path, refuses_later: bool) -> (Outbox, Shared<Vec<Given>>, Shared<Refused>) {
        let (given, refused) = (Shared::default(), Shared::default());
        let recorder = Recorder {
            given: std::sync::Arc::clone(&given),
            refused: std::sync::Arc::clone(&refused),
            refuses_later,
        };
        let outbox = Outbox::new(src, Default::default(), Box::new(recorder));
        (outbox, given, refused)
    }

    fn file_of(path: &Path) -> (u64, u64) {
        crate::source::resolve::identity(&std::fs::metadata(path).unwrap())
    }

    /// A destination gets relative names, and, if it refuses after accepting, the file
    /// each in-place change of the replication stream was made to: the capture's, or the
    /// one the name leads to on the source (through a symlink, the file behind it). The
    /// times of the files written come before each checkpoint and flush, with no file.
    #[test]
    fn in_place_changes_carry_their_file_to_a_destination_that_refuses_later() {
        let src = tempfile::tempdir().unwrap();
        let (f, l, d) = (
            src.path().join("f"),
            src.path().join("l"),
            src.path().join("d"),
        );
        std::fs::write(&f, b"abc").unwrap();
        std::os::unix::fs::symlink("f", &l).unwrap();
        for refuses_later in [true, false] {
            let (mut outbox, given, _) = recording(src.path(), refuses_later);
            let captured = Event {
                object: Some((1, 2)),
                ..op(&f, Op::Chmod { mode: 0o600 })
            };
            let sent = [
                (op(&l, Op::Chmod { mode: 0o640 }), Stream::Replication),
                (captured, Stream::Replication),
                (write(&f), Stream::Replication),
                (op(&f, Op::Chmod { mode: 0o644 }), Stream::Mirror),
                (op(&d, Op::Mkdir { mode: 0o755 }), Stream::Replication),
            ];
            for (ev, stream) in &sent {
                outbox.send(ev, *stream).unwrap();
            }
            outbox.checkpoint().unwrap();
            let files: Vec<Option<(u64, u64)>> = given
                .lock()
                .unwrap()
                .iter()
                .map(|g| match g {
                    Given::Sent { file, .. } => *file,
                    _ => None,
                })
                .collect();
            let kept = |file| refuses_later.then_some(file);
            let id = file_of(&f);
            assert_eq!(
                files,
                [kept(id), kept((1, 2)), kept(id), None, None, None, None]
            );
            let given = std::mem::take(&mut *given.lock().unwrap());
            let rel: Vec<&Path> = given
                .iter()
                .filter_map(|g| match g {
                    Given::Sent { path, .. } => Some(path.as_path()),
                    _ => None,
                })
                .collect();
            assert_eq!(rel, ["l", "f", "f", "f", "d", "f"].map(Path::new));
            assert!(matches!(
                &given[5..],
                [
                    Given::Sent {
                        op: Op::Utimes { times: Some(_) },
                        stream: Stream::Replication,
                        file: None,
                        ..
                    },
                    Given::Checkpoint
                ]
            ));
        }
    }

    #[test]
    fn the_times_of_written_files_go_before_a_flush() {
        let src = tempfile::tempdir().unwrap();
        let f = src.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        let (mut outbox, given, _) = recording(src.path(), true);
        outbox.send(&write(&f), Stream::Replication).unwrap();
        outbox.flush().unwrap();
        outbox.flush().unwrap();
        let given = given.lock().unwrap();
        assert!(
            matches!(
                &given[1..],
                [
                    Given::Sent {
                        op: Op::Utimes { times: Some(_) },
                        file: None,
                        ..
                    },
                    Given::Flush,
                    Given::Flush
                ]
            ),
            "{given:?}"
        );
    }

    /// What the destination refused comes back as source names, with every other name
    /// of a file changed in place through them, and the refused names are followed
    /// through the moves sent after: where one carries a refused name's object, that
    /// name is remirrored too.
    #[test]
    fn refusals_come_back_as_source_names_of_their_files_and_are_followed() {
        let src = tempfile::tempdir().unwrap();
        let at = |n: &str| src.path().join(n);
        std::fs::write(at("a"), b"a").unwrap();
        std::fs::hard_link(at("a"), at("b")).unwrap();
        std::fs::write(at("c"), b"c").unwrap();
        let (mut outbox, _, refused) = recording(src.path(), true);
        assert!(outbox.take_remirrors().is_empty());
        refused.lock().unwrap().add(
            &[PathBuf::from("a"), PathBuf::from("c")],
            Some(file_of(&at("a"))),
        );
        let to = outbox.take_remirrors();
        assert_eq!(
            to,
            ToRemirror {
                refused: vec![at("a"), at("c"), at("b")],
                changed: Vec::new(),
            }
        );
        std::fs::rename(at("c"), at("d")).unwrap();
        let moved = op(
            &at("c"),
            Op::Rename {
                new_path: at("d"),
                flags: 0,
            },
        );
        outbox.send(&moved, Stream::Replication).unwrap();
        let to = outbox.take_remirrors();
        assert_eq!((to.refused, to.changed), (Vec::new(), vec![at("d")]));
    }

    /// An in-place change of a name suspect on the replica (a remirror overtaken there)
    /// is not sent but left to the name's remirror, with every name of the file it was
    /// made to, for the replica's object there may be another file with other names; the
    /// mirror's rebuild of the name, and what follows it, are sent.
    #[test]
    fn in_place_changes_of_a_suspect_name_are_left_to_its_remirror() {
        let src = tempfile::tempdir().unwrap();
        let at = |n: &str| src.path().join(n);
        std::fs::write(at("a"), b"a").unwrap();
        std::fs::hard_link(at("a"), at("b")).unwrap();
        let (mut outbox, given, _) = recording(src.path(), true);
        outbox.suspect(&at("a"));
        let chown = || {
            op(
                &at("a"),
                Op::Chown {
                    uid: Some(1003),
                    gid: Some(2001),
                },
            )
        };
        outbox.send(&chown(), Stream::Replication).unwrap();
        assert!(given.lock().unwrap().is_empty(), "not sent");
        let to = outbox.take_remirrors();
        assert_eq!(to.changed, [at("a"), at("b")]);
        // The remirror rebuilds the name from its removal on.
        outbox
            .send(&op(&at("a"), Op::Unlink), Stream::Mirror)
            .unwrap();
        outbox.send(&chown(), Stream::Mirror).unwrap();
        outbox.send(&chown(), Stream::Replication).unwrap();
        let sent: Vec<Stream> = given
            .lock()
            .unwrap()
            .iter()
            .filter_map(|g| match g {
                Given::Sent { stream, .. } => Some(*stream),
                _ => None,
            })
            .collect();
        assert_eq!(sent, [Stream::Mirror, Stream::Mirror, Stream::Replication]);
    }

    /// Every name handed back to remirror is followed through the moves sent after it:
    /// a rename that takes the file away from it before its remirror runs has the new
    /// name remirrored too (the old one is gone from the source by then).
    #[test]
    fn names_to_remirror_are_followed_until_remirrored() {
        let src = tempfile::tempdir().unwrap();
        let at = |n: &str| src.path().join(n);
        std::fs::write(at("a"), b"a").unwrap();
        std::fs::hard_link(at("a"), at("b")).unwrap();
        let (mut outbox, _, _) = recording(src.path(), true);
        // A mark of the file the capture could not record: every name it has is remirrored.
        let mark = Event {
            object: Some(file_of(&at("a"))),
            ..op(
                &at("a"),
                Op::Dirty {
                    reason: rill_ops::DirtyReason::Modified,
                },
            )
        };
        outbox.send(&mark, Stream::Replication).unwrap();
        assert_eq!(outbox.take_remirrors().changed, [at("a"), at("b")]);
        std::fs::rename(at("b"), at("c")).unwrap();
        let moved = op(
            &at("b"),
            Op::Rename {
                new_path: at("c"),
                flags: 0,
            },
        );
        outbox.send(&moved, Stream::Replication).unwrap();
        assert_eq!(outbox.take_remirrors().changed, [at("c")]);
    }

    /// A file the capture could only mark holds the right object on the replica, short of
    /// a change: the writes after the mark are still sent, in order (a database's journal
    /// and its pages must reach the replica in the order they were written), and the
    /// name is remirrored as well.
    #[test]
    fn changes_after_a_mark_are_sent_in_order() {
        let src = tempfile::tempdir().unwrap();
        let at = |n: &str| src.path().join(n);
        std::fs::write(at("db"), b"pages").unwrap();
        let (mut outbox, given, _) = recording(src.path(), true);
        let mark = Event {
            object: Some(file_of(&at("db"))),
            ..op(
                &at("db"),
                Op::Dirty {
                    reason: rill_ops::DirtyReason::Modified,
                },
            )
        };
        outbox.send(&mark, Stream::Replication).unwrap();
        outbox.send(&write(&at("db")), Stream::Replication).unwrap();
        let to = outbox.take_remirrors();
        outbox.send(&write(&at("db")), Stream::Replication).unwrap();
        assert_eq!(to.changed, [at("db")]);
        let writes = given
            .lock()
            .unwrap()
            .iter()
            .filter(|g| {
                matches!(
                    g,
                    Given::Sent {
                        op: Op::Write { .. },
                        ..
                    }
                )
            })
            .count();
        assert_eq!(writes, 2, "both writes sent");
    }
}
