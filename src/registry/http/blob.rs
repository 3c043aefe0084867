//! Blobs: HEAD, streamed GET (digest-verified), streamed upload (monolithic
//! or chunked) and cross-repository mount (spec-notes §1.7, §1.8).
//!
//! Blob bodies are never buffered whole: GET hands out the response stream
//! wrapped by [`crate::registry::stream::verify`], PUT streams the caller's
//! body into the request. A failed upload cancels its session, so nothing
//! becomes visible; it is not replayed (a `BlobStream` cannot be rewound),
//! the caller re-opens its source and calls again.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::{
    Ctx, HttpRegistry, ReqBody, UploadMode, header_str, lock, resume, sanitize, throughput,
    transport_kind,
};
use crate::oci::{Descriptor, Digest, RepoName};
use crate::registry::stream::{StreamContext, verify};
use crate::registry::{Blob, BlobStream, ErrorKind, Operation, RegistryError};

/// Keeps the first error a stream yields, so it can be reported after
/// reqwest has wrapped it into a transport error.
struct Capture {
    inner: BlobStream,
    slot: Arc<Mutex<Option<RegistryError>>>,
}

impl Stream for Capture {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err(e))) => {
                let text = e.to_string();
                let kind = ErrorKind::Transport {
                    message: text,
                    retryable: e.is_retryable(),
                };
                let copy = RegistryError::new(
                    e.registry.clone(),
                    e.repo.clone(),
                    e.op,
                    e.target.clone(),
                    kind,
                );
                let mut slot = lock(&self.slot);
                if slot.is_none() {
                    *slot = Some(e);
                }
                Poll::Ready(Some(Err(copy)))
            }
            other => other,
        }
    }
}

/// Whether an upload hashes the body it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hashing {
    /// Any caller's body: verified here, so wrong bytes never complete.
    Verify,
    /// A body that is a verifying [`Blob`] stream of the same digest and
    /// size: hashing it twice would only cost CPU.
    AlreadyVerified,
}

/// Where an upload goes next: `loc` with `digest` added to its query.
fn with_digest(mut loc: Url, digest: &Digest) -> Url {
    // `query_pairs_mut` keeps the existing (possibly signed) query and
    // appends with `&`.
    loc.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    loc
}

impl HttpRegistry {
    fn blob_path(repo: &RepoName, digest: &Digest) -> String {
        format!("/v2/{repo}/blobs/{digest}")
    }

    pub(super) async fn blob_head_impl(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let ctx = Ctx::new(Operation::BlobHead, repo, Some(digest.to_string()), false);
        let url = self.url(&ctx, &Self::blob_path(repo, digest))?;
        self.with_retry(|| async {
            let resp = self
                .send(
                    &ctx,
                    Method::HEAD,
                    url.clone(),
                    HeaderMap::new(),
                    ReqBody::Empty,
                )
                .await?;
            match resp.status() {
                s if s.is_success() => {
                    let size = header_str(resp.headers(), "content-length")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .ok_or_else(|| {
                            self.err(
                                &ctx,
                                ErrorKind::InvalidResponse(
                                    "blob HEAD without Content-Length".into(),
                                ),
                            )
                        })?;
                    Ok(Some(size))
                }
                StatusCode::NOT_FOUND => Ok(None),
                _ => Err(self.status_error(&ctx, resp).await),
            }
        })
        .await
    }

