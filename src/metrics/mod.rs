//! Every Prometheus metric of ocimirror, declared in one place.
//!
//! [`Metrics`] owns its own `prometheus::Registry` (never the process-global
//! one), so tests and embedders can build as many independent instances as
//! they like. Each metric is a typed field; call sites use the intent-named
//! methods (`blob_copied`, `request_finished`, ...) and stay one line.
//!
//! Naming rules (after Vector's instrumentation spec):
//! - names are `ocimirror_<name>_<unit>[_total]`, snake_case, base units
//!   (`seconds`, `bytes`); counters end in `_total`, nothing else does;
//! - labels carry bounded values only: the mirror job name, the registry
//!   host, the operation, a result, an action, a referrers representation,
//!   an error kind or an HTTP status class. Never a repository, tag or digest.
//!   Operations and error kinds are `&'static str` so a runtime string (a
//!   repository name in a format!) cannot become a label by accident;
//! - counters move once per blob, manifest, request or run, never per chunk.
//!
//! The per-job label is `mirror_job`, not `job`: Prometheus attaches its own
//! `job` label to every scraped series, and a clash would rename ours to
//! `exported_job`.
//!
//! Imports nothing from the crate: every layer may import this module.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Label naming the mirror job (a name from the config file).
pub const LABEL_JOB: &str = "mirror_job";

/// The content type of [`Metrics::render`]'s output (text exposition 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

mod deletions;
mod events;
pub mod names;
mod policy;
mod register;
mod replicas;

pub use deletions::DeletionMetrics;
pub use events::{EventMetrics, Rejection};
pub use policy::{PolicyResult, SignatureResult};
pub use replicas::ReplicaMetrics;

use register::{counter, gauge, histogram, int_gauge, saturating_i64};

/// The `direction` values of `ocimirror_cosign_conversions_total`.
pub const COSIGN_DIRECTIONS: [&str; 2] = ["to_referrers", "to_tags"];

/// Every metric name [`Metrics`] registers (histograms by their base name,
/// without `_bucket`/`_sum`/`_count`).
pub const METRIC_NAMES: &[&str] = &[
    names::BLOBS,
    names::BLOB_BYTES,
    names::MANIFESTS,
    names::TAGS,
    names::REFERRERS,
    names::REFERRER_CONVERSIONS,
    names::COSIGN_CONVERSIONS,
    names::ERRORS,
    names::REQUEST_DURATION,
    names::RETRIES,
    names::RATE_LIMITED,
    names::LIMITER_WAIT,
    names::DOCKER_HUB_REMAINING,
    names::DOCKER_HUB_LIMIT,
    names::RUN_DURATION,
    names::RUNNING,
    names::LAST_SUCCESS,
    names::LAST_FAILURE,
    names::ITEMS_PENDING,
    names::ITEMS_FAILING,
    names::MIRROR_LAG,
    names::INTERVAL,
    names::BUILD_INFO,
    names::WEBHOOK_RECEIVED,
    names::WEBHOOK_EVENTS,
    names::WEBHOOK_REJECTED,
    names::WEBHOOK_QUEUE_DEPTH,
    names::WEBHOOK_LAG,
    names::DELETIONS,
    names::DELETION_GUARD_TRIPS,
    names::DELETION_GUARD_TRIPPED,
    names::TAG_BACKUPS,
    names::POLICY_IMAGES,
    names::POLICY_SIGNATURES,
    names::REPLICA_ITEMS_CLAIMED,
    names::REPLICA_ITEMS_HELD,
    names::REPLICA_LEADS,
    names::REPLICAS_LIVE,
];

/// Every metric name [`Metrics`] registers; see [`METRIC_NAMES`].
pub fn metric_names() -> &'static [&'static str] {
    METRIC_NAMES
}

/// How a job run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunResult {
    /// Every item was copied or already up to date.
    Success,
    /// The run aborted, or at least one item failed.
    Failure,
}

impl RunResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failure => "failure",
        }
    }
}

