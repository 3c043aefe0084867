//! The signature policy: which images a job may mirror, decided from their
//! signatures before anything of them is written (issue 17).
//!
//! ```text
//! mod.rs      Policy (mode, any/all, verifiers) and its hash
//! keys.rs     PEM public keys: ECDSA P-256, Ed25519, RSA
//! cosign.rs   cosign signatures: simple-signing layers (.sig tags, OCI 1.1
//!             referrers) and Sigstore bundles, verified against keys
//! notation/   Notary Project signatures (JWS), verified against trust
//!             stores of root certificates and trusted identities
//! gate.rs     PolicyGate: the copy engine's Gate; cache, metrics, decision
//! ```
//!
//! What is checked: a signature counts for an image only when it verifies
//! with a configured key **and** its signed payload names the image's
//! digest, i.e. the digest its tag points at (the index of a multi-platform
//! image, whose digest covers every platform manifest it lists). A
//! signature on a single platform manifest says nothing about the others
//! and does not count.
//!
//! Imports [`crate::copy`] (the port it implements), [`crate::registry`]
//! (to read signature blobs), [`crate::store`] (the cache), [`crate::metrics`]
//! and [`crate::oci`].

pub mod cosign;
pub mod gate;
pub mod keys;
pub mod notation;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use sha2::Digest as _;

use crate::oci;

pub use gate::PolicyGate;
pub use keys::{KeyError, PublicKey};
pub use notation::NotationVerifier;

/// What a job does with an image that fails its policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No verification at all (the default).
    #[default]
    Off,
    /// Verify; copy a failing image anyway, and report it.
    Warn,
    /// Verify; a failing image is not copied (nothing of it is written).
    Enforce,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Off => "off",
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        })
    }
}

/// How many of the verifiers an image must satisfy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// One verifier accepting one signature is enough (the default).
    #[default]
    Any,
    /// Every verifier must accept at least one signature.
    All,
}

impl fmt::Display for Require {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Require::Any => "any",
            Require::All => "all",
        })
    }
}

/// A cosign key verifier: signatures made with `key`, whose payload
/// carries every annotation of `annotations`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CosignKey {
    /// The verifier's name (in plans, reasons and the `all` rule).
    pub name: String,
    /// Where the key was read from (for messages).
    pub path: PathBuf,
    /// The key.
    pub key: PublicKey,
    /// Annotations the signed payload's `optional` map must carry, exactly.
    pub annotations: BTreeMap<String, String>,
}

/// A job's resolved signature policy.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Policy {
    /// Off, warn or enforce.
    pub mode: Mode,
    /// Any or all of the verifiers.
    pub require: Require,
    /// cosign key verifiers.
    pub cosign: Vec<CosignKey>,
    /// Notation (Notary Project) verifiers.
    pub notation: Vec<NotationVerifier>,
}

/// A candidate manifest's signature, by the scheme that verifies it.
pub enum Signature {
    /// cosign signature blobs.
    Cosign(Vec<cosign::SignatureBlob>),
    /// A Notation signature manifest: its envelope layer, or why it has
    /// no usable one.
    Notation(Box<Result<oci::Descriptor, notation::Rejection>>),
}

impl Signature {
    /// The signature `manifest` carries, if it is one.
    pub fn of(manifest: &oci::Manifest) -> Option<Signature> {
        if let Some(layer) = notation::signature_layer(manifest) {
            return Some(Signature::Notation(Box::new(layer)));
        }
        let blobs = cosign::signature_blobs(manifest);
        (!blobs.is_empty()).then_some(Signature::Cosign(blobs))
    }
}

impl Policy {
    /// Whether images are verified at all.
    pub fn is_active(&self) -> bool {
        self.mode != Mode::Off
    }

    /// The names of every verifier, in order.
    pub fn verifier_names(&self) -> Vec<&str> {
        self.cosign
            .iter()
            .map(|c| c.name.as_str())
            .chain(self.notation.iter().map(|n| n.name.as_str()))
            .collect()
    }

    /// A hash of what decides whether a signature verifies (keys and
    /// payload constraints, not the mode): a cached verification is reused
    /// only under the same hash, so changing a key re-verifies everything.
    pub fn hash(&self) -> String {
        let mut h = sha2::Sha256::new();
        for c in &self.cosign {
            h.update(format!("cosign\0{}\0{}\0", c.name, c.key.fingerprint()));
            for (k, v) in &c.annotations {
                h.update(format!("{k}={v}\0"));
            }
            h.update(b"\n");
        }
        for n in &self.notation {
            h.update(n.hash_input());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }
}
