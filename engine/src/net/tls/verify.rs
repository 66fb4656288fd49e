//! rustls configurations whose only trust anchor is the pinned-peer list.
//!
//! rustls's built-in verifiers walk a chain to a certificate authority and match the server
//! name; rill has neither. A peer is accepted when the SHA-256 of the certificate it presents
//! is in the [`TrustStore`], and the handshake signature made with that certificate's key is
//! valid (checked with the provider's algorithms), which proves the peer holds the private key
//! and is not replaying a copied certificate. Both sides judge a peer with the same code:
//! the target's verifier of client certificates and the source's verifier of server
//! certificates are newtypes of one `Pins`, which makes the check and whose algorithms
//! verify the signatures; only the rustls trait each implements differs.
//!
//! Deliberately not checked:
//! - the server name: the pin names the exact certificate, which is stronger than any name
//!   match, and a target reached by IP address or through a renamed DNS entry is still the
//!   same host;
//! - the validity dates: a self-signed certificate is its own issuer, so expiry would only
//!   force re-pinning on every peer on a fixed day while adding no protection (revocation is
//!   `rillctl trust remove`); a wrong clock must not stop replication either;
//! - intermediate certificates: nothing is chained, only the end-entity certificate counts.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::NoServerSessionStorage;
use rustls::{
    CertificateError, CipherSuite, ClientConfig, DigitallySignedStruct, DistinguishedName,
    OtherError, ServerConfig, SignatureScheme,
};

use super::fingerprint::fingerprint_of_der;
use super::{Identity, TlsError, TrustStore};

/// The cryptography behind every rill TLS connection: `ring`, which builds with a plain C
/// compiler (aws-lc-rs, rustls's default, needs cmake). AES-128-GCM is preferred to
/// AES-256-GCM: both are TLS 1.3's mandatory-strength AEADs, and with a replica's every
/// byte encrypted on one host and decrypted on the other, the 128-bit key's fewer rounds
/// are CPU a replication keeps (the key exchange and certificates are unchanged).
pub(super) fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    // Stable: the other suites keep their order behind it.
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// The error a verifier returns for a certificate that is not pinned. It travels inside
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))` up to the
/// `std::io::Error` of the handshake, where [`super::classify_handshake_error`] finds it, so
/// the log line can name the fingerprint the administrator may want to pin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "certificate not trusted (fingerprint {fingerprint}); if this peer is expected, pin it \
     with `rillctl trust add NAME {fingerprint}`"
)]
pub struct PeerNotTrusted {
    /// Canonical fingerprint of the refused certificate.
    pub fingerprint: String,
}

/// TLS server configuration for the target side: presents `id`, requires a client
/// certificate and accepts only pinned ones. TLS 1.3 only; no session resumption, so an
/// unpinned peer is refused at its next connection.
pub fn server_config(id: &Identity, trust: Arc<TrustStore>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedClientVerifier(Pins::new(trust, &provider)));
    let config_error = |source| TlsError::Config {
        what: "server configuration",
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![id.certificate_der().clone()], id.key_der())
        .map_err(config_error)?;
    // A resumed session carries the client certificate verified the first time and is not
    // checked against the trust store again.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// TLS client configuration for the source side: presents `id` and accepts the server only
/// if its certificate is pinned. The `ServerName` passed to connect is not checked (see the
/// module docs); any name or IP address of the target will do.
pub fn client_config(id: &Identity, trust: Arc<TrustStore>) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = pinned_server_verifier(trust, &provider);
    let config_error = |source| TlsError::Config {
        what: "client configuration",
        source,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![id.certificate_der().clone()], id.key_der())
        .map_err(config_error)?;
    // Same reason as the server: resumption would skip the check against the trust store.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

pub(super) fn pinned_server_verifier(
    trust: Arc<TrustStore>,
    provider: &CryptoProvider,
) -> Arc<dyn ServerCertVerifier> {
    Arc::new(PinnedServerVerifier(Pins::new(trust, provider)))
}

/// What both verifiers share: the trust store and the signature algorithms, the one check
/// of a presented certificate ([`Pins::check`]), and the signature checks
/// (`pinned_signatures!`).
struct Pins {
    trust: Arc<TrustStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pins {
    fn new(trust: Arc<TrustStore>, provider: &CryptoProvider) -> Pins {
        Pins {
            trust,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>, side: &str) -> Result<(), rustls::Error> {
        let fingerprint = fingerprint_of_der(end_entity);
        match self.trust.is_trusted(&fingerprint) {
            Some(name) => {
                log::debug!("{side} certificate {fingerprint} is pinned as {name}");
                Ok(())
            }
            None => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PeerNotTrusted { fingerprint })),
            ))),
        }
    }
}

impl fmt::Debug for Pins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pins")
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

/// The handshake-signature methods both verifier traits ask for, the same in both: the
/// signature is checked with the provider's algorithms (`Pins::algorithms`) against the
/// certificate `Pins::check` accepted. Expanded inside each `impl`, on a newtype of [`Pins`].
macro_rules! pinned_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            // Only reachable if TLS 1.2 were enabled; verifying keeps the verifier honest
            // anyway.
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.algorithms.supported_schemes()
        }
    };
}

#[derive(Debug)]
struct PinnedServerVerifier(Pins);

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.check(end_entity, "server")?;
        Ok(ServerCertVerified::assertion())
    }

    pinned_signatures!();
}

#[derive(Debug)]
struct PinnedClientVerifier(Pins);

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No CA to hint at: the client has exactly one certificate to offer.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.check(end_entity, "client")?;
        Ok(ClientCertVerified::assertion())
    }

    pinned_signatures!();
}
