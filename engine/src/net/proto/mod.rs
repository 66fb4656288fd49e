//! Wire protocol: versioned frames between a source `rilld` and a target `rilld`.
//!
//! The source sends `Hello` (job, target path), the target answers `Welcome` with the
//! highest sequence it has durably applied (or `Refused`), then the source streams `Op`
//! and `Marker` frames in one sequence order while the target answers with cumulative
//! `Ack`s, `Nak`s for ops it could not apply, flow control (`Pause`/`Resume`),
//! `KeepAlive`s and `TargetStats`. The connection underneath is mutual TLS (`crate::net::tls`);
//! this module only turns frames into bytes and back.
//!
//! Why it looks the way it does:
//! - **A fixed header with magic, version, kind, flags, length and crc32c** (`frame`): a
//!   receiver refuses a stray client, an unknown version or a hostile length from 16 bytes,
//!   before it waits for or allocates anything; the checksum catches corruption that TLS
//!   cannot (bugs on either side of it) before the payload is parsed.
//! - **Payload fields laid out by hand** (`payload`, `wire`): the format is exactly what
//!   the code says, with no dependency on a serializer's format stability; every length is
//!   checked against a cap and the bytes at hand, so decoding never panics and never
//!   allocates more than the frame's length (the fuzz target in `fuzz/` holds it to that).
//! - **Op bodies are opaque `rill_ops::codec` bytes**, the same encoding as the disk
//!   queue, so one decoder serves both. A write's data comes last in the record, so the
//!   sender writes it after the frame's head without copying it in, and a receiver's
//!   decoded op holds it as a view of the frame it arrived in (`io::FrameReader`).
//! - **Compression per op, decided by the caller** (`compression`): only the caller knows
//!   the file and its size (`MinCompressionFileSize`, `SkipCompressionFileExt`); a body is
//!   sent compressed only when that makes it smaller, and decompression is capped.
//! - **One error type naming what was wrong and what is allowed** (`error`), so the peer
//!   can be told (`ProtoError::refusal`) and the log says the same.

mod compression;
mod error;
mod frame;
mod io;
mod payload;
mod seq;
pub mod verify;
mod wire;

#[cfg(test)]
mod tests;

pub use compression::{
    parse_ext_list, Compression, DEFAULT_LEVEL, DEFAULT_MIN_FILE_SIZE, DEFAULT_SKIP_EXT,
};
pub use error::ProtoError;
pub use frame::{
    refuse, Frame, Header, Kind, Marker, Policy, Stream, FLAG_ZSTD, HEADER_LEN, MAGIC, MAX_FRAME,
    MAX_PATH, MAX_STRING, SUPPORTED_VERSIONS, VERSION,
};
pub use io::{read_frame, write_frame, FrameReader, Placement, PAGE};
pub use seq::{SeqCheck, SeqVerdict};
