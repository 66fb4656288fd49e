//! Draining the capture ring.
//!
//! A BPF ring buffer has one consumer position, so two readers would each see only part
//! of the stream. The pinned ring is therefore guarded by an exclusive lock file: the
//! engine (or `capture --attach`) holds it while draining, and anyone else is refused
//! rather than allowed to steal records.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use aya::maps::{Map, MapData, RingBuf};
use nix::fcntl::{Flock, FlockArg};
use rill_abi::maps::user_dev_to_kernel;
use rill_abi::record::{FLAG_NOFOLLOW, FLAG_OBJECT_ID};
use rill_abi::{Kind, Record};
use rill_ops::decode::{to_event, PathCache};
use rill_ops::{Event, Op, Reached};

use crate::{DriverError, Result};

// Records carry Linux's open flags as the kernel passed them; the decoder knows the
// truncate bit by the ABI's name for it.
const _: () = assert!(rill_abi::record::OPEN_TRUNC == libc::O_TRUNC as u64);

pub const READER_LOCK: &str = "/run/rill/ring.lock";

/// Proof that this process is the pinned ring's only reader.
pub struct ReaderLock {
    _lock: Flock<File>,
}

impl ReaderLock {
    pub fn acquire() -> Result<ReaderLock> {
        std::fs::create_dir_all("/run/rill").map_err(|e| DriverError::io("/run/rill", e))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(READER_LOCK)
            .map_err(|e| DriverError::io(READER_LOCK, e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let _ = lock.set_len(0);
                let _ = writeln!(
                    lock,
                    "pid {} ({})",
                    std::process::id(),
                    std::env::args().collect::<Vec<_>>().join(" ")
                );
                Ok(ReaderLock { _lock: lock })
            }
            Err((_, _)) => Err(DriverError::RingBusy {
                holder: std::fs::read_to_string(READER_LOCK)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            }),
        }
    }
}

impl ReaderLock {
    /// Who holds the lock (as its holder wrote), or `None` when nobody drains the ring.
    /// Tests with a shared lock, so it neither blocks nor disturbs a reader starting.
    pub fn holder() -> Option<String> {
        let file = std::fs::File::open(READER_LOCK).ok()?;
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_) => None,
            Err(_) => Some(
                std::fs::read_to_string(READER_LOCK)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            ),
        }
    }
}

/// Reads records from a ring map and decodes them.
pub struct RingReader {
    ring: RingBuf<MapData>,
    /// The ring's size in bytes, for its fill.
    size: u64,
    paths: PathCache,
    /// Records that could not be decoded (a driver/ABI mismatch); reported, never fatal.
    pub corrupt: u64,
}

impl RingReader {
    /// Most records one `drain` or `poll` returns.
    pub const BATCH: usize = 4096;

    pub fn new(ring: Map) -> Result<RingReader> {
        let size = match &ring {
            Map::RingBuf(d) => d.info().map(|i| i.max_entries() as u64).unwrap_or(0),
            _ => 0,
        };
        let ring =
            RingBuf::try_from(ring).map_err(|e| DriverError::Ebpf(format!("RILL_RING: {e}")))?;
        Ok(RingReader {
            ring,
            size,
            paths: PathCache::default(),
            corrupt: 0,
        })
    }

    /// How full the ring is now (what the driver's throttling looks at).
    pub fn fill(&self) -> Result<crate::status::RingFill> {
        crate::status::ring_fill_fd(self.ring.as_raw_fd(), self.size)
    }

    /// Waits up to `timeout` for the ring to have data, then drains everything in it.
    pub fn poll(&mut self, timeout: Duration, out: &mut Vec<Event>) -> Result<usize> {
        let before = out.len();
        if !self.drain(out) {
            let mut fds = [libc::pollfd {
                fd: self.ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    1,
                    timeout.as_millis().min(i32::MAX as u128) as i32,
                )
            };
            self.drain(out);
        }
        Ok(out.len() - before)
    }

    /// Drains up to [`Self::BATCH`] records that are in the ring now; returns whether
    /// anything was there. Bounded so a reader that fell behind holds one batch of events
    /// in memory, not the whole ring's worth (a 32 MB ring of small writes is over 100k
    /// events, each with its data copied out).
    pub fn drain(&mut self, out: &mut Vec<Event>) -> bool {
        let mut any = false;
        for _ in 0..Self::BATCH {
            let Some(item) = self.ring.next() else { break };
            any = true;
            match Record::decode(&item)
                .map_err(|e| DriverError::Record(e.to_string()))
                .and_then(|(r, _)| {
                    let mut ev = to_event(&r, &mut self.paths)?;
                    if followed_a_name(&r) {
                        name_the_file_reached(&mut ev);
                    }
                    if r.kind == Kind::Link && ev.object.is_none() {
                        identify(&mut ev);
                    }
                    if r.kind == Kind::Truncate && ev.object.is_none() {
                        note_the_file_reached(&mut ev);
                    }
                    Ok(ev)
                }) {
                Ok(ev) => out.push(ev),
                Err(e) => {
                    self.corrupt += 1;
                    log::warn!("{e}");
                }
            }
        }
        any
    }
}

