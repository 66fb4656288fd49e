//! Opening the engine's embedded databases (redb): the change journal and the job store.
//!
//! Both must refuse, with a clear error, whatever is not one of their files: a directory,
//! a file of another format, a damaged database, one another process holds. redb checks
//! integrity on open and reports a damaged file as `Corrupted`; opening inside
//! `catch_unwind` is a second guard so that no file, however mangled, panics rilld.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use redb::{Database, DatabaseError, StorageError};

/// Why a database file could not be opened; each store maps it onto its own error.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Not a database of ours (the detail says what it is instead).
    NotADatabase(String),
    /// Another process has it open.
    Locked,
    Io(std::io::Error),
    Storage(redb::Error),
}

/// Opens the database at `path`, creating it if it does not exist (or is empty).
pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<Database, OpenError> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(OpenError::NotADatabase("not a regular file".into())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(OpenError::Io(e)),
    }
    let opened = catch_unwind(AssertUnwindSafe(|| {
        Database::builder()
            .set_check_integrity_on_open(true)
            .set_cache_size(cache_bytes)
            .create(path)
    }));
    match opened {
        Err(_) => Err(OpenError::NotADatabase(
            "the database failed to open (redb panicked)".into(),
        )),
        Ok(Ok(db)) => Ok(db),
        Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => Err(OpenError::Locked),
        Ok(Err(DatabaseError::Storage(StorageError::Corrupted(detail)))) => Err(
            OpenError::NotADatabase(format!("not a valid redb database ({detail})")),
        ),
        Ok(Err(DatabaseError::UpgradeRequired(v))) => Err(OpenError::NotADatabase(format!(
            "a redb database in file format {v}, which this build cannot open"
        ))),
        Ok(Err(DatabaseError::Storage(StorageError::Io(e))))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            Err(OpenError::NotADatabase(e.to_string()))
        }
        Ok(Err(DatabaseError::Storage(StorageError::Io(e)))) => Err(OpenError::Io(e)),
        Ok(Err(e)) => Err(OpenError::Storage(e.into())),
    }
}
