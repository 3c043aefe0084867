//! Helpers shared by the observability tests: the dashboard's and the
//! alerting rules' queries, a parser for the text exposition format, and a
//! real Prometheus process that scrapes one target and answers every
//! dashboard query.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use figment::providers::{Format, Yaml};
use serde::Deserialize;

/// A file of the repository.
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ---------------------------------------------------------------------------
// Dashboard and alerting rules
// ---------------------------------------------------------------------------

/// `dashboards/ocimirror.json`.
pub fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(repo_file("dashboards/ocimirror.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The panel queries of the dashboard: (panel title, expr).
pub fn dashboard_queries(d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        let nested = p["panels"].as_array().into_iter().flatten();
        for panel in std::iter::once(p).chain(nested) {
            for t in panel["targets"].as_array().into_iter().flatten() {
                let title = panel["title"].as_str().unwrap().to_string();
                out.push((title, t["expr"].as_str().unwrap().to_string()));
            }
        }
    }
    out
}

/// `dashboards/alerts.yml`.
#[derive(Debug, Deserialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
pub struct Rule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for")]
    pub for_: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

pub fn alert_rules() -> RuleFile {
    let text = std::fs::read_to_string(repo_file("dashboards/alerts.yml")).unwrap();
    figment::Figment::from(Yaml::string(&text))
        .extract()
        .unwrap()
}

/// Every query of the dashboard (panels and variables) and of the alerting
/// rules: (where, expr).
pub fn all_queries() -> Vec<(String, String)> {
    let d = dashboard();
    let mut exprs = dashboard_queries(&d);
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            exprs.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    for r in alert_rules().groups.iter().flat_map(|g| &g.rules) {
        exprs.push((format!("alert {}", r.alert), r.expr.clone()));
    }
    exprs
}

/// The `ocimirror_*` series names `expr` reads.
pub fn metric_names_in(expr: &str) -> BTreeSet<String> {
    let ident = regex::Regex::new(r"ocimirror_[a-z0-9_]+").unwrap();
    ident
        .find_iter(expr)
        .map(|m| m.as_str().to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// The text exposition format
// ---------------------------------------------------------------------------

/// One sample of a `/metrics` page.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the samples of a text-format page (our own output: label values
/// hold no `,` or `"`, which keeps the parser small).
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').unwrap();
                    let labels = inner
                        .split(',')
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap();
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, BTreeMap::new()),
            };
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("{l}: {e}")),
            };
            Sample {
                name: name.to_string(),
                labels,
                value,
            }
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include `labels`
/// (`None` when there is no such sample).
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

// ---------------------------------------------------------------------------
// A real Prometheus
// ---------------------------------------------------------------------------

