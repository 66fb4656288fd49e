//! A verification's thread: walks the source, asks the target about each batch of names
//! through the job's stream, judges the answers (see the rules in `crate::verify`),
//! logs and counts what differs, and hands it to the job's remirror when asked to.
//!
//! # State
//!
//! A queue of [`Item`]s (a name, the blocks of it to checksum, how often it was looked
//! at and when it may be looked at again), filled by the walk as directories are read;
//! the progress counters the status report reads ([`VerifyProgress`]); the paths already
//! reported, so a file whose data is asked in several chunks is counted once.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::log::VerifyLog;
use super::{differences, extra_names, inspect, stamp, Compared, Phase, Stamp, VerifyCall};
use super::{VerifyProgress, BLOCK};
use crate::events::{self, EventLog, Level};
use crate::net::proto::verify::{Ask, Inspected, ObjKind, MAX_NAMES};
use crate::repset::ReplicationSet;
use crate::source::transmit::{JobControl, MirrorPhase};

/// Looks at a name that keeps changing before it is counted as changed during the
/// verification: enough to outlast a burst of writes, few enough that a file written
/// all the time does not hold the verification up for long.
pub const MAX_LOOKS: u32 = 6;
/// How long a name found different waits before it is looked at again: long enough for
/// a refusal of the target's to reach the change journal, or a queued operation to be
/// sent.
const LOOK_AGAIN_AFTER: Duration = Duration::from_millis(500);
/// How often a waiting verification looks whether it is stopped, or what it waits for
/// has come.
const POLL: Duration = Duration::from_millis(20);
/// How often a verification looks whether the job's mirror is done.
const MIRROR_WAIT: Duration = Duration::from_millis(200);
/// How far a file's change time (wall clock) and the capture's instants (monotonic) may
/// disagree once converted, with room to spare.
const CLOCK_MARGIN_NS: i128 = 100_000_000;

/// What a verification does, from the settings and the command.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Compare file data by block checksums (`ChecksumAll`, or `--checksums`).
    pub checksums: bool,
    /// Hand what differs to the job's remirror (`--remirror`).
    pub remirror: bool,
    /// `MirrorZeroKFiles = 0`: empty files are not mirrored, so not verified either.
    pub skip_empty_files: bool,
    /// `MaxChecksumBlocks`: block checksums per request.
    pub max_blocks: u32,
    pub compared: Compared,
    /// `VerifyRetryInterval`, `VerifyRetryLimit`.
    pub retry_interval: Duration,
    pub retry_limit: u64,
    /// `LogDir`/`VerifyLogName`, `VerifyLogAppend`, `VerifyLogLimit`.
    pub log_path: PathBuf,
    pub log_append: bool,
    pub log_limit: u64,
    /// How long an answer is waited for before the request counts as failed.
    pub answer_timeout: Duration,
}

/// One verification of one job.
pub struct Verifier {
    pub job: String,
    /// `host (host:port)`, as events 4058 to 4062 name the target.
    pub target: String,
    pub source: PathBuf,
    pub set: ReplicationSet,
    pub control: Arc<JobControl>,
    pub progress: Arc<VerifyProgress>,
    pub log: Arc<EventLog>,
    pub options: VerifyOptions,
}

/// A name to look at (relative to the source and the target path).
#[derive(Clone, Debug)]
struct Item {
    rel: Vec<u8>,
    first_block: u64,
    blocks: u32,
    looks: u32,
    /// Found different once with nothing to explain it, at this stamp: the next such
    /// finding at the same stamp is reported.
    seen_different: Option<Stamp>,
    due: Instant,
}

impl Item {
    fn new(rel: Vec<u8>) -> Item {
        Item {
            rel,
            first_block: 0,
            blocks: 0,
            looks: 0,
            seen_different: None,
            due: Instant::now(),
        }
    }

    fn ask(&self) -> Ask {
        Ask {
            path: self.rel.clone(),
            first_block: self.first_block,
            blocks: self.blocks,
            list: true,
        }
    }
}

