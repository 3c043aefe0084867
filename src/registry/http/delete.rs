//! Manifest DELETE by tag or digest (spec-notes §1.6). Tag deletes untag on
//! OCI 1.1 registries; distribution 2.8 answers 400 `DIGEST_INVALID`, Docker
//! Hub 405: the caller decides what to do then.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use super::auth::Scope;
use super::{Ctx, HttpRegistry, ReqBody};
use crate::oci::{Reference, RepoName};
use crate::registry::{Operation, RegistryError};

impl HttpRegistry {
    pub(super) async fn manifest_delete_impl(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<bool, RegistryError> {
        let mut ctx = Ctx::new(
            Operation::ManifestDelete,
            repo,
            Some(reference.to_string()),
            true,
        );
        ctx.scopes = vec![Scope::delete(repo.as_str())];
        let url = self.url(&ctx, &format!("/v2/{repo}/manifests/{reference}"))?;
        // DELETE is idempotent, so the usual retries are safe: a repeat of a
        // delete that went through answers 404, reported as `false`.
        self.with_retry(|| async {
            let resp = self
                .send(
                    &ctx,
                    Method::DELETE,
                    url.clone(),
                    HeaderMap::new(),
                    ReqBody::Empty,
                )
                .await?;
            match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(self.status_error(&ctx, resp).await),
            }
        })
        .await
    }
}
