//! The [`Registry`] port implemented by [`HttpRegistry`]: each call goes
//! to its API family (`blob`, `manifest`, `tags`, `referrers`).

use std::time::Instant;

use async_trait::async_trait;

use super::blob::Hashing;
use super::{HttpRegistry, lock};
use crate::oci::{Descriptor, Digest, Manifest, Reference, RepoName};
use crate::registry::{
    Blob, BlobStream, FetchedManifest, Precondition, PutManifestOutcome, ReferrersSupport,
    Registry, RegistryError,
};

impl HttpRegistry {
    /// The cached referrers verdict of a repository, if still fresh.
    pub(super) fn cached_referrers(&self, repo: &str) -> Option<ReferrersSupport> {
        let cache = lock(&self.referrers_cache);
        let (v, at) = cache.get(repo)?;
        (at.elapsed() < self.settings.referrers_cache_ttl).then_some(*v)
    }

    pub(super) fn cache_referrers(&self, repo: &str, verdict: ReferrersSupport) {
        lock(&self.referrers_cache).insert(repo.to_string(), (verdict, Instant::now()));
    }
}

#[async_trait]
impl Registry for HttpRegistry {
    fn name(&self) -> &str {
        &self.name
    }

    async fn manifest_head(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Descriptor>, RegistryError> {
        self.manifest_head_impl(repo, reference).await
    }

    async fn manifest_fetch(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        self.manifest_fetch_impl(repo, reference).await
    }

    async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        manifest: &Manifest,
        precondition: Precondition,
    ) -> Result<PutManifestOutcome, RegistryError> {
        self.manifest_put_impl(repo, reference, manifest, precondition)
            .await
    }

    async fn blob_head(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        self.blob_head_impl(repo, digest).await
    }

    async fn blob_get(&self, repo: &RepoName, digest: &Digest) -> Result<Blob, RegistryError> {
        self.blob_get_impl(repo, digest).await
    }

    async fn blob_put(
        &self,
        repo: &RepoName,
        desc: &Descriptor,
        body: BlobStream,
    ) -> Result<(), RegistryError> {
        self.blob_put_impl(repo, desc, body, Hashing::Verify).await
    }

    async fn blob_put_verified(
        &self,
        repo: &RepoName,
        desc: &Descriptor,
        body: BlobStream,
    ) -> Result<(), RegistryError> {
        self.blob_put_impl(repo, desc, body, Hashing::AlreadyVerified)
            .await
    }

    async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, RegistryError> {
        self.blob_mount_impl(repo, digest, from).await
    }

    async fn manifest_delete(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<bool, RegistryError> {
        self.manifest_delete_impl(repo, reference).await
    }

    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, RegistryError> {
        self.tags_impl(repo).await
    }

    async fn referrers_api(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        self.referrers_api_impl(repo, subject).await
    }

    async fn referrers_support(&self, repo: &RepoName) -> Result<ReferrersSupport, RegistryError> {
        self.referrers_support_impl(repo).await
    }
}
