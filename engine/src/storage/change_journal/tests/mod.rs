//! Tests of the change journal, one file a topic: the merge rules of single marks
//! (`marks.rs`), subtrees, rename, remove and complete (`lifecycle.rs`), reopening and files
//! that are not journals (`storage.rs`), a property test against an in-memory model
//! (`model.rs`) and SIGKILL at random moments (`crash.rs`). The helpers they share are here.

mod crash;
mod lifecycle;
mod marks;
mod model;
mod storage;

use super::*;

use std::path::PathBuf;

use tempfile::TempDir;

fn journal() -> (TempDir, ChangeJournal) {
    let dir = tempfile::tempdir().unwrap();
    let j = ChangeJournal::open(&dir.path().join("cj.redb")).unwrap();
    (dir, j)
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn all(j: &ChangeJournal) -> Vec<Entry> {
    j.pending(usize::MAX).unwrap()
}

fn get(j: &ChangeJournal, path: &str) -> Option<Entry> {
    all(j).into_iter().find(|e| e.path == p(path))
}

fn paths(j: &ChangeJournal) -> Vec<String> {
    all(j)
        .iter()
        .map(|e| {
            let s = e.path.display().to_string();
            if e.subtree {
                format!("{s}/**")
            } else {
                s
            }
        })
        .collect()
}
