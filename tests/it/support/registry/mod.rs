//! A strict, in-process OCI distribution-spec 1.1 registry for tests.
//!
//! It is the independent oracle the HTTP adapter and the copy engine are tested against, so it
//! uses none of ocimirror's own code: hashing with `sha2`, JSON with `serde_json`, HTTP with
//! axum. Storage is in memory; switches and fault injection are set through [`Options`] and the
//! methods of [`TestRegistry`].
//!
//! Beyond the agreed API: `TestRegistry::{url, clear_faults, pending_faults, referrers,
//! repositories, seed_image, seed_index, seed_referrer, max_concurrent_requests,
//! reset_max_concurrent_requests}`, `Fault::once`, `Auth::{bearer, basic}`.
//!
//! Behaviour worth knowing when writing tests:
//! - `Status`, `TooManyRequests` and `Delay` faults are matched (and used up) when a request
//!   arrives, before authentication. Body faults (`ResetMidBody`, `TruncatedBody`, `WrongBytes`,
//!   `CutAfter`, `Trickle`)
//!   are matched only against 2xx responses that carry a body, so a 401 challenge or a HEAD does
//!   not use them up.
//! - Manifest GET/HEAD honours `Accept` like distribution: a stored type that is not accepted
//!   (and no `*/*`) answers 404 `MANIFEST_UNKNOWN`. No `Accept` header accepts everything.
//! - Every read of a repository that holds nothing (manifest, blob, tags/list, referrers)
//!   answers 404 `NAME_UNKNOWN`; uploads and mounts create the repository.
//! - Personalities (see `personality.rs`) answer the referrers path as real registries
//!   without the API do; the 303 of [`Personality::Ghcr303`] leads to `127.0.0.2:<port>`, whose
//!   requests are logged like the others (path `/orgs/test/packages`).
//! - The blob redirect target is logged with the path `/_blobstore/<digest>`; blob HEAD is
//!   answered directly (no redirect).
//! - Uploads: a failed final PUT (bad digest) ends the session like distribution; a request
//!   stopped by an injected fault or an auth challenge leaves it as it was.
//! - DELETE of a manifest by digest untags every tag pointing at it; by tag it only untags
//!   (or answers 405 with `refuse_tag_delete`, like Docker Hub; digest deletes of tagged
//!   manifests still succeed here, where Hub answers 403).
//! - Tokens grant the requested actions to the configured user; anonymous tokens get `pull`
//!   (with `anonymous_pull`) or nothing, like real token servers (no error on partial grants).
#![allow(dead_code)]

mod auth;
mod content;
mod http;
mod listing;
mod personality;
mod store;
mod uploads;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::task::JoinHandle;

use store::Store;

pub use personality::Personality;

/// Switches of a [`TestRegistry`], fixed at start (except the ones with setters).
#[derive(Clone)]
pub struct Options {
    /// Serve the referrers API (default true); off => plain-text 404 like distribution, no `OCI-Subject`.
    pub referrers_api: bool,
    /// How the referrers endpoint answers when there is no API (default
    /// [`Personality::FullApi`]); presets: [`Personality::options`].
    pub personality: Personality,
    /// Honour cross-repository mounts (default true); off => mount POST opens an upload session (202).
    pub mount: bool,
    /// Authentication (default anonymous).
    pub auth: Option<Auth>,
    /// Server-side maximum page for tags/list; pages chained with a relative `Link`.
    pub tag_page_size: Option<usize>,
    /// Server-side maximum page for the referrers API; pages chained with a relative `Link`.
    pub referrers_page_size: Option<usize>,
    /// Upload/manifest `Location` headers are relative (default true) or absolute.
    pub relative_locations: bool,
    /// `ETag` on manifest GET/HEAD, `If-Match`/`If-None-Match: *` honoured on manifest PUT (default true).
    pub etags: bool,
    /// Blob GET answers 307 to a second listener (host `localhost:<port2>`) that refuses `Authorization`.
    pub redirect_blobs: bool,
    /// `(limit, remaining)` => Docker Hub style `ratelimit-*` headers on manifest GET/HEAD.
    pub ratelimit: Option<(u64, u64)>,
    /// Blob GET ignores `Range` and always answers 200 with the whole blob (default false).
    pub ignore_range: bool,
    /// Added to every request before it is handled: a round trip to a remote
    /// registry, for benchmarks (default zero).
    pub latency: Duration,
    /// Every blob HEAD answers 200 with a `Content-Length` one byte more than
    /// the stored blob's (1 when absent): a target that lies about sizes.
    pub lie_blob_head_size: bool,
    /// Manifest DELETE by tag answers 405 `UNSUPPORTED` like Docker Hub
    /// (default false: a tag DELETE untags, as OCI 1.1 and distribution 3 do).
    pub refuse_tag_delete: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            referrers_api: true,
            personality: Personality::FullApi,
            mount: true,
            auth: None,
            tag_page_size: None,
            referrers_page_size: None,
            relative_locations: true,
            etags: true,
            redirect_blobs: false,
            ratelimit: None,
            latency: Duration::ZERO,
            lie_blob_head_size: false,
            ignore_range: false,
            refuse_tag_delete: false,
        }
    }
}

