//! Hostile and malformed input from the trusted rogue, each sent on a connection of its
//! own: the target answers `Refused` with the code `proto::refuse` defines, logs event 4071
//! naming what it refused, applies nothing of it, and goes on serving the legitimate job
//! (checked after every attack).

use std::ffi::OsString;
use std::time::Duration;

use rill_abi::{Record, RecordHeader, SECTION_COUNT};
use rill_engine::net::proto::{refuse, Frame, Header, Kind, HEADER_LEN, MAX_FRAME, VERSION};
use rill_ops::Op;
use rill_tools::pair::wait_until;

use crate::arena::Arena;
use crate::events_with;
use crate::rogue::{
    create, encode, event, garbage, op_frame, op_frame_raw, write, Heard, Wire, ROGUE_JOB,
};

/// One malformed or hostile input, sent on a fresh connection.
struct Attack {
    name: &'static str,
    /// Sent in place of the hello (the connection has no session yet).
    before_hello: bool,
    /// The bytes, given the first sequence number the target will apply.
    bytes: Box<dyn Fn(u64) -> Vec<u8>>,
    /// Text the refusal and the 4071 event must contain.
    needle: String,
    /// The `Refused` code `proto::refuse` defines for it.
    code: u32,
    /// Names the attack must not have created in the rogue's replica either.
    absent: Vec<&'static str>,
}

impl Attack {
    /// An op whose name (or second name) leads outside the target path.
    fn escape(name: &'static str, op: Wire, needle: &str) -> Attack {
        Attack {
            name,
            before_hello: false,
            bytes: Box::new(move |seq| op_frame(seq, &op)),
            needle: needle.to_string(),
            code: refuse::TARGET_PATH,
            absent: vec![],
        }
    }

    /// A hello asking for a target path the target must not accept.
    fn hello(name: &'static str, target_path: String, needle: &str) -> Attack {
        Attack {
            name,
            before_hello: true,
            bytes: Box::new(move |_| {
                encode(&Frame::Hello {
                    version: VERSION,
                    host: "rogue".into(),
                    job: ROGUE_JOB.into(),
                    target_path: target_path.clone(),
                    mirror: false,
                    acked: 0,
                })
            }),
            needle: needle.to_string(),
            code: refuse::TARGET_PATH,
            absent: vec![],
        }
    }

    /// Bytes that break the framing or the record format.
    fn protocol(name: &'static str, bytes: Box<dyn Fn(u64) -> Vec<u8>>, needle: &str) -> Attack {
        Attack {
            name,
            before_hello: false,
            bytes,
            needle: needle.to_string(),
            code: refuse::PROTOCOL,
            absent: vec![],
        }
    }
}

