//! The entry points: load, `config check` and `config show`.

use std::path::Path;

use super::{Config, ConfigErrors, ConfigProblem, EXIT_INVALID_CONFIG, KeyPath, resolve};

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
/// (`ocimirror config show`).
pub fn show(path: &Path) -> Result<String, ConfigErrors> {
    let cfg = load(path)?;
    cfg.to_toml().map_err(|e| {
        ConfigErrors(vec![ConfigProblem {
            origin: path.display().to_string(),
            path: KeyPath::root(),
            message: format!("cannot render as TOML: {e}"),
        }])
    })
}
