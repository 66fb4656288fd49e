//! Replication sets: which paths a job protects.
//!
//! A set is a list of rules as the reference guide defines them (chapter 4): a path (a
//! directory, or a directory and a wildcard name such as `/data/*.tmp`), `Inc` or `Exc`,
//! and `Rec` when the rule also applies to the subdirectories. A path is protected when
//! the rule that applies to it most specifically includes it. Most specific means: the
//! rule whose directory is deepest; at equal depth a wildcard rule beats a plain one (it
//! names fewer files), and `Exc` beats `Inc` (an administrator who wrote both meant the
//! exception). No applicable rule means not protected.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::event::{NameMatch, NameRule};

/// One rule of a replication set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The directory the rule is anchored at (absolute, normalised).
    pub dir: PathBuf,
    /// A wildcard for the names in `dir` (`*` any run, `?` one character), if any.
    pub pattern: Option<String>,
    pub include: bool,
    pub recursive: bool,
}

/// Why a rule could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("replication set rule `{0}`: the path must be absolute")]
    Relative(String),
    #[error("replication set rule `{0}`: `..` is not allowed in a rule's path")]
    DotDot(String),
    #[error("replication set rule `{0}`: wildcards are allowed only in the last component")]
    WildcardDir(String),
}

impl Rule {
    /// Parses a rule's path: wildcards (`*`, `?`) only in its last component.
    pub fn new(path: &str, include: bool, recursive: bool) -> Result<Rule, RuleError> {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(RuleError::Relative(path.into()));
        }
        let mut dir = PathBuf::from("/");
        let comps: Vec<&str> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_str().unwrap_or("\u{fffd}")),
                _ => None,
            })
            .collect();
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(RuleError::DotDot(path.into()));
        }
        let wild = |s: &str| s.contains(['*', '?']);
        let mut pattern = None;
        for (i, c) in comps.iter().enumerate() {
            if wild(c) {
                if i + 1 != comps.len() {
                    return Err(RuleError::WildcardDir(path.into()));
                }
                pattern = Some(c.to_string());
            } else {
                dir.push(c);
            }
        }
        Ok(Rule {
            dir,
            pattern,
            include,
            recursive,
        })
    }

    /// The rule's specificity (higher wins).
    fn rank(&self) -> (usize, u8, u8) {
        (
            self.dir.components().count(),
            u8::from(self.pattern.is_some()),
            u8::from(!self.include),
        )
    }

    /// If the rule applies to `path`, its specificity (higher wins).
    fn applies(&self, path: &Path) -> Option<(usize, u8, u8)> {
        let parent = path.parent()?;
        let name = path.file_name()?.to_str();
        let rank = self.rank();
        match &self.pattern {
            None if path == self.dir => Some(rank),
            None if parent == self.dir => Some(rank),
            None if self.recursive && path.starts_with(&self.dir) => Some(rank),
            None => None,
            Some(pat) => {
                let placed =
                    parent == self.dir || (self.recursive && parent.starts_with(&self.dir));
                (placed && name.is_some_and(|n| wildcard(pat.as_bytes(), n.as_bytes())))
                    .then_some(rank)
            }
        }
    }
}

/// A replication set: rules, and the directories they touch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicationSet {
    pub rules: Vec<Rule>,
}

impl ReplicationSet {
    pub fn new(rules: Vec<Rule>) -> ReplicationSet {
        ReplicationSet { rules }
    }

