//! A counting TCP relay on loopback: the bytes each tool puts on the wire in scenario (c).
//!
//! Every tool's connection to its receiver (rill's source to the target's NetPort, the
//! rsync client or lsyncd's rsync to the rsync daemon) goes through the relay, which copies
//! both directions and counts the TCP payload bytes: everything the tools' sockets send,
//! including rill's TLS records and rsync's protocol, excluding TCP/IP headers. The same
//! meter for all three, independent of what each tool says about itself.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

#[derive(Default)]
struct Shared {
    up: AtomicU64,
    down: AtomicU64,
    stop: AtomicBool,
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

    pub fn bytes(&self) -> Bytes {
        Bytes {
            up: self.shared.up.load(Ordering::Relaxed),
            down: self.shared.down.load(Ordering::Relaxed),
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
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
        if let Ok(streams) = self.shared.streams.lock() {
            for s in streams.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
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
}
