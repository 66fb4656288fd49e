//! rill-engine: rill's replication engine (`rilld`), source and target.
//!
//! The folders follow the data path. A source captures operations and decides what to
//! send (`source`); what must outlive a restart or a full memory is kept on disk
//! (`storage`); operations cross to the target over mutually authenticated TLS (`net`);
//! the target applies them in order and acknowledges them once durable (`replica`). The
//! daemon runs jobs and the target role together and answers the management API
//! (`daemon`, `mgmt`). Every knob is a setting with the reference guide's name, turned
//! into the components' options in one place (`options`). See `docs/architecture.md`.
//!
//! Raw system calls, and every `unsafe` block, live in `sys`; the rest of the crate may
//! not use `unsafe` (the lint below says so at compile time).

#![deny(unsafe_code)]

/// The allocator's tuning for large data buffers, set once at `rilld` start.
pub mod allocator;
/// Monotonic and wall-clock time in nanoseconds, as the capture and the stores keep it.
pub(crate) mod clock;
/// `rilld serve`: identity, job store, target role and jobs, and the management API.
pub mod daemon;
/// The event log, with the reference guide's event IDs.
pub(crate) mod events;
/// Names followed through renames and links after they may have gone stale (both roles).
pub(crate) mod followed;
/// The management API: its types (from `rill-mgmt`) and the server.
pub mod mgmt;
/// Frames on the wire, TLS identity and trust, the source's link to a target.
pub mod net;
/// The settings, turned into each component's options.
pub mod options;
/// The target role: sessions, the apply thread, the syncer, apply and orphan removal.
pub mod replica;
/// The source role: capture hub, job, drain, transmit loop, mirror, resolve, destinations.
pub mod source;
/// The queue, the disk queue, the change journal and the job store.
pub mod storage;
/// The engine's raw system calls behind safe functions: the one place its `unsafe` lives.
#[allow(unsafe_code)]
pub(crate) mod sys;
/// Verification: comparing the replica with the source while replication goes on.
pub mod verify;
/// Replication sets live in `rill-ops`, beside the name rules they produce, so a job's
/// specification can be checked without the engine (`rill-mgmt`).
pub use rill_ops::repset;
/// The settings are their own crate, `rill-settings`, which `rillctl` reads too.
pub use rill_settings as settings;
