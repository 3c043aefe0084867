//! Notary Project (Notation) signatures, verified against trust stores of
//! root certificates and trusted identities.
//!
//! ```text
//! mod.rs       recognising a signature manifest; the checks in order
//! jws.rs       the JWS envelope: protected header rules, integrity
//! certs.rs     certificates: leaf requirements, validity, trust store
//! identity.rs  trusted identities (x509 subjects) and their matching
//! rule.rs      a trust rule: stores, identities, level
//! trust_policy.rs  notation's trustpolicy.json and trust store layout
//! ```
//!
//! The order is the specification's (specs/trust-store-trust-policy.md,
//! "Signature Verification"), at its `strict` level without revocation:
//! integrity (the envelope's signature verifies with its leaf certificate's
//! key), validity of every certificate at verification time (no timestamp
//! countersignature is read), authenticity (the chain leads to a trusted
//! root, the leaf's subject is a trusted identity), expiry; then the
//! signed payload must name the image. A verifier's trust rule is inline
//! (one trust store, identities, `strict`) or chosen per source
//! repository from notation's own `trustpolicy.json`.

pub mod certs;
pub mod identity;
pub mod jws;
pub mod rule;
pub mod trust_policy;

use serde_json::Value;

pub use certs::{TrustStore, TrustStoreError};
pub use identity::{Identity, IdentityError};
pub use rule::{Level, Rule};
pub use trust_policy::{TrustPolicy, TrustPolicyError};

use crate::oci::{Descriptor, Digest, Manifest, ManifestKind};
use certs::{ChainError, KeyType};
use jws::Jws;

/// `artifactType` (or legacy `config.mediaType`) of a signature manifest.
pub const SIGNATURE_ARTIFACT: &str = "application/vnd.cncf.notary.signature";
/// Layer media type of a JWS envelope.
pub const JWS: &str = "application/jose+json";
/// Layer media type of a COSE envelope.
pub const COSE: &str = "application/cose";

/// A Notation verifier: signatures whose chain leads to a trusted root and
/// whose signer is a trusted identity, by its trust rule.
#[derive(Clone, serde::Serialize)]
pub struct NotationVerifier {
    /// The verifier's name (in plans, reasons and the `all` rule).
    pub name: String,
    /// Where its trust rule comes from.
    #[serde(serialize_with = "serialize_trust")]
    pub trust: Trust,
}

/// A verifier's trust rule(s).
#[derive(Clone)]
pub enum Trust {
    /// One trust store and identity list, at the `strict` level.
    Inline(Rule),
    /// notation's trust policy file: a rule per source repository.
    Policy(TrustPolicy),
}

impl std::fmt::Debug for NotationVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(&self.trust))
    }
}

// `config show` prints the stores' paths and root fingerprints, or the
// trust policy's path.
fn describe(trust: &Trust) -> String {
    match trust {
        Trust::Inline(rule) => format!(
            "{} (sha256:{}), identities {:?}",
            rule.stores
                .iter()
                .map(|s| s.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            rule.stores
                .iter()
                .flat_map(TrustStore::fingerprints)
                .collect::<Vec<_>>()
                .join(", sha256:"),
            rule.identities
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ),
        Trust::Policy(p) => format!("trust policy {}", p.path.display()),
    }
}

fn serialize_trust<S: serde::Serializer>(t: &Trust, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&describe(t))
}

impl NotationVerifier {
    /// What decides this verifier's verdicts, for the policy hash.
    pub fn hash_input(&self) -> String {
        let rules = match &self.trust {
            Trust::Inline(rule) => rule.hash_input(),
            Trust::Policy(p) => p.hash_input(),
        };
        format!("notation\0{}\0{rules}", self.name)
    }

    /// The rule for the source repository `<registry>/<path>`.
    fn rule_for(&self, repository: &str) -> Option<&Rule> {
        match &self.trust {
            Trust::Inline(rule) => Some(rule),
            Trust::Policy(p) => p.rule_for(repository),
        }
    }
}

/// The envelope layer of a Notation signature manifest, or why the
/// manifest is not a usable one.
pub fn signature_layer(manifest: &Manifest) -> Option<Result<Descriptor, Rejection>> {
    let ManifestKind::Image { config, layers } = manifest.kind() else {
        return None;
    };
    let config_type = config.as_ref().map(|c| c.media_type.as_str());
    let is_notation = match manifest.artifact_type() {
        Some(t) => t == SIGNATURE_ARTIFACT,
        None => config_type == Some(SIGNATURE_ARTIFACT),
    };
    if !is_notation {
        return None;
    }
    Some(match layers.as_slice() {
        [l] if l.media_type == JWS => Ok(l.clone()),
        [l] if l.media_type == COSE => Err(Rejection::Cose),
        _ => Err(Rejection::Layers),
    })
}

