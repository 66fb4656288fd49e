//! The receiver's order check.

use super::*;

#[test]
fn increasing_sequences_apply_and_gaps_are_allowed() {
    let mut c = SeqCheck::new(0);
    for s in [1, 2, 5, 6, 100] {
        assert_eq!(c.check(s).unwrap(), SeqVerdict::Apply);
    }
    assert_eq!(c.previous(), Some(100));
}

#[test]
fn resends_up_to_last_applied_are_skipped() {
    let mut c = SeqCheck::new(10);
    assert_eq!(c.last_applied(), 10);
    for s in [7, 8, 10] {
        assert_eq!(c.check(s).unwrap(), SeqVerdict::Duplicate, "{s}");
    }
    assert_eq!(c.check(11).unwrap(), SeqVerdict::Apply);
}

#[test]
fn a_sequence_not_above_the_previous_is_refused() {
    let mut c = SeqCheck::new(10);
    c.check(12).unwrap();
    for s in [12, 11, 3] {
        let e = c.check(s).unwrap_err();
        assert!(matches!(e, ProtoError::OutOfOrder { got, expected_above: 12 } if got == s));
        assert!(e.to_string().contains("must be greater than 12"), "{e}");
    }
    // Resends must keep their order too.
    let mut c = SeqCheck::new(10);
    c.check(9).unwrap();
    assert!(matches!(
        c.check(8),
        Err(ProtoError::OutOfOrder {
            got: 8,
            expected_above: 9
        })
    ));
    assert_eq!(
        c.check(8).unwrap_err().refusal().map(|f| matches!(
            f,
            Frame::Refused {
                code: refuse::OUT_OF_ORDER,
                ..
            }
        )),
        Some(true)
    );
}

#[test]
fn a_refused_sequence_does_not_move_the_mark() {
    let mut c = SeqCheck::new(0);
    c.check(5).unwrap();
    assert!(c.check(4).is_err());
    assert_eq!(c.check(6).unwrap(), SeqVerdict::Apply);
}
