//! The transport, mirror, compression and target settings.

use std::path::Path;
use std::time::Duration;

use super::super::*;
use super::{assert_out_of_range, assert_wrong_type, err};

/// Each new setting as the guide's Linux section gives it: the default as `get` shows
/// it, whether a change needs a restart, and what is allowed.
const GUIDE: &[(&str, &str, bool, &str)] = &[
    (
        "LoadSourceTarget",
        "3",
        true,
        "0 (neither source nor target), 1 (source only), 2 (target only), or 3 (source and target)",
    ),
    ("NetPort", "1500", true, "1025 to 65535 (TCP port)"),
    ("ManagementPort", "6326", true, "1025 to 65535 (TCP port)"),
    ("SourcePendingAcks", "2000", false, "100 to 20000 (ops)"),
    ("NetworkTimeout", "120", false, "1 to 4294967295 (seconds)"),
    ("NetworkRetry", "10", false, "1 to 4294967295 (seconds)"),
    ("AutoReconnect", "1", true, "0 or 1"),
    ("AutoRetransmit", "1", false, "0 or 1"),
    (
        "HPQueueRatio",
        "5",
        false,
        "1 to 65535 (replication packets per mirror packet)",
    ),
    (
        "BandwidthLimit",
        "unlimited",
        false,
        "\"unlimited\" or 1 to 4294967295 (Kbps)",
    ),
    (
        "CompressionLevel",
        "0",
        false,
        "0 (compression off) or 1 to 19 (zstd level)",
    ),
    (
        "MinCompressionFileSize",
        "1024",
        false,
        "0 to 4294967295 (bytes)",
    ),
    (
        "SkipCompressionFileExt",
        "mp3.exe.wmv.wma.qt.mpg.mpeg.zip.jpg.jpeg.tiff.rar.cab.tgz.bz.bz2.z.pkg.sea.sit.sitx",
        false,
        "up to 256 file extensions",
    ),
    ("EncryptNetworkData", "0", false, "0 or 1"),
    ("CalculateOnConnect", "1", true, "0 or 1"),
    ("LogAllOrphans", "0", false, "0 or 1"),
    ("MirrorChunkSize", "65536", false, "1 to 1048576 (bytes)"),
    (
        "SmallFileThreshold",
        "65536",
        false,
        "0 to 4294967295 (bytes)",
    ),
    ("MirrorZeroKFiles", "1", false, "0 or 1"),
    (
        "MirrorOverwrite",
        "1",
        false,
        "0 (never overwrite), 1 (always overwrite), or 2 (overwrite if older)",
    ),
    (
        "AutoRemirror",
        "1",
        false,
        "0 (do not compare or send any files), 1 (compare attributes, send the attributes \
         and bytes that differ), 2 (send every file whole), 3 (compare attributes, send \
         whole the files that differ), or 4 (compare attributes and data, send the \
         attributes and bytes that differ)",
    ),
    ("EnableSparseFileMirroring", "1", false, "0 or 1"),
    ("DisableAttributeReplication", "0", true, "0 or 1"),
    ("ExtendedAttributes", "0", false, "0 or 1"),
    ("TGCloseDelay", "1000", false, "0 to 2000 (ms)"),
    ("TGMirrorCapacityHigh", "20", false, "2 to 75 (percent)"),
    ("TGMirrorCapacityLow", "15", false, "1 to 75 (percent)"),
    ("TGRetryLocked", "3", false, "0 to 65536 (seconds)"),
    (
        "TGExecutionRetryLimit",
        "0",
        false,
        "0 (retry until applied) or 1 to 65536 (retries)",
    ),
];

#[test]
fn the_new_settings_have_the_guide_s_defaults_ranges_and_restart_rules() {
    let d = Settings::default();
    for &(name, default, restart, allowed) in GUIDE {
        let def = find(name).unwrap();
        assert_eq!(d.get(name).unwrap(), default, "{name}");
        assert_eq!(def.restart, restart, "{name}");
        assert!(
            def.allowed().starts_with(allowed),
            "{name}: {}",
            def.allowed()
        );
    }
}

