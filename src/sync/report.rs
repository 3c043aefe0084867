//! What a run reports: per job, per item, and why a run could not start.

use chrono::{DateTime, Utc};

use crate::copy::{CopyReport, PlanItem};
use crate::registry::RegistryError;
use crate::store::{RunCounts, RunResult, StoreError};

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

impl SyncError {
    /// The registry involved (its name), when there is one.
    pub fn registry(&self) -> Option<&str> {
        match self {
            SyncError::Registry { source, .. } => Some(&source.registry),
            SyncError::Reference { .. } | SyncError::Store { .. } => None,
        }
    }

    /// The error kind, as a bounded metric label.
    pub fn kind_label(&self) -> &'static str {
        match self {
            SyncError::Registry { source, .. } => source.kind.label(),
            SyncError::Reference { .. } => "invalid_reference",
            SyncError::Store { .. } => "store",
        }
    }
}

/// One item of a job that failed.
#[derive(Clone, Debug)]
pub struct ItemFailure {
    /// `repo:tag` or `repo@digest`.
    pub item: String,
    /// The tag or digest of the item.
    pub reference: String,
    /// What failed, as a bounded label (`not_found`, `timeout`,
    /// `referrers_unpublished`, a registry error kind, ...): the same value
    /// `ocimirror_errors_total` counts under `kind`.
    pub kind: &'static str,
    /// Why, naming registry, repository and digest.
    pub error: String,
}

/// An item not tried because its failure backoff has not passed.
#[derive(Clone, Debug)]
pub struct DeferredItem {
    /// `repo:tag` or `repo@digest`.
    pub item: String,
    /// When it is tried again (unknown when the database could not say).
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// Dry run: one item, where it would go, why, and the steps.
#[derive(Clone, Debug)]
pub struct PlannedItem {
    /// `repo:tag` or `repo@digest` on the source.
    pub item: String,
    /// The target repository with the tag (or digest) it would get.
    pub target: String,
    /// Why it would be copied, verified or left alone (checkpoint,
    /// backoff, `--full`).
    pub reason: String,
    /// False when a run would not touch it (unchanged, or backing off).
    pub would_run: bool,
    /// What would happen to each node (empty when `would_run` is false).
    pub steps: Vec<PlanItem>,
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
    pub deferred: Vec<DeferredItem>,
    /// Listed tags the job's tag rules left out (`repo:tag`).
    pub filtered: Vec<String>,
    /// Dry run: per item, what would happen and why.
    pub plan: Vec<PlannedItem>,
    /// The job could not start (source unreachable, bad reference).
    pub fatal: Option<String>,
    /// Deletion sync: pending, deleted and kept tags, the guard.
    pub deletions: super::DeletionReport,
}

impl JobReport {
    /// The run's result.
    pub fn result(&self) -> RunResult {
        // An item still backing off is not on the target: the run is not a
        // success, or `once` would exit 0 and the failing alert would clear
        // while something the job selects is missing.
        let not_done = (self.failures.len() + self.deferred.len()) as u64;
        if self.fatal.is_some()
            || (not_done > 0 && self.counts.images_copied == 0 && self.counts.images_skipped == 0)
        {
            RunResult::Failed
        } else if not_done > 0 {
            RunResult::Partial
        } else {
            RunResult::Success
        }
    }

    /// True when everything the run selected is on the target.
    pub fn is_success(&self) -> bool {
        self.result() == RunResult::Success
    }
}

pub(super) enum ItemResult {
    Copied(CopyReport),
    Unchanged,
    Planned {
        reason: String,
        would_run: bool,
        steps: Vec<PlanItem>,
    },
    /// Backing off until then (when known).
    Deferred(Option<DateTime<Utc>>),
    Cancelled,
    Failed {
        error: String,
        kind: &'static str,
        /// The registry involved, when it is not the job's target.
        registry: Option<String>,
        report: Option<CopyReport>,
    },
}

pub(super) fn failed(
    error: impl ToString,
    kind: &'static str,
    registry: Option<&str>,
) -> ItemResult {
    ItemResult::Failed {
        error: error.to_string(),
        kind,
        registry: registry.map(str::to_string),
        report: None,
    }
}

pub(super) fn add_counts(c: &mut RunCounts, r: &CopyReport) {
    c.manifests_copied += r.manifests_copied;
    c.blobs_copied += r.blobs_copied;
    c.blobs_mounted += r.blobs_mounted;
    c.bytes_copied += r.bytes;
    c.referrers_copied += r.referrers.values().sum::<u64>();
}
