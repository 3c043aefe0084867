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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).unwrap()
    }

    #[tokio::test]
    async fn ownership_is_recorded_marked_absent_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        store
            .record_owned_tag("j", "r/x", "v1", &d, at(10))
            .await
            .unwrap();
        store
            .record_owned_tag("other", "r/x", "v1", &d, at(10))
            .await
            .unwrap();
        store
            .set_tag_absent_since("j", "r/x", "v1", Some(at(20)))
            .await
            .unwrap();
        let owned = store.owned_tags("j").await.unwrap();
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].absent_since, Some(at(20)));
        assert_eq!(owned[0].digest, d);
        // Writing it again means the source has it again.
        store
            .record_owned_tag("j", "r/x", "v1", &d, at(30))
            .await
            .unwrap();
        let owned = store.owned_tags("j").await.unwrap();
        assert_eq!((owned[0].absent_since, owned[0].written_at), (None, at(30)));
        store.forget_owned_tag("j", "r/x", "v1").await.unwrap();
        assert!(store.owned_tags("j").await.unwrap().is_empty());
        assert_eq!(store.owned_tags("other").await.unwrap().len(), 1);
        assert_eq!(
            store
                .owned_tag("other", "r/x", "v1")
                .await
                .unwrap()
                .map(|o| o.digest),
            Some(d)
        );
        assert_eq!(store.owned_tag("j", "r/x", "v1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn backups_list_newest_first_and_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        let d: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        for (name, t) in [("v1-old", 10), ("v1-new", 20)] {
            let b = TagBackup {
                backup_tag: name.into(),
                digest: d.clone(),
                created_at: at(t),
            };
            store.record_backup("j", "r/x", "v1", &b).await.unwrap();
        }
        let names = |v: Vec<TagBackup>| v.into_iter().map(|b| b.backup_tag).collect::<Vec<_>>();
        assert_eq!(
            names(store.backups("j", "r/x", "v1").await.unwrap()),
            ["v1-new", "v1-old"]
        );
        assert!(store.backups("j", "r/x", "v2").await.unwrap().is_empty());
        store.forget_backup("j", "r/x", "v1-new").await.unwrap();
        assert_eq!(
            names(store.backups("j", "r/x", "v1").await.unwrap()),
            ["v1-old"]
        );
    }
}
