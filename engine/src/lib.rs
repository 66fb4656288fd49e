//! rill-engine: rill's replication engine (`rilld`), source and target.
//!
//! On a source, one capture serves every job (`capture_hub`: the pinned driver's ring,
//! each event handed to the jobs whose source holds its names); each job's operations are
//! drained from it (`drain`),
//! numbered, matched to replication sets, and queued in memory; past a threshold the queue
//! spills, in order, to checksummed journal segments on disk (`queue`, `journal`).
//! Operations that cannot be kept become entries in a durable change journal so the files
//! are remirrored later (`change_journal`, `mirror`). The transmit loop (`transmit`)
//! completes them (`resolve`) and sends them over mutually authenticated TLS (`link`,
//! `proto`). On a target, each connection's operations are queued and applied in order
//! beneath the job's target path (`target`, `apply`) and acknowledged once durable. Every
//! knob is a setting with the reference guide's name, checked against its range when read.

pub mod allocator;
pub mod clock;
pub mod daemon;
pub mod events;
pub mod followed;
pub mod mgmt;
pub mod net;
pub mod options;
pub mod replica;
pub mod source;
pub mod storage;
/// Replication sets live in `rill-ops`, beside the name rules they produce, so a job's
/// specification can be checked without the engine (`rill-mgmt`).
pub use rill_ops::repset;
/// The settings are their own crate, `rill-settings`, which `rillctl` reads too.
pub use rill_settings as settings;
