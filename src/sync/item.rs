//! One image of a run: check it against the source and its checkpoint
//! (many at once, one round trip each), then copy it (the job's
//! `concurrency` at once) and record the outcome and the checkpoint.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::fingerprint::referrers_fingerprint;
use super::items::Item;
use super::report::{ItemResult, failed};
use super::verdict::Verdict;
use super::{SyncOptions, Syncer};
use super::{deletions, withdrawn};
use crate::config::Job;
use crate::copy::{Action, Copier, CopyEvent, WalkedImage};
use crate::oci::{Digest, Reference};
use crate::registry::Registry;
use crate::store::{Store, TagState};

impl Syncer {
    pub(super) async fn run_one(
        &self,
        job: &Job,
        item: Item,
        copier: Arc<Copier>,
        options: &SyncOptions,
        store: Option<&Store>,
        copies: &Semaphore,
    ) -> (Item, ItemResult) {
        let span = tracing::info_span!(
            "image",
            repository = %item.src.repo,
            reference = %item.reference,
            target = %item.dst,
        );
        let result = self
            .run_item(job, &item, &copier, options, store, copies)
            .instrument(span)
            .await;
        if let ItemResult::Failed { error, kind, .. } = &result {
            tracing::error!(job = %job.name, item = %item.name, kind = %kind, error = %error, "Image failed.");
        }
        self.image_done(job, &item, &result);
        (item, result)
    }

    /// Tells the progress display that an image is done, and how.
    fn image_done(&self, job: &Job, item: &Item, result: &ItemResult) {
        let action = match result {
            ItemResult::Copied(_) => Action::Copy,
            ItemResult::Unchanged => Action::Exists,
            ItemResult::Deferred(_) => Action::Skip,
            ItemResult::Failed { .. } => Action::Fail,
            ItemResult::Planned { .. } | ItemResult::Cancelled => return,
        };
        if let Some(tx) = &self.events {
            let _ = tx.send((job.name.clone(), CopyEvent::image_done(&item.name, action)));
        }
    }

    async fn run_item(
        &self,
        job: &Job,
        item: &Item,
        copier: &Copier,
        options: &SyncOptions,
        store: Option<&Store>,
        copies: &Semaphore,
    ) -> ItemResult {
        let now = self.clock.now();
        if let Some(deferred) = self.backing_off(job, item, options, now).await {
            return deferred;
        }
        // One slow image cannot hold the job: past the deadline it fails
        // by name and is recorded (and backs off) like any failure.
        let deadline = self.limits.item_timeout;
        let timed_out = || {
            failed(
                format!(
                    "{}: not done within {} (limits.item_timeout)",
                    item.name,
                    crate::config::fmt_duration(deadline)
                ),
                "timeout",
                None,
            )
        };
        let result =
            match tokio::time::timeout(deadline, self.check_item(job, item, options, now)).await {
                Err(_) => timed_out(),
                Ok(Err(done)) => done,
                Ok(Ok(checked)) => {
                    // Many images are checked and walked at once (round
                    // trips, no transfers: latency to the source overlaps
                    // across images), `concurrency` written at once; the
                    // wait for a copy slot is not the image's time.
                    let walk = self.walk_item(job, item, copier, options, store, checked);
                    match tokio::time::timeout(deadline, walk).await {
                        Err(_) => timed_out(),
                        Ok(Err(done)) => done,
                        Ok(Ok(walked)) => {
                            let Ok(_slot) = copies.acquire().await else {
                                return ItemResult::Cancelled;
                            };
                            tokio::time::timeout(
                                deadline,
                                self.copy_item(job, item, copier, store, walked),
                            )
                            .await
                            .unwrap_or_else(|_| timed_out())
                        }
                    }
                }
            };
        if let Some(s) = store {
            let recorded = match &result {
                ItemResult::Failed { error: e, .. } => s
                    .record_failure(&job.name, &item.name, e, now)
                    .boxed()
                    .await
                    .map(|_| ()),
                ItemResult::Copied(_) | ItemResult::Unchanged => s
                    .clear_failure(&job.name, &item.name)
                    .boxed()
                    .await
                    .map(|_| ()),
                _ => Ok(()),
            };
            if let Err(e) = recorded {
                tracing::warn!(job = %job.name, item = %item.name, error = %e, "Could not record the item outcome.");
            }
        }
        result
    }

