//! One run of one mirror job: list the source, select tags, skip what the
//! checkpoint proves unchanged, copy the rest with the copy engine, and
//! record the outcome.
//!
//! The database is a cache of the truth: an item is skipped only when the
//! source still has the digest and referrer set recorded after a verified
//! copy, and only for `verify_after`; then the copy engine checks the target
//! again (so a target changed behind our back is repaired). With no database
//! every item takes the full path, which is correct and only slower.
//!
//! Imports `config` (types only), `copy`, `policy`, `registry`, `store` and
//! `oci`.

mod deletions;
mod fingerprint;
mod item;
mod items;
mod overwrite;
mod report;
mod shared;
mod verdict;
mod withdrawn;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::FuturesUnordered;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::app::copy_options;
use crate::config::{Config, Job, Limits};
use crate::copy::{Copier, CopyEvent};
use crate::metrics::Metrics;
use crate::observe::{record_error, record_referrers, registry_label, target_label};
use crate::oci::{Location, Reference, RepoName};
use crate::policy::PolicyGate;
use crate::registry::open::Registries;
use crate::scheduler::Clock;
use crate::store::{Backend, RunOutcome, RunResult, Store};

pub use deletions::{DeletedTag, DeletionKind, DeletionReport, KeptTag, PendingDeletion};
pub use items::item_name;
use items::{Item, forget_unselected};
pub use report::{DeferredItem, ItemFailure, JobReport, PlannedItem, SyncError};
use report::{ItemResult, add_counts};

/// Images of a job checked against the source at once (at least the job's
/// `concurrency`); each check is a request or two, answered in one round
/// trip, so this is what keeps an unchanged mirror fast over a slow link.
/// Requests in flight per registry stay bounded by the HTTP adapter.
const CHECKS_AT_ONCE: usize = 64;

/// Re-verify an unchanged item against the target after this long.
pub const DEFAULT_VERIFY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How a run treats the checkpoint.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Ignore the checkpoint: walk and verify every item against the target.
    pub full: bool,
    /// Plan only: write nothing anywhere (neither target nor database).
    pub dry_run: bool,
    /// An unchanged item is re-verified against the target after this long.
    pub verify_after: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            full: false,
            dry_run: false,
            verify_after: DEFAULT_VERIFY_AFTER,
        }
    }
}

/// Runs jobs: shared adapters, the checkpoint store and global limits.
pub struct Syncer {
    registries: Arc<Registries>,
    store: Option<Store>,
    clock: Arc<dyn Clock>,
    /// Transfers in flight across all jobs (`limits.concurrent_blobs`).
    transfers: Arc<Semaphore>,
    /// Graph bounds and the per-item deadline (`[limits]`).
    limits: Limits,
    events: Option<mpsc::UnboundedSender<(String, CopyEvent)>>,
    metrics: Option<Arc<Metrics>>,
    /// How long a replica's claim on shared work lasts unrenewed
    /// (`state.lease_ttl`; PostgreSQL only).
    lease_ttl: Duration,
}

impl Syncer {
    /// A syncer over `registries`, recording in `store` when given.
    pub fn new(
        config: &Config,
        registries: Arc<Registries>,
        store: Option<Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Syncer {
            registries,
            store,
            clock,
            transfers: Arc::new(Semaphore::new(config.limits.concurrent_blobs.max(1))),
            limits: config.limits.clone(),
            events: None,
            metrics: None,
            lease_ttl: config.state.lease_ttl,
        }
    }

    /// Sends every copy event, tagged with its job name, to `sink`.
    pub fn with_events(mut self, sink: mpsc::UnboundedSender<(String, CopyEvent)>) -> Self {
        self.events = Some(sink);
        self
    }

    /// Updates `metrics` per item and per run.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The shared adapters.
    pub fn registries(&self) -> &Arc<Registries> {
        &self.registries
    }

