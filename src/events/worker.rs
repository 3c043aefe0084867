//! Drains the event queue: each batch of due items is grouped by job,
//! turned into the job's items (a referrer's subject into the tags the
//! checkpoint knows at that digest) and synced through
//! [`Syncer::run_job_items`], the path scheduled runs take. Every accepted
//! event ends synced, failed or ignored in the state database.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Utc;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::mapping::{Target, Work};
use super::queue::{EventId, EventQueue, Pending};
use crate::config::{Job, Source};
use crate::metrics::Metrics;
use crate::oci::{Digest, ImageReference, Location, Reference, Tag};
use crate::store::{AcceptedEvent, EventOutcome, Store};
use crate::sync::{JobReport, SyncOptions, Syncer, item_name};

/// What the worker needs; built per configuration generation.
pub struct Worker {
    /// The queue it drains (outlives reloads).
    pub queue: Arc<EventQueue>,
    /// The syncer of the current configuration.
    pub syncer: Arc<Syncer>,
    /// The jobs of the current configuration.
    pub jobs: Arc<Vec<Job>>,
    /// Where outcomes are recorded.
    pub store: Store,
    /// Lag and queue depth.
    pub metrics: Arc<Metrics>,
    /// Checkpoint use (`verify_after`).
    pub options: SyncOptions,
}

