//! One capture for every job of a `rilld`: the capture hub.
//!
//! Each job used to start a capture session of its own, a private eBPF instance, so every
//! system call on the host ran one set of rill programs per job. The hub reads one session
//! for all of them, the pinned driver's ring (loaded and pinned by the hub when it is
//! absent, and left loaded when `rilld` exits, as an installed driver stays), and hands
//! each event to the job or jobs whose source root holds one of its names. A rename or
//! link between two jobs' sources goes to both: each job's [`crate::source::drain::Drain`] turns
//! a rename across its set's boundary into what it means there (a removal, or content to
//! mirror). Losses that name no single job (`overflow`; `dirty` marks of a directory above
//! a job's root, such as a rescan of a root that holds another) go to every job they may
//! touch.
//!
//! The hub lives in the engine rather than in the driver crate: the driver offers capture
//! sessions ([`Capture`], one ordered stream under some roots), which `rill-driver
//! capture` keeps using alone with a private instance of its own; what the hub adds is in
//! the engine's jobs' terms: each job's own stream and numbering, its "everything
//! captured before this instant has been handed to me" (`JobControl::ring_empty_ns`), its
//! flush at stop, and a job that falls behind not holding back the others.
//!
//! A job subscribes ([`CaptureHub::subscribe`]); the first subscription starts the
//! session and its reader thread, the last one's drop stops the reader (which releases
//! the pinned ring's reader lock; the pinned programs stay). The reader polls the ring,
//! routes each event and wakes the subscribers; a subscription offers what a job's drain
//! thread used of its own session: [`Subscription::poll`], [`Subscription::flush`] and
//! [`Subscription::driver_queue_percent`].
//!
//! When another process already drains the pinned ring (another `rilld` on this host, as
//! in the tests that run several), a hub of [`HubSource::Shared`] falls back to a private
//! instance, still one for all of its jobs, and says so in the log.
//!
//! # State
//!
//! - [`Shared::state`], one mutex: the subscribers (their roots, the events routed to
//!   them and not yet taken, when the ring was last found empty, an overflow episode);
//!   generations of the subscriber set and of flush requests, and how far the reader has
//!   served them; the last `DriverQueuePercent`; the reader's failure; its thread.
//! - [`Shared::start`], held while the reader is started or stopped, so a subscriber never
//!   starts a second reader while the last one still holds the ring.
//! - The reader thread owns the [`Capture`]; the session's roots are the subscribers'
//!   roots, those beneath another left out.
//!
//! # Invariants
//!
//! - A reader runs while a subscription exists (unless it failed: then every
//!   subscription's `poll` and `flush` return its error), and none after the last one is
//!   dropped.
//! - An event captured after [`CaptureHub::subscribe`] returned, one of whose names lies
//!   under the subscriber's roots, reaches that subscriber in capture order: as itself,
//!   or, once more than [`PENDING_BYTES_MAX`] wait for it, as a `dirty` mark of its names
//!   (after an `overflow` event; nothing is dropped silently). `subscribe` returns only
//!   once the reader filters by roots that include the new ones.
//! - [`Subscription::caught_up_ns`]: everything captured before it (CLOCK_MONOTONIC) has
//!   been handed to the subscriber by `poll` or `flush`.
//! - [`Subscription::flush`] returns after the reader drained the ring from an instant
//!   after the call, with what it routed to the subscriber.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rill_driver_linux::capture::{Capture, Source};
use rill_driver_linux::mounts::is_beneath;
use rill_driver_linux::settings::{CaptureMode, DriverSettings, DEFAULT_SETTINGS_FILE};
use rill_driver_linux::{loader, DriverError};
use rill_ops::{DirtyReason, Event, Op};

use crate::clock::monotonic_ns;