#[test]
fn the_new_accessors_give_the_defaults_in_the_engine_s_units() {
    let d = Settings::default();
    assert_eq!(d.load_source_target(), Roles::Both);
    assert!(d.load_source_target().source() && d.load_source_target().target());
    assert_eq!(d.net_port(), 1500);
    assert_eq!(d.management_port(), 6326);
    assert_eq!(d.source_pending_acks(), 2000);
    assert_eq!(d.network_timeout(), Duration::from_secs(120));
    assert_eq!(d.network_keep_alive_interval(), Duration::from_secs(20));
    assert_eq!(d.network_retry(), Duration::from_secs(10));
    assert!(d.auto_reconnect());
    assert!(d.auto_retransmit());
    assert_eq!(d.hp_queue_ratio(), 5);
    assert_eq!(d.bandwidth_limit_bytes_per_sec(), None);
    assert!(!d.compression_enabled());
    assert_eq!(d.compression_level(), 0);
    assert_eq!(d.min_compression_file_size_bytes(), 1024);
    let skip = d.skip_compression_file_ext();
    assert_eq!(skip.len(), 21);
    assert_eq!((skip[0].as_str(), skip[20].as_str()), ("mp3", "sitx"));
    assert!(!d.encrypt_network_data());
    assert!(d.calculate_on_connect());
    assert_eq!(d.mirror_chunk_size_bytes(), 65_536);
    assert_eq!(d.small_file_threshold_bytes(), 65_536);
    assert!(d.mirror_zero_k_files());
    assert_eq!(d.mirror_overwrite(), 1);
    assert!(d.enable_sparse_file_mirroring());
    assert!(!d.disable_attribute_replication());
    assert!(!d.extended_attributes());
    assert_eq!(d.tg_close_delay(), Duration::from_millis(1000));
    assert_eq!(d.tg_mirror_capacity_high(), 20);
    assert_eq!(d.tg_mirror_capacity_low(), 15);
    assert_eq!(d.tg_retry_locked(), Duration::from_secs(3));
    assert_eq!(d.tg_execution_retry_limit(), 0);
}

#[test]
fn accessors_convert_the_new_settings() {
    let mut s = Settings::default();
    for (text, roles, source, target) in [
        ("0", Roles::Neither, false, false),
        ("1", Roles::Source, true, false),
        ("2", Roles::Target, false, true),
        ("3", Roles::Both, true, true),
    ] {
        s.set("LoadSourceTarget", text).unwrap();
        assert_eq!(s.load_source_target(), roles);
        assert_eq!((roles as u8).to_string(), text);
        assert_eq!((roles.source(), roles.target()), (source, target));
    }
    s.set("NetPort", "65535").unwrap();
    assert_eq!(s.net_port(), 65_535);
    s.set("BandwidthLimit", "1000").unwrap();
    assert_eq!(s.bandwidth_limit_bytes_per_sec(), Some(125_000));
    s.set("BandwidthLimit", "Unlimited").unwrap();
    assert_eq!(s.bandwidth_limit_bytes_per_sec(), None);
    s.set("CompressionLevel", "19").unwrap();
    assert!(s.compression_enabled());
    assert_eq!(s.compression_level(), 19);
    s.set("NetworkTimeout", "1").unwrap();
    assert_eq!(s.network_keep_alive_interval(), Duration::from_secs(1) / 6);
    s.set("TGCloseDelay", "0").unwrap();
    assert_eq!(s.tg_close_delay(), Duration::ZERO);
    s.set("TGExecutionRetryLimit", "7").unwrap();
    assert_eq!(s.tg_execution_retry_limit(), 7);
    s.set("MirrorZeroKFiles", "0").unwrap();
    assert!(!s.mirror_zero_k_files());
}

