//! Observability: the operator endpoints over real HTTP, the dashboard and
//! alerting rules checked against the metrics `Metrics` defines, and
//! promtool. `observability_daemon` runs the real daemon, scrapes it, and
//! points a real Prometheus at it.

pub mod shared;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use ocimirror::copy::Representation;
use ocimirror::metrics::{self, Metrics, PolicyResult, RunResult, SignatureResult};
use ocimirror::server::{self, Health};
use tokio::sync::oneshot;

use shared::{Rule, alert_rules, all_queries, dashboard, dashboard_queries, repo_file};

const JOBS: [&str; 2] = ["alpha", "beta"];
const REGISTRY: &str = "reg.example";
const HUB: &str = "registry-1.docker.io";

/// Calls every update method of `Metrics`: job `alpha` succeeds, `beta`
/// fails, requests see 2xx, 429, 5xx and transport errors. Called
/// repeatedly, it keeps every counter moving so `rate()` is not zero.
fn feed(m: &Metrics) {
    for job in JOBS {
        m.job_configured(job, 300.0);
        m.run_started(job);
        m.blob_copied(job, REGISTRY, 1000);
        m.blob_skipped(job, REGISTRY, 200);
        m.blob_mounted(job, REGISTRY, 300);
        m.manifest_copied(job, REGISTRY);
        m.manifest_skipped(job, REGISTRY);
        m.tag_copied(job, REGISTRY);
        m.tag_skipped(job, REGISTRY);
        m.referrer_copied(
            job,
            Representation::Api.label(),
            Representation::FallbackTag.label(),
        );
        m.referrer_copied(
            job,
            Representation::CosignTag.label(),
            Representation::CosignTag.label(),
        );
        m.referrers_skipped(
            job,
            Representation::FallbackTag.label(),
            Representation::Api.label(),
            1,
        );
        m.cosign_converted(job, "to_referrers", 1);
        m.error(job, REGISTRY, "transport");
        m.items_pending(job, 3);
        m.items_failing(job, 1);
        m.mirror_lag(job, 120.0);
        m.deletions().job_enabled(job);
        m.deletions().deleted(job, "tag");
        m.deletions().guard(job, false);
        m.deletions().backed_up(job);
        m.policy_image(job, PolicyResult::Refused);
        m.policy_signature(job, SignatureResult::Rejected);
        m.replicas().joined(job, job == "alpha");
        m.replicas().claimed(job);
        m.replicas().held(job, 2);
    }
    m.replicas().live(2);
    m.run_finished("alpha", RunResult::Success, 12.0);
    m.run_finished("beta", RunResult::Failure, 3.0);
    for (op, status, secs) in [
        ("manifest_get", Some(200), 0.04),
        ("blob_get", Some(200), 1.5),
        ("blob_head", Some(404), 0.01),
        ("manifest_get", Some(429), 0.02),
        ("blob_put", Some(503), 0.3),
        ("blob_put", None, 5.0),
    ] {
        m.request_finished(REGISTRY, op, status, secs);
        m.request_finished(HUB, op, status, secs);
    }
    m.retry(REGISTRY, "blob_put");
    m.retry(HUB, "manifest_get");
    m.rate_limiter_waited(REGISTRY, 0.0);
    m.rate_limiter_waited(HUB, 0.8);
    m.docker_hub_remaining(HUB, 42);
    m.docker_hub_limit(HUB, 100);
}

/// The metrics server on a loopback port 0, stopped by dropping `stop`.
struct MetricsServer {
    addr: SocketAddr,
    health: Health,
    _stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_server(metrics: Arc<Metrics>) -> MetricsServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = Health::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listener, metrics, health.clone(), async {
        let _ = stopped.await;
    }));
    MetricsServer {
        addr,
        health,
        _stop: stop,
        task,
    }
}

#[tokio::test]
async fn endpoints_serve_metrics_liveness_and_readiness() {
    let metrics = Arc::new(Metrics::new().unwrap());
    metrics.blob_copied("alpha", REGISTRY, 7);
    let srv = start_server(metrics.clone()).await;
    let base = format!("http://{}", srv.addr);
    let http = reqwest::Client::new();

    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        metrics::CONTENT_TYPE
    );
    let body = r.text().await.unwrap();
    assert!(
        body.contains("# TYPE ocimirror_blob_bytes_total counter"),
        "{body}"
    );
    assert!(body.contains(
        r#"ocimirror_blob_bytes_total{action="copied",mirror_job="alpha",registry="reg.example"} 7"#
    ));
    // Updates after start show on the next scrape.
    metrics.blob_copied("alpha", REGISTRY, 3);
    let body = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(body.text().await.unwrap().contains(
        r#"ocimirror_blob_bytes_total{action="copied",mirror_job="alpha",registry="reg.example"} 10"#
    ));

    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().trim(), "ok");

    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.text().await.unwrap().trim(),
        "not ready: config not loaded, database not ready, scheduler not running"
    );
    srv.health.set_config_loaded(true);
    srv.health.set_database_ready(true);
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.text().await.unwrap().trim(),
        "not ready: scheduler not running"
    );
    srv.health.set_scheduler_running(true);
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let r = http.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // The shutdown future stops the server cleanly.
    let MetricsServer {
        addr, _stop, task, ..
    } = srv;
    drop(_stop);
    task.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

