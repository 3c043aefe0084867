//! Choosing an adapter for a location: the HTTP adapter for a registry
//! host, the layout adapter for an `oci:<dir>` directory.

use std::sync::Arc;

use async_trait::async_trait;

use super::http::{HttpRegistry, HttpSettings};
use super::layout::LayoutRegistry;
use super::{
    Blob, BlobStream, FetchedManifest, Precondition, PutManifestOutcome, ReferrersSupport,
    Registry, RegistryError,
};
use crate::oci::{Descriptor, Digest, Manifest, Reference, RepoName};

/// The adapter for `location`: [`HttpRegistry`] for a registry (with
/// `http`), a [`LayoutRegistry`] for an OCI layout directory whose referrer
/// listing is its subject scan (see [`ScanningLayout`]).
pub fn open(
    location: &crate::oci::Location,
    http: &HttpSettings,
) -> Result<Arc<dyn Registry>, RegistryError> {
    Ok(match location {
        crate::oci::Location::Registry(host) => Arc::new(HttpRegistry::new(host, http.clone())?),
        crate::oci::Location::Layout(dir) => {
            Arc::new(ScanningLayout(LayoutRegistry::open(dir.clone())))
        }
    })
}

/// A layout whose [`Registry::referrers_api`] answers with
/// [`LayoutRegistry::referrers_by_scan`], so readers find referrers that
/// only sit in `index.json` (layouts written by oras-go keep no fallback
/// tags). [`Registry::referrers_support`] still says `Unsupported`: writers
/// keep maintaining fallback tags in the layout (spec notes §7).
pub struct ScanningLayout(pub LayoutRegistry);

#[async_trait]
impl Registry for ScanningLayout {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn is_layout(&self) -> bool {
        true
    }

    async fn manifest_head(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Descriptor>, RegistryError> {
        self.0.manifest_head(repo, reference).await
    }

    async fn manifest_fetch(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        self.0.manifest_fetch(repo, reference).await
    }

    async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        manifest: &Manifest,
        precondition: Precondition,
    ) -> Result<PutManifestOutcome, RegistryError> {
        self.0
            .manifest_put(repo, reference, manifest, precondition)
            .await
    }

    async fn blob_head(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        self.0.blob_head(repo, digest).await
    }

    async fn blob_get(&self, repo: &RepoName, digest: &Digest) -> Result<Blob, RegistryError> {
        self.0.blob_get(repo, digest).await
    }

    async fn blob_put(
        &self,
        repo: &RepoName,
        desc: &Descriptor,
        body: BlobStream,
    ) -> Result<(), RegistryError> {
        self.0.blob_put(repo, desc, body).await
    }

    async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, RegistryError> {
        self.0.blob_mount(repo, digest, from).await
    }

    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, RegistryError> {
        self.0.tags(repo).await
    }

    async fn referrers_api(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        match self.0.referrers_by_scan(repo, subject).await {
            Ok(found) => Ok(Some(found)),
            // A directory that is not a layout (yet) has no referrers.
            Err(e) if e.is_not_found() => Ok(Some(Vec::new())),
            Err(e) => Err(e),
        }
    }

    async fn referrers_support(&self, repo: &RepoName) -> Result<ReferrersSupport, RegistryError> {
        self.0.referrers_support(repo).await
    }
}
