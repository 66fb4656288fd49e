//! One source job's connection on the target.
//!
//! The hello names the job and its target path; the target answers with the highest
//! sequence it durably applied for that (source, job), and from then on receives ops in
//! strictly increasing sequence order into the session's queue. Resent ops at or below
//! that point are skipped, so a reconnect never applies anything twice. Anything a
//! correct source never sends (a frame out of order, an unknown kind, a path that is not
//! a plain relative name) ends the session with a `Refused` naming the problem, and the
//! event log says who sent it.

use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use super::apply_thread::{self, Entry, Shared};
use super::failover;
use super::kind::{self, OpenError};
use super::{
    confined, hold, ApplyError, Context, Holding, JobKey, Replica, SessionStats, TargetConfig,
};
use crate::events::{self, Level};
use crate::net::proto::{
    Frame, FrameReader, Policy, ProtoError, SeqCheck, SeqVerdict, MAX_FRAME, PAGE, VERSION,
};
use crate::storage::job_store::{DataState, TargetSession};
use rill_ops::{codec, Op};

use crate::net::proto::refuse::{
    BUSY as REFUSE_BUSY, FAILED_OVER as REFUSE_FAILED_OVER, PROTOCOL as REFUSE_PROTOCOL,
    TARGET_PATH as REFUSE_PATH, VERSION as REFUSE_VERSION,
};

/// How long a new connection of a job waits for the session it replaces to finish, as a
/// share of `NetworkTimeout`: half of it, so that a source with the same timeout hears
/// the target's refusal before it gives up waiting for the welcome.
const HAND_OVER_SHARE: u32 = 2;

/// Runs one connection until it ends: the handshake, the receive loop, the close.
pub(super) async fn run(
    ctx: Arc<Context>,
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    fingerprint: String,
    name: String,
) {
    let mut link = Link::new(ctx, stream, peer, &name);
    let mut session = match link.handshake(fingerprint, (&name, peer)).await {
        Ok(session) => session,
        Err(Ended::Refused(code, why)) => return link.refuse(code, &why).await,
        Err(Ended::FailedOver(why)) => {
            // Counted and logged by `failover::admit`: only the source is told.
            let _ = send(&mut link.writer, &Frame::refused(REFUSE_FAILED_OVER, &why)).await;
            let _ = link.writer.shutdown().await;
            return;
        }
        Err(Ended::Gone) => return,
    };
    let ending = link.receive_loop(&mut session).await;
    link.close(session, ending).await;
}

/// One connection: its two halves, the name the event log gives its peer, and the
/// settings as they were when it began (a change reaches the job's next connection).
struct Link {
    ctx: Arc<Context>,
    reader: FrameReader<ReadHalf<TlsStream<TcpStream>>>,
    writer: BufWriter<WriteHalf<TlsStream<TcpStream>>>,
    who: String,
    config: TargetConfig,
}

/// Why a handshake ended without a session.
enum Ended {
    /// The peer is told why ([`Link::refuse`]) and the event log says who it was.
    Refused(u32, String),
    /// The connection ended before the handshake did: nothing to tell.
    Gone,
    /// The job failed over: the source is told why, the failover monitor counts it.
    FailedOver(String),
}

/// What the hello asked for.
struct Hello {
    job: String,
    target_path: PathBuf,
    /// The last acknowledgement the source holds.
    acked: u64,
}

/// A session past its handshake: the job it holds and its running applier.
struct Session {
    job: String,
    key: JobKey,
    /// Set by a newer connection of the job, which replaces this one.
    cancel: Arc<AtomicBool>,
    shared: Arc<Shared>,
    stats: Arc<SessionStats>,
    /// The applier's answers to the source.
    out: mpsc::UnboundedReceiver<Frame>,
    check: SeqCheck,
    /// The failover monitor's view of the job: told of every frame the source sends.
    watch: Arc<failover::Watch>,
}

impl Link {
    fn new(ctx: Arc<Context>, stream: TlsStream<TcpStream>, peer: SocketAddr, name: &str) -> Link {
        let (reader, writer) = tokio::io::split(stream);
        let config = ctx.config();
        Link {
            ctx,
            // Large writes arrive page-aligned, so the applier writes them to the disk
            // from the bytes received (see `apply::direct`).
            reader: FrameReader::new(reader, MAX_FRAME)
                .with_placement(|prefix| codec::data_alignment(prefix, PAGE)),
            writer: BufWriter::new(writer),
            who: format!("{name} ({peer})"),
            config,
        }
    }

