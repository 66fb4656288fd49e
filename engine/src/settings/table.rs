//! The table: every setting's definition, and how one value is read and checked.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use super::{Result, SettingsError};

/// The guide's settings are 32-bit registry values; where it says "any integer" or
/// "dependent on the disk space", this is the largest value accepted.
const DWORD_MAX: u64 = u32::MAX as u64;

/// What a setting holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An integer from `min` to `max` (in the setting's unit). `zero`, when set, is the
    /// meaning of 0 where 0 is allowed below `min`; `unlimited` allows the word
    /// `"unlimited"`.
    Integer {
        min: u64,
        max: u64,
        zero: Option<&'static str>,
        unlimited: bool,
    },
    /// 0 or 1 (TOML `false` and `true` are accepted too).
    Boolean,
    /// An absolute path to a directory.
    Path,
    /// One of the listed integers, each with its meaning.
    Enumeration(&'static [(u64, &'static str)]),
}

const fn int(min: u64, max: u64) -> Kind {
    Kind::Integer {
        min,
        max,
        zero: None,
        unlimited: false,
    }
}

/// A setting's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// The value of an integer or an enumeration.
    Int(u64),
    /// The word `unlimited`, where the setting allows it.
    Unlimited,
    Bool(bool),
    /// An absolute path (TOML strings are UTF-8, so paths are too).
    Path(Cow<'static, str>),
}

impl fmt::Display for Value {
    /// The value as `get` shows it and `set` accepts it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Unlimited => f.write_str("unlimited"),
            Value::Bool(b) => f.write_str(if *b { "1" } else { "0" }),
            Value::Path(p) => f.write_str(p),
        }
    }
}

impl Value {
    /// The value as it is written in the settings file.
    pub(super) fn to_toml(&self) -> String {
        match self {
            Value::Unlimited => "\"unlimited\"".into(),
            Value::Path(p) => toml::Value::String(p.to_string()).to_string(),
            other => other.to_string(),
        }
    }
}

/// One setting's definition.
#[derive(Debug)]
pub struct SettingDef {
    /// The guide's name: the key in the settings file (case-sensitive).
    pub name: &'static str,
    pub kind: Kind,
    /// The unit of an integer (`MB`, `percent`, `ops`, `bytes`); empty otherwise.
    pub unit: &'static str,
    pub default: Value,
    /// Whether a change takes effect only after the service restarts.
    pub restart: bool,
    /// One line for `rilld settings list` and the settings file.
    pub help: &'static str,
}

/// Defines [`SETTINGS`] and, from the same names, the private `Id` used by the accessors,
/// so a setting's name is written once.
macro_rules! settings_table {
    ($($name:ident { $($field:ident: $value:expr),* $(,)? })*) => {
        /// A setting's position in [`SETTINGS`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(super) enum Id { $($name),* }

        /// Every setting of the engine, in the order `list` and the settings file show them.
        pub const SETTINGS: &[SettingDef] = &[
            $(SettingDef { name: stringify!($name), $($field: $value),* }),*
        ];
    };
}

