//! A peer the target trusts that speaks the wire protocol frame by frame: a rogue, or a
//! buggy source. It builds its frames from the engine's own encoders where the frame is
//! well-formed and from raw record bytes where the point is that it is not, so each test
//! states exactly which bytes the target receives.

use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_abi::{Record, RecordHeader, SECTION_COUNT};
use rill_engine::mgmt::Request;
use rill_engine::net::proto::{read_frame, Frame, Policy, Stream, MAX_FRAME, VERSION};
use rill_engine::net::tls::{client_config, Identity, TrustStore};
use rill_ops::{codec, Event, Op};
use rill_tools::pair::Host;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub type Conn = tokio_rustls::client::TlsStream<TcpStream>;

/// How long one step of the rogue's conversation (connect, handshake, an answer) may take.
pub const STEP: Duration = Duration::from_secs(15);
/// The rogue's job on the target, and the name the target trusts it under.
pub const ROGUE_JOB: &str = "rogue";

/// What the target said on one connection.
#[derive(Debug, Default)]
pub struct Heard {
    /// Highest cumulative Ack.
    pub acked: u64,
    pub naks: Vec<(u64, String)>,
    pub refused: Option<(u32, String)>,
    /// How the connection ended, if it did.
    pub closed: Option<String>,
}

/// A client of the target that speaks the wire protocol frame by frame, authenticated with
/// an identity the target trusts.
pub struct Rogue {
    rt: tokio::runtime::Runtime,
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    target_path: PathBuf,
}

impl Rogue {
    /// A rogue with its own identity (created under `home`), which `target` trusts (added
    /// through its API, as `rillctl trust add` does) and which trusts `target` back; its
    /// sessions ask for `target_path`.
    pub fn trusted_by(target: &Host, home: &Path, target_path: PathBuf) -> Rogue {
        let id = Identity::load_or_create(&home.join("identity"), "rogue").unwrap();
        let trust = TrustStore::open(&home.join("trust")).unwrap();
        trust.add("target", &target.fingerprint().unwrap()).unwrap();
        target
            .call(Request::TrustAdd {
                name: "rogue".into(),
                peer: id.fingerprint.clone(),
            })
            .unwrap();
        Rogue {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            tls: client_config(&id, Arc::new(trust)).unwrap(),
            addr: SocketAddr::from(([127, 0, 0, 1], target.net_port)),
            target_path,
        }
    }

    /// A TLS connection to the target, before any frame.
    pub fn connect(&self) -> Conn {
        self.rt.block_on(async {
            let tcp = tokio::time::timeout(STEP, TcpStream::connect(self.addr))
                .await
                .expect("TCP connect timed out")
                .expect("TCP connect to the target");
            let name = rustls::pki_types::ServerName::try_from("rill-target").unwrap();
            tokio::time::timeout(
                STEP,
                tokio_rustls::TlsConnector::from(Arc::clone(&self.tls)).connect(name, tcp),
            )
            .await
            .expect("TLS handshake timed out")
            .expect("TLS handshake with the target (the rogue's certificate is trusted)")
        })
    }

    fn hello(&self, target_path: &str) -> Vec<u8> {
        encode(&Frame::Hello {
            version: VERSION,
            host: "rogue".into(),
            job: ROGUE_JOB.into(),
            target_path: target_path.into(),
            mirror: false,
            acked: 0,
        })
    }

    /// A session: hello sent, welcome read. Returns the connection and the first sequence
    /// number the target will apply (it skips everything up to its last applied).
    pub fn session(&self) -> (Conn, u64) {
        let mut conn = self.connect();
        self.send(
            &mut conn,
            &self.hello(&self.target_path.display().to_string()),
        )
        .expect("sending the hello");
        let answer = self
            .rt
            .block_on(async { tokio::time::timeout(STEP, read_frame(&mut conn, MAX_FRAME)).await });
        match answer {
            Ok(Ok(Some(Frame::Welcome { last_applied, .. }))) => (conn, last_applied + 1),
            other => panic!("expected a Welcome for the rogue's hello, got {other:?}"),
        }
    }