/// How long the reader waits for the ring at a time: also how soon it notices a new
/// subscriber's roots, a flush request or that the last subscriber left.
const POLL: Duration = Duration::from_millis(20);
/// How often `DriverQueuePercent` is read (it maps two pages of the ring).
const SAMPLE: Duration = Duration::from_millis(100);
/// How often the reader checks that the pinned driver is still loaded.
const CHECK_LOADED: Duration = Duration::from_secs(1);
/// The most event bytes (names and carried data) waiting for one subscriber. A job that
/// does not take its events (its queue full, `MemoryAllocatorCallbackMode` 1) would
/// otherwise hold the whole host's capture in memory; past this its events become dirty
/// marks, as the driver's own do past `StopReplicatingPercent`.
pub const PENDING_BYTES_MAX: usize = 64 << 20;
/// The most names an overflow episode remembers for a subscriber; past that its whole
/// roots are rescanned.
const OVERFLOW_NAMES_MAX: usize = 10_000;
/// How long `subscribe` waits for the reader to take the new roots.
const ROOTS_TIMEOUT: Duration = Duration::from_secs(30);
/// Most batches one flush reads (as [`Capture::flush`]): a ring holds far fewer records
/// than this, so everything captured before the flush is read well before it.
const FLUSH_BATCHES: usize = 4096;

/// Which capture a hub reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubSource {
    /// The pinned driver, loaded and pinned when absent (with the driver's settings file)
    /// and left loaded; a private instance when another process drains the pinned ring.
    Shared,
    /// The pinned driver as it is (`rilld run --pinned`): refused when not loaded or when
    /// another process drains it.
    Pinned,
    /// A private instance (`rilld run`).
    Private,
}

/// One capture, shared by the jobs that subscribe to it.
pub struct CaptureHub {
    shared: Arc<Shared>,
    source: HubSource,
    /// The driver's settings, for a load of the pinned driver.
    driver_settings: PathBuf,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the reader routed events, took new roots, answered a flush or failed.
    changed: Condvar,
    start: Mutex<()>,
}

#[derive(Default)]
struct State {
    subs: BTreeMap<u64, Sub>,
    next_id: u64,
    /// Generation of the subscriber set, and the one whose roots the reader filters by.
    roots_asked: u64,
    roots_applied: u64,
    flush_asked: u64,
    flush_done: u64,
    queue_percent: Option<f64>,
    failed: Option<String>,
    reader: Option<JoinHandle<()>>,
}

/// One subscriber's share.
struct Sub {
    roots: Vec<PathBuf>,
    pending: Vec<Event>,
    pending_bytes: usize,
    caught_up_ns: u64,
    overflow: Option<Overflow>,
    next_seq: u64,
}

/// Events a subscriber had no room for, as the names to remirror.
#[derive(Default)]
struct Overflow {
    count: u64,
    names: HashSet<PathBuf>,
    /// Too many names: the subscriber's roots are rescanned.
    all: bool,
}

