use super::render::*;
use super::*;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;

use rill_mgmt::jobs::JobTarget;
use rill_mgmt::{
    ConError, ConErrorClass, ConState, DataState, JobInfo, JobState, JobStatus, MirrorState,
    MirrorStatus, ReplicationStatus, SettingRow, StatusReport, TargetCounters, TargetSessionStatus,
    TargetStatus, TransmitMode, TrustedPeer, VerifyStatus,
};

mod failover;

const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("rillctl").chain(args.iter().copied()))
}

fn parse_err(args: &[&str]) -> String {
    let e = parse(args).expect_err("should be refused");
    assert_eq!(e.exit_code(), 2, "usage errors exit 2");
    e.to_string()
}

fn job(mirror_status: MirrorStatus) -> JobStatus {
    JobStatus {
        name: "web".into(),
        source: "/data".into(),
        target: "backup:1500".into(),
        target_path: "/replica".into(),
        state: JobState::Running,
        con_state: ConState::Active,
        transmit_mode: TransmitMode::Active,
        mirror_status,
        replication_status: ReplicationStatus::Replicating,
        target_data_state: DataState::Mirroring,
        con_ops_in_rep_queue: 1234,
        con_bytes_in_rep_queue: 5 << 20,
        con_ops_tx: 1_000_000,
        con_bytes_tx: 3 << 30,
        con_mirror_percent: 45.2,
        con_mirror_bytes_remaining: 120 << 20,
        con_rpt: Some("2026-01-31T12:00:00Z".into()),
        con_rpl: 2.5,
        target_stats: Some(TargetCounters {
            ops_received: 999,
            ops_remaining: 7,
            ..TargetCounters::default()
        }),
        ..JobStatus::default()
    }
}

#[test]
fn byte_counts() {
    assert_eq!(bytes(0), "0 B");
    assert_eq!(bytes(1023), "1023 B");
    assert_eq!(bytes(1024), "1.0 KB");
    assert_eq!(bytes(1536), "1.5 KB");
    assert_eq!(bytes(120 << 20), "120 MB");
    assert_eq!(bytes((5 << 20) + (600 << 10)), "5.6 MB");
    assert_eq!(
        bytes((1 << 20) - 1),
        "1.0 MB",
        "rounding carries to the next unit"
    );
    assert_eq!(bytes(3 << 30), "3.0 GB");
    assert_eq!(bytes(u64::MAX), "16384 PB");
}

#[test]
fn counts_and_durations() {
    assert_eq!(count(0), "0");
    assert_eq!(count(999), "999");
    assert_eq!(count(1000), "1,000");
    assert_eq!(count(1_234_567), "1,234,567");
    assert_eq!(seconds(0.0), "0.0 s");
    assert_eq!(seconds(2.54), "2.5 s");
    assert_eq!(seconds(59.6), "1 min 0 s");
    assert_eq!(seconds(200.0), "3 min 20 s");
    assert_eq!(seconds(7500.0), "2 h 5 min");
    assert_eq!(seconds(f64::NAN), "unknown");
    assert_eq!(seconds(-1.0), "unknown");
}

#[test]
fn progress_bars() {
    assert_eq!(
        progress_bar(45.2, 120 << 20),
        "[#########-----------] 45.2%  120 MB left"
    );
    assert_eq!(
        progress_bar(0.0, 1 << 30),
        "[--------------------] 0.0%  1.0 GB left"
    );
    assert_eq!(
        progress_bar(100.0, 0),
        "[####################] 100.0%  0 B left"
    );
    assert_eq!(
        progress_bar(250.0, 0),
        "[####################] 100.0%  0 B left",
        "clamped"
    );
    assert_eq!(
        progress_bar(f64::NAN, 5),
        "[--------------------] 0.0%  5 B left"
    );
}

