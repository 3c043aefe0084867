//! The configuration file as written: serde structs that mirror the TOML/YAML
//! file, with `deny_unknown_fields` everywhere. The `///` comments on these
//! fields are the reference for the file format.
//!
//! Almost every field is an `Option` so that [`super::resolve`] can tell "not
//! set" (fall back to `[defaults]`, then to the built-in default) from "set".
//! Values that need parsing (durations, regexes, references, cron, semver)
//! stay strings here so that resolve can report every bad value at once
//! instead of serde stopping at the first.
//!
//! Imports nothing from the crate except the shared enums in `config`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use figment::value::Value;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use super::{
    CosignMode, LogFormat, OverwriteMode, PlatformMode, ReferrersMode, Secret, UploadMode,
};

/// The top level, with every section kept as a raw value so that a fault in
/// one section (or one job) does not hide faults in the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopLevel {
    pub version: Option<Value>,
    pub defaults: Option<Value>,
    pub limits: Option<Value>,
    pub state: Option<Value>,
    pub server: Option<Value>,
    pub log: Option<Value>,
    pub registries: Option<BTreeMap<String, Value>>,
    pub jobs: Option<Vec<Value>>,
    pub events: Option<Value>,
}

/// `[defaults]`: settings applied to every job that does not set them itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDefaults {
    /// When jobs run. Built-in default: `{ interval = "1h" }`, no jitter.
    pub schedule: Option<FileSchedule>,
    /// Platforms to copy, as `os/arch[/variant]` (e.g. `"linux/arm64/v8"`).
    /// Empty (the default) copies every platform.
    pub platforms: Option<Vec<String>>,
    /// How `platforms` is applied to multi-platform indexes: `"filter"`
    /// copies only the listed platforms' manifests but pushes the original
    /// index bytes, so digests are preserved (the index then names manifests
    /// the target lacks); `"whole"` copies every platform. Default: `"filter"`
    /// when `platforms` is non-empty, else `"whole"`.
    pub platform_mode: Option<PlatformMode>,
    /// Referrer (signature, SBOM, attestation) options.
    pub referrers: Option<FileReferrers>,
    /// Signature policy (issue 17): which images may be mirrored.
    pub policy: Option<FilePolicy>,
}

/// A schedule: exactly one of `interval` or `cron`, plus an optional jitter.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSchedule {
    /// Run every this long, e.g. `"15m"`, `"1h 30m"` (humantime syntax).
    /// The first run starts right after start-up (plus jitter).
    pub interval: Option<String>,
    /// Run at the times of a 5-field cron expression in UTC, e.g.
    /// `"0 */6 * * *"` (minute hour day-of-month month day-of-week).
    pub cron: Option<String>,
    /// Delay each run by up to this long, e.g. `"30s"`. The delay is fixed
    /// per job (derived from the job name), so restarts do not make all jobs
    /// fire at once. Default `"0s"`.
    pub jitter: Option<String>,
}

/// Referrer options. Each field falls back to `[defaults.referrers]`, then to
/// its built-in default.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReferrers {
    /// Copy referrers of each copied manifest. Default `true`.
    pub enabled: Option<bool>,
    /// How many levels of referrers-of-referrers to follow (1 = only direct
    /// referrers). Default `4`.
    pub depth: Option<u32>,
    /// How referrers are discovered on the source: `"auto"` (referrers API,
    /// then the `sha256-<hex>` fallback tag), `"api"` (API only) or `"tags"`
    /// (fallback tag only). `"auto"` defers to the registry's `referrers`
    /// setting. Default `"auto"`.
    pub source_mode: Option<ReferrersMode>,
    /// How referrers are published on the target: `"auto"` (detect whether
    /// the target has the referrers API and maintain the fallback tag when it
    /// has not), `"api"` (push with `subject` only) or `"tags"` (always
    /// maintain the fallback tag). Default `"auto"`.
    pub target_mode: Option<ReferrersMode>,
    /// Copy only referrers whose `artifactType` is listed (empty = all).
    pub include_artifact_types: Option<Vec<String>>,
    /// Never copy referrers whose `artifactType` is listed.
    pub exclude_artifact_types: Option<Vec<String>>,
    /// Copy only referrers of these kinds: `"signature"` (cosign, also its
    /// legacy `.sig` tags, and Notary), `"attestation"` (in-toto, DSSE,
    /// cosign `.att`), `"sbom"` (SPDX, CycloneDX, Syft, cosign `.sbom`),
    /// `"other"`. Adds up with `include_artifact_types`: a referrer either
    /// list names is copied (both empty = all).
    pub include_kinds: Option<Vec<String>>,
    /// Never copy referrers of these kinds (same words as `include_kinds`).
    pub exclude_kinds: Option<Vec<String>>,
    /// Also copy cosign's legacy attachment tags (`sha256-<hex>.sig`, `.att`,
    /// `.sbom`) of every copied image. Default `true`.
    pub cosign_tags: Option<bool>,
    // --- cosign conversion (issue #15) ---
    /// cosign attachments: `"keep"` (as they are), `"to-referrers"` (legacy
    /// `.sig/.att/.sbom` tags become OCI 1.1 referrers) or `"to-tags"` (the
    /// reverse). Default `"keep"`.
    pub cosign: Option<CosignMode>,
    /// When converting, also copy the original form. Default `false`.
    pub cosign_keep_original: Option<bool>,
}

