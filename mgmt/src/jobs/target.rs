//! Where a job's data goes: [`JobTarget`], a target rilld over the network or a directory on
//! this host.
//!
//! One type for both, so that what a destination is made from is decided in one place (a
//! match on the variant) rather than by which program runs the job: `rilld serve` replicates
//! its jobs to a target rilld, `rilld run --target DIR` to a directory.
//!
//! The management API and the job store have always written a job's target as three fields
//! of its specification, `target_host`, `target_port` and `target_path`; a network target is
//! still written so, field for field, so stores written before this type existed load
//! unchanged and clients see the same JSON. A local target is `target_path` alone.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::validate::{self, format_target, SpecError};

/// Where a job replicates to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TargetFields", into = "TargetFields")]
pub enum JobTarget {
    /// A target rilld: its host name or address (IPv6 without brackets) and port, and
    /// where the source's data goes on that host (absolute).
    Network {
        host: String,
        port: u16,
        path: PathBuf,
    },
    /// A directory on this host, the replica itself.
    Local { path: PathBuf },
}

impl JobTarget {
    /// Where the data goes: the path on the target host, or the local directory.
    pub fn path(&self) -> &Path {
        match self {
            JobTarget::Network { path, .. } | JobTarget::Local { path } => path,
        }
    }

    /// A network target's `host:port` (`[v6]:port`); `None` for a local one.
    pub fn address(&self) -> Option<String> {
        match self {
            JobTarget::Network { host, port, .. } => Some(format_target(host, *port)),
            JobTarget::Local { .. } => None,
        }
    }

    /// Checks the target and returns it normalised: the path without `//` and `.`, an
    /// IPv6 host without brackets.
    pub fn validated(self) -> Result<JobTarget, SpecError> {
        match self {
            JobTarget::Network { host, port, path } => {
                let path = validate::check_path("target path", &path)?;
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(&host)
                    .to_string();
                let target = format_target(&host, port);
                validate::check_host(&host).map_err(|why| SpecError::Target {
                    target: target.clone(),
                    why,
                })?;
                if port == 0 {
                    return Err(SpecError::Target {
                        target,
                        why: "port 0 is not allowed".into(),
                    });
                }
                Ok(JobTarget::Network { host, port, path })
            }
            JobTarget::Local { path } => Ok(JobTarget::Local {
                path: validate::check_path("target path", &path)?,
            }),
        }
    }
}

/// As the log names it: `host:port path` for a network target, the directory for a local
/// one.
impl fmt::Display for JobTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobTarget::Network { host, port, path } => {
                write!(f, "{} {}", format_target(host, *port), path.display())
            }
            JobTarget::Local { path } => write!(f, "{}", path.display()),
        }
    }
}

/// A target as the API and the job store write it (see the module doc), flattened into the
/// job's specification.
#[derive(Serialize, Deserialize)]
struct TargetFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_port: Option<u16>,
    target_path: PathBuf,
}

impl TryFrom<TargetFields> for JobTarget {
    type Error = &'static str;

    /// A host without a port, or a port without a host, is refused in the words serde
    /// used when both were required.
    fn try_from(f: TargetFields) -> Result<JobTarget, &'static str> {
        match (f.target_host, f.target_port) {
            (Some(host), Some(port)) => Ok(JobTarget::Network {
                host,
                port,
                path: f.target_path,
            }),
            (None, None) => Ok(JobTarget::Local {
                path: f.target_path,
            }),
            (Some(_), None) => Err("missing field `target_port`"),
            (None, Some(_)) => Err("missing field `target_host`"),
        }
    }
}

impl From<JobTarget> for TargetFields {
    fn from(t: JobTarget) -> TargetFields {
        match t {
            JobTarget::Network { host, port, path } => TargetFields {
                target_host: Some(host),
                target_port: Some(port),
                target_path: path,
            },
            JobTarget::Local { path } => TargetFields {
                target_host: None,
                target_port: None,
                target_path: path,
            },
        }
    }
}