/// Whether the record is an owner or times call by name that followed a final symlink
/// (`chown`, `utimes`, `fchownat`, `utimensat` without `AT_SYMLINK_NOFOLLOW`): the
/// replica applies those to the name itself, so the name must be the file's.
///
/// A mode or size call by name (`chmod`, `fchmodat`, `truncate`) always follows a link,
/// on the replica too, so it keeps the name the caller gave: at its point of the stream
/// the replica's name leads where the source's did at the call. Named by the file the
/// name reached when the record is read, such a call was misnamed whenever the name
/// changed in between (found by the replication fuzzer: a file renamed over by a symlink
/// 11 ms after its truncate, and the truncate applied on the replica to the other file
/// the new link leads to). A replica that refuses such a call has the link's name
/// remirrored, and with it the file the link leads to (see `Mirror::remirror`).
fn followed_a_name(r: &Record<'_>) -> bool {
    matches!(r.kind, Kind::Chown | Kind::Utimes)
        && r.header.flags & (FLAG_NOFOLLOW | FLAG_OBJECT_ID) == 0
}

/// A hard link says which file it named only by a name, and the name may hold another
/// file by the time the engine looks (a rename or an exchange later in the stream, with
/// the source seconds ahead after a cut): the new name is identified here, as close to
/// the call as userspace gets, so the engine's record of which names a written file has
/// is that file's (found by the replication fuzzer: a file's times lost when the name it
/// was written through was replaced). A name already gone is left unidentified.
///
/// A truncate by name is not identified so: an operation with an identity is applied on
/// the replica as one on an open file, never through a symlink, and a truncate that
/// followed a link whose name was replaced before this read would be refused there (and
/// its file's new size lost) instead of applied through the replica's link.
///
/// The two names the link joined must still be one file: a name renamed over or exchanged
/// between the call and this read holds another file, which the identity would then name
/// (found by the replication fuzzer: a link's new name exchanged 46 ms after the call, the
/// file identified was the other one, and the times due for writes through the link were
/// held back for good). Then the link is left unidentified, as one whose name is gone.
fn identify(ev: &mut Event) {
    let id = |p: &std::path::Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| (user_dev_to_kernel(m.dev()), m.ino()))
    };
    let Op::Link { target } = &ev.op else {
        return;
    };
    if let (Some(new), Some(existing)) = (id(&ev.path), id(target)) {
        if new == existing {
            ev.object = Some(new);
        }
    }
}

/// A truncate by name (`truncate(2)`, which follows a final symlink) says which file it
/// changed only by the name, and the engine reads that file's times after it: which file
/// the name led to is noted here, as close to the call as userspace gets, so that a name
/// that holds another file by the time the engine looks (an exchange or a rename captured
/// after the call) is not taken for the file truncated (found by the replication fuzzer: a
/// truncate through a symlink, its file exchanged 15 ms later, the times sent for it the
/// other file's). The time of the look goes with it: a move of the name captured before
/// then may have given the name another file already. So does whether the name was a
/// symlink: its removal later removes the link, and the file truncated through it lives on
/// with its times due. A name gone by now is left unnoted. The operation keeps its name:
/// it is applied by name on a replica.
fn note_the_file_reached(ev: &mut Event) {
    let through_link =
        std::fs::symlink_metadata(&ev.path).is_ok_and(|m| m.file_type().is_symlink());
    if let Ok(m) = std::fs::metadata(&ev.path) {
        ev.reached = Some(Box::new(Reached {
            file: (user_dev_to_kernel(m.dev()), m.ino()),
            // Taken after the look: a move that completed while it ran counts as before.
            at_ns: crate::clock::monotonic_ns(),
            through_link,
        }));
    }
}

/// A call that followed a symlink changed the file the link leads to, not the link: name
/// that file, so the operation means the same wherever it is applied. The driver records
/// the name as the caller gave it, and only here, as close to the call as userspace gets,
/// can the link be read as it was then; a later operation may replace it. A name that is
/// not a symlink (the usual case: one `lstat`) or leads nowhere is left as it is.
fn name_the_file_reached(ev: &mut Event) {
    let is_link = std::fs::symlink_metadata(&ev.path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        if let Ok(real) = std::fs::canonicalize(&ev.path) {
            ev.path = real;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(dir: &std::path::Path, existing: &str, new: &str) -> Event {
        let op = Op::Link {
            target: dir.join(existing),
        };
        Event::new(dir.join(new), op)
    }

    /// A link whose two names are still one file is identified; one whose new name holds
    /// another file by the time the record is read (renamed over since) is not.
    #[test]
    fn a_link_is_identified_only_while_its_names_are_one_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("a"), b"file").unwrap();
        std::fs::hard_link(p.join("a"), p.join("b")).unwrap();
        let mut ev = link(p, "a", "b");
        identify(&mut ev);
        let ino = std::fs::metadata(p.join("a")).unwrap().ino();
        assert_eq!(ev.object.map(|o| o.1), Some(ino));

        std::fs::write(p.join("other"), b"another").unwrap();
        std::fs::rename(p.join("other"), p.join("b")).unwrap();
        let mut ev = link(p, "a", "b");
        identify(&mut ev);
        assert_eq!(ev.object, None, "b holds another file now");
    }
}
