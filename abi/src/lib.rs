//! rill-abi: the contract between rill's capture drivers and its engine.
//!
//! A driver (the eBPF programs on Linux, the minifilter on Windows) describes every
//! file-system operation it sees as one *capture record*; the engine decodes records back
//! into operations. Both sides compile this crate, so the layout is defined exactly once.
//!
//! This crate is `no_std` with no dependencies because the eBPF programs link it too: every
//! type here is `#[repr(C)]`, little-endian, 8-byte aligned, and free of pointers.
//!
//! * [`record`]: the record layout (a fixed [`RecordHeader`] followed by variable sections),
//!   with a decoder that rejects truncated or corrupt input with an error, never a panic.
//! * [`path`]: how a record's path sections turn into an absolute path.
//! * [`maps`]: the keys and values of the driver's maps (settings, statistics, dirty files).
//! * [`syscalls`]: the syscalls captured and which handler program takes each.
#![no_std]

pub mod maps;
pub mod path;
pub mod record;
pub mod syscalls;

pub use maps::{DirtyKey, DirtyValue, DriverConfig, PathSeen, Stat};
pub use path::{join_path, PathError};
pub use record::{
    align_up, DecodeError, Kind, Record, RecordHeader, Section, ABI_VERSION, ABI_VERSION_MAX,
    HEADER_SIZE, RECORD_ALIGN, SECTION_COUNT,
};
