//! The HTTP adapter of the [`Registry`] port: the OCI distribution API
//! (spec-notes §1, §2, §6) over reqwest.
//!
//! One [`HttpRegistry`] serves one registry host and shares its auth
//! state, token cache, limits, referrers-support cache and counters between
//! all repositories. Files: this one holds the settings and the request
//! core (redirects, retries, limits, counters, error mapping); `session`
//! the auth flow (ping, tokens, re-auth on 401); `auth`, `credentials`,
//! `retry`, `limits`, `stats` are the pure parts; `blob`, `manifest`,
//! `tags`, `referrers` are the API families; `verdict` says what each
//! answer of the referrers endpoint means.
//!
//! Imports only [`crate::oci`] and [`crate::registry`]. reqwest types
//! never leave this module.

pub mod auth;
pub mod credentials;
pub mod limits;
pub mod retry;
pub mod stats;

mod blob;
mod manifest;
mod referrers;
mod session;
mod tags;
mod verdict;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use tracing::debug;

use self::auth::{Scope, TokenCache};
use self::limits::Limits;
use self::session::AuthScheme;
use super::{
    Blob, BlobStream, ErrorKind, FetchedManifest, Operation, Precondition, PutManifestOutcome,
    ReferrersSupport, Registry, RegistryError,
};
use crate::oci::{Descriptor, Digest, Location, Manifest, Reference, RepoName};

pub use self::credentials::{Credentials, Secret};
pub use self::retry::RetryPolicy;
pub use self::stats::{OperationStats, RateLimitStatus, RequestObserver, RequestStats};

/// How blobs are uploaded.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum UploadMode {
    /// `POST` (empty) then one `PUT` with the whole blob. Most portable.
    #[default]
    Monolithic,
    /// `POST`, then `PATCH` chunks of `chunk_size` bytes, then a closing
    /// `PUT`, for proxies that cap request bodies.
    Chunked {
        /// Bytes per `PATCH` (at least 1).
        chunk_size: usize,
    },
}

/// Settings of one [`HttpRegistry`]. `Debug` never shows secrets.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Explicit credentials; when `None`, the Docker config is consulted.
    pub credentials: Option<Credentials>,
    /// Docker `config.json`; `None` = `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// Directories searched before `PATH` for `docker-credential-*`.
    pub credential_helper_dirs: Vec<PathBuf>,
    /// `Some(true)` = plain HTTP, `Some(false)` = HTTPS, `None` = plain
    /// HTTP only for loopback hosts (as Docker does).
    pub plain_http: Option<bool>,
    /// Extra PEM CA bundles to trust.
    pub ca_certificates: Vec<PathBuf>,
    /// Verify TLS certificates (default true).
    pub tls_verify: bool,
    /// Request rate cap; `None` = unlimited.
    pub requests_per_second: Option<NonZeroU32>,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Blob upload mode.
    pub upload: UploadMode,
    /// Forces the referrers-API verdict instead of probing.
    pub referrers: Option<ReferrersSupport>,
    /// How long a probed referrers verdict is trusted.
    pub referrers_cache_ttl: Duration,
    /// Retries of failed requests.
    pub retry: RetryPolicy,
    /// `User-Agent` header.
    pub user_agent: String,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            credentials: None,
            docker_config: None,
            credential_helper_dirs: Vec::new(),
            plain_http: None,
            ca_certificates: Vec::new(),
            tls_verify: true,
            requests_per_second: None,
            // As the config default, `RegistrySettings::DEFAULT_MAX_IN_FLIGHT`.
            max_in_flight: 32,
            upload: UploadMode::Monolithic,
            referrers: None,
            referrers_cache_ttl: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            user_agent: concat!("ocimirror/", env!("CARGO_PKG_VERSION")).to_string(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
        }
    }
}

/// Largest error body read for its OCI error codes.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Largest JSON metadata response (tags page, referrers page, token).
pub(crate) const MAX_METADATA_BODY: usize = 4 * 1024 * 1024;
/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 10;
/// Longest error message kept from a response body.
const MAX_MESSAGE: usize = 200;

/// The context of one operation: for errors, counters and token scopes.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    pub op: Operation,
    pub repo: String,
    pub target: Option<String>,
    pub scopes: Vec<Scope>,
}