/// Why a Notation signature does not count for the image.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    /// The policy has no Notation verifier.
    #[error("no notation verifier is configured")]
    NoVerifier,
    /// Not exactly one envelope layer of a known type.
    #[error(
        "notation signature manifest must have exactly one layer, application/jose+json or application/cose"
    )]
    Layers,
    /// COSE envelope.
    #[error("COSE envelopes are not supported (JWS, application/jose+json, is)")]
    Cose,
    /// Structurally not a flattened JWS JSON envelope.
    #[error("invalid JWS envelope: {0}")]
    Envelope(&'static str),
    /// A top-level field the specification does not allow.
    #[error("invalid JWS envelope: unknown top-level field {0:?}")]
    UnknownField(String),
    /// A protected header with a wrong or missing value.
    #[error("protected header {0} {1}")]
    Header(&'static str, &'static str),
    /// `alg` not one of the allowed ones.
    #[error("signature algorithm {0:?} is not supported (PS256, PS384, PS512, ES256, ES384 are)")]
    Algorithm(String),
    /// A critical header not listed in `crit`.
    #[error("protected header {0} is critical but not listed in crit")]
    NotCritical(&'static str),
    /// `crit` names a header absent or not understood.
    #[error("crit lists {0:?}, which is absent or not understood")]
    UnknownCritical(String),
    /// The signing-authority scheme.
    #[error(
        "signing scheme notary.x509.signingAuthority needs a signing-authority trust store: not supported"
    )]
    SigningAuthority,
    /// Another signing scheme.
    #[error("unknown signing scheme {0:?} (notary.x509 is supported)")]
    Scheme(String),
    /// A verification plugin is required.
    #[error("signature requires verification plugin {0}: plugins are not supported")]
    Plugin(String),
    /// An `x5c` entry is not a base64 DER certificate.
    #[error("x5c certificate {0} is not a base64 DER X.509 certificate")]
    Certificate(usize),
    /// A signing key of an unsupported type or size.
    #[error(
        "signing certificate key {0:?} is not supported (RSA 2048/3072/4096, ECDSA P-256/P-384/P-521)"
    )]
    Key(KeyType),
    /// `alg` differs from what the signing key implies.
    #[error("alg {alg} does not match the signing key ({key:?} signs with {expected})")]
    AlgorithmMismatch {
        /// The header's `alg`.
        alg: &'static str,
        /// The key.
        key: KeyType,
        /// What that key implies.
        expected: &'static str,
    },
    /// The signature does not verify (the envelope changed after signing).
    #[error("signature does not verify with the signing certificate's key")]
    BadSignature,
    /// The chain breaks a rule that no trust store changes.
    #[error("{0}")]
    Chain(ChainError),
    /// No verifier trusts the signature.
    #[error("{}", .reasons.join("; "))]
    NotTrusted {
        /// Per verifier, why.
        reasons: Vec<String>,
        /// Whether that holds for good (not: a certificate not valid now).
        lasting: bool,
    },
    /// The payload is not a Notary Project payload.
    #[error("signed payload is not a Notary Project payload: {0}")]
    Payload(&'static str),
    /// The payload is signed, but for another image.
    #[error("signed payload names {signed}, not this image")]
    OtherImage {
        /// The digest the payload names.
        signed: String,
    },
    /// Digest right, but media type or size not the image's.
    #[error("signed payload gives {field} {signed}, but the image's is {actual}")]
    TargetMismatch {
        /// `mediaType` or `size`.
        field: &'static str,
        /// The signed value.
        signed: String,
        /// The image's.
        actual: String,
    },
}

impl Rejection {
    /// Whether the verdict holds for good (may be remembered): not when a
    /// certificate is outside its validity at verification time, which
    /// may be "not yet".
    pub fn is_lasting(&self) -> bool {
        !matches!(self, Rejection::NotTrusted { lasting: false, .. })
    }
}

/// The verifiers that accepted a signature.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    /// Their names.
    pub names: Vec<String>,
    /// Whether the verdict may be remembered: not for a signature with an
    /// expiry, whose verdict changes with time.
    pub cacheable: bool,
}

/// The image a signature must name: its root manifest's descriptor (its
/// digest at least), and where it is (to pick a trust policy).
pub struct Target<'a> {
    /// The source repository, `<registry>/<path>`.
    pub repository: String,
    /// The image digest.
    pub digest: &'a Digest,
    /// Media type and size of the root manifest, when known.
    pub descriptor: Option<&'a Descriptor>,
}

