//! Observability of the real daemon: `serve` (the core of `ocimirror serve`)
//! runs a small mirror job between two test registries and a job whose
//! source does not exist. Its `/metrics` must carry a sample of every metric
//! the dashboard and the alerting rules read, its counters must match what
//! the fixture holds, what the target received and what the state database
//! recorded, and a real Prometheus scraping it must answer every dashboard
//! query and evaluate every alerting rule.
//!
//! Setup: the source has the referrers API and sends Docker Hub style
//! `ratelimit-*` headers; the target has no referrers API (so referrers are
//! converted from the API to fallback tags) and answers one upload start
//! (POST) with 429 + `Retry-After` and one with 503 (so retries and
//! rate-limit series exist).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ocimirror::app::{AppError, serve};
use ocimirror::metrics::{metric_names, names};
use ocimirror::store::{RunResult, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::observability::shared::{
    self, Prometheus, Sample, all_queries, label_values, parse_samples, sum,
};
use crate::support::fixtures::{self, Fixture, Form, fallback_tag};
use crate::support::registry::{Fault, FaultKind, Options, RetryAfter, TestRegistry};

const SRC_REPO: &str = "team/app";
const DST_REPO: &str = "mirror/app";
/// The job that copies `SRC_REPO`.
const MIRROR: &str = "mirror";
/// The job whose source repository does not exist.
const BROKEN: &str = "broken";
/// `limits.drain_timeout` of the test config.
const DRAIN: Duration = Duration::from_secs(5);
/// Docker Hub style `(limit, remaining)` the source announces.
const HUB: (u64, u64) = (100, 42);

/// The daemon under test with its registries; cancelled on drop.
struct Daemon {
    addr: SocketAddr,
    token: CancellationToken,
    task: Option<JoinHandle<Result<(), AppError>>>,
    src: TestRegistry,
    dst: TestRegistry,
    fixture: Fixture,
    database: std::path::PathBuf,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The faults the target answers upload starts with (a cold copy into a
/// new repository asks no blob HEAD): one 429 with `Retry-After: 1`, one
/// 503. Both are retried.
fn push_target_faults(dst: &TestRegistry) {
    dst.push_fault(Fault::once(
        Some("POST"),
        "/blobs/uploads/",
        FaultKind::TooManyRequests(RetryAfter::Seconds(1)),
    ));
    dst.push_fault(Fault::once(
        Some("POST"),
        "/blobs/uploads/",
        FaultKind::Status(503),
    ));
}

impl Daemon {
    /// Seeds the source, writes and loads a config file, and starts `serve`
    /// on a listener bound to port 0.
    async fn start() -> Daemon {
        let src = TestRegistry::start(Options {
            ratelimit: Some(HUB),
            ..Options::default()
        })
        .await;
        let fixture = fixtures::image(Form::Api, "daemon");
        fixtures::seed_registry(&src, SRC_REPO, &fixture);
        let dst = TestRegistry::start(Options {
            referrers_api: false,
            ..Options::default()
        })
        .await;
        push_target_faults(&dst);

        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("state.db");
        let (s, d) = (src.host(), dst.host());
        // Bound here and handed to the daemon: no race for a free port.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = listener.local_addr().unwrap();
        let toml = format!(
            r#"version = 1

[limits]
concurrent_jobs = 2
drain_timeout = "{drain}s"

[state]
database = "{db}"

[server]
listen = "{listen}"

[registries."{s}"]
plain_http = true
requests_per_second = 1000.0
max_in_flight = 4

[registries."{d}"]
plain_http = true
referrers = "auto"

[events.sources.hook]
format = "generic"
registry = "{s}"
token = "hook-token"

[[jobs]]
name = "{MIRROR}"
source = "{s}/{SRC_REPO}"
target = "{d}/{DST_REPO}"
schedule = {{ interval = "2s" }}
# Deletion sync on, so its metrics have series (nothing is deleted).
delete = {{ enabled = true }}

[[jobs]]
name = "{BROKEN}"
source = "{s}/team/missing"
target = "{d}/mirror/missing"
schedule = {{ interval = "2s" }}
"#,
            drain = DRAIN.as_secs(),
            db = database.display(),
        );
        let path = dir.path().join("ocimirror.toml");
        std::fs::write(&path, toml).unwrap();
        let config = ocimirror::config::load_with_env(&path, []).unwrap();
        assert_eq!(config.server.listen, listen);
        assert_eq!(config.limits.drain_timeout, DRAIN);

        let token = CancellationToken::new();
        let task = tokio::spawn(serve(config, listener, token.clone()));
        Daemon {
            addr: listen,
            token,
            task: Some(task),
            src,
            dst,
            fixture,
            database,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// One scrape of `/metrics` (`Err` while the listener is not up).
    async fn scrape(&self) -> Result<Vec<Sample>, String> {
        let r = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("/metrics: {}", r.status()));
        }
        Ok(parse_samples(&r.text().await.map_err(|e| e.to_string())?))
    }

    /// Scrapes until `check` accepts the samples, or panics after 60 s with
    /// its last complaint.
    async fn scrape_until<F>(&self, what: &str, mut check: F) -> Vec<Sample>
    where
        F: FnMut(&[Sample]) -> Result<(), String>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(t) = &self.task
                && t.is_finished()
            {
                panic!("the daemon stopped while waiting for {what}");
            }
            let last = match self.scrape().await {
                Ok(samples) => match check(&samples) {
                    Ok(()) => return samples,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            assert!(Instant::now() < deadline, "{what}: gave up: {last}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until both jobs finished a run: `mirror` successfully and
    /// `broken` with a failure.
    async fn first_runs(&self) -> Vec<Sample> {
        self.scrape_until("the first runs", |s| {
            let ok = sum(s, names::LAST_SUCCESS, &[("mirror_job", MIRROR)]);
            let failed = sum(s, names::LAST_FAILURE, &[("mirror_job", BROKEN)]);
            match (ok, failed) {
                (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Ok(()),
                other => Err(format!("last success/failure: {other:?}")),
            }
        })
        .await
    }

    /// Cancels the token and waits for `serve` to return; it must do so
    /// within the drain timeout (plus slack for the listener) and with `Ok`.
    async fn stop(&mut self) {
        self.token.cancel();
        let task = self.task.take().unwrap();
        let outcome = tokio::time::timeout(DRAIN + Duration::from_secs(5), task)
            .await
            .expect("serve did not return within the drain timeout");
        outcome.unwrap().unwrap();
        assert!(
            tokio::net::TcpStream::connect(self.addr).await.is_err(),
            "the metrics listener is still open"
        );
    }
}

/// What the fixture makes the `mirror` job copy.
struct Expected {
    blobs: u64,
    blob_bytes: u64,
    manifests: u64,
    referrers: u64,
}

impl Expected {
    fn of(f: &Fixture) -> Expected {
        Expected {
            blobs: f.blobs.len() as u64,
            blob_bytes: f.blobs.iter().map(|b| b.len() as u64).sum(),
            manifests: f.manifests.len() as u64,
            referrers: f.edges.len() as u64,
        }
    }

    /// Differences between the counters of `mirror` and what was expected.
    fn mismatches(&self, s: &[Sample], dst: &str, tags: u64) -> Vec<String> {
        let job = ("mirror_job", MIRROR);
        let reg = ("registry", dst);
        let copied = ("action", "copied");
        let checks = [
            (names::BLOBS, vec![job, reg, copied], self.blobs),
            (names::BLOB_BYTES, vec![job, reg, copied], self.blob_bytes),
            (names::MANIFESTS, vec![job, reg, copied], self.manifests),
            (names::TAGS, vec![job, reg, copied], tags),
            (
                names::REFERRERS,
                vec![
                    job,
                    copied,
                    ("source_repr", "api"),
                    ("target_repr", "fallback_tag"),
                ],
                self.referrers,
            ),
            (
                names::REFERRER_CONVERSIONS,
                vec![job, ("source_repr", "api"), ("target_repr", "fallback_tag")],
                self.referrers,
            ),
        ];
        checks
            .into_iter()
            .filter_map(|(name, labels, want)| {
                let got = sum(s, name, &labels);
                (got != Some(want as f64))
                    .then(|| format!("{name}{labels:?}: {got:?}, want {want}"))
            })
            .collect()
    }
}

/// Every series name the dashboard and the alerting rules read.
fn used_series() -> BTreeSet<String> {
    all_queries()
        .iter()
        .flat_map(|(_, expr)| shared::metric_names_in(expr))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_metrics_cover_the_dashboard_and_count_what_was_copied() {
    let mut daemon = Daemon::start().await;
    let dst_host = daemon.dst.host();
    let src_host = daemon.src.host();
    let want = Expected::of(&daemon.fixture);
    daemon.first_runs().await;
    // Copy events reach the counters through a channel: wait until they
    // settle on the expected values (a wrong count never does).
    let s = daemon
        .scrape_until("the copy counters", |s| {
            let bad = want.mismatches(s, &dst_host, 1);
            if bad.is_empty() {
                Ok(())
            } else {
                Err(bad.join("; "))
            }
        })
        .await;

    // Every series the dashboard and the alerts read has a sample, and so
    // does every metric the daemon defines.
    let present: BTreeSet<&str> = s.iter().map(|x| x.name.as_str()).collect();
    let missing: Vec<String> = used_series()
        .into_iter()
        .filter(|n| !present.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "no sample of {missing:?}");
    for name in metric_names() {
        assert!(
            present.contains(name) || present.contains(format!("{name}_count").as_str()),
            "no sample of {name}"
        );
    }

    // The counters match what the target received.
    let f = &daemon.fixture;
    let dst = &daemon.dst;
    for b in &f.blobs {
        assert_eq!(
            dst.blob(DST_REPO, &fixtures::sha256(b)).as_deref(),
            Some(&b[..])
        );
    }
    for m in &f.manifests {
        assert_eq!(
            dst.manifest(DST_REPO, &m.digest).map(|x| x.1),
            Some(m.bytes.clone())
        );
    }
    let uploads = dst
        .log()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/") && r.status == 201)
        .count();
    assert_eq!(
        uploads as u64, want.blobs,
        "blob uploads the target accepted"
    );
    let subjects: BTreeSet<&str> = f.edges.iter().map(|e| e.subject.as_str()).collect();
    // Manifest PUTs: the copied manifests (the root once, by its tag), one
    // fallback index per subject (written by ocimirror, so not in
    // ocimirror_manifests_total).
    let manifest_puts = dst
        .log()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/") && r.status == 201)
        .count();
    assert_eq!(
        manifest_puts as u64,
        want.manifests + subjects.len() as u64,
        "manifest PUTs the target accepted"
    );
    let mut expected_tags: BTreeSet<String> = subjects.iter().map(|d| fallback_tag(d)).collect();
    expected_tags.insert("v1".into());
    assert_eq!(
        dst.tags(DST_REPO).into_iter().collect::<BTreeSet<_>>(),
        expected_tags,
        "v1 and one fallback tag per subject"
    );
    for subject in &subjects {
        let (_, index) = dst.manifest(DST_REPO, &fallback_tag(subject)).unwrap();
        let listed = fixtures::index_digests(&index);
        let want_listed: Vec<String> = f
            .edges
            .iter()
            .filter(|e| e.subject == *subject)
            .map(|e| e.referrer.clone())
            .collect();
        assert_eq!(
            listed.iter().collect::<BTreeSet<_>>(),
            want_listed.iter().collect::<BTreeSet<_>>()
        );
    }

    // Retries, rate limiting and Docker Hub headers, from the faults.
    let hd = [("registry", dst_host.as_str()), ("operation", "blob_put")];
    assert_eq!(sum(&s, names::RETRIES, &hd), Some(2.0));
    assert_eq!(sum(&s, names::RATE_LIMITED, &hd), Some(1.0));
    let count = format!("{}_count", names::REQUEST_DURATION);
    let with = |class| [hd[0], hd[1], ("status_class", class)];
    assert_eq!(sum(&s, &count, &with("5xx")), Some(1.0));
    assert!(sum(&s, &count, &with("4xx")).unwrap() >= 1.0);
    let put = [hd[0], ("operation", "blob_put"), ("status_class", "2xx")];
    assert!(sum(&s, &count, &put).unwrap() >= want.blobs as f64);
    let src = [("registry", src_host.as_str())];
    assert_eq!(sum(&s, names::DOCKER_HUB_LIMIT, &src), Some(HUB.0 as f64));
    assert_eq!(
        sum(&s, names::DOCKER_HUB_REMAINING, &src),
        Some(HUB.1 as f64)
    );
    assert!(sum(&s, &format!("{}_count", names::LIMITER_WAIT), &src).unwrap() >= 1.0);

    // Run results, errors and gauges per job.
    let mirror = [("mirror_job", MIRROR)];
    let broken = [("mirror_job", BROKEN)];
    assert_eq!(sum(&s, names::LAST_FAILURE, &mirror), Some(0.0));
    assert_eq!(sum(&s, names::LAST_SUCCESS, &broken), Some(0.0));
    let runs = format!("{}_count", names::RUN_DURATION);
    assert!(sum(&s, &runs, &[mirror[0], ("result", "success")]).unwrap() >= 1.0);
    assert!(sum(&s, &runs, &[broken[0], ("result", "failure")]).unwrap() >= 1.0);
    assert_eq!(sum(&s, names::ERRORS, &mirror), None, "mirror had no error");
    let not_found = [
        broken[0],
        ("registry", src_host.as_str()),
        ("kind", "not_found"),
    ];
    assert!(sum(&s, names::ERRORS, &not_found).unwrap() >= 1.0);
    for job in [mirror, broken] {
        assert_eq!(sum(&s, names::INTERVAL, &job), Some(2.0));
        assert_eq!(sum(&s, names::ITEMS_PENDING, &job), Some(0.0));
        assert_eq!(sum(&s, names::ITEMS_FAILING, &job), Some(0.0));
        assert_eq!(sum(&s, names::MIRROR_LAG, &job), Some(0.0));
        assert!(sum(&s, names::RUNNING, &job).is_some());
    }
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(sum(&s, names::BUILD_INFO, &version), Some(1.0));

    // Later runs find everything unchanged: the counters stay put.
    let runs_now = sum(&s, &runs, &[mirror[0]]).unwrap();
    let later = daemon
        .scrape_until("a later run of mirror", |s| {
            let n = sum(s, &runs, &[mirror[0]]).unwrap_or(0.0);
            if n > runs_now {
                Ok(())
            } else {
                Err(format!("{n} runs"))
            }
        })
        .await;
    assert_eq!(want.mismatches(&later, &dst_host, 1), Vec::<String>::new());

    // Health while running.
    for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let r = daemon.http.get(daemon.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap().trim(), body);
    }

    daemon.stop().await;

    // The state database recorded the same copy as the counters.
    let store = Store::open(&daemon.database).await.unwrap();
    let runs = store.last_runs(Some(MIRROR), 100).await.unwrap();
    let copying: Vec<_> = runs.iter().filter(|r| r.counts.images_copied > 0).collect();
    assert_eq!(copying.len(), 1, "{runs:?}");
    let c = &copying[0].counts;
    assert_eq!(copying[0].result, Some(RunResult::Success));
    assert_eq!(
        (c.blobs_copied, c.manifests_copied, c.referrers_copied),
        (want.blobs, want.manifests, want.referrers)
    );
    let broken_runs = store.last_runs(Some(BROKEN), 100).await.unwrap();
    assert!(!broken_runs.is_empty());
    assert!(
        broken_runs
            .iter()
            .filter(|r| !r.is_running())
            .all(|r| r.result == Some(RunResult::Failed)),
        "{broken_runs:?}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scraping_the_daemon_answers_every_dashboard_query() {
    let mut daemon = Daemon::start().await;
    let mut prom = Prometheus::start(daemon.addr);
    let http = daemon.http.clone();
    let base = prom.url.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    daemon.first_runs().await;
    shared::wait_until_up(&mut prom, &http, deadline).await;

    // The first copy may have ended before the first scrape. Copy a second
    // image (and hit the faults again) while Prometheus watches, so that
    // rate() and the ratios see counters move. It shares the empty config
    // blob with the first, so blobs are also skipped.
    let v2 = fixtures::image(Form::Api, "daemon v2");
    push_target_faults(&daemon.dst);
    for b in &v2.blobs {
        daemon.src.put_blob(SRC_REPO, b);
    }
    for m in &v2.manifests {
        daemon
            .src
            .put_manifest(SRC_REPO, &m.digest, &m.media_type, &m.bytes);
    }
    let index = v2.manifest(&v2.index);
    daemon
        .src
        .put_manifest(SRC_REPO, "v2", &index.media_type, &index.bytes);
    // A webhook announces v1 again while Prometheus watches: the event
    // sync finds it unchanged (no copy, so the counters below stay exact)
    // and observes the push-to-mirrored lag.
    let hook = daemon
        .http
        .post(daemon.url("/webhooks/generic/hook"))
        .header("authorization", "Bearer hook-token")
        .body(format!(
            "{{\"repository\": \"{SRC_REPO}\", \"tag\": \"v1\"}}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 202);
    let lag_count = format!("{}_count", names::WEBHOOK_LAG);
    daemon
        .scrape_until("the webhook's lag observed", |s| {
            match sum(s, &lag_count, &[]) {
                Some(n) if n >= 1.0 => Ok(()),
                other => Err(format!("{lag_count}: {other:?}")),
            }
        })
        .await;
    let dst_host = daemon.dst.host();
    let new_blobs = v2
        .blobs
        .iter()
        .filter(|b| !daemon.fixture.blobs.contains(b))
        .collect::<Vec<_>>();
    let want = Expected {
        blobs: daemon.fixture.blobs.len() as u64 + new_blobs.len() as u64,
        blob_bytes: Expected::of(&daemon.fixture).blob_bytes
            + new_blobs.iter().map(|b| b.len() as u64).sum::<u64>(),
        manifests: (daemon.fixture.manifests.len() + v2.manifests.len()) as u64,
        referrers: (daemon.fixture.edges.len() + v2.edges.len()) as u64,
    };
    assert!(new_blobs.len() < v2.blobs.len(), "v2 shares a blob with v1");
    daemon
        .scrape_until("the second image copied", |s| {
            let bad = want.mismatches(s, &dst_host, 2);
            if bad.is_empty() {
                Ok(())
            } else {
                Err(bad.join("; "))
            }
        })
        .await;
    // Prometheus has scraped the counters after the second copy.
    let copied = want.blobs.to_string();
    shared::poll(&mut prom, deadline, "second copy scraped", || async {
        let q = format!(
            "sum(ocimirror_blobs_total{{mirror_job=\"{MIRROR}\",action=\"copied\"}}) == {copied}"
        );
        let v = shared::query(&http, &base, &q).await?;
        match v["data"]["result"].as_array() {
            Some(r) if !r.is_empty() => Ok(()),
            _ => Err(v.to_string()),
        }
    })
    .await;
    // ... and has seen a successful run end since its first scrape: the
    // run that copied the second image may still be waiting out the
    // target's Retry-After, and the mean run duration of a job whose
    // runs' count did not move in the window is 0/0.
    shared::poll(&mut prom, deadline, "a run ended while scraped", || async {
        let q = format!(
            "increase({}_count{{mirror_job=\"{MIRROR}\",result=\"success\"}}[5m]) > 0",
            names::RUN_DURATION
        );
        let v = shared::query(&http, &base, &q).await?;
        match v["data"]["result"].as_array() {
            Some(r) if !r.is_empty() => Ok(()),
            _ => Err(v.to_string()),
        }
    })
    .await;

    // The variables' label_values() queries, as Grafana runs them.
    let jobs = label_values(&http, &base, "mirror_job", names::INTERVAL).await;
    assert_eq!(jobs, [BROKEN, MIRROR]);
    let count = format!("{}_count", names::REQUEST_DURATION);
    let registries = label_values(&http, &base, "registry", &count).await;
    let mut both = vec![daemon.src.host(), dst_host.clone()];
    both.sort();
    assert_eq!(registries, both);

    // A 5 minute window covers the whole test, so every counter that moved
    // since the first scrape has a non-zero rate.
    let not_finite =
        shared::assert_dashboard_queries_answer(&mut prom, &http, deadline, "5m").await;
    // NaN may only come from a per-operation latency quantile of an
    // operation whose count did not move in the window (a quantile over no
    // observations): e.g. the ping, or requests that all ran before the
    // first scrape. Ask Prometheus which those are rather than guess.
    let q = format!(
        "sum by (operation) (increase({}_count[5m])) == 0",
        names::REQUEST_DURATION
    );
    let idle = shared::query(&http, &base, &q).await.unwrap();
    let idle: Vec<&str> = idle["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["metric"]["operation"].as_str())
        .collect();
    assert!(
        !idle.contains(&"blob_put"),
        "blobs were uploaded while Prometheus watched: {idle:?}"
    );
    for (title, series) in &not_finite {
        let operation = series["metric"]["operation"].as_str().unwrap_or_default();
        assert!(
            title.starts_with("Request latency") && idle.contains(&operation),
            "{title}: not a number: {series} (idle operations: {idle:?})"
        );
    }

    let rules = shared::assert_rules_evaluate(&mut prom, &http, deadline).await;
    // The broken job fails, the mirror job is healthy: the first alert is
    // pending (its `for` has not passed), nothing else fires.
    let state = |name: &str| {
        rules
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["state"].as_str().unwrap_or_default().to_string())
            .unwrap()
    };
    let job_failing = shared::poll(&mut prom, deadline, "JobFailing pending", || async {
        let v = shared::get_json(&http, &format!("{base}/api/v1/alerts"), &[]).await?;
        let alerts = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
        let failing: Vec<_> = alerts
            .iter()
            .filter(|a| a["labels"]["alertname"] == "OcimirrorJobFailing")
            .cloned()
            .collect();
        if failing.is_empty() {
            Err(v.to_string())
        } else {
            Ok(failing)
        }
    })
    .await;
    assert_eq!(job_failing.len(), 1, "{job_failing:?}");
    assert_eq!(job_failing[0]["labels"]["mirror_job"], BROKEN);
    assert_eq!(job_failing[0]["state"], "pending");
    for name in [
        "OcimirrorDown",
        "OcimirrorMirrorStale",
        "OcimirrorDockerHubQuotaLow",
    ] {
        assert_eq!(state(name), "inactive", "{name}");
    }

    daemon.stop().await;
}
