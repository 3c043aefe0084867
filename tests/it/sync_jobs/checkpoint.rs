//! What the checkpoint saves, and that it is only a cache: a deleted
//! database costs reads, a target changed behind our back is repaired once
//! `state.verify_after` has passed.

use std::time::{Duration, Instant};

use ocimirror::sync::SyncOptions;

use super::{REPO, assert_mirrored, ok, run_once, seed_tags, write_config, writes};
use crate::support::registry::{Options, TestRegistry};

async fn registries() -> (TestRegistry, TestRegistry) {
    (
        TestRegistry::start(Options::default()).await,
        TestRegistry::start(Options::default()).await,
    )
}

fn options(config: &ocimirror::config::Config) -> SyncOptions {
    SyncOptions {
        verify_after: config.state.verify_after,
        ..SyncOptions::default()
    }
}

/// Syncs `n` tags, then re-syncs with nothing changed; asserts the no-op's
/// exact requests and returns them with its wall time.
async fn noop_resync(n: usize) -> (usize, usize, Duration) {
    let (src, dst) = registries().await;
    let images = seed_tags(&src, REPO, "cost", n);
    let dir = tempfile::tempdir().unwrap();
    let config = ocimirror::config::load(&write_config(dir.path(), &src, &dst, "", "")).unwrap();

    let first = ok(run_once(&config, &options(&config)).await);
    assert_eq!(first.counts.images_copied, n as u64);
    for (_, f) in &images {
        assert_mirrored(&dst, REPO, f);
    }

    src.clear_log();
    dst.clear_log();
    let started = Instant::now();
    let second = ok(run_once(&config, &options(&config)).await);
    let elapsed = started.elapsed();
    assert_eq!(second.counts.images_skipped, n as u64);
    assert_eq!(second.counts.images_copied, 0);

    // Nothing at all on the target.
    let target: Vec<String> = dst
        .log()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(target.is_empty(), "target requests on a no-op: {target:?}");
    // On the source: the ping, one tag list, and per tag one manifest HEAD
    // and one referrers GET — 2 + 2n.
    let log = src.log();
    let count = |method: &str, part: &str| {
        log.iter()
            .filter(|r| r.method == method && r.path.contains(part))
            .count()
    };
    assert_eq!(count("GET", "/tags/list"), 1, "{log:#?}");
    assert_eq!(count("HEAD", "/manifests/"), n, "{log:#?}");
    assert_eq!(count("GET", "/referrers/"), n, "{log:#?}");
    assert_eq!(
        log.iter().filter(|r| r.path == "/v2/").count(),
        1,
        "{log:#?}"
    );
    assert_eq!(log.len(), 2 + 2 * n, "{log:#?}");
    (log.len(), target.len(), elapsed)
}

#[tokio::test]
async fn an_unchanged_tag_costs_one_head_and_one_referrers_check() {
    let (source, target, _) = noop_resync(20).await;
    assert_eq!((source, target), (42, 0));
}

/// The figure for the closing note (timing reported, not asserted):
/// `cargo test --test it sync_jobs::checkpoint::noop_resync_of_200_tags -- --nocapture`.
#[tokio::test]
async fn noop_resync_of_200_tags() {
    let (source, target, elapsed) = noop_resync(200).await;
    assert_eq!((source, target), (402, 0));
    println!(
        "no-op re-sync of 200 tags: {source} source requests, {target} target requests, {elapsed:?}"
    );
}