/// `[limits]`: global concurrency bounds and the bounds on one image.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Jobs that may run at the same time. Default `2`.
    pub concurrent_jobs: Option<usize>,
    /// Blob transfers in flight at once, over all jobs. Default `32`.
    pub concurrent_blobs: Option<usize>,
    /// On shutdown, how long running copies may take to finish before they
    /// are abandoned (they restart cleanly next time). Default `"30s"`.
    pub drain_timeout: Option<String>,
    /// Longest time one image (item) of a job may take before it fails
    /// with a named timeout, so one slow repository cannot hold a job (whose
    /// next ticks are skipped while it runs) for ever. Default `"2h"`.
    pub item_timeout: Option<String>,
    /// Indexes nested in indexes, per image. Default `8`.
    pub max_index_depth: Option<usize>,
    /// Manifests plus distinct blobs per image. Default `10000`.
    pub max_nodes_per_image: Option<usize>,
    /// Manifest bytes read per image. Default `"64MiB"`.
    pub max_manifest_bytes_per_image: Option<ByteSizeValue>,
    /// Referrers listed for one subject. Default `1000`.
    pub max_referrers_per_subject: Option<usize>,
}

/// `[state]`: the checkpoint database.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileState {
    /// Path of the sqlite database (created when missing; a relative path is
    /// taken from the config file's directory, the default one from the
    /// working directory). It is a cache: deleting it only
    /// costs extra HEAD requests on the next run. Default `"ocimirror.db"`.
    pub database: Option<PathBuf>,
    /// How long an item whose source is unchanged is trusted without
    /// checking the target again; after that the next run verifies it
    /// against the target (repairing what was changed behind our back).
    /// `"0s"` verifies every run. Default `"24h"`.
    pub verify_after: Option<String>,
    /// On PostgreSQL, how long a replica's claim on shared work lasts
    /// unrenewed. Default `"30s"`.
    pub lease_ttl: Option<String>,
}

/// `[server]`: the metrics and health endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// Address for `/metrics`, `/healthz` and `/readyz`, e.g.
    /// `"127.0.0.1:9110"`. Default `"127.0.0.1:9110"`.
    pub listen: Option<String>,
    /// Bearer token that the HTTP API's writes (`POST /api/v1/...`) must
    /// carry. Without it the API is read-only. Prefer `api_token_file`.
    pub api_token: Option<Secret>,
    /// File whose content (trailing newline removed) is `api_token`.
    pub api_token_file: Option<PathBuf>,
}

// --- events (webhooks) ------------------------------------------------------

/// `[events]`: event-driven mirroring from registry webhooks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEvents {
    /// How long an item waits after its latest event before it is synced,
    /// so a burst (image, then its signature) becomes one sync. Default
    /// `"200ms"`.
    pub debounce: Option<String>,
    /// Items waiting to be synced at most; past it a webhook is answered
    /// 429 (the sender retries). Default `1000`.
    pub queue_capacity: Option<usize>,
    /// Largest webhook body accepted, in bytes. Default `1048576`.
    pub max_body_bytes: Option<usize>,
    /// The senders, by name: `/webhooks/<format>/<name>` receives them.
    pub sources: Option<BTreeMap<String, Value>>,
}

