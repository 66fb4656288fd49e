//! Sessions of one job replacing each other, over real TLS connections to [`serve`].
//!
//! A source that gives up on a connection opens a new one; the target's new session of the
//! job stops the old one and reads the last applied position for its welcome. The old
//! session's applier may be in the middle of an operation then (a retry wait, a slow
//! disk): the new session must not read the position before that operation is recorded,
//! or the source resends an operation the replica already has and the replica applies it
//! twice (a rename or a write replayed out of its context corrupts it).
//!
//! The slow operation here is a real one: a truncate of a program that is running, which
//! the kernel refuses (`ETXTBSY`, a transient error) until the program ends, so the
//! applier waits `TGRetryLocked` and tries again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rill_ops::{codec, Event, Op};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::{serve, Services, SessionStats, TargetConfig, TargetStats};
use crate::events::EventLog;
use crate::net::proto::{read_frame, Frame, Policy, Stream, MAX_FRAME, VERSION};
use crate::net::tls::{client_config, server_config, Identity, TrustStore};
use crate::storage::job_store::JobStore;
use crate::storage::queue::{AtLimit, Limits};

type Conn = tokio_rustls::client::TlsStream<TcpStream>;

/// How long one step of a conversation with the target may take.
const STEP: Duration = Duration::from_secs(20);
const JOB: &str = "job";
/// The name of the running program in the replica.
const BUSY: &str = "busy";

/// A target serving on loopback, and a source it trusts that speaks the protocol frame by
/// frame.
struct Scene {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    /// The source's certificate fingerprint: the first half of the job's key.
    fingerprint: String,
    target_path: PathBuf,
    state_dir: PathBuf,
    stats: Arc<TargetStats>,
    stop: Arc<AtomicBool>,
    log_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Scene {
    /// A target whose applier retries a failed operation once, `retry_wait` later, and
    /// whose connections may stay silent for `timeout`.
    fn start(retry_wait: Duration, timeout: Duration) -> Scene {
        Scene::with_retries(1, retry_wait, timeout)
    }

    /// The same, retrying a failed operation `retry_limit` times (`TGExecutionRetryLimit`).
    fn with_retries(retry_limit: u64, retry_wait: Duration, timeout: Duration) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let home = |name: &str| dir.path().join(name);
        let target_id = Identity::load_or_create(&home("target-id"), "target").unwrap();
        let source_id = Identity::load_or_create(&home("source-id"), "source").unwrap();
        let target_trust = Arc::new(TrustStore::open(&home("target-trust")).unwrap());
        let source_trust = Arc::new(TrustStore::open(&home("source-trust")).unwrap());
        target_trust.add("source", &source_id.fingerprint).unwrap();
        source_trust.add("target", &target_id.fingerprint).unwrap();
        let (target_path, state_dir) = (home("replica"), home("state"));
        std::fs::create_dir_all(&target_path).unwrap();
        let config = TargetConfig {
            host: "target".into(),
            state_dir: state_dir.clone(),
            queue_limits: Limits {
                memory_bytes: 16 << 20,
                memory_ops: u64::MAX,
                spill_percent: 50,
                alert_percent: 50,
                at_limit: AtLimit::QueueToDisk,
            },
            timeout,
            apply: crate::replica::apply::ApplyOptions::default(),
            capacity_high: 90,
            capacity_low: 50,
            retry_limit,
            retry_wait,
            log_all_orphans: false,
            failover: Default::default(),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stats, stop) = (
            Arc::new(TargetStats::default()),
            Arc::new(AtomicBool::new(false)),
        );
        let services = Services {
            store: Arc::new(JobStore::open(&home("jobs.redb")).unwrap()),
            trust: Arc::clone(&target_trust),
            log: Arc::new(EventLog::open(&home("log")).unwrap()),
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
        };
        let tls = server_config(&target_id, target_trust).unwrap();
        rt.spawn(serve(
            listener,
            tls,
            Arc::new(RwLock::new(config)),
            services,
        ));
        Scene {
            rt,
            addr,
            tls: client_config(&source_id, source_trust).unwrap(),
            fingerprint: source_id.fingerprint.clone(),
            target_path,
            state_dir,
            stats,
            stop,
            log_dir: home("log"),
            _dir: dir,
        }
    }

