//! Round trips, alignment and rejection of bad input for the record format.
use rill_abi::record::{records, FLAG_RANGE_ONLY};
use rill_abi::{
    align_up, join_path, DecodeError, Kind, PathError, Record, RecordHeader, Section, ABI_VERSION,
    ABI_VERSION_MAX, HEADER_SIZE, RECORD_ALIGN,
};

fn leaf_first(components: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for c in components.iter().rev() {
        v.push(c.len() as u8);
        v.extend_from_slice(c.as_bytes());
    }
    v
}

fn sample(kind: Kind) -> (RecordHeader, [Vec<u8>; 6]) {
    let mut h = RecordHeader {
        kind: kind as u8,
        flags: 0,
        ktime_ns: 123_456_789,
        pid: 42,
        tid: 43,
        dev: 0x800001,
        ino: 77,
        args: [1, 2, 3, 4],
        ..Default::default()
    };
    let base = leaf_first(&["tmp", "w"]);
    let mut s: [Vec<u8>; 6] = Default::default();
    s[Section::PathBase as usize] = base.clone();
    s[Section::PathName as usize] = b"a/b.txt".to_vec();
    match kind {
        Kind::Rename | Kind::Link => {
            s[Section::Path2Base as usize] = base;
            s[Section::Path2Name as usize] = b"c.txt".to_vec();
        }
        Kind::Symlink => s[Section::Name as usize] = b"../target".to_vec(),
        Kind::SetXattr | Kind::RemoveXattr => s[Section::Name as usize] = b"user.k".to_vec(),
        Kind::Write => {
            h.args[1] = 5;
            s[Section::Data as usize] = b"hello".to_vec();
        }
        _ => {}
    }
    (h, s)
}

