//! The link task: connect, log in, send, resend, keep alive, reconnect.
//!
//! One task per job. Sequence numbers are assigned here, when an operation first goes on
//! the wire, and stay with it through resends; after a reconnect the target says the last
//! one it durably applied, the window drops what that covers and sends the rest again, so
//! nothing is lost and the target, which skips numbers it has seen, applies nothing twice.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_ops::codec;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;

use super::carried::{self, Carry};
use super::verifies::Verifies;
use super::{LinkStats, Outgoing, Shared};
use crate::events::{self, EventLog, Level};
use crate::mgmt::ConErrorClass;
use crate::net::proto::{self, Compression, Frame, Marker, Policy, Stream, MAX_FRAME, VERSION};
use crate::net::tls::HandshakeFailure;
use crate::source::destination::ConnectionState;

/// Where and how one job connects.
#[derive(Clone)]
pub struct LinkConfig {
    /// `host:port` of the target.
    pub address: String,
    pub job: String,
    pub target_path: String,
    /// This host's name, sent in the hello for the target's log.
    pub host: String,
    pub tls: Arc<rustls::ClientConfig>,
    /// `SourcePendingAcks`.
    pub pending_acks: usize,
    /// `NetworkTimeout`: silence longer than this drops the connection.
    pub timeout: Duration,
    /// How long the connection may stay idle before a keep-alive (the source's
    /// heartbeat) is sent: `NetworkTimeout`/6, or `HBExternalRate` when sooner.
    pub keep_alive: Duration,
    /// How long the target may stay silent before the connection is dropped:
    /// `NetworkTimeout`, or `HBTTL` when sooner (the target pings every second, so a
    /// silence that long is a lost target, not an idle one).
    pub silence: Duration,
    /// `NetworkRetry`, `AutoReconnect`, `AutoRetransmit`.
    pub retry: Duration,
    pub auto_reconnect: bool,
    pub auto_retransmit: bool,
    pub compression: Compression,
    /// Bytes per second on the wire, `None` for no limit.
    pub bandwidth: Option<u64>,
    /// A full mirror follows the hello (the target marks its data state accordingly).
    pub mirror: bool,
    /// Where a failed connection's reason is logged (event 4011, once per reason) and a
    /// connection after failures (4010).
    pub log: Option<Arc<EventLog>>,
}

/// One operation or marker on the wire, kept until acknowledged.
struct InFlight {
    seq: u64,
    /// The encoded frame, resent as it is: `frame`, then `tail` (a write's data, shared
    /// with the queue rather than copied in).
    frame: Vec<u8>,
    tail: Bytes,
    stream: Option<Stream>,
    data_bytes: u64,
    captured_ns: u64,
    /// Relative paths the op names (a rename's both names), to remirror on a `Nak`.
    paths: Vec<std::path::PathBuf>,
    /// Whether the op moves or shares what its first path names (see `carried`).
    carry: Option<Carry>,
    /// The file an in-place change (write, truncate, attribute) was made to, when known:
    /// remirrored wherever its names are by then, on a `Nak`.
    file: Option<(u64, u64)>,
    marker: Option<Marker>,
}

impl InFlight {
    /// Bytes on the wire.
    fn len(&self) -> usize {
        self.frame.len() + self.tail.len()
    }

    async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&self.frame).await?;
        w.write_all(&self.tail).await
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS handshake with {0}: {1}")]
    Handshake(String, HandshakeFailure),
    #[error("the target refused: {message}")]
    Refused { code: u32, message: String },
    #[error("the target broke the protocol: {0}")]
    Unexpected(String),
    #[error("protocol: {0}")]
    Proto(#[from] proto::ProtoError),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("no word from the target for {0:?} (NetworkTimeout)")]
    Timeout(Duration),
    #[error("the target closed the connection")]
    Closed,
    #[error("encoding an operation: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("stopped")]
    Stopped,
}

