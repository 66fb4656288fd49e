use std::path::Path;

use super::*;

// The settings of the transport, mirror and target (issue 4), and writing the file.
mod failover;
mod file;
mod transport;

pub(super) fn err(text: &str) -> SettingsError {
    match Settings::from_toml_str(text) {
        Ok(s) => panic!("`{text}` was accepted: {s:?}"),
        Err(e) => e,
    }
}

/// Asserts `e` is OutOfRange for `name` and `value` and that its message says what is allowed.
pub(super) fn assert_out_of_range(e: &SettingsError, name: &str, value: &str) {
    let msg = e.to_string();
    match e {
        SettingsError::OutOfRange {
            name: n,
            value: v,
            allowed,
        } => {
            assert_eq!((n.as_str(), v.as_str()), (name, value), "{msg}");
            assert!(msg.contains(allowed.as_str()), "{msg}");
        }
        other => panic!("{name} = {value}: expected OutOfRange, got {other:?}"),
    }
    assert!(msg.starts_with(&format!("{name} = {value} ")), "{msg}");
}

pub(super) fn assert_wrong_type(e: &SettingsError, name: &str) {
    match e {
        SettingsError::WrongType { name: n, .. } if n == name => {}
        other => panic!("{name}: expected WrongType, got {other:?}"),
    }
}

#[test]
fn defaults_are_valid() {
    let d = Settings::default();
    assert_eq!(Settings::from_toml_str("").unwrap(), d);
    assert!(d.cross_problems(&|_| false).is_empty());
    for def in SETTINGS {
        // The default, written as text, passes the setting's own checks.
        assert_eq!(
            def.parse(&def.default.to_string()).unwrap(),
            def.default,
            "{}",
            def.name
        );
        assert_eq!(d.get(def.name).unwrap(), def.default.to_string());
    }
    assert_eq!(d.q_memory_buffer_max_bytes(), 256 << 20);
    assert_eq!(d.memory_queue_to_disk_threshold(), 100);
    assert_eq!(d.op_buffer_size(), None);
    assert_eq!(d.q_journal_dir(), Path::new("/var/lib/rill/queue"));
    assert_eq!(d.q_journal_file_size_bytes(), 5 << 20);
    assert_eq!(d.q_journal_space_max_bytes(), None);
    assert!(d.disk_queue_enabled());
    assert_eq!(d.q_journal_free_space_min_bytes(), 250 << 20);
    assert!(!d.q_log_write_through());
    assert_eq!(d.queue_size_alert_threshold(), 50);
    assert_eq!(
        d.memory_allocator_callback_mode(),
        CallbackMode::QueueToDisk
    );
    assert_eq!(d.max_write_chunk_size(), 65_536);
    assert_eq!(d.max_remove_orphans_op_size(), 1000);
    assert!(d.use_change_journal());
    assert_eq!(d.data_path(), Path::new("/var/lib/rill"));
    assert_eq!(d.log_dir(), Path::new("/var/log/rill"));
    assert!(d.checksum_all());
    assert_eq!(d.max_checksum_blocks(), 32);
    assert_eq!(d.verify_log_name(), "DTVerify.log");
    assert!(d.verify_log_append());
    assert_eq!(d.verify_log_limit_bytes(), 1_048_576);
    assert_eq!(
        d.verify_retry_interval(),
        std::time::Duration::from_secs(180)
    );
    assert_eq!(d.verify_retry_limit(), 5);
}

#[test]
fn the_table_has_the_settings_the_engine_uses_once_each() {
    let mut names: Vec<&str> = SETTINGS.iter().map(|d| d.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SETTINGS.len(), "a name appears twice");
    assert_eq!(SETTINGS.len(), 58);
    for def in SETTINGS {
        assert!(!def.help.is_empty(), "{}", def.name);
        let needs_unit = matches!(def.kind, Kind::Integer { .. });
        assert_eq!(!def.unit.is_empty(), needs_unit, "{}", def.name);
    }
}

#[test]
fn the_guide_s_example_message() {
    assert_eq!(
        err("QMemoryBufferMax = 0").to_string(),
        "QMemoryBufferMax = 0 is out of range: allowed 32 to 4095 (MB)"
    );
}

