//! What to copy and how: referrer and platform modes, filters and the bounds
//! on one image's graph. The modes (de)serialise with the config file's
//! lowercase words, so the config layer holds these types directly.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::platform::PlatformSpec;
use crate::oci::ReferrerKind;

/// How referrers are found on the source or published on the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferrersMode {
    /// Source: the referrers API where the registry has it, plus the
    /// fallback tag where one exists (their union). Target: trust
    /// `OCI-Subject` on the manifest PUT, confirmed once per repository by
    /// the referrers endpoint; fallback tags only where there is no API.
    #[default]
    Auto,
    /// Only the referrers API: an error on a source without one; never a
    /// fallback tag on the target.
    Api,
    /// Only `<alg>-<hex>` fallback tags, read and always maintained.
    Tags,
}

impl FromStr for ReferrersMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ReferrersMode::Auto),
            "api" => Ok(ReferrersMode::Api),
            "tags" => Ok(ReferrersMode::Tags),
            other => Err(format!(
                "invalid referrers mode {other:?}: expected auto, api or tags"
            )),
        }
    }
}

impl fmt::Display for ReferrersMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReferrersMode::Auto => "auto",
            ReferrersMode::Api => "api",
            ReferrersMode::Tags => "tags",
        })
    }
}

/// What happens to cosign attachments (signatures, attestations, SBOMs)
/// between cosign's legacy tags and OCI 1.1 referrers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CosignMode {
    /// Copied as they are (legacy tags as tags, referrers as referrers).
    #[default]
    Keep,
    /// Legacy `sha256-<hex>.sig/.att/.sbom` manifests become cosign OCI 1.1
    /// referrers of their subject.
    ToReferrers,
    /// cosign OCI 1.1 referrers become legacy tag manifests, one per subject
    /// and kind.
    ToTags,
}

impl CosignMode {
    /// The config and flag word.
    pub fn word(self) -> &'static str {
        match self {
            CosignMode::Keep => "keep",
            CosignMode::ToReferrers => "to-referrers",
            CosignMode::ToTags => "to-tags",
        }
    }
}

impl FromStr for CosignMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            CosignMode::Keep,
            CosignMode::ToReferrers,
            CosignMode::ToTags,
        ]
        .into_iter()
        .find(|m| m.word() == s)
        .ok_or_else(|| format!("invalid cosign mode {s:?}: expected keep, to-referrers or to-tags"))
    }
}

impl fmt::Display for CosignMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// What a platform list does to an index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformMode {
    /// Copy the whole index digest-exact; the platform list narrows nothing.
    #[default]
    Whole,
    /// Copy only matching platform manifests. All match: the index is kept
    /// digest-exact with its referrers. One: the tag points at that platform
    /// manifest (digest-exact). Several: a new index listing only them is
    /// written, with a new digest, so the original index's signatures and
    /// other referrers no longer apply; they are counted in
    /// [`super::CopyReport::dropped`].
    Filter,
}

impl FromStr for PlatformMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "whole" => Ok(PlatformMode::Whole),
            "filter" => Ok(PlatformMode::Filter),
            other => Err(format!(
                "invalid platform mode {other:?}: expected whole or filter"
            )),
        }
    }
}

impl fmt::Display for PlatformMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlatformMode::Whole => "whole",
            PlatformMode::Filter => "filter",
        })
    }
}

/// An annotation a referrer must carry: the key, and the value when given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AnnotationMatch {
    /// Annotation key.
    pub key: String,
    /// Required value; `None` means any value.
    pub value: Option<String>,
}

impl FromStr for AnnotationMatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (s, None),
        };
        if key.is_empty() {
            return Err(format!(
                "invalid annotation match {s:?}: expected KEY or KEY=VALUE"
            ));
        }
        Ok(AnnotationMatch {
            key: key.to_string(),
            value,
        })
    }
}

