//! A replication job as the management API carries it: its specification ([`JobSpec`]),
//! the checks of every field ([`validate`]) and the states it is reported in ([`words`]).
//!
//! rilld stores jobs (`rill_engine::jobs::JobStore`) and checks each spec again before it
//! does; `rillctl` checks it before sending it, so a typo is reported with what is allowed
//! without asking the daemon. Both use this one definition.

pub mod validate;
pub mod words;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use rill_ops::repset::{ReplicationSet, Rule, RuleError};
use serde::{Deserialize, Serialize};

pub use validate::{
    check_name, check_peer, format_target, parse_target, SpecError, DEFAULT_TARGET_PORT,
    MAX_NAME_LEN,
};
pub use words::{DataState, JobState, MirrorState};

/// One rule of a job's replication set, as the guide writes it: a path or wildcard, `Inc`
/// (`include: true`) or `Exc`. Every rule of a job is recursive (`Rec`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRule {
    pub pattern: String,
    pub include: bool,
}

/// What a job replicates and where to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    /// The directory replicated (absolute); everything under it is included unless a rule
    /// excludes it.
    pub source: PathBuf,
    /// The target's host name or address (IPv6 without brackets).
    pub target_host: String,
    pub target_port: u16,
    /// Where the source's data goes on the target (absolute).
    pub target_path: PathBuf,
    #[serde(default)]
    pub rules: Vec<JobRule>,
}

impl JobSpec {
    /// The target as `host:port` (`[v6]:port`).
    pub fn target(&self) -> String {
        format_target(&self.target_host, self.target_port)
    }

    /// Checks every field and returns the spec normalised: paths without `//` and `.`,
    /// relative rules made absolute under the source, an IPv6 host without brackets.
    pub fn validated(self) -> Result<JobSpec, SpecError> {
        check_name(&self.name)?;
        let source = validate::check_path("source", &self.source)?;
        let target_path = validate::check_path("target path", &self.target_path)?;
        let host = self
            .target_host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.target_host)
            .to_string();
        let target = format_target(&host, self.target_port);
        validate::check_host(&host).map_err(|why| SpecError::Target {
            target: target.clone(),
            why,
        })?;
        if self.target_port == 0 {
            return Err(SpecError::Target {
                target,
                why: "port 0 is not allowed".into(),
            });
        }
        let rules = self
            .rules
            .into_iter()
            .map(|r| {
                Ok(JobRule {
                    pattern: validate::normalise_rule(&source, &r.pattern)?,
                    include: r.include,
                })
            })
            .collect::<Result<Vec<_>, SpecError>>()?;
        Ok(JobSpec {
            name: self.name,
            source,
            target_host: host,
            target_port: self.target_port,
            target_path,
            rules,
        })
    }

    /// The replication set the engine filters with: the source, included recursively,
    /// then the rules (all recursive).
    pub fn replication_set(&self) -> Result<ReplicationSet, RuleError> {
        let mut rules = vec![Rule::new(&self.source.to_string_lossy(), true, true)?];
        for r in &self.rules {
            rules.push(Rule::new(&r.pattern, r.include, true)?);
        }
        Ok(ReplicationSet::new(rules))
    }
}
