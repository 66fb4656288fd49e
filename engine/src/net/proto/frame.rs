//! The frame: a fixed 16-byte header, then a payload whose layout depends on the kind.
//!
//! ```text
//! offset size field
//!      0    4 magic       b"RILW"
//!      4    2 version     u16 LE, one of SUPPORTED_VERSIONS
//!      6    1 kind        u8, see `Kind`
//!      7    1 flags       u8, bit 0: payload body zstd-compressed (Op only); others zero
//!      8    4 length      u32 LE, payload bytes as sent, at most the receiver's maximum
//!     12    4 crc32c      u32 LE, of the payload bytes as sent
//!     16    * payload
//! ```
//!
//! The header is checked completely (magic, version, kind, flags, length against the
//! maximum) before a byte of payload is awaited or allocated, so a hostile length costs
//! nothing, and the checksum is checked before the payload is parsed.

use std::fmt;

use bytes::Bytes;

use super::verify::{Ask, Inspected};
use super::{payload, ProtoError};

/// First four bytes of every frame; lets a receiver tell a rill peer from anything else
/// that connects to the port before it believes a length.
pub const MAGIC: &[u8; 4] = b"RILW";
/// The protocol version this build writes.
pub const VERSION: u16 = 1;
/// The protocol versions this build reads.
pub const SUPPORTED_VERSIONS: &[u16] = &[1];
/// Bytes of the header before the payload.
pub const HEADER_LEN: usize = 16;
/// Default largest payload: the largest write chunk (16 MiB) plus room for its operation
/// record, so a full `MaxWriteChunkSize` write always fits one frame.
pub const MAX_FRAME: u32 = 16 * 1024 * 1024 + 64 * 1024;
/// Flag bit 0: the Op body in this payload is one zstd frame.
pub const FLAG_ZSTD: u8 = 1;
/// Cap of host names, job names and messages, in bytes of UTF-8.
pub const MAX_STRING: usize = 4096;
/// Cap of the target path in `Hello`, in bytes of UTF-8 (Linux's PATH_MAX).
pub const MAX_PATH: usize = 4096;

/// Codes carried by `Refused`, so a peer can act on the reason without parsing its text.
pub mod refuse {
    /// A frame broke the protocol (the message says how).
    pub const PROTOCOL: u32 = 1;
    /// The peer speaks no protocol version this side supports.
    pub const VERSION: u32 = 2;
    /// The job named in `Hello` is not known to the target.
    pub const UNKNOWN_JOB: u32 = 3;
    /// The target path in `Hello` is not absolute, not allowed, or not usable.
    pub const TARGET_PATH: u32 = 4;
    /// The peer is not allowed to replicate to this host.
    pub const NOT_AUTHORIZED: u32 = 5;
    /// The target is busy with another connection for this job.
    pub const BUSY: u32 = 6;
    /// An Op or Marker sequence number went backwards.
    pub const OUT_OF_ORDER: u32 = 7;
    /// The service is stopping.
    pub const SHUTTING_DOWN: u32 = 8;
    /// The job failed over to the target: its source's operations are refused until the
    /// failover ends (`rillctl failback` on the target).
    pub const FAILED_OVER: u32 = 9;
}

/// The kind byte of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Hello = 1,
    Welcome = 2,
    Refused = 3,
    Op = 4,
    Marker = 5,
    Ack = 6,
    Nak = 7,
    KeepAlive = 8,
    Pause = 9,
    Resume = 10,
    TargetStats = 11,
    Verify = 12,
    Verified = 13,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Hello,
        Kind::Welcome,
        Kind::Refused,
        Kind::Op,
        Kind::Marker,
        Kind::Ack,
        Kind::Nak,
        Kind::KeepAlive,
        Kind::Pause,
        Kind::Resume,
        Kind::TargetStats,
        Kind::Verify,
        Kind::Verified,
    ];

    pub fn from_u8(v: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Hello => "Hello",
            Kind::Welcome => "Welcome",
            Kind::Refused => "Refused",
            Kind::Op => "Op",
            Kind::Marker => "Marker",
            Kind::Ack => "Ack",
            Kind::Nak => "Nak",
            Kind::KeepAlive => "KeepAlive",
            Kind::Pause => "Pause",
            Kind::Resume => "Resume",
            Kind::TargetStats => "TargetStats",
            Kind::Verify => "Verify",
            Kind::Verified => "Verified",
        }
    }

    /// "1 (Hello), 2 (Welcome), ...": the allowed values, for error messages.
    pub(super) fn list() -> String {
        let all: Vec<String> = Kind::ALL
            .iter()
            .map(|k| format!("{} ({})", *k as u8, k.name()))
            .collect();
        all.join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A checked frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub kind: Kind,
    pub flags: u8,
    /// Payload bytes as sent; already checked against the maximum.
    pub len: u32,
    pub crc: u32,
}

