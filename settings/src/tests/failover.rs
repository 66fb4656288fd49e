//! The failover monitoring settings.

use std::time::Duration;

use super::super::*;
use super::{assert_out_of_range, err};

/// Each as the guide's Linux section gives it: the default as `get` shows it and what
/// is allowed (none needs a restart).
const GUIDE: &[(&str, &str, &str)] = &[
    ("PingFrequency", "5", "1 to 65535 (seconds)"),
    ("MissedPackets", "5", "1 to 65535 (pings)"),
    (
        "HBExternalRate",
        "3",
        "0 (heartbeats off) or 1 to 65535 (seconds)",
    ),
    ("HBTTL", "10", "0 (never) or 1 to 65535 (seconds)"),
    (
        "UserIntervention",
        "1",
        "0 (user intervention is not required) or 1 (user intervention is required)",
    ),
    ("PreFailoverWait", "0", "0 (do not wait) or 1 (wait)"),
    ("PreFailbackWait", "0", "0 (do not wait) or 1 (wait)"),
];

#[test]
fn the_failover_settings_have_the_guide_s_defaults_and_ranges() {
    let d = Settings::default();
    for &(name, default, allowed) in GUIDE {
        let def = find(name).unwrap();
        assert_eq!(d.get(name).unwrap(), default, "{name}");
        assert!(!def.restart, "{name}");
        assert!(
            def.allowed().starts_with(allowed),
            "{name}: {}",
            def.allowed()
        );
    }
    assert_eq!(d.ping_frequency(), Duration::from_secs(5));
    assert_eq!(d.missed_packets(), 5);
    assert_eq!(d.hb_external_rate(), Some(Duration::from_secs(3)));
    assert_eq!(d.hb_ttl(), Some(Duration::from_secs(10)));
    assert!(d.user_intervention());
    assert!(!d.pre_failover_wait() && !d.pre_failback_wait());
}

#[test]
fn the_failover_settings_refuse_values_out_of_range_naming_the_range() {
    for (name, value) in [
        ("PingFrequency", "0"),
        ("PingFrequency", "65536"),
        ("MissedPackets", "0"),
        ("HBExternalRate", "65536"),
        ("HBTTL", "70000"),
        ("UserIntervention", "2"),
        ("PreFailoverWait", "2"),
        ("PreFailbackWait", "7"),
    ] {
        assert_out_of_range(&err(&format!("{name} = {value}")), name, value);
    }
    let mut s = Settings::default();
    s.set("UserIntervention", "0").unwrap();
    s.set("HBExternalRate", "0").unwrap();
    s.set("HBTTL", "0").unwrap();
    s.set("PreFailoverWait", "1").unwrap();
    assert!(!s.user_intervention() && s.pre_failover_wait());
    assert_eq!((s.hb_external_rate(), s.hb_ttl()), (None, None));
}
