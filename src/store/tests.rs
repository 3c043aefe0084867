//! Tests of every method on both backends (`on_both_backends!`: a sqlite
//! temp file, and a database on a throwaway PostgreSQL server), and of
//! several stores writing to one database at once.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use super::*;

#[path = "../../tests/it/support/postgres.rs"]
mod pg_server;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

/// Keeps a test's database alive: its temp dir, or its server.
#[allow(dead_code)] // held for its Drop only
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(Arc<pg_server::Postgres>),
}

/// A new, empty database on `backend` and its location (a path or URL);
/// `None` when PostgreSQL is not installed (and not required).
fn new_database(backend: Backend) -> Option<(Db, String)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db").display().to_string();
            Some((Db::Sqlite(dir), path))
        }
        Backend::Postgres => {
            let pg = pg_server::Postgres::shared()?;
            let url = pg.create_database();
            Some((Db::Postgres(pg), url))
        }
    }
}

async fn store_on(backend: Backend) -> Option<(Db, Store)> {
    let (db, location) = new_database(backend)?;
    let store = Store::open_location(&location).await.unwrap();
    assert_eq!(store.backend(), backend);
    Some((db, store))
}

/// Runs each named `async fn(Backend)` as two tests, `sqlite::NAME` and
/// `postgres::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
    };
}

on_both_backends!(
    runs_start_finish_and_list,
    tag_state_round_trip_and_replace,
    failures_back_off_per_item,
    job_status_summarises,
    corrupt_rows_are_reported_not_panicked,
    two_stores_write_concurrently,
    concurrent_opens_of_a_new_database_all_succeed,
    a_run_whose_process_is_gone_is_interrupted_not_running,
    ownership_is_recorded_marked_absent_and_forgotten,
    backups_list_newest_first_and_are_forgotten,
    events_go_from_queued_to_an_outcome_and_leftovers_fail,
    a_verdict_is_found_only_for_its_image_and_policy_hash,
    owned_referrers_are_recorded_marked_absent_and_forgotten,
);

#[path = "tests_features.rs"]
mod features;
use features::*;

fn d(s: &str) -> Digest {
    Digest::sha256(s.as_bytes())
}

#[tokio::test]
async fn sqlite_open_creates_migrates_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub.db");
    let store = Store::open(&path).await.unwrap();
    store.ping().await.unwrap();
    let id = store.start_run("j", t(0)).await.unwrap();
    store.close().await;
    // Reopening runs the (already applied) migrations again without error
    // and keeps the data.
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.last_runs(Some("j"), 10).await.unwrap()[0].id, id);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn open_creates_the_directory_and_reports_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/state.db");
    Store::open(&nested).await.unwrap();
    assert!(nested.exists());
    // A regular file where a directory is needed cannot be worked around.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("state.db");
    let err = Store::open(&bad).await.unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err}");
    assert!(
        err.to_string().contains(&bad.display().to_string()),
        "{err}"
    );
}

async fn runs_start_finish_and_list(backend: Backend) {
    let Some((_d, store)) = store_on(backend).await else {
        return;
    };
    let a = store.start_run("a", t(0)).await.unwrap();
    let b = store.start_run("b", t(1)).await.unwrap();
    let running = store.last_runs(Some("a"), 5).await.unwrap();
    assert_eq!(running.len(), 1);
    assert!(running[0].is_running());
    assert_eq!(running[0].result, None);

    let counts = RunCounts {
        images_copied: 3,
        bytes_copied: 1234,
        ..Default::default()
    };
    let outcome = RunOutcome {
        result: RunResult::Partial,
        counts,
        error: Some("1 image failed".into()),
    };
    store.finish_run(a, t(10), &outcome).await.unwrap();
    let runs = store.last_runs(Some("a"), 5).await.unwrap();
    assert_eq!(runs[0].finished_at, Some(t(10)));
    assert_eq!(runs[0].result, Some(RunResult::Partial));
    assert_eq!(runs[0].counts, counts);
    assert_eq!(runs[0].error.as_deref(), Some("1 image failed"));

    let all = store.last_runs(None, 5).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [b, a]);
    assert_eq!(store.last_runs(None, 1).await.unwrap().len(), 1);

    let err = store
        .finish_run(RunId(999), t(11), &outcome)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

    let skipped = store
        .record_skipped("a", t(20), "previous run still going")
        .await
        .unwrap();
    let latest = &store.last_runs(Some("a"), 1).await.unwrap()[0];
    assert_eq!(latest.id, skipped);
    assert_eq!(latest.result, Some(RunResult::Skipped));
    assert!(!latest.is_running());
}

