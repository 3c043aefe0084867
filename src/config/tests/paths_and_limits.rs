//! Relative paths, graph limits, the per-item deadline and the registry
//! timeouts.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

#[test]
fn relative_paths_are_taken_from_the_config_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/ca.pem"), "not read here").unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        r#"version = 1
[state]
database = "state/ocimirror.db"
[registries."reg.example"]
ca_file = "certs/ca.pem"
[[jobs]]
name = "a"
source = "oci:../in"
target = "oci:/abs/out"
"#,
    )
    .unwrap();
    let res = load_with_env(&path, []);
    let cfg = res.unwrap();
    let base = dir.path();
    assert_eq!(cfg.state.database, base.join("state/ocimirror.db"));
    assert_eq!(
        cfg.registry("reg.example").ca_file,
        Some(base.join("certs/ca.pem"))
    );
    let layout = |r: &ImageReference| match &r.location {
        crate::oci::Location::Layout(d) => d.clone(),
        other => panic!("{other:?}"),
    };
    let (Source::Repository(src), Target::Repository(dst)) =
        (&cfg.jobs[0].source, &cfg.jobs[0].target)
    else {
        panic!("{:?}", cfg.jobs[0]);
    };
    // `dir/..` is folded away; absolute paths stay as they are.
    assert_eq!(layout(src), base.parent().unwrap().join("in"));
    assert_eq!(layout(dst), PathBuf::from("/abs/out"));
}

#[test]
fn graph_limits_and_item_timeout() {
    let (_dir, res) = load_text(
        "c.toml",
        &format!(
            "version = 1\n[limits]\nitem_timeout = \"90s\"\nmax_index_depth = 3\n\
             max_nodes_per_image = 50\nmax_manifest_bytes_per_image = \"1MiB\"\n\
             max_referrers_per_subject = 7\n{MINIMAL_JOB}"
        ),
        &[],
    );
    let l = res.unwrap().limits;
    assert_eq!(l.item_timeout, Duration::from_secs(90));
    assert_eq!(
        (
            l.max_index_depth,
            l.max_nodes_per_image,
            l.max_referrers_per_subject
        ),
        (3, 50, 7)
    );
    assert_eq!(l.max_manifest_bytes_per_image, 1024 * 1024);
    let (_dir, res) = load_text("c.toml", &format!("version = 1\n{MINIMAL_JOB}"), &[]);
    let d = res.unwrap().limits;
    assert_eq!(d.item_timeout, Limits::DEFAULT_ITEM_TIMEOUT);
    assert_eq!(d.max_index_depth, 8);
    assert_one(
        &format!("version = 1\n[limits]\nmax_index_depth = 0\n{MINIMAL_JOB}"),
        "limits.max_index_depth",
        "at least 1",
    );
    assert_one(
        &format!("version = 1\n[limits]\nmax_manifest_bytes_per_image = \"lots\"\n{MINIMAL_JOB}"),
        "limits.max_manifest_bytes_per_image",
        "invalid size",
    );
}

#[test]
fn registry_timeouts_and_verdict_ttl() {
    let (_dir, res) = load_text(
        "c.toml",
        &format!(
            "version = 1\n[registries.\"ghcr.io\"]\nreferrers_cache_ttl = \"1m\"\n\
             request_timeout = \"2m\"\nmin_blob_bytes_per_second = 0\n{MINIMAL_JOB}"
        ),
        &[],
    );
    let r = res.unwrap().registry("ghcr.io");
    assert_eq!(r.referrers_cache_ttl, Duration::from_secs(60));
    assert_eq!(r.request_timeout, Duration::from_secs(120));
    assert_eq!(r.min_blob_bytes_per_second, 0);
    let d = RegistrySettings::defaults("x");
    assert_eq!(d.request_timeout, Duration::from_secs(60));
    assert_one(
        &format!("version = 1\n[registries.\"ghcr.io\"]\nrequest_timeout = \"0s\"\n{MINIMAL_JOB}"),
        "registries.\"ghcr.io\".request_timeout",
        "longer than 0s",
    );
}

#[test]
fn the_default_database_and_environment_paths_stay_in_the_working_directory() {
    // The container keeps its data volume as the working directory: the
    // default database lands there, not next to a read-only config file.
    let (_dir, res) = load_text("c.toml", &format!("version = 1\n{MINIMAL_JOB}"), &[]);
    assert_eq!(res.unwrap().state.database, PathBuf::from("ocimirror.db"));
    // A path from the environment is a command-line path.
    let (_dir, res) = load_text(
        "c.toml",
        &format!("version = 1\n[state]\ndatabase = \"in-file.db\"\n{MINIMAL_JOB}"),
        &[("OCIMIRROR_STATE__DATABASE", "from-env.db")],
    );
    assert_eq!(res.unwrap().state.database, PathBuf::from("from-env.db"));
}
