//! Configuration: the file format ([`file`]), the one resolve step that turns
//! it into typed, validated data ([`resolve`]), and the resolved types below.
//!
//! Layers, later ones winning: built-in defaults, then the file (TOML or YAML
//! by extension), then `OCIMIRROR_<SECTION>__<KEY>[__<KEY>...]` environment
//! variables (`__` nests; names are lower-cased, so
//! `OCIMIRROR_LIMITS__CONCURRENT_JOBS=8` sets `limits.concurrent_jobs`). An
//! environment variable whose last part ends in `_FILE` reads the value from
//! that file (`OCIMIRROR_REGISTRIES__ghcr.io__PASSWORD_FILE=/run/secrets/pw`),
//! like lldap's `FileAdapter`. Jobs cannot be addressed from the environment.
//!
//! The resolved types are plain data: they do not know the copy engine or
//! the HTTP adapter, which are built from them elsewhere.
//!
//! May import: `oci`, `logging` for its `LogFormat`, and the copy engine's
//! mode enums (`ReferrersMode`, `PlatformMode`): one word per concept.

mod check;
mod deletions;
mod env;
mod events;
pub mod file;
mod problems;
mod resolve;
mod schedule;
mod tags;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::oci::{ImageReference, Location, ReferenceError, RepoName};

pub use crate::copy::{CosignMode, PlatformMode, PlatformSpec, ReferrersMode};
pub use crate::logging::LogFormat;
pub use crate::oci::ReferrerKind;
pub use crate::secret::Secret;
pub use check::{CheckReport, check, load, load_with_env, show};
pub use deletions::{DeletePolicy, OverwriteMode, OverwritePolicy};
pub use events::{EventSettings, WebhookFormat, WebhookSource};
pub use problems::{ConfigErrors, ConfigProblem, KeyPath, KeySegment};
pub use resolve::load_policy;
pub use schedule::{CronExpr, Schedule, Timing};
pub use tags::{Pattern, TagSelector};

/// The only configuration schema version this build understands.
pub const CONFIG_VERSION: u32 = 1;

/// Exit status of `ocimirror config check` for an invalid configuration
/// (`EX_CONFIG` from sysexits.h).
pub const EXIT_INVALID_CONFIG: u8 = 78;

/// Prefix of environment variables that override the file.
pub const ENV_PREFIX: &str = "OCIMIRROR_";

// ---------------------------------------------------------------------------
// Small enums shared by the file and resolved forms
// ---------------------------------------------------------------------------

/// Blob upload style.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadMode {
    /// POST then one PUT with the whole blob.
    #[default]
    Monolithic,
    /// POST, PATCH per chunk, then PUT.
    Chunked,
}

// ---------------------------------------------------------------------------
// Resolved configuration
// ---------------------------------------------------------------------------

/// The resolved, validated configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Schema version (always [`CONFIG_VERSION`]).
    pub version: u32,
    /// The file it was loaded from.
    #[serde(skip)]
    pub path: PathBuf,
    /// Global concurrency bounds.
    pub limits: Limits,
    /// Checkpoint database.
    pub state: StateSettings,
    /// Metrics/health endpoint.
    pub server: ServerSettings,
    /// Logging.
    pub log: LogSettings,
    /// Per-host settings from `[registries]`, keyed by host.
    pub registries: BTreeMap<String, RegistrySettings>,
    /// The jobs, in file order.
    pub jobs: Vec<Job>,
    /// Webhook senders and the event queue (`[events]`).
    pub events: EventSettings,
    /// Things that are valid but probably not meant (e.g. registry settings
    /// no job uses). `config check` prints them.
    #[serde(skip)]
    pub warnings: Vec<ConfigProblem>,
}

