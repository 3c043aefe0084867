//! Hostile or broken listings and manifests: each fails or skips its own
//! node, with a typed failure, and the rest of the image is copied.

use super::*;

#[tokio::test]
async fn stale_and_foreign_fallback_entries_are_skipped() {
    let src = Arc::new(MemoryRegistry::new("src", false));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let f = fixture(&src, false);
    let mut blobs = Vec::new();
    let (sig2, sig2_body) = seed_artifact(
        &src,
        SIG,
        "other subject",
        (&f.arm, 1, mt::OCI_MANIFEST),
        &mut blobs,
    );
    let missing = Digest::sha256(b"missing");
    let (_, sbom_body) = src.manifest_bytes(REPO, &f.sbom.to_string()).unwrap();
    seed_fallback(
        &src,
        &f.amd,
        &[
            (&f.sbom, &sbom_body, SBOM),
            (&missing, b"{}", SIG),
            (&sig2, &sig2_body, SIG),
        ],
    );
    let plan = copier(&src, &dst, CopyOptions::default())
        .plan_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    let skipped: Vec<&CopyEvent> = plan.iter().filter(|e| e.action == Action::Skip).collect();
    assert_eq!(skipped.len(), 2, "{plan:#?}");
    assert!(
        skipped
            .iter()
            .any(|e| e.digest.as_ref() == Some(&missing) && e.reason.contains("missing"))
    );
    assert!(
        skipped
            .iter()
            .any(|e| e.digest.as_ref() == Some(&sig2) && e.reason.contains("subject differs"))
    );
    assert_eq!(dst.writes(), 0, "a plan writes nothing");
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_eq!(
        fallback_entries(&dst, &f.amd),
        Some(vec![f.sbom.to_string()])
    );
    assert!(dst.manifest_bytes(REPO, &sig2.to_string()).is_none());
}

#[tokio::test]
async fn a_fallback_tag_that_is_not_an_index_fails_that_node_only() {
    let src = Arc::new(MemoryRegistry::new("src", false));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let f = fixture(&src, true);
    // Replace the amd64 fallback tag with an image manifest.
    let (_, arm_body) = src.manifest_bytes(REPO, &f.arm.to_string()).unwrap();
    src.seed_manifest(
        REPO,
        Some(&fallback_tag(&f.amd)),
        mt::OCI_MANIFEST,
        &arm_body,
    );
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let failure = &report.failures[0];
    assert_eq!(failure.kind(), "invalid_fallback_index", "{failure}");
    assert_eq!(failure.digest.as_ref(), Some(&f.amd));
    assert!(failure.to_string().contains(&fallback_tag(&f.amd)));
    // Everything else still arrived.
    assert!(dst.manifest_bytes(REPO, "v1").is_some());
    assert!(dst.manifest_bytes(REPO, &f.att.to_string()).is_some());
}

#[tokio::test]
async fn oversized_manifests_and_absurd_indexes_fail_their_node_only() {
    let src = Arc::new(MemoryRegistry::new("src", false));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let f = fixture(&src, true);
    // A referrer of arm64 listed in its fallback index but over the size cap.
    let mut blobs = Vec::new();
    let (e, es) = seed_blob(&src, b"{}", &mut blobs);
    let big = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST, "artifactType": SIG,
        "config": desc(mt::OCI_EMPTY, &e, es), "layers": [],
        "subject": desc(mt::OCI_MANIFEST, &f.arm, 1),
        "annotations": {"padding": "x".repeat(crate::oci::manifest::MAX_MANIFEST_SIZE)},
    }))
    .unwrap();
    let big_d = src.seed_manifest(REPO, None, mt::OCI_MANIFEST, &big);
    seed_fallback(&src, &f.arm, &[(&big_d, b"{}", SIG)]);
    // The SBOM's fallback tag holds an index with too many entries.
    let entry = desc(mt::OCI_MANIFEST, &f.sig, 1);
    let absurd = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_INDEX,
        "manifests": vec![entry; crate::oci::manifest::MAX_ENTRIES + 1],
    }))
    .unwrap();
    src.seed_manifest(REPO, Some(&fallback_tag(&f.sbom)), mt::OCI_INDEX, &absurd);
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert_eq!(report.failures.len(), 2, "{:#?}", report.failures);
    // Both are manifests the parser refuses (too big, too many entries).
    for d in [&big_d, &f.sbom] {
        assert!(
            report
                .failures
                .iter()
                .any(|e| e.digest.as_ref() == Some(d) && e.kind() == "invalid_manifest"),
            "{d}: {:#?}",
            report.failures
        );
    }
    // Everything else arrived: the image, the SBOM and the attestation.
    for d in [&f.index, &f.amd, &f.arm, &f.sbom, &f.att] {
        assert!(dst.manifest_bytes(REPO, &d.to_string()).is_some(), "{d}");
    }
    assert!(dst.manifest_bytes(REPO, &f.sig.to_string()).is_none());
}

