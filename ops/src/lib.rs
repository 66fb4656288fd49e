//! rill-ops: the operations rill replicates, as every stage passes them around.
//!
//! A capture driver describes each file-system operation as a `rill-abi` record; this
//! crate turns records into [`Event`]s ([`decode`]), and events into the bytes the disk
//! queue stores and the wire carries and back ([`codec`], the same record format). The
//! Linux driver produces these values from its ring, the engine queues, sends, resolves and
//! applies them. A job's replication set ([`repset`]) says which of them it takes, and
//! gives the driver the [`NameRule`]s it prunes its capture with.
//!
//! It is a crate of its own, depending on `rill-abi` and a few small crates only, because
//! the model is not the Linux driver's: the Windows driver's user-mode side will produce
//! the same values, and a host that is only a replication target decodes and applies them
//! without linking aya or loading anything into a kernel.

pub mod codec;
pub mod decode;
pub mod event;
pub mod repset;

pub use decode::BadRecord;
pub use event::{DirtyReason, Event, FileTimes, KeepRange, NameMatch, NameRule, Op, Reached};
