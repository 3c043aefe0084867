//! [`PolicyGate`]: the signature policy as the copy engine's
//! [`Gate`]. Per image it reads each candidate signature's blobs from the
//! source (small, capped), verifies them (or takes an earlier verification
//! from the state database), and admits or refuses the image by the
//! policy's rule; it explains every signature in the plan, counts the
//! outcome per job, and warns in `warn` mode.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

use super::cosign::{self, Form, SignatureBlob};
use super::{Mode, Policy, Require, Signature, notation};
use crate::copy::{Action, CopyEvent, Decision, Found, Gate, ImageToCheck, NodeKind};
use crate::metrics::{Metrics, PolicyResult, SignatureResult};
use crate::oci::{Descriptor, Digest};
use crate::store::{SignatureVerdict, Store};

/// Signature blobs larger than this are not read (a simple-signing payload
/// is a few hundred bytes, a bundle with a certificate chain a few KiB).
pub const MAX_SIGNATURE_BYTES: u64 = 256 * 1024;

/// Why the policy refused an image (the `unverified: …` item result).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No signature of a known form is attached to the image.
    #[error("no signature found for this digest (policy requires {require} of: {verifiers})")]
    NoSignature {
        /// Any or all.
        require: Require,
        /// The verifiers, comma-separated.
        verifiers: String,
    },
    /// Signatures were found; none counts.
    #[error("no signature by a trusted key: {}", .rejected.join("; "))]
    NotTrusted {
        /// Each signature and why it does not count.
        rejected: Vec<String>,
    },
    /// `require = "all"` and some verifiers accepted nothing.
    #[error("verifier{} {} accepted no signature (policy requires all){}",
        if .missing.len() == 1 { "" } else { "s" }, .missing.join(", "),
        if .rejected.is_empty() { String::new() } else { format!(": {}", .rejected.join("; ")) })]
    Missing {
        /// The verifiers that accepted nothing.
        missing: Vec<String>,
        /// Each rejected signature and why.
        rejected: Vec<String>,
    },
}

/// The signature policy of one job, as a [`Gate`].
pub struct PolicyGate {
    policy: Arc<Policy>,
    hash: String,
    job: String,
    store: Option<Store>,
    metrics: Option<Arc<Metrics>>,
}

impl PolicyGate {
    /// The gate of `job` enforcing `policy`.
    pub fn new(job: &str, policy: Arc<Policy>) -> Self {
        PolicyGate {
            hash: policy.hash(),
            policy,
            job: job.to_string(),
            store: None,
            metrics: None,
        }
    }

    /// Caches verifications in `store` (a no-op run verifies nothing).
    pub fn with_store(mut self, store: Option<Store>) -> Self {
        self.store = store;
        self
    }

