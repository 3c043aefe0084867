//! `ocimirror copy SRC DST`: one image, or every tag of a repository, with
//! its referrers, from a registry or OCI layout to another.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::config::{ConfigErrors, load_policy};
use crate::copy::{
    Action, Copier, CopyError, CopyEvent, CopyOptions, CopyReport, CosignMode, NodeFailure,
    PlanItem, PlatformMode,
};
use crate::oci::referrers::{is_cosign_tag, is_fallback_tag};
use crate::oci::{ImageReference, Reference, Tag};
use crate::policy::{Policy, PolicyGate};
use crate::registry::RegistryError;

use super::jobs::plural;
use super::output::{CopyDoc, FailureDoc, PlannedItemDoc, steps};
use super::progress::{Progress, human_bytes};
use super::selection::SelectionArgs;

mod access;
pub use access::{AccessArgs, UserPassword};

/// Arguments of `ocimirror copy`.
#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "\
Referrers (signatures, SBOMs, attestations) of every manifest in the image are copied
recursively and published the way the target supports: through the referrers API, or as
sha256-<hex> fallback tags. Digests never change, so signatures stay valid.

--platform alone narrows nothing: the whole index is copied digest-exact. With
--platform-mode filter only the matching platform manifests are copied; with one match the
tag points at that platform manifest (same digest as on the source), with several a NEW
index listing only them is written. The new index has a new digest: signatures and other
referrers of the original index no longer apply to it and are not copied.

Registry access, per host: --src-*/--dest-* flags for that side's host only (credentials
never go to the other registry), else the -c FILE [registries] entry, else the defaults.
By default credentials come from the Docker config ($DOCKER_CONFIG/config.json, else
~/.docker/config.json, with its credential helpers); --no-docker-config reads none,
--docker-config FILE reads another. With -c, hosts read a Docker config only where the
file says docker_config = true (as in `once`).")]
pub struct CopyArgs {
    /// Source: registry/repo[:tag][@digest] or oci:<dir>[:tag].
    pub src: ImageReference,
    /// Destination: registry/repo[:tag] or oci:<dir>[:tag]; without a tag, the source's tag.
    pub dst: ImageReference,
    /// Copy every tag of the source repository (fallback and cosign tags are not images:
    /// they are copied through the images they belong to).
    #[arg(long)]
    pub all_tags: bool,
    /// Platforms and referrers: what of the image is copied.
    #[command(flatten)]
    pub select: SelectionArgs,
    /// cosign attachments: keep (as they are), to-referrers (legacy .sig/.att/.sbom tags
    /// become OCI 1.1 referrers), to-tags (the reverse). Converted manifests get new
    /// digests; the signatures in them still verify.
    #[arg(long, default_value = "keep")]
    pub cosign: CosignMode,
    /// With --cosign to-referrers|to-tags: also copy the original form.
    #[arg(long)]
    pub cosign_keep_original: bool,
    /// Transfers in flight at once (at least 1).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Dry run: print every node that would be copied, skipped or converted, and why.
    #[arg(long)]
    pub plan: bool,
    /// Signature policy: a TOML or YAML file with the keys of a config's
    /// [defaults.policy] (mode, require, cosign = [{name, key, annotations}]). With
    /// mode enforce an image without a trusted signature is not copied (unverified: ...,
    /// exit status 1); with warn it is copied and reported.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Use plain HTTP for every registry (default: only for loopback hosts).
    #[arg(long)]
    pub plain_http: bool,
    /// Docker config.json to read credentials from [default: $DOCKER_CONFIG/config.json,
    /// else ~/.docker/config.json].
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Credentials, TLS and a config file's registry settings.
    #[command(flatten)]
    pub access: AccessArgs,
}

/// Why `copy` could not start.
#[derive(Debug, thiserror::Error)]
pub enum CopyCommandError {
    /// A reference that cannot be used here.
    #[error("{0}")]
    Usage(String),
    /// A registry could not be opened or listed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The `-c` config file or the `--policy` file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
}