/// `[events.sources.<name>]`: one webhook sender.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebhookSource {
    /// `"distribution"`, `"harbor"`, `"dockerhub"`, `"github"` or
    /// `"generic"`.
    pub format: Option<String>,
    /// The registry host the sender speaks for, as jobs name it in their
    /// source. Required except for `"generic"` (whose body names it).
    pub registry: Option<String>,
    /// Shared bearer token (`Authorization: Bearer <token>`, or `?token=`
    /// for senders that cannot set headers). Prefer `token_file`.
    pub token: Option<Secret>,
    /// File whose content (trailing newline removed) is the token.
    pub token_file: Option<PathBuf>,
    /// Key of the HMAC-SHA256 signature of the body (`X-Hub-Signature-256`
    /// for GitHub, `X-Ocimirror-Signature` otherwise). Prefer
    /// `hmac_secret_file`.
    pub hmac_secret: Option<Secret>,
    /// File whose content (trailing newline removed) is `hmac_secret`.
    pub hmac_secret_file: Option<PathBuf>,
}

/// `[log]`: logging.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    /// `"text"`, `"json"`, or `"auto"` (text on a terminal, JSON otherwise).
    /// Default `"auto"`.
    pub format: Option<LogFormat>,
    /// A tracing filter, e.g. `"info"` or `"info,ocimirror::copy=debug"`.
    /// Default `"info"`.
    pub level: Option<String>,
}

/// `[registries."<host>"]`: connection settings for one registry host, used
/// by every job that reads from or writes to it. The key is the registry
/// host as it appears in references (`"ghcr.io"`, `"localhost:5000"`,
/// `"docker.io"`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRegistry {
    /// User name for HTTP basic auth (also used to fetch bearer tokens).
    pub username: Option<String>,
    /// Password for `username`. Prefer `password_file`.
    pub password: Option<Secret>,
    /// File whose content (trailing newline removed) is the password.
    pub password_file: Option<PathBuf>,
    /// A bearer/identity token, instead of `username`/`password`. Prefer
    /// `token_file`.
    pub token: Option<Secret>,
    /// File whose content (trailing newline removed) is the token.
    pub token_file: Option<PathBuf>,
    /// Read credentials from a Docker `config.json` when none are set here:
    /// `true` for `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`,
    /// or a path. Default `false`.
    pub docker_config: Option<BoolOrPath>,
    /// Verify the registry's TLS certificate. Default `true`.
    pub tls_verify: Option<bool>,
    /// PEM file with extra CA certificates to trust for this registry.
    pub ca_file: Option<PathBuf>,
    /// Talk plain HTTP instead of HTTPS. Default `false`.
    pub plain_http: Option<bool>,
    /// Rate limit for requests to this host (per second). Default: none.
    pub requests_per_second: Option<f64>,
    /// Requests in flight to this host at once. Default `32`.
    pub max_in_flight: Option<usize>,
    /// Blob upload style: `"monolithic"` (one PUT) or `"chunked"` (PATCH in
    /// `chunk_size` pieces). Default `"monolithic"`.
    pub upload: Option<UploadMode>,
    /// Chunk size for chunked uploads: bytes, or a string like `"8MiB"`.
    /// Default `"8MiB"`.
    pub chunk_size: Option<ByteSizeValue>,
    /// Force this registry's referrers capability instead of detecting it:
    /// `"api"` (has the referrers API), `"tags"` (use the fallback tag
    /// schema), `"auto"` (detect). Default `"auto"`.
    pub referrers: Option<ReferrersMode>,
    /// How long a detected referrers-API verdict is trusted before the
    /// registry is asked again. Default `"5m"`.
    pub referrers_cache_ttl: Option<String>,
    /// Total deadline of every request except blob bodies (manifests, tags,
    /// referrers, tokens), body included. Default `"60s"`.
    pub request_timeout: Option<String>,
    /// Slowest blob body accepted, in bytes per second averaged over 30 s
    /// of waiting (`0` turns the floor off). Default `1024`.
    pub min_blob_bytes_per_second: Option<u64>,
}

