//! What the transport needs after a handshake: who the peer is, and why a handshake failed.
//!
//! tokio-rustls reports a failed handshake as a `std::io::Error` wrapping the `rustls::Error`;
//! the classification below digs it out so the server can count failed logins and log one
//! line that tells the administrator what to do (usually: pin a fingerprint on one side).

use std::fmt;
use std::io;

use rustls::{AlertDescription, CertificateError, CommonState};

use super::fingerprint::fingerprint_of_der;
use super::verify::PeerNotTrusted;

/// Canonical fingerprint of the peer's end-entity certificate, once the handshake has
/// received it. Pass a `ServerConnection` or `ClientConnection` (they deref to
/// `CommonState`), e.g. `peer_fingerprint(stream.get_ref().1)`.
pub fn peer_fingerprint(conn: &CommonState) -> Option<String> {
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| fingerprint_of_der(cert))
}

/// Why a TLS handshake failed, in the terms an administrator acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The peer's certificate is valid but not pinned on this host.
    NotTrusted { fingerprint: String },
    /// The peer (a client) presented no certificate.
    NoCertificate,
    /// The peer's certificate or its handshake signature is invalid.
    BadCertificate { reason: String },
    /// The peer aborted with an alert: most often it does not trust this host.
    RefusedByPeer { alert: String },
    /// The peer does not speak TLS 1.3 or broke the protocol (a port scanner, an old client).
    Protocol { reason: String },
    /// The connection failed below TLS: closed, reset, timed out.
    Network { reason: String },
}

impl HandshakeFailure {
    /// Whether the peer tried to log in with credentials this host refused; these count as
    /// failed logins, while network and protocol noise does not.
    pub fn is_failed_login(&self) -> bool {
        matches!(
            self,
            HandshakeFailure::NotTrusted { .. }
                | HandshakeFailure::NoCertificate
                | HandshakeFailure::BadCertificate { .. }
        )
    }
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeFailure::NotTrusted { fingerprint } => {
                write!(
                    f,
                    "{}",
                    PeerNotTrusted {
                        fingerprint: fingerprint.clone()
                    }
                )
            }
            HandshakeFailure::NoCertificate => write!(
                f,
                "the peer presented no certificate; every rill connection is mutual TLS"
            ),
            HandshakeFailure::BadCertificate { reason } => {
                write!(f, "the peer's certificate was rejected: {reason}")
            }
            HandshakeFailure::RefusedByPeer { alert } => write!(
                f,
                "the peer refused the handshake (alert {alert}); it probably does not trust \
                 this host: pin this host's fingerprint on the peer with `rillctl trust add`"
            ),
            HandshakeFailure::Protocol { reason } => {
                write!(f, "TLS handshake failed: {reason}")
            }
            HandshakeFailure::Network { reason } => {
                write!(f, "connection failed during the TLS handshake: {reason}")
            }
        }
    }
}

/// Classifies an error returned by a tokio-rustls accept, connect, read or write.
pub fn classify_handshake_error(error: &io::Error) -> HandshakeFailure {
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(tls) => classify_rustls(tls),
        None => HandshakeFailure::Network {
            reason: match error.kind() {
                io::ErrorKind::UnexpectedEof => "the peer closed the connection".to_string(),
                _ => error.to_string(),
            },
        },
    }
}

/// One line for the log, e.g. "certificate not trusted (fingerprint ab12…); if this peer
/// is expected, pin it with `rillctl trust add NAME ab12…`".
pub fn describe_handshake_error(error: &io::Error) -> String {
    classify_handshake_error(error).to_string()
}

fn classify_rustls(error: &rustls::Error) -> HandshakeFailure {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            match other.0.downcast_ref::<PeerNotTrusted>() {
                Some(refused) => HandshakeFailure::NotTrusted {
                    fingerprint: refused.fingerprint.clone(),
                },
                None => HandshakeFailure::BadCertificate {
                    reason: other.to_string(),
                },
            }
        }
        rustls::Error::InvalidCertificate(reason) => HandshakeFailure::BadCertificate {
            reason: reason.to_string(),
        },
        rustls::Error::NoCertificatesPresented => HandshakeFailure::NoCertificate,
        rustls::Error::AlertReceived(alert) => HandshakeFailure::RefusedByPeer {
            alert: alert_name(*alert),
        },
        other => HandshakeFailure::Protocol {
            reason: other.to_string(),
        },
    }
}

fn alert_name(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired => {
            "certificate required: this host presented no certificate".to_string()
        }
        other => format!("{other:?}"),
    }
}
