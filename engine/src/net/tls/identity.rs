//! The host's own certificate and private key, created once and kept for life.
//!
//! Peers pin the certificate's fingerprint, so the pair must never change behind their back:
//! a file that cannot be read or parsed is an error naming it, and a lone key or lone
//! certificate (a lost file, or a first start interrupted between the two writes) is an error
//! that tells the administrator both ways out, rather than a silent new identity that every
//! peer would refuse.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::fingerprint::fingerprint_of_der;
use super::fsutil::{ensure_private_dir, read_optional, write_atomic};
use super::TlsError;

/// The certificate file inside the identity directory (PEM, public).
pub const CERT_FILE: &str = "host-cert.pem";
/// The private key file inside the identity directory (PEM PKCS#8, mode 0600).
pub const KEY_FILE: &str = "host-key.pem";

/// A DNS name is at most 253 characters; the host name goes into the certificate's SAN.
const HOST_NAME_MAX: usize = 253;

/// This host's TLS identity: a self-signed certificate and its private key.
pub struct Identity {
    /// The host name given when loading; the certificate keeps the name it was created with,
    /// since re-issuing it under a new name would change the fingerprint peers pinned.
    pub name: String,
    /// Canonical fingerprint of the certificate (see [`super::fingerprint_of_der`]).
    pub fingerprint: String,
    cert_der: CertificateDer<'static>,
    key_der: PrivateKeyDer<'static>,
}

impl Identity {
    /// Loads the identity from `dir`, or creates it there on the host's first start.
    pub fn load_or_create(dir: &Path, host_name: &str) -> Result<Identity, TlsError> {
        validate_host_name(host_name)?;
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let cert = read_optional(&cert_path)?;
        let key = read_optional(&key_path)?;
        match (cert, key) {
            (Some(cert), Some(key)) => {
                warn_if_key_readable_by_others(&key_path);
                Self::from_pem(host_name, &cert_path, &cert, &key_path, &key)
            }
            (None, None) => Self::create(dir, host_name),
            (Some(_), None) => Err(TlsError::IncompleteIdentity {
                present: cert_path,
                missing: key_path,
                hint: "without its private key this host cannot prove the identity its peers \
                       pinned; restore the key from a backup, or delete the certificate to \
                       create a new identity and pin its fingerprint again on every peer",
            }),
            (None, Some(_)) => Err(TlsError::IncompleteIdentity {
                present: key_path,
                missing: cert_path,
                hint: "restore the certificate from a backup, or delete the key to create a \
                       new identity and pin its fingerprint again on every peer",
            }),
        }
    }

    /// The certificate as PEM, for `rillctl trust add NAME CERT.pem` on a peer.
    pub fn certificate_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.cert_der.to_vec()))
    }

    /// The certificate in DER, as presented in the handshake.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub(super) fn key_der(&self) -> PrivateKeyDer<'static> {
        self.key_der.clone_key()
    }

    fn create(dir: &Path, host_name: &str) -> Result<Identity, TlsError> {
        let failed = |e: rcgen::Error| TlsError::Generate {
            name: host_name.to_string(),
            reason: e.to_string(),
        };
        let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let mut params = CertificateParams::new(vec![host_name.to_string()]).map_err(failed)?;
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, host_name);
        params.distinguished_name = subject;
        // Validity is not checked between pinned peers (see verify.rs); these dates only keep
        // other tools reading the file sensible: from yesterday (clock skew) to "no end"
        // (RFC 5280 4.1.2.5 reserves 9999-12-31 for that).
        let (year, month, day) = civil_date(unix_days_now() - 1);
        params.not_before = rcgen::date_time_ymd(year, month, day);
        params.not_after = rcgen::date_time_ymd(9999, 12, 31);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // The same certificate serves as client (source) and server (target).
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.self_signed(&key_pair).map_err(failed)?;
        let cert_pem = cert.pem();
        let key_pem = key_pair.serialize_pem();

        ensure_private_dir(dir)?;
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        // Key first: the certificate's presence marks a complete identity.
        write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert_path, cert_pem.as_bytes(), 0o644)?;
        let identity = Self::from_pem(
            host_name,
            &cert_path,
            cert_pem.as_bytes(),
            &key_path,
            key_pem.as_bytes(),
        )?;
        log::info!(
            "created TLS identity for {host_name} in {} (fingerprint {})",
            dir.display(),
            identity.fingerprint
        );
        Ok(identity)
    }

    fn from_pem(
        host_name: &str,
        cert_path: &Path,
        cert_pem: &[u8],
        key_path: &Path,
        key_pem: &[u8],
    ) -> Result<Identity, TlsError> {
        let corrupt = |path: &Path, reason: String| TlsError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let mut certs = CertificateDer::pem_slice_iter(cert_pem);
        let cert_der = match certs.next() {
            Some(Ok(cert)) => cert,
            Some(Err(e)) => return Err(corrupt(cert_path, format!("bad PEM: {e}"))),
            None => {
                return Err(corrupt(
                    cert_path,
                    "no -----BEGIN CERTIFICATE----- block".to_string(),
                ))
            }
        };
        if certs.next().is_some() {
            return Err(corrupt(
                cert_path,
                "more than one certificate; it must hold only this host's own".to_string(),
            ));
        }
        let key_der = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| corrupt(key_path, format!("no private key in PEM: {e}")))?;
        let signing_key = super::verify::provider()
            .key_provider
            .load_private_key(key_der.clone_key())
            .map_err(|e| corrupt(key_path, format!("not a usable private key: {e}")))?;
        // A key that does not match the certificate would fail every handshake with a
        // confusing signature error on the peer; say which files disagree here instead.
        CertifiedKey::new(vec![cert_der.clone()], signing_key)
            .keys_match()
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => corrupt(
                    cert_path,
                    format!(
                        "it does not belong to the private key in {}",
                        key_path.display()
                    ),
                ),
                other => corrupt(cert_path, format!("not a valid certificate: {other}")),
            })?;
        Ok(Identity {
            name: host_name.to_string(),
            fingerprint: fingerprint_of_der(&cert_der),
            cert_der,
            key_der,
        })
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            name: self.name.clone(),
            fingerprint: self.fingerprint.clone(),
            cert_der: self.cert_der.clone(),
            key_der: self.key_der.clone_key(),
        }
    }
}