settings_table! {
    // Memory queue.
    QMemoryBufferMax {
        kind: int(32, 4095),
        unit: "MB",
        default: Value::Int(256),
        restart: true,
        help: "system memory, in MB, for the memory queue; past it operations are queued to disk",
    }
    // Linux section: "any valid percentage", default 100, restart rule not given: the
    // Windows section's "Yes" is used. 0 is refused: with MemoryAllocatorCallbackMode 1 it
    // would stop draining the driver before the first operation and never resume.
    MemoryQueueToDiskThreshold {
        kind: int(1, 100),
        unit: "percent",
        default: Value::Int(100),
        restart: true,
        help: "percentage of QMemoryBufferMax that triggers MemoryAllocatorCallbackMode",
    }
    // The guide: "0 no limit, 1 or any larger integer"; capped at a 32-bit value.
    OpBufferSize {
        kind: Kind::Integer { min: 1, max: DWORD_MAX, zero: Some("no limit"), unlimited: false },
        unit: "ops",
        default: Value::Int(0),
        restart: false,
        help: "operations the memory queue holds before queuing to disk",
    }
    // Disk queue. The guide's default is "the location specified during the installation";
    // rill installs under /var/lib/rill.
    QJournalDir {
        kind: Kind::Path,
        unit: "",
        default: Value::Path(Cow::Borrowed("/var/lib/rill/queue")),
        restart: false,
        help: "directory of the disk queue (best on a dedicated, fast local volume)",
    }
    QJournalFileSize {
        kind: int(1, 4095),
        unit: "MB",
        default: Value::Int(5),
        restart: false,
        help: "size, in MB, of each disk-queue file",
    }
    // Default "Unlimited"; 0 disables disk queuing (the guide). Its Linux entry gives no
    // restart rule: the Windows section's "No" is used. Upper bound: a 32-bit value.
    QJournalSpaceMax {
        kind: Kind::Integer {
            min: 1,
            max: DWORD_MAX,
            zero: Some("disk queuing disabled"),
            unlimited: true,
        },
        unit: "MB",
        default: Value::Unlimited,
        restart: false,
        help: "disk space, in MB, the disk queue may use in QJournalDir; reaching it auto-disconnects",
    }
    // Range "dependent on the amount of physical disk space": 0 (no reserve) to 32 bits.
    QJournalFreeSpaceMin {
        kind: int(0, DWORD_MAX),
        unit: "MB",
        default: Value::Int(250),
        restart: false,
        help: "disk space, in MB, that must stay free in QJournalDir",
    }
    QLogWriteThrough {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(false),
        restart: false,
        help: "write the disk queue through to the disk (fewer auto-disconnects, slower source)",
    }
    // "any valid percentage": 0 is refused, it would raise the alert with an empty queue.
    QueueSizeAlertThreshold {
        kind: int(1, 100),
        unit: "percent",
        default: Value::Int(50),
        restart: true,
        help: "percentage of the queue in use that raises an alert (event 4072)",
    }
    // Not in the Linux section: values, default 2 and restart "Yes" from the Windows section.
    MemoryAllocatorCallbackMode {
        kind: Kind::Enumeration(&[
            (0, "auto-disconnect"),
            (1, "stop draining the driver until the target resumes the source"),
            (2, "queue to disk"),
        ]),
        unit: "",
        default: Value::Int(2),
        restart: true,
        help: "what happens when MemoryQueueToDiskThreshold is reached",
    }
    // Transmit.
    MaxWriteChunkSize {
        kind: int(1, 131_072),
        unit: "bytes",
        default: Value::Int(65_536),
        restart: false,
        help: "largest merged write operation, in bytes, sent during replication",
    }
    // Not in the Linux section: default 1 and restart "Yes" from the Windows section.
    UseChangeJournal {
        kind: Kind::Boolean,
        unit: "",
        default: Value::Bool(true),
        restart: true,
        help: "track changed files so only they are remirrored after a reboot or auto-disconnect",
    }
    // Default "the location where the files were installed": /var/lib/rill (FHS).
    DataPath {
        kind: Kind::Path,
        unit: "",
        default: Value::Path(Cow::Borrowed("/var/lib/rill")),
        restart: false,
        help: "directory of the engine's databases (change journal, replication sets, connections)",
    }
    // Default "the location where the files were installed": /var/log/rill (FHS).
    LogDir {
        kind: Kind::Path,
        unit: "",
        default: Value::Path(Cow::Borrowed("/var/log/rill")),
        restart: true,
        help: "directory of the engine log, verification logs and statistics files",
    }
}