/// A Prometheus process in a temp dir, killed on drop.
pub struct Prometheus {
    child: Child,
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second as job `ocimirror`
    /// and evaluating `dashboards/alerts.yml` every second.
    pub fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [{:?}]\n\
                 scrape_configs:\n  - job_name: ocimirror\n    \
                 static_configs: [{{targets: [\"{target}\"]}}]\n",
                repo_file("dashboards/alerts.yml")
            ),
        )
        .unwrap();
        // Prometheus cannot report a port it picked, so take a free one and
        // release it just before the start.
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let bin = std::env::var("OCIMIRROR_PROMETHEUS_BIN")
            .unwrap_or_else(|_| "/usr/bin/prometheus".into());
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (tests/run installs prometheus)"));
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log when the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("prometheus exited with {status}:\n{}", self.log());
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 200 ms until it returns `Ok`, or panics at
/// `deadline` with its last `Err` and the Prometheus log.
pub async fn poll<T, F, Fut>(
    prom: &mut Prometheus,
    deadline: Instant,
    what: &str,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    loop {
        prom.assert_running();
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!(
                "{what}: gave up waiting: {last}\nprometheus log:\n{}",
                prom.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn query(
    http: &reqwest::Client,
    base: &str,
    q: &str,
) -> Result<serde_json::Value, String> {
    get_json(http, &format!("{base}/api/v1/query"), &[("query", q)]).await
}

pub async fn get_json(
    http: &reqwest::Client,
    url: &str,
    params: &[(&str, &str)],
) -> Result<serde_json::Value, String> {
    let r = http
        .get(url)
        .query(params)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body = r.text().await.map_err(|e| e.to_string())?;
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// Waits until Prometheus scrapes its target successfully.
pub async fn wait_until_up(prom: &mut Prometheus, http: &reqwest::Client, deadline: Instant) {
    let base = prom.url.clone();
    poll(prom, deadline, "scrape target up", || async {
        let v = query(http, &base, "up{job=\"ocimirror\"} == 1").await?;
        let n = v["data"]["result"].as_array().map_or(0, Vec::len);
        if n == 1 { Ok(()) } else { Err(v.to_string()) }
    })
    .await;
}

/// The values of `label` on series of `metric`, as Grafana's
/// `label_values()` variable query asks for them.
pub async fn label_values(
    http: &reqwest::Client,
    base: &str,
    label: &str,
    metric: &str,
) -> Vec<String> {
    let url = format!("{base}/api/v1/label/{label}/values");
    let v = get_json(http, &url, &[("match[]", metric)]).await.unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// Runs every dashboard panel query (with `$__rate_interval` set to
/// `rate_interval` and every filter variable to "All") until each returns
/// a non-empty result with at least one finite value; panics on a query
/// Prometheus refuses. Returns, per query, the series whose value is not
/// finite (NaN from a 0/0 ratio or a quantile over no observations).
pub async fn assert_dashboard_queries_answer(
    prom: &mut Prometheus,
    http: &reqwest::Client,
    deadline: Instant,
    rate_interval: &str,
) -> Vec<(String, serde_json::Value)> {
    let base = prom.url.clone();
    let mut not_finite = Vec::new();
    for (title, expr) in dashboard_queries(&dashboard()) {
        let q = expr
            .replace("$__rate_interval", rate_interval)
            .replace("$job", ".*")
            .replace("$registry", ".*");
        let result = poll(prom, deadline, &title, || async {
            let v = query(http, &base, &q).await?;
            if v["status"] != "success" {
                // A query Prometheus refuses will not get better: fail now.
                panic!("{title}: {q}: {v}");
            }
            match v["data"]["result"].as_array() {
                Some(r) if r.iter().any(finite) => Ok(r.clone()),
                Some(r) if !r.is_empty() => Err(format!("{q}: no finite value in {r:?}")),
                _ => Err(format!("{q}: empty result")),
            }
        })
        .await;
        for s in result.into_iter().filter(|s| !finite(s)) {
            not_finite.push((title.clone(), s));
        }
    }
    not_finite
}

fn finite(series: &serde_json::Value) -> bool {
    series["value"][1]
        .as_str()
        .is_some_and(|v| v.parse::<f64>().is_ok_and(f64::is_finite))
}

/// Waits until Prometheus has loaded every alerting rule and evaluated each
/// without error; panics on a rule whose evaluation fails. Returns the
/// rules as Prometheus reports them.
pub async fn assert_rules_evaluate(
    prom: &mut Prometheus,
    http: &reqwest::Client,
    deadline: Instant,
) -> Vec<serde_json::Value> {
    let base = prom.url.clone();
    let expected = alert_rules()
        .groups
        .iter()
        .map(|g| g.rules.len())
        .sum::<usize>();
    poll(prom, deadline, "rules evaluated", || async {
        let v = get_json(http, &format!("{base}/api/v1/rules"), &[]).await?;
        let rules: Vec<serde_json::Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        for r in &rules {
            if r["health"] == "err" {
                panic!("rule {} fails: {}", r["name"], r["lastError"]);
            }
        }
        if rules.len() == expected && rules.iter().all(|r| r["health"] == "ok") {
            Ok(rules)
        } else {
            Err(v.to_string())
        }
    })
    .await
}