impl LinkError {
    /// The class `conError` reports.
    fn class(&self) -> ConErrorClass {
        use crate::net::proto::refuse;
        let io = |e: &std::io::Error| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ConErrorClass::Refused,
            std::io::ErrorKind::TimedOut => ConErrorClass::TimedOut,
            _ => ConErrorClass::Network,
        };
        match self {
            LinkError::Connect(_, e) | LinkError::Io(e) => io(e),
            LinkError::Proto(proto::ProtoError::Io(e)) => io(e),
            LinkError::Handshake(_, HandshakeFailure::Network { .. }) => ConErrorClass::Network,
            LinkError::Handshake(_, HandshakeFailure::Protocol { .. }) => ConErrorClass::Protocol,
            LinkError::Handshake(..) => ConErrorClass::NotTrusted,
            LinkError::Refused { code, .. } => match *code {
                refuse::NOT_AUTHORIZED => ConErrorClass::NotTrusted,
                refuse::PROTOCOL | refuse::VERSION | refuse::OUT_OF_ORDER => {
                    ConErrorClass::Protocol
                }
                _ => ConErrorClass::Rejected,
            },
            LinkError::Proto(_) | LinkError::Codec(_) | LinkError::Unexpected(_) => {
                ConErrorClass::Protocol
            }
            LinkError::Timeout(_) => ConErrorClass::TimedOut,
            LinkError::Closed | LinkError::Stopped => ConErrorClass::Network,
        }
    }

    /// An i/o error on the TLS stream: in TLS 1.3 a server that refuses this host's
    /// certificate says so with an alert after the client's side of the handshake is
    /// done, so it comes with the first read (or write) instead of from the handshake.
    fn tls(address: &str, e: std::io::Error) -> LinkError {
        match crate::net::tls::classify_handshake_error(&e) {
            HandshakeFailure::Network { .. } => LinkError::Io(e),
            failure => LinkError::Handshake(address.to_string(), failure),
        }
    }
}

