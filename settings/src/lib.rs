//! The engine's settings store ("the registry").
//!
//! Every setting `rilld` obeys is defined exactly once, in [`SETTINGS`]: its name, kind,
//! unit, allowed values, default, restart rule and a one-line description. Parsing,
//! validation, error messages, `rilld settings list`, the generated settings file and the
//! typed accessors the engine calls all read that one table, so they cannot disagree.
//!
//! The names, units, ranges, defaults and restart rules are those of the reference guide
//! (chapter 12, "Linux server and job settings"); administrators look them up there, so a
//! setting has the guide's name, spelled and capitalised as the guide spells it. Where the
//! Linux section is silent, the table follows the guide's Windows section or chooses what an
//! administrator would expect, and its comment says which.
//!
//! Settings live in one TOML file whose keys are the setting names
//! (`QMemoryBufferMax = 1024`, `QJournalDir = "/var/lib/rill/queue"`); a missing key takes
//! its default. An unknown key is an error, not something to skip: a misspelt
//! `QMemoryBuferMax = 4095` that was ignored would leave the engine running with the
//! default 256 MB while the administrator believes otherwise, and nothing would say so.
//! The error names the key and, when one is close (or differs only in case), the setting
//! that was probably meant.
//! [`set_in_file`] (`rilld settings set`) changes one key of the file and keeps the rest,
//! comments included, so a hand-written file survives it.
//!
//! Every value is checked when it is read, and every message names the key, the value and
//! what is allowed, e.g. `QMemoryBufferMax = 0 is out of range: allowed 32 to 4095 (MB)`.
//! [`Settings::check_file`] reports every problem of a file, not just the first.
//!
//! Settings whose change needs no restart are taken over by [`Settings::apply_live`]; the
//! engine reads them at the point of use. The others (the locations of open files among
//! them: `DataPath`, `QJournalDir`) wait for the next start of the service.
//!
//! This is a crate of its own, not a module of the engine, because `rillctl` reads the same
//! file to find rilld (its `ManagementPort` and `DataPath`, where the management token is)
//! and must report a bad file exactly as rilld does, without linking the engine (tokio,
//! rustls, redb, aya). The engine re-exports it as `rill_engine::settings`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod access;
mod check;
mod cli;
mod file;
mod rules;
mod table;
#[cfg(test)]
mod tests;

pub use access::{CallbackMode, Roles};
pub use cli::{cli, SettingsCommand};
pub use file::set_in_file;
pub use table::{Kind, SettingDef, Value, SETTINGS};

/// Where `rilld` reads its settings unless told otherwise.
pub const DEFAULT_SETTINGS_FILE: &str = "/etc/rill/rill.toml";

/// The most disk-queue files kept at once, whatever `QJournalSpaceMax` says: the guide's
/// "even if you are using the unlimited option, ... will only store 16,384 log files".
pub const MAX_QUEUE_FILES: u64 = 16_384;

const MB: u64 = 1 << 20;

/// What is wrong with a setting or a settings file.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("unknown setting `{name}`{}", match nearest {
        Some(n) => format!(" (did you mean `{n}`?)"),
        None => " (`rilld settings list` shows every setting)".into(),
    })]
    UnknownName {
        name: String,
        nearest: Option<String>,
    },
    #[error("{name} = {value} has the wrong type: expected {expected}")]
    WrongType {
        name: String,
        value: String,
        expected: String,
    },
    #[error("{name} = {value} is out of range: allowed {allowed}")]
    OutOfRange {
        name: String,
        value: String,
        allowed: String,
    },
    #[error("{name} = {value} is not a valid list: {why}; allowed {allowed}")]
    BadList {
        name: String,
        value: String,
        why: String,
        allowed: String,
    },
    #[error("{name} = {value:?} is not a valid path: {why}")]
    BadPath {
        name: String,
        value: String,
        why: String,
    },
    #[error("{name} = {value:?} is not a valid file name: {why}; allowed {allowed}")]
    BadName {
        name: String,
        value: String,
        why: String,
        allowed: String,
    },
    #[error("{}: not a valid TOML file: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = SettingsError> = std::result::Result<T, E>;

/// The definition of the setting a command names (`rilld settings`, the management API):
/// the guide's name in any case, as `rill-driver` takes its settings' names.
pub fn find(name: &str) -> Result<&'static SettingDef> {
    Ok(&SETTINGS[named(name)?])
}

/// The index of the setting a command names; see [`find`].
fn named(name: &str) -> Result<usize> {
    SETTINGS
        .iter()
        .position(|d| d.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| unknown(name))
}