/// What one name's look found.
enum Verdict {
    Equal,
    /// Not compared (an empty file with `MirrorZeroKFiles = 0`).
    Skipped,
    /// Different and settled: report it.
    Report(Vec<String>, Vec<Vec<u8>>),
    /// Not settled; `confirm`: different with nothing to explain it, found so once at
    /// this stamp.
    LookAgain {
        confirm: Option<Stamp>,
    },
}

/// A verification's running state.
struct Walk {
    root: OwnedFd,
    /// Names to look at now, in the walk's order.
    queue: VecDeque<Item>,
    /// Names to look at again, in the order they are due (each waits as long).
    later: VecDeque<Item>,
    reported: HashSet<Vec<u8>>,
    log: VerifyLog,
    next_call: u64,
}

impl Verifier {
    /// Runs the verification to its end, logging its events.
    pub fn run(self) {
        let id = self.progress.id.load(Ordering::Relaxed);
        self.set_phase(Phase::Running);
        self.event(events::VERIFY_STARTED, "started");
        let ended = match self.open() {
            Ok(mut walk) => self.walk(&mut walk),
            Err(e) => Err(e),
        };
        match ended {
            Ok(()) => {
                self.set_phase(Phase::Completed);
                self.event(events::VERIFY_COMPLETED, "completed");
            }
            Err(why) => {
                log::warn!("verification {id} of job {}: {why}", self.job);
                self.set_phase(Phase::Stopped);
                self.event(events::VERIFY_STOPPED, "stopped");
            }
        }
    }

    fn open(&self) -> Result<Walk, String> {
        let o = &self.options;
        let mut log = VerifyLog::open(&o.log_path, o.log_append, o.log_limit)
            .map_err(|e| format!("opening {}: {e}", o.log_path.display()))?;
        log.line(&format!(
            "verification {} of job {} ({} -> {}) started",
            self.progress.id.load(Ordering::Relaxed),
            self.job,
            self.source.display(),
            self.target
        ));
        let root = std::fs::File::open(&self.source)
            .map_err(|e| format!("opening {}: {e}", self.source.display()))?;
        Ok(Walk {
            root: root.into(),
            queue: VecDeque::from([Item::new(Vec::new())]),
            later: VecDeque::new(),
            reported: HashSet::new(),
            log,
            next_call: 1,
        })
    }

    /// Batch after batch until every name is judged; a batch that fails is retried
    /// `VerifyRetryLimit` times, `VerifyRetryInterval` apart.
    fn walk(&self, w: &mut Walk) -> Result<(), String> {
        let mut failures = 0u64;
        loop {
            if self.stopping() {
                return Err("stopped".into());
            }
            // A mirror sends what the replica lacks without the change journal knowing:
            // what it has not sent yet would look missing.
            if self.mirror_running() {
                std::thread::sleep(MIRROR_WAIT);
                continue;
            }
            let batch = self.take_batch(w);
            if batch.is_empty() {
                match w.later.front() {
                    None => break,
                    Some(next) => {
                        std::thread::sleep(next.due.saturating_duration_since(Instant::now()));
                        continue;
                    }
                }
            }
            if let Err(why) = self.batch(w, batch.clone()) {
                failures += 1;
                w.log.line(&format!("a request failed: {why}"));
                if failures > self.options.retry_limit {
                    return Err(format!("{why}; VerifyRetryLimit reached"));
                }
                self.pause_before_retry()?;
                for item in batch.into_iter().rev() {
                    w.queue.push_front(item);
                }
            }
        }
        let p = self.progress.snapshot();
        w.log.line(&format!(
            "verification {} of job {} completed: {} files ({} bytes) equal, {} \
             different, {} missing, {} extra, {} changed while verified",
            p.id,
            self.job,
            p.files_verified,
            p.bytes_verified,
            p.differing,
            p.missing,
            p.extra,
            p.changed
        ));
        Ok(())
    }

