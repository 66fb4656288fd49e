use super::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tempfile::TempDir;

fn store() -> (TempDir, JobStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
    (dir, s)
}

fn spec(name: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        source: "/data".into(),
        target: network("backup.example.com", 1500, "/replica/data"),
        rules: vec![],
    }
}

fn network(host: &str, port: u16, path: &str) -> JobTarget {
    JobTarget::Network {
        host: host.into(),
        port,
        path: path.into(),
    }
}

fn rule(pattern: &str, include: bool) -> JobRule {
    JobRule {
        pattern: pattern.into(),
        include,
    }
}

fn session(seq: u64, state: DataState) -> TargetSession {
    TargetSession {
        target_path: "/replica/data".into(),
        last_applied: seq,
        data_state: state,
        updated_unix: 0,
    }
}

#[test]
fn create_get_list_delete() {
    let (_d, s) = store();
    assert!(s.list().unwrap().is_empty());
    let web = s.create(spec("web")).unwrap();
    assert_eq!(web.state, JobState::Stopped);
    assert_eq!(web.mirror, MirrorState::Pending);
    assert_eq!(web.last_acked, 0);
    assert!(web.created_unix > 0);
    s.create(spec("db-1.main_x")).unwrap();
    assert_eq!(s.get("web").unwrap(), Some(web.clone()));
    assert_eq!(s.get("nope").unwrap(), None);
    let names: Vec<String> = s.list().unwrap().into_iter().map(|j| j.spec.name).collect();
    assert_eq!(names, ["db-1.main_x", "web"], "listed by name");
    assert_eq!(s.delete("web").unwrap(), web);
    assert_eq!(s.get("web").unwrap(), None);
    assert!(matches!(s.delete("web"), Err(Error::NotFound { name }) if name == "web"));
    assert_eq!(s.list().unwrap().len(), 1);
}

#[test]
fn duplicate_names_are_refused() {
    let (_d, s) = store();
    s.create(spec("web")).unwrap();
    let mut other = spec("web");
    other.source = "/elsewhere".into();
    let e = s.create(other).unwrap_err();
    assert!(matches!(&e, Error::Exists { name } if name == "web"), "{e}");
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(
        s.get("web").unwrap().unwrap().spec.source,
        Path::new("/data")
    );
}

#[test]
fn state_updates_return_the_previous_value() {
    let (_d, s) = store();
    s.create(spec("web")).unwrap();
    assert_eq!(
        s.set_state("web", JobState::Running).unwrap(),
        JobState::Stopped
    );
    assert_eq!(
        s.set_state("web", JobState::Paused).unwrap(),
        JobState::Running
    );
    assert_eq!(
        s.set_mirror_state("web", MirrorState::Mirroring).unwrap(),
        MirrorState::Pending
    );
    s.set_last_acked("web", 42).unwrap();
    s.set_counters("web", &[("mirror_files", 7), ("mirror_bytes", 9)])
        .unwrap();
    s.set_counters("web", &[("mirror_files", 8)]).unwrap();
    let job = s.get("web").unwrap().unwrap();
    assert_eq!(job.state, JobState::Paused);
    assert_eq!(job.mirror, MirrorState::Mirroring);
    assert_eq!(job.last_acked, 42);
    assert_eq!(job.counters["mirror_files"], 8);
    assert_eq!(job.counters["mirror_bytes"], 9);
    for e in [
        s.set_state("nope", JobState::Running).map(|_| ()),
        s.set_mirror_state("nope", MirrorState::Complete)
            .map(|_| ()),
        s.set_last_acked("nope", 1),
        s.set_counters("nope", &[]),
    ] {
        assert!(matches!(e, Err(Error::NotFound { .. })), "{e:?}");
    }
}

/// A verification schedule, for the round trips.
const SCHEDULE: VerifySchedule = VerifySchedule {
    every_seconds: 86_400,
    remirror: true,
    checksums: false,
};

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    {
        let s = JobStore::open(&path).unwrap();
        s.create(spec("web")).unwrap();
        s.set_state("web", JobState::Running).unwrap();
        s.set_mirror_state("web", MirrorState::Complete).unwrap();
        s.set_last_acked("web", 1234).unwrap();
        s.put_session("SHA256:ab", "web", &session(99, DataState::Ok))
            .unwrap();
        s.set_verify_schedule("web", Some(SCHEDULE)).unwrap();
    }
    let s = JobStore::open(&path).unwrap();
    let job = s.get("web").unwrap().unwrap();
    assert_eq!(job.state, JobState::Running, "a running job resumes");
    assert_eq!(job.mirror, MirrorState::Complete);
    assert_eq!(job.last_acked, 1234);
    assert_eq!(job.verify_schedule, Some(SCHEDULE));
    s.set_verify_schedule("web", None).unwrap();
    assert_eq!(s.get("web").unwrap().unwrap().verify_schedule, None);
    let got = s.get_session("SHA256:ab", "web").unwrap().unwrap();
    assert_eq!(got.last_applied, 99);
    assert_eq!(got.data_state, DataState::Ok);
}