/// Opens a mutually authenticated TLS connection to `address`.
pub async fn connect_tls(
    address: &str,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, std::io::Error> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    // Pinning replaces name checks (see `tls`): any syntactically valid name will do.
    let name = ServerName::try_from("rill-target").map_err(std::io::Error::other)?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    tokio::time::timeout(timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Runs the link until the job stops.
pub(super) async fn run(config: LinkConfig, mut rx: mpsc::Receiver<Outgoing>, shared: Arc<Shared>) {
    let mut window: VecDeque<InFlight> = VecDeque::new();
    let mut next_seq: u64 = 0;
    let mut acked_items: u64 = 0;
    let mut verifies = Verifies::default();
    let stats = Arc::clone(&shared.stats);
    while !shared.stop.load(Ordering::Relaxed) {
        stats.set_state(ConnectionState::Connecting);
        let result = connect(&config, stats.acked_seq.load(Ordering::Relaxed)).await;
        let err = match result {
            Ok((stream, last_applied)) => {
                stats.set_state(ConnectionState::Connected);
                log::info!(
                    "job {}: connected to {} (last applied {last_applied})",
                    config.job,
                    config.address
                );
                if let (Some(failed), Some(log)) = (stats.connected(), &config.log) {
                    log.event(
                        Level::Information,
                        events::RECONNECTED,
                        &format!(
                            "Auto-reconnect has succeeded connecting job {} to {} after {} \
                             failed attempts ({})",
                            config.job, config.address, failed.attempts, failed.class
                        ),
                    );
                }
                let acked = stats.acked_seq.load(Ordering::Relaxed);
                if last_applied < acked {
                    // Acknowledged means durably applied, so a target that knows less
                    // lost its state (a rebuilt host, a DataPath restored from a backup):
                    // what it acknowledged may be gone from the replica too.
                    log::warn!(
                        "job {}: the target acknowledged operations up to {acked} but now \
                         has applied only up to {last_applied}: it lost its state, and the \
                         whole source is remirrored",
                        config.job
                    );
                    stats.acked_seq.store(last_applied, Ordering::Relaxed);
                    stats.target_lost_state.store(true, Ordering::Relaxed);
                }
                // Nothing up to `last_applied` is sent again, but it stays in the window
                // until the target acknowledges it, right after repeating the refusals
                // among it this source may not have had (see `target::unsettled`).
                next_seq = next_seq.max(last_applied + 1);
                let e = session(
                    &config,
                    stream,
                    &mut window,
                    &mut rx,
                    &shared,
                    &mut next_seq,
                    &mut acked_items,
                    last_applied,
                    &mut verifies,
                )
                .await;
                verifies.fail_all(&e.to_string());
                match e {
                    LinkError::Stopped => return,
                    e => e,
                }
            }
            Err(e) => e,
        };
        let refused = matches!(err, LinkError::Refused { .. } | LinkError::Handshake(..));
        stats.set_state(if refused {
            ConnectionState::Refused
        } else {
            ConnectionState::Disconnected
        });
        let text = err.to_string();
        let class = err.class();
        log::warn!("job {}: {text}", config.job);
        if let (true, Some(log)) = (stats.failed(class, &text), &config.log) {
            let then = if config.auto_reconnect {
                format!("retrying every {} s", config.retry.as_secs_f64())
            } else {
                "not retrying (AutoReconnect = 0): restart the job".to_string()
            };
            log.event(
                Level::Error,
                events::RECONNECT_FAILED,
                &format!(
                    "Auto-reconnect has failed connecting job {} to {}: {class}: {text}; {then}",
                    config.job, config.address
                ),
            );
        }
        if !config.auto_reconnect {
            // Stay disconnected until the job is restarted.
            while !shared.stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            return;
        }
        let until = Instant::now() + config.retry;
        while Instant::now() < until && !shared.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Connects, logs in (telling the target the last acknowledgement this source holds) and
/// returns the stream and the target's last applied sequence.
async fn connect(
    config: &LinkConfig,
    acked: u64,
) -> Result<(TlsStream<TcpStream>, u64), LinkError> {
    let mut stream =
        match connect_tls(&config.address, Arc::clone(&config.tls), config.timeout).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(LinkError::Handshake(
                    config.address.clone(),
                    crate::net::tls::classify_handshake_error(&e),
                ))
            }
            Err(e) => return Err(LinkError::Connect(config.address.clone(), e)),
        };
    let hello = Frame::Hello {
        version: VERSION,
        host: config.host.clone(),
        job: config.job.clone(),
        target_path: config.target_path.clone(),
        mirror: config.mirror,
        acked,
    };
    let mut buf = Vec::new();
    hello.encode(Policy::PLAIN, &mut buf)?;
    let tls = |e| LinkError::tls(&config.address, e);
    stream.write_all(&buf).await.map_err(tls)?;
    stream.flush().await.map_err(tls)?;
    match tokio::time::timeout(config.timeout, proto::read_frame(&mut stream, MAX_FRAME)).await {
        Err(_) => Err(LinkError::Timeout(config.timeout)),
        Ok(Err(proto::ProtoError::Io(e))) => Err(tls(e)),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(None)) => Err(LinkError::Closed),
        Ok(Ok(Some(Frame::Welcome { last_applied, .. }))) => Ok((stream, last_applied)),
        Ok(Ok(Some(Frame::Refused { code, message }))) => Err(LinkError::Refused { code, message }),
        Ok(Ok(Some(other))) => Err(LinkError::Unexpected(format!(
            "expected a welcome, got {:?}",
            other.kind()
        ))),
    }
}

/// Drops acknowledged items from the window and tells the destination how many there were.
fn acknowledge(window: &mut VecDeque<InFlight>, seq: u64, shared: &Shared, acked_items: &mut u64) {
    let stats = &shared.stats;
    while window.front().is_some_and(|f| f.seq <= seq) {
        let Some(f) = window.pop_front() else { break };
        *acked_items += 1;
        match f.stream {
            Some(Stream::Replication) => {
                stats.rep_ops_pending.fetch_sub(1, Ordering::Relaxed);
            }
            Some(Stream::Mirror) => {
                stats.mir_ops_pending.fetch_sub(1, Ordering::Relaxed);
                stats
                    .mir_bytes_pending
                    .fetch_sub(f.data_bytes, Ordering::Relaxed);
            }
            None => {}
        }
        match f.marker {
            Some(Marker::MirrorStarted) => {
                stats.mirror_started_acked.store(true, Ordering::Relaxed)
            }
            Some(Marker::MirrorComplete) => {
                stats.mirror_complete_acked.store(true, Ordering::Relaxed)
            }
            None => {}
        }
    }
    stats.acked_seq.fetch_max(seq, Ordering::Relaxed);
    stats.oldest_unacked_ns.store(
        window.front().map_or(0, |f| f.captured_ns),
        Ordering::Relaxed,
    );
    shared.acked_items.send_replace(*acked_items);
}

/// Encoding a record fails only when it is too large for the abi's 32-bit lengths.
fn record_unencodable(e: codec::CodecError) -> proto::ProtoError {
    let len = match e {
        codec::CodecError::TooLarge(n) => n as u64,
        _ => 0,
    };
    proto::ProtoError::TooLarge {
        what: "operation record",
        len,
        max: u64::from(u32::MAX),
    }
}

/// Encodes one item into its frame.
fn encode(
    item: Outgoing,
    seq: u64,
    compression: &Compression,
) -> Result<(InFlight, bool), LinkError> {
    let mut frame = Vec::new();
    match item {
        Outgoing::Op {
            ev,
            stream,
            captured_ns,
            file,
        } => {
            // Every operation with its sequence, for tracing a replica's history (the
            // replication fuzzer turns it on); nothing is formatted unless it is enabled.
            log::debug!("op {seq} {stream:?}: {}", ev.to_text());
            let data_bytes = match &ev.op {
                rill_ops::Op::Write { len, .. } => *len,
                _ => 0,
            };
            // The guide's threshold is a file size; a write's length stands for it, as
            // the file's size would cost a stat per operation.
            let policy = compression.policy(&ev.path, data_bytes);
            let mut tail = Bytes::new();
            if policy.zstd_level.is_some() {
                let mut body = Vec::new();
                codec::encode(&ev, &mut body)?;
                Frame::encode_op(seq, stream, &body, policy, &mut frame)?;
            } else {
                // Uncompressed, the record is written into the frame itself, but for a
                // write's data, which follows it on the wire without being copied.
                (_, tail) = Frame::encode_op_with(seq, stream, policy, &mut frame, |out| {
                    codec::encode_but_data(&ev, out).map_err(record_unencodable)
                })?;
            }
            let compressed = frame
                .first_chunk::<{ proto::HEADER_LEN }>()
                .and_then(|h| proto::Header::parse(h, MAX_FRAME).ok())
                .is_some_and(|h| h.compressed());
            Ok((
                InFlight {
                    seq,
                    frame,
                    tail,
                    stream: Some(stream),
                    data_bytes,
                    captured_ns,
                    paths: ev.paths().cloned().collect(),
                    carry: Carry::of(&ev.op),
                    file,
                    marker: None,
                },
                compressed,
            ))
        }
        // Written apart by `Verifies::send`, never numbered.
        Outgoing::Verify(call) => {
            call.answer(Err("a verification request reached the numbering".into()));
            Err(LinkError::Unexpected(
                "a verification request reached the numbering".into(),
            ))
        }
        Outgoing::Marker(marker) => {
            Frame::Marker { seq, marker }.encode(Policy::PLAIN, &mut frame)?;
            Ok((
                InFlight {
                    seq,
                    frame,
                    tail: Bytes::new(),
                    stream: None,
                    data_bytes: 0,
                    captured_ns: crate::clock::monotonic_ns(),
                    paths: Vec::new(),
                    carry: None,
                    file: None,
                    marker: Some(marker),
                },
                false,
            ))
        }
    }
}

/// One connected session: resend the window past what the target applied
/// (`last_applied`), then send, read acknowledgements and keep alive until something
/// fails.
#[allow(clippy::too_many_arguments)]
async fn session(
    config: &LinkConfig,
    stream: TlsStream<TcpStream>,
    window: &mut VecDeque<InFlight>,
    rx: &mut mpsc::Receiver<Outgoing>,
    shared: &Arc<Shared>,
    next_seq: &mut u64,
    acked_items: &mut u64,
    last_applied: u64,
    verifies: &mut Verifies,
) -> LinkError {
    let (reader, writer) = tokio::io::split(stream);
    let mut writer = BufWriter::with_capacity(256 << 10, writer);
    let (reader_task, mut frames) = read_frames(reader);
    let result = async {
        resume(
            config,
            window,
            shared,
            acked_items,
            last_applied,
            &mut writer,
        )
        .await?;
        let keepalive = config.keep_alive;
        let mut tick = tokio::time::interval(keepalive.max(Duration::from_millis(50)));
        let mut heard = Instant::now();
        let mut wrote = Instant::now();
        let mut bucket = Bucket::new(config.bandwidth);
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return Err(close(config, &mut writer).await);
            }
            let room = window.len() < config.pending_acks;
            tokio::select! {
                () = shared.stopping.notified() => return Err(close(config, &mut writer).await),
                f = frames.recv() => {
                    heard = Instant::now();
                    match f {
                        None | Some(Ok(None)) => return Err(LinkError::Closed),
                        Some(Err(e)) => return Err(e.into()),
                        Some(Ok(Some(Frame::Verified { id, found }))) => verifies.answer(id, found),
                        // The target's ping: answered at once, as its failover monitor
                        // counts the pings left unanswered (PingFrequency, MissedPackets).
                        Some(Ok(Some(Frame::KeepAlive))) => {
                            keep_alive(config, &mut writer).await?;
                            wrote = Instant::now();
                        }
                        Some(Ok(Some(frame))) => handle(frame, window, shared, acked_items)?,
                    }
                }
                item = rx.recv(), if room => {
                    let Some(item) = item else { return Err(close(config, &mut writer).await) };
                    let item = match item {
                        Outgoing::Verify(call) => {
                            verifies.send(call, &mut writer, config.timeout).await?;
                            continue;
                        }
                        item => item,
                    };
                    let seq = *next_seq;
                    *next_seq += 1;
                    let (f, compressed) = encode(item, seq, &config.compression)?;
                    bucket.take(f.len()).await;
                    send(config, &shared.stats, window, f, compressed, &mut writer).await?;
                    wrote = Instant::now();
                    // Batch frames into TLS records while more are waiting.
                    if rx.is_empty() || window.len() >= config.pending_acks {
                        timed(config.timeout, writer.flush()).await?;
                    }
                }
                _ = tick.tick() => {
                    if heard.elapsed() > config.silence {
                        return Err(LinkError::Timeout(config.silence));
                    }
                    if wrote.elapsed() >= keepalive {
                        keep_alive(config, &mut writer).await?;
                        wrote = Instant::now();
                    }
                }
            }
        }
    }
    .await;
    reader_task.abort();
    match result {
        Ok(()) => LinkError::Closed,
        Err(e) => e,
    }
}

