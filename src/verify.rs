//! `verify`: compares a target with its source, trusting neither the
//! checkpoint nor a manifest on the target to hold its blobs, and lists what
//! is missing or different.
//!
//! It is the copy engine's plan (a dry run that reads the target) with
//! [`CopyOptions::recheck_present`] on, run over the same items a job
//! selects (or the images `copy` would take): every step the plan would
//! take is a difference. Nothing is written to the target and no state
//! database is opened.
//!
//! Imports `app` (the job runs), `config`, `copy`, `oci`, `registry`,
//! `scheduler` (the clock) and `sync` (its options).

use std::fmt::Write as _;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::{self, AppError, RunOnce};
use crate::config::{Config, Job};
use crate::copy::{Action, Copier, CopyOptions, NodeKind, PlanItem};
use crate::oci::referrers::fallback_tag;
use crate::oci::{Reference, RepoName, Tag};
use crate::registry::Registry;
use crate::scheduler::SystemClock;
use crate::sync::SyncOptions;

/// One image compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemCheck {
    /// The source image (`repo:tag` or `repo@digest`).
    pub item: String,
    /// What the target lacks or has otherwise, one line each.
    pub differences: Vec<String>,
    /// Why the image could not be compared (source unreadable, ...).
    pub error: Option<String>,
}

impl ItemCheck {
    /// True when the target has everything of the image.
    pub fn is_complete(&self) -> bool {
        self.differences.is_empty() && self.error.is_none()
    }
}

/// The images of one job, or of one `verify SRC DST`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    /// `job <name>` or `<src> -> <dst>`.
    pub title: String,
    /// Per image, sorted by name.
    pub items: Vec<ItemCheck>,
    /// The images could not even be listed.
    pub fatal: Option<String>,
}

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// One section per job (or one for SRC DST).
    pub sections: Vec<Section>,
}

impl VerifyReport {
    /// True when the target has everything that was compared.
    pub fn is_complete(&self) -> bool {
        self.sections
            .iter()
            .all(|s| s.fatal.is_none() && s.items.iter().all(ItemCheck::is_complete))
    }

