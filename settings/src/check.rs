//! How a setting's value is read from text or TOML, checked, and described.

use std::borrow::Cow;
use std::path::Path;

use super::table::{Kind, SettingDef, Value, FILE_NAME_MAX};
use super::{Result, SettingsError};

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
            Kind::FileName => {
                format!("a file name: 1 to {FILE_NAME_MAX} bytes, no '/', not \".\" or \"..\"")
            }
            Kind::Enumeration(values) => or_list(
                values
                    .iter()
                    .map(|(v, meaning)| format!("{v} ({meaning})"))
                    .collect(),
            ),
            Kind::List { max_items, max_len } => format!(
                "up to {max_items} file extensions, each 1 to {max_len} letters, digits, \
                 '_', '-', '+' or '~' (no dots or slashes): a TOML array of strings, or one \
                 string delimited by periods (\"mp3.zip\"); empty for none"
            ),
        }
    }

    /// The comment above the setting in a settings file: what it is, what it allows, its
    /// default and whether a change needs a restart.
    pub(super) fn file_comment(&self) -> String {
        let restart = if self.restart {
            "A change needs a service restart"
        } else {
            "A change applies without a restart"
        };
        format!(
            "# {}\n# Allowed: {}. Default: {}. {restart}.\n",
            self.help,
            self.allowed(),
            self.default
        )
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
            Kind::FileName => format!("{}, in quotes", self.allowed()),
            Kind::List { .. } => format!("a list: {}", self.allowed()),
        }
    }

    /// Parses a value as `set` receives it (`1024`, `unlimited`, `1`, `/var/lib/rill`,
    /// `mp3.zip` or `["mp3", "zip"]`).
    pub fn parse(&self, text: &str) -> Result<Value> {
        match self.kind {
            Kind::Path => self.check_path(text),
            Kind::FileName => self.check_file_name(text),
            // The form the settings file shows, so a value copied from it is accepted.
            Kind::List { .. } if text.trim_start().starts_with('[') => {
                match toml::from_str::<toml::Table>(&format!("v = {text}")) {
                    Ok(mut t) => match t.remove("v") {
                        Some(v) => self.read_toml(&v),
                        None => Err(self.wrong_type(text)),
                    },
                    Err(_) => Err(self.wrong_type(text)),
                }
            }
            Kind::List { .. } => self.check_list(text.split(is_delimiter), text),
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
            (Kind::FileName, T::String(s)) => self.check_file_name(s),
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
            (Kind::List { .. }, T::String(s)) => self.check_list(s.split(is_delimiter), &shown(v)),
            (Kind::List { .. }, T::Array(items)) => {
                let mut words = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        // In an array each string is one extension: a delimiter inside it
                        // is refused by check_list, not split on.
                        T::String(s) if !s.is_empty() => words.push(s.as_str()),
                        T::String(_) => {
                            return Err(self.bad_list(&shown(v), "an extension is empty".into()))
                        }
                        _ => return Err(self.wrong_type(&shown(v))),
                    }
                }
                self.check_list(words.into_iter(), &shown(v))
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
            Kind::Boolean | Kind::Path | Kind::FileName | Kind::List { .. } => false,
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

    /// A plain file name: one component, so the file stays in the directory it is meant
    /// for.
    fn check_file_name(&self, text: &str) -> Result<Value> {
        let why = if text.is_empty() {
            Some("it is empty".to_string())
        } else if text.contains('/') {
            Some("it contains a '/' (a name, not a path)".into())
        } else if text.contains('\0') {
            Some("it contains a NUL character".into())
        } else if text == "." || text == ".." {
            Some("it names a directory".into())
        } else if text.trim() != text {
            Some("it begins or ends with white space".into())
        } else if text.len() > FILE_NAME_MAX {
            Some(format!("it is longer than {FILE_NAME_MAX} bytes"))
        } else {
            None
        };
        match why {
            Some(why) => Err(SettingsError::BadName {
                name: self.name.into(),
                value: text.into(),
                why,
                allowed: self.allowed(),
            }),
            None => Ok(Value::Name(Cow::Owned(text.into()))),
        }
    }

    /// Checks and lower-cases the words of a list; empty words (two delimiters in a row,
    /// or one at an end) are skipped.
    fn check_list<'a>(&self, words: impl Iterator<Item = &'a str>, shown: &str) -> Result<Value> {
        let Kind::List { max_items, max_len } = self.kind else {
            return Err(self.wrong_type(shown));
        };
        let mut items = Vec::new();
        for word in words.filter(|w| !w.is_empty()) {
            let why = if let Some(c) = word.chars().find(|&c| !is_word_char(c)) {
                Some(match c {
                    '.' => format!("{word:?} contains a dot (write the extension without it)"),
                    '/' | '\\' => format!("{word:?} contains a slash (an extension, not a path)"),
                    c => format!("{word:?} contains {c:?}"),
                })
            } else if word.chars().count() > max_len {
                Some(format!("{word:?} is longer than {max_len} characters"))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(self.bad_list(shown, why));
            }
            items.push(Cow::Owned(word.to_lowercase()));
        }
        if items.len() > max_items {
            let why = format!("it has {} extensions", items.len());
            return Err(self.bad_list(shown, why));
        }
        Ok(Value::List(Cow::Owned(items)))
    }

    fn bad_list(&self, value: &str, why: String) -> SettingsError {
        SettingsError::BadList {
            name: self.name.into(),
            value: value.into(),
            why,
            allowed: self.allowed(),
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

/// What separates the words of a list written as one string: the guide's periods, and
/// the commas and white space an administrator may write instead.
fn is_delimiter(c: char) -> bool {
    c == '.' || c == ',' || c.is_whitespace()
}

/// What an extension is made of. Wildcards, quotes and delimiters are left out so that
/// `*.mp3` or a pasted path is an error, not an entry that never matches.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '+' | '~')
}
