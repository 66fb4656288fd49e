//! rillctl's failover commands: the requests they make, what they refuse before
//! connecting, and the failover state in the status.

use super::*;
use rill_mgmt::FailoverState;

#[test]
fn status_shows_a_failed_over_job_and_its_refused_source() {
    let session = TargetSessionStatus {
        job: "web".into(),
        failover_condition: true,
        failover_state: FailoverState::FailedOver,
        refused_after_failover: 3,
        ..TargetSessionStatus::default()
    };
    let report = StatusReport {
        target: Some(TargetStatus {
            sessions: vec![session],
            ..TargetStatus::default()
        }),
        ..StatusReport::default()
    };
    let text = status(&report);
    assert!(
        text.contains("Failed Over, condition met, source refused 3x"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    let row = &json["target"]["sessions"][0];
    assert_eq!(row["failoverState"], "Failed Over");
    assert_eq!(row["failoverCondition"], true);
    assert_eq!(row["refusedAfterFailover"], 3);
}

#[test]
fn failover_commands_ask_for_the_job_with_their_mode() {
    for (args, line) in [
        (
            &["failover", "web"][..],
            r#"{"op":"failover","name":"web","mode":"live"}"#,
        ),
        (
            &["failover", "web", "--test"][..],
            r#"{"op":"failover","name":"web","mode":"test"}"#,
        ),
        (
            &["failover", "web", "--undo-test"][..],
            r#"{"op":"failover","name":"web","mode":"undo_test"}"#,
        ),
        (
            &["failback", "web"][..],
            r#"{"op":"failback","name":"web"}"#,
        ),
        (
            &["failover-scripts", "web", "--pre-failover", "/bin/pre"][..],
            r#"{"op":"failover_scripts","name":"web","scripts":{"pre_failover":"/bin/pre"}}"#,
        ),
    ] {
        let (code, _, err, lines) = against_fake_rilld(Response::done("done"), args);
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
        assert_eq!(lines, [line], "{args:?}");
    }
}

#[test]
fn bad_failover_commands_are_refused_before_connecting() {
    let e = parse_err(&["failover", "web", "--test", "--undo-test"]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = parse_err(&["failover", "bad name"]);
    assert!(e.contains("bad name"), "{e}");
    let cli = parse(&["failover-scripts", "web", "--post-failback", "post.sh"]).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run(cli, &mut out, &mut err), 1);
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.contains("the post-failback script post.sh is not an absolute path"),
        "{err}"
    );
}
