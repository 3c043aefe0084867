//! The JWS envelope of a Notary Project signature (flattened JWS JSON
//! serialization, `application/jose+json`): its protected header rules and
//! the signature over the JWS signing input, made with the leaf
//! certificate's key (specs/signature-envelope-jws.md).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::Rejection;
use super::certs::{Cert, KeyType};

/// `cty` of a Notary Project payload.
pub const PAYLOAD_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
const PLUGIN: &str = "io.cncf.notary.verificationPlugin";
const PLUGIN_MIN_VERSION: &str = "io.cncf.notary.verificationPluginMinVersion";
/// Protected headers the specification marks critical: when present they
/// must be listed in `crit`.
const CRITICAL: [&str; 5] = [
    SIGNING_SCHEME,
    AUTHENTIC_SIGNING_TIME,
    EXPIRY,
    PLUGIN,
    PLUGIN_MIN_VERSION,
];
/// Headers this verifier understands (may appear in `crit`).
const UNDERSTOOD: [&str; 4] = [SIGNING_SCHEME, SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY];
/// More certificates than this in `x5c` are refused (notation's chains
/// have two or three).
const MAX_CHAIN: usize = 10;

/// The `alg` values the Notary Project allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PSS, SHA-256.
    Ps256,
    /// RSASSA-PSS, SHA-384.
    Ps384,
    /// RSASSA-PSS, SHA-512.
    Ps512,
    /// ECDSA P-256, SHA-256.
    Es256,
    /// ECDSA P-384, SHA-384.
    Es384,
    /// ECDSA P-521, SHA-512 (recognised; `ring` cannot verify it).
    Es512,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "ES512" => Alg::Es512,
            _ => return None,
        })
    }

    /// The `alg` a signing key implies (the key is the source of truth):
    /// RSA 2048/3072/4096 → PS256/384/512, P-256/384/521 → ES256/384/512.
    fn for_key(key: KeyType) -> Option<Alg> {
        Some(match key {
            KeyType::Rsa(2048) => Alg::Ps256,
            KeyType::Rsa(3072) => Alg::Ps384,
            KeyType::Rsa(4096) => Alg::Ps512,
            KeyType::P256 => Alg::Es256,
            KeyType::P384 => Alg::Es384,
            KeyType::P521 => Alg::Es512,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Es512 => "ES512",
        }
    }

    fn ring(self) -> Option<&'static dyn ring::signature::VerificationAlgorithm> {
        Some(match self {
            Alg::Ps256 => &ring::signature::RSA_PSS_2048_8192_SHA256,
            Alg::Ps384 => &ring::signature::RSA_PSS_2048_8192_SHA384,
            Alg::Ps512 => &ring::signature::RSA_PSS_2048_8192_SHA512,
            Alg::Es256 => &ring::signature::ECDSA_P256_SHA256_FIXED,
            Alg::Es384 => &ring::signature::ECDSA_P384_SHA384_FIXED,
            Alg::Es512 => return None,
        })
    }
}

/// A parsed JWS envelope whose protected header follows the rules; its
/// signature is not checked yet ([`Jws::verify_integrity`]).
pub struct Jws {
    /// The signature algorithm.
    pub alg: Alg,
    /// `io.cncf.notary.signingTime`, seconds since the epoch (claimed by
    /// the signer).
    pub signing_time: u64,
    /// `io.cncf.notary.expiry`, seconds since the epoch.
    pub expiry: Option<u64>,
    /// The payload, decoded.
    pub payload: Vec<u8>,
    /// `x5c`, leaf first.
    pub chain: Vec<Cert>,
    signing_input: String,
    signature: Vec<u8>,
}

fn b64url(s: &str) -> Result<Vec<u8>, Rejection> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| Rejection::Envelope("a field is not base64url"))
}

/// RFC 3339 → seconds since the epoch (times before 1970 are not).
fn time(header: &Map<String, Value>, key: &'static str) -> Result<Option<u64>, Rejection> {
    let Some(v) = header.get(key) else {
        return Ok(None);
    };
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .map(Some)
        .ok_or(Rejection::Header(key, "is not an RFC 3339 time"))
}

