//! `ocimirror once`, `ocimirror plan` and `ocimirror status`: the jobs of a
//! config file run once (the migration mode), planned, or reported from the
//! state database.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use chrono::{DateTime, Utc};

use crate::app::{self, AppError, RunOnce, RunOutput};
use crate::config::{Job, Timing};
use crate::copy::CopyEvent;
use crate::registry::http::RequestStats;
use crate::scheduler::{JobTimer, SystemClock};
use crate::sync::{JobReport, SyncOptions};

use super::progress::{Progress, human_bytes};

/// The config file option shared by the job commands.
#[derive(Clone, Debug, clap::Args)]
pub struct ConfigArg {
    /// Configuration file (TOML or YAML).
    #[arg(
        long,
        short,
        env = "OCIMIRROR_CONFIG",
        default_value = "ocimirror.toml"
    )]
    pub config: PathBuf,
}

/// Arguments of `ocimirror once` and `ocimirror plan`.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Jobs to run (default: all).
    pub jobs: Vec<String>,
    /// Ignore the checkpoint: verify every item against the target.
    #[arg(long)]
    pub full: bool,
    /// No progress display, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs the selected jobs once (`dry_run` plans instead), with a progress
/// display on a terminal and Ctrl-C finishing the images in flight.
pub async fn run(args: &RunArgs, dry_run: bool) -> Result<RunOutput, AppError> {
    let (config, jobs) = app::load_jobs(&args.config.config, &args.jobs)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let tty = std::io::stderr().is_terminal() && !args.no_progress && !dry_run;
    let progress = tokio::spawn(show_progress(rx, tty));
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("Interrupted: finishing the images in flight.");
            stop.cancel();
        }
    });
    let output = app::run_once(
        &config,
        RunOnce {
            jobs: &jobs,
            options: SyncOptions {
                full: args.full,
                dry_run,
                verify_after: config.state.verify_after,
            },
            events: Some(tx),
            cancel,
            clock: Arc::new(SystemClock),
        },
    )
    .await;
    signal.abort();
    let _ = progress.await;
    output
}

/// True when every job put everything it selected on the target (an item
/// in failure backoff was not copied: that is not a success).
pub fn all_succeeded(reports: &[JobReport]) -> bool {
    reports.iter().all(JobReport::is_success)
}

/// The summary printed by `once`: per job its result and counts, then per
/// registry the HTTP requests of the run, e.g.
/// `requests: 127.0.0.1:5000 14 (manifest_head 6, referrers 6, ping 1, tag_list 1)`.
pub fn summary(output: &RunOutput) -> String {
    let mut out = String::new();
    for r in &output.reports {
        let c = &r.counts;
        out.push_str(&format!(
            "job {}: {} — {} repositories, {} images selected: {} copied, {} unchanged, {} failed, {} deferred; \
{} manifests, {} blobs ({} mounted), {}, {} referrers\n",
            r.job,
            r.result(),
            c.repositories,
            c.tags_selected,
            c.images_copied,
            c.images_skipped,
            c.images_failed,
            r.deferred.len(),
            c.manifests_copied,
            c.blobs_copied,
            c.blobs_mounted,
            human_bytes(c.bytes_copied),
            c.referrers_copied,
        ));
        if !r.copy.referrers.is_empty() {
            let by: Vec<String> = r
                .copy
                .referrers
                .iter()
                .map(|((s, t), n)| format!("{s}->{t}: {n}"))
                .collect();
            out.push_str(&format!(
                "  referrers by representation: {}\n",
                by.join(", ")
            ));
        }
        if r.copy.filtered > 0 {
            // Left out on purpose: said, so nobody takes the run for a full copy.
            out.push_str(&format!(
                "  referrers filtered out: {} (by the job's referrer filters; not failures)\n",
                r.copy.filtered
            ));
        }
        if let Some(f) = &r.fatal {
            out.push_str(&format!("  FAILED: {f}\n"));
        }
        for f in &r.failures {
            out.push_str(&format!("  FAILED {}: {}\n", f.item, f.error));
        }
    }
    for (host, stats) in &output.requests {
        out.push_str(&format!("requests: {}\n", request_line(host, stats)));
    }
    out
}

