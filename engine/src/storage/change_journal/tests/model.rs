//! Model-based property test: random sequences of marks, subtree marks, renames, removes,
//! completes and reopens, checked after every step against a deliberately different
//! in-memory model of the merge rules.

use super::*;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use proptest::prelude::*;

use super::super::keys::path_of;

const MODEL_MAX_RANGES: usize = 4;

/// A deliberately different representation: dirty bytes as a set, coverage by
/// `Path::starts_with`, a linear scan for everything.
#[derive(Clone, Debug)]
struct MEntry {
    subtree: bool,
    whole: bool,
    bytes: BTreeSet<u64>,
    reasons: u32,
    first: u64,
    last: u64,
    count: u64,
    touched: u64,
}

impl MEntry {
    fn new(subtree: bool) -> MEntry {
        MEntry {
            subtree,
            whole: subtree,
            bytes: BTreeSet::new(),
            reasons: 0,
            first: u64::MAX,
            last: 0,
            count: 0,
            touched: 0,
        }
    }

    fn note(&mut self, reason: u32, ns: u64) {
        self.reasons |= reason;
        self.first = self.first.min(ns);
        self.last = self.last.max(ns);
        self.count += 1;
    }

    fn fold(&mut self, o: &MEntry) {
        self.reasons |= o.reasons;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        self.count += o.count;
    }

    fn runs(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &b in &self.bytes {
            match out.last_mut() {
                Some(r) if r.0 + r.1 == b => r.1 += 1,
                _ => out.push((b, 1)),
            }
        }
        out
    }
}

/// path, subtree, whole, ranges, reasons, first_ns, last_ns, count
type Seen = (PathBuf, bool, bool, Vec<(u64, u64)>, u32, u64, u64, u64);
/// path index, range, reason index, ns
type MarkSpec = (usize, Option<(u64, u64)>, usize, u64);

#[derive(Default)]
struct Model {
    map: BTreeMap<Vec<u8>, MEntry>,
    tick: u64,
}

fn under(path: &[u8], dir: &[u8]) -> bool {
    Path::new(OsStr::from_bytes(path)).starts_with(Path::new(OsStr::from_bytes(dir)))
}

impl Model {
    fn tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn cover(&self, path: &[u8]) -> Option<Vec<u8>> {
        self.map
            .iter()
            .find(|(k, e)| e.subtree && under(path, k))
            .map(|(k, _)| k.clone())
    }

    fn take(&mut self, path: &[u8]) -> Vec<(Vec<u8>, MEntry)> {
        let keys: Vec<_> = self
            .map
            .keys()
            .filter(|k| under(k, path))
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| {
                let e = self.map.remove(&k).unwrap();
                (k, e)
            })
            .collect()
    }

    fn mark(&mut self, path: &[u8], range: Option<(u64, u64)>, reason: u32, ns: u64) {
        let t = self.tick();
        if let Some(s) = self.cover(path) {
            let e = self.map.get_mut(&s).unwrap();
            e.note(reason, ns);
            e.touched = t;
            return;
        }
        let e = self
            .map
            .entry(path.to_vec())
            .or_insert_with(|| MEntry::new(false));
        e.note(reason, ns);
        e.touched = t;
        match range {
            None => {
                e.whole = true;
                e.bytes.clear();
            }
            Some((off, len)) => {
                if !e.whole {
                    e.bytes.extend(off..off + len);
                    if e.runs().len() > MODEL_MAX_RANGES {
                        e.whole = true;
                        e.bytes.clear();
                    }
                }
            }
        }
    }

    fn mark_subtree(&mut self, path: &[u8], reason: u32, ns: u64) {
        let t = self.tick();
        if let Some(s) = self.cover(path) {
            let e = self.map.get_mut(&s).unwrap();
            e.note(reason, ns);
            e.touched = t;
            return;
        }
        let mut e = MEntry::new(true);
        e.note(reason, ns);
        for (_, old) in self.take(path) {
            e.fold(&old);
        }
        e.touched = t;
        self.map.insert(path.to_vec(), e);
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) {
        let moved = self.take(from);
        let cover_from = self.cover(from).map(|s| self.map[&s].clone());
        self.take(to);
        if let Some(s) = self.cover(to) {
            let t = self.tick();
            let e = self.map.get_mut(&s).unwrap();
            for (_, old) in &moved {
                e.fold(old);
            }
            if let Some(c) = &cover_from {
                e.reasons |= c.reasons;
            }
            e.touched = t;
            return;
        }
        if let Some(c) = cover_from {
            let mut e = MEntry::new(true);
            e.reasons = c.reasons;
            e.first = c.first;
            e.last = c.last;
            e.count = 1;
            for (_, old) in &moved {
                e.fold(old);
            }
            e.touched = self.tick();
            self.map.insert(to.to_vec(), e);
            return;
        }
        for (k, mut e) in moved {
            let mut nk = to.to_vec();
            nk.extend_from_slice(&k[from.len()..]);
            e.touched = self.tick();
            self.map.insert(nk, e);
        }
    }

    fn expected(&self) -> Vec<Seen> {
        self.map
            .iter()
            .map(|(k, e)| {
                (
                    path_of(k),
                    e.subtree,
                    e.whole,
                    e.runs(),
                    e.reasons,
                    e.first,
                    e.last,
                    e.count,
                )
            })
            .collect()
    }
}

