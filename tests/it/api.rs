//! The HTTP API of `serve` (`/api/v1`): jobs with what `ocimirror status`
//! shows, a job's runs and failing items, and "run now" behind the API
//! token. [`jobs_with_history`] is shared with the status page test.

use std::time::Duration;

use serde_json::Value;

use crate::support::registry::{Options, TestRegistry};
use crate::webhooks::{EventDaemon, eventually};

/// A digest no registry has: the `pinned` job's one item, failing.
pub(crate) const MISSING: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// A daemon whose two jobs ran once at start-up: `mirror` copied
/// `team/app:v1`, `pinned` failed (its only item is a digest the source lacks).
pub(crate) async fn jobs_with_history() -> (TestRegistry, TestRegistry, EventDaemon) {
    let src = TestRegistry::start(Options::default()).await;
    src.seed_image("team/app", "v1", &[b"api layer"]);
    let dst = TestRegistry::start(Options::default()).await;
    let d = EventDaemon::start(
        EventDaemon::bind().await,
        &format!(
            r#"[[jobs]]
name = "mirror"
source = "{s}/team/app"
target = "{t}/mirror/app"
schedule = {{ interval = "1h" }}
[[jobs]]
name = "pinned"
source = "{s}/team/app"
target = "{t}/mirror/pinned"
tags = {{ allow = ["none"], digests = ["{MISSING}"] }}
schedule = {{ interval = "1h" }}
"#,
            s = src.host(),
            t = dst.host()
        ),
    )
    .await;
    eventually("both first runs", Duration::from_secs(30), || async {
        let v = d.get_json("/api/v1/jobs").await;
        let done = v["jobs"].as_array()?.iter().all(|j| {
            j["last_run"]["finished_at"].is_string() && j["running"] == Value::Bool(false)
        });
        done.then_some(())
    })
    .await;
    (src, dst, d)
}

fn job<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {v}"))
}

#[tokio::test]
async fn jobs_runs_and_failures_are_what_status_shows() {
    let (_src, dst, d) = jobs_with_history().await;
    let v = d.get_json("/api/v1/jobs").await;
    let mirror = job(&v, "mirror");
    assert_eq!(mirror["last_run"]["result"], "success");
    assert_eq!(mirror["last_run"]["counts"]["images_copied"], 1);
    assert_eq!(mirror["tags_synced"], 1);
    assert_eq!(mirror["failing"].as_array().unwrap().len(), 0);
    assert_eq!(mirror["links"]["runs"], "/api/v1/jobs/mirror/runs");
    assert!(dst.manifest("mirror/app", "v1").is_some());

    let pinned = job(&v, "pinned");
    assert_eq!(pinned["last_run"]["result"], "failed");
    let failing = d.get_json("/api/v1/jobs/pinned/failures").await;
    let items = failing["failing"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{failing}");
    assert!(
        items[0]["item"].as_str().unwrap().ends_with(MISSING),
        "{failing}"
    );
    assert!(
        items[0]["error"].as_str().unwrap().contains("not found"),
        "{failing}"
    );

    let runs = d.get_json("/api/v1/jobs/mirror/runs?limit=5").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    let r = d.http_get("/api/v1/jobs/nope").await;
    assert_eq!(r.0, 404);
    assert!(r.1.contains("no job named \\\"nope\\\""), "{}", r.1);
    d.stop().await;
}

#[tokio::test]
async fn run_now_needs_the_token_and_starts_a_run() {
    let (_src, _dst, d) = jobs_with_history().await;
    let path = "/api/v1/jobs/mirror/run";
    assert_eq!(d.post(path, &[], "").await.0, 401);
    assert_eq!(
        d.post(path, &[("authorization", "Bearer api-secre")], "")
            .await
            .0,
        401
    );
    assert_eq!(
        d.post(
            "/api/v1/jobs/nope/run",
            &[("authorization", "Bearer api-secret")],
            ""
        )
        .await
        .0,
        404
    );
    let (status, text) = d
        .post(path, &[("authorization", "Bearer api-secret")], "")
        .await;
    assert_eq!(status, 202, "{text}");
    // The run happens now, not at the next interval (an hour away).
    eventually(
        "a second run of mirror",
        Duration::from_secs(20),
        || async {
            let runs = d.get_json("/api/v1/jobs/mirror/runs").await;
            let runs = runs["runs"].as_array()?.clone();
            (runs.len() == 2 && runs[0]["finished_at"].is_string()).then_some(())
        },
    )
    .await;
    d.stop().await;
}
