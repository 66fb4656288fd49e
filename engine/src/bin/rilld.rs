//! `rilld`: rill's replication engine. A thin shell over `rill_engine`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use rill_engine::settings::{cli, Settings, SettingsCommand, DEFAULT_SETTINGS_FILE};
use rill_engine::source::capture_hub::{CaptureHub, HubSource};
use rill_engine::source::destination::LocalDestination;
use rill_engine::source::job::SourceJob;
use rill_engine::source::outbox::Outbox;
use rill_engine::source::transmit::JobControl;
use rill_engine::storage::change_journal::ChangeJournal;
use rill_engine::storage::job_store::JobTarget;

#[derive(Parser)]
#[command(name = "rilld", version, about = "rill's replication engine")]
struct Cli {
    /// The engine's settings file (setting names as in the reference guide).
    #[arg(long, global = true, env = "RILL_CONFIG", default_value = DEFAULT_SETTINGS_FILE)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show, read and check the engine's settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Replicate SOURCE into the directory TARGET on this host until SIGINT or SIGTERM.
    Run {
        /// The directory to replicate, with everything beneath it.
        #[arg(long)]
        source: PathBuf,
        /// The directory its replica is kept in (made when missing); nothing outside it
        /// is written.
        #[arg(long)]
        target: PathBuf,
        /// Drain the pinned driver (`rill-driver load`) instead of loading a private one.
        #[arg(long)]
        pinned: bool,
        /// Mirror the whole source first (otherwise only what changes is replicated, and,
        /// after a clean stop, whatever changed while rilld was stopped).
        #[arg(long)]
        mirror: bool,
        /// Also protect this absolute path or wildcard (e.g. /data/keep/*.db), recursively.
        #[arg(long = "include")]
        includes: Vec<String>,
        /// Do not protect this absolute path or wildcard (e.g. /data/*.tmp), recursively.
        #[arg(long = "exclude")]
        excludes: Vec<String>,
    },
    /// Run the engine as a service: source and/or target (LoadSourceTarget), the stored
    /// jobs, and the management API that `rillctl` drives; until SIGINT or SIGTERM.
    Serve {
        /// The capture every job shares: `shared`, the pinned driver (loaded and pinned
        /// when absent, left loaded on exit; a private instance when another process
        /// drains it), or `private`, an instance of this rilld's own, unloaded when it
        /// exits (where several rilld run side by side, as in tests).
        #[arg(long, env = "RILL_CAPTURE", default_value = "shared", value_parser = ["shared", "private"])]
        capture: String,
    },
    /// Print the running engine's statistics (the guide's names), as JSON.
    Stats,
    /// Print the pending entries (files to remirror) of the change journal `rilld run` keeps
    /// in DataPath, one JSON object per line; refused while that `rilld run` is running.
    Changes,
}

fn main() {
    rill_engine::allocator::tune_for_data_buffers();
    let args = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let result = match args.command {
        Command::Settings(cmd) => cli(cmd, &args.config, &mut std::io::stdout().lock()),
        Command::Run {
            source,
            target,
            pinned,
            mirror,
            includes,
            excludes,
        } => {
            let rules = includes
                .into_iter()
                .map(|p| (p, true))
                .chain(excludes.into_iter().map(|p| (p, false)))
                .collect();
            run(&args.config, source, target, pinned, mirror, rules)
        }
        Command::Changes => changes(&args.config),
        Command::Serve { capture } => serve(&args.config, &capture),
        Command::Stats => stats(&args.config),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("rilld: {}", report(&e));
            std::process::exit(1);
        }
    }
}

