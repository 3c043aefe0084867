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
//! Imports `config` (types only), `copy`, `registry`, `store` and `oci`.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::FuturesUnordered;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{
    Config, Job, PlatformMode, ReferrersMode, RegistryAuth, RegistrySettings, Source,
};
use crate::copy::{
    Copier, CopyEvent, CopyOptions, CopyReport, DiscoveryMode, PlanItem, PlatformSpec, PublishMode,
};
use crate::metrics::Metrics;
use crate::observe::{record_referrers, registry_label, target_label};
use crate::oci::referrers::{COSIGN_SUFFIXES, cosign_tag, fallback_tag};
use crate::oci::{Digest, ImageReference, Location, Reference, RepoName, Tag};
use crate::registry::http::{
    Credentials, HttpRegistry, HttpSettings, RequestObserver, Secret, UploadMode,
};
use crate::registry::layout::LayoutRegistry;
use crate::registry::{ReferrersSupport, Registry, RegistryError};
use crate::scheduler::Clock;
use crate::store::{RunCounts, RunOutcome, RunResult, Store, StoreError, TagState};

/// Re-verify an unchanged item against the target after this long.
pub const DEFAULT_VERIFY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Why a job run could not even start (per-item failures are in the report).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The source or target could not be reached or listed.
    #[error("job {job}: {source}")]
    Registry {
        /// Job name.
        job: String,
        /// Cause.
        source: RegistryError,
    },
    /// A reference derived from the config was invalid.
    #[error("job {job}: {message}")]
    Reference {
        /// Job name.
        job: String,
        /// What was wrong.
        message: String,
    },
    /// The state database failed.
    #[error("job {job}: state database: {source}")]
    Store {
        /// Job name.
        job: String,
        /// Cause.
        source: StoreError,
    },
}

/// The adapters of every registry the jobs touch, one per host, so jobs
/// that share a registry share its rate limit, in-flight limit and tokens.
pub struct Registries {
    config: Config,
    http: Mutex<HashMap<String, Arc<HttpRegistry>>>,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl Registries {
    /// Adapters for the registries of `config`, opened on first use.
    pub fn new(config: &Config) -> Self {
        Registries {
            config: config.clone(),
            http: Mutex::new(HashMap::new()),
            observer: None,
        }
    }

    /// Reports every HTTP request to `observer` (metrics).
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The HTTP adapter of `host`.
    pub fn http(&self, host: &str) -> Result<Arc<HttpRegistry>, RegistryError> {
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = map.get(host) {
            return Ok(r.clone());
        }
        let settings = http_settings(&self.config.registry(host));
        let mut registry = HttpRegistry::new(host, settings)?;
        if let Some(o) = &self.observer {
            registry = registry.with_observer(o.clone());
        }
        let registry = Arc::new(registry);
        map.insert(host.to_string(), registry.clone());
        Ok(registry)
    }

    /// The adapter for `location`.
    pub fn open(&self, location: &Location) -> Result<Arc<dyn Registry>, RegistryError> {
        Ok(match location {
            Location::Registry(host) => self.http(host)?,
            Location::Layout(dir) => Arc::new(LayoutRegistry::open(dir.clone())),
        })
    }

    /// Every HTTP adapter opened so far, by host (for request statistics).
    pub fn opened(&self) -> Vec<(String, Arc<HttpRegistry>)> {
        let map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(h, r)| (h.clone(), r.clone())).collect()
    }
}

/// Maps a config registry entry to the HTTP adapter's settings.
pub fn http_settings(s: &RegistrySettings) -> HttpSettings {
    let credentials = match &s.auth {
        RegistryAuth::Anonymous => None,
        RegistryAuth::Basic { username, password } => Some(Credentials::Basic {
            username: username.clone(),
            password: Secret::new(password.expose()),
        }),
        RegistryAuth::Token { token } => {
            Some(Credentials::IdentityToken(Secret::new(token.expose())))
        }
    };
    use crate::registry::http::DockerConfigSource;
    let docker_config = match &s.docker_config {
        crate::config::DockerConfig::Disabled => DockerConfigSource::Off,
        crate::config::DockerConfig::Default => DockerConfigSource::Default,
        crate::config::DockerConfig::Path(p) => DockerConfigSource::Path(p.clone()),
    };
    HttpSettings {
        credentials,
        docker_config,
        plain_http: s.plain_http.then_some(true),
        ca_certificates: s.ca_file.iter().cloned().collect(),
        tls_verify: s.tls_verify,
        requests_per_second: s
            .requests_per_second
            .and_then(|r| NonZeroU32::new(r.ceil().max(1.0) as u32)),
        max_in_flight: s.max_in_flight,
        upload: match s.upload {
            crate::config::UploadMode::Monolithic => UploadMode::Monolithic,
            crate::config::UploadMode::Chunked => UploadMode::Chunked {
                chunk_size: usize::try_from(s.chunk_size).unwrap_or(usize::MAX),
            },
        },
        referrers: match s.referrers {
            ReferrersMode::Auto => None,
            ReferrersMode::Api => Some(ReferrersSupport::Supported),
            ReferrersMode::Tags => Some(ReferrersSupport::Unsupported),
        },
        ..HttpSettings::default()
    }
}

