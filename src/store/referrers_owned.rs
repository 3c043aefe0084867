//! Referrer ownership for withdrawn-referrer sync: which referrers a job
//! published on a target, and since when the source has been without them.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;
use tracing::instrument;

use super::{Result, Store, StoreError, from_ms, ms};
use crate::oci::Digest;

/// A referrer a job published on a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedReferrer {
    /// The job that published it.
    pub job: String,
    /// The target repository, as a reference without tag.
    pub target_repo: String,
    /// Its subject.
    pub subject: Digest,
    /// The referrer manifest.
    pub referrer: Digest,
    /// Published in the subject's fallback index (else listed by the API).
    pub in_fallback: bool,
    /// When the job last published it.
    pub written_at: DateTime<Utc>,
    /// Since when the source has been without it, if it is.
    pub absent_since: Option<DateTime<Utc>>,
}

impl Store {
    /// Records that `job` published `referrer` of `subject` in `target_repo`:
    /// the job's to remove later, and listed at the source now.
    #[instrument(skip_all)]
    pub async fn record_owned_referrer(
        &self,
        job: &str,
        target_repo: &str,
        subject: &Digest,
        referrer: &Digest,
        in_fallback: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO owned_referrers
                 (job, target_repo, subject, referrer, in_fallback, written_at, absent_since)
             VALUES ($1, $2, $3, $4, $5, $6, NULL)
             ON CONFLICT (job, target_repo, subject, referrer)
             DO UPDATE SET in_fallback = excluded.in_fallback,
                           written_at = excluded.written_at, absent_since = NULL",
        )
        .bind(job)
        .bind(target_repo)
        .bind(subject.to_string())
        .bind(referrer.to_string())
        .bind(i64::from(in_fallback))
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every referrer `job` owns, by target repository, subject and digest.
    #[instrument(skip_all)]
    pub async fn owned_referrers(&self, job: &str) -> Result<Vec<OwnedReferrer>> {
        let rows = sqlx::query(
            "SELECT job, target_repo, subject, referrer, in_fallback, written_at, absent_since
             FROM owned_referrers WHERE job = $1 ORDER BY target_repo, subject, referrer",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(owned_from_row).collect()
    }

    /// Sets (`Some`) or clears (`None`) since when the source has been
    /// without an owned referrer.
    #[instrument(skip_all)]
    pub async fn set_referrer_absent_since(
        &self,
        owned: &OwnedReferrer,
        since: Option<DateTime<Utc>>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE owned_referrers SET absent_since = $1
             WHERE job = $2 AND target_repo = $3 AND subject = $4 AND referrer = $5",
        )
        .bind(since.map(ms))
        .bind(&owned.job)
        .bind(&owned.target_repo)
        .bind(owned.subject.to_string())
        .bind(owned.referrer.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Drops the ownership of a referrer (removed, or gone already).
    #[instrument(skip_all)]
    pub async fn forget_owned_referrer(&self, owned: &OwnedReferrer) -> Result<()> {
        sqlx::query(
            "DELETE FROM owned_referrers
             WHERE job = $1 AND target_repo = $2 AND subject = $3 AND referrer = $4",
        )
        .bind(&owned.job)
        .bind(&owned.target_repo)
        .bind(owned.subject.to_string())
        .bind(owned.referrer.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn owned_from_row(row: &AnyRow) -> Result<OwnedReferrer> {
    let digest = |column: &'static str| -> Result<Digest> {
        let value: String = row.try_get(column)?;
        value.parse().map_err(|_| StoreError::Corrupt {
            column: match column {
                "subject" => "owned_referrers.subject",
                _ => "owned_referrers.referrer",
            },
            value,
        })
    };
    Ok(OwnedReferrer {
        job: row.try_get("job")?,
        target_repo: row.try_get("target_repo")?,
        subject: digest("subject")?,
        referrer: digest("referrer")?,
        in_fallback: row.try_get::<i64, _>("in_fallback")? != 0,
        written_at: from_ms(row.try_get("written_at")?)?,
        absent_since: row
            .try_get::<Option<i64>, _>("absent_since")?
            .map(from_ms)
            .transpose()?,
    })
}
