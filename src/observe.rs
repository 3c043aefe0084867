//! Wires the metrics to the engine: the HTTP adapter's request observer,
//! and the copy engine's events, each turned into one metric update per
//! item (never per chunk). Imports `metrics`, `copy`, `config` and
//! `registry`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{Config, Job, Target};
use crate::copy::{Action, CopyEvent, CopyReport, NodeKind};
use crate::metrics::Metrics;
use crate::oci::Location;
use crate::registry::Operation;
use crate::registry::http::{RateLimitStatus, RequestObserver};

impl RequestObserver for Metrics {
    fn request(
        &self,
        registry: &str,
        op: Operation,
        status: Option<u16>,
        elapsed: Duration,
        waited: Duration,
    ) {
        self.request_finished(registry, op.as_str(), status, elapsed.as_secs_f64());
        self.rate_limiter_waited(registry, waited.as_secs_f64());
    }

    fn retry(&self, registry: &str, op: Operation) {
        Metrics::retry(self, registry, op.as_str());
    }

    fn docker_hub(&self, registry: &str, status: &RateLimitStatus) {
        self.docker_hub_remaining(registry, status.remaining);
        self.docker_hub_limit(registry, status.limit);
    }
}

/// The `registry` label of a job's target: its host, or `oci-layout`.
pub fn target_label(job: &Job) -> String {
    match &job.target {
        Target::Repository(r) => match &r.location {
            Location::Registry(host) => host.clone(),
            Location::Layout(_) => "oci-layout".to_string(),
        },
        Target::Mapping(m) => m.registry.clone(),
    }
}

/// Counts the referrers of one copied image by representation, written
/// and already present.
pub fn record_referrers(metrics: &Metrics, job: &str, report: &CopyReport) {
    for ((source, target), n) in &report.referrers {
        metrics.referrers_copied(job, source.label(), target.label(), *n);
    }
    for ((source, target), n) in &report.referrers_skipped {
        metrics.referrers_skipped(job, source.label(), target.label(), *n);
    }
    metrics.cosign_converted(job, "to_referrers", report.cosign_to_referrers);
    metrics.cosign_converted(job, "to_tags", report.cosign_to_tags);
}

/// An error of `job` on `registry` (a name; `None` when no registry was
/// involved), counted in `ocimirror_errors_total` by its bounded `kind`.
/// Runs that cannot start count here too, so a job whose source is gone
/// shows on the error panels and not only in its failure timestamp.
pub fn record_error(metrics: &Metrics, job: &str, registry: Option<&str>, kind: &'static str) {
    metrics.error(job, registry.map_or("", registry_label), kind);
}

/// The `registry` label of a registry name: the host, or `oci-layout` for
/// any layout directory (a path must never become a label value).
pub fn registry_label(name: &str) -> &str {
    if crate::oci::is_layout_name(name) {
        "oci-layout"
    } else {
        name
    }
}

/// Turns copy events into per-item counter updates until the senders close.
pub async fn feed_events(
    metrics: Arc<Metrics>,
    config: &Config,
    mut rx: mpsc::UnboundedReceiver<(String, CopyEvent)>,
) {
    let registries: HashMap<String, String> = config
        .jobs
        .iter()
        .map(|j| (j.name.clone(), target_label(j)))
        .collect();
    while let Some((job, e)) = rx.recv().await {
        let registry = registries.get(&job).map_or("unknown", String::as_str);
        record_event(&metrics, &job, registry, &e);
    }
}

/// One event, one update.
pub fn record_event(metrics: &Metrics, job: &str, registry: &str, e: &CopyEvent) {
    match (e.kind, e.action) {
        // An image's end is counted by the sync itself (images_*, errors).
        (NodeKind::Image, _) => {}
        (NodeKind::Blob, Action::Copy) => metrics.blob_copied(job, registry, e.size),
        (NodeKind::Blob, Action::Mount) => metrics.blob_mounted(job, registry, e.size),
        (NodeKind::Blob, Action::Exists) => metrics.blob_skipped(job, registry, e.size),
        (NodeKind::Tag, Action::Write) => metrics.tag_copied(job, registry),
        (NodeKind::Tag, Action::Exists) => metrics.tag_skipped(job, registry),
        (
            NodeKind::Index | NodeKind::Manifest | NodeKind::Referrer | NodeKind::Cosign,
            Action::Copy,
        ) => metrics.manifest_copied(job, registry),
        (
            NodeKind::Index | NodeKind::Manifest | NodeKind::Referrer | NodeKind::Cosign,
            Action::Exists,
        ) => metrics.manifest_skipped(job, registry),
        (_, Action::Fail) => metrics.error(
            job,
            registry,
            e.failure.as_ref().map_or("copy_step", |f| f.kind()),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_labelled_by_registry_and_kind() {
        let m = Metrics::new().unwrap();
        record_error(&m, "j", Some("reg.example"), "not_found");
        // A layout path is not a bounded label value: it becomes `oci-layout`.
        record_error(&m, "j", Some("oci:/srv/mirror"), "not_found");
        record_error(&m, "j", None, "invalid_reference");
        let text = m.render();
        for series in [
            r#"ocimirror_errors_total{kind="not_found",mirror_job="j",registry="reg.example"} 1"#,
            r#"ocimirror_errors_total{kind="not_found",mirror_job="j",registry="oci-layout"} 1"#,
            r#"ocimirror_errors_total{kind="invalid_reference",mirror_job="j",registry=""} 1"#,
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
        assert!(!text.contains("/srv/mirror"));
    }
}