/// The copy engine's options for `job`.
pub fn copy_options(job: &Job) -> CopyOptions {
    let r = &job.referrers;
    CopyOptions {
        referrers: r.enabled,
        max_depth: r.depth as usize,
        artifact_types_include: r.include_artifact_types.clone(),
        artifact_types_exclude: r.exclude_artifact_types.clone(),
        platforms: job
            .platforms
            .iter()
            .filter_map(|p| crate::config::fmt_platform(p).parse::<PlatformSpec>().ok())
            .collect(),
        platform_mode: match job.platform_mode {
            PlatformMode::Whole => crate::copy::PlatformMode::All,
            PlatformMode::Filter => crate::copy::PlatformMode::Filter,
        },
        source_referrers: match r.source_mode {
            ReferrersMode::Auto => DiscoveryMode::Auto,
            ReferrersMode::Api => DiscoveryMode::Api,
            ReferrersMode::Tags => DiscoveryMode::Tags,
        },
        target_referrers: match r.target_mode {
            ReferrersMode::Auto => PublishMode::Auto,
            ReferrersMode::Api => PublishMode::Api,
            ReferrersMode::Tags => PublishMode::Tags,
        },
        cosign_tags: r.cosign_tags,
        concurrency: job.concurrency.max(1),
        ..CopyOptions::default()
    }
}

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

/// One item of a job that failed.
#[derive(Clone, Debug)]
pub struct ItemFailure {
    /// `repo:tag` or `repo@digest`.
    pub item: String,
    /// Why, naming registry, repository and digest.
    pub error: String,
}

/// What one run of one job did.
#[derive(Debug, Default)]
pub struct JobReport {
    /// Job name.
    pub job: String,
    /// Counts as recorded in the database.
    pub counts: RunCounts,
    /// The copy engine's combined report.
    pub copy: CopyReport,
    /// Items that failed.
    pub failures: Vec<ItemFailure>,
    /// Items not tried because their failure backoff has not passed.
    pub deferred: Vec<String>,
    /// Dry run: per item, what would happen.
    pub plan: Vec<(String, Vec<PlanItem>)>,
    /// The job could not start (source unreachable, bad reference).
    pub fatal: Option<String>,
}

