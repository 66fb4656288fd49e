//! From captured events to queued operations.
//!
//! The drain takes events in capture order and produces what the queue keeps:
//!
//! - only operations on paths a replication set protects; a rename across the set's
//!   boundary becomes what it means for the replica: moving out is a removal, so the old
//!   name is handed to the change journal (a remirror removes it as an orphan, whatever it
//!   was), and moving in is new content, so the new name is handed to the change journal
//!   to be mirrored;
//! - dirty marks of files the capture identified kept in the stream (see
//!   [`Drained::Op`]), others handed to the change journal;
//! - range-only writes (the driver throttled, or the write exceeded its inline limit)
//!   filled by reading those bytes from the file now. Bytes past the file's current end
//!   are left out: whatever shortened the file (a truncate, an `O_TRUNC` open) was captured
//!   too and follows in the stream, so the replica reaches the same size. A file that is
//!   gone cannot be read: a dirty mark takes the write's place in the stream, and the
//!   resolver has the file remirrored wherever the renames after it take it;
//! - a write larger than [`WRITE_PIECE`] cut into pieces of that size, each read and
//!   queued on its own: one `write(2)`, `copy_file_range(2)` or `splice(2)` can change
//!   gigabytes, which read whole would sit in memory at once (in the queue, then in the
//!   resend window) and would not fit a frame (16 MiB);
//! - adjacent writes merged, up to `MaxWriteChunkSize`. A write merges only into the
//!   operation immediately before it. Merging it into an earlier write of the same file
//!   would move it ahead of operations on other files, and the replica is crash-consistent
//!   only if every prefix of the stream is a state the source passed through (a database
//!   writes its log before its data file: applying the data first is a state that never
//!   existed).

use std::io;
use std::path::{Path, PathBuf};

use rill_ops::{DirtyReason, Event, Op};

use crate::repset::ReplicationSet;
use crate::source::resolve::{open_data, read_file_range, read_range};

/// The largest write the drain reads and queues as one operation. A MiB keeps the
/// common large write (`dd bs=1M`, a copy's buffer) one operation, well under a frame.
pub const WRITE_PIECE: u64 = 1 << 20;

/// What the drain hands on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drained {
    /// An operation for the queue. A dirty mark of a file the capture identified is one
    /// too: the resolver follows its name through the renames after it and has the file
    /// remirrored under every name it has, once what came before it in the stream is
    /// applied (see `Resolver::take_stale`). Handed to the change journal at once, under
    /// the one name the capture found, the remirror read that name only, before the
    /// operations queued ahead of the mark were sent: a later rename left the file's other
    /// names without the change, and an older `O_TRUNC` open applied after the remirror
    /// emptied what only the remirror had carried (found by the replication tests: files
    /// written through io_uring, linked and renamed, empty on the replica).
    Op(Event),
    /// A file (or, with `range`, part of one) the change journal must remember.
    Dirty {
        path: PathBuf,
        range: Option<(u64, u64)>,
        reason: DirtyReason,
    },
}

pub struct Drain {
    set: ReplicationSet,
    max_chunk: u64,
}

impl Drain {
    pub fn new(set: ReplicationSet, max_write_chunk: u64) -> Drain {
        Drain {
            set,
            max_chunk: max_write_chunk.max(1),
        }
    }

    /// Changes `MaxWriteChunkSize` while running.
    pub fn set_max_write_chunk(&mut self, max: u64) {
        self.max_chunk = max.max(1);
    }

    /// Processes a batch of events, in order, appending to `out`.
    pub fn process(&self, events: impl IntoIterator<Item = Event>, out: &mut Vec<Drained>) {
        for ev in events {
            self.one(ev, out);
        }
    }

    fn one(&self, ev: Event, out: &mut Vec<Drained>) {
        let protects = |p: &PathBuf| self.set.protects(p);
        let dirty = |path: PathBuf, range, reason| Drained::Dirty {
            path,
            range,
            reason,
        };
        match &ev.op {
            Op::Overflow { .. } => return,
            Op::Rename { new_path, .. } | Op::Link { target: new_path } => {
                let (old_in, new_in) = match &ev.op {
                    // A link's event path is the new name; its target the existing file.
                    Op::Link { .. } => (protects(new_path), protects(&ev.path)),
                    _ => (protects(&ev.path), protects(new_path)),
                };
                match (old_in, new_in, &ev.op) {
                    (true, true, _) => {}
                    (false, false, _) => return,
                    (_, true, Op::Link { .. }) => {
                        return out.push(dirty(ev.path, None, DirtyReason::Modified))
                    }
                    (_, false, Op::Link { .. }) => return,
                    (true, false, _) => {
                        return out.push(dirty(ev.path, None, DirtyReason::Modified))
                    }
                    (false, true, _) => {
                        return out.push(dirty(new_path.clone(), None, DirtyReason::Modified))
                    }
                }
            }
            _ if !protects(&ev.path) => return,
            // A mark of a known file stays in the stream: see `Drained::Op`.
            Op::Dirty { .. } if ev.object.is_some() => return out.push(Drained::Op(ev)),
            Op::Dirty { reason } => return out.push(dirty(ev.path, None, *reason)),
            _ => {}
        }
        match &ev.op {
            Op::Write { len, .. } if *len > WRITE_PIECE => self.write_in_pieces(ev, out),
            _ => self.fill_and_push(ev, out),
        }
    }