impl CaptureHub {
    /// A hub reading `source`; nothing runs until the first subscription.
    pub fn new(source: HubSource) -> CaptureHub {
        CaptureHub {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                start: Mutex::new(()),
            }),
            source,
            // The file `rill-driver` reads, by the same variable.
            driver_settings: std::env::var_os("RILL_DRIVER_SETTINGS")
                .map_or_else(|| PathBuf::from(DEFAULT_SETTINGS_FILE), PathBuf::from),
        }
    }

    /// Subscribes a job to the events under `roots`, starting the capture when it is the
    /// first. Every event captured after this returns reaches the subscription.
    pub fn subscribe(&self, roots: &[PathBuf]) -> Result<Subscription> {
        let roots = roots
            .iter()
            .map(|r| {
                r.canonicalize()
                    .with_context(|| format!("capture root {}", r.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let _start = lock(&self.shared.start);
        let (id, gen, running) = {
            let mut st = lock(&self.shared.state);
            let id = st.next_id;
            st.next_id += 1;
            st.subs.insert(id, Sub::new(roots.clone()));
            st.roots_asked += 1;
            (id, st.roots_asked, st.reader.is_some())
        };
        let started = if running {
            self.wait_for_roots(gen)
        } else {
            // No reader: nobody else subscribed (the last one's drop joined it).
            self.start_reader(&roots, gen)
        };
        if let Err(e) = started {
            // Not through `Subscription::drop`: this thread holds `start` already.
            unsubscribe(&self.shared, id);
            return Err(e);
        }
        Ok(Subscription {
            shared: Arc::clone(&self.shared),
            id,
            taken_through: 0,
        })
    }

    /// Opens the session for the first subscriber and starts its reader thread.
    fn start_reader(&self, roots: &[PathBuf], gen: u64) -> Result<()> {
        let capture = self.open(roots)?;
        let shared = Arc::clone(&self.shared);
        let reader = std::thread::Builder::new()
            .name("capture-hub".into())
            .spawn(move || read(shared, capture, gen))
            .context("starting the capture reader thread")?;
        let mut st = lock(&self.shared.state);
        st.roots_applied = gen;
        st.reader = Some(reader);
        Ok(())
    }

    /// Waits until the reader filters by the roots of subscriber set `gen` or a later one.
    fn wait_for_roots(&self, gen: u64) -> Result<()> {
        let deadline = Instant::now() + ROOTS_TIMEOUT;
        let mut st = lock(&self.shared.state);
        loop {
            if let Some(e) = &st.failed {
                bail!("the shared capture failed: {e}");
            }
            if st.roots_applied >= gen {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "the capture reader did not take a new job's source within {ROOTS_TIMEOUT:?}"
                );
            }
            st = wait(&self.shared.changed, st, left);
        }
    }

    /// Starts the session this hub reads, dropping what the driver kept from before it
    /// (see [`Capture::discard_backlog`]: each job covers the time before it subscribed
    /// with its mirror or its walk of what changed while it was stopped).
    fn open(&self, roots: &[PathBuf]) -> Result<Capture> {
        let defaults = DriverSettings::default();
        let private = || Capture::start(roots, Source::Private, CaptureMode::Ebpf, &defaults);
        let mut capture = match self.source {
            HubSource::Private => private()?,
            HubSource::Pinned => {
                Capture::start(roots, Source::Pinned, CaptureMode::Ebpf, &defaults)?
            }
            HubSource::Shared => {
                self.load_pinned()?;
                match Capture::start(roots, Source::Pinned, CaptureMode::Ebpf, &defaults) {
                    Ok(c) => c,
                    Err(DriverError::RingBusy { holder }) => {
                        log::warn!(
                            "the pinned capture driver's ring is drained by another reader \
                             ({holder}): this rilld's jobs share a private instance instead"
                        );
                        private()?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if self.source != HubSource::Pinned {
            let dropped = capture.discard_backlog()?;
            if dropped > 0 {
                log::info!("capture: {dropped} records captured before any job started dropped");
            }
        }
        Ok(capture)
    }

    /// Loads and pins the driver when it is not loaded, with the driver's settings file
    /// (as `rill-driver load`). The programs stay when this process exits.
    fn load_pinned(&self) -> Result<()> {
        if loader::is_loaded() {
            return Ok(());
        }
        let settings = DriverSettings::load(&self.driver_settings)?;
        match loader::load(&settings, true) {
            // The pins hold the programs and their attachment from here on.
            Ok(_instance) => {
                log::info!(
                    "capture driver loaded and pinned at {} (settings {}); it stays loaded \
                     when rilld exits (`rill-driver unload` removes it)",
                    loader::PIN_DIR,
                    self.driver_settings.display()
                );
                Ok(())
            }
            // Another process loaded it meanwhile.
            Err(_) if loader::is_loaded() => Ok(()),
            Err(e) => Err(anyhow!(e).context("loading the pinned capture driver")),
        }
    }
}

/// A job's share of a hub's capture: the events under its roots, in capture order,
/// numbered from 1. Dropping it unsubscribes (the last one stops the reader).
pub struct Subscription {
    shared: Arc<Shared>,
    id: u64,
    /// The subscriber's `caught_up_ns` when its events were last taken.
    taken_through: u64,
}

impl Subscription {
    /// Waits up to `timeout` for events and appends what was routed to this subscription.
    pub fn poll(&mut self, timeout: Duration, out: &mut Vec<Event>) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let shared = Arc::clone(&self.shared);
        let mut st = lock(&shared.state);
        loop {
            let has = st
                .subs
                .get(&self.id)
                .is_some_and(|s| !s.pending.is_empty() || s.overflow.is_some());
            let left = deadline.saturating_duration_since(Instant::now());
            if has || left.is_zero() || st.failed.is_some() {
                break;
            }
            st = wait(&shared.changed, st, left);
        }
        self.take(&mut st, out)
    }

    /// Appends every event captured before this call (and routed here): the reader drains
    /// the ring from a later instant on, routes what it read, and answers.
    pub fn flush(&mut self, out: &mut Vec<Event>) -> Result<usize> {
        let shared = Arc::clone(&self.shared);
        let mut st = lock(&shared.state);
        st.flush_asked += 1;
        let asked = st.flush_asked;
        while st.flush_done < asked && st.failed.is_none() {
            if st.reader.as_ref().is_none_or(|r| r.is_finished()) {
                bail!("the capture reader thread ended before answering a flush");
            }
            st = wait(&shared.changed, st, POLL);
        }
        self.take(&mut st, out)
    }

    /// The guide's `DriverQueuePercent` of the shared ring, as last sampled.
    pub fn driver_queue_percent(&self) -> Result<Option<f64>> {
        let st = lock(&self.shared.state);
        match &st.failed {
            Some(e) => bail!("the shared capture failed: {e}"),
            None => Ok(st.queue_percent),
        }
    }

    /// CLOCK_MONOTONIC ns before which everything captured under the roots has been
    /// handed out by this subscription's `poll` and `flush` so far (0: nothing known yet).
    /// Read with what they handed out, so what the reader routed since is not counted.
    pub fn caught_up_ns(&self) -> u64 {
        self.taken_through
    }

    fn take(&mut self, st: &mut State, out: &mut Vec<Event>) -> Result<usize> {
        if let Some(e) = &st.failed {
            bail!("the shared capture failed: {e}");
        }
        let sub = st
            .subs
            .get_mut(&self.id)
            .ok_or_else(|| anyhow!("capture subscription {} is gone", self.id))?;
        self.taken_through = sub.caught_up_ns;
        Ok(sub.take(out))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _start = lock(&self.shared.start);
        unsubscribe(&self.shared, self.id);
    }
}

/// Removes subscriber `id`; the last one's removal waits for the reader to end. The
/// caller holds [`Shared::start`], so no subscriber starts a reader meanwhile.
fn unsubscribe(shared: &Shared, id: u64) {
    let reader = {
        let mut st = lock(&shared.state);
        st.subs.remove(&id);
        st.roots_asked += 1;
        if st.subs.is_empty() {
            // Whatever failed was this session's: a new one starts afresh.
            st.failed = None;
            st.reader.take()
        } else {
            None
        }
    };
    // The reader sees no subscriber at its next turn and ends, dropping the session.
    if let Some(reader) = reader {
        if reader.join().is_err() {
            log::warn!("the capture reader thread panicked");
        }
    }
}

impl Sub {
    fn new(roots: Vec<PathBuf>) -> Sub {
        Sub {
            roots,
            pending: Vec::new(),
            pending_bytes: 0,
            caught_up_ns: 0,
            overflow: None,
            next_seq: 1,
        }
    }

    /// Keeps an event routed here, or, past the bound, its names in the overflow.
    fn push(&mut self, ev: Event) {
        let size = event_bytes(&ev);
        if self.overflow.is_none() && self.pending_bytes + size <= PENDING_BYTES_MAX {
            self.pending_bytes += size;
            return self.pending.push(ev);
        }
        let roots = &self.roots;
        let o = self.overflow.get_or_insert_with(Overflow::default);
        o.count += match ev.op {
            Op::Overflow { count } => count,
            _ => 1,
        };
        for p in ev.paths().filter(|p| under(p, roots)) {
            if o.names.len() >= OVERFLOW_NAMES_MAX {
                o.all = true;
                o.names.clear();
            }
            if !o.all {
                o.names.insert(p.clone());
            }
        }
    }

    /// Hands out what waits, numbered: the events, then an overflow episode's marks
    /// (captured after them, before anything routed from now on).
    fn take(&mut self, out: &mut Vec<Event>) -> usize {
        let before = out.len();
        out.append(&mut self.pending);
        self.pending_bytes = 0;
        if let Some(o) = self.overflow.take() {
            out.push(Event::new(PathBuf::new(), Op::Overflow { count: o.count }));
            let (names, reason) = if o.all {
                (self.roots.clone(), DirtyReason::RescanAll)
            } else {
                (o.names.into_iter().collect(), DirtyReason::StopLimit)
            };
            for name in names {
                out.push(Event::new(name, Op::Dirty { reason }));
            }
        }
        for ev in &mut out[before..] {
            ev.seq = self.next_seq;
            self.next_seq += 1;
        }
        out.len() - before
    }
}

/// Roughly what an event holds in memory.
fn event_bytes(ev: &Event) -> usize {
    let data = match &ev.op {
        Op::Write { data: Some(d), .. } => d.len(),
        Op::SetXattr { value: Some(v), .. } => v.len(),
        _ => 0,
    };
    let names: usize = ev.paths().map(|p| p.as_os_str().len()).sum();
    128 + names + data
}

fn under(p: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| is_beneath(p, r))
}

/// What a subscriber gets of an event.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    No,
    /// The event as it is.
    Whole,
    /// A dirty mark of a directory above the subscriber's roots, which may hold anything
    /// beneath: the same mark for each of these roots.
    Roots(Vec<PathBuf>),
}

/// What a subscriber with `roots` gets of `ev`.
fn route(ev: &Event, roots: &[PathBuf]) -> Route {
    match &ev.op {
        Op::Overflow { .. } => Route::Whole,
        Op::Dirty { .. } if !under(&ev.path, roots) => {
            let beneath: Vec<PathBuf> = roots
                .iter()
                .filter(|r| is_beneath(r, &ev.path))
                .cloned()
                .collect();
            if beneath.is_empty() {
                Route::No
            } else {
                Route::Roots(beneath)
            }
        }
        _ if ev.paths().any(|p| under(p, roots)) => Route::Whole,
        _ => Route::No,
    }
}

/// Routes a batch to the subscribers; with `emptied_at`, the ring was found empty after
/// it, so everything captured before that instant has now been routed.
fn dispatch(st: &mut State, events: &mut Vec<Event>, emptied_at: Option<u64>) {
    let mut whole = Vec::new();
    for ev in events.drain(..) {
        whole.clear();
        for (&id, sub) in st.subs.iter_mut() {
            match route(&ev, &sub.roots) {
                Route::No => {}
                Route::Whole => whole.push(id),
                Route::Roots(roots) => {
                    for root in roots {
                        sub.push(Event {
                            path: root,
                            ..ev.clone()
                        });
                    }
                }
            }
        }
        // Usually one job: it gets the event itself, the others a copy.
        if let Some((&last, rest)) = whole.split_last() {
            for id in rest {
                if let Some(sub) = st.subs.get_mut(id) {
                    sub.push(ev.clone());
                }
            }
            if let Some(sub) = st.subs.get_mut(&last) {
                sub.push(ev);
            }
        }
    }
    if let Some(t) = emptied_at {
        for sub in st.subs.values_mut() {
            sub.caught_up_ns = t;
        }
    }
}

/// The session's roots: every subscriber's, less those beneath another.
fn union_roots(subs: &BTreeMap<u64, Sub>) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = subs.values().flat_map(|s| s.roots.clone()).collect();
    all.sort();
    all.dedup();
    let outer: Vec<PathBuf> = all
        .iter()
        .filter(|r| !all.iter().any(|o| o != *r && is_beneath(r, o)))
        .cloned()
        .collect();
    outer
}

/// The reader thread: polls the session and routes what it reads until the last
/// subscriber leaves or the session fails.
fn read(shared: Arc<Shared>, mut capture: Capture, roots_gen: u64) {
    let mut reader = Reader {
        roots_gen,
        sampled: None,
        checked: Instant::now(),
        events: Vec::new(),
    };
    loop {
        match reader.turn(&shared, &mut capture) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                log::error!("the shared capture failed: {e:#}");
                lock(&shared.state).failed = Some(format!("{e:#}"));
                shared.changed.notify_all();
                return;
            }
        }
    }
}

