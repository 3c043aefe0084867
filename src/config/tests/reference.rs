//! `config/REFERENCE.md` cannot drift from the config types: the keys its
//! tables list must be exactly the keys the file structs accept (their
//! serde field names, read from the derived `Deserialize`), every default
//! written as a literal must be what an unset key resolves to, every
//! environment example must name a key, and the complete example must load
//! without a problem.

use std::collections::BTreeSet;

use serde::de::{self, Deserializer, Visitor};

use crate::config::load_with_env;

use super::super::file::{
    FileCatalogSource, FileCosignKey, FileDefaults, FileDelete, FileEvents, FileJob, FileLimits,
    FileLog, FileNotation, FileOverwrite, FilePolicy, FileReferrers, FileRegistry, FileSchedule,
    FileServer, FileState, FileTags, FileTargetMapping, FileWebhookSource, TopLevel,
};

const REFERENCE: &str = include_str!("../../../config/REFERENCE.md");

/// The field names a derived `Deserialize` asks a deserializer for.
fn fields_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Capture<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Capture<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("captured"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Capture(&mut fields));
    assert!(
        !fields.is_empty(),
        "{} is not a struct",
        std::any::type_name::<T>()
    );
    fields
}

/// Every key path the types accept. Tables whose keys are a struct of
/// their own are listed here with that struct; a new nested struct must be
/// added below (its parent key alone would otherwise be the only trace).
fn type_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut add = |prefix: &str, fields: &[&str]| {
        for f in fields {
            keys.insert(if prefix.is_empty() {
                f.to_string()
            } else {
                format!("{prefix}.{f}")
            });
        }
    };
    add("", fields_of::<TopLevel>());
    add("defaults", fields_of::<FileDefaults>());
    add("defaults.schedule", fields_of::<FileSchedule>());
    add("defaults.referrers", fields_of::<FileReferrers>());
    add("defaults.policy", fields_of::<FilePolicy>());
    add("defaults.policy.cosign[]", fields_of::<FileCosignKey>());
    add("defaults.policy.notation[]", fields_of::<FileNotation>());
    add("limits", fields_of::<FileLimits>());
    add("state", fields_of::<FileState>());
    add("server", fields_of::<FileServer>());
    add("log", fields_of::<FileLog>());
    add("registries.\"<host>\"", fields_of::<FileRegistry>());
    add("jobs[]", fields_of::<FileJob>());
    add("jobs[].source", fields_of::<FileCatalogSource>());
    add("jobs[].target", fields_of::<FileTargetMapping>());
    add("jobs[].tags", fields_of::<FileTags>());
    add("jobs[].referrers", fields_of::<FileReferrers>());
    add("jobs[].schedule", fields_of::<FileSchedule>());
    add("events", fields_of::<FileEvents>());
    add(
        "events.sources.\"<name>\"",
        fields_of::<FileWebhookSource>(),
    );
    add("jobs[].delete", fields_of::<FileDelete>());
    add("jobs[].overwrite", fields_of::<FileOverwrite>());
    add("jobs[].policy", fields_of::<FilePolicy>());
    add("jobs[].policy.cosign[]", fields_of::<FileCosignKey>());
    add("jobs[].policy.notation[]", fields_of::<FileNotation>());
    keys
}

/// The cells of every row of the reference's `| key |` tables.
fn key_rows() -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut in_key_table = false;
    for line in REFERENCE.lines() {
        if !line.starts_with('|') {
            in_key_table = false;
            continue;
        }
        if line.starts_with("| key |") {
            in_key_table = true;
            continue;
        }
        if in_key_table && !line.starts_with("|---") {
            rows.push(
                line.split('|')
                    .skip(1)
                    .map(|c| c.trim().to_string())
                    .collect(),
            );
        }
    }
    rows
}

/// The keys the reference lists (first cell, without backticks).
fn reference_keys() -> Vec<String> {
    key_rows()
        .iter()
        .map(|r| r[0].trim_matches('`').to_string())
        .collect()
}

#[test]
fn the_reference_lists_exactly_the_keys_the_types_accept() {
    let listed = reference_keys();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "a key is listed twice");
    let types = type_keys();
    let undocumented: Vec<&String> = types.difference(&unique).collect();
    let unknown: Vec<&String> = unique.difference(&types).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "config/REFERENCE.md is out of date.\n  keys the types accept but it does not list: \
         {undocumented:?}\n  keys it lists that the types do not accept: {unknown:?}"
    );
    // Top-level sections each map to a struct above (or are plain values).
    for section in fields_of::<TopLevel>() {
        let nested = types.iter().any(|k| k.starts_with(&format!("{section}.")))
            || types.iter().any(|k| k.starts_with(&format!("{section}[]")));
        assert!(
            nested || *section == "version",
            "section {section} has no struct in type_keys()"
        );
    }
}