/// The index of the setting a settings file's key names: exactly as the guide spells it
/// (as in `rill-driver`'s file), so that a file reads the same to anyone searching it for
/// the guide's names; a key in another case is refused with the name it was meant to be.
fn index(name: &str) -> Result<usize> {
    SETTINGS
        .iter()
        .position(|d| d.name == name)
        .ok_or_else(|| unknown(name))
}

fn unknown(name: &str) -> SettingsError {
    SettingsError::UnknownName {
        name: name.into(),
        nearest: nearest(name).map(String::from),
    }
}

/// The setting `name` was probably meant to be: one that differs only in case, or the
/// closest by edit distance when that is close enough to be a typo.
fn nearest(name: &str) -> Option<&'static str> {
    let lower = name.to_lowercase();
    let (best, score) = SETTINGS
        .iter()
        .map(|d| {
            let score = strsim::normalized_damerau_levenshtein(&lower, &d.name.to_lowercase());
            (d.name, score)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    // 1.0: the same name in another case. 0.6: e.g. three typos in a 16-letter name.
    (score >= 0.6).then_some(best)
}

/// The result of [`Settings::set`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub name: &'static str,
    pub old: String,
    pub new: String,
    /// The value changed and takes effect only after the service restarts.
    pub restart_required: bool,
}

/// A problem found in a settings file, with the line it is on when known.
#[derive(Debug)]
pub(crate) struct Problem {
    pub line: Option<usize>,
    pub error: SettingsError,
}

/// Every problem of a settings file, as `rilld settings check` prints them and as a command
/// that starts from the file refuses it: so that a refused start names every line to fix,
/// not just the first, the same way `check` does.
#[derive(Debug)]
pub struct FileProblems {
    path: PathBuf,
    problems: Vec<Problem>,
}

impl FileProblems {
    /// The problems of the file `path`; `None` when there is none.
    pub fn of(path: &Path) -> Option<FileProblems> {
        let problems = Settings::check_file_lines(path);
        (!problems.is_empty()).then(|| FileProblems {
            path: path.into(),
            problems,
        })
    }

    /// One line a problem, `FILE:LINE: problem` (or just the problem where it is not on a
    /// line), in the order of the file.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.problems.iter().map(|p| match p.line {
            Some(line) => format!("{}:{line}: {}", self.path.display(), p.error),
            None => p.error.to_string(),
        })
    }
}

impl std::fmt::Display for FileProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "the settings file {} has {n} problem{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for line in self.lines() {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileProblems {}

/// The engine's settings: every value valid, alone and together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// One value per entry of [`SETTINGS`], of the kind it defines.
    values: Vec<Value>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            values: SETTINGS.iter().map(|d| d.default.clone()).collect(),
        }
    }
}

impl Settings {
    /// Reads the settings file `path`, which must exist. Fails with the first problem in
    /// it; [`Settings::check_file`] lists them all.
    pub fn load(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Io {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Reads the settings file `path`, or returns the defaults when it does not exist.
    pub fn load_or_default(path: &Path) -> Result<Settings> {
        match Self::load(path) {
            Err(SettingsError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Settings::default())
            }
            other => other,
        }
    }

    /// The settings a command starts with: those of the file `path`, or the defaults when
    /// it does not exist. A file with problems is refused with all of them.
    pub fn for_start(path: &Path) -> Result<Settings, FileProblems> {
        let (settings, problems) = Self::read_file(path);
        match problems.first() {
            None => Ok(settings),
            Some(Problem {
                error: SettingsError::Io { source, .. },
                ..
            }) if source.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Some(_) => Err(FileProblems {
                path: path.into(),
                problems,
            }),
        }
    }

    /// Parses the text of a settings file.
    pub fn from_toml_str(text: &str) -> Result<Settings> {
        Self::parse(text, Path::new("(settings text)"))
    }

    /// Every problem of the settings file `path`, in the order of the file; empty when
    /// `load` would succeed.
    pub fn check_file(path: &Path) -> Vec<SettingsError> {
        Self::check_file_lines(path)
            .into_iter()
            .map(|p| p.error)
            .collect()
    }

    pub(crate) fn check_file_lines(path: &Path) -> Vec<Problem> {
        Self::read_file(path).1
    }

    /// What the file `path` gives, as [`Settings::read`]; a file that cannot be read is its
    /// one problem.
    fn read_file(path: &Path) -> (Settings, Vec<Problem>) {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::read(&text, path),
            Err(source) => (
                Settings::default(),
                vec![Problem {
                    line: None,
                    error: SettingsError::Io {
                        path: path.into(),
                        source,
                    },
                }],
            ),
        }
    }