#[tokio::test]
async fn a_deleted_database_costs_reads_only() {
    let (src, dst) = registries().await;
    let images = seed_tags(&src, REPO, "db", 3);
    let dir = tempfile::tempdir().unwrap();
    let config = ocimirror::config::load(&write_config(dir.path(), &src, &dst, "", "")).unwrap();
    ok(run_once(&config, &options(&config)).await);
    let before: Vec<_> = images
        .iter()
        .flat_map(|(_, f)| f.manifests.iter())
        .map(|m| dst.manifest(REPO, &m.digest))
        .collect();
    let tags = dst.tags(REPO);

    let db = &config.state.database;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
    assert!(!db.exists());
    src.clear_log();
    dst.clear_log();
    let again = ok(run_once(&config, &options(&config)).await);
    // Every item took the full path: verified against the target, which had
    // everything, so nothing was written and nothing counted as copied data.
    assert_eq!(writes(&dst), Vec::<String>::new());
    assert!(!dst.log().is_empty(), "the target was not even checked");
    println!(
        "3 tags without a database: {} source requests, {} target requests (HEAD {}, GET {}), 0 writes",
        src.log().len(),
        dst.log().len(),
        dst.count("HEAD", ""),
        dst.count("GET", "")
    );
    assert_eq!(again.counts.blobs_copied, 0);
    assert_eq!(again.counts.bytes_copied, 0);
    let after: Vec<_> = images
        .iter()
        .flat_map(|(_, f)| f.manifests.iter())
        .map(|m| dst.manifest(REPO, &m.digest))
        .collect();
    assert_eq!(before, after);
    assert_eq!(tags, dst.tags(REPO));
    for (_, f) in &images {
        assert_mirrored(&dst, REPO, f);
    }
    // The database is back: the next run is the cheap one again.
    dst.clear_log();
    let third = ok(run_once(&config, &options(&config)).await);
    assert_eq!(third.counts.images_skipped, 3);
    assert!(dst.log().is_empty());
}

