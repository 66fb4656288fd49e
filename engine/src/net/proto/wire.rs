//! Field-level reading and writing of payloads.
//!
//! Payload fields are laid out by hand, little-endian, rather than by a serializer: the
//! format then is exactly what this file says, independent of any crate's format
//! stability, easy to fuzz, and every allocation a decoder makes is bounded by a length
//! it has already checked against the bytes it holds.

use super::frame::Kind;
use super::ProtoError;

/// A cursor over one payload that turns every short read into an error naming the field.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    kind: Kind,
}

impl<'a> Reader<'a> {
    pub(super) fn new(kind: Kind, buf: &'a [u8]) -> Self {
        Reader { buf, kind }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtoError> {
        let Some((head, rest)) = self.buf.split_first_chunk::<N>() else {
            return Err(self.short(field, N));
        };
        self.buf = rest;
        Ok(*head)
    }

    fn short(&self, field: &'static str, need: usize) -> ProtoError {
        ProtoError::Truncated {
            kind: self.kind,
            field,
            need,
            have: self.buf.len(),
        }
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, ProtoError> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, ProtoError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A byte that must be 0 or 1: any other value is refused rather than read as true, so
    /// that every accepted payload has exactly one encoding.
    pub(super) fn bool(&mut self, field: &'static str) -> Result<bool, ProtoError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.bad(field, v.into(), "0 (false) or 1 (true)")),
        }
    }

    pub(super) fn bad(&self, field: &'static str, value: u64, allowed: &'static str) -> ProtoError {
        ProtoError::BadValue {
            kind: self.kind,
            field,
            value,
            allowed,
        }
    }

    /// A u16 length, then that many bytes of UTF-8; the length is checked against `max`
    /// and against the bytes left before anything is copied.
    pub(super) fn string(&mut self, field: &'static str, max: usize) -> Result<String, ProtoError> {
        let len = usize::from(self.u16(field)?);
        let bytes = self.take(field, len, max)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(ProtoError::NotUtf8 {
                kind: self.kind,
                field,
                valid_up_to: e.valid_up_to(),
            }),
        }
    }

    /// The next `len` bytes, once `len` is checked against `max` and the bytes left.
    fn take(
        &mut self,
        field: &'static str,
        len: usize,
        max: usize,
    ) -> Result<&'a [u8], ProtoError> {
        if len > max {
            return Err(ProtoError::StringTooLong {
                kind: self.kind,
                field,
                len,
                max,
            });
        }
        if len > self.buf.len() {
            return Err(self.short(field, len));
        }
        let (bytes, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(bytes)
    }

    /// A u32 length, then that many bytes; the length is checked against `max` and
    /// against the bytes left before anything is copied.
    pub(super) fn bytes(&mut self, field: &'static str, max: usize) -> Result<Vec<u8>, ProtoError> {
        let len = self.u32(field)? as usize;
        Ok(self.take(field, len, max)?.to_vec())
    }

    pub(super) fn kind(&self) -> Kind {
        self.kind
    }

    /// Everything not yet read: a body that runs to the end of the payload.
    pub(super) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Refuses bytes left over, so a payload has one length and no hidden tail.
    pub(super) fn finish(self) -> Result<(), ProtoError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Trailing {
                kind: self.kind,
                extra: self.buf.len(),
            })
        }
    }
}

/// Appends payload fields to a buffer; strings are checked against the same caps the
/// decoder applies, so this side never sends what the peer must refuse.
pub(super) struct Writer<'a> {
    pub(super) out: &'a mut Vec<u8>,
    kind: Kind,
}

impl<'a> Writer<'a> {
    pub(super) fn new(kind: Kind, out: &'a mut Vec<u8>) -> Self {
        Writer { out, kind }
    }

    pub(super) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(super) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    pub(super) fn kind(&self) -> Kind {
        self.kind
    }

    /// A u32 length, then the bytes, checked against the cap the decoder applies.
    pub(super) fn bytes(
        &mut self,
        field: &'static str,
        b: &[u8],
        max: usize,
    ) -> Result<(), ProtoError> {
        if b.len() > max {
            return Err(ProtoError::StringTooLong {
                kind: self.kind,
                field,
                len: b.len(),
                max,
            });
        }
        // max is far below u32::MAX.
        self.u32(b.len() as u32);
        self.out.extend_from_slice(b);
        Ok(())
    }

    pub(super) fn string(
        &mut self,
        field: &'static str,
        s: &str,
        max: usize,
    ) -> Result<(), ProtoError> {
        // max is at most u16::MAX by construction of the caps; the conversion guards it.
        let len = match u16::try_from(s.len()) {
            Ok(len) if s.len() <= max => len,
            _ => {
                return Err(ProtoError::StringTooLong {
                    kind: self.kind,
                    field,
                    len: s.len(),
                    max,
                })
            }
        };
        self.u16(len);
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
