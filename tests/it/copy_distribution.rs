//! The copy engine into a real CNCF distribution 2.8 (no referrers API: the
//! tag schema), from every source representation. Assertions use raw HTTP.

use ocimirror::copy::{Copier, CopyOptions};
use ocimirror::oci::{Reference, RepoName, Tag};
use ocimirror::registry::http::{HttpRegistry, HttpSettings};
use std::sync::Arc;

use crate::copy_matrix::{Src, form, source};
use crate::support::distribution::Distribution;
use crate::support::fixtures::{self, Fixture, SIG, fallback_tag, index_digests};

const REPO: &str = "mirror/app";
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

async fn get(url: String, accept: bool) -> Option<Vec<u8>> {
    let mut req = reqwest::Client::new().get(url);
    if accept {
        req = req.header("Accept", ACCEPT);
    }
    let resp = req.send().await.unwrap();
    if resp.status() == 404 {
        return None;
    }
    assert!(resp.status().is_success(), "{}", resp.status());
    Some(resp.bytes().await.unwrap().to_vec())
}

async fn manifest(d: &Distribution, reference: &str) -> Option<Vec<u8>> {
    get(
        format!("http://{}/v2/{REPO}/manifests/{reference}", d.host()),
        true,
    )
    .await
}

async fn tags(d: &Distribution) -> Vec<String> {
    let body = get(format!("http://{}/v2/{REPO}/tags/list", d.host()), false)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut t: Vec<String> = v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    t.sort();
    t
}

async fn assert_copied(d: &Distribution, f: &Fixture) {
    for m in &f.manifests {
        assert_eq!(
            manifest(d, &m.digest).await.as_deref(),
            Some(&m.bytes[..]),
            "manifest {}",
            m.digest
        );
    }
    for b in &f.blobs {
        let digest = fixtures::sha256(b);
        let got = get(
            format!("http://{}/v2/{REPO}/blobs/{digest}", d.host()),
            false,
        )
        .await;
        assert_eq!(got.as_deref(), Some(&b[..]), "blob {digest}");
    }
    assert_eq!(
        manifest(d, "v1").await.map(|b| fixtures::sha256(&b)),
        Some(f.index.clone())
    );
    for (tag, digest) in &f.cosign_tags {
        assert_eq!(
            manifest(d, tag)
                .await
                .map(|b| fixtures::sha256(&b))
                .as_ref(),
            Some(digest)
        );
    }
    let mut subjects: Vec<&String> = f.edges.iter().map(|e| &e.subject).collect();
    subjects.dedup();
    for subject in subjects {
        let mut want: Vec<String> = f
            .edges
            .iter()
            .filter(|e| &e.subject == subject)
            .map(|e| e.referrer.clone())
            .collect();
        want.sort();
        let bytes = manifest(d, &fallback_tag(subject))
            .await
            .unwrap_or_else(|| panic!("no fallback index for {subject}"));
        assert_eq!(index_digests(&bytes), want);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for e in v["manifests"].as_array().unwrap() {
            assert_eq!(
                e,
                &f.manifest(e["digest"].as_str().unwrap()).referrer_desc()
            );
        }
    }
    let expected_tags: usize = 1 + f.cosign_tags.len() + {
        let mut s: Vec<&String> = f.edges.iter().map(|e| &e.subject).collect();
        s.sort();
        s.dedup();
        s.len()
    };
    assert_eq!(tags(d).await.len(), expected_tags, "{:?}", tags(d).await);
}

async fn cell(src_kind: Src) {
    let form = form(src_kind);
    let mut f = fixtures::image(form, "distribution");
    let src = source(src_kind, &f).await;
    let dist = Distribution::start();
    let target = Arc::new(HttpRegistry::new(&dist.host(), HttpSettings::default()).unwrap());
    let copier = Copier::new(src.adapter(), target.clone(), CopyOptions::default());
    let dst_repo = RepoName::new(REPO).unwrap();
    let v1 = Reference::Tag(Tag::new("v1").unwrap());
    let report = copier
        .copy_image(&src.repo(), &v1, &dst_repo, None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_copied(&dist, &f).await;

    let again = copier
        .copy_image(&src.repo(), &v1, &dst_repo, None)
        .await
        .unwrap();
    assert!(again.is_success() && again.wrote_nothing(), "{again}");

    let late = f.add_referrer(form, &f.index.clone(), SIG, "late signature", "sig");
    src.seed(&f);
    // The next run: a copier per run.
    let copier = Copier::new(src.adapter(), target, CopyOptions::default());
    let next = copier
        .copy_image(&src.repo(), &v1, &dst_repo, None)
        .await
        .unwrap();
    assert!(next.is_success(), "{:?}", next.failures);
    assert_eq!(next.manifests_copied, 1, "{next}");
    assert_eq!(
        manifest(&dist, &late.digest).await.as_deref(),
        Some(&late.bytes[..])
    );
    assert_copied(&dist, &f).await;
}

#[tokio::test]
async fn api_to_distribution() {
    cell(Src::Api).await;
}

#[tokio::test]
async fn tags_to_distribution() {
    cell(Src::Tags).await;
}

#[tokio::test]
async fn both_to_distribution() {
    cell(Src::Both).await;
}

#[tokio::test]
async fn cosign_to_distribution() {
    cell(Src::Cosign).await;
}

#[tokio::test]
async fn layout_to_distribution() {
    cell(Src::Layout).await;
}

/// distribution ignores `If-Match`: the per-subject lock alone must keep
/// two concurrent copies from losing a referrer.
#[tokio::test]
async fn concurrent_referrers_of_one_subject_into_distribution_lose_neither() {
    let mut f = fixtures::image(fixtures::Form::Api, "dist-race");
    let index = f.index.clone();
    let sig = f.add_referrer(fixtures::Form::Api, &index, SIG, "index signature", "");
    let src = source(Src::Api, &f).await;
    let dist = Distribution::start();
    let only = |t: &str| CopyOptions {
        artifact_types_include: vec![t.to_string()],
        ..CopyOptions::default()
    };
    let target = || -> Arc<HttpRegistry> {
        Arc::new(HttpRegistry::new(&dist.host(), HttpSettings::default()).unwrap())
    };
    let a = Copier::new(src.adapter(), target(), only(fixtures::ATT));
    let b = Copier::new(src.adapter(), target(), only(SIG));
    let dst_repo = RepoName::new(REPO).unwrap();
    let v1 = Reference::Tag(Tag::new("v1").unwrap());
    let src_repo = src.repo();
    let (ra, rb) = tokio::join!(
        a.copy_image(&src_repo, &v1, &dst_repo, None),
        b.copy_image(&src_repo, &v1, &dst_repo, None)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(
        ra.is_success() && rb.is_success(),
        "{:?} {:?}",
        ra.failures,
        rb.failures
    );
    let mut want = vec![f.att.clone(), sig.digest.clone()];
    want.sort();
    let bytes = manifest(&dist, &fallback_tag(&index)).await.unwrap();
    assert_eq!(index_digests(&bytes), want);
}