    /// Which names directly in the directory `dir` (absolute) the set protects, as rules
    /// on names alone that a target can apply to the names it has there (see
    /// [`protected_by`]): the rules that can apply to a name in `dir`, most specific
    /// first, so that the first one matching a name is the one [`Self::protects`] would
    /// pick for it.
    pub fn names_protected_in(&self, dir: &Path) -> NamesProtected {
        let mut matching: Vec<((usize, u8, u8), NameRule)> = Vec::new();
        for r in &self.rules {
            let here = r.dir == dir || (r.recursive && dir.starts_with(&r.dir));
            let names = match &r.pattern {
                // A rule on a directory applies to that directory itself, by its name.
                None if r.dir.parent() == Some(dir) => r
                    .dir
                    .file_name()
                    .map(|n| NameMatch::Exact(n.to_os_string())),
                None => here.then_some(NameMatch::All),
                Some(p) => here.then(|| NameMatch::Wildcard(p.into())),
            };
            if let Some(names) = names {
                let include = r.include;
                matching.push((r.rank(), NameRule { names, include }));
            }
        }
        // Stable: rules of equal rank include alike (`Exc` ranks higher), so their order
        // does not matter.
        matching.sort_by_key(|m| std::cmp::Reverse(m.0));
        let mut rules: Vec<NameRule> = matching.into_iter().map(|(_, r)| r).collect();
        // Nothing after a rule for every name is ever asked; a name no rule matches is
        // not protected, so exclusions at the end say nothing.
        if let Some(all) = rules.iter().position(|r| r.names == NameMatch::All) {
            rules.truncate(all + 1);
        }
        while rules.last().is_some_and(|r| !r.include) {
            rules.pop();
        }
        match rules.as_slice() {
            [] => NamesProtected::None,
            [only] if only.names == NameMatch::All => NamesProtected::Every,
            // More than a `Prune` may carry: left alone rather than judged.
            many if many.len() > rill_abi::record::PRUNE_RULES_MAX => NamesProtected::None,
            _ => NamesProtected::Some(rules),
        }
    }

    /// Whether the set protects `path` (absolute).
    pub fn protects(&self, path: &Path) -> bool {
        self.rules
            .iter()
            .filter_map(|r| r.applies(path).map(|rank| (rank, r.include)))
            .max_by_key(|(rank, _)| *rank)
            .is_some_and(|(_, include)| include)
    }
}

/// Which names of a directory a replication set protects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamesProtected {
    /// Every name (no exclusion can apply to a name there).
    Every,
    /// No name.
    None,
    /// The names these rules protect (see [`protected_by`]).
    Some(Vec<NameRule>),
}

/// Whether `rules` (most specific first, as [`ReplicationSet::names_protected_in`] makes
/// them) protect the name `name`: the first rule that matches it decides, and a name none
/// matches is not protected. No rules at all: every name is (a set without exclusions).
pub fn protected_by(rules: &[NameRule], name: &[u8]) -> bool {
    if rules.is_empty() {
        return true;
    }
    rules
        .iter()
        .find(|r| match &r.names {
            NameMatch::All => true,
            NameMatch::Exact(n) => n.as_bytes() == name,
            // As `Rule::applies`: a wildcard matches only names that are valid UTF-8.
            NameMatch::Wildcard(p) => {
                std::str::from_utf8(name).is_ok() && wildcard(p.as_bytes(), name)
            }
        })
        .is_some_and(|r| r.include)
}