impl Config {
    /// Makes the relative layout directories of jobs (which only the file
    /// can set) absolute against `base`, the config file's directory; the
    /// other paths are taken from there by the resolver.
    pub(crate) fn rebase_paths(&mut self, base: &Path) {
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = lexically_normal(&base.join(&*p));
            }
        };
        for job in &mut self.jobs {
            if let Source::Repository(ImageReference {
                location: Location::Layout(dir),
                ..
            }) = &mut job.source
            {
                rebase(dir);
            }
            if let Target::Repository(ImageReference {
                location: Location::Layout(dir),
                ..
            }) = &mut job.target
            {
                rebase(dir);
            }
        }
    }

    /// The settings for `host`: the configured ones, or the defaults.
    pub fn registry(&self, host: &str) -> RegistrySettings {
        self.registries
            .get(host)
            .cloned()
            .unwrap_or_else(|| RegistrySettings::defaults(host))
    }

    /// The job called `name`.
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The configuration as TOML for `ocimirror config show`, with every
    /// default filled in and secrets as `"<redacted>"`.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

/// `[limits]`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Limits {
    /// Jobs that may run at the same time.
    pub concurrent_jobs: usize,
    /// Blob transfers in flight at once.
    pub concurrent_blobs: usize,
    /// Grace period for running copies on shutdown.
    #[serde(serialize_with = "ser_duration")]
    pub drain_timeout: Duration,
    /// Longest time one image of a job may take.
    #[serde(serialize_with = "ser_duration")]
    pub item_timeout: Duration,
    /// Indexes nested in indexes, per image.
    pub max_index_depth: usize,
    /// Manifests plus distinct blobs per image.
    pub max_nodes_per_image: usize,
    /// Manifest bytes read per image.
    pub max_manifest_bytes_per_image: u64,
    /// Referrers listed for one subject.
    pub max_referrers_per_subject: usize,
}

impl Limits {
    /// Default blob transfers at once. `bench/tune.sh`: against a registry
    /// 25 ms away a cold mirror takes 12.2 s at 2/4/8 (job concurrency /
    /// blobs / in-flight requests), 2.4 s at 8/32/32; on loopback it is flat.
    pub const DEFAULT_CONCURRENT_BLOBS: usize = 32;
    /// Default deadline of one image: far above an honest copy of a large
    /// image (10 GiB at 10 MiB/s is 17 minutes).
    pub const DEFAULT_ITEM_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
}

/// `[state]`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateSettings {
    /// sqlite database path (unused when `postgres` is set).
    pub database: PathBuf,
    /// The PostgreSQL URL when `state.database` is one: the state is then
    /// shared by replicas, which share each run's work.
    pub postgres: Option<Secret>,
    /// On PostgreSQL, how long a replica's lease on a run or an item lasts
    /// unrenewed: a replica that dies loses its work to the others after it.
    #[serde(serialize_with = "ser_duration")]
    pub lease_ttl: Duration,
    /// An unchanged item is trusted this long after its last verified copy;
    /// then the next run checks it against the target again.
    #[serde(serialize_with = "ser_duration")]
    pub verify_after: Duration,
}

/// `[server]`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerSettings {
    /// Listen address for metrics and health.
    pub listen: SocketAddr,
    /// Bearer token for the HTTP API's writes (`None`: read-only API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_token: Option<Secret>,
}

/// `[log]`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
    /// tracing filter directive.
    pub level: String,
}

/// How to authenticate to a registry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RegistryAuth {
    /// No credentials configured (Docker config may still supply some).
    Anonymous,
    /// HTTP basic credentials (also used for the token exchange).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// A bearer/identity token.
    Token {
        /// The token.
        token: Secret,
    },
}

/// Whether and where to read Docker's `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub enum DockerConfig {
    /// Not used.
    Disabled,
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    Default,
    /// This file.
    Path(PathBuf),
}

impl Serialize for DockerConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DockerConfig::Disabled => s.serialize_bool(false),
            DockerConfig::Default => s.serialize_bool(true),
            DockerConfig::Path(p) => p.serialize(s),
        }
    }
}

/// Connection settings for one registry host.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegistrySettings {
    /// The host (the `[registries]` key).
    #[serde(skip)]
    pub host: String,
    /// Credentials.
    pub auth: RegistryAuth,
    /// Docker `config.json` fallback for credentials.
    pub docker_config: DockerConfig,
    /// Verify TLS certificates.
    pub tls_verify: bool,
    /// Extra CA certificates (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Use plain HTTP.
    pub plain_http: bool,
    /// Request rate limit (per second), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Blob upload style.
    pub upload: UploadMode,
    /// Chunk size for chunked uploads, in bytes.
    pub chunk_size: u64,
    /// Forced referrers capability (`Auto` = detect).
    pub referrers: ReferrersMode,
    /// How long a detected referrers verdict is trusted.
    #[serde(serialize_with = "ser_duration")]
    pub referrers_cache_ttl: Duration,
    /// Total deadline of every request except blob bodies.
    #[serde(serialize_with = "ser_duration")]
    pub request_timeout: Duration,
    /// Slowest blob body accepted (bytes per second; 0 = no floor).
    pub min_blob_bytes_per_second: u64,
}

