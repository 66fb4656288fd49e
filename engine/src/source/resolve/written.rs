//! Which files' times are due on the replica.
//!
//! Writes move a file's times on the replica (applying them sets its mtime there), so
//! after a file's writes the source sends the times the file has on the source. The
//! [`Written`] set remembers the files written since the last checkpoint by name, follows
//! those names through renames not sent yet, and forgets a name whose times were set since
//! (a `utimes` after the writes) or that was removed.
//!
//! A file with several names (hard links) can be written through one that is removed
//! before its times are sent. The file lives on under another name, and the writes moved
//! its times on the replica too, so they are due under that name. The names of such files
//! are remembered as the stream shows them (written through, or linked), and followed
//! through renames and removals like the written names, so the name chosen is the one the
//! file has on the replica at that point of the stream: the source's tree as it is now may
//! be ahead of it. Whether a written file has other names is asked once per file and
//! checkpoint (one `statx`), when the capture said which file it wrote (an operation on
//! an open file). A file whose every name the stream showed was removed, while it lives
//! on under names the stream never showed (made before the job, or by a mirror), is found
//! by a walk of the source and remirrored whole.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rill_ops::{FileTimes, Reached};

use super::{gone, identity, move_beneath, swap_beneath, times_of, MAX_STALE};

/// Files written since the last checkpoint.
#[derive(Default)]
pub(super) struct Written {
    by_name: BTreeMap<PathBuf, Entry>,
    /// The names known in the stream of files with several names, and the file each
    /// names: where the times of such a file go when the name it was written through is
    /// removed.
    aliases: BTreeMap<PathBuf, (u64, u64)>,
    /// Files whose times are due but that no name the stream showed leads to: files with
    /// several names whose every name the stream showed was removed, and files a name no
    /// longer leads to once the stream has passed (see [`Written::take_due`]). Their names
    /// are found by a walk of the source and remirrored (see [`Written::take_homeless`]).
    homeless: Vec<(u64, u64)>,
    /// A name or file was not kept, past the bound (see [`Written::take_overflowed`]).
    overflowed: bool,
}

#[derive(Clone, Debug)]
struct Entry {
    /// (kernel device, inode) written, when the capture said.
    object: Option<(u64, u64)>,
    /// The file had other names when written, or was given one since.
    linked: bool,
    /// For an operation by name (`truncate(2)`, which follows a final symlink), the
    /// directory of the name it named: where a relative symlink it went through leads
    /// from, wherever later renames take the link (see [`reached_name`]).
    named_in: Option<PathBuf>,
    /// When (CLOCK_MONOTONIC ns) `object` was looked up, for an operation by name: by the
    /// capture's reader (see `Event::reached`) or on the source. See [`Written::moved`].
    looked_up: Option<u64>,
    /// When (CLOCK_MONOTONIC ns) a checkpoint first found the name gone, or holding another
    /// file than `object`: see [`Written::take_due`].
    astray_since: Option<u64>,
    /// The call by name went through a symlink at this name (the capture's reader saw a
    /// link there, and `object` is the file it led to): the name holds only the link, so
    /// its removal, or a `utimes` of it, leaves the file's times due.
    through_link: bool,
}

impl Written {
    /// Whether a name or file was not kept since the last call: the times or names due
    /// are not all known, and the whole source is to be remirrored.
    pub(super) fn take_overflowed(&mut self) -> bool {
        std::mem::take(&mut self.overflowed)
    }