#[test]
fn every_environment_example_names_a_key() {
    let keys = type_keys();
    let mut seen = 0;
    for word in REFERENCE.split(|c: char| c.is_whitespace() || c == '`' || c == '|') {
        let Some(rest) = word.strip_prefix("OCIMIRROR_") else {
            continue;
        };
        let name = rest.split('=').next().unwrap_or_default();
        // Placeholders and the CLI's own variables have no `__` levels.
        if !name.contains("__") || name.contains('<') {
            continue;
        }
        seen += 1;
        let mut parts: Vec<String> = name.split("__").map(str::to_lowercase).collect();
        if parts[0] == "registries" && parts.len() > 2 {
            parts[1] = "\"<host>\"".into();
        }
        if parts[0] == "events" && parts.len() > 3 {
            parts[2] = "\"<name>\"".into();
        }
        let path = parts.join(".");
        let generic_file = path.strip_suffix("_file").filter(|p| keys.contains(*p));
        assert!(
            keys.contains(&path) || generic_file.is_some(),
            "{word}: no key {path} in the config types"
        );
    }
    assert!(seen >= 5, "only {seen} environment examples found");
}

#[test]
fn the_complete_example_loads_without_problems() {
    let start = REFERENCE
        .find("```toml\n")
        .expect("a ```toml block in the reference");
    let body = &REFERENCE[start + "```toml\n".len()..];
    let example = &body[..body.find("```").expect("the toml block ends")];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    for secret in ["secrets/ghcr.password", "secrets/internal.token"] {
        std::fs::write(dir.path().join(secret), "not-a-real-secret\n").unwrap();
    }
    let path = dir.path().join("ocimirror.toml");
    std::fs::write(&path, example).unwrap();
    let config = match load_with_env(&path, std::iter::empty::<(String, String)>()) {
        Ok(c) => c,
        Err(e) => panic!("the reference's complete example does not load:\n{e}"),
    };
    assert_eq!(config.jobs.len(), 2);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

/// The reference's (key, default cell) pairs.
fn reference_defaults() -> Vec<(String, String)> {
    key_rows()
        .into_iter()
        .filter_map(|r| Some((r[0].trim_matches('`').to_string(), r.get(2)?.clone())))
        .collect()
}

/// Where the resolved config of [`resolved_minimal`] holds the value a
/// reference key defaults to (job defaults show on the one job).
fn resolved_path(key: &str) -> Vec<String> {
    if let Some(rest) = key.strip_prefix("registries.\"<host>\".") {
        return vec!["registries".into(), "r.example".into(), rest.into()];
    }
    let key = match key
        .strip_prefix("defaults.")
        .or_else(|| key.strip_prefix("jobs[]."))
    {
        Some(rest) => format!("jobs.0.{rest}"),
        None => key.to_string(),
    };
    key.split('.').map(str::to_string).collect()
}

/// `config show` of a config that sets nothing it need not, as TOML.
fn resolved_minimal() -> toml::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minimal.toml");
    std::fs::write(
        &path,
        "version = 1\n[registries.\"r.example\"]\n[[jobs]]\nname = \"a\"\n\
         source = \"r.example/a\"\ntarget = \"r.example/mirror/a\"\n",
    )
    .unwrap();
    let config = load_with_env(&path, std::iter::empty::<(String, String)>()).unwrap();
    toml::from_str(&config.to_toml().unwrap()).unwrap()
}

fn bytes(s: &str) -> Option<i64> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let factor = match unit {
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.parse::<i64>().ok().map(|n| n * factor)
}

/// A documented default equals a resolved value: durations and sizes in
/// any spelling, tables by the keys the reference gives.
fn same(doc: &toml::Value, resolved: &toml::Value) -> bool {
    use toml::Value::{Integer, String as Str, Table};
    match (doc, resolved) {
        (Table(d), Table(r)) => d.iter().all(|(k, v)| r.get(k).is_some_and(|x| same(v, x))),
        (Str(d), Str(r)) if d != r => {
            matches!((humantime::parse_duration(d), humantime::parse_duration(r)), (Ok(a), Ok(b)) if a == b)
        }
        (Str(d), Integer(r)) => bytes(d) == Some(*r),
        (d, r) => d == r,
    }
}

#[test]
fn every_literal_default_is_what_an_empty_setting_resolves_to() {
    let resolved = resolved_minimal();
    let mut compared = 0;
    for (key, cell) in reference_defaults() {
        // Only a default given as a literal: `8`, `"1h"`, `[]`, `{ … }`.
        let Some(literal) = cell.strip_prefix('`').and_then(|c| c.split('`').next()) else {
            continue;
        };
        let Ok(doc) = toml::from_str::<toml::Table>(&format!("v = {literal}")) else {
            continue;
        };
        let path = resolved_path(&key);
        let mut at = Some(&resolved);
        for p in &path {
            at = at.and_then(|v| match p.parse::<usize>() {
                Ok(i) => v.get(i),
                Err(_) => v.get(p.as_str()),
            });
        }
        // Keys of the other form of a value (a target table) have no
        // resolved counterpart in the minimal config.
        let Some(value) = at else { continue };
        compared += 1;
        assert!(
            same(&doc["v"], value),
            "config/REFERENCE.md: {key} defaults to {literal}, but an unset key resolves to {value}"
        );
    }
    assert!(compared >= 35, "only {compared} defaults compared");
}