    /// Resolves the item on the source and compares it with the
    /// checkpoint: what to copy, or the item's result when there is nothing
    /// to copy (unchanged, or not readable).
    async fn check_item(
        &self,
        job: &Job,
        item: &Item,
        options: &SyncOptions,
        now: DateTime<Utc>,
    ) -> Result<Checked, ItemResult> {
        let source = match self.open(job, &item.src.location) {
            Ok(s) => s,
            Err(e) => return Err(failed(&e, "registry", None)),
        };
        let previous = self.checkpoint(job, item, options).await;
        let src: &dyn Registry = source.as_ref();
        let fingerprint_of = |digest: Digest| async move {
            referrers_fingerprint(
                src,
                &item.src.repo,
                &digest,
                job,
                item.source_tags.as_deref(),
            )
            .await
        };
        // One manifest HEAD on the source resolves the tag. It usually still
        // names the checkpoint's digest, whose referrers are asked at the
        // same time: one round trip for an unchanged image.
        let head = source.manifest_head(&item.src.repo, &item.reference);
        let (head, guessed) = match previous.as_ref().map(|p| p.source_digest.clone()) {
            Some(d) => {
                let (head, f) = futures::join!(head, fingerprint_of(d.clone()));
                (head, Some((d, f)))
            }
            None => (head.await, None),
        };
        let digest = match head {
            Ok(Some(desc)) => desc.digest,
            Ok(None) => {
                return Err(failed(
                    format!(
                        "{}: manifest {} not found in {}",
                        source.name(),
                        item.reference,
                        item.src.repo
                    ),
                    "not_found",
                    Some(source.name()),
                ));
            }
            Err(e) => {
                let kind = e.kind.label();
                return Err(failed(&e, kind, Some(&e.registry)));
            }
        };
        // The root's referrer set, as a fingerprint.
        let fingerprint = match guessed {
            Some((d, f)) if d == digest => f,
            _ => fingerprint_of(digest.clone()).await,
        };
        let verdict = self.verdict(
            item,
            options,
            previous.as_ref(),
            &digest,
            fingerprint.as_deref(),
            now,
        );
        if verdict.is_unchanged() && !options.dry_run {
            tracing::debug!(job = %job.name, item = %item.name, digest = %digest, "Unchanged since the last verified copy.");
            return Err(ItemResult::Unchanged);
        }
        Ok(Checked {
            digest,
            fingerprint,
            verdict,
            now,
        })
    }

    /// Reads a checked item's graph on the source (not in a dry run, which
    /// plans under a copy slot as before), once the guards let it move.
    async fn walk_item(
        &self,
        job: &Job,
        item: &Item,
        copier: &Copier,
        options: &SyncOptions,
        store: Option<&Store>,
        checked: Checked,
    ) -> Result<Walked, ItemResult> {
        if options.dry_run {
            return Ok(Walked {
                checked,
                image: None,
            });
        }
        if let Some(stop) = self
            .before_move(job, item, &checked.digest, store, checked.now)
            .await
        {
            return Err(stop);
        }
        let reference = Reference::Digest(checked.digest.clone());
        match copier.walk_image(&item.src.repo, &reference).await {
            Ok(image) => Ok(Walked {
                checked,
                image: Some(image),
            }),
            Err(e) => Err(failed(&e, e.kind(), e.registry())),
        }
    }

    /// Copies a walked item (or plans it, in a dry run) and records its
    /// checkpoint.
    async fn copy_item(
        &self,
        job: &Job,
        item: &Item,
        copier: &Copier,
        store: Option<&Store>,
        walked: Walked,
    ) -> ItemResult {
        let Walked { checked, image } = walked;
        let Checked {
            digest,
            fingerprint,
            verdict,
            now,
        } = checked;
        let Some(image) = image else {
            return self
                .plan_item(job, item, copier, &digest, verdict, now)
                .await;
        };
        let dst_tag = item.dst_tag();
        let report = match copier
            .write_image(image, &item.dst.repo, dst_tag.as_ref())
            .await
        {
            Ok(r) => r,
            Err(e) => return failed(&e, e.kind(), e.registry()),
        };
        if !report.is_success() {
            let error = report.failure_summary();
            // Labelled by what really failed (the first failure's kind).
            let kind = report.failures.first().map_or("copy_step", |f| f.kind());
            return ItemResult::Failed {
                error,
                kind,
                registry: None,
                report: Some(report),
            };
        }
        tracing::info!(job = %job.name, item = %item.name, digest = %digest, manifests = report.manifests_copied, blobs = report.blobs_copied, bytes = report.bytes, "Image synced.");
        if let Some(s) = store {
            let state = TagState {
                job: job.name.clone(),
                source_repo: item.src.repo.as_str().to_string(),
                tag: item.reference.to_string(),
                source_digest: digest.clone(),
                referrers_fingerprint: fingerprint,
                target_repo: item.dst.to_string(),
                updated_at: now,
            };
            if let Err(e) = s.record_synced(&state).boxed().await {
                tracing::warn!(job = %job.name, item = %item.name, error = %e, "Could not record the checkpoint.");
            }
            deletions::record_written(s, &job.name, item, &report, &digest, now).await;
            withdrawn::record_referrers(s, &job.name, item, &report, now).await;
        }
        ItemResult::Copied(report)
    }
}

/// A checked item with its graph read from the source (`None`: a dry run).
struct Walked {
    checked: Checked,
    image: Option<WalkedImage>,
}

/// An item resolved on the source and compared with its checkpoint.
struct Checked {
    digest: Digest,
    fingerprint: Option<String>,
    verdict: Verdict,
    /// When the item was checked: the time its checkpoint records.
    now: DateTime<Utc>,
}