#[test]
fn a_second_open_is_refused_while_the_first_is_open() {
    let (d, _s) = store();
    let e = JobStore::open(&d.path().join("jobs.redb")).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
}

#[test]
fn other_files_are_not_taken_for_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let e = JobStore::open(&junk).unwrap_err();
    assert!(matches!(e, Error::NotAStore { .. }), "{e}");
    let e = JobStore::open(dir.path()).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    // A change journal is a redb database too, but not a job store.
    let cj = dir.path().join("cj.redb");
    drop(crate::storage::change_journal::ChangeJournal::open(&cj).unwrap());
    let e = JobStore::open(&cj).unwrap_err();
    assert!(e.to_string().contains("something else"), "{e}");
}

#[test]
fn a_newer_format_is_refused() {
    let (d, s) = store();
    let path = s.path().to_path_buf();
    drop(s);
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert("format", FORMAT + 1)
            .unwrap();
        tx.commit().unwrap();
    }
    let e = JobStore::open(&path).unwrap_err();
    assert!(
        matches!(e, Error::UnsupportedFormat { found, .. } if found == FORMAT + 1),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{}: job store format 2 is newer than this rilld understands (1)",
            d.path().join("jobs.redb").display()
        )
    );
}

#[test]
fn sessions_put_get_list_delete() {
    let (_d, s) = store();
    assert!(s.list_sessions().unwrap().is_empty());
    let stored = s
        .put_session("SHA256:bb", "web", &session(5, DataState::Mirroring))
        .unwrap();
    assert!(stored.updated_unix > 0, "stamped when stored");
    s.put_session("SHA256:aa", "web", &session(1, DataState::Ok))
        .unwrap();
    s.put_session("SHA256:aa", "db", &session(2, DataState::MirrorRequired))
        .unwrap();
    // Replacing keeps one entry per key.
    s.put_session("SHA256:bb", "web", &session(6, DataState::Ok))
        .unwrap();
    let keys: Vec<(String, String, u64)> = s
        .list_sessions()
        .unwrap()
        .into_iter()
        .map(|e| (e.peer, e.job, e.session.last_applied))
        .collect();
    assert_eq!(
        keys,
        [
            ("SHA256:aa".to_string(), "db".to_string(), 2),
            ("SHA256:aa".to_string(), "web".to_string(), 1),
            ("SHA256:bb".to_string(), "web".to_string(), 6),
        ]
    );
    assert_eq!(s.get_session("SHA256:cc", "web").unwrap(), None);
    assert!(s.delete_session("SHA256:aa", "db").unwrap());
    assert!(!s.delete_session("SHA256:aa", "db").unwrap());
    assert_eq!(s.list_sessions().unwrap().len(), 2);
}

#[test]
fn sessions_are_validated() {
    let (_d, s) = store();
    let ok = session(1, DataState::Ok);
    assert!(matches!(
        s.put_session("", "web", &ok),
        Err(Error::Invalid(SpecError::Peer { .. }))
    ));
    assert!(matches!(
        s.put_session("a\nb", "web", &ok),
        Err(Error::Invalid(SpecError::Peer { .. }))
    ));
    assert!(matches!(
        s.put_session("SHA256:aa", "../x", &ok),
        Err(Error::Invalid(SpecError::Name { .. }))
    ));
    let mut relative = ok.clone();
    relative.target_path = "replica".into();
    assert!(matches!(
        s.put_session("SHA256:aa", "web", &relative),
        Err(Error::Invalid(SpecError::Path { .. }))
    ));
    assert!(s.list_sessions().unwrap().is_empty());
}

