//! Frames over async streams: clean ends, ends inside a frame, byte-at-a-time arrival,
//! and cancellation of a `FrameReader`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::*;

fn stream_of(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode(Policy::zstd(3), &mut out).unwrap();
    }
    out
}

/// Hands out one byte per read, so every boundary inside a frame is crossed.
struct Trickle(Vec<u8>, usize);

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(&b) = self.0.get(self.1) {
            buf.put_slice(&[b]);
            self.1 += 1;
        }
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn read_frame_reads_each_frame_then_a_clean_end() {
    let frames = samples();
    let bytes = stream_of(&frames);
    let mut r = &bytes[..];
    for f in &frames {
        assert_eq!(
            read_frame(&mut r, MAX_FRAME).await.unwrap().as_ref(),
            Some(f)
        );
    }
    assert!(read_frame(&mut r, MAX_FRAME).await.unwrap().is_none());

    let mut t = Trickle(bytes, 0);
    for f in &frames {
        assert_eq!(
            read_frame(&mut t, MAX_FRAME).await.unwrap().as_ref(),
            Some(f)
        );
    }
    assert!(read_frame(&mut t, MAX_FRAME).await.unwrap().is_none());
}

#[tokio::test]
async fn an_end_inside_a_frame_is_an_error() {
    let bytes = stream_of(&[Frame::Ack { seq: 1 }]);
    for cut in 1..bytes.len() {
        let mut r = &bytes[..cut];
        let e = read_frame(&mut r, MAX_FRAME).await.unwrap_err();
        assert!(
            matches!(e, ProtoError::ClosedInFrame { have, .. } if have == cut),
            "{cut}: {e:?}"
        );

        let mut fr = FrameReader::new(&bytes[..cut], MAX_FRAME);
        let e = fr.next().await.unwrap_err();
        let need = if cut < HEADER_LEN {
            HEADER_LEN
        } else {
            bytes.len()
        };
        assert!(
            matches!(e, ProtoError::ClosedInFrame { have, need: n } if have == cut && n == need),
            "{cut}: {e:?}"
        );
    }
}