impl Header {
    /// Checks a header against what this build understands and against `max` payload bytes.
    pub fn parse(bytes: &[u8; HEADER_LEN], max: u32) -> Result<Header, ProtoError> {
        let [m0, m1, m2, m3, v0, v1, kind, flags, l0, l1, l2, l3, c0, c1, c2, c3] = *bytes;
        if [m0, m1, m2, m3] != *MAGIC {
            return Err(ProtoError::BadMagic {
                found: vec![m0, m1, m2, m3],
            });
        }
        let version = u16::from_le_bytes([v0, v1]);
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(ProtoError::UnsupportedVersion { found: version });
        }
        let kind = Kind::from_u8(kind).ok_or(ProtoError::UnknownKind { found: kind })?;
        if flags & !FLAG_ZSTD != 0 {
            return Err(ProtoError::UnknownFlags {
                flags,
                unknown: flags & !FLAG_ZSTD,
            });
        }
        if flags & FLAG_ZSTD != 0 && kind != Kind::Op {
            return Err(ProtoError::CompressedNotAllowed { kind });
        }
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        if len > max {
            return Err(ProtoError::TooLarge {
                what: "frame payload",
                len: len.into(),
                max: max.into(),
            });
        }
        Ok(Header {
            version,
            kind,
            flags,
            len,
            crc: u32::from_le_bytes([c0, c1, c2, c3]),
        })
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6] = self.kind as u8;
        b[7] = self.flags;
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    pub fn compressed(&self) -> bool {
        self.flags & FLAG_ZSTD != 0
    }
}

/// Which queue an operation came from: the target applies both in one order, but counts
/// and reports them apart (mirror progress vs replication lag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Replication = 0,
    Mirror = 1,
}

/// Points in the sequence that are not operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Marker {
    MirrorStarted = 0,
    MirrorComplete = 1,
}

/// One message between a source and a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Source -> target, first frame: the job and the absolute target path; `mirror` = a
    /// full mirror follows. `version` is the highest protocol version the source speaks.
    /// `acked`: the highest sequence the source holds an acknowledgement for, so it had
    /// every refusal up to it (a refusal travels before the acknowledgement covering it).
    Hello {
        version: u16,
        host: String,
        job: String,
        target_path: String,
        mirror: bool,
        acked: u64,
    },
    /// Target -> source: the highest sequence durably applied for this job (0: none;
    /// sequence numbers start at 1), so the source resends only what follows.
    Welcome {
        host: String,
        last_applied: u64,
    },
    /// Either side, then close.
    Refused {
        code: u32,
        message: String,
    },
    /// One operation; `body` is `codec` bytes, uncompressed here whatever went on the wire.
    /// Decoded by a [`FrameReader`](super::FrameReader), a large body is a view of the
    /// bytes received, not a copy.
    Op {
        seq: u64,
        stream: Stream,
        body: Bytes,
    },
    /// A marker in the same sequence space as ops.
    Marker {
        seq: u64,
        marker: Marker,
    },
    /// Cumulative: every op up to `seq` is durably applied or durably queued.
    Ack {
        seq: u64,
    },
    /// Op `seq` could not be applied after retries; the source remirrors its file.
    Nak {
        seq: u64,
        code: u32,
        message: String,
    },
    KeepAlive,
    /// Target -> source: stop sending ops (the target's queue is at its high mark).
    Pause,
    /// Target -> source: send again (the target's queue is down to its low mark).
    Resume,
    /// Target -> source: the target's statistics under the guide's names.
    TargetStats {
        ops_received: u64,
        ops_remaining: u64,
        retries: u64,
        ops_dropped: u64,
        bytes_in_queue: u64,
        bytes_in_disk_queue: u64,
        data_state: u8,
    },
    /// Source -> target: what the replica holds under some names, answered once every
    /// operation sent before it is applied (see `verify`). Not numbered: not resent.
    Verify {
        id: u64,
        asks: Vec<Ask>,
    },
    /// Target -> source: the answer to `Verify` `id`, one entry per name asked, in order.
    Verified {
        id: u64,
        found: Vec<Inspected>,
    },
}

