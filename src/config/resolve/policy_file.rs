//! A signature policy file on its own (`copy --policy FILE`): the keys of
//! `[defaults.policy]` at the top level, in TOML or YAML, resolved by the
//! same code as a job's policy; key paths are relative to the file.

use std::path::Path;

use figment::value::Value;

use super::policy::DefaultPolicy;
use super::{KeyPath, Resolver, base_dir, file_problem, open_file, without_snippets};
use crate::config::ConfigErrors;
use crate::config::file::FilePolicy;
use crate::policy::Policy;

/// Reads and resolves the policy file at `path`, reporting every problem
/// (an unknown key, an unreadable or invalid public key) at once.
pub fn load_policy(path: &Path) -> Result<Policy, ConfigErrors> {
    let figment = open_file(path)?;
    let root = figment
        .extract::<Value>()
        .map_err(|e| file_problem(path, without_snippets(&e.to_string())))?;
    let mut r = Resolver {
        figment: &figment,
        root: &root,
        file: path.display().to_string(),
        base: base_dir(path),
        problems: Vec::new(),
    };
    let file: Option<FilePolicy> = r.table_required(&root, &KeyPath::root());
    let policy = file.map(|f| r.policy(Some(&f), &DefaultPolicy::default(), &KeyPath::root()));
    match policy {
        _ if !r.problems.is_empty() => Err(ConfigErrors(r.problems)),
        Some(p) => Ok(p),
        None => Err(file_problem(path, "invalid policy file".into())),
    }
}