impl Ctx {
    pub(crate) fn new(op: Operation, repo: &RepoName, target: Option<String>, push: bool) -> Ctx {
        let scope = if push {
            Scope::push(repo.as_str())
        } else {
            Scope::pull(repo.as_str())
        };
        Ctx {
            op,
            repo: repo.as_str().to_string(),
            target,
            scopes: vec![scope],
        }
    }
}

/// A request body, replayable or not.
pub(crate) enum ReqBody {
    Empty,
    Bytes(Bytes),
    /// A stream that can be sent once only.
    Stream(Option<reqwest::Body>),
}

impl ReqBody {
    fn replayable(&self) -> bool {
        !matches!(self, ReqBody::Stream(_))
    }

    fn take(&mut self) -> Option<reqwest::Body> {
        match self {
            ReqBody::Empty => None,
            ReqBody::Bytes(b) => Some(reqwest::Body::from(b.clone())),
            ReqBody::Stream(s) => s.take(),
        }
    }
}

/// A registry reached over HTTP(S).
pub struct HttpRegistry {
    name: String,
    base: Url,
    client: reqwest::Client,
    settings: HttpSettings,
    credentials: Option<Credentials>,
    limits: Limits,
    stats: Mutex<RequestStats>,
    ping: tokio::sync::OnceCell<()>,
    scheme: Mutex<AuthScheme>,
    tokens: Mutex<TokenCache>,
    token_fetch: tokio::sync::Mutex<()>,
    referrers_cache: Mutex<HashMap<String, (ReferrersSupport, Instant)>>,
    hub_ratelimit: Mutex<Option<RateLimitStatus>>,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl std::fmt::Debug for HttpRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRegistry")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// True for `localhost`, 127.0.0.0/8 and ::1, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves plain data
    // behind; keep going with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A transport error as text without URLs (which could carry query data).
fn transport_kind(e: reqwest::Error) -> ErrorKind {
    let retryable = !e.is_builder();
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    ErrorKind::Transport { message, retryable }
}

fn trim_message(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_MESSAGE).collect();
    out.push('…');
    out
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: Option<String>,
}

/// OCI error codes and the first message from an error body; anything that
/// is not the JSON envelope (HTML, plain text) gives nothing.
pub(crate) fn parse_error_body(body: &[u8]) -> (Vec<String>, String) {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(env) => {
            let codes = env
                .errors
                .iter()
                .map(|e| e.code.clone())
                .filter(|c| !c.is_empty())
                .map(|c| trim_message(&c))
                .collect();
            let message = env
                .errors
                .iter()
                .find_map(|e| e.message.clone().filter(|m| !m.is_empty()))
                .map(|m| trim_message(&m))
                .unwrap_or_default();
            (codes, message)
        }
        Err(_) => (Vec::new(), String::new()),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Why reading a body failed.
pub(crate) enum ReadError {
    TooLarge(usize),
    Transport(ErrorKind),
}

/// Reads a whole body, refusing more than `limit` bytes before buffering
/// them (the announced length is checked first, then the bytes counted).
pub(crate) async fn read_limited(
    resp: reqwest::Response,
    limit: usize,
) -> Result<Bytes, ReadError> {
    if let Some(len) = resp.content_length()
        && len > limit as u64
    {
        return Err(ReadError::TooLarge(
            usize::try_from(len).unwrap_or(usize::MAX),
        ));
    }
    let mut buf = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ReadError::Transport(transport_kind(e)))?;
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(buf.len() + chunk.len()));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

