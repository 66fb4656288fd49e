//! Rules between settings: values each valid alone that are not valid together.
//!
//! Every rule relates settings with the same restart rule, so that `apply_live`, which
//! takes only the settings that need no restart, cannot produce a mix that breaks one.

use super::table::{name, Id, Value, SETTINGS};
use super::{Settings, SettingsError};

impl Settings {
    /// Problems between settings, each with the name of the setting it is reported on: of
    /// the settings a rule relates, the one `given` (set, or written in the file) when only
    /// one is, otherwise the first.
    pub(super) fn cross_problems(
        &self,
        given: &dyn Fn(&str) -> bool,
    ) -> Vec<(&'static str, SettingsError)> {
        let mut problems = Vec::new();

        let file = self.int(Id::QJournalFileSize);
        if let Value::Int(space) = *self.value(Id::QJournalSpaceMax) {
            // 0 disables disk queuing: there is no file size to fit.
            if space != 0 && file > space {
                problems.push(self.broken(
                    given,
                    (
                        Id::QJournalFileSize,
                        format!("at most QJournalSpaceMax ({space} MB)"),
                    ),
                    (
                        Id::QJournalSpaceMax,
                        format!("at least QJournalFileSize ({file} MB)"),
                    ),
                ));
            }
        }

        // The guide: the largest TGMirrorCapacityLow is "75 or TGMirrorCapacityHigh,
        // whichever is lower", so the two may be equal.
        let low = self.int(Id::TGMirrorCapacityLow);
        let high = self.int(Id::TGMirrorCapacityHigh);
        if low > high {
            problems.push(self.broken(
                given,
                (
                    Id::TGMirrorCapacityLow,
                    format!("at most TGMirrorCapacityHigh ({high} percent)"),
                ),
                (
                    Id::TGMirrorCapacityHigh,
                    format!("at least TGMirrorCapacityLow ({low} percent)"),
                ),
            ));
        }

        // Both are TCP ports rilld listens on: the second bind would fail at start.
        let net = self.int(Id::NetPort);
        let management = self.int(Id::ManagementPort);
        if net == management {
            problems.push(self.broken(
                given,
                (
                    Id::NetPort,
                    format!("different from ManagementPort ({management})"),
                ),
                (
                    Id::ManagementPort,
                    format!("different from NetPort ({net})"),
                ),
            ));
        }

        problems
    }

    /// The problem of a broken rule between `first` and `second`, each given with what
    /// the rule asks of it: reported on `second` when only it is given, else on `first`.
    fn broken(
        &self,
        given: &dyn Fn(&str) -> bool,
        first: (Id, String),
        second: (Id, String),
    ) -> (&'static str, SettingsError) {
        let on_second = given(name(second.0)) && !given(name(first.0));
        let (id, rule) = if on_second { second } else { first };
        let def = &SETTINGS[id as usize];
        let allowed = format!("{}, and {rule}", def.allowed());
        (
            def.name,
            def.out_of_range(&self.value(id).to_string(), allowed),
        )
    }
}