#[test]
fn every_number_is_refused_below_its_minimum_and_above_its_maximum() {
    let mut tested = 0;
    for def in SETTINGS {
        let (low, high): (Vec<i128>, i128) = match def.kind {
            Kind::Integer { min, max, zero, .. } => {
                let mut low = vec![-1];
                if min > 1 || (min == 1 && zero.is_none()) {
                    low.push(i128::from(min) - 1);
                }
                // The limits themselves are allowed.
                for ok in [min, max] {
                    // (A small QJournalSpaceMax needs a small QJournalFileSize; the mirror
                    // capacities must stay in order.)
                    let partner = match def.name {
                        "QJournalSpaceMax" => "QJournalFileSize = 1\n",
                        "TGMirrorCapacityHigh" => "TGMirrorCapacityLow = 1\n",
                        "TGMirrorCapacityLow" => "TGMirrorCapacityHigh = 75\n",
                        _ => "",
                    };
                    let text = format!("{partner}{} = {ok}", def.name);
                    let s = Settings::from_toml_str(&text).unwrap();
                    assert_eq!(s.get(def.name).unwrap(), ok.to_string());
                }
                (low, i128::from(max) + 1)
            }
            Kind::Enumeration(values) => {
                let max = values.iter().map(|v| v.0).max().unwrap();
                (vec![-1], i128::from(max) + 1)
            }
            Kind::Boolean | Kind::Path | Kind::FileName | Kind::List { .. } => continue,
        };
        for v in low.into_iter().chain([high]) {
            let text = v.to_string();
            assert_out_of_range(&err(&format!("{} = {v}", def.name)), def.name, &text);
            let mut s = Settings::default();
            assert_out_of_range(&s.set(def.name, &text).unwrap_err(), def.name, &text);
            assert_eq!(s, Settings::default(), "a refused set changed something");
        }
        tested += 1;
    }
    assert_eq!(tested, 40);
}

#[test]
fn every_setting_refuses_a_value_of_the_wrong_type() {
    for def in SETTINGS {
        let bad: &[&str] = match def.kind {
            Kind::Integer { .. } | Kind::Enumeration(_) => &["\"12\"", "1.5", "true", "[1]"],
            Kind::Boolean => &["2", "\"yes\"", "-1"],
            Kind::Path | Kind::FileName => &["5", "true", "[\"/a\"]"],
            Kind::List { .. } => &["5", "true", "1.5", "[1]", "[\"mp3\", 2]"],
        };
        for v in bad {
            let e = err(&format!("{} = {v}", def.name));
            assert_wrong_type(&e, def.name);
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("{} = {v} ", def.name)), "{msg}");
        }
        // (A path or a list may be any word.)
        if !matches!(def.kind, Kind::Path | Kind::FileName | Kind::List { .. }) {
            let e = Settings::default().set(def.name, "lots").unwrap_err();
            assert_wrong_type(&e, def.name);
        }
    }
    assert_eq!(
        err("QLogWriteThrough = 2").to_string(),
        "QLogWriteThrough = 2 has the wrong type: expected 0 or 1"
    );
    assert_eq!(
        err("QJournalDir = 5").to_string(),
        "QJournalDir = 5 has the wrong type: expected an absolute path, in quotes"
    );
}

/// A file name is one component: a slash, `.`, `..`, an empty or overlong name are
/// refused with what is allowed, from the file and from `set` alike.
#[test]
fn file_names_are_single_components() {
    let long = "a".repeat(256);
    let mut tested = 0;
    for def in SETTINGS.iter().filter(|d| d.kind == Kind::FileName) {
        for bad in ["", "/tmp/x.log", "a/b", ".", "..", " x.log", long.as_str()] {
            match Settings::default().set(def.name, bad) {
                Err(SettingsError::BadName {
                    name,
                    value,
                    why,
                    allowed,
                }) => {
                    assert_eq!((name.as_str(), value.as_str()), (def.name, bad));
                    assert!(!why.is_empty() && allowed.contains("no '/'"), "{allowed}");
                }
                other => panic!("{} = {bad:?}: {other:?}", def.name),
            }
            let text = format!("{} = {}", def.name, toml::Value::String(bad.into()));
            assert!(
                matches!(err(&text), SettingsError::BadName { .. }),
                "{text}"
            );
        }
        let mut s = Settings::default();
        s.set(def.name, "verify-nightly.log").unwrap();
        assert_eq!(s.get(def.name).unwrap(), "verify-nightly.log");
        tested += 1;
    }
    assert_eq!(tested, 1);
    assert_eq!(
        err("VerifyLogName = \"a/b\"").to_string(),
        "VerifyLogName = \"a/b\" is not a valid file name: it contains a '/' (a name, not a \
         path); allowed a file name: 1 to 255 bytes, no '/', not \".\" or \"..\""
    );
}

