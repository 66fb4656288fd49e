//! The target's answer to a verification request: what the replica holds under each name
//! asked, read by the session's applier where the request stands in the stream.
//!
//! # Invariants
//!
//! An answer always fits a frame: entries are added while their encoded size stays
//! within [`ANSWER_BUDGET`], and the source asks again for the names left out. One entry
//! alone always fits (its listing, attributes and checksums are capped in
//! `net::proto::verify`), so every answer holds at least one.

use super::Replica;
use crate::net::proto::verify::{encoded_len, Ask, Inspected};
use crate::net::proto::MAX_FRAME;

/// Bytes an answer's entries may take: the frame's cap, less room for its header and id.
const ANSWER_BUDGET: usize = MAX_FRAME as usize - 64 * 1024;

/// What `replica` holds under the names of `asks`, in order, as many as fit a frame. A
/// name that cannot be read is answered as an empty entry, which the source takes for a
/// difference and looks at again before it reports one.
pub(super) fn answer(replica: &dyn Replica, asks: &[Ask], job: &str) -> Vec<Inspected> {
    answer_within(replica, asks, job, ANSWER_BUDGET)
}

/// [`answer`] within `budget` bytes of entries.
fn answer_within(replica: &dyn Replica, asks: &[Ask], job: &str, budget: usize) -> Vec<Inspected> {
    let mut found = Vec::with_capacity(asks.len());
    let mut used = 0;
    for a in asks {
        let f = replica.inspect(a).unwrap_or_else(|e| {
            log::warn!(
                "job {job}: verifying {:?}: {e}",
                String::from_utf8_lossy(&a.path)
            );
            Inspected::default()
        });
        used += encoded_len(&f);
        if used > budget && !found.is_empty() {
            break;
        }
        found.push(f);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::proto::verify::ObjKind;
    use crate::replica::apply::{Applier, ApplyOptions};

    fn ask(path: &str) -> Ask {
        Ask {
            path: path.as_bytes().to_vec(),
            first_block: 0,
            blocks: 4,
            list: true,
        }
    }

    /// Every name is answered in order while the budget allows, and at least the first
    /// whatever its size; a name outside the replica is answered as missing.
    #[test]
    fn an_answer_holds_what_fits_and_at_least_one_entry() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        for i in 0..50 {
            std::fs::write(d.path().join(format!("dir/a-long-name-{i:04}")), b"x").unwrap();
        }
        std::fs::write(d.path().join("f"), vec![7u8; 100_000]).unwrap();
        let replica = Applier::new(d.path(), ApplyOptions::default()).unwrap();
        let asks = [ask("f"), ask("dir"), ask("gone"), ask("../escape")];
        let all = answer(&replica, &asks, "job");
        let kinds: Vec<ObjKind> = all.iter().map(Inspected::kind).collect();
        assert_eq!(
            kinds,
            [
                ObjKind::File,
                ObjKind::Dir,
                ObjKind::Missing,
                ObjKind::Missing
            ]
        );
        assert_eq!(all[0].sums.len(), 2, "100,000 bytes are two blocks");
        assert_eq!(all[1].names.len(), 50);
        let one = answer_within(&replica, &asks[1..], "job", 10);
        assert_eq!(one.len(), 1, "the first entry goes in even past the budget");
        let two = answer_within(&replica, &asks, "job", encoded_len(&all[0]) + 1);
        assert_eq!(two.len(), 1);
    }
}
