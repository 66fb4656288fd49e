//! The redb side of the journal: the table definitions and format (the [`SCHEMA`] by which
//! `storage::database::open_store` creates or checks a journal's tables), running a closure
//! in one durable write transaction, and [`Tables`], the typed get/put/delete and subtree lookups the journal's operations are written in. Kept
//! apart from the operations so the merge rules in `journal.rs` read without storage detail.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::codec::Rec;
use super::keys::{path_of, under_bounds};
use super::{ChangeJournal, Error, Result};
use crate::storage::database::Schema;
#[cfg(test)]
pub(super) use crate::storage::database::META_FORMAT;

/// Files (and metadata-only entries), keyed by raw path bytes.
pub(super) const FILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rill_cj_files");
/// Subtree entries, keyed by the directory's raw path bytes.
pub(super) const SUBTREES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rill_cj_subtrees");
/// `format` and `next_version`.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("rill_cj_meta");
const META_NEXT_VERSION: &str = "next_version";
/// The journal's schema version.
pub(super) const FORMAT: u64 = 1;
/// redb's page cache: the journal is small and read mostly at remirror time.
pub(super) const CACHE_BYTES: usize = 16 << 20;
/// What makes a database a change journal; a new one numbers its entries from 1.
pub(super) const SCHEMA: Schema = Schema {
    meta: META,
    format: FORMAT,
    initial_meta: &[(META_NEXT_VERSION, 1)],
    tables: create_tables,
};

fn create_tables(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.open_table(FILES)?;
    tx.open_table(SUBTREES)?;
    Ok(())
}

impl ChangeJournal {
    /// Runs `f` in one write transaction and commits it durably, or aborts it on error.
    pub(super) fn write<T>(&self, f: impl FnOnce(&mut Tables<'_>) -> Result<T>) -> Result<T> {
        let tx = self.db.begin_write().db(&self.path)?;
        let out = {
            let mut meta = tx.open_table(META).db(&self.path)?;
            let next_version = meta
                .get(META_NEXT_VERSION)
                .db(&self.path)?
                .map_or(1, |g| g.value());
            let mut t = Tables {
                files: tx.open_table(FILES).db(&self.path)?,
                subtrees: tx.open_table(SUBTREES).db(&self.path)?,
                next_version,
                journal: self,
            };
            let out = f(&mut t)?;
            if t.next_version != next_version {
                meta.insert(META_NEXT_VERSION, t.next_version)
                    .db(&self.path)?;
            }
            out
        };
        tx.commit().db(&self.path)?;
        Ok(out)
    }

    pub(super) fn decode(&self, key: &[u8], value: &[u8]) -> Result<Rec> {
        Rec::decode(value).map_err(|detail| Error::CorruptEntry {
            path: self.path.clone(),
            entry: path_of(key),
            detail,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Table {
    Files,
    Subtrees,
}

/// The journal's tables inside one write transaction.
pub(super) struct Tables<'t> {
    files: redb::Table<'t, &'static [u8], &'static [u8]>,
    pub(super) subtrees: redb::Table<'t, &'static [u8], &'static [u8]>,
    next_version: u64,
    pub(super) journal: &'t ChangeJournal,
}

impl<'t> Tables<'t> {
    fn table(&self, table: Table) -> &redb::Table<'t, &'static [u8], &'static [u8]> {
        match table {
            Table::Files => &self.files,
            Table::Subtrees => &self.subtrees,
        }
    }

    pub(super) fn next_version(&mut self) -> u64 {
        let v = self.next_version;
        self.next_version += 1;
        v
    }

    pub(super) fn get(&self, table: Table, key: &[u8]) -> Result<Option<Rec>> {
        match self.table(table).get(key).db(&self.journal.path)? {
            Some(v) => Ok(Some(self.journal.decode(key, v.value())?)),
            None => Ok(None),
        }
    }

    /// The subtree entry `covering_subtree` just found in this transaction; its absence
    /// would mean a damaged table, reported as such rather than a panic.
    pub(super) fn covering(&self, key: &[u8]) -> Result<Rec> {
        self.get(Table::Subtrees, key)?
            .ok_or_else(|| Error::CorruptEntry {
                path: self.journal.path.clone(),
                entry: path_of(key),
                detail: "a covering subtree entry vanished within a transaction".into(),
            })
    }

    pub(super) fn put(&mut self, table: Table, key: &[u8], rec: &Rec) -> Result<()> {
        let value = rec.encode();
        let t = match table {
            Table::Files => &mut self.files,
            Table::Subtrees => &mut self.subtrees,
        };
        t.insert(key, value.as_slice()).db(&self.journal.path)?;
        Ok(())
    }

    pub(super) fn delete(&mut self, table: Table, key: &[u8]) -> Result<()> {
        let t = match table {
            Table::Files => &mut self.files,
            Table::Subtrees => &mut self.subtrees,
        };
        t.remove(key).db(&self.journal.path)?;
        Ok(())
    }

    /// The key of `key` itself if it is a subtree entry.
    pub(super) fn subtree_at(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .subtrees
            .get(key)
            .db(&self.journal.path)?
            .is_some()
            .then(|| key.to_vec()))
    }

    /// The subtree entry at `key` or at one of its ancestors, if any.
    pub(super) fn covering_subtree(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.subtrees.is_empty().db(&self.journal.path)? {
            return Ok(None);
        }
        for ancestor in Path::new(OsStr::from_bytes(key)).ancestors() {
            let a = ancestor.as_os_str().as_bytes();
            if a.is_empty() {
                break;
            }
            if let Some(k) = self.subtree_at(a)? {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    /// Removes and returns the entries (files and subtrees) at and under `key`.
    #[allow(clippy::type_complexity)]
    pub(super) fn take_at_or_under(&mut self, key: &[u8]) -> Result<Vec<((Table, Vec<u8>), Rec)>> {
        let (lo, hi) = under_bounds(key);
        let mut found = Vec::new();
        for table in [Table::Files, Table::Subtrees] {
            if lo != key {
                if let Some(rec) = self.get(table, key)? {
                    found.push(((table, key.to_vec()), rec));
                }
            }
            for item in self
                .table(table)
                .range::<&[u8]>(lo.as_slice()..hi.as_slice())
                .db(&self.journal.path)?
            {
                let (k, v) = item.db(&self.journal.path)?;
                let rec = self.journal.decode(k.value(), v.value())?;
                found.push(((table, k.value().to_vec()), rec));
            }
        }
        for ((table, k), _) in &found {
            self.delete(*table, k)?;
        }
        Ok(found)
    }
}

/// Attaches the journal's path to a redb error.
pub(super) trait Db<T> {
    fn db(self, path: &Path) -> Result<T>;
}

impl<T, E: Into<redb::Error>> Db<T> for Result<T, E> {
    fn db(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::Storage {
            path: path.to_path_buf(),
            source: e.into(),
        })
    }
}