impl Worker {
    /// Syncs batches until `cancel`; what is still queued then stays for
    /// the next configuration (or is marked failed at the next start).
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let batch = self.queue.next_batch(&cancel).await;
            self.metrics.events().queue_depth(self.queue.depth());
            if batch.is_empty() {
                return;
            }
            let mut by_job: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
            for p in batch {
                by_job.entry(p.work.job.clone()).or_default().push(p);
            }
            for (job, pending) in by_job {
                self.sync_job(&job, pending, &cancel).boxed().await;
            }
        }
    }

    async fn sync_job(&self, name: &str, pending: Vec<Pending>, cancel: &CancellationToken) {
        let Some(job) = self.jobs.iter().find(|j| j.name == name) else {
            let why = format!("job {name} is no longer configured");
            for p in &pending {
                self.finish(p, &EventOutcome::Failed(why.clone())).await;
            }
            return;
        };
        // Per pending item: the references it became, or why it is nothing.
        let mut plans: Vec<(Pending, Result<Vec<Reference>, EventOutcome>)> = Vec::new();
        for p in pending {
            let refs = self.references(job, &p.work).await;
            plans.push((p, refs));
        }
        let mut picks = Vec::new();
        for (p, refs) in &plans {
            for r in refs.iter().flatten() {
                let pick = (p.work.repository.clone(), r.clone());
                if !picks.contains(&pick) {
                    picks.push(pick);
                }
            }
        }
        let report = if picks.is_empty() {
            None
        } else {
            Some(
                self.syncer
                    .run_job_items(job, picks, &self.options, cancel)
                    .await,
            )
        };
        for (p, refs) in plans {
            let outcome = match (refs, &report) {
                (Err(outcome), _) => outcome,
                (Ok(_), Some(_)) if cancel.is_cancelled() => EventOutcome::Failed(
                    "the daemon stopped or reloaded during the sync; the scheduled run syncs it"
                        .into(),
                ),
                (Ok(refs), Some(report)) => outcome(job, &p, &refs, report),
                (Ok(_), None) => EventOutcome::Ignored("nothing to sync".into()),
            };
            if outcome == EventOutcome::Synced {
                let lag = Utc::now().signed_duration_since(p.received_at);
                self.metrics
                    .events()
                    .mirrored(lag.num_milliseconds() as f64 / 1000.0);
            }
            self.finish(&p, &outcome).await;
        }
    }

    /// The references of `job` that `work` means. A referrer's subject is
    /// the tags last synced at that digest (the subject itself when none
    /// is known); a digest push is its subject's graph when it has a
    /// subject, the digest when the job selects it, else nothing.
    async fn references(&self, job: &Job, work: &Work) -> Result<Vec<Reference>, EventOutcome> {
        let subject = match &work.target {
            Target::Tag(t) => return Ok(vec![Reference::Tag(t.clone())]),
            Target::Subject(d) => d.clone(),
            Target::Digest(d) => match self
                .subject_of(job, work, d)
                .await
                .map_err(EventOutcome::Failed)?
            {
                Some(s) => s,
                None if job.tags.digests.contains(d) => {
                    return Ok(vec![Reference::Digest(d.clone())]);
                }
                None => {
                    return Err(EventOutcome::Ignored(format!(
                        "{d} has no subject and job {} does not select it by digest",
                        job.name
                    )));
                }
            },
        };
        let tags = self
            .store
            .tags_at_digest(&job.name, work.repository.as_str(), &subject.to_string())
            .await
            .unwrap_or_default();
        let refs: Vec<Reference> = tags
            .iter()
            .filter_map(|t| Tag::new(t).ok().map(Reference::Tag))
            .collect();
        Ok(if refs.is_empty() {
            vec![Reference::Digest(subject)]
        } else {
            refs
        })
    }

    /// The subject of the manifest `digest` of the work's repository.
    async fn subject_of(
        &self,
        job: &Job,
        work: &Work,
        digest: &Digest,
    ) -> Result<Option<Digest>, String> {
        let location = source_location(job);
        let registry = self
            .syncer
            .registries()
            .open(&location)
            .map_err(|e| e.to_string())?;
        match registry
            .manifest_get(&work.repository, &Reference::Digest(digest.clone()))
            .await
        {
            Ok(Some(m)) => Ok(m.subject().map(|s| s.digest.clone())),
            Ok(None) => Err(format!(
                "{}: manifest {digest} not found in {}",
                registry.name(),
                work.repository
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn finish(&self, p: &Pending, outcome: &EventOutcome) {
        match outcome {
            EventOutcome::Synced => {
                tracing::info!(job = %p.work.job, item = %p.work.key(), events = p.events.len(), "Event synced.")
            }
            EventOutcome::Failed(e) => {
                tracing::warn!(job = %p.work.job, item = %p.work.key(), error = %e, "Event sync failed.")
            }
            EventOutcome::Ignored(why) => {
                tracing::info!(job = %p.work.job, item = %p.work.key(), reason = %why, "Event ignored.")
            }
            EventOutcome::Queued => {}
        }
        let now = Utc::now();
        for id in &p.events {
            let event = accepted(p, id);
            if let Err(e) = self.store.record_event(&event, outcome, now).await {
                tracing::warn!(job = %p.work.job, error = %e, "Could not record an event outcome.");
            }
        }
    }
}

/// The database row of event `id` of `p`.
pub fn accepted(p: &Pending, id: &EventId) -> AcceptedEvent {
    AcceptedEvent {
        id: id.id.clone(),
        source: id.source.clone(),
        job: p.work.job.clone(),
        item: item_of(&p.work),
        received_at: p.received_at,
    }
}

/// `repo:target` of a work item, as the events table names it.
pub fn item_of(work: &Work) -> String {
    format!("{}:{}", work.repository, work.target.key())
}

/// Where `job` reads from.
fn source_location(job: &Job) -> Location {
    match &job.source {
        Source::Repository(r) => r.location.clone(),
        Source::Catalog(c) => Location::Registry(c.registry.clone()),
    }
}

/// Synced when every reference of `p` is on the target: the run did not
/// fail as a whole and none of them failed or is backing off.
fn outcome(job: &Job, p: &Pending, refs: &[Reference], report: &JobReport) -> EventOutcome {
    if let Some(fatal) = &report.fatal {
        return EventOutcome::Failed(fatal.clone());
    }
    let src = ImageReference {
        location: source_location(job),
        repo: p.work.repository.clone(),
        tag: None,
        digest: None,
    };
    let failures: HashMap<&str, &str> = report
        .failures
        .iter()
        .map(|f| (f.item.as_str(), f.error.as_str()))
        .collect();
    for r in refs {
        let name = item_name(&src, r);
        if let Some(e) = failures.get(name.as_str()) {
            return EventOutcome::Failed(format!("{name}: {e}"));
        }
        if let Some(d) = report.deferred.iter().find(|d| d.item == name) {
            let until = d
                .next_retry_at
                .map_or_else(|| "later".to_string(), |t| t.to_rfc3339());
            return EventOutcome::Failed(format!(
                "{name}: backing off after failures until {until}; the scheduled run retries it"
            ));
        }
    }
    EventOutcome::Synced
}