#[test]
fn tables_align_columns_without_trailing_blanks() {
    let t = table(
        &["A", "LONGER", "C"],
        &[
            vec!["xxxx".into(), "y".into(), "z".into()],
            vec!["".into(), "".into(), "".into()],
        ],
    );
    assert_eq!(t, "A     LONGER  C\nxxxx  y       z\n\n");
}

#[test]
fn status_shows_each_job_and_a_bar_while_mirroring() {
    let report = StatusReport {
        host: "src1".into(),
        roles: "source".into(),
        driver_queue_percent: 3.0,
        jobs: vec![job(MirrorStatus::InProgress)],
        target: None,
    };
    let text = status(&report);
    assert!(
        text.starts_with("Host src1  roles: source  DriverQueuePercent: 3.0%\n"),
        "{text}"
    );
    for expected in [
        "Job web  Running\n",
        "  source       /data\n",
        "  target       backup:1500  path /replica\n",
        "  connection   Active (transmit Active)\n",
        "  mirror       In Progress  [#########-----------] 45.2%  120 MB left\n",
        "  replication  Replicating\n",
        "  target data  Mirroring\n",
        "  queued       replication 1,234 ops, 5.0 MB; mirror 0 ops, 0 B; on disk 0 B\n",
        "  sent         1,000,000 ops, 3.0 GB (0 B compressed); resent 0 ops\n",
        "  lag          2.5 s (ConRPL); in sync up to 2026-01-31T12:00:00Z (ConRPT)\n",
        "  at target    received 999 ops, 7 remaining, 0 retries, 0 dropped; queued 0 B, on disk 0 B\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let idle = status(&StatusReport {
        jobs: vec![JobStatus {
            target_stats: None,
            con_rpt: None,
            ..job(MirrorStatus::Idle)
        }],
        ..report.clone()
    });
    assert!(!idle.contains('['), "no bar unless a mirror runs:\n{idle}");
    assert!(idle.contains("  mirror       Idle\n"), "{idle}");
    assert!(idle.contains("  lag          2.5 s (ConRPL)\n"), "{idle}");
    assert!(!idle.contains("at target"), "{idle}");
    let none = status(&StatusReport {
        jobs: vec![],
        ..report
    });
    assert!(
        none.contains("No jobs. Create one with `rillctl job create"),
        "{none}"
    );
}

#[test]
fn status_says_why_a_job_cannot_connect() {
    let job = JobStatus {
        name: "web".into(),
        con_state: ConState::Error,
        transmit_mode: TransmitMode::Error,
        con_error: Some(ConError {
            class: ConErrorClass::Refused,
            message: "connecting to 10.0.0.2:1500: Connection refused (os error 111)".into(),
            since: "2026-01-31T12:00:00Z".into(),
            attempts: 1200,
        }),
        ..JobStatus::default()
    };
    let json = serde_json::to_value(&job).unwrap();
    assert_eq!(json["conError"]["class"], "Connection Refused");
    assert_eq!(json["conError"]["attempts"], 1200);
    let text = status(&StatusReport {
        jobs: vec![job],
        ..StatusReport::default()
    });
    assert!(
        text.contains(
            "  failing      Connection Refused: connecting to 10.0.0.2:1500: Connection refused \
             (os error 111) (since 2026-01-31T12:00:00Z, 1,200 attempts)\n"
        ),
        "{text}"
    );
}