/// Frames from the target, read by a task of their own so a slow write never delays
/// them; the channel ends after the connection's last frame or its error.
fn read_frames<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::Receiver<Result<Option<Frame>, proto::ProtoError>>,
) {
    let (tx, frames) = mpsc::channel(256);
    let task = tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(reader);
        loop {
            let r = proto::read_frame(&mut reader, MAX_FRAME).await;
            let end = !matches!(r, Ok(Some(_)));
            if tx.send(r).await.is_err() || end {
                return;
            }
        }
    });
    (task, frames)
}

/// Picks the stream up where the target's welcome left it: the window past
/// `last_applied` is sent again (`AutoRetransmit`), or, without retransmission, taken
/// for acknowledged and its operations' names remirrored.
async fn resume<W: AsyncWrite + Unpin>(
    config: &LinkConfig,
    window: &mut VecDeque<InFlight>,
    shared: &Arc<Shared>,
    acked_items: &mut u64,
    last_applied: u64,
    writer: &mut W,
) -> Result<(), LinkError> {
    let stats = &shared.stats;
    if config.auto_retransmit {
        for f in window.iter().filter(|f| f.seq > last_applied) {
            timed(config.timeout, f.write_to(writer)).await?;
            stats.resent.fetch_add(1, Ordering::Relaxed);
            stats.bytes_tx.fetch_add(f.len() as u64, Ordering::Relaxed);
        }
    } else if !window.is_empty() {
        // Without retransmission the unacknowledged operations' files are remirrored,
        // those the target applied too: a refusal among them it repeats would find them
        // gone from the window.
        if let Ok(mut failed) = shared.failed.lock() {
            for f in window.iter() {
                failed.add(&f.paths, f.file);
            }
        }
        let last = window.back().map_or(0, |f| f.seq);
        acknowledge(window, last, shared, acked_items);
    }
    timed(config.timeout, writer.flush()).await
}

