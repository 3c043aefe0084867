//! Errors of the copy engine. Every error says which side failed (source or
//! target), what was being done and to which digest; the registry error it
//! wraps names the registry and repository. [`CopyError::kind`] gives each a
//! short stable label from a small set, for metrics and tests.

use std::fmt;

use crate::oci::referrers::FallbackIndexError;
use crate::oci::{Digest, ManifestError};
use crate::registry::RegistryError;

use super::platform::PlatformError;

/// Which registry an operation ran against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The registry copied from.
    Source,
    /// The registry copied to.
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// A bound on the graph of one image (see [`super::CopyOptions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Indexes nested in indexes.
    IndexDepth,
    /// Manifests and blobs in one image's graph.
    Nodes,
    /// Manifest bytes read for one image.
    ManifestBytes,
    /// Referrers listed for one subject.
    ReferrersPerSubject,
}

impl Limit {
    /// The option (and suggested config key) that sets this limit.
    pub fn option(self) -> &'static str {
        match self {
            Limit::IndexDepth => "max_index_depth",
            Limit::Nodes => "max_nodes",
            Limit::ManifestBytes => "max_manifest_bytes",
            Limit::ReferrersPerSubject => "max_referrers_per_subject",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::IndexDepth => "index nesting depth",
            Limit::Nodes => "nodes per image",
            Limit::ManifestBytes => "manifest bytes per image",
            Limit::ReferrersPerSubject => "referrers per subject",
        })
    }
}