#[test]
fn the_new_settings_refuse_values_outside_the_guide_s_ranges() {
    for (text, name, value, allowed) in [
        (
            "NetPort = 1024",
            "NetPort",
            "1024",
            "1025 to 65535 (TCP port)",
        ),
        (
            "ManagementPort = 65536",
            "ManagementPort",
            "65536",
            "1025 to 65535",
        ),
        (
            "SourcePendingAcks = 99",
            "SourcePendingAcks",
            "99",
            "100 to 20000",
        ),
        (
            "SourcePendingAcks = 20001",
            "SourcePendingAcks",
            "20001",
            "100 to 20000",
        ),
        (
            "NetworkTimeout = 0",
            "NetworkTimeout",
            "0",
            "1 to 4294967295 (seconds)",
        ),
        (
            "NetworkRetry = 0",
            "NetworkRetry",
            "0",
            "1 to 4294967295 (seconds)",
        ),
        ("HPQueueRatio = 0", "HPQueueRatio", "0", "1 to 65535"),
        (
            "BandwidthLimit = 0",
            "BandwidthLimit",
            "0",
            "\"unlimited\" or 1 to",
        ),
        (
            "CompressionLevel = 20",
            "CompressionLevel",
            "20",
            "1 to 19 (zstd level)",
        ),
        (
            "MirrorChunkSize = 1048577",
            "MirrorChunkSize",
            "1048577",
            "1 to 1048576",
        ),
        (
            "TGCloseDelay = 2001",
            "TGCloseDelay",
            "2001",
            "0 to 2000 (ms)",
        ),
        (
            "TGMirrorCapacityHigh = 1",
            "TGMirrorCapacityHigh",
            "1",
            "2 to 75",
        ),
        (
            "TGMirrorCapacityHigh = 76",
            "TGMirrorCapacityHigh",
            "76",
            "2 to 75",
        ),
        (
            "TGMirrorCapacityLow = 0",
            "TGMirrorCapacityLow",
            "0",
            "1 to 75",
        ),
        (
            "TGRetryLocked = 65537",
            "TGRetryLocked",
            "65537",
            "0 to 65536",
        ),
        (
            "TGExecutionRetryLimit = 65537",
            "TGExecutionRetryLimit",
            "65537",
            "0 (retry",
        ),
        (
            "LoadSourceTarget = 4",
            "LoadSourceTarget",
            "4",
            "3 (source and target)",
        ),
        (
            "MirrorOverwrite = 3",
            "MirrorOverwrite",
            "3",
            "0 (never overwrite), 1 (always overwrite), or 2 (overwrite if older)",
        ),
        (
            "AutoRemirror = 5",
            "AutoRemirror",
            "5",
            "3 (compare attributes, send whole the files that differ), or 4 (compare",
        ),
    ] {
        let e = err(text);
        assert_out_of_range(&e, name, value);
        assert!(e.to_string().contains(allowed), "{e}");
    }
    assert_eq!(
        err("CompressionLevel = 22").to_string(),
        "CompressionLevel = 22 is out of range: allowed 0 (compression off) or 1 to 19 (zstd level)"
    );
    assert_wrong_type(&err("AutoReconnect = 2"), "AutoReconnect");
    assert_wrong_type(&err("NetPort = \"1500\""), "NetPort");
    assert_wrong_type(&err("BandwidthLimit = \"none\""), "BandwidthLimit");
}

fn list(s: &Settings) -> Vec<String> {
    s.skip_compression_file_ext()
}

