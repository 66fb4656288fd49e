//! Capture to replica on one host: the real driver captures a workload of every kind of
//! operation, the engine's drain and queue carry it, and the local sink applies it to
//! another directory; then the two trees must be equal in content, type, mode, owner,
//! extended attributes, symlink targets, hard links, and file times.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rill_engine::drain::{Drain, Drained};
use rill_engine::journal::{Journal, JournalConfig};
use rill_engine::queue::{queue, AtLimit, Limits, Pushed};
use rill_engine::repset::{ReplicationSet, Rule};
use rill_engine::sink::{LocalSink, Transmit};
use rill_tests::{require_kernel_support, TestDir};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_rill-workload");

/// What must match between source and replica, per relative path.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    content: Vec<u8>,
    link: Option<PathBuf>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// Modification time of regular files (directories' change as entries are made).
    mtime: Option<(i64, i64)>,
    /// Index of the hard-link group, for files with more than one name.
    group: Option<usize>,
}

fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: a NUL-terminated path and a buffer of the given size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {}", p.display());
    let mut out = BTreeMap::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cn = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: as above.
        let l = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(l >= 0);
        v.truncate(l as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), v);
    }
    out
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut groups: HashMap<u64, usize> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else {
                "special"
            };
            if ft.is_dir() {
                stack.push(p.clone());
            }
            let next = groups.len();
            let group =
                (ft.is_file() && m.nlink() > 1).then(|| *groups.entry(m.ino()).or_insert(next));
            out.insert(
                p.strip_prefix(root).unwrap().to_path_buf(),
                Node {
                    kind,
                    mode: m.mode(),
                    uid: m.uid(),
                    gid: m.gid(),
                    content: if ft.is_file() {
                        std::fs::read(&p).unwrap()
                    } else {
                        Vec::new()
                    },
                    link: ft.is_symlink().then(|| std::fs::read_link(&p).unwrap()),
                    xattrs: if ft.is_symlink() {
                        BTreeMap::new()
                    } else {
                        xattrs(&p)
                    },
                    mtime: ft.is_file().then(|| (m.mtime(), m.mtime_nsec())),
                    group,
                },
            );
        }
    }
    out
}

#[test]
fn a_captured_workload_replicates_to_an_equal_tree() {
    require_kernel_support();
    let src = TestDir::new("pipeline-src");
    let dst = TestDir::new("pipeline-dst");
    let (mut capture, _pid) = rill_tests::capture_workload(WORKLOAD, "tree", src.path());

    // Capture until the stream is quiet: the workload has exited, so everything it did is
    // in the ring by now; a short quiet period covers the reader's batching.
    let mut events = Vec::new();
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while quiet_since.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
        if capture
            .poll(Duration::from_millis(50), &mut events)
            .unwrap()
            > 0
        {
            quiet_since = Instant::now();
        }
    }
    capture.flush(&mut events).unwrap();
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.op, rill_driver_linux::Op::Overflow { .. })),
        "no loss"
    );

    let set = ReplicationSet::new(vec![
        Rule::new(src.path().to_str().unwrap(), true, true).unwrap()
    ]);
    let mut drained = Vec::new();
    Drain::new(set, 65536).process(events, &mut drained);

    let qdir = tempfile::tempdir().unwrap();
    let mut cfg = JournalConfig::new(qdir.path());
    cfg.free_space_min_bytes = 0;
    let (w, r, rec) = Journal::open(cfg).unwrap();
    // A small memory queue, so part of the stream goes through the disk journal.
    let limits = Limits {
        memory_bytes: 64 << 10,
        memory_ops: 64,
        spill_percent: 50,
        alert_percent: 50,
        at_limit: AtLimit::QueueToDisk,
    };
    let (mut producer, mut consumer) = queue(limits, w, r, rec.last_seq);
    let mut spilled = 0;
    for d in drained {
        match d {
            Drained::Op(ev) => match producer.push(ev).unwrap() {
                Pushed::Memory(_) => {}
                Pushed::Disk(_) => spilled += 1,
                other => panic!("queue-to-disk keeps everything: {other:?}"),
            },
            Drained::Dirty { path, .. } => panic!(
                "nothing should need the change journal here: {}",
                path.display()
            ),
        }
    }
    assert!(spilled > 0, "the test must exercise the disk queue");
    let mut sink = LocalSink::new(src.path(), dst.path()).unwrap();
    let mut last = 0;
    while let Some(q) = consumer.pop(Duration::ZERO).unwrap() {
        sink.send(&q)
            .unwrap_or_else(|e| panic!("op {}: {e}", q.seq));
        last = q.seq;
    }
    sink.flush().unwrap();
    consumer.ack(last).unwrap();

    let (a, b) = (snapshot(src.path()), snapshot(dst.path()));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same names"
    );
    for (path, node) in &a {
        assert_eq!(Some(node), b.get(path), "{}", path.display());
    }
}
