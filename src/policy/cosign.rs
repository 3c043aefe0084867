//! cosign signatures, key-based, in the forms the walk discovers:
//!
//! - **simple signing** (legacy `sha256-<hex>.sig` tags and OCI 1.1
//!   referrers with `application/vnd.dev.cosign.artifact.sig.v1+json`):
//!   one layer per signature, media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json`, the base64
//!   signature in the layer annotation `dev.cosignproject.cosign/signature`,
//!   signed over the layer's bytes (the payload);
//! - **Sigstore bundles** (`application/vnd.dev.sigstore.bundle.v0.3+json`,
//!   cosign v3) holding a DSSE envelope: the signature is over the DSSE
//!   pre-authentication encoding of an in-toto statement whose predicate
//!   type is cosign's signature predicate.
//!
//! The signature is checked first, with every key; only a payload that
//! verifies is read at all, so nothing unsigned can steer the decision.
//! Then the payload must name the image: `critical.image.docker-manifest-digest`
//! (simple signing) or a `subject` digest (statement) equal to the image
//! digest. Spec notes §5.2–§5.3; cosign `specs/SIGNATURE_SPEC.md`,
//! `specs/BUNDLE_SPEC.md`; DSSE `protocol.md` (PAE).

use base64::Engine as _;
use serde_json::Value;

use super::CosignKey;
use crate::oci::{Descriptor, Digest, Manifest};

/// Layer media type of a simple-signing payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature of a simple-signing layer.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Artifact and layer media type of a Sigstore bundle.
pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// `critical.type` of a simple-signing payload.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// The in-toto predicate type of a cosign signature in a bundle.
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// DSSE payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// A signature blob of a candidate manifest, to read from the source.
#[derive(Clone, Debug)]
pub struct SignatureBlob {
    /// The layer.
    pub layer: Descriptor,
    /// Its form.
    pub form: Form,
}

/// The form of a cosign signature blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// A simple-signing payload, signature in the layer annotation.
    SimpleSigning,
    /// A Sigstore bundle.
    Bundle,
}

/// The cosign signature blobs of `manifest` (none: not a cosign signature).
pub fn signature_blobs(manifest: &Manifest) -> Vec<SignatureBlob> {
    let bundle_manifest = manifest.artifact_type() == Some(BUNDLE);
    manifest
        .blobs()
        .into_iter()
        .filter_map(|d| {
            let form = match d.media_type.as_str() {
                SIMPLE_SIGNING => Form::SimpleSigning,
                BUNDLE if bundle_manifest => Form::Bundle,
                _ => return None,
            };
            Some(SignatureBlob {
                layer: d.clone(),
                form,
            })
        })
        .collect()
}

/// Why a signature does not count for the image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    /// A simple-signing layer without its signature annotation.
    #[error("no {SIGNATURE_ANNOTATION} annotation")]
    NoSignature,
    /// The signature is not base64.
    #[error("signature is not base64")]
    BadBase64,
    /// No configured key verifies the signature (wrong key, or payload
    /// changed after signing).
    #[error("signature does not verify with any configured key{}", if *.keyless { " (it is a keyless signature with a certificate: keyless verification is not supported)" } else { "" })]
    NoKeyVerifies {
        /// The signature carries a certificate (keyless cosign).
        keyless: bool,
    },
    /// A signed payload that is not what a cosign image signature holds.
    #[error("signed payload is not a cosign image signature: {0}")]
    Payload(&'static str),
    /// The payload is signed, but for another image.
    #[error("signed payload names {signed}, not this image")]
    OtherImage {
        /// The digest the payload names.
        signed: String,
    },
    /// Signed and for this image, but a verifier's annotation is missing
    /// or different.
    #[error("verifier {verifier}: payload annotation {key} is {found}, expected {expected:?}")]
    Annotation {
        /// The verifier.
        verifier: String,
        /// The annotation key.
        key: String,
        /// The value required.
        expected: String,
        /// The value found (`missing` when absent).
        found: String,
    },
    /// A bundle that is not a DSSE envelope.
    #[error("bundle without a DSSE envelope (message signatures are not supported)")]
    BundleForm,
    /// The bundle JSON is invalid.
    #[error("bundle is not valid JSON")]
    BundleJson,
}

/// Checks one signature blob's bytes against `keys` for `image`; the
/// verifiers that accept it, or why none does.
pub fn check(
    blob: &SignatureBlob,
    bytes: &[u8],
    keys: &[CosignKey],
    image: &Digest,
) -> Result<Vec<String>, Rejection> {
    match blob.form {
        Form::SimpleSigning => {
            let sig = blob
                .layer
                .annotations
                .get(SIGNATURE_ANNOTATION)
                .ok_or(Rejection::NoSignature)?;
            let sig = decode(sig)?;
            let keyless = blob
                .layer
                .annotations
                .contains_key("dev.sigstore.cosign/certificate");
            let signers = signers(keys, bytes, &sig);
            if signers.is_empty() {
                return Err(Rejection::NoKeyVerifies { keyless });
            }
            simple_signing_payload(bytes, &signers, image)
        }
        Form::Bundle => {
            let bundle: Value = serde_json::from_slice(bytes).map_err(|_| Rejection::BundleJson)?;
            let keyless = bundle["verificationMaterial"].as_object().is_some_and(|m| {
                m.contains_key("certificate") || m.contains_key("x509CertificateChain")
            });
            let env = bundle.get("dsseEnvelope").ok_or(Rejection::BundleForm)?;
            let payload_type = env["payloadType"].as_str().unwrap_or_default();
            let payload = decode(env["payload"].as_str().unwrap_or_default())?;
            let pae = pae(payload_type, &payload);
            let mut accepted: Vec<&CosignKey> = Vec::new();
            for s in env["signatures"].as_array().into_iter().flatten() {
                let sig = decode(s["sig"].as_str().unwrap_or_default())?;
                for k in signers(keys, &pae, &sig) {
                    if !accepted.iter().any(|a| a.name == k.name) {
                        accepted.push(k);
                    }
                }
            }
            if accepted.is_empty() {
                return Err(Rejection::NoKeyVerifies { keyless });
            }
            statement(payload_type, &payload, &accepted, image)
        }
    }
}

