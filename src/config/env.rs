//! Environment overrides: `OCIMIRROR_<SECTION>__<KEY>[__<KEY>...]` variables
//! as a figment provider, with the `_FILE` form that reads a value from a
//! file (like lldap's `FileAdapter`).
//!
//! Names are lower-cased and split at `__` only (never at `.`), so registry
//! hosts can be addressed: `OCIMIRROR_REGISTRIES__ghcr.io__TOKEN_FILE`.
//! Variables without `__` (such as `OCIMIRROR_CONFIG`) are left to the CLI.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::{ConfigProblem, ENV_PREFIX, KeyPath};

/// Keys ending in `_file` that are schema fields (paths), not the generic
/// "read this key from a file" form.
const FILE_FIELDS: [&str; 3] = ["password_file", "token_file", "ca_file"];

/// The provider name, and the origin shown in problems.
pub(super) const ENV_ORIGIN: &str = "environment";

/// `OCIMIRROR_<SECTION>__<KEY>...` variables as a figment provider.
pub(super) struct EnvOverrides {
    dict: Dict,
}

impl EnvOverrides {
    pub(super) fn collect(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> (Self, Vec<ConfigProblem>) {
        let mut dict = Dict::new();
        let mut problems = Vec::new();
        let mut vars: Vec<(String, String)> = vars.into_iter().collect();
        // Deterministic order, so a later duplicate always wins the same way.
        vars.sort();
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Variables without `__` (OCIMIRROR_CONFIG, ...) belong to the CLI.
            if !rest.contains("__") {
                continue;
            }
            let mut keys: Vec<String> = rest.split("__").map(|k| k.to_lowercase()).collect();
            if keys.iter().any(|k| k.is_empty()) {
                continue;
            }
            let mut value = raw;
            let last = keys.len() - 1;
            if let Some(stem) = keys[last].strip_suffix("_file")
                && !FILE_FIELDS.contains(&keys[last].as_str())
                && !stem.is_empty()
            {
                let stem = stem.to_string();
                keys[last] = stem;
                match std::fs::read_to_string(&value) {
                    Ok(content) => value = content.trim_end_matches(['\n', '\r']).to_string(),
                    Err(e) => {
                        let path = keys.iter().fold(KeyPath::root(), |p, k| p.key(k.clone()));
                        problems.push(ConfigProblem {
                            origin: ENV_ORIGIN.into(),
                            path,
                            message: format!("cannot read {name} file {value:?}: {e}"),
                        });
                        continue;
                    }
                }
            }
            // Lists may be given as `[a, b]`; everything else stays a string
            // and is converted by the lossy extraction (so `0123` stays text).
            let v = if value.trim_start().starts_with('[') {
                value.parse::<Value>().unwrap_or(Value::from(value))
            } else {
                Value::from(value)
            };
            insert_nested(&mut dict, &keys, v);
        }
        (EnvOverrides { dict }, problems)
    }
}

fn insert_nested(dict: &mut Dict, keys: &[String], value: Value) {
    match keys {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_nested(inner, rest, value);
            }
        }
    }
}

impl Provider for EnvOverrides {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_ORIGIN)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}