/// `rilld run`; SIGINT/SIGTERM stop it, SIGHUP re-reads the settings file.
fn run(
    config: &std::path::Path,
    source: PathBuf,
    target: PathBuf,
    pinned: bool,
    mirror: bool,
    rules: Vec<(String, bool)>,
) -> anyhow::Result<i32> {
    let settings = Settings::for_start(config)?;
    let (stop, reload) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing a signal handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("installing a signal handler")?;
    let source = source
        .canonicalize()
        .with_context(|| format!("source {}", source.display()))?;
    let destination =
        LocalDestination::new(&target, rill_engine::options::apply_options(&settings))
            .with_context(|| format!("target {}", target.display()))?;
    let mut outbox = Outbox::new(
        &source,
        rill_engine::options::resolve_options(&settings),
        Box::new(destination),
    );
    let job = SourceJob {
        source,
        target: JobTarget::Local { path: target },
        state_dir: None,
        mirror,
        // A first run replicates what changes from now on, unless asked to mirror; a run
        // after a clean stop also remirrors the source if anything changed in between.
        resync: !mirror && rill_engine::source::job::stopped_cleanly_before(&settings, None),
        control: Arc::new(JobControl {
            stop,
            ..Default::default()
        }),
        // The same path as `rilld serve`'s jobs, with a capture of its own: a private
        // instance unless asked to drain the pinned driver.
        capture: Arc::new(CaptureHub::new(if pinned {
            HubSource::Pinned
        } else {
            HubSource::Private
        })),
        rules,
        config: config.exists().then(|| config.to_path_buf()),
        reload,
    };
    rill_engine::source::job::run(&settings, job, &mut outbox)?;
    Ok(0)
}

/// `rilld serve`; SIGINT/SIGTERM stop it.
fn serve(config: &std::path::Path, capture: &str) -> anyhow::Result<i32> {
    let capture = match capture {
        "private" => HubSource::Private,
        _ => HubSource::Shared,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing a signal handler")?;
    }
    rill_engine::daemon::serve(config, stop, capture)?;
    Ok(0)
}

/// `rilld changes`: the change journal of `rilld run`, which holds it open while it runs.
fn changes(config: &std::path::Path) -> anyhow::Result<i32> {
    let settings = Settings::for_start(config)?;
    let path = rill_engine::source::job::change_journal_path(&settings, None);
    // Opening would make an empty journal, and the listing would then hide a wrong DataPath.
    if !path.exists() {
        anyhow::bail!(
            "no change journal at {}: `rilld changes` lists the one `rilld run` keeps in \
             DataPath (here from {}), made when it first runs; was it run with another \
             --config? (The jobs of `rilld serve` keep theirs in DataPath/jobs/JOB.)",
            path.display(),
            if config.exists() {
                format!("the settings file {}", config.display())
            } else {
                format!("the default: {} does not exist", config.display())
            }
        );
    }
    let journal = match ChangeJournal::open(&path) {
        Err(rill_engine::storage::change_journal::Error::Locked { .. }) => anyhow::bail!(
            "{}: in use by a running `rilld run`, which alone may open it; stop it, and \
             `rilld changes` lists what it left to remirror",
            path.display()
        ),
        opened => opened?,
    };
    for e in journal.pending(usize::MAX)? {
        println!(
            "{}",
            serde_json::json!({
                "path": e.path.to_string_lossy(),
                "subtree": e.subtree,
                "whole": e.whole,
                "ranges": e.ranges,
                "reasons": e.reasons.to_string(),
            })
        );
    }
    Ok(0)
}

fn stats(config: &std::path::Path) -> anyhow::Result<i32> {
    let settings = Settings::for_start(config)?;
    let path = settings.data_path().join("statistics.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: no statistics yet (is `rilld run` running?)",
            path.display()
        )
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

/// `e` and its causes, as `{e:#}` gives them but without a cause its error's message already
/// ends with: many of the engine's errors name their source in their message and also return
/// it as their source, and `{e:#}` then said "No such file or directory" twice.
fn report(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_each_cause_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let path = std::path::Path::new("/nowhere/cj.redb");
        let doubled = anyhow::Error::new(rill_engine::storage::change_journal::Error::Io {
            path: path.into(),
            source: io(),
        });
        assert_eq!(format!("{doubled:#}"), format!("{doubled}: {}", io()));
        assert_eq!(report(&doubled), format!("/nowhere/cj.redb: {}", io()));
        // a context above names the cause anew: kept
        let layered = anyhow::Error::new(io()).context("reading the queue");
        assert_eq!(report(&layered), format!("reading the queue: {}", io()));
    }
}
