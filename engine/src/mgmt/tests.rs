use super::server::{read_line, Line};
use super::*;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::storage::job_store::{JobRule, JobSpec, JobTarget};

const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Records every request and answers each with `Done` naming it; `Status` gets a report,
/// a `SettingsGet` of "panic" panics.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Request>>,
}

impl Control for Recorder {
    fn call(&self, req: Request) -> Response {
        if let Request::SettingsGet { name } = &req {
            if name == "panic" {
                panic!("a handler bug");
            }
        }
        self.calls.lock().unwrap().push(req.clone());
        match req {
            Request::Status { .. } => Response::Status(report()),
            Request::JobList => Response::Jobs(vec![]),
            other => Response::done(format!("{other:?}")),
        }
    }
}

/// A server on an ephemeral loopback port, on its own runtime.
struct Server {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    failures: Arc<Mutex<Vec<SocketAddr>>>,
    _rt: tokio::runtime::Runtime,
}

fn server() -> Server {
    server_with(ServeOptions::default())
}

fn server_with(options: ServeOptions) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Arc::new(Recorder::default());
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&failures);
    let control: Arc<dyn Control> = recorder.clone();
    rt.spawn(serve_with(
        listener,
        TOKEN.into(),
        control,
        move |peer| seen.lock().unwrap().push(peer),
        options,
    ));
    Server {
        addr,
        recorder,
        failures,
        _rt: rt,
    }
}

/// A raw connection, for what `Client` would never send.
struct Raw {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> serde_json::Value {
        let mut line = String::new();
        self.rd.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn login(addr: SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.send(format!("{{\"token\":\"{TOKEN}\"}}\n").as_bytes());
        assert_eq!(raw.line()["ok"], true);
        raw
    }

