//! What differs between the source's reading of a name and the replica's.
//!
//! Only what replication keeps equal is compared: a directory's and a symlink's times are
//! not (the replica's directories take the time of each name made in them, and symlink
//! times are not replicated), owner and mode not with `DisableAttributeReplication`,
//! extended attributes only with `ExtendedAttributes`.

use std::fmt::Write as _;

use crate::net::proto::verify::{Inspected, ObjKind};

/// Which attributes replication keeps equal under the job's settings.
#[derive(Clone, Copy, Debug)]
pub struct Compared {
    pub owner_and_mode: bool,
    pub xattrs: bool,
}

/// What differs, one short phrase each (`mode 644 (replica 600)`); empty when nothing
/// does. A name the replica lacks is `missing on the replica`.
pub fn differences(src: &Inspected, rep: &Inspected, what: Compared) -> Vec<String> {
    let mut out = Vec::new();
    if rep.kind() == ObjKind::Missing {
        out.push("missing on the replica".to_string());
        return out;
    }
    if src.kind() != rep.kind() {
        out.push(format!("type {:?} (replica {:?})", src.kind(), rep.kind()));
        return out;
    }
    let symlink = src.kind() == ObjKind::Symlink;
    if what.owner_and_mode && !symlink {
        if src.mode != rep.mode {
            out.push(format!("mode {:o} (replica {:o})", src.mode, rep.mode));
        }
        if (src.uid, src.gid) != (rep.uid, rep.gid) {
            out.push(format!(
                "owner {}:{} (replica {}:{})",
                src.uid, src.gid, rep.uid, rep.gid
            ));
        }
    }
    if what.xattrs && !symlink && src.xattrs != rep.xattrs {
        out.push(format!("extended attributes {}", xattr_names(src, rep)));
    }
    match src.kind() {
        ObjKind::File => file(src, rep, &mut out),
        ObjKind::Symlink if src.link != rep.link => out.push(format!(
            "symlink target {:?} (replica {:?})",
            String::from_utf8_lossy(&src.link),
            String::from_utf8_lossy(&rep.link)
        )),
        _ => {}
    }
    out
}

fn file(src: &Inspected, rep: &Inspected, out: &mut Vec<String>) {
    if src.size != rep.size {
        out.push(format!("size {} (replica {})", src.size, rep.size));
    }
    if src.mtime != rep.mtime {
        out.push(format!(
            "mtime {}.{:09} (replica {}.{:09})",
            src.mtime.0, src.mtime.1, rep.mtime.0, rep.mtime.1
        ));
    }
    if let Some(b) = src.sums.iter().zip(&rep.sums).position(|(a, b)| a != b) {
        out.push(format!("data (block {b} of those checked)"));
    } else if src.sums.len() != rep.sums.len() && src.size == rep.size {
        out.push("data (length read)".to_string());
    }
}

/// The names of the attributes that differ, e.g. `user.a, user.b`.
fn xattr_names(src: &Inspected, rep: &Inspected) -> String {
    let mut names: Vec<&[u8]> = src
        .xattrs
        .iter()
        .filter(|x| !rep.xattrs.contains(x))
        .chain(rep.xattrs.iter().filter(|x| !src.xattrs.contains(x)))
        .map(|(n, _)| n.as_slice())
        .collect();
    names.sort();
    names.dedup();
    let mut s = String::new();
    for (i, n) in names.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(s, "{sep}{}", String::from_utf8_lossy(n));
    }
    s
}

/// The names a directory's replica holds that its source does not (both lists sorted);
/// none when either listing was cut (a name past the cut would look extra).
pub fn extra_names<'a>(src: &Inspected, rep: &'a Inspected) -> Vec<&'a [u8]> {
    let cut = src.names_cut || rep.names_cut;
    if cut || src.kind() != ObjKind::Dir || rep.kind() != ObjKind::Dir {
        return Vec::new();
    }
    rep.names
        .iter()
        .filter(|n| src.names.binary_search(n).is_err())
        .map(Vec::as_slice)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, sums: Vec<u32>) -> Inspected {
        Inspected {
            kind: Some(ObjKind::File),
            mode: 0o644,
            size,
            mtime: (5, 6),
            sums,
            ..Inspected::default()
        }
    }

    const ALL: Compared = Compared {
        owner_and_mode: true,
        xattrs: true,
    };

    #[test]
    fn each_kind_of_difference_is_named() {
        let a = file(3, vec![1]);
        assert!(differences(&a, &a, ALL).is_empty());
        let mut b = a.clone();
        b.sums = vec![2];
        assert_eq!(
            differences(&a, &b, ALL),
            ["data (block 0 of those checked)"]
        );
        b = a.clone();
        b.mode = 0o600;
        assert_eq!(differences(&a, &b, ALL), ["mode 644 (replica 600)"]);
        assert!(differences(
            &a,
            &b,
            Compared {
                owner_and_mode: false,
                xattrs: true
            }
        )
        .is_empty());
        b = a.clone();
        b.uid = 7;
        assert_eq!(differences(&a, &b, ALL), ["owner 0:0 (replica 7:0)"]);
        b = a.clone();
        b.xattrs = vec![(b"user.x".to_vec(), b"1".to_vec())];
        assert_eq!(differences(&a, &b, ALL), ["extended attributes user.x"]);
        b = Inspected {
            kind: Some(ObjKind::Missing),
            ..Inspected::default()
        };
        assert_eq!(differences(&a, &b, ALL), ["missing on the replica"]);
    }

    #[test]
    fn extra_names_are_those_only_the_replica_lists() {
        let dir = |names: &[&str], cut| Inspected {
            kind: Some(ObjKind::Dir),
            names: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
            names_cut: cut,
            ..Inspected::default()
        };
        let src = dir(&["a", "c"], false);
        assert_eq!(
            extra_names(&src, &dir(&["a", "b", "c", "d"], false)),
            [b"b".as_slice(), b"d"]
        );
        assert!(extra_names(&src, &dir(&["a", "b"], true)).is_empty());
    }
}
