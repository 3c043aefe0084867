//! Deletion sync (`[jobs.delete]`): target tags this job wrote are removed
//! once the source has been without them for the grace period.
//!
//! Safety rules, in the order they apply:
//! - only tags recorded in `owned_tags` (written by this job) are candidates;
//!   a tag that now points at another digest was moved by someone else and
//!   stops being ours;
//! - a tag is due only after `grace` of continuous absence from the source
//!   (or from the job's selection), measured from the first run without it;
//! - the guard: a run whose source selects nothing while the job owns tags,
//!   or with more due than `max_fraction` of the owned tags (at least one),
//!   deletes nothing and fails by name;
//! - a tag is untagged where the registry can; else (distribution 2.8: 400,
//!   Docker Hub: 405) its digest is deleted only when no other tag, index
//!   or referrer on the target still needs it, since a digest delete
//!   removes every tag pointing at it (spec-notes §1.6, §8).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use futures::future::FutureExt;

use super::items::{Item, repo_name};
use super::{ItemFailure, JobReport, Syncer};
use crate::config::Job;
use crate::copy::CopyReport;
use crate::oci::media_type::is_index;
use crate::oci::referrers::fallback_tag;
use crate::oci::{Digest, ImageReference, Reference, RepoName, Tag};
use crate::registry::{ErrorKind, Registry, RegistryError};
use crate::store::{OwnedTag, Store};

/// Target repository (as a reference without tag) and tag.
pub(super) type TargetTag = (String, String);

/// What deletion sync did (or, in a plan, would do) in one run.
#[derive(Clone, Debug, Default)]
pub struct DeletionReport {
    /// Owned tags the source is without, not deleted this run, oldest
    /// absence first: when each became absent and when it is due.
    pub pending: Vec<PendingDeletion>,
    /// Tags deleted this run.
    pub deleted: Vec<DeletedTag>,
    /// Due tags left in place, and why (still needed on the target).
    pub kept: Vec<KeptTag>,
    /// Why the guard tripped, when it did: nothing was deleted.
    pub guard_tripped: Option<String>,
}

/// An owned tag waiting out its grace period (or due now).
#[derive(Clone, Debug)]
pub struct PendingDeletion {
    /// `host/repo:tag` on the target.
    pub target: String,
    /// The digest the job wrote under it.
    pub digest: Digest,
    /// First run that found it absent from the source.
    pub absent_since: DateTime<Utc>,
    /// When it may be deleted.
    pub due_at: DateTime<Utc>,
    /// The grace period has passed: this run deletes it (guard permitting).
    pub due: bool,
}

/// How a tag was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionKind {
    /// `DELETE …/manifests/<tag>`: only the tag went.
    Untag,
    /// `DELETE …/manifests/<digest>`: nothing else on the target needed it.
    Digest,
    /// A withdrawn referrer left the subject's fallback index, and its
    /// manifest too where the job deletes (see `withdrawn.rs`).
    Referrer,
}

impl DeletionKind {
    /// A bounded label (`tag`, `digest`, `referrer`), as metrics count it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionKind::Untag => "tag",
            DeletionKind::Digest => "digest",
            DeletionKind::Referrer => "referrer",
        }
    }
}

/// A tag deleted this run.
#[derive(Clone, Debug)]
pub struct DeletedTag {
    /// `host/repo:tag` on the target.
    pub target: String,
    /// How.
    pub kind: DeletionKind,
}

/// A due tag left in place.
#[derive(Clone, Debug)]
pub struct KeptTag {
    /// `host/repo:tag` on the target.
    pub target: String,
    /// Why, naming what needs it.
    pub reason: String,
}

/// The outcome of deleting one tag.
pub(super) enum Outcome {
    Deleted(DeletionKind),
    /// Already absent, or moved by someone else: no longer ours.
    NotOurs(String),
    Kept(String),
}

/// Why a due tag could not be handled.
#[derive(Debug, thiserror::Error)]
enum DeleteError {
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("state database names an invalid target {target:?}: {reason}")]
    BadRecord { target: String, reason: String },
}

