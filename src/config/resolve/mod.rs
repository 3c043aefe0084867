//! The one step from file + environment to a validated [`Config`]: every
//! section and every job is checked independently and every problem is
//! collected, so one run of `ocimirror config check` shows them all.
//!
//! Each problem names where its value came from (the file, or the
//! environment) by the figment tag of the offending value.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml, Yaml};
use figment::value::Value;
use figment::{Figment, Metadata, Source as FigSource};
use serde::de::DeserializeOwned;

use super::env::{ENV_ORIGIN, EnvOverrides};
use super::file::{
    BoolOrPath, ByteSizeValue, FileCatalogSource, FileDefaults, FileJob, FileLimits, FileLog,
    FileReferrers, FileRegistry, FileSchedule, FileServer, FileState, FileTags, FileTargetMapping,
    StrOrTable, TopLevel,
};
mod deletions;
mod events;
mod jobs;
mod policy;
mod policy_file;
mod registry;

use super::tags::{Pattern, TagSelector};
use super::{
    CONFIG_VERSION, CatalogSource, Config, ConfigErrors, ConfigProblem, CronExpr, DockerConfig,
    Job, KeyPath, KeySegment, Limits, LogFormat, LogSettings, PlatformMode, ReferrerOptions,
    RegistryAuth, RegistrySettings, Schedule, Secret, ServerSettings, Source, StateSettings,
    Target, TargetMapping, Timing, lexically_normal,
};
use crate::copy::{CopyOptions, PlatformSpec};
use crate::oci::{Digest, ImageReference, Location};

pub use policy_file::load_policy;

pub(super) fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let fail = |message: String| file_problem(path, message);
    let (env, env_problems) = EnvOverrides::collect(env);
    let figment = open_file(path)?.merge(env);
    let root = match figment.extract::<Value>() {
        Ok(v) => v,
        Err(e) => return Err(fail(without_snippets(&e.to_string()))),
    };
    let base = base_dir(path);
    let mut r = Resolver {
        figment: &figment,
        root: &root,
        file: origin,
        base: base.clone(),
        problems: env_problems,
    };
    let config = r.resolve(path).map(|mut c| {
        c.rebase_paths(&base);
        c
    });
    if r.problems.is_empty() {
        config.ok_or_else(|| fail("invalid configuration".into()))
    } else {
        Err(ConfigErrors(r.problems))
    }
}

/// One problem with the file as a whole.
fn file_problem(path: &Path, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigProblem {
        origin: path.display().to_string(),
        path: KeyPath::root(),
        message,
    }])
}

/// The file at `path`, TOML or YAML by its extension.
fn open_file(path: &Path) -> Result<Figment, ConfigErrors> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let figment = match ext {
        "toml" => Figment::new().merge(Toml::file_exact(path)),
        "yaml" | "yml" => Figment::new().merge(Yaml::file_exact(path)),
        _ => {
            return Err(file_problem(
                path,
                format!("unsupported file extension {ext:?}: use .toml, .yaml or .yml"),
            ));
        }
    };
    // figment treats a missing file as empty; a named file must exist.
    if let Err(e) = std::fs::metadata(path) {
        return Err(file_problem(path, format!("cannot read the file: {e}")));
    }
    Ok(figment)
}

/// Relative paths in a file mean "next to the file", whatever the
/// working directory: the quick start works from anywhere.
fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

struct Resolver<'a> {
    figment: &'a Figment,
    root: &'a Value,
    file: String,
    /// The config file's directory: relative paths are taken from here.
    base: PathBuf,
    problems: Vec<ConfigProblem>,
}

