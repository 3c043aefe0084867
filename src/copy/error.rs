//! Errors of the copy engine. Every error says which side failed (source or
//! target), what was being done and to which digest; the registry error it
//! wraps names the registry and repository.

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
    /// Another task copying the same digest failed.
    #[error("target: concurrent copy of {digest} failed: {message}")]
    InFlight {
        /// The digest.
        digest: Digest,
        /// The other task's error message.
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
}

impl CopyError {
    /// The registry the error happened on, when known.
    pub fn registry(&self) -> Option<&str> {
        match self {
            CopyError::Registry { source, .. } => Some(&source.registry),
            CopyError::NotFound { registry, .. }
            | CopyError::FallbackIndex { registry, .. }
            | CopyError::NoPlatformMatch { registry, .. }
            | CopyError::Unsupported { registry, .. } => Some(registry),
            _ => None,
        }
    }

    /// A short stable name of what went wrong, used as a metric label.
    pub fn kind_label(&self) -> &'static str {
        match self {
            CopyError::Registry { source, .. } => source.kind.label(),
            CopyError::NotFound { .. } => "not_found",
            CopyError::FallbackIndex { .. } => "invalid_fallback_index",
            CopyError::BuildIndex(_) => "invalid_manifest",
            CopyError::NoPlatformMatch { .. } | CopyError::Platform(_) => "platform",
            CopyError::Unsupported { .. } => "unsupported",
            #[allow(unreachable_patterns)]
            _ => "copy",
        }
    }
}
