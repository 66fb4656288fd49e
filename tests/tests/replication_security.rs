//! The target's defences against its peers, with real `rilld serve` processes on loopback.
//!
//! - A source whose certificate the target has not pinned is refused at the TLS handshake:
//!   a counted failed login, event 169 naming its fingerprint, nothing in the target path,
//!   and the source's job not Active. Once the target trusts it (`TrustAdd` through the
//!   API, no restart) the job converges.
//! - A peer the target trusts but which speaks the wire protocol by hand (a rogue, or a
//!   buggy source) cannot get anything applied outside the target path: not by `..`, an
//!   absolute name, a rename or a hard link that escapes, nor through symlinks in the
//!   replica (planted there, or made by its own ops). Its malformed frames (oversized,
//!   bad magic, bad checksum, out of order, garbage) are refused with a `Refused` frame and
//!   event 4071. All the while a legitimate job keeps replicating to the same target.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_abi::{Record, RecordHeader, SECTION_COUNT};
use rill_driver_linux::{Event, FileTimes, Op};
use rill_engine::codec;
use rill_engine::mgmt::{ConState, Request, Response, TargetStatus};
use rill_engine::proto::{
    read_frame, refuse, Frame, Header, Kind, Policy, Stream, HEADER_LEN, MAX_FRAME, VERSION,
};
use rill_engine::tls::{client_config, Identity, TrustStore};
use rill_tests::tree::{assert_equal_trees, equal_trees, snapshot, Node};
use rill_tests::{data_pattern, require_kernel_support, rilld_bin, TestDir};
use rill_tools::pair::{in_sync, pair, start_job, wait_until, Host, Role};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Both hosts: extended attributes replicated (so xattr ops are really applied), short
/// network timers so a refused or dropped connection is retried quickly.
const EXTRA: &str = "ExtendedAttributes = 1\nNetworkTimeout = 6\nNetworkRetry = 1\n";

/// The daemons' event logs and standard error, for failure messages.
fn logs(source: &Host, target: &Host) -> String {
    let out = |h: &Host| std::fs::read_to_string(h.dir.join("rilld.out")).unwrap_or_default();
    format!(
        "--- source events\n{}\n--- source stderr\n{}\n--- target events\n{}\n--- target stderr\n{}",
        source.event_log(),
        out(source),
        target.event_log(),
        out(target)
    )
}

fn target_status(target: &Host) -> TargetStatus {
    match target.call(Request::Status { name: None }) {
        Ok(Response::Status(r)) => r.target.expect("the target role is running"),
        other => panic!("status of the target: {other:?}"),
    }
}

/// The lines of an event log with event `id` that contain `needle` (a line is
/// `date time pid tid sequence type id text`).
fn events_with(log: &str, id: u32, needle: &str) -> Vec<String> {
    let id = id.to_string();
    log.lines()
        .filter(|l| l.split(' ').nth(6) == Some(id.as_str()) && l.contains(needle))
        .map(str::to_string)
        .collect()
}

fn write_files(dir: &Path, prefix: &str, n: usize) {
    for i in 0..n {
        std::fs::write(
            dir.join(format!("{prefix}-{i}.txt")),
            data_pattern(100 + i * 37, i as u8),
        )
        .unwrap();
    }
}

/// Waits until the job is in sync and the trees are equal, then checks them in full.
fn converge(source: &Host, target: &Host, job: &str, src: &Path, dst: &Path, within: Duration) {
    let ok = wait_until(within, || {
        Ok(in_sync(source, job).unwrap_or(false) && dst.is_dir() && equal_trees(src, dst))
    })
    .unwrap_or(false);
    if !ok {
        let status = source.job_status(job).map(|s| format!("{s:?}"));
        panic!(
            "job {job} did not converge within {within:?}: {}\nstatus {status:?}\n{}",
            differences(src, dst),
            logs(source, target)
        );
    }
    assert_equal_trees(src, dst);
}

