//! Everything that can be wrong with a frame, as one error type.
//!
//! A peer that sends a bad frame is told why before the connection closes (see
//! [`ProtoError::refusal`]), and an administrator reads the same text in the log, so every
//! message names what was found and what the protocol allows.

use super::frame::{Kind, FLAG_ZSTD, SUPPORTED_VERSIONS};
use super::{refuse, Frame, MAGIC};

/// Why bytes are not a frame, or why a frame cannot be written or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// More bytes are needed before the frame can be judged: not an error for a streaming
    /// reader, which reads at least `need - have` more bytes and tries again.
    #[error("incomplete frame: have {have} bytes, need {need}")]
    Incomplete { have: usize, need: usize },
    /// The stream ended inside a frame.
    #[error("connection closed inside a frame: got {have} of its {need} bytes")]
    ClosedInFrame { have: usize, need: usize },
    #[error(
        "bad frame magic {found:02x?}: every frame starts with {:?} ({:02x?})",
        String::from_utf8_lossy(MAGIC),
        MAGIC
    )]
    BadMagic { found: Vec<u8> },
    #[error("protocol version {found} is not supported; this build speaks {SUPPORTED_VERSIONS:?}")]
    UnsupportedVersion { found: u16 },
    #[error("unknown frame kind {found}; known kinds are {}", Kind::list())]
    UnknownKind { found: u8 },
    #[error(
        "unknown flag bits {unknown:#04x} in frame flags {flags:#04x}; only bit 0 \
             ({FLAG_ZSTD:#04x}, zstd-compressed payload) is defined"
    )]
    UnknownFlags { flags: u8, unknown: u8 },
    #[error("{kind} frame is marked compressed; only Op bodies are ever compressed")]
    CompressedNotAllowed { kind: Kind },
    #[error("{what} of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("payload crc32c mismatch: header says {expected:#010x}, payload has {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("{kind} payload ends inside field `{field}`: it needs {need} bytes, {have} remain")]
    Truncated {
        kind: Kind,
        field: &'static str,
        need: usize,
        have: usize,
    },
    #[error("{extra} trailing bytes after a complete {kind} payload; none are allowed")]
    Trailing { kind: Kind, extra: usize },
    #[error("{kind} field `{field}` is {len} bytes long; at most {max} are allowed")]
    StringTooLong {
        kind: Kind,
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} field `{field}` counts {count}; at most {max} are allowed")]
    TooMany {
        kind: Kind,
        field: &'static str,
        count: usize,
        max: usize,
    },
    #[error("{kind} field `{field}` is not UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        kind: Kind,
        field: &'static str,
        valid_up_to: usize,
    },
    #[error("{kind} field `{field}` has value {value}; allowed: {allowed}")]
    BadValue {
        kind: Kind,
        field: &'static str,
        value: u64,
        allowed: &'static str,
    },
    #[error(
        "compressed Op body is not a valid zstd frame: {0}; it must be one zstd frame \
             that declares its decompressed size"
    )]
    Decompress(String),
    #[error("compressing an Op body failed: {0}")]
    Compress(String),
    #[error("sequence number {got} is out of order: it must be greater than {expected_above}")]
    OutOfOrder { got: u64, expected_above: u64 },
    #[error("connection i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtoError {
    /// True when the bytes so far are a valid prefix of a frame and more are needed.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, ProtoError::Incomplete { .. })
    }

    /// The `Refused` frame that tells the peer why this side is closing the connection,
    /// or `None` when the peer cannot be told (the connection itself failed).
    pub fn refusal(&self) -> Option<Frame> {
        let code = match self {
            ProtoError::Io(_) | ProtoError::ClosedInFrame { .. } => return None,
            ProtoError::Incomplete { .. } => return None,
            ProtoError::UnsupportedVersion { .. } => refuse::VERSION,
            ProtoError::OutOfOrder { .. } => refuse::OUT_OF_ORDER,
            _ => refuse::PROTOCOL,
        };
        Some(Frame::refused(code, &self.to_string()))
    }
}
