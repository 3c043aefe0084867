//! `ocimirror status [JOB…]`: per job, the last run, its counts, the
//! failing items by name and when `serve` runs it next, read from the state
//! database (never created by this command).

use chrono::{DateTime, Utc};

use crate::app::{self, AppError};
use crate::config::{Job, Timing};
use crate::scheduler::JobTimer;
use crate::store::{JobStatus, ReplicaStatus, RunRecord};

/// How far back `status` lists replicas (a replica gone longer is forgotten).
const REPLICAS_SHOWN_FOR: chrono::Duration = chrono::Duration::days(1);

use super::deletions;
use super::jobs::{ConfigArg, plural};
use super::output::{
    FailingItemDoc, JobStatusDoc, ReplicaDoc, RunDocStatus, StatusDoc, counts, timestamp,
};
use super::progress::human_bytes;

/// Arguments of `ocimirror status`.
#[derive(Clone, Debug, clap::Args)]
pub struct StatusArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Jobs to show (default: all); an unknown name is an error.
    pub jobs: Vec<String>,
}

/// The status of the jobs asked for, read from the database.
pub async fn status(args: &StatusArgs) -> Result<StatusDoc, AppError> {
    let (config, jobs) = app::load_jobs(&args.config.config, &args.jobs)?;
    let now = Utc::now();
    let database = app::database_name(&config);
    // `status` only reads: it never creates the database.
    if config.state.postgres.is_none() && !config.state.database.exists() {
        return Ok(StatusDoc {
            database,
            database_exists: false,
            jobs: jobs
                .iter()
                .map(|job| JobStatusDoc {
                    name: job.name.clone(),
                    last_run: None,
                    last_success: None,
                    tags_synced: 0,
                    failing: Vec::new(),
                    pending_deletions: Vec::new(),
                    next_run: next_run(job, None, now),
                })
                .collect(),
            replicas: None,
        });
    }
    let store = app::open_store(&config).await?;
    let failed = |source| AppError::Store {
        path: database.clone(),
        source,
    };
    let mut docs = Vec::new();
    for job in &jobs {
        let s = store.job_status(&job.name).await.map_err(failed)?;
        let failing = store.failures_for_job(&job.name).await.map_err(failed)?;
        let mut doc = job_doc(job, &s, failing, now);
        let owned = if job.delete.enabled {
            store.owned_tags(&job.name).await.map_err(failed)?
        } else {
            Vec::new()
        };
        // Withdrawn referrers leave fallback indexes even where the job does
        // not delete (see sync/withdrawn.rs).
        let referrers = store.owned_referrers(&job.name).await.map_err(failed)?;
        doc.pending_deletions =
            deletions::pending_from_store(&owned, &referrers, job.delete.grace, now);
        docs.push(doc);
    }
    let replicas = if config.state.postgres.is_some() {
        let since = now.checked_sub_signed(REPLICAS_SHOWN_FOR).unwrap_or(now);
        let seen = store.replicas(since, now).await.map_err(failed)?;
        let ttl = chrono::Duration::from_std(config.state.lease_ttl).unwrap_or(REPLICAS_SHOWN_FOR);
        Some(seen.iter().map(|r| replica_doc(r, ttl, now)).collect())
    } else {
        None
    };
    store.close().await;
    Ok(StatusDoc {
        database,
        database_exists: true,
        jobs: docs,
        replicas,
    })
}

/// A replica as `status` shows it: live while its heartbeat is younger
/// than the lease TTL (after that the others take its work over).
fn replica_doc(r: &ReplicaStatus, ttl: chrono::Duration, now: DateTime<Utc>) -> ReplicaDoc {
    ReplicaDoc {
        id: r.id.clone(),
        last_seen: timestamp(r.seen_at),
        live: now.signed_duration_since(r.seen_at) <= ttl,
        leading: r.leading.clone(),
        items_held: r.items_held,
        items_done: r.items_done,
    }
}

/// The `status` of one job from its database rows (also the HTTP API's
/// and the status page's view of it).
pub fn job_doc(
    job: &Job,
    s: &JobStatus,
    failing: Vec<crate::store::FailureRecord>,
    now: DateTime<Utc>,
) -> JobStatusDoc {
    JobStatusDoc {
        name: job.name.clone(),
        last_run: s.last_run.as_ref().map(run_doc),
        last_success: s.last_success.as_ref().map(|r| timestamp(r.started_at)),
        tags_synced: s.tags_synced,
        failing: failing
            .into_iter()
            .map(|f| FailingItemDoc {
                item: f.item,
                attempts: f.attempts,
                error: f.last_error,
                first_failed_at: timestamp(f.first_failed_at),
                next_retry: timestamp(f.next_retry_at),
            })
            .collect(),
        pending_deletions: Vec::new(),
        next_run: next_run(job, s.last_run.as_ref().map(|r| r.started_at), now),
    }
}

