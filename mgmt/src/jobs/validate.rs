//! Checks of what an administrator gives a job: its name, paths, target and rules.
//!
//! A job arrives from the management API as JSON someone typed, so every field is checked
//! before it is stored, and every refusal says which field, what was wrong and what is
//! allowed. The stored form is normalised (paths without `//` or `.`, rules absolute, the
//! host without brackets) so the engine never has to re-interpret it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Component, Path, PathBuf};

use rill_ops::repset::{Rule, RuleError};

/// The longest job name.
pub const MAX_NAME_LEN: usize = 64;
/// The replication engine's port on a target when none is given (the guide's 1500).
pub const DEFAULT_TARGET_PORT: u16 = 1500;
/// The longest peer fingerprint or name a target session is keyed by.
pub const MAX_PEER_LEN: usize = 256;

const NAME_ALLOWED: &str = "1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'";
const TARGET_FORM: &str = "expected HOST[:PORT] with PORT 1 to 65535 (default 1500), \
                           e.g. backup.example.com, 10.0.0.2:1500 or [fd00::2]:1500";

/// What is wrong with a job's specification or a target session's key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("job name {name:?}: {why}; allowed: {NAME_ALLOWED}")]
    Name { name: String, why: String },
    #[error("{what} {path:?}: {why}")]
    Path {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error("target {target:?}: {why}; {TARGET_FORM}")]
    Target { target: String, why: String },
    #[error("replication set rule {pattern:?}: {why}")]
    Rule { pattern: String, why: String },
    #[error("peer {peer:?}: {why}")]
    Peer { peer: String, why: String },
}

