//! The transmit loop's part in a verification (see `crate::verify`): where the stream
//! has got to (`JobControl::sent_through_ns`), requests put into the stream after a
//! checkpoint, and the names a verification hands to the remirror.

use std::sync::atomic::Ordering;

use anyhow::Result;

use super::{Progress, TransmitLoop};
use crate::source::destination::DestinationError;
use crate::storage::change_journal::{Mark, Reason};

impl TransmitLoop<'_> {
    /// Moves `JobControl::sent_through_ns` forward to `ns`.
    pub(super) fn sent_through(&self, ns: u64) {
        self.control.sent_through_ns.fetch_max(ns, Ordering::AcqRel);
    }

    /// Puts waiting verification requests into the stream, after a checkpoint (the times
    /// of the files written before them go first), and hands the names a verification
    /// found different to the change journal, which the remirror reads. False when the
    /// destination has stopped.
    pub(super) fn verify_turn(&mut self, p: &mut Progress) -> Result<bool> {
        let Some((calls, remirror)) = self.control.verify.take() else {
            return Ok(true);
        };
        if !remirror.is_empty() {
            let now = crate::clock::wall_ns();
            let marks: Vec<Mark> = remirror
                .into_iter()
                .map(|path| Mark::whole(path, Reason::Modified, now))
                .collect();
            self.changes.mark(&marks)?;
            self.note_pending()?;
        }
        // The change journal's count as of the request: the capture's own marks reach
        // the journal without a word to this loop.
        self.note_pending()?;
        for mut call in calls {
            if !self.checkpoint_if_due(p, true)? {
                return Ok(false);
            }
            call.sent_through_ns = self.control.sent_through_ns.load(Ordering::Acquire);
            call.mark = p.last_mark;
            match self.outbox.verify(call) {
                Ok(()) => {}
                Err(DestinationError::Stopped) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }
}
