//! Deletion sync (`[jobs.delete]`) end to end against the test registry and
//! a real distribution 2.8: the grace period on a manual clock, the guard
//! with an emptied source, tags written by someone else never deleted, a
//! digest still needed by another tag never deleted, and the registries
//! that cannot untag (distribution 2.8, Docker Hub). Moved tags
//! (`[jobs.overwrite]`) are in `deletions_overwrite.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use ocimirror::app::RunOnce;
use ocimirror::cli::jobs::ConfigArg;
use ocimirror::cli::status::{StatusArgs, status_text};
use ocimirror::config::Config;
use ocimirror::oci::{Reference, RepoName};
use ocimirror::registry::Registry;
use ocimirror::registry::http::{DockerConfigSource, HttpRegistry, HttpSettings};
use ocimirror::scheduler::{Clock, ManualClock};
use ocimirror::sync::{DeletionKind, JobReport, SyncOptions};
use tokio_util::sync::CancellationToken;

use crate::support::distribution::Distribution;
use crate::support::registry::{Options, TestRegistry};
use crate::sync_jobs::{REPO, write_config_for_hosts};

pub const DAY: Duration = Duration::from_secs(24 * 3600);
pub const HOUR: Duration = Duration::from_secs(3600);

/// Deletion sync on, with the default grace (24 h) and guard (10 %).
const DELETE_ON: &str = "[jobs.delete]\nenabled = true\n";

/// A job mirroring `REPO` (config, database and state in a temporary
/// directory) and the manual clock its runs see.
pub struct Job {
    pub config: Config,
    pub clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

impl Job {
    /// The job from `src` to `dst` with `extra` appended to its config.
    pub fn new(src: &TestRegistry, dst: &TestRegistry, extra: &str) -> Job {
        Job::for_hosts(&src.host(), &dst.host(), extra)
    }

    /// [`Job::new`] for registries given by host (e.g. a distribution 2.8).
    pub fn for_hosts(src: &str, dst: &str, extra: &str) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config_for_hosts(dir.path(), src, dst, "", extra);
        Job {
            config: ocimirror::config::load(&path).unwrap(),
            clock: Arc::new(ManualClock::new(
                Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap(),
            )),
            dir,
        }
    }