struct Reader {
    roots_gen: u64,
    sampled: Option<Instant>,
    checked: Instant,
    events: Vec<Event>,
}

impl Reader {
    /// One poll (or flush) of the ring; `false` once nobody subscribes.
    fn turn(&mut self, shared: &Shared, capture: &mut Capture) -> Result<bool> {
        let (roots, flush) = {
            let st = lock(&shared.state);
            if st.subs.is_empty() {
                return Ok(false);
            }
            let roots =
                (st.roots_asked > self.roots_gen).then(|| (st.roots_asked, union_roots(&st.subs)));
            (
                roots,
                (st.flush_asked > st.flush_done).then_some(st.flush_asked),
            )
        };
        if let Some((gen, roots)) = roots {
            capture.set_roots(&roots)?;
            self.roots_gen = gen;
            lock(&shared.state).roots_applied = gen;
            shared.changed.notify_all();
        }
        self.check(shared, capture)?;
        let started = monotonic_ns();
        match flush {
            Some(asked) => {
                for _ in 0..FLUSH_BATCHES {
                    let polled = capture.poll_batch(Duration::ZERO, &mut self.events)?;
                    let emptied = polled.emptied.then_some(started);
                    dispatch(&mut lock(&shared.state), &mut self.events, emptied);
                    if polled.emptied {
                        break;
                    }
                }
                lock(&shared.state).flush_done = asked;
            }
            None => {
                let polled = capture.poll_batch(POLL, &mut self.events)?;
                let emptied = polled.emptied.then_some(started);
                dispatch(&mut lock(&shared.state), &mut self.events, emptied);
            }
        }
        shared.changed.notify_all();
        Ok(true)
    }