/// Glob matching of one name: `*` any run of bytes, `?` exactly one. Iterative with one
/// backtrack point, so it is linear in practice and never recursive on hostile patterns.
fn wildcard(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rules: &[(&str, bool, bool)]) -> ReplicationSet {
        ReplicationSet::new(
            rules
                .iter()
                .map(|&(p, i, r)| Rule::new(p, i, r).unwrap())
                .collect(),
        )
    }

    /// The names protected in `dir` judged by the derived rules, checked against
    /// `protects` for each of `names`.
    fn judged(s: &ReplicationSet, dir: &str, names: &[&str]) -> Vec<bool> {
        let rules = match s.names_protected_in(Path::new(dir)) {
            NamesProtected::Every => Vec::new(),
            NamesProtected::None => return names.iter().map(|_| false).collect(),
            NamesProtected::Some(rules) => rules,
        };
        names
            .iter()
            .map(|n| {
                let by_rules = protected_by(&rules, n.as_bytes());
                let path = Path::new(dir).join(n);
                assert_eq!(by_rules, s.protects(&path), "{}", path.display());
                by_rules
            })
            .collect()
    }

    #[test]
    fn a_directorys_name_rules_protect_what_the_set_protects() {
        let s = set(&[
            ("/data", true, true),
            ("/data/logs/*.tmp", false, false),
            ("/data/cache", false, true),
            ("/data/cache/keep", true, false),
            ("/data/*.bak", false, true),
        ]);
        let names = ["a", "x.tmp", "x.bak", "cache", "keep", "logs", "b.tmpx"];
        assert_eq!(
            s.names_protected_in(Path::new("/other")),
            NamesProtected::None
        );
        assert_eq!(
            s.names_protected_in(Path::new("/data/cache/x")),
            NamesProtected::None,
            "beneath a recursive exclusion"
        );
        // Only a recursive wildcard exclusion reaches /data/logs/old: names of a
        // directory beneath /data/logs are not what `/data/logs/*.tmp` names.
        assert_eq!(
            judged(&s, "/data/logs/old", &names),
            [true, true, false, true, true, true, true]
        );
        assert_eq!(
            judged(&s, "/data", &names),
            [true, true, false, false, true, true, true]
        );
        assert_eq!(
            judged(&s, "/data/logs", &names),
            [true, false, false, true, true, true, true]
        );
        assert_eq!(
            judged(&s, "/data/cache", &names),
            [false, false, false, false, true, false, false]
        );
        let NamesProtected::Some(rules) = s.names_protected_in(Path::new("/data/logs")) else {
            panic!()
        };
        let wild = |p: &str, include| NameRule {
            names: NameMatch::Wildcard(p.into()),
            include,
        };
        let all = NameRule {
            names: NameMatch::All,
            include: true,
        };
        assert_eq!(
            rules,
            [wild("*.tmp", false), wild("*.bak", false), all],
            "most specific first"
        );

        let plain = set(&[("/data", true, true), ("/data/cache", false, true)]);
        assert_eq!(
            plain.names_protected_in(Path::new("/data/a")),
            NamesProtected::Every,
            "no exclusion can apply: as cheap as without rules"
        );
        assert!(!judged(&plain, "/data", &names)[3]);
        let non_recursive = set(&[("/data", true, false)]);
        assert_eq!(
            non_recursive.names_protected_in(Path::new("/data/sub")),
            NamesProtected::None
        );
    }

    #[test]
    fn recursive_include_with_exceptions() {
        let s = set(&[
            ("/data", true, true),
            ("/data/cache", false, true),
            ("/data/*.tmp", false, true),
        ]);
        assert!(s.protects(Path::new("/data")));
        assert!(s.protects(Path::new("/data/a/b.txt")));
        assert!(!s.protects(Path::new("/data/cache/x")));
        assert!(!s.protects(Path::new("/data/cache")));
        assert!(
            !s.protects(Path::new("/data/a/b.tmp")),
            "recursive wildcard exclusion"
        );
        assert!(!s.protects(Path::new("/other/x")));
        assert!(
            !s.protects(Path::new("/database/x")),
            "prefixes match whole components"
        );
    }

    #[test]
    fn non_recursive_rules_stop_at_their_directory() {
        let s = set(&[("/data", true, false)]);
        assert!(s.protects(Path::new("/data/top.txt")));
        assert!(!s.protects(Path::new("/data/sub/deep.txt")));
    }

    #[test]
    fn deeper_rules_win_and_exc_breaks_ties() {
        let s = set(&[("/data", false, true), ("/data/keep", true, true)]);
        assert!(s.protects(Path::new("/data/keep/f")));
        assert!(!s.protects(Path::new("/data/other/f")));
        let tie = set(&[("/data", true, true), ("/data", false, true)]);
        assert!(!tie.protects(Path::new("/data/f")));
        let wild = set(&[("/data", false, false), ("/data/*.db", true, false)]);
        assert!(wild.protects(Path::new("/data/x.db")));
        assert!(!wild.protects(Path::new("/data/x.log")));
    }

    #[test]
    fn bad_rules_are_errors() {
        assert_eq!(
            Rule::new("data", true, true),
            Err(RuleError::Relative("data".into()))
        );
        assert_eq!(
            Rule::new("/a/../b", true, true),
            Err(RuleError::DotDot("/a/../b".into()))
        );
        assert_eq!(
            Rule::new("/a/*/b", true, true),
            Err(RuleError::WildcardDir("/a/*/b".into()))
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*.tmp", b"a.tmp"));
        assert!(wildcard(b"*", b""));
        assert!(wildcard(b"a?c", b"abc"));
        assert!(!wildcard(b"a?c", b"ac"));
        assert!(wildcard(b"*a*b*", b"xxaxxbxx"));
        assert!(!wildcard(b"*a*b", b"xxaxxbxx"));
        let long = vec![b'a'; 5000];
        assert!(
            !wildcard(b"*a*a*a*a*b", &long),
            "no exponential backtracking"
        );
    }
}
