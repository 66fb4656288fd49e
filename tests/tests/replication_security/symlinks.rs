//! Symlinks in the replica that point outside it, planted by someone on the target or made
//! by the rogue's own ops. Ops through them are well-formed, so the target does not refuse
//! them, but none may reach outside: through a symlinked directory every op must fail
//! (Nak); on a symlink as the last component an op may act on the link itself.

use std::ffi::OsString;

use rill_ops::{FileTimes, Op};

use crate::arena::Arena;
use crate::rogue::{create, event, op_frame, write, Heard, Wire};

#[test]
fn ops_through_symlinks_in_the_replica_never_reach_outside() {
    let arena = Arena::new("symlinks");
    let (replica, sentinel) = (&arena.replica, &arena.sentinel);
    std::os::unix::fs::symlink(sentinel, replica.join("escape-dir")).unwrap();
    std::os::unix::fs::symlink(sentinel.join("secret.txt"), replica.join("escape-file")).unwrap();
    let times = FileTimes {
        atime: (1_000_000_000, 0),
        mtime: (1_000_000_000, 0),
    };
    let xattr = |name: &str| Op::SetXattr {
        name: name.into(),
        value: Some(b"pwned".to_vec()),
    };
    let through: Vec<(Wire, bool)> = vec![
        (
            event(
                "op-link",
                Op::Symlink {
                    target: sentinel.clone().into_os_string(),
                },
            ),
            false,
        ),
        (create("escape-dir/new.txt"), true),
        (event("escape-dir/secret.txt", write(b"PWNED")), true),
        (
            event("escape-dir/secret.txt", Op::Truncate { size: 0 }),
            true,
        ),
        (
            event(
                "escape-dir/secret.txt",
                Op::Fallocate {
                    mode: 0,
                    offset: 0,
                    len: 1 << 20,
                },
            ),
            true,
        ),
        (event("escape-dir/newdir", Op::Mkdir { mode: 0o777 }), true),
        (
            event(
                "escape-dir/fifo",
                Op::Mknod {
                    mode: libc::S_IFIFO | 0o666,
                    rdev: 0,
                },
            ),
            true,
        ),
        (
            event("escape-dir/secret.txt", Op::Chmod { mode: 0o777 }),
            true,
        ),
        (
            event(
                "escape-dir/secret.txt",
                Op::Chown {
                    uid: Some(4242),
                    gid: Some(4242),
                },
            ),
            true,
        ),
        (
            event("escape-dir/secret.txt", Op::Utimes { times: Some(times) }),
            true,
        ),
        (event("escape-dir/secret.txt", xattr("user.pwned")), true),
        (
            event(
                "escape-dir/secret.txt",
                Op::RemoveXattr {
                    name: "user.keep".into(),
                },
            ),
            true,
        ),
        (
            event(
                "escape-dir/secret.txt",
                Op::Rename {
                    new_path: "stolen.txt".into(),
                    flags: 0,
                },
            ),
            true,
        ),
        (
            event(
                "victim.txt",
                Op::Rename {
                    new_path: "escape-dir/victim.txt".into(),
                    flags: 0,
                },
            ),
            true,
        ),
        (
            event(
                "hardlink.txt",
                Op::Link {
                    target: "escape-dir/secret.txt".into(),
                },
            ),
            true,
        ),
        (
            event(
                "escape-dir/link.txt",
                Op::Link {
                    target: "victim.txt".into(),
                },
            ),
            true,
        ),
        (
            event(
                "escape-dir/sym",
                Op::Symlink {
                    target: OsString::from("x"),
                },
            ),
            true,
        ),
        (event("escape-dir/sub/inner.txt", Op::Unlink), true),
        (event("escape-dir/sub", Op::Rmdir), true),
        (create("op-link/new.txt"), true),
        (event("op-link/secret.txt", write(b"PWNED")), true),
        // Relative, escaping by `..` from inside the replica.
        (event("d", Op::Mkdir { mode: 0o755 }), false),
        (
            event(
                "d/up",
                Op::Symlink {
                    target: OsString::from("../../sentinel"),
                },
            ),
            false,
        ),
        (event("d/up/secret.txt", write(b"PWNED")), true),
        (event("d/up/secret.txt", Op::Chmod { mode: 0o777 }), true),
        (create("d/up/new.txt"), true),
        (
            event(
                "d/up-file",
                Op::Symlink {
                    target: OsString::from("../../sentinel/secret.txt"),
                },
            ),
            false,
        ),
        (event("d/up-file", Op::Truncate { size: 0 }), false),
        (event("d/up-file", write(b"PWNED")), false),
        (event("d/up-file", Op::Chmod { mode: 0o777 }), false),
        (event("d/up-file", xattr("user.pwned")), false),
        (event("escape-file", write(b"PWNED")), false),
        (event("escape-file", Op::Truncate { size: 0 }), false),
        (event("escape-file", Op::Chmod { mode: 0o777 }), false),
        (
            event(
                "escape-file",
                Op::Chown {
                    uid: Some(4242),
                    gid: Some(4242),
                },
            ),
            false,
        ),
        (
            event("escape-file", Op::Utimes { times: Some(times) }),
            false,
        ),
        (event("escape-file", xattr("user.pwned")), false),
    ];
    let (mut conn, first) = arena.rogue.session();
    let frames: Vec<u8> = through
        .iter()
        .enumerate()
        .flat_map(|(i, (ev, _))| op_frame(first + i as u64, ev))
        .collect();
    arena.rogue.send(&mut conn, &frames).unwrap();
    let last = first + through.len() as u64 - 1;
    let mut heard = Heard::default();
    arena
        .rogue
        .listen(&mut conn, &mut heard, |h| h.acked >= last);
    arena.check_outside("ops through symlinks in the replica");
    assert!(
        heard.acked >= last && heard.refused.is_none(),
        "the target did not process the well-formed ops through symlinks: {heard:?}\n{}",
        arena.logs()
    );
    let not_naked: Vec<_> = through
        .iter()
        .enumerate()
        .filter(|(i, (_, nak))| *nak && !heard.naks.iter().any(|(s, _)| *s == first + *i as u64))
        .map(|(_, (ev, _))| &ev.what)
        .collect();
    assert!(
        not_naked.is_empty(),
        "ops through a symlinked directory were reported applied (no Nak): {not_naked:#?}\n\
         naks: {:#?}",
        heard.naks
    );
    arena.rogue.close(conn);
    arena.finish();
}
