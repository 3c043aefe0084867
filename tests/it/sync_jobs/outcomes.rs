//! What `once` and `status` say after a partial run, and the exit status
//! and single error line of every kind of failure, through the real binary.

use super::{REPO, ocimirror, seed_tags, text, write_config};
use crate::support::registry::{Fault, FaultKind, Options, TestRegistry};

/// An item in failure backoff is not a success: the second `once` still
/// exits 1 and says `partial` with the item deferred, and `status` shows
/// the run as partial, never `success` next to a failing item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_backing_off_keeps_the_run_partial() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    seed_tags(&src, REPO, "backoff", 2);
    // t1 cannot be read at all (denied: not retried).
    src.push_fault(Fault {
        method: None,
        path_contains: "/manifests/t1".into(),
        kind: FaultKind::Status(403),
        times: 1_000,
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &src, &dst, "", "");
    let cfg = config.to_str().unwrap();

    let first = ocimirror(dir.path(), &["once", "-c", cfg]).await;
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("job mirror: partial"), "{}", text(&first));

    let second = ocimirror(dir.path(), &["once", "-c", cfg]).await;
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("job mirror: partial"), "{}", text(&second));
    assert!(stdout.contains("1 deferred"), "{}", text(&second));

    let status = ocimirror(dir.path(), &["status", "-c", cfg]).await;
    assert!(status.status.success(), "{}", text(&status));
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("— partial"), "{}", text(&status));
    assert!(stdout.contains("failing:      1"), "{}", text(&status));
    // The interval is 1h: the next run is an hour after the last start,
    // not "now".
    assert!(stdout.contains("(when serving)"), "{}", text(&status));
    assert!(!stdout.contains("due now"), "{}", text(&status));
}

/// Exit statuses: 78 for an invalid config under every command that reads
/// one, 3 when the command cannot run, and the error said once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_have_their_own_exit_status_and_are_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "version = 1\n[limits]\nconcurrent_jobs = \"many\"\n").unwrap();
    let bad = bad.to_str().unwrap();
    for command in [
        vec!["once"],
        vec!["status"],
        vec!["plan"],
        vec!["config", "show"],
    ] {
        let mut args = command.clone();
        args.extend(["-c", bad]);
        let out = ocimirror(dir.path(), &args).await;
        assert_eq!(out.status.code(), Some(78), "{command:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.matches("concurrent_jobs").count(),
            1,
            "{command:?}: {}",
            text(&out)
        );
    }

    // `status` on a config whose database does not exist yet: it says so
    // and creates nothing.
    let fresh = dir.path().join("fresh.toml");
    std::fs::write(
        &fresh,
        "version = 1\n[state]\ndatabase = \"db/state.db\"\n\
         [[jobs]]\nname = \"j\"\nsource = \"oci:in\"\ntarget = \"oci:out\"\n",
    )
    .unwrap();
    let out = ocimirror(dir.path(), &["status", "-c", fresh.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("never (no state database"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("db").exists());

    // `serve` whose listener address is taken: fatal, exit 3, said once.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let serve = dir.path().join("serve.toml");
    std::fs::write(
        &serve,
        format!(
            "version = 1\n[state]\ndatabase = \"s.db\"\n[server]\nlisten = \"{addr}\"\n\
             [[jobs]]\nname = \"j\"\nsource = \"oci:in\"\ntarget = \"oci:out\"\n"
        ),
    )
    .unwrap();
    let out = ocimirror(dir.path(), &["serve", "-c", serve.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("os error 98").count(), 1, "{}", text(&out));
    drop(taken);
}

/// One slow image cannot hold a job: past `limits.item_timeout` it fails
/// with a named timeout, and the other image of the job is copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_item_times_out_by_name_and_the_rest_is_copied() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let images = seed_tags(&src, REPO, "slow", 2);
    src.push_fault(Fault {
        method: None,
        path_contains: "/manifests/t1".into(),
        kind: FaultKind::Delay(std::time::Duration::from_secs(30)),
        times: 1_000,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &src,
        &dst,
        "",
        "[limits]\nitem_timeout = \"1s\"\n",
    );
    let config = ocimirror::config::load(&path).unwrap();
    let started = std::time::Instant::now();
    let reports = super::run_once(&config, &ocimirror::sync::SyncOptions::default()).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let report = &reports[0];
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let failure = &report.failures[0];
    assert!(failure.item.ends_with(":t1"), "{failure:?}");
    assert_eq!(failure.kind, "timeout", "{failure:?}");
    // The message names the key to raise.
    assert!(failure.error.contains("limits.item_timeout"), "{failure:?}");
    super::assert_mirrored(&dst, REPO, &images[0].1);
}
