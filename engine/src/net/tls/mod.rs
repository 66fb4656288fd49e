//! Host identity and peer trust: every rill connection is mutual TLS between pinned hosts.
//!
//! A source `rilld` talks to a target `rilld` over TCP. Both ends authenticate, and the model
//! is SSH's known hosts rather than a web PKI:
//!
//! - **Identity** ([`Identity`]): on its first start a host creates a self-signed certificate
//!   (ECDSA P-256) and its private key in its own directory and keeps them for life. The
//!   certificate's SHA-256 fingerprint *is* the host's identity; renaming the host does not
//!   change it, because every peer that pinned it would then refuse the host. A damaged key or
//!   certificate file is therefore an error naming the file, never a reason to make a new one.
//! - **Trust** ([`TrustStore`]): an administrator pins each peer by name and fingerprint
//!   (`rillctl trust add NAME FINGERPRINT|CERT.pem`). There is no certificate authority to
//!   compromise or to run, and no unauthenticated mode to leave switched on by mistake.
//! - **Handshake** ([`server_config`], [`client_config`]): TLS 1.3 only, each side presents
//!   its identity and accepts the other only if the peer's certificate fingerprint is pinned;
//!   the handshake signature is still verified, so a copied certificate without its private
//!   key gets nowhere. Removing a peer takes effect at its next connection: session
//!   resumption is off, since a resumed session would skip the certificate check.
//! - **Diagnosis** ([`classify_handshake_error`], [`describe_handshake_error`]): a refused
//!   login names the fingerprint that was refused, so the administrator can pin it if it was
//!   expected, and the server can count failed logins.
//!
//! Fingerprints are written in one canonical form, 64 lowercase hexadecimal digits
//! ([`fingerprint_of_der`]); [`parse_fingerprint`] also accepts upper case and colons between
//! byte pairs, the form `openssl x509 -noout -fingerprint -sha256` prints.
//!
//! Two facts for the transport: in TLS 1.3 the client finishes its handshake before the server
//! has judged the client's certificate, so a client learns that it was refused only when it
//! first reads; the server should speak first. And when an accept fails, take the socket
//! back (`Accept::into_fallible`), shut down writing and read briefly before closing, so the
//! alert reaches the client instead of a connection reset.

mod fingerprint;
mod fsutil;
mod handshake;
mod identity;
mod trust;
mod verify;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use fingerprint::{fingerprint_of_der, parse_fingerprint, FINGERPRINT_HEX_LEN};
pub use handshake::{
    classify_handshake_error, describe_handshake_error, peer_fingerprint, HandshakeFailure,
};
pub use identity::{Identity, CERT_FILE, KEY_FILE};
pub use trust::{validate_peer_name, TrustStore, TrustedPeer, TRUST_FILE};
pub use verify::{client_config, server_config, PeerNotTrusted};

/// What went wrong with an identity, the trust store or a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not usable: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{} exists but {} does not: {hint}", present.display(), missing.display())]
    IncompleteIdentity {
        present: PathBuf,
        missing: PathBuf,
        hint: &'static str,
    },
    #[error("invalid {what} name {name:?}: {reason}; allowed are 1 to {max} of A-Z a-z 0-9 . _ -")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
        max: usize,
    },
    #[error(
        "invalid fingerprint {input:?}: {reason}; expected the SHA-256 of the certificate as \
         64 hexadecimal digits, optionally with colons between byte pairs"
    )]
    InvalidFingerprint { input: String, reason: String },
    #[error(
        "invalid peer certificate: {reason}; give a fingerprint or one PEM certificate \
         (-----BEGIN CERTIFICATE-----)"
    )]
    InvalidCertificate { reason: String },
    #[error(
        "a peer named {name:?} is already trusted (fingerprint {fingerprint}); remove it first \
         to pin another certificate"
    )]
    DuplicateName { name: String, fingerprint: String },
    #[error("fingerprint {fingerprint} is already trusted as {name:?}")]
    DuplicateFingerprint { fingerprint: String, name: String },
    #[error("cannot create the host certificate for {name:?}: {reason}")]
    Generate { name: String, reason: String },
    #[error("cannot build the TLS {what}: {source}")]
    Config {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
}

/// Cuts user input quoted in an error message, so a pasted file does not flood the log.
fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Checks a name a certificate or the trust list carries (`what`: "host" or "peer"): not
/// empty, at most `max` bytes, and only ASCII letters, digits, `.`, `_` and `-`, so it is
/// safe in a file name, a log line and a certificate's subject.
fn validate_name(what: &'static str, name: &str, max: usize) -> Result<(), TlsError> {
    let invalid = |reason| TlsError::InvalidName {
        what,
        name: shorten(name),
        reason,
        max,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > max {
        return Err(invalid("it is too long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid("it contains a character that is not allowed"));
    }
    Ok(())
}
