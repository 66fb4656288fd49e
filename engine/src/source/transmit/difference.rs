//! The transmit loop's part in a difference mirror (see `mirror::compare`): a file the
//! mirror hands out to compare is asked of the replica through the stream, judged, and
//! sent as its differing blocks, its attributes, nothing, or whole.
//!
//! # Why it is done within one turn
//!
//! The target answers a `Verify` request once it has applied everything sent before it
//! (point P of the stream). Between the request and the last write of the difference the
//! loop sends nothing else, so the writes land on the very object the answer described:
//! a rename or link sent in between could put another file under the name, and a patch
//! meant for the first would then silently be applied to the second.
//!
//! # Invariants
//!
//! - The source side (attributes, block checksums) is read after the answer came, and
//!   after the name's first group was recorded as handed out (`HandOuts::record`), so
//!   every change captured before that read and sent after the difference is overtaken
//!   and has the name remirrored, whole (it is a suspect then): changes captured before
//!   are either in the replica's answer or undone by nothing.
//! - The written blocks' bytes are read when they are sent (range-only writes), as a whole
//!   mirror's chunks are; changes captured after follow them in the stream.
//! - A name the resolver follows as possibly stale or another file, an answer that does
//!   not come (connection lost, `NetworkTimeout` twice, the job stopping), or a source file
//!   that is not a regular file of one link any more, is rebuilt whole.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::Result;
use rill_ops::{Event, Op};

use super::{Progress, TransmitLoop};
use crate::net::proto::verify::{Ask, Inspected, ObjKind};
use crate::net::proto::Stream;
use crate::source::mirror::{judge, Compare, Method, Verdict};
use crate::verify::{inspect, VerifyCall, BLOCK};

/// How often a wait for the replica's answer looks whether the job is stopping.
const ANSWER_POLL: Duration = Duration::from_millis(100);

