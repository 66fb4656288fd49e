//! The pinned peers: which certificate fingerprints this host accepts, under which names.
//!
//! The list lives in one TOML file (`trusted-peers.toml`) so an administrator can read and
//! back it up, and so it survives a daemon restart. `rillctl trust add` goes through the
//! running daemon, but the file may also be edited directly (by tests, or by hand): every
//! lookup compares the file's modification time, size and inode with those last read and
//! re-reads it when they differ, so no restart or signal is needed.
//!
//! If a changed file cannot be parsed, the store trusts nobody until it is fixed: a typo
//! while removing a compromised peer must not leave that peer trusted. The error is logged
//! once per change and returned by [`TrustStore::reload`], [`TrustStore::add`] and
//! [`TrustStore::remove`], which refuse to overwrite a file they could not read.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use super::fingerprint::{fingerprint_of_der, parse_fingerprint};
use super::fsutil::{ensure_private_dir, read_optional, write_atomic};
use super::{shorten, TlsError};

/// The trust file inside the directory given to [`TrustStore::open`].
pub const TRUST_FILE: &str = "trusted-peers.toml";

const PEER_NAME_MAX: usize = 64;

/// One pinned peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedPeer {
    /// The administrator's name for the peer, shown in logs when it connects.
    pub name: String,
    /// Canonical fingerprint of the peer's certificate.
    pub fingerprint: String,
    /// When it was pinned (seconds since the Unix epoch; 0 when written by hand without it).
    pub added_unix: u64,
}

/// The file's layout: `[[peer]]` tables. Unknown keys are refused so a misspelt field in a
/// hand edit is reported rather than ignored.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    #[serde(default, rename = "peer")]
    peers: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    fingerprint: String,
    #[serde(default)]
    added_unix: u64,
}

/// What identifies one version of the file; the inode changes on every atomic replacement,
/// which catches two writes within one tick of a coarse file-system clock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Missing,
    /// Its metadata could not be read (permissions, I/O error).
    Unreadable,
    Present {
        modified: Option<SystemTime>,
        len: u64,
        inode: u64,
    },
}

struct State {
    peers: Vec<TrustedPeer>,
    stamp: Stamp,
    /// Why the current file could not be used; while set, nobody is trusted.
    broken: Option<String>,
}

/// The set of pinned peers, shared by the verifiers of every connection (`Arc<TrustStore>`).
pub struct TrustStore {
    path: PathBuf,
    state: RwLock<State>,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TrustStore {
    /// Opens the store in `dir` (created with mode 0700 if missing); a missing file is an
    /// empty store, an unreadable or invalid one is an error naming it.
    pub fn open(dir: &Path) -> Result<TrustStore, TlsError> {
        ensure_private_dir(dir)?;
        let store = TrustStore {
            path: dir.join(TRUST_FILE),
            state: RwLock::new(State {
                peers: Vec::new(),
                stamp: Stamp::Missing,
                broken: None,
            }),
        };
        store.reload()?;
        Ok(store)
    }

    /// The file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file now, whether or not it looks changed.
    pub fn reload(&self) -> Result<(), TlsError> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        self.read_into(&mut state)
    }

    /// Pins `peer`, given as a fingerprint or as a PEM certificate, under `name`.
    pub fn add(&self, name: &str, peer: &str) -> Result<TrustedPeer, TlsError> {
        validate_peer_name(name)?;
        let fingerprint = fingerprint_of_peer(peer)?;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        // Start from the file as it is now, so a hand edit made meanwhile is kept.
        self.read_into(&mut state)?;
        if let Some(existing) = state.peers.iter().find(|p| p.name == name) {
            return Err(TlsError::DuplicateName {
                name: name.to_string(),
                fingerprint: existing.fingerprint.clone(),
            });
        }
        if let Some(existing) = state.peers.iter().find(|p| p.fingerprint == fingerprint) {
            return Err(TlsError::DuplicateFingerprint {
                fingerprint,
                name: existing.name.clone(),
            });
        }
        let added = TrustedPeer {
            name: name.to_string(),
            fingerprint,
            added_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let mut peers = state.peers.clone();
        peers.push(added.clone());
        self.save(&mut state, peers)?;
        log::info!(
            "trusted peer {} (fingerprint {}) added to {}",
            added.name,
            added.fingerprint,
            self.path.display()
        );
        Ok(added)
    }

    /// Unpins the peer called `name`; `Ok(false)` when there is none.
    pub fn remove(&self, name: &str) -> Result<bool, TlsError> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        self.read_into(&mut state)?;
        let mut peers = state.peers.clone();
        let before = peers.len();
        peers.retain(|p| p.name != name);
        if peers.len() == before {
            return Ok(false);
        }
        self.save(&mut state, peers)?;
        log::info!("trusted peer {name} removed from {}", self.path.display());
        Ok(true)
    }

