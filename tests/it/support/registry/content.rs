//! Manifest and blob handlers.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use super::http::{
    Sh, enc, err, header, not_found, oci_error, percent_decode, plain_404, query_get, query_pairs,
    read_body, reply,
};
use super::store;
use super::{Shared, lock};

fn etag_matches(list: &str, digest: Option<&str>) -> bool {
    list.split(',').map(str::trim).any(|t| {
        if t == "*" {
            return digest.is_some();
        }
        let t = t.strip_prefix("W/").unwrap_or(t).trim_matches('"');
        digest == Some(t)
    })
}

fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let values: Vec<&str> = headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return true;
    }
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or_default().trim())
        .any(|t| t == media_type || t == "*/*")
}

pub(super) fn manifest_get(
    sh: &Shared,
    name: &str,
    reference: &str,
    h: &HeaderMap,
    head: bool,
) -> Response {
    if store::is_digest_like(reference) && !store::valid_digest(reference) {
        return err(400, "DIGEST_INVALID", "invalid digest");
    }
    let found = lock(&sh.store).manifest(name, reference);
    let Some((digest, mt, bytes)) = found else {
        return not_found(sh, name, "MANIFEST_UNKNOWN", "manifest unknown");
    };
    if !accepts(h, &mt) {
        return err(
            404,
            "MANIFEST_UNKNOWN",
            "manifest found, but the Accept header does not allow its media type",
        );
    }
    let mut headers = vec![
        ("content-type", mt),
        ("docker-content-digest", digest.clone()),
        ("content-length", bytes.len().to_string()),
    ];
    if sh.options.etags {
        headers.push(("etag", format!("\"{digest}\"")));
    }
    if let Some((limit, remaining)) = sh.options.ratelimit {
        headers.push(("ratelimit-limit", format!("{limit};w=21600")));
        headers.push(("ratelimit-remaining", format!("{remaining};w=21600")));
        headers.push(("docker-ratelimit-source", "127.0.0.1".into()));
    }
    if sh.options.etags
        && header(h, "if-none-match").is_some_and(|v| etag_matches(v, Some(&digest)))
    {
        headers.retain(|(k, _)| *k != "content-length");
        return reply(304, &headers, Body::empty());
    }
    reply(200, &headers, if head { Bytes::new() } else { bytes })
}

pub(super) async fn manifest_put(
    sh: &Shared,
    name: &str,
    reference: &str,
    req: Request,
) -> Response {
    let h = req.headers().clone();
    let bytes = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if bytes.len() > store::MAX_MANIFEST {
        return err(413, "MANIFEST_INVALID", "manifest exceeds 4 MiB");
    }
    let content_type = header(&h, "content-type")
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_string();
    let (digest, tag) = if store::is_digest_like(reference) {
        if !store::valid_digest(reference) {
            return err(400, "DIGEST_INVALID", "invalid digest");
        }
        match store::digest_with_alg_of(reference, &bytes) {
            Some(d) if d == reference => (d, None),
            Some(_) => {
                return err(
                    400,
                    "DIGEST_INVALID",
                    "manifest digest does not match the URL",
                );
            }
            None => return err(400, "DIGEST_INVALID", "unsupported digest algorithm"),
        }
    } else {
        if !store::valid_tag(reference) {
            return err(400, "TAG_INVALID", "invalid tag");
        }
        (store::sha256_digest(&bytes), Some(reference))
    };
    let mut st = lock(&sh.store);
    let parsed = match store::validate_manifest(st.repo(name), &content_type, &bytes) {
        Ok(v) => v,
        Err(e) => return oci_error(&e),
    };
    if sh.options.etags {
        let current = st.manifest(name, reference).map(|(d, _, _)| d);
        let failed = header(&h, "if-match").is_some_and(|v| !etag_matches(v, current.as_deref()))
            || header(&h, "if-none-match").is_some_and(|v| etag_matches(v, current.as_deref()));
        if failed {
            return err(412, "PRECONDITION_FAILED", "precondition failed");
        }
    }
    st.put_manifest(name, &digest, tag, &content_type, bytes);
    drop(st);
    let mut headers = vec![
        (
            "location",
            sh.location(&format!("/v2/{name}/manifests/{digest}")),
        ),
        ("docker-content-digest", digest),
    ];
    if (sh.referrers_api.load(Ordering::SeqCst)
        || sh.options.personality.claims_subject_without_api())
        && let Some(s) = parsed
            .get("subject")
            .and_then(|s| s.get("digest"))
            .and_then(Value::as_str)
    {
        headers.push(("oci-subject", s.to_string()));
    }
    reply(201, &headers, Body::empty())
}

