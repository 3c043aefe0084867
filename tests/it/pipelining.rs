//! Latency hiding in a cold copy (issue #12 item 4): a node's referrer
//! listing is asked together with its manifest, and a sync walks more
//! images at once than it writes. Every source request is delayed, so that
//! requests sent together arrive together and dependent ones a delay apart;
//! the assertions read the source's log (what arrived before what), never
//! the run's duration.

use std::sync::Arc;
use std::time::Duration;

use ocimirror::copy::{Copier, CopyOptions};
use ocimirror::oci::{Reference, RepoName, Tag};
use ocimirror::registry::http::{HttpRegistry, HttpSettings};
use ocimirror::sync::SyncOptions;

use crate::support::fixtures::{self, Form};
use crate::support::registry::{LoggedRequest, Options, TestRegistry};
use crate::sync_jobs::{REPO, assert_mirrored, ok, run_once, seed_tags, write_config};

/// Added to every source request: long enough that a loaded machine does
/// not blur "sent together" and "sent after the answer".
const DELAY: Duration = Duration::from_millis(300);

async fn slow_source() -> TestRegistry {
    TestRegistry::start(Options {
        latency: DELAY,
        ..Options::default()
    })
    .await
}

fn adapter(r: &TestRegistry) -> Arc<HttpRegistry> {
    Arc::new(HttpRegistry::new(&r.host(), HttpSettings::default()).unwrap())
}

/// The first request of `method` whose path ends with `suffix`.
fn arrival<'a>(log: &'a [LoggedRequest], method: &str, suffix: &str) -> &'a LoggedRequest {
    log.iter()
        .find(|r| r.method == method && r.path.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {method} …{suffix} in {log:#?}"))
}

#[tokio::test]
async fn each_manifest_is_read_together_with_its_referrer_listing() {
    let f = fixtures::image(Form::Api, "pipelined");
    let src = slow_source().await;
    fixtures::seed_registry(&src, "app", &f);
    let dst = TestRegistry::start(Options::default()).await;
    let copier = Copier::new(adapter(&src), adapter(&dst), CopyOptions::default());
    let app = RepoName::new("app").unwrap();
    let report = copier
        .copy_image(&app, &Reference::Tag(Tag::new("v1").unwrap()), &app, None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_eq!(dst.tags("app"), ["v1"]);

    let log = src.log();
    // Every manifest read by digest (platforms, attestation, SBOM, its
    // signature): its listing was sent before the manifest's answer came
    // back (an answer takes DELAY), not after it.
    for d in [&f.amd, &f.arm, &f.att, &f.sbom, &f.sig] {
        let get = arrival(&log, "GET", &format!("/manifests/{d}"));
        let listing = arrival(&log, "GET", &format!("/referrers/{d}"));
        let apart = if listing.at > get.at {
            listing.at - get.at
        } else {
            get.at - listing.at
        };
        assert!(
            apart < DELAY / 2,
            "listing of {d} sent {apart:?} away from its manifest read: {log:#?}"
        );
    }
}

#[tokio::test]
async fn a_sync_walks_every_image_before_it_reads_the_first_blob() {
    let src = slow_source().await;
    let dst = TestRegistry::start(Options::default()).await;
    let images = seed_tags(&src, REPO, "walk", 6);
    let dir = tempfile::tempdir().unwrap();
    // Two images written at a time: the walks must not wait for them.
    let path = write_config(dir.path(), &src, &dst, "", "concurrency = 2");
    let config = ocimirror::config::load(&path).unwrap();
    let report = ok(run_once(&config, &SyncOptions::default()).await);
    assert_eq!(report.counts.images_copied, 6);
    for (_, f) in &images {
        assert_mirrored(&dst, REPO, f);
    }

    let mut log = src.log();
    log.sort_by_key(|r| r.at);
    let first_blob = log
        .iter()
        .position(|r| r.method == "GET" && r.path.contains("/blobs/"))
        .expect("blobs were read");
    // Each image's walk starts by reading its root by digest; all six
    // started before any image's blob was read (with the walk inside the
    // copy slot, only two would have).
    let walked_first = images
        .iter()
        .filter(|(_, f)| {
            log[..first_blob]
                .iter()
                .any(|r| r.method == "GET" && r.path.ends_with(&format!("/manifests/{}", f.index)))
        })
        .count();
    assert_eq!(walked_first, images.len(), "{log:#?}");
    // More source requests in flight than the job's concurrency.
    assert!(src.max_concurrent_requests() > 2 * 2);
}