/// `<host> <total> (<operation> <n>, ...)`, busiest operation first.
fn request_line(host: &str, stats: &RequestStats) -> String {
    let mut ops: Vec<(&str, u64)> = stats
        .operations
        .iter()
        .filter(|(_, s)| s.requests > 0)
        .map(|(op, s)| (op.as_str(), s.requests))
        .collect();
    ops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let by: Vec<String> = ops.iter().map(|(op, n)| format!("{op} {n}")).collect();
    let mut line = format!("{host} {} ({})", stats.total_requests(), by.join(", "));
    if stats.retries > 0 {
        line.push_str(&format!(", {} retries", stats.retries));
    }
    line
}

/// The plan printed by `plan`: every node, what would happen, and why.
pub fn plan_text(reports: &[JobReport]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!("job {}\n", r.job));
        for (item, plan) in &r.plan {
            out.push_str(&format!("  {item}\n"));
            for step in plan {
                out.push_str(&format!("    {step}\n"));
            }
        }
        if let Some(f) = &r.fatal {
            out.push_str(&format!("  FAILED: {f}\n"));
        }
        for f in &r.failures {
            out.push_str(&format!("  FAILED {}: {}\n", f.item, f.error));
        }
    }
    out
}

async fn show_progress(mut rx: mpsc::UnboundedReceiver<(String, CopyEvent)>, tty: bool) {
    let mut progress = Progress::new(tty);
    while let Some((job, e)) = rx.recv().await {
        progress.event(&job, &e);
    }
    progress.finish();
}

/// Arguments of `ocimirror status`.
#[derive(Clone, Debug, clap::Args)]
pub struct StatusArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
}

/// Per job: last run, its result and counts, failing items and next retry,
/// and when the schedule fires next — read from the database.
pub async fn status(args: &StatusArgs) -> Result<String, AppError> {
    let (config, jobs) = app::load_jobs(&args.config.config, &[])?;
    let now = chrono::Utc::now();
    let mut out = String::new();
    // `status` only reads: it never creates the database.
    if !config.state.database.exists() {
        for job in &jobs {
            out.push_str(&format!(
                "job {}
  last run:     never (no state database at {} yet)
  next run:     {}
",
                job.name,
                config.state.database.display(),
                next_run(job, None, now)
            ));
        }
        return Ok(out);
    }
    let store = app::open_store(&config).await?;
    for job in &jobs {
        let s = store
            .job_status(&job.name)
            .await
            .map_err(|source| AppError::Store {
                path: config.state.database.display().to_string(),
                source,
            })?;
        out.push_str(&format!("job {}\n", job.name));
        match &s.last_run {
            Some(run) => {
                let result = match (run.result, &run.owner) {
                    (Some(r), _) => r.to_string(),
                    (None, Some(o)) if run.is_interrupted() => {
                        format!("interrupted (process {} is gone)", o.pid)
                    }
                    (None, _) => "running".to_string(),
                };
                out.push_str(&format!(
                    "  last run:     #{} started {} — {}\n",
                    run.id,
                    run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    result
                ));
                let c = &run.counts;
                out.push_str(&format!(
                    "  counts:       {} images copied, {} unchanged, {} failed; {} manifests, {} blobs, {}, {} referrers\n",
                    c.images_copied,
                    c.images_skipped,
                    c.images_failed,
                    c.manifests_copied,
                    c.blobs_copied,
                    human_bytes(c.bytes_copied),
                    c.referrers_copied
                ));
                if let Some(e) = &run.error {
                    out.push_str(&format!("  last error:   {e}\n"));
                }
            }
            None => out.push_str("  last run:     never\n"),
        }
        if let Some(ok) = &s.last_success {
            out.push_str(&format!(
                "  last success: {}\n",
                ok.started_at.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        out.push_str(&format!("  tags synced:  {}\n", s.tags_synced));
        out.push_str(&format!("  failing:      {}", s.failing_items));
        if let Some(t) = s.next_retry_at {
            out.push_str(&format!(
                " (next retry {})",
                t.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        out.push('\n');
        let last_started = s.last_run.as_ref().map(|r| r.started_at);
        out.push_str(&format!(
            "  next run:     {}\n",
            next_run(job, last_started, now)
        ));
    }
    store.close().await;
    Ok(out)
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