impl Syncer {
    /// Updates the absence of every owned tag of `job` from `selected`
    /// (what this run's source listing selected) and deletes the due ones
    /// within the guard. Plans read the database and write nothing.
    pub(super) async fn sync_deletions(
        &self,
        job: &Job,
        selected: &HashSet<TargetTag>,
        dry_run: bool,
        report: &mut JobReport,
    ) {
        let Some(store) = self.store.as_ref().filter(|_| job.delete.enabled) else {
            return;
        };
        if let Some(m) = self.metrics.as_ref().filter(|_| !dry_run) {
            m.deletions().job_enabled(&job.name);
        }
        let owned = match store.owned_tags(&job.name).boxed().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(job = %job.name, error = %e, "Could not read the owned tags; no deletions this run.");
                return;
            }
        };
        let now = self.clock.now();
        let grace = chrono::Duration::from_std(job.delete.grace).unwrap_or(chrono::Duration::MAX);
        let mut due = Vec::new();
        for tag in &owned {
            let present = selected.contains(&(tag.target_repo.clone(), tag.tag.clone()));
            let since = match (present, tag.absent_since) {
                (true, None) => continue,
                (true, Some(_)) => {
                    self.set_absent(store, tag, None, dry_run).await;
                    continue;
                }
                (false, Some(since)) => since,
                (false, None) => {
                    self.set_absent(store, tag, Some(now), dry_run).await;
                    now
                }
            };
            let due_at = since
                .checked_add_signed(grace)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            if due_at <= now {
                due.push(tag);
            }
            report.deletions.pending.push(PendingDeletion {
                target: target_name(tag),
                digest: tag.digest.clone(),
                absent_since: since,
                due_at,
                due: due_at <= now,
            });
        }
        report.deletions.pending.sort_by_key(|p| p.absent_since);
        let guard = guard(&job.delete, owned.len(), selected.is_empty(), due.len());
        if let Some(m) = self.metrics.as_ref().filter(|_| !dry_run) {
            m.deletions().guard(&job.name, guard.is_some());
        }
        if let Some(why) = guard {
            if !dry_run {
                tracing::error!(job = %job.name, owned = owned.len(), due = due.len(), "Deletion guard tripped: {why}");
                report.failures.push(ItemFailure {
                    item: format!("{} (deletions)", job.name),
                    reference: String::new(),
                    kind: "deletion_guard",
                    error: why.clone(),
                });
            }
            report.deletions.guard_tripped = Some(why);
            return;
        }
        if dry_run {
            return;
        }
        for tag in due {
            let target = target_name(tag);
            match self.delete_owned(job, tag).await {
                Ok(Outcome::Deleted(kind)) => {
                    tracing::info!(job = %job.name, target = %target, digest = %tag.digest, how = kind.as_str(), "Deleted a tag the source no longer has.");
                    self.forget(store, tag).await;
                    if let Some(m) = &self.metrics {
                        m.deletions().deleted(&job.name, kind.as_str());
                    }
                    report.deletions.pending.retain(|p| p.target != target);
                    report.deletions.deleted.push(DeletedTag { target, kind });
                }
                Ok(Outcome::NotOurs(why)) => {
                    tracing::info!(job = %job.name, target = %target, "Left a tag alone: {why}.");
                    self.forget(store, tag).await;
                    report.deletions.pending.retain(|p| p.target != target);
                }
                Ok(Outcome::Kept(reason)) => {
                    tracing::warn!(job = %job.name, target = %target, "Kept a tag due for deletion: {reason}.");
                    report.deletions.kept.push(KeptTag { target, reason });
                }
                Err(e) => {
                    tracing::error!(job = %job.name, target = %target, error = %e, "Could not delete a tag.");
                    report.failures.push(ItemFailure {
                        item: target,
                        reference: tag.tag.clone(),
                        kind: match &e {
                            DeleteError::Registry(r) => r.kind.label(),
                            DeleteError::BadRecord { .. } => "store",
                        },
                        error: format!("deleting it: {e}"),
                    });
                }
            }
        }
    }

    async fn set_absent(
        &self,
        store: &Store,
        tag: &OwnedTag,
        since: Option<DateTime<Utc>>,
        dry_run: bool,
    ) {
        if dry_run {
            return;
        }
        if let Err(e) = store
            .set_tag_absent_since(&tag.job, &tag.target_repo, &tag.tag, since)
            .boxed()
            .await
        {
            tracing::warn!(job = %tag.job, target = %target_name(tag), error = %e, "Could not record the tag's absence.");
        }
    }

    async fn forget(&self, store: &Store, tag: &OwnedTag) {
        if let Err(e) = store
            .forget_owned_tag(&tag.job, &tag.target_repo, &tag.tag)
            .boxed()
            .await
        {
            tracing::warn!(job = %tag.job, target = %target_name(tag), error = %e, "Could not drop the tag's ownership.");
        }
    }

    /// Deletes one due tag the way its registry allows.
    async fn delete_owned(&self, job: &Job, owned: &OwnedTag) -> Result<Outcome, DeleteError> {
        let bad = |reason: String| DeleteError::BadRecord {
            target: target_name(owned),
            reason,
        };
        let repo: ImageReference = owned.target_repo.parse().map_err(|e| bad(format!("{e}")))?;
        let tag = Tag::new(&owned.tag).map_err(|e| bad(e.to_string()))?;
        let registry = self
            .registries
            .open(&repo.location)
            .map_err(DeleteError::Registry)?;
        Ok(remove_tag(job, registry.as_ref(), &repo.repo, &tag, &owned.digest).await?)
    }
}

