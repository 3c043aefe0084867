//! Tag ownership for deletion sync: which target tags a job wrote, since
//! when the source has been without them, and the backups made before a
//! tag the job wrote moved.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;
use tracing::instrument;

use super::{Result, Store, StoreError, from_ms, ms};
use crate::oci::Digest;

/// A target tag a job wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedTag {
    /// The job that wrote it.
    pub job: String,
    /// The target repository, as a reference without tag.
    pub target_repo: String,
    /// The tag.
    pub tag: String,
    /// The digest the job wrote under it.
    pub digest: Digest,
    /// When the job last wrote it.
    pub written_at: DateTime<Utc>,
    /// Since when the source has been without it, if it is.
    pub absent_since: Option<DateTime<Utc>>,
}

/// A backup tag made before a tag moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagBackup {
    /// The backup tag.
    pub backup_tag: String,
    /// The digest the tag held before the move.
    pub digest: Digest,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Records that `job` wrote `tag` → `digest` in `target_repo`: the tag
    /// is the job's to delete later, and present at the source now.
    #[instrument(skip_all)]
    pub async fn record_owned_tag(
        &self,
        job: &str,
        target_repo: &str,
        tag: &str,
        digest: &Digest,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO owned_tags (job, target_repo, tag, digest, written_at, absent_since)
             VALUES ($1, $2, $3, $4, $5, NULL)
             ON CONFLICT (job, target_repo, tag)
             DO UPDATE SET digest = excluded.digest, written_at = excluded.written_at,
                           absent_since = NULL",
        )
        .bind(job)
        .bind(target_repo)
        .bind(tag)
        .bind(digest.to_string())
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every tag `job` owns, by target repository and tag.
    #[instrument(skip_all)]
    pub async fn owned_tags(&self, job: &str) -> Result<Vec<OwnedTag>> {
        let rows = sqlx::query(
            "SELECT job, target_repo, tag, digest, written_at, absent_since FROM owned_tags
             WHERE job = $1 ORDER BY target_repo, tag",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(owned_from_row).collect()
    }

    /// The ownership record of one tag, if `job` wrote it.
    #[instrument(skip_all)]
    pub async fn owned_tag(
        &self,
        job: &str,
        target_repo: &str,
        tag: &str,
    ) -> Result<Option<OwnedTag>> {
        let row = sqlx::query(
            "SELECT job, target_repo, tag, digest, written_at, absent_since FROM owned_tags
             WHERE job = $1 AND target_repo = $2 AND tag = $3",
        )
        .bind(job)
        .bind(target_repo)
        .bind(tag)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(owned_from_row).transpose()
    }

    /// Records a backup of `tag` made before it moved.
    #[instrument(skip_all)]
    pub async fn record_backup(
        &self,
        job: &str,
        target_repo: &str,
        tag: &str,
        backup: &TagBackup,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO tag_backups (job, target_repo, tag, backup_tag, digest, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (job, target_repo, backup_tag)
             DO UPDATE SET tag = excluded.tag, digest = excluded.digest,
                           created_at = excluded.created_at",
        )
        .bind(job)
        .bind(target_repo)
        .bind(tag)
        .bind(&backup.backup_tag)
        .bind(backup.digest.to_string())
        .bind(ms(backup.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The backups of `tag`, newest first.
    #[instrument(skip_all)]
    pub async fn backups(&self, job: &str, target_repo: &str, tag: &str) -> Result<Vec<TagBackup>> {
        let rows = sqlx::query(
            "SELECT backup_tag, digest, created_at FROM tag_backups
             WHERE job = $1 AND target_repo = $2 AND tag = $3
             ORDER BY created_at DESC, backup_tag DESC",
        )
        .bind(job)
        .bind(target_repo)
        .bind(tag)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let digest: String = row.try_get("digest")?;
                Ok(TagBackup {
                    backup_tag: row.try_get("backup_tag")?,
                    digest: digest.parse().map_err(|_| StoreError::Corrupt {
                        column: "tag_backups.digest",
                        value: digest.clone(),
                    })?,
                    created_at: from_ms(row.try_get("created_at")?)?,
                })
            })
            .collect()
    }

    /// Drops the record of a backup tag (deleted, or no longer ours).
    #[instrument(skip_all)]
    pub async fn forget_backup(
        &self,
        job: &str,
        target_repo: &str,
        backup_tag: &str,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM tag_backups WHERE job = $1 AND target_repo = $2 AND backup_tag = $3",
        )
        .bind(job)
        .bind(target_repo)
        .bind(backup_tag)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets (`Some`) or clears (`None`) since when the source has been
    /// without an owned tag.
    #[instrument(skip_all)]
    pub async fn set_tag_absent_since(
        &self,
        job: &str,
        target_repo: &str,
        tag: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE owned_tags SET absent_since = $1
             WHERE job = $2 AND target_repo = $3 AND tag = $4",
        )
        .bind(since.map(ms))
        .bind(job)
        .bind(target_repo)
        .bind(tag)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Drops the ownership of a tag (deleted, or taken over by someone else).
    #[instrument(skip_all)]
    pub async fn forget_owned_tag(&self, job: &str, target_repo: &str, tag: &str) -> Result<()> {
        sqlx::query("DELETE FROM owned_tags WHERE job = $1 AND target_repo = $2 AND tag = $3")
            .bind(job)
            .bind(target_repo)
            .bind(tag)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn owned_from_row(row: &AnyRow) -> Result<OwnedTag> {
    let digest: String = row.try_get("digest")?;
    Ok(OwnedTag {
        job: row.try_get("job")?,
        target_repo: row.try_get("target_repo")?,
        tag: row.try_get("tag")?,
        digest: digest.parse().map_err(|_| StoreError::Corrupt {
            column: "owned_tags.digest",
            value: digest.clone(),
        })?,
        written_at: from_ms(row.try_get("written_at")?)?,
        absent_since: row
            .try_get::<Option<i64>, _>("absent_since")?
            .map(from_ms)
            .transpose()?,
    })
}