    /// `rel` (beneath `source`) was written, by an operation on `object` if known, or by
    /// name, reaching the file `reached` when the capture's reader looked.
    pub(super) fn wrote(
        &mut self,
        source: &Path,
        rel: &Path,
        object: Option<(u64, u64)>,
        reached: Option<Reached>,
    ) {
        // A call by name through a symlink (`truncate(2)`) wrote the file the link leads
        // to: its times are due under that file's name, which the moves later in the
        // stream carry on. Kept under the link's name, they were read at the checkpoint
        // from whatever the link led to by then (found by the replication fuzzer: the file
        // exchanged away after the truncate, the times sent were the other file's).
        // The link is followed only if the capture's reader saw one there (or could not
        // look): the name can hold a link now that it did not hold at the call, and the
        // file that link leads to was not written (found by the replication fuzzer: a
        // truncate of a file exchanged with a symlink right after, its times kept for the
        // link's file and never sent).
        let link_seen = reached.is_none_or(|r| r.through_link);
        let through_link = match object {
            None if link_seen => reached_name(source, rel, None),
            _ => None,
        };
        let rel = through_link.as_deref().unwrap_or(rel);
        // The capture's word on which file a name holds is certain; a name the stream
        // showed as one of a file's several names can have been given to another file by
        // what the stream does not show (a mirror's rebuild of the name). Left in place,
        // the next change by name there took that file for the one written, which the
        // name never held again: its times were kept waiting for it and never sent
        // (found by the replication fuzzer: a truncate through a symlink, the file's
        // mtime on the replica the time the truncate was applied).
        if let Some(o) = object {
            if self.aliases.get(rel).is_some_and(|k| *k != o) {
                self.aliases.remove(rel);
            }
        }
        // The capture's reader named the file a call by name reached, close to the call:
        // the engine looks later, when the name may hold another file (found by the
        // replication fuzzer: a truncate, its file exchanged away 15 ms later, and the
        // times sent for it the other file's, read at a checkpoint before the exchange was
        // resolved). With the file known, that checkpoint waits for the exchange.
        let noted = reached.filter(|_| object.is_none());
        // Whether the name still held the reader's link is only known when it could not
        // be followed to the file's own name here.
        let through_link = through_link.is_none() && noted.is_some_and(|r| r.through_link);
        if let Some(e) = self.by_name.get_mut(rel) {
            if object.is_some() {
                e.object = object;
            } else if let (None, Some(r)) = (e.object, noted) {
                e.object = Some(r.file);
                e.looked_up = Some(r.at_ns);
                e.through_link = through_link;
            }
            return;
        }
        // A name the stream linked is known; otherwise the source is asked, which can
        // be too late (the name already removed, or given to another file). An
        // operation by name (`truncate(2)`) does not say which file it wrote: the name
        // the stream linked, or the source, does. Without it, the times due for a file
        // written by name through one of its links were dropped with that name (found
        // by the replication fuzzer).
        let known = self.aliases.get(rel).copied();
        let said = object.or(noted.map(|r| r.file));
        let linked = match (said, known) {
            (Some(o), Some(k)) if o == k => Some(o),
            (None, Some(k)) => Some(k),
            (o, _) => std::fs::symlink_metadata(source.join(rel))
                .ok()
                .filter(|m| m.nlink() > 1 && o.is_none_or(|o| o == identity(m)))
                .map(|m| identity(&m)),
        };
        if let Some(o) = linked {
            self.alias(rel.to_path_buf(), o);
        }
        let looked_up = match noted {
            Some(r) => Some(r.at_ns),
            None => (object.is_none() && known.is_none() && linked.is_some())
                .then(crate::clock::monotonic_ns),
        };
        let entry = Entry {
            object: said.or(linked),
            linked: linked.is_some(),
            looked_up,
            named_in: object
                .is_none()
                .then(|| rel.parent().map(Path::to_path_buf))
                .flatten(),
            astray_since: None,
            through_link,
        };
        self.keep(rel.to_path_buf(), entry);
    }

    /// The file the stream last showed under `rel`, if it showed it as one of several
    /// names of a file.
    pub(super) fn file_named(&self, rel: &Path) -> Option<(u64, u64)> {
        self.aliases.get(rel).copied()
    }

    /// A `utimes` set the file's times after its writes: none are due for it any more.
    /// One of a name a call went through as a symlink set the link's own times (one that
    /// followed a link is named by the file it reached: see the capture's reader), and the
    /// file's are still due.
    pub(super) fn times_set(&mut self, rel: &Path) {
        if self.by_name.get(rel).is_some_and(|e| !e.through_link) {
            self.by_name.remove(rel);
        }
    }

