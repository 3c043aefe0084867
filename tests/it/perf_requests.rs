//! Requests a copy costs on the target (issue #12): a new repository is
//! written without per-object checks, each blob and manifest once, the
//! tagged root once by its tag; blobs another target repository holds are
//! mounted; a re-run on the same target checks and writes nothing.

use std::collections::HashSet;
use std::sync::Arc;

use ocimirror::copy::{Copier, CopyOptions, CopyReport};
use ocimirror::oci::{Reference, RepoName, Tag};
use ocimirror::registry::http::{HttpRegistry, HttpSettings};

use crate::support::fixtures::{self, Fixture, Form, sha256};
use crate::support::registry::{Options, TestRegistry};

fn adapter(r: &TestRegistry) -> Arc<HttpRegistry> {
    Arc::new(HttpRegistry::new(&r.host(), HttpSettings::default()).unwrap())
}

fn repo(name: &str) -> RepoName {
    RepoName::new(name).unwrap()
}

fn v1() -> Reference {
    Reference::Tag(Tag::new("v1").unwrap())
}

/// A source holding the fixture image (2 platforms, 3 referrers) in `app`.
async fn source(f: &Fixture) -> TestRegistry {
    let src = TestRegistry::start(Options::default()).await;
    fixtures::seed_registry(&src, "app", f);
    src
}

fn distinct_blobs(f: &Fixture) -> usize {
    f.blobs
        .iter()
        .map(|b| sha256(b))
        .collect::<HashSet<_>>()
        .len()
}

async fn copy(copier: &Copier, to: &str) -> CopyReport {
    let report = copier
        .copy_image(&repo("app"), &v1(), &repo(to), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    report
}

/// The target holds the image exactly: tag, every manifest, every blob.
fn assert_complete(dst: &TestRegistry, to: &str, f: &Fixture) {
    assert_eq!(dst.tags(to), ["v1"]);
    assert_eq!(
        dst.manifest(to, "v1").map(|(_, b)| b),
        Some(f.tags["v1"].bytes.clone())
    );
    for m in &f.manifests {
        assert_eq!(
            dst.manifest(to, &m.digest).map(|(_, b)| b),
            Some(m.bytes.clone())
        );
    }
    for b in &f.blobs {
        assert_eq!(dst.blob(to, &sha256(b)).as_deref(), Some(b.as_slice()));
    }
    assert_eq!(dst.referrers(to, &f.index), std::slice::from_ref(&f.att));
}

#[tokio::test]
async fn a_cold_copy_writes_each_object_once_and_checks_none() {
    let f = fixtures::image(Form::Api, "cold");
    let src = source(&f).await;
    let dst = TestRegistry::start(Options::default()).await;
    let copier = Copier::new(adapter(&src), adapter(&dst), CopyOptions::default());
    let report = copy(&copier, "app").await;
    assert_complete(&dst, "app", &f);
    let log = dst.log();
    // One tag listing tells that the repository is new: no HEADs at all.
    assert_eq!(dst.count("GET", "/tags/list"), 1, "{log:#?}");
    assert_eq!(dst.count("HEAD", ""), 0, "{log:#?}");
    // Every blob once: POST + PUT, nothing cancelled.
    let blobs = distinct_blobs(&f);
    assert_eq!(dst.count("POST", "/blobs/uploads/"), blobs, "{log:#?}");
    assert_eq!(dst.count("PUT", "/blobs/uploads/"), blobs, "{log:#?}");
    assert_eq!(dst.count("DELETE", ""), 0, "{log:#?}");
    // Every manifest once; the root only by its tag, not by digest first.
    assert_eq!(
        dst.count("PUT", "/manifests/"),
        f.manifests.len(),
        "{log:#?}"
    );
    assert_eq!(dst.count("PUT", "/manifests/v1"), 1, "{log:#?}");
    assert_eq!(dst.count("PUT", &f.index), 0, "{log:#?}");
    assert_eq!(report.manifests_copied as usize, f.manifests.len());
    assert_eq!(report.tags, 1);
}

#[tokio::test]
async fn a_second_new_repository_mounts_what_the_first_received() {
    let f = fixtures::image(Form::Api, "mount");
    let src = source(&f).await;
    let dst = TestRegistry::start(Options::default()).await;
    let copier = Copier::new(adapter(&src), adapter(&dst), CopyOptions::default());
    copy(&copier, "one").await;
    src.clear_log();
    dst.clear_log();
    let report = copy(&copier, "two").await;
    assert_complete(&dst, "two", &f);
    let log = dst.log();
    // The mount is the only blob request: no HEAD, no upload, no blob read.
    let blobs = distinct_blobs(&f);
    assert_eq!(report.blobs_mounted as usize, blobs, "{report}");
    let mounts = log
        .iter()
        .filter(|r| r.method == "POST" && r.status == 201)
        .filter(|r| r.query.as_deref().is_some_and(|q| q.contains("mount=")))
        .count();
    assert_eq!(mounts, blobs, "{log:#?}");
    assert_eq!(dst.count("POST", ""), blobs, "{log:#?}");
    assert_eq!(dst.count("PUT", "/blobs/"), 0, "{log:#?}");
    assert_eq!(dst.count("HEAD", ""), 0, "{log:#?}");
    assert_eq!(src.count("GET", "/blobs/"), 0, "{:#?}", src.log());
}

#[tokio::test]
async fn a_rerun_on_the_same_target_writes_nothing_and_repairs_a_moved_tag() {
    let f = fixtures::image(Form::Api, "rerun");
    let src = source(&f).await;
    let dst = TestRegistry::start(Options::default()).await;
    copy(
        &Copier::new(adapter(&src), adapter(&dst), CopyOptions::default()),
        "app",
    )
    .await;
    // The next run (a new copier) finds tags: it checks instead of assuming.
    dst.clear_log();
    let again = Copier::new(adapter(&src), adapter(&dst), CopyOptions::default());
    let report = copy(&again, "app").await;
    assert!(report.wrote_nothing(), "{report}");
    assert_eq!(dst.count("PUT", ""), 0, "{:#?}", dst.log());
    assert_eq!(dst.count("POST", ""), 0, "{:#?}", dst.log());
    assert_complete(&dst, "app", &f);

    // The tag moved to another manifest on the target: put back.
    let other = dst.seed_image("app", "v1", &[b"something else"]);
    assert_ne!(other, f.index);
    dst.clear_log();
    let third = Copier::new(adapter(&src), adapter(&dst), CopyOptions::default());
    copy(&third, "app").await;
    assert_eq!(dst.count("PUT", "/manifests/v1"), 1, "{:#?}", dst.log());
    assert_complete(&dst, "app", &f);
}
