//! Verification requests on the link: written after what came before them, outside the
//! window (not numbered, not resent), and answered by id (see `crate::verify`).
//!
//! # State
//!
//! The calls written and not answered yet. They outlive a connection only to be failed
//! when it ends: the target answers on the connection it was asked on.

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::session::{timed, LinkError};
use crate::net::proto::verify::Inspected;
use crate::net::proto::{Frame, Policy};
use crate::verify::VerifyCall;

/// Verification requests written to the target and not answered yet, by id.
#[derive(Default)]
pub(super) struct Verifies {
    waiting: std::collections::HashMap<u64, VerifyCall>,
    next_id: u64,
}

impl Verifies {
    /// Writes the request, under an id of the link's own (the verifier's ids are not
    /// unique across jobs' verifications), and keeps the call for its answer.
    pub(super) async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        call: VerifyCall,
        writer: &mut W,
        timeout: Duration,
    ) -> Result<(), LinkError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut buf = Vec::new();
        let frame = Frame::Verify {
            id,
            asks: call.asks.clone(),
        };
        if let Err(e) = frame.encode(Policy::PLAIN, &mut buf) {
            call.answer(Err(format!("the request cannot be sent: {e}")));
            return Ok(());
        }
        self.waiting.insert(id, call);
        timed(timeout, writer.write_all(&buf)).await?;
        timed(timeout, writer.flush()).await
    }

    pub(super) fn answer(&mut self, id: u64, found: Vec<Inspected>) {
        match self.waiting.remove(&id) {
            Some(call) => call.answer(Ok(found)),
            None => log::warn!("the target answered verification request {id}, not asked"),
        }
    }

    pub(super) fn fail_all(&mut self, why: &str) {
        for (_, call) in self.waiting.drain() {
            call.answer(Err(format!("the connection ended: {why}")));
        }
    }
}
