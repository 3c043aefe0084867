//! Mirror jobs end to end: the checkpoint's cost and its limits (a deleted
//! database, a tampered target), a killed run resumed, a rate limit shared by
//! two jobs, `serve` draining on SIGTERM, concurrent processes on one
//! database, and the README's demo command.
//!
//! In-process tests run jobs through `ocimirror::app::run_once`; the
//! process-level ones run the real binary.

mod checkpoint;
mod latency;
mod new_signature;
mod outcomes;
mod processes;
mod resume;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ocimirror::app::RunOnce;
use ocimirror::config::Config;
use ocimirror::scheduler::SystemClock;
use ocimirror::sync::{JobReport, SyncOptions};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::fixtures::{self, Fixture, Form};
use crate::support::registry::TestRegistry;

pub const REPO: &str = "team/app";

/// `n` distinct images in `repo`, tagged `t0`..`t<n-1>`, each a 2-platform
/// index with an SBOM, a signature on it and an attestation (API form).
pub fn seed_tags(reg: &TestRegistry, repo: &str, prefix: &str, n: usize) -> Vec<(String, Fixture)> {
    (0..n)
        .map(|i| {
            let mut f = fixtures::image(Form::Api, &format!("{prefix}{i}"));
            let m = f.tags.remove("v1").unwrap();
            let tag = format!("t{i}");
            f.tags.insert(tag.clone(), m);
            fixtures::seed_registry(reg, repo, &f);
            (tag, f)
        })
        .collect()
}

/// A config file in `dir` mirroring `src/REPO` to `dst/REPO` with its
/// database in `dir`; `state` is added to `[state]`, `extra` appended.
pub fn write_config(
    dir: &Path,
    src: &TestRegistry,
    dst: &TestRegistry,
    state: &str,
    extra: &str,
) -> PathBuf {
    write_config_for_hosts(dir, &src.host(), &dst.host(), state, extra)
}

/// [`write_config`] for registries given by host (e.g. a distribution 2.8).
pub fn write_config_for_hosts(
    dir: &Path,
    src: &str,
    dst: &str,
    state: &str,
    extra: &str,
) -> PathBuf {
    let text = format!(
        r#"version = 1
[state]
database = "{db}"
{state}

[[jobs]]
name = "mirror"
source = "{src}/{REPO}"
target = "{dst}/{REPO}"
schedule = {{ interval = "1h", jitter = "0s" }}
{extra}
"#,
        db = dir.join("state.db").display(),
    );
    let path = dir.join("ocimirror.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs every job of `config` once in-process, like `ocimirror once`: fresh
/// adapters (so the run pings each registry once) and the database opened.
pub async fn run_once(config: &Config, options: &SyncOptions) -> Vec<JobReport> {
    ocimirror::app::run_once(
        config,
        RunOnce {
            jobs: &config.jobs,
            options: options.clone(),
            events: None,
            cancel: CancellationToken::new(),
            clock: Arc::new(SystemClock),
        },
    )
    .await
    .unwrap()
    .reports
}

/// The one report of a single-job run, asserted successful.
pub fn ok(reports: Vec<JobReport>) -> JobReport {
    assert_eq!(reports.len(), 1);
    let r = reports.into_iter().next().unwrap();
    assert!(
        r.fatal.is_none() && r.failures.is_empty(),
        "run failed: {:?} {:?}",
        r.fatal,
        r.failures
    );
    r
}

/// Asserts that every manifest and blob of `f` is on `reg` byte-identical,
/// its tags point where they should, and every referrer edge is listed.
pub fn assert_mirrored(reg: &TestRegistry, repo: &str, f: &Fixture) {
    for m in &f.manifests {
        let got = reg.manifest(repo, &m.digest);
        assert_eq!(
            got.as_ref().map(|(_, b)| b.as_slice()),
            Some(m.bytes.as_slice()),
            "manifest {} in {repo}",
            m.digest
        );
    }
    for b in &f.blobs {
        assert_eq!(
            reg.blob(repo, &fixtures::sha256(b)).as_deref(),
            Some(b.as_slice()),
            "blob {}",
            fixtures::sha256(b)
        );
    }
    for (tag, m) in &f.tags {
        let got = reg.manifest(repo, tag).map(|(_, b)| fixtures::sha256(&b));
        assert_eq!(got.as_deref(), Some(m.digest.as_str()), "tag {tag}");
    }
    for e in &f.edges {
        assert!(
            reg.referrers(repo, &e.subject).contains(&e.referrer),
            "referrer {} of {} not listed",
            e.referrer,
            e.subject
        );
    }
}

/// Every tag of `repo` on `reg` resolves to a manifest whose blobs and
/// child manifests all exist (recursively): no tag points at incomplete
/// content. Returns the problems found.
pub fn incomplete_tags(reg: &TestRegistry, repo: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for tag in reg.tags(repo) {
        let mut stack = vec![tag.clone()];
        let mut seen = BTreeSet::new();
        while let Some(reference) = stack.pop() {
            if !seen.insert(reference.clone()) {
                continue;
            }
            let Some((_, bytes)) = reg.manifest(repo, &reference) else {
                problems.push(format!("tag {tag}: manifest {reference} missing"));
                continue;
            };
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            for child in v["manifests"].as_array().into_iter().flatten() {
                stack.push(child["digest"].as_str().unwrap().to_string());
            }
            let blobs = v["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(v.get("config"));
            for b in blobs {
                let d = b["digest"].as_str().unwrap();
                if reg.blob(repo, d).is_none() {
                    problems.push(format!("tag {tag}: blob {d} of {reference} missing"));
                }
            }
        }
    }
    problems
}

/// Requests that write (`PUT`, `POST`, `PATCH`, `DELETE`).
pub fn writes(reg: &TestRegistry) -> Vec<String> {
    reg.log()
        .iter()
        .filter(|r| matches!(r.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

pub use crate::support::cli::{ocimirror, text};

/// `PRAGMA integrity_check` of the sqlite file at `path`.
pub async fn integrity_check(path: &Path) -> String {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    rows.join("\n")
}
