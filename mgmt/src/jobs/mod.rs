//! A replication job as the management API carries it: its specification ([`JobSpec`]),
//! where it replicates to ([`JobTarget`]), the checks of every field ([`validate`]) and the
//! states it is reported in ([`words`]).
//!
//! rilld stores jobs (`rill_engine::jobs::JobStore`) and checks each spec again before it
//! does; `rillctl` checks it before sending it, so a typo is reported with what is allowed
//! without asking the daemon. Both use this one definition.

mod target;
pub mod validate;
pub mod words;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use rill_ops::repset::{ReplicationSet, Rule, RuleError};
use serde::{Deserialize, Serialize};

pub use target::JobTarget;
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
    /// Where the source's data goes; written as the fields `target_host`, `target_port`
    /// and `target_path` (see [`JobTarget`]).
    #[serde(flatten)]
    pub target: JobTarget,
    #[serde(default)]
    pub rules: Vec<JobRule>,
}

impl JobSpec {
    /// Checks every field and returns the spec normalised: paths without `//` and `.`,
    /// relative rules made absolute under the source, an IPv6 host without brackets.
    pub fn validated(self) -> Result<JobSpec, SpecError> {
        check_name(&self.name)?;
        let source = validate::check_path("source", &self.source)?;
        let target = self.target.validated()?;
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
            target,
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