/// The regular files whose content differs between source and replica, with both sizes
/// and the first differing byte, for failure messages.
fn differences(src: &Path, dst: &Path) -> String {
    if !dst.is_dir() {
        return format!("the replica {} does not exist", dst.display());
    }
    let (a, b) = (snapshot(src), snapshot(dst));
    let mut out = Vec::new();
    for (path, node) in &a {
        match b.get(path) {
            None => out.push(format!("{}: missing on the replica", path.display())),
            Some(n) if n == node => {}
            Some(_) => {
                let (x, y) = (
                    std::fs::read(src.join(path)).unwrap_or_default(),
                    std::fs::read(dst.join(path)).unwrap_or_default(),
                );
                let at = x.iter().zip(&y).position(|(p, q)| p != q);
                out.push(format!(
                    "{}: {} bytes on the source, {} on the replica, first different byte at \
                     {at:?} (or attributes differ)",
                    path.display(),
                    x.len(),
                    y.len()
                ));
            }
        }
    }
    out.extend(
        b.keys()
            .filter(|p| !a.contains_key(*p))
            .map(|p| format!("{}: only on the replica", p.display())),
    );
    format!("{} paths differ:\n{}", out.len(), out.join("\n"))
}

#[test]
fn an_untrusted_source_is_refused_until_the_target_trusts_it() {
    require_kernel_support();
    let (s, t, data) = (
        TestDir::new("sec-untrusted-shost"),
        TestDir::new("sec-untrusted-thost"),
        TestDir::new("sec-untrusted-data"),
    );
    let source = Host::start(rilld_bin(), s.path(), Role::Source, EXTRA).expect("source");
    let target = Host::start(rilld_bin(), t.path(), Role::Target, EXTRA).expect("target");
    let (sf, tf) = (source.fingerprint().unwrap(), target.fingerprint().unwrap());
    // Only the source trusts the target: the target does not know the source.
    source
        .call(Request::TrustAdd {
            name: "target".into(),
            peer: tf,
        })
        .unwrap();
    let (src, dst) = (data.subdir("src"), data.join("replica"));
    write_files(&src, "before", 20);
    start_job(&source, &target, "untrusted", &src, &dst, &[]).unwrap();
    write_files(&src, "during", 20);

    // Every attempt is a failed login; two means the source also retried and was
    // refused again.
    let refused = wait_until(Duration::from_secs(60), || {
        Ok(target_status(&target).failed_logins >= 2)
    })
    .unwrap();
    if !refused {
        panic!(
            "the target counted {} failed logins within 60 s, expected at least 2\n{}",
            target_status(&target).failed_logins,
            logs(&source, &target)
        );
    }
    let status = target_status(&target);
    assert_eq!(
        (status.logins, status.sessions.len()),
        (0, 0),
        "an untrusted source must neither log in nor get a session: {status:?}"
    );
    let failed = events_with(&target.event_log(), 169, &sf);
    assert!(
        !failed.is_empty(),
        "no event 169 naming the refused fingerprint {sf}\n{}",
        logs(&source, &target)
    );
    let received: Vec<_> = std::fs::read_dir(&dst)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(
        received.is_empty(),
        "the target path received {received:?} from an untrusted source"
    );
    let job = source.job_status("untrusted").unwrap();
    assert_ne!(
        job.con_state,
        ConState::Active,
        "the refused job's connection is not Active: {job:?}"
    );
    assert_eq!(job.con_rpt, None, "nothing was acknowledged: {job:?}");

    // Trust takes effect at the next attempt, without restarting either daemon.
    let pids = (source.pid(), target.pid());
    target
        .call(Request::TrustAdd {
            name: "source".into(),
            peer: sf.clone(),
        })
        .unwrap();
    write_files(&src, "after", 20);
    converge(
        &source,
        &target,
        "untrusted",
        &src,
        &dst,
        Duration::from_secs(60),
    );
    assert_eq!(pids, (source.pid(), target.pid()), "no restart");
    let status = target_status(&target);
    assert!(status.logins >= 1, "{status:?}");
    assert!(
        !events_with(&target.event_log(), 170, "Source source ").is_empty(),
        "no event 170 for the now trusted source\n{}",
        logs(&source, &target)
    );
}

// ---------------------------------------------------------------------------------------
// A rogue but trusted peer.

type Conn = tokio_rustls::client::TlsStream<TcpStream>;

/// How long one step of the rogue's conversation (connect, handshake, an answer) may take.
const STEP: Duration = Duration::from_secs(15);
/// The rogue's job on the target, and the name the target trusts it under.
const ROGUE_JOB: &str = "rogue";

/// What the target said on one connection.
#[derive(Debug, Default)]
struct Heard {
    /// Highest cumulative Ack.
    acked: u64,
    naks: Vec<(u64, String)>,
    refused: Option<(u32, String)>,
    /// How the connection ended, if it did.
    closed: Option<String>,
}