    /// `new` was made another name of the file `existing` names (a hard link). Both are
    /// remembered as names of the file the source has under them now, or under the one
    /// it still has when the other is gone already (the source can be seconds ahead of
    /// the stream, after a cut: found by the replication fuzzer, a file's times lost once
    /// the link it was written through was removed). Two names holding different files
    /// now say nothing about this point of the stream: neither is remembered. A name
    /// remembered for the wrong file only costs a look: the times go by the file.
    pub(super) fn linked(
        &mut self,
        source: &Path,
        existing: &Path,
        new: &Path,
        object: Option<(u64, u64)>,
    ) {
        let id = |rel: &Path| {
            std::fs::symlink_metadata(source.join(rel))
                .ok()
                .map(|m| identity(&m))
        };
        // The capture's reader identified the new name as the link was read; failing that,
        // the source now tells.
        let file = object.or_else(|| match (id(existing), id(new)) {
            (Some(a), Some(b)) => (a == b).then_some(a),
            (a, b) => a.or(b),
        });
        if let Some(file) = file {
            self.alias(existing.to_path_buf(), file);
            self.alias(new.to_path_buf(), file);
        }
        // The file written by name under `existing` is the one the link joined: known now,
        // its times follow it to the new name when `existing` is removed (found by the
        // replication fuzzer: a file truncated by name with one name, linked, the first
        // name removed, its times dropped with it).
        if let Some(e) = self.by_name.get_mut(existing) {
            e.linked = true;
            if e.object.is_none() {
                e.object = file;
            }
        }
    }

    /// `rel` was removed. The times due for a file that keeps another name are due under
    /// that name: one the stream showed, looked for even when the file did not seem
    /// linked when written (its name was gone from the source by then). A name a call went
    /// through as a symlink held only the link: the file it changed lives on.
    pub(super) fn unlinked(&mut self, rel: &Path) {
        self.aliases.remove(rel);
        if let Some(Entry {
            object: Some(o),
            linked,
            through_link,
            ..
        }) = self.by_name.remove(rel)
        {
            let other = self.aliases.iter().find(|(_, f)| **f == o).map(|(p, _)| p);
            match other.cloned() {
                Some(other) => {
                    let entry = Entry {
                        object: Some(o),
                        linked: true,
                        named_in: None,
                        looked_up: None,
                        astray_since: None,
                        through_link: false,
                    };
                    self.by_name.entry(other).or_insert(entry);
                }
                None if !linked && !through_link => {}
                // Its other names were made before the stream showed them (by a mirror,
                // or before the job): dropped here, the times due for the file were lost,
                // and the replica kept the times of its last write there (found by the
                // replication fuzzer). Or the name held only a link to the file, and a
                // mirror of the link's name removed it (found by the replication fuzzer: a
                // truncate through a symlink, the link renamed, then remirrored).
                None => self.lost_track(o),
            }
        }
    }