impl JobReport {
    /// The run's result.
    pub fn result(&self) -> RunResult {
        let failed = self.failures.len() as u64;
        if self.fatal.is_some()
            || (failed > 0 && self.counts.images_copied == 0 && self.counts.images_skipped == 0)
        {
            RunResult::Failed
        } else if failed > 0 {
            RunResult::Partial
        } else {
            RunResult::Success
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
    events: Option<mpsc::UnboundedSender<(String, CopyEvent)>>,
    metrics: Option<Arc<Metrics>>,
}

struct Item {
    src: ImageReference,
    dst: ImageReference,
    reference: Reference,
    name: String,
    /// The source repository's tags, when the job listed them: referrer
    /// tags absent from it need no request.
    source_tags: Option<Arc<HashSet<String>>>,
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
            events: None,
            metrics: None,
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
        self.run_job_inner(job, options, cancel)
            .instrument(span)
            .boxed()
    }

    async fn run_job_inner(
        &self,
        job: &Job,
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
        match self.items(job).await {
            Ok((repos, items)) => {
                report.counts.repositories = repos;
                report.counts.tags_selected = items.len() as u64;
                if let Some(s) = store {
                    forget_unselected(s, job, &items).await;
                }
                self.run_items(job, items, options, store, cancel, &mut report)
                    .await;
            }
            Err(e) => {
                tracing::error!(job = %job.name, error = %e, "Job could not list its source.");
                if let Some(m) = metrics {
                    crate::observe::record_run_error(m, &job.name, &e);
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

    /// The repositories and items of `job`.
    async fn items(&self, job: &Job) -> Result<(u64, Vec<Item>), SyncError> {
        let sources: Vec<ImageReference> = match &job.source {
            Source::Repository(r) => vec![r.clone()],
            Source::Catalog(c) => {
                let registry =
                    self.registries
                        .http(&c.registry)
                        .map_err(|source| SyncError::Registry {
                            job: job.name.clone(),
                            source,
                        })?;
                let repos = registry
                    .catalog()
                    .await
                    .map_err(|source| SyncError::Registry {
                        job: job.name.clone(),
                        source,
                    })?;
                let mut out = Vec::new();
                for repo in repos.into_iter().filter(|r| c.matches(r)) {
                    match RepoName::new(&repo) {
                        Ok(name) => out.push(ImageReference {
                            location: Location::Registry(c.registry.clone()),
                            repo: name,
                            tag: None,
                            digest: None,
                        }),
                        Err(e) => {
                            tracing::warn!(job = %job.name, repository = %repo, error = %e, "Skipped a catalog entry.")
                        }
                    }
                }
                out
            }
        };
        let mut items = Vec::new();
        for src in &sources {
            let dst = job
                .target_repository(&src.repo)
                .map_err(|e| SyncError::Reference {
                    job: job.name.clone(),
                    message: format!("target for {src}: {e}"),
                })?;
            let item = |reference: Reference, source_tags: Option<Arc<HashSet<String>>>| Item {
                name: match &reference {
                    Reference::Tag(t) => format!("{}:{t}", src_name(src)),
                    Reference::Digest(d) => format!("{}@{d}", src_name(src)),
                },
                src: src.clone(),
                dst: dst.clone(),
                reference,
                source_tags,
            };
            let mut source_tags = None;
            if let Some(r) = src.reference() {
                items.push(item(r, None));
            } else {
                let registry = self.open(job, &src.location)?;
                let tags =
                    registry
                        .tags(&src.repo)
                        .await
                        .map_err(|source| SyncError::Registry {
                            job: job.name.clone(),
                            source,
                        })?;
                let listed = Arc::new(tags.iter().cloned().collect::<HashSet<_>>());
                for tag in job.tags.select(&tags) {
                    match Tag::new(&tag) {
                        Ok(t) => items.push(item(Reference::Tag(t), Some(Arc::clone(&listed)))),
                        Err(e) => {
                            tracing::warn!(job = %job.name, tag = %tag, error = %e, "Skipped an invalid tag.")
                        }
                    }
                }
                source_tags = Some(listed);
            }
            for d in &job.tags.digests {
                items.push(item(Reference::Digest(d.clone()), source_tags.clone()));
            }
        }
        Ok((sources.len() as u64, items))
    }

    fn open(&self, job: &Job, location: &Location) -> Result<Arc<dyn Registry>, SyncError> {
        self.registries
            .open(location)
            .map_err(|source| SyncError::Registry {
                job: job.name.clone(),
                source,
            })
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
                                error: e.to_string(),
                            });
                            continue;
                        }
                    };
                    let mut copier = Copier::new(src, dst, copy_options(job))
                        .with_permits(self.transfers.clone());
                    if let Some(tx) = &self.events {
                        copier = copier.with_events(forward(job.name.clone(), tx.clone()));
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
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < job.concurrency.max(1) {
                let Some((item, copier)) = queue.next() else {
                    break;
                };
                in_flight.push(
                    self.run_one(job, item, copier, options, store, cancel)
                        .boxed(),
                );
            }
            match in_flight.next().await {
                Some(done) => results.push(done),
                None => break,
            }
        }
        for (item, result) in results {
            match result {
                ItemResult::Copied(copy) => {
                    report.counts.images_copied += 1;
                    if let Some(m) = &self.metrics {
                        record_referrers(m, &job.name, &copy);
                    }
                    add_counts(&mut report.counts, &copy);
                    report.copy.merge(copy);
                }
                ItemResult::Unchanged => report.counts.images_skipped += 1,
                ItemResult::Planned(plan) => report.plan.push((item.name, plan)),
                ItemResult::Deferred => report.deferred.push(item.name),
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
                        item: item.name,
                        error,
                    });
                }
            }
        }
    }

    async fn run_one(
        &self,
        job: &Job,
        item: Item,
        copier: Arc<Copier>,
        options: &SyncOptions,
        store: Option<&Store>,
        cancel: &CancellationToken,
    ) -> (Item, ItemResult) {
        if cancel.is_cancelled() {
            return (item, ItemResult::Cancelled);
        }
        let span = tracing::info_span!(
            "image",
            repository = %item.src.repo,
            reference = %item.reference,
            target = %item.dst,
        );
        let result = self
            .run_item(job, &item, &copier, options, store)
            .instrument(span)
            .await;
        (item, result)
    }

    async fn run_item(
        &self,
        job: &Job,
        item: &Item,
        copier: &Copier,
        options: &SyncOptions,
        store: Option<&Store>,
    ) -> ItemResult {
        let now = self.clock.now();
        if let Some(s) = store
            && !options.full
            && let Ok(Some(f)) = s.failure(&job.name, &item.name).boxed().await
            && !f.is_due(now)
        {
            tracing::debug!(job = %job.name, item = %item.name, "Item is backing off after failures.");
            return ItemResult::Deferred;
        }
        let result = self.sync_item(job, item, copier, options, store, now).await;
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

    async fn sync_item(
        &self,
        job: &Job,
        item: &Item,
        copier: &Copier,
        options: &SyncOptions,
        store: Option<&Store>,
        now: DateTime<Utc>,
    ) -> ItemResult {
        let source = match self.open(job, &item.src.location) {
            Ok(s) => s,
            Err(e) => return failed(&e, "registry", None),
        };
        // One manifest HEAD on the source resolves the tag.
        let digest = match source.manifest_head(&item.src.repo, &item.reference).await {
            Ok(Some(desc)) => desc.digest,
            Ok(None) => {
                return failed(
                    format!(
                        "{}: manifest {} not found in {}",
                        source.name(),
                        item.reference,
                        item.src.repo
                    ),
                    "not_found",
                    Some(source.name()),
                );
            }
            Err(e) => {
                let kind = e.kind.label();
                return failed(&e, kind, Some(&e.registry));
            }
        };
        let tag = match &item.reference {
            Reference::Tag(t) => Some(t.clone()),
            Reference::Digest(_) => None,
        };
        let dst_tag = item.dst.tag.clone().or(tag.clone());
        if options.dry_run {
            return match copier
                .plan_image(
                    &item.src.repo,
                    &Reference::Digest(digest),
                    &item.dst.repo,
                    dst_tag.as_ref(),
                )
                .await
            {
                Ok(plan) => ItemResult::Planned(plan),
                Err(e) => failed(&e, e.kind_label(), e.registry()),
            };
        }
        // The root's referrer set, as a fingerprint.
        let fingerprint = referrers_fingerprint(
            source.as_ref(),
            &item.src.repo,
            &digest,
            job,
            item.source_tags.as_deref(),
        )
        .await;
        let key_tag = item.reference.to_string();
        if let Some(s) = store
            && !options.full
            && let Ok(Some(state)) = s
                .tag_state(&job.name, item.src.repo.as_str(), &key_tag)
                .boxed()
                .await
            && state.source_digest == digest
            && fingerprint.is_some()
            && state.referrers_fingerprint == fingerprint
            && state.target_repo == item.dst.to_string()
            && now
                .signed_duration_since(state.updated_at)
                .to_std()
                .is_ok_and(|age| age < options.verify_after)
        {
            tracing::debug!(job = %job.name, item = %item.name, digest = %digest, "Unchanged since the last verified copy.");
            return ItemResult::Unchanged;
        }
        let report = match copier
            .copy_image(
                &item.src.repo,
                &Reference::Digest(digest.clone()),
                &item.dst.repo,
                dst_tag.as_ref(),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return failed(&e, e.kind_label(), e.registry()),
        };
        if !report.is_success() {
            let error = report.failures.join("; ");
            return ItemResult::Failed {
                error,
                kind: "copy_step",
                registry: None,
                report: Some(report),
            };
        }
        tracing::info!(job = %job.name, item = %item.name, digest = %digest, manifests = report.manifests_copied, blobs = report.blobs_copied, bytes = report.bytes, "Image synced.");
        if let Some(s) = store {
            let state = TagState {
                job: job.name.clone(),
                source_repo: item.src.repo.as_str().to_string(),
                tag: key_tag,
                source_digest: digest,
                referrers_fingerprint: fingerprint,
                target_repo: item.dst.to_string(),
                updated_at: now,
            };
            if let Err(e) = s.record_synced(&state).boxed().await {
                tracing::warn!(job = %job.name, item = %item.name, error = %e, "Could not record the checkpoint.");
            }
        }
        ItemResult::Copied(report)
    }
}

