//! Payload layouts, one per frame kind (all integers little-endian; `str` = u16 length
//! then that many bytes of UTF-8, capped per field):
//!
//! ```text
//! Hello        version u16, host str, job str, target_path str, mirror u8 (0|1), acked u64
//! Welcome      host str, last_applied u64
//! Refused      code u32, message str
//! Op           seq u64, stream u8 (0 replication, 1 mirror), body: the rest of the payload
//!              (one zstd frame declaring its size when the header's flag bit 0 is set)
//! Marker       seq u64, marker u8 (0 mirror started, 1 mirror complete)
//! Ack          seq u64
//! Nak          seq u64, code u32, message str
//! KeepAlive, Pause, Resume: empty
//! TargetStats  ops_received, ops_remaining, retries, ops_dropped, bytes_in_queue,
//!              bytes_in_disk_queue: u64 each; data_state u8
//! Verify, Verified: see `verify`
//! ```
//!
//! Every payload must be consumed exactly: trailing bytes are an error, so each frame has
//! one encoding and a decoded frame re-encodes to the same bytes (the fuzz target checks
//! this).

use bytes::Bytes;

use super::compression;
use super::frame::{Frame, Kind, Marker, Stream, FLAG_ZSTD, MAX_PATH, MAX_STRING};
use super::verify;
use super::wire::{Reader, Writer};
use super::ProtoError;

/// Bytes of an Op payload before its body.
pub(super) const OP_FIXED: usize = 9;

/// Appends the payload of any frame but an Op (whose body needs the compression policy).
pub(super) fn encode_fields(frame: &Frame, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let mut w = Writer::new(frame.kind(), out);
    match frame {
        Frame::Hello {
            version,
            host,
            job,
            target_path,
            mirror,
            acked,
        } => {
            w.u16(*version);
            w.string("host", host, MAX_STRING)?;
            w.string("job", job, MAX_STRING)?;
            w.string("target_path", target_path, MAX_PATH)?;
            w.bool(*mirror);
            w.u64(*acked);
        }
        Frame::Welcome { host, last_applied } => {
            w.string("host", host, MAX_STRING)?;
            w.u64(*last_applied);
        }
        Frame::Refused { code, message } => {
            w.u32(*code);
            w.string("message", message, MAX_STRING)?;
        }
        Frame::Op { seq, stream, body } => {
            encode_op(*seq, *stream, body, None, w.out)?;
        }
        Frame::Marker { seq, marker } => {
            w.u64(*seq);
            w.u8(*marker as u8);
        }
        Frame::Ack { seq } => w.u64(*seq),
        Frame::Nak { seq, code, message } => {
            w.u64(*seq);
            w.u32(*code);
            w.string("message", message, MAX_STRING)?;
        }
        Frame::KeepAlive | Frame::Pause | Frame::Resume => {}
        Frame::TargetStats {
            ops_received,
            ops_remaining,
            retries,
            ops_dropped,
            bytes_in_queue,
            bytes_in_disk_queue,
            data_state,
        } => {
            for v in [
                ops_received,
                ops_remaining,
                retries,
                ops_dropped,
                bytes_in_queue,
                bytes_in_disk_queue,
            ] {
                w.u64(*v);
            }
            w.u8(*data_state);
        }
        Frame::Verify { id, asks } => verify::encode_asks(*id, asks, &mut w)?,
        Frame::Verified { id, found } => verify::encode_found(*id, found, &mut w)?,
    }
    Ok(())
}

/// Appends an Op payload and returns the header flags it needs.
pub(super) fn encode_op(
    seq: u64,
    stream: Stream,
    body: &[u8],
    zstd_level: Option<i32>,
    out: &mut Vec<u8>,
) -> Result<u8, ProtoError> {
    encode_op_head(seq, stream, out);
    if let Some(level) = zstd_level {
        if compression::compress_into(body, level, out)? {
            return Ok(FLAG_ZSTD);
        }
    }
    out.extend_from_slice(body);
    Ok(0)
}

/// Appends what an Op payload holds before its body.
pub(super) fn encode_op_head(seq: u64, stream: Stream, out: &mut Vec<u8>) {
    let mut w = Writer::new(Kind::Op, out);
    w.u64(seq);
    w.u8(stream as u8);
}

/// Decodes a payload whose checksum has been checked; `max` bounds a decompressed body.
/// When `shared` holds the payload, an uncompressed Op body is a view of it.
pub(super) fn decode(
    kind: Kind,
    compressed: bool,
    payload: &[u8],
    shared: Option<&Bytes>,
    max: u32,
) -> Result<Frame, ProtoError> {
    let mut r = Reader::new(kind, payload);
    let frame = match kind {
        Kind::Hello => Frame::Hello {
            version: r.u16("version")?,
            host: r.string("host", MAX_STRING)?,
            job: r.string("job", MAX_STRING)?,
            target_path: r.string("target_path", MAX_PATH)?,
            mirror: r.bool("mirror")?,
            acked: r.u64("acked")?,
        },
        Kind::Welcome => Frame::Welcome {
            host: r.string("host", MAX_STRING)?,
            last_applied: r.u64("last_applied")?,
        },
        Kind::Refused => Frame::Refused {
            code: r.u32("code")?,
            message: r.string("message", MAX_STRING)?,
        },
        Kind::Op => {
            let seq = r.u64("seq")?;
            let stream = match r.u8("stream")? {
                0 => Stream::Replication,
                1 => Stream::Mirror,
                v => return Err(r.bad("stream", v.into(), "0 (replication) or 1 (mirror)")),
            };
            let sent = r.rest();
            // The decompressed body must fit a plain frame of the same maximum, so what
            // is accepted compressed could also have been sent (and re-sent) plain.
            let cap = (max as usize).saturating_sub(OP_FIXED);
            let body = match shared {
                _ if compressed => compression::decompress(sent, cap)?.into(),
                Some(all) => all.slice_ref(sent),
                None => Bytes::copy_from_slice(sent),
            };
            Frame::Op { seq, stream, body }
        }
        Kind::Marker => Frame::Marker {
            seq: r.u64("seq")?,
            marker: match r.u8("marker")? {
                0 => Marker::MirrorStarted,
                1 => Marker::MirrorComplete,
                v => {
                    return Err(r.bad(
                        "marker",
                        v.into(),
                        "0 (mirror started) or 1 (mirror complete)",
                    ))
                }
            },
        },
        Kind::Ack => Frame::Ack { seq: r.u64("seq")? },
        Kind::Nak => Frame::Nak {
            seq: r.u64("seq")?,
            code: r.u32("code")?,
            message: r.string("message", MAX_STRING)?,
        },
        Kind::KeepAlive => Frame::KeepAlive,
        Kind::Pause => Frame::Pause,
        Kind::Resume => Frame::Resume,
        Kind::TargetStats => Frame::TargetStats {
            ops_received: r.u64("ops_received")?,
            ops_remaining: r.u64("ops_remaining")?,
            retries: r.u64("retries")?,
            ops_dropped: r.u64("ops_dropped")?,
            bytes_in_queue: r.u64("bytes_in_queue")?,
            bytes_in_disk_queue: r.u64("bytes_in_disk_queue")?,
            data_state: r.u8("data_state")?,
        },
        Kind::Verify => {
            let (id, asks) = verify::decode_asks(&mut r)?;
            Frame::Verify { id, asks }
        }
        Kind::Verified => {
            let (id, found) = verify::decode_found(&mut r)?;
            Frame::Verified { id, found }
        }
    };
    r.finish()?;
    Ok(frame)
}
