//! `set_in_file` and `rilld settings set`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::super::*;
use super::assert_out_of_range;

const COMMENTED: &str = "\
# rilld settings for host-a (edited by hand)

# Bigger queue for the nightly batch.
QMemoryBufferMax = 1024   # was 512
QLogWriteThrough = 1

# Keep the disk queue on the fast volume.
QJournalDir = \"/var/lib/rill/queue\"
";

fn setup(text: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rill.toml");
    if let Some(text) = text {
        std::fs::write(&path, text).unwrap();
    }
    (dir, path)
}

/// The names of the files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn set_in_file_changes_one_value_and_keeps_every_other_line_and_comment() {
    let (dir, path) = setup(Some(COMMENTED));
    let change = set_in_file(&path, "QMemoryBufferMax", "2048").unwrap();
    assert_eq!(
        change,
        Change {
            name: "QMemoryBufferMax",
            old: "1024".into(),
            new: "2048".into(),
            restart_required: true,
        }
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        COMMENTED.replace("QMemoryBufferMax = 1024 ", "QMemoryBufferMax = 2048 ")
    );
    assert_eq!(
        files_in(dir.path()),
        ["rill.toml"],
        "no temporary file left"
    );

    let change = set_in_file(&path, "QLogWriteThrough", "0").unwrap();
    assert!(!change.restart_required);
    let change = set_in_file(&path, "QJournalDir", "/srv/queue").unwrap();
    assert_eq!(change.new, "/srv/queue");
    let s = Settings::load(&path).unwrap();
    assert_eq!(s.q_memory_buffer_max_bytes(), 2048 << 20);
    assert!(!s.q_log_write_through());
    assert_eq!(s.q_journal_dir(), Path::new("/srv/queue"));
    let text = std::fs::read_to_string(&path).unwrap();
    for kept in [
        "# rilld settings for host-a (edited by hand)\n\n# Bigger queue",
        "QMemoryBufferMax = 2048   # was 512\n",
        "\n# Keep the disk queue on the fast volume.\nQJournalDir = \"/srv/queue\"\n",
    ] {
        assert!(text.contains(kept), "{kept:?} lost:\n{text}");
    }
}

#[test]
fn set_in_file_adds_a_missing_setting_with_its_description() {
    let (_dir, path) = setup(Some(COMMENTED));
    let change = set_in_file(&path, "SkipCompressionFileExt", "mp3.ZIP").unwrap();
    assert_eq!(change.new, "mp3.zip");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(COMMENTED), "{text}");
    let added = &text[COMMENTED.len()..];
    let def = find("SkipCompressionFileExt").unwrap();
    assert_eq!(
        added,
        format!(
            "\n{}SkipCompressionFileExt = [\"mp3\", \"zip\"]\n",
            def.file_comment()
        )
    );
    let s = Settings::load(&path).unwrap();
    assert_eq!(s.skip_compression_file_ext(), ["mp3", "zip"]);
    assert_eq!(s.q_memory_buffer_max_bytes(), 1024 << 20);
}

#[test]
fn set_in_file_creates_a_missing_file_and_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etc/rill/rill.toml");
    let change = set_in_file(&path, "TGMirrorCapacityHigh", "40").unwrap();
    assert_eq!((change.old.as_str(), change.new.as_str()), ("20", "40"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# "), "{text}");
    assert!(text.ends_with("\nTGMirrorCapacityHigh = 40\n"), "{text}");
    let mut want = Settings::default();
    want.set("TGMirrorCapacityHigh", "40").unwrap();
    assert_eq!(Settings::load(&path).unwrap(), want);
}

#[test]
fn set_in_file_refuses_bad_values_without_touching_the_file() {
    let (dir, path) = setup(Some(COMMENTED));
    let before = std::fs::metadata(&path).unwrap();
    let refuse = |name: &str, value: &str| -> SettingsError {
        let e = set_in_file(&path, name, value).unwrap_err();
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), COMMENTED);
        assert_eq!(
            (after.ino(), after.mtime(), after.mtime_nsec()),
            (before.ino(), before.mtime(), before.mtime_nsec()),
            "{name} = {value} rewrote the file"
        );
        e
    };
    assert_out_of_range(&refuse("QMemoryBufferMax", "0"), "QMemoryBufferMax", "0");
    assert!(matches!(
        refuse("QLogWriteThrough", "yes"),
        SettingsError::WrongType { .. }
    ));
    assert!(matches!(
        refuse("QMemoryBuferMax", "512"),
        SettingsError::UnknownName { nearest: Some(n), .. } if n == "QMemoryBufferMax"
    ));
    assert!(matches!(
        refuse("SkipCompressionFileExt", "tar/gz"),
        SettingsError::BadList { .. }
    ));
    let e = refuse("TGMirrorCapacityLow", "30");
    assert!(
        e.to_string().contains("TGMirrorCapacityHigh (20 percent)"),
        "{e}"
    );
    assert_eq!(files_in(dir.path()), ["rill.toml"]);
}