#[test]
fn an_extension_list_is_read_in_the_guide_s_form_and_as_a_toml_array() {
    for text in [
        "SkipCompressionFileExt = \"mp3.ZIP.7z\"",
        "SkipCompressionFileExt = \".mp3, .zip 7z\"",
        "SkipCompressionFileExt = [\"mp3\", \"Zip\", \"7z\"]",
        "SkipCompressionFileExt = [\n  \"mp3\",\n  \"zip\",\n  \"7z\",\n]",
    ] {
        let s = Settings::from_toml_str(text).unwrap();
        assert_eq!(list(&s), ["mp3", "zip", "7z"], "{text}");
        assert_eq!(s.get("SkipCompressionFileExt").unwrap(), "mp3.zip.7z");
    }
    // Empty: every file type is compressed.
    for text in [
        "SkipCompressionFileExt = \"\"",
        "SkipCompressionFileExt = []",
    ] {
        assert!(
            list(&Settings::from_toml_str(text).unwrap()).is_empty(),
            "{text}"
        );
    }
    let mut s = Settings::default();
    for (text, want) in [
        ("mp3.zip", &["mp3", "zip"][..]),
        (" c++ , tar-x_1~ ", &["c++", "tar-x_1~"]),
        ("[\"MP3\", \"été\"]", &["mp3", "été"]),
        ("", &[]),
    ] {
        let change = s.set("SkipCompressionFileExt", text).unwrap();
        assert_eq!(list(&s), want, "{text:?}");
        assert!(!change.restart_required);
        // What get shows, set takes back, and the settings file reads back.
        let shown = s.get("SkipCompressionFileExt").unwrap();
        let mut again = Settings::default();
        again.set("SkipCompressionFileExt", &shown).unwrap();
        assert_eq!(again, s, "{shown:?}");
        assert_eq!(Settings::from_toml_str(&s.to_toml()).unwrap(), s);
    }
    s.set("SkipCompressionFileExt", "mp3.zip").unwrap();
    assert!(s
        .to_toml()
        .contains("\nSkipCompressionFileExt = [\"mp3\", \"zip\"]\n"));
    assert!(s.compression_skipped_for(Path::new("/srv/a/Song.MP3")));
    assert!(s.compression_skipped_for(Path::new("b.tar.zip")));
    assert!(!s.compression_skipped_for(Path::new("zip")));
    assert!(!s.compression_skipped_for(Path::new("/srv/a.zip.txt")));
    assert!(!s.compression_skipped_for(Path::new("/srv/.zip")));
}

#[test]
fn an_extension_list_refuses_what_is_not_an_extension() {
    let long = "x".repeat(33);
    let many = vec!["e"; 257].join(".");
    for (value, why) in [
        ("[\"tar.gz\"]", "\"tar.gz\" contains a dot"),
        ("[\".mp3\"]", "\".mp3\" contains a dot"),
        ("\"mp3.a/b\"", "\"a/b\" contains a slash"),
        ("'mp3.a\\b'", "\"a\\\\b\" contains a slash"),
        ("\"*.mp3\"", "\"*\" contains '*'"),
        ("[\"mp3\", \"\"]", "an extension is empty"),
        ("[\"a b\"]", "\"a b\" contains ' '"),
        (&format!("\"{long}\""), "is longer than 32 characters"),
        (&format!("\"{many}\""), "it has 257 extensions"),
    ] {
        let e = err(&format!("SkipCompressionFileExt = {value}"));
        match &e {
            SettingsError::BadList {
                name,
                why: w,
                allowed,
                ..
            } => {
                assert_eq!(name, "SkipCompressionFileExt");
                assert!(w.contains(why), "{value}: {e}");
                assert!(allowed.contains("up to 256 file extensions"), "{e}");
            }
            other => panic!("{value}: expected BadList, got {other:?}"),
        }
        assert!(
            e.to_string().starts_with(&format!(
                "SkipCompressionFileExt = {value} is not a valid list: "
            )),
            "{e}"
        );
    }
    assert_eq!(
        err("SkipCompressionFileExt = [\"tar.gz\"]").to_string(),
        "SkipCompressionFileExt = [\"tar.gz\"] is not a valid list: \"tar.gz\" contains a dot \
         (write the extension without it); allowed up to 256 file extensions, each 1 to 32 \
         letters, digits, '_', '-', '+' or '~' (no dots or slashes): a TOML array of strings, \
         or one string delimited by periods (\"mp3.zip\"); empty for none"
    );
    let mut s = Settings::default();
    for bad in ["mp3/x", "*.zip", "[\"a.b\"]", &long] {
        assert!(
            matches!(
                s.set("SkipCompressionFileExt", bad),
                Err(SettingsError::BadList { .. })
            ),
            "{bad}"
        );
    }
    // An array written on the command line must be valid TOML.
    assert_wrong_type(
        &s.set("SkipCompressionFileExt", "[mp3]").unwrap_err(),
        "SkipCompressionFileExt",
    );
    assert_eq!(s, Settings::default(), "a refused set changed something");
}

