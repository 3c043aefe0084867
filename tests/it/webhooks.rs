//! Event-driven mirroring through the real daemon (`serve`): webhooks are
//! authenticated, parsed, mapped to jobs, queued and synced through the
//! copy path, with every accepted event's outcome in the state database.
//! [`EventDaemon`] is shared with the API and status page tests.
//!
//! The distribution test runs Debian's `docker-registry` (CNCF distribution
//! 2.8) with `notifications.endpoints` pointing at the daemon: a push of an
//! image and then of its signature reaches the target with no scheduled run
//! (the job's cron never fires during the test).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use ocimirror::app::{AppError, serve};
use ocimirror::events::auth::hmac_sha256;
use ocimirror::oci::media_type::{OCI_EMPTY, OCI_MANIFEST};
use ocimirror::oci::referrers::{fallback_tag, merge_fallback_index};
use ocimirror::oci::{Digest, Reference, Tag};
use ocimirror::registry::{Precondition, Registry};

use crate::distribution::{client, manifest, push_image};
use crate::support::distribution::Distribution;
use crate::support::registry::{Options, TestRegistry};
use crate::support::values::{body_of, desc, repo};

/// A cron that does not fire during a test: only events sync.
pub(crate) const NEVER: &str = r#"{ cron = "0 0 1 1 *" }"#;