impl HttpRegistry {
    /// An adapter for `host` (a registry name as in
    /// [`Location::Registry`]; `docker.io` is reached at its API host).
    pub fn new(host: &str, settings: HttpSettings) -> Result<HttpRegistry, RegistryError> {
        let fail = |kind: ErrorKind| RegistryError::new(host, "", Operation::Ping, None, kind);
        let location = Location::Registry(host.to_string());
        let api_host = location.api_host().unwrap_or(host);
        let plain = settings
            .plain_http
            .unwrap_or_else(|| is_loopback_host(api_host));
        let scheme = if plain { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{api_host}/")).map_err(|e| {
            fail(ErrorKind::InvalidResponse(format!(
                "invalid registry host {host:?}: {e}"
            )))
        })?;

        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            // Redirects are followed by hand so Authorization can be dropped
            // when the origin changes (spec-notes §1.7).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(settings.user_agent.clone())
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout);
        for path in &settings.ca_certificates {
            let pem = std::fs::read(path).map_err(|e| {
                fail(ErrorKind::Credentials(format!(
                    "cannot read CA file {}: {}",
                    path.display(),
                    e.kind()
                )))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    fail(ErrorKind::Credentials(format!(
                        "CA file {} holds no PEM certificate",
                        path.display()
                    )))
                })?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if !settings.tls_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(|e| fail(transport_kind(e)))?;

        let credentials = match &settings.credentials {
            Some(c) => Some(c.clone()),
            None => {
                match settings
                    .docker_config
                    .clone()
                    .or_else(credentials::default_docker_config)
                {
                    Some(path) => credentials::from_docker_config(
                        &path,
                        host,
                        &settings.credential_helper_dirs,
                    )
                    .map_err(|e| fail(ErrorKind::Credentials(e.to_string())))?,
                    None => None,
                }
            }
        };

        Ok(HttpRegistry {
            name: host.to_string(),
            base,
            client,
            limits: Limits::new(settings.requests_per_second, settings.max_in_flight),
            credentials,
            settings,
            stats: Mutex::new(RequestStats::default()),
            ping: tokio::sync::OnceCell::new(),
            scheme: Mutex::new(AuthScheme::Anonymous),
            tokens: Mutex::new(TokenCache::default()),
            token_fetch: tokio::sync::Mutex::new(()),
            referrers_cache: Mutex::new(HashMap::new()),
            hub_ratelimit: Mutex::new(None),
            observer: None,
        })
    }

    /// Reports every request to `observer` (metrics) as well.
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The base URL requests go to (`https://host/`).
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// A snapshot of the request counters.
    pub fn stats(&self) -> RequestStats {
        lock(&self.stats).clone()
    }

    /// The latest Docker Hub pull allowance seen (`ratelimit-*` headers).
    pub fn docker_hub_ratelimit(&self) -> Option<RateLimitStatus> {
        *lock(&self.hub_ratelimit)
    }

    pub(crate) fn err(&self, ctx: &Ctx, kind: ErrorKind) -> RegistryError {
        RegistryError::new(
            self.name.clone(),
            ctx.repo.clone(),
            ctx.op,
            ctx.target.clone(),
            kind,
        )
    }

    pub(crate) fn url(&self, ctx: &Ctx, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|e| {
            self.err(
                ctx,
                ErrorKind::InvalidResponse(format!("cannot build URL: {e}")),
            )
        })
    }

    /// Resolves a `Location`/`Link` URL against the URL of the request that
    /// returned it (RFC 3986).
    pub(crate) fn resolve(
        &self,
        ctx: &Ctx,
        base: &Url,
        location: &str,
    ) -> Result<Url, RegistryError> {
        base.join(location).map_err(|e| {
            self.err(
                ctx,
                ErrorKind::InvalidResponse(format!("unusable Location/Link header: {e}")),
            )
        })
    }

    /// Runs `f` until it succeeds, fails for good, or the retry policy is
    /// used up. Only call this with operations that are safe to repeat.
    pub(crate) async fn with_retry<T, F, Fut>(&self, mut f: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut backoff = self.settings.retry.backoff();
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() => {
                    let Some(b) = backoff.next() else {
                        return Err(e);
                    };
                    let delay = self.settings.retry.next_delay(e.kind.retry_after(), b);
                    debug!(
                        registry = %self.name, repo = %e.repo, op = %e.op,
                        delay_ms = delay.as_millis() as u64, error = %e.kind,
                        "Retrying request."
                    );
                    self.count_retry(e.op, delay);
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Counts a retry of `op` after `delay` (stats and metrics).
    pub(crate) fn count_retry(&self, op: Operation, delay: Duration) {
        {
            let mut s = lock(&self.stats);
            s.retries += 1;
            s.retry_wait += delay;
        }
        if let Some(o) = &self.observer {
            o.retry(&self.name, op);
        }
    }

    /// One HTTP exchange under the registry's limits, counted once.
    async fn raw_send(
        &self,
        op: Operation,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ErrorKind> {
        let (permit, waited) = self.limits.acquire().await;
        let started = Instant::now();
        let result = req.send().await;
        drop(permit);
        if let Some(o) = &self.observer {
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            o.request(&self.name, op, status, started.elapsed(), waited);
        }
        let mut stats = lock(&self.stats);
        stats.rate_limit_wait += waited;
        match result {
            Ok(resp) => {
                stats.record_status(op, resp.status().as_u16());
                drop(stats);
                let h = resp.headers();
                if let Some(rl) = stats::parse_ratelimit(
                    header_str(h, "ratelimit-limit"),
                    header_str(h, "ratelimit-remaining"),
                ) {
                    if let Some(o) = &self.observer {
                        o.docker_hub(&self.name, &rl);
                    }
                    *lock(&self.hub_ratelimit) = Some(rl);
                }
                debug!(
                    registry = %self.name, op = %op,
                    status = resp.status().as_u16(), path = resp.url().path(),
                    "HTTP response."
                );
                Ok(resp)
            }
            Err(e) => {
                stats.record_transport_error(op);
                Err(transport_kind(e))
            }
        }
    }

    /// Sends a request with auth, following redirects of GET/HEAD by hand
    /// (dropping `Authorization` across origins), and re-authenticating
    /// once on 401 when the body can be sent again. Returns the final
    /// response whatever its status.
    pub(crate) async fn send(
        &self,
        ctx: &Ctx,
        method: Method,
        url: Url,
        headers: HeaderMap,
        mut body: ReqBody,
    ) -> Result<reqwest::Response, RegistryError> {
        self.ensure_ping(ctx).await?;
        let mut reauthenticated = false;
        loop {
            let (auth, sent_token) = self.authorization(ctx).await?;
            let sent_auth = auth.is_some();
            let resp = self
                .send_following(
                    ctx,
                    method.clone(),
                    url.clone(),
                    &headers,
                    body.take(),
                    auth,
                )
                .await?;
            if resp.status() == StatusCode::UNAUTHORIZED
                && !reauthenticated
                && body.replayable()
                && self
                    .reauthenticate(ctx, resp.headers(), sent_auth, sent_token.as_ref())
                    .await?
            {
                reauthenticated = true;
                continue;
            }
            return Ok(resp);
        }
    }

    async fn send_following(
        &self,
        ctx: &Ctx,
        method: Method,
        mut url: Url,
        headers: &HeaderMap,
        body: Option<reqwest::Body>,
        mut auth: Option<HeaderValue>,
    ) -> Result<reqwest::Response, RegistryError> {
        // A redirect on the referrers path is a web page, not the API
        // (GHCR's 303 to github.com): its verdict, not a hop (verdict.rs).
        let follow =
            (method == Method::GET || method == Method::HEAD) && ctx.op != Operation::Referrers;
        let mut body = body;
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(a) = &auth {
                req = req.header(header::AUTHORIZATION, a.clone());
            }
            if let Some(b) = body.take() {
                req = req.body(b);
            }
            let resp = self
                .raw_send(ctx.op, req)
                .await
                .map_err(|k| self.err(ctx, k))?;
            if !(follow && resp.status().is_redirection()) {
                return Ok(resp);
            }
            let Some(location) = header_str(resp.headers(), "location") else {
                return Ok(resp);
            };
            let next = self.resolve(ctx, &url, location)?;
            if !same_origin(&url, &next) {
                // Pre-signed storage URLs refuse (and must never see) our
                // credentials (spec-notes §1.7).
                auth = None;
            }
            debug!(registry = %self.name, op = %ctx.op, "Following redirect.");
            url = next;
        }
        Err(self.err(
            ctx,
            ErrorKind::InvalidResponse(format!("more than {MAX_REDIRECTS} redirects")),
        ))
    }

    /// Reads a body under a size cap, mapping failures to errors of `ctx`.
    pub(crate) async fn read_body(
        &self,
        ctx: &Ctx,
        resp: reqwest::Response,
        limit: usize,
    ) -> Result<Bytes, RegistryError> {
        read_limited(resp, limit).await.map_err(|e| match e {
            ReadError::TooLarge(n) => self.err(
                ctx,
                ErrorKind::InvalidResponse(format!(
                    "response body of {n} bytes exceeds the {limit}-byte limit"
                )),
            ),
            ReadError::Transport(k) => self.err(ctx, k),
        })
    }

    /// The error for an unexpected response status, with the OCI error
    /// codes of its body (read defensively, capped).
    pub(crate) async fn status_error(&self, ctx: &Ctx, resp: reqwest::Response) -> RegistryError {
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let body = read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default();
        self.status_error_of(ctx, status, &headers, &body)
    }

    /// [`HttpRegistry::status_error`] for a response whose body was read.
    pub(crate) fn status_error_of(
        &self,
        ctx: &Ctx,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> RegistryError {
        let retry_after = header_str(headers, "retry-after")
            .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
        let (codes, message) = parse_error_body(body);
        let kind = match status {
            404 => ErrorKind::NotFound,
            401 => ErrorKind::Unauthorized(if codes.is_empty() {
                "HTTP 401".to_string()
            } else {
                format!("HTTP 401 {}", codes.join(","))
            }),
            403 => ErrorKind::Denied,
            412 => ErrorKind::PreconditionFailed,
            429 => ErrorKind::RateLimited { retry_after },
            _ => ErrorKind::Status {
                status,
                codes,
                message,
                retry_after,
            },
        };
        self.err(ctx, kind)
    }

    /// The cached referrers verdict of a repository, if still fresh.
    fn cached_referrers(&self, repo: &str) -> Option<ReferrersSupport> {
        let cache = lock(&self.referrers_cache);
        let (v, at) = cache.get(repo)?;
        (at.elapsed() < self.settings.referrers_cache_ttl).then_some(*v)
    }

    fn cache_referrers(&self, repo: &str, verdict: ReferrersSupport) {
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
        self.blob_put_impl(repo, desc, body).await
    }

    async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, RegistryError> {
        self.blob_mount_impl(repo, digest, from).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for h in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "registry.local:443",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn scheme_choice() {
        let r = HttpRegistry::new("127.0.0.1:5000", HttpSettings::default()).unwrap();
        assert_eq!(r.base_url(), "http://127.0.0.1:5000/");
        let r = HttpRegistry::new(
            "docker.io",
            HttpSettings {
                docker_config: Some("/nonexistent/config.json".into()),
                ..HttpSettings::default()
            },
        )
        .unwrap();
        assert_eq!(r.base_url(), "https://registry-1.docker.io/");
        let r = HttpRegistry::new(
            "reg.example:5000",
            HttpSettings {
                plain_http: Some(true),
                docker_config: Some("/nonexistent/config.json".into()),
                ..HttpSettings::default()
            },
        )
        .unwrap();
        assert_eq!(r.base_url(), "http://reg.example:5000/");
        let r = HttpRegistry::new(
            "localhost:5000",
            HttpSettings {
                plain_http: Some(false),
                docker_config: Some("/nonexistent/config.json".into()),
                ..HttpSettings::default()
            },
        )
        .unwrap();
        assert_eq!(r.base_url(), "https://localhost:5000/");
    }

    #[test]
    fn error_bodies_are_parsed_defensively() {
        let (codes, msg) = parse_error_body(
            br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown","detail":{"digest":"x"}},{"code":"NAME_UNKNOWN"}]}"#,
        );
        assert_eq!(codes, ["MANIFEST_BLOB_UNKNOWN", "NAME_UNKNOWN"]);
        assert_eq!(msg, "blob unknown");
        assert_eq!(
            parse_error_body(b"<html><body>502 Bad Gateway</body></html>"),
            (vec![], String::new())
        );
        let long = format!(
            r#"{{"errors":[{{"code":"X","message":"{}"}}]}}"#,
            "a".repeat(5000)
        );
        let (_, msg) = parse_error_body(long.as_bytes());
        assert!(msg.chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn origins() {
        let a = Url::parse("http://127.0.0.1:5000/v2/x").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("http://127.0.0.1:5000/other").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("http://localhost:5000/v2/x").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("http://127.0.0.1:5001/v2/x").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://127.0.0.1:5000/v2/x").unwrap()
        ));
    }

    #[test]
    fn settings_debug_redacts() {
        let s = HttpSettings {
            credentials: Some(Credentials::Basic {
                username: "u".into(),
                password: Secret::new("pa55word"),
            }),
            ..HttpSettings::default()
        };
        let d = format!("{s:?}");
        assert!(!d.contains("pa55word") && d.contains("redacted"), "{d}");
    }
}