/// What `copy` did: the combined report, and per image what failed.
#[derive(Debug, Default)]
pub struct CopyOutcome {
    /// Everything added up.
    pub report: CopyReport,
    /// What failed, per image: the image as a whole or one of its nodes.
    pub failures: Vec<CopyFailure>,
    /// Images copied (or planned).
    pub images: usize,
    /// For `--plan`: per image, where it goes and the steps.
    pub plan: Vec<PlannedImage>,
}

/// One failure of `copy`.
#[derive(Debug)]
pub struct CopyFailure {
    /// The source image (`registry/repo:tag`).
    pub image: String,
    /// The failed node's digest, or the image's tag or digest.
    pub reference: String,
    /// Stable label (`not_found`, `referrers_unpublished`, ...).
    pub kind: &'static str,
    /// Why, naming registry, repository and digest.
    pub message: String,
}

/// `--plan`: one image.
#[derive(Debug)]
pub struct PlannedImage {
    /// The source image.
    pub image: String,
    /// The destination.
    pub target: String,
    /// What would happen to each node.
    pub steps: Vec<PlanItem>,
}

impl CopyOutcome {
    /// True when every image and every node succeeded.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty() && self.report.is_success()
    }
}

impl CopyArgs {
    /// The engine options these flags ask for.
    pub fn options(&self) -> CopyOptions {
        CopyOptions {
            concurrency: usize::from(self.concurrency),
            cosign: self.cosign,
            cosign_keep_original: self.cosign_keep_original,
            ..self.select.options()
        }
    }
}