/// Counts an encoded frame, puts it in the window and writes it (unflushed).
async fn send<W: AsyncWrite + Unpin>(
    config: &LinkConfig,
    stats: &LinkStats,
    window: &mut VecDeque<InFlight>,
    f: InFlight,
    compressed: bool,
    writer: &mut W,
) -> Result<(), LinkError> {
    stats.ops_tx.fetch_add(1, Ordering::Relaxed);
    stats.bytes_tx.fetch_add(f.len() as u64, Ordering::Relaxed);
    if compressed {
        stats
            .bytes_compressed_tx
            .fetch_add(f.len() as u64, Ordering::Relaxed);
    }
    if window.is_empty() {
        stats
            .oldest_unacked_ns
            .store(f.captured_ns, Ordering::Relaxed);
    }
    // Into the window before it is written: if the write fails, the frame is resent after
    // the reconnect like every other unacknowledged one.
    window.push_back(f);
    if let Some(f) = window.back() {
        timed(config.timeout, f.write_to(writer)).await?;
    }
    Ok(())
}

/// Ends a session the job stopped: what is buffered is written, then TLS's close_notify,
/// so the target sees the connection end cleanly rather than cut.
async fn close<W: tokio::io::AsyncWrite + Unpin>(config: &LinkConfig, writer: &mut W) -> LinkError {
    match timed(config.timeout, writer.flush()).await {
        Ok(()) => {
            let _ = timed(config.timeout, writer.shutdown()).await;
            LinkError::Stopped
        }
        Err(e) => e,
    }
}

