//! Withdrawn referrers: a referrer this job published on the target (a
//! signature, an SBOM) that the source no longer lists for its subject is
//! removed from the target once the grace period has passed.
//!
//! Same rules as deletion sync of tags (see `deletions.rs`):
//! - only referrers recorded in `owned_referrers` (written by this job) are
//!   candidates; one pushed to the target by anyone else is never touched;
//! - absence is recorded only from a source listing of the subject read in
//!   full, and must last `[jobs.delete] grace`;
//! - the guard: a run where the source lists none of the job's referrers,
//!   or more are due than `max_fraction` of those owned (at least one),
//!   removes nothing and fails by name;
//! - removal: the entry leaves the subject's fallback index (foreign entries
//!   kept); where the job deletes (`[jobs.delete] enabled`) the manifest is
//!   deleted by digest too, unless something else on the target needs it.
//!   On a referrers-API target deleting the manifest is the only removal.

use std::collections::HashSet;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::FutureExt;

use super::deletions::{DeletionKind, Outcome, allowed_deletions, still_needed};
use super::items::{Item, repo_name};
use super::{DeletedTag, ItemFailure, JobReport, KeptTag, PendingDeletion, Syncer};
use crate::config::Job;
use crate::copy::CopyReport;
use crate::oci::media_type as mt;
use crate::oci::referrers::{FallbackIndexError, fallback_tag, remove_from_fallback_index};
use crate::oci::{Digest, ImageReference, Manifest, ManifestError, Reference, RepoName, Tag};
use crate::registry::{ErrorKind, Precondition, Registry, RegistryError};
use crate::store::{OwnedReferrer, Store};

/// Why a due referrer could not be removed.
#[derive(Debug, thiserror::Error)]
enum WithdrawError {
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("state database names an invalid target {target:?}: {reason}")]
    BadRecord { target: String, reason: String },
    #[error("fallback index {tag} in {repo} on the target: {source}")]
    FallbackIndex {
        repo: String,
        tag: String,
        source: FallbackIndexError,
    },
    #[error("fallback index {tag} in {repo} on the target: {source}")]
    Manifest {
        repo: String,
        tag: String,
        source: ManifestError,
    },
    #[error("fallback index {tag} in {repo} changed while it was edited; trying again next run")]
    Contended { repo: String, tag: String },
}

impl WithdrawError {
    fn kind(&self) -> &'static str {
        match self {
            WithdrawError::Registry(r) => r.kind.label(),
            WithdrawError::BadRecord { .. } => "store",
            WithdrawError::FallbackIndex { .. } | WithdrawError::Manifest { .. } => {
                "fallback_index"
            }
            WithdrawError::Contended { .. } => "contended",
        }
    }
}

/// Records what one copy published and listed: referrers it wrote become
/// the job's own; owned referrers of a subject whose source listing (read
/// in full) no longer has them start, or keep, their absence.
pub(super) async fn record_referrers(
    store: &Store,
    job: &str,
    item: &Item,
    copy: &CopyReport,
    now: DateTime<Utc>,
) {
    let repo = repo_name(&item.dst);
    for p in copy.published_referrers.iter().filter(|p| p.written) {
        if let Err(e) = store
            .record_owned_referrer(job, &repo, &p.subject, &p.referrer, p.in_fallback, now)
            .boxed()
            .await
        {
            tracing::warn!(job, item = %item.name, referrer = %p.referrer, error = %e, "Could not record the referrer as published by this job.");
        }
    }
    if copy.referrers_listed.is_empty() {
        return;
    }
    let owned = match store.owned_referrers(job).boxed().await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(job, item = %item.name, error = %e, "Could not read the owned referrers.");
            return;
        }
    };
    let listed: HashSet<&Digest> = copy.referrers_listed.iter().collect();
    let present: HashSet<(&Digest, &Digest)> = copy
        .published_referrers
        .iter()
        .map(|p| (&p.subject, &p.referrer))
        .collect();
    for o in owned
        .iter()
        .filter(|o| o.target_repo == repo && listed.contains(&o.subject))
    {
        let since = match (present.contains(&(&o.subject, &o.referrer)), o.absent_since) {
            (true, Some(_)) => None,
            (false, None) => Some(now),
            _ => continue,
        };
        if let Err(e) = store.set_referrer_absent_since(o, since).boxed().await {
            tracing::warn!(job, target = %referrer_name(o), error = %e, "Could not record the referrer's absence.");
        }
    }
}