#[test]
fn status_shows_target_sessions_as_a_table() {
    let report = StatusReport {
        host: "dst".into(),
        roles: "target".into(),
        target: Some(TargetStatus {
            logins: 3,
            failed_logins: 1,
            sessions: vec![TargetSessionStatus {
                peer_name: "src1".into(),
                peer_fingerprint: "ab".repeat(32),
                job: "web".into(),
                target_path: "/replica".into(),
                target_data_state: DataState::MirrorRequired,
                last_applied: 12345,
                counters: TargetCounters {
                    bytes_in_target_queue: 2048,
                    ..TargetCounters::default()
                },
                orphan_files_removed: 1200,
                orphan_directories_removed: 2,
                orphan_bytes_removed: 4096,
                ..TargetSessionStatus::default()
            }],
        }),
        ..StatusReport::default()
    };
    let text = status(&report);
    assert!(text.contains("As a target: 3 logins, 1 failed\n"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.iter().position(|l| l.contains("PEER")).unwrap();
    assert!(lines[header].starts_with("  PEER  FINGERPRINT        JOB  TARGET PATH  DATA STATE"));
    let row = lines[header + 1];
    assert!(
        row.starts_with("  src1  abababababababab…  web  /replica     Mirror Required  12,345"),
        "{row}"
    );
    assert!(
        row.ends_with("2.0 KB  0 B         1,200 files, 2 dirs, 4.0 KB  Protecting"),
        "{row}"
    );
}

#[test]
fn other_renderings() {
    let spec = JobSpec {
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
    };
    let list = jobs(&[JobInfo {
        spec,
        state: JobState::Stopped,
        mirror: MirrorState::Pending,
    }]);
    assert_eq!(
        list,
        "NAME  STATE    MIRROR   SOURCE  TARGET          TARGET PATH  RULES\n\
         web   Stopped  Pending  /data   [fd00::2]:1500  /replica     Exc /data/*.tmp\n"
    );
    assert_eq!(jobs(&[]), "No jobs.\n");
    let row = SettingRow {
        name: "QMemoryBufferMax".into(),
        value: "1024".into(),
        default: "256".into(),
        unit: "MB".into(),
        restart: true,
        help: "Memory queue limit.".into(),
        allowed: "32 to 4095 (MB)".into(),
    };
    let one = setting(&row);
    assert!(one.starts_with("1024\n"), "the value alone first: {one}");
    assert!(one.contains("allowed: 32 to 4095 (MB)"), "{one}");
    assert!(
        one.contains("default: 256 MB; a change takes effect when rilld restarts"),
        "{one}"
    );
    let all = settings(&[row]);
    assert!(
        all.contains("QMemoryBufferMax  1024 MB  256 MB   restart  Memory queue limit."),
        "{all}"
    );
    let peers = trust(&[TrustedPeer {
        name: "dst".into(),
        fingerprint: "cd".repeat(32),
        added_unix: 86_400,
    }]);
    assert!(peers.contains("1970-01-02T00:00:00Z"), "{peers}");
    assert!(trust(&[]).contains("rillctl trust add"));
    let id = identity(
        "src1",
        "ef",
        "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----",
    );
    assert!(
        id.ends_with("-----END CERTIFICATE-----\n\nOn a peer: rillctl trust add src1 ef\n"),
        "{id}"
    );
}

#[test]
fn argument_errors_name_what_is_allowed() {
    let e = parse_err(&[
        "job",
        "create",
        "bad/name",
        "--source",
        "/d",
        "--target",
        "h",
        "--target-path",
        "/r",
    ]);
    assert!(
        e.contains("'/' is not allowed") && e.contains("1 to 64 characters"),
        "{e}"
    );
    let e = parse_err(&[
        "job",
        "create",
        "web",
        "--source",
        "/d",
        "--target",
        "h:0",
        "--target-path",
        "/r",
    ]);
    assert!(
        e.contains("port 0 is not allowed") && e.contains("HOST[:PORT]"),
        "{e}"
    );
    let e = parse_err(&[
        "job",
        "create",
        "web",
        "--source",
        "/d",
        "--target",
        "::1",
        "--target-path",
        "/r",
    ]);
    assert!(e.contains("goes in brackets"), "{e}");
    let e = parse_err(&[
        "job",
        "create",
        "web",
        "--source",
        "/d",
        "--target-path",
        "/r",
    ]);
    assert!(e.contains("--target"), "{e}");
    let e = parse_err(&["job", "start"]);
    assert!(e.contains("<NAME>"), "{e}");
    let e = parse_err(&["job", "frobnicate", "web"]);
    assert!(e.contains("frobnicate"), "{e}");
    let e = parse_err(&["trust", "add", "dst"]);
    assert!(e.contains("FINGERPRINT") || e.contains("--cert"), "{e}");
    let e = parse_err(&["trust", "add", "dst", "abc", "--cert", "f.pem"]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = parse_err(&["status", "--watch", "0"]);
    assert!(e.contains("0.1 to 86400"), "{e}");
    let e = parse_err(&["--api", "nowhere", "status"]);
    assert!(e.contains("IP:PORT"), "{e}");
    // What parses.
    let cli = parse(&["--api", "7000", "status", "web", "--json"]).unwrap();
    assert_eq!(cli.api, Some("127.0.0.1:7000".parse().unwrap()));
    assert!(
        matches!(cli.command, Command::Status { json: true, watch: None, name: Some(ref n) } if n == "web")
    );
    let cli = parse(&["settings", "set", "NetworkRetry", "-1"]).unwrap();
    assert!(
        matches!(cli.command, Command::Settings(SettingsCommand::Set { ref value, .. }) if value == "-1")
    );
}

#[test]
fn job_create_builds_a_checked_absolute_spec() {
    let cli = parse(&[
        "job",
        "create",
        "web",
        "--source",
        "data",
        "--target",
        "[fd00::2]:1600",
        "--target-path",
        "/replica",
        "--exclude",
        "*.tmp",
        "--include",
        "keep/*.db",
    ])
    .unwrap();
    let Command::Job(cmd) = &cli.command else {
        panic!("{cli:?}")
    };
    let Request::JobCreate(spec) = job_request(cmd).unwrap() else {
        panic!()
    };
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(spec.source, cwd.join("data"));
    let JobTarget::Network { host, port, .. } = &spec.target else {
        panic!("{spec:?}")
    };
    assert_eq!((host.as_str(), *port), ("fd00::2", 1600));
    let patterns: Vec<(String, bool)> = spec
        .rules
        .iter()
        .map(|r| (r.pattern.clone(), r.include))
        .collect();
    assert_eq!(
        patterns,
        [
            (cwd.join("data/keep/*.db").display().to_string(), true),
            (cwd.join("data/*.tmp").display().to_string(), false),
        ]
    );
    let cli = parse(&[
        "job",
        "create",
        "web",
        "--source",
        "/data",
        "--target",
        "h",
        "--target-path",
        "replica",
    ])
    .unwrap();
    let Command::Job(cmd) = &cli.command else {
        panic!()
    };
    let Failure(e) = job_request(cmd).unwrap_err();
    assert!(
        e.contains("target path \"replica\": is not absolute"),
        "{e}"
    );
    let cli = parse(&[
        "job",
        "create",
        "web",
        "--source",
        "/data",
        "--target",
        "h",
        "--target-path",
        "/r",
        "--exclude",
        "/etc/*",
    ])
    .unwrap();
    let Command::Job(cmd) = &cli.command else {
        panic!()
    };
    let Failure(e) = job_request(cmd).unwrap_err();
    assert!(e.contains("outside the job's source /data"), "{e}");
}

#[test]
fn certificates_come_from_files_or_stdin() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peer.pem");
    std::fs::write(&file, pem).unwrap();
    assert_eq!(read_certificate(&file, &mut std::io::empty()).unwrap(), pem);
    assert_eq!(
        read_certificate(Path::new("-"), &mut pem.as_bytes()).unwrap(),
        pem
    );
    let Failure(e) = read_certificate(Path::new("-"), &mut "junk".as_bytes()).unwrap_err();
    assert!(
        e.contains("standard input does not hold a PEM certificate"),
        "{e}"
    );
    let Failure(e) =
        read_certificate(&dir.path().join("none.pem"), &mut std::io::empty()).unwrap_err();
    assert!(e.contains("none.pem"), "{e}");
}

/// A stand-in for rilld: accepts one connection, checks the token, answers every request
/// with `answer`, and returns the requests it saw.
fn fake_rilld(answer: Response) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut wr = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream).lines();
        let hello = lines.next().unwrap().unwrap();
        assert_eq!(hello, format!("{{\"token\":\"{TOKEN}\"}}"));
        writeln!(wr, "{{\"ok\":true}}").unwrap();
        let mut seen = Vec::new();
        for line in lines {
            let line = line.unwrap();
            writeln!(wr, "{}", serde_json::to_string(&answer).unwrap()).unwrap();
            seen.push(line);
        }
        seen
    });
    (addr, handle)
}

