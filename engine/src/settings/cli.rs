//! `rilld settings list | get NAME | set NAME VALUE | check [FILE]`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{find, set_in_file, Settings};

/// `rilld settings ...`
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum SettingsCommand {
    /// List every setting: value, default, whether a change needs a restart, allowed values.
    List,
    /// Print one setting's value (names are case-sensitive, as in the reference guide).
    Get {
        /// The setting's name, e.g. QMemoryBufferMax.
        name: String,
    },
    /// Set one setting in the settings file, keeping the file's other lines and comments.
    Set {
        /// The setting's name, e.g. QMemoryBufferMax.
        name: String,
        /// The new value, as `get` prints it (e.g. 1024, unlimited, 1, /srv/queue, mp3.zip).
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Check a settings file and print every problem in it; exit status 1 if there is any.
    Check {
        /// The file to check (default: the --config file).
        file: Option<PathBuf>,
    },
}

/// Runs a `rilld settings` command on the settings file `config`, writing to `out`; returns
/// the exit status.
pub fn cli(cmd: SettingsCommand, config: &Path, out: &mut impl Write) -> Result<i32> {
    match cmd {
        SettingsCommand::List => {
            let settings = load(config)?;
            if !config.exists() {
                writeln!(
                    out,
                    "# {} does not exist: these are the defaults",
                    config.display()
                )?;
            }
            list(&settings, out)?;
            Ok(0)
        }
        SettingsCommand::Get { name } => {
            find(&name)?;
            writeln!(out, "{}", load(config)?.get(&name)?)?;
            Ok(0)
        }
        SettingsCommand::Set { name, value } => {
            // The error names the setting at fault: this one, or another in the file.
            let change = set_in_file(config, &name, &value)
                .with_context(|| format!("setting {name} in {}", config.display()))?;
            let effect = if change.old == change.new {
                "unchanged"
            } else if change.restart_required {
                "restart required: takes effect when rilld next starts"
            } else {
                "no restart required: takes effect when rilld re-reads its settings (SIGHUP)"
            };
            writeln!(
                out,
                "{}: {} -> {} ({effect})",
                change.name, change.old, change.new
            )?;
            Ok(0)
        }
        SettingsCommand::Check { file } => {
            let file = file.as_deref().unwrap_or(config);
            let problems = Settings::check_file_lines(file);
            if problems.is_empty() {
                writeln!(out, "ok")?;
                return Ok(0);
            }
            for p in &problems {
                match p.line {
                    Some(line) => writeln!(out, "{}:{line}: {}", file.display(), p.error)?,
                    None => writeln!(out, "{}", p.error)?,
                }
            }
            Ok(1)
        }
    }
}

fn load(config: &Path) -> Result<Settings> {
    Settings::load_or_default(config).with_context(|| {
        format!(
            "reading the settings file {0} (`rilld settings check {0}` lists every problem)",
            config.display()
        )
    })
}

fn list(settings: &Settings, out: &mut impl Write) -> std::io::Result<()> {
    let rows: Vec<[String; 5]> = settings
        .list()
        .into_iter()
        .map(|(def, value)| {
            [
                def.name.to_string(),
                value,
                def.default.to_string(),
                if def.restart { "yes" } else { "no" }.to_string(),
                def.allowed(),
            ]
        })
        .collect();
    let header = ["NAME", "VALUE", "DEFAULT", "RESTART", "ALLOWED"].map(String::from);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<0$}  ", widths[i]));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}