    /// Runs the job once at the clock's time; `plan` for a dry run.
    pub async fn run(&self, plan: bool) -> JobReport {
        let clock: Arc<dyn Clock> = self.clock.clone();
        let out = ocimirror::app::run_once(
            &self.config,
            RunOnce {
                jobs: &self.config.jobs,
                options: SyncOptions {
                    dry_run: plan,
                    ..SyncOptions::default()
                },
                events: None,
                cancel: CancellationToken::new(),
                clock,
            },
        )
        .await
        .unwrap();
        out.reports.into_iter().next().unwrap()
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

pub async fn pair() -> (TestRegistry, TestRegistry) {
    (
        TestRegistry::start(Options::default()).await,
        TestRegistry::start(Options::default()).await,
    )
}

/// `n` plain images `t0`.. in `REPO` on `reg`, each its own digest.
pub fn seed(reg: &TestRegistry, n: usize) {
    for i in 0..n {
        reg.seed_image(REPO, &format!("t{i}"), &[format!("layer {i}").as_bytes()]);
    }
}

/// `ocimirror status` of the config in `dir`, as text.
async fn status(dir: &Path) -> String {
    let args = StatusArgs {
        config: ConfigArg {
            config: dir.join("ocimirror.toml"),
        },
        jobs: Vec::new(),
    };
    status_text(&ocimirror::cli::status::status(&args).await.unwrap())
}

pub fn deletes(reg: &TestRegistry) -> Vec<String> {
    reg.log()
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.clone())
        .collect()
}

#[tokio::test]
async fn a_tag_gone_from_the_source_is_untagged_only_after_the_grace_period() {
    let (src, dst) = pair().await;
    seed(&src, 12);
    let job = Job::new(&src, &dst, DELETE_ON);
    let first = job.run(false).await;
    assert!(first.is_success(), "{:?}", first.failures);
    assert_eq!(dst.tags(REPO).len(), 12);

    assert!(src.delete_tag(REPO, "t3"));
    job.clock.advance(HOUR);
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    assert!(
        dst.tags(REPO).contains(&"t3".to_string()),
        "deleted within grace"
    );
    let target = format!("{}/{REPO}:t3", dst.host());
    assert_eq!(r.deletions.pending.len(), 1);
    assert_eq!(r.deletions.pending[0].target, target);
    assert_eq!(
        r.deletions.pending[0].due_at,
        Utc.with_ymd_and_hms(2026, 12, 1, 7, 0, 0).unwrap(),
        "due a grace period after the first run without it"
    );
    let shown = status(job.dir()).await;
    assert!(shown.contains("  pending deletions: 1\n"), "{shown}");
    assert!(
        shown.contains(&format!("PENDING DELETE {target} (")),
        "{shown}"
    );
    assert!(shown.contains("absent from the source since 2026-11-30 07:00:00 UTC"));

    // The plan lists it with its due time; it writes nothing.
    job.clock.advance(DAY - HOUR);
    dst.clear_log();
    let plan = job.run(true).await;
    let text = ocimirror::cli::jobs::plan_text(std::slice::from_ref(&plan));
    assert!(
        text.contains(&format!(
            "PENDING DELETE {target} (due 2026-12-01 07:00:00 UTC; absent from the source since 2026-11-30 07:00:00 UTC)"
        )),
        "{text}"
    );
    assert!(deletes(&dst).is_empty());

    job.clock.advance(HOUR);
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    assert_eq!(r.deletions.deleted.len(), 1);
    assert_eq!(r.deletions.deleted[0].kind, DeletionKind::Untag);
    assert_eq!(deletes(&dst), [format!("/v2/{REPO}/manifests/t3")]);
    let left = dst.tags(REPO);
    assert_eq!(left.len(), 11);
    assert!(!left.contains(&"t3".to_string()));
    assert!(r.deletions.pending.is_empty());
}

#[tokio::test]
async fn a_tag_back_at_the_source_within_grace_starts_its_clock_again() {
    let (src, dst) = pair().await;
    seed(&src, 12);
    let job = Job::new(&src, &dst, DELETE_ON);
    job.run(false).await;
    let (_, bytes) = src.manifest(REPO, "t5").unwrap();
    src.delete_tag(REPO, "t5");
    job.clock.advance(HOUR);
    job.run(false).await;
    // Back for a while, then gone again: the absence must be continuous.
    src.put_manifest(REPO, "t5", crate::support::fixtures::OCI_MANIFEST, &bytes);
    job.clock.advance(HOUR);
    job.run(false).await;
    src.delete_tag(REPO, "t5");
    job.clock.advance(23 * HOUR);
    let r = job.run(false).await;
    assert!(r.deletions.deleted.is_empty());
    assert!(dst.tags(REPO).contains(&"t5".to_string()));
    assert_eq!(
        r.deletions.pending[0].absent_since,
        Utc.with_ymd_and_hms(2026, 12, 1, 7, 0, 0).unwrap()
    );
}

#[tokio::test]
async fn an_emptied_source_trips_the_guard_and_deletes_nothing() {
    let (src, dst) = pair().await;
    seed(&src, 3);
    let job = Job::new(&src, &dst, DELETE_ON);
    job.run(false).await;
    for i in 0..3 {
        src.delete_tag(REPO, &format!("t{i}"));
    }
    // Loud at once, and still after the grace period.
    for advance in [HOUR, 2 * DAY] {
        job.clock.advance(advance);
        let r = job.run(false).await;
        assert!(!r.is_success());
        let guard = r
            .failures
            .iter()
            .find(|f| f.kind == "deletion_guard")
            .expect("a guard failure");
        assert!(guard.error.contains("selected no tag"), "{}", guard.error);
        assert!(r.deletions.guard_tripped.is_some());
        assert!(deletes(&dst).is_empty());
        assert_eq!(dst.tags(REPO).len(), 3);
    }
}

#[tokio::test]
async fn more_due_than_max_fraction_trips_the_guard() {
    let (src, dst) = pair().await;
    seed(&src, 12);
    let job = Job::new(&src, &dst, DELETE_ON);
    job.run(false).await;
    src.delete_tag(REPO, "t1");
    src.delete_tag(REPO, "t2");
    job.clock.advance(2 * DAY);
    job.run(false).await;
    job.clock.advance(2 * DAY);
    let r = job.run(false).await;
    let guard = r.deletions.guard_tripped.as_deref().expect("guard tripped");
    assert!(guard.contains("2 of the job's 12 tags"), "{guard}");
    assert!(r.failures.iter().any(|f| f.kind == "deletion_guard"));
    assert!(deletes(&dst).is_empty());
    assert_eq!(dst.tags(REPO).len(), 12);
}

#[tokio::test]
async fn tags_written_or_moved_by_someone_else_are_never_deleted() {
    let (src, dst) = pair().await;
    seed(&src, 12);
    // On the target before the job ran, with the source's very content.
    let (_, t4) = src.manifest(REPO, "t4").unwrap();
    let (_, t0) = src.manifest(REPO, "t0").unwrap();
    dst.seed_image(REPO, "t4", &[b"layer 4"]);
    let job = Job::new(&src, &dst, DELETE_ON);
    job.run(false).await;
    assert_eq!(dst.manifest(REPO, "t4").unwrap().1, t4);
    // Someone points our t0 at the content of t7.
    let (_, t7) = src.manifest(REPO, "t7").unwrap();
    dst.put_manifest(REPO, "t0", crate::support::fixtures::OCI_MANIFEST, &t7);
    src.delete_tag(REPO, "t4");
    job.run(false).await;
    job.clock.advance(2 * DAY);
    src.delete_tag(REPO, "t0");
    job.run(false).await;
    job.clock.advance(2 * DAY);
    let r = job.run(false).await;
    assert!(r.deletions.deleted.is_empty(), "{:?}", r.deletions.deleted);
    assert!(deletes(&dst).is_empty());
    assert_eq!(dst.manifest(REPO, "t4").unwrap().1, t4);
    assert_eq!(dst.manifest(REPO, "t0").unwrap().1, t7);
    assert_ne!(t0, t7);
    // Moved by someone else, t0 is no longer the job's: nothing pending.
    assert!(
        r.deletions
            .pending
            .iter()
            .all(|p| !p.target.ends_with(":t0"))
    );
}

#[tokio::test]
async fn a_registry_refusing_tag_deletes_gets_a_digest_delete_only_when_nothing_else_needs_it() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options {
        refuse_tag_delete: true,
        ..Options::default()
    })
    .await;
    seed(&src, 12);
    // `same` shares t8's digest; both come from the source.
    let (_, t8) = src.manifest(REPO, "t8").unwrap();
    src.put_manifest(REPO, "same", crate::support::fixtures::OCI_MANIFEST, &t8);
    let job = Job::new(
        &src,
        &dst,
        "[jobs.delete]\nenabled = true\nmax_fraction = 0.2\n",
    );
    job.run(false).await;
    src.delete_tag(REPO, "t8");
    src.delete_tag(REPO, "t9");
    job.clock.advance(HOUR);
    job.run(false).await;
    job.clock.advance(DAY);
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    let t9 = format!("{}/{REPO}:t9", dst.host());
    let deleted: Vec<_> = r
        .deletions
        .deleted
        .iter()
        .map(|d| (&d.target, d.kind))
        .collect();
    assert_eq!(deleted, [(&t9, DeletionKind::Digest)]);
    assert_eq!(r.deletions.kept.len(), 1);
    assert!(
        r.deletions.kept[0]
            .reason
            .contains("tag same points at the same digest"),
        "{}",
        r.deletions.kept[0].reason
    );
    let left = dst.tags(REPO);
    assert!(left.contains(&"t8".to_string()) && left.contains(&"same".to_string()));
    assert!(!left.contains(&"t9".to_string()));
}