/// Never prints the private key, so an identity can appear in logs and panics.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn validate_host_name(name: &str) -> Result<(), TlsError> {
    super::validate_name("host", name, HOST_NAME_MAX)
}

/// Like ssh with its host keys: a key others can read is worth a warning, not a refusal,
/// because refusing would stop replication over a permission an administrator can fix later.
fn warn_if_key_readable_by_others(key_path: &Path) {
    if let Ok(meta) = std::fs::metadata(key_path) {
        if meta.permissions().mode() & 0o077 != 0 {
            log::warn!(
                "{} is readable by other users (mode {:o}); it should be 0600",
                key_path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
}

fn unix_days_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs / 86_400).unwrap_or(0)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), by counting 400-year
/// eras of 146097 days from 0000-03-01 so leap days fall at the end of each year.
fn civil_date(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        i32::try_from(year).unwrap_or(1970),
        u8::try_from(month).unwrap_or(1),
        u8::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(59), (1970, 3, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(19_782), (2024, 2, 29));
        assert_eq!(civil_date(-1), (1969, 12, 31));
    }

    #[test]
    fn created_once_then_loaded_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().join("tls");
        let first = Identity::load_or_create(&home, "source-1").expect("create");
        assert_eq!(first.name, "source-1");
        assert_eq!(first.fingerprint.len(), 64);
        assert_eq!(
            first.fingerprint,
            fingerprint_of_der(first.certificate_der())
        );
        let second = Identity::load_or_create(&home, "source-1").expect("load");
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.certificate_pem(), second.certificate_pem());
        let pem_on_disk = fs::read_to_string(home.join(CERT_FILE)).expect("cert");
        let from_disk = CertificateDer::from_pem_slice(pem_on_disk.as_bytes()).expect("pem");
        assert_eq!(fingerprint_of_der(&from_disk), first.fingerprint);

        let mode = |path: &Path| fs::metadata(path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode(&home).expect("dir") & 0o077, 0);
        assert_eq!(mode(&home.join(KEY_FILE)).expect("key"), 0o600);
        assert!(!format!("{first:?}").contains("key_der"));
    }

    #[test]
    fn a_damaged_or_lone_file_is_an_error_naming_it_and_nothing_is_regenerated() {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path();
        Identity::load_or_create(home, "h").expect("create");
        let key_path = home.join(KEY_FILE);
        let cert_path = home.join(CERT_FILE);
        let good_key = fs::read(&key_path).expect("key");

        fs::write(&key_path, b"-----BEGIN PRIVATE KEY-----\nnot base64!\n").expect("write");
        let error = Identity::load_or_create(home, "h").expect_err("corrupt key");
        assert!(error.to_string().contains(KEY_FILE), "{error}");
        assert_eq!(
            fs::read(&key_path).ok().as_deref(),
            Some(&b"-----BEGIN PRIVATE KEY-----\nnot base64!\n"[..])
        );

        // Another host's key: parseable, but not this certificate's.
        let other = tempfile::tempdir().expect("temp dir");
        Identity::load_or_create(other.path(), "o").expect("other");
        fs::copy(other.path().join(KEY_FILE), &key_path).expect("copy");
        let error = Identity::load_or_create(home, "h").expect_err("mismatch");
        let message = error.to_string();
        assert!(
            message.contains(CERT_FILE) && message.contains("does not belong"),
            "{message}"
        );

        fs::write(&key_path, &good_key).expect("restore");
        fs::write(&cert_path, b"garbage").expect("write");
        let error = Identity::load_or_create(home, "h").expect_err("corrupt cert");
        assert!(error.to_string().contains(CERT_FILE), "{error}");

        fs::remove_file(&cert_path).expect("rm");
        let error = Identity::load_or_create(home, "h").expect_err("lone key");
        assert!(
            matches!(error, TlsError::IncompleteIdentity { .. }),
            "{error}"
        );
        assert_eq!(fs::read(&key_path).ok(), Some(good_key));
    }

    #[test]
    fn host_names_are_validated() {
        let dir = tempfile::tempdir().expect("temp dir");
        for bad in ["", "a b", "host/..", &"x".repeat(254)] {
            let error = Identity::load_or_create(dir.path(), bad).expect_err(bad);
            assert!(error.to_string().contains("allowed are"), "{error}");
        }
        assert!(Identity::load_or_create(dir.path(), "db-01.example_site.org").is_ok());
    }
}
