//! HTTP side: routing, handlers, auth enforcement, fault injection and the request log.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use bytes::Bytes;
use rand::Rng as _;
use serde_json::{Value, json};

use super::auth::{self, Access, Verdict};
use super::store::{self, OCI_INDEX, OciError};
use super::{FaultKind, LoggedRequest, RetryAfter, Shared, lock};

type Sh = Arc<Shared>;

/// The main listener's app.
pub fn router(shared: Sh) -> Router {
    Router::new()
        .fallback(main_entry)
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

/// The blob redirect target's app.
pub fn blob_router(shared: Sh) -> Router {
    Router::new()
        .fallback(blob_entry)
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

async fn main_entry(State(sh): State<Sh>, req: Request) -> Response {
    with_log_and_faults(
        sh.clone(),
        req,
        |sh, req| async move { handle(sh, req).await },
    )
    .await
}

async fn blob_entry(State(sh): State<Sh>, req: Request) -> Response {
    with_log_and_faults(sh.clone(), req, |sh, req| async move {
        blob_store_handle(sh, req).await
    })
    .await
}

// ---------------------------------------------------------------- faults and log

fn fault_is_pre(k: &FaultKind) -> bool {
    matches!(
        k,
        FaultKind::Status(_) | FaultKind::TooManyRequests(_) | FaultKind::Delay(_)
    )
}

/// Use up the first matching fault of the given class (pre-request or body).
fn take_fault(sh: &Shared, method: &str, path: &str, pre: bool, peek: bool) -> Option<FaultKind> {
    let mut faults = lock(&sh.faults);
    let i = faults.iter().position(|f| {
        f.times > 0
            && fault_is_pre(&f.kind) == pre
            && f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.contains(&f.path_contains)
    })?;
    let kind = faults[i].kind.clone();
    if !peek {
        faults[i].times -= 1;
        if faults[i].times == 0 {
            faults.remove(i);
        }
    }
    Some(kind)
}

async fn with_log_and_faults<F, Fut>(sh: Sh, req: Request, inner: F) -> Response
where
    F: FnOnce(Sh, Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let auth_scheme = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(' ').next().unwrap_or_default().to_string());

    let mut response = None;
    match take_fault(&sh, &method, &path, true, false) {
        Some(FaultKind::Status(s)) => {
            let code = match s {
                401 => "UNAUTHORIZED",
                403 => "DENIED",
                404 => "NAME_UNKNOWN",
                429 => "TOOMANYREQUESTS",
                503 => "UNAVAILABLE",
                _ => "UNKNOWN",
            };
            response = Some(oci_error(&OciError::new(s, code, "injected fault")));
        }
        Some(FaultKind::TooManyRequests(ra)) => {
            let mut r = oci_error(&OciError::new(
                429,
                "TOOMANYREQUESTS",
                "injected rate limit",
            ));
            let v = match ra {
                RetryAfter::None => None,
                RetryAfter::Seconds(s) => Some(s.to_string()),
                RetryAfter::HttpDate(t) => Some(httpdate::fmt_http_date(t)),
            };
            if let Some(v) = v {
                r.headers_mut().insert("retry-after", v.parse().unwrap());
            }
            response = Some(r);
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let response = match response {
        Some(r) => r,
        None => {
            let r = inner(sh.clone(), req).await;
            if r.status().is_success()
                && method != "HEAD"
                && take_fault(&sh, &method, &path, false, true).is_some()
            {
                body_fault(&sh, &method, &path, r).await
            } else {
                r
            }
        }
    };
    lock(&sh.log).push(LoggedRequest {
        method,
        path,
        query,
        status: response.status().as_u16(),
        auth_scheme,
    });
    response
}

async fn body_fault(sh: &Shared, method: &str, path: &str, r: Response) -> Response {
    let (mut parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    if bytes.is_empty() {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let Some(kind) = take_fault(sh, method, path, false, false) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let len = bytes.len();
    parts
        .headers
        .insert("content-length", len.to_string().parse().unwrap());
    match kind {
        FaultKind::WrongBytes => {
            let mut v = bytes.to_vec();
            v[len / 2] ^= 0xff;
            Response::from_parts(parts, Body::from(v))
        }
        FaultKind::TruncatedBody | FaultKind::ResetMidBody => {
            let half = bytes.slice(..len / 2);
            let reset = matches!(kind, FaultKind::ResetMidBody);
            // Announce the full length and send half. The pause lets hyper flush what was
            // sent (an immediate error would abort before the headers go out). Then either fail
            // the body stream (hyper aborts the connection) or end it short of Content-Length
            // (hyper closes the connection): the client sees an incomplete message.
            let stream = futures::stream::unfold(0u8, move |state| {
                let half = half.clone();
                async move {
                    match state {
                        0 => Some((Ok::<Bytes, std::io::Error>(half), 1)),
                        1 => {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            reset.then(|| {
                                let e = std::io::Error::new(
                                    std::io::ErrorKind::ConnectionReset,
                                    "injected fault",
                                );
                                (Err(e), 2)
                            })
                        }
                        _ => None,
                    }
                }
            });
            Response::from_parts(parts, Body::from_stream(stream))
        }
        _ => Response::from_parts(parts, Body::from(bytes)),
    }
}

// ---------------------------------------------------------------- response helpers

fn oci_error(e: &OciError) -> Response {
    Response::builder()
        .status(e.status)
        .header("content-type", "application/json")
        .header("docker-distribution-api-version", "registry/2.0")
        .body(Body::from(e.body()))
        .unwrap()
}

fn err(status: u16, code: &str, message: &str) -> Response {
    oci_error(&OciError::new(status, code, message))
}

/// 404 with `NAME_UNKNOWN` when the repository holds nothing at all, else with `code`.
fn not_found(sh: &Shared, name: &str, code: &str, message: &str) -> Response {
    if lock(&sh.store).repo(name).is_none() {
        err(404, "NAME_UNKNOWN", "repository name not known to registry")
    } else {
        err(404, code, message)
    }
}

fn plain_404() -> Response {
    Response::builder()
        .status(404)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(Body::from("404 page not found\n"))
        .unwrap()
}

fn reply(status: u16, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header("docker-distribution-api-version", "registry/2.0");
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(body.into()).unwrap()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Shared {
    fn location(&self, path: &str) -> String {
        if self.options.relative_locations {
            path.to_string()
        } else {
            format!("http://{}{}", self.host, path)
        }
    }
}

// ---------------------------------------------------------------- routing

enum Route {
    Ping,
    Token,
    Catalog,
    Manifest(String, String),
    Blob(String, String),
    UploadStart(String),
    Upload(String, String),
    Tags(String),
    Referrers(String, String),
    NotFound,
}

impl Route {
    fn repo(&self) -> Option<&str> {
        match self {
            Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::UploadStart(n)
            | Route::Upload(n, _)
            | Route::Tags(n)
            | Route::Referrers(n, _) => Some(n),
            _ => None,
        }
    }
}

fn route(path: &str) -> Route {
    if path == "/v2/" || path == "/v2" {
        return Route::Ping;
    }
    if path == "/token" {
        return Route::Token;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::NotFound;
    };
    if rest == "_catalog" {
        return Route::Catalog;
    }
    let segs: Vec<String> = rest.split('/').map(percent_decode).collect();
    let n = segs.len();
    let name = |k: usize| segs[..n - k].join("/");
    let last = segs[n - 1].clone();
    if n >= 3 && segs[n - 2] == "tags" && last == "list" {
        return Route::Tags(name(2));
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        return if last.is_empty() {
            Route::UploadStart(name(3))
        } else {
            Route::Upload(name(3), last)
        };
    }
    if n >= 3 && segs[n - 2] == "blobs" && last == "uploads" {
        return Route::UploadStart(name(2));
    }
    if n >= 2 && !last.is_empty() {
        let r = match segs[n - 2].as_str() {
            "blobs" => Route::Blob(name(2), last),
            "manifests" => Route::Manifest(name(2), last),
            "referrers" => Route::Referrers(name(2), last),
            _ => return Route::NotFound,
        };
        if n >= 3 {
            return r;
        }
    }
    Route::NotFound
}

// ---------------------------------------------------------------- dispatch

async fn handle(sh: Sh, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let route = route(&path);
    let method = req.method().clone();
    let q = query_pairs(req.uri().query());
    let authorization = header(req.headers(), "authorization").map(str::to_string);

    if matches!(route, Route::NotFound) {
        return plain_404();
    }
    // distribution has no such route at all: its router answers before any auth.
    if matches!(route, Route::Referrers(..)) && !sh.referrers_api.load(Ordering::SeqCst) {
        return plain_404();
    }
    if matches!(route, Route::Token) {
        return token(&sh, authorization.as_deref(), &q);
    }
    if let Some(name) = route.repo()
        && !store::valid_name(name)
    {
        return err(400, "NAME_INVALID", "invalid repository name");
    }

    if let Some(a) = &sh.options.auth {
        let read_only = method == Method::GET || method == Method::HEAD;
        let mut required = Vec::new();
        match &route {
            Route::Catalog => required.push(Access {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
            }),
            Route::Ping => {}
            r => {
                let name = r.repo().unwrap_or_default();
                required.push(if read_only {
                    Access::repo(name, &["pull"])
                } else {
                    Access::repo(name, &["pull", "push"])
                });
                if let (Route::UploadStart(_), Some(_), Some(from)) =
                    (r, query_get(&q, "mount"), query_get(&q, "from"))
                    && from != name
                    && store::valid_name(from)
                {
                    required.push(Access::repo(from, &["pull"]));
                }
            }
        }
        let verdict = auth::check(
            a,
            &lock(&sh.tokens),
            &sh.host,
            authorization.as_deref(),
            read_only,
            &required,
        );
        if let Verdict::Challenge(c) = verdict {
            let detail: Vec<Value> = required
                .iter()
                .flat_map(|a| {
                    a.actions
                        .iter()
                        .map(|x| json!({"Type": a.kind, "Name": a.name, "Action": x}))
                        .collect::<Vec<_>>()
                })
                .collect();
            let mut r = oci_error(&OciError::with_detail(
                401,
                "UNAUTHORIZED",
                "authentication required",
                Value::Array(detail),
            ));
            r.headers_mut()
                .insert("www-authenticate", c.parse().unwrap());
            return r;
        }
    }

    let m = method.as_str();
    match (route, m) {
        (Route::Ping, "GET" | "HEAD") => reply(
            200,
            &[("content-type", "application/json".into())],
            if m == "GET" { "{}" } else { "" },
        ),
        (Route::Catalog, "GET") => catalog(&sh, &q),
        (Route::Manifest(n, r), "GET" | "HEAD") => {
            manifest_get(&sh, &n, &r, req.headers(), m == "HEAD")
        }
        (Route::Manifest(n, r), "PUT") => manifest_put(&sh, &n, &r, req).await,
        (Route::Manifest(n, r), "DELETE") => manifest_delete(&sh, &n, &r),
        (Route::Blob(n, d), "GET" | "HEAD") => blob_get(&sh, &n, &d, req.headers(), m == "HEAD"),
        (Route::Blob(n, d), "DELETE") => blob_delete(&sh, &n, &d),
        (Route::UploadStart(n), "POST") => upload_start(&sh, &n, &q, req).await,
        (Route::Upload(n, id), "PATCH") => upload_patch(&sh, &n, &id, req).await,
        (Route::Upload(n, id), "PUT") => upload_put(&sh, &n, &id, &q, req).await,
        (Route::Upload(n, id), "GET") => upload_status(&sh, &n, &id),
        (Route::Upload(n, id), "DELETE") => upload_cancel(&sh, &n, &id),
        (Route::Tags(n), "GET") => tags_list(&sh, &n, &q),
        (Route::Referrers(n, d), "GET") => referrers(&sh, &n, &d, &q),
        _ => err(405, "UNSUPPORTED", "the operation is unsupported"),
    }
}

fn token(sh: &Shared, authorization: Option<&str>, q: &[(String, String)]) -> Response {
    let Some(a) = sh
        .options
        .auth
        .as_ref()
        .filter(|a| a.mode == super::AuthMode::Bearer)
    else {
        return plain_404();
    };
    let scopes: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    match auth::token_endpoint(a, &mut lock(&sh.tokens), authorization, &scopes) {
        Ok(body) => reply(200, &[("content-type", "application/json".into())], body),
        Err(s) => err(s, "UNAUTHORIZED", "invalid credentials"),
    }
}

async fn read_body(req: Request) -> Result<Bytes, Response> {
    axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|_| {
            err(
                400,
                "BLOB_UPLOAD_INVALID",
                "could not read the request body",
            )
        })
}

// ---------------------------------------------------------------- manifests

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

fn manifest_get(sh: &Shared, name: &str, reference: &str, h: &HeaderMap, head: bool) -> Response {
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

async fn manifest_put(sh: &Shared, name: &str, reference: &str, req: Request) -> Response {
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
    if sh.referrers_api.load(Ordering::SeqCst)
        && let Some(s) = parsed
            .get("subject")
            .and_then(|s| s.get("digest"))
            .and_then(Value::as_str)
    {
        headers.push(("oci-subject", s.to_string()));
    }
    reply(201, &headers, Body::empty())
}

fn manifest_delete(sh: &Shared, name: &str, reference: &str) -> Response {
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

fn blob_get(sh: &Shared, name: &str, digest: &str, h: &HeaderMap, head: bool) -> Response {
    if !store::valid_digest(digest) {
        return err(400, "DIGEST_INVALID", "invalid digest");
    }
    let Some(bytes) = lock(&sh.store).blob(name, digest) else {
        return not_found(sh, name, "BLOB_UNKNOWN", "blob unknown to registry");
    };
    if let (Some(bh), false) = (&sh.blob_host, head) {
        let url = format!("http://{bh}/_blobstore/{digest}?repo={}", enc(name));
        return reply(307, &[("location", url)], Body::empty());
    }
    serve_blob(digest, bytes, h, head)
}

async fn blob_store_handle(sh: Sh, req: Request) -> Response {
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

fn blob_delete(sh: &Shared, name: &str, digest: &str) -> Response {
    if !store::valid_digest(digest) {
        return err(400, "DIGEST_INVALID", "invalid digest");
    }
    if lock(&sh.store).delete_blob(name, digest) {
        reply(202, &[], Body::empty())
    } else {
        not_found(sh, name, "BLOB_UNKNOWN", "blob unknown to registry")
    }
}

// ---------------------------------------------------------------- uploads

fn session_headers(sh: &Shared, name: &str, id: &str, len: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "location",
            sh.location(&format!("/v2/{name}/blobs/uploads/{id}")),
        ),
        ("range", format!("0-{}", len.saturating_sub(1))),
        ("docker-upload-uuid", id.to_string()),
    ]
}

/// Verify `data` against `digest` and commit it, or explain why not.
fn commit(sh: &Shared, name: &str, digest: Option<&str>, data: Bytes) -> Response {
    let Some(digest) = digest.filter(|d| store::valid_digest(d)) else {
        return err(400, "DIGEST_INVALID", "missing or invalid digest parameter");
    };
    match store::digest_with_alg_of(digest, &data) {
        Some(d) if d == digest => {}
        Some(_) => {
            return err(
                400,
                "DIGEST_INVALID",
                "provided digest did not match uploaded content",
            );
        }
        None => return err(400, "DIGEST_INVALID", "unsupported digest algorithm"),
    }
    lock(&sh.store).put_blob(name, digest, data);
    reply(
        201,
        &[
            (
                "location",
                sh.location(&format!("/v2/{name}/blobs/{digest}")),
            ),
            ("docker-content-digest", digest.to_string()),
        ],
        Body::empty(),
    )
}

async fn upload_start(sh: &Shared, name: &str, q: &[(String, String)], req: Request) -> Response {
    if let (Some(mount), Some(from)) = (query_get(q, "mount"), query_get(q, "from"))
        && sh.mount.load(Ordering::SeqCst)
        && store::valid_digest(mount)
        && store::valid_name(from)
    {
        let mut st = lock(&sh.store);
        if let Some(b) = st.blob(from, mount) {
            st.put_blob(name, mount, b);
            return reply(
                201,
                &[
                    (
                        "location",
                        sh.location(&format!("/v2/{name}/blobs/{mount}")),
                    ),
                    ("docker-content-digest", mount.to_string()),
                ],
                Body::empty(),
            );
        }
    }
    let digest = query_get(q, "digest").map(str::to_string);
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if digest.is_some() && query_get(q, "mount").is_none() {
        // Single-POST upload.
        return commit(sh, name, digest.as_deref(), body);
    }
    if !body.is_empty() {
        return err(
            400,
            "BLOB_UPLOAD_INVALID",
            "POST without digest must not carry a body",
        );
    }
    let id = hex::encode(rand::rng().random::<[u8; 16]>());
    lock(&sh.store).uploads.insert(
        id.clone(),
        store::Upload {
            repo: name.to_string(),
            data: Vec::new(),
        },
    );
    reply(202, &session_headers(sh, name, &id, 0), Body::empty())
}

fn unknown_upload() -> Response {
    err(
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "blob upload unknown to registry",
    )
}

/// Check `Content-Range: <start>-<end>` against the session offset and chunk length.
fn check_range(h: &HeaderMap, offset: usize, len: usize) -> Result<(), u16> {
    let Some(v) = header(h, "content-range") else {
        return Ok(());
    };
    let (a, b) = v.trim().split_once('-').ok_or(400u16)?;
    let (a, b): (usize, usize) = (
        a.parse().map_err(|_| 400u16)?,
        b.parse().map_err(|_| 400u16)?,
    );
    if a != offset {
        return Err(416);
    }
    if b + 1 < a || b + 1 - a != len {
        return Err(400);
    }
    Ok(())
}

async fn upload_patch(sh: &Shared, name: &str, id: &str, req: Request) -> Response {
    let h = req.headers().clone();
    if lock(&sh.store)
        .uploads
        .get(id)
        .is_none_or(|u| u.repo != name)
    {
        return unknown_upload();
    }
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut st = lock(&sh.store);
    let Some(u) = st.uploads.get_mut(id).filter(|u| u.repo == name) else {
        return unknown_upload();
    };
    match check_range(&h, u.data.len(), body.len()) {
        Ok(()) => {}
        Err(416) => {
            let hs = session_headers(sh, name, id, u.data.len());
            let mut r = err(
                416,
                "BLOB_UPLOAD_INVALID",
                "content range does not continue the upload",
            );
            for (k, v) in hs {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            return r;
        }
        Err(_) => return err(400, "BLOB_UPLOAD_INVALID", "invalid Content-Range"),
    }
    u.data.extend_from_slice(&body);
    let len = u.data.len();
    drop(st);
    reply(202, &session_headers(sh, name, id, len), Body::empty())
}

async fn upload_put(
    sh: &Shared,
    name: &str,
    id: &str,
    q: &[(String, String)],
    req: Request,
) -> Response {
    let h = req.headers().clone();
    if lock(&sh.store)
        .uploads
        .get(id)
        .is_none_or(|u| u.repo != name)
    {
        return unknown_upload();
    }
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let upload = {
        let mut st = lock(&sh.store);
        let Some(u) = st.uploads.get(id).filter(|u| u.repo == name) else {
            return unknown_upload();
        };
        if !body.is_empty() {
            match check_range(&h, u.data.len(), body.len()) {
                Ok(()) => {}
                Err(416) => {
                    return err(
                        416,
                        "BLOB_UPLOAD_INVALID",
                        "content range does not continue the upload",
                    );
                }
                Err(_) => return err(400, "BLOB_UPLOAD_INVALID", "invalid Content-Range"),
            }
        }
        // Commit or fail: either way the session is over (distribution cancels on error).
        st.uploads.remove(id)
    };
    let Some(mut u) = upload else {
        return unknown_upload();
    };
    u.data.extend_from_slice(&body);
    commit(sh, name, query_get(q, "digest"), Bytes::from(u.data))
}

fn upload_status(sh: &Shared, name: &str, id: &str) -> Response {
    let st = lock(&sh.store);
    match st.uploads.get(id).filter(|u| u.repo == name) {
        Some(u) => reply(
            204,
            &session_headers(sh, name, id, u.data.len()),
            Body::empty(),
        ),
        None => unknown_upload(),
    }
}

fn upload_cancel(sh: &Shared, name: &str, id: &str) -> Response {
    let mut st = lock(&sh.store);
    if st.uploads.get(id).is_some_and(|u| u.repo == name) {
        st.uploads.remove(id);
        reply(204, &[], Body::empty())
    } else {
        unknown_upload()
    }
}

// ---------------------------------------------------------------- listings

/// Page `items` (sorted) after `last`, at most `min(n, server_max)`; returns the page and
/// whether more follow, or an error response for a bad `n`.
fn page(
    items: Vec<String>,
    q: &[(String, String)],
    server_max: Option<usize>,
) -> Result<(Vec<String>, Option<usize>), Box<Response>> {
    let n = match query_get(q, "n") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            Box::new(err(
                400,
                "PAGINATION_NUMBER_INVALID",
                "invalid number of results requested",
            ))
        })?),
        None => None,
    };
    let start: Vec<String> = match query_get(q, "last") {
        Some(last) => items.into_iter().filter(|t| t.as_str() > last).collect(),
        None => items,
    };
    let limit = match (n, server_max) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => usize::MAX,
    };
    let more = limit > 0 && start.len() > limit;
    let page: Vec<String> = start.into_iter().take(limit).collect();
    Ok((page, more.then_some(n.unwrap_or(limit))))
}

fn link(path: &str, extra: &str) -> String {
    format!("<{path}?{extra}>; rel=\"next\"")
}

fn tags_list(sh: &Shared, name: &str, q: &[(String, String)]) -> Response {
    let tags = {
        let st = lock(&sh.store);
        let Some(r) = st.repo(name) else {
            return err(404, "NAME_UNKNOWN", "repository name not known to registry");
        };
        r.tags.keys().cloned().collect::<Vec<_>>()
    };
    let (page, more) = match page(tags, q, sh.options.tag_page_size) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let (Some(n), Some(last)) = (more, page.last()) {
        headers.push((
            "link",
            link(
                &format!("/v2/{name}/tags/list"),
                &format!("n={n}&last={}", enc(last)),
            ),
        ));
    }
    reply(
        200,
        &headers,
        json!({"name": name, "tags": page}).to_string(),
    )
}

fn catalog(sh: &Shared, q: &[(String, String)]) -> Response {
    let repos = lock(&sh.store).repositories();
    let (page, more) = match page(repos, q, None) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let (Some(n), Some(last)) = (more, page.last()) {
        headers.push((
            "link",
            link("/v2/_catalog", &format!("n={n}&last={}", enc(last))),
        ));
    }
    reply(200, &headers, json!({"repositories": page}).to_string())
}

fn referrers(sh: &Shared, name: &str, subject: &str, q: &[(String, String)]) -> Response {
    if !store::valid_digest(subject) {
        return err(400, "DIGEST_INVALID", "invalid digest");
    }
    let filter = query_get(q, "artifactType").filter(|f| !f.is_empty());
    let mut descriptors: HashMap<String, Value> = HashMap::new();
    let mut order = Vec::new();
    {
        let st = lock(&sh.store);
        let Some(r) = st.repo(name) else {
            return err(404, "NAME_UNKNOWN", "repository name not known to registry");
        };
        for d in r.referrers.get(subject).into_iter().flatten() {
            let Some((mt, bytes)) = r.manifests.get(d) else {
                continue;
            };
            let desc = store::referrer_descriptor(d, mt, bytes);
            if filter.is_some_and(|f| desc.get("artifactType").and_then(Value::as_str) != Some(f)) {
                continue;
            }
            order.push(d.clone());
            descriptors.insert(d.clone(), desc);
        }
    }
    let (page, more) = match page(order, q, sh.options.referrers_page_size) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut headers = vec![("content-type", OCI_INDEX.to_string())];
    if filter.is_some() {
        headers.push(("oci-filters-applied", "artifactType".into()));
    }
    if let (Some(n), Some(last)) = (more, page.last()) {
        let mut extra = format!("n={n}&last={}", enc(last));
        if let Some(f) = filter {
            extra.push_str(&format!("&artifactType={}", enc(f)));
        }
        headers.push((
            "link",
            link(&format!("/v2/{name}/referrers/{subject}"), &extra),
        ));
    }
    let manifests: Vec<Value> = page.iter().filter_map(|d| descriptors.remove(d)).collect();
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    reply(200, &headers, body.to_string())
}
