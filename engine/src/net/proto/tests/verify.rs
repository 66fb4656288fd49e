//! The verification frames: they round-trip, and a peer's counts past the caps are
//! refused before anything is allocated for them.

use proptest::prelude::*;

use super::super::verify::{Ask, Inspected, ObjKind, MAX_BLOCKS, MAX_NAMES};
use super::*;

pub(super) fn sample_ask() -> Frame {
    Frame::Verify {
        id: 9,
        asks: vec![
            Ask {
                path: Vec::new(),
                first_block: 0,
                blocks: 0,
                list: true,
            },
            Ask {
                path: b"dir/\xffnot-utf8".to_vec(),
                first_block: 3,
                blocks: 32,
                list: false,
            },
        ],
    }
}

pub(super) fn sample_answer() -> Frame {
    Frame::Verified {
        id: 9,
        found: vec![
            Inspected {
                kind: Some(ObjKind::Dir),
                mode: 0o755,
                names: vec![b"a".to_vec(), b"b".to_vec()],
                names_cut: true,
                ..Inspected::default()
            },
            Inspected {
                kind: Some(ObjKind::File),
                mode: 0o644,
                uid: 1,
                gid: 2,
                size: 3 << 20,
                mtime: (-5, 999_999_999),
                xattrs: vec![(b"user.x".to_vec(), vec![0; 300])],
                sums: vec![1, 2, u32::MAX],
                ..Inspected::default()
            },
            Inspected {
                kind: Some(ObjKind::Symlink),
                link: b"../target".to_vec(),
                ..Inspected::default()
            },
        ],
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

pub(super) fn asks() -> impl Strategy<Value = Frame> {
    let ask = (bytes(40), any::<u64>(), 0u32..64, any::<bool>()).prop_map(
        |(path, first_block, blocks, list)| Ask {
            path,
            first_block,
            blocks,
            list,
        },
    );
    (any::<u64>(), proptest::collection::vec(ask, 0..8))
        .prop_map(|(id, asks)| Frame::Verify { id, asks })
}

pub(super) fn answers() -> impl Strategy<Value = Frame> {
    let kind = prop_oneof![
        Just(ObjKind::Missing),
        Just(ObjKind::File),
        Just(ObjKind::Dir),
        Just(ObjKind::Symlink),
        Just(ObjKind::Special),
    ];
    let one = (
        kind,
        any::<[u32; 4]>(),
        any::<u64>(),
        (any::<i64>(), any::<u32>()),
        bytes(20),
        proptest::collection::vec((bytes(10), bytes(30)), 0..3),
        proptest::collection::vec(any::<u32>(), 0..10),
        proptest::collection::vec(bytes(10), 0..5),
        any::<bool>(),
    )
        .prop_map(
            |(kind, [mode, uid, gid, links], size, mtime, link, xattrs, sums, names, names_cut)| {
                Inspected {
                    kind: Some(kind),
                    mode,
                    uid,
                    gid,
                    size,
                    mtime,
                    links,
                    link,
                    xattrs,
                    sums,
                    names,
                    names_cut,
                }
            },
        );
    (any::<u64>(), proptest::collection::vec(one, 0..4))
        .prop_map(|(id, found)| Frame::Verified { id, found })
}

fn decode(bytes: &[u8]) -> Result<Frame, ProtoError> {
    Frame::decode(bytes, MAX_FRAME).map(|(f, _)| f)
}

#[test]
fn verification_frames_round_trip() {
    for f in [sample_ask(), sample_answer()] {
        let bytes = encoded(&f, Policy::PLAIN);
        assert_eq!(decode(&bytes).unwrap(), f);
    }
}

/// A request for more names or blocks than the caps is refused by the encoder and, made
/// up by hand, by the decoder, naming the field and the cap.
#[test]
fn requests_past_the_caps_are_refused() {
    let ask = |blocks| Ask {
        path: b"f".to_vec(),
        first_block: 0,
        blocks,
        list: false,
    };
    let too_many = Frame::Verify {
        id: 1,
        asks: vec![ask(0); MAX_NAMES + 1],
    };
    let mut out = Vec::new();
    let e = too_many.encode(Policy::PLAIN, &mut out).unwrap_err();
    assert!(
        matches!(e, ProtoError::TooMany { field: "names", .. }),
        "{e}"
    );
    assert!(out.is_empty());
    // Two names whose blocks together pass the cap, written by hand.
    let mut payload = 1u64.to_le_bytes().to_vec();
    payload.extend_from_slice(&2u16.to_le_bytes());
    for _ in 0..2 {
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.push(b'f');
        payload.extend_from_slice(&0u64.to_le_bytes());
        payload.extend_from_slice(&(MAX_BLOCKS / 2 + 1).to_le_bytes());
        payload.push(0);
    }
    let e = decode(&framed(Kind::Verify, &payload)).unwrap_err();
    assert!(
        matches!(
            e,
            ProtoError::TooMany {
                field: "blocks",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&MAX_BLOCKS.to_string()), "{e}");
}

/// An answer that claims more checksums than the cap, or more bytes than it holds, is
/// refused without allocating what it claims.
#[test]
fn answers_with_hostile_counts_are_refused() {
    let bytes = encoded(&sample_answer(), Policy::PLAIN);
    let payload = payload_of(&bytes).to_vec();
    // The first entry's kind byte follows the id and the count: make it unknown.
    let mut bad_kind = payload.clone();
    bad_kind[10] = 9;
    let e = decode(&framed(Kind::Verified, &bad_kind)).unwrap_err();
    assert!(
        matches!(e, ProtoError::BadValue { field: "kind", .. }),
        "{e}"
    );
    // A count of u32::MAX sums where the first entry's sum count stands.
    let mut hostile = 1u64.to_le_bytes().to_vec();
    hostile.extend_from_slice(&1u16.to_le_bytes());
    hostile.push(ObjKind::File as u8);
    hostile.extend_from_slice(&[0; 4 * 3 + 8 + 8 + 4]);
    hostile.extend_from_slice(&1u32.to_le_bytes()); // links
    hostile.extend_from_slice(&0u32.to_le_bytes()); // link
    hostile.extend_from_slice(&0u16.to_le_bytes()); // xattrs
    hostile.extend_from_slice(&u32::MAX.to_le_bytes()); // sums
    let e = decode(&framed(Kind::Verified, &hostile)).unwrap_err();
    assert!(
        matches!(e, ProtoError::TooMany { field: "sums", .. }),
        "{e}"
    );
    for cut in [1, payload.len() / 2, payload.len() - 1] {
        let e = decode(&framed(Kind::Verified, &payload[..cut])).unwrap_err();
        assert!(matches!(e, ProtoError::Truncated { .. }), "{e}");
    }
}
