//! A capture session: one ordered stream of events under some root directories.
//!
//! Sources: a private eBPF instance (the default, so a session never consumes the pinned
//! ring an engine drains), the pinned driver's ring (`attach`, holding the reader lock), or
//! fanotify. Whatever the source, events outside the roots are dropped, sequence numbers
//! are assigned in the order events leave the source, and records the driver could not
//! keep surface as an `overflow` event followed by a `dirty` event per affected file.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rill_abi::{
    maps::{user_dev_to_kernel, Category},
    DirtyKey, Stat,
};

use crate::fanotify::FanotifySource;
use crate::loader::{self, Instance};
use crate::maps::DriverMaps;
use crate::mounts::MountTable;
use crate::ring::{ReaderLock, RingReader};
use crate::settings::{CaptureMode, DriverSettings};
use crate::{DriverError, Result};
use rill_ops::{DirtyReason, Event, Op};

/// Where a session gets its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A private eBPF instance, loaded for this session and unloaded after it.
    Private,
    /// The pinned driver's ring (requires `rill-driver load`; takes the reader lock).
    Pinned,
    Fanotify,
}

enum Backend {
    Ebpf(Box<EbpfBackend>),
    Fanotify(FanotifySource),
}

struct EbpfBackend {
    /// The private instance's programs: dropping them detaches the capture.
    _programs: Option<aya::Ebpf>,
    _lock: Option<ReaderLock>,
    maps: DriverMaps,
    reader: RingReader,
    lost: u64,
    /// The driver's dirty-map-full count already reported.
    dirty_map_full: u64,
    /// The driver's count of dirty marks when losses were last collected (`None`: not yet,
    /// and a pinned driver may have lost operations before this reader).
    dirty_marks: Option<u64>,
    /// Last path seen for each (kernel dev, ino), to name dirty files.
    names: HashMap<(u64, u64), PathBuf>,
    /// Files marked changed by the second layer that a walk of the roots did not find:
    /// outside them (any file with a shared writable mapping on a watched file system is
    /// marked). One is forgotten when a rename or link may have brought it in.
    outside: HashSet<(u64, u64)>,
    /// Marks of files found outside the roots before, held until the ring has been read to
    /// its end since they were listed (see [`Held`]).
    held: HashMap<(u64, u64), Held>,
}

/// A second-layer mark of a file found outside the roots before, waiting to be judged.
///
/// Judged when listed, by its inode number alone, it was dropped when that number had been
/// freed and given to a file made under the roots since, whose creation the reader had not
/// read yet: the mark is listed as soon as it is made, while the record of the creation may
/// wait in the ring behind others (found by the replication security tests: a file written
/// from a thread, whose writes are marks, reached the replica empty; the engine's own
/// queue files, which the capture never sees, free inode numbers all the time). So the
/// mark waits until the ring has been read to its end after it was listed: every record
/// made before it is named by then, and a creation under the roots has forgotten the
/// number as outside ([`moved_in`]).
struct Held {
    first_ns: u64,
    /// When it was last listed.
    listed: Instant,
}

/// How long after a held mark was listed the ring must be found at its end for the mark to
/// be judged. A record is reserved and committed within one run of a BPF program, which
/// does not sleep; one reserved before the end was found and committed after it is read at
/// the next poll, and this margin covers the microseconds that takes many times over.
const HELD_MARGIN: Duration = Duration::from_millis(1);

/// What one [`Capture::poll_batch`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Polled {
    /// Events appended.
    pub kept: usize,
    /// The source was found empty after them.
    pub emptied: bool,
}

pub struct Capture {
    roots: Vec<PathBuf>,
    /// Watched file systems (kernel device numbers) and the mount table to place paths on
    /// them; `None` when every file system is watched.
    watched: Option<(MountTable, Vec<u64>)>,
    backend: Backend,
    next_seq: u64,
    pub source: Source,
}

