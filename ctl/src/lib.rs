//! rill-ctl: `rillctl`, administration of a running rilld through its local management API.
//!
//! rillctl holds no state of its own: every command is one request to rilld
//! ([`rill_mgmt`]), which validates it again and owns the job store, settings and
//! trust. rillctl finds rilld the way rilld itself does, from the settings file: the API
//! listens on 127.0.0.1 at `ManagementPort`, and the token that proves the caller may use
//! it is in `DataPath/mgmt.token` (readable by root only, so rillctl is run as root).
//!
//! What can be checked without rilld is checked here first (job names, targets, paths,
//! PEM files), so a typo is reported at once with what is allowed, and the daemon is only
//! asked about things that need it. Daemon refusals are printed to stderr with exit status
//! 1; usage errors exit with 2, as clap does.
//!
//! It is a crate of its own, built from `rill-mgmt` (the API's types, token and client) and
//! `rill-settings` (to find rilld) only, so the administration tool does not link the
//! engine: no tokio, rustls, redb or aya (`cargo tree -e normal -p rill-ctl`). The library
//! is here for its tests and for `rill-demo`, which shows a status with [`render`].

pub mod render;
#[cfg(test)]
mod tests;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use rill_mgmt::jobs::{check_name, parse_target, JobRule, JobSpec, JobTarget};
use rill_mgmt::{self as mgmt, Client, ClientError, JobAction, Request, Response};
use rill_mgmt::{FailoverMode, FailoverScripts, VerifySchedule, MIN_VERIFY_EVERY_SECONDS};
use rill_settings::{Settings, DEFAULT_SETTINGS_FILE};