impl Resolver<'_> {
    /// Records a problem at `path`, naming the provider of the deepest value
    /// found along it.
    fn problem(&mut self, path: &KeyPath, message: impl Into<String>) {
        let origin = self.origin(path);
        self.problems.push(ConfigProblem {
            origin,
            path: path.clone(),
            message: message.into(),
        });
    }

    fn origin(&self, path: &KeyPath) -> String {
        let mut value = self.root;
        let mut tag = value.tag();
        for seg in &path.0 {
            let next = match (seg, value) {
                (KeySegment::Key(k), Value::Dict(_, d)) => d.get(k),
                (KeySegment::Index(i), Value::Array(_, a)) => a.get(*i),
                _ => None,
            };
            match next {
                Some(v) => {
                    value = v;
                    tag = v.tag();
                }
                None => break,
            }
        }
        match self.figment.get_metadata(tag) {
            Some(Metadata {
                source: Some(FigSource::File(_)),
                ..
            }) => self.file.clone(),
            Some(m) if m.name == ENV_ORIGIN => ENV_ORIGIN.into(),
            _ => self.file.clone(),
        }
    }

    /// Deserialises one table with lossy scalars (environment strings become
    /// numbers and booleans), turning serde errors into problems.
    fn table<T: DeserializeOwned + Default>(
        &mut self,
        value: Option<&Value>,
        path: &KeyPath,
    ) -> Option<T> {
        let Some(value) = value else {
            return Some(T::default());
        };
        self.table_required(value, path)
    }

    /// Deserialises a table. A key that serde refuses (unknown, or of the
    /// wrong type) is reported, removed, and the table deserialised again, so
    /// the other keys are still checked: one run reports every fault. The
    /// result is `None` only when the table cannot be read at all (e.g. a
    /// required key is missing); either way the load fails when a problem
    /// was recorded.
    fn table_required<T: DeserializeOwned>(&mut self, value: &Value, path: &KeyPath) -> Option<T> {
        if value.as_dict().is_none() {
            self.problem(path, "expected a table");
            return None;
        }
        let mut value = value.clone();
        // Each retry removes at least one key, so this ends; the bound is a
        // guard against a serde error path that names no removable key.
        for _ in 0..256 {
            match Figment::from(Serialized::defaults(&value)).extract_lossy::<T>() {
                Ok(t) => return Some(t),
                Err(errors) => {
                    let mut removed = false;
                    for e in errors {
                        let p = e.path.iter().fold(path.clone(), |p, k| p.key(k.clone()));
                        self.problem(&p, serde_message(&e));
                        removed |= remove_key(&mut value, &e.path);
                    }
                    if !removed {
                        return None;
                    }
                }
            }
        }
        None
    }

    fn resolve(&mut self, path: &Path) -> Option<Config> {
        let root = KeyPath::root();
        let top: TopLevel = self.table_required(self.root, &root)?;

        self.version(top.version.as_ref());
        let defaults: Option<FileDefaults> =
            self.table(top.defaults.as_ref(), &root.key("defaults"));
        let limits: Option<FileLimits> = self.table(top.limits.as_ref(), &root.key("limits"));
        let state: Option<FileState> = self.table(top.state.as_ref(), &root.key("state"));
        let server: Option<FileServer> = self.table(top.server.as_ref(), &root.key("server"));
        let log: Option<FileLog> = self.table(top.log.as_ref(), &root.key("log"));
        let events: Option<super::file::FileEvents> =
            self.table(top.events.as_ref(), &root.key("events"));

        let limits = limits.and_then(|l| self.limits(l));
        let state = state.and_then(|s| self.state(s));
        let server = server.and_then(|s| self.server(s));
        let log = log.and_then(|l| self.log(l));
        let events = events.and_then(|e| self.events(e));

        let mut registries = BTreeMap::new();
        for (host, value) in top.registries.iter().flatten() {
            let p = root.key("registries").key(host.clone());
            if let Some(file) = self.table_required::<FileRegistry>(value, &p)
                && let Some(settings) = self.registry(host, file, &p)
            {
                if registries.contains_key(&settings.host) {
                    self.problem(
                        &p,
                        format!("registry {:?} is configured twice", settings.host),
                    );
                }
                registries.insert(settings.host.clone(), settings);
            }
        }

        let defaults = defaults.map(|d| self.defaults(d));
        let mut jobs = Vec::new();
        let mut names = HashSet::new();
        let job_values = top.jobs.unwrap_or_default();
        if job_values.is_empty() {
            self.problem(
                &root.key("jobs"),
                "no jobs defined: add at least one [[jobs]] entry",
            );
        }
        for (i, value) in job_values.iter().enumerate() {
            let p = root.key("jobs").index(i);
            let Some(file) = self.table_required::<FileJob>(value, &p) else {
                continue;
            };
            if !names.insert(file.name.clone()) {
                self.problem(
                    &p.key("name"),
                    format!("duplicate job name {:?}", file.name),
                );
            }
            if let Some(d) = &defaults
                && let Some(job) = self.job(file, d, &p)
            {
                jobs.push(job);
            }
        }

        let mut warnings = Vec::new();
        for host in registries.keys() {
            if !jobs
                .iter()
                .any(|j| j.registry_hosts().contains(&host.as_str()))
            {
                let p = root.key("registries").key(host.clone());
                warnings.push(ConfigProblem {
                    origin: self.origin(&p),
                    path: p,
                    message: format!(
                        "no job reads from or writes to {host:?}: is the host name right?"
                    ),
                });
            }
        }

        Some(Config {
            version: CONFIG_VERSION,
            warnings,
            path: path.to_path_buf(),
            limits: limits?,
            state: state?,
            server: server?,
            log: log?,
            registries,
            jobs,
            events: events?,
        })
    }

    fn version(&mut self, v: Option<&Value>) {
        let p = KeyPath::root().key("version");
        match v {
            None => self.problem(&p, format!("missing: add `version = {CONFIG_VERSION}`")),
            Some(v) if as_int(v) == Some(CONFIG_VERSION.into()) => {}
            Some(Value::String(_, s)) if s.trim() == CONFIG_VERSION.to_string() => {}
            Some(v) => {
                let shown = match v {
                    Value::String(_, s) => format!("{s:?}"),
                    Value::Num(..) => {
                        as_int(v).map_or_else(|| "a non-integer".into(), |n| n.to_string())
                    }
                    _ => "a non-number".into(),
                };
                self.problem(
                    &p,
                    format!("unsupported version {shown}: this build understands version {CONFIG_VERSION}"),
                )
            }
        }
    }

    fn duration(&mut self, s: &str, path: &KeyPath) -> Option<Duration> {
        match humantime::parse_duration(s.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    path,
                    format!("invalid duration {s:?}: {e} (use e.g. \"30s\", \"15m\", \"1h 30m\")"),
                );
                None
            }
        }
    }

    fn positive(&mut self, n: Option<usize>, default: usize, path: &KeyPath) -> usize {
        match n {
            Some(0) => {
                self.problem(path, "must be at least 1");
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    fn limits(&mut self, l: FileLimits) -> Option<Limits> {
        let p = KeyPath::root().key("limits");
        let concurrent_jobs = self.positive(l.concurrent_jobs, 2, &p.key("concurrent_jobs"));
        let concurrent_blobs = self.positive(
            l.concurrent_blobs,
            Limits::DEFAULT_CONCURRENT_BLOBS,
            &p.key("concurrent_blobs"),
        );
        let drain_timeout = match &l.drain_timeout {
            Some(s) => self.duration(s, &p.key("drain_timeout"))?,
            None => Duration::from_secs(30),
        };
        let item_timeout = match &l.item_timeout {
            Some(s) => self.duration(s, &p.key("item_timeout"))?,
            None => Limits::DEFAULT_ITEM_TIMEOUT,
        };
        let max_manifest_bytes_per_image = match &l.max_manifest_bytes_per_image {
            None => CopyOptions::DEFAULT_MAX_MANIFEST_BYTES,
            Some(v) => match parse_byte_size(v) {
                Ok(n) if n > 0 => n,
                _ => {
                    self.problem(
                        &p.key("max_manifest_bytes_per_image"),
                        "invalid size: use a positive byte count or e.g. \"64MiB\"",
                    );
                    CopyOptions::DEFAULT_MAX_MANIFEST_BYTES
                }
            },
        };
        Some(Limits {
            concurrent_jobs,
            concurrent_blobs,
            drain_timeout,
            item_timeout,
            max_index_depth: self.positive(
                l.max_index_depth,
                CopyOptions::DEFAULT_MAX_INDEX_DEPTH,
                &p.key("max_index_depth"),
            ),
            max_nodes_per_image: self.positive(
                l.max_nodes_per_image,
                CopyOptions::DEFAULT_MAX_NODES,
                &p.key("max_nodes_per_image"),
            ),
            max_manifest_bytes_per_image,
            max_referrers_per_subject: self.positive(
                l.max_referrers_per_subject,
                CopyOptions::DEFAULT_MAX_REFERRERS_PER_SUBJECT,
                &p.key("max_referrers_per_subject"),
            ),
        })
    }

    fn state(&mut self, s: FileState) -> Option<StateSettings> {
        let verify_after = match &s.verify_after {
            Some(v) => self.duration(v, &KeyPath::root().key("state").key("verify_after"))?,
            None => Duration::from_secs(24 * 3600),
        };
        // The default stays in the working directory (the container's data
        // volume); a path the file writes is the file's.
        let lease_ttl = match &s.lease_ttl {
            Some(v) => self.duration(v, &KeyPath::root().key("state").key("lease_ttl"))?,
            None => Duration::from_secs(30),
        };
        if lease_ttl.is_zero() {
            self.problem(
                &KeyPath::root().key("state").key("lease_ttl"),
                "must be more than 0s".to_string(),
            );
            return None;
        }
        // A `postgres://` URL (which may hold a password: a secret, never
        // printed) names a shared server instead of the sqlite file.
        let postgres = s
            .database
            .as_ref()
            .and_then(|d| d.to_str())
            .filter(|d| d.starts_with("postgres://") || d.starts_with("postgresql://"))
            .map(Secret::new);
        let database = match &s.database {
            Some(d) if postgres.is_none() => {
                self.path(&KeyPath::root().key("state").key("database"), d)
            }
            _ => PathBuf::from("ocimirror.db"),
        };
        Some(StateSettings {
            database,
            postgres,
            lease_ttl,
            verify_after,
        })
    }

    fn server(&mut self, s: FileServer) -> Option<ServerSettings> {
        let listen = s.listen.unwrap_or_else(|| "127.0.0.1:9110".into());
        let api_token = self.secret(
            s.api_token,
            s.api_token_file.as_ref(),
            &KeyPath::root().key("server"),
            "api_token",
        );
        match listen.parse() {
            Ok(listen) => Some(ServerSettings { listen, api_token }),
            Err(_) => {
                self.problem(
                    &KeyPath::root().key("server").key("listen"),
                    format!("invalid listen address {listen:?}: expected IP:port, e.g. \"127.0.0.1:9110\""),
                );
                None
            }
        }
    }

    fn log(&mut self, l: FileLog) -> Option<LogSettings> {
        let level = l.level.unwrap_or_else(|| "info".into());
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
            self.problem(
                &KeyPath::root().key("log").key("level"),
                format!("invalid log filter {level:?}: {e}"),
            );
            return None;
        }
        Some(LogSettings {
            format: l.format.unwrap_or(LogFormat::Auto),
            level,
        })
    }
}

/// A registry host as written in references, normalised the way
/// [`ImageReference`] does (`index.docker.io` is `docker.io`).
fn validate_host(host: &str) -> Result<String, String> {
    let probe = format!("{host}/x");
    match ImageReference::from_str(&probe) {
        Ok(ImageReference {
            location: Location::Registry(h),
            ..
        }) if !host.contains('/')
            && (h == host
                || matches!(
                    host,
                    "index.docker.io" | crate::oci::reference::DOCKER_HUB_API_HOST
                )) =>
        {
            Ok(h)
        }
        _ => Err(format!(
            "invalid registry host {host:?}: expected a host like \"ghcr.io\" or \"localhost:5000\" (no scheme or path)"
        )),
    }
}

/// Removes the key at `path` (a serde error path) from a table; false when
/// there is no such key.
fn remove_key(value: &mut Value, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => match value {
            Value::Dict(_, d) => d.remove(last).is_some(),
            _ => false,
        },
        [first, rest @ ..] => match value {
            Value::Dict(_, d) => d.get_mut(first).is_some_and(|v| remove_key(v, rest)),
            _ => false,
        },
    }
}