/// Drops the checkpoints of tags no longer selected (deleted at the source
/// or filtered out now), so `status` counts only what the job mirrors.
async fn forget_unselected(store: &Store, job: &Job, items: &[Item]) {
    let mut by_repo: HashMap<&str, Vec<String>> = HashMap::new();
    for item in items {
        by_repo
            .entry(item.src.repo.as_str())
            .or_default()
            .push(item.reference.to_string());
    }
    for (repo, keep) in by_repo {
        if let Err(e) = store
            .forget_tags_except(&job.name, repo, &keep)
            .boxed()
            .await
        {
            tracing::warn!(job = %job.name, repository = %repo, error = %e, "Could not prune old checkpoints.");
        }
    }
}

enum ItemResult {
    Copied(CopyReport),
    Unchanged,
    Planned(Vec<PlanItem>),
    Deferred,
    Cancelled,
    Failed {
        error: String,
        kind: &'static str,
        /// The registry involved, when it is not the job's target.
        registry: Option<String>,
        report: Option<CopyReport>,
    },
}

fn failed(error: impl ToString, kind: &'static str, registry: Option<&str>) -> ItemResult {
    ItemResult::Failed {
        error: error.to_string(),
        kind,
        registry: registry.map(str::to_string),
        report: None,
    }
}