    /// Samples `DriverQueuePercent`, and fails when the pinned driver was unloaded under
    /// the reader (its ring would stay silent: nothing would be captured, unseen).
    fn check(&mut self, shared: &Shared, capture: &Capture) -> Result<()> {
        if self.sampled.is_none_or(|t| t.elapsed() >= SAMPLE) {
            let p = capture.driver_queue_percent()?;
            lock(&shared.state).queue_percent = p;
            self.sampled = Some(Instant::now());
        }
        if capture.source == Source::Pinned && self.checked.elapsed() >= CHECK_LOADED {
            if !loader::is_loaded() {
                bail!(
                    "the pinned capture driver was unloaded while rilld read it (`rill-driver \
                     unload`?): nothing is captured; restart the jobs"
                );
            }
            self.checked = Instant::now();
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder leaves consistent data here (every change is a single step).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn wait<'a>(c: &Condvar, g: MutexGuard<'a, State>, d: Duration) -> MutexGuard<'a, State> {
    match c.wait_timeout(g, d) {
        Ok((g, _)) => g,
        Err(p) => p.into_inner().0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(path: &str, op: Op) -> Event {
        Event::new(path, op)
    }

    fn write(path: &str, len: usize) -> Event {
        ev(
            path,
            Op::Write {
                offset: 0,
                len: len as u64,
                data: Some(bytes::Bytes::from(vec![0u8; len])),
            },
        )
    }

    fn roots(r: &[&str]) -> Vec<PathBuf> {
        r.iter().map(PathBuf::from).collect()
    }

    /// An operation goes to the job whose root holds a name of it; a rename between two
    /// jobs to both; an overflow to all; a rescan of a directory above a job's root
    /// becomes a rescan of that root; nothing goes to a job it does not touch.
    #[test]
    fn events_are_routed_by_the_roots_that_hold_their_names() {
        let (a, b) = (roots(&["/s/a"]), roots(&["/s/b"]));
        assert_eq!(route(&write("/s/a/f", 1), &a), Route::Whole);
        assert_eq!(route(&write("/s/a/f", 1), &b), Route::No);
        assert_eq!(route(&write("/s/ab/f", 1), &a), Route::No);
        let rename = ev(
            "/s/a/f",
            Op::Rename {
                new_path: "/s/b/f".into(),
                flags: 0,
            },
        );
        assert_eq!(route(&rename, &a), Route::Whole);
        assert_eq!(route(&rename, &b), Route::Whole);
        let overflow = ev("", Op::Overflow { count: 3 });
        assert_eq!(route(&overflow, &a), Route::Whole);
        let rescan = ev(
            "/s",
            Op::Dirty {
                reason: DirtyReason::RescanAll,
            },
        );
        assert_eq!(route(&rescan, &b), Route::Roots(roots(&["/s/b"])));
        let elsewhere = ev(
            "/t/x",
            Op::Dirty {
                reason: DirtyReason::StopLimit,
            },
        );
        assert_eq!(route(&elsewhere, &a), Route::No);
    }

    /// A batch routed to three subscribers: each gets what touches it, in order, and the
    /// time the ring was found empty.
    #[test]
    fn a_batch_is_dispatched_to_every_subscriber_it_touches() {
        let mut st = State::default();
        st.subs.insert(0, Sub::new(roots(&["/s/a"])));
        st.subs.insert(1, Sub::new(roots(&["/s/b"])));
        st.subs.insert(2, Sub::new(roots(&["/s/c"])));
        let rename = ev(
            "/s/a/f",
            Op::Rename {
                new_path: "/s/b/f".into(),
                flags: 0,
            },
        );
        let mut batch = vec![
            write("/s/a/1", 1),
            rename,
            ev("", Op::Overflow { count: 1 }),
            write("/s/c/2", 1),
        ];
        dispatch(&mut st, &mut batch, Some(42));
        let mut got = |id: u64| {
            let mut out = Vec::new();
            st.subs.get_mut(&id).unwrap().take(&mut out);
            out.iter().map(|e| e.op.kind().name()).collect::<Vec<_>>()
        };
        assert_eq!(got(0), ["write", "rename", "overflow"]);
        assert_eq!(got(1), ["rename", "overflow"]);
        assert_eq!(got(2), ["overflow", "write"]);
        assert!(st.subs.values().all(|s| s.caught_up_ns == 42));
    }

    /// Root and BTF, or a skip (a failure in CI): the next test loads a private instance.
    fn kernel_capture_available() -> bool {
        let root = nix::unistd::geteuid().is_root();
        let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
        if root && btf {
            return true;
        }
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "CI=true: the capture hub's test needs root and kernel BTF"
        );
        eprintln!("skipped: needs root and kernel BTF to load the capture");
        false
    }

    /// Runs `script` in a shell: the capture does not see this process (a private
    /// instance excludes its reader).
    fn sh(script: &str) {
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "sh -c {script}");
    }