/// The keys whose signature `sig` over `message` verifies.
fn signers<'k>(keys: &'k [CosignKey], message: &[u8], sig: &[u8]) -> Vec<&'k CosignKey> {
    keys.iter()
        .filter(|k| k.key.verifies(message, sig))
        .collect()
}

fn decode(s: &str) -> Result<Vec<u8>, Rejection> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| Rejection::BadBase64)
}

/// DSSE pre-authentication encoding: what a DSSE signature signs.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A verified simple-signing payload: must be a cosign image signature for
/// `image`; then each signer's annotation constraints.
fn simple_signing_payload(
    bytes: &[u8],
    signers: &[&CosignKey],
    image: &Digest,
) -> Result<Vec<String>, Rejection> {
    let v: Value = serde_json::from_slice(bytes).map_err(|_| Rejection::Payload("not JSON"))?;
    let critical = &v["critical"];
    if critical["type"].as_str() != Some(SIGNATURE_TYPE) {
        return Err(Rejection::Payload(
            "critical.type is not a cosign container image signature",
        ));
    }
    // Emitted lower-case; some examples capitalise it (spec notes §5.3).
    let image_field = &critical["image"];
    let signed = image_field["docker-manifest-digest"]
        .as_str()
        .or_else(|| image_field["Docker-manifest-digest"].as_str())
        .ok_or(Rejection::Payload(
            "no critical.image.docker-manifest-digest",
        ))?;
    names_image(signed, image)?;
    annotations(&v["optional"], signers)
}

/// A verified DSSE payload: an in-toto statement with cosign's signature
/// predicate and the image among its subjects.
fn statement(
    payload_type: &str,
    payload: &[u8],
    signers: &[&CosignKey],
    image: &Digest,
) -> Result<Vec<String>, Rejection> {
    if payload_type != IN_TOTO {
        return Err(Rejection::Payload(
            "DSSE payload type is not an in-toto statement",
        ));
    }
    let v: Value = serde_json::from_slice(payload).map_err(|_| Rejection::Payload("not JSON"))?;
    if v["predicateType"].as_str() != Some(SIGN_PREDICATE) {
        return Err(Rejection::Payload(
            "predicate type is not a cosign signature",
        ));
    }
    let algorithm = image.algorithm().as_str();
    let subjects: Vec<String> = v["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["digest"][algorithm].as_str())
        .map(|hex| format!("{algorithm}:{hex}"))
        .collect();
    if subjects.is_empty() {
        return Err(Rejection::Payload("statement has no subject digest"));
    }
    if subjects.iter().any(|s| names_image(s, image).is_ok()) {
        // Annotation constraints are a simple-signing notion: a verifier
        // that sets any does not accept bundles.
        let accepted: Vec<String> = signers
            .iter()
            .filter(|k| k.annotations.is_empty())
            .map(|k| k.name.clone())
            .collect();
        return match signers.iter().find(|k| !k.annotations.is_empty()) {
            Some(k) if accepted.is_empty() => Err(Rejection::Annotation {
                verifier: k.name.clone(),
                key: k.annotations.keys().next().cloned().unwrap_or_default(),
                expected: k.annotations.values().next().cloned().unwrap_or_default(),
                found: "not checkable in a bundle".into(),
            }),
            _ => Ok(accepted),
        };
    }
    Err(Rejection::OtherImage {
        signed: subjects.join(", "),
    })
}

fn names_image(signed: &str, image: &Digest) -> Result<(), Rejection> {
    match signed.parse::<Digest>() {
        Ok(d) if &d == image => Ok(()),
        _ => Err(Rejection::OtherImage {
            signed: signed.to_string(),
        }),
    }
}

/// The signers whose annotation constraints the payload's `optional` map
/// meets; the first mismatch when none does.
fn annotations(optional: &Value, signers: &[&CosignKey]) -> Result<Vec<String>, Rejection> {
    let mut accepted = Vec::new();
    let mut first_miss = None;
    for k in signers {
        let miss = k.annotations.iter().find_map(|(key, expected)| {
            let found = match optional.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return Some((key, expected, "missing".to_string())),
            };
            (&found != expected).then_some((key, expected, found))
        });
        match miss {
            None => accepted.push(k.name.clone()),
            Some((key, expected, found)) => {
                first_miss.get_or_insert(Rejection::Annotation {
                    verifier: k.name.clone(),
                    key: key.clone(),
                    expected: expected.clone(),
                    found,
                });
            }
        }
    }
    match first_miss {
        Some(r) if accepted.is_empty() => Err(r),
        _ => Ok(accepted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_dsse_encoding() {
        assert_eq!(
            pae("application/example", b"hello"),
            b"DSSEv1 19 application/example 5 hello".to_vec()
        );
    }

    #[test]
    fn payload_naming_another_image_is_rejected_by_name() {
        let image = Digest::sha256(b"image");
        let other = Digest::sha256(b"other");
        let payload = format!(
            r#"{{"critical":{{"type":"{SIGNATURE_TYPE}","image":{{"docker-manifest-digest":"{other}"}}}},"optional":null}}"#
        );
        assert_eq!(
            simple_signing_payload(payload.as_bytes(), &[], &image),
            Err(Rejection::OtherImage {
                signed: other.to_string()
            })
        );
    }
}
