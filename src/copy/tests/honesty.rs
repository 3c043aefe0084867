//! Targets that lie or fail: a misreported blob size is not believed, and
//! a referrer that cannot be published withholds the image tag.

use super::*;

#[tokio::test]
async fn blobs_whose_target_size_is_wrong_are_uploaded_and_a_persistent_lie_is_named() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let f = fixture(&src, false);
    // The target holds every blob but reports each one a byte too big. It
    // has a tag, so the copier asks (a new repository is not asked).
    for b in &f.blobs {
        let blob = src.blob_bytes(REPO, b).unwrap();
        dst.seed_blob(REPO, &blob);
    }
    dst.seed_manifest(
        REPO,
        Some("older"),
        crate::oci::media_type::OCI_MANIFEST,
        br#"{"schemaVersion":2}"#,
    );
    dst.lie_about_blob_sizes(true);
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert_eq!(
        dst.count(Operation::BlobPut),
        f.blobs.len(),
        "every blob re-uploaded"
    );
    let mismatches: Vec<&NodeFailure> = report
        .failures
        .iter()
        .filter(|e| e.kind() == "target_size_mismatch")
        .collect();
    assert_eq!(mismatches.len(), f.blobs.len(), "{:#?}", report.failures);
    assert!(
        report
            .failures
            .iter()
            .all(|e| matches!(e.kind(), "target_size_mismatch" | "dependency")),
        "{:#?}",
        report.failures
    );
    assert!(
        dst.manifest_bytes(REPO, "v1").is_none(),
        "no tag over unverified blobs"
    );
    // Once the target answers truthfully, the next run completes.
    dst.lie_about_blob_sizes(false);
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_identical(&src, &dst, &f);
}

#[tokio::test]
async fn a_failed_fallback_index_withholds_the_tag_but_keeps_the_pushed_manifests() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let f = fixture(&src, false);
    dst.fail_puts_to_tag(&fallback_tag(&f.amd));
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    let kinds: Vec<(&str, NodeKind)> = report.failures.iter().map(|e| (e.kind(), e.node)).collect();
    assert_eq!(
        kinds,
        vec![
            ("server_error", NodeKind::FallbackIndex),
            ("referrers_unpublished", NodeKind::Tag)
        ],
        "{:#?}",
        report.failures
    );
    assert_eq!(report.failures[0].digest.as_ref(), Some(&f.amd));
    assert!(matches!(
        &*report.failures[1].error,
        CopyError::ReferrersUnpublished { referrers, tag } if referrers == &vec![f.sbom.clone()] && tag == "v1"
    ));
    assert!(report.failures[1].to_string().contains(&f.sbom.to_string()));
    // Everything is there by digest, the other fallback indexes too, but
    // not the tag.
    for d in [&f.index, &f.amd, &f.arm, &f.sbom, &f.sig, &f.att] {
        assert!(dst.manifest_bytes(REPO, &d.to_string()).is_some(), "{d}");
    }
    assert!(fallback_entries(&dst, &f.index).is_some());
    assert!(fallback_entries(&dst, &f.sbom).is_some());
    assert!(dst.manifest_bytes(REPO, "v1").is_none());
}

#[tokio::test]
async fn a_waiter_on_a_failed_transfer_gets_the_owners_typed_error() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let c = copier(&src, &dst, CopyOptions::default());
    let (r, d) = (repo(), Digest::sha256(b"shared"));
    let (open, gate) = tokio::sync::oneshot::channel::<()>();
    let owner = c.single_flight(&r, &d, || async {
        let _ = gate.await;
        Err(CopyError::TargetSizeMismatch {
            registry: "dst".into(),
            repo: REPO.into(),
            digest: d.clone(),
            expected: 1,
            reported: 2,
        })
    });
    let waiter = c.single_flight(&r, &d, || async {
        panic!("a waiter must not transfer again")
    });
    let release = async {
        tokio::task::yield_now().await;
        let _ = open.send(());
    };
    let ((mine, was_owner), (theirs, was_waiter_owner), ()) = tokio::join!(owner, waiter, release);
    assert!(was_owner && !was_waiter_owner);
    let (mine, theirs) = (mine.unwrap_err(), theirs.unwrap_err());
    assert!(Arc::ptr_eq(&mine, &theirs), "the waiter got another error");
    assert_eq!(theirs.kind(), "target_size_mismatch");
}
