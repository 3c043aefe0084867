//! A blob transfer cut short or corrupted in transit is restarted from a
//! fresh source read within the same copy (a streamed upload cannot be
//! replayed by the HTTP layer), and gives up after two restarts.

use std::sync::Arc;

use ocimirror::copy::{Copier, CopyOptions, CopyReport};
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
    let (report, src, dst) = copy_with_broken_reads(&[
        FaultKind::TruncatedBody,
        FaultKind::ResetMidBody,
        FaultKind::WrongBytes,
    ])
    .await;
    assert!(!report.is_success());
    let digest = sha256(&vec![7u8; 256 * 1024]);
    assert!(
        report.failures.iter().any(|f| f.contains(&digest)),
        "{:?}",
        report.failures
    );
    assert_eq!(src.count("GET", &format!("/blobs/{digest}")), 3);
    assert_eq!(dst.blob("app", &digest), None);
    assert!(dst.tags("app").is_empty(), "no tag on incomplete content");
}