/// Runs `ocimirror copy`. Failures of single images are in the outcome (the
/// others are still copied); `Err` means nothing could be started.
pub async fn run(args: &CopyArgs) -> Result<CopyOutcome, CopyCommandError> {
    // Through the factory's per-host cache, so a copy within one registry
    // uses one adapter: one token cache, one rate limit, one in-flight bound.
    let registries = access::registries(args)?;
    // A bad policy file stops the command before any request.
    let policy = args.policy.as_deref().map(load_policy).transpose()?;
    let source = registries.open(&args.src.location)?;
    let target = registries.open(&args.dst.location)?;
    if args.dst.digest.is_some() {
        return Err(CopyCommandError::Usage(format!(
            "destination {} must not have a digest: the digest is the source's",
            args.dst
        )));
    }
    if let Some(problem) = args.select.problem() {
        return Err(CopyCommandError::Usage(problem.into()));
    }
    if let Some(message) = crate::registry::open::missing_source_layout(&args.src.location) {
        return Err(CopyCommandError::Usage(message));
    }
    if args.all_tags && (args.src.tag.is_some() || args.src.digest.is_some()) {
        return Err(CopyCommandError::Usage(format!(
            "--all-tags copies every tag of the repository: give SRC without a tag or digest (not {})",
            args.src
        )));
    }
    if args.select.platform_mode == PlatformMode::Whole && !args.select.platforms.is_empty() {
        tracing::info!(
            "--platform without --platform-mode filter narrows nothing: indexes are copied whole"
        );
    }

    // (source reference, destination tag)
    let mut jobs: Vec<(Reference, Option<Tag>)> = Vec::new();
    if args.all_tags {
        if args.dst.tag.is_some() {
            return Err(CopyCommandError::Usage(
                "--all-tags copies every tag under its own name: give DST without a tag".into(),
            ));
        }
        let mut tags = source.tags(&args.src.repo).await?;
        tags.sort();
        for t in tags {
            if is_fallback_tag(&t) || is_cosign_tag(&t) {
                continue;
            }
            if let Ok(tag) = Tag::new(&t) {
                jobs.push((Reference::Tag(tag.clone()), Some(tag)));
            }
        }
    } else {
        let reference = args.src.reference().ok_or_else(|| {
            CopyCommandError::Usage(format!(
                "source {} needs a tag or digest (or use --all-tags)",
                args.src
            ))
        })?;
        let dst_tag = args.dst.tag.clone().or_else(|| args.src.tag.clone());
        jobs.push((reference, dst_tag));
    }

    let (tx, rx) = mpsc::unbounded_channel();
    let images_done = tx.clone();
    let mut copier = Copier::new(source, target, args.options()).with_events(tx);
    if let Some(policy) = policy.filter(Policy::is_active) {
        // No state database and no metrics here: every signature is checked.
        copier = copier.with_gate(Arc::new(PolicyGate::new("copy", Arc::new(policy))));
    }
    let current = Arc::new(Mutex::new(String::new()));
    let tty = std::io::stderr().is_terminal() && !args.no_progress && !args.plan;
    let display = tokio::spawn(show_events(rx, current.clone(), tty, jobs.len() as u64));

    let mut outcome = CopyOutcome::default();
    for (reference, dst_tag) in jobs {
        let name = with_reference(&args.src, Some(&reference)).to_string();
        let reference_name = reference.to_string();
        *current.lock().unwrap_or_else(|e| e.into_inner()) = name.clone();
        outcome.images += 1;
        if args.plan {
            match copier
                .plan_image(&args.src.repo, &reference, &args.dst.repo, dst_tag.as_ref())
                .await
            {
                Ok(steps) => {
                    for f in steps.iter().filter_map(|s| s.failure.as_ref()) {
                        node_failed(&mut outcome, &name, &reference_name, f);
                    }
                    outcome.plan.push(PlannedImage {
                        target: destination(args, dst_tag.as_ref()),
                        image: name,
                        steps,
                    });
                }
                Err(e) => image_failed(&mut outcome, &name, &reference_name, &e),
            }
            continue;
        }
        let done = match copier
            .copy_image(&args.src.repo, &reference, &args.dst.repo, dst_tag.as_ref())
            .await
        {
            Ok(report) if report.is_success() => {
                tracing::info!(image = %name, summary = %report, "Image copied.");
                outcome.report.merge(report);
                Action::Copy
            }
            // Said at the level of what happened: a partly copied image is
            // a failure, as the summary and the exit status say too.
            Ok(mut report) => {
                tracing::error!(image = %name, summary = %report, failed = %report.failure_summary(), "Image copied only in part.");
                for f in std::mem::take(&mut report.failures) {
                    node_failed(&mut outcome, &name, &reference_name, &f);
                }
                outcome.report.merge(report);
                Action::Fail
            }
            Err(e) => {
                image_failed(&mut outcome, &name, &reference_name, &e);
                Action::Fail
            }
        };
        let _ = images_done.send(CopyEvent::image_done(&name, done));
    }
    drop(copier);
    drop(images_done);
    let _ = display.await;
    Ok(outcome)
}

fn image_failed(outcome: &mut CopyOutcome, name: &str, reference: &str, e: &CopyError) {
    tracing::error!(image = %name, error = %e, "Image failed.");
    outcome.failures.push(CopyFailure {
        image: name.to_string(),
        reference: reference.to_string(),
        kind: e.kind(),
        message: e.to_string(),
    });
}

fn node_failed(outcome: &mut CopyOutcome, name: &str, reference: &str, f: &NodeFailure) {
    outcome.failures.push(CopyFailure {
        image: name.to_string(),
        reference: f
            .digest
            .as_ref()
            .map_or_else(|| reference.to_string(), ToString::to_string),
        kind: f.kind(),
        message: f.error.to_string(),
    });
}

fn destination(args: &CopyArgs, tag: Option<&Tag>) -> String {
    with_reference(&args.dst, tag.cloned().map(Reference::Tag).as_ref()).to_string()
}

/// `image` naming exactly `reference` (for messages).
fn with_reference(image: &ImageReference, reference: Option<&Reference>) -> ImageReference {
    let mut r = image.clone();
    r.tag = None;
    r.digest = None;
    match reference {
        Some(Reference::Tag(t)) => r.tag = Some(t.clone()),
        Some(Reference::Digest(d)) => r.digest = Some(d.clone()),
        None => {}
    }
    r
}

