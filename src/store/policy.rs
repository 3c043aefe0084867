//! The signature policy's verification cache: which verifiers accepted a
//! signature of an image under a policy hash, so that an unchanged image
//! is not verified again (migration 0004).

use chrono::{DateTime, Utc};
use sqlx::Row;
use tracing::instrument;

use super::{Result, Store, ms};
use crate::oci::Digest;

impl Store {
    /// The verifiers that accepted `signature` for `image` under
    /// `policy_hash`, if it was verified before.
    #[instrument(skip_all)]
    pub async fn verified_signature(
        &self,
        image: &Digest,
        signature: &Digest,
        policy_hash: &str,
    ) -> Result<Option<Vec<String>>> {
        let row = sqlx::query(
            "SELECT verifiers FROM policy_verifications
             WHERE image_digest = $1 AND signature_digest = $2 AND policy_hash = $3",
        )
        .bind(image.to_string())
        .bind(signature.to_string())
        .bind(policy_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            r.get::<String, _>("verifiers")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        }))
    }

    /// Records that `verifiers` accepted `signature` for `image` under
    /// `policy_hash`.
    #[instrument(skip_all)]
    pub async fn record_verified_signature(
        &self,
        image: &Digest,
        signature: &Digest,
        policy_hash: &str,
        verifiers: &[String],
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO policy_verifications
               (image_digest, signature_digest, policy_hash, verifiers, verified_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (image_digest, signature_digest, policy_hash) DO UPDATE SET
               verifiers = excluded.verifiers,
               verified_at = excluded.verified_at",
        )
        .bind(image.to_string())
        .bind(signature.to_string())
        .bind(policy_hash)
        .bind(verifiers.join(","))
        .bind(ms(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_verified_signature_is_found_only_under_its_policy_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        let (image, sig) = (Digest::sha256(b"image"), Digest::sha256(b"sig"));
        assert_eq!(
            store.verified_signature(&image, &sig, "h1").await.unwrap(),
            None
        );
        let names = vec!["release".to_string(), "ci".to_string()];
        store
            .record_verified_signature(&image, &sig, "h1", &names, Utc::now())
            .await
            .unwrap();
        assert_eq!(
            store.verified_signature(&image, &sig, "h1").await.unwrap(),
            Some(names)
        );
        assert_eq!(
            store.verified_signature(&image, &sig, "h2").await.unwrap(),
            None
        );
        let other = Digest::sha256(b"other image");
        assert_eq!(
            store.verified_signature(&other, &sig, "h1").await.unwrap(),
            None
        );
    }
}