    /// Reads the hello, opens the replica it names, takes the job over from a session it
    /// replaces, records the position the session starts at, welcomes the source and
    /// starts the applier. In
    /// that order: the position is read only once nothing of a replaced session can
    /// change it any more, and acknowledged (by the welcome) only once it is durable.
    async fn handshake(
        &mut self,
        fingerprint: String,
        (name, peer): (&str, SocketAddr),
    ) -> Result<Session, Ended> {
        let Hello {
            job,
            target_path,
            acked,
        } = self.hello().await?;
        let replica = kind::open(&target_path, self.config.apply).map_err(|e| match e {
            OpenError::Path(..) => Ended::Refused(REFUSE_PATH, e.to_string()),
            OpenError::Busy(..) => {
                Ended::Refused(REFUSE_BUSY, format!("starting the applier: {e}"))
            }
        })?;
        let key = (fingerprint, job.clone());
        let holding = self.take_over(&key).await?;
        // Only once the job is this session's: see `failover`'s invariants.
        let watch = failover::admit(&self.ctx, &key, &self.who).map_err(Ended::FailedOver)?;
        let session = self.starting_point(&key, &target_path, replica.as_ref())?;
        let last_applied = session.last_applied;
        let stats = session_stats(
            &self.ctx,
            &key,
            (name, peer),
            &target_path,
            last_applied,
            session.data_state,
        );
        let welcome = Frame::Welcome {
            host: self.config.host.clone(),
            last_applied,
        };
        send(&mut self.writer, &welcome)
            .await
            .map_err(|_| Ended::Gone)?;
        self.ctx.log.event(
            Level::Information,
            events::CONNECTED,
            &format!(
                "Connection established from {} for job {job} to {} (last applied {last_applied})",
                self.who,
                target_path.display()
            ),
        );
        // The applier thread applies what the receive loop queues, and answers through
        // `out`.
        let (out_tx, out) = mpsc::unbounded_channel::<Frame>();
        let cancel = Arc::clone(&holding.cancel);
        let shared = apply_thread::start(
            &self.ctx,
            &key,
            replica,
            session,
            Arc::clone(&stats),
            out_tx,
            holding,
        )
        .map_err(|e| Ended::Refused(REFUSE_BUSY, format!("starting the applier: {e:#}")))?;
        shared.connected(acked, last_applied);
        Ok(Session {
            job,
            key,
            cancel,
            shared,
            stats,
            out,
            check: SeqCheck::new(last_applied),
            watch,
        })
    }

    /// The hello, checked: a version this target speaks, a valid job name, a usable
    /// target path. Its `mirror` flag is not used: the data state moves with the mirror's
    /// markers as they are applied (and is kept across restarts), and a reconnecting
    /// source announces the mirror it has finished too.
    async fn hello(&mut self) -> Result<Hello, Ended> {
        let refused = |code, why: String| Err(Ended::Refused(code, why));
        match tokio::time::timeout(self.config.timeout, self.reader.next()).await {
            Ok(Ok(Some(Frame::Hello {
                version,
                job,
                target_path,
                acked,
                ..
            }))) => {
                if version < VERSION {
                    let why = format!(
                        "protocol version {version} is not supported (this target speaks {VERSION})"
                    );
                    return refused(REFUSE_VERSION, why);
                }
                match check_job(&job).and_then(|()| check_target_path(&target_path)) {
                    Ok(target_path) => Ok(Hello {
                        job,
                        target_path,
                        acked,
                    }),
                    Err(why) => refused(REFUSE_PATH, why),
                }
            }
            Ok(Ok(Some(other))) => {
                let why = format!("expected a hello, got a {:?} frame", other.kind());
                refused(REFUSE_PROTOCOL, why)
            }
            Ok(Ok(None)) => Err(Ended::Gone),
            Ok(Err(e)) => refused(proto_code(&e), e.to_string()),
            Err(_) => refused(REFUSE_PROTOCOL, "no hello within NetworkTimeout".into()),
        }
    }

