//! Several images, runs and copiers: deduplication, mounts, plans.

use super::*;

#[tokio::test]
async fn a_new_signature_is_the_only_thing_the_next_run_copies() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let f = fixture(&src, false);
    let c = copier(&src, &dst, CopyOptions::default());
    c.copy_image(&repo(), &v1(), &repo(), None).await.unwrap();
    let mut blobs = Vec::new();
    let (sig2, _) = seed_artifact(
        &src,
        SIG,
        "second signature",
        (&f.index, 1, mt::OCI_INDEX),
        &mut blobs,
    );
    dst.clear_log();
    let c = copier(&src, &dst, CopyOptions::default());
    let report = c.copy_image(&repo(), &v1(), &repo(), None).await.unwrap();
    assert_eq!(report.manifests_copied, 1);
    assert_eq!(report.blobs_copied, 1, "only the new signature layer");
    assert_eq!(report.fallback_indexes_written, 1);
    // The referrer manifest, then its fallback index.
    assert_eq!(dst.count(Operation::ManifestPut), 2);
    let mut want = vec![f.att.to_string(), sig2.to_string()];
    want.sort();
    assert_eq!(fallback_entries(&dst, &f.index), Some(want));
}

#[tokio::test]
async fn concurrent_copies_to_one_subject_lose_no_referrer() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let f = fixture(&src, false);
    let mut blobs = Vec::new();
    let (sig2, _) = seed_artifact(
        &src,
        SIG,
        "second signature",
        (&f.index, 1, mt::OCI_INDEX),
        &mut blobs,
    );
    // Two copiers, each taking one of the index's referrers.
    let only = |t: &str| CopyOptions {
        artifact_types_include: vec![t.into()],
        ..CopyOptions::default()
    };
    let a = copier(&src, &dst, only(ATT));
    let b = copier(&src, &dst, only(SIG));
    // The first conditional write of each loses a race once.
    dst.fail_next_puts_with_412(1);
    let (r, t) = (repo(), v1());
    let (ra, rb) = tokio::join!(
        a.copy_image(&r, &t, &r, None),
        b.copy_image(&r, &t, &r, None)
    );
    assert!(ra.unwrap().is_success());
    assert!(rb.unwrap().is_success());
    let mut want = vec![f.att.to_string(), sig2.to_string()];
    want.sort();
    assert_eq!(fallback_entries(&dst, &f.index), Some(want));
}

#[tokio::test]
async fn same_registry_copies_mount_blobs() {
    let reg = Arc::new(MemoryRegistry::new("one", true));
    let f = fixture(&reg, false);
    let other = RepoName::new("team/copy").unwrap();
    let report = Copier::new(reg.clone(), reg.clone(), CopyOptions::default())
        .copy_image(&repo(), &v1(), &other, None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_eq!(report.blobs_mounted, f.blobs.len() as u64);
    assert_eq!(report.blobs_copied, 0);
    assert_eq!(reg.count(Operation::BlobGet), 0);
}

#[tokio::test]
async fn a_blob_already_in_one_target_repository_is_mounted_into_another() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let f = fixture(&src, false);
    let c = copier(&src, &dst, CopyOptions::default());
    let (a, b) = (
        RepoName::new("team/a").unwrap(),
        RepoName::new("team/b").unwrap(),
    );
    let first = c.copy_image(&repo(), &v1(), &a, None).await.unwrap();
    assert_eq!(first.blobs_copied, f.blobs.len() as u64);
    let reads = src.count(Operation::BlobGet);
    let second = c.copy_image(&repo(), &v1(), &b, None).await.unwrap();
    assert!(second.is_success(), "{:?}", second.failures);
    // Every blob is mounted from team/a on the target: nothing read again.
    assert_eq!(second.blobs_mounted, f.blobs.len() as u64);
    assert_eq!(second.blobs_copied, 0);
    assert_eq!(src.count(Operation::BlobGet), reads);
    for d in &f.blobs {
        assert!(dst.has_blob("team/b", d), "{d}");
    }
}

#[tokio::test]
async fn plan_lists_nodes_and_conversions_without_writing() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let f = fixture(&src, false);
    let plan = copier(&src, &dst, CopyOptions::default())
        .plan_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert_eq!(dst.writes(), 0);
    let copies = plan
        .iter()
        .filter(|e| e.action == Action::Copy && e.kind != NodeKind::Blob)
        .count();
    assert_eq!(copies, 6, "{plan:#?}");
    let converts: Vec<_> = plan
        .iter()
        .filter(|e| e.action == Action::Convert)
        .collect();
    assert_eq!(converts.len(), 3);
    assert!(converts.iter().all(|e| e.reason == "api -> fallback-tag"));
    let writes: Vec<_> = plan
        .iter()
        .filter(|e| e.kind == NodeKind::FallbackIndex)
        .collect();
    assert_eq!(writes.len(), 3);
    assert!(plan.iter().any(|e| e.kind == NodeKind::Tag
        && e.action == Action::Write
        && e.digest.as_ref() == Some(&f.index)));
}

#[tokio::test]
async fn one_copier_copies_each_digest_once_across_concurrent_images() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let f = fixture(&src, false);
    let c = copier(&src, &dst, CopyOptions::default());
    let (r, t) = (repo(), v1());
    let (a, b) = tokio::join!(
        c.copy_image(&r, &t, &r, None),
        c.copy_image(&r, &t, &r, None)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_success() && b.is_success());
    assert_eq!(dst.count(Operation::BlobPut), f.blobs.len());
    assert_eq!(a.blobs_copied + b.blobs_copied, f.blobs.len() as u64);
    assert_eq!(a.manifests_copied + b.manifests_copied, 6);
}

#[tokio::test]
async fn copy_by_digest_without_a_tag_writes_no_tag() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let f = fixture(&src, false);
    let report = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &Reference::Digest(f.amd.clone()), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert!(dst.tag_list(REPO).is_empty());
    for d in [&f.amd, &f.sbom, &f.sig] {
        assert!(dst.manifest_bytes(REPO, &d.to_string()).is_some());
    }
    assert!(dst.manifest_bytes(REPO, &f.index.to_string()).is_none());
    let tag = Tag::new("pinned").unwrap();
    copier(&src, &dst, CopyOptions::default())
        .copy_image(
            &repo(),
            &Reference::Digest(f.amd.clone()),
            &repo(),
            Some(&tag),
        )
        .await
        .unwrap();
    assert_eq!(dst.tag_list(REPO), vec!["pinned".to_string()]);
}

#[tokio::test]
async fn one_copier_lists_each_source_repository_once() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let f = fixture(&src, false);
    let (_, amd_b) = src.manifest_bytes(REPO, &f.amd.to_string()).unwrap();
    src.seed_manifest(REPO, Some("amd"), mt::OCI_MANIFEST, &amd_b);
    src.clear_log();
    let c = copier(&src, &dst, CopyOptions::default());
    for t in ["v1", "amd"] {
        let r = c
            .copy_image(
                &repo(),
                &Reference::Tag(Tag::new(t).unwrap()),
                &repo(),
                None,
            )
            .await
            .unwrap();
        assert!(r.is_success());
    }
    assert_eq!(src.count(Operation::TagList), 1);
    assert_eq!(
        dst.tag_list(REPO),
        vec!["amd".to_string(), "v1".to_string()]
    );
}
