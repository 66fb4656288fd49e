//! The driver's settings: defined once here with their ranges and defaults, stored in a
//! TOML file (default `/etc/rill/driver.toml`), and mirrored into the pinned maps the eBPF
//! programs read. Names follow the product's CamelCase setting style.

use std::path::{Path, PathBuf};

use rill_abi::DriverConfig;
use serde::{Deserialize, Serialize};

use crate::{DriverError, Result};

pub const DEFAULT_SETTINGS_FILE: &str = "/etc/rill/driver.toml";

/// How the driver captures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// eBPF, falling back to fanotify when the programs cannot load.
    Auto,
    Ebpf,
    Fanotify,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct DriverSettings {
    #[serde(rename = "RingSizeMB")]
    pub ring_size_mb: u32,
    pub inline_data_max: u32,
    pub throttle_start_percent: u32,
    pub stop_replicating_percent: u32,
    pub watched_paths: Vec<PathBuf>,
    pub excluded_pids: Vec<u32>,
    pub capture_mode: CaptureMode,
}

impl Default for DriverSettings {
    fn default() -> Self {
        let c = DriverConfig::default();
        DriverSettings {
            ring_size_mb: 32,
            inline_data_max: c.inline_max,
            throttle_start_percent: c.throttle_start_pct,
            stop_replicating_percent: c.stop_pct,
            watched_paths: Vec::new(),
            excluded_pids: Vec::new(),
            capture_mode: CaptureMode::Auto,
        }
    }
}

/// Whether directories named by a setting must exist now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Existence {
    /// Setting a value: a typo must be caught.
    Required,
    /// Reading the settings file: the directory may have gone since.
    NotRequired,
}

/// One setting's description, as `rill-driver get` and error messages show it.
#[derive(Debug)]
pub struct SettingInfo {
    pub name: &'static str,
    pub allowed: &'static str,
    /// Whether a change takes effect only at the next `load`.
    pub needs_reload: bool,
    pub help: &'static str,
}

pub const SETTINGS: &[SettingInfo] = &[
    SettingInfo {
        name: "RingSizeMB",
        allowed: "a power of two from 1 to 1024 (MB)",
        needs_reload: true,
        help: "size of the capture ring",
    },
    SettingInfo {
        name: "InlineDataMax",
        allowed: "0 to 65536 (bytes)",
        needs_reload: false,
        help: "writes up to this size carry their data inline; larger ones are range-only",
    },
    SettingInfo {
        name: "ThrottleStartPercent",
        allowed: "1 to 100, at most StopReplicatingPercent",
        needs_reload: false,
        help: "ring fill at which writes become range-only",
    },
    SettingInfo {
        name: "StopReplicatingPercent",
        allowed: "1 to 100, at least ThrottleStartPercent",
        needs_reload: false,
        help: "ring fill at which only dirty-file marks are kept",
    },
    SettingInfo {
        name: "WatchedPaths",
        allowed:
            "comma-separated absolute paths of existing directories, or empty for all file systems",
        needs_reload: false,
        help: "file systems captured in the kernel",
    },
    SettingInfo {
        name: "ExcludedPids",
        allowed: "comma-separated process ids (1 to 4194304), or empty",
        needs_reload: false,
        help: "processes whose operations are not captured",
    },
    SettingInfo {
        name: "CaptureMode",
        allowed: "auto, ebpf or fanotify",
        needs_reload: true,
        help: "capture mechanism",
    },
];

fn bad(name: &str, value: &str) -> DriverError {
    let allowed = SETTINGS
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.allowed)
        .unwrap_or("");
    DriverError::BadValue {
        name: name.into(),
        value: value.into(),
        allowed: format!("allowed: {allowed}"),
    }
}

/// A bad element of a list setting: names the element and the whole value.
fn bad_item(name: &str, value: &str, item: &str) -> DriverError {
    match bad(name, value) {
        DriverError::BadValue {
            name,
            value,
            allowed,
        } => DriverError::BadValue {
            name,
            value,
            allowed: format!("`{item}` is not valid; {allowed}"),
        },
        other => other,
    }
}

fn info(name: &str) -> Result<&'static SettingInfo> {
    SETTINGS
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let nearest = SETTINGS
                .iter()
                .min_by_key(|s| strsim::levenshtein(&s.name.to_lowercase(), &name.to_lowercase()))
                .map(|s| s.name)
                .unwrap_or("");
            DriverError::UnknownSetting {
                name: name.into(),
                known: format!(
                    "{} (did you mean {nearest}?)",
                    SETTINGS
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        })
}

fn parse_num(name: &str, value: &str, lo: u32, hi: u32) -> Result<u32> {
    match value.trim().parse::<u32>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(bad(name, value)),
    }
}

