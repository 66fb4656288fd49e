//! rill-tools: rill's demonstration, and the two-host harness it shares with the benchmark
//! and the end-to-end tests.
//!
//! `rill-demo` ([`demo`]) is the main job on an embedded default: a target and a source on
//! this machine. [`pair`] starts and pairs two `rilld` processes for the demo, the
//! benchmark (`rill-bench`, the crate in `benches/`) and the end-to-end tests; [`relay`]
//! stands between them on loopback, counting the bytes on the wire and cutting the link on
//! demand; [`rng`] is the seeded stream their workloads draw from. `rillctl` is the crate
//! `rill-ctl`. This crate is apart from the engine because it drives `rilld` from outside,
//! as an administrator would, through processes and the management API.

pub mod demo;
pub mod pair;
pub mod relay;
pub mod rng;
