//! `ocimirror copy --policy FILE`: the real binary with a policy file in
//! TOML or YAML (the keys of `[defaults.policy]`), keys made by openssl.

use std::path::Path;

use serde_json::json;

use super::signing::{KeyKind, Signer, legacy_sig, payload};
use crate::support::cli::{ocimirror, text};
use crate::support::registry::{Options, TestRegistry};
use crate::sync_jobs::{REPO, seed_tags, writes};

async fn copy(
    dir: &Path,
    policy: &str,
    src: &TestRegistry,
    dst: &TestRegistry,
    tag: &str,
) -> std::process::Output {
    ocimirror(
        dir,
        &[
            "copy",
            "--policy",
            policy,
            &format!("{}/{REPO}:{tag}", src.host()),
            &format!("{}/{REPO}:{tag}", dst.host()),
        ],
    )
    .await
}

#[tokio::test]
async fn copy_with_a_policy_file_admits_signed_images_refuses_or_warns_about_others() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let images = seed_tags(&src, REPO, "copy policy", 2);
    let (signed, unsigned) = (&images[0], &images[1]);
    let dir = tempfile::tempdir().unwrap();
    let key = Signer::new(dir.path(), "release", KeyKind::P256);
    let p = payload(&signed.1.index, json!({}));
    legacy_sig(&src, &signed.1.index, &p, &key.sign(&p));
    // The key path is relative to the policy file, not the working directory.
    std::fs::write(
        dir.path().join("enforce.toml"),
        "mode = \"enforce\"\n[[cosign]]\nname = \"release\"\nkey = \"release.pub\"\n",
    )
    .unwrap();
    let enforce = dir.path().join("enforce.toml").display().to_string();
    let elsewhere = tempfile::tempdir().unwrap();

    let out = copy(elsewhere.path(), &enforce, &src, &dst, &signed.0).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(dst.manifest(REPO, &signed.0).is_some());

    dst.clear_log();
    let out = copy(elsewhere.path(), &enforce, &src, &dst, &unsigned.0).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("unverified: "), "{}", text(&out));
    assert!(
        stdout.contains("no signature found for this digest (policy requires any of: release)"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("[unverified]"), "{}", text(&out));
    assert_eq!(writes(&dst), Vec::<String>::new(), "nothing written");

    // warn, in YAML: copied, and said so.
    std::fs::write(
        dir.path().join("warn.yaml"),
        "mode: warn\ncosign:\n  - name: release\n    key: release.pub\n",
    )
    .unwrap();
    let warn = dir.path().join("warn.yaml").display().to_string();
    let out = copy(elsewhere.path(), &warn, &src, &dst, &unsigned.0).await;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Image not verified; copied anyway (policy mode warn)."),
        "{}",
        text(&out)
    );
    assert!(dst.manifest(REPO, &unsigned.0).is_some());
}

#[tokio::test]
async fn a_bad_policy_file_is_a_configuration_error_naming_file_and_key() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(
        &file,
        "mode = \"enforce\"\nkeys = []\n[[cosign]]\nname = \"release\"\nkey = \"missing.pub\"\n",
    )
    .unwrap();
    let out = copy(dir.path(), &file.display().to_string(), &src, &dst, "v1").await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("policy.toml"), "{}", text(&out));
    assert!(stderr.contains("keys"), "{}", text(&out));
    assert!(stderr.contains("cosign[0].key"), "{}", text(&out));
    assert!(stderr.contains("missing.pub"), "{}", text(&out));
    assert!(
        src.log().is_empty() && dst.log().is_empty(),
        "a request was made"
    );
}