/// Credentials and mode of an authenticating registry. No `Debug`: it holds a password.
#[derive(Clone)]
pub struct Auth {
    /// The one valid user name.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Bearer (token server at `/token`) or Basic.
    pub mode: AuthMode,
    /// Lifetime of issued tokens (`expires_in`).
    pub token_ttl: Duration,
    /// Anonymous clients may pull (anonymous tokens get `pull` only).
    pub anonymous_pull: bool,
}

impl Auth {
    /// Bearer auth for `user`/`pass`, 5 minute tokens, no anonymous pull.
    pub fn bearer(username: &str, password: &str) -> Auth {
        Auth {
            username: username.to_string(),
            password: password.to_string(),
            mode: AuthMode::Bearer,
            token_ttl: Duration::from_secs(300),
            anonymous_pull: false,
        }
    }

    /// Basic auth for `user`/`pass`, no anonymous pull.
    pub fn basic(username: &str, password: &str) -> Auth {
        Auth {
            mode: AuthMode::Basic,
            ..Auth::bearer(username, password)
        }
    }
}

/// How clients authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Token auth: 401 + `WWW-Authenticate: Bearer realm=...,service=...,scope=...`.
    Bearer,
    /// Basic auth: 401 + `WWW-Authenticate: Basic realm="test-registry"`.
    Basic,
}

/// One injected fault.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Method to match (case-insensitive); `None` = any.
    pub method: Option<String>,
    /// Substring of the request path.
    pub path_contains: String,
    /// What happens.
    pub kind: FaultKind,
    /// Fires on the next `times` matching requests, then is used up.
    pub times: usize,
}

impl Fault {
    /// A fault firing once for `method` (`None` = any) on paths containing `path_contains`.
    pub fn once(method: Option<&str>, path_contains: &str, kind: FaultKind) -> Fault {
        Fault {
            method: method.map(str::to_string),
            path_contains: path_contains.to_string(),
            kind,
            times: 1,
        }
    }
}

/// What an injected fault does.
#[derive(Clone, Debug)]
pub enum FaultKind {
    /// Answer this status with an OCI JSON error body.
    Status(u16),
    /// 429 `TOOMANYREQUESTS` with the given `Retry-After`.
    TooManyRequests(RetryAfter),
    /// Success status and headers, then the connection is aborted after half the body.
    ResetMidBody,
    /// Full `Content-Length` announced, the body ends after half, connection closed.
    TruncatedBody,
    /// Body of the right length with one byte altered.
    WrongBytes,
    /// Answer normally after this delay.
    Delay(Duration),
    /// Full `Content-Length` announced, the connection closed after this many body bytes (a
    /// body no longer than that is served whole).
    CutAfter(usize),
    /// The whole body, but `chunk` bytes at a time, one chunk every `every`:
    /// a link too slow to be useful yet never silent long enough for an idle timeout.
    Trickle {
        /// Bytes per chunk (at least 1).
        chunk: usize,
        /// Pause before each chunk.
        every: Duration,
    },
}