/// The `status_class` label for a response status: `1xx` to `5xx`, or
/// `error` when no response arrived (connection, TLS or timeout failure).
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        // A status outside 100..=599 is a broken response: count it with
        // the failures that produced no usable status.
        Some(_) | None => "error",
    }
}

/// Registering a metric failed (a duplicate or invalid name: a bug).
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

const ACTION: &str = "action";
const REGISTRY: &str = "registry";
const OPERATION: &str = "operation";
const SOURCE_REPR: &str = "source_repr";
const TARGET_REPR: &str = "target_repr";

/// Request latencies: from a cached HEAD (milliseconds) to a large blob
/// transfer (minutes).
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Limiter waits: usually none or sub-second; minutes when a quota is spent.
const WAIT_BUCKETS: &[f64] = &[0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0];
/// Job runs: a no-op run takes a second, a first full mirror hours.
const RUN_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

/// All of ocimirror's metrics and the registry they are exposed from.
/// Clones share the same metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    blobs: IntCounterVec,
    blob_bytes: IntCounterVec,
    manifests: IntCounterVec,
    tags: IntCounterVec,
    referrers: IntCounterVec,
    referrer_conversions: IntCounterVec,
    cosign_conversions: IntCounterVec,
    errors: IntCounterVec,
    request_duration: HistogramVec,
    retries: IntCounterVec,
    rate_limited: IntCounterVec,
    limiter_wait: HistogramVec,
    docker_hub_remaining: IntGaugeVec,
    docker_hub_limit: IntGaugeVec,
    run_duration: HistogramVec,
    running: IntGaugeVec,
    last_success: GaugeVec,
    last_failure: GaugeVec,
    items_pending: IntGaugeVec,
    items_failing: IntGaugeVec,
    mirror_lag: GaugeVec,
    interval: GaugeVec,
    events: EventMetrics,
    deletions: DeletionMetrics,
    policy: policy::PolicyMetrics,
    replicas: ReplicaMetrics,
}

impl Metrics {
    /// Creates every metric in a fresh registry and sets
    /// `ocimirror_build_info{version}` to 1.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let r = &registry;
        let job_registry_action = &[LABEL_JOB, REGISTRY, ACTION];