    /// Events 4059 and 4060 around `VerifyRetryInterval`.
    fn pause_before_retry(&self) -> Result<(), String> {
        self.set_phase(Phase::Paused);
        self.event(events::VERIFY_PAUSED, "paused");
        let until = Instant::now() + self.options.retry_interval;
        while Instant::now() < until {
            if self.stopping() {
                return Err("stopped".into());
            }
            std::thread::sleep(POLL);
        }
        self.set_phase(Phase::Running);
        self.event(events::VERIFY_RESUMED, "resumed");
        Ok(())
    }

    /// The next names due, at most [`MAX_NAMES`] and `MaxChecksumBlocks` blocks; a
    /// file with more blocks than fit is split, its rest kept at the front.
    fn take_batch(&self, w: &mut Walk) -> Vec<Item> {
        let now = Instant::now();
        while w.later.front().is_some_and(|i| i.due <= now) {
            if let Some(item) = w.later.pop_front() {
                w.queue.push_back(item);
            }
        }
        let mut budget = self.options.max_blocks;
        let mut batch = Vec::new();
        while batch.len() < MAX_NAMES {
            let Some(mut item) = w.queue.pop_front() else {
                break;
            };
            if self.options.checksums {
                let want = blocks_left(w, &item);
                if want > 0 && budget == 0 {
                    w.queue.push_front(item);
                    break;
                }
                let take = want.min(u64::from(budget)) as u32;
                if u64::from(take) < want {
                    let mut rest = item.clone();
                    rest.first_block += u64::from(take);
                    w.queue.push_front(rest);
                }
                item.blocks = take;
                budget -= take;
            }
            batch.push(item);
        }
        batch
    }

    /// Reads the source's side of `batch`, asks the target through the stream, and
    /// judges each name.
    fn batch(&self, w: &mut Walk, batch: Vec<Item>) -> Result<(), String> {
        let mut before = Vec::with_capacity(batch.len());
        let mut sources = Vec::with_capacity(batch.len());
        let mut readable = Vec::with_capacity(batch.len());
        for item in batch {
            let root = w.root.as_fd();
            match stamp(root, &item.rel)
                .and_then(|s| Ok((s, inspect(root, &item.ask(), usize::MAX)?)))
            {
                Ok((s, src)) => {
                    before.push(s);
                    sources.push(src);
                    readable.push(item);
                }
                Err(e) => self.unreadable(w, &item, &e),
            }
        }
        let batch = readable;
        if batch.is_empty() {
            return Ok(());
        }
        let (reply, answers) = mpsc::sync_channel(1);
        let id = w.next_call;
        w.next_call += 1;
        self.control.verify.call(VerifyCall {
            id,
            asks: batch.iter().map(Item::ask).collect(),
            sent_through_ns: 0,
            mark: 0,
            reply,
        });
        let answer = self.wait_answer(&answers)?;
        let replicas = answer.found?;
        if replicas.is_empty() || replicas.len() > batch.len() {
            return Err(format!(
                "the target answered {} names of {}",
                replicas.len(),
                batch.len()
            ));
        }
        self.wait_settled(answer.mark)?;
        // An answer holds what fits a frame: the names left out are asked again.
        let mut batch = batch;
        for item in batch.split_off(replicas.len()).into_iter().rev() {
            w.queue.push_front(item);
        }
        let mut remirror = Vec::new();
        for (((item, src), rep), stamp1) in batch.into_iter().zip(sources).zip(replicas).zip(before)
        {
            let verdict = self.judge(w, &item, &src, &rep, stamp1, answer.sent_through_ns);
            self.settle(w, item, &src, &rep, verdict, &mut remirror);
        }
        if self.options.remirror && !remirror.is_empty() {
            self.progress
                .remirrored
                .fetch_add(remirror.len() as u64, Ordering::Relaxed);
            self.control.verify.remirror(remirror);
        }
        Ok(())
    }