/// Checks a job name: [`NAME_ALLOWED`]. Names become parts of file names and command
/// lines, hence the small alphabet and the refusal of `.` and `..`.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    let bad = |why: String| {
        Err(SpecError::Name {
            name: name.into(),
            why,
        })
    };
    if name.is_empty() {
        return bad("the name is empty".into());
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return bad(format!("the name is {len} characters long"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(format!("{c:?} is not allowed"));
    }
    if name == "." || name == ".." {
        return bad(format!("`{name}` names a directory"));
    }
    Ok(())
}

/// Checks an absolute path (`what` names it in errors: "source", "target path") and
/// returns it normalised (`/a//b/./c/` is `/a/b/c`).
pub fn check_path(what: &'static str, path: &Path) -> Result<PathBuf, SpecError> {
    let shown = path.to_string_lossy().into_owned();
    let bad = |why: &str| {
        Err(SpecError::Path {
            what,
            path: shown.clone(),
            why: why.into(),
        })
    };
    let Some(text) = path.to_str() else {
        return bad("is not valid UTF-8 (the management API carries paths as JSON text)");
    };
    if text.is_empty() {
        return bad("is empty");
    }
    if text.contains('\0') {
        return bad("contains a NUL byte");
    }
    if !path.is_absolute() {
        return bad("is not absolute: give the full path, starting with /");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return bad("contains `..`: give the path without it");
    }
    Ok(path.components().collect())
}

/// Checks one rule of a job whose (normalised) source is `source`, and returns its
/// absolute, normalised pattern. A relative pattern (`*.tmp`, `cache`, `logs/*.gz`) is
/// taken relative to the source, which is what someone typing `--exclude '*.tmp'` means.
/// Wildcards (`*`, `?`) may appear only in the last component (see [`rill_ops::repset`]),
/// and the rule must lie at or under the source: a job replicates nothing else.
pub fn normalise_rule(source: &Path, pattern: &str) -> Result<String, SpecError> {
    let bad = |why: String| {
        Err(SpecError::Rule {
            pattern: pattern.into(),
            why,
        })
    };
    if pattern.is_empty() {
        return bad("the pattern is empty".into());
    }
    if pattern.contains('\0') {
        return bad("contains a NUL byte".into());
    }
    let full = if pattern.starts_with('/') {
        PathBuf::from(pattern)
    } else {
        source.join(pattern)
    };
    let Some(full_text) = full.to_str() else {
        return bad("the source is not valid UTF-8".into());
    };
    let rule = match Rule::new(full_text, true, true) {
        Ok(rule) => rule,
        Err(RuleError::Relative(_)) => return bad("the path must be absolute".into()),
        Err(RuleError::DotDot(_)) => return bad("`..` is not allowed".into()),
        Err(RuleError::WildcardDir(_)) => {
            return bad("wildcards (* and ?) are allowed only in the last component".into())
        }
    };
    if !rule.dir.starts_with(source) {
        return bad(format!(
            "lies outside the job's source {}; a job replicates only what is under its source",
            source.display()
        ));
    }
    let normal: PathBuf = full.components().collect();
    match normal.to_str() {
        Some(s) => Ok(s.to_string()),
        None => bad("is not valid UTF-8".into()),
    }
}

/// Parses a target as written by an administrator: `HOST`, `HOST:PORT`, `[IPV6]` or
/// `[IPV6]:PORT`. Returns the host (IPv6 without brackets) and the port (default
/// [`DEFAULT_TARGET_PORT`]).
pub fn parse_target(text: &str) -> Result<(String, u16), SpecError> {
    let bad = |why: String| {
        Err(SpecError::Target {
            target: text.into(),
            why,
        })
    };
    if text.is_empty() {
        return bad("the target is empty".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains white space or control characters".into());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return bad("`[` without a closing `]`".into());
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return bad(format!("`{inside}` in brackets is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return bad(format!("unexpected `{after}` after `]`")),
            },
        };
        (inside.to_string(), port)
    } else {
        let (host, port) = match text.matches(':').count() {
            0 => (text, None),
            1 => match text.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            },
            _ if text.parse::<Ipv6Addr>().is_ok() => {
                return bad(format!(
                    "an IPv6 address goes in brackets: [{text}] or [{text}]:{DEFAULT_TARGET_PORT}"
                ))
            }
            _ => return bad("too many `:`".into()),
        };
        if let Err(why) = check_host(host) {
            return bad(why);
        }
        (host.to_string(), port)
    };
    let port = match port {
        None => DEFAULT_TARGET_PORT,
        Some(p) => match parse_port(p) {
            Ok(port) => port,
            Err(why) => return bad(why),
        },
    };
    Ok((host, port))
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("the port after `:` is empty".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port `{text}` is not a number"));
    }
    match text.parse::<u32>() {
        Ok(0) => Err("port 0 is not allowed".into()),
        Ok(p) => u16::try_from(p).map_err(|_| format!("port {p} is out of range")),
        Err(_) => Err(format!("port `{text}` is out of range")),
    }
}

/// Checks a host: an IPv4 address, an IPv6 address (without brackets) or a DNS name.
/// Returns why not, for the caller's error.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if host.contains(':') {
        return match host.parse::<Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "`{host}` is neither a host name nor an IPv6 address (the port goes in its \
                 own field)"
            )),
        };
    }
    if host.len() > 253 {
        return Err(format!(
            "the host name is {} characters long (at most 253)",
            host.len()
        ));
    }
    // A fully qualified name may end in a dot.
    let labels: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(format!(
                "`{host}` has an empty label (`..` or a leading dot)"
            ));
        }
        if label.len() > 63 {
            return Err(format!("`{label}` is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
        {
            return Err(format!(
                "{c:?} is not allowed in a host name (letters, digits, '-', '_' and '.')"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` starts or ends with '-'"));
        }
    }
    if labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("`{host}` is not a valid IPv4 address"));
    }
    Ok(())
}

/// `host:port`, with an IPv6 host in brackets, as [`parse_target`] reads it back.
pub fn format_target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Checks the peer a target session is keyed by (a certificate fingerprint or name):
/// printable, non-empty, at most [`MAX_PEER_LEN`] bytes.
pub fn check_peer(peer: &str) -> Result<(), SpecError> {
    let why = if peer.is_empty() {
        "is empty".to_string()
    } else if peer.len() > MAX_PEER_LEN {
        format!("is {} bytes long (at most {MAX_PEER_LEN})", peer.len())
    } else if peer.chars().any(char::is_control) {
        "contains control characters".to_string()
    } else {
        return Ok(());
    };
    Err(SpecError::Peer {
        peer: peer.into(),
        why,
    })
}