impl Syncer {
    /// Lists the owned referrers the source is without and removes the due
    /// ones within the guard. Plans read the database and write nothing.
    pub(super) async fn sync_withdrawn(&self, job: &Job, dry_run: bool, report: &mut JobReport) {
        let Some(store) = self.store.as_ref() else {
            return;
        };
        let owned = match store.owned_referrers(&job.name).boxed().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(job = %job.name, error = %e, "Could not read the owned referrers; no referrer removals this run.");
                return;
            }
        };
        let now = self.clock.now();
        let grace = chrono::Duration::from_std(job.delete.grace).unwrap_or(chrono::Duration::MAX);
        let mut due = Vec::new();
        let mut absent = 0;
        for o in &owned {
            let Some(since) = o.absent_since else {
                continue;
            };
            absent += 1;
            let due_at = since
                .checked_add_signed(grace)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            if due_at <= now {
                due.push(o);
            }
            report.deletions.pending.push(PendingDeletion {
                target: referrer_name(o),
                digest: o.referrer.clone(),
                absent_since: since,
                due_at,
                due: due_at <= now,
            });
        }
        report.deletions.pending.sort_by_key(|p| p.absent_since);
        let tripped = (absent > 0)
            .then(|| guard(job.delete.max_fraction, owned.len(), absent, due.len()))
            .flatten();
        // The tag pass already set the gauge where the job deletes: only a
        // trip here may change it then.
        if let Some(m) = self
            .metrics
            .as_ref()
            .filter(|_| !dry_run && !owned.is_empty())
            .filter(|_| tripped.is_some() || !job.delete.enabled)
        {
            m.deletions().guard(&job.name, tripped.is_some());
        }
        if let Some(why) = tripped {
            if !dry_run {
                tracing::error!(job = %job.name, owned = owned.len(), due = due.len(), "Referrer removal guard tripped: {why}");
                report.failures.push(ItemFailure {
                    item: format!("{} (withdrawn referrers)", job.name),
                    reference: String::new(),
                    kind: "deletion_guard",
                    error: why.clone(),
                });
            }
            report.deletions.guard_tripped = Some(match report.deletions.guard_tripped.take() {
                Some(tags) => format!("{tags}; {why}"),
                None => why,
            });
            return;
        }
        if dry_run {
            return;
        }
        for o in due {
            let target = referrer_name(o);
            match self.remove_referrer(job, o).await {
                Ok(Outcome::Deleted(kind)) => {
                    tracing::info!(job = %job.name, target = %target, subject = %o.subject, "Removed a referrer the source withdrew.");
                    self.forget_referrer(store, o).await;
                    if let Some(m) = &self.metrics {
                        m.deletions().deleted(&job.name, kind.as_str());
                    }
                    report.deletions.pending.retain(|p| p.target != target);
                    report.deletions.deleted.push(DeletedTag { target, kind });
                }
                Ok(Outcome::NotOurs(why)) => {
                    tracing::info!(job = %job.name, target = %target, "Left a referrer alone: {why}.");
                    self.forget_referrer(store, o).await;
                    report.deletions.pending.retain(|p| p.target != target);
                }
                Ok(Outcome::Kept(reason)) => {
                    tracing::warn!(job = %job.name, target = %target, "Kept a withdrawn referrer: {reason}.");
                    report.deletions.kept.push(KeptTag { target, reason });
                }
                Err(e) => {
                    tracing::error!(job = %job.name, target = %target, error = %e, "Could not remove a withdrawn referrer.");
                    report.failures.push(ItemFailure {
                        item: target,
                        reference: o.referrer.to_string(),
                        kind: e.kind(),
                        error: format!("removing it: {e}"),
                    });
                }
            }
        }
    }

    async fn forget_referrer(&self, store: &Store, o: &OwnedReferrer) {
        if let Err(e) = store.forget_owned_referrer(o).boxed().await {
            tracing::warn!(job = %o.job, target = %referrer_name(o), error = %e, "Could not drop the referrer's ownership.");
        }
    }

    /// Removes one due referrer from the subject's fallback index and,
    /// where the job deletes, its manifest when nothing else needs it.
    async fn remove_referrer(
        &self,
        job: &Job,
        o: &OwnedReferrer,
    ) -> Result<Outcome, WithdrawError> {
        let target: ImageReference =
            o.target_repo
                .parse()
                .map_err(|e| WithdrawError::BadRecord {
                    target: o.target_repo.clone(),
                    reason: format!("{e}"),
                })?;
        let registry = self.registries.open(&target.location)?;
        let (registry, repo) = (registry.as_ref(), &target.repo);
        let unlisted = o.in_fallback && unlist(registry, repo, &o.subject, &o.referrer).await?;
        let removed = || Outcome::Deleted(DeletionKind::Referrer);
        if !job.delete.enabled {
            return Ok(if o.in_fallback {
                removed()
            } else {
                Outcome::Kept(
                    "the target's referrers API lists it, and only deleting its manifest \
                     removes it: [jobs.delete] is not enabled"
                        .into(),
                )
            });
        }
        let by_digest = Reference::Digest(o.referrer.clone());
        if registry.manifest_head(repo, &by_digest).await?.is_none() {
            return Ok(if unlisted {
                removed()
            } else {
                Outcome::NotOurs("it is gone already".into())
            });
        }
        if let Some(reason) = still_needed(registry, repo, None, &o.referrer).await? {
            tracing::info!(job = %job.name, target = %referrer_name(o), "Kept the withdrawn referrer's manifest: {reason}.");
            return Ok(if unlisted {
                removed()
            } else {
                Outcome::Kept(reason)
            });
        }
        registry.manifest_delete(repo, &by_digest).await?;
        Ok(removed())
    }
}

