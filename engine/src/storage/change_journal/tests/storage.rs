//! The journal as a file: entries surviving a reopen, files that are not journals, a newer
//! format, a damaged entry, a second open while the first holds the lock.

use super::*;

use std::path::Path;

use redb::{Database, TableDefinition};

use super::super::store::{FILES, FORMAT, META, META_FORMAT};

#[test]
fn entries_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cj.redb");
    let j = ChangeJournal::open(&path).unwrap();
    j.mark(&[
        Mark::range("/a", 0, 10, Reason::RingFull, 1),
        Mark::whole("/b", Reason::AutoDisconnect, 2),
        Mark::metadata("/c", Reason::QueueCorrupt, 3),
    ])
    .unwrap();
    j.mark_subtree(Path::new("/s"), Reason::Recovery, 4)
        .unwrap();
    let before = all(&j);
    drop(j);
    let j = ChangeJournal::open(&path).unwrap();
    assert_eq!(all(&j), before);
    // versions keep growing after a reopen
    j.mark(&[Mark::whole("/d", Reason::RingFull, 5)]).unwrap();
    let max_before = before.iter().map(|e| e.version).max().unwrap();
    assert!(get(&j, "/d").unwrap().version > max_before);
}

#[test]
fn a_file_that_is_not_a_journal_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut noise = vec![0u8; 64 * 1024];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "text",
            b"this is a settings file, not a database\n".to_vec(),
        ),
        ("short", b"re".to_vec()),
        ("zeros", vec![0; 8192]),
        ("noise", noise),
        ("magic-then-noise", {
            let mut v = b"redb\x1a\x0a\xa9\x0d\x0a".to_vec();
            v.extend(std::iter::repeat_n(0xA5u8, 5000));
            v
        }),
    ];
    for (name, content) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &content).unwrap();
        match ChangeJournal::open(&path) {
            Err(Error::NotAJournal { path: p, detail }) => {
                assert_eq!(p, path);
                assert!(!detail.is_empty());
                let msg = Error::NotAJournal {
                    path: p,
                    detail: detail.clone(),
                }
                .to_string();
                assert!(msg.contains("not a rill change journal"), "{msg}");
            }
            other => panic!("{name}: expected NotAJournal, got {other:?}"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            content,
            "{name} was modified"
        );
    }
    // a directory
    assert!(matches!(
        ChangeJournal::open(dir.path()),
        Err(Error::NotAJournal { .. })
    ));
    // a missing parent directory
    assert!(matches!(
        ChangeJournal::open(&dir.path().join("no/such/dir/cj")),
        Err(Error::Io { .. })
    ));
    // a redb database of something else
    let other = dir.path().join("other.redb");
    {
        let db = Database::create(&other).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let def: TableDefinition<u64, u64> = TableDefinition::new("something_else");
            tx.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        tx.commit().unwrap();
    }
    match ChangeJournal::open(&other) {
        Err(Error::NotAJournal { detail, .. }) => assert!(detail.contains("something_else")),
        other => panic!("expected NotAJournal, got {other:?}"),
    }
    // an empty file becomes a journal
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    ChangeJournal::open(&empty).unwrap();
}

#[test]
fn a_newer_format_is_refused() {
    let (_d, j) = journal();
    let path = j.path().to_path_buf();
    drop(j);
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert(META_FORMAT, FORMAT + 1)
            .unwrap();
        tx.commit().unwrap();
    }
    assert!(matches!(
        ChangeJournal::open(&path),
        Err(Error::UnsupportedFormat { found, .. }) if found == FORMAT + 1
    ));
}

#[test]
fn a_damaged_entry_is_an_error_not_a_panic() {
    let (_d, j) = journal();
    j.mark(&[Mark::whole("/ok", Reason::RingFull, 1)]).unwrap();
    {
        let tx = j.db.begin_write().unwrap();
        tx.open_table(FILES)
            .unwrap()
            .insert(b"/bad".as_slice(), b"\x01garbage".as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    match j.pending(10) {
        Err(Error::CorruptEntry { entry, .. }) => assert_eq!(entry, p("/bad")),
        other => panic!("expected CorruptEntry, got {other:?}"),
    }
    assert!(matches!(
        j.mark(&[Mark::whole("/bad", Reason::RingFull, 1)]),
        Err(Error::CorruptEntry { .. })
    ));
    // the failed batch left nothing behind
    assert_eq!(j.len().unwrap(), 2);
}

#[test]
fn a_second_open_is_refused() {
    let (_d, j) = journal();
    assert!(matches!(
        ChangeJournal::open(j.path()),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn journal_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ChangeJournal>();
}