    fn parse(text: &str, path: &Path) -> Result<Settings> {
        let (settings, problems) = Self::read(text, path);
        match problems.into_iter().next() {
            Some(p) => Err(p.error),
            None => Ok(settings),
        }
    }

    /// The settings a file's text gives (defaults in place of bad values) and all its
    /// problems, ordered by line.
    fn read(text: &str, path: &Path) -> (Settings, Vec<Problem>) {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let mut settings = Settings::default();
        let table: BTreeMap<String, toml::Spanned<toml::Value>> = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                // On one line: the message may span several.
                let message = e.message().trim().lines().collect::<Vec<_>>().join("; ");
                let detail = match e.span() {
                    Some(span) => format!("line {}: {message}", line_of(span.start)),
                    None => message,
                };
                let error = SettingsError::Parse {
                    path: path.into(),
                    detail,
                };
                return (settings, vec![Problem { line: None, error }]);
            }
        };
        let mut lines = BTreeMap::new();
        let mut problems = Vec::new();
        for (key, value) in &table {
            let line = Some(line_of(value.span().start));
            let result = index(key).and_then(|i| {
                lines.insert(i, line);
                SETTINGS[i].read_toml(value.get_ref()).map(|v| (i, v))
            });
            match result {
                Ok((i, v)) => settings.values[i] = v,
                Err(error) => problems.push(Problem { line, error }),
            }
        }
        for (name, error) in settings.cross_problems(&|n| table.contains_key(n)) {
            let line = index(name)
                .ok()
                .and_then(|i| lines.get(&i).copied().flatten());
            problems.push(Problem { line, error });
        }
        problems.sort_by_key(|p| p.line);
        (settings, problems)
    }

    /// The value of `name` as text (`256`, `unlimited`, `1`, `/var/lib/rill/queue`).
    pub fn get(&self, name: &str) -> Result<String> {
        Ok(self.values[named(name)?].to_string())
    }

    /// Sets `name` from text as [`SettingDef::parse`] reads it, after checking it alone and
    /// against the other settings; nothing changes when it is refused.
    pub fn set(&mut self, name: &str, text: &str) -> Result<Change> {
        let i = named(name)?;
        let def = &SETTINGS[i];
        let new = def.parse(text)?;
        let mut candidate = self.clone();
        candidate.values[i] = new.clone();
        if let Some((_, e)) = candidate
            .cross_problems(&|n| n == def.name)
            .into_iter()
            .next()
        {
            return Err(e);
        }
        let old = std::mem::replace(&mut self.values[i], new);
        let new = &self.values[i];
        Ok(Change {
            name: def.name,
            old: old.to_string(),
            new: new.to_string(),
            restart_required: def.restart && old != *new,
        })
    }

    /// Every setting with its current value as text.
    pub fn list(&self) -> Vec<(&'static SettingDef, String)> {
        SETTINGS
            .iter()
            .zip(&self.values)
            .map(|(d, v)| (d, v.to_string()))
            .collect()
    }

    /// The settings as a settings file: every setting, each with a comment saying what it
    /// is, what it allows, its default and whether a change needs a restart.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# rilld settings. Names, ranges and defaults are those of the reference guide,\n\
             # chapter 12. A missing setting takes its default.\n",
        );
        for (def, value) in SETTINGS.iter().zip(&self.values) {
            out.push_str(&format!(
                "\n{}{} = {}\n",
                def.file_comment(),
                def.name,
                value.to_toml()
            ));
        }
        out
    }

    /// Takes from `other` (settings just re-read) every value that applies without a
    /// restart, and returns the names of those that differ but need a restart (left as
    /// they are).
    pub fn apply_live(&mut self, other: &Settings) -> Vec<&'static str> {
        let mut pending = Vec::new();
        for (i, def) in SETTINGS.iter().enumerate() {
            if self.values[i] == other.values[i] {
                continue;
            }
            if def.restart {
                pending.push(def.name);
            } else {
                log::info!(
                    "setting {} changed from {} to {}",
                    def.name,
                    self.values[i],
                    other.values[i]
                );
                self.values[i] = other.values[i].clone();
            }
        }
        // Every rule between settings pairs settings with the same restart rule, so a mix
        // of `self` and `other` is as valid as they are (tested).
        debug_assert!(self.cross_problems(&|_| false).is_empty());
        pending
    }
}