fn actual(j: &ChangeJournal) -> Vec<Seen> {
    all(j)
        .into_iter()
        .map(|e| {
            (
                e.path,
                e.subtree,
                e.whole,
                e.ranges,
                e.reasons.bits(),
                e.first_ns,
                e.last_ns,
                e.count,
            )
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    Mark(Vec<MarkSpec>),
    Subtree(usize, usize, u64),
    Rename(usize, usize),
    Remove(usize),
    Snapshot,
    CompleteSnapshot,
    Reopen,
}

/// `/r/...` paths up to three deep over names chosen to sit next to `/` in byte order.
fn model_paths() -> Vec<Vec<u8>> {
    let names = ["a", "b", "a0", "a.b"];
    let mut out = Vec::new();
    let mut level = vec![b"/r".to_vec()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for base in &level {
            for n in names {
                let mut k = base.clone();
                k.push(b'/');
                k.extend_from_slice(n.as_bytes());
                next.push(k);
            }
        }
        out.extend(next.iter().cloned());
        level = next;
    }
    out
}

fn op_strategy(npaths: usize) -> impl Strategy<Value = Op> {
    let range = prop_oneof![
        1 => Just(None),
        1 => (0u64..48).prop_map(|o| Some((o, 0))),
        6 => (0u64..48, 1u64..8).prop_map(|(o, l)| Some((o, l))),
    ];
    let mark = (0..npaths, range, 0..Reason::ALL.len(), 0u64..1000);
    prop_oneof![
        10 => prop::collection::vec(mark, 1..5).prop_map(Op::Mark),
        2 => (0..npaths, 0..Reason::ALL.len(), 0u64..1000)
            .prop_map(|(p, r, ns)| Op::Subtree(p, r, ns)),
        2 => (0..npaths, 0..npaths).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (0..npaths).prop_map(Op::Remove),
        1 => Just(Op::Snapshot),
        1 => Just(Op::CompleteSnapshot),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    // every op is a durable commit, so the default is modest; PROPTEST_CASES raises it
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn journal_matches_an_in_memory_model(
        ops in prop::collection::vec(op_strategy(model_paths().len()), 1..40)
    ) {
        let paths = model_paths();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cj.redb");
        let opts = Options { max_ranges: MODEL_MAX_RANGES };
        let mut j = Some(ChangeJournal::open_with(&file, opts.clone()).unwrap());
        let mut model = Model::default();
        let mut snapshot: Vec<(PathBuf, u64)> = Vec::new();
        let mut model_snapshot: Vec<(Vec<u8>, u64)> = Vec::new();
        for op in ops {
            let jj = j.as_ref().unwrap();
            match op {
                Op::Mark(batch) => {
                    let marks: Vec<Mark> = batch
                        .iter()
                        .map(|&(i, range, r, ns)| Mark {
                            path: path_of(&paths[i]),
                            range,
                            reason: Reason::ALL[r],
                            ns,
                        })
                        .collect();
                    jj.mark(&marks).unwrap();
                    for (i, range, r, ns) in batch {
                        model.mark(&paths[i], range, Reason::ALL[r].bit(), ns);
                    }
                }
                Op::Subtree(i, r, ns) => {
                    jj.mark_subtree(&path_of(&paths[i]), Reason::ALL[r], ns).unwrap();
                    model.mark_subtree(&paths[i], Reason::ALL[r].bit(), ns);
                }
                Op::Rename(a, b) => {
                    let (from, to) = (&paths[a], &paths[b]);
                    let res = jj.rename(&path_of(from), &path_of(to));
                    if from == to {
                        prop_assert!(res.is_ok());
                    } else if under(to, from) || under(from, to) {
                        let refused = matches!(res, Err(Error::InvalidRename { .. }));
                        prop_assert!(refused, "{:?}", res);
                    } else {
                        res.unwrap();
                        model.rename(from, to);
                    }
                }
                Op::Remove(i) => {
                    let n = jj.remove(&path_of(&paths[i])).unwrap();
                    prop_assert_eq!(n, model.take(&paths[i]).len());
                }
                Op::Snapshot => {
                    snapshot = all(jj).iter().map(Entry::done).collect();
                    model_snapshot = model.map.iter().map(|(k, e)| (k.clone(), e.touched)).collect();
                }
                Op::CompleteSnapshot => {
                    let n = jj.complete(&snapshot).unwrap();
                    let mut expect = 0;
                    for (k, t) in &model_snapshot {
                        if model.map.get(k).is_some_and(|e| e.touched == *t) {
                            model.map.remove(k);
                            expect += 1;
                        }
                    }
                    prop_assert_eq!(n, expect);
                }
                Op::Reopen => {
                    drop(j.take());
                    j = Some(ChangeJournal::open_with(&file, opts.clone()).unwrap());
                }
            }
            let jj = j.as_ref().unwrap();
            prop_assert_eq!(actual(jj), model.expected());
            prop_assert_eq!(jj.len().unwrap(), model.map.len() as u64);
        }
    }
}