fn encode(h: &RecordHeader, s: &[Vec<u8>; 6]) -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    let n = Record::encode(h, [&s[0], &s[1], &s[2], &s[3], &s[4], &s[5]], &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn every_kind_round_trips() {
    for kind in Kind::ALL {
        let (h, s) = sample(kind);
        let bytes = encode(&h, &s);
        let (r, used) = Record::decode(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(r.kind, kind);
        assert_eq!(Kind::from_u8(kind as u8), Some(kind));
        assert_eq!(r.header.pid, 42);
        assert_eq!(r.header.args, h.args);
        assert_eq!(r.header.version, ABI_VERSION);
        for (i, sec) in [
            Section::PathBase,
            Section::PathName,
            Section::Path2Base,
            Section::Path2Name,
            Section::Name,
            Section::Data,
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(r.section(sec), &s[i][..], "{kind:?} {sec:?}");
        }
    }
}

#[test]
fn header_is_aligned_and_streams_are_self_delimiting() {
    assert!(HEADER_SIZE.is_multiple_of(RECORD_ALIGN));
    let mut stream = Vec::new();
    for kind in Kind::ALL {
        let (h, s) = sample(kind);
        let bytes = encode(&h, &s);
        stream.extend_from_slice(&bytes);
        stream.resize(align_up(stream.len()), 0);
    }
    let kinds: Vec<Kind> = records(&stream).map(|r| r.unwrap().kind).collect();
    assert_eq!(kinds, Kind::ALL.to_vec());
}

#[test]
fn truncated_input_is_an_error_at_every_length() {
    let (h, s) = sample(Kind::Rename);
    let bytes = encode(&h, &s);
    for cut in 0..bytes.len() {
        match Record::decode(&bytes[..cut]) {
            Err(DecodeError::Truncated { available, .. }) => assert_eq!(available, cut),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn corrupt_headers_are_rejected() {
    let (h, s) = sample(Kind::Write);
    let good = encode(&h, &s);

    for v in [0, ABI_VERSION_MAX + 1] {
        let mut bad = good.clone();
        bad[4] = v;
        assert_eq!(Record::decode(&bad), Err(DecodeError::BadVersion(v)));
    }

    let mut bad = good.clone();
    bad[5] = 0;
    assert_eq!(Record::decode(&bad), Err(DecodeError::BadKind(0)));
    bad[5] = 200;
    assert_eq!(Record::decode(&bad), Err(DecodeError::BadKind(200)));

    let mut bad = good.clone();
    bad[0] = bad[0].wrapping_add(1);
    assert!(matches!(
        Record::decode(&bad),
        Err(DecodeError::BadLength { .. })
    ));

    // Data longer than the write's length.
    let mut h2 = h;
    h2.args[1] = 2;
    let bad = encode(&h2, &s);
    assert_eq!(
        Record::decode(&bad),
        Err(DecodeError::BadSection(Section::Data))
    );

    // Data on a kind that carries none.
    let mut h3 = h;
    h3.kind = Kind::Chmod as u8;
    let bad = encode(&h3, &s);
    assert_eq!(
        Record::decode(&bad),
        Err(DecodeError::BadSection(Section::Data))
    );
}

#[test]
fn random_bytes_never_panic() {
    // A small deterministic generator: the point is breadth, not cryptographic quality.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let (h, s) = sample(Kind::Write);
    let good = encode(&h, &s);
    for _ in 0..20_000 {
        let mut b = good.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % b.len();
            b[i] = (x >> 32) as u8;
        }
        let cut = (x >> 40) as usize % (b.len() + 1);
        if let Ok((r, _)) = Record::decode(&b[..cut]) {
            let mut out = [0u8; 8192];
            let _ = join_path(
                r.section(Section::PathBase),
                r.section(Section::PathName),
                &mut out,
            );
        }
    }
}

#[test]
fn range_only_write_has_no_data() {
    let (mut h, mut s) = sample(Kind::Write);
    h.flags = FLAG_RANGE_ONLY;
    h.args = [4096, 1 << 20, 0, 0];
    s[Section::Data as usize].clear();
    let bytes = encode(&h, &s);
    let (r, _) = Record::decode(&bytes).unwrap();
    assert_eq!(r.flags(), FLAG_RANGE_ONLY);
    assert!(r.section(Section::Data).is_empty());
    assert_eq!(r.arg(1), 1 << 20);
}

fn joined(base: &[&str], name: &str) -> String {
    let mut out = [0u8; 4096];
    let n = join_path(&leaf_first(base), name.as_bytes(), &mut out).unwrap();
    String::from_utf8(out[..n].to_vec()).unwrap()
}

#[test]
fn paths_join_leaf_first_components() {
    assert_eq!(joined(&[], ""), "/");
    assert_eq!(joined(&["tmp", "w", "f"], ""), "/tmp/w/f");
    assert_eq!(joined(&["tmp", "w"], "a/b"), "/tmp/w/a/b");
    assert_eq!(joined(&[], "/etc/passwd"), "/etc/passwd");
    assert_eq!(joined(&["tmp", "w"], "./x//y/"), "/tmp/w/x/y");
    assert_eq!(joined(&["tmp", "w"], "../v/z"), "/tmp/v/z");
    assert_eq!(joined(&["tmp"], "../../../.."), "/");
}

#[test]
fn corrupt_or_oversized_paths_are_errors() {
    let mut out = [0u8; 16];
    assert_eq!(
        join_path(&[5, b'a'], b"", &mut out),
        Err(PathError::Corrupt)
    );
    assert_eq!(join_path(&[0], b"", &mut out), Err(PathError::Corrupt));
    assert_eq!(
        join_path(&[3, b'a', b'/', b'b'], b"", &mut out),
        Err(PathError::Corrupt)
    );
    assert_eq!(
        join_path(&leaf_first(&["aaaaaaaaaa", "bbbbbbbbbb"]), b"", &mut out),
        Err(PathError::TooLong)
    );
}

#[test]
fn device_numbers_convert_both_ways() {
    use rill_abi::maps::{kernel_dev_to_user, user_dev_to_kernel};
    // 8:1 (sda1): kernel (8 << 20) | 1, userspace makedev(8, 1) = 0x801.
    assert_eq!(kernel_dev_to_user((8 << 20) | 1), 0x801);
    assert_eq!(user_dev_to_kernel(0x801), (8 << 20) | 1);
    for kdev in [0u64, 1, (259 << 20) | 3, (0xfff << 20) | 0xfffff] {
        assert_eq!(user_dev_to_kernel(kernel_dev_to_user(kdev)), kdev);
    }
}

#[test]
fn every_captured_syscall_has_exactly_one_handler() {
    use rill_abi::syscalls::FAMILIES;
    let mut seen = std::collections::HashSet::new();
    for (program, nrs) in FAMILIES {
        assert!(
            program.starts_with("rill_") && program.len() <= 15,
            "{program}: kernel program names are at most 15 bytes"
        );
        for nr in *nrs {
            assert!(*nr < 512, "{nr} is beyond the dispatcher's table");
            assert!(seen.insert(*nr), "syscall {nr} is listed twice");
        }
    }
    // DESIGN step 1's syscall families, and the calls that move bytes into a file inside
    // the kernel (sendfile, splice, copy_file_range), the reflink ioctls, and the calls after
    // which data changes beneath the syscalls (mmap, io_submit).
    assert_eq!(seen.len(), 52);
}

#[test]
fn only_a_version_2_prune_carries_name_rules_and_they_are_bounded() {
    let rules = vec![rill_abi::record::PRUNE_MATCH_ALL | 1];
    let mut s: [Vec<u8>; 6] = Default::default();
    s[Section::PathName as usize] = b"d".to_vec();
    s[Section::Name as usize] = rules.clone();
    s[Section::Data as usize] = b"\0".to_vec();
    let h = RecordHeader {
        kind: Kind::Prune as u8,
        ..RecordHeader::default()
    };
    let v1 = encode(&h, &s);
    assert_eq!(v1[4], ABI_VERSION, "a writer that asks for nothing newer");
    assert_eq!(
        Record::decode(&v1),
        Err(DecodeError::BadSection(Section::Name))
    );
    let h2 = RecordHeader { version: 2, ..h };
    let v2 = encode(&h2, &s);
    assert_eq!(v2[4], 2);
    assert_eq!(
        Record::decode(&v2).unwrap().0.section(Section::Name),
        &rules
    );
    let huge = vec![1u8; rill_abi::record::PRUNE_RULES_DATA_MAX as usize + 1];
    let mut out = vec![0u8; huge.len() + 4096];
    let secs: [&[u8]; 6] = [&[], b"d", &[], &[], &huge, b"\0"];
    let n = Record::encode(&h2, secs, &mut out).unwrap();
    assert_eq!(
        Record::decode(&out[..n]),
        Err(DecodeError::BadSection(Section::Name))
    );
}
