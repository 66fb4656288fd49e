//! The replica side (the target role): accept sources, apply their operations in order
//! beneath each job's target path, acknowledge only what is durable.
//!
//! Each connection is a session with two threads behind its queue: the apply thread
//! (`apply_thread`) applies in received order to the job's [`Replica`], and the syncer
//! makes batches durable through the replica's [`Durability`] before they are
//! acknowledged. The session knows its replica only through that trait (`kind`), so
//! another kind of replica leaves the session as it is. The one kind today, a directory
//! on this host, is `apply` and `orphans` ([`apply::Applier`]), kept apart from the session
//! so that `rilld run`'s local replica and the mirror's orphan ranges use the same
//! confined calls without a connection.
//!
//! [`serve`] accepts TCP connections on `NetPort`, completes a mutual TLS handshake
//! (only pinned sources get through; every failure is a counted, logged failed login) and
//! runs a [`session`] per connection. A session receives one source job's ordered stream
//! into a target queue (the engine's queue: memory, then disk) and an applier thread
//! applies it beneath the job's target path, acknowledging only what is durably applied.
//! A bad peer (malformed, oversized or out-of-order frame, path outside the target) is
//! refused and logged; the other sessions go on.
//!
//! The target's settings are [`LiveConfig`]: the daemon replaces them when a setting that
//! needs no restart changes, and each connection takes them as they are when it begins,
//! so a change reaches the next connection of every job without a restart.

pub mod apply;
mod apply_thread;
pub mod failover;
pub use apply_thread::{state_code, state_of_code};
mod kind;
pub use kind::{confined, ApplyError, Durability, Replica};
pub(crate) mod orphans;
mod session;
mod syncer;
mod unsettled;
mod verify;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::events::{self, EventLog, Level};
use crate::storage::job_store::JobStore;

/// The target's settings, as one connection uses them.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    pub host: String,
    /// Where per-session queues live (`DataPath/target`).
    pub state_dir: PathBuf,
    pub queue_limits: crate::storage::queue::Limits,
    pub timeout: Duration,
    pub apply: crate::replica::apply::ApplyOptions,
    /// `TGMirrorCapacityHigh` / `TGMirrorCapacityLow`, percent of the queue's memory.
    pub capacity_high: u8,
    pub capacity_low: u8,
    /// `TGExecutionRetryLimit` and the wait between tries (`TGRetryLocked`).
    pub retry_limit: u64,
    pub retry_wait: Duration,
    /// `LogAllOrphans`.
    pub log_all_orphans: bool,
    pub failover: FailoverConfig,
}

/// The failover monitor's settings (`failover`).
#[derive(Clone, Debug)]
pub struct FailoverConfig {
    /// `PingFrequency` and `MissedPackets`: the failover condition is met after
    /// `missed_packets` x `ping_frequency` without word from the source.
    pub ping_frequency: Duration,
    pub missed_packets: u32,
    /// `UserIntervention`: false fails over as soon as the condition is met.
    pub user_intervention: bool,
    /// `PreFailoverWait`, `PreFailbackWait`.
    pub pre_failover_wait: bool,
    pub pre_failback_wait: bool,
}

/// The guide's defaults.
impl Default for FailoverConfig {
    fn default() -> FailoverConfig {
        FailoverConfig {
            ping_frequency: Duration::from_secs(5),
            missed_packets: 5,
            user_intervention: true,
            pre_failover_wait: false,
            pre_failback_wait: false,
        }
    }
}

/// The target's settings as they are now, shared by the daemon (which replaces them) and
/// the target (which copies them at the start of each connection).
pub type LiveConfig = Arc<RwLock<TargetConfig>>;

/// One session's counters, under the guide's Target names.
#[derive(Default)]
pub struct SessionStats {
    pub peer_name: Mutex<String>,
    /// The source's address while connected (the guide's PeerAddress).
    pub peer_address: Mutex<String>,
    pub fingerprint: Mutex<String>,
    pub job: Mutex<String>,
    pub target_path: Mutex<PathBuf>,
    /// Ops of this connection received (resends of ops already applied are not), applied,
    /// and queued to be applied: at rest `ops_received` is `ops_applied + ops_dropped +
    /// ops_remaining`. Markers are not ops and count in none of them.
    pub ops_received: AtomicU64,
    pub ops_applied: AtomicU64,
    pub ops_remaining: AtomicU64,
    pub retries: AtomicU64,
    pub ops_dropped: AtomicU64,
    pub bytes_in_queue: AtomicU64,
    pub bytes_in_disk_queue: AtomicU64,
    pub last_applied: AtomicU64,
    pub data_state: AtomicU8,
    pub connected: AtomicBool,
    /// Orphans the applier removed in this connection: files, directories, bytes.
    pub orphans: [AtomicU64; 3],
}

/// The target's counters, and its sessions.
#[derive(Default)]
pub struct TargetStats {
    pub logins: AtomicU64,
    pub failed_logins: AtomicU64,
    pub refused: AtomicU64,
    /// By (source fingerprint, job).
    pub sessions: Mutex<HashMap<(String, String), Arc<SessionStats>>>,
    /// The failover monitor's view of each source job, and requests for it.
    pub monitor: failover::Monitor,
}

