//! One new signature on an image that is already mirrored (the most common
//! change a mirror sees): the next run copies it, in the target's form, and
//! only it. The signature is added with the real `ocimirror generate
//! --add-signature`, the command the benchmark uses.

use ocimirror::sync::SyncOptions;
use serde_json::Value;

use super::{ocimirror, ok, run_once, text, writes};
use crate::support::fixtures;
use crate::support::registry::{Options, TestRegistry};

const REPO: &str = "corpus/app-0";

async fn registry(referrers_api: bool) -> TestRegistry {
    TestRegistry::start(Options {
        referrers_api,
        ..Options::default()
    })
    .await
}

/// Digests listed by the target for `subject`: the manifest of its cosign
/// `.sig` tag (`form` cosign-tags), its referrers API, or its fallback tag's
/// index.
fn target_referrers(reg: &TestRegistry, form: &str, api: bool, subject: &str) -> Vec<String> {
    if form == "cosign-tags" {
        let tag = format!("{}.sig", subject.replace(':', "-"));
        return reg
            .manifest(REPO, &tag)
            .map(|(_, bytes)| vec![fixtures::sha256(&bytes)])
            .unwrap_or_default();
    }
    if api {
        return reg.referrers(REPO, subject);
    }
    let tag = subject.replace(':', "-");
    let Some((_, bytes)) = reg.manifest(REPO, &tag) else {
        return Vec::new();
    };
    let index: Value = serde_json::from_slice(&bytes).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Generates a 2-tag corpus on a source (`source_api`: referrers API or tag
/// schema) in `form`, mirrors it to a target, signs `v1.0.0` once more and
/// re-runs the job.
async fn new_signature(source_api: bool, form: &str, target_api: bool) {
    let src = registry(source_api).await;
    let dst = registry(target_api).await;
    let dir = tempfile::tempdir().unwrap();
    let host = src.host();
    let generated = ocimirror(
        dir.path(),
        &[
            "generate",
            &format!("{host}/corpus"),
            "--tags",
            "2",
            "--layer-size",
            "512",
            "--base-layer-size",
            "512",
            "--referrer-form",
            form,
        ],
    )
    .await;
    assert!(generated.status.success(), "{}", text(&generated));
    let config = dir.path().join("ocimirror.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1
[state]
database = "{db}"
[[jobs]]
name = "mirror"
source = "{host}/{REPO}"
target = "{dst}/{REPO}"
"#,
            db = dir.path().join("state.db").display(),
            dst = dst.host(),
        ),
    )
    .unwrap();
    let config = ocimirror::config::load(&config).unwrap();
    src.clear_log();
    let first = ok(run_once(&config, &SyncOptions::default()).await);
    assert_eq!(first.counts.images_copied, 2);
    // The tags listed to select images also tell the walk which referrer
    // tags exist: one listing for the whole run.
    assert_eq!(src.count("GET", "/tags/list"), 1);

    let image = format!("{host}/{REPO}:v1.0.0");
    let signed = ocimirror(
        dir.path(),
        &[
            "generate",
            &image,
            "--add-signature",
            "--seed",
            "7",
            "--referrer-form",
            form,
        ],
    )
    .await;
    assert!(signed.status.success(), "{}", text(&signed));
    let stdout = String::from_utf8_lossy(&signed.stdout);
    let signature = stdout
        .trim()
        .strip_suffix('.')
        .and_then(|s| s.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no digest in {stdout:?}"))
        .to_string();
    let (_, index) = src.manifest(REPO, "v1.0.0").unwrap();
    let subject = fixtures::sha256(&index);
    assert!(src.manifest(REPO, &signature).is_some(), "{signature}");
    assert!(!target_referrers(&dst, form, target_api, &subject).contains(&signature));

    dst.clear_log();
    let second = ok(run_once(&config, &SyncOptions::default()).await);
    assert_eq!(
        (second.counts.images_copied, second.counts.images_skipped),
        (1, 1),
        "{second:?}"
    );
    assert!(
        dst.manifest(REPO, &signature).is_some(),
        "signature not on the target"
    );
    let listed = target_referrers(&dst, form, target_api, &subject);
    assert!(listed.contains(&signature), "{listed:?}");
    // Only the new signature (its config blob and manifest) and, on a
    // tag-schema target or for a cosign tag, one tag are written.
    let written = writes(&dst);
    let manifest_puts = written
        .iter()
        .filter(|w| w.starts_with("PUT") && w.contains("/manifests/"))
        .count();
    let tagged = form == "cosign-tags" || !target_api;
    assert_eq!(manifest_puts, 1 + usize::from(tagged), "{written:#?}");
    assert!(written.len() <= manifest_puts + 2, "{written:#?}");
}

#[tokio::test]
async fn api_source_to_tag_schema_target() {
    new_signature(true, "api", false).await;
}

#[tokio::test]
async fn tag_schema_source_to_api_target() {
    new_signature(false, "fallback-tag", true).await;
}

#[tokio::test]
async fn cosign_signature_tag() {
    new_signature(false, "cosign-tags", true).await;
}