#[tokio::test]
async fn readers_refuse_bad_headers_without_reading_on() {
    let mut r = &b"SSH-2.0-OpenSSH_9.2\r\n"[..];
    assert!(matches!(
        read_frame(&mut r, MAX_FRAME).await,
        Err(ProtoError::BadMagic { .. })
    ));
    let mut fr = FrameReader::new(&b"SSH-2.0-OpenSSH_9.2\r\n"[..], MAX_FRAME);
    assert!(matches!(fr.next().await, Err(ProtoError::BadMagic { .. })));

    let mut head = raw(VERSION, Kind::Op as u8, 0, &[], None);
    head[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut r = &head[..];
    assert!(matches!(
        read_frame(&mut r, MAX_FRAME).await,
        Err(ProtoError::TooLarge { .. })
    ));
    let mut fr = FrameReader::new(&head[..], MAX_FRAME);
    assert!(matches!(fr.next().await, Err(ProtoError::TooLarge { .. })));
}

#[tokio::test]
async fn frame_reader_reads_what_read_frame_reads() {
    let frames = samples();
    let mut fr = FrameReader::new(Trickle(stream_of(&frames), 0), MAX_FRAME);
    for f in &frames {
        assert_eq!(fr.next().await.unwrap().as_ref(), Some(f));
    }
    assert!(fr.next().await.unwrap().is_none());
    assert!(fr.buffered().is_empty());
}

#[tokio::test]
async fn a_large_frame_arrives_whole() {
    let big = Frame::Op {
        seq: 1,
        stream: Stream::Mirror,
        body: noise(MAX_FRAME as usize - 9, 5).into(),
    };
    let bytes = stream_of(&[big.clone(), Frame::KeepAlive]);
    let mut r = &bytes[..];
    assert_eq!(
        read_frame(&mut r, MAX_FRAME).await.unwrap(),
        Some(big.clone())
    );
    assert_eq!(
        read_frame(&mut r, MAX_FRAME).await.unwrap(),
        Some(Frame::KeepAlive)
    );
    let mut fr = FrameReader::new(&bytes[..], MAX_FRAME);
    assert_eq!(fr.next().await.unwrap(), Some(big));
    assert_eq!(fr.next().await.unwrap(), Some(Frame::KeepAlive));
}

/// Hands out `.2` bytes per read, so frames straddle reads in every way.
struct Chunks(Vec<u8>, usize, usize);

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let (at, step) = (self.1, self.2);
        let end = self.0.len().min(at + step).min(at + buf.remaining());
        if let Some(part) = self.0.get(at..end) {
            buf.put_slice(part);
            self.1 = end;
        }
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn frames_small_and_large_come_out_equal_whatever_the_reads() {
    // Bodies on both sides of the size from which a frame leaves the reader as a view of
    // its buffer, mixed with small frames, so views and copies alternate.
    let mut frames = Vec::new();
    for (i, len) in [10, 64 * 1024 - 40, 64 * 1024, 200_000, 3, 1 << 20]
        .into_iter()
        .enumerate()
    {
        frames.push(Frame::Op {
            seq: i as u64,
            stream: Stream::Replication,
            body: noise(len, i as u64).into(),
        });
        frames.push(Frame::Ack { seq: i as u64 });
    }
    let bytes = stream_of(&frames);
    for step in [1000, 65_536, 70_001, 1 << 22] {
        let mut fr = FrameReader::new(Chunks(bytes.clone(), 0, step), MAX_FRAME);
        let mut got = Vec::new();
        while let Some(f) = fr.next().await.unwrap() {
            got.push(f);
        }
        assert_eq!(got, frames, "reads of {step} bytes");
    }
}

/// With a placement, a large write arrives with its page-aligned offsets at page-aligned
/// addresses, however the bytes are cut into reads, and every frame is unchanged.
#[tokio::test]
async fn a_placed_write_arrives_in_step_with_its_file_offsets() {
    use rill_ops::{codec, Event, Op};
    let write = |offset: u64, len: usize| {
        let ev = Event::new(
            "dir/file",
            Op::Write {
                offset,
                len: len as u64,
                data: Some(noise(len, offset).into()),
            },
        );
        let mut body = Vec::new();
        codec::encode(&ev, &mut body).unwrap();
        body
    };
    let writes = [(1000u64, 300_000usize), (0, 1 << 20), (4095, 70_000)];
    let mut frames = vec![Frame::KeepAlive];
    for (i, &(offset, len)) in writes.iter().enumerate() {
        frames.push(Frame::Op {
            seq: i as u64,
            stream: Stream::Replication,
            body: write(offset, len).into(),
        });
        frames.push(Frame::Ack { seq: i as u64 });
    }
    let mut bytes = Vec::new();
    for f in &frames {
        f.encode(Policy::PLAIN, &mut bytes).unwrap();
    }
    for step in [7, 1000, 65_536, 1 << 22] {
        let reader = Chunks(bytes.clone(), 0, step);
        let mut fr = FrameReader::new(reader, MAX_FRAME)
            .with_placement(|prefix| codec::data_alignment(prefix, PAGE));
        let mut got = Vec::new();
        while let Some(f) = fr.next().await.unwrap() {
            if let Frame::Op { body, .. } = &f {
                let ev = codec::decode_relative(body).unwrap();
                let Op::Write {
                    offset,
                    data: Some(d),
                    ..
                } = ev.op
                else {
                    panic!("{ev:?}")
                };
                let to_page = (offset.next_multiple_of(PAGE as u64) - offset) as usize;
                assert_eq!(
                    (d.as_ptr() as usize + to_page) % PAGE,
                    0,
                    "write at {offset}, reads of {step} bytes"
                );
            }
            got.push(f);
        }
        assert_eq!(got, frames, "reads of {step} bytes");
    }
}

/// A receiver hands on the frames one read brought together, then wakes its consumer:
/// `frame_ready` says whether another whole frame is buffered.
#[tokio::test]
async fn frame_ready_tells_whether_a_whole_frame_is_buffered() {
    let (mut tx, rx) = tokio::io::duplex(1 << 16);
    let mut fr = FrameReader::new(rx, MAX_FRAME);
    assert!(!fr.frame_ready(), "nothing read yet");
    let frames = samples();
    let bytes = stream_of(&frames);
    let last = stream_of(std::slice::from_ref(frames.last().unwrap())).len();
    // All but the last frame's final byte arrive in one write.
    tx.write_all(&bytes[..bytes.len() - 1]).await.unwrap();
    for (i, f) in frames.iter().enumerate().take(frames.len() - 1) {
        assert_eq!(fr.next().await.unwrap().as_ref(), Some(f));
        let more = i + 2 < frames.len();
        assert_eq!(fr.frame_ready(), more, "after frame {i}");
    }
    assert_eq!(fr.buffered().len(), last - 1, "the last frame is partial");
    tx.write_all(&bytes[bytes.len() - 1..]).await.unwrap();
    assert_eq!(fr.next().await.unwrap().as_ref(), frames.last());
    assert!(!fr.frame_ready());
    // A malformed frame is ready too: `next` reports it without reading on.
    tx.write_all(&[0xff; 64]).await.unwrap();
    assert!(fr.next().await.is_err());
    assert!(fr.frame_ready());
}

#[tokio::test]
async fn a_cancelled_next_loses_nothing() {
    let (mut tx, rx) = tokio::io::duplex(1 << 16);
    let mut fr = FrameReader::new(rx, MAX_FRAME);
    let frame = Frame::Welcome {
        host: "t".into(),
        last_applied: 9,
    };
    let bytes = stream_of(std::slice::from_ref(&frame));
    let (first, second) = bytes.split_at(10);
    tx.write_all(first).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(20), fr.next()).await;
    assert!(waited.is_err(), "nothing complete yet");
    assert_eq!(fr.buffered(), first);
    tx.write_all(second).await.unwrap();
    assert_eq!(fr.next().await.unwrap(), Some(frame));
    drop(tx);
    assert!(fr.next().await.unwrap().is_none());
}

#[tokio::test]
async fn write_frame_writes_what_read_frame_reads() {
    let (mut tx, mut rx) = tokio::io::duplex(1 << 20);
    let mut total = 0;
    for f in samples() {
        total += write_frame(&mut tx, &f, Policy::zstd(3)).await.unwrap();
    }
    drop(tx);
    let mut got = Vec::new();
    while let Some(f) = read_frame(&mut rx, MAX_FRAME).await.unwrap() {
        got.push(f);
    }
    assert_eq!(got, samples());
    assert_eq!(total, stream_of(&samples()).len());
}

#[tokio::test]
async fn write_frame_refuses_what_it_cannot_encode() {
    let (mut tx, _rx) = tokio::io::duplex(64);
    let bad = Frame::Welcome {
        host: "h".repeat(MAX_STRING + 1),
        last_applied: 1,
    };
    assert!(matches!(
        write_frame(&mut tx, &bad, Policy::PLAIN).await,
        Err(ProtoError::StringTooLong { .. })
    ));
}