// ---------------------------------------------------------------------------
// Dashboard and alerting rules
// ---------------------------------------------------------------------------

/// Metric families `Metrics` exposes, with their type, read from `# TYPE`.
fn defined_metrics() -> BTreeMap<String, String> {
    let m = Metrics::new().unwrap();
    feed(&m);
    let defined: BTreeMap<String, String> = m
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect();
    let names: BTreeSet<&str> = defined.keys().map(String::as_str).collect();
    let listed: BTreeSet<&str> = metrics::metric_names().iter().copied().collect();
    assert_eq!(names, listed, "feed() must reach every metric");
    defined
}

/// Checks every `ocimirror_*` identifier in `expr` against the defined
/// metrics, allowing the `_bucket`/`_sum`/`_count` series of histograms.
fn undefined_names(expr: &str, defined: &BTreeMap<String, String>) -> Vec<String> {
    shared::metric_names_in(expr)
        .into_iter()
        .filter(|name| {
            if defined.contains_key(name) {
                return false;
            }
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s));
            !matches!(base.and_then(|b| defined.get(b)), Some(k) if k == "histogram")
        })
        .collect()
}

#[test]
fn dashboard_and_alerts_use_only_defined_metrics() {
    let defined = defined_metrics();
    let panels = dashboard_queries(&dashboard()).len();
    assert!(panels >= 20, "dashboard has {panels} queries");

    let mut used = BTreeSet::new();
    for (what, expr) in all_queries() {
        let bad = undefined_names(&expr, &defined);
        assert!(
            bad.is_empty(),
            "{what}: {bad:?} not defined by Metrics in {expr}"
        );
        used.extend(shared::metric_names_in(&expr));
    }
    // The checker itself rejects what it should.
    assert_eq!(
        undefined_names("rate(ocimirror_blobs_copied_total[1m])", &defined),
        ["ocimirror_blobs_copied_total"]
    );
    assert_eq!(
        undefined_names("ocimirror_blobs_total_count", &defined),
        ["ocimirror_blobs_total_count"],
        "only histograms have _count series"
    );
    assert!(used.len() >= 15, "few metrics used: {used:?}");
}

#[test]
fn dashboard_has_datasource_and_filter_variables() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    for (name, label) in [("job", "mirror_job"), ("registry", "registry")] {
        let def = var(name)["definition"].as_str().unwrap();
        assert!(
            def.starts_with("label_values(ocimirror_") && def.ends_with(&format!(", {label})")),
            "{name}: {def}"
        );
    }
    let rows: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "Overview",
            "Throughput",
            "Referrers and conversions",
            "Errors",
            "Registry latency",
            "Rate limiting",
            "Webhooks",
            "Deletions",
            "cosign conversion",
            "Signature policy",
            "Replicas"
        ]
    );
    for p in d["panels"].as_array().unwrap() {
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(p["description"].as_str().is_some_and(|s| !s.is_empty()));
        }
    }
}

#[test]
fn every_alert_has_for_severity_and_annotations() {
    let file = alert_rules();
    let rules: Vec<&Rule> = file.groups.iter().flat_map(|g| &g.rules).collect();
    assert_eq!(file.groups[0].name, "ocimirror");
    let names: BTreeSet<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
    for wanted in [
        "OcimirrorJobFailing",
        "OcimirrorMirrorStale",
        "OcimirrorRegistryErrorRatioHigh",
        "OcimirrorRegistryRateLimited",
        "OcimirrorRateLimiterSaturated",
        "OcimirrorDockerHubQuotaLow",
    ] {
        assert!(names.contains(wanted), "missing alert {wanted}");
    }
    for r in rules {
        assert!(r.for_.is_some(), "{} has no `for`", r.alert);
        let sev = r.labels.get("severity").map(String::as_str);
        assert!(
            matches!(sev, Some("critical" | "warning")),
            "{}: severity {sev:?}",
            r.alert
        );
        for a in ["summary", "description"] {
            assert!(
                r.annotations.get(a).is_some_and(|s| !s.is_empty()),
                "{} has no {a}",
                r.alert
            );
        }
    }
}

#[test]
fn monitoring_doc_lists_every_metric_and_alert() {
    let doc = std::fs::read_to_string(repo_file("README.md")).unwrap();
    for name in metrics::metric_names() {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "README.md lacks {name}"
        );
    }
    for r in alert_rules().groups.iter().flat_map(|g| &g.rules) {
        assert!(
            doc.contains(&format!("| `{}` |", r.alert)),
            "README.md lacks {}",
            r.alert
        );
    }
}

fn promtool() -> String {
    std::env::var("OCIMIRROR_PROMTOOL_BIN").unwrap_or_else(|_| "/usr/bin/promtool".into())
}

#[test]
fn promtool_checks_and_unit_tests_the_alerting_rules() {
    let dir = repo_file("dashboards");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(promtool())
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (tests/run installs prometheus)", promtool()));
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