impl RegistrySettings {
    /// Default in-flight requests per host (see `bench/tune.sh`).
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;
    /// Default chunk size (8 MiB).
    pub const DEFAULT_CHUNK_SIZE: u64 = 8 * 1024 * 1024;
    /// Default trust of a referrers verdict (regclient and oras-go: 5 min).
    pub const DEFAULT_REFERRERS_CACHE_TTL: Duration = Duration::from_secs(300);
    /// Default total deadline of a metadata request.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default floor for blob bodies.
    pub const DEFAULT_MIN_BLOB_BYTES_PER_SECOND: u64 = 1024;

    /// The settings used for a host with no `[registries]` entry.
    pub fn defaults(host: &str) -> Self {
        RegistrySettings {
            host: host.to_string(),
            auth: RegistryAuth::Anonymous,
            docker_config: DockerConfig::Disabled,
            tls_verify: true,
            ca_file: None,
            plain_http: false,
            requests_per_second: None,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
            upload: UploadMode::Monolithic,
            chunk_size: Self::DEFAULT_CHUNK_SIZE,
            referrers: ReferrersMode::Auto,
            referrers_cache_ttl: Self::DEFAULT_REFERRERS_CACHE_TTL,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            min_blob_bytes_per_second: Self::DEFAULT_MIN_BLOB_BYTES_PER_SECOND,
        }
    }
}

/// `path` without `dir/..` pairs (`config/../target` is `target`), so
/// messages and the checkpoint name a layout the way a user would.
pub(crate) fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// One mirroring job, with `[defaults]` merged in.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    /// Unique name.
    pub name: String,
    /// What to copy from.
    pub source: Source,
    /// Where to copy to.
    pub target: Target,
    /// Which tags to copy.
    pub tags: TagSelector,
    /// Platforms to copy (empty = all).
    pub platforms: Vec<PlatformSpec>,
    /// How `platforms` applies.
    pub platform_mode: PlatformMode,
    /// Referrer options.
    pub referrers: ReferrerOptions,
    /// When the job runs.
    pub schedule: Schedule,
    /// Images copied at once.
    pub concurrency: usize,
    /// Deletion sync (`[jobs.delete]`).
    pub delete: DeletePolicy,
    /// Moved tags (`[jobs.overwrite]`).
    pub overwrite: OverwritePolicy,
    /// Signature policy (off unless configured).
    pub policy: crate::policy::Policy,
}

impl Job {
    /// Default images at once (see [`Limits::DEFAULT_CONCURRENT_BLOBS`]).
    pub const DEFAULT_CONCURRENCY: usize = 8;

    /// The registry hosts this job reads from or writes to.
    pub fn registry_hosts(&self) -> Vec<&str> {
        let source = match &self.source {
            Source::Repository(r) => registry_host(&r.location),
            Source::Catalog(c) => Some(c.registry.as_str()),
        };
        let target = match &self.target {
            Target::Repository(r) => registry_host(&r.location),
            Target::Mapping(m) => Some(m.registry.as_str()),
        };
        source.into_iter().chain(target).collect()
    }

    /// The target repository for `source_repo` (one of the source's
    /// repositories). For a repository target that is the target itself;
    /// for a mapping it is `<registry>/<prefix>/<path>`, where `path` is the
    /// source repository, without the catalog namespace when
    /// `strip_namespace` is set.
    pub fn target_repository(
        &self,
        source_repo: &RepoName,
    ) -> Result<ImageReference, ReferenceError> {
        match &self.target {
            Target::Repository(r) => Ok(r.clone()),
            Target::Mapping(m) => {
                let mut path = source_repo.as_str();
                if m.strip_namespace
                    && let Source::Catalog(c) = &self.source
                {
                    path = path.strip_prefix(c.namespace.as_str()).unwrap_or(path);
                }
                m.map(path)
            }
        }
    }
}

