//! Certificate fingerprints: the SHA-256 of the certificate's DER encoding.
//!
//! The canonical form is bare lowercase hex: it is what the trust file stores, what logs print
//! and what compares equal, so one host never appears under two spellings. The parser is more
//! forgiving because administrators paste fingerprints from other tools (openssl prints
//! `AB:12:...`).

use super::{shorten, TlsError};

/// Length of a canonical fingerprint: 32 bytes of SHA-256, two hex digits each.
pub const FINGERPRINT_HEX_LEN: usize = 64;

const SHA256_LEN: usize = FINGERPRINT_HEX_LEN / 2;

/// The canonical fingerprint (64 lowercase hex digits) of a DER-encoded certificate.
pub fn fingerprint_of_der(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut hex = String::with_capacity(FINGERPRINT_HEX_LEN);
    for byte in digest.as_ref() {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Parses a fingerprint written as 64 hex digits, in any case, with or without colons between
/// byte pairs, and returns its canonical form.
pub fn parse_fingerprint(text: &str) -> Result<String, TlsError> {
    let trimmed = text.trim();
    let invalid = |reason: String| TlsError::InvalidFingerprint {
        input: shorten(trimmed),
        reason,
    };
    let digits: String = if trimmed.contains(':') {
        // Colons must sit between pairs: "ab:c:d12" is more likely a typo than a fingerprint.
        let pairs: Vec<&str> = trimmed.split(':').collect();
        if let Some(bad) = pairs.iter().find(|pair| pair.len() != 2) {
            return Err(invalid(format!(
                "colon-separated groups must be two digits each, found {bad:?}"
            )));
        }
        if pairs.len() != SHA256_LEN {
            return Err(invalid(format!(
                "found {} byte pairs, a SHA-256 has {SHA256_LEN}",
                pairs.len()
            )));
        }
        pairs.concat()
    } else {
        trimmed.to_string()
    };
    if let Some(bad) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(invalid(format!("{bad:?} is not a hexadecimal digit")));
    }
    if digits.len() != FINGERPRINT_HEX_LEN {
        return Err(invalid(format!(
            "found {} digits, a SHA-256 has {FINGERPRINT_HEX_LEN}",
            digits.len()
        )));
    }
    Ok(digits.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANONICAL: &str = "ab12cd34ef56789001234567890abcdef0123456789abcdef0123456789abcde";

    fn with_colons(hex: &str) -> String {
        let pairs: Vec<&str> = (0..hex.len())
            .step_by(2)
            .map(|at| &hex[at..at + 2])
            .collect();
        pairs.join(":")
    }

    #[test]
    fn digest_is_lowercase_sha256_hex() {
        // SHA-256 of the empty string, a well-known value.
        assert_eq!(
            fingerprint_of_der(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn accepts_bare_colons_and_any_case() {
        assert_eq!(CANONICAL.len(), FINGERPRINT_HEX_LEN);
        assert_eq!(
            parse_fingerprint(CANONICAL).ok().as_deref(),
            Some(CANONICAL)
        );
        let upper = CANONICAL.to_ascii_uppercase();
        assert_eq!(parse_fingerprint(&upper).ok().as_deref(), Some(CANONICAL));
        let colons = with_colons(&upper);
        assert_eq!(parse_fingerprint(&colons).ok().as_deref(), Some(CANONICAL));
        let padded = format!("  {}\n", with_colons(CANONICAL));
        assert_eq!(parse_fingerprint(&padded).ok().as_deref(), Some(CANONICAL));
    }

    #[test]
    fn rejects_wrong_length_digits_and_colon_placement() {
        let cases = [
            ("", "found 0 digits"),
            (&CANONICAL[..62], "found 62 digits"),
            (
                "zz12cd34ef56789001234567890abcdef0123456789abcdef0123456789abcde",
                "'z'",
            ),
            ("ab:c:d1", "two digits each"),
            ("ab:cd", "found 2 byte pairs"),
        ];
        for (input, expected) in cases {
            match parse_fingerprint(input) {
                Err(error @ TlsError::InvalidFingerprint { .. }) => {
                    let message = error.to_string();
                    assert!(message.contains(expected), "{input:?}: {message}");
                    assert!(message.contains("64 hexadecimal digits"), "{message}");
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn long_input_is_cut_in_the_message() {
        let pasted = "x".repeat(5000);
        let message = parse_fingerprint(&pasted)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.len() < 400, "{message}");
    }
}
