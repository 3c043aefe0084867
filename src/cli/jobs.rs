//! `ocimirror once` and `ocimirror plan`: the jobs of a config file run
//! once (the migration mode) or planned, and their summaries for people.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppError, RunOnce, RunOutput};
use crate::copy::{Action, CopyEvent};
use crate::registry::http::RequestStats;
use crate::scheduler::SystemClock;
use crate::sync::{JobReport, SyncOptions};

use super::deletions;
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
            "job {}: {} — {}, {} selected: {} copied, {} unchanged, {} failed, {} deferred; \
{}, {} ({} mounted), {}, {}\n",
            r.job,
            r.result(),
            plural(c.repositories, "repository", "repositories"),
            plural(c.tags_selected, "image", "images"),
            c.images_copied,
            c.images_skipped,
            c.images_failed,
            r.deferred.len(),
            plural(c.manifests_copied, "manifest", "manifests"),
            plural(c.blobs_copied, "blob", "blobs"),
            c.blobs_mounted,
            human_bytes(c.bytes_copied),
            plural(c.referrers_copied, "referrer", "referrers"),
        ));
        if !r.copy.referrers.is_empty() {
            let by: Vec<String> = r
                .copy
                .referrers
                .iter()
                .map(|((s, t), n)| format!("{s} -> {t}: {n}"))
                .collect();
            out.push_str(&format!(
                "  referrers by representation: {}\n",
                by.join(", ")
            ));
        }
        if r.copy.cosign_to_referrers + r.copy.cosign_to_tags > 0 {
            out.push_str(&format!(
                "  cosign converted: {} to referrers, {} to tags\n",
                r.copy.cosign_to_referrers, r.copy.cosign_to_tags
            ));
        }
        if r.copy.filtered > 0 {
            // Left out on purpose: said, so nobody takes the run for a full copy.
            out.push_str(&format!(
                "  referrers filtered out: {} (by the job's referrer filters; not failures)\n",
                r.copy.filtered
            ));
        }
        out.push_str(&failures_text(r));
        out.push_str(&deletions::text(&deletions::doc(&r.deletions)));
        for d in &r.deferred {
            match d.next_retry_at {
                Some(t) => out.push_str(&format!(
                    "  DEFERRED {} (backing off after failures; next retry {})\n",
                    d.item,
                    t.format("%Y-%m-%d %H:%M:%S UTC")
                )),
                None => out.push_str(&format!(
                    "  DEFERRED {} (backing off after failures)\n",
                    d.item
                )),
            }
        }
    }
    for (host, stats) in &output.requests {
        // A registry the run never reached has nothing to say.
        if stats.total_requests() > 0 {
            out.push_str(&format!("requests: {}\n", request_line(host, stats)));
        }
    }
    out
}

/// The fatal error and the failed items of a job, one line each.
fn failures_text(r: &JobReport) -> String {
    let mut out = String::new();
    if let Some(f) = &r.fatal {
        out.push_str(&format!("  FAILED: {f}\n"));
    }
    for f in &r.failures {
        out.push_str(&format!("  FAILED {}: {}\n", f.item, f.error));
    }
    out
}

/// `1 image`, `2 images`.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
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

/// The plan printed by `plan`: per item where it goes and why, the steps
/// of the items a run would walk, and one summary line per job.
pub fn plan_text(reports: &[JobReport]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!("job {}\n", r.job));
        for p in &r.plan {
            out.push_str(&format!(
                "  {} -> {}\n    why: {}\n",
                p.item, p.target, p.reason
            ));
            for step in &p.steps {
                out.push_str(&format!("    {step}\n"));
            }
        }
        if !r.filtered.is_empty() {
            // Names help to spot a wrong rule; a long list helps nobody.
            const SHOWN: usize = 10;
            let mut names = r.filtered[..r.filtered.len().min(SHOWN)].join(", ");
            if r.filtered.len() > SHOWN {
                names.push_str(&format!(" (+{} more)", r.filtered.len() - SHOWN));
            }
            out.push_str(&format!("  not selected by the job's tag rules: {names}\n"));
        }
        out.push_str(&failures_text(r));
        out.push_str(&deletions::text(&deletions::doc(&r.deletions)));
        out.push_str(&plan_summary(r));
    }
    out
}

/// `job <name>: 3 images: 1 to copy, 2 unchanged, 0 backing off, 0 failed;
/// nodes: 4 copy, 2 convert, 9 exists`.
fn plan_summary(r: &JobReport) -> String {
    let walk = r.plan.iter().filter(|p| p.would_run).count() as u64;
    let backing_off = r
        .plan
        .iter()
        .filter(|p| !p.would_run && p.reason.starts_with("failing"))
        .count() as u64;
    let unchanged = r.plan.len() as u64 - walk - backing_off;
    let mut nodes: Vec<(Action, u64)> = Vec::new();
    for step in r.plan.iter().flat_map(|p| &p.steps) {
        match nodes.iter_mut().find(|(a, _)| *a == step.action) {
            Some((_, n)) => *n += 1,
            None => nodes.push((step.action, 1)),
        }
    }
    let nodes: Vec<String> = nodes.iter().map(|(a, n)| format!("{n} {a}")).collect();
    format!(
        "job {}: {}: {walk} to copy or verify, {unchanged} unchanged, {backing_off} backing off, {} failed; {} filtered out; nodes: {}\n",
        r.job,
        plural(r.counts.tags_selected, "image", "images"),
        r.failures.len(),
        plural(r.filtered.len() as u64, "tag", "tags"),
        if nodes.is_empty() {
            "none".to_string()
        } else {
            nodes.join(", ")
        }
    )
}

async fn show_progress(mut rx: mpsc::UnboundedReceiver<(String, CopyEvent)>, tty: bool) {
    let mut progress = Progress::new(tty);
    while let Some((job, e)) = rx.recv().await {
        progress.event(&job, &e);
    }
    progress.finish();
}
