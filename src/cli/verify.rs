//! `ocimirror verify` (alias `diff`): is everything the source has on the
//! target? Either for the jobs of a config (`verify -c FILE [JOB…]`) or for
//! one image or repository (`verify SRC DST`, references as for `copy`).
//! The comparison itself is [`crate::verify`].

use crate::oci::referrers::{is_cosign_tag, is_fallback_tag};
use crate::oci::{ImageReference, Reference, Tag};
use crate::registry::http::{DockerConfigSource, HttpSettings};
use crate::registry::open::Registries;
use crate::verify::{ImagePair, VerifyReport};
use std::path::PathBuf;

use super::copy::CopyCommandError;
use super::selection::SelectionArgs;

/// Arguments of `ocimirror verify`.
#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "\
Nothing on the target is trusted: not the checkpoint, and not a manifest to hold its blobs.
For each image: the target tag points at the source's digest; every manifest of the graph
(index children, and referrers as the job's referrer settings select them, published the
way the target supports) is on the target; every blob is there with its size. Nothing is
written, neither to the target nor to the state database.

Exit status: 0 when the target has everything, 1 when anything is missing or different
(each difference is listed), 2 on usage errors, 78 on an invalid config.")]
pub struct VerifyArgs {
    /// Configuration file: verify its jobs (all, or the JOBs named).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// With -c: job names (default: all). Without: SRC DST, references as for `copy`.
    #[arg(value_name = "JOB|SRC DST")]
    pub args: Vec<String>,
    /// SRC DST: every tag of the source repository.
    #[arg(long)]
    pub all_tags: bool,
    /// SRC DST: platforms and referrers, as the copy used.
    #[command(flatten)]
    pub select: SelectionArgs,
    /// SRC DST: plain HTTP for every registry (default: only for loopback hosts).
    #[arg(long)]
    pub plain_http: bool,
    /// SRC DST: Docker config.json to read credentials from.
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
}

impl VerifyArgs {
    /// The image flags given, which only the SRC DST form takes.
    fn image_flags(&self) -> Vec<&'static str> {
        let mut given = self.select.given();
        for (set, flag) in [
            (self.all_tags, "--all-tags"),
            (self.plain_http, "--plain-http"),
            (self.docker_config.is_some(), "--docker-config"),
        ] {
            if set {
                given.push(flag);
            }
        }
        given
    }
}

/// Runs `ocimirror verify`. Differences are in the report; `Err` means the
/// comparison could not start (usage, config, a source that cannot be
/// listed).
pub async fn run(args: &VerifyArgs) -> anyhow::Result<VerifyReport> {
    match &args.config {
        Some(path) => {
            let flags = args.image_flags();
            if !flags.is_empty() {
                return Err(usage(format!(
                    "{} can only be used with `verify SRC DST`; with -c the jobs' settings are used",
                    flags.join(", ")
                )));
            }
            let (config, jobs) = crate::app::load_jobs(path, &args.args)?;
            Ok(crate::verify::verify_jobs(&config, &jobs).await?)
        }
        None => verify_pair(args).await,
    }
}

async fn verify_pair(args: &VerifyArgs) -> anyhow::Result<VerifyReport> {
    let [src, dst] = args.args.as_slice() else {
        return Err(usage(
            "verify needs -c CONFIG [JOB…], or SRC DST (e.g. verify registry.a/app:v1 registry.b/app:v1)"
                .into(),
        ));
    };
    let parse = |side: &str, s: &str| {
        s.parse::<ImageReference>()
            .map_err(|e| usage(format!("{side} {s:?}: {e}")))
    };
    let (src, dst) = (parse("SRC", src)?, parse("DST", dst)?);
    if dst.digest.is_some() {
        return Err(usage(format!(
            "destination {dst} must not have a digest: the digest is the source's"
        )));
    }
    if let Some(problem) = args.select.problem() {
        return Err(usage(problem.into()));
    }
    let mut http = HttpSettings::default();
    if args.plain_http {
        http.plain_http = Some(true);
    }
    if let Some(path) = &args.docker_config {
        http.docker_config = DockerConfigSource::Path(path.clone());
    }
    let registries = Registries::new(move |_| http.clone());
    let source = registries
        .open(&src.location)
        .map_err(CopyCommandError::from)?;
    let target = registries
        .open(&dst.location)
        .map_err(CopyCommandError::from)?;
    let images = if args.all_tags {
        if src.tag.is_some() || src.digest.is_some() || dst.tag.is_some() {
            return Err(usage(format!(
                "--all-tags checks every tag under its own name: give SRC and DST without a tag (not {src} {dst})"
            )));
        }
        let mut tags = source
            .tags(&src.repo)
            .await
            .map_err(CopyCommandError::from)?;
        tags.sort();
        tags.into_iter()
            // Referrer tags are checked through the images they belong to.
            .filter(|t| !is_fallback_tag(t) && !is_cosign_tag(t))
            .filter_map(|t| Tag::new(&t).ok())
            .map(|t| pair(&src, &dst, Reference::Tag(t.clone()), Some(t)))
            .collect()
    } else {
        let reference = src.reference().ok_or_else(|| {
            usage(format!(
                "source {src} needs a tag or digest (or use --all-tags)"
            ))
        })?;
        let dst_tag = dst.tag.clone().or_else(|| src.tag.clone());
        vec![pair(&src, &dst, reference, dst_tag)]
    };
    let title = format!("{src} -> {dst}");
    let section =
        crate::verify::verify_images(source, target, args.select.options(), title, &images).await;
    Ok(VerifyReport {
        sections: vec![section],
    })
}

fn pair(
    src: &ImageReference,
    dst: &ImageReference,
    reference: Reference,
    dst_tag: Option<Tag>,
) -> ImagePair {
    let mut name = src.clone();
    name.tag = None;
    name.digest = None;
    match &reference {
        Reference::Tag(t) => name.tag = Some(t.clone()),
        Reference::Digest(d) => name.digest = Some(d.clone()),
    }
    ImagePair {
        name: name.to_string(),
        src_repo: src.repo.clone(),
        reference,
        dst_repo: dst.repo.clone(),
        dst_tag,
    }
}

fn usage(message: String) -> anyhow::Error {
    CopyCommandError::Usage(message).into()
}