fn run_with(args: &[String]) -> (i32, String, String) {
    let cli =
        Cli::try_parse_from(std::iter::once("rillctl".to_string()).chain(args.iter().cloned()))
            .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(cli, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn token_file(dir: &Path) -> String {
    let path = dir.join("mgmt.token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path.display().to_string()
}

/// A job's verification is a line of the status table and an object of the JSON, under
/// the names the README gives.
#[test]
fn status_shows_a_verification_and_its_result() {
    let mut j = job(MirrorStatus::Idle);
    j.verification = Some(VerifyStatus {
        state: "completed".into(),
        id: 17,
        files_verified: 12_345,
        bytes_verified: 3 << 20,
        differing: 2,
        missing: 1,
        extra: 4,
        changed: 5,
        remirrored: 7,
    });
    let json = serde_json::to_value(&j).unwrap();
    for (k, v) in [
        ("filesVerified", 12_345),
        ("differing", 2),
        ("extra", 4),
        ("remirrored", 7),
    ] {
        assert_eq!(json["verification"][k], v, "{json}");
    }
    let text = status(&StatusReport {
        jobs: vec![j],
        ..StatusReport::default()
    });
    assert!(
        text.contains(
            "verification  completed (ID 17): 12,345 files (3.0 MB) equal, 2 different, 1 \
             missing, 4 extra, 5 changed while verified; 7 remirrored\n"
        ),
        "{text}"
    );
}

/// `rillctl verify` sends its job and flags.
#[test]
fn verify_asks_for_the_job_with_its_flags() {
    let (code, _, err, lines) = against_fake_rilld(
        Response::done("verification 1 of job web started"),
        &["verify", "web", "--remirror"],
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        lines,
        [r#"{"op":"verify","name":"web","remirror":true,"checksums":false}"#]
    );
}

/// `--every` takes an interval with its unit, at least the shortest schedule, or `off`,
/// and sets the job's schedule with the flags given instead of verifying now.
#[test]
fn verify_every_sets_a_schedule() {
    assert_eq!(parse_every("24h"), Ok(Every::Seconds(86_400)));
    assert_eq!(parse_every("10s"), Ok(Every::Seconds(10)));
    assert_eq!(parse_every("2d"), Ok(Every::Seconds(172_800)));
    assert_eq!(parse_every("off"), Ok(Every::Off));
    for bad in [
        "5s",
        "24",
        "h",
        "1.5h",
        "-1h",
        "24x",
        "99999999999999999999d",
        "",
    ] {
        let e = parse_every(bad).unwrap_err();
        assert!(e.contains("at least 10 s, or `off`"), "{bad}: {e}");
    }
    let (code, _, err, lines) = against_fake_rilld(
        Response::done("job web is verified every 86400 s"),
        &["verify", "web", "--every", "24h", "--checksums"],
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        lines,
        [
            r#"{"op":"verify_schedule","name":"web","schedule":{"everySeconds":86400,"remirror":false,"checksums":true}}"#
        ]
    );
    let (_, _, _, off) =
        against_fake_rilld(Response::done("ok"), &["verify", "web", "--every", "off"]);
    assert_eq!(
        off,
        [r#"{"op":"verify_schedule","name":"web","schedule":null}"#]
    );
    let mut j = job(MirrorStatus::Idle);
    j.verify_schedule = Some(rill_mgmt::VerifySchedule {
        every_seconds: 86_400,
        remirror: true,
        checksums: false,
    });
    let text = status(&StatusReport {
        jobs: vec![j],
        ..StatusReport::default()
    });
    assert!(
        text.contains("  verified     every 24 h 0 min, remirroring what differs\n"),
        "{text}"
    );
}

/// Runs rillctl `args` against a fake rilld answering `answer`: the exit code, standard
/// output and error, and the request lines rilld read.
fn against_fake_rilld(answer: Response, args: &[&str]) -> (i32, String, String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let (addr, rilld) = fake_rilld(answer);
    let mut all = vec![
        "--api".to_string(),
        addr.to_string(),
        "--token-file".into(),
        token,
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let (code, out, err) = run_with(&all);
    (code, out, err, rilld.join().unwrap())
}

#[test]
fn a_command_talks_to_rilld_and_prints_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let (addr, rilld) = fake_rilld(Response::done("job web started"));
    let args: Vec<String> = [
        "--api",
        &addr.to_string(),
        "--token-file",
        &token,
        "job",
        "start",
        "web",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out, err) = run_with(&args);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "job web started\n", "")
    );
    assert_eq!(
        rilld.join().unwrap(),
        [r#"{"op":"job","name":"web","action":"start"}"#]
    );
}

#[test]
fn daemon_errors_go_to_stderr_with_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let (addr, rilld) = fake_rilld(Response::error("no job named `web`"));
    let args: Vec<String> = [
        "--api",
        &addr.to_string(),
        "--token-file",
        &token,
        "job",
        "stop",
        "web",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out, err) = run_with(&args);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "rillctl: no job named `web`\n");
    rilld.join().unwrap();
}

#[test]
fn status_json_prints_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let report = StatusReport {
        host: "src1".into(),
        jobs: vec![job(MirrorStatus::InProgress)],
        ..StatusReport::default()
    };
    let (addr, rilld) = fake_rilld(Response::Status(report.clone()));
    let args: Vec<String> = [
        "--api",
        &addr.to_string(),
        "--token-file",
        &token,
        "status",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out, _) = run_with(&args);
    assert_eq!(code, 0);
    let back: StatusReport = serde_json::from_str(&out).unwrap();
    assert_eq!(back, report);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["jobs"][0]["mirrorStatus"], "In Progress");
    rilld.join().unwrap();
}