    fn names(events: &[Event]) -> HashSet<PathBuf> {
        events
            .iter()
            .flat_map(|e| e.paths().cloned())
            .collect::<HashSet<_>>()
    }

    /// Two subscribers of one private capture: each gets the operations under its root,
    /// both get a rename between them; a flush hands over everything done before it; one
    /// leaving does not disturb the other; the last leaving stops the reader, and a new
    /// subscriber starts another.
    #[test]
    fn subscribers_of_one_capture_get_their_own_operations() {
        if !kernel_capture_available() {
            return;
        }
        let top = tempfile::tempdir().unwrap();
        let top = top.path().canonicalize().unwrap();
        let (a, b) = (top.join("a"), top.join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let hub = CaptureHub::new(HubSource::Private);
        let mut sa = hub.subscribe(std::slice::from_ref(&a)).unwrap();
        let mut sb = hub.subscribe(std::slice::from_ref(&b)).unwrap();
        let before = monotonic_ns();
        let t = top.display();
        sh(&format!(
            "echo 1 > {t}/a/one; echo 2 > {t}/b/two; mv {t}/a/one {t}/b/moved; echo 3 > {t}/c"
        ));
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        sa.flush(&mut ea).unwrap();
        sb.flush(&mut eb).unwrap();
        assert!(sa.caught_up_ns() >= before && sb.caught_up_ns() >= before);
        let (na, nb) = (names(&ea), names(&eb));
        assert!(
            na.contains(&a.join("one")) && na.contains(&b.join("moved")),
            "{na:?}"
        );
        assert!(!na.contains(&b.join("two")), "{na:?}");
        assert!(
            nb.contains(&b.join("two")) && nb.contains(&a.join("one")),
            "{nb:?}"
        );
        assert!(!na.contains(&top.join("c")) && !nb.contains(&top.join("c")));
        let seqs: Vec<u64> = ea.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=ea.len() as u64).collect::<Vec<_>>());