/// Why copying (part of) an image failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A registry operation failed.
    #[error("{side}: {op}{}: {source}", .digest.as_ref().map(|d| format!(" of {d}")).unwrap_or_default())]
    Registry {
        /// What the engine was doing (`fetch manifest`, `upload blob`, ...).
        op: &'static str,
        /// Which registry.
        side: Side,
        /// The node concerned.
        digest: Option<Digest>,
        /// The registry's error (names registry, repository, operation).
        source: Box<RegistryError>,
    },
    /// The image to copy does not exist on the source.
    #[error("source {registry}: {repo}:{reference} not found")]
    NotFound {
        /// Source registry name.
        registry: String,
        /// Repository.
        repo: String,
        /// Tag or digest.
        reference: String,
    },
    /// A fallback tag holds something other than an OCI index.
    #[error("{side} {registry}: fallback tag {repo}:{tag} cannot be used: {source}")]
    FallbackIndex {
        /// Which registry.
        side: Side,
        /// Registry name.
        registry: String,
        /// Repository.
        repo: String,
        /// The `<alg>-<hex>` tag.
        tag: String,
        /// Why.
        source: FallbackIndexError,
    },
    /// A cosign attachment could not be converted (it is copied as it is).
    #[error("converting {what}: {source}")]
    Cosign {
        /// What was converted (`cosign tag sha256-….sig`, `2 cosign sig referrer(s)`).
        what: String,
        /// Why not (names the manifest's digest).
        source: crate::oci::cosign::CosignError,
    },
    /// A manifest the engine built (a platform-filtered index) is invalid.
    #[error("building a platform-filtered index: {0}")]
    BuildIndex(#[from] ManifestError),
    /// A platform filter matched nothing.
    #[error("{registry}: {repo}:{reference}: no platform matches {wanted}")]
    NoPlatformMatch {
        /// Source registry name.
        registry: String,
        /// Repository.
        repo: String,
        /// Tag or digest.
        reference: String,
        /// The filter, comma-separated.
        wanted: String,
    },
    /// A platform filter is invalid.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The requested mode is not served by the registry.
    #[error("{side} {registry}: {message}")]
    Unsupported {
        /// Which registry.
        side: Side,
        /// Registry name.
        registry: String,
        /// What is missing.
        message: String,
    },
    /// A node was not copied because something it needs was not.
    #[error("{digest} not copied: {needs} it depends on failed")]
    Dependency {
        /// The node left out.
        digest: Digest,
        /// The failed dependency.
        needs: Digest,
    },
    /// The fallback index kept changing under us.
    #[error(
        "target {registry}: fallback tag {repo}:{tag} changed concurrently {attempts} times; giving up"
    )]
    Contended {
        /// Target registry name.
        registry: String,
        /// Repository.
        repo: String,
        /// The `<alg>-<hex>` tag.
        tag: String,
        /// Attempts made.
        attempts: usize,
    },
    /// The image's graph is over a configured bound; nothing of it is written.
    #[error(
        "source {registry}: {repo}: {limit} over the limit of {max} at {digest} (option {})",
        .limit.option()
    )]
    LimitExceeded {
        /// Which bound.
        limit: Limit,
        /// Its value.
        max: u64,
        /// Source registry name.
        registry: String,
        /// Repository.
        repo: String,
        /// The node where the bound was crossed.
        digest: Digest,
    },
    /// The target reports another size for a blob than its descriptor says,
    /// even after uploading it.
    #[error(
        "target {registry}: {repo}: blob {digest} is {reported} bytes on the target, expected {expected}"
    )]
    TargetSizeMismatch {
        /// Target registry name.
        registry: String,
        /// Repository.
        repo: String,
        /// The blob.
        digest: Digest,
        /// Size in its descriptor.
        expected: u64,
        /// Size the target reports.
        reported: u64,
    },
    /// The image tag was not moved because referrers of the image were not
    /// published on the target.
    #[error(
        "target: tag {tag} not written: referrer{} {} not published",
        if .referrers.len() == 1 { "" } else { "s" },
        .referrers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    ReferrersUnpublished {
        /// The image tag withheld.
        tag: String,
        /// The referrers that failed.
        referrers: Vec<Digest>,
    },
    /// The signature policy refused the image: nothing of it is written.
    #[error("unverified: source {registry}: {repo}@{digest}: {reason}")]
    Unverified {
        /// Source registry name.
        registry: String,
        /// Repository.
        repo: String,
        /// The image (what the tag points at).
        digest: Digest,
        /// The policy's reason (every signature and why it did not count).
        reason: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl CopyError {
    /// A source-side registry error about `digest`.
    pub fn source(op: &'static str, digest: Option<&Digest>, source: RegistryError) -> Self {
        CopyError::Registry {
            op,
            side: Side::Source,
            digest: digest.cloned(),
            source: Box::new(source),
        }
    }

    /// A target-side registry error about `digest`.
    pub fn target(op: &'static str, digest: Option<&Digest>, source: RegistryError) -> Self {
        CopyError::Registry {
            op,
            side: Side::Target,
            digest: digest.cloned(),
            source: Box::new(source),
        }
    }

    /// The registry the error happened on, when known.
    pub fn registry(&self) -> Option<&str> {
        match self {
            CopyError::Registry { source, .. } => Some(&source.registry),
            CopyError::NotFound { registry, .. }
            | CopyError::FallbackIndex { registry, .. }
            | CopyError::NoPlatformMatch { registry, .. }
            | CopyError::Unsupported { registry, .. }
            | CopyError::Contended { registry, .. }
            | CopyError::LimitExceeded { registry, .. }
            | CopyError::TargetSizeMismatch { registry, .. }
            | CopyError::Unverified { registry, .. } => Some(registry),
            CopyError::BuildIndex(_)
            | CopyError::Cosign { .. }
            | CopyError::Platform(_)
            | CopyError::Dependency { .. }
            | CopyError::ReferrersUnpublished { .. } => None,
        }
    }

    /// A short stable name of what went wrong, used as a metric label: the
    /// registry error's kind (`not_found`, `server_error`, `transport`, ...)
    /// or one of `invalid_fallback_index`, `invalid_manifest`, `platform`,
    /// `unsupported`, `dependency`, `contended`, `limit_exceeded`,
    /// `target_size_mismatch`, `referrers_unpublished`, `unverified`.
    pub fn kind(&self) -> &'static str {
        match self {
            CopyError::Registry { source, .. } => source.kind.label(),
            CopyError::NotFound { .. } => "not_found",
            CopyError::FallbackIndex { .. } => "invalid_fallback_index",
            CopyError::BuildIndex(_) => "invalid_manifest",
            CopyError::Cosign { .. } => "cosign_conversion",
            CopyError::NoPlatformMatch { .. } | CopyError::Platform(_) => "platform",
            CopyError::Unsupported { .. } => "unsupported",
            CopyError::Dependency { .. } => "dependency",
            CopyError::Contended { .. } => "contended",
            CopyError::LimitExceeded { .. } => "limit_exceeded",
            CopyError::TargetSizeMismatch { .. } => "target_size_mismatch",
            CopyError::ReferrersUnpublished { .. } => "referrers_unpublished",
            CopyError::Unverified { .. } => "unverified",
        }
    }
}
