//! Jobs and target sessions, durably, in one embedded database (`DataPath/jobs.redb`).
//!
//! A *job* is what an administrator creates on a source: a replication set (a source
//! directory and its Inc/Exc rules) and its [`JobTarget`], a target `host:port` and the
//! path on the target (the daemon refuses a job whose target is a local directory: that
//! is `rilld run`'s). Its
//! [`JobState`] is what the administrator asked for (a `Running` job is started again when
//! rilld restarts), and its [`MirrorState`] whether the target has been fully mirrored. A
//! restarted source resumes where it was from its own disk queue and the position the
//! target's welcome names, not from this store: `last_acked` is kept in the record (old
//! stores have it, and `set_last_acked` records it) but nothing in the engine sets or
//! reads it today.
//!
//! A *target session* is the target's side of a job: keyed by the source's certificate
//! fingerprint and the job's name, it records where the job's data goes, the highest
//! sequence durably applied ([`TargetSession::last_applied`]) and the guide's Target Data
//! State ([`DataState`]). A reconnecting source learns from it what to resend.
//!
//! # Why redb, and how
//!
//! The same reasons as the change journal ([`crate::storage::change_journal`]): every change is one
//! redb write transaction committed with the default immediate durability, so when a
//! method returns `Ok` the change survives a crash or power loss, and a crash at any
//! instant leaves the last committed state, without a recovery procedure of our own. The
//! file is locked against a second rilld. Reads are MVCC snapshots, so status queries never
//! wait for a writer. Records are JSON (serde): they are small and rarely written, and
//! JSON lets a newer rilld add fields with defaults without a migration; the
//! [`JobTarget`] is written as the three fields `target_host`, `target_port` and
//! `target_path` a job had before the type existed, so older stores load unchanged. A
//! commit costs a sync of the file, so progress (`put_session`) is recorded at most a few
//! times a second, not once per operation.
//!
//! Every input is validated before it is stored ([`validate`]); what is stored is the
//! normalised form. The specification of a job, its checks and its states are the
//! management API's (`rill_mgmt::jobs`, re-exported here): `rillctl` checks a job before
//! sending it, with the same code.

mod failover;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::mgmt::{JobInfo, VerifySchedule};
use crate::storage::database::{self, Schema};

pub use failover::{FailedOver, FailoverRecord};
pub use rill_mgmt::jobs::{
    check_name, check_peer, format_target, parse_target, validate, DataState, JobRule, JobSpec,
    JobState, JobTarget, MirrorState, SpecError, DEFAULT_TARGET_PORT, MAX_NAME_LEN,
};

/// Jobs by name; the value is a JSON [`StoredJob`].
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("rill_jobs");
/// Target sessions by (peer fingerprint, job name); the value is a JSON [`TargetSession`].
const SESSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("rill_target_sessions");
/// `format`.
const META: TableDefinition<&str, u64> = TableDefinition::new("rill_jobs_meta");
/// The store's schema version.
const FORMAT: u64 = 1;
/// A few hundred jobs and sessions at most: a small page cache is plenty.
const CACHE_BYTES: usize = 4 << 20;
/// What makes a database a job store.
const SCHEMA: Schema = Schema {
    meta: META,
    format: FORMAT,
    initial_meta: &[],
    tables: create_tables,
};

fn create_tables(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.open_table(JOBS)?;
    tx.open_table(SESSIONS)?;
    tx.open_table(failover::FAILOVERS)?;
    Ok(())
}

/// A stored job: its spec and the state the daemon keeps for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredJob {
    pub spec: JobSpec,
    pub state: JobState,
    pub mirror: MirrorState,
    /// The highest sequence the target acknowledged as durably applied or queued, when
    /// recorded (see the module's doc: the engine does not use it today).
    #[serde(default)]
    pub last_acked: u64,
    /// Progress counters the daemon keeps across restarts, by its own names.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// How often the job is verified on its own (`rillctl verify JOB --every`). Left out
    /// when there is none, so a record without one reads and writes as it always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_schedule: Option<VerifySchedule>,
    pub created_unix: u64,
    pub updated_unix: u64,
}

impl From<StoredJob> for JobInfo {
    fn from(job: StoredJob) -> JobInfo {
        JobInfo {
            spec: job.spec,
            state: job.state,
            mirror: job.mirror,
        }
    }
}

/// The target's record of one source job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSession {
    /// Where this job's data is applied on this host.
    pub target_path: PathBuf,
    /// The highest sequence durably applied.
    pub last_applied: u64,
    pub data_state: DataState,
    /// When the session was last written (set by [`JobStore::put_session`]).
    #[serde(default)]
    pub updated_unix: u64,
}

/// A target session with its key, as [`JobStore::list_sessions`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEntry {
    /// The source's certificate fingerprint.
    pub peer: String,
    pub job: String,
    pub session: TargetSession,
}