/// A client of the target that speaks the wire protocol frame by frame, authenticated with
/// an identity the target trusts.
struct Rogue {
    rt: tokio::runtime::Runtime,
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    target_path: PathBuf,
}

impl Rogue {
    /// A TLS connection to the target, before any frame.
    fn connect(&self) -> Conn {
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
        })
    }

    /// A session: hello sent, welcome read. Returns the connection and the first sequence
    /// number the target will apply (it skips everything up to its last applied).
    fn session(&self) -> (Conn, u64) {
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

    fn send(&self, conn: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
        self.rt.block_on(async {
            conn.write_all(bytes).await?;
            conn.flush().await
        })
    }

    /// Reads what the target says until `done` holds, it refuses, the connection ends, or
    /// `STEP` passes.
    fn listen(&self, conn: &mut Conn, heard: &mut Heard, done: impl Fn(&Heard) -> bool) {
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
    fn close(&self, mut conn: Conn) {
        self.rt.block_on(async {
            let _ = tokio::time::timeout(STEP, conn.shutdown()).await;
        })
    }
}

fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(Policy::PLAIN, &mut out).unwrap();
    out
}

/// One operation as a peer sends it: a codec body, and what it is for messages.
#[derive(Debug)]
struct Wire {
    what: String,
    body: Vec<u8>,
}