/// What sessions share.
pub(crate) struct Context {
    config: LiveConfig,
    pub store: Arc<JobStore>,
    pub trust: Arc<crate::net::tls::TrustStore>,
    pub log: Arc<EventLog>,
    pub stats: Arc<TargetStats>,
    /// The session currently holding each (fingerprint, job): a newer connection of the
    /// same job replaces it (the old one is a dead link the source gave up on).
    pub active: Mutex<HashMap<JobKey, Hold>>,
    /// Each job's names the replica could not bring up to date, across its connections.
    pub unsettled: Mutex<HashMap<JobKey, Arc<Mutex<unsettled::Unsettled>>>>,
    pub stop: Arc<AtomicBool>,
}

/// A source's job on this target: (certificate fingerprint, job name).
pub(crate) type JobKey = (String, String);

/// A session's hold on its job, as a newer connection of the job sees it: how to stop the
/// session, and how to learn that it has finished.
#[derive(Clone)]
pub(crate) struct Hold {
    pub cancel: Arc<AtomicBool>,
    /// Closed once the session's [`Holding`] is dropped.
    finished: watch::Receiver<()>,
}

/// The session's own side of its [`Hold`], kept by the session until its applier starts
/// and then by the applier thread until it has stopped: dropped once nothing of the
/// session can apply an operation or record a position any more.
pub(crate) struct Holding {
    pub cancel: Arc<AtomicBool>,
    _running: watch::Sender<()>,
}

/// A new session's hold on its job, and its side of it.
pub(crate) fn hold() -> (Hold, Holding) {
    let cancel = Arc::new(AtomicBool::new(false));
    let (running, finished) = watch::channel(());
    (
        Hold {
            cancel: Arc::clone(&cancel),
            finished,
        },
        Holding {
            cancel,
            _running: running,
        },
    )
}

impl Hold {
    /// Returns once the session has finished (its [`Holding`] is dropped).
    pub async fn finished(mut self) {
        // Nothing is ever sent: the only change is the sender going away.
        while self.finished.changed().await.is_ok() {}
    }

    /// Whether `other` is the same session's hold.
    pub fn is(&self, other: &Hold) -> bool {
        Arc::ptr_eq(&self.cancel, &other.cancel)
    }
}

/// What the target works with, besides its settings.
pub struct Services {
    pub store: Arc<JobStore>,
    pub trust: Arc<crate::net::tls::TrustStore>,
    pub log: Arc<EventLog>,
    pub stats: Arc<TargetStats>,
    pub stop: Arc<AtomicBool>,
}

/// Accepts sources on `listener` until `stop` is set.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    config: LiveConfig,
    services: Services,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let stop = Arc::clone(&services.stop);
    let ctx = Arc::new(Context {
        config,
        store: services.store,
        trust: services.trust,
        log: services.log,
        stats: services.stats,
        active: Mutex::new(HashMap::new()),
        unsettled: Mutex::new(HashMap::new()),
        stop: services.stop,
    });
    tokio::spawn(failover::monitor(Arc::clone(&ctx)));
    while !stop.load(Ordering::Relaxed) {
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        let (tcp, peer) = match accepted {
            Err(_) => continue,
            Ok(Err(e)) => {
                log::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Ok(Ok(c)) => c,
        };
        let (acceptor, ctx) = (acceptor.clone(), Arc::clone(&ctx));
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let handshake = tokio::time::timeout(ctx.config().timeout, acceptor.accept(tcp)).await;
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return failed_login(&ctx, peer, &crate::net::tls::describe_handshake_error(&e))
                }
                Err(_) => return failed_login(&ctx, peer, "TLS handshake timed out"),
            };
            let fingerprint = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| crate::net::tls::fingerprint_of_der(c.as_ref()));
            let Some(fingerprint) = fingerprint else {
                return failed_login(&ctx, peer, "no client certificate");
            };
            let name = ctx
                .trust
                .is_trusted(&fingerprint)
                .unwrap_or_else(|| fingerprint.clone());
            ctx.stats.logins.fetch_add(1, Ordering::Relaxed);
            ctx.log.event(
                Level::Information,
                events::LOGIN,
                &format!("Source {name} ({peer}) logged in"),
            );
            session::run(ctx, stream, peer, fingerprint, name).await;
        });
    }
}

impl Context {
    /// The settings as they are now; a poisoned lock still holds whole settings (they are
    /// replaced, never edited in place).
    pub(crate) fn config(&self) -> TargetConfig {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

fn failed_login(ctx: &Context, peer: SocketAddr, why: &str) {
    ctx.stats.failed_logins.fetch_add(1, Ordering::Relaxed);
    ctx.log.event(
        Level::Warning,
        events::LOGIN_FAILED,
        &format!("Failed login from {peer}: {why}"),
    );
}

#[cfg(test)]
mod tests;
