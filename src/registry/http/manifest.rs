//! Manifests: HEAD, GET (size-capped, digest-verified) and PUT of exact
//! bytes (spec-notes §1.4, §1.5, §2.6).

use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use super::{Ctx, HttpRegistry, ReadError, ReqBody, header_str, read_limited};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::media_type::{MANIFEST_ACCEPT, essence};
use crate::oci::{Algorithm, Descriptor, Digest, Manifest, ManifestError, Reference, RepoName};
use crate::registry::{
    ErrorKind, FetchedManifest, Operation, Precondition, PutManifestOutcome, RegistryError,
};

/// Extra reads of a manifest whose bytes did not match their digest.
const CORRUPT_MANIFEST_RETRIES: u32 = 2;

fn accept_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
    h
}

impl HttpRegistry {
    fn manifest_path(repo: &RepoName, reference: &Reference) -> String {
        format!("/v2/{repo}/manifests/{reference}")
    }

    /// The `Docker-Content-Digest` header, parsed; a malformed one is an error.
    fn content_digest(
        &self,
        ctx: &Ctx,
        headers: &HeaderMap,
    ) -> Result<Option<Digest>, RegistryError> {
        match header_str(headers, "docker-content-digest") {
            None => Ok(None),
            Some(v) => v.trim().parse::<Digest>().map(Some).map_err(|_| {
                self.err(
                    ctx,
                    ErrorKind::InvalidResponse("malformed Docker-Content-Digest header".into()),
                )
            }),
        }
    }