/// `op` on `path`, encoded by `codec::encode` (which writes the path bytes as they are: a
/// relative path stays relative, `..` stays `..`).
fn event(path: impl Into<PathBuf>, op: Op) -> Wire {
    let ev = Event {
        seq: 0,
        ktime_ns: 1,
        pid: 1,
        tid: 1,
        path: path.into(),
        object: None,
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
fn create(path: impl Into<PathBuf>) -> Wire {
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

fn op_frame(seq: u64, op: &Wire) -> Vec<u8> {
    op_frame_raw(seq, &op.body)
}

fn op_frame_raw(seq: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Frame::encode_op(seq, Stream::Replication, body, Policy::PLAIN, &mut out).unwrap();
    out
}

fn write(data: &[u8]) -> Op {
    Op::Write {
        offset: 0,
        len: data.len() as u64,
        data: Some(data.to_vec().into()),
    }
}

/// xorshift64*: reproducible garbage.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
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

/// The state of everything around the rogue's target path (its sentinel directory with a
/// file, a subdirectory and an extended attribute): must never change.
fn outside(area: &Path) -> BTreeMap<PathBuf, Node> {
    snapshot(area)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("replica"))
        .collect()
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One malformed or hostile input, sent on a fresh connection.
struct Attack {
    name: &'static str,
    /// Sent in place of the hello (the connection has no session yet).
    before_hello: bool,
    /// The bytes, given the first sequence number the target will apply.
    bytes: Box<dyn Fn(u64) -> Vec<u8>>,
    /// Text the refusal and the 4071 event must contain.
    needle: String,
    /// The `Refused` code `proto::refuse` defines for it.
    code: u32,
    /// Names the attack must not have created in the rogue's replica either.
    absent: Vec<&'static str>,
}

#[test]
fn a_trusted_rogue_peer_cannot_escape_the_target_path_or_disturb_other_jobs() {
    require_kernel_support();
    let (s, t, data, rogue_home, area) = (
        TestDir::new("sec-rogue-shost"),
        TestDir::new("sec-rogue-thost"),
        TestDir::new("sec-rogue-data"),
        TestDir::new("sec-rogue-home"),
        TestDir::new("sec-rogue-area"),
    );
    let source = Host::start(rilld_bin(), s.path(), Role::Source, EXTRA).expect("source");
    let target = Host::start(rilld_bin(), t.path(), Role::Target, EXTRA).expect("target");
    pair(&source, &target).unwrap();

    // The legitimate job, replicating all through the attacks.
    let (src, dst) = (data.subdir("src"), data.join("replica"));
    std::fs::create_dir(src.join("bg")).unwrap();
    write_files(&src, "before", 20);
    start_job(&source, &target, "legit", &src, &dst, &[]).unwrap();
    converge(
        &source,
        &target,
        "legit",
        &src,
        &dst,
        Duration::from_secs(60),
    );
    let stop = Arc::new(AtomicBool::new(false));
    // Stops the writer also when the test fails before the end.
    let _stop_writer = StopOnDrop(Arc::clone(&stop));
    let writer = {
        let (stop, bg) = (Arc::clone(&stop), src.join("bg"));
        std::thread::spawn(move || {
            for i in 0..20_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::fs::write(
                    bg.join(format!("f{}.txt", i % 40)),
                    // Growing: rewriting shorter is a bug of its own (see below).
                    data_pattern(200 + i, i as u8),
                )
                .unwrap();
                // Pacing: a steady stream, not a flood.
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    let mut checkpoints = 0;
    let mut checkpoint = |what: &str| {
        checkpoints += 1;
        let (name, text) = (
            format!("checkpoint-{checkpoints}.txt"),
            format!("checkpoint {checkpoints} after {what}"),
        );
        std::fs::write(src.join(&name), &text).unwrap();
        let arrived = wait_until(Duration::from_secs(30), || {
            Ok(std::fs::read_to_string(dst.join(&name)).is_ok_and(|t| t == text))
        })
        .unwrap();
        if !arrived {
            panic!(
                "the legitimate job stopped replicating after {what}: the replica's \
                 {name} is {:?}, expected {text:?}; status {:?}\n{}",
                std::fs::read_to_string(dst.join(&name)),
                source.job_status("legit"),
                logs(&source, &target)
            );
        }
    };

    // The rogue: its own identity, trusted by the target; it trusts the target back.
    let id = Identity::load_or_create(&rogue_home.join("identity"), "rogue").unwrap();
    let trust = TrustStore::open(&rogue_home.join("trust")).unwrap();
    trust.add("target", &target.fingerprint().unwrap()).unwrap();
    target
        .call(Request::TrustAdd {
            name: "rogue".into(),
            peer: id.fingerprint.clone(),
        })
        .unwrap();
    let rogue = Rogue {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        tls: client_config(&id, Arc::new(trust)).unwrap(),
        addr: SocketAddr::from(([127, 0, 0, 1], target.net_port)),
        target_path: area.join("replica"),
    };

    // Around the rogue's target path: a sentinel directory that nothing may touch.
    let (replica, sentinel) = (area.join("replica"), area.join("sentinel"));
    std::fs::create_dir_all(sentinel.join("sub")).unwrap();
    std::fs::write(sentinel.join("secret.txt"), "the sentinel's secret\n").unwrap();
    std::fs::write(sentinel.join("sub/inner.txt"), "inner\n").unwrap();
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let (secret, keep) = (c(&sentinel.join("secret.txt")), c(Path::new("user.keep")));
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let r = unsafe { libc::setxattr(secret.as_ptr(), keep.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
    assert_eq!(
        r,
        0,
        "setxattr on the sentinel: {}",
        std::io::Error::last_os_error()
    );
    let untouched = outside(area.path());
    let check_outside = |after: &str| {
        let now = outside(area.path());
        if now != untouched {
            let changed: Vec<_> = now
                .keys()
                .chain(untouched.keys())
                .filter(|k| now.get(*k) != untouched.get(*k))
                .collect();
            panic!(
                "SECURITY: {after} changed what is outside the target path: {changed:?}\n\
                 before {untouched:#?}\nafter {now:#?}\n{}",
                logs(&source, &target)
            );
        }
    };

    // 1. A legitimate session of the rogue works: its refusals below are for what it sent.
    let (mut conn, first) = rogue.session();
    let frames = [
        op_frame(first, &create("victim.txt")),
        op_frame(first + 1, &event("victim.txt", write(b"victim\n"))),
    ]
    .concat();
    rogue.send(&mut conn, &frames).unwrap();
    let mut heard = Heard::default();
    rogue.listen(&mut conn, &mut heard, |h| h.acked > first);
    assert!(
        heard.acked > first && heard.refused.is_none() && heard.naks.is_empty(),
        "the rogue's legitimate ops: {heard:?}\n{}",
        logs(&source, &target)
    );
    assert_eq!(
        std::fs::read(replica.join("victim.txt")).unwrap(),
        b"victim\n"
    );
    rogue.close(conn);

    // 2. Symlinks in the replica pointing outside: planted by someone on the target, and
    // made by the rogue's own op. Ops through them are well-formed, so they are not
    // refused, but must never reach outside. Through a symlinked directory every op must
    // fail (Nak); on a symlink as the last component the op may act on the link itself.
    std::os::unix::fs::symlink(&sentinel, replica.join("escape-dir")).unwrap();
    std::os::unix::fs::symlink(sentinel.join("secret.txt"), replica.join("escape-file")).unwrap();
    let times = FileTimes {
        atime: (1_000_000_000, 0),
        mtime: (1_000_000_000, 0),
    };
    let xattr = |name: &str| Op::SetXattr {
        name: name.into(),
        value: Some(b"pwned".to_vec()),
    };
    let through: Vec<(Wire, bool)> = vec![
        (
            event(
                "op-link",
                Op::Symlink {
                    target: sentinel.clone().into_os_string(),
                },
            ),
            false,
        ),
        (create("escape-dir/new.txt"), true),
        (event("escape-dir/secret.txt", write(b"PWNED")), true),
        (
            event("escape-dir/secret.txt", Op::Truncate { size: 0 }),
            true,
        ),
        (
            event(
                "escape-dir/secret.txt",
                Op::Fallocate {
                    mode: 0,
                    offset: 0,
                    len: 1 << 20,
                },
            ),
            true,
        ),
        (event("escape-dir/newdir", Op::Mkdir { mode: 0o777 }), true),
        (
            event(
                "escape-dir/fifo",
                Op::Mknod {
                    mode: libc::S_IFIFO | 0o666,
                    rdev: 0,
                },
            ),
            true,
        ),
        (
            event("escape-dir/secret.txt", Op::Chmod { mode: 0o777 }),
            true,
        ),
        (
            event(
                "escape-dir/secret.txt",
                Op::Chown {
                    uid: Some(4242),
                    gid: Some(4242),
                },
            ),
            true,
        ),
        (
            event("escape-dir/secret.txt", Op::Utimes { times: Some(times) }),
            true,
        ),
        (event("escape-dir/secret.txt", xattr("user.pwned")), true),
        (
            event(
                "escape-dir/secret.txt",
                Op::RemoveXattr {
                    name: "user.keep".into(),
                },
            ),
            true,
        ),
        (
            event(
                "escape-dir/secret.txt",
                Op::Rename {
                    new_path: "stolen.txt".into(),
                    flags: 0,
                },
            ),
            true,
        ),
        (
            event(
                "victim.txt",
                Op::Rename {
                    new_path: "escape-dir/victim.txt".into(),
                    flags: 0,
                },
            ),
            true,
        ),
        (
            event(
                "hardlink.txt",
                Op::Link {
                    target: "escape-dir/secret.txt".into(),
                },
            ),
            true,
        ),
        (
            event(
                "escape-dir/link.txt",
                Op::Link {
                    target: "victim.txt".into(),
                },
            ),
            true,
        ),
        (
            event(
                "escape-dir/sym",
                Op::Symlink {
                    target: OsString::from("x"),
                },
            ),
            true,
        ),
        (event("escape-dir/sub/inner.txt", Op::Unlink), true),
        (event("escape-dir/sub", Op::Rmdir), true),
        (create("op-link/new.txt"), true),
        (event("op-link/secret.txt", write(b"PWNED")), true),
        // Relative, escaping by `..` from inside the replica.
        (event("d", Op::Mkdir { mode: 0o755 }), false),
        (
            event(
                "d/up",
                Op::Symlink {
                    target: OsString::from("../../sentinel"),
                },
            ),
            false,
        ),
        (event("d/up/secret.txt", write(b"PWNED")), true),
        (event("d/up/secret.txt", Op::Chmod { mode: 0o777 }), true),
        (create("d/up/new.txt"), true),
        (
            event(
                "d/up-file",
                Op::Symlink {
                    target: OsString::from("../../sentinel/secret.txt"),
                },
            ),
            false,
        ),
        (event("d/up-file", Op::Truncate { size: 0 }), false),
        (event("d/up-file", write(b"PWNED")), false),
        (event("d/up-file", Op::Chmod { mode: 0o777 }), false),
        (event("d/up-file", xattr("user.pwned")), false),
        (event("escape-file", write(b"PWNED")), false),
        (event("escape-file", Op::Truncate { size: 0 }), false),
        (event("escape-file", Op::Chmod { mode: 0o777 }), false),
        (
            event(
                "escape-file",
                Op::Chown {
                    uid: Some(4242),
                    gid: Some(4242),
                },
            ),
            false,
        ),
        (
            event("escape-file", Op::Utimes { times: Some(times) }),
            false,
        ),
        (event("escape-file", xattr("user.pwned")), false),
    ];
    let (mut conn, first) = rogue.session();
    let frames: Vec<u8> = through
        .iter()
        .enumerate()
        .flat_map(|(i, (ev, _))| op_frame(first + i as u64, ev))
        .collect();
    rogue.send(&mut conn, &frames).unwrap();
    let last = first + through.len() as u64 - 1;
    let mut heard = Heard::default();
    rogue.listen(&mut conn, &mut heard, |h| h.acked >= last);
    check_outside("ops through symlinks in the replica");
    assert!(
        heard.acked >= last && heard.refused.is_none(),
        "the target did not process the well-formed ops through symlinks: {heard:?}\n{}",
        logs(&source, &target)
    );
    let not_naked: Vec<_> = through
        .iter()
        .enumerate()
        .filter(|(i, (_, nak))| *nak && !heard.naks.iter().any(|(s, _)| *s == first + *i as u64))
        .map(|(_, (ev, _))| &ev.what)
        .collect();
    assert!(
        not_naked.is_empty(),
        "ops through a symlinked directory were reported applied (no Nak): {not_naked:#?}\n\
         naks: {:#?}",
        heard.naks
    );
    rogue.close(conn);
    checkpoint("ops through symlinks");

    // 3. Escapes and malformed input, each on its own connection.
    let s = sentinel.display().to_string();
    let a = area.path().display().to_string();
    let ops = |evs: Vec<Wire>| -> Box<dyn Fn(u64) -> Vec<u8>> {
        Box::new(move |seq| {
            evs.iter()
                .enumerate()
                .flat_map(|(i, ev)| op_frame(seq + i as u64, ev))
                .collect()
        })
    };
    let escape = |name: &'static str, ev: Wire, needle: &str| Attack {
        name,
        before_hello: false,
        bytes: ops(vec![ev]),
        needle: needle.to_string(),
        code: refuse::TARGET_PATH,
        absent: vec![],
    };
    let protocol = |name: &'static str, bytes: Box<dyn Fn(u64) -> Vec<u8>>, needle: &str| Attack {
        name,
        before_hello: false,
        bytes,
        needle: needle.to_string(),
        code: refuse::PROTOCOL,
        absent: vec![],
    };
    let valid_then = |name: &'static str, f: fn(&mut Vec<u8>)| -> Box<dyn Fn(u64) -> Vec<u8>> {
        Box::new(move |seq| {
            let mut b = op_frame(seq, &create(name));
            f(&mut b);
            b
        })
    };
    let mut attacks = vec![
        escape("create ../outside", create("../outside"), "../outside"),
        escape(
            "write a/../../x",
            event("a/../../x", write(b"PWNED")),
            "a/../../x",
        ),
        escape(
            "write ../sentinel/secret.txt",
            event("../sentinel/secret.txt", write(b"PWNED")),
            "../sentinel/secret.txt",
        ),
        escape(
            "create an absolute name",
            create(format!("{s}/abs-escape")),
            "abs-escape",
        ),
        escape(
            "truncate an absolute name",
            event(format!("{s}/secret.txt"), Op::Truncate { size: 0 }),
            &format!("{s}/secret.txt"),
        ),
        escape(
            "rename to ../escaped",
            event(
                "victim.txt",
                Op::Rename {
                    new_path: "../escaped".into(),
                    flags: 0,
                },
            ),
            "../escaped",
        ),
        escape(
            "rename to an absolute name",
            event(
                "victim.txt",
                Op::Rename {
                    new_path: format!("{a}/escaped-abs").into(),
                    flags: 0,
                },
            ),
            "escaped-abs",
        ),
        escape(
            "rename from ../sentinel",
            event(
                "../sentinel/secret.txt",
                Op::Rename {
                    new_path: "stolen.txt".into(),
                    flags: 0,
                },
            ),
            "../sentinel/secret.txt",
        ),
        escape(
            "hard link to ../sentinel/secret.txt",
            event(
                "hardlink.txt",
                Op::Link {
                    target: "../sentinel/secret.txt".into(),
                },
            ),
            "../sentinel/secret.txt",
        ),
        escape(
            "hard link to an absolute name",
            event(
                "hardlink.txt",
                Op::Link {
                    target: format!("{s}/secret.txt").into(),
                },
            ),
            &format!("{s}/secret.txt"),
        ),
        escape(
            "hard link named ../",
            event(
                "../sentinel/link.txt",
                Op::Link {
                    target: "victim.txt".into(),
                },
            ),
            "../sentinel/link.txt",
        ),
        escape(
            "symlink named ../",
            event(
                "../evil-symlink",
                Op::Symlink {
                    target: OsString::from("x"),
                },
            ),
            "../evil-symlink",
        ),
        escape(
            "mkdir ./..",
            event("./..", Op::Mkdir { mode: 0o777 }),
            "./..",
        ),
        protocol(
            "a record with a base path section",
            Box::new(|seq| {
                // Raw record bytes: a peer's record carries names only, never a base.
                let sections: [&[u8]; SECTION_COUNT] = [b"etc", b"passwd", b"", b"", b"", b""];
                let header = RecordHeader {
                    kind: rill_abi::Kind::Create as u8,
                    args: [0o644, 0, 0, 0],
                    ..Default::default()
                };
                let mut body = vec![0u8; rill_abi::HEADER_SIZE + 9];
                Record::encode(&header, sections, &mut body).unwrap();
                op_frame_raw(seq, &body)
            }),
            "PathBase",
        ),
        protocol(
            "a frame longer than MAX_FRAME",
            Box::new(|_| {
                let header = Header {
                    version: VERSION,
                    kind: Kind::Op,
                    flags: 0,
                    len: MAX_FRAME + 1,
                    crc: 0,
                };
                header.to_bytes().to_vec()
            }),
            "exceeds the maximum",
        ),
        protocol(
            "bad magic",
            valid_then("magic.txt", |b| b[..4].copy_from_slice(b"RILX")),
            "bad frame magic",
        ),
        protocol(
            "crc mismatch",
            valid_then("crc.txt", |b| b[12] ^= 0x5a),
            "crc32c mismatch",
        ),
        protocol("garbage", Box::new(|_| garbage(200, 7)), "bad frame magic"),
        protocol(
            "a frame of garbage after a valid header",
            Box::new(|seq| {
                let mut b = op_frame(seq, &create("garbage.txt"));
                let mut payload = garbage(b.len() - HEADER_LEN, 11);
                // The stream byte (after the u64 sequence): neither 0 nor 1.
                payload[8] = 0xee;
                b[HEADER_LEN..].copy_from_slice(&payload);
                let crc = crc32c(&payload);
                b[12..16].copy_from_slice(&crc.to_le_bytes());
                b
            }),
            "`stream`",
        ),
        protocol(
            "a valid frame whose op body is garbage",
            Box::new(|seq| op_frame_raw(seq, &garbage(300, 13))),
            "corrupt operation record",
        ),
        Attack {
            name: "sequence number lower than the previous one",
            before_hello: false,
            bytes: Box::new(|seq| {
                [
                    op_frame(seq + 1, &create("ooo-later.txt")),
                    op_frame(seq, &create("ooo-earlier.txt")),
                ]
                .concat()
            }),
            needle: "out of order".into(),
            code: refuse::OUT_OF_ORDER,
            absent: vec!["ooo-earlier.txt"],
        },
        Attack {
            name: "garbage instead of a hello",
            before_hello: true,
            bytes: Box::new(|_| b"GET / HTTP/1.1\r\nHost: rill\r\n\r\n".to_vec()),
            needle: "bad frame magic".into(),
            code: refuse::PROTOCOL,
            absent: vec![],
        },
        Attack {
            name: "hello with a relative target path",
            before_hello: true,
            bytes: Box::new(|_| {
                encode(&Frame::Hello {
                    version: VERSION,
                    host: "rogue".into(),
                    job: ROGUE_JOB.into(),
                    target_path: "relative/replica".into(),
                    mirror: false,
                })
            }),
            needle: "relative/replica".into(),
            code: refuse::TARGET_PATH,
            absent: vec![],
        },
        Attack {
            name: "hello with `..` in the target path",
            before_hello: true,
            bytes: Box::new(move |_| {
                encode(&Frame::Hello {
                    version: VERSION,
                    host: "rogue".into(),
                    job: ROGUE_JOB.into(),
                    target_path: format!("{a}/replica/../sentinel"),
                    mirror: false,
                })
            }),
            needle: "replica/../sentinel".into(),
            code: refuse::TARGET_PATH,
            absent: vec![],
        },
    ];
    for attack in &mut attacks {
        attack
            .absent
            .extend(["magic.txt", "crc.txt", "garbage.txt"]);
    }

    let mut wrong_codes = Vec::new();
    for attack in &attacks {
        let refusals = |log: &str| events_with(log, 4071, "Refusing rogue ");
        let before = refusals(&target.event_log()).len();
        let (mut conn, first) = if attack.before_hello {
            (rogue.connect(), 1)
        } else {
            rogue.session()
        };
        let sent = rogue.send(&mut conn, &(attack.bytes)(first));
        let mut heard = Heard::default();
        rogue.listen(&mut conn, &mut heard, |_| false);
        let Some((code, message)) = heard.refused.clone() else {
            panic!(
                "{}: the target did not answer Refused (sending: {sent:?}): {heard:?}\n{}",
                attack.name,
                logs(&source, &target)
            );
        };
        assert!(
            message.contains(&attack.needle),
            "{}: the refusal {message:?} does not name {:?}",
            attack.name,
            attack.needle
        );
        if code != attack.code {
            wrong_codes.push(format!(
                "{}: Refused code {code}, proto::refuse says {} ({message})",
                attack.name, attack.code
            ));
        }
        let logged = wait_until(Duration::from_secs(10), || {
            Ok(refusals(&target.event_log())
                .iter()
                .skip(before)
                .any(|l| l.contains(&attack.needle)))
        })
        .unwrap();
        if !logged {
            panic!(
                "{}: no new event 4071 naming {:?}\n{}",
                attack.name,
                attack.needle,
                logs(&source, &target)
            );
        }
        check_outside(attack.name);
        for name in &attack.absent {
            assert!(
                !replica.join(name).exists(),
                "{}: {name} was applied from a refused frame",
                attack.name
            );
        }
        checkpoint(attack.name);
    }
    // What the refused out-of-order pair did apply: the op before the bad one.
    assert!(replica.join("ooo-later.txt").exists());

    // 4. The legitimate job is whole, the rogue's refusals were not failed logins.
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    converge(
        &source,
        &target,
        "legit",
        &src,
        &dst,
        Duration::from_secs(90),
    );
    check_outside("the whole run");
    let status = target_status(&target);
    assert_eq!(status.failed_logins, 0, "{status:?}");
    let legit = source.job_status("legit").unwrap();
    assert!(
        status
            .sessions
            .iter()
            .any(|s| s.job == "legit" && s.last_applied > 0 && s.peer_name == "source"),
        "the target's session of the legitimate job: {status:?}"
    );
    assert_eq!(
        legit.con_resent_op_count, 0,
        "the legitimate link never dropped: {legit:?}"
    );
    assert!(
        wrong_codes.is_empty(),
        "the target refused with codes other than proto::refuse defines:\n{}",
        wrong_codes.join("\n")
    );
}

/// Found while writing the tests above: a file rewritten shorter through
/// `open(O_CREAT | O_TRUNC)` (what `>` in a shell, `fopen("w")` and `std::fs::write` do)
/// keeps its old tail on the replica, so data the source removed stays readable on the
/// target. A truncating open without `O_CREAT` is the control.
#[test]
fn a_file_rewritten_shorter_leaves_no_stale_tail_on_the_replica() {
    require_kernel_support();
    let (s, t, data) = (
        TestDir::new("sec-trunc-shost"),
        TestDir::new("sec-trunc-thost"),
        TestDir::new("sec-trunc-data"),
    );
    let source = Host::start(rilld_bin(), s.path(), Role::Source, EXTRA).expect("source");
    let target = Host::start(rilld_bin(), t.path(), Role::Target, EXTRA).expect("target");
    pair(&source, &target).unwrap();
    let (src, dst) = (data.subdir("src"), data.join("replica"));
    start_job(&source, &target, "trunc", &src, &dst, &[]).unwrap();
    let secret = b"password=hunter2 and other things to be removed later\n";
    for name in ["o_trunc.txt", "o_creat_o_trunc.txt"] {
        std::fs::write(src.join(name), secret).unwrap();
    }
    converge(
        &source,
        &target,
        "trunc",
        &src,
        &dst,
        Duration::from_secs(60),
    );
    // open(O_WRONLY | O_TRUNC), then a short write.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(src.join("o_trunc.txt"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"short\n").unwrap();
    drop(f);
    // open(O_WRONLY | O_CREAT | O_TRUNC) of the existing file, then a short write.
    std::fs::write(src.join("o_creat_o_trunc.txt"), b"short\n").unwrap();
    converge(
        &source,
        &target,
        "trunc",
        &src,
        &dst,
        Duration::from_secs(30),
    );
}

/// CRC-32C (Castagnoli), for a frame whose payload the test makes up itself.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
