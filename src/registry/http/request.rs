//! The request core of the HTTP adapter: sending with auth and redirects,
//! retries, rate limits and counters (observer), reading capped bodies and
//! mapping failed responses to [`RegistryError`]s.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use tracing::debug;

use super::{Ctx, HttpRegistry, lock, retry, stats};
use crate::registry::{ErrorKind, Operation, RegistryError};

/// Largest error body read for its OCI error codes.
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;
/// Largest JSON metadata response (tags page, referrers page, token).
pub(crate) const MAX_METADATA_BODY: usize = 4 * 1024 * 1024;
/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 10;
/// Longest server-supplied string kept for an error message.
const MAX_MESSAGE: usize = 200;
/// Most OCI error codes kept from one error body.
const MAX_ERROR_CODES: usize = 8;

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

/// A transport error as text without URLs (which could carry query data).
/// A connection that found no one (refused, unknown host, connect timeout) is
/// [`ErrorKind::Unreachable`], said by its last two causes (`tcp connect
/// error: Connection refused`) without the client's generic layers.
pub(crate) fn transport_kind(e: reqwest::Error) -> ErrorKind {
    let retryable = !e.is_builder();
    let connect = e.is_connect();
    let e = e.without_url();
    let mut chain = vec![e.to_string()];
    let mut no_route = e.is_timeout();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        no_route |= text.starts_with("dns error")
            || s.downcast_ref::<std::io::Error>().is_some_and(|io| {
                use std::io::ErrorKind as Io;
                matches!(
                    io.kind(),
                    Io::ConnectionRefused
                        | Io::HostUnreachable
                        | Io::NetworkUnreachable
                        | Io::AddrNotAvailable
                        | Io::TimedOut
                )
            });
        chain.push(text);
        source = s.source();
    }
    // A TLS failure also happens while connecting, but the host answered:
    // it stays a transport error with its own words (certificate, ...).
    if connect && no_route {
        let from = chain.len().saturating_sub(2);
        return ErrorKind::Unreachable(chain[from..].join(": "));
    }
    let message = chain.join(": ");
    // A certificate the client refuses, or TLS spoken to a plain-HTTP port,
    // is refused the same way the next time: not retried.
    let tls_refused =
        connect && (message.contains("certificate") || message.contains("corrupt message"));
    ErrorKind::Transport {
        message,
        retryable: retryable && !tls_refused,
    }
}

