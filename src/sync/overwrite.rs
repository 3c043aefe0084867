//! Moved tags (`[jobs.overwrite]`): before the copy moves a target tag this
//! job wrote to the source's new digest, keep the old digest under a
//! backup tag (pruned to the newest `keep`), or refuse the move.
//!
//! Only tags in `owned_tags` that still point at the digest the job wrote
//! count: a tag someone else wrote or moved is theirs, and moves as before.

use chrono::{DateTime, Utc};
use futures::future::FutureExt;

use super::Syncer;
use super::deletions::{Outcome, remove_tag};
use super::items::{Item, repo_name};
use super::report::{ItemResult, failed};
use crate::config::{Job, OverwriteMode};
use crate::oci::{Digest, Reference, Tag};
use crate::registry::{Precondition, Registry};
use crate::store::{Store, TagBackup};

impl Syncer {
    /// Applies the job's overwrite mode before `item`'s tag moves to
    /// `new`. `Some` stops the item with that result.
    pub(super) async fn before_move(
        &self,
        job: &Job,
        item: &Item,
        new: &Digest,
        store: Option<&Store>,
        now: DateTime<Utc>,
    ) -> Option<ItemResult> {
        let policy = &job.overwrite;
        let (Some(store), Some(tag)) = (store, item.dst_tag()) else {
            return None;
        };
        if policy.mode == OverwriteMode::Move {
            return None;
        }
        let repo_key = repo_name(&item.dst);
        let owned = match store
            .owned_tag(&job.name, &repo_key, tag.as_str())
            .boxed()
            .await
        {
            Ok(Some(o)) if &o.digest != new => o,
            Ok(_) => return None,
            Err(e) => {
                return Some(failed(
                    format!("{repo_key}:{tag}: cannot read whether this job wrote the tag: {e}"),
                    "store",
                    None,
                ));
            }
        };
        let target = match self.open(job, &item.dst.location) {
            Ok(t) => t,
            Err(e) => return Some(failed(&e, "registry", None)),
        };
        let old = owned.digest;
        match target
            .manifest_head(&item.dst.repo, &Reference::Tag(tag.clone()))
            .await
        {
            Ok(Some(d)) if d.digest == old => {}
            // Gone, or moved by someone else: not ours to keep or refuse.
            Ok(_) => return None,
            Err(e) => return Some(failed(&e, e.kind.label(), Some(&e.registry))),
        }
        if policy.mode == OverwriteMode::Immutable {
            return Some(failed(
                format!(
                    "{repo_key}:{tag} is immutable (jobs.overwrite.mode = \"immutable\"): it holds \
                     {old}, written by this job, and the source moved it to {new}"
                ),
                "immutable_tag",
                None,
            ));
        }
        let backup = TagBackup {
            backup_tag: policy.backup_name(tag.as_str(), now),
            digest: old,
            created_at: now,
        };
        if let Err(e) = self
            .backup(job, target.as_ref(), item, &tag, &backup, store)
            .await
        {
            return Some(failed(
                format!(
                    "{repo_key}:{tag}: cannot keep {} under backup tag {} before moving it: {e}",
                    backup.digest, backup.backup_tag
                ),
                "backup",
                None,
            ));
        }
        None
    }

    /// Writes the backup tag, records it and prunes older backups.
    async fn backup(
        &self,
        job: &Job,
        target: &dyn Registry,
        item: &Item,
        tag: &Tag,
        backup: &TagBackup,
        store: &Store,
    ) -> Result<(), String> {
        let repo = &item.dst.repo;
        let repo_key = repo_name(&item.dst);
        let backup_tag = Tag::new(&backup.backup_tag).map_err(|e| e.to_string())?;
        let manifest = target
            .manifest_get(repo, &Reference::Digest(backup.digest.clone()))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("manifest {} is gone from the target", backup.digest))?;
        target
            .manifest_put(
                repo,
                &Reference::Tag(backup_tag),
                &manifest,
                Precondition::None,
            )
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(job = %job.name, target = %format!("{repo_key}:{tag}"), backup = %backup.backup_tag, digest = %backup.digest, "Kept the old digest under a backup tag before moving the tag.");
        if let Some(m) = &self.metrics {
            m.deletions().backed_up(&job.name);
        }
        store
            .record_backup(&job.name, &repo_key, tag.as_str(), backup)
            .boxed()
            .await
            .map_err(|e| e.to_string())?;
        let backups = store
            .backups(&job.name, &repo_key, tag.as_str())
            .boxed()
            .await
            .map_err(|e| e.to_string())?;
        for old in backups.iter().skip(job.overwrite.keep) {
            self.prune(job, target, item, old, store).await;
        }
        Ok(())
    }

    /// Deletes one backup beyond `keep`; a failure leaves it for next time.
    async fn prune(
        &self,
        job: &Job,
        target: &dyn Registry,
        item: &Item,
        old: &TagBackup,
        store: &Store,
    ) {
        let repo_key = repo_name(&item.dst);
        let Ok(tag) = Tag::new(&old.backup_tag) else {
            return;
        };
        match remove_tag(job, target, &item.dst.repo, &tag, &old.digest).await {
            Ok(Outcome::Deleted(kind)) => {
                if let Some(m) = &self.metrics {
                    m.deletions().deleted(&job.name, kind.as_str());
                }
            }
            Ok(Outcome::NotOurs(_)) => {}
            Ok(Outcome::Kept(reason)) => {
                tracing::info!(job = %job.name, backup = %format!("{repo_key}:{tag}"), "Kept an old backup tag: {reason}.");
                return;
            }
            Err(e) => {
                tracing::warn!(job = %job.name, backup = %format!("{repo_key}:{tag}"), error = %e, "Could not delete an old backup tag.");
                return;
            }
        }
        if let Err(e) = store
            .forget_backup(&job.name, &repo_key, &old.backup_tag)
            .boxed()
            .await
        {
            tracing::warn!(job = %job.name, error = %e, "Could not drop the record of a deleted backup tag.");
        }
    }
}