impl Jws {
    /// Parses an envelope and applies the protected header rules.
    pub fn parse(bytes: &[u8]) -> Result<Jws, Rejection> {
        let v: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|_| Rejection::Envelope("not a JSON object"))?;
        if let Some(k) = v
            .keys()
            .find(|k| !["payload", "protected", "header", "signature"].contains(&k.as_str()))
        {
            return Err(Rejection::UnknownField(k.clone()));
        }
        let field = |k: &'static str| {
            v.get(k)
                .and_then(Value::as_str)
                .ok_or(Rejection::Envelope(k))
        };
        let (protected_b64, payload_b64) = (field("protected")?, field("payload")?);
        let signature = b64url(field("signature")?)?;
        let header: Map<String, Value> = serde_json::from_slice(&b64url(protected_b64)?)
            .map_err(|_| Rejection::Envelope("protected header is not a JSON object"))?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let alg = Alg::parse(alg_name).ok_or_else(|| Rejection::Algorithm(alg_name.to_string()))?;
        if header.get("cty").and_then(Value::as_str) != Some(PAYLOAD_TYPE) {
            return Err(Rejection::Header(
                "cty",
                "is not application/vnd.cncf.notary.payload.v1+json",
            ));
        }
        check_crit(&header)?;
        match header.get(SIGNING_SCHEME).and_then(Value::as_str) {
            Some("notary.x509") => {}
            Some("notary.x509.signingAuthority") => return Err(Rejection::SigningAuthority),
            other => return Err(Rejection::Scheme(other.unwrap_or("(none)").to_string())),
        }
        if let Some(plugin) = header.get(PLUGIN) {
            return Err(Rejection::Plugin(plugin.to_string()));
        }
        let signing_time =
            time(&header, SIGNING_TIME)?.ok_or(Rejection::Header(SIGNING_TIME, "is missing"))?;
        let expiry = time(&header, EXPIRY)?;
        let x5c = v
            .get("header")
            .and_then(|h| h.get("x5c"))
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or(Rejection::Envelope(
                "no x5c certificate chain in the unprotected header",
            ))?;
        if x5c.len() > MAX_CHAIN {
            return Err(Rejection::Envelope("x5c holds more than 10 certificates"));
        }
        let chain = x5c
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .and_then(|der| Cert::from_der(der).ok())
                    .ok_or(Rejection::Certificate(i))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Jws {
            alg,
            signing_time,
            expiry,
            payload: b64url(payload_b64)?,
            chain,
            signing_input: format!("{protected_b64}.{payload_b64}"),
            signature,
        })
    }

    /// The signature over the signing input verifies with the leaf's key,
    /// by the `alg` that key implies.
    pub fn verify_integrity(&self) -> Result<(), Rejection> {
        let leaf = self.chain.first().ok_or(Rejection::Certificate(0))?;
        let key = leaf.key_type();
        let expected = Alg::for_key(key).ok_or(Rejection::Key(key))?;
        if expected != self.alg {
            return Err(Rejection::AlgorithmMismatch {
                alg: self.alg.name(),
                key,
                expected: expected.name(),
            });
        }
        let ring_alg = self
            .alg
            .ring()
            .ok_or_else(|| Rejection::Algorithm(self.alg.name().to_string()))?;
        ring::signature::UnparsedPublicKey::new(ring_alg, leaf.public_key())
            .verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| Rejection::BadSignature)
    }
}

