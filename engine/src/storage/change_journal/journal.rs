//! [`ChangeJournal`] and its operations: opening a journal and the merge rules of the
//! module doc (mark, mark a subtree, rename, remove, read pending entries and complete them).
//! Each operation is one write transaction through the store's `Tables`; the redb plumbing
//! itself (tables, transactions, decoding) lives in `store.rs`.

use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTableMetadata};

use super::codec::Rec;
use super::keys::{is_at_or_under, key_of, parent_key};
use super::store::{Db, Table, CACHE_BYTES, FILES, SCHEMA, SUBTREES};
use super::{Entry, Error, Mark, Options, Reason, Result};
use crate::storage::database;

/// The durable change journal. All methods take `&self`; write transactions are serialised
/// by redb, so one journal may be shared between threads.
pub struct ChangeJournal {
    pub(super) db: Database,
    pub(super) path: PathBuf,
    max_ranges: usize,
}

impl fmt::Debug for ChangeJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeJournal")
            .field("path", &self.path)
            .field("max_ranges", &self.max_ranges)
            .finish()
    }
}

impl ChangeJournal {
    /// Opens the journal at `path`, creating it if it does not exist (or is empty).
    pub fn open(path: &Path) -> Result<ChangeJournal> {
        ChangeJournal::open_with(path, Options::default())
    }

    pub fn open_with(path: &Path, options: Options) -> Result<ChangeJournal> {
        let db = database::open_store(path, CACHE_BYTES, &SCHEMA)
            .map_err(|e| Error::opening(path, e))?;
        Ok(ChangeJournal {
            db,
            path: path.to_path_buf(),
            max_ranges: options.max_ranges.max(1),
        })
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks files dirty: one durable transaction for the whole batch, applied in order.
    /// When this returns `Ok`, every mark survives a crash.
    pub fn mark(&self, marks: &[Mark]) -> Result<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let keys = marks
            .iter()
            .map(|m| key_of(&m.path))
            .collect::<Result<Vec<_>>>()?;
        let max_ranges = self.max_ranges;
        self.write(|t| {
            // Entries touched by this batch, written back once at the end.
            let mut files: HashMap<&[u8], Rec> = HashMap::new();
            let mut subtrees: HashMap<Vec<u8>, Rec> = HashMap::new();
            let mut cover_of_parent: HashMap<&[u8], Option<Vec<u8>>> = HashMap::new();
            let any_subtrees = !t.subtrees.is_empty().db(&t.journal.path)?;
            for (m, key) in marks.iter().zip(&keys) {
                let cover = if !any_subtrees {
                    None
                } else if let Some(s) = t.subtree_at(key)? {
                    Some(s)
                } else {
                    let parent = parent_key(key);
                    match cover_of_parent.get(parent) {
                        Some(c) => c.clone(),
                        None => {
                            let c = t.covering_subtree(parent)?;
                            cover_of_parent.insert(parent, c.clone());
                            c
                        }
                    }
                };
                let version = t.next_version();
                if let Some(skey) = cover {
                    let rec = match subtrees.remove(&skey) {
                        Some(r) => r,
                        None => t.covering(&skey)?,
                    };
                    let mut rec = rec;
                    rec.note(m.reason.bit(), m.ns);
                    rec.version = version;
                    subtrees.insert(skey, rec);
                    continue;
                }
                let rec = match files.get_mut(key.as_slice()) {
                    Some(r) => r,
                    None => {
                        let r = t.get(Table::Files, key)?.unwrap_or_else(Rec::empty);
                        files.entry(key.as_slice()).or_insert(r)
                    }
                };
                rec.apply(m.range, m.reason.bit(), m.ns, max_ranges);
                rec.version = version;
            }
            for (key, rec) in &files {
                t.put(Table::Files, key, rec)?;
            }
            for (key, rec) in &subtrees {
                t.put(Table::Subtrees, key, rec)?;
            }
            Ok(())
        })
    }

    /// Marks everything at or below `dir` dirty (a rescan), folding the entries there into
    /// one subtree entry. Durable when it returns.
    pub fn mark_subtree(&self, dir: &Path, reason: Reason, ns: u64) -> Result<()> {
        let key = key_of(dir)?;
        self.write(|t| {
            let version = t.next_version();
            if let Some(skey) = t.covering_subtree(&key)? {
                let mut rec = t.covering(&skey)?;
                rec.note(reason.bit(), ns);
                rec.version = version;
                return t.put(Table::Subtrees, &skey, &rec);
            }
            let mut rec = Rec::empty();
            rec.make_whole();
            rec.note(reason.bit(), ns);
            for (_, old) in t.take_at_or_under(&key)? {
                rec.fold(&old);
            }
            rec.version = version;
            t.put(Table::Subtrees, &key, &rec)
        })
    }

    /// Up to `limit` entries in path order (raw byte order of the paths).
    pub fn pending(&self, limit: usize) -> Result<Vec<Entry>> {
        self.pending_after(None, limit)
    }