#[test]
fn paths_must_be_absolute_directories() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let file = file.path().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap().to_string();
    let mut tested = 0;
    for def in SETTINGS.iter().filter(|d| d.kind == Kind::Path) {
        for bad in ["var/lib/rill", "", "./queue", " /var/lib/rill", &file] {
            let mut s = Settings::default();
            match s.set(def.name, bad) {
                Err(SettingsError::BadPath { name, value, why }) => {
                    assert_eq!((name.as_str(), value.as_str()), (def.name, bad));
                    assert!(!why.is_empty());
                }
                other => panic!("{} = {bad:?}: {other:?}", def.name),
            }
            let text = format!("{} = {}", def.name, toml::Value::String(bad.into()));
            assert!(
                matches!(err(&text), SettingsError::BadPath { .. }),
                "{text}"
            );
        }
        let mut s = Settings::default();
        s.set(def.name, &dir).unwrap();
        assert_eq!(s.get(def.name).unwrap(), dir);
        tested += 1;
    }
    assert_eq!(tested, 3);
    assert_eq!(
        err("QJournalDir = \"queue\"").to_string(),
        "QJournalDir = \"queue\" is not a valid path: it must be absolute (begin with /)"
    );
}

#[test]
fn booleans_are_0_or_1_and_toml_booleans_are_accepted() {
    let s = Settings::from_toml_str("QLogWriteThrough = 1\nUseChangeJournal = 0").unwrap();
    assert!(s.q_log_write_through());
    assert!(!s.use_change_journal());
    let s = Settings::from_toml_str("QLogWriteThrough = true\nUseChangeJournal = false").unwrap();
    assert!(s.q_log_write_through());
    assert!(!s.use_change_journal());
    assert_eq!(s.get("QLogWriteThrough").unwrap(), "1");
}