pub(super) fn manifest_delete(sh: &Shared, name: &str, reference: &str) -> Response {
    if sh.options.refuse_tag_delete && !store::is_digest_like(reference) {
        return err(405, "UNSUPPORTED", "the operation is unsupported");
    }
    if lock(&sh.store).delete_manifest(name, reference) {
        reply(202, &[], Body::empty())
    } else {
        not_found(sh, name, "MANIFEST_UNKNOWN", "manifest unknown")
    }
}

// ---------------------------------------------------------------- blobs

/// Serve blob bytes with optional `Range: bytes=a-b` support.
fn serve_blob(digest: &str, bytes: Bytes, h: &HeaderMap, head: bool) -> Response {
    let total = bytes.len();
    let mut headers = vec![
        ("content-type", "application/octet-stream".to_string()),
        ("docker-content-digest", digest.to_string()),
        ("etag", format!("\"{digest}\"")),
        ("accept-ranges", "bytes".into()),
    ];
    if let Some(range) = header(h, "range") {
        let parsed = range.strip_prefix("bytes=").and_then(|r| {
            let (a, b) = r.split_once('-')?;
            if a.is_empty() {
                let n: usize = b.parse().ok()?;
                Some((total.saturating_sub(n), total.checked_sub(1)?))
            } else {
                let a: usize = a.parse().ok()?;
                let b: usize = if b.is_empty() {
                    total.checked_sub(1)?
                } else {
                    b.parse().ok()?
                };
                Some((a, b.min(total.checked_sub(1)?)))
            }
        });
        return match parsed {
            Some((a, b)) if a <= b && a < total => {
                headers.push(("content-range", format!("bytes {a}-{b}/{total}")));
                headers.push(("content-length", (b - a + 1).to_string()));
                let body = if head {
                    Bytes::new()
                } else {
                    bytes.slice(a..=b)
                };
                reply(206, &headers, body)
            }
            _ => reply(
                416,
                &[("content-range", format!("bytes */{total}"))],
                Body::empty(),
            ),
        };
    }
    headers.push(("content-length", total.to_string()));
    reply(200, &headers, if head { Bytes::new() } else { bytes })
}

pub(super) fn blob_get(
    sh: &Shared,
    name: &str,
    digest: &str,
    h: &HeaderMap,
    head: bool,
) -> Response {
    if !store::valid_digest(digest) {
        return err(400, "DIGEST_INVALID", "invalid digest");
    }
    if head && sh.options.lie_blob_head_size {
        let size = lock(&sh.store).blob(name, digest).map_or(0, |b| b.len()) + 1;
        let headers = [
            ("docker-content-digest", digest.to_string()),
            ("content-length", size.to_string()),
        ];
        return reply(200, &headers, Bytes::new());
    }
    let Some(bytes) = lock(&sh.store).blob(name, digest) else {
        return not_found(sh, name, "BLOB_UNKNOWN", "blob unknown to registry");
    };
    if let (Some(bh), false) = (&sh.blob_host, head) {
        let url = format!("http://{bh}/_blobstore/{digest}?repo={}", enc(name));
        return reply(307, &[("location", url)], Body::empty());
    }
    if sh.options.ignore_range {
        return serve_blob(digest, bytes, &HeaderMap::new(), head);
    }
    serve_blob(digest, bytes, h, head)
}

pub(super) async fn blob_store_handle(sh: Sh, req: Request) -> Response {
    if req.headers().contains_key("authorization") {
        // Like S3 behind ECR: a forwarded registry credential is refused.
        return Response::builder()
            .status(400)
            .header("content-type", "application/xml")
            .body(Body::from(
                "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
            ))
            .unwrap();
    }
    let q = query_pairs(req.uri().query());
    let digest = req
        .uri()
        .path()
        .strip_prefix("/_blobstore/")
        .map(percent_decode)
        .unwrap_or_default();
    let repo = query_get(&q, "repo").unwrap_or_default();
    let head = req.method() == Method::HEAD;
    let Some(bytes) = lock(&sh.store).blob(repo, &digest) else {
        return plain_404();
    };
    serve_blob(&digest, bytes, req.headers(), head)
}

pub(super) fn blob_delete(sh: &Shared, name: &str, digest: &str) -> Response {
    if !store::valid_digest(digest) {
        return err(400, "DIGEST_INVALID", "invalid digest");
    }
    if lock(&sh.store).delete_blob(name, digest) {
        reply(202, &[], Body::empty())
    } else {
        not_found(sh, name, "BLOB_UNKNOWN", "blob unknown to registry")
    }
}
