//! What a session replicates into: the [`Replica`] trait.
//!
//! The session (`session`), its apply thread (`apply_thread`) and its syncer (`syncer`)
//! decide what is applied, in which order, when it is made durable and what the source
//! is told. What applying an operation means, and what makes it durable, belongs to the
//! kind of replica: a directory on this host today ([`super::apply::Applier`]), an object
//! store later. The session opens its replica with [`open`], holds it as a
//! `Box<dyn Replica>` and never reaches past this trait, so another kind is a new
//! implementation and a new arm of [`open`], not a change to the session.
//!
//! # State
//!
//! A replica keeps what applying needs between operations (for a directory: the root's
//! descriptor, written files held open for the next write, the orphans removed so far).
//! None of it has to survive a restart: the session's position and the job store say
//! where to resume, and the source resends everything after it.
//!
//! # Invariants
//!
//! - One thread applies, one operation at a time, in the order the source sent them; the
//!   replica on its storage is the source's state at some point of the stream.
//! - Every name is relative and plain ([`confined`]): the session refuses an operation
//!   naming anything else before it is queued, and a replica checks again, so no peer
//!   reaches outside the replica.
//! - [`Durability::sync`] returning `Ok` means everything applied before it was called
//!   survives a crash of this host: the session acknowledges an operation only after
//!   that.
//! - Operations applied but not acknowledged are sent again after a crash: applying one
//!   again must not harm the replica (an `unlink` of a missing name, a `mkdir` of an
//!   existing directory succeed).

use crate::net::proto::verify::{Ask, Inspected};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rill_ops::{Event, Op};

use super::apply::{Applier, ApplyOptions};
use super::orphans::Removed;

/// The thing a session replicates into: operations are applied to it in order, and made
/// durable before they are acknowledged.
pub trait Replica: Send {
    /// Applies one operation (relative names, values read on the source).
    fn apply(&mut self, ev: &Event) -> Result<(), ApplyError>;

    /// Lets go of what was kept for operations to come and has not been used for a
    /// while (files held open for the next write). Called at every flush.
    fn close_idle(&mut self);

    /// A handle that makes durable what was applied before each of its calls, usable from
    /// another thread while applying goes on (the session's syncer).
    fn durability(&self) -> Result<Box<dyn Durability>, ApplyError>;

    /// Makes everything applied so far durable, on the applying thread.
    fn flush(&mut self) -> Result<(), ApplyError> {
        self.durability()?.sync()?;
        self.close_idle();
        Ok(())
    }

    /// Orphans removed so far by `Prune` operations (the guide's Orphan Files,
    /// Directories and Bytes).
    fn orphans(&self) -> Removed;

    /// The names the last orphan removal took away, with what went with each: the
    /// messages of `LogAllOrphans`.
    fn last_orphans(&self) -> &[(PathBuf, Removed)];

    /// What the replica holds under a name, for a verification (see `crate::verify`).
    fn inspect(&self, ask: &Ask) -> io::Result<Inspected>;
}

/// Makes a replica's applied operations durable (see [`Replica::durability`]).
pub trait Durability: Send {
    /// Returns once everything applied before the call is durable.
    fn sync(&self) -> Result<(), ApplyError>;
}

/// Why an operation was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0:?} is not a path beneath the replica (relative, without `..` or `.` components)")]
    Outside(PathBuf),
    #[error("{what} of {path} carries no value: it was not read on the source")]
    Unresolved { what: &'static str, path: PathBuf },
    #[error("{0:?} is not an operation to apply")]
    NotAnOperation(Op),
    #[error("applying {op} to {path}: {source}")]
    Apply {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl ApplyError {
    /// Whether trying again later may succeed (a busy or locked file, a full disk), as
    /// opposed to an operation that can never apply (a path outside the replica).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.os_error(),
            Some(libc::EBUSY | libc::ETXTBSY | libc::EAGAIN | libc::ENOSPC | libc::EDQUOT)
        )
    }

    /// The system's error number, for an operation the storage refused.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            ApplyError::Apply { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// `path` as a name beneath the replica: relative, normal components only, no NUL.
pub fn confined(path: &Path) -> Result<&Path, ApplyError> {
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
        || path.as_os_str().as_bytes().contains(&0)
    {
        return Err(ApplyError::Outside(path.into()));
    }
    Ok(path)
}

/// Why a session could not open its replica.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    /// The target path cannot hold a replica: the hello's target path is refused.
    #[error("cannot create the target path {0}: {1}")]
    Path(String, io::Error),
    /// Opening failed for a reason that may pass: the source tries again.
    #[error("target path {0}: {1}")]
    Busy(String, io::Error),
}

/// Opens the replica a session applies into: the directory `target_path` on this host,
/// made if it is missing, applied into with `options`.
pub(super) fn open(
    target_path: &Path,
    options: ApplyOptions,
) -> Result<Box<dyn Replica>, OpenError> {
    let shown = || target_path.display().to_string();
    std::fs::create_dir_all(target_path).map_err(|e| OpenError::Path(shown(), e))?;
    let applier = Applier::new(target_path, options).map_err(|e| OpenError::Busy(shown(), e))?;
    Ok(Box::new(applier))
}

#[cfg(test)]
mod tests {
    use super::{open, OpenError};
    use crate::replica::apply::ApplyOptions;

    /// A session's target path is made when it is missing, and the replica opened there
    /// can be flushed at once; a path that cannot be a directory is the hello's target
    /// path at fault (refused as such), not a reason to try again.
    #[test]
    fn open_makes_a_missing_target_path_and_refuses_a_file() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("a/b");
        let mut replica = open(&target, ApplyOptions::default()).unwrap();
        assert!(target.is_dir());
        replica.flush().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            open(&file, ApplyOptions::default()),
            Err(OpenError::Path(..))
        ));
    }
}