/// Drops `referrer` from the fallback index of `subject`, keeping every
/// other entry. False when the index does not list it.
async fn unlist(
    registry: &dyn Registry,
    repo: &RepoName,
    subject: &Digest,
    referrer: &Digest,
) -> Result<bool, WithdrawError> {
    let tag_name = fallback_tag(subject);
    let tag = Tag::new(&tag_name).map_err(|e| WithdrawError::BadRecord {
        target: format!("{repo}:{tag_name}"),
        reason: e.to_string(),
    })?;
    let reference = Reference::Tag(tag);
    let Some(existing) = registry.manifest_fetch(repo, &reference).await? else {
        return Ok(false);
    };
    let index_error = |source| WithdrawError::FallbackIndex {
        repo: repo.to_string(),
        tag: tag_name.clone(),
        source,
    };
    if mt::essence(existing.manifest.media_type()) != mt::OCI_INDEX {
        return Err(index_error(FallbackIndexError::NotAnIndex(
            existing.manifest.media_type().to_string(),
        )));
    }
    let Some(bytes) =
        remove_from_fallback_index(existing.manifest.bytes(), referrer).map_err(index_error)?
    else {
        return Ok(false);
    };
    let manifest = Manifest::parse(Bytes::from(bytes), Some(mt::OCI_INDEX)).map_err(|source| {
        WithdrawError::Manifest {
            repo: repo.to_string(),
            tag: tag_name.clone(),
            source,
        }
    })?;
    let precondition = existing
        .etag
        .map(Precondition::IfMatch)
        .unwrap_or(Precondition::None);
    match registry
        .manifest_put(repo, &reference, &manifest, precondition)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.kind, ErrorKind::PreconditionFailed) => {
            Err(WithdrawError::Contended {
                repo: repo.to_string(),
                tag: tag_name,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Why the guard stops this run's referrer removals, if it does.
fn guard(max_fraction: f64, owned: usize, absent: usize, due: usize) -> Option<String> {
    if absent == owned {
        return Some(format!(
            "the source lists none of the {owned} referrers the job published on the target \
             (source outage, lost permissions or a changed referrer filter?): nothing removed"
        ));
    }
    let allowed = allowed_deletions(max_fraction, owned);
    (due > allowed).then(|| {
        format!(
            "{due} of the job's {owned} referrers are due for removal, more than \
             max_fraction {max_fraction} allows in one run ({allowed}): nothing removed"
        )
    })
}

/// `host/repo@digest` of an owned referrer.
fn referrer_name(o: &OwnedReferrer) -> String {
    format!("{}@{}", o.target_repo, o.referrer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_keeps_referrers_when_all_are_withdrawn_or_too_many_are_due() {
        assert!(guard(0.1, 2, 1, 1).is_none());
        assert!(guard(0.1, 2, 2, 0).unwrap().contains("lists none of the 2"));
        assert!(guard(0.1, 30, 4, 4).unwrap().contains("4 of the job's 30"));
        assert!(guard(0.1, 30, 3, 3).is_none());
    }
}