/// rillctl's command line.
#[derive(Debug, Parser)]
#[command(
    name = "rillctl",
    version,
    about = "Administer rill's replication engine (rilld) through its local management API"
)]
pub struct Cli {
    /// rilld's settings file: where rillctl finds ManagementPort and DataPath (the token).
    #[arg(long, global = true, value_name = "FILE", env = "RILL_CONFIG", default_value = DEFAULT_SETTINGS_FILE)]
    pub config: PathBuf,
    /// The management API's address, e.g. 127.0.0.1:6326 or just a port [default:
    /// 127.0.0.1 and the settings' ManagementPort].
    #[arg(long, global = true, value_name = "ADDR", value_parser = parse_api)]
    pub api: Option<SocketAddr>,
    /// The management token file [default: DataPath/mgmt.token from the settings].
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, start, stop, pause, resume and delete replication jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// The state and statistics of every job (or of one), with the guide's names.
    Status {
        /// Only this job.
        #[arg(value_parser = parse_name)]
        name: Option<String>,
        /// Print the status report as JSON (the guide's statistic names).
        #[arg(long)]
        json: bool,
        /// Redraw every SECS seconds until interrupted.
        #[arg(long, value_name = "SECS", value_parser = parse_watch)]
        watch: Option<f64>,
    },
    /// rilld's settings (the reference guide's names).
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// This host's certificate and fingerprint, for peers to trust.
    Identity,
    /// The peers this host trusts (by certificate fingerprint).
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Compare a running job's replica with its source while replication goes on: what
    /// differs goes to the verification log (VerifyLogName in LogDir); `rillctl status`
    /// shows the progress and the result.
    Verify {
        #[arg(value_parser = parse_name)]
        name: String,
        /// Send what differs to the target again (through the job's remirror).
        #[arg(long)]
        remirror: bool,
        /// Compare file data by block checksums even with ChecksumAll = 0.
        #[arg(long)]
        checksums: bool,
        /// Verify the job on its own every DURATION (a number and s, m, h or d: `24h`)
        /// from now on, with the flags given, instead of now; `off` ends the schedule.
        #[arg(long, value_name = "DURATION", value_parser = parse_every)]
        every: Option<Every>,
    },
    /// Fail a source job over to this host, its target (run on the target): the replica
    /// is settled at its last consistent point and the source is refused from now on.
    Failover {
        #[arg(value_parser = parse_name)]
        name: String,
        /// A test failover: the replica is held for checking while the source runs on.
        #[arg(long, conflicts_with = "undo_test")]
        test: bool,
        /// End a test failover: replication goes on, the replica is remirrored.
        #[arg(long)]
        undo_test: bool,
    },
    /// End a source job's failover on this host, its target (run on the target): the
    /// source is accepted again and remirrors the replica.
    Failback {
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Set a source job's failover scripts on this host, its target (absolute paths of
    /// executable files here; a script not given is unset).
    FailoverScripts {
        #[arg(value_parser = parse_name)]
        name: String,
        /// Run once the replica is settled, before the failover is recorded (PreFailoverWait:
        /// waited for or not).
        #[arg(long, value_name = "FILE")]
        pre_failover: Option<PathBuf>,
        /// Run once the failover is recorded.
        #[arg(long, value_name = "FILE")]
        post_failover: Option<PathBuf>,
        /// Run before a failback clears the failover (PreFailbackWait: waited for or not).
        #[arg(long, value_name = "FILE")]
        pre_failback: Option<PathBuf>,
        /// Run once the failback is recorded.
        #[arg(long, value_name = "FILE")]
        post_failback: Option<PathBuf>,
    },
}

/// `rillctl verify --every`: an interval in seconds, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    Off,
    Seconds(u64),
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Create a job (stopped; `job start NAME` starts it).
    Create {
        /// The job's name: 1 to 64 of A-Z a-z 0-9 . _ -
        #[arg(value_parser = parse_name)]
        name: String,
        /// The directory to replicate (a relative path is taken from the current directory).
        #[arg(long, value_name = "DIR")]
        source: PathBuf,
        /// The target host, with the port of its rilld if not 1500.
        #[arg(long, value_name = "HOST[:PORT]", value_parser = parse_target_arg)]
        target: (String, u16),
        /// Where the data goes on the target (absolute).
        #[arg(long, value_name = "DIR")]
        target_path: PathBuf,
        /// Also protect this path or wildcard (absolute, or relative to --source), recursively.
        #[arg(long = "include", value_name = "PATTERN")]
        includes: Vec<String>,
        /// Do not protect this path or wildcard (e.g. '*.tmp', /data/cache), recursively.
        #[arg(long = "exclude", value_name = "PATTERN")]
        excludes: Vec<String>,
    },
    /// List the jobs.
    List,
    /// Start a job: mirror if needed, then replicate.
    Start {
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Stop a job.
    Stop {
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Pause a job's transmission (operations queue meanwhile).
    Pause {
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Resume a paused job.
    Resume {
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Delete a job.
    Delete {
        #[arg(value_parser = parse_name)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Every setting: value, default, whether a change needs a restart.
    List,
    /// One setting's value (names are case-sensitive, as in the guide).
    Get { name: String },
    /// Change a setting; rilld checks it, saves it and says when it takes effect.
    Set {
        name: String,
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust a peer by its certificate fingerprint, or by its certificate (--cert).
    Add {
        /// The name the peer is known by here.
        name: String,
        /// The peer's SHA-256 certificate fingerprint (`rillctl identity` on the peer).
        #[arg(required_unless_present = "cert", conflicts_with = "cert")]
        fingerprint: Option<String>,
        /// The peer's PEM certificate file; '-' reads it from standard input.
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
    },
    /// The trusted peers.
    List,
    /// Stop trusting a peer.
    Remove { name: String },
}

fn parse_name(s: &str) -> Result<String, String> {
    check_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_target_arg(s: &str) -> Result<(String, u16), String> {
    parse_target(s).map_err(|e| e.to_string())
}

fn parse_api(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match s.parse::<u16>() {
        Ok(port) if port != 0 => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        _ => Err(format!(
            "`{s}` is not an address: expected IP:PORT (127.0.0.1:6326, [::1]:6326) or a \
             port 1 to 65535"
        )),
    }
}

/// `30s`, `15m`, `24h`, `7d` (at least `MIN_VERIFY_EVERY_SECONDS`), or `off`.
fn parse_every(s: &str) -> Result<Every, String> {
    const UNITS: [(char, u64); 4] = [('s', 1), ('m', 60), ('h', 3600), ('d', 86_400)];
    if s == "off" {
        return Ok(Every::Off);
    }
    let seconds = s.char_indices().last().and_then(|(at, unit)| {
        let (_, scale) = UNITS.iter().find(|(u, _)| *u == unit)?;
        s[..at].parse::<u64>().ok()?.checked_mul(*scale)
    });
    match seconds {
        Some(n) if n >= MIN_VERIFY_EVERY_SECONDS => Ok(Every::Seconds(n)),
        _ => Err(format!(
            "`{s}` is not an interval: expected a whole number and s, m, h or d (`24h`) of \
             at least {MIN_VERIFY_EVERY_SECONDS} s, or `off`"
        )),
    }
}

fn parse_watch(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.1..=86_400.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "`{s}` is not a number of seconds from 0.1 to 86400"
        )),
    }
}

/// The management API's port: the settings' `ManagementPort` (default 6326).
fn api_port(settings: &Settings) -> u16 {
    settings.management_port()
}

/// Something rillctl reports and exits 1 for.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

/// Runs a parsed command line, printing to `out` (results) and `err` (problems); returns
/// the exit status.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match execute(cli, out) {
        Ok(()) => 0,
        Err(Failure(message)) => {
            let _ = writeln!(err, "rillctl: {message}");
            1
        }
    }
}

fn execute(cli: Cli, out: &mut dyn Write) -> Result<(), Failure> {
    // Everything that can be refused without rilld is refused before connecting.
    let request = plain_request(&cli.command)?;
    let request = match request {
        Some(r) => r,
        None => failover_request(&cli.command)?,
    };
    let mut client = connect(&cli)?;
    match &cli.command {
        Command::Status {
            json,
            watch: Some(secs),
            ..
        } => loop {
            let response = client.call(&request)?;
            // Home and clear, then the report: a redraw in place.
            write!(out, "\x1b[H\x1b[2J")?;
            show(&cli.command, response, *json, out)?;
            writeln!(out, "\n(every {secs} s; Ctrl-C to stop)")?;
            out.flush()?;
            std::thread::sleep(Duration::from_secs_f64(*secs));
        },
        Command::Status { json, .. } => show(&cli.command, client.call(&request)?, *json, out),
        _ => show(&cli.command, client.call(&request)?, false, out),
    }
}

/// The request of a command other than the failover ones (`None` for those).
fn plain_request(command: &Command) -> Result<Option<Request>, Failure> {
    let request = match command {
        Command::Job(cmd) => job_request(cmd)?,
        Command::Status { name, .. } => Request::Status { name: name.clone() },
        Command::Settings(SettingsCommand::List) => Request::SettingsList,
        Command::Settings(SettingsCommand::Get { name }) => {
            Request::SettingsGet { name: name.clone() }
        }
        Command::Settings(SettingsCommand::Set { name, value }) => Request::SettingsSet {
            name: name.clone(),
            value: value.clone(),
        },
        Command::Identity => Request::Identity,
        Command::Trust(TrustCommand::Add {
            name,
            fingerprint,
            cert,
        }) => Request::TrustAdd {
            name: name.clone(),
            peer: match (fingerprint, cert) {
                (Some(fp), _) => fp.trim().to_string(),
                (None, Some(file)) => read_certificate(file, &mut std::io::stdin().lock())?,
                (None, None) => return Err(Failure("give a FINGERPRINT or --cert FILE".into())),
            },
        },
        Command::Trust(TrustCommand::List) => Request::TrustList,
        Command::Trust(TrustCommand::Remove { name }) => {
            Request::TrustRemove { name: name.clone() }
        }
        Command::Verify {
            name,
            remirror,
            checksums,
            every: Some(every),
        } => Request::VerifySchedule {
            name: name.clone(),
            schedule: match every {
                Every::Off => None,
                Every::Seconds(every_seconds) => Some(VerifySchedule {
                    every_seconds: *every_seconds,
                    remirror: *remirror,
                    checksums: *checksums,
                }),
            },
        },
        Command::Verify {
            name,
            remirror,
            checksums,
            every: None,
        } => Request::Verify {
            name: name.clone(),
            remirror: *remirror,
            checksums: *checksums,
        },
        Command::Failover { .. } | Command::Failback { .. } | Command::FailoverScripts { .. } => {
            return Ok(None);
        }
    };
    Ok(Some(request))
}

/// The request of a failover command (`failover`, `failback`, `failover-scripts`),
/// checked as far as it can be here.
fn failover_request(cmd: &Command) -> Result<Request, Failure> {
    Ok(match cmd {
        Command::Failover {
            name,
            test,
            undo_test,
        } => Request::Failover {
            name: name.clone(),
            mode: match (test, undo_test) {
                (true, _) => FailoverMode::Test,
                (_, true) => FailoverMode::UndoTest,
                _ => FailoverMode::Live,
            },
        },
        Command::Failback { name } => Request::Failback { name: name.clone() },
        Command::FailoverScripts {
            name,
            pre_failover,
            post_failover,
            pre_failback,
            post_failback,
        } => {
            let scripts = FailoverScripts {
                pre_failover: pre_failover.clone(),
                post_failover: post_failover.clone(),
                pre_failback: pre_failback.clone(),
                post_failback: post_failback.clone(),
            };
            scripts.check().map_err(Failure)?;
            Request::FailoverScripts {
                name: name.clone(),
                scripts,
            }
        }
        other => return Err(Failure(format!("not a failover command: {other:?}"))),
    })
}

/// The request of a `job` command, checked as far as it can be here.
fn job_request(cmd: &JobCommand) -> Result<Request, Failure> {
    let (name, action) = match cmd {
        JobCommand::Create {
            name,
            source,
            target,
            target_path,
            includes,
            excludes,
        } => {
            let source = std::path::absolute(source)
                .map_err(|e| Failure(format!("--source {}: {e}", source.display())))?;
            let rules = includes
                .iter()
                .map(|p| (p, true))
                .chain(excludes.iter().map(|p| (p, false)))
                .map(|(pattern, include)| JobRule {
                    pattern: pattern.clone(),
                    include,
                })
                .collect();
            let spec = JobSpec {
                name: name.clone(),
                source,
                target: JobTarget::Network {
                    host: target.0.clone(),
                    port: target.1,
                    path: target_path.clone(),
                },
                rules,
            }
            .validated()?;
            return Ok(Request::JobCreate(spec));
        }
        JobCommand::List => return Ok(Request::JobList),
        JobCommand::Start { name } => (name, JobAction::Start),
        JobCommand::Stop { name } => (name, JobAction::Stop),
        JobCommand::Pause { name } => (name, JobAction::Pause),
        JobCommand::Resume { name } => (name, JobAction::Resume),
        JobCommand::Delete { name } => (name, JobAction::Delete),
    };
    Ok(Request::Job {
        name: name.clone(),
        action,
    })
}

/// A PEM certificate from `file` ('-': from `stdin`).
fn read_certificate(file: &Path, stdin: &mut dyn Read) -> Result<String, Failure> {
    let mut text = String::new();
    let shown = if file == Path::new("-") {
        stdin
            .read_to_string(&mut text)
            .map_err(|e| Failure(format!("reading the certificate from standard input: {e}")))?;
        "standard input".to_string()
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| Failure(format!("--cert {}: {e}", file.display())))?;
        file.display().to_string()
    };
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(Failure(format!(
            "{shown} does not hold a PEM certificate (a -----BEGIN CERTIFICATE----- block); \
             `rillctl identity` on the peer prints it"
        )));
    }
    Ok(text)
}