    /// Makes this connection the job's session. A newer connection of the same job
    /// replaces an older one (the source gave up on it): the older one is stopped, and
    /// waited for until nothing of it can apply or record anything any more, so that this
    /// session reads the last applied position after the older one's applier finished the
    /// operation in hand and flushed. A fixed pause instead would let an operation slower
    /// than it record its position after this session read it, and the source would
    /// resend it: applied twice.
    ///
    /// An older session that does not finish within [`HAND_OVER_SHARE`] of
    /// `NetworkTimeout` keeps the job: this connection is refused as busy (the source
    /// tries again), and the next one waits for the older session again.
    async fn take_over(&mut self, key: &JobKey) -> Result<Holding, Ended> {
        let (hold, holding) = hold();
        let previous = self
            .ctx
            .active
            .lock()
            .ok()
            .and_then(|mut a| a.insert(key.clone(), hold.clone()));
        let Some(previous) = previous else {
            return Ok(holding);
        };
        previous.cancel.store(true, Ordering::Relaxed);
        let limit = self.config.timeout / HAND_OVER_SHARE;
        if tokio::time::timeout(limit, previous.clone().finished())
            .await
            .is_ok()
        {
            return Ok(holding);
        }
        // The older session still holds the job, for the next connection to wait on.
        if let Ok(mut a) = self.ctx.active.lock() {
            if a.get(key).is_some_and(|h| h.is(&hold)) {
                a.insert(key.clone(), previous);
            }
        }
        let why = format!(
            "the job's previous connection has not finished applying within {limit:?}; \
             the source tries again"
        );
        Err(Ended::Refused(REFUSE_BUSY, why))
    }

    /// The job's session record as this connection starts it: at the highest sequence
    /// applied (by the job store's last flush, or after it, by the last applier's
    /// position), recorded in the job store. Ops the last process applied after its last
    /// flush are made durable first, since the welcome acknowledges everything up to that
    /// point. A different target path starts from nothing.
    fn starting_point(
        &self,
        key: &JobKey,
        target_path: &Path,
        replica: &dyn Replica,
    ) -> Result<TargetSession, Ended> {
        let (fingerprint, job) = key;
        let stored = self.ctx.store.get_session(fingerprint, job).ok().flatten();
        let last_applied = match &stored {
            Some(s) if s.target_path == target_path => s
                .last_applied
                .max(apply_thread::last_position(&self.ctx, key).unwrap_or(0)),
            _ => 0,
        };
        if stored
            .as_ref()
            .is_some_and(|s| s.last_applied < last_applied)
        {
            sync(replica).map_err(|e| {
                let why = format!("syncing {}: {e}", target_path.display());
                Ended::Refused(REFUSE_BUSY, why)
            })?;
        }
        let mut session = stored.unwrap_or(TargetSession {
            target_path: target_path.to_path_buf(),
            last_applied: 0,
            data_state: DataState::Ok,
            updated_unix: 0,
        });
        session.target_path = target_path.to_path_buf();
        session.last_applied = last_applied;
        self.ctx
            .store
            .put_session(fingerprint, job, &session)
            .map_err(|e| Ended::Refused(REFUSE_BUSY, format!("recording the session: {e}")))?;
        Ok(session)
    }