fn registry_host(location: &Location) -> Option<&str> {
    match location {
        Location::Registry(host) => Some(host),
        Location::Layout(_) => None,
    }
}

/// What a job copies from.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Source {
    /// One repository (registry or OCI layout).
    Repository(#[serde(serialize_with = "ser_display")] ImageReference),
    /// Repositories discovered through the registry's `_catalog`.
    Catalog(CatalogSource),
}

/// Repositories of a registry selected by namespace and regexes.
#[derive(Clone, Debug, Serialize)]
pub struct CatalogSource {
    /// Registry host.
    pub registry: String,
    /// Path prefix ending in `/`, or empty for the whole registry.
    pub namespace: String,
    /// A repository must match one of these (empty = all).
    pub include: Vec<Pattern>,
    /// A matching repository is skipped.
    pub exclude: Vec<Pattern>,
}

impl CatalogSource {
    /// True when the catalog entry `repo` belongs to this source.
    pub fn matches(&self, repo: &str) -> bool {
        repo.starts_with(&self.namespace)
            && (self.include.is_empty() || self.include.iter().any(|p| p.is_match(repo)))
            && !self.exclude.iter().any(|p| p.is_match(repo))
    }
}

/// Where a job copies to.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Target {
    /// One repository (registry or OCI layout).
    Repository(#[serde(serialize_with = "ser_display")] ImageReference),
    /// Each source repository under a prefix on a registry.
    Mapping(TargetMapping),
}

/// Maps source repository paths below a prefix on a registry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetMapping {
    /// Registry host.
    pub registry: String,
    /// Path prefix without trailing `/` (may be empty).
    pub prefix: String,
    /// Remove the catalog namespace before adding the prefix.
    pub strip_namespace: bool,
}

impl TargetMapping {
    /// `<registry>/<prefix>/<path>` as a reference.
    pub fn map(&self, path: &str) -> Result<ImageReference, ReferenceError> {
        let joined = match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{path}", self.prefix),
        };
        format!("{}/{joined}", self.registry).parse()
    }
}

/// Referrer options, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReferrerOptions {
    /// Copy referrers at all.
    pub enabled: bool,
    /// Levels of referrers-of-referrers to follow.
    pub depth: u32,
    /// How the source's referrers are discovered.
    pub source_mode: ReferrersMode,
    /// How referrers are published on the target.
    pub target_mode: ReferrersMode,
    /// Only these artifact types (empty = all).
    pub include_artifact_types: Vec<String>,
    /// Never these artifact types.
    pub exclude_artifact_types: Vec<String>,
    /// Only these kinds, besides `include_artifact_types` (both empty = all).
    pub include_kinds: Vec<ReferrerKind>,
    /// Never these kinds.
    pub exclude_kinds: Vec<ReferrerKind>,
    /// Copy cosign legacy attachment tags.
    pub cosign_tags: bool,
    /// Convert cosign attachments between legacy tags and referrers.
    pub cosign: CosignMode,
    /// When converting, also copy the original form.
    pub cosign_keep_original: bool,
}

impl Default for ReferrerOptions {
    fn default() -> Self {
        ReferrerOptions {
            enabled: true,
            depth: crate::copy::CopyOptions::DEFAULT_MAX_DEPTH as u32,
            source_mode: ReferrersMode::Auto,
            target_mode: ReferrersMode::Auto,
            include_artifact_types: Vec::new(),
            exclude_artifact_types: Vec::new(),
            include_kinds: Vec::new(),
            exclude_kinds: Vec::new(),
            cosign_tags: true,
            cosign: CosignMode::Keep,
            cosign_keep_original: false,
        }
    }
}

// ---------------------------------------------------------------------------
// Serialisation helpers for `show`
// ---------------------------------------------------------------------------

/// `Duration` in humantime form (`"15m"`, `"1h 30m"`, `"0s"`).
pub fn fmt_duration(d: Duration) -> String {
    if d.is_zero() {
        "0s".to_string()
    } else {
        humantime::format_duration(d).to_string()
    }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_duration(*d))
}

fn ser_display<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

#[cfg(test)]
mod tests;
