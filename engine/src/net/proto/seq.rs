//! The receiver's check on the order of Op and Marker sequence numbers.
//!
//! Order is what makes the replica crash-consistent, so a target never applies a frame
//! whose sequence number does not exceed the one before it. After a reconnect the source
//! may resend ops the target already applied (it learns `last_applied` from `Welcome`,
//! but ops in flight when the link dropped may be resent anyway): those are still checked
//! for order, then skipped silently instead of applied twice.

use super::ProtoError;

/// What the receiver does with a frame that passed the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqVerdict {
    /// New: apply it.
    Apply,
    /// Already durably applied (at or below `last_applied`): skip it.
    Duplicate,
}

/// Per-connection order check, started from the `last_applied` the target sent in
/// `Welcome` (0: nothing applied; sequence numbers start at 1).
#[derive(Clone, Debug)]
pub struct SeqCheck {
    last_applied: u64,
    previous: Option<u64>,
}

impl SeqCheck {
    pub fn new(last_applied: u64) -> Self {
        SeqCheck {
            last_applied,
            previous: None,
        }
    }

    /// Judges the next Op or Marker sequence number: it must exceed the previous one
    /// (gaps are allowed: not every op goes to every target); at or below `last_applied`
    /// it is a resend.
    pub fn check(&mut self, seq: u64) -> Result<SeqVerdict, ProtoError> {
        if let Some(previous) = self.previous {
            if seq <= previous {
                return Err(ProtoError::OutOfOrder {
                    got: seq,
                    expected_above: previous,
                });
            }
        }
        self.previous = Some(seq);
        Ok(if seq <= self.last_applied {
            SeqVerdict::Duplicate
        } else {
            SeqVerdict::Apply
        })
    }

    /// The last sequence number accepted on this connection, if any.
    pub fn previous(&self) -> Option<u64> {
        self.previous
    }

    /// What the target had durably applied when the connection began.
    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }
}