    pub(super) async fn blob_get_impl(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Blob, RegistryError> {
        let ctx = Ctx::new(Operation::BlobGet, repo, Some(digest.to_string()), false);
        let url = self.url(&ctx, &Self::blob_path(repo, digest))?;
        // Getting the response is retried here; a body cut short is
        // resumed by the stream (see `resume`).
        let resp = self
            .with_retry(|| async {
                let resp = self
                    .send(
                        &ctx,
                        Method::GET,
                        url.clone(),
                        HeaderMap::new(),
                        ReqBody::Empty,
                    )
                    .await?;
                if resp.status() == StatusCode::OK {
                    Ok(resp)
                } else {
                    Err(self.status_error(&ctx, resp).await)
                }
            })
            .await?;
        // Storage backends behind redirects may stream without a length;
        // then the size comes from a HEAD (the digest is verified anyway).
        let size = match resp.content_length() {
            Some(n) => n,
            None => self.blob_head_impl(repo, digest).await?.ok_or_else(|| {
                self.err(
                    &ctx,
                    ErrorKind::InvalidResponse("blob GET without a size".into()),
                )
            })?,
        };
        let first = self.blob_body(&ctx, resp);
        // Cut connections resume with `Range` from the byte reached; the
        // digest check below still covers the whole blob.
        let body = resume::resuming(self.handle(), ctx.clone(), url, size, first);
        let stream = verify(
            body,
            digest.clone(),
            Some(size),
            StreamContext {
                registry: self.name.clone(),
                repo: ctx.repo.clone(),
            },
        );
        Ok(Blob { size, stream })
    }

    /// The body of a blob GET response as a blob stream: transport errors
    /// named after `ctx`, and the minimum throughput enforced.
    pub(super) fn blob_body(&self, ctx: &Ctx, resp: reqwest::Response) -> BlobStream {
        let registry = self.name.clone();
        let repo = ctx.repo.clone();
        let target = ctx.target.clone();
        let fail = move |kind: ErrorKind| {
            RegistryError::new(
                registry.clone(),
                repo.clone(),
                Operation::BlobGet,
                target.clone(),
                kind,
            )
        };
        let body: BlobStream = Box::pin(resp.bytes_stream().map({
            let fail = fail.clone();
            move |r| r.map_err(|e| fail(transport_kind(e)))
        }));
        throughput::enforce(
            body,
            self.settings.min_blob_bytes_per_second,
            self.settings.blob_throughput_window,
            fail,
        )
    }

    /// `POST /v2/<name>/blobs/uploads/` (retried: nothing is sent yet);
    /// returns the session URL.
    async fn start_upload(&self, ctx: &Ctx, repo: &RepoName) -> Result<Url, RegistryError> {
        let url = self.url(ctx, &format!("/v2/{repo}/blobs/uploads/"))?;
        self.with_retry(|| async {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            let resp = self
                .send(ctx, Method::POST, url.clone(), headers, ReqBody::Empty)
                .await?;
            // 202 per spec; any success carrying a Location will do.
            if !resp.status().is_success() {
                return Err(self.status_error(ctx, resp).await);
            }
            self.location(ctx, &url, &resp)
        })
        .await
    }

    fn location(
        &self,
        ctx: &Ctx,
        request_url: &Url,
        resp: &reqwest::Response,
    ) -> Result<Url, RegistryError> {
        let loc = header_str(resp.headers(), "location").ok_or_else(|| {
            self.err(
                ctx,
                ErrorKind::InvalidResponse("upload response without Location".into()),
            )
        })?;
        self.resolve(ctx, request_url, loc)
    }

    /// Cancels an upload session; failures are ignored (best effort).
    async fn cancel_upload(&self, ctx: &Ctx, session: Url) {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        match self
            .send(ctx, Method::DELETE, session, headers, ReqBody::Empty)
            .await
        {
            Ok(resp) => tracing::debug!(
                registry = %self.name, repo = %ctx.repo,
                status = resp.status().as_u16(), "Upload session cancelled."
            ),
            Err(e) => tracing::debug!(error = %e, "Upload cancel failed."),
        }
    }

    pub(super) async fn blob_put_impl(
        &self,
        repo: &RepoName,
        desc: &Descriptor,
        body: BlobStream,
        hashing: Hashing,
    ) -> Result<(), RegistryError> {
        let ctx = Ctx::new(
            Operation::BlobPut,
            repo,
            Some(desc.digest.to_string()),
            true,
        );
        let session = self.start_upload(&ctx, repo).await?;
        // Upstream errors are captured before verification, verification
        // errors after it; the first kept error is what the caller sees.
        let upstream = Arc::new(Mutex::new(None));
        let checked = Arc::new(Mutex::new(None));
        let captured: BlobStream = Box::pin(Capture {
            inner: body,
            slot: upstream.clone(),
        });
        let verified = match hashing {
            Hashing::Verify => verify(
                captured,
                desc.digest.clone(),
                Some(desc.size),
                StreamContext {
                    registry: self.name.clone(),
                    repo: ctx.repo.clone(),
                },
            ),
            Hashing::AlreadyVerified => captured,
        };
        let body: BlobStream = Box::pin(Capture {
            inner: verified,
            slot: checked.clone(),
        });
        let result = match &self.settings.upload {
            UploadMode::Monolithic => self.put_monolithic(&ctx, session.clone(), desc, body).await,
            UploadMode::Chunked { chunk_size } => {
                self.put_chunked(&ctx, session.clone(), desc, body, (*chunk_size).max(1))
                    .await
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err((e, session)) => {
                if let Some(session) = session {
                    self.cancel_upload(&ctx, session).await;
                }
                if let Some(up) = lock(&upstream).take() {
                    return Err(up);
                }
                if let Some(mut own) = lock(&checked).take() {
                    // Raised by our own verification of the body being sent.
                    own.op = Operation::BlobPut;
                    return Err(own);
                }
                Err(e)
            }
        }
    }

    /// Checks the final upload response. Failures carry the session to
    /// cancel (none once the registry answered for good).
    async fn finish_upload(
        &self,
        ctx: &Ctx,
        resp: reqwest::Response,
        session: &Url,
        desc: &Descriptor,
    ) -> Result<(), (RegistryError, Option<Url>)> {
        // 201 per spec; tolerate other successes (the digest is checked).
        if !resp.status().is_success() {
            let e = self.status_error(ctx, resp).await;
            return Err((e, Some(session.clone())));
        }
        if let Some(d) = header_str(resp.headers(), "docker-content-digest")
            && d.trim() != desc.digest.to_string()
        {
            return Err((
                self.err(
                    ctx,
                    ErrorKind::InvalidResponse(format!(
                        "registry stored the blob as {}, expected {}",
                        sanitize(d),
                        desc.digest
                    )),
                ),
                None,
            ));
        }
        Ok(())
    }

    async fn put_monolithic(
        &self,
        ctx: &Ctx,
        session: Url,
        desc: &Descriptor,
        body: BlobStream,
    ) -> Result<(), (RegistryError, Option<Url>)> {
        let url = with_digest(session.clone(), &desc.digest);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(desc.size));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let resp = self
            .send(
                ctx,
                Method::PUT,
                url,
                headers,
                ReqBody::Stream(Some(reqwest::Body::wrap_stream(body))),
            )
            .await
            .map_err(|e| (e, Some(session.clone())))?;
        self.finish_upload(ctx, resp, &session, desc).await
    }

    async fn put_chunked(
        &self,
        ctx: &Ctx,
        session: Url,
        desc: &Descriptor,
        mut body: BlobStream,
        chunk_size: usize,
    ) -> Result<(), (RegistryError, Option<Url>)> {
        let mut session = session;
        let mut offset: u64 = 0;
        let mut buf = BytesMut::new();
        let mut ended = false;
        while !ended {
            // Fill one chunk (bounded memory: at most chunk_size + one read).
            while buf.len() < chunk_size {
                match body.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => return Err((e, Some(session))),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            while buf.len() >= chunk_size || (ended && !buf.is_empty()) {
                let take = buf.len().min(chunk_size);
                let chunk = buf.split_to(take).freeze();
                let end = offset + chunk.len() as u64 - 1;
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(chunk.len()));
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                let range = HeaderValue::from_str(&format!("{offset}-{end}")).map_err(|_| {
                    (
                        self.err(ctx, ErrorKind::InvalidResponse("range".into())),
                        Some(session.clone()),
                    )
                })?;
                headers.insert(header::CONTENT_RANGE, range);
                // A PATCH is never retried after a failure (the registry may
                // have appended part of it); only a 401 re-auth resends it.
                let resp = self
                    .send(
                        ctx,
                        Method::PATCH,
                        session.clone(),
                        headers,
                        ReqBody::Bytes(chunk.clone()),
                    )
                    .await
                    .map_err(|e| (e, Some(session.clone())))?;
                // 202 per spec; ECR answers 201 to intermediate PATCHes.
                if !resp.status().is_success() {
                    let e = self.status_error(ctx, resp).await;
                    return Err((e, Some(session)));
                }
                // Each response re-signs the session: always use its Location.
                session = self
                    .location(ctx, &session, &resp)
                    .map_err(|e| (e, Some(session.clone())))?;
                offset = end + 1;
            }
        }
        let url = with_digest(session.clone(), &desc.digest);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let resp = self
            .send(ctx, Method::PUT, url, headers, ReqBody::Empty)
            .await
            .map_err(|e| (e, Some(session.clone())))?;
        self.finish_upload(ctx, resp, &session, desc).await
    }

    pub(super) async fn blob_mount_impl(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, RegistryError> {
        let mut ctx = Ctx::new(Operation::BlobMount, repo, Some(digest.to_string()), true);
        // Mounting needs push on the target and pull on the source.
        ctx.scopes.push(super::auth::Scope::pull(from.as_str()));
        let mut url = self.url(&ctx, &format!("/v2/{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from.as_str());
        let outcome = self
            .with_retry(|| async {
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                let resp = self
                    .send(&ctx, Method::POST, url.clone(), headers, ReqBody::Empty)
                    .await?;
                match resp.status() {
                    StatusCode::CREATED => Ok(None),
                    StatusCode::ACCEPTED => Ok(Some(self.location(&ctx, &url, &resp)?)),
                    _ => Err(self.status_error(&ctx, resp).await),
                }
            })
            .await?;
        match outcome {
            None => Ok(true),
            Some(session) => {
                // Declined: a session was opened instead; close it so the
                // caller's upload starts clean.
                self.cancel_upload(&ctx, session).await;
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_appended_to_existing_query() {
        let d = Digest::sha256(b"x");
        let u = with_digest(
            Url::parse("http://r/v2/a/blobs/uploads/u1?_state=abc%3D").unwrap(),
            &d,
        );
        assert_eq!(
            u.as_str(),
            format!(
                "http://r/v2/a/blobs/uploads/u1?_state=abc%3D&digest=sha256%3A{}",
                d.hex()
            )
        );
        let u = with_digest(Url::parse("http://r/v2/a/blobs/uploads/u1").unwrap(), &d);
        assert_eq!(
            u.query(),
            Some(format!("digest=sha256%3A{}", d.hex()).as_str())
        );
    }
}
