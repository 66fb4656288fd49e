//! Frames over an async byte stream (the TLS connection, or anything else in tests).
//!
//! Two readers: [`read_frame`] reads exactly one frame and nothing more, for handshakes
//! and simple loops; [`FrameReader`] keeps what it has read between calls, so its `next`
//! may be cancelled (a `select!` between incoming acks and outgoing ops) without losing
//! bytes. Both judge the header before they wait for or allocate payload, and grow their
//! buffers only as bytes arrive, so a peer that announces a large frame and sends nothing
//! costs little.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use bytes::{Buf, BytesMut};

use super::frame::{check_magic, extent, extent_header, Frame, Header, Kind, Policy, HEADER_LEN};
use super::payload::OP_FIXED;
use super::ProtoError;

/// Payload bytes read per step while a frame is arriving, and the least a `FrameReader`
/// asks the socket for, so small frames arrive many to a read.
const READ_CHUNK: usize = 64 * 1024;
/// Frames at least this large are handed out as views of the bytes received (no copy of
/// their body); smaller ones are copied out, so a small op kept in a queue never pins a
/// read buffer many times its size.
const SHARE_MIN: usize = 64 * 1024;

/// Reads one frame, accepting payloads up to `max` bytes. `Ok(None)` when the stream ends
/// cleanly between frames; ending inside a frame is an error. Not cancel-safe: use
/// [`FrameReader`] inside `select!`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
) -> Result<Option<Frame>, ProtoError> {
    let mut head = [0u8; HEADER_LEN];
    let mut got = 0;
    while let Some(room) = head.get_mut(got..).filter(|room| !room.is_empty()) {
        let n = r.read(room).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(ProtoError::ClosedInFrame {
                have: got,
                need: HEADER_LEN,
            });
        }
        got += n;
        check_magic(head.get(..got).unwrap_or(&head))?;
    }
    let header = Header::parse(&head, max)?;
    let len = header.len as usize;
    let mut payload = Vec::new();
    while payload.len() < len {
        // Grow with what arrives (doubling, so a large frame costs few copies), never
        // past the announced length.
        let want = (len - payload.len()).min(payload.len().max(READ_CHUNK));
        payload.reserve_exact(want);
        let n = (&mut *r).take(want as u64).read_buf(&mut payload).await?;
        if n == 0 {
            return Err(ProtoError::ClosedInFrame {
                have: HEADER_LEN + payload.len(),
                need: HEADER_LEN + len,
            });
        }
    }
    Frame::from_payload(&header, &payload, max).map(Some)
}

/// Encodes `frame` as `policy` says and writes it; returns the bytes written. Does not
/// flush: a sender batches frames and flushes when it has nothing more to send at once
/// (a `BufWriter` or a TLS stream then sends them in few packets).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &Frame,
    policy: Policy,
) -> Result<usize, ProtoError> {
    let mut buf = Vec::new();
    let n = frame.encode(policy, &mut buf)?;
    w.write_all(&buf).await?;
    Ok(n)
}

/// Where an Op body should start in memory, from its first bytes: `Some(r)` asks for an
/// address congruent to `r` modulo [`PAGE`] (see [`FrameReader::with_placement`]).
pub type Placement = fn(&[u8]) -> Option<usize>;

/// The page size placements are expressed in.
pub const PAGE: usize = 4096;

/// A cancel-safe frame reader: bytes read but not yet a whole frame stay in its buffer.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max: u32,
    placement: Option<Placement>,
    /// The frame at the front of `buf` has its own buffer, placed as asked.
    placed: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames from `inner`, accepting payloads up to `max` bytes.
    pub fn new(inner: R, max: u32) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::new(),
            max,
            placement: None,
            placed: false,
        }
    }

    /// Receives each large uncompressed Op frame into a buffer of its own whose body starts
    /// where `placement` asks, once the body's first bytes have arrived (a frame whose
    /// beginning arrives in pieces too small to judge is received as usual). The caller
    /// knows what the body holds; the reader only moves the bytes.
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = Some(placement);
        self
    }

    /// Moves the partial frame at the front of the buffer (it is all the buffer holds)
    /// into a fresh buffer with room for all `need` bytes, placed as `placement` asks.
    fn place(&mut self, need: usize) {
        let Some(place) = self.placement else { return };
        let Ok((header, _)) = extent_header(&self.buf, self.max) else {
            return;
        };
        let body_at = HEADER_LEN + OP_FIXED;
        if header.kind != Kind::Op || header.compressed() {
            self.placed = true;
            return;
        }
        let Some(body_start) = self.buf.get(body_at..).and_then(place) else {
            return;
        };
        // Room for the padding and a full read past the frame, so that no later reserve
        // for this frame reallocates (and moves it).
        let mut fresh = BytesMut::with_capacity(PAGE + need + READ_CHUNK);
        let frame_start = (body_start % PAGE + PAGE - body_at % PAGE) % PAGE;
        let pad = (frame_start + PAGE - fresh.as_ptr() as usize % PAGE) % PAGE;
        fresh.resize(pad, 0);
        fresh.advance(pad);
        fresh.extend_from_slice(&self.buf);
        self.buf = fresh;
        self.placed = true;
    }

    /// The next frame; `Ok(None)` when the stream ends cleanly between frames. Cancelling
    /// the future loses nothing: the next call resumes where this one stopped.
    pub async fn next(&mut self) -> Result<Option<Frame>, ProtoError> {
        loop {
            let need = match extent(&self.buf, self.max) {
                Ok((header, used)) if used >= SHARE_MIN => {
                    // The frame leaves the buffer without a copy; what follows it stays.
                    self.placed = false;
                    let frame = self.buf.split_to(used).freeze();
                    let payload = frame.slice(HEADER_LEN..);
                    return Frame::from_shared_payload(&header, &payload, self.max).map(Some);
                }
                Ok((header, used)) => {
                    let payload = self.buf.get(HEADER_LEN..used).unwrap_or_default();
                    let frame = Frame::from_payload(&header, payload, self.max);
                    self.buf.advance(used);
                    return frame.map(Some);
                }
                Err(ProtoError::Incomplete { need, .. }) => need,
                Err(e) => return Err(e),
            };
            // A large frame gets a buffer of its own size (it leaves whole, see above);
            // small ones share one of READ_CHUNK.
            if need >= SHARE_MIN && !self.placed {
                self.place(need);
            }
            let missing = need.saturating_sub(self.buf.len());
            self.buf.reserve(missing.max(READ_CHUNK));
            // read_buf fills only the spare capacity reserved above.
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(ProtoError::ClosedInFrame {
                    have: self.buf.len(),
                    need,
                });
            }
        }
    }

    /// Whether [`FrameReader::next`] would return without reading: a whole frame (or a
    /// malformed one) is buffered. A receiver hands on the frames of one read together.
    pub fn frame_ready(&self) -> bool {
        !matches!(
            extent(&self.buf, self.max),
            Err(ProtoError::Incomplete { .. })
        )
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}
