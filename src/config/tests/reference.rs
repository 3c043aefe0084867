//! `config/REFERENCE.md` cannot drift from the config types: the keys its
//! tables list must be exactly the keys the file structs accept (their
//! serde field names, read from the derived `Deserialize`), every
//! environment example must name one of them, and the complete example must
//! load without a problem.

use std::collections::BTreeSet;

use serde::de::{self, Deserializer, Visitor};

use crate::config::load_with_env;

use super::super::file::{
    FileCatalogSource, FileDefaults, FileJob, FileLimits, FileLog, FileReferrers, FileRegistry,
    FileSchedule, FileServer, FileState, FileTags, FileTargetMapping, TopLevel,
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
    keys
}

/// The first cell of every row of the reference's `| key |` tables.
fn reference_keys() -> Vec<String> {
    let mut keys = Vec::new();
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
        if !in_key_table || line.starts_with("|---") {
            continue;
        }
        let cell = line.split('|').nth(1).unwrap_or_default().trim();
        keys.push(cell.trim_matches('`').to_string());
    }
    keys
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
