//! Round trips, exact layout, and what every cut of a frame decodes to.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

const POLICIES: [Policy; 2] = [Policy::PLAIN, Policy::zstd(3)];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_frame_round_trips(frame in frame()) {
        for policy in POLICIES {
            let bytes = encoded(&frame, policy);
            let (back, used) = Frame::decode(&bytes, MAX_FRAME).unwrap();
            prop_assert_eq!(&back, &frame);
            prop_assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn a_frame_followed_by_another_uses_only_its_own_bytes(a in frame(), b in frame()) {
        let mut bytes = encoded(&a, Policy::zstd(1));
        let first = bytes.len();
        b.encode(Policy::PLAIN, &mut bytes).unwrap();
        let (back, used) = Frame::decode(&bytes, MAX_FRAME).unwrap();
        prop_assert_eq!(back, a);
        prop_assert_eq!(used, first);
        prop_assert_eq!(Frame::decode(&bytes[used..], MAX_FRAME).unwrap().0, b);
    }

    #[test]
    fn every_prefix_is_incomplete(frame in frame()) {
        let bytes = encoded(&frame, Policy::zstd(3));
        for cut in 0..bytes.len() {
            match Frame::decode(&bytes[..cut], MAX_FRAME) {
                Err(ProtoError::Incomplete { have, need }) => {
                    prop_assert_eq!(have, cut);
                    prop_assert!(need > cut && need <= bytes.len(), "need {need} at cut {cut}");
                }
                other => prop_assert!(false, "cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Frame::decode(&bytes, MAX_FRAME);
    }

    /// Past a valid header with a correct crc, so the payload decoders see the bytes.
    #[test]
    fn arbitrary_payloads_never_panic_and_reencode(
        kind in 1u8..=11,
        flags in 0u8..=1,
        payload in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let bytes = raw(VERSION, kind, flags, &payload, None);
        if let Ok((frame, used)) = Frame::decode(&bytes, MAX_FRAME) {
            prop_assert_eq!(used, bytes.len());
            let again = encoded(&frame, Policy::PLAIN);
            prop_assert_eq!(Frame::decode(&again, MAX_FRAME).unwrap().0, frame);
        }
    }
}

#[test]
fn every_sample_round_trips_with_and_without_compression() {
    for frame in samples() {
        for policy in POLICIES {
            let bytes = encoded(&frame, policy);
            assert_eq!(
                Frame::decode(&bytes, MAX_FRAME).unwrap(),
                (frame.clone(), bytes.len())
            );
        }
    }
}

/// A payload cut short but framed correctly (length and crc match the cut) is an error,
/// never a panic and never a frame, except an Op whose body simply got shorter.
#[test]
fn a_payload_cut_at_every_byte_is_an_error() {
    for frame in samples() {
        for policy in POLICIES {
            let bytes = encoded(&frame, policy);
            let compressed = bytes[7] & FLAG_ZSTD != 0;
            let payload = payload_of(&bytes);
            for cut in 0..payload.len() {
                let cut_frame = raw(VERSION, frame.kind() as u8, bytes[7], &payload[..cut], None);
                match (Frame::decode(&cut_frame, MAX_FRAME), &frame) {
                    (Err(ProtoError::Truncated { .. }), _) => {}
                    (Err(ProtoError::Decompress(_)), Frame::Op { .. }) if compressed => {}
                    (Ok((Frame::Op { body, .. }, _)), Frame::Op { .. }) if !compressed => {
                        assert_eq!(body.len(), cut - 9)
                    }
                    (other, _) => panic!("{frame:?} cut at {cut}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn encode_op_writes_what_encode_writes() {
    for policy in POLICIES {
        let body = b"0123456789".repeat(50);
        let mut a = Vec::new();
        let n = Frame::encode_op(7, Stream::Mirror, &body, policy, &mut a).unwrap();
        let frame = Frame::Op {
            seq: 7,
            stream: Stream::Mirror,
            body: body.into(),
        };
        assert_eq!(a, encoded(&frame, policy));
        assert_eq!(n, a.len());
    }
}

#[test]
fn an_op_whose_body_is_written_in_place_is_the_same_frame() {
    let body = b"0123456789".repeat(50);
    let mut plain = Vec::new();
    Frame::encode_op(7, Stream::Mirror, &body, Policy::PLAIN, &mut plain).unwrap();
    // Written whole, or with a tail left out of the buffer for the caller to send after
    // it: the bytes on the wire are the same frame either way.
    for split in [body.len(), 123, 0] {
        let mut out = b"earlier".to_vec();
        let (n, tail) = Frame::encode_op_with(7, Stream::Mirror, Policy::PLAIN, &mut out, |o| {
            o.extend_from_slice(&body[..split]);
            Ok(Bytes::copy_from_slice(&body[split..]))
        })
        .unwrap();
        assert_eq!([&out[7..], &tail[..]].concat(), plain, "split at {split}");
        assert_eq!(n, plain.len());
    }
    // A body that fails leaves what was there.
    let mut out = b"earlier".to_vec();
    let failed = Frame::encode_op_with(8, Stream::Mirror, Policy::PLAIN, &mut out, |o| {
        o.extend_from_slice(b"half");
        Err(ProtoError::TooLarge {
            what: "operation record",
            len: 0,
            max: 0,
        })
    });
    assert!(failed.is_err());
    assert_eq!(out, b"earlier");
    // A tail that takes the frame past the maximum is refused like a body would be.
    let small = Policy {
        zstd_level: None,
        max_payload: 100,
    };
    let over = Frame::encode_op_with(9, Stream::Mirror, small, &mut out, |_| {
        Ok(Bytes::copy_from_slice(&body))
    });
    assert!(matches!(over, Err(ProtoError::TooLarge { .. })), "{over:?}");
    assert_eq!(out, b"earlier");
}

#[test]
fn encode_appends_after_what_is_there() {
    let mut out = b"earlier".to_vec();
    let n = Frame::Ack { seq: 1 }
        .encode(Policy::PLAIN, &mut out)
        .unwrap();
    assert_eq!(&out[..7], b"earlier");
    assert_eq!(out.len(), 7 + n);
    assert_eq!(
        Frame::decode(&out[7..], MAX_FRAME).unwrap().0,
        Frame::Ack { seq: 1 }
    );
}

/// The layout is a contract with peers of other versions: pin it byte for byte.
#[test]
fn ack_bytes_are_the_documented_layout() {
    let bytes = encoded(&Frame::Ack { seq: 0x0102 }, Policy::PLAIN);
    let payload = [0x02, 0x01, 0, 0, 0, 0, 0, 0];
    let mut expected = b"RILW".to_vec();
    expected.extend_from_slice(&[1, 0, 6, 0, 8, 0, 0, 0]);
    expected.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    expected.extend_from_slice(&payload);
    assert_eq!(bytes, expected);

    let hello = encoded(
        &Frame::Hello {
            version: 1,
            host: "h".into(),
            job: "jb".into(),
            target_path: "/t".into(),
            mirror: true,
            acked: 0x0102,
        },
        Policy::PLAIN,
    );
    assert_eq!(
        payload_of(&hello),
        &[1, 0, 1, 0, b'h', 2, 0, b'j', b'b', 2, 0, b'/', b't', 1, 2, 1, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn empty_frames_have_empty_payloads() {
    for (frame, kind) in [
        (Frame::KeepAlive, 8u8),
        (Frame::Pause, 9),
        (Frame::Resume, 10),
    ] {
        let bytes = encoded(&frame, Policy::zstd(3));
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(bytes[6], kind);
        assert_eq!(frame.kind() as u8, kind);
    }
}

#[test]
fn strings_at_their_cap_round_trip() {
    let frame = Frame::Hello {
        version: 1,
        host: "h".repeat(MAX_STRING),
        job: "j".repeat(MAX_STRING),
        target_path: "/".repeat(MAX_PATH),
        mirror: false,
        acked: u64::MAX,
    };
    let bytes = encoded(&frame, Policy::PLAIN);
    assert_eq!(Frame::decode(&bytes, MAX_FRAME).unwrap().0, frame);
}

#[test]
fn an_op_of_the_maximum_size_fits_and_one_more_byte_does_not() {
    let max = 1000u32;
    let policy = Policy {
        zstd_level: None,
        max_payload: max,
    };
    let body = noise(max as usize - 9, 3);
    let mut out = Vec::new();
    Frame::encode_op(1, Stream::Replication, &body, policy, &mut out).unwrap();
    assert_eq!(Frame::decode(&out, max).unwrap().1, out.len());

    let body = noise(max as usize - 8, 3);
    let mut out = b"kept".to_vec();
    let err = Frame::encode_op(1, Stream::Replication, &body, policy, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            ProtoError::TooLarge {
                len: 1001,
                max: 1000,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(out, b"kept", "a failed encode leaves the buffer as it was");
}

#[test]
fn seq_is_exposed_for_ops_and_markers_only() {
    for frame in samples() {
        let expected = matches!(frame.kind(), Kind::Op | Kind::Marker);
        assert_eq!(frame.seq().is_some(), expected, "{frame:?}");
    }
}

#[test]
fn kinds_are_numbered_one_to_thirteen() {
    for (i, kind) in Kind::ALL.iter().enumerate() {
        assert_eq!(*kind as usize, i + 1);
        assert_eq!(Kind::from_u8(*kind as u8), Some(*kind));
    }
    assert_eq!(Kind::from_u8(0), None);
    assert_eq!(Kind::from_u8(14), None);
}
