//! Engine tests on two in-memory registries: order, digest-exactness,
//! conversion between representations, idempotence, filters and platforms.

use std::sync::Arc;

use serde_json::{Value, json};

use super::memory::MemoryRegistry;
use super::*;
use crate::oci::media_type as mt;
use crate::oci::referrers::{cosign_tag, fallback_tag};
use crate::registry::Operation;

const REPO: &str = "team/app";
const SBOM: &str = "application/spdx+json";
const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const ATT: &str = "application/vnd.in-toto+json";

fn desc(media_type: &str, d: &Digest, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": d.to_string(), "size": size})
}

/// The digests of the fixture image.
struct Fixture {
    index: Digest,
    amd: Digest,
    arm: Digest,
    sbom: Digest,
    sig: Digest,
    att: Digest,
    blobs: Vec<Digest>,
}

fn seed_blob(reg: &MemoryRegistry, bytes: &[u8], blobs: &mut Vec<Digest>) -> (Digest, usize) {
    let d = reg.seed_blob(REPO, bytes);
    if !blobs.contains(&d) {
        blobs.push(d.clone());
    }
    (d, bytes.len())
}

fn seed_image(reg: &MemoryRegistry, name: &str, blobs: &mut Vec<Digest>) -> (Digest, usize) {
    let (c, cs) = seed_blob(
        reg,
        format!(r#"{{"architecture":"{name}"}}"#).as_bytes(),
        blobs,
    );
    let (l, ls) = seed_blob(reg, format!("layer of {name}").as_bytes(), blobs);
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
        "config": desc(mt::OCI_CONFIG, &c, cs),
        "layers": [desc(mt::OCI_LAYER_GZIP, &l, ls)],
    }))
    .unwrap();
    (
        reg.seed_manifest(REPO, None, mt::OCI_MANIFEST, &body),
        body.len(),
    )
}

/// An artifact (empty config) with one layer, referring to `subject`.
fn seed_artifact(
    reg: &MemoryRegistry,
    artifact_type: &str,
    content: &str,
    subject: (&Digest, usize, &str),
    blobs: &mut Vec<Digest>,
) -> (Digest, Vec<u8>) {
    let (e, es) = seed_blob(reg, b"{}", blobs);
    let (l, ls) = seed_blob(reg, content.as_bytes(), blobs);
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST, "artifactType": artifact_type,
        "config": desc(mt::OCI_EMPTY, &e, es),
        "layers": [desc(artifact_type, &l, ls)],
        "subject": desc(subject.2, subject.0, subject.1),
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z", "x.content": content},
    }))
    .unwrap();
    (reg.seed_manifest(REPO, None, mt::OCI_MANIFEST, &body), body)
}

/// Raw fallback index listing `entries` (built here, not by the engine).
fn seed_fallback(reg: &MemoryRegistry, subject: &Digest, entries: &[(&Digest, &[u8], &str)]) {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(d, body, at)| {
            let v: Value = serde_json::from_slice(body).unwrap();
            let mut e = desc(mt::OCI_MANIFEST, d, body.len());
            e["artifactType"] = json!(at);
            if v["annotations"].is_object() {
                e["annotations"] = v["annotations"].clone();
            }
            e
        })
        .collect();
    let body = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": manifests}),
    )
    .unwrap();
    reg.seed_manifest(REPO, Some(&fallback_tag(subject)), mt::OCI_INDEX, &body);
}

/// A 2-platform index tagged `v1` with an SBOM on the amd64 manifest, a
/// signature on the SBOM and an attestation on the index. With `tags`, the
/// source lists them in fallback indexes too (a tag-schema source when its
/// API is off).
fn fixture(reg: &MemoryRegistry, tags: bool) -> Fixture {
    let mut blobs = Vec::new();
    let (amd, amd_size) = seed_image(reg, "amd64", &mut blobs);
    let (arm, arm_size) = seed_image(reg, "arm64", &mut blobs);
    let mut amd_desc = desc(mt::OCI_MANIFEST, &amd, amd_size);
    amd_desc["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let mut arm_desc = desc(mt::OCI_MANIFEST, &arm, arm_size);
    arm_desc["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index_body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": [amd_desc, arm_desc],
    }))
    .unwrap();
    let index = reg.seed_manifest(REPO, Some("v1"), mt::OCI_INDEX, &index_body);
    let (sbom, sbom_body) = seed_artifact(
        reg,
        SBOM,
        "sbom",
        (&amd, amd_size, mt::OCI_MANIFEST),
        &mut blobs,
    );
    let (sig, sig_body) = seed_artifact(
        reg,
        SIG,
        "sig",
        (&sbom, sbom_body.len(), mt::OCI_MANIFEST),
        &mut blobs,
    );
    let (att, att_body) = seed_artifact(
        reg,
        ATT,
        "att",
        (&index, index_body.len(), mt::OCI_INDEX),
        &mut blobs,
    );
    if tags {
        seed_fallback(reg, &amd, &[(&sbom, &sbom_body, SBOM)]);
        seed_fallback(reg, &sbom, &[(&sig, &sig_body, SIG)]);
        seed_fallback(reg, &index, &[(&att, &att_body, ATT)]);
    }
    Fixture {
        index,
        amd,
        arm,
        sbom,
        sig,
        att,
        blobs,
    }
}