    /// Queues a large write as consecutive pieces of at most [`WRITE_PIECE`] bytes. Past
    /// the file's end there is nothing more to read; a piece that cannot be read makes the
    /// rest of the range dirty.
    fn write_in_pieces(&self, ev: Event, out: &mut Vec<Drained>) {
        let Op::Write { offset, len, data } = &ev.op else {
            return self.fill_and_push(ev, out);
        };
        if data.as_ref().is_some_and(|d| (d.len() as u64) < *len) {
            // Inline data that does not cover its length: kept as it came.
            return self.fill_and_push(ev, out);
        }
        let mut done = 0;
        while done < *len {
            let n = (len - done).min(WRITE_PIECE);
            let piece = Event {
                op: Op::Write {
                    offset: offset + done,
                    len: n,
                    data: data
                        .as_ref()
                        .map(|d| d.slice(done as usize..(done + n) as usize)),
                },
                ..ev.clone()
            };
            match filled(piece) {
                Filled::Ready(piece) => self.push(piece, out),
                Filled::PastEnd => return,
                Filled::Unreadable(_) => return out.push(Self::unreadable(&ev)),
            }
            done += n;
        }
    }

    /// Fills a range-only write with the bytes the file holds now, then queues it.
    fn fill_and_push(&self, ev: Event, out: &mut Vec<Drained>) {
        match filled(ev) {
            Filled::Ready(ev) => self.push(ev, out),
            Filled::PastEnd => {}
            Filled::Unreadable(ev) => out.push(Self::unreadable(&ev)),
        }
    }

    /// A write whose bytes could not be read under its name (the file was removed, or
    /// renamed and its name given to another) stays in the stream as a dirty mark under
    /// the name written: the resolver follows that name through the renames after it in
    /// the stream and remirrors the file where they take it. A mark for the change
    /// journal under the name the file had when the drain looked (`find_file`) went
    /// stale as soon as a later rename moved the file again, and the remirror read
    /// whatever the old name held by then (found by the replication fuzzer: an empty
    /// file on the replica, its data written with `copy_file_range` just before its
    /// directory was moved and the file exchanged with a symlink).
    fn unreadable(ev: &Event) -> Drained {
        Drained::Op(Event {
            op: Op::Dirty {
                reason: DirtyReason::Modified,
            },
            ..ev.clone()
        })
    }

    /// Queues an operation, merged into the write before it when it continues it.
    fn push(&self, ev: Event, out: &mut Vec<Drained>) {
        if let Some(Drained::Op(prev)) = out.last_mut() {
            if merge(prev, &ev, self.max_chunk) {
                return;
            }
        }
        out.push(Drained::Op(ev));
    }
}

/// A write after [`filled`].
enum Filled {
    /// Its data is there (it came inline, or was read now), or it is no write.
    Ready(Event),
    /// Range-only, and the file now ends before the range: nothing to send. Whatever
    /// shortened the file was captured too and follows in the stream.
    PastEnd,
    /// Range-only, and the file cannot be read under its name: it is gone, or the name
    /// holds another file now.
    Unreadable(Event),
}

/// Reads a range-only write's bytes from the file (fewer past its end). The name is
/// read only if it still holds the file written, when the capture said which: a name
/// renamed over since would give another file's bytes, which the replica would take for
/// this one's.
fn filled(mut ev: Event) -> Filled {
    if let Op::Write {
        offset,
        len,
        data: None,
    } = ev.op
    {
        match read_range_of(&ev.path, ev.object, offset, len) {
            Ok(Some(bytes)) if bytes.is_empty() => return Filled::PastEnd,
            Ok(Some(bytes)) => {
                ev.op = Op::Write {
                    offset,
                    len: bytes.len() as u64,
                    data: Some(bytes.into()),
                }
            }
            Ok(None) | Err(_) => return Filled::Unreadable(ev),
        }
    }
    Filled::Ready(ev)
}

