//! Byte layouts of the segment header and of a record frame, and their checks.
//!
//! Everything is little-endian and 8-byte aligned, so a record can be found again by
//! stepping over 8-byte boundaries after damage (see `segment::scan`). The layouts are
//! documented field by field in the module doc of `journal`.

use std::fmt;

/// `b"RJSG"`: first four bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"RJSG");
/// `b"RJR1"`: first four bytes of every record frame.
pub(crate) const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"RJR1");
/// On-disk format version written in the segment header.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// Bytes of the segment header; the first record starts here.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 24;
/// Bytes of a record frame before its payload.
pub(crate) const RECORD_HEADER_LEN: u64 = 24;
/// Largest payload accepted by `append` (and believed by the scanner): 1 GiB.
pub const MAX_PAYLOAD: usize = 1 << 30;

/// What was wrong with the bytes at a damaged offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The segment header is missing, short, or fails its checks (magic, version, id, crc).
    BadHeader,
    /// Fewer bytes remain in the file than the record frame needs.
    Truncated,
    /// The four bytes where a record should start are not the record magic.
    BadMagic,
    /// The length field exceeds the maximum payload, or the reserved field is not zero.
    BadLength,
    /// The crc32c over length, sequence number and payload does not match.
    BadChecksum,
    /// The zero padding after the payload is not zero.
    BadPadding,
    /// The record's sequence number is not greater than its predecessor's.
    SeqNotIncreasing { prev: u64, seq: u64 },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::BadHeader => write!(f, "bad segment header"),
            Damage::Truncated => write!(f, "truncated record"),
            Damage::BadMagic => write!(f, "bad record magic"),
            Damage::BadLength => write!(f, "bad record length or reserved field"),
            Damage::BadChecksum => write!(f, "record checksum mismatch"),
            Damage::BadPadding => write!(f, "non-zero record padding"),
            Damage::SeqNotIncreasing { prev, seq } => {
                write!(
                    f,
                    "sequence number {seq} not greater than its predecessor {prev}"
                )
            }
        }
    }
}

/// Round `n` up to a multiple of 8.
pub(crate) fn pad8(n: u64) -> u64 {
    (n + 7) & !7
}

/// Bytes a record with a payload of `len` bytes occupies on disk.
pub(crate) fn record_size(len: usize) -> u64 {
    RECORD_HEADER_LEN + pad8(len as u64)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The segment header for segment `id`.
pub(crate) fn encode_segment_header(id: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..4].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
    h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[6..8].copy_from_slice(&(SEGMENT_HEADER_LEN as u16).to_le_bytes());
    h[8..16].copy_from_slice(&id.to_le_bytes());
    // 16..20 reserved, zero.
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Whether `h` (at least `SEGMENT_HEADER_LEN` bytes) is a valid header of segment `id`.
pub(crate) fn segment_header_ok(h: &[u8], id: u64) -> bool {
    h.len() >= SEGMENT_HEADER_LEN as usize
        && u32_at(h, 0) == SEGMENT_MAGIC
        && h[4..6] == FORMAT_VERSION.to_le_bytes()
        && h[6..8] == (SEGMENT_HEADER_LEN as u16).to_le_bytes()
        && u64_at(h, 8) == id
        && u32_at(h, 16) == 0
        && u32_at(h, 20) == crc32c::crc32c(&h[0..20])
}

/// Append the frame of record `seq` with `payload` to `out` (which is cleared first).
pub(crate) fn encode_record(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    out.clear();
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[4..16]), payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(record_size(payload.len()) as usize, 0);
}

/// Check the fixed part of a record frame (`h` is `RECORD_HEADER_LEN` bytes); returns
/// `(seq, payload length)`. The checksum is checked by `check_record` once the whole frame
/// is at hand.
pub(crate) fn parse_record_header(h: &[u8]) -> Result<(u64, usize), Damage> {
    if u32_at(h, 0) != RECORD_MAGIC {
        return Err(Damage::BadMagic);
    }
    let len = u32_at(h, 4) as usize;
    if len > MAX_PAYLOAD || u32_at(h, 20) != 0 {
        return Err(Damage::BadLength);
    }
    Ok((u64_at(h, 8), len))
}

/// Check a whole record frame (`record_size(len)` bytes) whose header parsed to a payload
/// of `len` bytes: checksum and zero padding.
pub(crate) fn check_record(frame: &[u8], len: usize) -> Result<(), Damage> {
    let hdr = RECORD_HEADER_LEN as usize;
    let payload = &frame[hdr..hdr + len];
    let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[4..16]), payload);
    if crc != u32_at(frame, 16) {
        return Err(Damage::BadChecksum);
    }
    if frame[hdr + len..].iter().any(|&b| b != 0) {
        return Err(Damage::BadPadding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_every_byte_flip_is_caught() {
        for len in [0usize, 1, 7, 8, 9, 100] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            let mut frame = Vec::new();
            encode_record(&mut frame, 42, &payload);
            assert_eq!(frame.len() as u64, record_size(len));
            assert_eq!(frame.len() % 8, 0);
            let (seq, l) = parse_record_header(&frame[..24]).unwrap();
            assert_eq!((seq, l), (42, len));
            check_record(&frame, l).unwrap();
            for i in 0..frame.len() {
                let mut bad = frame.clone();
                bad[i] ^= 0x01;
                let caught = match parse_record_header(&bad[..24]) {
                    Err(_) => true,
                    Ok((_, l2)) => l2 != len || check_record(&bad, l2).is_err(),
                };
                assert!(
                    caught,
                    "flip at byte {i} of a {len}-byte record went unnoticed"
                );
            }
        }
    }

    #[test]
    fn segment_header_checks_id_and_crc() {
        let h = encode_segment_header(7);
        assert!(segment_header_ok(&h, 7));
        assert!(!segment_header_ok(&h, 8));
        assert!(!segment_header_ok(&h[..20], 7));
        for i in 0..h.len() {
            let mut bad = h;
            bad[i] ^= 0x80;
            assert!(!segment_header_ok(&bad, 7), "flip at {i}");
        }
    }
}