/// `crit` is an array of header names, lists signingScheme and every other
/// critical header present, and names only headers present and understood.
fn check_crit(header: &Map<String, Value>) -> Result<(), Rejection> {
    let crit: Vec<&str> = header
        .get("crit")
        .and_then(Value::as_array)
        .ok_or(Rejection::Header("crit", "is missing or not an array"))?
        .iter()
        .map(|c| {
            c.as_str()
                .ok_or(Rejection::Header("crit", "holds a non-string"))
        })
        .collect::<Result<_, _>>()?;
    if let Some(missing) = CRITICAL
        .iter()
        .find(|k| (header.contains_key(**k) || **k == SIGNING_SCHEME) && !crit.contains(k))
    {
        return Err(Rejection::NotCritical(missing));
    }
    match crit.iter().find(|c| {
        !header.contains_key(**c)
            || !(UNDERSTOOD.contains(c) || **c == PLUGIN || **c == PLUGIN_MIN_VERSION)
    }) {
        Some(c) => Err(Rejection::UnknownCritical(c.to_string())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(protected: Value) -> Vec<u8> {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        serde_json::to_vec(&json!({
            "payload": enc(b"{}"),
            "protected": enc(&serde_json::to_vec(&protected).unwrap()),
            "header": {"x5c": ["AAAA"]},
            "signature": enc(b"sig"),
        }))
        .unwrap()
    }

    fn header() -> Value {
        json!({
            "alg": "PS256",
            "cty": PAYLOAD_TYPE,
            SIGNING_SCHEME: "notary.x509",
            SIGNING_TIME: "2026-01-02T03:04:05Z",
            "crit": [SIGNING_SCHEME],
        })
    }

    fn parse(h: Value) -> Result<Jws, Rejection> {
        Jws::parse(&envelope(h))
    }

    #[test]
    fn protected_header_rules() {
        // Everything right up to the certificate: the header passed.
        assert_eq!(parse(header()).err(), Some(Rejection::Certificate(0)));
        let with = |k: &str, v: Value| {
            let mut h = header();
            h[k] = v;
            parse(h).err()
        };
        assert_eq!(
            with("alg", json!("none")),
            Some(Rejection::Algorithm("none".into()))
        );
        assert_eq!(
            with("alg", json!("HS256")),
            Some(Rejection::Algorithm("HS256".into()))
        );
        assert!(matches!(
            with("cty", json!("application/json")),
            Some(Rejection::Header("cty", _))
        ));
        assert_eq!(
            with("crit", json!([])),
            Some(Rejection::NotCritical(SIGNING_SCHEME))
        );
        assert!(matches!(
            with("crit", json!("x")),
            Some(Rejection::Header("crit", _))
        ));
        assert_eq!(
            with(EXPIRY, json!("2030-01-01T00:00:00Z")),
            Some(Rejection::NotCritical(EXPIRY))
        );
        assert_eq!(
            with("crit", json!([SIGNING_SCHEME, "io.example.unknown"])),
            Some(Rejection::UnknownCritical("io.example.unknown".into()))
        );
        assert_eq!(
            with(SIGNING_SCHEME, json!("notary.x509.signingAuthority")),
            Some(Rejection::SigningAuthority)
        );
        assert_eq!(
            with(SIGNING_SCHEME, json!("notary.other")),
            Some(Rejection::Scheme("notary.other".into()))
        );
        assert!(matches!(
            with(SIGNING_TIME, json!("yesterday")),
            Some(Rejection::Header(SIGNING_TIME, _))
        ));
        let mut plugin = header();
        plugin[PLUGIN] = json!("com.example.plugin");
        plugin["crit"] = json!([SIGNING_SCHEME, PLUGIN]);
        assert!(matches!(parse(plugin).err(), Some(Rejection::Plugin(_))));
        let mut expiring = header();
        expiring[EXPIRY] = json!("2030-01-01T00:00:00Z");
        expiring["crit"] = json!([SIGNING_SCHEME, EXPIRY]);
        assert_eq!(parse(expiring).err(), Some(Rejection::Certificate(0)));
    }

    #[test]
    fn envelope_shape() {
        assert_eq!(
            Jws::parse(b"[]").err(),
            Some(Rejection::Envelope("not a JSON object"))
        );
        let mut v: Value = serde_json::from_slice(&envelope(header())).unwrap();
        v["extra"] = json!(1);
        assert_eq!(
            Jws::parse(&serde_json::to_vec(&v).unwrap()).err(),
            Some(Rejection::UnknownField("extra".into()))
        );
        let mut v: Value = serde_json::from_slice(&envelope(header())).unwrap();
        v["header"]["x5c"] = json!([]);
        assert!(matches!(
            Jws::parse(&serde_json::to_vec(&v).unwrap()).err(),
            Some(Rejection::Envelope(_))
        ));
    }

    #[test]
    fn alg_follows_the_key() {
        assert_eq!(Alg::for_key(KeyType::Rsa(2048)), Some(Alg::Ps256));
        assert_eq!(Alg::for_key(KeyType::Rsa(3072)), Some(Alg::Ps384));
        assert_eq!(Alg::for_key(KeyType::P384), Some(Alg::Es384));
        assert_eq!(Alg::for_key(KeyType::Rsa(1024)), None);
    }
}
