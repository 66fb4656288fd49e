use super::*;

#[test]
fn names_are_validated() {
    for good in ["a", "web-1", "db.main", "A_b-C.9", &"x".repeat(64)] {
        assert_eq!(check_name(good), Ok(()), "{good}");
    }
    for (bad, why) in [
        ("", "empty"),
        (&"x".repeat(65) as &str, "65 characters"),
        ("a b", "' '"),
        ("a/b", "'/'"),
        ("é", "'é'"),
        ("a\0", "'\\0'"),
        (".", "directory"),
        ("..", "directory"),
    ] {
        let e = check_name(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad:?}: {e}");
        assert!(e.contains("allowed: 1 to 64 characters"), "{e}");
    }
}

#[test]
fn targets_parse() {
    let ok = |t: &str| parse_target(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    assert_eq!(ok("backup"), ("backup".into(), 1500));
    assert_eq!(
        ok("backup.example.com:1600"),
        ("backup.example.com".into(), 1600)
    );
    assert_eq!(ok("10.0.0.2"), ("10.0.0.2".into(), 1500));
    assert_eq!(ok("10.0.0.2:65535"), ("10.0.0.2".into(), 65535));
    assert_eq!(ok("[::1]"), ("::1".into(), 1500));
    assert_eq!(ok("[fd00::2]:1"), ("fd00::2".into(), 1));
    assert_eq!(ok("host.example."), ("host.example.".into(), 1500));
    assert_eq!(format_target("fd00::2", 1), "[fd00::2]:1");
    assert_eq!(format_target("h", 2), "h:2");
    for (bad, why) in [
        ("", "the target is empty"),
        ("host:", "the port after `:` is empty"),
        ("host:0", "port 0 is not allowed"),
        ("host:65536", "port 65536 is out of range"),
        ("host:99999999999", "out of range"),
        ("host:http", "port `http` is not a number"),
        ("host:-1", "not a number"),
        ("::1", "an IPv6 address goes in brackets: [::1]"),
        ("a:b:c", "too many `:`"),
        ("[::1", "without a closing `]`"),
        ("[::1]x", "unexpected `x` after `]`"),
        ("[nope]:1", "`nope` in brackets is not an IPv6 address"),
        ("[::1]:0", "port 0"),
        ("bad host", "white space"),
        ("a..b", "empty label"),
        ("-a.b", "starts or ends with '-'"),
        ("300.1.1.1", "not a valid IPv4 address"),
        ("h@st", "'@' is not allowed"),
        (":1500", "the host is empty"),
    ] {
        let e = parse_target(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad:?}: {e}");
        assert!(e.contains("expected HOST[:PORT]"), "{e}");
    }
}

#[test]
fn guide_words_round_trip() {
    for w in DataState::ALL {
        let json = serde_json::to_string(w).unwrap();
        assert_eq!(json, format!("\"{w}\""));
        assert_eq!(serde_json::from_str::<DataState>(&json).unwrap(), *w);
        assert_eq!(w.to_string().to_lowercase().parse::<DataState>(), Ok(*w));
    }
    assert_eq!(DataState::MirrorRequired.to_string(), "Mirror Required");
    assert_eq!(DataState::Ok.to_string(), "OK");
    let e = serde_json::from_str::<JobState>("\"running\"").unwrap_err();
    assert!(
        e.to_string()
            .contains(r#"expected "Stopped", "Running" or "Paused""#),
        "{e}"
    );
    assert_eq!(format!("{:>9}|", JobState::Paused), "   Paused|");
}

/// The job `web` of `/data`, without rules, to `target`.
fn web_to(target: JobTarget) -> JobSpec {
    JobSpec {
        name: "web".into(),
        source: "/data".into(),
        target,
        rules: vec![],
    }
}

#[test]
fn a_network_target_is_written_as_the_three_fields_it_always_was() {
    let spec = web_to(JobTarget::Network {
        host: "fd00::2".into(),
        port: 1500,
        path: "/replica".into(),
    });
    let json = r#"{"name":"web","source":"/data","target_host":"fd00::2","target_port":1500,"target_path":"/replica","rules":[]}"#;
    assert_eq!(serde_json::to_string(&spec).unwrap(), json);
    assert_eq!(serde_json::from_str::<JobSpec>(json).unwrap(), spec);
    assert_eq!(spec.target.address().as_deref(), Some("[fd00::2]:1500"));
    assert_eq!(spec.target.to_string(), "[fd00::2]:1500 /replica");
}

#[test]
fn a_local_target_is_its_path_alone() {
    let spec = web_to(JobTarget::Local {
        path: "/replica".into(),
    });
    let json = r#"{"name":"web","source":"/data","target_path":"/replica","rules":[]}"#;
    assert_eq!(serde_json::to_string(&spec).unwrap(), json);
    assert_eq!(serde_json::from_str::<JobSpec>(json).unwrap(), spec);
    assert_eq!(spec.target.address(), None);
    assert_eq!(spec.target.to_string(), "/replica");
    assert_eq!(
        spec.validated().unwrap().target.path(),
        std::path::Path::new("/replica")
    );
}

#[test]
fn a_host_without_a_port_or_a_port_without_a_host_is_refused() {
    for (json, missing) in [
        (
            r#"{"name":"a","source":"/d","target_host":"h","target_path":"/r"}"#,
            "missing field `target_port`",
        ),
        (
            r#"{"name":"a","source":"/d","target_port":1,"target_path":"/r"}"#,
            "missing field `target_host`",
        ),
        (
            r#"{"name":"a","source":"/d","target_host":"h","target_port":1}"#,
            "missing field `target_path`",
        ),
    ] {
        let e = serde_json::from_str::<JobSpec>(json)
            .unwrap_err()
            .to_string();
        assert!(e.contains(missing), "{json}: {e}");
    }
    let e = serde_json::from_str::<JobSpec>(
        r#"{"name":"a","source":"/d","target_host":"h","target_port":70000,"target_path":"/r"}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("expected u16"), "{e}");
}
