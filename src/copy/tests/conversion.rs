//! Conversion between referrer representations, digest-exactness and
//! idempotence, for every (source, target) pair of modes.

use super::*;

#[tokio::test]
async fn api_to_api_is_digest_exact_without_fallback_tags_and_reruns_write_nothing() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let f = fixture(&src, false);
    let c = copier(&src, &dst, CopyOptions::default());
    let report = c.copy_image(&repo(), &v1(), &repo(), None).await.unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_identical(&src, &dst, &f);
    assert_eq!(report.manifests_copied, 6);
    assert_eq!(report.blobs_copied, f.blobs.len() as u64);
    assert_eq!(
        report.referrers[&(Representation::Api, Representation::Api)],
        3
    );
    assert_eq!(
        dst.tag_list(REPO),
        vec!["v1".to_string()],
        "no fallback tags on an API target"
    );
    for (subject, referrer) in [(&f.amd, &f.sbom), (&f.sbom, &f.sig), (&f.index, &f.att)] {
        assert_eq!(dst.scan(REPO, subject), src.scan(REPO, subject));
        assert_eq!(&dst.scan(REPO, subject)[0].digest, referrer);
    }
    dst.clear_log();
    let again = c.copy_image(&repo(), &v1(), &repo(), None).await.unwrap();
    assert!(again.wrote_nothing(), "{again}");
    assert_eq!(dst.writes(), 0);
    assert_eq!(again.manifests_skipped, 6);
    assert!(again.referrers.is_empty(), "{:?}", again.referrers);
    assert_eq!(
        again.referrers_skipped[&(Representation::Api, Representation::Api)],
        3
    );
}

#[tokio::test]
async fn api_source_to_tag_schema_target_writes_merged_fallback_indexes() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let f = fixture(&src, false);
    let c = copier(&src, &dst, CopyOptions::default());
    let report = c.copy_image(&repo(), &v1(), &repo(), None).await.unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_identical(&src, &dst, &f);
    assert_eq!(report.fallback_indexes_written, 3);
    assert_eq!(
        report.referrers[&(Representation::Api, Representation::FallbackTag)],
        3
    );
    for (subject, referrer) in [(&f.amd, &f.sbom), (&f.sbom, &f.sig), (&f.index, &f.att)] {
        assert_eq!(
            fallback_entries(&dst, subject),
            Some(vec![referrer.to_string()])
        );
        // Entry = what the API lists: artifactType derivation and annotations.
        let (_, bytes) = dst.manifest_bytes(REPO, &fallback_tag(subject)).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let want = serde_json::to_value(&src.scan(REPO, subject)[0]).unwrap();
        assert_eq!(v["manifests"][0], want);
    }
    assert!(fallback_entries(&dst, &f.arm).is_none());
    dst.clear_log();
    let again = c.copy_image(&repo(), &v1(), &repo(), None).await.unwrap();
    assert!(again.wrote_nothing(), "{again}");
    assert_eq!(dst.writes(), 0);
    assert!(again.referrers.is_empty(), "{:?}", again.referrers);
    assert_eq!(
        again.referrers_skipped[&(Representation::Api, Representation::FallbackTag)],
        3
    );
}

#[tokio::test]
async fn tag_schema_source_to_api_target_converts() {
    let src = Arc::new(MemoryRegistry::new("src", false));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let f = fixture(&src, true);
    let c = copier(&src, &dst, CopyOptions::default());
    let report = c.copy_image(&repo(), &v1(), &repo(), None).await.unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_identical(&src, &dst, &f);
    assert_eq!(
        report.referrers[&(Representation::FallbackTag, Representation::Api)],
        3
    );
    assert_eq!(dst.tag_list(REPO), vec!["v1".to_string()]);
}

#[tokio::test]
async fn tag_schema_to_tag_schema_keeps_foreign_entries() {
    let src = Arc::new(MemoryRegistry::new("src", false));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let f = fixture(&src, true);
    // The target already lists a referrer of the index nobody copies.
    let mut blobs = Vec::new();
    let index_len = src.manifest_bytes(REPO, "v1").unwrap().1.len();
    let (foreign, foreign_body) = seed_artifact(
        &dst,
        "application/x.foreign",
        "f",
        (&f.index, index_len, mt::OCI_INDEX),
        &mut blobs,
    );
    seed_fallback(
        &dst,
        &f.index,
        &[(&foreign, &foreign_body, "application/x.foreign")],
    );
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    let mut want = vec![foreign.to_string(), f.att.to_string()];
    want.sort();
    assert_eq!(fallback_entries(&dst, &f.index), Some(want));
    assert_eq!(
        report.referrers[&(Representation::FallbackTag, Representation::FallbackTag)],
        3
    );
}

