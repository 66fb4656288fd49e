//! Crash test: SIGKILL a writer at random moments; every acknowledged batch must survive,
//! and every batch is all or nothing. The writer is this test binary run again with an
//! environment variable naming the journal.

use super::*;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CRASH_CHILD_ENV: &str = "RILL_CJ_CRASH_CHILD";
const CRASH_START_ENV: &str = "RILL_CJ_CRASH_START";
const CRASH_FILES_PER_BATCH: u64 = 8;

fn crash_batch(id: u64) -> Vec<Mark> {
    (0..CRASH_FILES_PER_BATCH)
        .map(|k| {
            let path = format!("/crash/d{}/b{id}-{k}", id % 13);
            if k == 0 {
                Mark::whole(path.as_str(), Reason::Recovery, id)
            } else {
                Mark::range(path.as_str(), k * 4096, 4096, Reason::RingFull, id)
            }
        })
        .collect()
}

fn crash_batch_present(entries: &BTreeMap<PathBuf, Entry>, id: u64) -> bool {
    if id % 10 == 9 {
        return entries
            .get(Path::new(&format!("/crash/s{id}")))
            .is_some_and(|e| e.subtree);
    }
    crash_batch(id).iter().all(|m| {
        entries.get(&m.path).is_some_and(|e| match m.range {
            None => e.whole,
            Some((off, len)) => {
                e.whole
                    || e.ranges
                        .iter()
                        .any(|r| r.0 <= off && off + len <= r.0 + r.1)
            }
        })
    })
}

/// The child: marks batches forever, printing each id after `mark` returns.
fn crash_child(db: &Path, start: u64) {
    let j = ChangeJournal::open(db).unwrap();
    let mut out = std::io::stdout().lock();
    // on a line of its own: the harness may have left "test ... " unterminated
    writeln!(out, "\nOPEN").unwrap();
    out.flush().unwrap();
    for id in start.. {
        if id % 10 == 9 {
            j.mark_subtree(Path::new(&format!("/crash/s{id}")), Reason::PathUnknown, id)
                .unwrap();
        } else {
            j.mark(&crash_batch(id)).unwrap();
        }
        writeln!(out, "BATCH {id}").unwrap();
        out.flush().unwrap();
    }
}

fn crash_test_name() -> String {
    // the harness names tests without the crate: change_journal::tests::crash::<fn>
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::sigkill_at_random_moments_loses_no_acknowledged_batch")
}

/// Starts a crash child marking batches from `start` on in the journal `db`, and a thread
/// collecting what it prints: whether it opened the journal, and the ids it acknowledged.
fn spawn_crash_child(db: &Path, start: u64) -> (Child, JoinHandle<(bool, Vec<u64>)>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            crash_test_name().as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, db)
        .env(CRASH_START_ENV, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut opened = false;
        let mut ids = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line == "OPEN" {
                opened = true;
            } else if let Some(id) = line.strip_prefix("BATCH ") {
                ids.push(id.parse::<u64>().unwrap());
            }
        }
        (opened, ids)
    });
    (child, reader)
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_batch() {
    if let Some(db) = std::env::var_os(CRASH_CHILD_ENV) {
        let start = std::env::var(CRASH_START_ENV).unwrap().parse().unwrap();
        crash_child(Path::new(&db), start);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.redb");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut acked: Vec<u64> = Vec::new();
    let mut kills_before_open = 0;
    for trial in 0..15u64 {
        let (mut child, reader) = spawn_crash_child(&db, trial * 1_000_000);
        // anywhere from during the open (which repairs the previous crash) to many batches in
        let delay = Duration::from_millis(if rand(4) == 0 {
            rand(30)
        } else {
            5 + rand(400)
        });
        let started = Instant::now();
        while started.elapsed() < delay {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the crash child exited by itself: {status}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (opened, ids) = reader.join().unwrap();
        if !opened {
            kills_before_open += 1;
        }
        acked.extend(ids);

        let j = ChangeJournal::open(&db).unwrap();
        let entries: BTreeMap<PathBuf, Entry> =
            all(&j).into_iter().map(|e| (e.path.clone(), e)).collect();
        let missing: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|&id| !crash_batch_present(&entries, id))
            .collect();
        assert!(
            missing.is_empty(),
            "trial {trial}: acknowledged batches missing after SIGKILL: {missing:?}"
        );
        // a batch is all or nothing, acknowledged or not
        let mut files_of: BTreeMap<u64, u64> = BTreeMap::new();
        for e in entries.values().filter(|e| !e.subtree) {
            let name = e.path.file_name().unwrap().to_str().unwrap();
            let id = name[1..].split_once('-').unwrap().0.parse().unwrap();
            *files_of.entry(id).or_default() += 1;
        }
        for (id, n) in files_of {
            assert_eq!(
                n, CRASH_FILES_PER_BATCH,
                "trial {trial}: batch {id} is torn"
            );
            assert!(crash_batch_present(&entries, id));
        }
        drop(j);
    }
    assert!(
        acked.len() >= 15,
        "only {} batches acknowledged ({kills_before_open} kills before open)",
        acked.len()
    );
    eprintln!(
        "crash test: {} acknowledged batches survived 15 SIGKILLs ({kills_before_open} during open)",
        acked.len()
    );
}

/// The first open of a journal makes its file, and a kill at any instant of that must leave
/// a path the next open accepts. redb initialises a file in place, and a kill between its
/// header write and its magic-number write used to leave a file every later open refused;
/// the random test above reaches that instant only when its first kill falls in it. Here
/// each trial kills a fresh journal's first open at a delay from 0 to 10 ms after the
/// spawn, which on a typical machine spans the child's start, the creation and its first
/// batches.
#[test]
fn sigkill_while_a_journal_is_made_leaves_one_that_opens() {
    for trial in 0..20u64 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("new.redb");
        let (mut child, reader) = spawn_crash_child(&db, 0);
        std::thread::sleep(Duration::from_micros(trial * 500));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (opened, ids) = reader.join().unwrap();
        let j = ChangeJournal::open(&db).unwrap_or_else(|e| {
            panic!(
                "trial {trial} (killed {}): {e}",
                if opened {
                    "after the open"
                } else {
                    "before or during the open"
                }
            )
        });
        // what it acknowledged is there, as in the random test
        let entries: BTreeMap<PathBuf, Entry> =
            all(&j).into_iter().map(|e| (e.path.clone(), e)).collect();
        for id in ids {
            assert!(
                crash_batch_present(&entries, id),
                "trial {trial}: batch {id} lost"
            );
        }
    }
}
