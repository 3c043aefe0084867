//! Tag lists, the catalog and referrers.

use super::*;

// ---------- tags, catalog, referrers ----------

#[tokio::test]
async fn tags_and_catalog_follow_link_pages() {
    let tr = TestRegistry::start(Options {
        tag_page_size: Some(2),
        ..Options::default()
    })
    .await;
    let r = client(&tr);
    let name = repo("app");
    let m = push_image(&r, &name, "t").await;
    for t in ["a", "b", "c", "d", "e"] {
        r.manifest_put(&name, &tag(t), &m, Precondition::None)
            .await
            .unwrap();
    }
    tr.clear_log();
    let mut tags = r.tags(&name).await.unwrap();
    tags.sort();
    assert_eq!(tags, ["a", "b", "c", "d", "e"]);
    assert_eq!(tr.count("GET", "/tags/list"), 3);
    let e = r.tags(&repo("absent")).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_names(&e, &tr, "absent", Operation::TagList, "");

    push_image(&r, &repo("other"), "o").await;
    let mut repos = r.catalog().await.unwrap();
    repos.sort();
    assert_eq!(repos, ["app", "other"]);
}

#[tokio::test]
async fn referrers_api_pages_and_support_detection() {
    let tr = TestRegistry::start(Options {
        referrers_page_size: Some(2),
        ..Options::default()
    })
    .await;
    let r = client(&tr);
    let name = repo("app");
    let subject = push_image(&r, &name, "subj").await;
    let mut expected = Vec::new();
    for i in 0..5 {
        let cfg = format!("{{\"sig\":{i}}}").into_bytes();
        r.blob_put(&name, &blob_desc(&cfg, OCI_CONFIG), body_of(&cfg, 7))
            .await
            .unwrap();
        let sig = image_manifest(&cfg, &[], Some(&subject.descriptor()));
        r.manifest_put(
            &name,
            &sig.digest().clone().into(),
            &sig,
            Precondition::None,
        )
        .await
        .unwrap();
        expected.push(sig.digest().clone());
    }
    tr.clear_log();
    let got = r
        .referrers_api(&name, subject.digest())
        .await
        .unwrap()
        .unwrap();
    let mut digests: Vec<Digest> = got.iter().map(|d| d.digest.clone()).collect();
    digests.sort_by_key(|d| d.to_string());
    expected.sort_by_key(|d| d.to_string());
    assert_eq!(digests, expected);
    assert!(
        got.iter()
            .all(|d| d.artifact_type.as_deref() == Some("application/vnd.example.sig"))
    );
    assert_eq!(tr.count("GET", "/referrers/"), 3);
    // Unfiltered: no artifactType query.
    assert!(
        tr.log()
            .iter()
            .all(|l| !l.query.clone().unwrap_or_default().contains("artifactType"))
    );
    assert_eq!(
        r.referrers_support(&name).await.unwrap(),
        ReferrersSupport::Supported
    );

    // Fresh client, unknown subject: empty list, and the probe says Supported.
    let r2 = client(&tr);
    assert_eq!(
        r2.referrers_api(&name, &Digest::sha256(b"nothing"))
            .await
            .unwrap(),
        Some(vec![])
    );
    let r3 = client(&tr);
    assert_eq!(
        r3.referrers_support(&name).await.unwrap(),
        ReferrersSupport::Supported
    );
}

#[tokio::test]
async fn referrers_unsupported_missing_repo_and_override() {
    let tr = TestRegistry::start(Options {
        referrers_api: false,
        ..Options::default()
    })
    .await;
    let r = client(&tr);
    let name = repo("app");
    let subject = push_image(&r, &name, "u").await;
    assert_eq!(
        r.referrers_api(&name, subject.digest()).await.unwrap(),
        None
    );
    assert_eq!(
        r.referrers_support(&name).await.unwrap(),
        ReferrersSupport::Unsupported
    );
    tr.clear_log();
    // Cached: no more requests.
    assert_eq!(
        r.referrers_api(&name, subject.digest()).await.unwrap(),
        None
    );
    assert_eq!(tr.count("GET", "/referrers/"), 0);

    // With the API on, a missing repository answers 404 NAME_UNKNOWN: an
    // error when listing; no verdict is cached, so the next call asks again.
    let tr2 = TestRegistry::start(Options::default()).await;
    let r2 = client(&tr2);
    let missing = repo("missing/repo");
    assert!(r2.referrers_api(&missing, subject.digest()).await.is_err());
    assert_eq!(
        r2.referrers_support(&missing).await.unwrap(),
        ReferrersSupport::Unknown
    );
    assert_eq!(tr2.count("GET", "/referrers/"), 2);

    // The override wins without a request.
    let r3 = client_with(&tr2, |s| s.referrers = Some(ReferrersSupport::Unsupported));
    tr2.clear_log();
    assert_eq!(
        r3.referrers_support(&name).await.unwrap(),
        ReferrersSupport::Unsupported
    );
    assert_eq!(
        r3.referrers_api(&name, subject.digest()).await.unwrap(),
        None
    );
    assert_eq!(tr2.count("GET", "/referrers/"), 0);
}