/// What to copy and how.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Copy referrers at all.
    pub referrers: bool,
    /// How many referrer hops to follow from the image (a signature on an
    /// SBOM on a platform manifest is depth 2).
    pub max_depth: usize,
    /// Copy only referrers with one of these artifact types or of one of
    /// [`CopyOptions::kinds_include`] (both empty: all).
    pub artifact_types_include: Vec<String>,
    /// Never copy referrers with one of these artifact types.
    pub artifact_types_exclude: Vec<String>,
    /// Copy only referrers of these kinds or with one of
    /// [`CopyOptions::artifact_types_include`] (both empty: all).
    pub kinds_include: Vec<ReferrerKind>,
    /// Never copy referrers of these kinds.
    pub kinds_exclude: Vec<ReferrerKind>,
    /// Copy only referrers carrying all of these annotations.
    pub annotations: Vec<AnnotationMatch>,
    /// Wanted platforms (used by [`PlatformMode::Filter`]).
    pub platforms: Vec<PlatformSpec>,
    /// What the platform list does.
    pub platform_mode: PlatformMode,
    /// How referrers are found on the source.
    pub source_referrers: ReferrersMode,
    /// How referrers are published on the target.
    pub target_referrers: ReferrersMode,
    /// Also copy cosign legacy tags (`sha256-<hex>.sig/.att/.sbom`).
    pub cosign_tags: bool,
    /// Convert cosign attachments between legacy tags and OCI 1.1
    /// referrers on the way.
    pub cosign: CosignMode,
    /// With a converting [`CopyOptions::cosign`]: also copy the original
    /// form beside the converted one.
    pub cosign_keep_original: bool,
    /// Transfers (blob or manifest) in flight at once, across the graph.
    pub concurrency: usize,
    /// Indexes nested in indexes below an image (or referrer) root; an
    /// index whose children would be deeper fails the image.
    pub max_index_depth: usize,
    /// Manifests plus distinct blobs in one image's graph, referrers
    /// included.
    pub max_nodes: usize,
    /// Bytes of all manifests read for one image.
    pub max_manifest_bytes: u64,
    /// Referrers listed for one subject (API and fallback tag together).
    pub max_referrers_per_subject: usize,
    /// Also check the blobs of manifests the target already has (HEAD,
    /// size) instead of trusting a stored manifest to have them: set by
    /// `once --full` (which then repairs a missing blob) and `verify`.
    pub recheck_present: bool,
}

impl CopyOptions {
    /// Default [`CopyOptions::max_depth`], for `copy` and jobs alike.
    pub const DEFAULT_MAX_DEPTH: usize = 8;
    /// Default [`CopyOptions::max_index_depth`].
    pub const DEFAULT_MAX_INDEX_DEPTH: usize = 8;
    /// Default [`CopyOptions::max_nodes`].
    pub const DEFAULT_MAX_NODES: usize = 10_000;
    /// Default [`CopyOptions::max_manifest_bytes`] (64 MiB).
    pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;
    /// Default [`CopyOptions::max_referrers_per_subject`].
    pub const DEFAULT_MAX_REFERRERS_PER_SUBJECT: usize = 1_000;
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            referrers: true,
            max_depth: Self::DEFAULT_MAX_DEPTH,
            artifact_types_include: Vec::new(),
            artifact_types_exclude: Vec::new(),
            kinds_include: Vec::new(),
            kinds_exclude: Vec::new(),
            annotations: Vec::new(),
            platforms: Vec::new(),
            platform_mode: PlatformMode::Whole,
            source_referrers: ReferrersMode::Auto,
            target_referrers: ReferrersMode::Auto,
            cosign_tags: true,
            cosign: CosignMode::Keep,
            cosign_keep_original: false,
            concurrency: 8,
            max_index_depth: Self::DEFAULT_MAX_INDEX_DEPTH,
            max_nodes: Self::DEFAULT_MAX_NODES,
            max_manifest_bytes: Self::DEFAULT_MAX_MANIFEST_BYTES,
            max_referrers_per_subject: Self::DEFAULT_MAX_REFERRERS_PER_SUBJECT,
            recheck_present: false,
        }
    }
}