    /// Counts decisions in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    async fn cached(&self, image: &Digest, signature: &Digest) -> Option<SignatureVerdict> {
        let store = self.store.as_ref()?;
        match store.signature_verdict(image, signature, &self.hash).await {
            Ok(hit) => hit,
            Err(e) => {
                // The cache only saves work: check instead.
                tracing::warn!(job = %self.job, error = %e, "Could not read the verification cache.");
                None
            }
        }
    }

    async fn remember(&self, image: &Digest, signature: &Digest, verdict: &SignatureVerdict) {
        let Some(store) = &self.store else { return };
        if let Err(e) = store
            .record_signature_verdict(image, signature, &self.hash, verdict, chrono::Utc::now())
            .await
        {
            tracing::warn!(job = %self.job, error = %e, "Could not record a signature verdict.");
        }
    }

    /// Verifies one candidate signature: the verifiers that accept it, or
    /// why none does.
    async fn verify(
        &self,
        image: &ImageToCheck<'_>,
        signature: &Signature,
    ) -> Result<Accepted, NotAccepted> {
        match signature {
            Signature::Cosign(blobs) => self.verify_cosign(image, blobs).await,
            Signature::Notation(layer) => self.verify_notation(image, layer).await,
        }
    }

    /// Verifies the signature blobs of a cosign manifest: the verifiers
    /// that accept any of them, or why none counts.
    async fn verify_cosign(
        &self,
        image: &ImageToCheck<'_>,
        blobs: &[SignatureBlob],
    ) -> Result<Accepted, NotAccepted> {
        let mut accepted: Vec<String> = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        let mut unread = false;
        for blob in blobs {
            let bytes = match read_blob(image, &blob.layer).await {
                Ok(b) => b,
                Err(e) => {
                    unread = true;
                    reasons.push(e);
                    continue;
                }
            };
            match cosign::check(blob, &bytes, &self.policy.cosign, image.digest) {
                Ok(names) => {
                    for n in names {
                        if !accepted.contains(&n) {
                            accepted.push(n);
                        }
                    }
                }
                Err(r) => reasons.push(r.to_string()),
            }
        }
        if accepted.is_empty() {
            reasons.dedup();
            Err(NotAccepted {
                reason: reasons.join("; "),
                cacheable: !unread,
            })
        } else {
            Ok(Accepted {
                names: accepted,
                cacheable: true,
            })
        }
    }

    /// Verifies the envelope of a Notation signature manifest.
    async fn verify_notation(
        &self,
        image: &ImageToCheck<'_>,
        layer: &Result<Descriptor, notation::Rejection>,
    ) -> Result<Accepted, NotAccepted> {
        let refused = |r: notation::Rejection| NotAccepted {
            cacheable: r.is_lasting(),
            reason: r.to_string(),
        };
        if self.policy.notation.is_empty() {
            return Err(refused(notation::Rejection::NoVerifier));
        }
        let layer = layer.as_ref().map_err(|r| refused(r.clone()))?;
        let bytes = read_blob(image, layer)
            .await
            .map_err(|reason| NotAccepted {
                reason,
                cacheable: false,
            })?;
        let target = notation::Target {
            repository: format!("{}/{}", image.source.name(), image.repo),
            digest: image.digest,
            descriptor: image.descriptor.as_ref(),
        };
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
        notation::check(&bytes, &self.policy.notation, &target, now)
            .map(|v| Accepted {
                names: v.names,
                cacheable: v.cacheable,
            })
            .map_err(refused)
    }

    fn count_signature(&self, dry_run: bool, result: SignatureResult) {
        if let Some(m) = self.metrics.as_ref().filter(|_| !dry_run) {
            m.policy_signature(&self.job, result);
        }
    }
}

/// The verifiers that accepted a signature.
struct Accepted {
    names: Vec<String>,
    /// Whether the verdict may be remembered: not when it depends on the
    /// time (a Notation signature with an expiry).
    cacheable: bool,
}

/// Why no verifier accepted a signature.
struct NotAccepted {
    reason: String,
    /// Whether the verdict may be remembered. Not when a blob could not be
    /// read, or a Notation certificate is not valid yet: another try may
    /// pass. Everything else follows from the signature manifest's digest
    /// (which pins its blobs) and the policy, and is.
    cacheable: bool,
}

/// Reads a signature blob from the source, refusing oversized ones before
/// and while reading (the announced size may lie).
async fn read_blob(image: &ImageToCheck<'_>, layer: &Descriptor) -> Result<Vec<u8>, String> {
    let d = &layer.digest;
    if layer.size > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "signature blob {d} is {} bytes, over the {MAX_SIGNATURE_BYTES}-byte cap",
            layer.size
        ));
    }
    let mut body = image
        .source
        .blob_get(image.repo, d)
        .await
        .map_err(|e| format!("cannot read signature blob: {e}"))?;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.stream.next().await {
        let chunk = chunk.map_err(|e| format!("cannot read signature blob: {e}"))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_SIGNATURE_BYTES {
            return Err(format!(
                "signature blob {d} is over the {MAX_SIGNATURE_BYTES}-byte cap"
            ));
        }
    }
    Ok(bytes)
}

fn step(digest: &Digest, kind: NodeKind, reason: String) -> CopyEvent {
    CopyEvent {
        digest: Some(digest.clone()),
        kind,
        action: Action::Verify,
        size: 0,
        reason,
        failure: None,
    }
}

fn form_name(found: Found, signature: &Signature) -> &'static str {
    let blobs = match signature {
        Signature::Notation(_) => return "notation signature",
        Signature::Cosign(blobs) => blobs,
    };
    match (found, blobs.first().map(|b| b.form)) {
        (_, Some(Form::Bundle)) => "sigstore bundle",
        (Found::CosignTag, _) => "cosign .sig tag",
        (Found::Referrer, _) => "cosign referrer",
    }
}