#[tokio::test]
async fn listings_that_loop_back_or_lie_are_skipped_and_the_walk_ends() {
    let src = Arc::new(MemoryRegistry::new("src", false));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let f = fixture(&src, true);
    let body = |d: &Digest| src.manifest_bytes(REPO, &d.to_string()).unwrap().1;
    let (index_b, amd_b, att_b, sig_b) = (body(&f.index), body(&f.amd), body(&f.att), body(&f.sig));
    // The index's fallback tag lists the index itself, its child and the
    // signature of the SBOM (whose subject is the SBOM), before the real one.
    seed_fallback(
        &src,
        &f.index,
        &[
            (&f.index, &index_b, "x"),
            (&f.amd, &amd_b, "x"),
            (&f.sig, &sig_b, SIG),
            (&f.att, &att_b, ATT),
        ],
    );
    // The SBOM's fallback tag lists the amd64 manifest (its own subject).
    seed_fallback(
        &src,
        &f.sbom,
        &[(&f.amd, &amd_b, "x"), (&f.sig, &sig_b, SIG)],
    );
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_identical(&src, &dst, &f);
    assert_eq!(
        fallback_entries(&dst, &f.index),
        Some(vec![f.att.to_string()])
    );
    assert_eq!(
        fallback_entries(&dst, &f.sbom),
        Some(vec![f.sig.to_string()])
    );
    assert_eq!(
        fallback_entries(&dst, &f.amd),
        Some(vec![f.sbom.to_string()])
    );
}

#[tokio::test]
async fn a_target_fallback_tag_that_is_not_an_index_is_reported() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let f = fixture(&src, false);
    let (_, amd_b) = src.manifest_bytes(REPO, &f.amd.to_string()).unwrap();
    dst.seed_manifest(
        REPO,
        Some(&fallback_tag(&f.index)),
        mt::OCI_MANIFEST,
        &amd_b,
    );
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    // The index's attestation is not published, so neither is its tag.
    let kinds: Vec<&str> = report.failures.iter().map(|f| f.kind()).collect();
    assert_eq!(
        kinds,
        vec!["invalid_fallback_index", "referrers_unpublished"],
        "{:#?}",
        report.failures
    );
    assert_eq!(report.failures[0].digest.as_ref(), Some(&f.index));
    assert!(matches!(
        &*report.failures[0].error,
        CopyError::FallbackIndex {
            side: Side::Target,
            ..
        }
    ));
    assert!(matches!(
        &*report.failures[1].error,
        CopyError::ReferrersUnpublished { referrers, .. } if referrers == &vec![f.att.clone()]
    ));
    assert!(dst.manifest_bytes(REPO, "v1").is_none());
    // Left alone, and the other subjects' indexes were written.
    assert_eq!(
        dst.manifest_bytes(REPO, &fallback_tag(&f.index)).unwrap().1,
        amd_b
    );
    assert_eq!(
        fallback_entries(&dst, &f.amd),
        Some(vec![f.sbom.to_string()])
    );
}