#[tokio::test]
async fn auto_discovery_takes_the_union_of_api_and_fallback_tag() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let f = fixture(&src, false);
    // A referrer listed only in a fallback index (pushed before the API).
    let mut blobs = Vec::new();
    let (old, old_body) = seed_artifact(
        &src,
        "application/x.old",
        "old",
        (&f.arm, 1, mt::OCI_MANIFEST),
        &mut blobs,
    );
    seed_fallback(&src, &f.arm, &[(&old, &old_body, "application/x.old")]);
    src.hide_from_api(&old);
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert!(dst.manifest_bytes(REPO, &old.to_string()).is_some());
    assert_eq!(
        report.referrers[&(Representation::FallbackTag, Representation::Api)],
        1
    );
    assert_eq!(
        report.referrers[&(Representation::Api, Representation::Api)],
        3
    );
    assert!(
        !dst.tag_list(REPO).contains(&fallback_tag(&f.arm)),
        "source fallback tag copied as a tag"
    );
}

#[tokio::test]
async fn api_target_mode_never_writes_fallback_tags_and_tags_mode_always_does() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let f = fixture(&src, false);
    let opts = CopyOptions {
        target_referrers: ReferrersMode::Api,
        ..CopyOptions::default()
    };
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let r = copier(&src, &dst, opts.clone())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(r.is_success());
    assert_eq!(dst.tag_list(REPO), vec!["v1".to_string()]);
    // Api mode on a target without the API: never a fallback tag, and the
    // referrers fail by name (so the image tag waits) instead of being
    // pushed where nothing can find them.
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let r = copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(!r.is_success());
    assert!(
        r.failures.iter().any(|f| f.kind() == "unsupported"),
        "{:?}",
        r.failures
    );
    assert!(dst.tag_list(REPO).is_empty(), "{:?}", dst.tag_list(REPO));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let opts = CopyOptions {
        target_referrers: ReferrersMode::Tags,
        ..CopyOptions::default()
    };
    let r = copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert_eq!(r.fallback_indexes_written, 3);
    assert_eq!(
        fallback_entries(&dst, &f.index),
        Some(vec![f.att.to_string()])
    );
    // Source mode api on a registry without one: a clear error per node.
    let tags_only = Arc::new(MemoryRegistry::new("old", false));
    fixture(&tags_only, true);
    let opts = CopyOptions {
        source_referrers: ReferrersMode::Api,
        ..CopyOptions::default()
    };
    let r = copier(
        &tags_only,
        &Arc::new(MemoryRegistry::new("dst", true)),
        opts,
    )
    .copy_image(&repo(), &v1(), &repo(), None)
    .await
    .unwrap();
    assert!(!r.is_success());
    assert_eq!(r.failures[0].kind(), "unsupported", "{}", r.failures[0]);
    assert!(matches!(
        &*r.failures[0].error,
        CopyError::Unsupported {
            side: Side::Source,
            ..
        }
    ));
}

#[tokio::test]
async fn docker_media_types_pass_through_unchanged() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let mut blobs = Vec::new();
    let (c, cs) = seed_blob(
        &src,
        br#"{"architecture":"amd64","os":"linux"}"#,
        &mut blobs,
    );
    let (l, ls) = seed_blob(&src, b"docker layer", &mut blobs);
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::DOCKER_MANIFEST,
        "config": desc(mt::DOCKER_CONFIG, &c, cs),
        "layers": [desc("application/vnd.docker.image.rootfs.diff.tar.gzip", &l, ls)],
    }))
    .unwrap();
    let md = src.seed_manifest(REPO, None, mt::DOCKER_MANIFEST, &m);
    let mut entry = desc(mt::DOCKER_MANIFEST, &md, m.len());
    entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
    // Odd whitespace: the bytes must survive exactly.
    let list = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{}\",\n  \"manifests\": [{}]\n}}\n",
        mt::DOCKER_MANIFEST_LIST,
        entry
    );
    let ld = src.seed_manifest(REPO, Some("v1"), mt::DOCKER_MANIFEST_LIST, list.as_bytes());
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    for d in [&md, &ld] {
        assert_eq!(
            dst.manifest_bytes(REPO, &d.to_string()),
            src.manifest_bytes(REPO, &d.to_string())
        );
    }
    assert_eq!(
        dst.manifest_bytes(REPO, "v1").unwrap().0,
        mt::DOCKER_MANIFEST_LIST
    );
}

#[tokio::test]
async fn cosign_legacy_tags_are_copied_digest_exact() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let f = fixture(&src, false);
    let mut blobs = Vec::new();
    let (c, cs) = seed_blob(&src, br#"{"cosign":true}"#, &mut blobs);
    let (l, ls) = seed_blob(&src, b"simple signing payload", &mut blobs);
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
        "config": desc(mt::OCI_CONFIG, &c, cs),
        "layers": [desc("application/vnd.dev.cosign.simplesigning.v1+json", &l, ls)],
    }))
    .unwrap();
    let tag = cosign_tag(&f.index, "sig");
    let legacy = src.seed_manifest(REPO, Some(&tag), mt::OCI_MANIFEST, &body);
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_eq!(
        dst.manifest_bytes(REPO, &tag)
            .map(|(_, b)| Digest::sha256(&b)),
        Some(legacy)
    );
    assert!(dst.has_blob(REPO, &l));
    assert_eq!(
        report.referrers[&(Representation::CosignTag, Representation::CosignTag)],
        1
    );
    assert_eq!(report.tags, 2);
}