    /// The pinned peers, in the order they were added.
    pub fn list(&self) -> Vec<TrustedPeer> {
        self.refresh();
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if state.broken.is_some() {
            return Vec::new();
        }
        state.peers.clone()
    }

    /// The name under which `fingerprint` (any accepted spelling) is pinned, if it is.
    pub fn is_trusted(&self, fingerprint: &str) -> Option<String> {
        let fingerprint = parse_fingerprint(fingerprint).ok()?;
        self.refresh();
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if state.broken.is_some() {
            return None;
        }
        state
            .peers
            .iter()
            .find(|p| p.fingerprint == fingerprint)
            .map(|p| p.name.clone())
    }

    /// Re-reads the file if it changed since it was last read. Lookups cannot return an
    /// error, so a failure trusts nobody and is logged once per change of the file.
    fn refresh(&self) {
        let current = self.stamp_now();
        let unchanged = |state: &State| match &current {
            Ok(stamp) => state.stamp == *stamp,
            Err(_) => state.stamp == Stamp::Unreadable,
        };
        if unchanged(&self.state.read().unwrap_or_else(PoisonError::into_inner)) {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if unchanged(&state) {
            return;
        }
        let result = match current {
            Ok(_) => self.read_into(&mut state),
            Err(e) => {
                state.stamp = Stamp::Unreadable;
                state.peers.clear();
                state.broken = Some(e.to_string());
                Err(e)
            }
        };
        if let Err(e) = result {
            log::error!("{e}; trusting no peer until it is fixed");
        }
    }

    /// Reads the file into `state`; on failure the state trusts nobody and keeps the stamp
    /// of the broken file, so the error is not logged again until the file changes.
    fn read_into(&self, state: &mut State) -> Result<(), TlsError> {
        let stamp = self.stamp_now()?;
        let loaded = match read_optional(&self.path) {
            Ok(None) => Ok(Vec::new()),
            Ok(Some(bytes)) => parse_trust_file(&self.path, &bytes),
            Err(e) => Err(e),
        };
        state.stamp = stamp;
        match loaded {
            Ok(peers) => {
                state.peers = peers;
                state.broken = None;
                Ok(())
            }
            Err(e) => {
                state.peers.clear();
                state.broken = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn save(&self, state: &mut State, peers: Vec<TrustedPeer>) -> Result<(), TlsError> {
        let file = TrustFile {
            peers: peers
                .iter()
                .map(|p| FileEntry {
                    name: p.name.clone(),
                    fingerprint: p.fingerprint.clone(),
                    added_unix: p.added_unix,
                })
                .collect(),
        };
        let body = toml::to_string(&file).map_err(|e| TlsError::Corrupt {
            path: self.path.clone(),
            reason: format!("cannot encode the trusted peers: {e}"),
        })?;
        let text = format!(
            "# Peers this rill host accepts over TLS, pinned by certificate fingerprint.\n\
             # Managed with `rillctl trust add|remove|list`; hand edits are picked up live.\n\n\
             {body}"
        );
        write_atomic(&self.path, text.as_bytes(), 0o600)?;
        state.peers = peers;
        state.broken = None;
        state.stamp = self.stamp_now()?;
        Ok(())
    }

    fn stamp_now(&self) -> Result<Stamp, TlsError> {
        match fs::metadata(&self.path) {
            Ok(meta) => Ok(Stamp::Present {
                modified: meta.modified().ok(),
                len: meta.len(),
                inode: meta.ino(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Stamp::Missing),
            Err(source) => Err(TlsError::Io {
                action: "inspect",
                path: self.path.clone(),
                source,
            }),
        }
    }
}

/// Checks a peer name: 1 to 64 of `A-Z a-z 0-9 . _ -`, so it is safe in logs, file names
/// and command lines.
pub fn validate_peer_name(name: &str) -> Result<(), TlsError> {
    super::validate_name("peer", name, PEER_NAME_MAX)
}

/// A fingerprint as typed, or the fingerprint of a pasted PEM certificate.
fn fingerprint_of_peer(peer: &str) -> Result<String, TlsError> {
    if !peer.contains("-----BEGIN") {
        return parse_fingerprint(peer);
    }
    let mut certs = CertificateDer::pem_slice_iter(peer.as_bytes());
    let cert = match certs.next() {
        Some(Ok(cert)) => cert,
        Some(Err(e)) => {
            return Err(TlsError::InvalidCertificate {
                reason: format!("bad PEM: {e}"),
            })
        }
        None => {
            return Err(TlsError::InvalidCertificate {
                reason: "the PEM text holds no CERTIFICATE block".to_string(),
            })
        }
    };
    if certs.next().is_some() {
        // Pinning the first of a chain would usually pin the wrong one; make it explicit.
        return Err(TlsError::InvalidCertificate {
            reason: "the PEM text holds more than one certificate".to_string(),
        });
    }
    Ok(fingerprint_of_der(&cert))
}

fn parse_trust_file(path: &Path, bytes: &[u8]) -> Result<Vec<TrustedPeer>, TlsError> {
    let corrupt = |reason: String| TlsError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| corrupt(format!("not UTF-8: {e}")))?;
    let file: TrustFile = toml::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let mut peers: Vec<TrustedPeer> = Vec::with_capacity(file.peers.len());
    for (index, entry) in file.peers.into_iter().enumerate() {
        let which = format!("peer #{} ({:?})", index + 1, shorten(&entry.name));
        validate_peer_name(&entry.name).map_err(|e| corrupt(format!("{which}: {e}")))?;
        let fingerprint =
            parse_fingerprint(&entry.fingerprint).map_err(|e| corrupt(format!("{which}: {e}")))?;
        if peers.iter().any(|p| p.name == entry.name) {
            return Err(corrupt(format!("{which}: the name appears twice")));
        }
        if let Some(other) = peers.iter().find(|p| p.fingerprint == fingerprint) {
            return Err(corrupt(format!(
                "{which}: its fingerprint is already pinned as {:?}",
                other.name
            )));
        }
        peers.push(TrustedPeer {
            name: entry.name,
            fingerprint,
            added_unix: entry.added_unix,
        });
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    const FP_A: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
    const FP_B: &str = "bb00000000000000000000000000000000000000000000000000000000000002";

    fn store() -> (tempfile::TempDir, TrustStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = TrustStore::open(dir.path()).expect("open");
        (dir, store)
    }

    #[test]
    fn add_list_remove_and_lookup_in_any_spelling() {
        let (_dir, store) = store();
        assert!(store.list().is_empty());
        let added = store.add("target-1", FP_A).expect("add");
        assert_eq!(added.fingerprint, FP_A);
        assert!(added.added_unix > 0);
        store
            .add("target.2_b", &FP_B.to_ascii_uppercase())
            .expect("add");
        let names: Vec<String> = store.list().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["target-1", "target.2_b"]);
        assert_eq!(store.is_trusted(FP_B).as_deref(), Some("target.2_b"));
        let colons = FP_A
            .as_bytes()
            .chunks(2)
            .map(|pair| String::from_utf8_lossy(pair).to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(store.is_trusted(&colons).as_deref(), Some("target-1"));
        assert_eq!(store.is_trusted("not a fingerprint"), None);

        assert!(store.remove("target-1").expect("remove"));
        assert!(!store.remove("target-1").expect("remove again"));
        assert_eq!(store.is_trusted(FP_A), None);
        assert_eq!(store.list().len(), 1);
    }

    #[test]
    fn duplicates_and_bad_input_are_clear_errors() {
        let (_dir, store) = store();
        store.add("t1", FP_A).expect("add");
        let error = store.add("t1", FP_B).expect_err("same name");
        assert!(matches!(error, TlsError::DuplicateName { .. }), "{error}");
        assert!(error.to_string().contains(FP_A), "{error}");
        let error = store.add("t2", FP_A).expect_err("same fingerprint");
        assert!(
            error.to_string().contains("already trusted as \"t1\""),
            "{error}"
        );
        for bad in ["", "a b", "a/b", "ü", &"n".repeat(65)] {
            let error = store.add(bad, FP_B).expect_err(bad);
            assert!(error.to_string().contains("allowed are 1 to 64"), "{error}");
        }
        assert!(store.add(&"n".repeat(64), FP_B).is_ok());
        let error = store.add("t3", "abc").expect_err("short");
        assert!(
            matches!(error, TlsError::InvalidFingerprint { .. }),
            "{error}"
        );
        let pem = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let error = store.add("t3", pem).expect_err("bad pem");
        assert!(
            matches!(error, TlsError::InvalidCertificate { .. }),
            "{error}"
        );
        assert_eq!(store.list().len(), 2);
    }

    #[test]
    fn a_pem_certificate_is_pinned_by_its_fingerprint() {
        let (dir, store) = store();
        let id = super::super::Identity::load_or_create(&dir.path().join("id"), "peer")
            .expect("identity");
        let added = store.add("peer", &id.certificate_pem()).expect("add");
        assert_eq!(added.fingerprint, id.fingerprint);
        let twice = format!("{}{}", id.certificate_pem(), id.certificate_pem());
        let error = store.add("again", &twice).expect_err("two certs");
        assert!(error.to_string().contains("more than one"), "{error}");
    }

    #[test]
    fn persists_with_mode_0600_and_reopens() {
        let (dir, store) = store();
        store.add("t1", FP_A).expect("add");
        let path = dir.path().join(TRUST_FILE);
        let mode = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        let reopened = TrustStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.list(), store.list());
    }

    #[test]
    fn hand_edits_are_picked_up_and_a_broken_file_trusts_nobody() {
        let (dir, store) = store();
        let shared = Arc::new(store);
        shared.add("t1", FP_A).expect("add");
        let path = dir.path().join(TRUST_FILE);
        let edited = format!(
            "[[peer]]\nname = \"t1\"\nfingerprint = \"{FP_A}\"\n\n\
             [[peer]]\nname = \"by-hand\"\nfingerprint = \"{}\"\n",
            FP_B.to_ascii_uppercase()
        );
        fs::write(&path, edited).expect("edit");
        // No reload(): the lookup notices the change.
        assert_eq!(shared.is_trusted(FP_B).as_deref(), Some("by-hand"));
        assert_eq!(shared.list()[1].added_unix, 0);

        fs::write(&path, "[[peer]]\nname = \"t1\"\nfingerprnt = \"x\"\n").expect("typo");
        assert_eq!(shared.is_trusted(FP_A), None);
        let error = shared.reload().expect_err("broken");
        assert!(error.to_string().contains(TRUST_FILE), "{error}");
        let error = shared.add("t9", FP_B).expect_err("refuses to overwrite");
        assert!(matches!(error, TlsError::Corrupt { .. }), "{error}");
        assert!(TrustStore::open(dir.path()).is_err());

        fs::remove_file(&path).expect("rm");
        shared.reload().expect("missing file is empty");
        assert!(shared.list().is_empty());
        shared.add("t1", FP_A).expect("add");
        assert_eq!(shared.is_trusted(FP_A).as_deref(), Some("t1"));
    }

    #[test]
    fn shared_between_threads() {
        let (_dir, store) = store();
        let shared = Arc::new(store);
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let store = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let fp = format!("{i:02x}{}", "0".repeat(62));
                    store.add(&format!("t{i}"), &fp).map(|_| ())
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread").expect("add");
        }
        assert_eq!(shared.list().len(), 8);
    }
}