/// `[[jobs]]`: one mirroring job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJob {
    /// Unique job name (letters, digits, `.`, `_`, `-`); used in logs,
    /// metrics and the state database.
    pub name: String,
    /// What to copy from. Either a repository reference without tag
    /// (`"ghcr.io/org/app"`, `"oci:path/to/layout"`), or a table selecting
    /// many repositories through the registry's `_catalog`:
    /// `{ registry = "host", namespace = "team/", include = [...], exclude = [...] }`.
    pub source: StrOrTable<FileCatalogSource>,
    /// Where to copy to. Either a repository reference without tag
    /// (`"registry.internal/mirror/app"`, `"oci:target/dir"`), or a table
    /// mapping every source repository to a path under a registry:
    /// `{ registry = "host", prefix = "mirror/", strip_namespace = false }`.
    /// A catalog source needs the table form.
    pub target: StrOrTable<FileTargetMapping>,
    /// Which tags to copy. Default: every tag.
    pub tags: Option<FileTags>,
    /// Overrides `[defaults].platforms`.
    pub platforms: Option<Vec<String>>,
    /// Overrides `[defaults].platform_mode`; `"whole"` here also drops the
    /// default `platforms` list.
    pub platform_mode: Option<PlatformMode>,
    /// Overrides fields of `[defaults.referrers]`.
    pub referrers: Option<FileReferrers>,
    /// Overrides `[defaults.schedule]` (`interval`/`cron` replace the default
    /// timing together; `jitter` falls back on its own).
    pub schedule: Option<FileSchedule>,
    /// Images of this job copied at once, and transfers in flight per image.
    /// Default `8`.
    pub concurrency: Option<usize>,
    /// Deletion sync: remove target tags this job wrote once the source
    /// drops them. Off by default.
    pub delete: Option<FileDelete>,
    /// What happens when a target tag this job wrote would move to a new
    /// digest. Default: it moves.
    pub overwrite: Option<FileOverwrite>,
    /// Overrides fields of `[defaults.policy]` (`cosign` replaces the list).
    pub policy: Option<FilePolicy>,
}

/// `[jobs.delete]`: deletion sync of one job.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDelete {
    /// Delete target tags this job wrote once the source no longer lists
    /// or selects them. Default `false`.
    pub enabled: Option<bool>,
    /// How long a tag must be absent from the source, continuously, before
    /// its target copy is deleted. Default `"24h"`.
    pub grace: Option<String>,
    /// The most of the job's tags one run may delete; more due trips the
    /// guard and deletes nothing. Default `0.1`.
    pub max_fraction: Option<f64>,
}

/// `[jobs.overwrite]`: tags this job wrote that the source moves.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOverwrite {
    /// `"move"` (default), `"backup"` (keep the old digest under
    /// `backup_tag` first) or `"immutable"` (refuse: the item fails).
    pub mode: Option<OverwriteMode>,
    /// Backup tag template: `{tag}`, and `{date}` as `YYYYMMDD-HHMMSS` UTC.
    /// Default `"{tag}-prev-{date}"`.
    pub backup_tag: Option<String>,
    /// Backups kept per tag, newest first; older ones are deleted.
    /// Default `3`.
    pub keep: Option<usize>,
}

/// `[defaults.policy]` / `[jobs.policy]`: the signature policy.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicy {
    /// `"off"` (default), `"warn"` (copy unverified images and report
    /// them) or `"enforce"` (do not copy them).
    pub mode: Option<crate::policy::Mode>,
    /// `"any"` (default): one verifier accepting a signature admits the
    /// image; `"all"`: every verifier must accept one.
    pub require: Option<crate::policy::Require>,
    /// cosign public-key verifiers.
    pub cosign: Option<Vec<FileCosignKey>>,
    /// Notation (Notary Project) verifiers.
    pub notation: Option<Vec<FileNotation>>,
}

/// `[[policy.notation]]`: a Notation trust store and trusted identities.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNotation {
    /// The verifier's name (plans, reasons, `require = "all"`).
    pub name: String,
    /// Trusted root certificates: a PEM (or DER) file, or a directory of
    /// `.pem`, `.crt` and `.cer` files (notation's `x509/ca/<name>`). With
    /// `trust_policy`: notation's trust store directory (holding
    /// `x509/ca/<name>/`).
    pub trust_store: PathBuf,
    /// Trusted signers: `["*"]`, or `x509.subject: C=.., ST=.., O=..`
    /// distinguished names (C, ST and O required), matched against the
    /// signing certificate's subject. Required unless `trust_policy`.
    pub identities: Option<Vec<String>>,
    /// notation's `trustpolicy.json` (version 1.0): trust rules chosen by
    /// the source `<registry>/<repository>`, instead of `identities`.
    pub trust_policy: Option<PathBuf>,
}