/// Errors of the job store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] SpecError),
    #[error("a job named `{name}` already exists (delete it first, or choose another name)")]
    Exists { name: String },
    #[error("no job named `{name}`")]
    NotFound { name: String },
    #[error("{}: not a rill job store: {detail}", path.display())]
    NotAStore { path: PathBuf, detail: String },
    #[error("{}: the job store is already open (another rilld?)", path.display())]
    Locked { path: PathBuf },
    #[error(
        "{}: job store format {found} is newer than this rilld understands ({FORMAT})",
        path.display()
    )]
    UnsupportedFormat { path: PathBuf, found: u64 },
    #[error("{}: the record of {key} is damaged: {detail}", path.display())]
    Corrupt {
        path: PathBuf,
        key: String,
        detail: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: job store storage: {source}", path.display())]
    Storage { path: PathBuf, source: redb::Error },
}

database::store_open_errors!(Error, NotAStore);

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The durable job store. All methods take `&self`; redb serialises write transactions and
/// gives readers snapshots, so one store may be shared between threads (`Arc<JobStore>`).
pub struct JobStore {
    db: Database,
    path: PathBuf,
}

impl fmt::Debug for JobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobStore")
            .field("path", &self.path)
            .finish()
    }
}

impl JobStore {
    /// Opens the store at `path`, creating it if it does not exist (or is empty). The
    /// directory must exist.
    pub fn open(path: &Path) -> Result<JobStore> {
        let db = database::open_store(path, CACHE_BYTES, &SCHEMA)
            .map_err(|e| Error::opening(path, e))?;
        Ok(JobStore {
            db,
            path: path.to_path_buf(),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a job, `Stopped` with its mirror `Pending`, and returns it as stored
    /// (normalised). Refused if the spec is invalid or the name is taken.
    pub fn create(&self, spec: JobSpec) -> Result<StoredJob> {
        let spec = spec.validated()?;
        let now = crate::clock::wall_secs();
        let job = StoredJob {
            spec,
            state: JobState::Stopped,
            mirror: MirrorState::Pending,
            last_acked: 0,
            counters: BTreeMap::new(),
            verify_schedule: None,
            created_unix: now,
            updated_unix: now,
        };
        let bytes = self.encode(&job_key(&job.spec.name), &job)?;
        let tx = self.db.begin_write().db(&self.path)?;
        {
            let mut jobs = tx.open_table(JOBS).db(&self.path)?;
            if jobs.get(job.spec.name.as_str()).db(&self.path)?.is_some() {
                return Err(Error::Exists {
                    name: job.spec.name.clone(),
                });
            }
            jobs.insert(job.spec.name.as_str(), bytes.as_slice())
                .db(&self.path)?;
        }
        tx.commit().db(&self.path)?;
        Ok(job)
    }

    /// The job `name`, if there is one.
    pub fn get(&self, name: &str) -> Result<Option<StoredJob>> {
        let tx = self.db.begin_read().db(&self.path)?;
        let jobs = tx.open_table(JOBS).db(&self.path)?;
        let found = jobs.get(name).db(&self.path)?;
        found
            .map(|v| self.decode(&job_key(name), v.value()))
            .transpose()
    }

    /// Every job, by name.
    pub fn list(&self) -> Result<Vec<StoredJob>> {
        let tx = self.db.begin_read().db(&self.path)?;
        let jobs = tx.open_table(JOBS).db(&self.path)?;
        let mut out = Vec::new();
        for item in jobs.iter().db(&self.path)? {
            let (k, v) = item.db(&self.path)?;
            out.push(self.decode(&job_key(k.value()), v.value())?);
        }
        Ok(out)
    }

    /// Sets what the administrator asked of job `name`; returns the state it had.
    pub fn set_state(&self, name: &str, state: JobState) -> Result<JobState> {
        self.update(name, |job| std::mem::replace(&mut job.state, state))
    }

    /// Records where the job's mirror stands; returns the previous value.
    pub fn set_mirror_state(&self, name: &str, mirror: MirrorState) -> Result<MirrorState> {
        self.update(name, |job| std::mem::replace(&mut job.mirror, mirror))
    }

    /// Records the highest sequence the target acknowledged.
    pub fn set_last_acked(&self, name: &str, seq: u64) -> Result<()> {
        self.update(name, |job| job.last_acked = seq)
    }

    /// Sets the given progress counters of job `name` (the others stay).
    pub fn set_counters(&self, name: &str, counters: &[(&str, u64)]) -> Result<()> {
        self.update(name, |job| {
            for (k, v) in counters {
                job.counters.insert((*k).to_string(), *v);
            }
        })
    }

    /// Sets (or, with `None`, clears) job `name`'s verification schedule.
    pub fn set_verify_schedule(&self, name: &str, schedule: Option<VerifySchedule>) -> Result<()> {
        self.update(name, |job| job.verify_schedule = schedule)
    }

    /// Deletes job `name` and returns what it was. Its target sessions live on the target
    /// and are not touched.
    pub fn delete(&self, name: &str) -> Result<StoredJob> {
        let tx = self.db.begin_write().db(&self.path)?;
        let job = {
            let mut jobs = tx.open_table(JOBS).db(&self.path)?;
            let removed = jobs.remove(name).db(&self.path)?;
            match removed {
                Some(v) => self.decode(&job_key(name), v.value())?,
                None => return Err(Error::NotFound { name: name.into() }),
            }
        };
        tx.commit().db(&self.path)?;
        Ok(job)
    }

    /// Reads, changes and writes back one job in one transaction.
    fn update<T>(&self, name: &str, change: impl FnOnce(&mut StoredJob) -> T) -> Result<T> {
        let tx = self.db.begin_write().db(&self.path)?;
        let out = {
            let mut jobs = tx.open_table(JOBS).db(&self.path)?;
            let mut job: StoredJob = {
                let found = jobs.get(name).db(&self.path)?;
                match found {
                    Some(v) => self.decode(&job_key(name), v.value())?,
                    None => return Err(Error::NotFound { name: name.into() }),
                }
            };
            let out = change(&mut job);
            job.updated_unix = crate::clock::wall_secs();
            let bytes = self.encode(&job_key(name), &job)?;
            jobs.insert(name, bytes.as_slice()).db(&self.path)?;
            out
        };
        tx.commit().db(&self.path)?;
        Ok(out)
    }

    /// The target session of job `job` from the source `peer`.
    pub fn get_session(&self, peer: &str, job: &str) -> Result<Option<TargetSession>> {
        let tx = self.db.begin_read().db(&self.path)?;
        let sessions = tx.open_table(SESSIONS).db(&self.path)?;
        let found = sessions.get((peer, job)).db(&self.path)?;
        found
            .map(|v| self.decode(&session_key(peer, job), v.value()))
            .transpose()
    }

    /// Stores the target session of job `job` from the source `peer` (creating or
    /// replacing it), stamped with the current time; returns it as stored.
    pub fn put_session(
        &self,
        peer: &str,
        job: &str,
        session: &TargetSession,
    ) -> Result<TargetSession> {
        check_peer(peer)?;
        check_name(job)?;
        let mut session = session.clone();
        session.target_path = validate::check_path("target path", &session.target_path)?;
        session.updated_unix = crate::clock::wall_secs();
        let bytes = self.encode(&session_key(peer, job), &session)?;
        let tx = self.db.begin_write().db(&self.path)?;
        {
            let mut sessions = tx.open_table(SESSIONS).db(&self.path)?;
            sessions
                .insert((peer, job), bytes.as_slice())
                .db(&self.path)?;
        }
        tx.commit().db(&self.path)?;
        Ok(session)
    }

    /// Every target session, ordered by peer then job.
    pub fn list_sessions(&self) -> Result<Vec<SessionEntry>> {
        let tx = self.db.begin_read().db(&self.path)?;
        let sessions = tx.open_table(SESSIONS).db(&self.path)?;
        let mut out = Vec::new();
        for item in sessions.iter().db(&self.path)? {
            let (k, v) = item.db(&self.path)?;
            let (peer, job) = k.value();
            out.push(SessionEntry {
                peer: peer.to_string(),
                job: job.to_string(),
                session: self.decode(&session_key(peer, job), v.value())?,
            });
        }
        Ok(out)
    }

    /// Removes a target session; returns whether there was one.
    pub fn delete_session(&self, peer: &str, job: &str) -> Result<bool> {
        let tx = self.db.begin_write().db(&self.path)?;
        let removed = {
            let mut sessions = tx.open_table(SESSIONS).db(&self.path)?;
            let removed = sessions.remove((peer, job)).db(&self.path)?;
            removed.is_some()
        };
        tx.commit().db(&self.path)?;
        Ok(removed)
    }

    fn encode<T: Serialize>(&self, key: &str, value: &T) -> Result<Vec<u8>> {
        // Only fails for a non-UTF-8 path, which validation has already refused.
        serde_json::to_vec(value).map_err(|e| Error::Corrupt {
            path: self.path.clone(),
            key: key.into(),
            detail: format!("cannot be encoded: {e}"),
        })
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, key: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: self.path.clone(),
            key: key.into(),
            detail: e.to_string(),
        })
    }
}

/// How a job's record is named in errors.
fn job_key(name: &str) -> String {
    format!("job `{name}`")
}

/// How a target session's record is named in errors.
fn session_key(peer: &str, job: &str) -> String {
    format!("the target session of job `{job}` from peer {peer}")
}

/// Attaches the store's path to a redb error.
trait Db<T> {
    fn db(self, path: &Path) -> Result<T>;
}

impl<T, E: Into<redb::Error>> Db<T> for std::result::Result<T, E> {
    fn db(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::Storage {
            path: path.to_path_buf(),
            source: e.into(),
        })
    }
}