impl TransmitLoop<'_> {
    /// Compares `c` with the replica and sends what the verdict says (see the module's doc).
    pub(super) fn compare_turn(&mut self, p: &mut Progress, c: Compare) -> Result<()> {
        let verdict = match self.first_answer(&c)? {
            Some((Verdict::Blocks, src, rep)) => {
                if self.send_difference(p, &c, &src, &rep)? {
                    Verdict::Blocks
                } else {
                    Verdict::Whole
                }
            }
            Some((verdict, _, _)) => verdict,
            None => Verdict::Whole,
        };
        log::debug!("compared {}: {verdict:?}", c.path.display());
        let Some(m) = p.mirror.as_mut() else {
            return Ok(());
        };
        match verdict {
            Verdict::Keep => {}
            Verdict::Attributes | Verdict::Blocks => m.walk.attributes_next(&c.path),
            Verdict::Whole => m.walk.rebuild_whole(&c.path),
        }
        Ok(())
    }

    /// The replica's answer for the file's first blocks, the source's side read after it,
    /// and the verdict; `None` when the file must be rebuilt whole without asking or the
    /// answer did not come.
    fn first_answer(&mut self, c: &Compare) -> Result<Option<(Verdict, Inspected, Inspected)>> {
        if self.outbox.followed(&c.path) {
            return Ok(None);
        }
        let Ok(rel) = c.path.strip_prefix(&self.source) else {
            return Ok(None);
        };
        let blocks = match c.options.method {
            Method::Blocks { .. } if c.blocks => c.options.max_blocks.max(1),
            _ => 0,
        };
        let ask = Ask {
            path: rel.as_os_str().as_bytes().to_vec(),
            first_block: 0,
            blocks,
            list: false,
        };
        let Some(rep) = self.ask_replica(&ask) else {
            return Ok(None);
        };
        let Some(src) = self.source_side(&ask) else {
            return Ok(None);
        };
        if src.kind() != ObjKind::File || src.links != 1 {
            return Ok(None);
        }
        let verdict = judge(c, &src, &rep, self.options.mirror.xattrs);
        Ok(Some((verdict, src, rep)))
    }

    /// Sends the size and every block whose checksum differs from the replica's, piece
    /// by piece (`MaxChecksumBlocks` a request); `first` is the answer for the first
    /// piece. False when a later piece's answer did not come: the file is to be rebuilt
    /// whole (what was written is replaced then).
    fn send_difference(
        &mut self,
        p: &mut Progress,
        c: &Compare,
        first_src: &Inspected,
        first_rep: &Inspected,
    ) -> Result<bool> {
        let remirror = p.mirror.as_ref().is_some_and(|m| !m.entries.is_empty());
        let size = first_src.size;
        self.send_group(p, &[Event::new(&c.path, Op::Truncate { size })], remirror)?;
        let piece = u64::from(c.options.max_blocks.max(1));
        let blocks = size.div_ceil(BLOCK);
        let mut ask = Ask {
            path: c
                .path
                .strip_prefix(&self.source)?
                .as_os_str()
                .as_bytes()
                .to_vec(),
            first_block: 0,
            blocks: piece as u32,
            list: false,
        };
        // The first piece's source side was read before the truncate was handed out: read
        // again after it (see the module's doc).
        let mut rep = first_rep.clone();
        while ask.first_block < blocks {
            let Some(src) = self.source_side(&ask) else {
                return Ok(false);
            };
            for (i, sum) in src.sums.iter().enumerate() {
                if rep.sums.get(i) == Some(sum) {
                    continue;
                }
                let offset = (ask.first_block + i as u64) * BLOCK;
                let len = BLOCK.min(size.saturating_sub(offset));
                if len == 0 {
                    break;
                }
                let write = Op::Write {
                    offset,
                    len,
                    data: None,
                };
                self.send_group(p, &[Event::new(&c.path, write)], remirror)?;
            }
            ask.first_block += piece;
            if ask.first_block >= blocks {
                break;
            }
            match self.ask_replica(&ask) {
                Some(next) => rep = next,
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Sends a group of the mirror's, or one the loop made for it, recorded as handed
    /// out, its data counted in the mirror's progress.
    pub(super) fn send_group(
        &mut self,
        p: &mut Progress,
        group: &[Event],
        remirror: bool,
    ) -> Result<()> {
        p.handed_out.record(group, remirror);
        for ev in group {
            if let Some(failed) = self.send(ev, Stream::Mirror)? {
                p.remirrors.failed([failed]);
            }
        }
        if let Some(m) = p.mirror.as_mut() {
            m.walk.count_sent(group);
            self.control
                .mirror_sent_bytes
                .store(m.walk.progress().bytes, Ordering::Relaxed);
        }
        p.unflushed += group.len() as u32;
        Ok(())
    }

    /// What the replica holds under `ask`'s name, once everything sent before is applied;
    /// `None` if no answer comes.
    fn ask_replica(&mut self, ask: &Ask) -> Option<Inspected> {
        let (reply, answers) = sync_channel(1);
        let call = VerifyCall {
            id: 0,
            asks: vec![ask.clone()],
            sent_through_ns: 0,
            mark: 0,
            reply,
        };
        if let Err(e) = self.outbox.verify(call) {
            log::debug!("no comparison with the replica: {e}");
            return None;
        }
        let deadline = Instant::now() + self.options.answer_wait;
        loop {
            match answers.recv_timeout(ANSWER_POLL) {
                Ok(answer) => match answer.found {
                    Ok(found) => return found.into_iter().next(),
                    Err(why) => {
                        log::debug!("no comparison with the replica: {why}");
                        return None;
                    }
                },
                Err(RecvTimeoutError::Timeout)
                    if Instant::now() < deadline && !self.control.stop.load(Ordering::Relaxed) => {}
                Err(_) => return None,
            }
        }
    }

    /// The source's side of `ask`, read now, as the replica's is.
    fn source_side(&self, ask: &Ask) -> Option<Inspected> {
        let root = File::open(&self.source).ok()?;
        match inspect(root.as_fd(), ask, 0) {
            Ok(found) => Some(found),
            Err(e) => {
                let name = Path::new(std::ffi::OsStr::from_bytes(&ask.path));
                log::debug!("{} unreadable to compare: {e}", name.display());
                None
            }
        }
    }
}