    fn closed(&mut self) -> bool {
        let mut rest = String::new();
        matches!(self.rd.read_line(&mut rest), Ok(0) | Err(_))
    }
}

fn error_of(v: &serde_json::Value) -> String {
    assert_eq!(v["reply"], "error", "{v}");
    v["data"]["message"].as_str().unwrap().to_string()
}

fn spec() -> JobSpec {
    JobSpec {
        name: "web".into(),
        source: "/data".into(),
        target: JobTarget::Network {
            host: "fd00::2".into(),
            port: 1500,
            path: "/replica".into(),
        },
        rules: vec![JobRule {
            pattern: "/data/*.tmp".into(),
            include: false,
        }],
    }
}

fn report() -> StatusReport {
    StatusReport {
        host: "src1".into(),
        roles: "source+target".into(),
        driver_queue_percent: 12.5,
        jobs: vec![JobStatus {
            name: "web".into(),
            source: "/data".into(),
            target: "[fd00::2]:1500".into(),
            target_path: "/replica".into(),
            state: JobState::Running,
            con_state: ConState::Active,
            transmit_mode: TransmitMode::Active,
            mirror_status: MirrorStatus::InProgress,
            replication_status: ReplicationStatus::Replicating,
            target_data_state: DataState::Mirroring,
            con_ops_in_rep_queue: 3,
            con_mirror_percent: 45.2,
            con_mirror_bytes_remaining: 120 << 20,
            con_rpt: Some(utc_time(
                std::time::UNIX_EPOCH + Duration::from_secs(86_400),
            )),
            con_rpl: 2.5,
            target_stats: Some(TargetCounters {
                ops_received: 10,
                ..TargetCounters::default()
            }),
            ..JobStatus::default()
        }],
        target: Some(TargetStatus {
            logins: 2,
            failed_logins: 1,
            sessions: vec![TargetSessionStatus {
                peer_name: "src2".into(),
                peer_fingerprint: "SHA256:ab".into(),
                job: "db".into(),
                target_path: "/replica/db".into(),
                target_data_state: DataState::Ok,
                last_applied: 77,
                counters: TargetCounters {
                    ops_remaining: 4,
                    ..TargetCounters::default()
                },
                orphan_files_removed: 3,
                ..TargetSessionStatus::default()
            }],
        }),
    }
}

fn every_request() -> Vec<Request> {
    let mut all = vec![
        Request::JobCreate(spec()),
        Request::JobList,
        Request::Status { name: None },
        Request::Status {
            name: Some("web".into()),
        },
        Request::SettingsList,
        Request::SettingsGet {
            name: "QMemoryBufferMax".into(),
        },
        Request::SettingsSet {
            name: "QMemoryBufferMax".into(),
            value: "1024".into(),
        },
        Request::Identity,
        Request::TrustAdd {
            name: "dst".into(),
            peer: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        },
        Request::TrustList,
        Request::TrustRemove { name: "dst".into() },
    ];
    all.extend(JobAction::ALL.iter().map(|&action| Request::Job {
        name: "web".into(),
        action,
    }));
    all
}

#[test]
fn every_request_round_trips_through_json() {
    for req in every_request() {
        let json = serde_json::to_string(&req).unwrap();
        assert!(!json.contains('\n'), "one line: {json}");
        let back: Request = serde_json::from_str(&json).unwrap();
        assert_eq!(back, req, "{json}");
    }
    let shapes = [
        (Request::JobList, r#"{"op":"job_list"}"#),
        (
            Request::Job {
                name: "web".into(),
                action: JobAction::Start,
            },
            r#"{"op":"job","name":"web","action":"start"}"#,
        ),
        (
            Request::Status { name: None },
            r#"{"op":"status","name":null}"#,
        ),
    ];
    for (req, json) in shapes {
        assert_eq!(serde_json::to_string(&req).unwrap(), json);
    }
    let create = serde_json::to_value(Request::JobCreate(spec())).unwrap();
    assert_eq!(create["op"], "job_create");
    assert_eq!(create["target_host"], "fd00::2");
    assert_eq!(create["rules"][0]["pattern"], "/data/*.tmp");
    // Hand-written requests may leave out what has a default.
    let status: Request = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
    assert_eq!(status, Request::Status { name: None });
}

#[test]
fn responses_round_trip_with_the_guide_names() {
    let responses = vec![
        Response::done("ok"),
        Response::error("no"),
        Response::Jobs(vec![JobInfo {
            spec: spec(),
            state: JobState::Paused,
            mirror: MirrorState::Complete,
        }]),
        Response::Status(report()),
        Response::Settings(vec![SettingRow::new(
            crate::settings::find("QMemoryBufferMax").unwrap(),
            "1024".into(),
        )]),
        Response::Identity {
            name: "src1".into(),
            fingerprint: "SHA256:ab".into(),
            certificate_pem: "pem".into(),
        },
        Response::Trust(vec![TrustedPeer {
            name: "dst".into(),
            fingerprint: "SHA256:cd".into(),
            added_unix: 5,
        }]),
    ];
    for r in responses {
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            serde_json::from_str::<Response>(&json).unwrap(),
            r,
            "{json}"
        );
    }
    let v = serde_json::to_value(Response::Status(report())).unwrap();
    assert_eq!(v["reply"], "status");
    let job = &v["data"]["jobs"][0];
    for key in [
        "name",
        "source",
        "target",
        "targetPath",
        "state",
        "conState",
        "transmitMode",
        "mirrorStatus",
        "replicationStatus",
        "targetDataState",
        "conOpsInRepQueue",
        "conBytesInRepQueue",
        "conOpsInMirQueue",
        "conBytesInMirQueue",
        "conBytesInDiskQueue",
        "conOpsTx",
        "conBytesTx",
        "conBytesCompressedTx",
        "conResentOpCount",
        "conMirrorPercent",
        "conMirrorBytesRemaining",
        "ConRPT",
        "ConRPL",
        "DriverQueuePercent",
        "targetStats",
    ] {
        assert!(job.get(key).is_some(), "{key} missing from {job}");
    }
    assert_eq!(job["mirrorStatus"], "In Progress");
    assert_eq!(job["conState"], "Active");
    assert_eq!(job["ConRPT"], "1970-01-02T00:00:00Z");
    assert_eq!(job["targetStats"]["OpsReceived"], 10);
    assert_eq!(v["data"]["DriverQueuePercent"], 12.5);
    let session = &v["data"]["target"]["sessions"][0];
    assert_eq!(session["targetDataState"], "OK");
    assert_eq!(session["OpsRemaining"], 4, "counters are flat: {session}");
    assert_eq!(session["OrphanFilesRemoved"], 3);
    for key in ["OrphanDirectoriesRemoved", "OrphanBytesRemoved"] {
        assert!(session.get(key).is_some(), "{key} missing from {session}");
    }
    assert_eq!(v["data"]["target"]["FailedLogins"], 1);
    assert_eq!(
        serde_json::to_string(&Response::done("x")).unwrap(),
        r#"{"reply":"done","data":{"message":"x"}}"#
    );
}

#[test]
fn con_state_codes_are_the_guides() {
    let codes: Vec<u8> = ConState::ALL.iter().map(|s| s.code()).collect();
    assert_eq!(codes, [0, 1, 2, 4, 8, 12]);
    assert_eq!(ConState::ScheduledError.to_string(), "Scheduled, Error");
}

#[test]
fn a_client_logs_in_and_calls_in_order() {
    let srv = server();
    let mut c = Client::connect(srv.addr, TOKEN).unwrap();
    for req in every_request() {
        let r = c.call(&req).unwrap();
        assert!(!matches!(r, Response::Error { .. }), "{req:?}: {r:?}");
    }
    assert_eq!(*srv.recorder.calls.lock().unwrap(), every_request());
    assert_eq!(
        c.call(&Request::Status { name: None }).unwrap(),
        Response::Status(report())
    );
    assert!(srv.failures.lock().unwrap().is_empty());
}

#[test]
fn a_wrong_token_is_refused_counted_and_closed() {
    let srv = server();
    let wrong = TOKEN.replace('0', "1");
    let e = Client::connect(srv.addr, &wrong).unwrap_err();
    assert!(
        matches!(&e, ClientError::Auth { message, .. } if message.contains("wrong token")),
        "{e}"
    );
    let e = Client::connect(srv.addr, "").unwrap_err();
    assert!(matches!(e, ClientError::Auth { .. }), "{e}");
    // Raw: a request in place of the token is refused and the connection closed.
    let mut raw = Raw::connect(srv.addr);
    raw.send(b"{\"op\":\"job_list\"}\n");
    let v = raw.line();
    assert!(
        v["error"].as_str().unwrap().contains("first line must be"),
        "{v}"
    );
    assert!(raw.closed());
    let failures = srv.failures.lock().unwrap().clone();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures.iter().all(|a| a.ip().is_loopback()));
    assert!(srv.recorder.calls.lock().unwrap().is_empty(), "nothing ran");
    // A connection that leaves without a word tried nothing.
    drop(TcpStream::connect(srv.addr).unwrap());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(srv.failures.lock().unwrap().len(), 3);
}