async fn tag_state_round_trip_and_replace(backend: Backend) {
    let Some((_d, store)) = store_on(backend).await else {
        return;
    };
    assert_eq!(
        store.tag_state("j", "ghcr.io/o/a", "v1").await.unwrap(),
        None
    );
    let mut s = TagState {
        job: "j".into(),
        source_repo: "ghcr.io/o/a".into(),
        tag: "v1".into(),
        source_digest: d("one"),
        referrers_fingerprint: Some("fp1".into()),
        target_repo: "localhost:5000/a".into(),
        updated_at: t(5),
    };
    store.record_synced(&s).await.unwrap();
    assert_eq!(
        store.tag_state("j", "ghcr.io/o/a", "v1").await.unwrap(),
        Some(s.clone())
    );
    s.source_digest = d("two");
    s.referrers_fingerprint = None;
    s.updated_at = t(6);
    store.record_synced(&s).await.unwrap();
    assert_eq!(
        store.tag_state("j", "ghcr.io/o/a", "v1").await.unwrap(),
        Some(s.clone())
    );
    // Other jobs and repositories are separate keys.
    assert_eq!(
        store.tag_state("k", "ghcr.io/o/a", "v1").await.unwrap(),
        None
    );

    let mut v2 = s.clone();
    v2.tag = "v2".into();
    store.record_synced(&v2).await.unwrap();
    assert_eq!(
        store.tag_state("j", "ghcr.io/o/a", "v2").await.unwrap(),
        Some(v2.clone())
    );
    let removed = store
        .forget_tags_except("j", "ghcr.io/o/a", &["v2".to_string()])
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(
        store.tag_state("j", "ghcr.io/o/a", "v1").await.unwrap(),
        None
    );
    assert_eq!(
        store.tag_state("j", "ghcr.io/o/a", "v2").await.unwrap(),
        Some(v2)
    );
}

async fn failures_back_off_per_item(backend: Backend) {
    let Some((_d, store)) = store_on(backend).await else {
        return;
    };
    let store = store.with_backoff(Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(25),
    });
    let f1 = store
        .record_failure("j", "tag:v1", "boom", t(0))
        .await
        .unwrap();
    assert_eq!(f1.attempts, 1);
    assert_eq!(f1.next_retry_at, t(10));
    assert_eq!(f1.first_failed_at, t(0));
    let f2 = store
        .record_failure("j", "tag:v1", "boom again", t(10))
        .await
        .unwrap();
    assert_eq!((f2.attempts, f2.next_retry_at), (2, t(30)));
    assert_eq!(f2.last_error, "boom again");
    assert_eq!(f2.first_failed_at, t(0));
    let f3 = store
        .record_failure("j", "tag:v1", "x", t(30))
        .await
        .unwrap();
    // 40s capped to 25s.
    assert_eq!((f3.attempts, f3.next_retry_at), (3, t(55)));
    // Another item has its own backoff.
    let other = store
        .record_failure("j", "tag:v2", "x", t(30))
        .await
        .unwrap();
    assert_eq!((other.attempts, other.next_retry_at), (1, t(40)));

    assert_eq!(
        store.failure("j", "tag:v1").await.unwrap(),
        Some(f3.clone())
    );
    // Due exactly when the backoff has passed, per item.
    let v2 = store.failure("j", "tag:v2").await.unwrap().unwrap();
    assert!(!v2.is_due(t(39)));
    assert!(v2.is_due(t(40)));
    assert!(!f3.is_due(t(40)));
    assert!(f3.is_due(t(60)));
    assert_eq!(store.failure("other-job", "tag:v2").await.unwrap(), None);
    let all = store.failures_for_job("j").await.unwrap();
    assert_eq!(
        all.iter().map(|f| f.item.as_str()).collect::<Vec<_>>(),
        ["tag:v2", "tag:v1"]
    );

    assert!(store.clear_failure("j", "tag:v1").await.unwrap());
    assert!(!store.clear_failure("j", "tag:v1").await.unwrap());
    assert_eq!(store.failure("j", "tag:v1").await.unwrap(), None);
    // A new streak starts from the base delay again.
    let again = store
        .record_failure("j", "tag:v1", "x", t(100))
        .await
        .unwrap();
    assert_eq!((again.attempts, again.next_retry_at), (1, t(110)));
}

