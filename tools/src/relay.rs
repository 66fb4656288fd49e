//! A TCP relay on loopback between a sender and its receiver: it counts the bytes each
//! tool puts on the wire, and it can cut the link.
//!
//! Counting (`rill-bench replication`, scenario (c)): every tool's connection to its
//! receiver (rill's source to the target's NetPort, the rsync client or lsyncd's rsync to
//! the rsync daemon) goes through the relay, which copies both directions and counts the
//! TCP payload bytes: everything the tools' sockets send, including rill's TLS records and
//! rsync's protocol, excluding TCP/IP headers. The same meter for all three, independent
//! of what each tool says about itself.
//!
//! Cutting (`rill-replfuzz`): [`Relay::cut`] takes the link down the way a network does,
//! either loudly ([`Cut::Reset`]: every relayed connection is shut down at once, as when a
//! peer's host goes away) or quietly ([`Cut::Silent`]: nothing more is forwarded in either
//! direction, as when a cable is pulled, and the connections are shut down only when the
//! link comes back, so the peers must notice on their own timers), or one way only
//! ([`Cut::Answers`]: the target applies what it gets, and its answers are lost, as when a
//! return route fails). While cut, no new
//! connection is accepted: it waits in the listen backlog, its handshake unanswered, until
//! [`Relay::restore`].
//!
//! # State
//! `Shared::cut` is 0 (up), or the [`Cut`] in force; copy threads read it before every
//! forwarded read, the acceptor before every accept. Streams are kept so a cut can shut
//! them down; a cut clears the list, so it holds only the connections made since.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// Bytes relayed so far: `up` from the connecting side (the sender) to the upstream (the
/// receiver), `down` back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bytes {
    pub up: u64,
    pub down: u64,
}

impl Bytes {
    pub fn since(&self, before: &Bytes) -> Bytes {
        Bytes {
            up: self.up.saturating_sub(before.up),
            down: self.down.saturating_sub(before.down),
        }
    }
}

/// How [`Relay::cut`] takes the link down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Every relayed connection is shut down at once: the peers see the connection end.
    Reset = 1,
    /// Nothing more is forwarded; the peers see silence until their timers expire.
    Silent = 2,
    /// What the upstream peer sends back is no longer forwarded, what the client sends
    /// still is: a target applies what it gets, and its answers are lost.
    Answers = 3,
}

/// How long a cut copy thread or acceptor sleeps between looks at the link's state.
const CUT_POLL: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Shared {
    up: AtomicU64,
    down: AtomicU64,
    stop: AtomicBool,
    /// 0 while the link is up, else the `Cut` in force.
    cut: AtomicU8,
    streams: Mutex<Vec<TcpStream>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

pub struct Relay {
    pub port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the relay")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("relay-accept".into())
                .spawn(move || accept_loop(listener, upstream, shared))?
        };
        Ok(Relay {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Takes the link down (see [`Cut`]) until [`Relay::restore`].
    pub fn cut(&self, how: Cut) {
        self.shared.cut.store(how as u8, Ordering::SeqCst);
        if how == Cut::Reset {
            self.shared.shut_all();
        }
    }

    /// Brings the link back. The connections a silent cut stalled are shut down first:
    /// their peers have given up on them (or will, on data that never came).
    pub fn restore(&self) {
        self.shared.shut_all();
        self.shared.cut.store(0, Ordering::SeqCst);
    }

    pub fn bytes(&self) -> Bytes {
        Bytes {
            up: self.shared.up.load(Ordering::Relaxed),
            down: self.shared.down.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst) != 0
    }

    /// Whether bytes read in this direction (`up`: from the client) are held.
    fn holds(&self, up: bool) -> bool {
        let cut = self.cut.load(Ordering::SeqCst);
        cut == Cut::Silent as u8 || (cut == Cut::Answers as u8 && !up)
    }

    /// Shuts down every relayed connection (their copy threads then end).
    fn shut_all(&self) {
        if let Ok(mut streams) = self.streams.lock() {
            for s in streams.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.is_cut() {
            std::thread::sleep(CUT_POLL);
            continue;
        }
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Ok(server) = TcpStream::connect(upstream) else {
            continue; // dropping `client` closes it: the tool sees a refused peer
        };
        let _ = client.set_nonblocking(false);
        for s in [&client, &server] {
            let _ = s.set_nodelay(true);
        }
        let pairs = [
            (client.try_clone(), server.try_clone(), true),
            (server.try_clone(), client.try_clone(), false),
        ];
        if let Ok(mut streams) = shared.streams.lock() {
            streams.push(client);
            streams.push(server);
        }
        for (from, to, up) in pairs {
            let (Ok(from), Ok(to)) = (from, to) else {
                continue;
            };
            let shared2 = Arc::clone(&shared);
            if let Ok(h) = std::thread::Builder::new()
                .name("relay-copy".into())
                .spawn(move || copy(from, to, &shared2, up))
            {
                if let Ok(mut w) = shared.workers.lock() {
                    w.push(h);
                }
            }
        }
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream, shared: &Shared, up: bool) {
    let counter = if up { &shared.up } else { &shared.down };
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Read during a silent cut: held, never forwarded (the stream is shut down when
        // the link comes back, so these bytes are lost as on a dead link).
        while shared.holds(up) {
            std::thread::sleep(CUT_POLL);
        }
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        self.shared.cut.store(0, Ordering::SeqCst);
        self.shared.shut_all();
        let workers: Vec<_> = self
            .shared
            .workers
            .lock()
            .map(|mut w| w.drain(..).collect())
            .unwrap_or_default();
        for w in workers {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_both_directions() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = echo.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = [0u8; 10];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf[..4]).unwrap();
        });
        let relay = Relay::start(addr).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
        c.write_all(b"0123456789").unwrap();
        let mut back = [0u8; 4];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"0123");
        server.join().unwrap();
        drop(c);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(relay.bytes(), Bytes { up: 10, down: 4 });
    }

    /// An echo server on loopback that echoes every connection until it closes.
    fn echo_server() -> SocketAddr {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in echo.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn echo_once(c: &mut TcpStream) -> std::io::Result<[u8; 3]> {
        c.write_all(b"abc")?;
        let mut back = [0u8; 3];
        c.read_exact(&mut back)?;
        Ok(back)
    }

    #[test]
    fn a_reset_cut_ends_connections_and_holds_new_ones_until_restored() {
        let relay = Relay::start(echo_server()).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(&echo_once(&mut c).unwrap(), b"abc");
        relay.cut(Cut::Reset);
        assert!(
            echo_once(&mut c).is_err(),
            "a reset cut ends the connection"
        );
        let mut during = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
        during
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(echo_once(&mut during).is_err(), "nothing answers while cut");
        relay.restore();
        let mut after = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
        after
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(&echo_once(&mut after).unwrap(), b"abc");
    }

    #[test]
    fn a_silent_cut_forwards_nothing_and_ends_the_connection_when_restored() {
        let relay = Relay::start(echo_server()).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(&echo_once(&mut c).unwrap(), b"abc");
        relay.cut(Cut::Silent);
        let err = echo_once(&mut c).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "silence, not an end: {err}"
        );
        relay.restore();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = [0u8; 3];
        assert!(
            matches!(c.read(&mut rest), Ok(0) | Err(_)),
            "the stalled connection ends when the link is back"
        );
    }
}
