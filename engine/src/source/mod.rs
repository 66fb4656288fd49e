//! The source side: from the capture to a destination, one job at a time.
//!
//! One capture serves every job (`capture_hub`); each job (`job`) drains its events
//! (`drain`) into its queue from a thread of its own, and a transmit loop (`transmit`) is
//! the queue's one consumer: it interleaves the mirror (`mirror`) with what was captured
//! and hands each operation to the job's `outbox`, which completes it from the source tree
//! (`resolve`), once, and passes it on to a [`destination::Destination`], a directory on
//! this host or a target over the network.
//!
//! The job is two threads joined by a queue so that reading the ring never waits for the
//! network or the replica's disk; everything one job needs to decide what to send is in
//! this folder, and the other folders only store (`crate::storage`), carry
//! (`crate::net`) or apply (`crate::replica`) what it decides.

pub mod capture_hub;
pub mod changed_since;
pub mod destination;
pub mod drain;
pub mod job;
pub(crate) mod mirror;
pub mod outbox;
pub(crate) mod resolve;
pub mod transmit;