    pub(super) async fn manifest_head_impl(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Descriptor>, RegistryError> {
        let ctx = Ctx::new(
            Operation::ManifestHead,
            repo,
            Some(reference.to_string()),
            false,
        );
        let url = self.url(&ctx, &Self::manifest_path(repo, reference))?;
        let head = self
            .with_retry(|| async {
                let resp = self
                    .send(
                        &ctx,
                        Method::HEAD,
                        url.clone(),
                        accept_headers(),
                        ReqBody::Empty,
                    )
                    .await?;
                match resp.status() {
                    s if s.is_success() => {
                        let h = resp.headers();
                        let media_type =
                            header_str(h, "content-type").map(|c| essence(c).to_string());
                        let size = header_str(h, "content-length")
                            .and_then(|v| v.trim().parse::<u64>().ok());
                        let digest = self.content_digest(&ctx, h)?;
                        Ok(Some((media_type, digest, size)))
                    }
                    StatusCode::NOT_FOUND => Ok(None),
                    _ => Err(self.status_error(&ctx, resp).await),
                }
            })
            .await?;
        let Some((media_type, header_digest, size)) = head else {
            return Ok(None);
        };
        let digest = match (reference, header_digest) {
            (Reference::Digest(d), Some(h)) if h.algorithm() == d.algorithm() && &h != d => {
                return Err(self.err(
                    &ctx,
                    ErrorKind::DigestMismatch {
                        expected: d.clone(),
                        actual: h,
                    },
                ));
            }
            (Reference::Digest(d), _) => Some(d.clone()),
            (Reference::Tag(_), h) => h,
        };
        match (media_type.filter(|m| !m.is_empty()), digest, size) {
            (Some(mt), Some(d), Some(size)) => Ok(Some(Descriptor::new(mt, d, size))),
            // Incomplete HEAD (older registries): fall back to a verified GET.
            _ => Ok(self
                .manifest_fetch_impl(repo, reference)
                .await?
                .map(|f| f.manifest.descriptor())),
        }
    }

    pub(super) async fn manifest_fetch_impl(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        let ctx = Ctx::new(
            Operation::ManifestGet,
            repo,
            Some(reference.to_string()),
            false,
        );
        let url = self.url(&ctx, &Self::manifest_path(repo, reference))?;
        // Bytes that do not match their digest were most likely damaged in
        // transit; a manifest is small and buffered, so reading it again is
        // cheap and safe. A registry that keeps serving them still fails.
        let mut corrupted = 0;
        loop {
            match self.manifest_get_verified(&ctx, &url, reference).await {
                Err(e)
                    if matches!(e.kind, ErrorKind::DigestMismatch { .. })
                        && corrupted < CORRUPT_MANIFEST_RETRIES =>
                {
                    corrupted += 1;
                    tracing::debug!(registry = %self.name, repo = %e.repo, error = %e.kind, "Manifest arrived corrupted; reading it again.");
                    self.count_retry(e.op, Duration::ZERO);
                }
                result => return result,
            }
        }
    }

    /// One manifest GET (retried on transient failures), verified against
    /// the requested digest or the announced `Docker-Content-Digest`.
    async fn manifest_get_verified(
        &self,
        ctx: &Ctx,
        url: &Url,
        reference: &Reference,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        self.with_retry(|| async {
            let resp = self
                .send(
                    ctx,
                    Method::GET,
                    url.clone(),
                    accept_headers(),
                    ReqBody::Empty,
                )
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if resp.status() != StatusCode::OK {
                return Err(self.status_error(ctx, resp).await);
            }
            let headers = resp.headers().clone();
            let content_type = header_str(&headers, "content-type").map(str::to_string);
            let etag = header_str(&headers, "etag").map(str::to_string);
            let announced = self.content_digest(ctx, &headers)?;
            let expected = match reference {
                Reference::Digest(d) => Some(d.clone()),
                Reference::Tag(_) => announced,
            };
            // The cap applies before buffering: a registry (or attacker)
            // cannot make us hold more than MAX_MANIFEST_SIZE.
            let bytes = read_limited(resp, MAX_MANIFEST_SIZE)
                .await
                .map_err(|e| match e {
                    ReadError::TooLarge(size) => self.err(
                        ctx,
                        ErrorKind::Manifest(ManifestError::TooLarge {
                            size,
                            limit: MAX_MANIFEST_SIZE,
                        }),
                    ),
                    ReadError::Transport(k) => self.err(ctx, k),
                })?;
            let algorithm = expected
                .as_ref()
                .map_or(Algorithm::Sha256, Digest::algorithm);
            let manifest = Manifest::parse_with(bytes.clone(), content_type.as_deref(), algorithm)
                .map_err(|e| {
                    // A parse failure of corrupted bytes is a digest problem.
                    if let Some(exp) = &expected
                        && !exp.matches(&bytes)
                    {
                        return self.err(
                            ctx,
                            ErrorKind::DigestMismatch {
                                expected: exp.clone(),
                                actual: Digest::compute(exp.algorithm(), &bytes),
                            },
                        );
                    }
                    self.err(ctx, ErrorKind::Manifest(e))
                })?;
            if let Some(exp) = expected
                && manifest.digest() != &exp
            {
                return Err(self.err(
                    ctx,
                    ErrorKind::DigestMismatch {
                        expected: exp,
                        actual: manifest.digest().clone(),
                    },
                ));
            }
            Ok(Some(FetchedManifest { manifest, etag }))
        })
        .await
    }

    pub(super) async fn manifest_put_impl(
        &self,
        repo: &RepoName,
        reference: &Reference,
        manifest: &Manifest,
        precondition: Precondition,
    ) -> Result<PutManifestOutcome, RegistryError> {
        let ctx = Ctx::new(
            Operation::ManifestPut,
            repo,
            Some(reference.to_string()),
            true,
        );
        if let Reference::Digest(d) = reference
            && d != manifest.digest()
            && !d.matches(manifest.bytes())
        {
            return Err(self.err(
                &ctx,
                ErrorKind::DigestMismatch {
                    expected: d.clone(),
                    actual: manifest.digest().clone(),
                },
            ));
        }
        let url = self.url(&ctx, &Self::manifest_path(repo, reference))?;
        let mut headers = HeaderMap::new();
        let content_type = HeaderValue::from_str(manifest.media_type()).map_err(|_| {
            self.err(
                &ctx,
                ErrorKind::InvalidResponse("manifest media type is not a header value".into()),
            )
        })?;
        headers.insert(header::CONTENT_TYPE, content_type);
        match &precondition {
            Precondition::None => {}
            Precondition::IfMatch(etag) => {
                let v = HeaderValue::from_str(etag).map_err(|_| {
                    self.err(
                        &ctx,
                        ErrorKind::InvalidResponse("ETag is not a header value".into()),
                    )
                })?;
                headers.insert(header::IF_MATCH, v);
            }
            Precondition::IfNoneMatch => {
                headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
            }
        }
        let resp = self
            .with_retry(|| async {
                let resp = self
                    .send(
                        &ctx,
                        Method::PUT,
                        url.clone(),
                        headers.clone(),
                        ReqBody::Bytes(manifest.bytes().clone()),
                    )
                    .await?;
                if resp.status().is_success() {
                    Ok(resp)
                } else {
                    Err(self.status_error(&ctx, resp).await)
                }
            })
            .await?;
        // The registry must store our exact bytes; a different digest means
        // it rewrote them and every signature on them would be orphaned.
        if let Some(stored) = self.content_digest(&ctx, resp.headers())?
            && !stored.matches(manifest.bytes())
        {
            return Err(self.err(
                &ctx,
                ErrorKind::InvalidResponse(format!(
                    "registry reports the stored manifest as {stored}, but its bytes hash to {}",
                    manifest.digest()
                )),
            ));
        }
        let subject_header = match (
            manifest.subject(),
            header_str(resp.headers(), "oci-subject"),
        ) {
            (Some(subject), Some(v)) => v.trim() == subject.digest.to_string(),
            _ => false,
        };
        // The header alone is not trusted (Docker Hub 2024 sent it without
        // serving the API): the endpoint confirms it once per repository.
        let subject_indexed = subject_header && self.subject_indexing_confirmed(repo).await;
        Ok(PutManifestOutcome { subject_indexed })
    }
}
