//! Public keys that signatures are verified against, read from PEM
//! (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo) as cosign writes
//! them: ECDSA P-256 (cosign's default), Ed25519, and RSA of 2048 bits or
//! more with PKCS#1 v1.5 and SHA-256 (cosign's RSA scheme).
//!
//! The arithmetic is RustCrypto's (`p256`, `ed25519-dalek`, `rsa`); this
//! module only picks the scheme a key implies, so a signature is checked
//! the one way its key allows.

use std::fmt;

use p256::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts as _;
use sha2::Digest as _;

/// RSA keys shorter than this are refused (bytes of modulus: 2048 bits).
const MIN_RSA_BYTES: usize = 256;

/// A public key of a supported type.
#[derive(Clone)]
pub enum PublicKey {
    /// ECDSA over P-256 with SHA-256; signatures are ASN.1 DER.
    P256(p256::ecdsa::VerifyingKey),
    /// Ed25519 over the message itself (no pre-hash).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// RSA, PKCS#1 v1.5 with SHA-256.
    Rsa(rsa::RsaPublicKey),
}

/// Why a PEM text is not a usable public key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not a PEM public key of a supported type.
    #[error(
        "not a PEM public key (SubjectPublicKeyInfo) of a supported type: ECDSA P-256, Ed25519 or RSA"
    )]
    Unsupported,
    /// An RSA key below 2048 bits.
    #[error("RSA key of {0} bits is too short (2048 at least)")]
    RsaTooShort(usize),
}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` block.
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
            return Ok(PublicKey::P256(k));
        }
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            return Ok(PublicKey::Ed25519(k));
        }
        if let Ok(k) = rsa::RsaPublicKey::from_public_key_pem(pem) {
            if k.size() < MIN_RSA_BYTES {
                return Err(KeyError::RsaTooShort(k.size() * 8));
            }
            return Ok(PublicKey::Rsa(k));
        }
        Err(KeyError::Unsupported)
    }

    /// The key type, for messages.
    pub fn algorithm(&self) -> &'static str {
        match self {
            PublicKey::P256(_) => "ecdsa-p256",
            PublicKey::Ed25519(_) => "ed25519",
            PublicKey::Rsa(_) => "rsa",
        }
    }

    /// A stable fingerprint of the key (SHA-256 of its canonical encoding),
    /// part of the policy hash: another key is another policy.
    pub fn fingerprint(&self) -> String {
        let bytes: Vec<u8> = match self {
            PublicKey::P256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
            PublicKey::Ed25519(k) => k.as_bytes().to_vec(),
            PublicKey::Rsa(k) => {
                let mut b = k.n().to_bytes_be();
                b.extend_from_slice(&k.e().to_bytes_be());
                b
            }
        };
        hex::encode(sha2::Sha256::digest(&bytes))
    }

    /// Whether `signature` is a valid signature of `message` by this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::P256(k) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            PublicKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(message, &s).is_ok()),
            PublicKey::Rsa(k) => rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|s| {
                rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(k.clone())
                    .verify(message, &s)
                    .is_ok()
            }),
        }
    }
}

// `config show` prints the key's type and fingerprint, not its bytes.
impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!(
            "{} sha256:{}",
            self.algorithm(),
            self.fingerprint()
        ))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} key {}", self.algorithm(), self.fingerprint())
    }
}
