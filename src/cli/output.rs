//! Machine-readable output (`--output json`): one JSON document on stdout
//! per command, built from the dedicated structs below rather than from
//! internal types, so the engine can change without breaking the format.
//! Field names are snake_case and documented in the README
//! ("Machine-readable output"); add fields, never rename them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::app::RunOutput;
use crate::copy::{CopyReport, PlanItem};
use crate::store::RunCounts;
use crate::sync::JobReport;

/// The format of a command's result on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document (stable field names).
    Json,
}

/// How a command prints its result.
#[derive(Clone, Copy, Debug, Default)]
pub struct Output {
    /// Text or JSON.
    pub format: OutputFormat,
    /// Print nothing when the command succeeded.
    pub quiet: bool,
}

impl Output {
    /// What to print on stdout: nothing when quiet and `ok`, else the
    /// document as JSON or the text (each built only when needed).
    pub fn render<T: Serialize>(
        &self,
        ok: bool,
        doc: impl FnOnce() -> T,
        text: impl FnOnce() -> String,
    ) -> String {
        if self.quiet && ok {
            return String::new();
        }
        match self.format {
            OutputFormat::Json => to_json(&doc()),
            OutputFormat::Text => text(),
        }
    }
}

fn to_json<T: Serialize>(doc: &T) -> String {
    // Plain structs of strings and numbers always serialise; should one
    // not, the consumer still gets JSON that says why.
    let text = serde_json::to_string_pretty(doc)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string());
    format!("{text}\n")
}

/// An RFC 3339 timestamp (`2026-11-30T05:00:00Z`).
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `once` and `plan`: every job run, and the requests sent.
#[derive(Debug, Serialize)]
pub struct RunDoc {
    /// `once` or `plan`.
    pub command: &'static str,
    /// True when every job succeeded (the exit status is 0).
    pub success: bool,
    /// One entry per job, in run order.
    pub jobs: Vec<JobDoc>,
    /// Per registry, the HTTP requests of the run.
    pub requests: Vec<RequestsDoc>,
}

/// One job of a run.
#[derive(Debug, Serialize)]
pub struct JobDoc {
    /// Job name.
    pub name: String,
    /// `success`, `partial` or `failed`.
    pub result: String,
    /// Why the job could not run at all (source unreachable, ...).
    pub error: Option<String>,
    /// What the run did.
    pub counts: JobCounts,
    /// Items that failed.
    pub failures: Vec<FailureDoc>,
    /// Items not tried: still backing off after failures.
    pub deferred: Vec<DeferredDoc>,
    /// Listed tags the job's tag rules left out (`registry/repo:tag`).
    pub filtered: Vec<String>,
    /// `plan` only: per item, what would happen and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<PlannedItemDoc>>,
    /// Deletion sync: pending, deleted and kept tags, the guard.
    #[serde(skip_serializing_if = "super::deletions::DeletionsDoc::is_empty")]
    pub deletions: super::deletions::DeletionsDoc,
}

/// The counts of a job run.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    /// Source repositories visited.
    pub repositories: u64,
    /// Images (tags and digests) the job selected.
    pub images_selected: u64,
    /// Images something was written for.
    pub images_copied: u64,
    /// Images found complete on the target (checkpoint or verified walk).
    pub images_unchanged: u64,
    /// Images that failed.
    pub images_failed: u64,
    /// Images not tried (backing off).
    pub images_deferred: u64,
    /// Manifests written (referrers included).
    pub manifests: u64,
    /// Blobs uploaded.
    pub blobs: u64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Referrer manifests written.
    pub referrers: u64,
    /// Referrers of an index replaced by `platform_mode = "filter"`.
    pub referrers_dropped: u64,
    /// Referrers left out by a filter or the depth limit.
    pub referrers_filtered: u64,
}

/// One failed item (a job's image, or an image or node of `copy`).
#[derive(Debug, Serialize)]
pub struct FailureDoc {
    /// The item: `registry/repo:tag` or `registry/repo@digest`.
    pub item: String,
    /// Its tag or digest (for `copy`, the failed node's digest when known).
    pub reference: String,
    /// Stable label of what failed (`not_found`, `timeout`, ...).
    pub kind: String,
    /// The error, naming registry, repository and digest.
    pub message: String,
}

/// One item still backing off.
#[derive(Debug, Serialize)]
pub struct DeferredDoc {
    /// The item.
    pub item: String,
    /// When it is tried again (RFC 3339), if known.
    pub next_retry: Option<String>,
}

/// `plan`: one item.
#[derive(Debug, Serialize)]
pub struct PlannedItemDoc {
    /// The source item.
    pub item: String,
    /// Where it goes (`registry/repo:tag`).
    pub target: String,
    /// `copy` (the engine would walk it) or `skip` (unchanged, or backing off).
    pub action: &'static str,
    /// Why.
    pub reason: String,
    /// What would happen to each node.
    pub steps: Vec<StepDoc>,
}