/// A write to the target, bounded by `NetworkTimeout`: once the socket's buffers are full
/// a cut link would otherwise block it until TCP gives up, many minutes later, and the
/// silence check would never run.
pub(super) async fn timed(
    timeout: Duration,
    write: impl std::future::Future<Output = std::io::Result<()>>,
) -> Result<(), LinkError> {
    match tokio::time::timeout(timeout, write).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(LinkError::Timeout(timeout)),
    }
}

/// Acts on one frame from the target.
fn handle(
    frame: Frame,
    window: &mut VecDeque<InFlight>,
    shared: &Shared,
    acked_items: &mut u64,
) -> Result<(), LinkError> {
    let stats = &shared.stats;
    match frame {
        Frame::Ack { seq } => acknowledge(window, seq, shared, acked_items),
        Frame::Nak { seq, message, .. } => {
            if let Some(f) = window.iter().find(|f| f.seq == seq) {
                log::warn!(
                    "the target could not apply op {seq} ({:?}): {message}; remirroring",
                    f.paths
                );
                let later = window
                    .iter()
                    .filter(|g| g.seq > seq)
                    .filter_map(|g| Some((g.carry?, g.paths.as_slice())));
                let names = carried::follow(f.paths.clone(), later);
                if let Ok(mut failed) = shared.failed.lock() {
                    failed.add(&names, f.file);
                }
            }
        }
        Frame::Pause => stats.target_paused.store(true, Ordering::Relaxed),
        Frame::Resume => stats.target_paused.store(false, Ordering::Relaxed),
        Frame::TargetStats {
            ops_received,
            ops_remaining,
            retries,
            ops_dropped,
            bytes_in_queue,
            bytes_in_disk_queue,
            data_state,
        } => {
            for (slot, v) in stats.target.iter().zip([
                ops_received,
                ops_remaining,
                retries,
                ops_dropped,
                bytes_in_queue,
                bytes_in_disk_queue,
                u64::from(data_state),
            ]) {
                slot.store(v, Ordering::Relaxed);
            }
        }
        Frame::KeepAlive => {}
        Frame::Refused { code, message } => return Err(LinkError::Refused { code, message }),
        other => {
            return Err(LinkError::Unexpected(format!(
                "unexpected {:?} frame from the target",
                other.kind()
            )))
        }
    }
    Ok(())
}

/// A token bucket for the optional bandwidth limit: one second of burst.
struct Bucket {
    rate: Option<u64>,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: Option<u64>) -> Bucket {
        Bucket {
            rate,
            tokens: rate.unwrap_or(0) as f64,
            at: Instant::now(),
        }
    }

    async fn take(&mut self, n: usize) {
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let rate = rate as f64;
        self.tokens = (self.tokens + self.at.elapsed().as_secs_f64() * rate).min(rate);
        self.at = Instant::now();
        self.tokens -= n as f64;
        if self.tokens < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-self.tokens / rate)).await;
        }
    }
}

/// Sends a keep-alive: the source's heartbeat, and its answer to the target's ping.
async fn keep_alive<W: tokio::io::AsyncWrite + Unpin>(
    config: &LinkConfig,
    writer: &mut W,
) -> Result<(), LinkError> {
    let mut buf = Vec::new();
    Frame::KeepAlive.encode(Policy::PLAIN, &mut buf)?;
    timed(config.timeout, writer.write_all(&buf)).await?;
    timed(config.timeout, writer.flush()).await?;
    Ok(())
}