    pub fn send(&self, conn: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
        self.rt.block_on(async {
            conn.write_all(bytes).await?;
            conn.flush().await
        })
    }

    /// Reads what the target says until `done` holds, it refuses, the connection ends, or
    /// `STEP` passes.
    pub fn listen(&self, conn: &mut Conn, heard: &mut Heard, done: impl Fn(&Heard) -> bool) {
        let deadline = Instant::now() + STEP;
        self.rt.block_on(async {
            while !done(heard) {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, read_frame(conn, MAX_FRAME)).await {
                    Err(_) => return,
                    Ok(Ok(Some(frame))) => match frame {
                        Frame::Ack { seq } => heard.acked = heard.acked.max(seq),
                        Frame::Nak { seq, message, .. } => heard.naks.push((seq, message)),
                        Frame::Refused { code, message } => {
                            heard.refused = Some((code, message));
                            return;
                        }
                        Frame::KeepAlive
                        | Frame::TargetStats { .. }
                        | Frame::Pause
                        | Frame::Resume => {}
                        other => panic!("a target does not send {other:?}"),
                    },
                    Ok(Ok(None)) => {
                        heard.closed = Some("closed between frames".into());
                        return;
                    }
                    Ok(Err(e)) => {
                        heard.closed = Some(e.to_string());
                        return;
                    }
                }
            }
        })
    }

    /// Ends a session the way a source does when it stops.
    pub fn close(&self, mut conn: Conn) {
        self.rt.block_on(async {
            let _ = tokio::time::timeout(STEP, conn.shutdown()).await;
        })
    }
}

pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(Policy::PLAIN, &mut out).unwrap();
    out
}

/// One operation as a peer sends it: a codec body, and what it is for messages.
#[derive(Debug)]
pub struct Wire {
    pub what: String,
    pub body: Vec<u8>,
}

/// `op` on `path`, encoded by `codec::encode` (which writes the path bytes as they are: a
/// relative path stays relative, `..` stays `..`).
pub fn event(path: impl Into<PathBuf>, op: Op) -> Wire {
    let ev = Event {
        seq: 0,
        ktime_ns: 1,
        pid: 1,
        tid: 1,
        path: path.into(),
        object: None,
        reached: None,
        op,
    };
    let mut body = Vec::new();
    codec::encode(&ev, &mut body).unwrap();
    Wire {
        what: format!("{:?} {}", ev.op.kind(), ev.path.display()),
        body,
    }
}

/// A create (mode 0644, `O_CREAT | O_WRONLY`) of `path`, laid out from raw record bytes as
/// `codec::encode` does: the name in the path section, no base.
pub fn create(path: impl Into<PathBuf>) -> Wire {
    let path = path.into();
    let name = path.as_os_str().as_bytes();
    let sections: [&[u8]; SECTION_COUNT] = [b"", name, b"", b"", b"", b""];
    let header = RecordHeader {
        kind: rill_abi::Kind::Create as u8,
        ktime_ns: 1,
        pid: 1,
        tid: 1,
        args: [0o644, (libc::O_CREAT | libc::O_WRONLY) as u64, 0, 0],
        ..Default::default()
    };
    let mut body = vec![0u8; rill_abi::HEADER_SIZE + name.len()];
    Record::encode(&header, sections, &mut body).unwrap();
    Wire {
        what: format!("Create {}", path.display()),
        body,
    }
}

pub fn op_frame(seq: u64, op: &Wire) -> Vec<u8> {
    op_frame_raw(seq, &op.body)
}

pub fn op_frame_raw(seq: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Frame::encode_op(seq, Stream::Replication, body, Policy::PLAIN, &mut out).unwrap();
    out
}

pub fn write(data: &[u8]) -> Op {
    Op::Write {
        offset: 0,
        len: data.len() as u64,
        data: Some(data.to_vec().into()),
    }
}

/// xorshift64*: reproducible garbage.
pub fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}
