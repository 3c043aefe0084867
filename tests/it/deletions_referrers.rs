//! Withdrawn referrers (issue #14 item 2) against the test registry: a
//! signature withdrawn at the source leaves the target's fallback index
//! after the grace period (foreign entries kept), or is deleted by digest
//! on a referrers-API target where the job deletes; a referrer someone else
//! pushed is never touched; an emptied referrer listing trips the guard.

use serde_json::Value;

use crate::deletions::{DAY, HOUR, Job, deletes, http};
use crate::support::distribution::Distribution;
use crate::support::fixtures::{OCI_INDEX, fallback_tag};
use crate::support::registry::{Options, TestRegistry};
use crate::sync_jobs::REPO;
use ocimirror::oci::{Digest, Reference, RepoName, Tag};
use ocimirror::registry::Registry;
use ocimirror::sync::DeletionKind;

const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SBOM: &str = "application/spdx+json";

async fn registry(api: bool) -> TestRegistry {
    TestRegistry::start(Options {
        referrers_api: api,
        ..Options::default()
    })
    .await
}

/// Two images `t0`, `t1` on `src`: `t0` with a signature and an SBOM, `t1`
/// with a signature. Returns (t0 digest, t0 signature digest).
fn seed(src: &TestRegistry) -> (String, String) {
    let t0 = src.seed_image(REPO, "t0", &[b"layer 0"]);
    let t1 = src.seed_image(REPO, "t1", &[b"layer 1"]);
    let sig = src.seed_referrer(REPO, &t0, SIG, b"signature of t0");
    src.seed_referrer(REPO, &t0, SBOM, b"sbom of t0");
    src.seed_referrer(REPO, &t1, SIG, b"signature of t1");
    (t0, sig)
}

/// Digests listed by the fallback index of `subject` on `reg`.
fn fallback_entries(reg: &TestRegistry, subject: &str) -> Vec<String> {
    let (_, bytes) = reg.manifest(REPO, &fallback_tag(subject)).unwrap();
    let index: Value = serde_json::from_slice(&bytes).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_withdrawn_signature_leaves_the_fallback_index_after_grace_keeping_foreign_entries() {
    let (src, dst) = (registry(true).await, registry(false).await);
    let (t0, sig) = seed(&src);
    let job = Job::new(&src, &dst, "");
    let first = job.run(false).await;
    assert!(first.is_success(), "{:?}", first.failures);
    assert_eq!(fallback_entries(&dst, &t0).len(), 2);

    // Someone else lists their own referrer in the same fallback index.
    let foreign = dst.seed_referrer(REPO, &t0, SIG, b"someone else's signature");
    let tag = fallback_tag(&t0);
    let (_, bytes) = dst.manifest(REPO, &tag).unwrap();
    let mut index: Value = serde_json::from_slice(&bytes).unwrap();
    let (foreign_type, foreign_bytes) = dst.manifest(REPO, &foreign).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": foreign_type, "digest": foreign, "size": foreign_bytes.len(),
            "artifactType": SIG,
        }));
    dst.put_manifest(REPO, &tag, OCI_INDEX, &serde_json::to_vec(&index).unwrap());

    assert!(
        src.delete_manifest(REPO, &sig),
        "signature revoked at the source"
    );
    job.clock.advance(HOUR);
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    assert!(
        fallback_entries(&dst, &t0).contains(&sig),
        "removed within grace"
    );
    let target = format!("{}/{REPO}@{sig}", dst.host());
    assert_eq!(r.deletions.pending.len(), 1, "{:?}", r.deletions.pending);
    assert_eq!(r.deletions.pending[0].target, target);

    // The plan lists it with its due time.
    job.clock.advance(DAY - HOUR);
    let plan = job.run(true).await;
    let text = ocimirror::cli::jobs::plan_text(std::slice::from_ref(&plan));
    assert!(
        text.contains(&format!(
            "PENDING DELETE {target} (due 2026-12-01 07:00:00 UTC; absent from the source since 2026-11-30 07:00:00 UTC)"
        )),
        "{text}"
    );
    assert!(fallback_entries(&dst, &t0).contains(&sig));

    job.clock.advance(HOUR);
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    assert_eq!(r.deletions.deleted.len(), 1);
    assert_eq!(r.deletions.deleted[0].kind, DeletionKind::Referrer);
    let entries = fallback_entries(&dst, &t0);
    assert!(!entries.contains(&sig), "{entries:?}");
    assert!(
        entries.contains(&foreign),
        "foreign entry kept: {entries:?}"
    );
    assert_eq!(entries.len(), 2, "the SBOM and the foreign signature stay");
    // The job does not delete: the manifest itself stays.
    assert!(dst.manifest(REPO, &sig).is_some());
    assert!(deletes(&dst).is_empty());
    assert!(r.deletions.pending.is_empty());
}