pub fn http(host: &str) -> HttpRegistry {
    HttpRegistry::new(
        host,
        HttpSettings {
            docker_config: DockerConfigSource::Off,
            ..HttpSettings::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn on_distribution_a_shared_digest_is_kept_and_a_lone_one_deleted() {
    let src = TestRegistry::start(Options::default()).await;
    let dist = Distribution::start();
    seed(&src, 12);
    let (_, t8) = src.manifest(REPO, "t8").unwrap();
    src.put_manifest(REPO, "same", crate::support::fixtures::OCI_MANIFEST, &t8);
    let job = Job::for_hosts(
        &src.host(),
        &dist.host(),
        "[jobs.delete]\nenabled = true\nmax_fraction = 0.2\n",
    );
    let first = job.run(false).await;
    assert!(first.is_success(), "{:?}", first.failures);
    src.delete_tag(REPO, "t8");
    src.delete_tag(REPO, "t9");
    job.clock.advance(HOUR);
    job.run(false).await;
    job.clock.advance(DAY);
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    assert_eq!(r.deletions.deleted.len(), 1, "{:?}", r.deletions);
    assert_eq!(r.deletions.deleted[0].kind, DeletionKind::Digest);
    assert!(r.deletions.deleted[0].target.ends_with(":t9"));
    assert_eq!(r.deletions.kept.len(), 1);
    let reg = http(&dist.host());
    let repo = RepoName::new(REPO).unwrap();
    let mut tags = reg.tags(&repo).await.unwrap();
    tags.sort();
    assert!(tags.contains(&"t8".to_string()) && tags.contains(&"same".to_string()));
    assert!(!tags.contains(&"t9".to_string()));
    assert_eq!(tags.len(), 12);
    let t8_ref = Reference::Tag(ocimirror::oci::Tag::new("t8").unwrap());
    assert!(reg.manifest_head(&repo, &t8_ref).await.unwrap().is_some());
}
