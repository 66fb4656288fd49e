//! Failover as the management API speaks of it: what an administrator asks of a target
//! (`rillctl failover`, `failback`, `failover-scripts`), and the failover state a
//! target reports for each source job it serves.
//!
//! # Why on the target
//!
//! Failover is the target's decision: the source it would fail over from is the host
//! that is gone. So these requests go to the target's rilld, name the job as the source
//! named it, and act on the target's record of that job (its target session).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What `rillctl failover` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverMode {
    /// Fail over for good: the source's operations are refused from now on.
    #[default]
    Live,
    /// A test failover: the replica is held at a consistent point for checking, the
    /// source keeps running and queues its operations.
    Test,
    /// End a test failover: replication goes on and the replica is brought back to the
    /// source.
    UndoTest,
}

/// A job's failover state on its target, as the status report shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailoverState {
    /// Replication goes on (the target monitors the source).
    #[default]
    #[serde(rename = "Protecting")]
    Protecting,
    /// A failover (or a test failover) is under way.
    #[serde(rename = "Failing Over")]
    FailingOver,
    /// Failed over: the replica is the data in use, the source is refused.
    #[serde(rename = "Failed Over")]
    FailedOver,
    /// A test failover holds the replica for checking.
    #[serde(rename = "Test Failover")]
    TestFailover,
}

impl FailoverState {
    /// The state as the status table writes it.
    pub fn words(self) -> &'static str {
        match self {
            FailoverState::Protecting => "Protecting",
            FailoverState::FailingOver => "Failing Over",
            FailoverState::FailedOver => "Failed Over",
            FailoverState::TestFailover => "Test Failover",
        }
    }
}

/// A job's failover scripts on its target, each an absolute path to an executable file
/// of the target host (the guide's pre- and post-failover and failback scripts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverScripts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_failover: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_failover: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_failback: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_failback: Option<PathBuf>,
}

impl FailoverScripts {
    /// Each script with the name the guide gives it.
    pub fn named(&self) -> [(&'static str, Option<&Path>); 4] {
        [
            ("pre-failover", self.pre_failover.as_deref()),
            ("post-failover", self.post_failover.as_deref()),
            ("pre-failback", self.pre_failback.as_deref()),
            ("post-failback", self.post_failback.as_deref()),
        ]
    }

    /// Refuses a script path that is not absolute, so that what runs does not depend on
    /// rilld's working directory. (Whether the file exists is checked by the target that
    /// runs it: `rillctl` may run elsewhere.)
    pub fn check(&self) -> Result<(), String> {
        for (what, path) in self.named() {
            if let Some(p) = path {
                if !p.is_absolute() {
                    return Err(format!(
                        "the {what} script {} is not an absolute path",
                        p.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_script_is_refused_by_name() {
        let s = FailoverScripts {
            post_failover: Some("run.sh".into()),
            ..FailoverScripts::default()
        };
        let e = s.check().unwrap_err();
        assert!(e.contains("post-failover script run.sh"), "{e}");
        assert!(FailoverScripts::default().check().is_ok());
    }

    #[test]
    fn states_are_written_in_words() {
        let json = serde_json::to_string(&FailoverState::FailedOver).unwrap();
        assert_eq!(json, "\"Failed Over\"");
        assert_eq!(FailoverState::TestFailover.words(), "Test Failover");
    }
}