    /// The names (absolute) the files whose shown names were all removed have now on the
    /// source, to be remirrored: rebuilt whole, with their times. One walk per file; the
    /// case is rare (a file written through one of its names, that name removed before
    /// the next checkpoint, its other names never in the stream).
    pub(super) fn take_homeless(&mut self, source: &Path) -> Vec<PathBuf> {
        let homeless = std::mem::take(&mut self.homeless);
        if homeless.is_empty() {
            return Vec::new();
        }
        super::find_files(std::iter::once(source), &homeless)
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// `from` (and what is beneath it) was renamed to `to`, replacing what `to` named, by
    /// an operation captured at `captured` (CLOCK_MONOTONIC ns).
    pub(super) fn renamed(&mut self, from: &Path, to: &Path, captured: u64) {
        self.unlinked(to);
        move_beneath(&mut self.by_name, from, to);
        move_beneath(&mut self.aliases, from, to);
        self.moved(to, captured);
    }

    /// `a` and `b` (and what is beneath them) were exchanged (`RENAME_EXCHANGE`): each
    /// file keeps its times due, under the other name. Treated as a rename, the file that
    /// was at `b` lost them as if removed, and kept on the replica the times of its last
    /// write there.
    pub(super) fn exchanged(&mut self, a: &Path, b: &Path, captured: u64) {
        swap_beneath(&mut self.by_name, a, b);
        swap_beneath(&mut self.aliases, a, b);
        self.moved(a, captured);
        self.moved(b, captured);
    }

    /// The names now at `to` or beneath it were moved there by an operation captured at
    /// `captured`. A file looked up by name on the source after that (the source ahead of
    /// the stream) was the file the move brought to the name, not the one written: that
    /// identity is dropped, and the times go by the name. Kept, it never matched the file
    /// the name leads to after the move, and the times were held back for good (found by
    /// the replication fuzzer: a truncate, then an exchange 35 ms later, resolved after
    /// both; the file's mtime was the replica's apply time).
    fn moved(&mut self, to: &Path, captured: u64) {
        let beneath = self
            .by_name
            .range_mut(to.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(to));
        for (_, e) in beneath {
            if e.looked_up.is_some_and(|at| at > captured) {
                e.object = None;
                e.looked_up = None;
            }
            // A name astray before the move may be the file's again after it.
            e.astray_since = None;
        }
    }

    pub(super) fn clear(&mut self) {
        self.by_name.clear();
        self.aliases.clear();
        self.homeless.clear();
    }

    /// The names whose times are due now, with the files' current times on the source.
    /// A name that is gone, or holds another file, by operations not sent yet, is kept
    /// for a later checkpoint: those operations lead it to the name whose times are due.
    ///
    /// `stream_at` is the capture time (CLOCK_MONOTONIC ns) of the latest operation
    /// resolved. A file known by its identity that its name still does not lead to once
    /// the stream has passed the checkpoint that first found it astray is looked for by a
    /// walk and remirrored (see [`Written::take_homeless`]): the moves that explain an
    /// astray name were captured before that checkpoint, and have been followed since.
    /// Kept waiting, it waited for good whenever the identity or the name was not the one
    /// the stream leads to (a look that came after a move, a name a mirror rebuilt), and
    /// the file kept the replica's apply time.
    pub(super) fn take_due(&mut self, source: &Path, stream_at: u64) -> Vec<(PathBuf, FileTimes)> {
        let mut due = Vec::new();
        for (rel, mut entry) in std::mem::take(&mut self.by_name) {
            let m = match std::fs::symlink_metadata(source.join(&rel)) {
                Ok(m) => Some(m),
                Err(e) if gone(&e) => None,
                Err(_) => continue,
            };
            // A symlink's name: a call by name (`truncate(2)`) followed it and changed the
            // file it leads to, whose times are due (see [`reached_name`]). Judged by the link's
            // own identity, the file written was taken for astray, and once the link's name
            // was removed the times were lost (found by the replication fuzzer).
            let (name, m) = match m {
                Some(m) if m.file_type().is_symlink() => {
                    match reached_name(source, &rel, entry.named_in.as_deref()) {
                        Some(inside) => {
                            let m = std::fs::symlink_metadata(source.join(&inside)).ok();
                            (inside, m)
                        }
                        // Leads nowhere, and no file to look for: nothing is due.
                        None if entry.object.is_none() => continue,
                        None => (rel.clone(), None),
                    }
                }
                m => (rel.clone(), m),
            };
            let astray = match (&m, entry.object) {
                (None, _) => true,
                (Some(m), Some(o)) => o != identity(m),
                (Some(_), None) => false,
            };
            let Some(m) = m.filter(|_| !astray) else {
                match (entry.object, entry.astray_since) {
                    (Some(o), Some(since)) if stream_at > since => {
                        log::debug!(
                            "times due for {o:?}: {} leads elsewhere now that the stream has \
                             passed; the file is looked for",
                            rel.display()
                        );
                        self.lost_track(o);
                    }
                    _ => {
                        entry
                            .astray_since
                            .get_or_insert_with(crate::clock::monotonic_ns);
                        self.keep(rel, entry);
                    }
                }
                continue;
            };
            due.push((name, times_of(&m)));
        }
        due
    }

    /// Whether a file known by its identity waits for a name that led elsewhere at a
    /// checkpoint (see [`Written::take_due`]).
    pub(super) fn astray(&self) -> bool {
        self.by_name
            .values()
            .any(|e| e.object.is_some() && e.astray_since.is_some())
    }

    /// The stream's names no longer lead to the file `o`: its names are found by a walk
    /// and remirrored, up to a bound.
    fn lost_track(&mut self, o: (u64, u64)) {
        if self.homeless.len() < MAX_STALE {
            self.homeless.push(o);
        } else {
            self.overflowed = true;
        }
    }

    /// Keeps a name, up to a bound.
    fn keep(&mut self, rel: PathBuf, entry: Entry) {
        if self.by_name.len() < MAX_STALE {
            self.by_name.insert(rel, entry);
        } else {
            self.overflowed = true;
        }
    }

    /// Remembers a name of a file with several names, up to a bound.
    fn alias(&mut self, rel: PathBuf, file: (u64, u64)) {
        if self.aliases.len() < MAX_STALE {
            self.aliases.insert(rel, file);
        } else {
            self.overflowed = true;
        }
    }
}

/// The name (beneath `source`) of the file the symlink `rel` leads to; `None` when `rel`
/// is not a symlink, or leads nowhere or out of the source. A size call by name
/// (`truncate(2)`) follows a final symlink and changes the file it leads to; the capture
/// names that file when the link can still be read as the call's ring record is read, and
/// names the link when the name has moved on by then. The replica followed the same link
/// (its times moved there), so the times due are that file's (found by the replication
/// fuzzer: a link's times sent, its file keeping the replica's apply time).
///
/// A relative link leads from the directory of the name the call named (`named_in`),
/// where the call followed it, not from wherever a rename sent since has moved the link:
/// read from there, it led to another file or none, and the truncated file kept the
/// replica's apply time (found by the replication fuzzer).
fn reached_name(source: &Path, rel: &Path, named_in: Option<&Path>) -> Option<PathBuf> {
    let link = source.join(rel);
    let target = std::fs::read_link(&link).ok()?;
    let from = match named_in {
        Some(dir) if target.is_relative() && rel.parent() != Some(dir) => {
            source.join(dir).join(target)
        }
        _ => link,
    };
    let real = std::fs::canonicalize(from).ok()?;
    let base = std::fs::canonicalize(source).ok()?;
    Some(real.strip_prefix(&base).ok()?.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(p: &Path) -> Option<(u64, u64)> {
        Some(identity(&std::fs::symlink_metadata(p).unwrap()))
    }

    /// A name the stream showed as a hard link, given to another file the stream did not
    /// show (a mirror rebuilt it): a write the capture names the new file for corrects
    /// it, so a later change by name (which does not say which file) has its times sent.
    #[test]
    fn a_name_given_to_another_file_is_not_taken_for_the_linked_one() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::write(src.join("a"), b"linked").unwrap();
        std::fs::hard_link(src.join("a"), src.join("b")).unwrap();
        let mut w = Written::default();
        w.linked(src, Path::new("a"), Path::new("b"), None);
        std::fs::remove_file(src.join("a")).unwrap();
        std::fs::write(src.join("a"), b"another file").unwrap();
        w.wrote(src, Path::new("a"), object(&src.join("a")), None);
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("a")]);
        // A truncate by name, which does not say which file it changed.
        w.wrote(src, Path::new("a"), None, None);
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            due,
            [PathBuf::from("a")],
            "the times of a by-name change are sent"
        );
    }

    /// A file written through one of its names, and that name removed before the times
    /// are sent: they are due under the name it keeps.
    #[test]
    fn times_of_a_file_written_through_a_removed_link_are_due_under_another_name() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::create_dir_all(src.join("deep/er")).unwrap();
        std::fs::write(src.join("deep/er/kept"), b"data").unwrap();
        std::fs::hard_link(src.join("deep/er/kept"), src.join("tmp")).unwrap();
        let mut w = Written::default();
        w.linked(src, Path::new("deep/er/kept"), Path::new("tmp"), None);
        w.wrote(src, Path::new("tmp"), object(&src.join("tmp")), None);
        std::fs::remove_file(src.join("tmp")).unwrap();
        w.unlinked(Path::new("tmp"));
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("deep/er/kept")]);
        assert!(w.take_due(src, 0).is_empty(), "due once");
    }

    /// A file written through one of its names whose other name the stream never showed
    /// (made before the job, or by a mirror): once the written name is removed, the file's
    /// names now are found by a walk and handed back to be remirrored, with its times.
    #[test]
    fn a_file_written_through_a_removed_name_whose_others_were_never_shown_is_found() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::create_dir(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/kept"), b"data").unwrap();
        std::fs::hard_link(src.join("sub/kept"), src.join("tmp")).unwrap();
        let mut w = Written::default();
        w.wrote(src, Path::new("tmp"), object(&src.join("tmp")), None);
        std::fs::remove_file(src.join("tmp")).unwrap();
        w.unlinked(Path::new("tmp"));
        assert!(w.take_due(src, 0).is_empty());
        assert_eq!(w.take_homeless(src), [src.join("sub/kept")]);
        assert!(w.take_homeless(src).is_empty(), "handed back once");
    }

    /// A file written by name (`truncate(2)`: the capture does not say which file) through
    /// a name the stream linked, and that name removed: the times are due under the name
    /// it keeps. They were dropped with the name.
    #[test]
    fn times_of_a_file_written_by_name_through_a_removed_link_are_due_under_another_name() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::write(src.join("kept"), b"data").unwrap();
        std::fs::hard_link(src.join("kept"), src.join("tmp")).unwrap();
        let mut w = Written::default();
        w.linked(src, Path::new("kept"), Path::new("tmp"), None);
        std::fs::remove_file(src.join("tmp")).unwrap();
        w.wrote(src, Path::new("tmp"), None, None);
        w.unlinked(Path::new("tmp"));
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("kept")]);
    }

    /// A truncate by name through a symlink, named by the link (the capture could not read
    /// it in time): the times due are those of the file the link leads to.
    #[test]
    fn times_of_a_file_truncated_through_a_symlink_are_due_under_its_name() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::create_dir(src.join("d")).unwrap();
        std::fs::write(src.join("d/file"), b"data").unwrap();
        std::os::unix::fs::symlink("file", src.join("d/link")).unwrap();
        let mut w = Written::default();
        w.wrote(src, Path::new("d/link"), None, None);
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("d/file")]);
    }

    /// A file written by name while it had one name, then linked, then removed under
    /// the name it was written through: the times are due under the link.
    #[test]
    fn a_file_written_by_name_then_linked_keeps_its_times_under_the_link() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::write(src.join("a"), b"data").unwrap();
        let mut w = Written::default();
        w.wrote(src, Path::new("a"), None, None);
        std::fs::hard_link(src.join("a"), src.join("b")).unwrap();
        w.linked(src, Path::new("a"), Path::new("b"), None);
        std::fs::remove_file(src.join("a")).unwrap();
        w.unlinked(Path::new("a"));
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("b")]);
    }

    /// A truncate through a symlink whose file an exchange later in the stream moves
    /// away: the times are due under the name the exchange gives the file, and are that
    /// file's, not those of the file the link leads to by then.
    #[test]
    fn times_of_a_file_truncated_through_a_symlink_follow_the_file() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::create_dir(src.join("d")).unwrap();
        std::fs::write(src.join("d/file"), b"truncated").unwrap();
        std::fs::write(src.join("other"), b"other").unwrap();
        std::os::unix::fs::symlink("file", src.join("d/link")).unwrap();
        let file = object(&src.join("d/file"));
        let mut w = Written::default();
        w.wrote(src, Path::new("d/link"), None, None);
        crate::source::resolve::exchange_names(&src.join("d/file"), &src.join("other"));
        w.exchanged(Path::new("d/file"), Path::new("other"), 0);
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("other")]);
        assert_eq!(object(&src.join("other")), file);
    }

    /// The same when the link was moved to another directory before the times were due:
    /// its relative target leads from where the truncate named it, not from where it is.
    #[test]
    fn times_of_a_file_truncated_through_a_symlink_moved_since_are_due_under_its_name() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        for dir in ["d", "e"] {
            std::fs::create_dir(src.join(dir)).unwrap();
            std::fs::write(src.join(dir).join("file"), dir).unwrap();
        }
        std::os::unix::fs::symlink("file", src.join("d/link")).unwrap();
        let mut w = Written::default();
        w.wrote(src, Path::new("d/link"), None, None);
        std::fs::rename(src.join("d/link"), src.join("e/link")).unwrap();
        w.renamed(Path::new("d/link"), Path::new("e/link"), 0);
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("d/file")]);
    }

    /// A truncate by name resolved after an exchange that followed it on the source: the
    /// name held the other file, which has two names, by then. Once the stream's exchange
    /// carries the name to where the truncated file went, its times are due there.
    #[test]
    fn a_file_looked_up_after_a_later_exchange_is_not_taken_for_the_one_written() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::write(src.join("a"), b"written").unwrap();
        std::fs::write(src.join("b"), b"other").unwrap();
        std::fs::hard_link(src.join("b"), src.join("b2")).unwrap();
        let captured = crate::clock::monotonic_ns();
        // The source ahead of the stream: the exchange is done when the truncate of `a`
        // is resolved.
        crate::source::resolve::exchange_names(&src.join("a"), &src.join("b"));
        let mut w = Written::default();
        w.wrote(src, Path::new("a"), None, None);
        w.exchanged(Path::new("a"), Path::new("b"), captured);
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("b")]);
    }

    /// A link sent after its new name was removed from the source (the source ahead of
    /// the stream, after a cut), then a write through that name, then its removal: the
    /// times are due under the name the file keeps.
    #[test]
    fn a_link_whose_new_name_is_gone_already_still_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::write(src.join("kept"), b"data").unwrap();
        let file = object(&src.join("kept"));
        let mut w = Written::default();
        w.linked(src, Path::new("kept"), Path::new("gone"), None);
        w.wrote(src, Path::new("gone"), file, None);
        w.unlinked(Path::new("gone"));
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("kept")]);
    }

    /// The same through a link made after the write, and through a rename over the name.
    #[test]
    fn a_link_made_after_the_write_and_a_rename_over_the_name_count_too() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::write(src.join("a"), b"data").unwrap();
        std::fs::write(src.join("b"), b"other").unwrap();
        let mut w = Written::default();
        w.wrote(src, Path::new("a"), object(&src.join("a")), None);
        std::fs::hard_link(src.join("a"), src.join("c")).unwrap();
        w.linked(src, Path::new("a"), Path::new("c"), None);
        std::fs::rename(src.join("b"), src.join("a")).unwrap();
        w.renamed(Path::new("b"), Path::new("a"), 0);
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("c")]);
    }

    /// A file with one name, removed: nothing is due and no walk is needed.
    #[test]
    fn a_removed_file_with_one_name_is_forgotten() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::write(src.join("only"), b"data").unwrap();
        let mut w = Written::default();
        w.wrote(src, Path::new("only"), object(&src.join("only")), None);
        std::fs::remove_file(src.join("only")).unwrap();
        w.unlinked(Path::new("only"));
        assert!(w.aliases.is_empty());
        assert!(w.take_due(src, 0).is_empty());
    }

    /// The name the times move to follows the renames the stream shows after it, and the
    /// tree as it is now (ahead of the stream) is not consulted for it.
    #[test]
    fn the_other_name_follows_later_renames() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::write(src.join("x"), b"data").unwrap();
        std::fs::hard_link(src.join("x"), src.join("y")).unwrap();
        let mut w = Written::default();
        w.linked(src, Path::new("x"), Path::new("y"), None);
        w.wrote(src, Path::new("y"), object(&src.join("y")), None);
        std::fs::remove_file(src.join("y")).unwrap();
        std::fs::rename(src.join("x"), src.join("z")).unwrap();
        w.unlinked(Path::new("y"));
        assert!(
            w.take_due(src, 0).is_empty(),
            "x is gone on the source: kept"
        );
        w.renamed(Path::new("x"), Path::new("z"), 0);
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("z")]);
    }

    /// A link the capture identified, resolved when its existing name holds another file
    /// already (renamed over on the source, which is ahead): the new name still names the
    /// file, and the times written through the old name are due under it.
    #[test]
    fn a_link_the_capture_identified_names_its_file_whatever_the_names_hold_now() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        std::fs::write(src.join("old"), b"data").unwrap();
        std::fs::hard_link(src.join("old"), src.join("new")).unwrap();
        let file = object(&src.join("new"));
        std::fs::write(src.join("other"), b"another").unwrap();
        std::fs::rename(src.join("other"), src.join("old")).unwrap();
        let mut w = Written::default();
        w.linked(src, Path::new("old"), Path::new("new"), file);
        w.wrote(src, Path::new("old"), file, None);
        w.renamed(Path::new("other"), Path::new("old"), 0);
        let due: Vec<PathBuf> = w.take_due(src, 0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(due, [PathBuf::from("new")]);
    }

    /// Two files with distinct mtimes, `a` and `b`, beneath `src`.
    fn two_files(src: &Path) {
        for (name, secs) in [("a", 1_000_000_000), ("b", 2_000_000_000)] {
            std::fs::write(src.join(name), name).unwrap();
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let f = std::fs::File::options()
                .write(true)
                .open(src.join(name))
                .unwrap();
            f.set_modified(t).unwrap();
        }
    }

    fn mtime(p: &Path) -> i64 {
        std::fs::symlink_metadata(p).unwrap().mtime()
    }

    /// A truncate by name whose file was exchanged away on the source before the checkpoint,
    /// the exchange not resolved yet: the name holds the other file, whose times are not
    /// sent for it; once the exchange is resolved, the times due are the truncated file's,
    /// under the name the exchange gave it (found by the replication fuzzer: the other
    /// file's times sent, read by name before the exchange was resolved).
    #[test]
    fn a_file_truncated_by_name_then_exchanged_gets_its_own_times() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        two_files(src);
        let truncated = object(&src.join("a")).unwrap();
        let mut w = Written::default();
        let reached = Reached {
            file: truncated,
            at_ns: 10,
            through_link: false,
        };
        w.wrote(src, Path::new("a"), None, Some(reached));
        crate::source::resolve::exchange_names(&src.join("a"), &src.join("b"));
        assert!(
            w.take_due(src, 10).is_empty(),
            "the name holds the other file until the exchange is resolved"
        );
        w.exchanged(Path::new("a"), Path::new("b"), 20);
        let due = w.take_due(src, 20);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, PathBuf::from("b"));
        assert_eq!(due[0].1.mtime.0, mtime(&src.join("b")));
        assert_eq!(due[0].1.mtime.0, 1_000_000_000, "the truncated file's");
    }

    /// A file whose name the stream no longer leads to once the stream has passed the
    /// checkpoint that found it astray (here: renamed on the source by nothing the stream
    /// shows) is looked for and remirrored, not kept waiting for good.
    #[test]
    fn a_file_its_name_no_longer_leads_to_is_looked_for_once_the_stream_has_passed() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        two_files(src);
        let mut w = Written::default();
        w.wrote(src, Path::new("a"), object(&src.join("a")), None);
        std::fs::rename(src.join("a"), src.join("elsewhere")).unwrap();
        let found_at = crate::clock::monotonic_ns();
        assert!(w.take_due(src, found_at).is_empty());
        assert!(w.take_homeless(src).is_empty(), "the stream may still tell");
        assert!(w.take_due(src, found_at).is_empty());
        assert!(w.take_homeless(src).is_empty(), "the stream has not moved");
        let passed = crate::clock::monotonic_ns() + 1;
        assert!(w.take_due(src, passed).is_empty());
        assert_eq!(w.take_homeless(src), [src.join("elsewhere")]);
        assert!(w.take_due(src, passed).is_empty(), "given up once");
    }

    /// A truncate through the symlink `l` to `a`, whose link was renamed to `m` before the
    /// truncate was resolved (the source ahead of the stream): the capture's reader saw the
    /// link and the file it led to.
    fn truncated_through_a_moved_link(src: &Path) -> Written {
        two_files(src);
        std::os::unix::fs::symlink("a", src.join("l")).unwrap();
        let reached = Reached {
            file: object(&src.join("a")).unwrap(),
            at_ns: 10,
            through_link: true,
        };
        std::fs::rename(src.join("l"), src.join("m")).unwrap();
        let mut w = Written::default();
        w.wrote(src, Path::new("l"), None, Some(reached));
        w.renamed(Path::new("l"), Path::new("m"), 20);
        w
    }

    /// Once the stream has caught up with the link's move, the times due are those of the
    /// file the link leads to, under that file's name (found by the replication fuzzer:
    /// judged by the link's own identity, the file was taken for astray).
    #[test]
    fn a_file_truncated_through_a_link_since_moved_gets_its_times() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        let mut w = truncated_through_a_moved_link(src);
        let due = w.take_due(src, 20);
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].0, PathBuf::from("a"));
        assert_eq!(due[0].1.mtime.0, 1_000_000_000);
    }

    /// The link's own times set, then the link removed (a mirror of its name rebuilds it so):
    /// the file it led to lives on, and is looked for to have its times sent (found by the
    /// replication fuzzer: its times were dropped with the link's name, and the replica
    /// kept the time it applied the truncate).
    #[test]
    fn a_link_truncated_through_removed_leaves_its_file_due() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        let mut w = truncated_through_a_moved_link(src);
        w.times_set(Path::new("m"));
        w.unlinked(Path::new("m"));
        assert!(w.take_due(src, 20).is_empty());
        assert_eq!(w.take_homeless(src), [src.join("a")]);
    }

    /// A truncate by name of the file `a` (no link there at the call), `a` then exchanged
    /// on the source with the symlink `l` (to `b`) before the truncate was resolved: the
    /// times due are `a`'s, under the name the exchange gives it, not those of the file
    /// the link that now has the name leads to (found by the replication fuzzer).
    #[test]
    fn a_name_that_became_a_link_after_the_call_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path();
        two_files(src);
        std::os::unix::fs::symlink("b", src.join("l")).unwrap();
        let reached = Reached {
            file: object(&src.join("a")).unwrap(),
            at_ns: 10,
            through_link: false,
        };
        crate::source::resolve::exchange_names(&src.join("a"), &src.join("l"));
        let mut w = Written::default();
        w.wrote(src, Path::new("a"), None, Some(reached));
        w.exchanged(Path::new("a"), Path::new("l"), 20);
        let due = w.take_due(src, 20);
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].0, PathBuf::from("l"));
        assert_eq!(due[0].1.mtime.0, 1_000_000_000, "the truncated file's");
    }
}