impl Capture {
    /// Starts a session. With `Source::Private`, `mode` picks eBPF or fanotify (`Auto`
    /// tries eBPF and falls back to fanotify, logging why).
    pub fn start(
        roots: &[PathBuf],
        source: Source,
        mode: CaptureMode,
        settings: &DriverSettings,
    ) -> Result<Capture> {
        let roots = roots
            .iter()
            .map(|r| r.canonicalize().map_err(|e| DriverError::io(r, e)))
            .collect::<Result<Vec<_>>>()?;
        let me = std::process::id();
        let (backend, source) = match (source, mode) {
            (Source::Fanotify, _) | (Source::Private, CaptureMode::Fanotify) => (
                Backend::Fanotify(FanotifySource::new(&roots)?),
                Source::Fanotify,
            ),
            (Source::Pinned, _) => {
                let lock = ReaderLock::acquire()?;
                let mut maps = DriverMaps::open_pinned()?;
                let reader = RingReader::new(maps.ring.take().ok_or(DriverError::NotLoaded)?)?;
                maps.bump_generation()?;
                (ebpf_backend(None, Some(lock), maps, reader), Source::Pinned)
            }
            (Source::Private, _) => {
                let mut s = settings.clone();
                // A session watches its roots' file systems unless the administrator has
                // narrowed capture with WatchedPaths.
                if s.watched_paths.is_empty() {
                    s.watched_paths = roots.clone();
                }
                match loader::load(&s, false) {
                    Ok(Instance { ebpf, mut maps }) => {
                        maps.apply_with(&s, &[me])?;
                        let reader =
                            RingReader::new(maps.ring.take().ok_or(DriverError::NotLoaded)?)?;
                        (
                            ebpf_backend(Some(ebpf), None, maps, reader),
                            Source::Private,
                        )
                    }
                    Err(e) if mode == CaptureMode::Auto && !matches!(e, DriverError::NotRoot) => {
                        log::warn!("eBPF capture unavailable, using fanotify: {e}");
                        (
                            Backend::Fanotify(FanotifySource::new(&roots)?),
                            Source::Fanotify,
                        )
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let watched = match &backend {
            Backend::Fanotify(_) => None,
            Backend::Ebpf(b) if b.maps.config()?.filter_devs != 0 => {
                Some((MountTable::open()?, b.maps.watched_devs()?))
            }
            Backend::Ebpf(_) => None,
        };
        Ok(Capture {
            roots,
            watched,
            backend,
            next_seq: 1,
            source,
        })
    }

    /// The guide's `DriverQueuePercent` for this session's ring: its fill as a percentage
    /// of the stop-replicating limit. `None` for fanotify, which has no ring.
    pub fn driver_queue_percent(&self) -> Result<Option<f64>> {
        let Backend::Ebpf(b) = &self.backend else {
            return Ok(None);
        };
        let stop_pct = b.maps.config()?.stop_pct;
        Ok(Some(b.reader.fill()?.driver_queue_percent(stop_pct)))
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    fn under_roots(&self, p: &Path) -> bool {
        self.roots.iter().any(|r| crate::mounts::is_beneath(p, r))
    }

    /// Whether `p` lies under a root and on a watched file system.
    fn wanted(&self, p: &Path) -> bool {
        self.under_roots(p)
            && match &self.watched {
                Some((mounts, devs)) => mounts.device_of(p).is_some_and(|d| devs.contains(&d)),
                None => true,
            }
    }

    /// Waits up to `timeout` and appends the session's new events, numbered, to `out`.
    pub fn poll(&mut self, timeout: Duration, out: &mut Vec<Event>) -> Result<usize> {
        self.poll_batch(timeout, out).map(|b| b.kept)
    }

    /// Like `poll`, and says whether the source was found empty after what it gave: then
    /// everything captured before the call has been read (a ring reader takes at most
    /// [`RingReader::BATCH`] records at a time, so a full batch may have left more).
    pub fn poll_batch(&mut self, timeout: Duration, out: &mut Vec<Event>) -> Result<Polled> {
        self.poll_source(timeout, out, false)
            .map(|(read, kept)| Polled {
                kept,
                emptied: read < RingReader::BATCH,
            })
    }

    /// Replaces the session's roots (a capture shared by several jobs follows the jobs
    /// that come and go). Events read from now on are filtered and named by the new roots.
    pub fn set_roots(&mut self, roots: &[PathBuf]) -> Result<()> {
        self.roots = roots
            .iter()
            .map(|r| r.canonicalize().map_err(|e| DriverError::io(r, e)))
            .collect::<Result<Vec<_>>>()?;
        if let Backend::Ebpf(b) = &mut self.backend {
            // A file found outside the old roots may lie under a new one.
            b.outside.clear();
        }
        Ok(())
    }

    /// Reads and drops what the driver holds from before this session: the ring's records
    /// and the dirty marks, whose losses are counted as seen. For a reader whose consumers
    /// learn what changed before they started by other means (a job's mirror, or its walk
    /// of what changed since it stopped), a pinned ring left unread meanwhile holds only
    /// what they cover already, and its marks (most of them for files outside the roots,
    /// which a walk cannot place) would have them remirror their whole roots. Returns how
    /// many records were dropped.
    pub fn discard_backlog(&mut self) -> Result<u64> {
        let Backend::Ebpf(b) = &mut self.backend else {
            return Ok(0);
        };
        // Bounded as `flush` is: a busy system keeps writing.
        const MAX_BATCHES: usize = 4096;
        let (mut dropped, mut batch) = (0u64, Vec::new());
        for _ in 0..MAX_BATCHES {
            batch.clear();
            if !b.reader.drain(&mut batch) {
                break;
            }
            dropped += batch.len() as u64;
        }
        for (key, _) in b.maps.dirty()? {
            b.maps.clear_dirty(&key)?;
        }
        // The counters last: a loss counted after this read is collected by a poll (its
        // mark was made before it was counted), one counted before it predates the session.
        b.dirty_marks = Some(b.maps.stat(Stat::DIRTY_MARKS)?);
        let stats = b.maps.stats()?;
        b.lost = lost_total(&stats);
        b.dirty_map_full = stats.get(Stat::DIRTY_MAP_FULL);
        Ok(dropped)
    }

    /// Like `poll`; also returns how many events the source gave (before naming, losses
    /// and filtering). With `flushing`, marks held for the ring to be read to its end (see
    /// [`Held`]) are judged as soon as it is, with no margin: a flush reads until nothing
    /// is left.
    fn poll_source(
        &mut self,
        timeout: Duration,
        out: &mut Vec<Event>,
        flushing: bool,
    ) -> Result<(usize, usize)> {
        let mut raw = Vec::new();
        // Held marks listed before this are judged (the ring was read to its end after).
        let mut settle_before = None;
        match &mut self.backend {
            Backend::Fanotify(f) => {
                f.poll(timeout, &mut raw)?;
            }
            Backend::Ebpf(b) => {
                let started = Instant::now();
                if b.reader.poll(timeout, &mut raw)? < RingReader::BATCH {
                    settle_before = if flushing {
                        Some(started)
                    } else {
                        started.checked_sub(HELD_MARGIN)
                    };
                }
            }
        }
        let read = raw.len();
        self.collect_losses(&mut raw, settle_before)?;
        if let Some((mounts, _)) = &mut self.watched {
            mounts.refresh()?;
        }
        let before = out.len();
        for mut ev in raw {
            let keep = matches!(ev.op, Op::Overflow { .. }) || ev.paths().any(|p| self.wanted(p));
            if keep {
                ev.seq = self.next_seq;
                self.next_seq += 1;
                out.push(ev);
            }
        }
        Ok((read, out.len() - before))
    }

    /// Drains what is left in the ring (after the workload stopped) without waiting.
    pub fn flush(&mut self, out: &mut Vec<Event>) -> Result<usize> {
        // Bounded: on a busy system new operations keep arriving; what completed before
        // the flush is at most one ring, far fewer batches than this.
        const MAX_BATCHES: usize = 4096;
        let mut kept = 0;
        for _ in 0..MAX_BATCHES {
            let (from_source, n) = self.poll_source(Duration::ZERO, out, true)?;
            kept += n;
            if from_source == 0 {
                break;
            }
        }
        Ok(kept)
    }

    /// Names events the reader could not name, and turns new drop counts and dirty-map
    /// entries into `overflow` and `dirty` events.
    fn collect_losses(
        &mut self,
        raw: &mut Vec<Event>,
        settle_before: Option<Instant>,
    ) -> Result<()> {
        let Backend::Ebpf(b) = &mut self.backend else {
            return Ok(());
        };
        let EbpfBackend {
            maps,
            lost,
            dirty_map_full,
            dirty_marks,
            names,
            outside,
            held,
            ..
        } = &mut **b;
        let mut namer = Namer::new(&self.roots, names);
        name_records(raw, &mut namer, outside);
        if let Some(before) = settle_before {
            settle(held, before, &mut namer, outside, raw);
        }
        // Every loss is also a dirty mark, and the marks' count rises last: while it stays
        // where it was, there is nothing to collect. Reading it alone is one system call;
        // reading every counter and listing the dirty-file map (which walks all its 65,536
        // buckets, empty or not) on every poll of a busy ring cost the drain about a third
        // of its time. The count is read before what it guards, so a mark made meanwhile
        // is collected now or by the next poll.
        let marks = maps.stat(Stat::DIRTY_MARKS)?;
        if *dirty_marks == Some(marks) {
            return Ok(());
        }
        *dirty_marks = Some(marks);
        let stats = maps.stats()?;
        let total = lost_total(&stats);
        if total > *lost {
            let count = total - *lost;
            raw.push(synthetic(PathBuf::new(), 0, Op::Overflow { count }));
            *lost = total;
        }
        let map_full = stats.get(Stat::DIRTY_MAP_FULL);
        if map_full > *dirty_map_full {
            // Dirty marks that did not fit the map: only a rescan of everything is safe.
            *dirty_map_full = map_full;
            for root in &self.roots {
                raw.push(synthetic(
                    root.clone(),
                    0,
                    Op::Dirty {
                        reason: DirtyReason::RescanAll,
                    },
                ));
            }
        }
        let listed = Instant::now();
        for (key, value) in maps.dirty()? {
            let reason = DirtyReason::from_abi(value.reason);
            let id = (key.dev, key.ino);
            let paths = if key == DirtyKey::default() {
                // An absolute name: its directory is unknown, so every root is dirty.
                self.roots.clone()
            } else if reason == DirtyReason::Modified {
                // The second layer marks files by what happened to them, wherever they are
                // on a watched file system: one not under the roots is none of ours, but
                // one found outside before may have been replaced since (see `Held`).
                if outside.contains(&id) {
                    let first_ns = value.first_ns;
                    held.insert(id, Held { first_ns, listed });
                    Vec::new()
                } else {
                    namer.lookup(id).unwrap_or_else(|| {
                        outside.insert(id);
                        Vec::new()
                    })
                }
            } else {
                namer.name(id)
            };
            // The file's identity goes with its marks, so the engine can remirror every
            // name it has, wherever later renames take them.
            let object = (key != DirtyKey::default()).then_some(id);
            for path in paths {
                raw.push(Event {
                    object,
                    ..synthetic(path, value.first_ns, Op::Dirty { reason })
                });
            }
            maps.clear_dirty(&key)?;
        }
        Ok(())
    }
}

/// Names the records read: a record without a name (the driver could not walk it) by its
/// object; the objects of named ones are remembered by that name, and forgotten as
/// outside the roots when they came in (see [`moved_in`]).
fn name_records(raw: &mut Vec<Event>, namer: &mut Namer, outside: &mut HashSet<(u64, u64)>) {
    let mut named = Vec::with_capacity(raw.len());
    for ev in raw.drain(..) {
        if !outside.is_empty() {
            moved_in(&ev, outside);
        }
        match ev.object {
            Some(id) if ev.path.as_os_str().is_empty() => {
                for path in namer.name(id) {
                    named.push(Event { path, ..ev.clone() });
                }
            }
            Some(id) => {
                namer.names.insert(id, ev.path.clone());
                named.push(ev);
            }
            None => named.push(ev),
        }
    }
    *raw = named;
}

/// Judges the held marks listed before `before` (the ring has been read to its end since):
/// a file still known as outside the roots is none of ours; one the records read since
/// brought in (or replaced) is named, its mark appended to `raw`.
fn settle(
    held: &mut HashMap<(u64, u64), Held>,
    before: Instant,
    namer: &mut Namer,
    outside: &mut HashSet<(u64, u64)>,
    raw: &mut Vec<Event>,
) {
    held.retain(|&id, h| {
        if h.listed >= before {
            return true;
        }
        if !outside.contains(&id) {
            let paths = namer.lookup(id).unwrap_or_else(|| {
                outside.insert(id);
                Vec::new()
            });
            let reason = DirtyReason::Modified;
            raw.extend(paths.into_iter().map(|p| Event {
                object: Some(id),
                ..synthetic(p, h.first_ns, Op::Dirty { reason })
            }));
        }
        false
    });
}

/// Names objects (kernel dev, inode) under a session's roots: from the paths seen so far,
/// else from one walk of the roots made on first need; an object on the roots' file
/// systems that is found nowhere names all the roots (only a rescan is safe).
struct Namer<'a> {
    roots: &'a [PathBuf],
    names: &'a mut HashMap<(u64, u64), PathBuf>,
    root_devs: Option<Vec<u64>>,
    index: Option<HashMap<(u64, u64), PathBuf>>,
}

impl<'a> Namer<'a> {
    fn new(roots: &'a [PathBuf], names: &'a mut HashMap<(u64, u64), PathBuf>) -> Self {
        Namer {
            roots,
            names,
            root_devs: None,
            index: None,
        }
    }

    fn name(&mut self, id: (u64, u64)) -> Vec<PathBuf> {
        self.lookup(id).unwrap_or_else(|| self.roots.to_vec())
    }

    /// The object's name, nothing when it is on another file system, or `None` when it is
    /// on the roots' file systems but was found under none of them (or the walk stopped at
    /// its bound before finding it).
    fn lookup(&mut self, id: (u64, u64)) -> Option<Vec<PathBuf>> {
        // A remembered name counts only if it still is that object: inode numbers are
        // reused, and the name may have been removed or renamed since.
        if let Some(p) = self.names.get(&id) {
            if std::fs::symlink_metadata(p)
                .is_ok_and(|m| (user_dev_to_kernel(m.dev()), m.ino()) == id)
            {
                return Some(vec![p.clone()]);
            }
            self.names.remove(&id);
        }
        let roots = self.roots;
        let devs = self.root_devs.get_or_insert_with(|| {
            roots
                .iter()
                .filter_map(|r| std::fs::metadata(r).ok())
                .map(|m| user_dev_to_kernel(m.dev()))
                .collect()
        });
        if !devs.contains(&id.0) {
            return Some(Vec::new()); // Another file system: not under these roots.
        }
        let index = self.index.get_or_insert_with(|| index_inodes(roots));
        match index.get(&id) {
            Some(p) => Some(vec![p.clone()]),
            // The walk stopped at its bound: the object may lie beyond.
            None if index.len() >= MAX_ENTRIES => Some(roots.to_vec()),
            None => None,
        }
    }
}

/// Forgets, of the files known to lie outside the roots, the one a rename or link names
/// now (every one, when that is a directory: its contents moved with it), and the one a
/// record names with its path: the file found outside may have been removed and its
/// inode number given to a file made since, perhaps under the roots (whose later dirty
/// marks would otherwise be dropped as none of ours).
fn moved_in(ev: &Event, outside: &mut HashSet<(u64, u64)>) {
    if let Some(id) = ev.object {
        if !ev.path.as_os_str().is_empty() {
            outside.remove(&id);
        }
    }
    let now = match &ev.op {
        Op::Rename { new_path, .. } => new_path,
        // A link record's path is the new name.
        Op::Link { .. } => &ev.path,
        _ => return,
    };
    match std::fs::symlink_metadata(now) {
        Ok(m) if !m.is_dir() => {
            outside.remove(&(user_dev_to_kernel(m.dev()), m.ino()));
        }
        // A directory, or gone already (renamed again: its next rename comes later, or
        // it came before and then this may be anything).
        _ => outside.clear(),
    }
}

/// Records the driver dropped or did not keep (stop limit), over every category.
fn lost_total(stats: &crate::maps::Stats) -> u64 {
    (0..Category::COUNT as u32)
        .map(|c| stats.get(Stat::DROPPED_BASE + c) + stats.get(Stat::STOPPED_BASE + c))
        .sum()
}

fn synthetic(path: PathBuf, ktime_ns: u64, op: Op) -> Event {
    Event {
        ktime_ns,
        ..Event::new(path, op)
    }
}

/// Objects the walk of the roots names at most.
const MAX_ENTRIES: usize = 500_000;

/// Maps (kernel dev, ino) to a path for everything under the roots, up to a bound.
fn index_inodes(roots: &[PathBuf]) -> HashMap<(u64, u64), PathBuf> {
    let mut index = HashMap::new();
    let mut stack: Vec<PathBuf> = roots.to_vec();
    while let Some(p) = stack.pop() {
        if index.len() >= MAX_ENTRIES {
            break;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
        index.insert((user_dev_to_kernel(md.dev()), md.ino()), p);
    }
    index
}

fn ebpf_backend(
    programs: Option<aya::Ebpf>,
    lock: Option<ReaderLock>,
    maps: DriverMaps,
    reader: RingReader,
) -> Backend {
    Backend::Ebpf(Box::new(EbpfBackend {
        _programs: programs,
        _lock: lock,
        maps,
        reader,
        lost: 0,
        dirty_map_full: 0,
        dirty_marks: None,
        names: HashMap::new(),
        outside: HashSet::new(),
        held: HashMap::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: &Path) -> (u64, u64) {
        let m = std::fs::symlink_metadata(p).unwrap();
        (user_dev_to_kernel(m.dev()), m.ino())
    }

    /// A file under the roots is named; one on their file system but outside them is
    /// unknown to `lookup` (the second layer's marks are dropped) while `name` falls back
    /// to the roots (a lost operation's mark: only a rescan is safe); another file
    /// system's object names nothing.
    #[test]
    fn lookup_tells_objects_outside_the_roots() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("in"), b"in").unwrap();
        std::fs::write(top.path().join("out"), b"out").unwrap();
        let roots = vec![root.canonicalize().unwrap()];
        let mut names = HashMap::new();
        let mut namer = Namer::new(&roots, &mut names);
        let inside = id(&root.join("in"));
        let outside = id(&top.path().join("out"));
        assert_eq!(namer.lookup(inside), Some(vec![roots[0].join("in")]));
        assert_eq!(namer.lookup(outside), None);
        assert_eq!(namer.name(outside), roots);
        assert_eq!(namer.lookup((u64::MAX, 1)), Some(Vec::new()));
    }

    /// A file known to lie outside the roots is forgotten once a rename or link names it
    /// (it may have come in), all of them when a directory moved; other files are kept.
    #[test]
    fn a_rename_link_or_named_record_forgets_what_it_may_have_brought_in() {
        let top = tempfile::tempdir().unwrap();
        let (a, b, d) = (
            top.path().join("a"),
            top.path().join("b"),
            top.path().join("d"),
        );
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        std::fs::create_dir(&d).unwrap();
        let mut outside: HashSet<(u64, u64)> = [id(&a), id(&b)].into();
        let rename = |to: &Path| {
            Event::new(
                top.path().join("old"),
                Op::Rename {
                    new_path: to.to_path_buf(),
                    flags: 0,
                },
            )
        };
        moved_in(&rename(&a), &mut outside);
        assert_eq!(outside, [id(&b)].into());
        moved_in(
            &Event::new(d.clone(), Op::Mkdir { mode: 0o755 }),
            &mut outside,
        );
        assert_eq!(outside, [id(&b)].into());
        let link = Event::new(b.clone(), Op::Link { target: a.clone() });
        moved_in(&link, &mut outside);
        assert!(outside.is_empty());
        outside.insert(id(&a));
        moved_in(&rename(&d), &mut outside);
        assert!(outside.is_empty());
        // A record naming an object with its path (a create, say, that was given the
        // inode number of a file found outside and removed since) forgets that object; a
        // record by path cookie (no path) names one seen with its path before.
        outside.extend([id(&a), id(&b)]);
        let made = |path: PathBuf, object| Event {
            object: Some(object),
            ..Event::new(
                path,
                Op::Create {
                    mode: 0o644,
                    truncate: false,
                },
            )
        };
        moved_in(&made(PathBuf::new(), id(&a)), &mut outside);
        assert_eq!(outside, [id(&a), id(&b)].into());
        moved_in(&made(d.join("new"), id(&a)), &mut outside);
        assert_eq!(outside, [id(&b)].into());
    }
}
