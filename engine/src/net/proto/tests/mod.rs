//! Unit tests of the wire protocol, with the strategies and frame builders they share.

mod compression;
mod errors;
mod frames;
mod io;
mod kinds;
mod seeds;
mod seq;
mod verify;

use proptest::prelude::*;

use super::*;

/// Bytes of a frame with the given header fields and payload, the crc computed unless
/// `crc` overrides it: for building frames the encoder would never write.
pub(super) fn raw(version: u16, kind: u8, flags: u8, payload: &[u8], crc: Option<u32>) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + payload.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&[kind, flags]);
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(&crc.unwrap_or_else(|| crc32c::crc32c(payload)).to_le_bytes());
    b.extend_from_slice(payload);
    b
}

/// A well-formed frame of `kind` around `payload`.
pub(super) fn framed(kind: Kind, payload: &[u8]) -> Vec<u8> {
    raw(VERSION, kind as u8, 0, payload, None)
}

pub(super) fn encoded(frame: &Frame, policy: Policy) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(policy, &mut out).unwrap();
    out
}

/// The payload part of an encoded frame.
pub(super) fn payload_of(bytes: &[u8]) -> &[u8] {
    &bytes[HEADER_LEN..]
}

/// Deterministic bytes that zstd cannot shrink.
pub(super) fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// One example of every kind, with bodies both compressible and not.
pub(super) fn samples() -> Vec<Frame> {
    vec![
        Frame::Hello {
            version: VERSION,
            host: "source.example".into(),
            job: "payroll".into(),
            target_path: "/srv/replica/payroll".into(),
            mirror: true,
            acked: 7,
        },
        Frame::Welcome {
            host: "target.example".into(),
            last_applied: 41,
        },
        Frame::refused(
            refuse::UNKNOWN_JOB,
            "no job named \"payroll\" on this target",
        ),
        Frame::Op {
            seq: 42,
            stream: Stream::Replication,
            body: b"abc".repeat(100).into(),
        },
        Frame::Op {
            seq: 43,
            stream: Stream::Mirror,
            body: noise(200, 7).into(),
        },
        Frame::Op {
            seq: 44,
            stream: Stream::Replication,
            body: Default::default(),
        },
        Frame::Marker {
            seq: 45,
            marker: Marker::MirrorStarted,
        },
        Frame::Marker {
            seq: 46,
            marker: Marker::MirrorComplete,
        },
        Frame::Ack { seq: 46 },
        Frame::nak(43, 13, "permission denied: /srv/replica/payroll/ledger.db"),
        Frame::KeepAlive,
        Frame::Pause,
        Frame::Resume,
        Frame::TargetStats {
            ops_received: 1,
            ops_remaining: 2,
            retries: 3,
            ops_dropped: 4,
            bytes_in_queue: 5,
            bytes_in_disk_queue: u64::MAX,
            data_state: 2,
        },
        verify::sample_ask(),
        verify::sample_answer(),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{0,24}",
        1 => (0..=max).prop_map(|n| "é".repeat(n / 2)),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        (any::<u8>(), 0usize..5000).prop_map(|(b, n)| vec![b; n]),
        (0usize..3000, any::<u64>()).prop_map(|(n, s)| noise(n, s | 1)),
    ]
}

pub(super) fn frame() -> impl Strategy<Value = Frame> {
    let stream = prop_oneof![Just(Stream::Replication), Just(Stream::Mirror)];
    let marker = prop_oneof![Just(Marker::MirrorStarted), Just(Marker::MirrorComplete)];
    prop_oneof![
        (
            any::<u16>(),
            text(MAX_STRING),
            text(MAX_STRING),
            text(MAX_PATH),
            any::<bool>(),
            any::<u64>()
        )
            .prop_map(
                |(version, host, job, target_path, mirror, acked)| Frame::Hello {
                    version,
                    host,
                    job,
                    target_path,
                    mirror,
                    acked
                }
            ),
        (text(MAX_STRING), any::<u64>())
            .prop_map(|(host, last_applied)| Frame::Welcome { host, last_applied }),
        (any::<u32>(), text(MAX_STRING))
            .prop_map(|(code, message)| Frame::Refused { code, message }),
        (any::<u64>(), stream, body()).prop_map(|(seq, stream, body)| Frame::Op {
            seq,
            stream,
            body: body.into()
        }),
        (any::<u64>(), marker).prop_map(|(seq, marker)| Frame::Marker { seq, marker }),
        any::<u64>().prop_map(|seq| Frame::Ack { seq }),
        (any::<u64>(), any::<u32>(), text(MAX_STRING))
            .prop_map(|(seq, code, message)| Frame::Nak { seq, code, message }),
        Just(Frame::KeepAlive),
        Just(Frame::Pause),
        Just(Frame::Resume),
        (any::<[u64; 6]>(), any::<u8>()).prop_map(|(v, data_state)| Frame::TargetStats {
            ops_received: v[0],
            ops_remaining: v[1],
            retries: v[2],
            ops_dropped: v[3],
            bytes_in_queue: v[4],
            bytes_in_disk_queue: v[5],
            data_state,
        }),
        verify::asks(),
        verify::answers(),
    ]
}
