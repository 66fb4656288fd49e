//! `rilld`: rill's replication engine. A thin shell over `rill_engine`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use rill_engine::settings::{cli, SettingsCommand, DEFAULT_SETTINGS_FILE};

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
}

fn main() {
    let args = Cli::parse();
    let result = match args.command {
        Command::Settings(cmd) => cli(cmd, &args.config, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("rilld: {e:#}");
            std::process::exit(1);
        }
    }
}
