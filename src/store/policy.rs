//! The signature policy's verification cache: what checking a signature of
//! an image under a policy hash concluded (the verifiers that accepted it,
//! or why none did), so that an unchanged image is not checked again
//! (migration 0004).

use chrono::{DateTime, Utc};
use sqlx::Row;
use tracing::instrument;

use super::{Result, Store, ms};
use crate::oci::Digest;

/// What an earlier check of a signature concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureVerdict {
    /// These verifiers accepted it.
    Accepted(Vec<String>),
    /// No verifier accepted it, for this reason.
    Rejected(String),
}

impl Store {
    /// What checking `signature` for `image` under `policy_hash` concluded
    /// before, if it was checked.
    #[instrument(skip_all)]
    pub async fn signature_verdict(
        &self,
        image: &Digest,
        signature: &Digest,
        policy_hash: &str,
    ) -> Result<Option<SignatureVerdict>> {
        let row = sqlx::query(
            "SELECT verifiers, rejection FROM policy_verifications
             WHERE image_digest = $1 AND signature_digest = $2 AND policy_hash = $3",
        )
        .bind(image.to_string())
        .bind(signature.to_string())
        .bind(policy_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| match r.get::<Option<String>, _>("rejection") {
            Some(reason) => SignatureVerdict::Rejected(reason),
            None => SignatureVerdict::Accepted(
                r.get::<String, _>("verifiers")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
        }))
    }

    /// Records what checking `signature` for `image` under `policy_hash`
    /// concluded.
    #[instrument(skip_all)]
    pub async fn record_signature_verdict(
        &self,
        image: &Digest,
        signature: &Digest,
        policy_hash: &str,
        verdict: &SignatureVerdict,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let (verifiers, rejection) = match verdict {
            SignatureVerdict::Accepted(names) => (names.join(","), None),
            SignatureVerdict::Rejected(reason) => (String::new(), Some(reason.as_str())),
        };
        sqlx::query(
            "INSERT INTO policy_verifications
               (image_digest, signature_digest, policy_hash, verifiers, rejection, verified_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (image_digest, signature_digest, policy_hash) DO UPDATE SET
               verifiers = excluded.verifiers,
               rejection = excluded.rejection,
               verified_at = excluded.verified_at",
        )
        .bind(image.to_string())
        .bind(signature.to_string())
        .bind(policy_hash)
        .bind(verifiers)
        .bind(rejection)
        .bind(ms(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
