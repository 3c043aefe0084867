//! A changed policy (another mode, a rotated key) is part of the
//! checkpoint: each image is walked and verified once more, and one that
//! no longer passes is reported, not deleted. The same policy still costs
//! no walk and no target request.

use serde_json::json;

use super::signing::{KeyKind, Signer, legacy_sig, payload};
use super::{assert_copied, mirror, policy, setup};
use crate::sync_jobs::{REPO, assert_mirrored};
use ocimirror::sync::SyncOptions;

#[tokio::test]
async fn a_rotated_key_rechecks_an_unchanged_image_and_reports_the_refusal() {
    let (src, dst, f) = setup("rotation").await;
    let dir = tempfile::tempdir().unwrap();
    let old = Signer::new(dir.path(), "release", KeyKind::P256);
    let p = payload(&f.index, json!({}));
    legacy_sig(&src, &f.index, &p, &old.sign(&p));
    let before = policy("enforce", "any", &[&old]);
    let first = mirror(dir.path(), &src, &dst, &before, SyncOptions::default()).await;
    assert_copied(&first, &dst, &f);

    // Same policy: the checkpoint holds, nothing is walked.
    src.clear_log();
    dst.clear_log();
    let same = mirror(dir.path(), &src, &dst, &before, SyncOptions::default()).await;
    assert!(same.failures.is_empty(), "{:?}", same.failures);
    assert_eq!(same.counts.images_skipped, 1);
    assert_eq!(src.count("GET", "/manifests/"), 0, "{:#?}", src.log());
    assert!(dst.log().is_empty(), "{:#?}", dst.log());

    // The key is rotated (same verifier name, new key): the plan says why
    // the image is looked at again, and that it would be refused.
    let rotated_dir = tempfile::tempdir().unwrap();
    let new = Signer::new(rotated_dir.path(), "release", KeyKind::P256);
    let after = policy("enforce", "any", &[&new]);
    let dry = SyncOptions {
        dry_run: true,
        ..SyncOptions::default()
    };
    let plan = mirror(dir.path(), &src, &dst, &after, dry).await;
    let item = &plan.plan[0];
    assert!(
        item.reason.contains("signature policy changed"),
        "{}",
        item.reason
    );
    assert!(
        item.steps
            .iter()
            .any(|s| s.reason.starts_with("refused (enforce): ")),
        "{:#?}",
        item.steps
    );

    dst.clear_log();
    let refused = mirror(dir.path(), &src, &dst, &after, SyncOptions::default()).await;
    assert_eq!(refused.failures.len(), 1, "{:?}", refused.failures);
    let failure = &refused.failures[0];
    assert_eq!(failure.kind, "unverified");
    assert!(
        failure
            .error
            .contains("signature does not verify with any configured key"),
        "{}",
        failure.error
    );
    // Reported, not deleted: the mirrored image stays as it was.
    assert!(crate::sync_jobs::writes(&dst).is_empty(), "{:?}", dst.log());
    assert_mirrored(&dst, REPO, &f);
}

#[tokio::test]
async fn turning_the_policy_on_checks_images_mirrored_without_it() {
    let (src, dst, f) = setup("policy on").await;
    let dir = tempfile::tempdir().unwrap();
    let key = Signer::new(dir.path(), "release", KeyKind::Ed25519);
    // Unsigned: fine while the policy is off.
    let off = mirror(dir.path(), &src, &dst, "", SyncOptions::default()).await;
    assert_copied(&off, &dst, &f);

    let on = mirror(
        dir.path(),
        &src,
        &dst,
        &policy("enforce", "any", &[&key]),
        SyncOptions::default(),
    )
    .await;
    assert_eq!(on.failures.len(), 1, "{:?}", on.failures);
    assert!(
        on.failures[0].error.contains("no signature found"),
        "{}",
        on.failures[0].error
    );
    assert_mirrored(&dst, REPO, &f);
}
