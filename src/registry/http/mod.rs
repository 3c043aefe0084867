//! The HTTP adapter of the [`Registry`](super::Registry) port: the OCI distribution API
//! (spec-notes §1, §2, §6) over reqwest.
//!
//! One [`HttpRegistry`] serves one registry host and shares its auth
//! state, token cache, limits, referrers-support cache and counters between
//! all repositories. Files: this one holds the adapter's state and its
//! construction; `settings` the [`HttpSettings`]; `request` the request
//! core (redirects, retries, limits, counters, error mapping); `adapter`
//! the [`Registry`](super::Registry) implementation; `session` the auth flow (ping, tokens,
//! re-auth on 401); `auth`, `credentials`, `retry`, `limits`, `stats` are
//! the pure parts; `blob`, `manifest`, `tags`, `referrers` are the API
//! families, with `resume` (cut blob reads go on with `Range`) and
//! `throughput` (a floor for blob bodies) beside `blob`.
//!
//! Credentials only ever go to the registry's own origin: URLs it hands
//! back (upload `Location`, `Link` pages, redirects) may name other hosts,
//! which get requests without `Authorization` (see `request`).
//!
//! Imports only [`crate::oci`] and [`crate::registry`]. reqwest types
//! never leave this module.

pub mod auth;
pub mod credentials;
pub mod limits;
pub mod retry;
pub mod stats;

use crate::oci::is_loopback_host;

mod adapter;
mod blob;
mod delete;
mod manifest;
mod reachability;
mod referrers;
mod request;
mod resume;
mod session;
mod settings;
mod tags;
mod throughput;
mod verdict;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use reqwest::Url;

use self::auth::{Scope, TokenCache};
use self::limits::Limits;
use self::session::AuthScheme;
use super::{ErrorKind, Operation, ReferrersSupport, RegistryError};
use crate::oci::{Location, RepoName};

pub use self::credentials::{Credentials, Secret};
pub use self::retry::RetryPolicy;
pub use self::session::parse_token_response;
pub use self::settings::{DockerConfigSource, HttpSettings, UploadMode};
pub use self::stats::{OperationStats, RateLimitStatus, RequestObserver, RequestStats};
pub use self::tags::{ListingPage, next_link, parse_catalog_page, parse_tag_page};

pub(crate) use self::request::{
    MAX_ERROR_BODY, MAX_METADATA_BODY, ReadError, ReqBody, header_str, parse_error_body,
    read_limited, sanitize, transport_kind,
};

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

/// A registry reached over HTTP(S): a cheap handle on its shared state,
/// so that a blob stream can keep one to resume an interrupted read.
pub struct HttpRegistry {
    shared: Arc<Shared>,
}

impl std::ops::Deref for HttpRegistry {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

mod shared {
    use super::*;

    /// The state of one [`HttpRegistry`], shared by its handles.
    ///
    /// The `std` mutexes guard plain data for a moment and are never held
    /// across an `.await`; the one `tokio` mutex (`token_fetch`) is held
    /// while a token request is in flight, so it must be awaitable.
    pub struct Shared {
        /// The registry as named in image references (`docker.io`,
        /// `localhost:5000`); used in every error and metric.
        pub(super) name: String,
        /// The API origin (`https://registry-1.docker.io/`): requests go here,
        /// and only requests to this origin carry credentials.
        pub(super) base: Url,
        /// One connection pool; redirects are followed by hand.
        pub(super) client: reqwest::Client,
        pub(super) settings: HttpSettings,
        /// Explicit credentials, or those found in the Docker config, looked
        /// up once when first needed (see `session`); `None` inside = anonymous.
        pub(super) credentials: tokio::sync::OnceCell<Option<Credentials>>,
        /// Request rate and in-flight caps.
        pub(super) limits: Limits,
        pub(super) stats: Mutex<RequestStats>,
        /// Set once the `/v2/` ping has answered: the registry is pinged once,
        /// and concurrent first requests wait for the same ping.
        pub(super) ping: tokio::sync::OnceCell<()>,
        /// The scheme the registry asked for (from the ping, or a later 401).
        pub(super) scheme: Mutex<AuthScheme>,
        /// Bearer tokens by realm, service and scope set.
        pub(super) tokens: Mutex<TokenCache>,
        /// Serialises token fetches, so a burst of requests (or of 401s for one
        /// expired token) shares one new token instead of asking N times.
        pub(super) token_fetch: tokio::sync::Mutex<()>,
        /// Referrers-API verdict per repository, with when it was probed.
        pub(super) referrers_cache: Mutex<HashMap<String, (ReferrersSupport, Instant)>>,
        /// The latest Docker Hub pull allowance seen.
        pub(super) hub_ratelimit: Mutex<Option<RateLimitStatus>>,
        /// Receives every request (metrics), if set.
        pub(super) observer: Option<Arc<dyn RequestObserver>>,
        /// Set when the registry could not be reached: requests fail at
        /// once until it expires (see `reachability`).
        pub(super) unreachable: Mutex<Option<super::reachability::Down>>,
        /// When a retry was last announced at info level (one notice per
        /// registry per interval, the rest at debug).
        pub(super) retry_notice: Mutex<Option<Instant>>,
    }
}

use self::shared::Shared;

impl std::fmt::Debug for HttpRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRegistry")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves plain data
    // behind; keep going with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
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

        // Explicit credentials are known now; the Docker config is read on
        // the first request that needs credentials, so building an adapter
        // never runs a credential helper (callers may hold a lock).
        let credentials = match &settings.credentials {
            Some(c) => tokio::sync::OnceCell::new_with(Some(Some(c.clone()))),
            None => tokio::sync::OnceCell::new(),
        };

        Ok(HttpRegistry {
            shared: Arc::new(Shared {
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
                unreachable: Mutex::new(None),
                retry_notice: Mutex::new(None),
            }),
        })
    }

    /// Another handle on the same registry state (connections, limits,
    /// tokens, counters).
    pub(crate) fn handle(&self) -> HttpRegistry {
        HttpRegistry {
            shared: self.shared.clone(),
        }
    }

    /// Reports every request to `observer` (metrics) as well.
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        // Called right after `new`, before any handle exists.
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.observer = Some(observer);
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_choice() {
        let r = HttpRegistry::new("127.0.0.1:5000", HttpSettings::default()).unwrap();
        assert_eq!(r.base_url(), "http://127.0.0.1:5000/");
        let r = HttpRegistry::new(
            "docker.io",
            HttpSettings {
                docker_config: DockerConfigSource::Off,
                ..HttpSettings::default()
            },
        )
        .unwrap();
        assert_eq!(r.base_url(), "https://registry-1.docker.io/");
        let r = HttpRegistry::new(
            "reg.example:5000",
            HttpSettings {
                plain_http: Some(true),
                docker_config: DockerConfigSource::Off,
                ..HttpSettings::default()
            },
        )
        .unwrap();
        assert_eq!(r.base_url(), "http://reg.example:5000/");
        let r = HttpRegistry::new(
            "localhost:5000",
            HttpSettings {
                plain_http: Some(false),
                docker_config: DockerConfigSource::Off,
                ..HttpSettings::default()
            },
        )
        .unwrap();
        assert_eq!(r.base_url(), "https://localhost:5000/");
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