impl DriverSettings {
    /// Reads `path`, or the defaults when it does not exist.
    pub fn load(path: &Path) -> Result<DriverSettings> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(DriverError::io(path, e)),
        };
        let s: DriverSettings = toml::from_str(&text).map_err(|e| DriverError::SettingsFile {
            path: path.into(),
            detail: e.to_string(),
        })?;
        s.validate().map_err(|e| DriverError::SettingsFile {
            path: path.into(),
            detail: e.to_string(),
        })?;
        Ok(s)
    }

    /// Writes the settings atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DriverError::io(dir, e))?;
        }
        let text = toml::to_string(self).map_err(|e| DriverError::SettingsFile {
            path: path.into(),
            detail: e.to_string(),
        })?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| DriverError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| DriverError::io(path, e))
    }

    /// Checks every value and the relations between them.
    pub fn validate(&self) -> Result<()> {
        for name in SETTINGS.iter().map(|s| s.name) {
            let v = self.get(name)?;
            let mut copy = self.clone();
            // A watched directory removed since it was set must not lock the administrator
            // out of status and unload; it is reported when the driver applies settings.
            copy.set_unchecked(name, &v, Existence::NotRequired)?;
        }
        if self.throttle_start_percent > self.stop_replicating_percent {
            return Err(bad(
                "ThrottleStartPercent",
                &self.throttle_start_percent.to_string(),
            ));
        }
        Ok(())
    }

    /// The value of a setting as text.
    pub fn get(&self, name: &str) -> Result<String> {
        let join = |v: Vec<String>| v.join(",");
        Ok(match info(name)?.name {
            "RingSizeMB" => self.ring_size_mb.to_string(),
            "InlineDataMax" => self.inline_data_max.to_string(),
            "ThrottleStartPercent" => self.throttle_start_percent.to_string(),
            "StopReplicatingPercent" => self.stop_replicating_percent.to_string(),
            "WatchedPaths" => join(
                self.watched_paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            ),
            "ExcludedPids" => join(self.excluded_pids.iter().map(|p| p.to_string()).collect()),
            _ => format!("{:?}", self.capture_mode).to_lowercase(),
        })
    }

    /// Sets a setting from text, validating the value and its relation to the others.
    /// Returns the setting's description (callers report whether a reload is needed).
    pub fn set(&mut self, name: &str, value: &str) -> Result<&'static SettingInfo> {
        let info = info(name)?;
        let mut next = self.clone();
        next.set_unchecked(info.name, value, Existence::Required)?;
        if next.throttle_start_percent > next.stop_replicating_percent {
            return Err(bad(info.name, value));
        }
        *self = next;
        Ok(info)
    }

    fn set_unchecked(&mut self, name: &str, value: &str, dirs: Existence) -> Result<()> {
        let list = |v: &str| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        };
        match name {
            "RingSizeMB" => {
                let v = parse_num(name, value, 1, 1024)?;
                if !v.is_power_of_two() {
                    return Err(bad(name, value));
                }
                self.ring_size_mb = v;
            }
            "InlineDataMax" => {
                self.inline_data_max = parse_num(name, value, 0, DriverConfig::INLINE_MAX_LIMIT)?
            }
            "ThrottleStartPercent" => self.throttle_start_percent = parse_num(name, value, 1, 100)?,
            "StopReplicatingPercent" => {
                self.stop_replicating_percent = parse_num(name, value, 1, 100)?
            }
            "WatchedPaths" => {
                let mut paths = Vec::new();
                for p in list(value) {
                    let path = PathBuf::from(&p);
                    if !path.is_absolute() || (dirs == Existence::Required && !path.is_dir()) {
                        return Err(bad_item(name, value, &p));
                    }
                    paths.push(path);
                }
                self.watched_paths = paths;
            }
            "ExcludedPids" => {
                let mut pids = Vec::new();
                for p in list(value) {
                    pids.push(
                        parse_num(name, &p, 1, 4_194_304).map_err(|_| bad_item(name, value, &p))?,
                    );
                }
                self.excluded_pids = pids;
            }
            "CaptureMode" => {
                self.capture_mode = match value.trim().to_ascii_lowercase().as_str() {
                    "auto" => CaptureMode::Auto,
                    "ebpf" => CaptureMode::Ebpf,
                    "fanotify" => CaptureMode::Fanotify,
                    _ => return Err(bad(name, value)),
                }
            }
            other => return Err(info(other).err().unwrap_or_else(|| bad(other, value))),
        }
        Ok(())
    }

    /// The part of the settings the eBPF programs read.
    pub fn driver_config(&self) -> DriverConfig {
        DriverConfig {
            inline_max: self.inline_data_max,
            throttle_start_pct: self.throttle_start_percent,
            stop_pct: self.stop_replicating_percent,
            filter_devs: u32::from(!self.watched_paths.is_empty()),
            ..DriverConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_setting_and_the_range() {
        let mut s = DriverSettings::default();
        for (name, value) in [
            ("RingSizeMB", "0"),
            ("RingSizeMB", "3"),
            ("RingSizeMB", "abc"),
            ("InlineDataMax", "65537"),
            ("ThrottleStartPercent", "101"),
            ("ThrottleStartPercent", "95"),
            ("StopReplicatingPercent", "0"),
            ("WatchedPaths", "relative/dir"),
            ("WatchedPaths", "/nonexistent/rill"),
            ("ExcludedPids", "1,x"),
            ("CaptureMode", "kprobe"),
        ] {
            let e = s.set(name, value).unwrap_err().to_string();
            assert!(
                e.contains(name) && e.contains(value) && e.contains("allowed"),
                "{e}"
            );
        }
        assert_eq!(
            s,
            DriverSettings::default(),
            "a rejected value changes nothing"
        );
    }

    #[test]
    fn unknown_names_suggest_the_nearest() {
        let e = DriverSettings::default()
            .set("RingSizeMb2", "4")
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean RingSizeMB"), "{e}");
    }

    #[test]
    fn round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("driver.toml");
        let mut s = DriverSettings::default();
        s.set("RingSizeMB", "8").unwrap();
        s.set("WatchedPaths", &dir.path().display().to_string())
            .unwrap();
        s.set("ExcludedPids", "10, 20").unwrap();
        s.set("capturemode", "FANOTIFY").unwrap();
        s.save(&path).unwrap();
        assert_eq!(DriverSettings::load(&path).unwrap(), s);
        assert_eq!(s.get("ExcludedPids").unwrap(), "10,20");
        std::fs::write(&path, "RingSizeMB = 3\n").unwrap();
        let e = DriverSettings::load(&path).unwrap_err().to_string();
        assert!(e.contains("driver.toml"), "{e}");
        std::fs::write(&path, "Bogus = 1\n").unwrap();
        assert!(DriverSettings::load(&path).is_err());
    }
}