/// A server-supplied string made safe for one line of a message or log:
/// control characters (newlines included) escaped, at most
/// [`MAX_MESSAGE`] characters.
pub(crate) fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.trim().chars().enumerate() {
        if n == MAX_MESSAGE {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
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

/// OCI error codes (at most [`MAX_ERROR_CODES`], then a count of the
/// rest) and the first message from an error body, sanitized; anything
/// that is not the JSON envelope (HTML, plain text) gives nothing.
pub(crate) fn parse_error_body(body: &[u8]) -> (Vec<String>, String) {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(env) => {
            let all: Vec<&str> = env
                .errors
                .iter()
                .map(|e| e.code.as_str())
                .filter(|c| !c.is_empty())
                .collect();
            let mut codes: Vec<String> = all
                .iter()
                .take(MAX_ERROR_CODES)
                .map(|c| sanitize(c))
                .collect();
            if all.len() > MAX_ERROR_CODES {
                codes.push(format!("(+{} more)", all.len() - MAX_ERROR_CODES));
            }
            let message = env
                .errors
                .iter()
                .find_map(|e| e.message.as_deref().filter(|m| !m.is_empty()))
                .map(sanitize)
                .unwrap_or_default();
            (codes, message)
        }
        Err(_) => (Vec::new(), String::new()),
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// At most one INFO line per registry this often about retries.
const RETRY_NOTICE_EVERY: Duration = Duration::from_secs(10);

/// Operations whose requests and answers are small, so they get a total
/// deadline; blob bodies get a minimum throughput instead.
fn is_metadata(op: Operation) -> bool {
    !matches!(op, Operation::BlobGet | Operation::BlobPut)
}

/// The error of a metadata request that outlived its deadline.
pub(crate) fn deadline_passed(deadline: Duration) -> ErrorKind {
    ErrorKind::Transport {
        message: format!(
            "no complete answer within the {} s metadata deadline",
            deadline.as_secs_f64()
        ),
        retryable: true,
    }
}

/// Same scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
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

    /// True for URLs on the registry's own origin: only requests to it
    /// carry credentials, and only its challenges are answered. Every other
    /// URL (upload `Location`, `Link`, redirect target) is someone else's.
    pub(crate) fn is_own_origin(&self, url: &Url) -> bool {
        same_origin(&self.base, url)
    }

    /// Resolves a `Location`/`Link`/redirect URL against the URL of the
    /// request that returned it (RFC 3986), refusing to go from HTTPS to
    /// plain HTTP and any scheme but those two.
    pub(crate) fn resolve(
        &self,
        ctx: &Ctx,
        base: &Url,
        location: &str,
    ) -> Result<Url, RegistryError> {
        let url = base.join(location).map_err(|e| {
            self.err(
                ctx,
                ErrorKind::InvalidResponse(format!("unusable Location/Link header: {e}")),
            )
        })?;
        match (base.scheme(), url.scheme()) {
            ("https", "https") | ("http", "http" | "https") => Ok(url),
            ("https", "http") => Err(self.err(
                ctx,
                ErrorKind::InsecureDowngrade(format!(
                    "{} named {}",
                    base.origin().ascii_serialization(),
                    url.origin().ascii_serialization()
                )),
            )),
            (_, other) => Err(self.err(
                ctx,
                ErrorKind::InvalidResponse(format!(
                    "Location/Link with scheme {}",
                    sanitize(other)
                )),
            )),
        }
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
                    self.announce_retry(&e, delay);
                    self.count_retry(e.op, delay);
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Says what is retried and why while it waits: at INFO at most once per
    /// registry per [`RETRY_NOTICE_EVERY`] (a wait is what a user notices;
    /// eight requests retrying at once are one story), the rest at DEBUG.
    fn announce_retry(&self, e: &RegistryError, delay: Duration) {
        let now = Instant::now();
        let loud = {
            let mut last = lock(&self.retry_notice);
            let due = last.is_none_or(|t| now.duration_since(t) >= RETRY_NOTICE_EVERY);
            if due {
                *last = Some(now);
            }
            due
        };
        if loud {
            tracing::info!(
                registry = %self.name, repo = %e.repo, op = %e.op,
                delay_ms = delay.as_millis() as u64, error = %e.kind,
                "Retrying {} on {} in {:.1} s: {}.", e.op, self.name, delay.as_secs_f64(), e.kind
            );
        } else {
            debug!(
                registry = %self.name, repo = %e.repo, op = %e.op,
                delay_ms = delay.as_millis() as u64, error = %e.kind,
                "Retrying request."
            );
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
    pub(crate) async fn raw_send(
        &self,
        op: Operation,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ErrorKind> {
        // Metadata answers are small: a total deadline (body included)
        // stops a server that trickles bytes just fast enough to defeat the
        // idle read timeout.
        let deadline = is_metadata(op).then_some(self.settings.metadata_timeout);
        let req = match deadline {
            Some(d) => req.timeout(d),
            None => req,
        };
        let req = req.build().map_err(transport_kind)?;
        // Only the registry's own origin is held unreachable: a storage
        // host it redirects to is another machine.
        let own = self.is_own_origin(req.url());
        if own && let Some(held) = self.held_unreachable() {
            return Err(held);
        }
        let (permit, waited) = self.limits.acquire().await;
        let started = Instant::now();
        let result = self.client.execute(req).await;
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
                let timed_out = e.is_timeout();
                stats.record_transport_error(op);
                drop(stats);
                match (deadline, transport_kind(e)) {
                    (_, ErrorKind::Unreachable(cause)) => {
                        if own {
                            self.mark_unreachable(&cause);
                        }
                        Err(ErrorKind::Unreachable(cause))
                    }
                    (Some(d), ErrorKind::Transport { .. }) if timed_out => Err(deadline_passed(d)),
                    (_, kind) => Err(kind),
                }
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
        let own = self.is_own_origin(&url);
        let mut reauthenticated = false;
        loop {
            let (auth, sent_token) = if own {
                self.authorization(ctx).await?
            } else {
                (None, None)
            };
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
            // A challenge from another origin is not ours to answer: our
            // credentials (or a token bought with them) must not go there.
            if resp.status() == StatusCode::UNAUTHORIZED
                && self.is_own_origin(resp.url())
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
            if !self.is_own_origin(&next) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn error_bodies_are_capped_in_count_and_escaped() {
        let entries: Vec<String> = (0..50)
            .map(|i| format!(r#"{{"code":"C{i}","message":"line one\nline two\u001b[31m"}}"#))
            .collect();
        let body = format!(r#"{{"errors":[{}]}}"#, entries.join(","));
        let (codes, msg) = parse_error_body(body.as_bytes());
        assert_eq!(codes.len(), MAX_ERROR_CODES + 1, "{codes:?}");
        assert_eq!(codes.last().map(String::as_str), Some("(+42 more)"));
        assert!(!msg.contains('\n') && !msg.contains('\u{1b}'), "{msg:?}");
        assert_eq!(msg, "line one\\nline two\\u{1b}[31m");
        let kind = ErrorKind::Status {
            status: 500,
            codes,
            message: msg,
            retry_after: None,
        };
        assert!(!kind.to_string().contains('\n'));
    }

    #[test]
    fn returned_urls_may_not_leave_https() {
        let r = HttpRegistry::new(
            "reg.example",
            super::super::HttpSettings {
                docker_config: super::super::DockerConfigSource::Off,
                ..Default::default()
            },
        )
        .unwrap();
        let ctx = Ctx {
            op: Operation::TagList,
            repo: "app".into(),
            target: None,
            scopes: Vec::new(),
        };
        let base = Url::parse("https://reg.example/v2/app/tags/list").unwrap();
        for ok in ["/v2/app/tags/list?last=a", "https://cdn.example/x?sig=1"] {
            assert!(r.resolve(&ctx, &base, ok).is_ok(), "{ok}");
        }
        let e = r
            .resolve(&ctx, &base, "http://reg.example/v2/app/tags/list?last=a")
            .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InsecureDowngrade(_)), "{e}");
        assert!(e.to_string().contains("http://reg.example"), "{e}");
        assert!(r.resolve(&ctx, &base, "file:///etc/passwd").is_err());
        // Plain HTTP registries may move to HTTPS.
        let plain = Url::parse("http://reg.example/v2/").unwrap();
        assert!(r.resolve(&ctx, &plain, "https://reg.example/v2/").is_ok());
        // Only the registry's own origin is "own".
        assert!(r.is_own_origin(&Url::parse("https://reg.example:443/v2/").unwrap()));
        assert!(!r.is_own_origin(&Url::parse("https://cdn.example/v2/").unwrap()));
        assert!(!r.is_own_origin(&Url::parse("http://reg.example/v2/").unwrap()));
    }
}