/// One node of a plan.
#[derive(Debug, Serialize)]
pub struct StepDoc {
    /// `copy`, `mount`, `exists`, `skip`, `convert`, `write` or `fail`.
    pub action: String,
    /// `index`, `manifest`, `blob`, `referrer`, `cosign`, `fallback-index`, `tag`.
    pub node: String,
    /// The node's digest, when it has one.
    pub digest: Option<String>,
    /// Size in bytes, where known.
    pub size: u64,
    /// Why.
    pub reason: String,
}

/// The requests sent to one registry.
#[derive(Debug, Serialize)]
pub struct RequestsDoc {
    /// Registry host.
    pub registry: String,
    /// HTTP requests sent.
    pub requests: u64,
    /// Retries among them.
    pub retries: u64,
    /// Requests per operation (`manifest_head`, `blob_put`, ...).
    pub by_operation: BTreeMap<String, u64>,
}

impl RunDoc {
    /// The document of a `once` (or, with `plan`, a `plan`) run.
    pub fn new(output: &RunOutput, plan: bool) -> Self {
        RunDoc {
            command: if plan { "plan" } else { "once" },
            success: output.reports.iter().all(JobReport::is_success),
            jobs: output.reports.iter().map(|r| job_doc(r, plan)).collect(),
            requests: output
                .requests
                .iter()
                .map(|(host, stats)| RequestsDoc {
                    registry: host.clone(),
                    requests: stats.total_requests(),
                    retries: stats.retries,
                    by_operation: stats
                        .operations
                        .iter()
                        .filter(|(_, s)| s.requests > 0)
                        .map(|(op, s)| (op.as_str().to_string(), s.requests))
                        .collect(),
                })
                .collect(),
        }
    }
}

fn job_doc(r: &JobReport, plan: bool) -> JobDoc {
    JobDoc {
        name: r.job.clone(),
        result: r.result().to_string(),
        error: r.fatal.clone(),
        counts: JobCounts {
            images_deferred: r.deferred.len() as u64,
            referrers_dropped: r.copy.dropped,
            referrers_filtered: r.copy.filtered,
            ..counts(&r.counts)
        },
        failures: r
            .failures
            .iter()
            .map(|f| FailureDoc {
                item: f.item.clone(),
                reference: f.reference.clone(),
                kind: f.kind.to_string(),
                message: f.error.clone(),
            })
            .collect(),
        deferred: r
            .deferred
            .iter()
            .map(|d| DeferredDoc {
                item: d.item.clone(),
                next_retry: d.next_retry_at.map(timestamp),
            })
            .collect(),
        filtered: r.filtered.clone(),
        deletions: super::deletions::doc(&r.deletions),
        items: plan.then(|| {
            r.plan
                .iter()
                .map(|p| PlannedItemDoc {
                    item: p.item.clone(),
                    target: p.target.clone(),
                    action: if p.would_run { "copy" } else { "skip" },
                    reason: p.reason.clone(),
                    steps: steps(&p.steps),
                })
                .collect()
        }),
    }
}

/// The recorded counts of a run (`once`, and `status` from the database).
pub(crate) fn counts(c: &RunCounts) -> JobCounts {
    JobCounts {
        repositories: c.repositories,
        images_selected: c.tags_selected,
        images_copied: c.images_copied,
        images_unchanged: c.images_skipped,
        images_failed: c.images_failed,
        manifests: c.manifests_copied,
        blobs: c.blobs_copied,
        blobs_mounted: c.blobs_mounted,
        bytes: c.bytes_copied,
        referrers: c.referrers_copied,
        ..JobCounts::default()
    }
}

/// The steps of a plan.
pub(crate) fn steps(items: &[PlanItem]) -> Vec<StepDoc> {
    items
        .iter()
        .map(|s| StepDoc {
            action: s.action.to_string(),
            node: s.kind.to_string(),
            digest: s.digest.as_ref().map(ToString::to_string),
            size: s.size,
            reason: s.reason.clone(),
        })
        .collect()
}