    /// The answer to the request just made, waited for up to the answer timeout, and
    /// only while the verification is not stopped (a job's stop waits for it).
    fn wait_answer(
        &self,
        answers: &mpsc::Receiver<super::Answer>,
    ) -> Result<super::Answer, String> {
        let until = Instant::now() + self.options.answer_timeout;
        loop {
            match answers.recv_timeout(POLL) {
                Ok(a) => return Ok(a),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the request was dropped unanswered".into())
                }
                Err(mpsc::RecvTimeoutError::Timeout) if self.stopping() => {
                    return Err("stopped".into())
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > until => {
                    return Err("no answer from the target".into())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Waits until what the destination refused up to batch `mark` is counted in the
    /// change journal (see `JobControl::settled_mark`).
    fn wait_settled(&self, mark: u64) -> Result<(), String> {
        let until = Instant::now() + self.options.answer_timeout;
        while self.control.settled_mark.load(Ordering::Acquire) < mark {
            if Instant::now() > until || self.stopping() {
                return Err("the target did not acknowledge what came before the request".into());
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// A name the source could not read (no permission, an I/O error): logged, not
    /// compared, and the verification goes on.
    fn unreadable(&self, w: &mut Walk, item: &Item, e: &std::io::Error) {
        log::warn!(
            "verifying job {}: reading {}: {e}",
            self.job,
            self.source.join(OsStr::from_bytes(&item.rel)).display()
        );
        w.log.line(&format!(
            "UNREADABLE {}: {e} (not compared)",
            display(&item.rel)
        ));
    }

    /// Whether `item`'s look found it equal, different (and settled), or to be looked at
    /// again (see the rules in `crate::verify`).
    fn judge(
        &self,
        w: &Walk,
        item: &Item,
        src: &Inspected,
        rep: &Inspected,
        stamp1: Option<Stamp>,
        sent_through: u64,
    ) -> Verdict {
        if src.kind() == ObjKind::Missing {
            // Gone from the source since the walk listed it: nothing to compare.
            return Verdict::LookAgain { confirm: None };
        }
        if self.options.skip_empty_files && src.kind() == ObjKind::File && src.size == 0 {
            return Verdict::Skipped;
        }
        let diffs = differences(src, rep, self.options.compared);
        let dir = self.source.join(OsStr::from_bytes(&item.rel));
        let extras: Vec<Vec<u8>> = extra_names(src, rep)
            .into_iter()
            .filter(|n| self.set.protects(&dir.join(OsStr::from_bytes(n))))
            .map(<[u8]>::to_vec)
            .collect();
        if diffs.is_empty() && extras.is_empty() {
            return Verdict::Equal;
        }
        let unchanged = stamp1.is_some()
            && stamp(w.root.as_fd(), &item.rel).ok().flatten() == stamp1
            && stamp1.is_some_and(|s| sent_before(s.ctime_ns, sent_through))
            && self.control.changes_pending.load(Ordering::Relaxed) == 0;
        if unchanged && item.seen_different.is_some() && item.seen_different == stamp1 {
            Verdict::Report(diffs, extras)
        } else {
            Verdict::LookAgain {
                confirm: stamp1.filter(|_| unchanged),
            }
        }
    }

    /// Counts and logs a verdict; a name to look at again goes back in the queue, or is
    /// counted as changed once it had its looks.
    fn settle(
        &self,
        w: &mut Walk,
        item: Item,
        src: &Inspected,
        rep: &Inspected,
        verdict: Verdict,
        remirror: &mut Vec<PathBuf>,
    ) {
        let first = item.first_block == 0;
        if first && item.looks == 0 && src.kind() == ObjKind::Dir {
            self.list_children(w, &item.rel, src);
        }
        let p = &self.progress;
        let path = self.source.join(OsStr::from_bytes(&item.rel));
        match verdict {
            Verdict::Equal if first => {
                p.files.fetch_add(1, Ordering::Relaxed);
                if src.kind() == ObjKind::File {
                    p.bytes.fetch_add(src.size, Ordering::Relaxed);
                }
            }
            Verdict::Equal | Verdict::Skipped => {}
            Verdict::Report(diffs, extras) => {
                let shown = display(&item.rel);
                if !diffs.is_empty() && w.reported.insert(item.rel.clone()) {
                    if rep.kind() == ObjKind::Missing {
                        p.missing.fetch_add(1, Ordering::Relaxed);
                        w.log.line(&format!("MISSING {shown}"));
                    } else {
                        p.differing.fetch_add(1, Ordering::Relaxed);
                        w.log
                            .line(&format!("DIFFERENT {shown}: {}", diffs.join("; ")));
                    }
                    remirror.push(path.clone());
                }
                for name in extras {
                    p.extra.fetch_add(1, Ordering::Relaxed);
                    w.log
                        .line(&format!("EXTRA {}", display(&child(&item.rel, &name))));
                    remirror.push(path.join(OsStr::from_bytes(&name)));
                }
            }
            Verdict::LookAgain { .. } if item.looks + 1 >= MAX_LOOKS => {
                p.changed.fetch_add(1, Ordering::Relaxed);
                w.log.line(&format!(
                    "CHANGED {} (kept changing: not compared)",
                    display(&item.rel)
                ));
            }
            Verdict::LookAgain { confirm } => {
                w.later.push_back(Item {
                    looks: item.looks + 1,
                    seen_different: confirm,
                    due: Instant::now() + LOOK_AGAIN_AFTER,
                    ..item
                });
            }
        }
    }

    /// Queues the names of a directory the source holds, those the job protects.
    fn list_children(&self, w: &mut Walk, rel: &[u8], src: &Inspected) {
        for name in &src.names {
            let c = child(rel, name);
            if self.set.protects(&self.source.join(OsStr::from_bytes(&c))) {
                w.queue.push_back(Item::new(c));
            }
        }
    }

    fn mirror_running(&self) -> bool {
        matches!(
            self.control.mirror_status(),
            MirrorPhase::Calculating | MirrorPhase::InProgress | MirrorPhase::Paused
        )
    }

    fn stopping(&self) -> bool {
        self.progress.stop.load(Ordering::Relaxed) || self.control.stop.load(Ordering::Relaxed)
    }

    fn set_phase(&self, phase: Phase) {
        self.progress.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// One of events 4058 to 4062, in the guide's words.
    fn event(&self, id: u32, what: &str) {
        let text = format!(
            "Service has {what} a verification task to {} for Replication Set {}, ID: {}",
            self.target,
            self.job,
            self.progress.id.load(Ordering::Relaxed)
        );
        self.log.event(Level::Information, id, &text);
    }
}

/// Blocks of `item`'s file still to checksum from its first block (0: not a file, or
/// nothing left).
fn blocks_left(w: &Walk, item: &Item) -> u64 {
    match stamp(w.root.as_fd(), &item.rel) {
        Ok(Some(s)) if s.is_file => s.size.div_ceil(BLOCK).saturating_sub(item.first_block),
        _ => 0,
    }
}

/// Whether a change at `ctime_ns` (wall clock) came before `sent_through` (monotonic):
/// every operation captured up to then had entered the stream.
fn sent_before(ctime_ns: i128, sent_through: u64) -> bool {
    let offset = i128::from(crate::clock::wall_ns()) - i128::from(crate::clock::monotonic_ns());
    ctime_ns - offset + CLOCK_MARGIN_NS < i128::from(sent_through)
}

fn child(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        return name.to_vec();
    }
    let mut c = rel.to_vec();
    c.push(b'/');
    c.extend_from_slice(name);
    c
}

fn display(rel: &[u8]) -> String {
    if rel.is_empty() {
        return ".".into();
    }
    Path::new(OsStr::from_bytes(rel)).display().to_string()
}