        drop(sa);
        sh(&format!("echo 4 > {t}/b/four"));
        eb.clear();
        sb.flush(&mut eb).unwrap();
        assert!(names(&eb).contains(&b.join("four")), "{eb:?}");
        drop(sb);
        assert!(lock(&hub.shared.state).reader.is_none(), "the reader ended");

        let mut again = hub.subscribe(std::slice::from_ref(&a)).unwrap();
        sh(&format!("echo 5 > {t}/a/five"));
        let mut e = Vec::new();
        again.flush(&mut e).unwrap();
        assert!(names(&e).contains(&a.join("five")), "{e:?}");
    }

    /// Nested roots: the session reads the outer one only.
    #[test]
    fn the_session_reads_the_outermost_roots() {
        let mut subs = BTreeMap::new();
        subs.insert(0, Sub::new(roots(&["/srv/www"])));
        subs.insert(1, Sub::new(roots(&["/srv"])));
        subs.insert(2, Sub::new(roots(&["/data", "/srv/x"])));
        assert_eq!(union_roots(&subs), roots(&["/data", "/srv"]));
    }

    /// Past the bound a subscriber's events become dirty marks of its names, handed out
    /// after what waited before them, behind an overflow event; numbering goes on.
    #[test]
    fn a_subscriber_that_falls_behind_gets_its_names_dirty() {
        let mut sub = Sub::new(roots(&["/s/a"]));
        let big = PENDING_BYTES_MAX / 2;
        sub.push(write("/s/a/1", big));
        sub.push(write("/s/a/2", big));
        sub.push(write("/s/a/3", 10));
        sub.push(write("/s/a/3", 10));
        let mut out = Vec::new();
        assert_eq!(sub.take(&mut out), 4);
        assert_eq!(out[0].path, PathBuf::from("/s/a/1"));
        assert_eq!(out[1].op, Op::Overflow { count: 3 });
        assert_eq!(
            out.iter()
                .skip(2)
                .map(|e| e.path.to_string_lossy().into_owned())
                .collect::<HashSet<_>>(),
            ["/s/a/2".to_string(), "/s/a/3".to_string()].into()
        );
        assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        sub.push(write("/s/a/4", 10));
        out.clear();
        sub.take(&mut out);
        assert_eq!((out[0].seq, out.len()), (5, 1));
    }

    /// Too many names in one episode: the subscriber's roots are rescanned.
    #[test]
    fn an_overflow_of_many_names_rescans_the_roots() {
        let mut sub = Sub::new(roots(&["/s/a"]));
        sub.push(write("/s/a/big", PENDING_BYTES_MAX));
        for i in 0..=OVERFLOW_NAMES_MAX {
            sub.push(write(&format!("/s/a/{i}"), 1));
        }
        let mut out = Vec::new();
        sub.take(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1].op,
            Op::Dirty {
                reason: DirtyReason::RescanAll
            }
        );
        assert_eq!(out[1].path, PathBuf::from("/s/a"));
    }
}