/// Where rilld listens, and its token file, from the command line and the settings.
fn endpoint(cli: &Cli) -> Result<(SocketAddr, PathBuf), Failure> {
    let need_settings = cli.api.is_none() || cli.token_file.is_none();
    let settings = if need_settings {
        Settings::load_or_default(&cli.config).map_err(|e| {
            Failure(format!(
                "reading the settings file {} to find rilld: {e}",
                cli.config.display()
            ))
        })?
    } else {
        Settings::default()
    };
    let addr = cli
        .api
        .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), api_port(&settings)));
    let token = cli
        .token_file
        .clone()
        .unwrap_or_else(|| mgmt::token_path(settings.data_path()));
    Ok((addr, token))
}

fn connect(cli: &Cli) -> Result<Client, Failure> {
    let (addr, token_file) = endpoint(cli)?;
    let token =
        mgmt::read_token(&token_file).map_err(|e| token_failure(&token_file, &cli.config, e))?;
    Client::connect(addr, &token).map_err(|e| connect_failure(addr, e))
}

fn token_failure(file: &Path, config: &Path, e: std::io::Error) -> Failure {
    use std::io::ErrorKind;
    Failure(match e.kind() {
        ErrorKind::NotFound => format!(
            "the management token {} does not exist: rilld creates it when it starts. Is \
             rilld running (e.g. `systemctl start rilld`), with the settings file {}?",
            file.display(),
            config.display()
        ),
        ErrorKind::PermissionDenied => format!(
            "cannot read the management token {}: permission denied; run rillctl as root \
             (the token is readable only by rilld's user)",
            file.display()
        ),
        _ => e.to_string(),
    })
}

