//! The real binary as an operator runs it: `serve` draining on SIGTERM,
//! processes sharing one database, and the README's demo command.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ocimirror::store::{RunResult, Store};
use tokio::process::Child;

use super::{
    REPO, assert_mirrored, integrity_check, ocimirror, seed_tags, text, write_config, writes,
};
use crate::support::fixtures::{LayoutView, fallback_tag};
use crate::support::registry::{Fault, FaultKind, Options, TestRegistry};

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_serve(dir: &Path, config: &Path) -> Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ocimirror"))
        .args(["serve", "-c", config.to_str().unwrap()])
        .current_dir(dir)
        .env("OCIMIRROR_LOG", "warn")
        .env_remove("OCIMIRROR_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Polls `check` every 50 ms until it is true; panics after `limit`.
async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(port: u16) -> bool {
    matches!(
        reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await,
        Ok(r) if r.status() == 200
    )
}

/// The latest run of `job` as recorded, if it has finished.
async fn last_result(db: &Path, job: &str) -> Option<RunResult> {
    if !db.exists() {
        return None;
    }
    let store = Store::open(db).await.ok()?;
    let status = store.job_status(job).await.ok();
    store.close().await;
    status?.last_run?.result
}

/// SIGTERM, then the exit status within `limit`.
async fn terminate(child: &mut Child, limit: Duration) -> ExitStatus {
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    tokio::time::timeout(limit, child.wait())
        .await
        .expect("serve did not exit after SIGTERM")
        .unwrap()
}

async fn stderr_of(child: &mut Child) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s).await;
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_once_alongside_and_exits_0_on_sigterm() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let images = seed_tags(&src, REPO, "serve", 2);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &src,
        &dst,
        "",
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let db = dir.path().join("state.db");
    let mut serve = spawn_serve(dir.path(), &config);
    wait_for("/readyz", Duration::from_secs(30), || readyz(port)).await;
    wait_for("the first run", Duration::from_secs(60), || {
        let db = db.clone();
        async move { last_result(&db, "mirror").await.is_some() }
    })
    .await;
    assert_eq!(last_result(&db, "mirror").await, Some(RunResult::Success));
    for (_, f) in &images {
        assert_mirrored(&dst, REPO, f);
    }

    // A `once` on the same database while serve holds it.
    dst.clear_log();
    let out = ocimirror(dir.path(), &["once", "-c", config.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 unchanged"),
        "{}",
        text(&out)
    );
    assert_eq!(writes(&dst), Vec::<String>::new());

    let status = terminate(&mut serve, Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "{status:?}\n{}",
        stderr_of(&mut serve).await
    );
    assert_eq!(integrity_check(&db).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_run_drains_it_then_exits_0() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let images = seed_tags(&src, REPO, "drain", 2);
    // Slow uploads: the run is still going when SIGTERM arrives.
    dst.push_fault(Fault {
        method: Some("PUT".into()),
        path_contains: "/blobs/uploads/".into(),
        kind: FaultKind::Delay(Duration::from_millis(300)),
        times: 10_000,
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &src,
        &dst,
        "",
        &format!("concurrency = 2\n[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let db = dir.path().join("state.db");
    let mut serve = spawn_serve(dir.path(), &config);
    wait_for("/readyz", Duration::from_secs(30), || readyz(port)).await;
    wait_for("a blob upload", Duration::from_secs(30), || {
        let started = dst.count("POST", "/blobs/uploads/") > 0;
        async move { started }
    })
    .await;
    assert_eq!(
        last_result(&db, "mirror").await,
        None,
        "the run already ended"
    );

    let status = terminate(&mut serve, Duration::from_secs(60)).await;
    assert!(
        status.success(),
        "{status:?}\n{}",
        stderr_of(&mut serve).await
    );
    // Drained: both images were in flight (concurrency 2) and finished, and
    // the run's outcome was recorded.
    for (_, f) in &images {
        assert_mirrored(&dst, REPO, f);
    }
    assert_eq!(last_result(&db, "mirror").await, Some(RunResult::Success));
    assert_eq!(integrity_check(&db).await, "ok");
}

/// Two `once` processes at the same time on one config and database.
/// `fresh`: the database does not exist yet, so both create it.
async fn concurrent_once(fresh: bool) {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let images = seed_tags(&src, REPO, "concurrent", 4);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &src, &dst, "", "");
    let db = dir.path().join("state.db");
    if !fresh {
        Store::open(&db).await.unwrap().close().await;
    }
    let args = ["once", "-c", config.to_str().unwrap()];
    let (a, b) = tokio::join!(ocimirror(dir.path(), &args), ocimirror(dir.path(), &args));
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    for (_, f) in &images {
        assert_mirrored(&dst, REPO, f);
    }
    assert_eq!(integrity_check(&db).await, "ok");
    let store = Store::open(&db).await.unwrap();
    let runs = store.last_runs(Some("mirror"), 10).await.unwrap();
    store.close().await;
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter().all(|r| r.result == Some(RunResult::Success)),
        "{runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_once_processes_share_one_database() {
    concurrent_once(false).await;
}

/// Both processes create the database: they race on switching it to WAL
/// ("database is locked") and on the first migration ("table runs already
/// exists"); `Store::open` retries both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_once_processes_create_one_database() {
    concurrent_once(true).await;
}

/// Copies `from` (a directory tree) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn the_readme_demo_mirrors_the_layout_and_status_shows_the_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::copy(
        root.join("config/demo.toml"),
        dir.path().join("config/demo.toml"),
    )
    .unwrap();
    copy_tree(
        &root.join("tests/fixtures/demo-layout"),
        &dir.path().join("tests/fixtures/demo-layout"),
    );

    let out = ocimirror(dir.path(), &["once", "-c", "config/demo.toml"]).await;
    assert!(out.status.success(), "{}", text(&out));

    let source = LayoutView::read(&dir.path().join("tests/fixtures/demo-layout"));
    let mirror = LayoutView::read(&dir.path().join("target/demo-mirror"));
    let tags = mirror.tags();
    let image = tags.get("v1.0.0").expect("the image tag is mirrored");
    assert!(tags.contains_key(&fallback_tag(image)), "{tags:?}");
    // Every tag of the source (the image and its fallback tags) is there,
    // pointing at the same digest.
    assert_eq!(tags, source.tags());
    assert!(tags.len() >= 4, "{tags:?}");

    let out = ocimirror(dir.path(), &["status", "-c", "config/demo.toml"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("job demo"), "{}", text(&out));
    assert!(stdout.contains("— success"), "{}", text(&out));
    assert!(stdout.contains("tags synced:  1"), "{}", text(&out));
}