/// `serve` on a bound listener with a config written to a temp dir;
/// cancelled on drop.
pub(crate) struct EventDaemon {
    pub(crate) addr: SocketAddr,
    token: CancellationToken,
    task: Option<JoinHandle<Result<(), AppError>>>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for EventDaemon {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl EventDaemon {
    /// A listener on a free loopback port, for a config that must name it
    /// before the daemon starts.
    pub(crate) async fn bind() -> tokio::net::TcpListener {
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    /// Starts `serve` with `[state]` and `[server]` filled in and `body`
    /// (events, registries, jobs) after them. `api_token` is "api-secret".
    pub(crate) async fn start(listener: tokio::net::TcpListener, body: &str) -> EventDaemon {
        let dir = tempfile::tempdir().unwrap();
        let addr = listener.local_addr().unwrap();
        let db: PathBuf = dir.path().join("state.db");
        let toml = format!(
            "version = 1\n[limits]\ndrain_timeout = \"3s\"\n[state]\ndatabase = \"{}\"\n\
             [server]\nlisten = \"{addr}\"\napi_token = \"api-secret\"\n{body}",
            db.display()
        );
        let path = dir.path().join("ocimirror.toml");
        std::fs::write(&path, toml).unwrap();
        let config = ocimirror::config::load_with_env(&path, []).unwrap();
        let token = CancellationToken::new();
        let task = tokio::spawn(serve(config, listener, token.clone()));
        let d = EventDaemon {
            addr,
            token,
            task: Some(task),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _dir: dir,
        };
        // Ready once the state database is open (the API answers).
        eventually(
            "the daemon to open its database",
            Duration::from_secs(20),
            || async {
                let r = d.http.get(d.url("/api/v1/jobs")).send().await.ok()?;
                (r.status() == 200).then_some(())
            },
        )
        .await;
        d
    }

    /// `http://<addr><path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` with `headers`; the status and the response text.
    pub(crate) async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (u16, String) {
        let mut req = self.http.post(self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// GETs `path` as JSON (panics on a non-200).
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let (status, text) = self.http_get(path).await;
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// GETs `path`: the status and the text.
    pub(crate) async fn http_get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// GETs `path` as text.
    pub(crate) async fn get_text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The recorded webhook events of `job`, as (item, status, error).
    pub(crate) async fn events(&self, job: &str) -> Vec<(String, String, Option<String>)> {
        let v = self.get_json(&format!("/api/v1/jobs/{job}/events")).await;
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["item"].as_str().unwrap().to_string(),
                    e["status"].as_str().unwrap().to_string(),
                    e["error"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    /// Stops `serve` and checks it returned `Ok`.
    pub(crate) async fn stop(mut self) {
        self.token.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("serve did not stop")
            .unwrap()
            .unwrap();
    }
}

/// Polls `f` every 50 ms until it gives a value; panics after `limit`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the `/metrics` sample `name{labels}` (0 when absent).
pub(crate) async fn metric(d: &EventDaemon, name: &str, labels: &str) -> f64 {
    let text = d.get_text("/metrics").await;
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn distribution_push_then_signature_reach_the_target_without_a_scheduled_run() {
    let dst = TestRegistry::start(Options::default()).await;
    let listener = EventDaemon::bind().await;
    let hook = format!(
        "http://{}/webhooks/distribution/dist",
        listener.local_addr().unwrap()
    );
    let dist = Distribution::start_notifying(&hook, "hook-token");
    let d = EventDaemon::start(
        listener,
        &format!(
            r#"[events]
debounce = "100ms"
[events.sources.dist]
format = "distribution"
registry = "{dist}"
token = "hook-token"
[[jobs]]
name = "mirror"
source = "{dist}/team/app"
target = "{dst}/mirror/app"
schedule = {NEVER}
"#,
            dist = dist.host(),
            dst = dst.host()
        ),
    )
    .await;

    // The image, pushed by tag.
    let r = client(&dist, ocimirror::registry::http::UploadMode::Monolithic);
    let name = repo("team/app");
    let image = push_image(&r, &name, "evented", OCI_MANIFEST).await;
    r.manifest_put(
        &name,
        &Reference::Tag(Tag::new("v1").unwrap()),
        &image,
        Precondition::None,
    )
    .await
    .unwrap();
    let image_digest = image.digest().to_string();
    eventually(
        "the image on the target",
        Duration::from_secs(30),
        || async {
            let (_, bytes) = dst.manifest("mirror/app", "v1")?;
            (Digest::sha256(&bytes).to_string() == image_digest).then_some(())
        },
    )
    .await;

    // Then its signature, by digest, and the `sha256-<hex>` fallback tag
    // listing it: both pushes notify, and both mean "re-sync the subject".
    let payload = b"signature payload".to_vec();
    for (b, mt) in [
        (&b"{}".to_vec(), OCI_EMPTY),
        (&payload, "application/octet-stream"),
    ] {
        r.blob_put(&name, &desc(b, mt), body_of(b, 1000))
            .await
            .unwrap();
    }
    let signature = manifest(json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": desc(b"{}", OCI_EMPTY),
        "layers": [desc(&payload, "application/octet-stream")],
        "subject": image.descriptor(),
    }));
    r.manifest_put(
        &name,
        &signature.digest().clone().into(),
        &signature,
        Precondition::None,
    )
    .await
    .unwrap();
    // What a signing client does on a registry without the referrers API:
    // list the signature in the subject's fallback index.
    let index = merge_fallback_index(None, &[signature.descriptor()])
        .unwrap()
        .unwrap();
    let index = manifest(serde_json::from_slice(&index).unwrap());
    let fallback = Tag::new(&fallback_tag(image.digest())).unwrap();
    r.manifest_put(&name, &Reference::Tag(fallback), &index, Precondition::None)
        .await
        .unwrap();
    let sig_digest = signature.digest().to_string();
    eventually(
        "the signature on the target",
        Duration::from_secs(30),
        || async {
            dst.referrers("mirror/app", &image_digest)
                .contains(&sig_digest)
                .then_some(())
        },
    )
    .await;

    // Every accepted event ends synced, or ignored with a reason (the
    // image's own push by digest, before its tag), and the lag was measured.
    let events = eventually(
        "every event recorded done",
        Duration::from_secs(10),
        || async {
            let e = d.events("mirror").await;
            e.iter()
                .all(|(_, s, _)| s == "synced" || s == "ignored")
                .then_some(e)
        },
    )
    .await;
    let synced = |want: &str| events.iter().any(|(i, s, _)| i == want && s == "synced");
    assert!(synced("team/app:v1"), "{events:?}");
    // The fallback tag's push names the subject; the signature's (by
    // digest) is resolved to it by reading the manifest.
    assert!(
        synced(&format!("team/app:subject {image_digest}")),
        "{events:?}"
    );
    assert!(synced(&format!("team/app:{sig_digest}")), "{events:?}");
    for (item, status, error) in &events {
        if status == "ignored" {
            assert_eq!(item, &format!("team/app:{image_digest}"), "{events:?}");
            assert!(error.as_deref().unwrap_or_default().contains("no subject"));
        }
    }
    assert!(metric(&d, "ocimirror_webhook_push_to_mirrored_seconds_count", "").await >= 2.0);
    assert!(
        metric(
            &d,
            "ocimirror_webhook_events_total",
            "format=\"distribution\",outcome=\"accepted\""
        )
        .await
            >= 2.0
    );
    d.stop().await;
}

/// A source registry with `team/app:v1` and `:v2`, a target, and a daemon
/// with a generic source (token) and a GitHub source (HMAC).
async fn in_process(extra_events: &str) -> (TestRegistry, TestRegistry, EventDaemon) {
    let src = TestRegistry::start(Options::default()).await;
    src.seed_image("team/app", "v1", &[b"layer one"]);
    src.seed_image("team/app", "v2", &[b"layer two"]);
    let dst = TestRegistry::start(Options::default()).await;
    let d = EventDaemon::start(
        EventDaemon::bind().await,
        &format!(
            r#"[events]
max_body_bytes = 4096
{extra_events}
[events.sources.gen]
format = "generic"
registry = "{s}"
token = "gen-token"
[events.sources.gh]
format = "github"
registry = "{s}"
hmac_secret = "gh-key"
[[jobs]]
name = "mirror"
source = "{s}/team/app"
target = "{t}/mirror/app"
tags = {{ allow = ["v.*"] }}
schedule = {NEVER}
"#,
            s = src.host(),
            t = dst.host()
        ),
    )
    .await;
    (src, dst, d)
}

const GEN: &str = "/webhooks/generic/gen";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn refused_webhooks_start_nothing_and_signed_ones_sync() {
    let (src, dst, d) = in_process("debounce = \"50ms\"").await;
    let push = |tag: &str| json!({ "repository": "team/app", "tag": tag }).to_string();
    let auth = bearer("gen-token");

    let (status, text) = d.post(GEN, &[], push("v1")).await;
    assert_eq!(status, 401, "{text}");
    assert!(
        text.contains("\"gen\"") && !text.contains("gen-token"),
        "{text}"
    );
    assert_eq!(
        d.post(GEN, &[("authorization", &bearer("gen-tokem"))], push("v1"))
            .await
            .0,
        401
    );
    let (status, text) = d.post(GEN, &[("authorization", &auth)], "{not json").await;
    assert_eq!(status, 400);
    assert!(text.contains("generic webhook: invalid body"), "{text}");
    let (status, text) = d
        .post(
            GEN,
            &[("authorization", &auth)],
            json!({"repository": "team/app", "tag": "v1", "pad": "x".repeat(5000)}).to_string(),
        )
        .await;
    assert_eq!(status, 413, "{text}");
    // A source is reached only under its own format.
    assert_eq!(
        d.post(
            "/webhooks/harbor/gen",
            &[("authorization", &auth)],
            push("v1")
        )
        .await
        .0,
        404
    );
    for (reason, n) in [
        ("unauthorized", 2.0),
        ("malformed", 1.0),
        ("too_large", 1.0),
    ] {
        let labels = format!("format=\"generic\",reason=\"{reason}\"");
        assert_eq!(
            metric(&d, "ocimirror_webhook_rejected_total", &labels).await,
            n,
            "{reason}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        dst.tags("mirror/app").is_empty(),
        "a refused webhook started a sync"
    );
    assert!(d.events("mirror").await.is_empty());

    // A tag the job does not select is counted and ignored.
    let (status, text) = d.post(GEN, &[("authorization", &auth)], push("dev")).await;
    assert_eq!(status, 202, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["ignored"].as_u64()),
        (Some(0), Some(1))
    );

    // GitHub signs the body: a good signature syncs v1.
    let body = json!({
        "action": "published",
        "registry_package": {
            "namespace": "team", "name": "app", "package_type": "CONTAINER",
            "package_version": {"container_metadata": {"tag": {"name": "v1", "digest": ""}}}
        }
    })
    .to_string();
    let sig = format!(
        "sha256={}",
        hex::encode(hmac_sha256(b"gh-key", body.as_bytes()))
    );
    let gh = [
        ("x-github-event", "registry_package"),
        ("x-hub-signature-256", sig.as_str()),
    ];
    let (status, text) = d.post("/webhooks/github/gh", &gh, body.clone() + " ").await;
    assert_eq!(status, 401, "a signature over another body: {text}");
    let (status, text) = d.post("/webhooks/github/gh", &gh, body).await;
    assert_eq!(status, 202, "{text}");
    let want = src.manifest("team/app", "v1").unwrap().1;
    eventually("v1 on the target", Duration::from_secs(20), || async {
        (dst.manifest("mirror/app", "v1")?.1 == want).then_some(())
    })
    .await;

    // An event whose item cannot be synced is recorded failed, by name.
    let (status, _) = d.post(GEN, &[("authorization", &auth)], push("v404")).await;
    assert_eq!(status, 202);
    let events = eventually("the failed event", Duration::from_secs(20), || async {
        let e = d.events("mirror").await;
        e.iter()
            .any(|(i, s, _)| i == "team/app:v404" && s == "failed")
            .then_some(e)
    })
    .await;
    let (_, _, error) = events
        .iter()
        .find(|(i, _, _)| i == "team/app:v404")
        .unwrap();
    assert!(
        error.as_deref().unwrap_or_default().contains("v404"),
        "{error:?}"
    );
    assert!(
        events
            .iter()
            .any(|(i, s, _)| i == "team/app:v1" && s == "synced"),
        "{events:?}"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_429_and_loses_no_accepted_event() {
    let (_src, dst, d) = in_process("debounce = \"1s\"\nqueue_capacity = 1").await;
    let auth = bearer("gen-token");
    let push = |tag: &str| json!({ "repository": "team/app", "tag": tag }).to_string();
    assert_eq!(
        d.post(GEN, &[("authorization", &auth)], push("v1")).await.0,
        202
    );
    let r = d
        .http
        .post(d.url(GEN))
        .header("authorization", &auth)
        .body(push("v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    // The waiting item still takes more events (dedupe).
    assert_eq!(
        d.post(GEN, &[("authorization", &auth)], push("v1")).await.0,
        202
    );
    assert_eq!(metric(&d, "ocimirror_webhook_queue_depth", "").await, 1.0);
    eventually("v1 on the target", Duration::from_secs(20), || async {
        dst.manifest("mirror/app", "v1").map(|_| ())
    })
    .await;
    let events = eventually("both v1 events synced", Duration::from_secs(10), || async {
        let e = d.events("mirror").await;
        (e.len() == 2
            && e.iter()
                .all(|(i, s, _)| i == "team/app:v1" && s == "synced"))
        .then_some(e)
    })
    .await;
    assert_eq!(events.len(), 2);
    assert!(
        dst.manifest("mirror/app", "v2").is_none(),
        "a refused event was synced"
    );
    assert_eq!(
        metric(
            &d,
            "ocimirror_webhook_rejected_total",
            "format=\"generic\",reason=\"queue_full\""
        )
        .await,
        1.0
    );
    d.stop().await;
}
