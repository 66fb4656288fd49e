//! rill-driver-linux: rill's capture driver on Linux.
//!
//! Loads the eBPF programs of `rill-ebpf` into the running kernel, pins them and their maps
//! under `/sys/fs/bpf/rill` so capture survives the engine restarting, configures them, and
//! turns the records they write into the ring back into [`event::Event`]s. Where eBPF cannot
//! load, [`fanotify`] is the fallback source. The `rill-driver` binary is a thin shell over
//! this library.

pub mod btf;
pub mod capture;
pub mod decode;
pub mod demo;
pub mod error;
pub mod event;
pub mod fanotify;
pub mod loader;
pub mod maps;
pub mod mounts;
pub mod ring;
pub mod settings;
pub mod status;

pub use error::{DriverError, Result};
pub use event::{DirtyReason, Event, FileTimes, KeepRange, NameMatch, NameRule, Op};