/// Checks one JWS envelope against `verifiers` for `target` at `now`
/// (seconds since the epoch): the verifiers that accept it, or why none
/// does.
pub fn check(
    bytes: &[u8],
    verifiers: &[NotationVerifier],
    target: &Target<'_>,
    now: u64,
) -> Result<Verified, Rejection> {
    let jws = Jws::parse(bytes)?;
    jws.verify_integrity()?;
    certs::check_chain(&jws.chain, jws.signing_time).map_err(Rejection::Chain)?;
    let mut accepted = Vec::new();
    let mut reasons = Vec::new();
    let mut lasting = true;
    for v in verifiers {
        let Some(rule) = v.rule_for(&target.repository) else {
            reasons.push(format!(
                "verifier {}: no trust policy applies to {}",
                v.name, target.repository
            ));
            continue;
        };
        match rule.admits(&jws, now) {
            Ok(()) => accepted.push(v.name.clone()),
            Err(r) => {
                lasting &= r.lasting;
                reasons.push(format!("verifier {}: {}", v.name, r.reason));
            }
        }
    }
    if accepted.is_empty() {
        return Err(Rejection::NotTrusted { reasons, lasting });
    }
    names_target(&jws.payload, target)?;
    Ok(Verified {
        names: accepted,
        cacheable: jws.expiry.is_none(),
    })
}

/// The payload's `targetArtifact` must be the image.
fn names_target(payload: &[u8], target: &Target<'_>) -> Result<(), Rejection> {
    let v: Value = serde_json::from_slice(payload).map_err(|_| Rejection::Payload("not JSON"))?;
    let t = &v["targetArtifact"];
    let signed = t["digest"]
        .as_str()
        .ok_or(Rejection::Payload("no targetArtifact.digest"))?;
    match signed.parse::<Digest>() {
        Ok(d) if &d == target.digest => {}
        _ => {
            return Err(Rejection::OtherImage {
                signed: signed.to_string(),
            });
        }
    }
    let Some(root) = target.descriptor else {
        return Ok(());
    };
    let media_type = t["mediaType"].as_str().unwrap_or_default();
    if media_type != root.media_type {
        return Err(Rejection::TargetMismatch {
            field: "mediaType",
            signed: format!("{media_type:?}"),
            actual: root.media_type.clone(),
        });
    }
    if t["size"].as_u64() != Some(root.size) {
        return Err(Rejection::TargetMismatch {
            field: "size",
            signed: t["size"].to_string(),
            actual: root.size.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(v: serde_json::Value) -> Manifest {
        Manifest::parse(serde_json::to_vec(&v).unwrap().into(), None).unwrap()
    }

    fn desc(media_type: &str, content: &[u8]) -> serde_json::Value {
        json!({"mediaType": media_type, "digest": Digest::sha256(content).to_string(), "size": content.len()})
    }

    fn signature(artifact_type: Option<&str>, config: &str, layers: &[&str]) -> Manifest {
        let mut v = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc(config, b"{}"),
            "layers": layers.iter().map(|l| desc(l, l.as_bytes())).collect::<Vec<_>>()});
        if let Some(t) = artifact_type {
            v["artifactType"] = json!(t);
        }
        manifest(v)
    }

    #[test]
    fn signature_manifests_are_recognised_by_artifact_type_or_legacy_config() {
        let empty = "application/vnd.oci.empty.v1+json";
        let layer = |m: &Manifest| signature_layer(m).map(|r| r.map(|d| d.media_type));
        assert_eq!(
            layer(&signature(Some(SIGNATURE_ARTIFACT), empty, &[JWS])),
            Some(Ok(JWS.to_string()))
        );
        assert_eq!(
            layer(&signature(None, SIGNATURE_ARTIFACT, &[JWS])),
            Some(Ok(JWS.to_string()))
        );
        assert_eq!(
            layer(&signature(Some(SIGNATURE_ARTIFACT), empty, &[COSE])),
            Some(Err(Rejection::Cose))
        );
        assert_eq!(
            layer(&signature(Some(SIGNATURE_ARTIFACT), empty, &[JWS, JWS])),
            Some(Err(Rejection::Layers))
        );
        assert_eq!(
            layer(&signature(Some(SIGNATURE_ARTIFACT), empty, &["text/plain"])),
            Some(Err(Rejection::Layers))
        );
        // Another artifact type wins over a notation config type.
        assert_eq!(
            layer(&signature(
                Some("application/spdx+json"),
                SIGNATURE_ARTIFACT,
                &[JWS]
            )),
            None
        );
        assert_eq!(layer(&signature(None, empty, &[JWS])), None);
    }
}
