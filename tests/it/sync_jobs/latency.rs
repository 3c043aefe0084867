//! Latency to the source does not add up: an unchanged image is checked in
//! one round trip (its tag and its referrers asked together), many images
//! are checked at once whatever the job's copy concurrency, and a catalog's
//! repositories are listed at once. Asserted through the source's peak of
//! requests in flight, with every request delayed so that overlapping ones
//! are seen together.

use std::time::Duration;

use ocimirror::sync::SyncOptions;

use super::{REPO, ok, run_once, seed_tags, write_config};
use crate::support::registry::{Fault, FaultKind, Options, TestRegistry};

/// Every request to `reg` from now on waits 300 ms before it is handled:
/// long enough that requests sent together are seen together even on a
/// loaded machine.
fn delay_every_request(reg: &TestRegistry) {
    reg.push_fault(Fault {
        method: None,
        path_contains: "/v2/".into(),
        kind: FaultKind::Delay(Duration::from_millis(300)),
        times: usize::MAX,
    });
    reg.reset_max_concurrent_requests();
}

fn options() -> SyncOptions {
    SyncOptions {
        verify_after: Duration::from_secs(3600),
        ..SyncOptions::default()
    }
}

#[tokio::test]
async fn an_unchanged_image_is_checked_in_one_round_trip() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    seed_tags(&src, REPO, "one", 1);
    let dir = tempfile::tempdir().unwrap();
    let config = ocimirror::config::load(&write_config(dir.path(), &src, &dst, "", "")).unwrap();
    assert_eq!(
        ok(run_once(&config, &options()).await).counts.images_copied,
        1
    );

    src.clear_log();
    delay_every_request(&src);
    let again = ok(run_once(&config, &options()).await);
    assert_eq!(again.counts.images_skipped, 1);
    // The same two requests as ever, the tag's HEAD and the referrers
    // listing of the digest the checkpoint names, now in flight together.
    let log = src.log();
    let heads = log.iter().filter(|r| r.method == "HEAD").count();
    let referrers = log
        .iter()
        .filter(|r| r.path.contains("/referrers/"))
        .count();
    assert_eq!((heads, referrers), (1, 1), "{log:?}");
    assert_eq!(src.max_concurrent_requests(), 2);
}

#[tokio::test]
async fn unchanged_images_are_checked_at_once_beyond_the_copy_concurrency() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let n = 12;
    seed_tags(&src, REPO, "many", n);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &src, &dst, "", "concurrency = 2");
    let config = ocimirror::config::load(&path).unwrap();
    assert_eq!(
        ok(run_once(&config, &options()).await).counts.images_copied,
        n as u64
    );

    delay_every_request(&src);
    let again = ok(run_once(&config, &options()).await);
    assert_eq!(again.counts.images_skipped, n as u64);
    // Every image's two requests at once: not 2 images (4 requests) at a time.
    assert_eq!(src.max_concurrent_requests(), 2 * n);
}

#[tokio::test]
async fn a_catalogs_repositories_are_listed_at_once() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let repos = 10;
    for i in 0..repos {
        seed_tags(&src, &format!("team/app{i}"), "cat", 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"version = 1
[state]
database = "{db}"

[[jobs]]
name = "catalog"
source = {{ registry = "{src}" }}
target = {{ registry = "{dst}" }}
# Nothing selected: the run only lists, so the peak is the listings'.
tags = {{ allow = ["^none$"] }}
schedule = {{ interval = "1h", jitter = "0s" }}
"#,
        db = dir.path().join("state.db").display(),
        src = src.host(),
        dst = dst.host(),
    );
    let path = dir.path().join("ocimirror.toml");
    std::fs::write(&path, text).unwrap();
    let config = ocimirror::config::load(&path).unwrap();

    delay_every_request(&src);
    let report = ok(run_once(&config, &options()).await);
    assert_eq!(report.counts.images_copied, 0);
    let lists = src
        .log()
        .iter()
        .filter(|r| r.path.ends_with("/tags/list"))
        .count();
    assert_eq!(lists, repos);
    assert_eq!(src.max_concurrent_requests(), repos);
}