/// A serde error's message, unless it is about a secret: type errors quote
/// the value, so for `password`/`token` only the expected type is named.
fn serde_message(e: &figment::Error) -> String {
    let secret = e.path.iter().any(|k| {
        matches!(
            k.as_str(),
            "password" | "token" | "hmac_secret" | "api_token"
        )
    });
    match &e.kind {
        figment::error::Kind::InvalidType(_, expected) if secret => {
            format!("invalid value (not shown: it is a secret), expected {expected}")
        }
        figment::error::Kind::InvalidValue(_, expected) if secret => {
            format!("invalid value (not shown: it is a secret), expected {expected}")
        }
        kind => kind.to_string(),
    }
}

/// Parse errors quote the offending source line, which may hold a secret:
/// keep the position and the reason, drop the `N | ...` snippet lines.
fn without_snippets(message: &str) -> String {
    message
        .lines()
        .filter(|l| !l.contains('|') && !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(": ")
}

/// TOML integers are signed, YAML ones unsigned: accept either.
fn as_int(v: &Value) -> Option<i128> {
    v.to_i128()
        .or_else(|| v.to_u128().and_then(|u| i128::try_from(u).ok()))
}

/// `4096`, `"512KiB"`, `"8MiB"`, `"1GB"`, `"1 GiB"`.
fn parse_byte_size(v: &ByteSizeValue) -> Result<u64, ()> {
    let s = match v {
        ByteSizeValue::Bytes(n) => return Ok(*n),
        ByteSizeValue::Text(s) => s.trim(),
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| ())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return Err(()),
    };
    n.checked_mul(mult).ok_or(())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn byte_sizes() {
        let t = |s: &str| parse_byte_size(&ByteSizeValue::Text(s.into()));
        assert_eq!(t("8MiB"), Ok(8 << 20));
        assert_eq!(t("512 KiB"), Ok(512 << 10));
        assert_eq!(t("1GB"), Ok(1_000_000_000));
        assert_eq!(t("4096"), Ok(4096));
        assert_eq!(t("8 parsecs"), Err(()));
        assert_eq!(t("MiB"), Err(()));
        assert_eq!(parse_byte_size(&ByteSizeValue::Bytes(7)), Ok(7));
    }

    #[test]
    fn hosts_and_platforms() {
        assert_eq!(validate_host("ghcr.io").as_deref(), Ok("ghcr.io"));
        assert_eq!(
            validate_host("localhost:5000").as_deref(),
            Ok("localhost:5000")
        );
        assert_eq!(validate_host("index.docker.io").as_deref(), Ok("docker.io"));
        assert!(validate_host("https://ghcr.io").is_err());
        assert!(validate_host("ghcr.io/org").is_err());
        assert!(validate_host("").is_err());
    }
}