        let metrics = Metrics {
            blobs: counter(
                r,
                names::BLOBS,
                "Blobs handled for a job on its target registry. action=copied: \
                 transferred; skipped: already present; mounted: mounted from \
                 another repository of the target.",
                job_registry_action,
            )?,
            blob_bytes: counter(
                r,
                names::BLOB_BYTES,
                "Size in bytes of the blobs counted by ocimirror_blobs_total, \
                 by the same action. rate() of action=\"copied\" is the \
                 transfer throughput.",
                job_registry_action,
            )?,
            manifests: counter(
                r,
                names::MANIFESTS,
                "Manifests and indexes handled for a job on its target \
                 registry. action=copied: pushed; skipped: already present.",
                job_registry_action,
            )?,
            tags: counter(
                r,
                names::TAGS,
                "Tags handled for a job on its target registry. \
                 action=copied: the target tag was created or moved; \
                 skipped: it already pointed at the source digest.",
                job_registry_action,
            )?,
            referrers: counter(
                r,
                names::REFERRERS,
                "Referrers (signatures, SBOMs, attestations) handled for a \
                 job, by action (copied, skipped) and by how the source \
                 listed them and the target stores them (source_repr, \
                 target_repr: api, fallback_tag, cosign_tag, layout).",
                &[LABEL_JOB, ACTION, SOURCE_REPR, TARGET_REPR],
            )?,
            referrer_conversions: counter(
                r,
                names::REFERRER_CONVERSIONS,
                "Referrers copied whose representation changed between \
                 source and target (source_repr != target_repr), e.g. \
                 referrers API to fallback tag.",
                &[LABEL_JOB, SOURCE_REPR, TARGET_REPR],
            )?,
            cosign_conversions: counter(
                r,
                names::COSIGN_CONVERSIONS,
                "cosign attachments written in the other cosign form, by \
                 direction: to_referrers (legacy .sig/.att/.sbom tag to OCI \
                 1.1 referrer), to_tags (the reverse).",
                &[LABEL_JOB, "direction"],
            )?,
            errors: counter(
                r,
                names::ERRORS,
                "Errors that made an item or a whole run of a job fail, by \
                 the registry involved (empty when none) and a short error \
                 kind (not_found, unauthorized, denied, rate_limited, \
                 server_error, client_error, digest_mismatch, transport, \
                 copy_step, ...).",
                &[LABEL_JOB, REGISTRY, "kind"],
            )?,
            request_duration: histogram(
                r,
                names::REQUEST_DURATION,
                "Duration in seconds of one HTTP request to a registry, from \
                 sending to the end of the response body, by operation \
                 (manifest_get, blob_put, ...) and status class (2xx..5xx, \
                 error when no response arrived). _count is the request \
                 count.",
                &[REGISTRY, OPERATION, "status_class"],
                REQUEST_BUCKETS,
            )?,
            retries: counter(
                r,
                names::RETRIES,
                "Registry requests retried after a retryable failure (429, \
                 5xx, connection error), by operation.",
                &[REGISTRY, OPERATION],
            )?,
            rate_limited: counter(
                r,
                names::RATE_LIMITED,
                "HTTP 429 Too Many Requests responses received from a \
                 registry, by operation.",
                &[REGISTRY, OPERATION],
            )?,
            limiter_wait: histogram(
                r,
                names::LIMITER_WAIT,
                "Seconds a request waited for ocimirror's own per-registry \
                 rate limiter and concurrency limit before being sent. \
                 rate(_sum) is the waiting time per second.",
                &[REGISTRY],
                WAIT_BUCKETS,
            )?,
            docker_hub_remaining: int_gauge(
                r,
                names::DOCKER_HUB_REMAINING,
                "Pulls left in the current Docker Hub rate-limit window, \
                 from the last ratelimit-remaining response header.",
                &[REGISTRY],
            )?,
            docker_hub_limit: int_gauge(
                r,
                names::DOCKER_HUB_LIMIT,
                "Pulls allowed per Docker Hub rate-limit window, from the \
                 last ratelimit-limit response header.",
                &[REGISTRY],
            )?,
            run_duration: histogram(
                r,
                names::RUN_DURATION,
                "Duration in seconds of one run of a mirror job, by result \
                 (success: every item copied or up to date; failure: the run \
                 aborted or an item failed). _count is the run count.",
                &[LABEL_JOB, "result"],
                RUN_BUCKETS,
            )?,
            running: int_gauge(
                r,
                names::RUNNING,
                "1 while a run of the job is in progress, else 0.",
                &[LABEL_JOB],
            )?,
            last_success: gauge(
                r,
                names::LAST_SUCCESS,
                "Unix time in seconds when the last successful run of the \
                 job ended; 0 if none since the daemon started.",
                &[LABEL_JOB],
            )?,
            last_failure: gauge(
                r,
                names::LAST_FAILURE,
                "Unix time in seconds when the last failed run of the job \
                 ended; 0 if none since the daemon started.",
                &[LABEL_JOB],
            )?,
            items_pending: int_gauge(
                r,
                names::ITEMS_PENDING,
                "Images (tags) of the job whose source differs from the \
                 target and that are not copied yet.",
                &[LABEL_JOB],
            )?,
            items_failing: int_gauge(
                r,
                names::ITEMS_FAILING,
                "Images (tags) of the job whose last copy attempt failed.",
                &[LABEL_JOB],
            )?,
            mirror_lag: gauge(
                r,
                names::MIRROR_LAG,
                "Age in seconds of the oldest source change the job has seen \
                 and not yet copied to the target; 0 when the target is up \
                 to date.",
                &[LABEL_JOB],
            )?,
            interval: gauge(
                r,
                names::INTERVAL,
                "The job's configured schedule interval in seconds (alerts \
                 compare staleness to it).",
                &[LABEL_JOB],
            )?,
            events: EventMetrics::new(r)?,
            deletions: DeletionMetrics::new(r)?,
            policy: policy::PolicyMetrics::new(r)?,
            replicas: ReplicaMetrics::new(r)?,
            registry,
        };

