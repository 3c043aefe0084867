//! Who may send events: a shared bearer token or an HMAC-SHA256 signature
//! of the body, per source. Both comparisons take the same time whatever
//! the mismatch, so a sender cannot guess a token byte by byte.

use sha2::{Digest as _, Sha256};

use crate::config::{WebhookFormat, WebhookSource};

/// Why a request was refused (401). Never says what the secret is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token and no signature were sent.
    #[error(
        "webhook source {0:?}: no credentials (send Authorization: Bearer, ?token= or a body signature)"
    )]
    Missing(String),
    /// A token or signature was sent and does not match.
    #[error("webhook source {0:?}: wrong token or signature")]
    Wrong(String),
}

/// What a request carried for authentication.
#[derive(Debug, Default, Clone, Copy)]
pub struct Presented<'a> {
    /// `Authorization: Bearer <token>` (or the raw header for senders that
    /// send the configured value as is).
    pub authorization: Option<&'a str>,
    /// `?token=` of the URL.
    pub query_token: Option<&'a str>,
    /// `sha256=<hex>` from the format's signature header.
    pub signature: Option<&'a str>,
}

/// The header a format's sender signs with.
pub fn signature_header(format: WebhookFormat) -> &'static str {
    match format {
        WebhookFormat::Github => "x-hub-signature-256",
        _ => "x-ocimirror-signature",
    }
}

/// Accepts the request when what it presents matches what the source
/// requires: the token, when one is configured, and the signature, when an
/// HMAC secret is configured (both when both are).
pub fn verify(
    source: &WebhookSource,
    presented: &Presented<'_>,
    body: &[u8],
) -> Result<(), AuthError> {
    let name = || source.name.clone();
    if let Some(token) = &source.token {
        let sent = presented
            .authorization
            .map(|h| h.strip_prefix("Bearer ").unwrap_or(h).trim())
            .or(presented.query_token);
        match sent {
            None => return Err(AuthError::Missing(name())),
            Some(s) if !constant_time_eq(s.as_bytes(), token.expose().as_bytes()) => {
                return Err(AuthError::Wrong(name()));
            }
            Some(_) => {}
        }
    }
    if let Some(key) = &source.hmac_secret {
        let Some(sent) = presented.signature else {
            return Err(AuthError::Missing(name()));
        };
        let hex = sent.trim().strip_prefix("sha256=").unwrap_or(sent.trim());
        let expected = hex::encode(hmac_sha256(key.expose().as_bytes(), body));
        if !constant_time_eq(hex.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
            return Err(AuthError::Wrong(name()));
        }
    }
    Ok(())
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// True when `sent` is `expected`, compared in constant time (API tokens).
pub fn same_secret(sent: &str, expected: &str) -> bool {
    constant_time_eq(sent.as_bytes(), expected.as_bytes())
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn source(token: Option<&str>, hmac: Option<&str>) -> WebhookSource {
        WebhookSource {
            name: "s".into(),
            format: WebhookFormat::Github,
            registry: Some("ghcr.io".into()),
            token: token.map(Secret::new),
            hmac_secret: hmac.map(Secret::new),
        }
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than a block is hashed first (RFC 4231 case 6).
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn tokens_and_signatures_are_checked() {
        let s = source(Some("t0ken"), None);
        let ok = Presented {
            authorization: Some("Bearer t0ken"),
            ..Default::default()
        };
        assert_eq!(verify(&s, &ok, b""), Ok(()));
        let query = Presented {
            query_token: Some("t0ken"),
            ..Default::default()
        };
        assert_eq!(verify(&s, &query, b""), Ok(()));
        let wrong = Presented {
            authorization: Some("Bearer t0kem"),
            ..Default::default()
        };
        assert_eq!(verify(&s, &wrong, b""), Err(AuthError::Wrong("s".into())));
        assert_eq!(
            verify(&s, &Presented::default(), b""),
            Err(AuthError::Missing("s".into()))
        );

        let s = source(None, Some("key"));
        let sig = format!("sha256={}", hex::encode(hmac_sha256(b"key", b"body")));
        let signed = Presented {
            signature: Some(&sig),
            ..Default::default()
        };
        assert_eq!(verify(&s, &signed, b"body"), Ok(()));
        assert_eq!(
            verify(&s, &signed, b"body!"),
            Err(AuthError::Wrong("s".into()))
        );
        assert!(!AuthError::Wrong("s".into()).to_string().contains("key"));
    }
}
