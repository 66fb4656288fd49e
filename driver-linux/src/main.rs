//! `rill-driver`: load, configure, inspect and watch rill's Linux capture driver.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use rill_driver_linux::{
    capture::{Capture, Source},
    loader,
    maps::DriverMaps,
    settings::{CaptureMode, DriverSettings, DEFAULT_SETTINGS_FILE, SETTINGS},
    status, Result,
};
use rill_ops::Event;

#[derive(Parser)]
#[command(name = "rill-driver", version, about = "rill's Linux capture driver")]
struct Cli {
    /// The driver's settings file.
    #[arg(long, global = true, env = "RILL_DRIVER_SETTINGS", default_value = DEFAULT_SETTINGS_FILE)]
    settings: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load and pin the eBPF programs under /sys/fs/bpf/rill (idempotent).
    Load,
    /// Detach and remove the pinned driver (idempotent).
    Unload,
    /// Show the driver's state and statistics.
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a setting's value (or every setting, with no name).
    Get {
        /// The setting's name, in any case (e.g. RingSizeMB).
        name: Option<String>,
    },
    /// Change a setting: saved to the settings file and applied to a loaded driver.
    Set {
        /// The setting's name, in any case (e.g. RingSizeMB); the file gets its spelling.
        name: String,
        /// The new value, as `get` prints it. May start with `-` (a negative number is a
        /// bad value, not a flag).
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Show the driver at work: load it, print each operation of a demo workload in a fresh
    /// temporary directory, show its status and unload it (a driver already loaded is left
    /// alone, and a private instance captures).
    Demo,
    /// The workload of `demo`, run by it in a child process (a capture never records its
    /// own process).
    #[command(hide = true)]
    DemoWorkload {
        /// The demo's directory.
        dir: PathBuf,
    },
    /// Print every operation under the given directories as it happens, until SIGINT or
    /// SIGTERM.
    Capture {
        /// A directory to capture beneath, recursively; repeat it for several.
        #[arg(long = "path", required = true)]
        paths: Vec<PathBuf>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Capture mechanism (default: the CaptureMode setting).
        #[arg(long)]
        mode: Option<ModeArg>,
        /// Drain the pinned driver's ring instead of loading a private instance. Refused
        /// while another reader (the engine) holds the ring.
        #[arg(long)]
        attach: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Ebpf,
    Fanotify,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("rill-driver: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut settings = DriverSettings::load(&cli.settings)?;
    match cli.command {
        Command::Demo => rill_driver_linux::demo::run(&mut std::io::stdout())?,
        Command::DemoWorkload { dir } => rill_driver_linux::demo::workload(&dir)
            .map_err(|e| rill_driver_linux::DriverError::io(&dir, e))?,
        Command::Load => {
            if loader::is_loaded() {
                DriverMaps::open_pinned()?.apply(&settings)?;
                println!("rill driver already loaded; settings applied");
            } else {
                let _ = loader::load(&settings, true)?;
                println!("rill driver loaded and pinned at {}", loader::PIN_DIR);
            }
        }
        Command::Unload => {
            if loader::unload()? {
                println!("rill driver unloaded");
            } else {
                println!("rill driver was not loaded");
            }
        }
        Command::Status { json } => {
            let v = status::status(&settings)?;
            if json {
                println!("{v}");
            } else {
                print!("{}", status::render(&v));
            }
        }
        Command::Get { name: Some(name) } => println!("{}", settings.get(&name)?),
        Command::Get { name: None } => {
            for s in SETTINGS {
                println!(
                    "{:<24} {:<12} ({}; {})",
                    s.name,
                    settings.get(s.name)?,
                    s.allowed,
                    s.help
                );
            }
        }
        Command::Set { name, value } => {
            let info = settings.set(&name, &value)?;
            settings.save(&cli.settings)?;
            if loader::is_loaded() && !info.needs_reload {
                DriverMaps::open_pinned()?.apply(&settings)?;
                println!("{} = {} (applied)", info.name, settings.get(info.name)?);
            } else if info.needs_reload {
                println!(
                    "{} = {} (takes effect at the next load)",
                    info.name,
                    settings.get(info.name)?
                );
            } else {
                println!("{} = {}", info.name, settings.get(info.name)?);
            }
        }
        Command::Capture {
            paths,
            json,
            mode,
            attach,
        } => {
            let mode = match mode {
                Some(ModeArg::Ebpf) => CaptureMode::Ebpf,
                Some(ModeArg::Fanotify) => CaptureMode::Fanotify,
                None => settings.capture_mode,
            };
            let source = if attach {
                Source::Pinned
            } else {
                Source::Private
            };
            capture(&paths, source, mode, &settings, json)?;
        }
    }
    Ok(())
}

fn capture(
    paths: &[PathBuf],
    source: Source,
    mode: CaptureMode,
    settings: &DriverSettings,
    json: bool,
) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| rill_driver_linux::DriverError::io("signal handler", e))?;
    }
    let mut session = Capture::start(paths, source, mode, settings)?;
    eprintln!(
        "rill-driver: capturing under {} ({:?}); stop with Ctrl-C",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        session.source
    );
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut events = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        session.poll(Duration::from_millis(50), &mut events)?;
        print_events(&mut out, &mut events, json);
    }
    // Operations that completed before the signal may still be in the ring.
    session.flush(&mut events)?;
    print_events(&mut out, &mut events, json);
    Ok(())
}

fn print_events(out: &mut impl Write, events: &mut Vec<Event>, json: bool) {
    for ev in events.drain(..) {
        let line = if json {
            ev.to_json().to_string()
        } else {
            ev.to_text()
        };
        // A closed pipe (`| head`) ends the output, not the process with a panic.
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}
