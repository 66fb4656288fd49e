//! Opening the engine's embedded databases (redb): the change journal and the job store.
//!
//! Both open through [`open_store`], so they refuse the same files with the same words and
//! make a new file the same way: open (or create) the file, then check in one transaction
//! that it is the store's own ([`Schema`]: its meta table, its format version), creating
//! the tables of a new one. Each store maps [`OpenError`] onto its own error type, whose
//! messages name the store.
//!
//! Both must refuse, with a clear error, whatever is not one of their files: a directory,
//! a file of another format, a damaged database, one another process holds. redb checks
//! integrity on open and reports a damaged file as `Corrupted`; opening inside
//! `catch_unwind` is a second guard so that no file, however mangled, panics rilld.
//!
//! Both must also survive being killed at any instant, including while the file is first
//! made. redb initialises a new file in place: it sizes the file, writes its header, syncs,
//! and only then writes the magic number. A process killed between the two writes leaves a
//! file without the magic number, which every later open refuses ("magic number mismatch")
//! and which cannot be told apart from a file of something else. So a new database is made
//! under a temporary name and renamed into place only once redb has finished it.

use std::fs::File;
use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, ReadableTable, StorageError, TableDefinition, TableHandle,
    WriteTransaction,
};

/// Why a database file could not be opened; each store maps it onto its own error.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Not a database of ours (the detail says what it is instead).
    NotADatabase(String),
    /// Another process has it open.
    Locked,
    /// The store's own, in a format newer than this build's (the format it found).
    UnsupportedFormat(u64),
    Io(std::io::Error),
    Storage(redb::Error),
}

/// Gives a store's error type `$error` a function `opening(path, OpenError)` that maps each
/// failure of [`open_store`] onto the store's own variant of it (`$not_ours { path, detail }`,
/// `Locked { path }`, `UnsupportedFormat { path, found }`, `Io { path, source }`,
/// `Storage { path, source }`), whose messages name the store.
macro_rules! store_open_errors {
    ($error:ident, $not_ours:ident) => {
        impl $error {
            fn opening(path: &std::path::Path, e: $crate::storage::database::OpenError) -> $error {
                use $crate::storage::database::OpenError;
                let path = path.to_path_buf();
                match e {
                    OpenError::NotADatabase(detail) => $error::$not_ours { path, detail },
                    OpenError::Locked => $error::Locked { path },
                    OpenError::UnsupportedFormat(found) => {
                        $error::UnsupportedFormat { path, found }
                    }
                    OpenError::Io(source) => $error::Io { path, source },
                    OpenError::Storage(source) => $error::Storage { path, source },
                }
            }
        }
    };
}
pub(crate) use store_open_errors;

/// A redb error met while checking or creating a store.
fn storage(e: impl Into<redb::Error>) -> OpenError {
    OpenError::Storage(e.into())
}

/// What makes a database one store's: its meta table (present in every database of the
/// store, absent from anything else) with the store's format version under `format`, and
/// the tables a new store is created with.
pub(crate) struct Schema {
    pub meta: TableDefinition<'static, &'static str, u64>,
    /// The format this build writes and reads.
    pub format: u64,
    /// Further meta entries a new store starts with.
    pub initial_meta: &'static [(&'static str, u64)],
    /// Opens (and so creates) the store's other tables.
    pub tables: fn(&WriteTransaction) -> Result<(), redb::TableError>,
}

/// The meta entry holding a store's format version.
pub(crate) const META_FORMAT: &str = "format";

/// Opens the store at `path` (see [`open`]), then creates the tables of a new one or checks
/// that an existing database is one of `schema`'s, in a format this build reads.
pub(crate) fn open_store(
    path: &Path,
    cache_bytes: usize,
    schema: &Schema,
) -> Result<Database, OpenError> {
    let db = open(path, cache_bytes)?;
    init(&db, schema)?;
    Ok(db)
}

