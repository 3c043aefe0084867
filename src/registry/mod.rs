//! The registry port: everything a mirror needs from a place that stores
//! images, as one trait, plus the error type every adapter returns.
//!
//! Adapters: [`http::HttpRegistry`] (distribution-spec over HTTP) and
//! [`layout::LayoutRegistry`] (OCI image layout directory). Imports only
//! [`crate::oci`].

pub mod error;
pub mod http;
pub mod layout;
pub mod open;
pub mod stream;

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::oci::{Descriptor, Digest, Manifest, Reference, RepoName};

pub use error::{ErrorKind, Operation, RegistryError};

/// A blob body: chunks of bytes or the error that cut it short.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

/// A blob being read: its size (from the registry) and its body, which fails
/// with [`ErrorKind::DigestMismatch`] instead of yielding its last chunk when
/// the content does not hash to the requested digest.
pub struct Blob {
    /// Size announced by the registry.
    pub size: u64,
    /// The verified body.
    pub stream: BlobStream,
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob").field("size", &self.size).finish()
    }
}

/// A manifest as fetched, with the registry's `ETag` for conditional updates.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    /// The manifest, verified against the requested or announced digest.
    pub manifest: Manifest,
    /// `ETag` response header, when the registry sent one.
    pub etag: Option<String>,
}

/// A condition for a manifest PUT, for read-modify-write of fallback indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditional.
    None,
    /// Only if the current content still has this `ETag`.
    IfMatch(String),
    /// Only if nothing is stored under the reference yet.
    IfNoneMatch,
}

/// What a manifest PUT told us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutManifestOutcome {
    /// True when the registry answered `OCI-Subject` with the manifest's
    /// subject digest: it indexed the referrer itself.
    pub subject_indexed: bool,
}

/// Whether a repository serves the referrers API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReferrersSupport {
    /// Not known yet.
    Unknown,
    /// `GET /v2/<name>/referrers/<digest>` works.
    Supported,
    /// Only the tag schema works.
    Unsupported,
}

/// The registry port. Every method names the repository it works on, so one
/// adapter instance serves a whole registry and shares auth, limits and
/// caches between repositories.
#[async_trait]
pub trait Registry: Send + Sync {
    /// A name for messages: the registry host, or `oci:<dir>`.
    fn name(&self) -> &str;

    /// True for an OCI layout directory: the engine keeps fallback tags
    /// there and lists every manifest in `index.json`.
    fn is_layout(&self) -> bool {
        false
    }

    /// The descriptor of a manifest, or `None` when absent.
    async fn manifest_head(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Descriptor>, RegistryError>;

    /// A manifest's exact bytes, verified, or `None` when absent.
    async fn manifest_fetch(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<FetchedManifest>, RegistryError>;

    /// Stores a manifest's exact bytes under a tag or its digest.
    async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        manifest: &Manifest,
        precondition: Precondition,
    ) -> Result<PutManifestOutcome, RegistryError>;

    /// The size of a blob, or `None` when absent.
    async fn blob_head(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError>;

    /// Opens a blob for streaming; absent blobs are [`ErrorKind::NotFound`].
    async fn blob_get(&self, repo: &RepoName, digest: &Digest) -> Result<Blob, RegistryError>;

    /// Uploads a blob from a stream. The blob becomes visible only when all of
    /// it arrived and matched `desc.digest`; on any error nothing is visible.
    async fn blob_put(
        &self,
        repo: &RepoName,
        desc: &Descriptor,
        body: BlobStream,
    ) -> Result<(), RegistryError>;

    /// [`Registry::blob_put`] for a body already verified against `desc`:
    /// a [`Registry::blob_get`] stream of `desc.digest` whose announced size
    /// the caller compared with `desc.size`. That stream withholds its last
    /// chunk unless the bytes match, so an adapter need not hash them again.
    async fn blob_put_verified(
        &self,
        repo: &RepoName,
        desc: &Descriptor,
        body: BlobStream,
    ) -> Result<(), RegistryError> {
        self.blob_put(repo, desc, body).await
    }

    /// Mounts a blob from another repository of the same registry. `Ok(false)`
    /// means the registry declined; the caller then uploads.
    async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, RegistryError>;

    /// Deletes a manifest reference (spec-notes §1.6): a tag only untags
    /// (where the registry can), a digest removes the manifest and, on most
    /// registries, every tag pointing at it. `Ok(false)` when nothing was
    /// there. Adapters that cannot delete keep this default, an error
    /// naming the registry.
    async fn manifest_delete(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<bool, RegistryError> {
        Err(RegistryError::new(
            self.name().to_string(),
            repo.as_str(),
            Operation::ManifestDelete,
            Some(reference.to_string()),
            ErrorKind::Status {
                status: 405,
                codes: vec!["UNSUPPORTED".into()],
                message: "this store cannot delete manifests".into(),
                retry_after: None,
            },
        ))
    }

    /// All tags of a repository (every page).
    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, RegistryError>;

    /// Referrers of `subject` through the referrers API (every page,
    /// unfiltered), or `None` when this repository has no referrers API.
    /// Fallback tags are read by the caller with [`Registry::manifest_fetch`].
    async fn referrers_api(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError>;

    /// Whether the repository serves the referrers API, probing once when
    /// unknown and honouring any configured override.
    async fn referrers_support(&self, repo: &RepoName) -> Result<ReferrersSupport, RegistryError>;

    /// The manifest, without its `ETag`.
    async fn manifest_get(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Manifest>, RegistryError> {
        Ok(self
            .manifest_fetch(repo, reference)
            .await?
            .map(|f| f.manifest))
    }
}
