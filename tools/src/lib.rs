//! rill-tools: rill's demonstration and benchmark tools.
//!
//! The binaries are thin command-line shells over this library (`rillctl` is the crate
//! `rill-ctl`): `rill-demo` ([`demo`]) is the main job on
//! an embedded default, a target and a source on this machine; `rill-bench`
//! ([`mod@bench`]) measures capture overhead, the engine's queues and replication against
//! rsync and lsyncd, side by side with baselines in the same run. [`pair`] starts and
//! pairs two `rilld` processes for the demo, the benchmark and the end-to-end tests;
//! [`relay`] stands between them on loopback, counting the bytes on the wire and cutting
//! the link on demand.

pub mod bench;
pub mod demo;
pub mod pair;
pub mod relay;
pub mod rng;