    /// Up to `limit` entries whose paths sort after `after` (to page through the journal
    /// without completing entries), in path order.
    pub fn pending_after(&self, after: Option<&Path>, limit: usize) -> Result<Vec<Entry>> {
        let after = after.map(key_of).transpose()?;
        let start: Bound<&[u8]> = match &after {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Unbounded,
        };
        let tx = self.db.begin_read().db(&self.path)?;
        let mut lists = Vec::with_capacity(2);
        for (def, subtree) in [(FILES, false), (SUBTREES, true)] {
            let table = tx.open_table(def).db(&self.path)?;
            let mut list = Vec::new();
            for item in table
                .range::<&[u8]>((start, Bound::Unbounded))
                .db(&self.path)?
            {
                if list.len() >= limit {
                    break;
                }
                let (k, v) = item.db(&self.path)?;
                let rec = self.decode(k.value(), v.value())?;
                list.push(Entry::from_rec(k.value(), rec, subtree));
            }
            lists.push(list);
        }
        let subtrees = lists.pop().unwrap_or_default();
        let files = lists.pop().unwrap_or_default();
        let mut out = Vec::with_capacity(limit.min(files.len() + subtrees.len()));
        let (mut f, mut s) = (
            files.into_iter().peekable(),
            subtrees.into_iter().peekable(),
        );
        while out.len() < limit {
            let take_file = match (f.peek(), s.peek()) {
                (Some(a), Some(b)) => a.path.as_os_str().as_bytes() < b.path.as_os_str().as_bytes(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            out.extend(if take_file { f.next() } else { s.next() });
        }
        Ok(out)
    }

    /// The number of entries (files and subtrees).
    pub fn len(&self) -> Result<u64> {
        let tx = self.db.begin_read().db(&self.path)?;
        let files = tx.open_table(FILES).db(&self.path)?.len().db(&self.path)?;
        let subtrees = tx
            .open_table(SUBTREES)
            .db(&self.path)?
            .len()
            .db(&self.path)?;
        Ok(files + subtrees)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes entries that have been remirrored: each `(path, version)` as returned by
    /// [`Entry::done`]. An entry whose version changed since (it was marked, folded into or
    /// moved after `pending` read it) stays. Returns how many entries were removed.
    pub fn complete(&self, done: &[(PathBuf, u64)]) -> Result<usize> {
        let keys = done
            .iter()
            .map(|(p, v)| Ok((key_of(p)?, *v)))
            .collect::<Result<Vec<_>>>()?;
        self.write(|t| {
            let mut removed = 0;
            for (key, version) in &keys {
                for table in [Table::Files, Table::Subtrees] {
                    if let Some(rec) = t.get(table, key)? {
                        if rec.version == *version {
                            t.delete(table, key)?;
                            removed += 1;
                        }
                    }
                }
            }
            Ok(removed)
        })
    }

    /// [`complete`](Self::complete) for entries as `pending` returned them.
    pub fn complete_entries(&self, entries: &[Entry]) -> Result<usize> {
        self.complete(&entries.iter().map(Entry::done).collect::<Vec<_>>())
    }

    /// `from` was renamed to `to` before being remirrored: the entries at and under `from`
    /// move under `to` (merge rule 7).
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (fk, tk) = (key_of(from)?, key_of(to)?);
        if fk == tk {
            return Ok(());
        }
        let invalid = |why| Error::InvalidRename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            why,
        };
        if is_at_or_under(&tk, &fk) {
            return Err(invalid("the destination is inside the source"));
        }
        if is_at_or_under(&fk, &tk) {
            return Err(invalid("the source is inside the destination"));
        }
        self.write(|t| {
            let moved = t.take_at_or_under(&fk)?;
            let cover_from = match t.covering_subtree(&fk)? {
                Some(s) => t.get(Table::Subtrees, &s)?,
                None => None,
            };
            t.take_at_or_under(&tk)?;
            if let Some(skey) = t.covering_subtree(&tk)? {
                let mut rec = t.covering(&skey)?;
                for (_, old) in &moved {
                    rec.fold(old);
                }
                if let Some(s) = &cover_from {
                    rec.reasons |= s.reasons;
                }
                rec.version = t.next_version();
                return t.put(Table::Subtrees, &skey, &rec);
            }
            if let Some(s) = cover_from {
                let mut rec = Rec::empty();
                rec.make_whole();
                rec.reasons = s.reasons;
                rec.first_ns = s.first_ns;
                rec.last_ns = s.last_ns;
                rec.count = 1;
                for (_, old) in &moved {
                    rec.fold(old);
                }
                rec.version = t.next_version();
                return t.put(Table::Subtrees, &tk, &rec);
            }
            for ((table, key), mut rec) in moved {
                let mut new_key = tk.clone();
                new_key.extend_from_slice(&key[fk.len()..]);
                rec.version = t.next_version();
                t.put(table, &new_key, &rec)?;
            }
            Ok(())
        })
    }

    /// `path` was deleted before being remirrored: drops the entries at and under it (a
    /// subtree entry above it stays). Returns how many were dropped.
    pub fn remove(&self, path: &Path) -> Result<usize> {
        let key = key_of(path)?;
        self.write(|t| Ok(t.take_at_or_under(&key)?.len()))
    }
}