#[test]
fn specs_are_validated_with_clear_errors() {
    let (_d, s) = store();
    let cases: Vec<(JobSpec, &str)> = vec![
        (
            JobSpec {
                source: "data".into(),
                ..spec("a")
            },
            "source \"data\": is not absolute",
        ),
        (
            JobSpec {
                source: "/data/../etc".into(),
                ..spec("a")
            },
            "source \"/data/../etc\": contains `..`",
        ),
        (
            JobSpec {
                source: "/da\0ta".into(),
                ..spec("a")
            },
            "NUL",
        ),
        (
            JobSpec {
                target: network("backup.example.com", 1500, ""),
                ..spec("a")
            },
            "target path \"\": is empty",
        ),
        (
            JobSpec {
                target: network("backup.example.com", 1500, "/r/../x"),
                ..spec("a")
            },
            "target path \"/r/../x\": contains `..`",
        ),
        (
            JobSpec {
                target: network("backup.example.com", 0, "/replica/data"),
                ..spec("a")
            },
            "port 0 is not allowed",
        ),
        (
            JobSpec {
                target: network("bad host", 1500, "/replica/data"),
                ..spec("a")
            },
            "not allowed in a host name",
        ),
        (
            JobSpec {
                target: network("", 1500, "/replica/data"),
                ..spec("a")
            },
            "the host is empty",
        ),
        (
            JobSpec {
                rules: vec![rule("/other/*.tmp", false)],
                ..spec("a")
            },
            "lies outside the job's source /data",
        ),
        (
            JobSpec {
                rules: vec![rule("/data/*/x", false)],
                ..spec("a")
            },
            "only in the last component",
        ),
        (
            JobSpec {
                rules: vec![rule("/data/../x", false)],
                ..spec("a")
            },
            "`..` is not allowed",
        ),
        (
            JobSpec {
                rules: vec![rule("", true)],
                ..spec("a")
            },
            "the pattern is empty",
        ),
        (
            JobSpec {
                rules: vec![rule("/data/a\0", true)],
                ..spec("a")
            },
            "NUL",
        ),
        (spec("no/slash"), "'/' is not allowed"),
    ];
    for (bad, expected) in cases {
        let e = s.create(bad.clone()).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{bad:?}: {e}");
        assert!(e.to_string().contains(expected), "{bad:?}: {e}");
    }
    assert!(s.list().unwrap().is_empty(), "nothing invalid was stored");
}

#[test]
fn specs_are_stored_normalised() {
    let (_d, s) = store();
    let job = s
        .create(JobSpec {
            source: "/data//x/./".into(),
            target: network("[fd00::2]", 1500, "/replica/"),
            rules: vec![
                rule("*.tmp", false),
                rule("cache", false),
                rule("/data/x/keep//*.db", true),
            ],
            ..spec("web")
        })
        .unwrap();
    assert_eq!(job.spec.source, Path::new("/data/x"));
    assert_eq!(job.spec.target.path(), Path::new("/replica"));
    let JobTarget::Network { host, .. } = &job.spec.target else {
        panic!("{job:?}")
    };
    assert_eq!(host, "fd00::2");
    assert_eq!(job.spec.target.address().unwrap(), "[fd00::2]:1500");
    let patterns: Vec<&str> = job.spec.rules.iter().map(|r| r.pattern.as_str()).collect();
    assert_eq!(
        patterns,
        ["/data/x/*.tmp", "/data/x/cache", "/data/x/keep/*.db"]
    );
    let set = job.spec.replication_set().unwrap();
    assert!(set.protects(Path::new("/data/x/a/b.txt")));
    assert!(!set.protects(Path::new("/data/x/a/b.tmp")));
    assert!(!set.protects(Path::new("/data/x/cache/f")));
    assert!(!set.protects(Path::new("/data/y")));
}

#[test]
fn concurrent_readers_see_whole_states() {
    let (_d, s) = store();
    let s = Arc::new(s);
    for i in 0..4 {
        s.create(spec(&format!("job{i}"))).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) || reads == 0 {
                    let jobs = s.list().unwrap();
                    assert_eq!(jobs.len(), 4);
                    let acked = s.get("job0").unwrap().unwrap().last_acked;
                    assert!(acked >= last, "a reader never goes back in time");
                    last = acked;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for seq in 1..=50 {
        s.set_last_acked("job0", seq).unwrap();
        s.put_session("peer", "job0", &session(seq, DataState::Ok))
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(s.get("job0").unwrap().unwrap().last_acked, 50);
}

/// A job record exactly as the store wrote it before jobs had a `JobTarget` (the target as
/// the fields `target_host`, `target_port` and `target_path`), put into a store's table as
/// raw bytes: it loads, and is written back in the same form.
#[test]
fn a_record_written_before_job_targets_loads() {
    let (d, s) = store();
    let path = s.path().to_path_buf();
    drop(s);
    let old = br#"{"spec":{"name":"web","source":"/data","target_host":"fd00::2","target_port":1600,"target_path":"/replica","rules":[{"pattern":"/data/*.tmp","include":false}]},"state":"Running","mirror":"Complete","last_acked":7,"counters":{"ops":3},"created_unix":100,"updated_unix":200}"#;
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(JOBS)
            .unwrap()
            .insert("web", old.as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let s = JobStore::open(&path).unwrap();
    let job = s.get("web").unwrap().unwrap();
    assert_eq!(job.spec.target, network("fd00::2", 1600, "/replica"));
    assert_eq!(job.spec.rules, vec![rule("/data/*.tmp", false)]);
    assert_eq!(
        (job.state, job.mirror, job.last_acked),
        (JobState::Running, MirrorState::Complete, 7)
    );
    assert_eq!(job.counters.get("ops"), Some(&3));
    assert_eq!((job.created_unix, job.updated_unix), (100, 200));
    assert_eq!(serde_json::to_vec(&job).unwrap(), old.as_slice());
    drop(d);
}
