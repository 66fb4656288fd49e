//! Op body compression: when it is chosen, that it round-trips, and that the decoder
//! cannot be made to allocate or inflate past its cap.

use std::io::Write;
use std::path::Path;

use super::*;

/// An Op frame whose body bytes are `sent` as they are, flagged compressed.
fn compressed_op(sent: &[u8]) -> Vec<u8> {
    let mut p = 5u64.to_le_bytes().to_vec();
    p.push(Stream::Replication as u8);
    p.extend_from_slice(sent);
    raw(VERSION, Kind::Op as u8, FLAG_ZSTD, &p, None)
}

#[test]
fn compressible_bodies_are_sent_compressed_and_come_back_whole() {
    let body = b"the same line again\n".repeat(2000);
    let frame = Frame::Op {
        seq: 1,
        stream: Stream::Mirror,
        body: body.clone().into(),
    };
    let bytes = encoded(&frame, Policy::zstd(3));
    assert_eq!(bytes[7] & FLAG_ZSTD, FLAG_ZSTD);
    assert!(bytes.len() < body.len() / 10, "{} bytes", bytes.len());
    assert_eq!(Frame::decode(&bytes, MAX_FRAME).unwrap().0, frame);
    for level in [-5, 1, 19] {
        assert_eq!(
            Frame::decode(&encoded(&frame, Policy::zstd(level)), MAX_FRAME)
                .unwrap()
                .0,
            frame
        );
    }
}

#[test]
fn bodies_compression_cannot_shrink_are_sent_plain() {
    for body in [noise(5000, 11), Vec::new(), b"ab".to_vec()] {
        let frame = Frame::Op {
            seq: 1,
            stream: Stream::Replication,
            body: body.into(),
        };
        let plain = encoded(&frame, Policy::PLAIN);
        let bytes = encoded(&frame, Policy::zstd(3));
        assert_eq!(bytes, plain, "flag clear, body as it was");
        assert_eq!(bytes[7], 0);
    }
}

#[test]
fn a_zip_bomb_is_refused_before_it_is_inflated() {
    // 32 MiB of zeros squeeze into about a kilobyte; the frame is small, the body is not.
    let bomb = zstd::bulk::compress(&vec![0u8; 32 << 20], 19).unwrap();
    let bytes = compressed_op(&bomb);
    assert!(bytes.len() < 64 * 1024);
    let e = Frame::decode(&bytes, MAX_FRAME).unwrap_err();
    assert!(
        matches!(e, ProtoError::TooLarge { what: "decompressed Op body", len, .. } if len == 32 << 20),
        "{e:?}"
    );
    assert!(e.to_string().contains("exceeds the maximum"), "{e}");

    // The cap is the receiver's maximum less the Op's fixed fields.
    let body = zstd::bulk::compress(&[7u8; 991], 3).unwrap();
    let bytes = compressed_op(&body);
    assert!(Frame::decode(&bytes, 1000).is_ok());
    assert!(matches!(
        Frame::decode(&bytes, 999),
        Err(ProtoError::TooLarge {
            len: 991,
            max: 990,
            ..
        })
    ));
}