impl SettingDef {
    /// What the setting accepts, e.g. `32 to 4095 (MB)`.
    pub fn allowed(&self) -> String {
        match self.kind {
            Kind::Integer {
                min,
                max,
                zero,
                unlimited,
            } => {
                let unit = if self.unit.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", self.unit)
                };
                let mut parts = Vec::new();
                if unlimited {
                    parts.push("\"unlimited\"".to_string());
                }
                if let Some(z) = zero {
                    parts.push(format!("0 ({z})"));
                }
                parts.push(format!("{min} to {max}{unit}"));
                or_list(parts)
            }
            Kind::Boolean => "0 or 1".into(),
            Kind::Path => "an absolute path".into(),
            Kind::Enumeration(values) => or_list(
                values
                    .iter()
                    .map(|(v, meaning)| format!("{v} ({meaning})"))
                    .collect(),
            ),
        }
    }

    /// What a value of the wrong type should have been.
    fn expected(&self) -> String {
        match self.kind {
            Kind::Integer {
                unlimited: true, ..
            } => format!("an integer or \"unlimited\": {}", self.allowed()),
            Kind::Integer { .. } | Kind::Enumeration(_) => {
                format!("an integer: {}", self.allowed())
            }
            Kind::Boolean => "0 or 1".into(),
            Kind::Path => "an absolute path, in quotes".into(),
        }
    }

    /// Parses a value as `set` receives it (`1024`, `unlimited`, `1`, `/var/lib/rill`).
    pub fn parse(&self, text: &str) -> Result<Value> {
        match self.kind {
            Kind::Path => self.check_path(text),
            Kind::Boolean => match text.trim() {
                "0" | "false" => Ok(Value::Bool(false)),
                "1" | "true" => Ok(Value::Bool(true)),
                _ => Err(self.wrong_type(text)),
            },
            Kind::Integer { unlimited, .. }
                if unlimited && text.trim().eq_ignore_ascii_case("unlimited") =>
            {
                Ok(Value::Unlimited)
            }
            Kind::Integer { .. } | Kind::Enumeration(_) => {
                let t = text.trim();
                let digits = t.strip_prefix('-').unwrap_or(t);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(self.wrong_type(text));
                }
                // All digits: a number too large for i128 is still a number, out of range.
                let n = t.parse::<i128>().unwrap_or(i128::MAX);
                self.check_int(n, t)
            }
        }
    }

    /// Converts a value read from the settings file.
    pub(super) fn read_toml(&self, v: &toml::Value) -> Result<Value> {
        use toml::Value as T;
        match (self.kind, v) {
            (Kind::Path, T::String(s)) => self.check_path(s),
            (Kind::Boolean, T::Integer(0) | T::Boolean(false)) => Ok(Value::Bool(false)),
            (Kind::Boolean, T::Integer(1) | T::Boolean(true)) => Ok(Value::Bool(true)),
            (
                Kind::Integer {
                    unlimited: true, ..
                },
                T::String(s),
            ) if s.eq_ignore_ascii_case("unlimited") => Ok(Value::Unlimited),
            (Kind::Integer { .. } | Kind::Enumeration(_), T::Integer(n)) => {
                self.check_int(i128::from(*n), &n.to_string())
            }
            _ => Err(self.wrong_type(&shown(v))),
        }
    }

    fn check_int(&self, n: i128, shown: &str) -> Result<Value> {
        let ok = match self.kind {
            Kind::Integer { min, max, zero, .. } => {
                (n == 0 && zero.is_some()) || (i128::from(min)..=i128::from(max)).contains(&n)
            }
            Kind::Enumeration(values) => values.iter().any(|(v, _)| i128::from(*v) == n),
            Kind::Boolean | Kind::Path => false,
        };
        if ok {
            // In range, so 0 <= n <= u32::MAX.
            Ok(Value::Int(n as u64))
        } else {
            Err(self.out_of_range(shown, self.allowed()))
        }
    }

    fn check_path(&self, text: &str) -> Result<Value> {
        let why = if text.is_empty() {
            Some("it is empty".to_string())
        } else if text.contains('\0') {
            Some("it contains a NUL character".into())
        } else if text.trim() != text {
            Some("it begins or ends with white space".into())
        } else if !Path::new(text).is_absolute() {
            Some("it must be absolute (begin with /)".into())
        } else {
            match std::fs::metadata(text) {
                Ok(m) if !m.is_dir() => Some("it exists and is not a directory".into()),
                _ => None,
            }
        };
        match why {
            Some(why) => Err(SettingsError::BadPath {
                name: self.name.into(),
                value: text.into(),
                why,
            }),
            None => Ok(Value::Path(Cow::Owned(text.into()))),
        }
    }

    fn wrong_type(&self, value: &str) -> SettingsError {
        SettingsError::WrongType {
            name: self.name.into(),
            value: value.into(),
            expected: self.expected(),
        }
    }

    pub(super) fn out_of_range(&self, value: &str, allowed: String) -> SettingsError {
        SettingsError::OutOfRange {
            name: self.name.into(),
            value: value.into(),
            allowed,
        }
    }
}

/// `a`, `a or b`, `a, b, or c`.
fn or_list(mut parts: Vec<String>) -> String {
    match parts.len() {
        0 => String::new(),
        1 => parts.remove(0),
        2 => format!("{} or {}", parts[0], parts[1]),
        n => {
            let last = parts.remove(n - 1);
            format!("{}, or {last}", parts.join(", "))
        }
    }
}

/// A TOML value as an error message shows it: on one line, strings in quotes.
fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(_) => "a table".into(),
        other => other.to_string(),
    }
}

/// The name of the setting `id`.
pub(super) fn name(id: Id) -> &'static str {
    SETTINGS[id as usize].name
}