/// How the encoder writes a frame: whether an Op body is compressed (decided per op by
/// the caller, see `Compression::policy`) and the largest payload the peer accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// zstd level for Op bodies, or `None` to send them as they are. A body is sent
    /// compressed only when that makes it smaller.
    pub zstd_level: Option<i32>,
    /// Largest payload to write: a frame the peer would refuse is refused here instead.
    pub max_payload: u32,
}

impl Policy {
    /// No compression, default maximum.
    pub const PLAIN: Policy = Policy {
        zstd_level: None,
        max_payload: MAX_FRAME,
    };

    /// Compress Op bodies at `level`, default maximum.
    pub const fn zstd(level: i32) -> Policy {
        Policy {
            zstd_level: Some(level),
            max_payload: MAX_FRAME,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::PLAIN
    }
}

impl Frame {
    pub fn kind(&self) -> Kind {
        match self {
            Frame::Hello { .. } => Kind::Hello,
            Frame::Welcome { .. } => Kind::Welcome,
            Frame::Refused { .. } => Kind::Refused,
            Frame::Op { .. } => Kind::Op,
            Frame::Marker { .. } => Kind::Marker,
            Frame::Ack { .. } => Kind::Ack,
            Frame::Nak { .. } => Kind::Nak,
            Frame::KeepAlive => Kind::KeepAlive,
            Frame::Pause => Kind::Pause,
            Frame::Resume => Kind::Resume,
            Frame::TargetStats { .. } => Kind::TargetStats,
            Frame::Verify { .. } => Kind::Verify,
            Frame::Verified { .. } => Kind::Verified,
        }
    }

