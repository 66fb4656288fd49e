//! Enum-like states spelled as the reference guide spells them.
//!
//! Operators read these words in `rillctl status`, in JSON and in the guide side by side,
//! so each state has exactly one spelling ("Mirror Required", "In Progress", "OK") used by
//! `Display`, by serde and by parsing. [`guide_words!`] generates the enum and all three
//! from one list, so they cannot drift apart.

/// Declares an enum whose variants are written as the given words: `Display`, `FromStr`
/// (case-insensitive), `Serialize` and `Deserialize` (exact), `as_str` and `ALL`.
macro_rules! guide_words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The word the guide uses for this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $word, )+
                }
            }

            /// The allowed words, for error messages: `"A", "B" or "C"`.
            pub fn allowed() -> String {
                let words: Vec<String> =
                    Self::ALL.iter().map(|w| format!("\"{}\"", w.as_str())).collect();
                match words.split_last() {
                    Some((last, [])) => last.clone(),
                    Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                    None => String::new(),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad` so that table columns can use width and alignment.
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|w| w.as_str().eq_ignore_ascii_case(text.trim()))
                    .ok_or_else(|| {
                        format!(
                            "`{text}` is not a {}: expected {}",
                            stringify!($name),
                            Self::allowed()
                        )
                    })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                // Exact on the wire: a differently spelt word is a bug somewhere, not input.
                Self::ALL
                    .iter()
                    .copied()
                    .find(|w| w.as_str() == text)
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "`{text}` is not a {}: expected {}",
                            stringify!($name),
                            Self::allowed()
                        ))
                    })
            }
        }
    };
}

pub(crate) use guide_words;

guide_words! {
    /// Whether a job should be replicating: what the administrator asked for, kept across
    /// restarts. A `Running` job is started again when rilld starts.
    #[derive(Default)]
    pub enum JobState {
        #[default]
        Stopped => "Stopped",
        Running => "Running",
        Paused => "Paused",
    }
}

guide_words! {
    /// Where a job's initial (or re-)mirror stands. `Pending` until the first mirror
    /// starts and whenever a remirror is needed; `Complete` once the target holds all of
    /// the source, after which only replication runs.
    #[derive(Default)]
    pub enum MirrorState {
        #[default]
        Pending => "Pending",
        Mirroring => "Mirroring",
        Complete => "Complete",
    }
}

guide_words! {
    /// The guide's "Target Data State" (chapter 4): how good the replica on the target is.
    #[derive(Default)]
    pub enum DataState {
        /// The target connection entry is not associated with a connection (its job was
        /// deleted or has not connected since rilld started).
        Disconnected => "Disconnected",
        /// The data on the target is in a good state.
        Ok => "OK",
        /// A mirror is in progress; the data is not good until it completes.
        Mirroring => "Mirroring",
        /// A remirror is required (incomplete or stopped mirror, or a dropped operation).
        MirrorRequired => "Mirror Required",
        /// Source and target differ because of a failover; restore from the target.
        RestoreRequired => "Restore Required",
        /// A snapshot was applied on the target; restore or remirror.
        SnapshotReverted => "Snapshot Reverted",
        /// The source is low on memory, delaying the state.
        Busy => "Busy",
        /// Target functionality is not loaded on the target.
        NotLoaded => "Not Loaded",
        /// The target's drivers have not finished loading.
        NotReady => "Not Ready",
        /// The state cannot be determined.
        #[default]
        Unknown => "Unknown",
    }
}