/// One recorded run as `status` shows it.
pub fn run_doc(run: &RunRecord) -> RunDocStatus {
    let (result, process) = match (run.result, &run.owner) {
        (Some(r), _) => (r.to_string(), None),
        (None, Some(o)) if run.is_interrupted() => ("interrupted".to_string(), Some(o.pid)),
        (None, _) => ("running".to_string(), None),
    };
    RunDocStatus {
        id: run.id.0,
        started_at: timestamp(run.started_at),
        finished_at: run.finished_at.map(timestamp),
        result,
        process,
        counts: counts(&run.counts),
        error: run.error.clone(),
    }
}

/// `status` for people.
pub fn status_text(doc: &StatusDoc) -> String {
    let mut out = String::new();
    for job in &doc.jobs {
        out.push_str(&format!("job {}\n", job.name));
        match &job.last_run {
            None if !doc.database_exists => out.push_str(&format!(
                "  last run:     never (no state database at {} yet)\n",
                doc.database
            )),
            None => out.push_str("  last run:     never\n"),
            Some(run) => {
                let result = match run.process {
                    Some(pid) => format!("interrupted (process {pid} is gone)"),
                    None => run.result.clone(),
                };
                out.push_str(&format!(
                    "  last run:     #{} started {} — {result}\n",
                    run.id,
                    human_time(&run.started_at)
                ));
                let c = &run.counts;
                out.push_str(&format!(
                    "  counts:       {} copied, {} unchanged, {} failed; {}, {} ({} mounted), {}, {}\n",
                    plural(c.images_copied, "image", "images"),
                    c.images_unchanged,
                    c.images_failed,
                    plural(c.manifests, "manifest", "manifests"),
                    plural(c.blobs, "blob", "blobs"),
                    c.blobs_mounted,
                    human_bytes(c.bytes),
                    plural(c.referrers, "referrer", "referrers"),
                ));
                if let Some(e) = &run.error {
                    out.push_str(&format!("  last error:   {e}\n"));
                }
            }
        }
        if let Some(ok) = &job.last_success {
            out.push_str(&format!("  last success: {}\n", human_time(ok)));
        }
        if doc.database_exists {
            out.push_str(&format!("  tags synced:  {}\n", job.tags_synced));
            out.push_str(&format!("  failing:      {}", job.failing.len()));
            if let Some(first) = job.failing.first() {
                out.push_str(&format!(" (next retry {})", human_time(&first.next_retry)));
            }
            out.push('\n');
            for f in &job.failing {
                out.push_str(&format!(
                    "    FAILING {}: {} ({}, next retry {})\n",
                    f.item,
                    f.error,
                    plural(u64::from(f.attempts), "attempt", "attempts"),
                    human_time(&f.next_retry)
                ));
            }
            if !job.pending_deletions.is_empty() {
                out.push_str(&format!(
                    "  pending deletions: {}\n",
                    job.pending_deletions.len()
                ));
                out.push_str(&deletions::pending_lines(&job.pending_deletions));
            }
        }
        out.push_str(&format!("  next run:     {}\n", job.next_run));
    }
    if let Some(replicas) = &doc.replicas {
        out.push_str(&replicas_text(replicas));
    }
    out
}

/// The replicas part of `status` for people.
fn replicas_text(replicas: &[ReplicaDoc]) -> String {
    let mut out = format!("replicas (seen in the last day): {}\n", replicas.len());
    for r in replicas {
        let state = if r.live { "live" } else { "gone" };
        let leads = if r.leading.is_empty() {
            "leads no run".to_string()
        } else {
            format!("leads {}", r.leading.join(", "))
        };
        out.push_str(&format!(
            "  {}  {state}, last seen {}, {leads}, {} held, {} done\n",
            r.id,
            human_time(&r.last_seen),
            r.items_held,
            r.items_done
        ));
    }
    out
}

/// An RFC 3339 timestamp as `2026-11-30 05:00:00 UTC`.
pub(super) fn human_time(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339).map_or_else(
        |_| rfc3339.to_string(),
        |t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        },
    )
}

/// When `serve` runs `job` next, from its schedule and last run: interval
/// jobs one interval after the last start (at start-up when never run or
/// overdue), cron jobs at their next cron time.
fn next_run(job: &Job, last_started: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let at = |t: DateTime<Utc>| format!("{} (when serving)", t.format("%Y-%m-%d %H:%M:%S UTC"));
    match (&job.schedule.timing, last_started) {
        (Timing::Interval(every), Some(last)) => {
            match chrono::Duration::from_std(*every)
                .ok()
                .and_then(|d| last.checked_add_signed(d))
            {
                Some(next) if next > now => at(next),
                _ => "due now (at start-up of serve)".to_string(),
            }
        }
        (Timing::Interval(_), None) => "at start-up of serve".to_string(),
        (Timing::Cron(_), _) => JobTimer::new(&job.name, &job.schedule, now)
            .next_fire()
            .map_or_else(
                || "never (the cron expression has no further match)".into(),
                at,
            ),
    }
}