async fn job_status_summarises(backend: Backend) {
    let Some((_d, store)) = store_on(backend).await else {
        return;
    };
    let empty = store.job_status("j").await.unwrap();
    assert_eq!(empty.last_run, None);
    assert_eq!(
        (empty.tags_synced, empty.failing_items, empty.next_retry_at),
        (0, 0, None)
    );

    let ok = store.start_run("j", t(0)).await.unwrap();
    let done = RunOutcome {
        result: RunResult::Success,
        counts: RunCounts::default(),
        error: None,
    };
    store.finish_run(ok, t(5), &done).await.unwrap();
    let running = store.start_run("j", t(10)).await.unwrap();
    store
        .record_synced(&TagState {
            job: "j".into(),
            source_repo: "r".into(),
            tag: "v1".into(),
            source_digest: d("a"),
            referrers_fingerprint: None,
            target_repo: "t".into(),
            updated_at: t(3),
        })
        .await
        .unwrap();
    let f = store
        .record_failure("j", "tag:v2", "x", t(4))
        .await
        .unwrap();
    let s = store.job_status("j").await.unwrap();
    assert_eq!(s.last_run.as_ref().map(|r| r.id), Some(running));
    assert!(s.last_run.unwrap().is_running());
    assert_eq!(s.last_success.map(|r| r.id), Some(ok));
    assert_eq!((s.tags_synced, s.failing_items), (1, 1));
    assert_eq!(s.next_retry_at, Some(f.next_retry_at));
}

async fn corrupt_rows_are_reported_not_panicked(backend: Backend) {
    let Some((_d, store)) = store_on(backend).await else {
        return;
    };
    sqlx::query("INSERT INTO tag_state VALUES ('j', 'r', 'v1', 'not-a-digest', NULL, 't', 0)")
        .execute(&store.pool)
        .await
        .unwrap();
    let err = store.tag_state("j", "r", "v1").await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                column: "tag_state.source_digest",
                ..
            }
        ),
        "{err}"
    );
}

/// Two stores (as two processes would have) on one file, each writing from
/// several tasks at once: nothing fails and nothing is lost.
async fn two_stores_write_concurrently(backend: Backend) {
    let Some((_db, location)) = new_database(backend) else {
        return;
    };
    let a = Arc::new(Store::open_location(&location).await.unwrap());
    let b = Arc::new(Store::open_location(&location).await.unwrap());
    const TASKS: usize = 4;
    const PER_TASK: usize = 25;
    let mut handles = Vec::new();
    for (s, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        for task in 0..TASKS {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for i in 0..PER_TASK {
                    let job = format!("job-{s}-{task}");
                    let id = store.start_run(&job, t(i as i64)).await?;
                    let state = TagState {
                        job: job.clone(),
                        source_repo: "shared/repo".into(),
                        tag: format!("v{i}"),
                        source_digest: d(&format!("{s}-{task}-{i}")),
                        referrers_fingerprint: None,
                        target_repo: "mirror/repo".into(),
                        updated_at: t(i as i64),
                    };
                    store.record_synced(&state).await?;
                    // Both stores hammer the same failure row.
                    store
                        .record_failure("shared", "item", "x", t(i as i64))
                        .await?;
                    store
                        .finish_run(
                            id,
                            t(i as i64 + 1),
                            &RunOutcome {
                                result: RunResult::Success,
                                counts: RunCounts::default(),
                                error: None,
                            },
                        )
                        .await?;
                }
                Ok::<_, StoreError>(())
            }));
        }
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let total = 2 * TASKS * PER_TASK;
    let runs = a.last_runs(None, u32::MAX).await.unwrap();
    assert_eq!(runs.len(), total);
    assert!(runs.iter().all(|r| r.result == Some(RunResult::Success)));
    let synced: i64 = sqlx::query_scalar("SELECT count(*) FROM tag_state")
        .fetch_one(&b.pool)
        .await
        .unwrap();
    assert_eq!(synced as usize, total);
    let f = b.failure("shared", "item").await.unwrap().unwrap();
    assert_eq!(f.attempts as usize, total);
}