    /// A connection of the job with its hello sent, and what the target answered: a
    /// `Welcome` or a `Refused`.
    fn hello(&self) -> (Conn, Frame) {
        self.rt.block_on(async {
            let tcp = tokio::time::timeout(STEP, TcpStream::connect(self.addr))
                .await
                .expect("connecting in time")
                .expect("connecting to the target");
            let name = rustls::pki_types::ServerName::try_from("rill-target").unwrap();
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls));
            let mut conn = tokio::time::timeout(STEP, connector.connect(name, tcp))
                .await
                .expect("TLS handshake in time")
                .expect("TLS handshake with the target");
            let hello = Frame::Hello {
                version: VERSION,
                host: "source".into(),
                job: JOB.into(),
                target_path: self.target_path.display().to_string(),
                mirror: false,
                acked: 0,
            };
            write(&mut conn, &hello).await;
            let answer = tokio::time::timeout(STEP, read_frame(&mut conn, MAX_FRAME))
                .await
                .expect("an answer to the hello in time")
                .expect("a frame")
                .expect("an answer, not the end of the connection");
            (conn, answer)
        })
    }

    /// A connection of the job that was welcomed, and the last applied position it was
    /// welcomed with.
    fn session(&self) -> (Conn, u64) {
        match self.hello() {
            (conn, Frame::Welcome { last_applied, .. }) => (conn, last_applied),
            (_, other) => panic!("expected a welcome, got {other:?}"),
        }
    }

    /// Sends operation `seq`: `op` on `path`.
    fn send_op(&self, conn: &mut Conn, seq: u64, path: &str, op: Op) {
        let mut body = Vec::new();
        codec::encode(&Event::new(path, op), &mut body).unwrap();
        let frame = Frame::Op {
            seq,
            stream: Stream::Replication,
            body: body.into(),
        };
        self.rt.block_on(write(conn, &frame));
    }

    /// The job's counters in its current session.
    fn session_stats(&self) -> Option<Arc<SessionStats>> {
        let key = (self.fingerprint.clone(), JOB.to_string());
        self.stats.sessions.lock().unwrap().get(&key).cloned()
    }

    /// The position the job's appliers recorded last (the file a new session reads).
    fn recorded_position(&self) -> u64 {
        let dir = std::fs::read_dir(&self.state_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(&format!("-{JOB}")))
            .expect("the job's state directory");
        let bytes = std::fs::read(dir.join("applied")).unwrap();
        u64::from_le_bytes(bytes[..8].try_into().unwrap())
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn write(conn: &mut Conn, frame: &Frame) {
    let mut bytes = Vec::new();
    frame.encode(Policy::PLAIN, &mut bytes).unwrap();
    conn.write_all(&bytes).await.unwrap();
    conn.flush().await.unwrap();
}

/// A program running from a file of the replica, killed when dropped: the kernel refuses
/// to open that file for writing while it runs.
struct Running(std::process::Child);

impl Running {
    fn start(replica: &Path) -> Running {
        let program = ["/bin/sleep", "/usr/bin/sleep"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("a sleep program");
        let path = replica.join(BUSY);
        std::fs::copy(program, &path).unwrap();
        // Another test thread forking while the copy's descriptor was open leaves it open
        // in that child until it execs, and until then the kernel refuses to run the file
        // (ETXTBSY): a moment later it runs.
        let deadline = Instant::now() + STEP;
        let child = loop {
            match std::process::Command::new(&path).arg("600").spawn() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                other => break other.unwrap(),
            }
        };
        let running = Running(child);
        // The open below can only fail once the program runs from the file.
        let deadline = Instant::now() + STEP;
        loop {
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => return running,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                other => panic!("writing a running program's file is refused: {other:?}"),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// With `TGExecutionRetryLimit` 0 (the guide's default) an operation that fails for a
/// reason that may pass is retried until it is applied, with the guide's events for the
/// retries (4111, sharing violation) and for their success (4120).
#[test]
fn an_operation_is_retried_until_applied_when_the_limit_is_zero() {
    let scene = Scene::with_retries(0, Duration::from_millis(50), Duration::from_secs(30));
    let running = Running::start(&scene.target_path);
    let (mut conn, _) = scene.session();
    scene.send_op(&mut conn, 1, BUSY, Op::Truncate { size: 7 });
    wait_for("the session", || scene.session_stats().is_some());
    let stats = scene.session_stats().unwrap();
    wait_for("several retries", || {
        stats.retries.load(Ordering::Relaxed) >= 5
    });
    assert_eq!(
        stats.ops_dropped.load(Ordering::Relaxed),
        0,
        "not discarded"
    );
    drop(running);
    wait_for("operation 1 applied", || {
        stats.ops_applied.load(Ordering::Relaxed) == 1
    });
    let size = std::fs::metadata(scene.target_path.join(BUSY))
        .unwrap()
        .len();
    assert_eq!(size, 7);
    let log = std::fs::read_to_string(scene.log_dir.join("rilld.log")).unwrap();
    assert!(
        log.contains(" 4111 ") && log.contains("retried (forever)"),
        "{log}"
    );
    assert!(log.contains(" 4120 "), "{log}");
    drop(conn);
}

/// Waits (up to [`STEP`]) for `done`.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + STEP;
    while !done() {
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The old session's applier is retrying an operation when a new connection of the job
/// replaces it: the new session waits for it, so it welcomes the source with the position
/// after that operation, and nothing records a position after the welcome read it.
#[test]
fn a_replaced_sessions_operation_in_hand_is_recorded_before_the_new_session_reads_the_position() {
    // The operation takes over a second: longer than any fixed pause a hand-over could
    // make instead of waiting.
    let retry_wait = Duration::from_millis(1500);
    let scene = Scene::start(retry_wait, Duration::from_secs(30));
    let _running = Running::start(&scene.target_path);
    let (mut old, welcomed) = scene.session();
    assert_eq!(welcomed, 0, "a new job starts with nothing applied");
    let size = std::fs::metadata(scene.target_path.join(BUSY))
        .unwrap()
        .len();
    scene.send_op(&mut old, 1, BUSY, Op::Truncate { size });
    let old_stats = {
        wait_for("the old session", || scene.session_stats().is_some());
        scene.session_stats().unwrap()
    };
    wait_for("the old session's applier to retry operation 1", || {
        old_stats.retries.load(Ordering::Relaxed) == 1
    });
    assert_eq!(
        old_stats.ops_applied.load(Ordering::Relaxed)
            + old_stats.ops_dropped.load(Ordering::Relaxed),
        0,
        "operation 1 is still in hand"
    );

    let started = Instant::now();
    let (_new, last_applied) = scene.session();
    let handed_over_after = started.elapsed();
    let done = old_stats.ops_applied.load(Ordering::Relaxed)
        + old_stats.ops_dropped.load(Ordering::Relaxed);
    assert_eq!(
        (last_applied, done),
        (1, 1),
        "the new session read the last applied position ({last_applied}) after {:?}, while \
         the old session's operation 1 was {}",
        handed_over_after,
        if done == 0 { "still in hand" } else { "done" },
    );
    // The old session is over: nothing of it records a position any more.
    std::thread::sleep(retry_wait + Duration::from_millis(500));
    assert_eq!(
        scene.recorded_position(),
        last_applied,
        "a position was recorded after the new session read it"
    );
    drop(old);
}

/// An old session that does not finish its operation in hand within half of
/// `NetworkTimeout` gets the new connection refused as busy (the source tries again), and
/// the connection after that still waits for the old session, not for the refused one.
#[test]
fn a_new_session_is_refused_as_busy_while_the_replaced_one_does_not_finish() {
    // Half of the timeout (the longest hand-over) is shorter than the retry wait.
    let timeout = Duration::from_secs(4);
    let scene = Scene::start(Duration::from_secs(3), timeout);
    let _running = Running::start(&scene.target_path);
    let (mut old, _) = scene.session();
    let size = std::fs::metadata(scene.target_path.join(BUSY))
        .unwrap()
        .len();
    scene.send_op(&mut old, 1, BUSY, Op::Truncate { size });
    wait_for("the old session's applier to retry operation 1", || {
        scene
            .session_stats()
            .is_some_and(|s| s.retries.load(Ordering::Relaxed) == 1)
    });
    match scene.hello() {
        (_, Frame::Refused { code, message }) => {
            assert_eq!(code, crate::net::proto::refuse::BUSY, "{message}");
            assert!(message.contains("previous connection"), "{message}");
        }
        (_, other) => panic!("expected the connection refused as busy, got {other:?}"),
    }
    // The connections that follow wait for the old session again, and the first one
    // welcomed hears of operation 1.
    let deadline = Instant::now() + STEP;
    let last_applied = loop {
        match scene.hello() {
            (_, Frame::Welcome { last_applied, .. }) => break last_applied,
            (_, Frame::Refused { code, .. }) if code == crate::net::proto::refuse::BUSY => {
                assert!(Instant::now() < deadline, "never welcomed");
            }
            (_, other) => panic!("expected a welcome or a busy refusal, got {other:?}"),
        }
    };
    assert_eq!(last_applied, 1, "welcomed before the old session finished");
    drop(old);
}
