//! Replication sets: which paths a job protects.
//!
//! A set is a list of rules as the reference guide defines them (chapter 4): a path (a
//! directory, or a directory and a wildcard name such as `/data/*.tmp`), `Inc` or `Exc`,
//! and `Rec` when the rule also applies to the subdirectories. A path is protected when
//! the rule that applies to it most specifically includes it. Most specific means: the
//! rule whose directory is deepest; at equal depth a wildcard rule beats a plain one (it
//! names fewer files), and `Exc` beats `Inc` (an administrator who wrote both meant the
//! exception). No applicable rule means not protected.

use std::path::{Component, Path, PathBuf};

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

    /// If the rule applies to `path`, its specificity (higher wins).
    fn applies(&self, path: &Path) -> Option<(usize, u8, u8)> {
        let parent = path.parent()?;
        let name = path.file_name()?.to_str();
        let depth = self.dir.components().count();
        let rank = (
            depth,
            u8::from(self.pattern.is_some()),
            u8::from(!self.include),
        );
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

    /// Whether the set protects every name directly in the directory `dir` (absolute):
    /// a rule includes them and no exclusion could apply to any of them.
    pub fn protects_every_name_in(&self, dir: &Path) -> bool {
        let any_name = dir.join("\u{1}any");
        let excluded_beneath = self.rules.iter().any(|r| {
            !r.include && (r.dir.starts_with(dir) || (r.recursive && dir.starts_with(&r.dir)))
        });
        !excluded_beneath && self.protects(&any_name)
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

    #[test]
    fn orphans_are_judged_only_where_every_name_is_protected() {
        let s = set(&[
            ("/data", true, true),
            ("/data/logs/*.tmp", false, false),
            ("/data/cache", false, true),
        ]);
        assert!(s.protects_every_name_in(Path::new("/data/a")));
        // An exclusion beneath, in it, or above it (recursive) could spare a name.
        assert!(!s.protects_every_name_in(Path::new("/data")));
        assert!(!s.protects_every_name_in(Path::new("/data/logs")));
        assert!(!s.protects_every_name_in(Path::new("/data/cache/x")));
        assert!(s.protects_every_name_in(Path::new("/data/logs/old")));
        assert!(!s.protects_every_name_in(Path::new("/other")));
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
