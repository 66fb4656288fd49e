//! Real handshakes over loopback TCP with tokio-rustls, one per trust situation.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ClientConfig, ServerConfig, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

const LIMIT: Duration = Duration::from_secs(10);

struct Host {
    _dir: tempfile::TempDir,
    id: Identity,
    trust: Arc<TrustStore>,
}

fn host(name: &str) -> Host {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = Identity::load_or_create(&dir.path().join("identity"), name).expect("identity");
    let trust = Arc::new(TrustStore::open(dir.path()).expect("trust store"));
    Host {
        _dir: dir,
        id,
        trust,
    }
}

fn pin(on: &Host, peer: &Host) {
    on.trust
        .add(&peer.id.name, &peer.id.fingerprint)
        .expect("pin");
}

fn server_of(h: &Host) -> Arc<ServerConfig> {
    server_config(&h.id, Arc::clone(&h.trust)).expect("server config")
}

fn client_of(h: &Host) -> Arc<ClientConfig> {
    client_config(&h.id, Arc::clone(&h.trust)).expect("client config")
}

/// One connection: the server speaks first ("hello"), the client answers ("ok"), as the
/// transport must for a refused client to notice (see the module docs). Each side returns
/// the peer fingerprint it saw, or its error.
async fn connect(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (io::Result<String>, io::Result<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        match TlsAcceptor::from(server).accept(tcp).into_fallible().await {
            Ok(mut tls) => {
                let seen = peer_fingerprint(tls.get_ref().1)
                    .ok_or_else(|| io::Error::other("no client certificate after handshake"))?;
                tls.write_all(b"hello").await?;
                tls.flush().await?;
                let mut reply = [0u8; 2];
                tls.read_exact(&mut reply).await?;
                Ok(seen)
            }
            Err((error, mut tcp)) => {
                // Let the alert reach the client rather than a reset (see the module docs).
                let _ = tcp.shutdown().await;
                let mut sink = [0u8; 1024];
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
                Err(error)
            }
        }
    });
    let client_side = async move {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("any-name.invalid").map_err(io::Error::other)?;
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        let seen = peer_fingerprint(tls.get_ref().1)
            .ok_or_else(|| io::Error::other("no server certificate after handshake"))?;
        let suite = tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite());
        if suite != Some(CipherSuite::TLS13_AES_128_GCM_SHA256) {
            return Err(io::Error::other(format!("negotiated {suite:?}")));
        }
        let mut hello = [0u8; 5];
        tls.read_exact(&mut hello).await?;
        tls.write_all(b"ok").await?;
        tls.flush().await?;
        Ok(seen)
    };
    let client_result = tokio::time::timeout(LIMIT, client_side)
        .await
        .unwrap_or_else(|_| Err(io::Error::other("client timed out")));
    let server_result = match tokio::time::timeout(LIMIT, server_side).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(io::Error::other(join)),
        Err(_) => Err(io::Error::other("server timed out")),
    };
    (server_result, client_result)
}

#[tokio::test]
async fn mutually_pinned_hosts_connect_and_see_each_other() {
    let (source, target) = (host("source-1"), host("target-1"));
    pin(&target, &source);
    pin(&source, &target);
    let (server, client) = connect(server_of(&target), client_of(&source)).await;
    assert_eq!(server.expect("server"), source.id.fingerprint);
    assert_eq!(client.expect("client"), target.id.fingerprint);
}

#[tokio::test]
async fn a_client_the_server_has_not_pinned_is_refused_by_fingerprint() {
    let (source, target) = (host("source-1"), host("target-1"));
    pin(&source, &target);
    let (server, client) = connect(server_of(&target), client_of(&source)).await;

    let server_error = server.expect_err("server must refuse");
    let failure = classify_handshake_error(&server_error);
    assert_eq!(
        failure,
        HandshakeFailure::NotTrusted {
            fingerprint: source.id.fingerprint.clone()
        }
    );
    assert!(failure.is_failed_login());
    let line = describe_handshake_error(&server_error);
    let expected = format!(
        "certificate not trusted (fingerprint {})",
        source.id.fingerprint
    );
    assert!(line.contains(&expected), "{line}");

    let client_error = client.expect_err("client must learn it was refused");
    let failure = classify_handshake_error(&client_error);
    assert!(
        matches!(failure, HandshakeFailure::RefusedByPeer { .. }),
        "{failure:?}: {client_error}"
    );
    assert!(!failure.is_failed_login());
}