/// Up to `len` bytes at `offset` of the file `path` names, if it is `file` (kernel
/// device, inode) when that is given; `None` if the name holds another file.
fn read_range_of(
    path: &Path,
    file: Option<(u64, u64)>,
    offset: u64,
    len: u64,
) -> io::Result<Option<Vec<u8>>> {
    let Some(file) = file else {
        return read_range(path, offset, len).map(Some);
    };
    let mut f = open_data(path)?;
    let m = f.metadata()?;
    if crate::source::resolve::identity(&m) != file {
        return Ok(None);
    }
    read_file_range(&mut f, offset, len).map(Some)
}

/// Merges `next` into `prev` when both are writes to one file, `next` starts where `prev`
/// ends, and the result stays within `max`. Returns whether it merged.
fn merge(prev: &mut Event, next: &Event, max: u64) -> bool {
    let (
        Op::Write {
            offset: po,
            len: pl,
            data: Some(pd),
        },
        Op::Write {
            offset: no,
            len: nl,
            data: Some(nd),
        },
    ) = (&mut prev.op, &next.op)
    else {
        return false;
    };
    if prev.path != next.path || *po + *pl != *no || *pl + *nl > max {
        return false;
    }
    // Taken out as a Vec: a buffer this drain made is not shared yet, so none is copied.
    let mut merged = Vec::from(std::mem::take(pd));
    merged.extend_from_slice(nd);
    *pd = merged.into();
    *pl += *nl;
    prev.ktime_ns = next.ktime_ns;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repset::Rule;

    fn ev(path: &str, op: Op) -> Event {
        Event::new(path, op)
    }

    fn w(path: &str, offset: u64, data: &[u8]) -> Event {
        ev(
            path,
            Op::Write {
                offset,
                len: data.len() as u64,
                data: Some(data.to_vec().into()),
            },
        )
    }

    fn drain(root: &str) -> Drain {
        Drain::new(
            ReplicationSet::new(vec![Rule::new(root, true, true).unwrap()]),
            8,
        )
    }

    fn ops(d: &Drain, events: Vec<Event>) -> Vec<Drained> {
        let mut out = Vec::new();
        d.process(events, &mut out);
        out
    }

    #[test]
    fn only_protected_paths_pass() {
        let out = ops(
            &drain("/p"),
            vec![
                w("/p/a", 0, b"x"),
                w("/q/b", 0, b"y"),
                ev("/p", Op::Overflow { count: 3 }),
            ],
        );
        assert_eq!(out, vec![Drained::Op(w("/p/a", 0, b"x"))]);
    }

    #[test]
    fn adjacent_writes_merge_only_when_consecutive_and_small_enough() {
        let out = ops(
            &drain("/p"),
            vec![
                w("/p/a", 0, b"abc"),
                w("/p/a", 3, b"de"),
                w("/p/b", 0, b"z"),
                w("/p/a", 5, b"f"),
                w("/p/a", 6, b"ghijklmn"),
            ],
        );
        assert_eq!(
            out,
            vec![
                Drained::Op(w("/p/a", 0, b"abcde")),
                Drained::Op(w("/p/b", 0, b"z")),
                Drained::Op(w("/p/a", 5, b"f")),
                Drained::Op(w("/p/a", 6, b"ghijklmn")),
            ],
            "never merged across another file's op, nor past MaxWriteChunkSize (1 + 8 > 8)"
        );
        let gap = ops(&drain("/p"), vec![w("/p/a", 0, b"ab"), w("/p/a", 5, b"c")]);
        assert_eq!(gap.len(), 2, "non-contiguous writes stay apart");
    }

    #[test]
    fn renames_across_the_boundary_become_change_journal_entries() {
        let mv = |from: &str, to: &str| {
            ev(
                from,
                Op::Rename {
                    new_path: to.into(),
                    flags: 0,
                },
            )
        };
        let out = ops(
            &drain("/p"),
            vec![
                mv("/p/a", "/p/b"),
                mv("/p/c", "/q/c"),
                mv("/q/d", "/p/d"),
                mv("/q/e", "/q/f"),
            ],
        );
        let modified = |p: &str| Drained::Dirty {
            path: p.into(),
            range: None,
            reason: DirtyReason::Modified,
        };
        assert_eq!(
            out,
            vec![
                Drained::Op(mv("/p/a", "/p/b")),
                modified("/p/c"),
                modified("/p/d")
            ]
        );
    }

    #[test]
    fn range_only_writes_are_filled_with_what_the_file_holds_or_become_dirty_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        let root = dir.path().to_str().unwrap();
        let path = f.to_str().unwrap();
        let range = |offset, len| {
            ev(
                path,
                Op::Write {
                    offset,
                    len,
                    data: None,
                },
            )
        };
        let gone = dir.path().join("gone");
        let out = ops(
            &drain(root),
            vec![
                range(2, 3),
                range(8, 5),
                range(20, 4),
                ev(
                    gone.to_str().unwrap(),
                    Op::Write {
                        offset: 0,
                        len: 4,
                        data: None,
                    },
                ),
            ],
        );
        assert_eq!(
            out,
            vec![
                Drained::Op(w(path, 2, b"234")),
                // Past the end now: what exists is sent; the op that shortened the file follows.
                Drained::Op(w(path, 8, b"89")),
                Drained::Op(ev(
                    gone.to_str().unwrap(),
                    Op::Dirty {
                        reason: DirtyReason::Modified
                    }
                )),
            ]
        );
    }

    #[test]
    fn large_writes_are_read_and_queued_in_pieces() {
        const P: usize = WRITE_PIECE as usize;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let f = dir.path().join("f");
        let bytes: Vec<u8> = (0..P * 5 / 2).map(|i| (i % 251) as u8).collect();
        std::fs::write(&f, &bytes).unwrap();
        let path = f.to_str().unwrap();
        let range = |path: &str, offset: u64, len: usize| {
            ev(
                path,
                Op::Write {
                    offset,
                    len: len as u64,
                    data: None,
                },
            )
        };
        // The whole file in one range: three pieces, the last one short.
        let pieces = |from: usize| {
            (from..bytes.len())
                .step_by(P)
                .map(|o| Drained::Op(w(path, o as u64, &bytes[o..(o + P).min(bytes.len())])))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ops(&drain(root), vec![range(path, 0, bytes.len())]),
            pieces(0)
        );
        // A range past the end: what the file holds, in pieces, and nothing after it.
        assert_eq!(ops(&drain(root), vec![range(path, 0, 4 * P)]), pieces(0));
        // Inline data is cut the same way, without reading the file.
        let inline = ev(
            path,
            Op::Write {
                offset: 0,
                len: bytes.len() as u64,
                data: Some(bytes.clone().into()),
            },
        );
        assert_eq!(ops(&drain(root), vec![inline]), pieces(0));
        // A file that is gone: one dirty mark in the stream, for the whole range.
        let gone = dir.path().join("gone");
        let gone = gone.to_str().unwrap();
        assert_eq!(
            ops(&drain(root), vec![range(gone, P as u64, 3 * P)]),
            vec![Drained::Op(ev(
                gone,
                Op::Dirty {
                    reason: DirtyReason::Modified
                }
            ))]
        );
    }

    /// A range-only write read after its file was renamed and its name given to another
    /// file: the other file's bytes are not taken for it; a dirty mark under the name
    /// written takes its place in the stream (the resolver follows it through the
    /// renames after it).
    #[test]
    fn a_write_whose_name_now_holds_another_file_becomes_a_dirty_mark_in_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let (a, moved, b) = (
            dir.path().join("a"),
            dir.path().join("moved"),
            dir.path().join("b"),
        );
        std::fs::write(&a, b"the file written").unwrap();
        let m = std::fs::metadata(&a).unwrap();
        let file = Some(crate::source::resolve::identity(&m));
        std::fs::rename(&a, &moved).unwrap();
        std::fs::write(&b, b"another file entirely").unwrap();
        std::fs::rename(&b, &a).unwrap();
        let write = Event {
            object: file,
            ..ev(
                a.to_str().unwrap(),
                Op::Write {
                    offset: 4,
                    len: 4,
                    data: None,
                },
            )
        };
        let mark = Event {
            op: Op::Dirty {
                reason: DirtyReason::Modified,
            },
            ..write.clone()
        };
        assert_eq!(ops(&drain(root), vec![write]), vec![Drained::Op(mark)]);
        assert!(moved.exists());
    }

    /// A dirty mark of a file the capture identified stays in the stream, where the
    /// resolver follows it (see `Drained::Op`); one of a name alone (an overflow's names,
    /// a rescan) goes to the change journal.
    #[test]
    fn a_mark_of_an_identified_file_stays_in_the_stream() {
        let dirty = |path: &str, object| Event {
            object,
            ..ev(
                path,
                Op::Dirty {
                    reason: DirtyReason::Modified,
                },
            )
        };
        let identified = dirty("/p/a", Some((8, 42)));
        let out = ops(&drain("/p"), vec![identified.clone(), dirty("/p/b", None)]);
        assert_eq!(
            out,
            vec![
                Drained::Op(identified),
                Drained::Dirty {
                    path: "/p/b".into(),
                    range: None,
                    reason: DirtyReason::Modified,
                },
            ]
        );
    }
}