/// Removes `tag` (which this job wrote as `digest`) the way the registry
/// allows: untag, else a digest delete when nothing else needs it.
pub(super) async fn remove_tag(
    job: &Job,
    registry: &dyn Registry,
    repo: &RepoName,
    tag: &Tag,
    digest: &Digest,
) -> Result<Outcome, RegistryError> {
    let by_tag = Reference::Tag(tag.clone());
    match registry.manifest_head(repo, &by_tag).await? {
        None => return Ok(Outcome::NotOurs("it is gone already".into())),
        Some(d) if &d.digest != digest => {
            return Ok(Outcome::NotOurs(format!(
                "it points at {} now, not at {digest} as this job wrote it",
                d.digest
            )));
        }
        Some(_) => {}
    }
    match registry.manifest_delete(repo, &by_tag).await {
        Ok(_) => return Ok(Outcome::Deleted(DeletionKind::Untag)),
        Err(e) if cannot_untag(&e) => {
            tracing::debug!(job = %job.name, registry = registry.name(), error = %e, "Registry cannot untag; considering a digest delete.");
        }
        Err(e) => return Err(e),
    }
    if let Some(reason) = still_needed(registry, repo, Some(tag), digest).await? {
        return Ok(Outcome::Kept(reason));
    }
    registry
        .manifest_delete(repo, &Reference::Digest(digest.clone()))
        .await?;
    Ok(Outcome::Deleted(DeletionKind::Digest))
}

/// Records the item's target tag as written by `job` when this run put
/// it: a tag found in place may be someone else's, and stays theirs.
pub(super) async fn record_written(
    store: &Store,
    job: &str,
    item: &Item,
    copy: &CopyReport,
    digest: &Digest,
    now: DateTime<Utc>,
) {
    let Some(tag) = item.dst_tag().filter(|_| copy.image_tags > 0) else {
        return;
    };
    let repo = repo_name(&item.dst);
    if let Err(e) = store
        .record_owned_tag(job, &repo, tag.as_str(), digest, now)
        .boxed()
        .await
    {
        tracing::warn!(job, item = %item.name, error = %e, "Could not record the tag as written by this job.");
    }
}