#[test]
fn set_in_file_refuses_a_file_with_other_problems() {
    for (text, first) in [
        (
            "QMemoryBufferMax = 1024\nQLogWriteThrough = 2\n",
            "QLogWriteThrough = 2",
        ),
        ("QMemoryBufferMax = = 1\n", "not a valid TOML file"),
        ("QJornalDir = \"/srv\"\n", "unknown setting `QJornalDir`"),
    ] {
        let (_dir, path) = setup(Some(text));
        let e = set_in_file(&path, "OpBufferSize", "10").unwrap_err();
        assert!(e.to_string().contains(first), "{text}: {e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
    // A bad value is fixed by setting it.
    let (_dir, path) = setup(Some("QMemoryBufferMax = 1\nOpBufferSize = 5\n"));
    set_in_file(&path, "QMemoryBufferMax", "64").unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "QMemoryBufferMax = 64\nOpBufferSize = 5\n"
    );
}

#[test]
fn set_in_file_keeps_the_file_s_mode_and_a_symbolic_link() {
    let (dir, path) = setup(Some("OpBufferSize = 5\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink("rill.toml", &link).unwrap();
    set_in_file(&link, "OpBufferSize", "6").unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "OpBufferSize = 6\n"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600);
}

#[test]
fn cli_set_says_whether_a_restart_is_needed() {
    let (_dir, config) = setup(Some(COMMENTED));
    let run = |name: &str, value: &str| {
        let mut out = Vec::new();
        let cmd = SettingsCommand::Set {
            name: name.into(),
            value: value.into(),
        };
        cli(cmd, &config, &mut out).map(|code| (code, String::from_utf8(out).unwrap()))
    };
    assert_eq!(
        run("QMemoryBufferMax", "2048").unwrap(),
        (
            0,
            "QMemoryBufferMax: 1024 -> 2048 (restart required: takes effect when rilld next \
             starts)\n"
                .into()
        )
    );
    assert_eq!(
        run("TGRetryLocked", "10").unwrap(),
        (
            0,
            "TGRetryLocked: 3 -> 10 (no restart required: takes effect when rilld re-reads \
             its settings (SIGHUP))\n"
                .into()
        )
    );
    assert_eq!(
        run("TGRetryLocked", "10").unwrap(),
        (0, "TGRetryLocked: 10 -> 10 (unchanged)\n".into())
    );
    // the engine does not move its open databases and queue: the locations wait for a start
    for (name, value) in [
        ("DataPath", "/srv/rill"),
        ("QJournalDir", "/srv/rill/queue"),
    ] {
        let (code, out) = run(name, value).unwrap();
        assert_eq!(code, 0);
        assert!(
            out.ends_with("(restart required: takes effect when rilld next starts)\n"),
            "{out}"
        );
    }
    let e = run("NetPort", "80").unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("NetPort = 80 is out of range: allowed 1025 to 65535 (TCP port)"),
        "{msg}"
    );
    assert!(msg.starts_with("setting NetPort in "), "{msg}");
    let s = Settings::load(&config).unwrap();
    assert_eq!(s.net_port(), 1500);
    assert_eq!(s.tg_retry_locked(), std::time::Duration::from_secs(10));
    // a name in another case is the setting, and the file gets the guide's spelling
    let (_, out) = run("qlogwritethrough", "0").unwrap();
    assert!(out.starts_with("QLogWriteThrough: 1 -> 0 "), "{out}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\nQLogWriteThrough = 0"), "{text}");
    assert!(!text.contains("qlogwritethrough"), "{text}");
    assert!(!Settings::load(&config).unwrap().q_log_write_through());
}
