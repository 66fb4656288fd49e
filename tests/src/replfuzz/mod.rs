//! The replication fuzzer: seeded random workloads against two real `rilld` processes,
//! with the job started before, during or after the workload, stopped and started,
//! either host killed with SIGKILL, and the link cut, each run ending in a comparison of
//! the trees.
//!
//! A replica that silently differs from its source is the one failure rill may never
//! have, and scripted tests only find the cases someone thought of. The fuzzer looks for
//! the others: interleavings of operations (an exchange of two files in directories that
//! were just moved, a file truncated and then written far past its end through one of
//! its other names) with the timing of a live stream, its mirror and its recoveries.
//!
//! - [`ops`]: the operations, performed with the system calls the capture sees, and
//!   their text form (`ops.txt` of a run, regression tests).
//! - [`generate`]: the seeded choice of the next operation from the tree as it is.
//! - [`plan`]: a run's schedule (start, disruptions) drawn from a seed, and its text form.
//! - [`run`]: the two hosts, the relay that cuts the link, the workload, the verdict.
//! - [`minimize`]: shrinks a failing run's operations to a few, for a regression test.
//!
//! `rill-replfuzz` (in `src/bin/`) is the command; `tests/replication_fuzz.rs` holds the
//! regression tests made from what it found.

pub mod generate;
pub mod minimize;
pub mod ops;
pub mod plan;
pub mod run;

pub use ops::{parse_ops, WOp};
pub use plan::{Plan, DEFAULT_OPS, DEFAULT_RATE};
pub use run::{run, Failure, Ops, Passed};