    /// Runs `job` once. Per-item failures are recorded and reported; the
    /// rest of the job goes on. `cancel` stops starting new items.
    pub fn run_job<'a>(
        &'a self,
        job: &'a Job,
        options: &'a SyncOptions,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, JobReport> {
        // Boxed as `Send` here, where the lifetimes are concrete: the
        // scheduler spawns runs, and the compiler cannot prove the sqlx
        // futures inside `Send` for every lifetime otherwise.
        let span = tracing::info_span!("job", job = %job.name);
        self.run_job_inner(job, None, options, cancel)
            .instrument(span)
            .boxed()
    }

    /// Runs `job` for the given items only (webhook events): the same copy
    /// path, checkpoint and run record as [`Syncer::run_job`], without
    /// listing the source or pruning the checkpoints of other items.
    pub fn run_job_items<'a>(
        &'a self,
        job: &'a Job,
        picks: Vec<(RepoName, Reference)>,
        options: &'a SyncOptions,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, JobReport> {
        let span = tracing::info_span!("job", job = %job.name, trigger = "event");
        self.run_job_inner(job, Some(picks), options, cancel)
            .instrument(span)
            .boxed()
    }

    async fn run_job_inner(
        &self,
        job: &Job,
        picks: Option<Vec<(RepoName, Reference)>>,
        options: &SyncOptions,
        cancel: &CancellationToken,
    ) -> JobReport {
        let mut report = JobReport {
            job: job.name.clone(),
            ..JobReport::default()
        };
        let store = if options.dry_run {
            None
        } else {
            self.store.as_ref()
        };
        let started = std::time::Instant::now();
        let metrics = self.metrics.as_ref().filter(|_| !options.dry_run);
        if let Some(m) = metrics {
            m.run_started(&job.name);
        }
        let run = match store {
            Some(s) => match s.start_run(&job.name, self.clock.now()).boxed().await {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(job = %job.name, error = %e, "Could not record the run start.");
                    None
                }
            },
            None => None,
        };
        let listed = match &picks {
            Some(p) => self
                .picked_items(job, p)
                .map(|items| (0, items, Vec::new())),
            None => self.items(job).await,
        };
        match listed {
            Ok((repos, items, filtered)) => {
                report.counts.repositories = repos;
                report.filtered = filtered;
                report.counts.tags_selected = items.len() as u64;
                if let Some(s) = store.filter(|_| picks.is_none()) {
                    forget_unselected(s, job, &items).await;
                }
                let selected = items::target_tags(&items);
                // On PostgreSQL the replicas share the run's items.
                match store.filter(|s| s.backend() == Backend::Postgres) {
                    Some(s) => {
                        self.run_shared(job, items, options, s, cancel, &mut report)
                            .await
                    }
                    None => {
                        self.run_items(job, items, options, store, cancel, &mut report)
                            .await
                    }
                }
                // A run stopped early has not seen every item: no deletions.
                if !cancel.is_cancelled() {
                    self.sync_deletions(job, &selected, options.dry_run, &mut report)
                        .await;
                    self.sync_withdrawn(job, options.dry_run, &mut report).await;
                }
            }
            Err(e) => {
                tracing::error!(job = %job.name, error = %e, "Job could not list its source.");
                if let Some(m) = metrics {
                    record_error(m, &job.name, e.registry(), e.kind_label());
                }
                report.fatal = Some(e.to_string());
            }
        }
        if let (Some(s), Some(id)) = (store, run) {
            let outcome = RunOutcome {
                result: report.result(),
                counts: report.counts,
                error: report.fatal.clone().or_else(|| {
                    report
                        .failures
                        .first()
                        .map(|f| format!("{}: {}", f.item, f.error))
                }),
            };
            if let Err(e) = s.finish_run(id, self.clock.now(), &outcome).boxed().await {
                tracing::warn!(job = %job.name, error = %e, "Could not record the run outcome.");
            }
        }
        if let Some(m) = metrics {
            self.record_run_metrics(m, job, &report, store, started.elapsed())
                .await;
        }
        report
    }

    /// Run duration and result, items pending and failing, and mirror lag:
    /// the age of the oldest source change not yet on the target (the first
    /// failure of an item still failing).
    async fn record_run_metrics(
        &self,
        m: &Metrics,
        job: &Job,
        report: &JobReport,
        store: Option<&Store>,
        elapsed: Duration,
    ) {
        let result = match report.result() {
            RunResult::Success => crate::metrics::RunResult::Success,
            _ => crate::metrics::RunResult::Failure,
        };
        m.run_finished(&job.name, result, elapsed.as_secs_f64());
        let pending = (report.failures.len() + report.deferred.len()) as u64;
        m.items_pending(&job.name, pending);
        let now = self.clock.now();
        let (failing, lag) = match store.map(|s| s.failures_for_job(&job.name)) {
            Some(f) => match f.await {
                Ok(list) => {
                    let oldest = list.iter().map(|f| f.first_failed_at).min();
                    let lag = oldest.map_or(0.0, |t| {
                        now.signed_duration_since(t).num_milliseconds().max(0) as f64 / 1000.0
                    });
                    (list.len() as u64, lag)
                }
                Err(_) => (pending, 0.0),
            },
            None => (
                pending,
                if pending > 0 {
                    elapsed.as_secs_f64()
                } else {
                    0.0
                },
            ),
        };
        m.items_failing(&job.name, failing);
        m.mirror_lag(&job.name, lag);
    }

    async fn run_items(
        &self,
        job: &Job,
        items: Vec<Item>,
        options: &SyncOptions,
        store: Option<&Store>,
        cancel: &CancellationToken,
        report: &mut JobReport,
    ) {
        // One copier per (source, target) pair, so blobs shared between
        // images of the run are copied once.
        let mut copiers: HashMap<(Location, Location), Arc<Copier>> = HashMap::new();
        let mut work = Vec::new();
        for item in items {
            let key = (item.src.location.clone(), item.dst.location.clone());
            let copier = match copiers.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let (src, dst) = match (self.open(job, &key.0), self.open(job, &key.1)) {
                        (Ok(s), Ok(d)) => (s, d),
                        (Err(e), _) | (_, Err(e)) => {
                            report.failures.push(ItemFailure {
                                item: item.name.clone(),
                                reference: item.reference.to_string(),
                                kind: e.kind_label(),
                                error: e.to_string(),
                            });
                            continue;
                        }
                    };
                    let copy = crate::copy::CopyOptions {
                        // Without the checkpoint, nothing on the target is trusted.
                        recheck_present: options.full,
                        ..copy_options(job, &self.limits)
                    };
                    let mut copier =
                        Copier::new(src, dst, copy).with_permits(self.transfers.clone());
                    if let Some(tx) = &self.events {
                        copier = copier.with_events(forward(job.name.clone(), tx.clone()));
                    }
                    if job.policy.is_active() {
                        // The cache is read by plans too (the gate writes
                        // nothing in a dry run), so a plan says what a run
                        // would verify.
                        let gate = PolicyGate::new(&job.name, Arc::new(job.policy.clone()))
                            .with_store(self.store.clone())
                            .with_metrics(self.metrics.clone());
                        copier = copier.with_gate(Arc::new(gate));
                    }
                    let copier = Arc::new(copier);
                    copiers.insert(key, copier.clone());
                    copier
                }
            };
            if let Some(tags) = &item.source_tags {
                copier.know_source_tags(&item.src.repo, Arc::clone(tags));
            }
            work.push((item, copier));
        }
        // Futures built by a method, not a closure, so the run future stays
        // `Send` for the scheduler's spawned tasks.
        let mut results = Vec::with_capacity(work.len());
        let mut queue = work.into_iter();
        // Checking an image costs a round trip and transfers nothing: many
        // are checked at once so that latency to the source does not add up;
        // copies stay bounded by the job's concurrency.
        let copies = Semaphore::new(job.concurrency.max(1));
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < job.concurrency.max(CHECKS_AT_ONCE) {
                let Some((item, copier)) = queue.next() else {
                    break;
                };
                if cancel.is_cancelled() {
                    results.push((item, ItemResult::Cancelled));
                    continue;
                }
                in_flight.push(
                    self.run_one(job, item, copier, options, store, &copies)
                        .boxed(),
                );
            }
            tokio::select! {
                done = in_flight.next() => match done {
                    Some(done) => results.push(done),
                    None => break,
                },
                // Cancelled: copies under way finish, checked items waiting
                // for a copy slot do not start.
                () = cancel.cancelled(), if !copies.is_closed() => copies.close(),
            }
        }
        for (item, result) in results {
            match result {
                ItemResult::Copied(copy) => {
                    // A walk that found every node on the target (`--full`,
                    // an expired checkpoint) verified the image: unchanged,
                    // not copied.
                    if copy.wrote_nothing() {
                        report.counts.images_skipped += 1;
                    } else {
                        report.counts.images_copied += 1;
                    }
                    if let Some(m) = &self.metrics {
                        record_referrers(m, &job.name, &copy);
                    }
                    add_counts(&mut report.counts, &copy);
                    report.copy.merge(copy);
                }
                ItemResult::Unchanged => report.counts.images_skipped += 1,
                ItemResult::Planned {
                    reason,
                    would_run,
                    steps,
                } => report.plan.push(PlannedItem {
                    target: item.target_name(),
                    item: item.name,
                    reason,
                    would_run,
                    steps,
                }),
                ItemResult::Deferred(next_retry_at) => report.deferred.push(DeferredItem {
                    item: item.name,
                    next_retry_at,
                }),
                ItemResult::Cancelled => {}
                ItemResult::Failed {
                    error,
                    kind,
                    registry,
                    report: copy,
                } => {
                    if let Some(m) = &self.metrics {
                        let registry = registry
                            .as_deref()
                            .map_or_else(|| target_label(job), |r| registry_label(r).to_string());
                        m.error(&job.name, &registry, kind);
                    }
                    report.counts.images_failed += 1;
                    if let Some(copy) = copy {
                        add_counts(&mut report.counts, &copy);
                        report.copy.merge(copy);
                    }
                    report.failures.push(ItemFailure {
                        reference: item.reference.to_string(),
                        item: item.name,
                        kind,
                        error,
                    });
                }
            }
        }
        // Completion order varies from run to run; a plan reads best sorted.
        report.plan.sort_by(|a, b| a.item.cmp(&b.item));
    }
}

/// Tags every event of a copier with its job name.
fn forward(
    job: String,
    tx: mpsc::UnboundedSender<(String, CopyEvent)>,
) -> mpsc::UnboundedSender<CopyEvent> {
    let (inner_tx, mut inner_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = inner_rx.recv().await {
            if tx.send((job.clone(), ev)).is_err() {
                break;
            }
        }
    });
    inner_tx
}
