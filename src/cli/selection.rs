//! What of an image `copy` copies and `verify` checks: platforms and
//! referrers. One set of flags, so the two commands cannot drift apart.

use crate::copy::{AnnotationMatch, CopyOptions, PlatformMode, PlatformSpec, ReferrersMode};
use crate::oci::ReferrerKind;

/// The image-selection flags shared by `copy` and `verify SRC DST`.
#[derive(Clone, Debug, clap::Args)]
pub struct SelectionArgs {
    /// Platforms (os/arch[/variant]), repeatable or comma-separated. Only used with
    /// --platform-mode filter.
    #[arg(long = "platform", value_delimiter = ',')]
    pub platforms: Vec<PlatformSpec>,
    /// whole: indexes whole, digest-exact (default); filter: only the --platform manifests.
    #[arg(long, default_value = "whole")]
    pub platform_mode: PlatformMode,
    /// No referrers.
    #[arg(long)]
    pub no_referrers: bool,
    /// Only referrers with this artifactType (repeatable).
    #[arg(long = "artifact-type")]
    pub artifact_types: Vec<String>,
    /// Never referrers with this artifactType (repeatable).
    #[arg(long = "exclude-artifact-type")]
    pub exclude_artifact_types: Vec<String>,
    /// Only referrers of this kind: signature (cosign, including legacy .sig tags, and
    /// Notary), attestation, sbom or other (repeatable or comma-separated; adds up with
    /// --artifact-type).
    #[arg(long = "referrer-kind", value_delimiter = ',')]
    pub referrer_kinds: Vec<ReferrerKind>,
    /// Never referrers of this kind (repeatable or comma-separated).
    #[arg(long = "exclude-referrer-kind", value_delimiter = ',')]
    pub exclude_referrer_kinds: Vec<ReferrerKind>,
    /// Only referrers with this annotation, KEY or KEY=VALUE (repeatable, all must match).
    #[arg(long = "annotation")]
    pub annotations: Vec<AnnotationMatch>,
    /// Referrer hops to follow (a signature on an SBOM on the image is 2).
    #[arg(long, default_value_t = CopyOptions::DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
    /// Finding referrers on the source: auto (API and fallback tags), api, tags.
    #[arg(long, default_value = "auto")]
    pub source_referrers: ReferrersMode,
    /// Referrers on the target: auto (API if confirmed, else fallback tags), api (never
    /// fallback tags), tags (always maintain fallback tags).
    #[arg(long, default_value = "auto")]
    pub target_referrers: ReferrersMode,
    /// No cosign legacy tags (sha256-<hex>.sig/.att/.sbom).
    #[arg(long)]
    pub no_cosign_tags: bool,
}

impl SelectionArgs {
    /// The copy options these flags set (the rest at their defaults).
    pub fn options(&self) -> CopyOptions {
        CopyOptions {
            referrers: !self.no_referrers,
            max_depth: self.max_depth,
            artifact_types_include: self.artifact_types.clone(),
            artifact_types_exclude: self.exclude_artifact_types.clone(),
            kinds_include: self.referrer_kinds.clone(),
            kinds_exclude: self.exclude_referrer_kinds.clone(),
            annotations: self.annotations.clone(),
            platforms: self.platforms.clone(),
            platform_mode: self.platform_mode,
            source_referrers: self.source_referrers,
            target_referrers: self.target_referrers,
            cosign_tags: !self.no_cosign_tags,
            ..CopyOptions::default()
        }
    }

    /// The flags given (not at their defaults), by name.
    pub fn given(&self) -> Vec<&'static str> {
        let given = [
            (!self.platforms.is_empty(), "--platform"),
            (self.platform_mode != PlatformMode::Whole, "--platform-mode"),
            (self.no_referrers, "--no-referrers"),
            (!self.artifact_types.is_empty(), "--artifact-type"),
            (
                !self.exclude_artifact_types.is_empty(),
                "--exclude-artifact-type",
            ),
            (!self.referrer_kinds.is_empty(), "--referrer-kind"),
            (
                !self.exclude_referrer_kinds.is_empty(),
                "--exclude-referrer-kind",
            ),
            (!self.annotations.is_empty(), "--annotation"),
            (
                self.max_depth != CopyOptions::DEFAULT_MAX_DEPTH,
                "--max-depth",
            ),
            (
                self.source_referrers != ReferrersMode::Auto,
                "--source-referrers",
            ),
            (
                self.target_referrers != ReferrersMode::Auto,
                "--target-referrers",
            ),
            (self.no_cosign_tags, "--no-cosign-tags"),
        ];
        given
            .into_iter()
            .filter_map(|(set, flag)| set.then_some(flag))
            .collect()
    }

    /// Why these flags cannot be used together, if they cannot.
    pub fn problem(&self) -> Option<&'static str> {
        (self.platform_mode == PlatformMode::Filter && self.platforms.is_empty())
            .then_some("--platform-mode filter needs --platform os/arch[/variant] (repeatable)")
    }
}
