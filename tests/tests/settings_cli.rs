//! `rill-driver get|set` and bad input on the command line, as an administrator meets it
//! (and `rilld settings get|set` for the rule on setting names the two share).
//!
//! Every rejected value must exit 1 with a message naming the setting, the value and what
//! is allowed, and must leave the settings file untouched; an unknown name must suggest the
//! nearest one. Every test passes its own temporary settings file (never /etc/rill).
//! Tests that `set` valid values hold the [`PinnedGuard`], because `set` also applies the
//! value to a loaded pinned driver that another test may be using.

use std::process::Output;

use rill_tests::process::run_driver;
use rill_tests::{require_kernel_support, PinnedGuard, SettingsFile, TestDir};
use serde_json::json;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts `set NAME VALUE` is rejected: exit 1, a message naming NAME, `mention` (the
/// value or, for a list, its bad item) and "allowed", no panic, the file unchanged.
fn assert_rejected(settings: &SettingsFile, name: &str, value: &str, mention: &str) {
    let before = settings.text();
    let out = run_driver(&settings.path(), &["set", name, value]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "set {name} {value:?}: expected exit code 1, got {}; stdout: {} stderr: {err}",
        out.status,
        stdout(&out)
    );
    assert!(
        err.contains(name) && err.contains(mention) && err.contains("allowed"),
        "set {name} {value:?}: the message must name the setting, {mention:?} and what is \
         allowed; got: {err}"
    );
    assert!(
        !err.contains("panicked"),
        "set {name} {value:?} panicked: {err}"
    );
    assert_eq!(
        settings.text(),
        before,
        "set {name} {value:?} was rejected but changed the settings file"
    );
}

#[test]
fn every_kind_of_bad_value_is_rejected_with_the_setting_value_and_range() {
    let not_a_dir = tempfile::NamedTempFile::new().unwrap();
    let file = not_a_dir.path().to_str().unwrap().to_string();
    let existing = TestDir::new("settings-ok");
    let ok_dir = existing.path().to_str().unwrap().to_string();
    let relative_in_list = format!("{ok_dir},relative/dir");
    let settings = SettingsFile::new();
    let cases: &[(&str, &str, &str)] = &[
        ("RingSizeMB", "0", "0"),
        ("RingSizeMB", "3", "3"),
        ("RingSizeMB", "2048", "2048"),
        ("RingSizeMB", "abc", "abc"),
        ("RingSizeMB", "1.5", "1.5"),
        ("RingSizeMB", "", "RingSizeMB"),
        ("InlineDataMax", "65537", "65537"),
        ("InlineDataMax", "1e3", "1e3"),
        ("InlineDataMax", "lots", "lots"),
        ("ThrottleStartPercent", "0", "0"),
        ("ThrottleStartPercent", "101", "101"),
        // Above the default StopReplicatingPercent (90).
        ("ThrottleStartPercent", "95", "95"),
        ("ThrottleStartPercent", "half", "half"),
        ("StopReplicatingPercent", "0", "0"),
        ("StopReplicatingPercent", "101", "101"),
        // Below the default ThrottleStartPercent (50).
        ("StopReplicatingPercent", "40", "40"),
        ("StopReplicatingPercent", "x", "x"),
        ("WatchedPaths", "relative/dir", "relative/dir"),
        (
            "WatchedPaths",
            "/nonexistent/rill-test",
            "/nonexistent/rill-test",
        ),
        ("WatchedPaths", &file, &file),
        ("WatchedPaths", &relative_in_list, "relative/dir"),
        ("ExcludedPids", "0", "0"),
        ("ExcludedPids", "x", "x"),
        ("ExcludedPids", "1,x", "x"),
        ("ExcludedPids", "4194305", "4194305"),
        ("ExcludedPids", "12.5", "12.5"),
        ("CaptureMode", "kprobe", "kprobe"),
        ("CaptureMode", "", "CaptureMode"),
    ];
    for (name, value, mention) in cases {
        assert_rejected(&settings, name, value, mention);
    }
}

/// `set InlineDataMax -1` is an administrator's typo like any other bad value; it must not
/// be mistaken for a command-line flag (clap's exit code 2, "unexpected argument").
#[test]
fn negative_values_are_rejected_as_bad_values_not_as_unknown_flags() {
    let settings = SettingsFile::new();
    for (name, value) in [
        ("RingSizeMB", "-1"),
        ("InlineDataMax", "-1"),
        ("ThrottleStartPercent", "-5"),
        ("StopReplicatingPercent", "-90"),
        ("ExcludedPids", "-5"),
    ] {
        assert_rejected(&settings, name, value, value);
    }
}

#[test]
fn unknown_settings_suggest_the_nearest_name() {
    let settings = SettingsFile::new();
    for (args, nearest) in [
        (vec!["set", "RingSizeMb2", "4"], "RingSizeMB"),
        (vec!["set", "InlineDataMx", "16"], "InlineDataMax"),
        (vec!["get", "ThrottleStartPercnt"], "ThrottleStartPercent"),
        (vec!["get", "ExcludedPid"], "ExcludedPids"),
    ] {
        let before = settings.text();
        let out = run_driver(&settings.path(), &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(args[1]) && err.contains(&format!("did you mean {nearest}")),
            "{args:?}: the message must name {} and suggest {nearest}; got: {err}",
            args[1]
        );
        assert_eq!(
            settings.text(),
            before,
            "{args:?} changed the settings file"
        );
    }
}

#[test]
fn get_and_set_round_trip_through_the_settings_file() {
    let g = PinnedGuard::acquire();
    let (d1, d2) = (TestDir::new("watch-a"), TestDir::new("watch-b"));
    let (p1, p2) = (d1.path().to_str().unwrap(), d2.path().to_str().unwrap());
    let file = g.settings_file();
    let both_in = format!("{p1}, {p2}");
    let both_out = format!("{p1},{p2}");
    for (name, value, shown) in [
        ("RingSizeMB", "8", "8"),
        ("InlineDataMax", "1024", "1024"),
        ("InlineDataMax", "0", "0"),
        ("StopReplicatingPercent", "80", "80"),
        ("ThrottleStartPercent", "40", "40"),
        ("ThrottleStartPercent", "80", "80"),
        ("WatchedPaths", both_in.as_str(), both_out.as_str()),
        ("WatchedPaths", "", ""),
        ("ExcludedPids", "10, 20", "10,20"),
        ("ExcludedPids", "", ""),
        ("CaptureMode", "FANOTIFY", "fanotify"),
        ("capturemode", "ebpf", "ebpf"),
    ] {
        let out = g.driver_ok(&["set", name, value]);
        assert!(
            out.contains(shown),
            "set {name} {value:?} should report the new value {shown:?}: {out}"
        );
        let got = g.driver_ok(&["get", name]);
        assert_eq!(
            got.trim_end_matches('\n'),
            shown,
            "get {name} after set {value:?}"
        );
    }
    assert!(
        g.driver_ok(&["set", "RingSizeMB", "16"])
            .contains("next load"),
        "a RingSizeMB change must say it takes effect at the next load"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("RingSizeMB = 16"), "settings file: {text}");
    let all = g.driver_ok(&["get"]);
    for name in [
        "RingSizeMB",
        "InlineDataMax",
        "ThrottleStartPercent",
        "StopReplicatingPercent",
        "WatchedPaths",
        "ExcludedPids",
        "CaptureMode",
    ] {
        assert!(
            all.contains(name),
            "`get` lists every setting; {name} missing:\n{all}"
        );
    }
}

#[test]
fn a_bad_settings_file_is_reported_with_its_path() {
    let settings = SettingsFile::new().with("RingSizeMB", json!(3));
    let out = run_driver(&settings.path(), &["get", "RingSizeMB"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(settings.path().to_str().unwrap()) && err.contains("RingSizeMB"),
        "the message must name the file and the setting: {err}"
    );
    let unknown = SettingsFile::new().with("Bogus", json!(1));
    let out = run_driver(&unknown.path(), &["get"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("Bogus"), "{}", stderr(&out));
}

#[test]
fn capture_of_a_nonexistent_path_fails_clearly() {
    require_kernel_support();
    let settings = SettingsFile::new();
    let missing = "/nonexistent/rill-capture-root";
    for mode in ["ebpf", "fanotify"] {
        let out = run_driver(
            &settings.path(),
            &["capture", "--json", "--mode", mode, "--path", missing],
        );
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "capture --mode {mode} of {missing}: {}; {err}",
            out.status
        );
        assert!(
            err.contains(missing) && !err.contains("panicked"),
            "capture --mode {mode}: the error must name {missing} without a panic: {err}"
        );
        assert!(stdout(&out).is_empty(), "no events: {}", stdout(&out));
    }
}

#[test]
fn attach_without_a_loaded_driver_says_to_load_it() {
    let g = PinnedGuard::acquire();
    let dir = TestDir::new("attach-unloaded");
    let out = g.driver(&[
        "capture",
        "--json",
        "--attach",
        "--path",
        dir.path().to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not loaded") && err.contains("rill-driver load"),
        "{err}"
    );
}

/// Loading eBPF programs needs root: an ordinary user gets a clear refusal, not a kernel
/// error code or a panic. Runs the real binary as `nobody` through setpriv (util-linux).
#[test]
fn an_unprivileged_user_is_told_root_is_needed() {
    require_kernel_support();
    // The checkout may sit where `nobody` cannot reach (under /root): run a copy.
    let dir = tempfile::Builder::new()
        .prefix("rill-nobody-")
        .tempdir_in("/tmp")
        .unwrap();
    let bin = dir.path().join("rill-driver");
    std::fs::copy(rill_tests::driver_bin(), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [dir.path(), bin.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for args in [&["load"][..], &["capture", "--path", "/tmp"][..]] {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        // A settings file that does not exist: the defaults, readable by anyone.
        .args(["--settings", "/nonexistent/rill/driver.toml"])
        .args(args);
        let out = rill_tests::process::output_within(
            cmd,
            std::time::Duration::from_secs(30),
            "rill-driver as nobody",
        );
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "rill-driver {args:?} as nobody: {err}"
        );
        assert!(
            err.contains("must run as root") && !err.contains("panicked"),
            "rill-driver {args:?} as nobody: {err}"
        );
    }
}

/// One rule for both binaries: a command names a setting in any case (the guide's names are
/// case-insensitive, as Windows registry values are); what it prints and what it writes to
/// the settings file use the guide's spelling. A name that is no setting in any case is
/// refused with the one meant.
#[test]
fn setting_names_match_in_any_case_and_come_back_as_the_guide_spells_them() {
    let dir = TestDir::new("setting-names");
    let rilld = |args: &[&str]| {
        std::process::Command::new(rill_tests::rilld_bin())
            .arg("--config")
            .arg(dir.path().join("rill.toml"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = rilld(&["settings", "set", "netport", "1600"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("NetPort: "),
        "the change names the setting as the guide does: {}",
        stdout(&out)
    );
    let text = std::fs::read_to_string(dir.path().join("rill.toml")).unwrap();
    assert!(
        text.contains("NetPort = 1600") && !text.contains("netport"),
        "{text}"
    );
    for name in ["NetPort", "NETPORT", "nEtPoRt"] {
        let out = rilld(&["settings", "get", name]);
        assert_eq!(stdout(&out), "1600\n", "get {name}: {}", stderr(&out));
    }
    let out = rilld(&["settings", "get", "NetPrt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown setting `NetPrt` (did you mean `NetPort`?)"),
        "{}",
        stderr(&out)
    );

    let settings = SettingsFile::new().with("RingSizeMB", json!(8));
    for name in ["RingSizeMB", "ringsizemb", "RINGSIZEMB"] {
        let out = run_driver(&settings.path(), &["get", name]);
        assert_eq!(stdout(&out), "8\n", "get {name}: {}", stderr(&out));
    }
    let g = PinnedGuard::acquire();
    let out = g.driver_ok(&["set", "ringsizemb", "16"]);
    assert!(out.starts_with("RingSizeMB = 16"), "{out}");
    let text = std::fs::read_to_string(g.settings_file()).unwrap();
    assert!(
        text.contains("RingSizeMB = 16") && !text.contains("ringsizemb"),
        "{text}"
    );
}