/// Many stores creating one new database at once (as concurrent processes
/// do): every open succeeds, whatever lock the others hold while they switch
/// the journal to WAL and apply the migrations.
/// On PostgreSQL the migrator's advisory lock makes them wait for each other.
async fn concurrent_opens_of_a_new_database_all_succeed(backend: Backend) {
    let rounds = match backend {
        Backend::Sqlite => 20,
        Backend::Postgres => 3,
    };
    for round in 0..rounds {
        let Some((_db, location)) = new_database(backend) else {
            return;
        };
        let location = Arc::new(location);
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let location = Arc::clone(&location);
                tokio::spawn(async move { Store::open_location(&location).await })
            })
            .collect();
        for open in opens {
            let store = open
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            store.ping().await.unwrap();
            store.close().await;
        }
    }
}

async fn a_run_whose_process_is_gone_is_interrupted_not_running(backend: Backend) {
    let Some((_dir, store)) = store_on(backend).await else {
        return;
    };
    let id = store.start_run("j", t(0)).await.unwrap();
    let run = store.last_runs(Some("j"), 1).await.unwrap().remove(0);
    assert_eq!(run.owner, Some(RunOwner::current()));
    assert!(run.is_running() && !run.is_interrupted(), "we are alive");

    // A process that has exited, on this host: interrupted.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let gone = RunOwner {
        pid: child.id(),
        ..RunOwner::current()
    };
    let set_owner = |owner: String| {
        sqlx::query("UPDATE runs SET owner = $1 WHERE id = $2")
            .bind(owner)
            .bind(id.0)
            .execute(&store.pool)
    };
    set_owner(gone.to_string()).await.unwrap();
    let run = store.last_runs(Some("j"), 1).await.unwrap().remove(0);
    assert_eq!(run.owner, Some(gone.clone()));
    assert!(run.is_interrupted());

    // Another host cannot be checked: still running as far as we know.
    set_owner(format!("elsewhere.example:{}", gone.pid))
        .await
        .unwrap();
    let run = store.last_runs(Some("j"), 1).await.unwrap().remove(0);
    assert!(run.is_running() && !run.is_interrupted());

    // A finished run is never interrupted.
    set_owner(gone.to_string()).await.unwrap();
    store
        .finish_run(
            id,
            t(1),
            &RunOutcome {
                result: RunResult::Success,
                counts: RunCounts::default(),
                error: None,
            },
        )
        .await
        .unwrap();
    let run = store.last_runs(Some("j"), 1).await.unwrap().remove(0);
    assert!(!run.is_interrupted());
}

#[path = "tests_sharing.rs"]
mod sharing;

/// A server that cannot be reached is named, without the URL's password.
#[tokio::test]
async fn an_unreachable_postgres_is_named_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://mirror:s3cr3t@127.0.0.1:{port}/state");
    let err = Store::open_location(&url).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{message}");
    assert!(
        message.contains(&format!(
            "postgres://mirror:redacted@127.0.0.1:{port}/state"
        )),
        "{message}"
    );
    assert!(!message.contains("s3cr3t"), "{message}");
}

async fn owned_referrers_are_recorded_marked_absent_and_forgotten(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let (subject, sig) = (d("subject"), d("sig"));
    store
        .record_owned_referrer("j", "h/r", &subject, &sig, true, t(1))
        .await
        .unwrap();
    store
        .record_owned_referrer("other", "h/r", &subject, &sig, false, t(1))
        .await
        .unwrap();
    let owned = store.owned_referrers("j").await.unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!((&owned[0].referrer, owned[0].in_fallback), (&sig, true));
    store
        .set_referrer_absent_since(&owned[0], Some(t(5)))
        .await
        .unwrap();
    assert_eq!(
        store.owned_referrers("j").await.unwrap()[0].absent_since,
        Some(t(5))
    );
    // Published again: listed at the source again.
    store
        .record_owned_referrer("j", "h/r", &subject, &sig, true, t(9))
        .await
        .unwrap();
    let owned = store.owned_referrers("j").await.unwrap();
    assert_eq!((owned[0].absent_since, owned[0].written_at), (None, t(9)));
    store.forget_owned_referrer(&owned[0]).await.unwrap();
    assert!(store.owned_referrers("j").await.unwrap().is_empty());
    assert!(!store.owned_referrers("other").await.unwrap()[0].in_fallback);
}