#[tokio::test]
async fn a_tampered_target_is_trusted_until_verify_after_then_repaired() {
    let (src, dst) = registries().await;
    let images = seed_tags(&src, REPO, "tamper", 2);
    let dir = tempfile::tempdir().unwrap();
    // Default verify_after (24h): the checkpoint is trusted.
    let config = ocimirror::config::load(&write_config(dir.path(), &src, &dst, "", "")).unwrap();
    assert_eq!(config.state.verify_after, Duration::from_secs(24 * 3600));
    ok(run_once(&config, &options(&config)).await);

    // Behind ocimirror's back: t0 loses its amd64 manifest, t1 its tag.
    let f0 = &images[0].1;
    let f1 = &images[1].1;
    assert!(dst.delete_manifest(REPO, &f0.amd));
    assert!(dst.delete_tag(REPO, "t1"));

    // Fresh checkpoint: trusted, nothing on the target is looked at, so the
    // damage stays until verify_after has passed (documented behaviour).
    dst.clear_log();
    let trusted = ok(run_once(&config, &options(&config)).await);
    assert_eq!(trusted.counts.images_skipped, 2);
    assert!(dst.log().is_empty());
    assert!(dst.manifest(REPO, &f0.amd).is_none());
    assert!(dst.manifest(REPO, "t1").is_none());

    // state.verify_after = "0s": every item is verified against the target
    // and repaired, byte-identically.
    let path = write_config(dir.path(), &src, &dst, r#"verify_after = "0s""#, "");
    let verify = ocimirror::config::load(&path).unwrap();
    assert_eq!(verify.state.verify_after, Duration::ZERO);
    assert_eq!(verify.state.database, config.state.database);
    let repaired = ok(run_once(&verify, &options(&verify)).await);
    assert_eq!(repaired.counts.images_skipped, 0);
    assert_eq!(repaired.counts.images_copied, 2);
    for (_, f) in &images {
        assert_mirrored(&dst, REPO, f);
    }
    assert_eq!(
        dst.manifest(REPO, &f0.amd).map(|(_, b)| b),
        Some(f0.manifest(&f0.amd).bytes.clone())
    );
    assert_eq!(
        dst.manifest(REPO, "t1").map(|(_, b)| b),
        Some(f1.tags["t1"].bytes.clone())
    );
}

#[tokio::test]
async fn full_ignores_the_checkpoint_and_repairs() {
    let (src, dst) = registries().await;
    let images = seed_tags(&src, REPO, "full", 1);
    let dir = tempfile::tempdir().unwrap();
    let config = ocimirror::config::load(&write_config(dir.path(), &src, &dst, "", "")).unwrap();
    ok(run_once(&config, &options(&config)).await);
    let f = &images[0].1;
    assert!(dst.delete_manifest(REPO, &f.sbom));
    let full = SyncOptions {
        full: true,
        ..options(&config)
    };
    ok(run_once(&config, &full).await);
    assert_mirrored(&dst, REPO, f);
}

#[tokio::test]
async fn two_jobs_sharing_a_registry_share_its_rate_limit() {
    const RATE: usize = 5;
    // governor's `Quota::per_second(r)` allows a burst of r (limits.rs).
    const BURST: usize = RATE;
    let (src, dst) = registries().await;
    let a = seed_tags(&src, "team/a", "rate-a", 1);
    let b = seed_tags(&src, "team/b", "rate-b", 1);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"version = 1
[state]
database = "{db}"

[registries."{dst}"]
requests_per_second = {RATE}

[[jobs]]
name = "a"
source = "{src}/team/a"
target = "{dst}/team/a"

[[jobs]]
name = "b"
source = "{src}/team/b"
target = "{dst}/team/b"
"#,
        db = dir.path().join("state.db").display(),
        src = src.host(),
        dst = dst.host(),
    );
    let path = dir.path().join("ocimirror.toml");
    std::fs::write(&path, text).unwrap();
    let config = ocimirror::config::load(&path).unwrap();

    // Both jobs at once through one syncer, as `serve` runs them.
    let store = ocimirror::store::Store::open(&config.state.database)
        .await
        .unwrap();
    let registries = std::sync::Arc::new(ocimirror::app::registries(&config, None));
    let syncer = ocimirror::sync::Syncer::new(
        &config,
        registries,
        Some(store),
        std::sync::Arc::new(ocimirror::scheduler::SystemClock),
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let opts = options(&config);
    let (ra, rb) = tokio::join!(
        syncer.run_job(&config.jobs[0], &opts, &cancel),
        syncer.run_job(&config.jobs[1], &opts, &cancel)
    );
    for r in [ra, rb] {
        assert!(
            r.fatal.is_none() && r.failures.is_empty(),
            "{:?}",
            r.failures
        );
    }
    assert_mirrored(&dst, "team/a", &a[0].1);
    assert_mirrored(&dst, "team/b", &b[0].1);

    let log = dst.log();
    let mut times: Vec<Instant> = log.iter().map(|r| r.at).collect();
    times.sort();
    // Both jobs did talk to the target, interleaved.
    assert!(log.iter().any(|r| r.path.contains("/team/a/")));
    assert!(log.iter().any(|r| r.path.contains("/team/b/")));
    let worst = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            times[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    println!(
        "rate limit {RATE}/s (burst {BURST}): {} target requests over {:?}, at most {worst} in any 1 s window",
        times.len(),
        times.last().unwrap().duration_since(times[0])
    );
    assert!(
        times.len() > RATE + BURST,
        "too few requests ({}) to test the limit",
        times.len()
    );
    assert!(worst <= RATE + BURST, "{worst} requests in one second");
}

#[tokio::test]
async fn verify_after_is_validated_and_shown() {
    let (src, dst) = registries().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = write_config(dir.path(), &src, &dst, r#"verify_after = "soon""#, "");
    let errors = ocimirror::config::load(&bad).unwrap_err().to_string();
    assert!(
        errors.contains(r#"state.verify_after: invalid duration "soon""#),
        "{errors}"
    );
    let good = write_config(dir.path(), &src, &dst, r#"verify_after = "90m""#, "");
    let shown = ocimirror::config::show(&good).unwrap();
    assert!(shown.contains(r#"verify_after = "1h 30m""#), "{shown}");
    let default = write_config(dir.path(), &src, &dst, "", "");
    let config = ocimirror::config::load(&default).unwrap();
    assert_eq!(config.state.verify_after, Duration::from_secs(24 * 3600));
}