fn repo() -> RepoName {
    RepoName::new(REPO).unwrap()
}

fn v1() -> Reference {
    Reference::Tag(Tag::new("v1").unwrap())
}

fn copier(src: &Arc<MemoryRegistry>, dst: &Arc<MemoryRegistry>, options: CopyOptions) -> Copier {
    Copier::new(src.clone(), dst.clone(), options)
}

/// Every node of the fixture is on the target with the source's exact bytes.
fn assert_identical(src: &MemoryRegistry, dst: &MemoryRegistry, f: &Fixture) {
    for d in [&f.index, &f.amd, &f.arm, &f.sbom, &f.sig, &f.att] {
        assert_eq!(
            src.manifest_bytes(REPO, &d.to_string()),
            dst.manifest_bytes(REPO, &d.to_string()),
            "manifest {d}"
        );
        assert!(
            dst.manifest_bytes(REPO, &d.to_string()).is_some(),
            "{d} missing"
        );
    }
    for b in &f.blobs {
        assert!(dst.has_blob(REPO, b), "blob {b} missing");
    }
    assert_eq!(
        dst.manifest_bytes(REPO, "v1")
            .map(|(_, b)| Digest::sha256(&b)),
        Some(f.index.clone())
    );
}

/// Digests listed in the target's fallback index for `subject`.
fn fallback_entries(reg: &MemoryRegistry, subject: &Digest) -> Option<Vec<String>> {
    let (mt_, bytes) = reg.manifest_bytes(REPO, &fallback_tag(subject))?;
    assert_eq!(mt_, mt::OCI_INDEX);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let mut out: Vec<String> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    Some(out)
}

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
    assert!(
        report.failures[0].contains("not an OCI image index"),
        "{}",
        report.failures[0]
    );
    assert!(report.failures[0].contains(&fallback_tag(&f.amd)));
    // Everything else still arrived.
    assert!(dst.manifest_bytes(REPO, "v1").is_some());
    assert!(dst.manifest_bytes(REPO, &f.att.to_string()).is_some());
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
    assert!(converts.iter().all(|e| e.reason == "api → fallback-tag"));
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
    assert!(
        report
            .failures
            .iter()
            .any(|e| e.contains(&big_d.to_string()) && e.contains("over the"))
    );
    assert!(
        report
            .failures
            .iter()
            .any(|e| e.contains(&f.sbom.to_string()) && e.contains("entries"))
    );
    // Everything else arrived: the image, the SBOM and the attestation.
    for d in [&f.index, &f.amd, &f.arm, &f.sbom, &f.att] {
        assert!(dst.manifest_bytes(REPO, &d.to_string()).is_some(), "{d}");
    }
    assert!(dst.manifest_bytes(REPO, &f.sig.to_string()).is_none());
}

#[tokio::test]
async fn api_target_mode_never_writes_fallback_tags_and_tags_mode_always_does() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let f = fixture(&src, false);
    let dst = Arc::new(MemoryRegistry::new("dst", false));
    let opts = CopyOptions {
        target_referrers: PublishMode::Api,
        ..CopyOptions::default()
    };
    let r = copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(r.is_success());
    assert_eq!(dst.tag_list(REPO), vec!["v1".to_string()]);
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let opts = CopyOptions {
        target_referrers: PublishMode::Tags,
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
        source_referrers: DiscoveryMode::Api,
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
    assert!(
        r.failures[0].contains("has no referrers API"),
        "{}",
        r.failures[0]
    );
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
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert!(
        report.failures[0].contains("target"),
        "{}",
        report.failures[0]
    );
    assert!(
        report.failures[0].contains("not an OCI image index"),
        "{}",
        report.failures[0]
    );
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
