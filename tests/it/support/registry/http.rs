//! HTTP side: routing, dispatch, auth enforcement, fault injection and the request log.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::auth::{self, Access, Verdict};
use super::content::{
    blob_delete, blob_get, blob_store_handle, manifest_delete, manifest_get, manifest_put,
};
use super::listing::{catalog, referrers, tags_list};
use super::personality::{self, Personality};
use super::store::{self, OciError};
use super::uploads::{upload_cancel, upload_patch, upload_put, upload_start, upload_status};
use super::{FaultKind, LoggedRequest, RetryAfter, Shared, lock};

pub(super) type Sh = Arc<Shared>;

/// The main listener's app.
pub fn router(shared: Sh) -> Router {
    Router::new()
        .fallback(main_entry)
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

/// The app of the web origin a [`super::Personality::Ghcr303`] redirects to.
pub fn web_router(shared: Sh) -> Router {
    Router::new().fallback(web_entry).with_state(shared)
}

async fn web_entry(State(sh): State<Sh>, req: Request) -> Response {
    with_log_and_faults(sh, req, |_, _| async { personality::html_page() }).await
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

/// Counts a request as in flight until dropped (also when the client goes away).
struct InFlight(Sh);

impl InFlight {
    fn enter(sh: &Sh) -> InFlight {
        let now = sh.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        sh.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(sh.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn with_log_and_faults<F, Fut>(sh: Sh, req: Request, inner: F) -> Response
where
    F: FnOnce(Sh, Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let _in_flight = InFlight::enter(&sh);
    let at = std::time::Instant::now();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let auth_scheme = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(' ').next().unwrap_or_default().to_string());

    if !sh.options.latency.is_zero() {
        tokio::time::sleep(sh.options.latency).await;
    }
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
        Some(r) => {
            drain(req).await;
            r
        }
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
        at,
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
        FaultKind::CutAfter(n) if n >= len => Response::from_parts(parts, Body::from(bytes)),
        FaultKind::TruncatedBody | FaultKind::ResetMidBody | FaultKind::CutAfter(_) => {
            let cut = match kind {
                FaultKind::CutAfter(n) => n,
                _ => len / 2,
            };
            let half = bytes.slice(..cut);
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
        FaultKind::Trickle { chunk, every } => {
            let chunk = chunk.max(1);
            let stream = futures::stream::unfold(bytes, move |rest| async move {
                if rest.is_empty() {
                    return None;
                }
                tokio::time::sleep(every).await;
                let mut rest = rest;
                let head = rest.split_to(chunk.min(rest.len()));
                Some((Ok::<Bytes, std::io::Error>(head), rest))
            });
            Response::from_parts(parts, Body::from_stream(stream))
        }
        _ => Response::from_parts(parts, Body::from(bytes)),
    }
}

// ---------------------------------------------------------------- response helpers

pub(super) fn oci_error(e: &OciError) -> Response {
    Response::builder()
        .status(e.status)
        .header("content-type", "application/json")
        .header("docker-distribution-api-version", "registry/2.0")
        .body(Body::from(e.body()))
        .unwrap()
}

pub(super) fn err(status: u16, code: &str, message: &str) -> Response {
    oci_error(&OciError::new(status, code, message))
}

/// 404 with `NAME_UNKNOWN` when the repository holds nothing at all, else with `code`.
pub(super) fn not_found(sh: &Shared, name: &str, code: &str, message: &str) -> Response {
    if lock(&sh.store).repo(name).is_none() {
        err(404, "NAME_UNKNOWN", "repository name not known to registry")
    } else {
        err(404, code, message)
    }
}

pub(super) fn plain_404() -> Response {
    Response::builder()
        .status(404)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(Body::from("404 page not found\n"))
        .unwrap()
}

pub(super) fn reply(status: u16, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header("docker-distribution-api-version", "registry/2.0");
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(body.into()).unwrap()
}

pub(super) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

pub(super) fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub(super) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(super) fn percent_decode(s: &str) -> String {
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
    pub(super) fn location(&self, path: &str) -> String {
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
    if matches!(route, Route::Referrers(..))
        && let Some(r) = personality::referrers_answer(
            sh.options.personality,
            sh.referrers_api.load(Ordering::SeqCst),
            sh.web_host.as_deref(),
        )
    {
        return r;
    }
    if matches!(route, Route::Token) {
        // GET form only; a POST (OAuth2 form) answers 404 so clients fall back to GET.
        if method != Method::GET {
            drain(req).await;
            return plain_404();
        }
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
        let verdict = match (&route, verdict) {
            // The token is good, but this path alone refuses it.
            (Route::Referrers(name, _), Verdict::Allowed)
                if sh.options.personality == Personality::Referrers401 =>
            {
                Verdict::Challenge(format!(
                    "Bearer realm=\"http://{}/token\",service=\"test-registry\",\
                     scope=\"repository:{name}:pull\",error=\"insufficient_scope\"",
                    sh.host
                ))
            }
            (_, v) => v,
        };
        if let Verdict::Challenge(c) = verdict {
            drain(req).await;
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

/// Read and discard the request body before answering early, so a client still sending a
/// large body gets the status instead of a reset connection (deterministic tests).
pub(super) async fn drain(req: Request) {
    let _ = axum::body::to_bytes(req.into_body(), usize::MAX).await;
}

pub(super) async fn read_body(req: Request) -> Result<Bytes, Response> {
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
