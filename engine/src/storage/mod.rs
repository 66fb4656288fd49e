//! What the engine keeps on disk, each in the form its use asks for: the queue in memory
//! that spills in order to the disk queue (`queue`, `disk_queue`), the change journal of
//! names to remirror (`change_journal`), and the job store (`job_store`), with the shared
//! way of opening an embedded database (`database`).
//!
//! Two shapes, on purpose. The disk queue is a stream appended and consumed in order, so
//! it is plain checksummed segment files with `pwrite`/`fdatasync`, cheaper than any
//! database for that. The change journal and the job store are small records changed in
//! place and read by key, where a redb transaction per change gives durability and
//! crash consistency without a recovery procedure of rill's own.
//!
//! The queue lives here rather than with the source because both roles use it: the source
//! job queues captured operations in it, and each replica session queues what it received
//! in the same queue (without syncing), so the network can run ahead of the disk.

pub mod change_journal;
pub(crate) mod database;
pub mod disk_queue;
pub mod job_store;
pub mod queue;