/// Why the guard stops this run's deletions, if it does.
fn guard(
    policy: &crate::config::DeletePolicy,
    owned: usize,
    nothing_selected: bool,
    due: usize,
) -> Option<String> {
    if owned > 0 && nothing_selected {
        return Some(format!(
            "the source selected no tag while the job owns {owned} on the target \
             (source outage, lost permissions or a changed tag filter?): nothing deleted"
        ));
    }
    let allowed = allowed_deletions(policy.max_fraction, owned);
    (due > allowed).then(|| {
        format!(
            "{due} of the job's {owned} tags are due for deletion, more than \
             max_fraction {} allows in one run ({allowed}): nothing deleted",
            policy.max_fraction
        )
    })
}

/// The most tags one run may delete: the fraction of those owned, at least one.
pub(super) fn allowed_deletions(max_fraction: f64, owned: usize) -> usize {
    // Float to int saturates; the fraction is validated in (0, 1].
    ((max_fraction * owned as f64).floor() as usize).max(1)
}

/// True when the registry refuses to untag (distribution 2.8 answers 400
/// `DIGEST_INVALID`, Docker Hub 405, others 501 or 400 `UNSUPPORTED`).
fn cannot_untag(e: &RegistryError) -> bool {
    matches!(
        e.kind,
        ErrorKind::Status {
            status: 400 | 405 | 501,
            ..
        }
    )
}

/// What on the target still needs `digest` besides `tag`: a tag
/// pointing at it, an index (image index or fallback index) listing it, or
/// referrers whose subject it is.
pub(super) async fn still_needed(
    registry: &dyn Registry,
    repo: &RepoName,
    tag: Option<&Tag>,
    digest: &Digest,
) -> Result<Option<String>, RegistryError> {
    if let Some(referrers) = registry.referrers_api(repo, digest).await?
        && !referrers.is_empty()
    {
        return Ok(Some(format!(
            "{} referrer(s) have it as their subject",
            referrers.len()
        )));
    }
    let tags = registry.tags(repo).await?;
    let fallback = fallback_tag(digest);
    if tags.contains(&fallback) {
        return Ok(Some(format!(
            "its referrers are listed under fallback tag {fallback}"
        )));
    }
    for other in tags
        .iter()
        .filter(|t| Some(t.as_str()) != tag.map(Tag::as_str))
    {
        let Ok(other_tag) = Tag::new(other) else {
            continue;
        };
        let reference = Reference::Tag(other_tag);
        let Some(desc) = registry.manifest_head(repo, &reference).await? else {
            continue;
        };
        if &desc.digest == digest {
            return Ok(Some(format!(
                "tag {other} points at the same digest {digest}, and this registry \
                 deletes every tag of a digest"
            )));
        }
        if is_index(&desc.media_type)
            && let Some(index) = registry.manifest_get(repo, &reference).await?
            && index.child_manifests().iter().any(|c| &c.digest == digest)
        {
            return Ok(Some(format!("the index under tag {other} lists it")));
        }
    }
    Ok(None)
}

/// `host/repo:tag` of an owned tag.
fn target_name(tag: &OwnedTag) -> String {
    format!("{}:{}", tag.target_repo, tag.tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeletePolicy;

    #[test]
    fn the_guard_allows_a_fraction_but_always_one_and_never_an_empty_source() {
        let p = DeletePolicy::default();
        assert_eq!(allowed_deletions(0.1, 3), 1);
        assert_eq!(allowed_deletions(0.1, 25), 2);
        assert_eq!(allowed_deletions(1.0, 4), 4);
        assert!(guard(&p, 25, false, 2).is_none());
        assert!(
            guard(&p, 25, false, 3)
                .unwrap()
                .contains("3 of the job's 25")
        );
        // A one-tag job whose source lists nothing keeps its tag.
        assert!(guard(&p, 1, true, 1).unwrap().contains("selected no tag"));
        assert!(guard(&p, 1, false, 1).is_none());
        assert!(guard(&p, 0, true, 0).is_none());
    }
}
