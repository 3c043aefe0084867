//! Settings of the HTTP adapter: one [`HttpSettings`] per registry host,
//! with defaults that suit a public registry.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use super::credentials::Credentials;
use super::retry::RetryPolicy;
use crate::registry::ReferrersSupport;

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

/// Where credentials may come from when none are given explicitly.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum DockerConfigSource {
    /// No Docker config at all: no file is read, not even to look.
    Off,
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    #[default]
    Default,
    /// This file.
    Path(PathBuf),
}

/// Settings of one [`HttpRegistry`](super::HttpRegistry). `Debug` never shows secrets.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Explicit credentials; when `None`, the Docker config is consulted.
    pub credentials: Option<Credentials>,
    /// The Docker `config.json` consulted when `credentials` is `None`.
    pub docker_config: DockerConfigSource,
    /// Longest a `docker-credential-*` helper may take before it is killed.
    pub credential_helper_timeout: Duration,
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
    /// Total deadline of one metadata request (ping, token, manifest,
    /// tags, referrers, catalog), body included: a server trickling bytes
    /// cannot hold a job forever.
    pub metadata_timeout: Duration,
    /// Slowest blob body accepted, in bytes per second averaged over
    /// `blob_throughput_window`; 0 = no minimum.
    pub min_blob_bytes_per_second: u64,
    /// The window over which blob throughput is averaged.
    pub blob_throughput_window: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            credentials: None,
            docker_config: DockerConfigSource::Default,
            credential_helper_timeout: Duration::from_secs(30),
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
            metadata_timeout: Duration::from_secs(60),
            min_blob_bytes_per_second: 1024,
            blob_throughput_window: Duration::from_secs(30),
        }
    }
}