#[test]
fn a_daemon_that_is_not_running_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let args: Vec<String> = [
        "--api",
        &addr.to_string(),
        "--token-file",
        &token,
        "job",
        "list",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, _, err) = run_with(&args);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "rilld is not running at {addr} (connection refused)"
        )) && err.contains("systemctl start rilld"),
        "{err}"
    );
    let args: Vec<String> = [
        "--api",
        &addr.to_string(),
        "--token-file",
        "/nonexistent/mgmt.token",
        "job",
        "list",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, _, err) = run_with(&args);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/mgmt.token does not exist"),
        "{err}"
    );
}

#[test]
fn the_settings_file_locates_the_api_and_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    token_file(&data);
    let (addr, rilld) = fake_rilld(Response::Jobs(vec![]));
    let config = dir.path().join("rill.toml");
    let text = format!(
        "DataPath = {:?}\nManagementPort = {}\n",
        data.display().to_string(),
        addr.port()
    );
    std::fs::write(&config, text).unwrap();
    let args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "job".into(),
        "list".into(),
    ];
    let (code, out, err) = run_with(&args);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "No jobs.\n", ""));
    rilld.join().unwrap();
    std::fs::write(&config, "NoSuchSetting = 1\n").unwrap();
    let (code, _, err) = run_with(&args);
    assert_eq!(code, 1);
    assert!(
        err.contains("reading the settings file") && err.contains("NoSuchSetting"),
        "{err}"
    );
}