/// The check and creation of [`open_store`], in one durable write transaction.
fn init(db: &Database, schema: &Schema) -> Result<(), OpenError> {
    let tx = db.begin_write().map_err(storage)?;
    {
        let tables: Vec<String> = tx
            .list_tables()
            .map_err(storage)?
            .map(|t| t.name().to_string())
            .collect();
        if !tables.is_empty() && !tables.iter().any(|t| t == schema.meta.name()) {
            return Err(OpenError::NotADatabase(format!(
                "a redb database of something else (tables: {})",
                tables.join(", ")
            )));
        }
        let mut meta = tx.open_table(schema.meta).map_err(storage)?;
        let format = meta.get(META_FORMAT).map_err(storage)?.map(|g| g.value());
        match format {
            None => {
                meta.insert(META_FORMAT, schema.format).map_err(storage)?;
                for (key, value) in schema.initial_meta {
                    meta.insert(*key, *value).map_err(storage)?;
                }
            }
            Some(f) if f == schema.format => {}
            Some(found) => return Err(OpenError::UnsupportedFormat(found)),
        }
        (schema.tables)(&tx).map_err(storage)?;
    }
    tx.commit().map_err(storage)
}

/// Opens the database at `path`, creating it if it does not exist (or is empty).
pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<Database, OpenError> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(OpenError::NotADatabase("not a regular file".into())),
        Ok(m) if m.len() > 0 => {}
        Ok(_) => create(path, cache_bytes)?,
        Err(e) if e.kind() == ErrorKind::NotFound => create(path, cache_bytes)?,
        Err(e) => return Err(OpenError::Io(e)),
    }
    open_file(path, cache_bytes)
}

/// The name a new database at `path` is made under: beside it, so that the rename stays on
/// one file system, and hidden, since it exists only while a creation is under way or after
/// one was killed.
fn creation_name(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".creating");
    path.with_file_name(name)
}

/// Makes a complete, empty database at `path`, which is absent or an empty file, so that no
/// instant of the creation leaves `path` half made (see the module doc). Creators of the
/// same path take turns by a lock on its directory; so the temporary name can be fixed (a
/// creation that was killed leaves it behind, and the next one starts it afresh) and the
/// rename never replaces a database another process has just made.
fn create(path: &Path, cache_bytes: usize) -> Result<(), OpenError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = File::open(dir).map_err(OpenError::Io)?;
    // released when `dir` is closed, on return or when the process dies
    dir.lock().map_err(OpenError::Io)?;
    match std::fs::metadata(path) {
        // another process made it while this one waited for the lock; opening it reports
        // anything wrong with it
        Ok(m) if !m.is_file() || m.len() > 0 => return Ok(()),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(OpenError::Io(e)),
    }
    let temp = creation_name(path);
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(OpenError::Io(e)),
    }
    // redb has synced the header and the magic number when this returns; closing it is
    // what lets the open of `path` below lock the file
    drop(open_file(&temp, cache_bytes)?);
    std::fs::rename(&temp, path).map_err(OpenError::Io)?;
    // the rename itself must survive a power loss, or the next start makes the file anew
    // and whatever was committed to it meanwhile is lost
    dir.sync_all().map_err(OpenError::Io)
}