/// `host/repo` or `oci:<dir>` of a reference, without tag or digest.
fn src_name(r: &ImageReference) -> String {
    ImageReference {
        tag: None,
        digest: None,
        ..r.clone()
    }
    .to_string()
}

fn add_counts(c: &mut RunCounts, r: &CopyReport) {
    c.manifests_copied += r.manifests_copied;
    c.blobs_copied += r.blobs_copied;
    c.blobs_mounted += r.blobs_mounted;
    c.bytes_copied += r.bytes;
    c.referrers_copied += r.referrers.values().sum::<u64>();
}

/// A fingerprint of the referrers of `digest` as the walk discovers them:
/// the referrers API list, the fallback tag and cosign's tags. Referrer tags
/// missing from `tags` (the repository's listing, when known) cost no
/// request, so an unchanged tag usually costs one request here. `None` when
/// something could not be read: the item then takes the full path.
async fn referrers_fingerprint(
    source: &dyn Registry,
    repo: &RepoName,
    digest: &Digest,
    job: &Job,
    tags: Option<&HashSet<String>>,
) -> Option<String> {
    let options = &job.referrers;
    if !options.enabled {
        return Some("referrers-off".into());
    }
    let mut parts = Vec::new();
    if options.source_mode != ReferrersMode::Tags {
        match source.referrers_api(repo, digest).await {
            Ok(Some(mut list)) => {
                list.sort_by(|a, b| a.digest.cmp(&b.digest));
                let joined: Vec<String> = list.iter().map(|d| d.digest.to_string()).collect();
                parts.push(format!(
                    "api:{}",
                    Digest::sha256(joined.join(",").as_bytes())
                ));
            }
            Ok(None) if options.source_mode == ReferrersMode::Api => return None,
            Ok(None) => {}
            Err(_) => return None,
        }
    }
    let mut referrer_tags = Vec::new();
    if options.source_mode != ReferrersMode::Api {
        referrer_tags.push(fallback_tag(digest));
    }
    if options.cosign_tags {
        referrer_tags.extend(COSIGN_SUFFIXES.iter().map(|s| cosign_tag(digest, s)));
    }
    for tag in referrer_tags {
        if tags.is_some_and(|listed| !listed.contains(&tag)) {
            continue;
        }
        let reference = Reference::Tag(Tag::new(&tag).ok()?);
        match source.manifest_head(repo, &reference).await {
            Ok(Some(desc)) => parts.push(format!("{tag}={}", desc.digest)),
            Ok(None) => {}
            Err(_) => return None,
        }
    }
    Some(format!("v2 {}", parts.join(" ")))
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