#[tokio::test]
async fn a_server_the_client_has_not_pinned_is_refused() {
    let (source, target) = (host("source-1"), host("target-1"));
    pin(&target, &source);
    let (server, client) = connect(server_of(&target), client_of(&source)).await;

    let client_error = client.expect_err("client must refuse");
    assert_eq!(
        classify_handshake_error(&client_error),
        HandshakeFailure::NotTrusted {
            fingerprint: target.id.fingerprint.clone()
        }
    );
    let server_error = server.expect_err("server handshake must fail too");
    let failure = classify_handshake_error(&server_error);
    assert!(
        matches!(failure, HandshakeFailure::RefusedByPeer { .. }),
        "{failure:?}: {server_error}"
    );
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let (source, target) = (host("source-1"), host("target-1"));
    pin(&source, &target);
    let provider = verify::provider();
    let verifier = verify::pinned_server_verifier(Arc::clone(&source.trust), &provider);
    let anonymous = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let (server, client) = connect(server_of(&target), Arc::new(anonymous)).await;

    let server_error = server.expect_err("server must refuse");
    let failure = classify_handshake_error(&server_error);
    assert_eq!(failure, HandshakeFailure::NoCertificate);
    assert!(failure.is_failed_login());
    let client_error = client.expect_err("client must learn it was refused");
    let line = describe_handshake_error(&client_error);
    assert!(line.contains("certificate required"), "{line}");
}

#[tokio::test]
async fn unpinning_a_peer_takes_effect_at_its_next_connection() {
    let (source, target) = (host("source-1"), host("target-1"));
    pin(&target, &source);
    pin(&source, &target);
    // The same configurations throughout, as a running daemon would keep them.
    let (server_cfg, client_cfg) = (server_of(&target), client_of(&source));
    let (server, client) = connect(Arc::clone(&server_cfg), Arc::clone(&client_cfg)).await;
    assert!(server.is_ok() && client.is_ok(), "{server:?} {client:?}");

    assert!(target.trust.remove(&source.id.name).expect("remove"));
    let (server, client) = connect(server_cfg, client_cfg).await;
    let server_error = server.expect_err("no resumption past the trust store");
    assert!(matches!(
        classify_handshake_error(&server_error),
        HandshakeFailure::NotTrusted { .. }
    ));
    assert!(client.is_err());
}

#[tokio::test]
async fn a_pin_written_to_the_file_by_hand_is_honoured_without_reload() {
    let (source, target) = (host("source-1"), host("target-1"));
    pin(&source, &target);
    let server_cfg = server_of(&target);
    let edited = format!(
        "[[peer]]\nname = \"by-hand\"\nfingerprint = \"{}\"\n",
        source.id.fingerprint.to_ascii_uppercase()
    );
    std::fs::write(target.trust.path(), edited).expect("edit");
    let (server, client) = connect(server_cfg, client_of(&source)).await;
    assert_eq!(server.expect("server"), source.id.fingerprint);
    assert!(client.is_ok());
}

/// Presents someone else's (pinned) certificate, signing with its own key.
#[derive(Debug)]
struct Impostor(Arc<CertifiedKey>);

impl Impostor {
    fn new(stolen: &Identity, own: &Identity) -> Arc<Impostor> {
        let key = verify::provider()
            .key_provider
            .load_private_key(own.key_der())
            .expect("key");
        let certified = CertifiedKey::new(vec![stolen.certificate_der().clone()], key);
        Arc::new(Impostor(Arc::new(certified)))
    }
}

impl ResolvesClientCert for Impostor {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for Impostor {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

#[tokio::test]
async fn a_pinned_certificate_without_its_private_key_is_refused() {
    let (source, target, mallory) = (host("source-1"), host("target-1"), host("mallory"));
    pin(&target, &source);
    pin(&source, &target);

    // Mallory copied the source's certificate (it is public) and dials the target.
    let provider = verify::provider();
    let verifier = verify::pinned_server_verifier(Arc::clone(&source.trust), &provider);
    let fake_client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Impostor::new(&source.id, &mallory.id));
    let (server, client) = connect(server_of(&target), Arc::new(fake_client)).await;
    let server_error = server.expect_err("target must refuse the impostor");
    let failure = classify_handshake_error(&server_error);
    assert!(
        matches!(failure, HandshakeFailure::BadCertificate { .. }),
        "{failure:?}"
    );
    assert!(failure.is_failed_login());
    assert!(client.is_err());

    // Mallory copied the target's certificate and waits for the source.
    let fake_server = ServerConfig::builder_with_provider(verify::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Impostor::new(&target.id, &mallory.id));
    let (_, client) = connect(Arc::new(fake_server), client_of(&source)).await;
    let client_error = client.expect_err("source must refuse the impostor");
    assert!(matches!(
        classify_handshake_error(&client_error),
        HandshakeFailure::BadCertificate { .. }
    ));
}

#[test]
fn network_errors_are_not_failed_logins() {
    let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "eof");
    let failure = classify_handshake_error(&eof);
    assert!(matches!(failure, HandshakeFailure::Network { .. }));
    assert!(!failure.is_failed_login());
    assert!(describe_handshake_error(&eof).contains("closed the connection"));
    let garbage = io::Error::new(
        io::ErrorKind::InvalidData,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
    );
    assert!(matches!(
        classify_handshake_error(&garbage),
        HandshakeFailure::Protocol { .. }
    ));
}