#[test]
fn a_compressed_body_must_declare_its_size() {
    // The streaming encoder does not know the size in advance and leaves it out.
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    enc.write_all(&[1u8; 4096]).unwrap();
    let sent = enc.finish().unwrap();
    let e = Frame::decode(&compressed_op(&sent), MAX_FRAME).unwrap_err();
    assert!(matches!(e, ProtoError::Decompress(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("does not declare its decompressed size"),
        "{e}"
    );
}

#[test]
fn a_compressed_body_must_be_exactly_one_zstd_frame() {
    let one = zstd::bulk::compress(&[3u8; 1000], 3).unwrap();
    let two = [one.clone(), one.clone()].concat();
    let e = Frame::decode(&compressed_op(&two), MAX_FRAME).unwrap_err();
    assert!(matches!(e, ProtoError::Decompress(_)), "{e:?}");

    let mut garbage_after = one.clone();
    garbage_after.extend_from_slice(b"tail");
    assert!(matches!(
        Frame::decode(&compressed_op(&garbage_after), MAX_FRAME),
        Err(ProtoError::Decompress(_))
    ));

    let mut damaged = one.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x55;
    assert!(Frame::decode(&compressed_op(&damaged), MAX_FRAME).is_err());

    for not_zstd in [&b""[..], b"\x28\xb5", b"plain bytes, not zstd"] {
        let e = Frame::decode(&compressed_op(not_zstd), MAX_FRAME).unwrap_err();
        assert!(e.to_string().contains("zstd magic"), "{e}");
    }
    // A skippable frame (magic 0x184D2A5?) is not a body either.
    let skippable = [0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0];
    assert!(matches!(
        Frame::decode(&compressed_op(&skippable), MAX_FRAME),
        Err(ProtoError::Decompress(_))
    ));
}

fn on(min_file_size: u64, skip: &str) -> Compression {
    Compression {
        min_file_size,
        skip_ext: parse_ext_list(skip),
        level: 3,
        enabled: true,
    }
}

#[test]
fn wants_files_at_least_the_minimum_size() {
    let c = on(1024, "");
    assert!(!c.wants(Path::new("/d/a.txt"), 0));
    assert!(!c.wants(Path::new("/d/a.txt"), 1023));
    assert!(c.wants(Path::new("/d/a.txt"), 1024));
    assert!(c.wants(Path::new("/d/a.txt"), u64::MAX));
    assert!(on(0, "").wants(Path::new("/d/empty"), 0));
}

#[test]
fn wants_nothing_with_a_skipped_extension_whatever_its_case() {
    let c = on(0, "mp3.zip.JPG");
    for skipped in [
        "/d/a.zip",
        "/d/a.ZIP",
        "/d/a.Zip",
        "/d/b.jpg",
        "/d/b.JPG",
        "/d/c.Mp3",
        "/d/x.tar.zip",
    ] {
        assert!(!c.wants(Path::new(skipped), 1 << 20), "{skipped}");
    }
    for kept in [
        "/d/a.txt",
        "/d/zip",
        "/d/a.zipx",
        "/d/.zip",
        "/d/a.zip/inside",
        "/d/a.tar.gz",
        "/d/a.",
    ] {
        assert!(c.wants(Path::new(kept), 1 << 20), "{kept}");
    }
}

#[test]
fn listed_extensions_may_carry_a_dot_and_other_scripts() {
    let c = Compression {
        skip_ext: vec![".gz".into(), "ÄRC".into()],
        ..on(0, "")
    };
    assert!(!c.wants(Path::new("/a.GZ"), 1));
    assert!(!c.wants(Path::new("/a.ärc"), 1));
    assert!(c.wants(Path::new("/a.arc"), 1));
}

#[test]
fn wants_nothing_when_disabled() {
    let c = Compression {
        enabled: false,
        ..on(0, "")
    };
    assert!(!c.wants(Path::new("/d/a.txt"), 1 << 30));
    assert_eq!(c.policy(Path::new("/d/a.txt"), 1 << 30), Policy::PLAIN);
}

#[test]
fn the_default_is_the_guides_off_with_its_list() {
    let c = Compression::default();
    assert!(!c.enabled);
    assert_eq!(c.min_file_size, 1024);
    assert_eq!(c.skip_ext.len(), 21);
    assert!(c.skip_ext.iter().any(|e| e == "sitx"));
    let c = Compression { enabled: true, ..c };
    assert!(!c.wants(Path::new("/m/song.MP3"), 1 << 20));
    assert_eq!(
        c.policy(Path::new("/m/notes.txt"), 1 << 20),
        Policy::zstd(DEFAULT_LEVEL)
    );
    assert_eq!(c.policy(Path::new("/m/notes.txt"), 10), Policy::PLAIN);
}

#[test]
fn ext_lists_ignore_empty_entries() {
    assert_eq!(parse_ext_list(".mp3..zip. "), vec!["mp3", "zip"]);
    assert!(parse_ext_list("").is_empty());
}