#[test]
fn names_that_escape_the_target_path_are_refused() {
    let mut arena = Arena::new("escapes");
    let s = arena.sentinel.display().to_string();
    let a = arena.area().display().to_string();
    let attacks = vec![
        Attack::escape("create ../outside", create("../outside"), "../outside"),
        Attack::escape(
            "write a/../../x",
            event("a/../../x", write(b"PWNED")),
            "a/../../x",
        ),
        Attack::escape(
            "write ../sentinel/secret.txt",
            event("../sentinel/secret.txt", write(b"PWNED")),
            "../sentinel/secret.txt",
        ),
        Attack::escape(
            "create an absolute name",
            create(format!("{s}/abs-escape")),
            "abs-escape",
        ),
        Attack::escape(
            "truncate an absolute name",
            event(format!("{s}/secret.txt"), Op::Truncate { size: 0 }),
            &format!("{s}/secret.txt"),
        ),
        Attack::escape(
            "rename to ../escaped",
            event(
                "victim.txt",
                Op::Rename {
                    new_path: "../escaped".into(),
                    flags: 0,
                },
            ),
            "../escaped",
        ),
        Attack::escape(
            "rename to an absolute name",
            event(
                "victim.txt",
                Op::Rename {
                    new_path: format!("{a}/escaped-abs").into(),
                    flags: 0,
                },
            ),
            "escaped-abs",
        ),
        Attack::escape(
            "rename from ../sentinel",
            event(
                "../sentinel/secret.txt",
                Op::Rename {
                    new_path: "stolen.txt".into(),
                    flags: 0,
                },
            ),
            "../sentinel/secret.txt",
        ),
        Attack::escape(
            "hard link to ../sentinel/secret.txt",
            event(
                "hardlink.txt",
                Op::Link {
                    target: "../sentinel/secret.txt".into(),
                },
            ),
            "../sentinel/secret.txt",
        ),
        Attack::escape(
            "hard link to an absolute name",
            event(
                "hardlink.txt",
                Op::Link {
                    target: format!("{s}/secret.txt").into(),
                },
            ),
            &format!("{s}/secret.txt"),
        ),
        Attack::escape(
            "hard link named ../",
            event(
                "../sentinel/link.txt",
                Op::Link {
                    target: "victim.txt".into(),
                },
            ),
            "../sentinel/link.txt",
        ),
        Attack::escape(
            "symlink named ../",
            event(
                "../evil-symlink",
                Op::Symlink {
                    target: OsString::from("x"),
                },
            ),
            "../evil-symlink",
        ),
        Attack::escape(
            "mkdir ./..",
            event("./..", Op::Mkdir { mode: 0o777 }),
            "./..",
        ),
        Attack::hello(
            "hello with a relative target path",
            "relative/replica".into(),
            "relative/replica",
        ),
        Attack::hello(
            "hello with `..` in the target path",
            format!("{a}/replica/../sentinel"),
            "replica/../sentinel",
        ),
    ];
    refuse_each(&mut arena, &attacks);
    arena.finish();
}

#[test]
fn malformed_and_out_of_order_frames_are_refused() {
    let mut arena = Arena::new("malformed");
    // A valid create of `name`, then broken by `f`.
    let valid_then = |name: &'static str, f: fn(&mut Vec<u8>)| -> Box<dyn Fn(u64) -> Vec<u8>> {
        Box::new(move |seq| {
            let mut b = op_frame(seq, &create(name));
            f(&mut b);
            b
        })
    };
    let mut attacks = vec![
        Attack::protocol(
            "a record with a base path section",
            Box::new(|seq| {
                // Raw record bytes: a peer's record carries names only, never a base.
                let sections: [&[u8]; SECTION_COUNT] = [b"etc", b"passwd", b"", b"", b"", b""];
                let header = RecordHeader {
                    kind: rill_abi::Kind::Create as u8,
                    args: [0o644, 0, 0, 0],
                    ..Default::default()
                };
                let mut body = vec![0u8; rill_abi::HEADER_SIZE + 9];
                Record::encode(&header, sections, &mut body).unwrap();
                op_frame_raw(seq, &body)
            }),
            "PathBase",
        ),
        Attack::protocol(
            "a frame longer than MAX_FRAME",
            Box::new(|_| {
                let header = Header {
                    version: VERSION,
                    kind: Kind::Op,
                    flags: 0,
                    len: MAX_FRAME + 1,
                    crc: 0,
                };
                header.to_bytes().to_vec()
            }),
            "exceeds the maximum",
        ),
        Attack::protocol(
            "bad magic",
            valid_then("magic.txt", |b| b[..4].copy_from_slice(b"RILX")),
            "bad frame magic",
        ),
        Attack::protocol(
            "crc mismatch",
            valid_then("crc.txt", |b| b[12] ^= 0x5a),
            "crc32c mismatch",
        ),
        Attack::protocol("garbage", Box::new(|_| garbage(200, 7)), "bad frame magic"),
        Attack::protocol(
            "a frame of garbage after a valid header",
            Box::new(|seq| {
                let mut b = op_frame(seq, &create("garbage.txt"));
                let mut payload = garbage(b.len() - HEADER_LEN, 11);
                // The stream byte (after the u64 sequence): neither 0 nor 1.
                payload[8] = 0xee;
                b[HEADER_LEN..].copy_from_slice(&payload);
                let crc = crc32c::crc32c(&payload);
                b[12..16].copy_from_slice(&crc.to_le_bytes());
                b
            }),
            "`stream`",
        ),
        Attack::protocol(
            "a valid frame whose op body is garbage",
            Box::new(|seq| op_frame_raw(seq, &garbage(300, 13))),
            "corrupt operation record",
        ),
        Attack {
            name: "sequence number lower than the previous one",
            before_hello: false,
            bytes: Box::new(|seq| {
                [
                    op_frame(seq + 1, &create("ooo-later.txt")),
                    op_frame(seq, &create("ooo-earlier.txt")),
                ]
                .concat()
            }),
            needle: "out of order".into(),
            code: refuse::OUT_OF_ORDER,
            absent: vec!["ooo-earlier.txt"],
        },
        Attack {
            name: "garbage instead of a hello",
            before_hello: true,
            bytes: Box::new(|_| b"GET / HTTP/1.1\r\nHost: rill\r\n\r\n".to_vec()),
            needle: "bad frame magic".into(),
            code: refuse::PROTOCOL,
            absent: vec![],
        },
    ];
    for attack in &mut attacks {
        attack
            .absent
            .extend(["magic.txt", "crc.txt", "garbage.txt"]);
    }
    refuse_each(&mut arena, &attacks);
    // What the refused out-of-order pair did apply: the op before the bad one.
    assert!(arena.replica.join("ooo-later.txt").exists());
    arena.finish();
}