/// `copy`: what was copied (or, with `--plan`, would be).
#[derive(Debug, Serialize)]
pub struct CopyDoc {
    /// True when every image and node succeeded (the exit status is 0).
    pub success: bool,
    /// Images copied or planned.
    pub images: usize,
    /// Manifests written (referrers included).
    pub manifests: u64,
    /// Manifests already on the target.
    pub manifests_present: u64,
    /// Blobs uploaded.
    pub blobs: u64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: u64,
    /// Blobs already on the target.
    pub blobs_present: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Tags written (image and cosign tags).
    pub tags: u64,
    /// Fallback indexes written.
    pub fallback_indexes: u64,
    /// Referrer manifests written.
    pub referrers: u64,
    /// Referrers already on the target.
    pub referrers_present: u64,
    /// Referrers of an index replaced by `--platform-mode filter`.
    pub referrers_dropped: u64,
    /// Referrers left out by a filter or the depth limit.
    pub referrers_filtered: u64,
    /// Referrers written, by source and target representation.
    pub referrers_by_representation: Vec<RepresentationCount>,
    /// cosign legacy tag manifests written as OCI 1.1 referrers (`--cosign`).
    pub cosign_to_referrers: u64,
    /// cosign referrer groups written as legacy tag manifests (`--cosign`).
    pub cosign_to_tags: u64,
    /// What failed.
    pub failures: Vec<FailureDoc>,
    /// `--plan` only: per image, the steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<PlannedItemDoc>>,
}

/// Referrers written in one (source, target) representation pair.
#[derive(Debug, Serialize)]
pub struct RepresentationCount {
    /// `api`, `fallback_tag`, `cosign_tag` or `layout`.
    pub source: &'static str,
    /// As `source`.
    pub target: &'static str,
    /// Referrers.
    pub count: u64,
}

impl CopyDoc {
    /// The counts of `report`; failures and plan are filled by the caller.
    pub fn new(report: &CopyReport, images: usize, success: bool) -> Self {
        CopyDoc {
            success,
            images,
            manifests: report.manifests_copied,
            manifests_present: report.manifests_skipped,
            blobs: report.blobs_copied,
            blobs_mounted: report.blobs_mounted,
            blobs_present: report.blobs_skipped,
            bytes: report.bytes,
            tags: report.tags,
            fallback_indexes: report.fallback_indexes_written,
            referrers: report.referrers.values().sum(),
            referrers_present: report.referrers_skipped.values().sum(),
            referrers_dropped: report.dropped,
            referrers_filtered: report.filtered,
            referrers_by_representation: report
                .referrers
                .iter()
                .map(|((s, t), n)| RepresentationCount {
                    source: s.label(),
                    target: t.label(),
                    count: *n,
                })
                .collect(),
            cosign_to_referrers: report.cosign_to_referrers,
            cosign_to_tags: report.cosign_to_tags,
            failures: Vec::new(),
            plan: None,
        }
    }
}

/// `status`: per job, from the state database.
#[derive(Debug, Serialize)]
pub struct StatusDoc {
    /// The state database.
    pub database: String,
    /// False when the database does not exist yet (nothing ran).
    pub database_exists: bool,
    /// One entry per job asked for.
    pub jobs: Vec<JobStatusDoc>,
    /// On PostgreSQL: the replicas seen in the last day, by id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<ReplicaDoc>>,
}

/// A replica in `status` (PostgreSQL only).
#[derive(Debug, Serialize)]
pub struct ReplicaDoc {
    /// `<host>:<pid>`.
    pub id: String,
    /// Its last heartbeat (RFC 3339).
    pub last_seen: String,
    /// True when the last heartbeat is younger than `state.lease_ttl`.
    pub live: bool,
    /// Jobs whose open shared run it leads.
    pub leading: Vec<String>,
    /// Items of open shared runs it holds now.
    pub items_held: u64,
    /// Items of open shared runs it has finished.
    pub items_done: u64,
}

/// One job in `status`.
#[derive(Debug, Serialize)]
pub struct JobStatusDoc {
    /// Job name.
    pub name: String,
    /// The latest run, if any.
    pub last_run: Option<RunDocStatus>,
    /// Start of the latest successful run (RFC 3339).
    pub last_success: Option<String>,
    /// Items with a verified checkpoint.
    pub tags_synced: u64,
    /// Items currently failing, earliest retry first.
    pub failing: Vec<FailingItemDoc>,
    /// Tags deletion sync will delete, oldest absence first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_deletions: Vec<super::deletions::PendingDeletionDoc>,
    /// When `serve` runs the job next, in words.
    pub next_run: String,
}

/// A recorded run in `status`.
#[derive(Debug, Serialize)]
pub struct RunDocStatus {
    /// Run id.
    pub id: i64,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339), when finished.
    pub finished_at: Option<String>,
    /// `success`, `partial`, `failed`, `running` or `interrupted`.
    pub result: String,
    /// For `interrupted`: the process that started it and is gone.
    pub process: Option<u32>,
    /// Counts recorded for the run.
    pub counts: JobCounts,
    /// Its first error.
    pub error: Option<String>,
}

/// A failing item in `status`.
#[derive(Debug, Serialize)]
pub struct FailingItemDoc {
    /// The item.
    pub item: String,
    /// Consecutive failures.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// First failure of this streak (RFC 3339).
    pub first_failed_at: String,
    /// Next retry (RFC 3339).
    pub next_retry: String,
}
