//! Deletion sync metrics (`ocimirror_deletion*`, `ocimirror_tag_backups*`):
//! tags deleted by kind, guard trips and the guard's current state (for
//! the alert), and backups of overwritten tags.

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use super::register::{counter, int_gauge};
use super::{LABEL_JOB, MetricsError, names};

/// The deletion sync metrics of one [`super::Metrics`] instance.
#[derive(Clone, Debug)]
pub struct DeletionMetrics {
    deleted: IntCounterVec,
    guard_trips: IntCounterVec,
    guard_tripped: IntGaugeVec,
    backups: IntCounterVec,
}

impl DeletionMetrics {
    pub(super) fn new(r: &Registry) -> Result<Self, MetricsError> {
        Ok(DeletionMetrics {
            deleted: counter(
                r,
                names::DELETIONS,
                "Target tags deleted by deletion sync. kind=tag: untagged; \
                 kind=digest: the manifest deleted by digest (nothing else needed it); \
                 kind=referrer: a referrer withdrawn at the source removed.",
                &[LABEL_JOB, "kind"],
            )?,
            guard_trips: counter(
                r,
                names::DELETION_GUARD_TRIPS,
                "Runs whose deletions the guard stopped (source selected nothing, \
                 or more due than delete.max_fraction).",
                &[LABEL_JOB],
            )?,
            guard_tripped: int_gauge(
                r,
                names::DELETION_GUARD_TRIPPED,
                "1 while the job's last run tripped the deletion guard, else 0.",
                &[LABEL_JOB],
            )?,
            backups: counter(
                r,
                names::TAG_BACKUPS,
                "Backup tags written before a tag the job wrote moved \
                 (overwrite.mode = backup).",
                &[LABEL_JOB],
            )?,
        })
    }

    /// `job` runs deletion sync: its counters show 0 from the first run,
    /// so `increase()` sees the first deletion.
    pub fn job_enabled(&self, job: &str) {
        for kind in ["tag", "digest", "referrer"] {
            self.deleted.with_label_values(&[job, kind]);
        }
        self.guard_trips.with_label_values(&[job]);
        self.backups.with_label_values(&[job]);
    }

    /// `job` deleted one tag, untagging (`tag`) or by digest (`digest`).
    pub fn deleted(&self, job: &str, kind: &'static str) {
        self.deleted.with_label_values(&[job, kind]).inc();
    }

    /// `job` kept a moved tag's old digest under a backup tag.
    pub fn backed_up(&self, job: &str) {
        self.backups.with_label_values(&[job]).inc();
    }

    /// `job`'s deletion pass ran; `tripped` when the guard stopped it.
    pub fn guard(&self, job: &str, tripped: bool) {
        if tripped {
            self.guard_trips.with_label_values(&[job]).inc();
        }
        self.guard_tripped
            .with_label_values(&[job])
            .set(i64::from(tripped));
    }
}