        let build_info = IntGaugeVec::new(
            Opts::new(
                names::BUILD_INFO,
                "Always 1; the version label is the ocimirror version.",
            ),
            &["version"],
        )?;
        metrics.registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        Ok(metrics)
    }

    /// The webhook receiver's metrics.
    pub fn events(&self) -> &EventMetrics {
        &self.events
    }

    /// The registry holding every metric, e.g. to add a process collector.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders every metric in the Prometheus text exposition format
    /// ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on a metric family that the
        // registry itself would have refused; log rather than take the
        // endpoint down.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "Cannot encode metrics.");
        }
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// A job's configuration is known: records its schedule and creates its
    /// per-job series at zero, so that dashboards and alerts see the job
    /// before its first run ends.
    pub fn job_configured(&self, job: &str, interval_seconds: f64) {
        self.interval
            .with_label_values(&[job])
            .set(interval_seconds);
        self.running.with_label_values(&[job]).set(0);
        self.last_success.with_label_values(&[job]);
        self.last_failure.with_label_values(&[job]);
        self.items_pending.with_label_values(&[job]);
        self.items_failing.with_label_values(&[job]);
        self.mirror_lag.with_label_values(&[job]);
        self.replicas.joined(job, false);
        // Both directions from 0, so `rate()` sees the first conversion.
        for direction in COSIGN_DIRECTIONS {
            self.cosign_conversions.with_label_values(&[job, direction]);
        }
        self.policy.job_configured(job);
    }

    /// A blob of `bytes` was transferred to `registry` (the target host).
    pub fn blob_copied(&self, job: &str, registry: &str, bytes: u64) {
        self.blob(job, registry, "copied", bytes);
    }

    /// A blob of `bytes` was already on the target.
    pub fn blob_skipped(&self, job: &str, registry: &str, bytes: u64) {
        self.blob(job, registry, "skipped", bytes);
    }

    /// A blob of `bytes` was mounted from another repository of the target.
    pub fn blob_mounted(&self, job: &str, registry: &str, bytes: u64) {
        self.blob(job, registry, "mounted", bytes);
    }

    fn blob(&self, job: &str, registry: &str, action: &str, bytes: u64) {
        let labels = [job, registry, action];
        self.blobs.with_label_values(&labels).inc();
        self.blob_bytes.with_label_values(&labels).inc_by(bytes);
    }

    /// A manifest or index was pushed to `registry` (the target host).
    pub fn manifest_copied(&self, job: &str, registry: &str) {
        self.manifests
            .with_label_values(&[job, registry, "copied"])
            .inc();
    }

    /// A manifest or index was already on the target.
    pub fn manifest_skipped(&self, job: &str, registry: &str) {
        self.manifests
            .with_label_values(&[job, registry, "skipped"])
            .inc();
    }

    /// A target tag was created or moved.
    pub fn tag_copied(&self, job: &str, registry: &str) {
        self.tags
            .with_label_values(&[job, registry, "copied"])
            .inc();
    }

    /// A target tag already pointed at the source digest.
    pub fn tag_skipped(&self, job: &str, registry: &str) {
        self.tags
            .with_label_values(&[job, registry, "skipped"])
            .inc();
    }

    /// A referrer was copied; also counts a conversion when the
    /// representation changed.
    pub fn referrer_copied(&self, job: &str, source: &'static str, target: &'static str) {
        self.referrers_copied(job, source, target, 1);
    }

    /// `n` referrers were copied from `source` to `target` representation
    /// (the engine's labels: `api`, `fallback_tag`, `cosign_tag`, `layout`).
    pub fn referrers_copied(&self, job: &str, source: &'static str, target: &'static str, n: u64) {
        let (s, t) = (source, target);
        self.referrers
            .with_label_values(&[job, "copied", s, t])
            .inc_by(n);
        if source != target {
            self.referrer_conversions
                .with_label_values(&[job, s, t])
                .inc_by(n);
        }
    }

    /// `n` cosign attachments were converted in `direction` (`to_referrers`,
    /// `to_tags`).
    pub fn cosign_converted(&self, job: &str, direction: &'static str, n: u64) {
        if n > 0 {
            self.cosign_conversions
                .with_label_values(&[job, direction])
                .inc_by(n);
        }
    }

    /// `n` referrers were already on the target.
    pub fn referrers_skipped(&self, job: &str, source: &'static str, target: &'static str, n: u64) {
        self.referrers
            .with_label_values(&[job, "skipped", source, target])
            .inc_by(n);
    }

    /// An item of `job` failed; `registry` is the host involved (empty when
    /// none) and `kind` a short stable error kind such as `"transport"`.
    pub fn error(&self, job: &str, registry: &str, kind: &'static str) {
        self.errors.with_label_values(&[job, registry, kind]).inc();
    }

    /// One HTTP request to `registry` ended after `seconds`, with the
    /// response `status` (`None`: no response arrived). Also counts a 429.
    pub fn request_finished(
        &self,
        registry: &str,
        operation: &'static str,
        status: Option<u16>,
        seconds: f64,
    ) {
        self.request_duration
            .with_label_values(&[registry, operation, status_class(status)])
            .observe(seconds);
        if status == Some(429) {
            self.rate_limited
                .with_label_values(&[registry, operation])
                .inc();
        }
    }

    /// A request is about to be retried.
    pub fn retry(&self, registry: &str, operation: &'static str) {
        self.retries.with_label_values(&[registry, operation]).inc();
    }

    /// A request waited `seconds` for the local rate limiter (record zero
    /// waits too, so the count is the number of requests).
    pub fn rate_limiter_waited(&self, registry: &str, seconds: f64) {
        self.limiter_wait
            .with_label_values(&[registry])
            .observe(seconds);
    }

    /// Docker Hub reported `n` pulls left in its window.
    pub fn docker_hub_remaining(&self, registry: &str, n: u64) {
        self.docker_hub_remaining
            .with_label_values(&[registry])
            .set(saturating_i64(n));
    }

    /// Docker Hub reported a limit of `n` pulls per window.
    pub fn docker_hub_limit(&self, registry: &str, n: u64) {
        self.docker_hub_limit
            .with_label_values(&[registry])
            .set(saturating_i64(n));
    }

    /// A run of `job` started.
    pub fn run_started(&self, job: &str) {
        self.running.with_label_values(&[job]).set(1);
    }

    /// A run of `job` ended now with `result` after `seconds`.
    pub fn run_finished(&self, job: &str, result: RunResult, seconds: f64) {
        self.run_finished_at(job, result, seconds, SystemTime::now());
    }

    /// A run of `job` ended at `at` with `result` after `seconds`.
    pub fn run_finished_at(&self, job: &str, result: RunResult, seconds: f64, at: SystemTime) {
        self.run_duration
            .with_label_values(&[job, result.as_str()])
            .observe(seconds);
        self.running.with_label_values(&[job]).set(0);
        let ts = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let gauge = match result {
            RunResult::Success => &self.last_success,
            RunResult::Failure => &self.last_failure,
        };
        gauge.with_label_values(&[job]).set(ts);
    }

    /// The deletion sync metrics.
    pub fn deletions(&self) -> &DeletionMetrics {
        &self.deletions
    }

    /// The replica metrics (shared runs on PostgreSQL).
    pub fn replicas(&self) -> &ReplicaMetrics {
        &self.replicas
    }

    /// `n` images of `job` are waiting to be copied.
    pub fn items_pending(&self, job: &str, n: u64) {
        self.items_pending
            .with_label_values(&[job])
            .set(saturating_i64(n));
    }

    /// `n` images of `job` failed their last attempt.
    pub fn items_failing(&self, job: &str, n: u64) {
        self.items_failing
            .with_label_values(&[job])
            .set(saturating_i64(n));
    }

    /// The oldest source change of `job` not yet on the target is `seconds`
    /// old (0 when up to date).
    pub fn mirror_lag(&self, job: &str, seconds: f64) {
        self.mirror_lag.with_label_values(&[job]).set(seconds);
    }
}

#[cfg(test)]
mod tests;