fn connect_failure(addr: SocketAddr, e: ClientError) -> Failure {
    if e.is_refused() {
        return Failure(format!(
            "rilld is not running at {addr} (connection refused). Start it (e.g. \
             `systemctl start rilld`); if it listens on another ManagementPort, pass the \
             settings file it uses with --config, or the address with --api"
        ));
    }
    match e {
        ClientError::Auth { message, .. } => Failure(format!(
            "rilld at {addr} refused the token: {message}; the token file may be stale (was \
             rilld's DataPath changed?) or belong to another rilld"
        )),
        other => Failure(other.to_string()),
    }
}

/// Prints a response as the command expects it; an `Error` response is a failure.
fn show(cmd: &Command, response: Response, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    match response {
        Response::Error { message } => return Err(Failure(message)),
        Response::Done { message } => writeln!(out, "{message}")?,
        Response::Status(report) if json => {
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?
        }
        Response::Status(report) => write!(out, "{}", render::status(&report))?,
        Response::Jobs(list) => write!(out, "{}", render::jobs(&list))?,
        Response::Settings(rows) => match (cmd, rows.as_slice()) {
            (Command::Settings(SettingsCommand::Get { .. }), [row]) => {
                write!(out, "{}", render::setting(row))?
            }
            _ => write!(out, "{}", render::settings(&rows))?,
        },
        Response::Identity {
            name,
            fingerprint,
            certificate_pem,
        } => write!(
            out,
            "{}",
            render::identity(&name, &fingerprint, &certificate_pem)
        )?,
        Response::Trust(peers) => write!(out, "{}", render::trust(&peers))?,
    }
    Ok(())
}