#[test]
fn mirror_capacity_low_may_not_exceed_high_and_the_error_names_both() {
    let mut s = Settings::default();
    let e = s.set("TGMirrorCapacityLow", "21").unwrap_err();
    assert_eq!(
        e.to_string(),
        "TGMirrorCapacityLow = 21 is out of range: allowed 1 to 75 (percent), and at most \
         TGMirrorCapacityHigh (20 percent)"
    );
    let e = s.set("TGMirrorCapacityHigh", "14").unwrap_err();
    assert_eq!(
        e.to_string(),
        "TGMirrorCapacityHigh = 14 is out of range: allowed 2 to 75 (percent), and at least \
         TGMirrorCapacityLow (15 percent)"
    );
    assert_eq!(s, Settings::default(), "refused, so unchanged");
    // The guide: Low's largest value is High, so they may be equal.
    s.set("TGMirrorCapacityLow", "20").unwrap();
    s.set("TGMirrorCapacityHigh", "75").unwrap();
    s.set("TGMirrorCapacityLow", "75").unwrap();
    assert_eq!(
        (s.tg_mirror_capacity_low(), s.tg_mirror_capacity_high()),
        (75, 75)
    );
    // In a file: on the one given, else on Low.
    assert_out_of_range(
        &err("TGMirrorCapacityHigh = 10"),
        "TGMirrorCapacityHigh",
        "10",
    );
    assert_out_of_range(
        &err("TGMirrorCapacityLow = 30"),
        "TGMirrorCapacityLow",
        "30",
    );
    assert_out_of_range(
        &err("TGMirrorCapacityHigh = 10\nTGMirrorCapacityLow = 30"),
        "TGMirrorCapacityLow",
        "30",
    );
    assert!(Settings::from_toml_str("TGMirrorCapacityHigh = 40\nTGMirrorCapacityLow = 30").is_ok());
}

#[test]
fn the_engine_and_management_ports_differ() {
    let mut s = Settings::default();
    let e = s.set("ManagementPort", "1500").unwrap_err();
    assert_eq!(
        e.to_string(),
        "ManagementPort = 1500 is out of range: allowed 1025 to 65535 (TCP port), and \
         different from NetPort (1500)"
    );
    let e = s.set("NetPort", "6326").unwrap_err();
    assert!(
        e.to_string()
            .contains("different from ManagementPort (6326)"),
        "{e}"
    );
    s.set("NetPort", "1600").unwrap();
    s.set("ManagementPort", "1500").unwrap();
    assert_out_of_range(
        &err("NetPort = 7000\nManagementPort = 7000"),
        "NetPort",
        "7000",
    );
}

#[test]
fn the_new_rules_relate_settings_with_the_same_restart_rule() {
    for (a, b) in [
        ("TGMirrorCapacityLow", "TGMirrorCapacityHigh"),
        ("NetPort", "ManagementPort"),
    ] {
        assert_eq!(
            find(a).unwrap().restart,
            find(b).unwrap().restart,
            "{a}, {b}"
        );
    }
    // A reload that lowers High and Low together applies both at once.
    let mut running = Settings::default();
    let mut edited = Settings::default();
    edited.set("TGMirrorCapacityLow", "5").unwrap();
    edited.set("TGMirrorCapacityHigh", "10").unwrap();
    edited.set("NetPort", "1600").unwrap();
    assert_eq!(running.apply_live(&edited), ["NetPort"]);
    assert_eq!(running.tg_mirror_capacity_high(), 10);
    assert_eq!(running.tg_mirror_capacity_low(), 5);
    assert!(running.cross_problems(&|_| false).is_empty());
}