/// Opens (or, in an empty or missing file, initialises) the database at `path` with redb,
/// mapping redb's errors and panics onto [`OpenError`].
fn open_file(path: &Path, cache_bytes: usize) -> Result<Database, OpenError> {
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
            if e.kind() == ErrorKind::InvalidData =>
        {
            Err(OpenError::NotADatabase(e.to_string()))
        }
        Ok(Err(DatabaseError::Storage(StorageError::Io(e)))) => Err(OpenError::Io(e)),
        Ok(Err(e)) => Err(OpenError::Storage(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What redb leaves when killed between its header write and its magic-number write: a
    /// file of the initial size whose first bytes are not the magic number (here all zeros;
    /// redb checks nothing before the magic number).
    fn half_made_database(path: &Path) {
        std::fs::write(path, vec![0u8; 1056768]).unwrap();
    }

    #[test]
    fn a_creation_killed_in_redb_leaves_nothing_that_stops_the_next() {
        let dir = tempfile::tempdir().unwrap();
        for existing in [None, Some(&b""[..])] {
            let path = dir.path().join(format!("db-{}", existing.is_some()));
            if let Some(content) = existing {
                std::fs::write(&path, content).unwrap();
            }
            half_made_database(&creation_name(&path));
            let db = open(&path, 1 << 20).unwrap();
            drop(db);
            assert!(
                !creation_name(&path).exists(),
                "the leftover was not replaced"
            );
            // a database now, not a fresh creation each time: a commit survives a reopen
            let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");
            let db = open(&path, 1 << 20).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(def).unwrap().insert(1, 2).unwrap();
            tx.commit().unwrap();
            drop(db);
            let db = open(&path, 1 << 20).unwrap();
            let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
            assert_eq!(
                tx.open_table(def).unwrap().get(1).unwrap().unwrap().value(),
                2
            );
        }
    }

    #[test]
    fn a_half_made_database_at_the_path_itself_is_refused_untouched() {
        // only a file this module made under its temporary name is known to be a killed
        // creation; at the path, the same bytes may be someone's file, and are left alone
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        half_made_database(&path);
        match open(&path, 1 << 20) {
            Err(OpenError::NotADatabase(detail)) => assert!(detail.contains("magic"), "{detail}"),
            other => panic!("expected NotADatabase, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), vec![0u8; 1056768]);
    }

    const ONE: TableDefinition<&str, u64> = TableDefinition::new("one_meta");
    const TWO: TableDefinition<&str, u64> = TableDefinition::new("two_meta");
    const DATA: TableDefinition<u64, u64> = TableDefinition::new("one_data");

    fn one_tables(tx: &WriteTransaction) -> Result<(), redb::TableError> {
        tx.open_table(DATA).map(drop)
    }

    const SCHEMA_ONE: Schema = Schema {
        meta: ONE,
        format: 3,
        initial_meta: &[("next", 1)],
        tables: one_tables,
    };

    #[test]
    fn a_store_is_made_once_and_then_only_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.redb");
        let db = open_store(&path, 1 << 20, &SCHEMA_ONE).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(ONE).unwrap().insert("next", 7).unwrap();
        tx.commit().unwrap();
        drop(db);
        let db = open_store(&path, 1 << 20, &SCHEMA_ONE).unwrap();
        let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
        let meta = tx.open_table(ONE).unwrap();
        assert_eq!(meta.get(META_FORMAT).unwrap().unwrap().value(), 3);
        assert_eq!(meta.get("next").unwrap().unwrap().value(), 7);
        tx.open_table(DATA).unwrap();
    }

    #[test]
    fn another_stores_database_or_a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.redb");
        drop(open_store(&path, 1 << 20, &SCHEMA_ONE).unwrap());
        let two = Schema {
            meta: TWO,
            format: 3,
            initial_meta: &[],
            tables: |_| Ok(()),
        };
        match open_store(&path, 1 << 20, &two) {
            Err(OpenError::NotADatabase(detail)) => assert_eq!(
                detail,
                "a redb database of something else (tables: one_data, one_meta)"
            ),
            other => panic!("expected NotADatabase, got {other:?}"),
        }
        let older = Schema {
            format: 2,
            ..SCHEMA_ONE
        };
        match open_store(&path, 1 << 20, &older) {
            Err(OpenError::UnsupportedFormat(3)) => {}
            other => panic!("expected UnsupportedFormat(3), got {other:?}"),
        }
    }

    #[test]
    fn the_temporary_name_lies_hidden_beside_the_database() {
        assert_eq!(
            creation_name(Path::new("jobs.redb")),
            Path::new(".jobs.redb.creating")
        );
        assert_eq!(
            creation_name(Path::new("/d/cj.redb")),
            Path::new("/d/.cj.redb.creating")
        );
    }
}
