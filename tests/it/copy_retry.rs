//! A blob transfer cut short or corrupted in transit is restarted from a
//! fresh source read within the same copy (a streamed upload cannot be
//! replayed by the HTTP layer), and gives up after two restarts. A manifest
//! that arrives corrupted is read again, also twice at most.

use std::sync::Arc;

use ocimirror::copy::{Copier, CopyError, CopyOptions, CopyReport};
use ocimirror::oci::{Reference, RepoName, Tag};
use ocimirror::registry::http::{HttpRegistry, HttpSettings};

use crate::support::fixtures::sha256;
use crate::support::registry::{Fault, FaultKind, Options, TestRegistry};

fn adapter(r: &TestRegistry) -> Arc<HttpRegistry> {
    Arc::new(HttpRegistry::new(&r.host(), HttpSettings::default()).unwrap())
}

/// Copies an image whose layer GET meets `faults` one after the other.
async fn copy_with_broken_reads(faults: &[FaultKind]) -> (CopyReport, TestRegistry, TestRegistry) {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let layer = vec![7u8; 256 * 1024];
    src.seed_image("app", "v1", &[&layer]);
    for kind in faults {
        src.push_fault(Fault {
            method: Some("GET".into()),
            path_contains: format!("/blobs/{}", sha256(&layer)),
            kind: kind.clone(),
            times: 1,
        });
    }
    let repo = RepoName::new("app").unwrap();
    let report = Copier::new(adapter(&src), adapter(&dst), CopyOptions::default())
        .copy_image(&repo, &Reference::Tag(Tag::new("v1").unwrap()), &repo, None)
        .await
        .unwrap();
    (report, src, dst)
}

#[tokio::test]
async fn broken_blob_reads_are_restarted_within_one_copy() {
    let (report, src, dst) =
        copy_with_broken_reads(&[FaultKind::TruncatedBody, FaultKind::WrongBytes]).await;
    assert!(report.is_success(), "{:?}", report.failures);
    let layer = vec![7u8; 256 * 1024];
    let digest = sha256(&layer);
    assert_eq!(dst.blob("app", &digest).as_deref(), Some(layer.as_slice()));
    // Two broken reads and one good one.
    assert_eq!(src.count("GET", &format!("/blobs/{digest}")), 3);
    assert_eq!(src.pending_faults(), 0);
    assert_eq!(dst.open_uploads(), 0);
    assert_eq!(dst.tags("app"), ["v1"]);
}

#[tokio::test]
async fn a_blob_that_keeps_breaking_fails_its_image_after_two_restarts() {
    // A cut body is resumed inside the adapter; only bytes that arrive
    // wrong cost the copier a restart.
    let (report, src, dst) = copy_with_broken_reads(&[
        FaultKind::WrongBytes,
        FaultKind::WrongBytes,
        FaultKind::WrongBytes,
    ])
    .await;
    assert!(!report.is_success());
    let digest = sha256(&vec![7u8; 256 * 1024]);
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.to_string().contains(&digest)),
        "{:?}",
        report.failures
    );
    // The source sent wrong bytes: said as the source's failure, not as
    // the upload it was feeding.
    let said = report
        .failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        said.contains("source: read blob") && said.contains("digest mismatch"),
        "{said}"
    );
    assert!(!said.contains("upload blob"), "{said}");
    assert_eq!(src.count("GET", &format!("/blobs/{digest}")), 3);
    assert_eq!(dst.blob("app", &digest), None);
    assert!(dst.tags("app").is_empty(), "no tag on incomplete content");
}

/// Copies a seeded image whose manifest GETs (by tag or digest) meet
/// `faults` one after the other.
async fn copy_with_broken_manifests(
    faults: &[FaultKind],
) -> (Result<CopyReport, CopyError>, TestRegistry, String) {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let digest = src.seed_image("app", "v1", &[b"layer"]);
    for kind in faults {
        src.push_fault(Fault {
            method: Some("GET".into()),
            path_contains: "/manifests/".into(),
            kind: kind.clone(),
            times: 1,
        });
    }
    let repo = RepoName::new("app").unwrap();
    let report = Copier::new(adapter(&src), adapter(&dst), CopyOptions::default())
        .copy_image(&repo, &Reference::Tag(Tag::new("v1").unwrap()), &repo, None)
        .await;
    assert_eq!(src.pending_faults(), 0, "every fault was met");
    (report, dst, digest)
}

#[tokio::test]
async fn corrupted_manifest_reads_are_retried_within_one_copy() {
    let (report, dst, digest) =
        copy_with_broken_manifests(&[FaultKind::WrongBytes, FaultKind::WrongBytes]).await;
    let report = report.unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert!(dst.manifest("app", &digest).is_some());
    assert_eq!(dst.tags("app"), ["v1"]);
}

#[tokio::test]
async fn a_manifest_that_keeps_arriving_corrupted_fails_its_image() {
    let (result, dst, digest) = copy_with_broken_manifests(&[
        FaultKind::WrongBytes,
        FaultKind::WrongBytes,
        FaultKind::WrongBytes,
    ])
    .await;
    // The root manifest is unusable: the copy fails, naming the registry
    // read, the repository and the digest the bytes should have had.
    let message = result.unwrap_err().to_string();
    assert!(message.contains(&digest), "{message}");
    assert!(message.contains("app"), "{message}");
    assert!(dst.tags("app").is_empty(), "no tag on incomplete content");
    assert!(dst.manifest("app", &digest).is_none());
}
