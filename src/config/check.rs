//! The entry points: load, `config check` and `config show`.

use std::path::Path;

use super::{
    Config, ConfigErrors, ConfigProblem, DockerConfig, EXIT_INVALID_CONFIG, KeyPath, RegistryAuth,
    RegistrySettings, resolve,
};
use crate::oci::is_loopback_host;

/// Loads and resolves the configuration at `path`, with `OCIMIRROR_*`
/// environment overrides from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    resolve::load(path, std::env::vars())
}

/// Like [`load`] with an explicit environment (for tests and embedding).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    resolve::load(path, env)
}

/// The outcome of `ocimirror config check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// What to print: a one-line summary, or every problem.
    pub text: String,
    /// The process exit status: 0, or [`EXIT_INVALID_CONFIG`].
    pub exit_code: u8,
}

/// Validates the configuration at `path` (`ocimirror config check`).
pub fn check(path: &Path) -> CheckReport {
    match load(path) {
        Ok(cfg) => {
            let mut text = format!(
                "{}: OK ({} job{}, {} registr{})",
                path.display(),
                cfg.jobs.len(),
                if cfg.jobs.len() == 1 { "" } else { "s" },
                cfg.registries.len(),
                if cfg.registries.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
            );
            for w in &cfg.warnings {
                text.push_str(&format!("\n  warning: {w}"));
            }
            CheckReport { text, exit_code: 0 }
        }
        Err(e) => CheckReport {
            text: e.to_string(),
            exit_code: EXIT_INVALID_CONFIG,
        },
    }
}

/// The resolved configuration at `path` as TOML with secrets redacted
/// (`ocimirror config show`). Every registry a job names is listed with its
/// effective settings, with two derived values in place of what would
/// mislead: `scheme` (loopback hosts are reached over plain HTTP) and
/// `credentials` (where credentials come from, never the secret).
pub fn show(path: &Path) -> Result<String, ConfigErrors> {
    let cfg = load(path)?;
    let problem = |e: &dyn std::fmt::Display| {
        ConfigErrors(vec![ConfigProblem {
            origin: path.display().to_string(),
            path: KeyPath::root(),
            message: format!("cannot render as TOML: {e}"),
        }])
    };
    let mut doc = toml::Value::try_from(&cfg).map_err(|e| problem(&e))?;
    let mut hosts: Vec<&str> = cfg.registries.keys().map(String::as_str).collect();
    hosts.extend(cfg.jobs.iter().flat_map(|j| j.registry_hosts()));
    hosts.sort_unstable();
    hosts.dedup();
    let mut registries = toml::Table::new();
    for host in hosts {
        let settings = cfg.registry(host);
        let toml::Value::Table(mut table) =
            toml::Value::try_from(&settings).map_err(|e| problem(&e))?
        else {
            continue;
        };
        // Replaced by the two derived values below.
        table.remove("auth");
        table.remove("plain_http");
        let plain = settings.plain_http || is_loopback_host(host);
        table.insert(
            "scheme".into(),
            (if plain { "http" } else { "https" }).into(),
        );
        if plain {
            // No TLS is spoken: certificate settings do not apply.
            table.remove("tls_verify");
            table.remove("ca_file");
        }
        table.insert("credentials".into(), credentials(&settings).into());
        registries.insert(host.to_string(), toml::Value::Table(table));
    }
    if let toml::Value::Table(root) = &mut doc {
        root.insert("registries".into(), toml::Value::Table(registries));
    }
    let text = toml::to_string_pretty(&doc).map_err(|e| problem(&e))?;
    Ok(format!(
        "# {}, resolved (defaults filled in, secrets redacted; `scheme` and\n\
         # `credentials` are derived, not keys to write)\n{text}",
        path.display()
    ))
}

/// Where a registry's credentials come from, in words (never the secret).
fn credentials(s: &RegistrySettings) -> String {
    let docker = match &s.docker_config {
        DockerConfig::Disabled => None,
        DockerConfig::Default => {
            Some("Docker config ($DOCKER_CONFIG/config.json or ~/.docker/config.json)".to_string())
        }
        DockerConfig::Path(p) => Some(format!("Docker config {}", p.display())),
    };
    match (&s.auth, docker) {
        (RegistryAuth::Basic { username, .. }, _) => {
            format!("basic auth as {username:?} (password redacted)")
        }
        (RegistryAuth::Token { .. }, _) => "token (redacted)".to_string(),
        (RegistryAuth::Anonymous, Some(docker)) => {
            format!("{docker}; anonymous when it has none for this host")
        }
        (RegistryAuth::Anonymous, None) => "anonymous".to_string(),
    }
}