/// Form of the `Retry-After` header on an injected 429.
#[derive(Clone, Debug)]
pub enum RetryAfter {
    /// No header.
    None,
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After: <HTTP-date>`.
    HttpDate(SystemTime),
}

/// One request as seen by the registry (never the credential).
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Request path (as sent, not decoded).
    pub path: String,
    /// Raw query string.
    pub query: Option<String>,
    /// Status answered.
    pub status: u16,
    /// `Bearer` / `Basic` when an `Authorization` header was sent.
    pub auth_scheme: Option<String>,
    /// When the request arrived (before any injected delay).
    pub at: std::time::Instant,
}

/// State shared by the listeners and the test.
pub(crate) struct Shared {
    pub(crate) options: Options,
    pub(crate) referrers_api: AtomicBool,
    pub(crate) mount: AtomicBool,
    /// `127.0.0.1:<port>` of the main listener.
    pub(crate) host: String,
    /// `localhost:<port2>` of the blob redirect listener.
    pub(crate) blob_host: Option<String>,
    /// `127.0.0.2:<port3>` of the web page a [`Personality::Ghcr303`] redirects to.
    pub(crate) web_host: Option<String>,
    pub(crate) store: Mutex<Store>,
    pub(crate) faults: Mutex<VecDeque<Fault>>,
    pub(crate) log: Mutex<Vec<LoggedRequest>>,
    pub(crate) tokens: Mutex<auth::Tokens>,
    /// Requests being handled now, and the most seen at once.
    pub(crate) in_flight: AtomicUsize,
    pub(crate) max_in_flight: AtomicUsize,
}

/// Lock a mutex, ignoring poisoning (a panicking test must not cascade into others).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running registry; the listeners stop when it is dropped.
pub struct TestRegistry {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl TestRegistry {
    /// Bind 127.0.0.1:0 (and a second port for blob redirects) and serve.
    pub async fn start(options: Options) -> TestRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let blob_listener = if options.redirect_blobs {
            Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        } else {
            None
        };
        let blob_host = blob_listener
            .as_ref()
            .map(|l| format!("localhost:{}", l.local_addr().unwrap().port()));
        // Another origin, as GHCR's github.com web pages are.
        let web_listener = if options.personality == Personality::Ghcr303 {
            Some(tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap())
        } else {
            None
        };
        let web_host = web_listener
            .as_ref()
            .map(|l| l.local_addr().unwrap().to_string());
        let shared = Arc::new(Shared {
            referrers_api: AtomicBool::new(options.referrers_api),
            mount: AtomicBool::new(options.mount),
            options,
            host: addr.to_string(),
            blob_host,
            web_host,
            store: Mutex::new(Store::default()),
            faults: Mutex::new(VecDeque::new()),
            log: Mutex::new(Vec::new()),
            tokens: Mutex::new(auth::Tokens::default()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let mut tasks = Vec::new();
        let app = http::router(shared.clone());
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        if let Some(l) = blob_listener {
            let app = http::blob_router(shared.clone());
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            }));
        }
        if let Some(l) = web_listener {
            let app = http::web_router(shared.clone());
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            }));
        }
        TestRegistry {
            shared,
            addr,
            tasks,
        }
    }

    /// Starts a registry with this personality's preset options.
    pub async fn start_as(personality: Personality) -> TestRegistry {
        TestRegistry::start(personality.options()).await
    }

    /// The personality it was started with.
    pub fn personality(&self) -> Personality {
        self.shared.options.personality
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival-of-answer order.
    pub fn log(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }

    /// The request log so far, emptying it.
    pub fn take_log(&self) -> Vec<LoggedRequest> {
        std::mem::take(&mut *lock(&self.shared.log))
    }

    /// Forget the request log.
    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// Logged requests with this method (case-insensitive; `""` or `"*"` = any) whose path contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| {
                (method.is_empty() || method == "*" || r.method.eq_ignore_ascii_case(method))
                    && r.path.contains(path_contains)
            })
            .count()
    }

    /// Queue a fault (matched in push order).
    pub fn push_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push_back(fault);
    }

    /// The most requests handled at the same time (from arrival to the response head; the
    /// `/token` endpoint and the blob redirect target included) since start or the last reset.
    pub fn max_concurrent_requests(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Restart [`TestRegistry::max_concurrent_requests`] from the current load.
    pub fn reset_max_concurrent_requests(&self) {
        let now = self.shared.in_flight.load(Ordering::SeqCst);
        self.shared.max_in_flight.store(now, Ordering::SeqCst);
    }

    /// Drop every pending fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Faults not used up yet.
    pub fn pending_faults(&self) -> usize {
        lock(&self.shared.faults).len()
    }

    /// Switch the referrers API on or off.
    pub fn set_referrers_api(&self, on: bool) {
        self.shared.referrers_api.store(on, Ordering::SeqCst);
    }

    /// Switch cross-repository mounting on or off.
    pub fn set_mount(&self, on: bool) {
        self.shared.mount.store(on, Ordering::SeqCst);
    }

    /// Store a blob directly; returns `sha256:<hex>`.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = store::sha256_digest(bytes);
        lock(&self.shared.store).put_blob(repo, &digest, Bytes::copy_from_slice(bytes));
        digest
    }

    /// Store a manifest directly under a tag or digest (no validation of references);
    /// indexes its subject for the referrers API. Returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let digest = if store::is_digest_like(reference) {
            reference.to_string()
        } else {
            store::sha256_digest(bytes)
        };
        let tag = (!store::is_digest_like(reference)).then_some(reference);
        lock(&self.shared.store).put_manifest(
            repo,
            &digest,
            tag,
            media_type,
            Bytes::copy_from_slice(bytes),
        );
        digest
    }

    /// Seed an OCI image: a config blob, one blob per layer, and the manifest under `tag`.
    /// Returns the manifest digest. (Convenience over `put_blob`/`put_manifest`.)
    pub fn seed_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> String {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
        let config_digest = self.put_blob(repo, config.as_bytes());
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": self.put_blob(repo, l),
                    "size": l.len(),
                })
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": store::OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        self.put_manifest(repo, tag, store::OCI_MANIFEST, &bytes)
    }

    /// Seed an OCI index under `tag` over existing manifests, given as `(digest, "os/arch")`.
    /// Returns the index digest.
    pub fn seed_index(&self, repo: &str, tag: &str, children: &[(&str, &str)]) -> String {
        let manifests: Vec<serde_json::Value> = children
            .iter()
            .map(|(digest, platform)| {
                let (media_type, bytes) = self
                    .manifest(repo, digest)
                    .unwrap_or_else(|| panic!("seed_index: {digest} is not in {repo}"));
                let (os, arch) = platform.split_once('/').unwrap_or((platform, ""));
                serde_json::json!({
                    "mediaType": media_type,
                    "digest": digest,
                    "size": bytes.len(),
                    "platform": {"os": os, "architecture": arch},
                })
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": store::OCI_INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        self.put_manifest(repo, tag, store::OCI_INDEX, &bytes)
    }

    /// Seed an artifact (OCI image manifest with `artifactType`, the empty config, one
    /// `payload` layer and a `subject`) referring to the manifest `subject` already in `repo`.
    /// Stored by digest only (no tag); returns its digest.
    pub fn seed_referrer(
        &self,
        repo: &str,
        subject: &str,
        artifact_type: &str,
        payload: &[u8],
    ) -> String {
        let (subject_type, subject_bytes) = self
            .manifest(repo, subject)
            .unwrap_or_else(|| panic!("seed_referrer: subject {subject} is not in {repo}"));
        let empty = self.put_blob(repo, b"{}");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": store::OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{
                "mediaType": "application/octet-stream",
                "digest": self.put_blob(repo, payload),
                "size": payload.len(),
            }],
            "subject": {"mediaType": subject_type, "digest": subject, "size": subject_bytes.len()},
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let digest = store::sha256_digest(&bytes);
        self.put_manifest(repo, &digest, store::OCI_MANIFEST, &bytes)
    }

    /// A blob's bytes.
    pub fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        lock(&self.shared.store)
            .blob(repo, digest)
            .map(|b| b.to_vec())
    }

    /// A manifest's media type and exact bytes, by tag or digest.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        lock(&self.shared.store)
            .manifest(repo, reference)
            .map(|(_, mt, b)| (mt, b.to_vec()))
    }

    /// Tags of a repository, sorted.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        lock(&self.shared.store).tags(repo)
    }

    /// Digests of the manifests whose `subject` is `subject`, sorted.
    pub fn referrers(&self, repo: &str, subject: &str) -> Vec<String> {
        lock(&self.shared.store).referrer_digests(repo, subject)
    }

    /// Repositories holding anything, sorted.
    pub fn repositories(&self) -> Vec<String> {
        lock(&self.shared.store).repositories()
    }

    /// Delete a manifest by digest behind the client's back (untags every tag
    /// pointing at it, unindexes it as a referrer). False when it was absent.
    pub fn delete_manifest(&self, repo: &str, digest: &str) -> bool {
        assert!(
            store::is_digest_like(digest),
            "delete_manifest takes a digest"
        );
        lock(&self.shared.store).delete_manifest(repo, digest)
    }

    /// Remove a tag behind the client's back (the manifest stays). False when it was absent.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> bool {
        assert!(!store::is_digest_like(tag), "delete_tag takes a tag");
        lock(&self.shared.store).delete_manifest(repo, tag)
    }

    /// Drop `referrer` from the referrers API's list for `subject` behind the client's back
    /// (the manifest stays): a registry whose index lost an entry. False when it was not listed.
    pub fn unlist_referrer(&self, repo: &str, subject: &str, referrer: &str) -> bool {
        let mut store = lock(&self.shared.store);
        let Some(r) = store.repos.get_mut(repo) else {
            return false;
        };
        r.referrers
            .get_mut(subject)
            .is_some_and(|set| set.remove(referrer))
    }

    /// Upload sessions neither committed nor cancelled.
    pub fn open_uploads(&self) -> usize {
        lock(&self.shared.store).uploads.len()
    }

    /// Every token the token server issued (so tests can check none leaks into logs).
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.shared.tokens).issued()
    }
}