/// `[[policy.cosign]]`: a cosign public key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCosignKey {
    /// The verifier's name (plans, reasons, `require = "all"`).
    pub name: String,
    /// PEM public key file (`cosign.pub`): ECDSA P-256, Ed25519 or RSA.
    pub key: PathBuf,
    /// Annotations the signed payload must carry (`cosign sign -a k=v`).
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A catalog source: every repository of `registry` under `namespace` that
/// matches `include` and not `exclude`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCatalogSource {
    /// Registry host, e.g. `"registry.old.example:5000"`.
    pub registry: String,
    /// Only repositories under this path (e.g. `"team/"`, matched on whole
    /// path components). Default: the whole registry.
    pub namespace: Option<String>,
    /// Regexes matched against the whole repository path; a repository must
    /// match one of them (empty = all).
    pub include: Option<Vec<String>>,
    /// Regexes matched against the whole repository path; a matching
    /// repository is skipped.
    pub exclude: Option<Vec<String>>,
}

/// A target mapping: the source repository path, below `prefix` on
/// `registry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTargetMapping {
    /// Registry host, e.g. `"registry.new.example"`.
    pub registry: String,
    /// Put repositories under this path (e.g. `"mirror/"`). Default: none.
    pub prefix: Option<String>,
    /// Remove the source `namespace` from the path before adding `prefix`
    /// (`team/app` with namespace `team/` becomes `<prefix>app`). Default
    /// `false`.
    pub strip_namespace: Option<bool>,
}

/// Tag selection. Patterns are regexes that must match the whole tag.
/// Fallback tags (`sha256-<hex>`) and cosign tags are never selected here
/// (they travel with their images).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTags {
    /// Copy tags matching any of these (empty = all tags).
    pub allow: Option<Vec<String>>,
    /// Never copy tags matching any of these.
    pub deny: Option<Vec<String>>,
    /// Copy only tags that are semantic versions (a leading `v` and missing
    /// minor/patch are accepted: `v1.2` is `1.2.0`) matching this range,
    /// e.g. `">=1.20, <2"`.
    pub semver: Option<String>,
    /// Of the remaining tags, copy only the newest N by semantic version
    /// (tags that are not versions are dropped).
    pub newest: Option<usize>,
    /// Also copy these manifests by digest (`"sha256:..."`), untagged.
    pub digests: Option<Vec<String>>,
}

/// `docker_config = true | false | "path"`.
#[derive(Debug, Clone, PartialEq)]
pub enum BoolOrPath {
    /// `true`/`false`.
    Bool(bool),
    /// A path to a Docker `config.json`.
    Path(PathBuf),
}

impl<'de> Deserialize<'de> for BoolOrPath {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BoolOrPath;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or a path")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<BoolOrPath, E> {
                Ok(BoolOrPath::Bool(b))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<BoolOrPath, E> {
                // Environment overrides arrive as strings.
                Ok(match s {
                    "true" => BoolOrPath::Bool(true),
                    "false" => BoolOrPath::Bool(false),
                    path => BoolOrPath::Path(PathBuf::from(path)),
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size as written: a number of bytes or a string like `"8MiB"`.
#[derive(Debug, Clone, PartialEq)]
pub enum ByteSizeValue {
    /// A plain number of bytes.
    Bytes(u64),
    /// A string to parse (`"512KiB"`, `"8MiB"`, `"1GB"`, `"4096"`).
    Text(String),
}

impl<'de> Deserialize<'de> for ByteSizeValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSizeValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of bytes or a size like \"8MiB\"")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSizeValue, E> {
                Ok(ByteSizeValue::Bytes(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSizeValue, E> {
                u64::try_from(n)
                    .map(ByteSizeValue::Bytes)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSizeValue, E> {
                Ok(ByteSizeValue::Text(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value that is either a string (a reference) or a table of type `T`.
#[derive(Debug)]
pub enum StrOrTable<T> {
    /// The string form.
    Str(String),
    /// The table form.
    Table(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrOrTable<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = StrOrTable<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a repository reference string or a table")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StrOrTable<T>, E> {
                Ok(StrOrTable::Str(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StrOrTable<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(StrOrTable::Table)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}
