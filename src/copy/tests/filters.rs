//! Artifact-type, annotation, depth and platform filters.

use super::*;

#[tokio::test]
async fn filters_and_depth_limit_what_is_copied() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let f = fixture(&src, false);
    // Excluding SBOMs also loses the signature on the SBOM.
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let opts = CopyOptions {
        artifact_types_exclude: vec![SBOM.into()],
        ..CopyOptions::default()
    };
    let report = copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert_eq!(report.filtered, 1);
    assert!(dst.manifest_bytes(REPO, &f.sbom.to_string()).is_none());
    assert!(dst.manifest_bytes(REPO, &f.sig.to_string()).is_none());
    assert!(dst.manifest_bytes(REPO, &f.att.to_string()).is_some());
    // Depth 1: the SBOM, not the signature on it.
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let opts = CopyOptions {
        max_depth: 1,
        ..CopyOptions::default()
    };
    copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(dst.manifest_bytes(REPO, &f.sbom.to_string()).is_some());
    assert!(dst.manifest_bytes(REPO, &f.sig.to_string()).is_none());
    // Annotation match and include list.
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let opts = CopyOptions {
        annotations: vec!["x.content=att".parse().unwrap()],
        ..CopyOptions::default()
    };
    copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(dst.manifest_bytes(REPO, &f.att.to_string()).is_some());
    assert!(dst.manifest_bytes(REPO, &f.sbom.to_string()).is_none());
    // Referrers off: the image only.
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let opts = CopyOptions {
        referrers: false,
        ..CopyOptions::default()
    };
    src.clear_log();
    let r = copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert_eq!(r.manifests_copied, 3);
    assert_eq!(src.count(Operation::Referrers), 0);
    assert_eq!(src.count(Operation::TagList), 0);
}

#[tokio::test]
async fn platform_filter_one_match_tags_the_platform_manifest() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let f = fixture(&src, false);
    let opts = CopyOptions {
        platforms: vec!["linux/arm64/v8".parse().unwrap()],
        platform_mode: PlatformMode::Filter,
        ..CopyOptions::default()
    };
    let report = copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_eq!(
        dst.manifest_bytes(REPO, "v1")
            .map(|(_, b)| Digest::sha256(&b)),
        Some(f.arm.clone())
    );
    assert!(dst.manifest_bytes(REPO, &f.index.to_string()).is_none());
    assert!(dst.manifest_bytes(REPO, &f.amd.to_string()).is_none());
    assert!(
        dst.manifest_bytes(REPO, &f.att.to_string()).is_none(),
        "index referrers do not apply"
    );
    assert_eq!(
        report.dropped, 1,
        "the index's attestation is reported dropped"
    );
    // Default mode: the platform list narrows nothing.
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let opts = CopyOptions {
        platforms: vec!["linux/arm64".parse().unwrap()],
        ..CopyOptions::default()
    };
    copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert_identical(&src, &dst, &f);
}

#[tokio::test]
async fn platform_filter_several_matches_write_a_narrowed_index() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let mut blobs = Vec::new();
    let mut entries = Vec::new();
    let mut digests = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8")), ("s390x", None)] {
        let (d, size) = seed_image(&src, arch, &mut blobs);
        let mut e = desc(mt::OCI_MANIFEST, &d, size);
        e["platform"] = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            e["platform"]["variant"] = json!(v);
        }
        entries.push(e);
        digests.push(d);
    }
    // A BuildKit attestation for amd64 follows its platform.
    let (att, att_size) = seed_image(&src, "attestation", &mut blobs);
    let mut e = desc(mt::OCI_MANIFEST, &att, att_size);
    e["platform"] = json!({"architecture": "unknown", "os": "unknown"});
    e["annotations"] = json!({"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": digests[0].to_string()});
    entries.push(e);
    let body = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": entries}),
    )
    .unwrap();
    src.seed_manifest(REPO, Some("v1"), mt::OCI_INDEX, &body);
    let opts = CopyOptions {
        platforms: vec![
            "linux/amd64".parse().unwrap(),
            "linux/aarch64".parse().unwrap(),
        ],
        platform_mode: PlatformMode::Filter,
        ..CopyOptions::default()
    };
    let report = copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    let (_, narrowed) = dst.manifest_bytes(REPO, "v1").unwrap();
    let v: Value = serde_json::from_slice(&narrowed).unwrap();
    let listed: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        vec![
            digests[0].to_string(),
            digests[1].to_string(),
            att.to_string()
        ]
    );
    assert!(dst.manifest_bytes(REPO, &digests[2].to_string()).is_none());
    for d in [&digests[0], &digests[1], &att] {
        assert_eq!(
            src.manifest_bytes(REPO, &d.to_string()),
            dst.manifest_bytes(REPO, &d.to_string())
        );
    }
}

#[tokio::test]
async fn a_platform_filter_that_keeps_every_platform_keeps_the_index_bytes_and_referrers() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let f = fixture(&src, false);
    let opts = CopyOptions {
        platforms: vec![
            "linux/amd64".parse().unwrap(),
            "linux/arm64".parse().unwrap(),
        ],
        platform_mode: PlatformMode::Filter,
        ..CopyOptions::default()
    };
    let report = copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_eq!(report.dropped, 0);
    // Same index digest, with the attestation on it and everything below.
    assert_identical(&src, &dst, &f);
}
