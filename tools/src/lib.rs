//! rill-tools: rill's administration and benchmark tools.
//!
//! The binaries (`rill-bench` today; `rillctl`, `rillstat` and `rill-logview` to come) are
//! thin command-line shells over this library, so their logic can be tested and reused.
//! [`mod@bench`] holds the benchmarks: `rill-bench capture` measures what the capture driver
//! costs the processes it watches, side by side with a baseline in the same run.

pub mod bench;
pub mod ctl;
pub mod demo;
pub mod pair;