    /// Receives the source's frames into the applier's queue and passes on the applier's
    /// answers, with statistics and a keep-alive every second, until the connection ends,
    /// the session is replaced or the target stops (`Ok`), or the source breaks the
    /// protocol (the refusal's code and reason).
    async fn receive_loop(&mut self, session: &mut Session) -> Result<(), (u32, String)> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut heard = Instant::now();
        loop {
            if session.cancel.load(Ordering::Relaxed) || self.ctx.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            tokio::select! {
                f = self.reader.next() => {
                    heard = Instant::now();
                    session.watch.heard();
                    let frame = match f {
                        Ok(Some(frame)) => frame,
                        Ok(None) => {
                            // A clean close (TLS close_notify): the source stopped.
                            session.watch.parted();
                            return Ok(());
                        }
                        Err(e) => return Err((proto_code(&e), e.to_string())),
                    };
                    if !self.take(frame, session).await? {
                        return Ok(());
                    }
                }
                f = session.out.recv() => {
                    let Some(f) = f else { return Ok(()) };
                    if send(&mut self.writer, &f).await.is_err() {
                        return Ok(());
                    }
                }
                _ = tick.tick() => {
                    if !self.tick(&session.stats, heard).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Queues one frame received for the applier, waking it once the frames of one read
    /// are queued, and tells the source to pause or resume its mirror as the queue fills
    /// or empties. False when the link no longer works.
    async fn take(&mut self, frame: Frame, session: &mut Session) -> Result<bool, (u32, String)> {
        receive(frame, &mut session.check, &session.shared, &session.stats)?;
        if !self.reader.frame_ready() {
            session.shared.wake();
        }
        if let Some(f) = session.shared.flow_frame() {
            if send(&mut self.writer, &f).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The second's report to the source (its statistics and a keep-alive). False when
    /// the link no longer works, or the source was silent for longer than `NetworkTimeout`
    /// (a silent link, not a bad message: logged as a disconnection at the close).
    async fn tick(&mut self, s: &SessionStats, heard: Instant) -> bool {
        if heard.elapsed() > self.config.timeout {
            self.ctx.log.event(
                Level::Warning,
                events::DISCONNECTED,
                &format!(
                    "No word from {} for {:?} (NetworkTimeout)",
                    self.who, self.config.timeout
                ),
            );
            return false;
        }
        let report = Frame::TargetStats {
            ops_received: s.ops_received.load(Ordering::Relaxed),
            ops_remaining: s.ops_remaining.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            ops_dropped: s.ops_dropped.load(Ordering::Relaxed),
            bytes_in_queue: s.bytes_in_queue.load(Ordering::Relaxed),
            bytes_in_disk_queue: s.bytes_in_disk_queue.load(Ordering::Relaxed),
            data_state: s.data_state.load(Ordering::Relaxed),
        };
        send(&mut self.writer, &report).await.is_ok()
            && send(&mut self.writer, &Frame::KeepAlive).await.is_ok()
    }

    /// Ends the session: the applier finishes what was queued (acknowledging it if the
    /// link still works), a protocol breach is refused, and the job is let go unless a
    /// newer connection holds it already.
    async fn close(mut self, mut session: Session, ending: Result<(), (u32, String)>) {
        session.shared.finish();
        while let Ok(f) = session.out.try_recv() {
            let _ = send(&mut self.writer, &f).await;
        }
        if let Err((code, why)) = ending {
            self.ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
            self.ctx.log.event(
                Level::Warning,
                events::BAD_MESSAGE,
                &format!("Refusing {}, job {}: {why}", self.who, session.job),
            );
            let _ = send(&mut self.writer, &Frame::refused(code, &why)).await;
        }
        let _ = self.writer.shutdown().await;
        session.stats.connected.store(false, Ordering::Relaxed);
        if let Ok(mut a) = self.ctx.active.lock() {
            if a.get(&session.key)
                .is_some_and(|h| Arc::ptr_eq(&h.cancel, &session.cancel))
            {
                a.remove(&session.key);
            }
        }
        self.ctx.log.event(
            Level::Information,
            events::DISCONNECTED,
            &format!(
                "Connection from {} for job {} disconnected",
                self.who, session.job
            ),
        );
    }

    /// Refuses the connection: counted, logged, told to the peer, and closed.
    async fn refuse(&mut self, code: u32, why: &str) {
        refuse(&self.ctx, &mut self.writer, &self.who, code, why).await
    }
}

/// Takes one frame from the source.
/// Checks the order of the next sequence number, and repeats a resent operation's refusal.
fn in_order(check: &mut SeqCheck, shared: &Shared, seq: u64) -> Result<SeqVerdict, ProtoError> {
    let verdict = check.check(seq)?;
    if verdict == SeqVerdict::Duplicate {
        shared.resent(seq);
    }
    Ok(verdict)
}

fn receive(
    frame: Frame,
    check: &mut SeqCheck,
    shared: &Shared,
    stats: &SessionStats,
) -> Result<(), (u32, String)> {
    let proto = |e: ProtoError| (proto_code(&e), e.to_string());
    match frame {
        Frame::Op { seq, body, .. } => {
            if in_order(check, shared, seq).map_err(proto)? == SeqVerdict::Duplicate {
                return Ok(());
            }
            let ev = codec::decode_relative(&body).map_err(|e| {
                let code = match e {
                    codec::CodecError::NotBeneath(_) => REFUSE_PATH,
                    _ => REFUSE_PROTOCOL,
                };
                (code, format!("op {seq}: {e}"))
            })?;
            // Checked here as well as by the applier: a peer that names a path outside
            // the target is refused at once, not op by op.
            for p in ev.paths() {
                confined(p).map_err(|e| (REFUSE_PATH, format!("op {seq}: {e}")))?;
            }
            if matches!(ev.op, Op::Dirty { .. } | Op::Overflow { .. }) {
                return Err((
                    REFUSE_PROTOCOL,
                    format!("op {seq}: {:?} is not an operation to apply", ev.op.kind()),
                ));
            }
            stats.ops_received.fetch_add(1, Ordering::Relaxed);
            shared
                .push_quietly(Entry::Op(seq, ev))
                .map_err(|e| (REFUSE_BUSY, format!("{e:#}")))
        }
        Frame::Marker { seq, marker } => {
            if in_order(check, shared, seq).map_err(proto)? == SeqVerdict::Duplicate {
                return Ok(());
            }
            shared
                .push_quietly(Entry::Marker(seq, marker))
                .map_err(|e| (REFUSE_BUSY, format!("{e:#}")))
        }
        Frame::Verify { id, asks } => {
            for a in &asks {
                let p = Path::new(std::ffi::OsStr::from_bytes(&a.path));
                // The root itself (an empty name) is asked for too.
                if !a.path.is_empty() {
                    confined(p).map_err(|e| (REFUSE_PATH, format!("verify {id}: {e}")))?;
                }
            }
            shared
                .push_quietly(Entry::Verify(id, asks))
                .map_err(|e| (REFUSE_BUSY, format!("{e:#}")))
        }
        Frame::KeepAlive => Ok(()),
        other => Err((
            REFUSE_PROTOCOL,
            format!("a source does not send {:?} frames", other.kind()),
        )),
    }
}

/// The refusal code of a protocol error (`proto::refuse`).
fn proto_code(e: &ProtoError) -> u32 {
    match e.refusal() {
        Some(Frame::Refused { code, .. }) => code,
        _ => REFUSE_PROTOCOL,
    }
}

fn session_stats(
    ctx: &Context,
    key: &(String, String),
    (name, peer): (&str, SocketAddr),
    target_path: &Path,
    last_applied: u64,
    state: DataState,
) -> Arc<SessionStats> {
    let stats = Arc::new(SessionStats::default());
    if let Ok(mut p) = stats.peer_name.lock() {
        *p = name.to_string();
    }
    if let Ok(mut p) = stats.peer_address.lock() {
        *p = peer.to_string();
    }
    if let Ok(mut p) = stats.fingerprint.lock() {
        p.clone_from(&key.0);
    }
    if let Ok(mut p) = stats.job.lock() {
        p.clone_from(&key.1);
    }
    if let Ok(mut p) = stats.target_path.lock() {
        *p = target_path.to_path_buf();
    }
    stats.last_applied.store(last_applied, Ordering::Relaxed);
    stats
        .data_state
        .store(apply_thread::state_code(state), Ordering::Relaxed);
    stats.connected.store(true, Ordering::Relaxed);
    if let Ok(mut s) = ctx.stats.sessions.lock() {
        s.insert(key.clone(), Arc::clone(&stats));
    }
    stats
}

/// Makes what `replica` holds durable, on the session's task (before anything is
/// applied, so no syncer runs yet). The error is the storage's own, as the refusal
/// names it.
fn sync(replica: &dyn Replica) -> Result<(), String> {
    match replica.durability().and_then(|d| d.sync()) {
        Ok(()) => Ok(()),
        Err(ApplyError::Apply { source, .. }) => Err(source.to_string()),
        Err(other) => Err(other.to_string()),
    }
}

fn check_job(job: &str) -> Result<(), String> {
    crate::storage::job_store::validate::check_name(job).map_err(|e| e.to_string())
}

/// The target path a source asked for: absolute, without `..`, not the root.
fn check_target_path(path: &str) -> Result<PathBuf, String> {
    let p = crate::storage::job_store::validate::check_path("target path", Path::new(path))
        .map_err(|e| e.to_string())?;
    if p.parent().is_none() {
        return Err("the target path may not be the root directory".into());
    }
    Ok(p)
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut BufWriter<W>,
    frame: &Frame,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    frame
        .encode(Policy::PLAIN, &mut buf)
        .map_err(std::io::Error::other)?;
    w.write_all(&buf).await?;
    w.flush().await
}

async fn refuse<W: tokio::io::AsyncWrite + Unpin>(
    ctx: &Context,
    w: &mut BufWriter<W>,
    who: &str,
    code: u32,
    why: &str,
) {
    ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
    ctx.log.event(
        Level::Warning,
        events::BAD_MESSAGE,
        &format!("Refusing {who}: {why}"),
    );
    let _ = send(w, &Frame::refused(code, why)).await;
    let _ = w.shutdown().await;
}
