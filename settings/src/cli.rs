//! `rilld settings list | get NAME | set NAME VALUE | check [FILE]`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{find, set_in_file, FileProblems, Settings};

/// `rilld settings ...`
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum SettingsCommand {
    /// List every setting: value, default, whether a change needs a restart, allowed values.
    List,
    /// Print one setting's value.
    Get {
        /// The setting's name as the reference guide spells it (any case), e.g.
        /// QMemoryBufferMax.
        name: String,
    },
    /// Set one setting in the settings file, keeping the file's other lines and comments.
    Set {
        /// The setting's name as the reference guide spells it (any case), e.g.
        /// QMemoryBufferMax; the file gets the guide's spelling.
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
            let settings = Settings::for_start(config)?;
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
            writeln!(out, "{}", Settings::for_start(config)?.get(&name)?)?;
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
            let Some(problems) = FileProblems::of(file) else {
                writeln!(out, "ok")?;
                return Ok(0);
            };
            for line in problems.lines() {
                writeln!(out, "{line}")?;
            }
            Ok(1)
        }
    }
}

/// The width `rilld settings list` keeps to, so that it reads in a terminal of 100 columns.
const LIST_WIDTH: usize = 100;

/// Each setting as a block: `Name = value (default ...; restart rule)`, then what it allows
/// and what it is for beneath it, indented; every line wrapped to [`LIST_WIDTH`] (but for a
/// single word longer than that).
fn list(settings: &Settings, out: &mut impl Write) -> std::io::Result<()> {
    for (def, value) in settings.list() {
        let restart = if def.restart {
            "a change needs a restart"
        } else {
            "a change applies on reload"
        };
        let head = format!(
            "{} = {value} (default {}; {restart})",
            def.name, def.default
        );
        let allowed = format!("allowed: {}", def.allowed());
        for line in wrap(&head, "", "    ")
            .into_iter()
            .chain(wrap(&allowed, "    ", "      "))
            .chain(wrap(def.help, "    ", "    "))
        {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// `text` in lines of at most [`LIST_WIDTH`] columns, broken between words: the first
/// line starts with `first`, the others with `rest`.
fn wrap(text: &str, first: &str, rest: &str) -> Vec<String> {
    let mut lines = vec![first.to_string()];
    let mut empty = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let line = lines.last_mut().expect("starts with one line");
        if !empty && line.chars().count() + 1 + word.chars().count() > LIST_WIDTH {
            lines.push(format!("{rest}{word}"));
        } else {
            if !empty {
                line.push(' ');
            }
            line.push_str(word);
        }
        empty = false;
    }
    lines
}
