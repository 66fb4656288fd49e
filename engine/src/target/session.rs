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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use super::applier::{self, Entry, Shared};
use super::{Context, SessionStats};
use crate::apply::confined;
use crate::events::{self, Level};
use crate::jobs::{DataState, TargetSession};
use crate::proto::{
    Frame, FrameReader, Policy, ProtoError, SeqCheck, SeqVerdict, MAX_FRAME, PAGE, VERSION,
};
use rill_ops::{codec, Op};

use crate::proto::refuse::{
    BUSY as REFUSE_BUSY, PROTOCOL as REFUSE_PROTOCOL, TARGET_PATH as REFUSE_PATH,
    VERSION as REFUSE_VERSION,
};

/// Runs one connection until it ends.
pub(super) async fn run(
    ctx: Arc<Context>,
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    fingerprint: String,
    name: String,
) {
    let (reader, writer) = tokio::io::split(stream);
    // Large writes arrive page-aligned, so the applier writes them to the disk from the
    // bytes received (see `apply::direct`).
    let mut reader = FrameReader::new(reader, MAX_FRAME)
        .with_placement(|prefix| codec::data_alignment(prefix, PAGE));
    let mut writer = BufWriter::new(writer);
    let who = format!("{name} ({peer})");
    // Settings changed from now on reach this job's next connection.
    let config = ctx.config();
    let hello = tokio::time::timeout(config.timeout, reader.next()).await;
    // The hello's `mirror` flag is not used: the data state moves with the mirror's
    // markers as they are applied (and is kept across restarts), and a reconnecting
    // source announces the mirror it has finished too.
    let (job, target_path, acked) = match hello {
        Ok(Ok(Some(Frame::Hello {
            version,
            job,
            target_path,
            acked,
            ..
        }))) => {
            if version < VERSION {
                return refuse(&ctx, &mut writer, &who, REFUSE_VERSION, &format!("protocol version {version} is not supported (this target speaks {VERSION})")).await;
            }
            match check_job(&job).and_then(|()| check_target_path(&target_path)) {
                Ok(path) => (job, path, acked),
                Err(why) => return refuse(&ctx, &mut writer, &who, REFUSE_PATH, &why).await,
            }
        }
        Ok(Ok(Some(other))) => {
            let why = format!("expected a hello, got a {:?} frame", other.kind());
            return refuse(&ctx, &mut writer, &who, REFUSE_PROTOCOL, &why).await;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return bad_frame(&ctx, &mut writer, &who, &e).await,
        Err(_) => {
            let why = "no hello within NetworkTimeout";
            return refuse(&ctx, &mut writer, &who, REFUSE_PROTOCOL, why).await;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&target_path) {
        let why = format!(
            "cannot create the target path {}: {e}",
            target_path.display()
        );
        return refuse(&ctx, &mut writer, &who, REFUSE_PATH, &why).await;
    }
    let key = (fingerprint.clone(), job.clone());
    // A newer connection of the same job replaces an older one: the source gave up on it.
    let cancel = Arc::new(AtomicBool::new(false));
    let previous = ctx
        .active
        .lock()
        .ok()
        .and_then(|mut a| a.insert(key.clone(), Arc::clone(&cancel)));
    if let Some(prev) = previous {
        prev.store(true, Ordering::Relaxed);
        // Its applier finishes the op in hand and flushes before this session reads the
        // last applied point.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stored = ctx.store.get_session(&fingerprint, &job).ok().flatten();
    let last_applied = match &stored {
        Some(s) if s.target_path == target_path => s
            .last_applied
            .max(applier::last_position(&ctx, &key).unwrap_or(0)),
        _ => 0,
    };
    // Ops the last process applied after its last flush are made durable before they are
    // acknowledged (the welcome acknowledges everything up to `last_applied`).
    if stored
        .as_ref()
        .is_some_and(|s| s.last_applied < last_applied)
    {
        if let Err(e) = sync_tree(&target_path) {
            let why = format!("syncing {}: {e}", target_path.display());
            return refuse(&ctx, &mut writer, &who, REFUSE_BUSY, &why).await;
        }
    }
    let mut session = stored.unwrap_or(TargetSession {
        target_path: target_path.clone(),
        last_applied: 0,
        data_state: DataState::Ok,
        updated_unix: 0,
    });
    session.target_path = target_path.clone();
    session.last_applied = last_applied;
    if let Err(e) = ctx.store.put_session(&fingerprint, &job, &session) {
        let why = format!("recording the session: {e}");
        return refuse(&ctx, &mut writer, &who, REFUSE_BUSY, &why).await;
    }
    let stats = session_stats(
        &ctx,
        &key,
        (&name, peer),
        &target_path,
        last_applied,
        session.data_state,
    );
    let welcome = Frame::Welcome {
        host: config.host.clone(),
        last_applied,
    };
    if send(&mut writer, &welcome).await.is_err() {
        return;
    }
    ctx.log.event(
        Level::Information,
        events::CONNECTED,
        &format!(
            "Connection established from {who} for job {job} to {} (last applied {last_applied})",
            target_path.display()
        ),
    );

    // The applier thread applies what this task queues, and answers through `out`.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Frame>();
    let shared = match applier::start(
        &ctx,
        &key,
        &target_path,
        session,
        Arc::clone(&stats),
        out_tx.clone(),
        Arc::clone(&cancel),
    ) {
        Ok(s) => s,
        Err(e) => {
            let why = format!("starting the applier: {e:#}");
            return refuse(&ctx, &mut writer, &who, REFUSE_BUSY, &why).await;
        }
    };
    shared.connected(acked, last_applied);
    let mut check = SeqCheck::new(last_applied);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut heard = Instant::now();
    let ending: Result<(), (u32, String)> = loop {
        if cancel.load(Ordering::Relaxed) || ctx.stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        tokio::select! {
                    f = reader.next() => {
                        heard = Instant::now();
                        let frame = match f {
                            Ok(Some(frame)) => frame,
                            Ok(None) => break Ok(()),
                            Err(e) => break Err((proto_code(&e), e.to_string())),
                        };
                        if let Err(e) = receive(frame, &mut check, &shared, &stats) {
                            break Err(e);
                        }
                        if !reader.frame_ready() {
                            shared.wake();
                        }
                        if let Some(f) = shared.flow_frame() {
                            if send(&mut writer, &f).await.is_err() { break Ok(()); }
                        }
                    }
                    f = out_rx.recv() => {
                        let Some(f) = f else { break Ok(()) };
                        if send(&mut writer, &f).await.is_err() { break Ok(()); }
                    }
                    _ = tick.tick() => {
        if heard.elapsed() > config.timeout {
                            // A silent link, not a bad message: logged as a disconnection below.
                            ctx.log.event(
                                Level::Warning,
                                events::DISCONNECTED,
                                &format!("No word from {who} for {:?} (NetworkTimeout)", config.timeout),
                            );
                            break Ok(());
                        }
                        let s = &stats;
                        let report = Frame::TargetStats {
                            ops_received: s.ops_received.load(Ordering::Relaxed),
                            ops_remaining: s.ops_remaining.load(Ordering::Relaxed),
                            retries: s.retries.load(Ordering::Relaxed),
                            ops_dropped: s.ops_dropped.load(Ordering::Relaxed),
                            bytes_in_queue: s.bytes_in_queue.load(Ordering::Relaxed),
                            bytes_in_disk_queue: s.bytes_in_disk_queue.load(Ordering::Relaxed),
                            data_state: s.data_state.load(Ordering::Relaxed),
                        };
                        if send(&mut writer, &report).await.is_err() || send(&mut writer, &Frame::KeepAlive).await.is_err() {
                            break Ok(());
                        }
                    }
                }
    };
    // The applier finishes what was queued (acknowledging it if the link still works).
    shared.finish();
    while let Ok(f) = out_rx.try_recv() {
        let _ = send(&mut writer, &f).await;
    }
    if let Err((code, why)) = ending {
        ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
        ctx.log.event(
            Level::Warning,
            events::BAD_MESSAGE,
            &format!("Refusing {who}, job {job}: {why}"),
        );
        let _ = send(&mut writer, &Frame::refused(code, &why)).await;
    }
    let _ = writer.shutdown().await;
    stats.connected.store(false, Ordering::Relaxed);
    if let Ok(mut a) = ctx.active.lock() {
        if a.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cancel)) {
            a.remove(&key);
        }
    }
    ctx.log.event(
        Level::Information,
        events::DISCONNECTED,
        &format!("Connection from {who} for job {job} disconnected"),
    );
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
        .store(applier::state_code(state), Ordering::Relaxed);
    stats.connected.store(true, Ordering::Relaxed);
    if let Ok(mut s) = ctx.stats.sessions.lock() {
        s.insert(key.clone(), Arc::clone(&stats));
    }
    stats
}

/// Syncs the file system holding `dir`.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = std::fs::File::open(dir)?;
    // SAFETY: a valid fd.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn check_job(job: &str) -> Result<(), String> {
    crate::jobs::validate::check_name(job).map_err(|e| e.to_string())
}

/// The target path a source asked for: absolute, without `..`, not the root.
fn check_target_path(path: &str) -> Result<PathBuf, String> {
    let p = crate::jobs::validate::check_path("target path", Path::new(path))
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

async fn bad_frame<W: tokio::io::AsyncWrite + Unpin>(
    ctx: &Context,
    w: &mut BufWriter<W>,
    who: &str,
    e: &ProtoError,
) {
    refuse(ctx, w, who, proto_code(e), &e.to_string()).await
}