#[test]
fn an_unknown_name_suggests_the_setting_meant() {
    let nearest_of = |text: &str| match err(text) {
        SettingsError::UnknownName { nearest, .. } => nearest,
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(
        nearest_of("QMemoryBuferMax = 1024").as_deref(),
        Some("QMemoryBufferMax")
    );
    assert_eq!(
        nearest_of("QJournalSize = 5").as_deref(),
        Some("QJournalFileSize")
    );
    assert_eq!(
        nearest_of("MaxWriteChunk = 5").as_deref(),
        Some("MaxWriteChunkSize")
    );
    // Names are case-sensitive, but a different case is suggested.
    assert_eq!(
        nearest_of("qjournaldir = \"/q\"").as_deref(),
        Some("QJournalDir")
    );
    assert_eq!(
        nearest_of("USECHANGEJOURNAL = 1").as_deref(),
        Some("UseChangeJournal")
    );
    assert_eq!(nearest_of("Banana = 1"), None);
    assert_eq!(nearest_of("[engine]\nQMemoryBufferMax = 512"), None);
    assert_eq!(
        err("QMemoryBuferMax = 1024").to_string(),
        "unknown setting `QMemoryBuferMax` (did you mean `QMemoryBufferMax`?)"
    );
    // A command names a setting in any case; the change names it as the guide does.
    let mut d = Settings::default();
    assert_eq!(d.get("qmemorybuffermax").unwrap(), "256");
    assert_eq!(find("QMEMORYBUFFERMAX").unwrap().name, "QMemoryBufferMax");
    assert_eq!(
        d.set("qmemorybuffermax", "512").unwrap().name,
        "QMemoryBufferMax"
    );
    assert_eq!(d.q_memory_buffer_max_bytes(), 512 << 20);
    assert!(matches!(
        Settings::default().set("LogDirectory", "/x"),
        Err(SettingsError::UnknownName { .. })
    ));
}

const SEVERAL_PROBLEMS: &str = "\
QMemoryBufferMax = 0
QLogWriteThrough = 2
QJournalDir = \"queue\"
MaxWriteChunkSize = 4096
QJournalFileSize = 100
QJornalDir = \"/srv/queue\"
QJournalSpaceMax = 50
MemoryAllocatorCallbackMode = 3
";

#[test]
fn check_file_reports_every_problem_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rilld.toml");
    std::fs::write(&path, SEVERAL_PROBLEMS).unwrap();
    let problems = Settings::check_file_lines(&path);
    let lines: Vec<Option<usize>> = problems.iter().map(|p| p.line).collect();
    assert_eq!(
        lines,
        [Some(1), Some(2), Some(3), Some(5), Some(6), Some(8)]
    );
    let e: Vec<SettingsError> = Settings::check_file(&path);
    assert_out_of_range(&e[0], "QMemoryBufferMax", "0");
    assert_wrong_type(&e[1], "QLogWriteThrough");
    assert!(matches!(&e[2], SettingsError::BadPath { name, .. } if name == "QJournalDir"));
    assert_out_of_range(&e[3], "QJournalFileSize", "100");
    assert!(
        e[3].to_string().contains("QJournalSpaceMax (50 MB)"),
        "{}",
        e[3]
    );
    assert!(
        matches!(&e[4], SettingsError::UnknownName { nearest: Some(n), .. } if n == "QJournalDir")
    );
    assert_out_of_range(&e[5], "MemoryAllocatorCallbackMode", "3");
    // `load` stops at the first.
    assert_out_of_range(&Settings::load(&path).unwrap_err(), "QMemoryBufferMax", "0");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "QMemoryBufferMax = 1024\n").unwrap();
    assert!(Settings::check_file(&good).is_empty());
    let missing = dir.path().join("missing.toml");
    assert!(matches!(
        Settings::check_file(&missing)[..],
        [SettingsError::Io { .. }]
    ));
}