/// Shows events until the copier is dropped.
async fn show_events(
    mut rx: mpsc::UnboundedReceiver<CopyEvent>,
    current: Arc<Mutex<String>>,
    tty: bool,
    images: u64,
) {
    let mut progress = Progress::new(tty);
    progress.set_total(images);
    while let Some(e) = rx.recv().await {
        let image = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        progress.event(&image, &e);
    }
    progress.finish();
}

/// The summary printed at the end of `copy`, for people: the plan's steps
/// (with `--plan`), the counts in human units, then one line per failure.
pub fn summary(outcome: &CopyOutcome) -> String {
    let mut s = String::new();
    let images = plural(outcome.images as u64, "image", "images");
    if outcome.plan.is_empty() {
        let r = &outcome.report;
        s.push_str(&format!(
            "{images}: manifests: {} copied, {} present; blobs: {} copied, {} mounted, {} present; {}; {}",
            r.manifests_copied,
            r.manifests_skipped,
            r.blobs_copied,
            r.blobs_mounted,
            r.blobs_skipped,
            human_bytes(r.bytes),
            plural(r.tags, "tag", "tags"),
        ));
        let referrers: u64 = r.referrers.values().sum();
        if referrers > 0 {
            let by: Vec<String> = r
                .referrers
                .iter()
                .map(|((s, t), n)| format!("{s} -> {t}: {n}"))
                .collect();
            s.push_str(&format!(
                "; {} ({})",
                plural(referrers, "referrer", "referrers"),
                by.join(", ")
            ));
        }
        if r.cosign_to_referrers + r.cosign_to_tags > 0 {
            s.push_str(&format!(
                "; cosign converted: {} to referrers, {} to tags",
                r.cosign_to_referrers, r.cosign_to_tags
            ));
        }
        if r.filtered > 0 {
            s.push_str(&format!("; {} referrers filtered", r.filtered));
        }
        if r.dropped > 0 {
            s.push_str(&format!(
                "; {} referrers dropped with the filtered index",
                r.dropped
            ));
        }
    } else {
        let mut counts: Vec<(Action, usize)> = Vec::new();
        for p in &outcome.plan {
            s.push_str(&format!("{} -> {}\n", p.image, p.target));
            for step in &p.steps {
                s.push_str(&format!("  {step}\n"));
                match counts.iter_mut().find(|(a, _)| *a == step.action) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((step.action, 1)),
                }
            }
        }
        let parts: Vec<String> = counts.iter().map(|(a, n)| format!("{n} {a}")).collect();
        s.push_str(&format!("plan for {images}: {}", parts.join(", ")));
    }
    // Per image its first failure, the rest counted (every node is in
    // the log and in `--output json`).
    let mut shown: Vec<(&str, usize)> = Vec::new();
    for f in &outcome.failures {
        match shown.iter_mut().find(|(image, _)| *image == f.image) {
            Some((_, more)) => *more += 1,
            None => {
                s.push_str(&format!("\nFAILED {}: {} [{}]", f.image, f.message, f.kind));
                shown.push((&f.image, 0));
            }
        }
    }
    for (image, more) in shown.into_iter().filter(|(_, more)| *more > 0) {
        s.push_str(&format!(
            "\n  {image}: {more} more failed {}",
            if more == 1 { "step" } else { "steps" }
        ));
    }
    s
}

/// The `--output json` document of `copy`.
pub fn document(outcome: &CopyOutcome) -> CopyDoc {
    let mut doc = CopyDoc::new(&outcome.report, outcome.images, outcome.is_success());
    doc.failures = outcome
        .failures
        .iter()
        .map(|f| FailureDoc {
            item: f.image.clone(),
            reference: f.reference.clone(),
            kind: f.kind.to_string(),
            message: f.message.clone(),
        })
        .collect();
    if !outcome.plan.is_empty() {
        doc.plan = Some(
            outcome
                .plan
                .iter()
                .map(|p| PlannedItemDoc {
                    item: p.image.clone(),
                    target: p.target.clone(),
                    action: "copy",
                    reason: String::new(),
                    steps: steps(&p.steps),
                })
                .collect(),
        );
    }
    doc
}