#[tokio::test]
async fn a_withdrawn_referrer_is_deleted_by_digest_on_an_api_target_and_a_foreign_one_never() {
    let (src, dst) = (registry(true).await, registry(true).await);
    let (t0, sig) = seed(&src);
    let job = Job::new(&src, &dst, "[jobs.delete]\nenabled = true\n");
    let first = job.run(false).await;
    assert!(first.is_success(), "{:?}", first.failures);
    assert!(dst.referrers(REPO, &t0).contains(&sig));
    // Pushed to the target by someone else: absent from the source, never ours.
    let foreign = dst.seed_referrer(REPO, &t0, SIG, b"someone else's signature");

    assert!(src.delete_manifest(REPO, &sig));
    job.clock.advance(HOUR);
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    assert!(
        dst.referrers(REPO, &t0).contains(&sig),
        "removed within grace"
    );
    assert_eq!(r.deletions.pending.len(), 1, "{:?}", r.deletions.pending);

    job.clock.advance(DAY);
    dst.clear_log();
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    assert_eq!(r.deletions.deleted.len(), 1);
    assert_eq!(deletes(&dst), [format!("/v2/{REPO}/manifests/{sig}")]);
    let left = dst.referrers(REPO, &t0);
    assert!(!left.contains(&sig), "{left:?}");
    assert!(left.contains(&foreign), "foreign referrer kept: {left:?}");
    assert!(dst.manifest(REPO, &foreign).is_some());
    assert_eq!(left.len(), 2, "the SBOM and the foreign signature stay");
}

#[tokio::test]
async fn an_emptied_referrer_listing_trips_the_guard_and_removes_nothing() {
    let (src, dst) = (registry(true).await, registry(true).await);
    let (t0, _) = seed(&src);
    let job = Job::new(&src, &dst, "[jobs.delete]\nenabled = true\n");
    job.run(false).await;
    let t1 = src.manifest(REPO, "t1").map(|(_, b)| b).unwrap();
    let t1 = crate::support::fixtures::sha256(&t1);
    for subject in [&t0, &t1] {
        for r in src.referrers(REPO, subject) {
            assert!(src.unlist_referrer(REPO, subject, &r));
        }
    }
    for advance in [HOUR, 2 * DAY] {
        job.clock.advance(advance);
        dst.clear_log();
        let r = job.run(false).await;
        assert!(!r.is_success());
        let why = r.deletions.guard_tripped.clone().unwrap();
        assert!(why.contains("lists none of the 3 referrers"), "{why}");
        assert!(r.failures.iter().any(|f| f.kind == "deletion_guard"));
        assert!(deletes(&dst).is_empty());
    }
    assert_eq!(dst.referrers(REPO, &t0).len(), 2);
    assert_eq!(dst.referrers(REPO, &t1).len(), 1);
}

#[tokio::test]
async fn on_distribution_a_withdrawn_signature_leaves_the_fallback_index_and_is_deleted() {
    let src = registry(true).await;
    let dist = Distribution::start();
    let (t0, sig) = seed(&src);
    let job = Job::for_hosts(&src.host(), &dist.host(), "[jobs.delete]\nenabled = true\n");
    let first = job.run(false).await;
    assert!(first.is_success(), "{:?}", first.failures);
    assert!(src.delete_manifest(REPO, &sig));
    job.clock.advance(HOUR);
    job.run(false).await;
    job.clock.advance(DAY);
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    assert_eq!(r.deletions.deleted.len(), 1, "{:?}", r.deletions);

    let reg = http(&dist.host());
    let repo = RepoName::new(REPO).unwrap();
    let tag = Reference::Tag(Tag::new(&fallback_tag(&t0)).unwrap());
    let index = reg.manifest_get(&repo, &tag).await.unwrap().unwrap();
    let listed: Vec<String> = index
        .child_manifests()
        .iter()
        .map(|d| d.digest.to_string())
        .collect();
    assert_eq!(listed.len(), 1, "only the SBOM stays: {listed:?}");
    assert!(!listed.contains(&sig));
    let sig: Digest = sig.parse().unwrap();
    let by_digest = Reference::Digest(sig);
    assert!(
        reg.manifest_head(&repo, &by_digest)
            .await
            .unwrap()
            .is_none()
    );
}
