//! The target's failover record of each source job: its failover scripts and whether
//! (and how) it failed over.
//!
//! # Why a table of its own
//!
//! A target session's record is rewritten whole by its syncer a few times a second; a
//! failover or a script set by the administrator meanwhile would be overwritten by the
//! syncer's older copy. So the failover record has its own table, under the same key
//! (source fingerprint, job), written only by the failover code and `rillctl`.
//!
//! # Invariants
//!
//! - A record whose `failed_over` is set means the job failed over: the target refuses
//!   the source's connections for it until a failback (or, for a test, its undo) clears
//!   it. It is committed before the failover is reported done, so a restarted rilld
//!   still refuses the source.

use serde::{Deserialize, Serialize};

use super::{check_name, check_peer, Db, Error, JobStore, Result};
use rill_mgmt::FailoverScripts;

/// Failover records by (peer fingerprint, job name); the value is a JSON [`FailoverRecord`].
pub(super) const FAILOVERS: redb::TableDefinition<(&str, &str), &[u8]> =
    redb::TableDefinition::new("rill_target_failovers");

/// One source job's failover record on its target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    #[serde(default)]
    pub scripts: FailoverScripts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_over: Option<FailedOver>,
}

/// How and when a job failed over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedOver {
    /// A test failover (undone by `rillctl failover --undo-test`).
    pub test: bool,
    pub at_unix: u64,
    /// The last operation applied to the replica, which the failover made durable: the
    /// consistent point the replica was left at.
    pub last_applied: u64,
}

impl JobStore {
    /// The failover record of job `job` from the source `peer` (the default when none
    /// was written).
    pub fn get_failover(&self, peer: &str, job: &str) -> Result<FailoverRecord> {
        let tx = redb::ReadableDatabase::begin_read(&self.db).db(&self.path)?;
        let table = match tx.open_table(FAILOVERS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(FailoverRecord::default()),
            Err(e) => return Err(e).db(&self.path),
        };
        let found = redb::ReadableTable::get(&table, (peer, job)).db(&self.path)?;
        Ok(found
            .map(|v| self.decode(&failover_key(peer, job), v.value()))
            .transpose()?
            .unwrap_or_default())
    }

    /// Stores the failover record of job `job` from the source `peer`.
    pub fn put_failover(&self, peer: &str, job: &str, record: &FailoverRecord) -> Result<()> {
        check_peer(peer)?;
        check_name(job)?;
        record.scripts.check().map_err(|detail| Error::Corrupt {
            path: self.path.clone(),
            key: failover_key(peer, job),
            detail,
        })?;
        let bytes = self.encode(&failover_key(peer, job), record)?;
        let tx = self.db.begin_write().db(&self.path)?;
        {
            let mut table = tx.open_table(FAILOVERS).db(&self.path)?;
            table.insert((peer, job), bytes.as_slice()).db(&self.path)?;
        }
        tx.commit().db(&self.path)
    }
}

/// How a failover record is named in errors.
fn failover_key(peer: &str, job: &str) -> String {
    format!("the failover record of job `{job}` from peer {peer}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "ab12";

    #[test]
    fn a_failover_survives_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.redb");
        let record = FailoverRecord {
            scripts: FailoverScripts {
                pre_failover: Some("/usr/local/bin/pre".into()),
                ..FailoverScripts::default()
            },
            failed_over: Some(FailedOver {
                test: false,
                at_unix: 7,
                last_applied: 42,
            }),
        };
        {
            let store = JobStore::open(&path).unwrap();
            assert_eq!(
                store.get_failover(PEER, "web").unwrap(),
                FailoverRecord::default()
            );
            store.put_failover(PEER, "web", &record).unwrap();
        }
        let store = JobStore::open(&path).unwrap();
        assert_eq!(store.get_failover(PEER, "web").unwrap(), record);
        assert_eq!(
            store.get_failover(PEER, "db").unwrap(),
            FailoverRecord::default()
        );
    }
}