#[test]
fn a_silent_client_is_refused_after_the_auth_timeout() {
    let srv = server_with(ServeOptions {
        auth_timeout: Duration::from_millis(200),
        ..ServeOptions::default()
    });
    let mut raw = Raw::connect(srv.addr);
    let v = raw.line();
    assert!(
        v["error"].as_str().unwrap().contains("no token within"),
        "{v}"
    );
    assert!(raw.closed());
    assert_eq!(srv.failures.lock().unwrap().len(), 1);
}

#[test]
fn bad_lines_get_errors_and_the_connection_keeps_working() {
    let srv = server();
    let mut raw = Raw::login(srv.addr);
    raw.send(b"this is not json\n");
    assert!(error_of(&raw.line()).contains("malformed request"));
    raw.send(b"{\"op\":\"reboot\"}\n");
    let e = error_of(&raw.line());
    assert!(
        e.contains("unknown variant `reboot`") && e.contains("job_create"),
        "{e}"
    );
    raw.send(b"{\"op\":\"job\",\"name\":\"web\",\"action\":\"explode\"}\n");
    assert!(error_of(&raw.line()).contains("explode"));
    raw.send(b"\n");
    assert!(error_of(&raw.line()).contains("empty request line"));
    let mut huge = vec![b'x'; MAX_REQUEST_LINE + 10];
    huge.push(b'\n');
    raw.send(&huge);
    let e = error_of(&raw.line());
    assert!(
        e.contains("too long") && e.contains(&MAX_REQUEST_LINE.to_string()),
        "{e}"
    );
    raw.send(b"{\"op\":\"settings_get\",\"name\":\"panic\"}\n");
    assert!(error_of(&raw.line()).contains("internal error"));
    // Still logged in and in step.
    raw.send(b"{\"op\":\"job_list\"}\n");
    let v = raw.line();
    assert_eq!(v["reply"], "jobs", "{v}");
    assert_eq!(*srv.recorder.calls.lock().unwrap(), [Request::JobList]);
}

#[test]
fn connections_beyond_the_limit_are_turned_away() {
    let srv = server_with(ServeOptions {
        max_connections: 2,
        ..ServeOptions::default()
    });
    let _a = Raw::login(srv.addr);
    let _b = Raw::login(srv.addr);
    let mut c = Raw::connect(srv.addr);
    assert!(c.line()["error"].as_str().unwrap().contains("too many"));
    drop(_a);
    std::thread::sleep(Duration::from_millis(100));
    let mut d = Client::connect(srv.addr, TOKEN).unwrap();
    assert_eq!(d.call(&Request::JobList).unwrap(), Response::Jobs(vec![]));
}

#[test]
fn connection_refused_is_recognised() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e = Client::connect(addr, TOKEN).unwrap_err();
    assert!(e.is_refused(), "{e}");
}

#[test]
fn read_line_skips_long_lines() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let input: &[u8] = b"short\n0123456789abcdef\nok\ntail";
    // A small buffer, so that lines span several fills.
    let mut rd = tokio::io::BufReader::with_capacity(4, input);
    let lines: Vec<Line> = rt.block_on(async {
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut rd, 8).await.unwrap();
            let eof = l == Line::Eof;
            out.push(l);
            if eof {
                return out;
            }
        }
    });
    assert_eq!(
        lines,
        [
            Line::Data(b"short".to_vec()),
            Line::TooLong(16),
            Line::Data(b"ok".to_vec()),
            Line::Data(b"tail".to_vec()),
            Line::Eof,
        ]
    );
}
