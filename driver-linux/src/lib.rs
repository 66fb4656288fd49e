//! rill-driver-linux: rill's capture driver on Linux.
//!
//! Loads the eBPF programs of `rill-ebpf` into the running kernel, pins them and their maps
//! under `/sys/fs/bpf/rill` so capture survives the engine restarting, configures them, and
//! turns the records they write into the ring back into [`rill_ops::Event`]s (the operation
//! model is its own crate, shared with the engine and other platforms' drivers). Where eBPF
//! cannot load, [`fanotify`] is the fallback source. The `rill-driver` binary is a thin
//! shell over this library.

pub mod btf;
pub mod capture;
mod clock;
pub mod demo;
pub mod error;
pub mod fanotify;
pub mod loader;
pub mod maps;
pub mod mounts;
pub mod ring;
pub mod settings;
pub mod status;

pub use error::{DriverError, Result};
