//! Every way a frame can be wrong: the error is typed and its message names what was
//! found and what is allowed.

use super::*;

fn err(bytes: &[u8]) -> ProtoError {
    match Frame::decode(bytes, MAX_FRAME) {
        Ok(f) => panic!("decoded {f:?}"),
        Err(e) => e,
    }
}

fn says(e: &ProtoError, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

#[test]
fn bad_magic_is_refused_from_the_first_wrong_byte() {
    let e = err(b"G");
    assert!(
        matches!(&e, ProtoError::BadMagic { found } if found == b"G"),
        "{e:?}"
    );
    let e = err(b"GET / HTTP/1.1\r\n\r\n");
    assert!(
        matches!(&e, ProtoError::BadMagic { found } if found == b"GET "),
        "{e:?}"
    );
    says(&e, &["bad frame magic", "RILW"]);
    // A correct prefix is only incomplete.
    assert!(err(b"RIL").is_incomplete());
}

#[test]
fn unknown_versions_are_refused_naming_the_supported_ones() {
    for v in [0u16, 2, u16::MAX] {
        let e = err(&raw(v, Kind::Ack as u8, 0, &[0; 8], None));
        assert!(matches!(e, ProtoError::UnsupportedVersion { found } if found == v));
        says(&e, &[&format!("version {v}"), "[1]"]);
    }
}

#[test]
fn unknown_kinds_are_refused_naming_the_known_ones() {
    for k in [0u8, 14, 255] {
        let e = err(&raw(VERSION, k, 0, &[], None));
        assert!(matches!(e, ProtoError::UnknownKind { found } if found == k));
        says(&e, &[&format!("kind {k}"), "1 (Hello)", "13 (Verified)"]);
    }
}

#[test]
fn unknown_flag_bits_are_refused() {
    for f in [0x02u8, 0x80, 0xff] {
        let e = err(&raw(VERSION, Kind::Op as u8, f, &[0; 9], None));
        assert!(
            matches!(e, ProtoError::UnknownFlags { flags, unknown } if flags == f && unknown == f & !1)
        );
        says(&e, &["unknown flag bits", "only bit 0"]);
    }
}

#[test]
fn only_op_frames_may_be_compressed() {
    let e = err(&raw(VERSION, Kind::Ack as u8, FLAG_ZSTD, &[0; 8], None));
    assert!(matches!(
        e,
        ProtoError::CompressedNotAllowed { kind: Kind::Ack }
    ));
    says(&e, &["Ack", "only Op bodies"]);
}

#[test]
fn oversized_frames_are_refused_from_the_header_alone() {
    // Only the header is there: the length is judged before any payload is awaited.
    let mut head = raw(VERSION, Kind::Op as u8, 0, &[], None);
    head[8..12].copy_from_slice(&(MAX_FRAME + 1).to_le_bytes());
    let e = err(&head);
    assert!(matches!(e, ProtoError::TooLarge { len, max, .. }
        if len == u64::from(MAX_FRAME) + 1 && max == u64::from(MAX_FRAME)));
    says(&e, &["exceeds the maximum", &MAX_FRAME.to_string()]);

    head[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(err(&head), ProtoError::TooLarge { .. }));

    // A receiver may configure a smaller maximum.
    let bytes = encoded(&Frame::refused(1, &"x".repeat(200)), Policy::PLAIN);
    assert!(matches!(
        Frame::decode(&bytes, 100),
        Err(ProtoError::TooLarge { max: 100, .. })
    ));
    assert!(Frame::decode(&bytes, 206).is_ok());
}

#[test]
fn a_damaged_payload_fails_its_checksum() {
    let mut bytes = encoded(&Frame::Ack { seq: 9 }, Policy::PLAIN);
    *bytes.last_mut().unwrap() ^= 1;
    let e = err(&bytes);
    assert!(matches!(e, ProtoError::Checksum { .. }), "{e:?}");
    says(&e, &["crc32c mismatch"]);

    let e = err(&raw(
        VERSION,
        Kind::Ack as u8,
        0,
        &[0; 8],
        Some(0xdead_beef),
    ));
    assert!(matches!(
        e,
        ProtoError::Checksum {
            expected: 0xdead_beef,
            ..
        }
    ));
}

#[test]
fn a_short_payload_names_the_field_it_ends_in() {
    let e = err(&framed(Kind::Ack, &[1; 7]));
    assert!(matches!(
        e,
        ProtoError::Truncated {
            kind: Kind::Ack,
            field: "seq",
            need: 8,
            have: 7
        }
    ));
    says(&e, &["Ack", "`seq`", "needs 8 bytes, 7 remain"]);

    // A string whose length runs past the payload.
    let mut p = 1u16.to_le_bytes().to_vec();
    p.extend_from_slice(&[10, 0, b'a']);
    let e = err(&framed(Kind::Hello, &p));
    assert!(
        matches!(
            e,
            ProtoError::Truncated {
                field: "host",
                need: 10,
                have: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let mut p = 5u64.to_le_bytes().to_vec();
    p.push(0);
    let e = err(&framed(Kind::Ack, &p));
    assert!(matches!(
        e,
        ProtoError::Trailing {
            kind: Kind::Ack,
            extra: 1
        }
    ));
    says(&e, &["1 trailing bytes", "Ack", "none are allowed"]);
    assert!(matches!(
        err(&framed(Kind::KeepAlive, &[0])),
        ProtoError::Trailing { extra: 1, .. }
    ));
}

#[test]
fn strings_over_their_cap_are_refused_both_ways() {
    let mut p = 7u32.to_le_bytes().to_vec();
    p.extend_from_slice(&(MAX_STRING as u16 + 1).to_le_bytes());
    p.extend(std::iter::repeat_n(b'x', MAX_STRING + 1));
    let e = err(&framed(Kind::Refused, &p));
    assert!(matches!(
        e,
        ProtoError::StringTooLong {
            field: "message",
            len: 4097,
            max: 4096,
            ..
        }
    ));
    says(&e, &["`message`", "4097 bytes", "at most 4096"]);

    let long = Frame::Welcome {
        host: "h".repeat(MAX_STRING + 1),
        last_applied: 0,
    };
    let mut out = b"kept".to_vec();
    let e = long.encode(Policy::PLAIN, &mut out).unwrap_err();
    assert!(matches!(
        e,
        ProtoError::StringTooLong {
            kind: Kind::Welcome,
            field: "host",
            ..
        }
    ));
    assert_eq!(out, b"kept");
    // Longer than a u16 can say: still the same error, not a wrapped length.
    let huge = Frame::Refused {
        code: 0,
        message: "m".repeat(70_000),
    };
    assert!(matches!(
        huge.encode(Policy::PLAIN, &mut out),
        Err(ProtoError::StringTooLong { .. })
    ));
}

#[test]
fn strings_must_be_utf8() {
    let mut p = 3u32.to_le_bytes().to_vec();
    p.extend_from_slice(&[3, 0, b'a', 0xff, b'b']);
    let e = err(&framed(Kind::Refused, &p));
    assert!(matches!(
        e,
        ProtoError::NotUtf8 {
            field: "message",
            valid_up_to: 1,
            ..
        }
    ));
    says(&e, &["not UTF-8"]);
}

#[test]
fn enumerated_bytes_accept_only_their_values() {
    let mut op = 1u64.to_le_bytes().to_vec();
    op.push(2);
    let e = err(&framed(Kind::Op, &op));
    assert!(matches!(
        e,
        ProtoError::BadValue {
            field: "stream",
            value: 2,
            ..
        }
    ));
    says(&e, &["value 2", "0 (replication) or 1 (mirror)"]);

    let mut marker = 1u64.to_le_bytes().to_vec();
    marker.push(9);
    let e = err(&framed(Kind::Marker, &marker));
    assert!(matches!(
        e,
        ProtoError::BadValue {
            field: "marker",
            value: 9,
            ..
        }
    ));

    let mut hello = encoded(
        &Frame::Hello {
            version: 1,
            host: String::new(),
            job: String::new(),
            target_path: String::new(),
            mirror: true,
            acked: 0,
        },
        Policy::PLAIN,
    )[HEADER_LEN..]
        .to_vec();
    // The mirror byte, before `acked`'s eight.
    let mirror = hello.len() - 9;
    hello[mirror] = 2;
    let e = err(&framed(Kind::Hello, &hello));
    assert!(matches!(
        e,
        ProtoError::BadValue {
            field: "mirror",
            value: 2,
            ..
        }
    ));
    says(&e, &["0 (false) or 1 (true)"]);
}

#[test]
fn errors_become_refusals_the_peer_can_read() {
    let e = err(&raw(7, Kind::Ack as u8, 0, &[], None));
    let Some(Frame::Refused { code, message }) = e.refusal() else {
        panic!("no refusal")
    };
    assert_eq!(code, refuse::VERSION);
    assert!(message.contains("version 7"));
    assert_eq!(err(b"X").refusal().map(|f| f.kind()), Some(Kind::Refused));
    assert!(
        err(b"RI").refusal().is_none(),
        "incomplete is not a reason to refuse"
    );
}

#[test]
fn long_messages_are_clipped_at_a_character_boundary() {
    let Frame::Refused { message, .. } = Frame::refused(1, &"é".repeat(MAX_STRING)) else {
        unreachable!()
    };
    assert_eq!(message.len(), MAX_STRING);
    let Frame::Nak { message, .. } = Frame::nak(1, 1, &format!("x{}", "é".repeat(MAX_STRING)))
    else {
        unreachable!()
    };
    assert_eq!(message.len(), MAX_STRING - 1);
    let bytes = encoded(&Frame::nak(1, 1, &"€".repeat(5000)), Policy::PLAIN);
    assert!(Frame::decode(&bytes, MAX_FRAME).is_ok());
}