/// Sends each attack on a connection of its own and checks the refusal, the event, the
/// replica and the legitimate job after it. Wrong refusal codes are collected, so one run
/// names them all.
fn refuse_each(arena: &mut Arena, attacks: &[Attack]) {
    let refusals = |log: &str| events_with(log, 4071, "Refusing rogue ");
    let mut wrong_codes = Vec::new();
    for attack in attacks {
        let before = refusals(&arena.hosts.target.event_log()).len();
        let (mut conn, first) = if attack.before_hello {
            (arena.rogue.connect(), 1)
        } else {
            arena.rogue.session()
        };
        let sent = arena.rogue.send(&mut conn, &(attack.bytes)(first));
        let mut heard = Heard::default();
        arena.rogue.listen(&mut conn, &mut heard, |_| false);
        let Some((code, message)) = heard.refused.clone() else {
            panic!(
                "{}: the target did not answer Refused (sending: {sent:?}): {heard:?}\n{}",
                attack.name,
                arena.logs()
            );
        };
        assert!(
            message.contains(&attack.needle),
            "{}: the refusal {message:?} does not name {:?}",
            attack.name,
            attack.needle
        );
        if code != attack.code {
            wrong_codes.push(format!(
                "{}: Refused code {code}, proto::refuse says {} ({message})",
                attack.name, attack.code
            ));
        }
        let logged = wait_until(Duration::from_secs(10), || {
            Ok(refusals(&arena.hosts.target.event_log())
                .iter()
                .skip(before)
                .any(|l| l.contains(&attack.needle)))
        })
        .unwrap();
        if !logged {
            panic!(
                "{}: no new event 4071 naming {:?}\n{}",
                attack.name,
                attack.needle,
                arena.logs()
            );
        }
        arena.check_outside(attack.name);
        for name in &attack.absent {
            assert!(
                !arena.replica.join(name).exists(),
                "{}: {name} was applied from a refused frame",
                attack.name
            );
        }
        arena.checkpoint(attack.name);
    }
    assert!(
        wrong_codes.is_empty(),
        "the target refused with codes other than proto::refuse defines:\n{}",
        wrong_codes.join("\n")
    );
}