    /// The sequence number of an Op or Marker (the frames `SeqCheck` orders).
    pub fn seq(&self) -> Option<u64> {
        match self {
            Frame::Op { seq, .. } | Frame::Marker { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    /// A `Refused` whose message is cut (at a character boundary) to fit `MAX_STRING`, so
    /// reporting an error can never fail for the error's length.
    pub fn refused(code: u32, message: &str) -> Frame {
        Frame::Refused {
            code,
            message: clip(message, MAX_STRING).to_owned(),
        }
    }

    /// A `Nak` whose message is cut to fit, as in [`Frame::refused`].
    pub fn nak(seq: u64, code: u32, message: &str) -> Frame {
        Frame::Nak {
            seq,
            code,
            message: clip(message, MAX_STRING).to_owned(),
        }
    }

    /// Appends the frame to `out` and returns its length. On error `out` is as it was.
    pub fn encode(&self, policy: Policy, out: &mut Vec<u8>) -> Result<usize, ProtoError> {
        if let Frame::Op { seq, stream, body } = self {
            return Frame::encode_op(*seq, *stream, body, policy, out);
        }
        finish(out, self.kind(), policy, |out| {
            payload::encode_fields(self, out).map(|()| (0, &[][..]))
        })
    }

    /// Appends an Op frame straight from a borrowed body (no `Frame` to build, no copy
    /// of the body), compressed as `policy` says when that makes it smaller.
    pub fn encode_op(
        seq: u64,
        stream: Stream,
        body: &[u8],
        policy: Policy,
        out: &mut Vec<u8>,
    ) -> Result<usize, ProtoError> {
        finish(out, Kind::Op, policy, |out| {
            payload::encode_op(seq, stream, body, policy.zstd_level, out).map(|f| (f, &[][..]))
        })
    }

    /// Appends an uncompressed Op frame whose body `body` writes into `out`, all but a
    /// tail it returns, which belongs after `out` and is not copied into it: the caller
    /// writes it next (a write's data, shared with the queue and the resend window).
    /// Header, length and checksum cover the tail. On error `out` is as it was.
    pub fn encode_op_with(
        seq: u64,
        stream: Stream,
        policy: Policy,
        out: &mut Vec<u8>,
        body: impl FnOnce(&mut Vec<u8>) -> Result<Bytes, ProtoError>,
    ) -> Result<(usize, Bytes), ProtoError> {
        let mut tail = Bytes::new();
        let n = finish(out, Kind::Op, policy, |out| {
            payload::encode_op_head(seq, stream, out);
            tail = body(out)?;
            Ok((0, &tail[..]))
        })?;
        Ok((n, tail))
    }

    /// Decodes the frame at the start of `buf`, accepting payloads up to `max` bytes.
    /// Returns the frame and the bytes it used; `ProtoError::Incomplete` when `buf` is a
    /// valid beginning of a frame that needs more bytes.
    pub fn decode(buf: &[u8], max: u32) -> Result<(Frame, usize), ProtoError> {
        let (header, used) = extent(buf, max)?;
        let payload = buf.get(HEADER_LEN..used).unwrap_or_default();
        Ok((Frame::from_payload(&header, payload, max)?, used))
    }

    /// Decodes the payload that `header` (already checked by [`Header::parse`]) announced.
    pub fn from_payload(header: &Header, payload: &[u8], max: u32) -> Result<Frame, ProtoError> {
        checked(header, payload)?;
        payload::decode(header.kind, header.compressed(), payload, None, max)
    }

    /// [`Frame::from_payload`] for a payload held in `Bytes`: an Op's body is a view of
    /// it, not a copy.
    pub fn from_shared_payload(
        header: &Header,
        payload: &Bytes,
        max: u32,
    ) -> Result<Frame, ProtoError> {
        checked(header, payload)?;
        payload::decode(
            header.kind,
            header.compressed(),
            payload,
            Some(payload),
            max,
        )
    }
}

/// The header of the frame at the start of `buf` and the frame's whole length, once
/// `buf` holds all of it; `ProtoError::Incomplete` with the length needed before that.
pub(super) fn extent(buf: &[u8], max: u32) -> Result<(Header, usize), ProtoError> {
    let (header, need) = extent_header(buf, max)?;
    if buf.len() < need {
        return Err(ProtoError::Incomplete {
            have: buf.len(),
            need,
        });
    }
    Ok((header, need))
}

/// The checked header of the frame at the start of `buf` and the frame's whole length,
/// as soon as `buf` holds the header.
pub(super) fn extent_header(buf: &[u8], max: u32) -> Result<(Header, usize), ProtoError> {
    check_magic(buf)?;
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Err(ProtoError::Incomplete {
            have: buf.len(),
            need: HEADER_LEN,
        });
    };
    let header = Header::parse(head, max)?;
    Ok((header, HEADER_LEN + header.len as usize))
}

/// Checks a payload's length and checksum against its header.
fn checked(header: &Header, payload: &[u8]) -> Result<(), ProtoError> {
    if payload.len() != header.len as usize {
        return Err(ProtoError::Incomplete {
            have: HEADER_LEN + payload.len(),
            need: HEADER_LEN + header.len as usize,
        });
    }
    let actual = crc32c::crc32c(payload);
    if actual != header.crc {
        return Err(ProtoError::Checksum {
            expected: header.crc,
            actual,
        });
    }
    Ok(())
}

/// Judges the magic on however many of the first bytes are there, so a stray client is
/// refused at once rather than after it has sent a full header.
pub(super) fn check_magic(buf: &[u8]) -> Result<(), ProtoError> {
    if buf.iter().zip(MAGIC).any(|(a, b)| a != b) {
        return Err(ProtoError::BadMagic {
            found: buf.iter().take(MAGIC.len()).copied().collect(),
        });
    }
    Ok(())
}

/// Writes a header placeholder, lets `fill` append the payload and return its flags and
/// the payload's tail (bytes the caller sends after `out`, counted but not copied), then
/// fills the header in; undoes everything if `fill` or the size check fails.
fn finish<'t>(
    out: &mut Vec<u8>,
    kind: Kind,
    policy: Policy,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(u8, &'t [u8]), ProtoError>,
) -> Result<usize, ProtoError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let result = fill(out).and_then(|(flags, tail)| {
        let len = out.len() - start - HEADER_LEN + tail.len();
        match u32::try_from(len) {
            Ok(len) if len <= policy.max_payload => Ok((flags, len, tail)),
            _ => Err(ProtoError::TooLarge {
                what: "frame payload",
                len: len as u64,
                max: policy.max_payload.into(),
            }),
        }
    });
    let (flags, len, tail) = match result {
        Ok(v) => v,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    let header = Header {
        version: VERSION,
        kind,
        flags,
        len,
        crc: crc32c::crc32c_append(crc32c::crc32c(&out[start + HEADER_LEN..]), tail),
    };
    out[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
    Ok(HEADER_LEN + len as usize)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}