#[async_trait]
impl Gate for PolicyGate {
    async fn check(&self, image: ImageToCheck<'_>) -> Decision {
        let mut decision = Decision::default();
        let mut accepted: BTreeSet<String> = BTreeSet::new();
        let mut rejected: Vec<String> = Vec::new();
        let mut signatures = 0usize;
        for cand in &image.candidates {
            let Some(signature) = Signature::of(&cand.manifest) else {
                continue; // an SBOM, an attestation, ...: not a signature
            };
            signatures += 1;
            let sig = cand.manifest.digest();
            let kind = match cand.found {
                Found::Referrer => NodeKind::Referrer,
                Found::CosignTag => NodeKind::Cosign,
            };
            let form = form_name(cand.found, &signature);
            match self.cached(image.digest, sig).await {
                Some(SignatureVerdict::Accepted(names)) => {
                    self.count_signature(image.dry_run, SignatureResult::Cached);
                    decision.steps.push(step(
                        sig,
                        kind,
                        format!("{form}: verified by {} (cached)", names.join(", ")),
                    ));
                    accepted.extend(names);
                    continue;
                }
                Some(SignatureVerdict::Rejected(reason)) => {
                    self.count_signature(image.dry_run, SignatureResult::Cached);
                    decision.steps.push(step(
                        sig,
                        kind,
                        format!("{form}: rejected (cached): {reason}"),
                    ));
                    rejected.push(format!("{sig} ({form}): {reason}"));
                    continue;
                }
                None => {}
            }
            match self.verify(&image, &signature).await {
                Ok(Accepted { names, cacheable }) => {
                    self.count_signature(image.dry_run, SignatureResult::Verified);
                    decision.steps.push(step(
                        sig,
                        kind,
                        format!("{form}: verified by {}", names.join(", ")),
                    ));
                    accepted.extend(names.iter().cloned());
                    if !image.dry_run && cacheable {
                        self.remember(image.digest, sig, &SignatureVerdict::Accepted(names))
                            .await;
                    }
                }
                Err(NotAccepted { reason, cacheable }) => {
                    self.count_signature(image.dry_run, SignatureResult::Rejected);
                    decision
                        .steps
                        .push(step(sig, kind, format!("{form}: rejected: {reason}")));
                    rejected.push(format!("{sig} ({form}): {reason}"));
                    if !image.dry_run && cacheable {
                        self.remember(image.digest, sig, &SignatureVerdict::Rejected(reason))
                            .await;
                    }
                }
            }
        }
        let policy = &self.policy;
        let refusal = match policy.require {
            Require::Any if !accepted.is_empty() => None,
            Require::All => {
                let missing: Vec<String> = policy
                    .verifier_names()
                    .into_iter()
                    .filter(|n| !accepted.contains(*n))
                    .map(str::to_string)
                    .collect();
                (!missing.is_empty()).then_some(Refusal::Missing { missing, rejected })
            }
            Require::Any if signatures == 0 => Some(Refusal::NoSignature {
                require: policy.require,
                verifiers: policy.verifier_names().join(", "),
            }),
            Require::Any => Some(Refusal::NotTrusted { rejected }),
        };
        let (result, line) = match (&refusal, policy.mode) {
            (None, _) => (
                PolicyResult::Verified,
                format!(
                    "admitted ({} of: {}): verified by {}",
                    policy.require,
                    policy.verifier_names().join(", "),
                    accepted.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ),
            (Some(r), Mode::Warn) => {
                if !image.dry_run {
                    tracing::warn!(job = %self.job, repository = %image.repo, digest = %image.digest, reason = %r, "Image not verified; copied anyway (policy mode warn).");
                }
                (
                    PolicyResult::Warned,
                    format!("not verified, copied anyway (warn): {r}"),
                )
            }
            (Some(r), _) => (PolicyResult::Refused, format!("refused (enforce): {r}")),
        };
        if let Some(m) = self.metrics.as_ref().filter(|_| !image.dry_run) {
            m.policy_image(&self.job, result);
        }
        decision.steps.push(step(image.digest, image.kind, line));
        decision.refusal = match (refusal, policy.mode) {
            (Some(r), Mode::Enforce) => Some(Arc::new(r)),
            _ => None,
        };
        decision
    }
}
