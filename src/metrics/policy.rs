//! Signature policy metrics: per job, images verified, refused or warned
//! about, and signatures checked (verified, rejected, or taken from the
//! verification cache).

use prometheus::{IntCounterVec, Registry};

use super::register::counter;
use super::{LABEL_JOB, Metrics, MetricsError, names};

const RESULT: &str = "result";

/// The signature policy's counters.
#[derive(Clone, Debug)]
pub(super) struct PolicyMetrics {
    images: IntCounterVec,
    signatures: IntCounterVec,
}

impl PolicyMetrics {
    pub(super) fn new(r: &Registry) -> Result<PolicyMetrics, MetricsError> {
        Ok(PolicyMetrics {
            images: counter(
                r,
                names::POLICY_IMAGES,
                "Images decided by a job's signature policy. result=verified: \
                 admitted by a trusted signature; refused: not copied (enforce); \
                 warned: copied without a trusted signature (warn).",
                &[LABEL_JOB, RESULT],
            )?,
            signatures: counter(
                r,
                names::POLICY_SIGNATURES,
                "Signatures checked by a job's signature policy. result=verified \
                 or rejected: checked now; cached: accepted by an earlier run \
                 under the same policy, not checked again.",
                &[LABEL_JOB, RESULT],
            )?,
        })
    }

    /// Every result of `job` from 0, so `increase()` sees the first
    /// refusal and the dashboard has a series for each job.
    pub(super) fn job_configured(&self, job: &str) {
        for result in ["verified", "refused", "warned"] {
            self.images.with_label_values(&[job, result]);
        }
        for result in ["verified", "rejected", "cached"] {
            self.signatures.with_label_values(&[job, result]);
        }
    }
}

/// What the policy decided about one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyResult {
    /// A trusted signature admitted it.
    Verified,
    /// Not copied (enforce).
    Refused,
    /// Copied although not verified (warn).
    Warned,
}

/// What happened to one signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureResult {
    /// Verified now.
    Verified,
    /// Checked now and not accepted.
    Rejected,
    /// Accepted by an earlier run (cache).
    Cached,
}

impl Metrics {
    /// Counts one image decided by `job`'s policy.
    pub fn policy_image(&self, job: &str, result: PolicyResult) {
        let label = match result {
            PolicyResult::Verified => "verified",
            PolicyResult::Refused => "refused",
            PolicyResult::Warned => "warned",
        };
        self.policy.images.with_label_values(&[job, label]).inc();
    }

    /// Counts one signature checked by `job`'s policy.
    pub fn policy_signature(&self, job: &str, result: SignatureResult) {
        let label = match result {
            SignatureResult::Verified => "verified",
            SignatureResult::Rejected => "rejected",
            SignatureResult::Cached => "cached",
        };
        self.policy
            .signatures
            .with_label_values(&[job, label])
            .inc();
    }
}