#[test]
fn a_toml_syntax_error_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rilld.toml");
    std::fs::write(&path, "QMemoryBufferMax = 1024\nQLogWriteThrough = = 1\n").unwrap();
    let e = Settings::check_file(&path);
    assert_eq!(e.len(), 1);
    match &e[0] {
        SettingsError::Parse { path: p, detail } => {
            assert_eq!(p, &path);
            assert!(detail.starts_with("line 2: "), "{detail}");
            assert!(!detail.contains('\n'), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    // A key given twice is a syntax error too.
    assert!(matches!(
        err("OpBufferSize = 1\nOpBufferSize = 2"),
        SettingsError::Parse { .. }
    ));
}

#[test]
fn load_needs_the_file_load_or_default_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("rilld.toml");
    assert!(matches!(
        Settings::load(&missing),
        Err(SettingsError::Io { ref source, .. }) if source.kind() == std::io::ErrorKind::NotFound
    ));
    assert_eq!(
        Settings::load_or_default(&missing).unwrap(),
        Settings::default()
    );
    std::fs::write(&missing, "OpBufferSize = 100000\n").unwrap();
    assert_eq!(
        Settings::load_or_default(&missing)
            .unwrap()
            .op_buffer_size(),
        Some(100_000)
    );
    // A file that exists but is bad is an error, not the defaults.
    std::fs::write(&missing, "OpBufferSize = -1\n").unwrap();
    assert!(Settings::load_or_default(&missing).is_err());
}

fn non_default() -> Settings {
    let mut s = Settings::default();
    for (name, value) in [
        ("QMemoryBufferMax", "4095"),
        ("MemoryQueueToDiskThreshold", "75"),
        ("OpBufferSize", "200000"),
        ("QJournalDir", "/srv/rill \"queue\"/été"),
        ("QJournalFileSize", "64"),
        ("QJournalSpaceMax", "0"),
        ("QJournalFreeSpaceMin", "0"),
        ("QLogWriteThrough", "1"),
        ("QueueSizeAlertThreshold", "90"),
        ("MemoryAllocatorCallbackMode", "1"),
        ("MaxWriteChunkSize", "131072"),
        ("UseChangeJournal", "0"),
        ("DataPath", "/data/rill"),
        ("LogDir", "/data/log"),
        ("LoadSourceTarget", "1"),
        ("NetPort", "2500"),
        ("ManagementPort", "7326"),
        ("SourcePendingAcks", "20000"),
        ("NetworkTimeout", "60"),
        ("NetworkRetry", "1"),
        ("AutoReconnect", "0"),
        ("AutoRetransmit", "0"),
        ("HPQueueRatio", "1"),
        ("BandwidthLimit", "10000"),
        ("CompressionLevel", "19"),
        ("MinCompressionFileSize", "0"),
        ("SkipCompressionFileExt", "Doc.PDF,x-tar"),
        ("EncryptNetworkData", "1"),
        ("CalculateOnConnect", "0"),
        ("MaxRemoveOrphansOpSize", "0"),
        ("LogAllOrphans", "1"),
        ("MirrorChunkSize", "1048576"),
        ("SmallFileThreshold", "0"),
        ("MirrorZeroKFiles", "0"),
        ("MirrorOverwrite", "2"),
        ("AutoRemirror", "4"),
        ("EnableSparseFileMirroring", "0"),
        ("DisableAttributeReplication", "1"),
        ("ExtendedAttributes", "1"),
        ("ChecksumAll", "0"),
        ("MaxChecksumBlocks", "4096"),
        ("VerifyLogName", "nightly verify.log"),
        ("VerifyLogAppend", "0"),
        ("VerifyLogLimit", "4096"),
        ("VerifyRetryInterval", "0"),
        ("VerifyRetryLimit", "0"),
        ("TGCloseDelay", "0"),
        ("TGMirrorCapacityHigh", "75"),
        ("TGMirrorCapacityLow", "30"),
        ("TGRetryLocked", "65536"),
        ("TGExecutionRetryLimit", "65536"),
        ("PingFrequency", "1"),
        ("MissedPackets", "2"),
        ("HBExternalRate", "0"),
        ("HBTTL", "0"),
        ("UserIntervention", "0"),
        ("PreFailoverWait", "1"),
        ("PreFailbackWait", "1"),
    ] {
        let change = s.set(name, value).unwrap();
        assert_ne!(change.old, change.new, "{name}");
    }
    s
}

#[test]
fn to_toml_reads_back_as_the_same_settings() {
    let s = non_default();
    // A setting with one allowed value has no other to round-trip.
    let single = |def: &&SettingDef| matches!(def.kind, Kind::Enumeration(v) if v.len() == 1);
    for def in SETTINGS.iter().filter(|d| !single(d)) {
        assert_ne!(
            s.get(def.name).unwrap(),
            def.default.to_string(),
            "{} is still its default: the round trip would not test it",
            def.name
        );
    }
    assert_eq!(Settings::from_toml_str(&s.to_toml()).unwrap(), s);
    let d = Settings::default();
    let text = d.to_toml();
    assert!(
        text.contains("QJournalSpaceMax = \"unlimited\"\n"),
        "{text}"
    );
    assert_eq!(Settings::from_toml_str(&text).unwrap(), d);
    let mut s = Settings::default();
    s.set("QJournalSpaceMax", "1000").unwrap();
    assert_eq!(Settings::from_toml_str(&s.to_toml()).unwrap(), s);
    // The guide writes the default "Unlimited".
    let s = Settings::from_toml_str("QJournalSpaceMax = \"Unlimited\"").unwrap();
    assert_eq!(s, Settings::default());
}

#[test]
fn set_reports_whether_a_restart_is_needed() {
    let mut s = Settings::default();
    let c = s.set("QMemoryBufferMax", "1024").unwrap();
    assert_eq!(
        c,
        Change {
            name: "QMemoryBufferMax",
            old: "256".into(),
            new: "1024".into(),
            restart_required: true,
        }
    );
    assert_eq!(s.q_memory_buffer_max_bytes(), 1 << 30);
    // The same value again: nothing to restart for.
    assert!(
        !s.set("QMemoryBufferMax", " 1024 ")
            .unwrap()
            .restart_required
    );
    let c = s.set("QLogWriteThrough", "1").unwrap();
    assert!(!c.restart_required);
    assert!(s.q_log_write_through());
    s.set("QJournalSpaceMax", "unlimited").unwrap();
    assert_eq!(s.q_journal_space_max_bytes(), None);
}

#[test]
fn queue_file_size_must_fit_in_the_queue_space() {
    let mut s = Settings::default();
    s.set("QJournalFileSize", "100").unwrap();
    let e = s.set("QJournalSpaceMax", "50").unwrap_err();
    assert_out_of_range(&e, "QJournalSpaceMax", "50");
    assert!(
        e.to_string().contains("at least QJournalFileSize (100 MB)"),
        "{e}"
    );
    assert_eq!(s.q_journal_space_max_bytes(), None, "refused, so unchanged");
    // 0 disables disk queuing: no file size to fit.
    s.set("QJournalSpaceMax", "0").unwrap();
    assert!(!s.disk_queue_enabled());
    assert_eq!(s.disk_queue_limit_bytes(), 0);
    s.set("QJournalSpaceMax", "100").unwrap();
    let e = s.set("QJournalFileSize", "101").unwrap_err();
    assert_out_of_range(&e, "QJournalFileSize", "101");
    assert!(
        e.to_string().contains("at most QJournalSpaceMax (100 MB)"),
        "{e}"
    );
    assert!(Settings::from_toml_str("QJournalFileSize = 100\nQJournalSpaceMax = 100").is_ok());
    // Reported on the setting the file gives, with its default partner named.
    assert_eq!(
        err("QJournalSpaceMax = 1").to_string(),
        "QJournalSpaceMax = 1 is out of range: allowed \"unlimited\", 0 (disk queuing \
         disabled), or 1 to 4294967295 (MB), and at least QJournalFileSize (5 MB)"
    );
}

#[test]
fn accessors_convert_units() {
    let mut s = Settings::default();
    s.set("QMemoryBufferMax", "1000").unwrap();
    s.set("MemoryQueueToDiskThreshold", "75").unwrap();
    assert_eq!(s.memory_queue_to_disk_threshold_bytes(), 750 << 20);
    s.set("QJournalSpaceMax", "4294967295").unwrap();
    assert_eq!(
        s.q_journal_space_max_bytes(),
        Some(u64::from(u32::MAX) << 20)
    );
    // At most MAX_QUEUE_FILES files of QJournalFileSize.
    assert_eq!(s.disk_queue_limit_bytes(), MAX_QUEUE_FILES * (5 << 20));
    s.set("QJournalSpaceMax", "1000").unwrap();
    assert_eq!(s.disk_queue_limit_bytes(), 1000 << 20);
    s.set("QJournalSpaceMax", "unlimited").unwrap();
    assert_eq!(s.disk_queue_limit_bytes(), MAX_QUEUE_FILES * (5 << 20));
    for (text, mode) in [
        ("0", CallbackMode::AutoDisconnect),
        ("1", CallbackMode::StopDraining),
        ("2", CallbackMode::QueueToDisk),
    ] {
        s.set("MemoryAllocatorCallbackMode", text).unwrap();
        assert_eq!(s.memory_allocator_callback_mode(), mode);
        assert_eq!((mode as u8).to_string(), text);
    }
    s.set("OpBufferSize", "1").unwrap();
    assert_eq!(s.op_buffer_size(), Some(1));
}

#[test]
fn apply_live_takes_what_needs_no_restart_and_names_the_rest() {
    let mut running = Settings::default();
    let mut edited = Settings::default();
    edited.set("QLogWriteThrough", "1").unwrap(); // live
    edited.set("QJournalFileSize", "10").unwrap(); // live
    edited.set("QJournalSpaceMax", "20").unwrap(); // live
    edited.set("QMemoryBufferMax", "1024").unwrap(); // restart
    edited.set("LogDir", "/srv/log").unwrap(); // restart
    let pending = running.apply_live(&edited);
    assert_eq!(pending, ["QMemoryBufferMax", "LogDir"]);
    assert!(running.q_log_write_through());
    assert_eq!(running.q_journal_file_size_bytes(), 10 << 20);
    assert_eq!(running.q_journal_space_max_bytes(), Some(20 << 20));
    assert_eq!(running.q_memory_buffer_max_bytes(), 256 << 20);
    assert_eq!(running.log_dir(), Path::new("/var/log/rill"));
    // Still pending until the restart; nothing else differs.
    assert_eq!(running.apply_live(&edited), ["QMemoryBufferMax", "LogDir"]);
    let mut same = edited.clone();
    assert!(same.apply_live(&edited).is_empty());
    assert_eq!(same, edited);
}

#[test]
fn settings_related_by_a_rule_share_their_restart_rule() {
    // apply_live mixes old and new values of settings by restart rule; that mix can only
    // break a rule between settings if the rule spans both kinds.
    let mut running = Settings::default();
    running.set("QJournalFileSize", "4000").unwrap();
    let mut edited = Settings::default();
    edited.set("QJournalSpaceMax", "100").unwrap();
    let mut mixed = running.clone();
    mixed.apply_live(&edited);
    assert!(mixed.cross_problems(&|_| false).is_empty(), "{mixed:?}");
    assert_eq!(
        find("QJournalFileSize").unwrap().restart,
        find("QJournalSpaceMax").unwrap().restart
    );
}

#[test]
fn cli_list_get_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rilld.toml");
    std::fs::write(&config, "QMemoryBufferMax = 1024\n").unwrap();
    let run = |cmd: SettingsCommand| {
        let mut out = Vec::new();
        let code = cli(cmd, &config, &mut out).unwrap();
        (code, String::from_utf8(out).unwrap())
    };

    let (code, out) = run(SettingsCommand::List);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..3],
        [
            "QMemoryBufferMax = 1024 (default 256; a change needs a restart)",
            "    allowed: 32 to 4095 (MB)",
            "    system memory, in MB, for the memory queue; past it operations are queued to disk",
        ],
        "{out}"
    );
    // a block a setting, each beginning at the left margin, in the table's order
    let heads: Vec<&str> = lines
        .iter()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(heads, SETTINGS.iter().map(|d| d.name).collect::<Vec<_>>());
    for line in &lines {
        assert!(
            line.chars().count() <= 100,
            "{} columns: {line}",
            line.chars().count()
        );
    }

    assert_eq!(
        run(SettingsCommand::Get {
            name: "QMemoryBufferMax".into()
        }),
        (0, "1024\n".into())
    );
    let mut out = Vec::new();
    let e = cli(
        SettingsCommand::Get {
            name: "QMemoryBuffer".into(),
        },
        &config,
        &mut out,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("did you mean `QMemoryBufferMax`"),
        "{e}"
    );

    assert_eq!(
        run(SettingsCommand::Check { file: None }),
        (0, "ok\n".into())
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, SEVERAL_PROBLEMS).unwrap();
    let (code, out) = run(SettingsCommand::Check {
        file: Some(bad.clone()),
    });
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(out.starts_with(&format!(
        "{}:1: QMemoryBufferMax = 0 is out of range",
        bad.display()
    )));

    // A bad --config file is an error for list and get.
    std::fs::write(&config, "QMemoryBufferMax = 1\n").unwrap();
    let mut out = Vec::new();
    let e = cli(SettingsCommand::List, &config, &mut out).unwrap_err();
    assert!(
        format!("{e:#}").contains("QMemoryBufferMax = 1 is out of range"),
        "{e:#}"
    );
    // A missing one shows the defaults and says so.
    std::fs::remove_file(&config).unwrap();
    let (code, out) = run(SettingsCommand::List);
    assert_eq!(code, 0);
    assert!(out.starts_with("# "), "{out}");
}

#[test]
fn the_subcommand_parses() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: SettingsCommand,
    }
    let c = Cli::try_parse_from(["settings", "get", "QJournalDir"]).unwrap();
    assert_eq!(
        c.cmd,
        SettingsCommand::Get {
            name: "QJournalDir".into()
        }
    );
    // A negative value reaches the setting's own check, not clap's.
    let c = Cli::try_parse_from(["settings", "set", "OpBufferSize", "-1"]).unwrap();
    assert_eq!(
        c.cmd,
        SettingsCommand::Set {
            name: "OpBufferSize".into(),
            value: "-1".into()
        }
    );
    let c = Cli::try_parse_from(["settings", "check", "/etc/rill/rilld.toml"]).unwrap();
    assert_eq!(
        c.cmd,
        SettingsCommand::Check {
            file: Some("/etc/rill/rilld.toml".into())
        }
    );
}