    /// The report as printed: per section each image and its differences,
    /// then one summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let (mut total, mut complete, mut differ, mut failed) = (0, 0, 0, 0);
        for s in &self.sections {
            let _ = writeln!(out, "{}", s.title);
            for i in &s.items {
                total += 1;
                if let Some(e) = &i.error {
                    failed += 1;
                    let _ = writeln!(out, "  {}: FAILED: {e}", i.item);
                } else if i.differences.is_empty() {
                    complete += 1;
                    let _ = writeln!(out, "  {}: complete", i.item);
                } else {
                    differ += 1;
                    let n = i.differences.len();
                    let _ = writeln!(out, "  {}: {n} {}", i.item, plural(n, "difference"));
                    for d in &i.differences {
                        let _ = writeln!(out, "    {d}");
                    }
                }
            }
            if let Some(f) = &s.fatal {
                let _ = writeln!(out, "  FAILED: {f}");
            }
        }
        let _ = writeln!(
            out,
            "verified {total} {}: {complete} complete, {differ} with differences, {failed} failed",
            plural(total, "image")
        );
        out
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// Compares the target of every item the `jobs` select (with each job's
/// target mapping, platform mode and referrer settings) with the source.
pub async fn verify_jobs(config: &Config, jobs: &[Job]) -> Result<VerifyReport, AppError> {
    let output = app::run_once(
        config,
        RunOnce {
            jobs,
            // A dry run opens no database; `full` trusts nothing on the target.
            options: SyncOptions {
                full: true,
                dry_run: true,
                verify_after: config.state.verify_after,
            },
            events: None,
            cancel: CancellationToken::new(),
            clock: Arc::new(SystemClock),
        },
    )
    .await?;
    let sections = output
        .reports
        .iter()
        .map(|r| {
            let planned = r.plan.iter().map(|p| ItemCheck {
                item: p.item.clone(),
                differences: differences(&p.steps),
                error: None,
            });
            let failed = r.failures.iter().map(|f| ItemCheck {
                item: f.item.clone(),
                differences: Vec::new(),
                error: Some(f.error.clone()),
            });
            let mut items: Vec<ItemCheck> = planned.chain(failed).collect();
            items.sort_by(|a, b| a.item.cmp(&b.item));
            Section {
                title: format!("job {}", r.job),
                items,
                fatal: r.fatal.clone(),
            }
        })
        .collect();
    Ok(VerifyReport { sections })
}

/// One image of `verify SRC DST`.
#[derive(Clone, Debug)]
pub struct ImagePair {
    /// Its name in the report.
    pub name: String,
    /// Source repository.
    pub src_repo: RepoName,
    /// Tag or digest on the source.
    pub reference: Reference,
    /// Target repository.
    pub dst_repo: RepoName,
    /// The tag that must point at it on the target.
    pub dst_tag: Option<Tag>,
}

/// Compares each of `images` on `target` with `source`, walking each
/// image's graph under `options` (its filters decide what belongs).
pub async fn verify_images(
    source: Arc<dyn Registry>,
    target: Arc<dyn Registry>,
    options: CopyOptions,
    title: String,
    images: &[ImagePair],
) -> Section {
    let options = CopyOptions {
        recheck_present: true,
        ..options
    };
    let copier = Copier::new(source, target, options);
    let mut items = Vec::new();
    for i in images {
        let planned = copier
            .plan_image(&i.src_repo, &i.reference, &i.dst_repo, i.dst_tag.as_ref())
            .await;
        items.push(match planned {
            Ok(plan) => ItemCheck {
                item: i.name.clone(),
                differences: differences(&plan),
                error: None,
            },
            Err(e) => ItemCheck {
                item: i.name.clone(),
                differences: Vec::new(),
                error: Some(e.to_string()),
            },
        });
    }
    Section {
        title,
        items,
        fatal: None,
    }
}

/// The plan's steps as differences: whatever the plan would copy or write
/// is not (or not so) on the target; what exists or is left out on purpose
/// (filters, depth, platforms) is not a difference.
pub fn differences(plan: &[PlanItem]) -> Vec<String> {
    plan.iter().filter_map(difference).collect()
}

fn difference(step: &PlanItem) -> Option<String> {
    let digest = step
        .digest
        .as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string);
    let line = match (step.kind, step.action) {
        // A conversion note comes with the referrer's own copy step.
        // A signature check is not a difference between target and source.
        (_, Action::Exists | Action::Skip | Action::Convert | Action::Verify) => return None,
        (_, Action::Fail) => format!("failed: {}", step.reason),
        (NodeKind::Blob, _) => format!("missing blob {digest} ({} bytes)", step.size),
        // The reason says what the tag points at on the target.
        (NodeKind::Tag, _) => format!("{}, source {digest}", step.reason),
        (NodeKind::FallbackIndex, _) => {
            let tag = step.digest.as_ref().map(fallback_tag).unwrap_or_default();
            format!("fallback tag {tag} does not list every referrer of {digest}")
        }
        (_, Action::Copy | Action::Mount | Action::Write) if step.reason.is_empty() => {
            format!("missing manifest {digest}")
        }
        (_, Action::Copy | Action::Mount | Action::Write) => {
            format!("missing manifest {digest} ({})", step.reason)
        }
    };
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::CopyEvent;
    use crate::oci::Digest;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn step(kind: NodeKind, action: Action, reason: &str) -> PlanItem {
        CopyEvent {
            digest: Some(digest('a')),
            kind,
            action,
            size: 7,
            reason: reason.into(),
            failure: None,
        }
    }

    #[test]
    fn only_what_the_plan_would_change_is_a_difference() {
        let a = digest('a');
        let plan = vec![
            step(NodeKind::Index, Action::Exists, ""),
            step(NodeKind::Referrer, Action::Skip, "artifactType excluded"),
            step(NodeKind::Referrer, Action::Convert, "api → fallback-tag"),
            step(NodeKind::Blob, Action::Copy, ""),
            step(NodeKind::Referrer, Action::Copy, "referrer of app@x"),
            step(NodeKind::Manifest, Action::Copy, ""),
            step(
                NodeKind::Tag,
                Action::Write,
                "tag v1 is absent on the target",
            ),
            step(
                NodeKind::FallbackIndex,
                Action::Write,
                "tag x (1 referrers)",
            ),
        ];
        assert_eq!(
            differences(&plan),
            vec![
                format!("missing blob {a} (7 bytes)"),
                format!("missing manifest {a} (referrer of app@x)"),
                format!("missing manifest {a}"),
                format!("tag v1 is absent on the target, source {a}"),
                format!(
                    "fallback tag sha256-{} does not list every referrer of {a}",
                    "a".repeat(64)
                ),
            ]
        );
    }

    #[test]
    fn a_report_is_complete_only_without_differences_failures_or_fatal() {
        let ok = ItemCheck {
            item: "app:v1".into(),
            differences: Vec::new(),
            error: None,
        };
        let mut report = VerifyReport {
            sections: vec![Section {
                title: "job a".into(),
                items: vec![ok.clone()],
                fatal: None,
            }],
        };
        assert!(report.is_complete());
        assert!(
            report
                .text()
                .ends_with("verified 1 image: 1 complete, 0 with differences, 0 failed\n")
        );
        report.sections[0].fatal = Some("cannot list".into());
        assert!(!report.is_complete());
        report.sections[0].fatal = None;
        report.sections[0].items.push(ItemCheck {
            error: Some("gone".into()),
            ..ok
        });
        assert!(!report.is_complete());
        assert!(report.text().contains("  app:v1: FAILED: gone\n"));
    }
}
