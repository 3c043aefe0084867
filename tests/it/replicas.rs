//! Replicas sharing one PostgreSQL database: `ocimirror once` processes
//! mirror a catalog of 150 images from a registry with 40 ms of latency per
//! request. Three copy each object once, each doing a fair share; with one
//! of three killed (SIGKILL) mid-run the others finish its share and the
//! target equals the source; replicas that lose the database stop by name
//! and a later run completes. `status` shows each replica
//! and what it holds; `serve` replicas export it as metrics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Child;

use crate::observability::shared::free_port;
use crate::support::cli::{ocimirror_with_env, text};
use crate::support::postgres::Postgres;
use crate::support::registry::{LoggedRequest, Options, TestRegistry};
use crate::sync_jobs::incomplete_tags;

const REPOS: usize = 15;
const TAGS: usize = 10;
// Long enough that the run is bound by latency rather than by the CPU the
// other tests running in parallel leave (20 ms made the ratio noisy).
const LATENCY: Duration = Duration::from_millis(40);

fn slow_registry() -> Options {
    Options {
        latency: LATENCY,
        ..Options::default()
    }
}

/// 15 repositories of 10 images, each with its own config and layer.
fn seed_catalog(src: &TestRegistry) -> Vec<(String, String)> {
    let mut images = Vec::new();
    for r in 0..REPOS {
        let repo = format!("team/app{r}");
        for t in 0..TAGS {
            let tag = format!("v{t}");
            let layer = format!("layer of {repo}:{tag}").repeat(50);
            src.seed_image(&repo, &tag, &[layer.as_bytes()]);
            images.push((repo.clone(), tag));
        }
    }
    images
}

fn write_config(dir: &Path, src: &TestRegistry, dst: &TestRegistry) -> PathBuf {
    let text = format!(
        r#"version = 1
[state]
lease_ttl = "2s"

[[jobs]]
name = "catalog"
source = {{ registry = "{src}" }}
target = {{ registry = "{dst}", prefix = "m/" }}
schedule = {{ interval = "1h", jitter = "0s" }}
concurrency = 4
"#,
        src = src.host(),
        dst = dst.host(),
    );
    let path = dir.join("ocimirror.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A seeded source, an empty target (both slow) and a config mirroring
/// the one to the other.
struct Catalog {
    src: TestRegistry,
    images: Vec<(String, String)>,
    dst: TestRegistry,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Catalog {
    async fn new() -> Catalog {
        let src = TestRegistry::start(slow_registry()).await;
        let images = seed_catalog(&src);
        let dst = TestRegistry::start(slow_registry()).await;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &src, &dst);
        Catalog {
            src,
            images,
            dst,
            dir,
            config,
        }
    }
}

/// `ocimirror once` on the database at `url` (passed as a secret would be:
/// in the environment).
fn spawn_once(dir: &Path, config: &Path, url: &str) -> Child {
    spawn(dir, "once", config, url)
}

/// `ocimirror <command>` on the database at `url`.
fn spawn(dir: &Path, command: &str, config: &Path, url: &str) -> Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ocimirror"))
        .args([command, "-c", config.to_str().unwrap()])
        .current_dir(dir)
        .env("OCIMIRROR_STATE__DATABASE", url)
        .env("OCIMIRROR_LOG", "warn")
        .env_remove("OCIMIRROR_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn wait_ok(child: Child) {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("a replica did not finish within 60 s")
        .unwrap();
    assert!(
        out.status.success(),
        "replica failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `n` replicas at once on a fresh database; returns the wall time
/// and the number of items each replica did (from the shared run's items).
async fn mirror_with(
    pg: &Postgres,
    n: usize,
    src: &TestRegistry,
    dst: &TestRegistry,
) -> (Duration, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), src, dst);
    let url = pg.create_database();
    let started = Instant::now();
    let replicas: Vec<Child> = (0..n)
        .map(|_| spawn_once(dir.path(), &config, &url))
        .collect();
    for r in replicas {
        wait_ok(r).await;
    }
    let took = started.elapsed();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let done: Vec<i64> =
        sqlx::query_scalar("SELECT count(*) FROM run_items GROUP BY done_by ORDER BY done_by")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    (took, done.into_iter().map(|n| n as u64).collect())
}

/// Each blob written into a repository (an upload's closing `PUT
/// ...?digest=`, or a `POST ...?mount=` answered 201) and each manifest
/// PUT, with how many times it was sent.
fn writes(log: &[LoggedRequest]) -> HashMap<String, usize> {
    let param = |r: &LoggedRequest, name: &str| {
        r.query
            .as_deref()
            .and_then(|q| q.split('&').find_map(|p| p.strip_prefix(name)))
            .unwrap_or("?")
            .to_string()
    };
    let mut seen = HashMap::new();
    for r in log {
        let repo = r.path.split("/blobs/uploads/").next().unwrap_or("?");
        let key = match r.method.as_str() {
            "PUT" if r.path.contains("/blobs/uploads/") => {
                format!("blob {repo} {}", param(r, "digest="))
            }
            "PUT" => format!("manifest {}", r.path),
            "POST" if r.status == 201 && param(r, "mount=") != "?" => {
                format!("blob {repo} {}", param(r, "mount="))
            }
            _ => continue,
        };
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

/// Every image of the source is on the target, byte for byte, with every
/// tag pointing at complete content.
fn assert_target_equals_source(
    src: &TestRegistry,
    dst: &TestRegistry,
    images: &[(String, String)],
) {
    for (repo, tag) in images {
        let target_repo = format!("m/{repo}");
        assert_eq!(
            dst.manifest(&target_repo, tag),
            src.manifest(repo, tag),
            "{target_repo}:{tag}"
        );
    }
    for r in 0..REPOS {
        let repo = format!("m/team/app{r}");
        assert_eq!(incomplete_tags(dst, &repo), Vec::<String>::new(), "{repo}");
        assert_eq!(dst.tags(&repo).len(), TAGS, "{repo}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_copy_each_object_once_and_share_the_work() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let src = TestRegistry::start(slow_registry()).await;
    let images = seed_catalog(&src);
    let dst = TestRegistry::start(slow_registry()).await;
    let (took, done) = mirror_with(&pg, 3, &src, &dst).await;
    assert_target_equals_source(&src, &dst, &images);

    let counts = writes(&dst.log());
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    let manifests = counts.keys().filter(|k| k.starts_with("manifest")).count();
    let blobs = counts.keys().filter(|k| k.starts_with("blob")).count();
    // One manifest, one config and one layer per image (in its repository).
    assert_eq!((manifests, blobs), (REPOS * TAGS, 2 * REPOS * TAGS));
    // Each replica did a fair share (what makes them faster together; the
    // times themselves are measured by bench/replicas.sh, not here).
    eprintln!("3 replicas: {took:?}, items done each: {done:?}");
    assert_eq!(done.len(), 3, "{done:?}");
    assert_eq!(done.iter().sum::<u64>(), (REPOS * TAGS) as u64, "{done:?}");
    let fair = (REPOS * TAGS / 6) as u64;
    assert!(done.iter().all(|&n| n >= fair), "unfair shares: {done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_run_leaves_its_share_to_the_others() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let Catalog {
        src,
        images,
        dst,
        dir,
        config,
    } = Catalog::new().await;
    let url = pg.create_database();
    let mut replicas: Vec<Child> = (0..3)
        .map(|_| spawn_once(dir.path(), &config, &url))
        .collect();
    // Mid-run: some images are on the target, most are not.
    wait_until_copying(&dst).await;
    let mut victim = replicas.remove(0);
    victim.start_kill().unwrap(); // SIGKILL
    victim.wait().await.unwrap();
    let at_kill = dst.count("PUT", "/manifests/");
    assert!(at_kill < REPOS * TAGS, "the run was over before the kill");
    for r in replicas {
        wait_ok(r).await;
    }
    assert_target_equals_source(&src, &dst, &images);
}

/// Waits until the replicas are mid-run: some images on the target.
async fn wait_until_copying(dst: &TestRegistry) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while dst.count("PUT", "/manifests/") < 15 {
        assert!(
            Instant::now() < deadline,
            "the replicas did not start copying"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `ocimirror status` on the shared database, as JSON and as text.
async fn status(dir: &Path, config: &Path, url: &str) -> (serde_json::Value, String) {
    let env = [("OCIMIRROR_STATE__DATABASE", url)];
    let config = config.to_str().unwrap();
    let json = ocimirror_with_env(dir, &["status", "--output", "json", "-c", config], &env).await;
    assert!(json.status.success(), "{}", text(&json));
    let people = ocimirror_with_env(dir, &["status", "-c", config], &env).await;
    assert!(people.status.success(), "{}", text(&people));
    (
        serde_json::from_slice(&json.stdout).unwrap(),
        String::from_utf8(people.stdout).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_replica_and_what_it_holds() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    // The source must live as long as the replicas read it.
    let Catalog {
        src: _src,
        dst,
        dir,
        config,
        ..
    } = Catalog::new().await;
    let url = pg.create_database();
    let replicas: Vec<Child> = (0..3)
        .map(|_| spawn_once(dir.path(), &config, &url))
        .collect();
    wait_until_copying(&dst).await;

    // Mid-run: three live replicas, one leading the run, items held.
    let (doc, people) = status(dir.path(), &config, &url).await;
    let seen = doc["replicas"].as_array().expect("no replicas in status");
    assert_eq!(seen.len(), 3, "{doc:#}");
    assert!(seen.iter().all(|r| r["live"] == true), "{doc:#}");
    let leaders: Vec<_> = seen
        .iter()
        .filter(|r| r["leading"] == serde_json::json!(["catalog"]))
        .collect();
    assert_eq!(leaders.len(), 1, "{doc:#}");
    let held: u64 = seen.iter().map(|r| r["items_held"].as_u64().unwrap()).sum();
    assert!(held > 0, "{doc:#}");
    assert!(
        people.contains("replicas (seen in the last day): 3"),
        "{people}"
    );
    assert!(people.contains("live, last seen "), "{people}");
    assert!(people.contains(", leads catalog, "), "{people}");

    // After the run: the same three, leading and holding nothing.
    for r in replicas {
        wait_ok(r).await;
    }
    let (doc, people) = status(dir.path(), &config, &url).await;
    let seen = doc["replicas"].as_array().expect("no replicas in status");
    assert_eq!(seen.len(), 3, "{doc:#}");
    for r in seen {
        assert_eq!(r["leading"], serde_json::json!([]), "{doc:#}");
        assert_eq!(r["items_held"], 0, "{doc:#}");
    }
    assert_eq!(
        people.matches("leads no run, 0 held").count(),
        3,
        "{people}"
    );
}

/// One scrape of `/metrics` at `port`: each sample line's value by its
/// series (`name{labels}`); empty while the listener is not up.
async fn scrape(port: u16) -> HashMap<String, f64> {
    let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return HashMap::new();
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(series, v)| Some((series.to_string(), v.parse().ok()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_replicas_export_what_they_claim_hold_and_lead() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let src = TestRegistry::start(slow_registry()).await;
    seed_catalog(&src);
    let dst = TestRegistry::start(slow_registry()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = pg.create_database();
    let base = std::fs::read_to_string(write_config(dir.path(), &src, &dst)).unwrap();
    let ports = [free_port(), free_port()];
    let _replicas: Vec<Child> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let config = dir.path().join(format!("replica{i}.toml"));
            let text = format!("{base}\n[server]\nlisten = \"127.0.0.1:{port}\"\n");
            std::fs::write(&config, text).unwrap();
            spawn(dir.path(), "serve", &config, &url)
        })
        .collect();

    // Mid-run, once both replicas counted each other (every third of the
    // 2 s lease): each claimed items, one leads the run.
    let series = |name: &str| format!("{name}{{mirror_job=\"catalog\"}}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let scrapes = loop {
        let scrapes = [scrape(ports[0]).await, scrape(ports[1]).await];
        let live = |s: &HashMap<String, f64>| s.get("ocimirror_replicas_live") == Some(&2.0);
        if scrapes.iter().all(live) {
            break scrapes;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas never saw each other: {scrapes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for s in &scrapes {
        let claimed = s.get(&series("ocimirror_replica_items_claimed_total"));
        assert!(claimed.is_some_and(|n| *n > 0.0), "{s:?}");
        assert!(
            s.contains_key(&series("ocimirror_replica_items_held")),
            "{s:?}"
        );
    }
    let leads: f64 = scrapes
        .iter()
        .filter_map(|s| s.get(&series("ocimirror_replica_leads")))
        .sum();
    assert_eq!(leads, 1.0, "{scrapes:?}");
}

/// `bench/replicas.sh`: 1, 2 and 3 replicas on the same corpus, with the
/// wall time and the writes per object on the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/replicas.sh runs it"]
async fn bench_one_two_three_replicas() {
    let pg = Postgres::start().expect("PostgreSQL is needed for the benchmark");
    let src = TestRegistry::start(slow_registry()).await;
    let images = seed_catalog(&src);
    for n in 1..=3 {
        let dst = TestRegistry::start(slow_registry()).await;
        let (took, _) = mirror_with(&pg, n, &src, &dst).await;
        assert_target_equals_source(&src, &dst, &images);
        let counts = writes(&dst.log());
        let most = counts.values().max().copied().unwrap_or(0);
        println!(
            "replicas={n} seconds={:.2} objects_written={} max_writes_per_object={most}",
            took.as_secs_f64(),
            counts.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_that_lose_the_database_mid_run_stop_by_name_and_a_rerun_completes() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let Catalog {
        src,
        images,
        dst,
        dir,
        config,
    } = Catalog::new().await;
    // Trust authentication accepts any password: it must never be printed.
    let url = pg
        .create_database()
        .replace("postgres@", "postgres:db-secret@");
    let replicas: Vec<Child> = (0..2)
        .map(|_| spawn_once(dir.path(), &config, &url))
        .collect();
    wait_until_copying(&dst).await;
    pg.kill();
    for r in replicas {
        let out = tokio::time::timeout(Duration::from_secs(120), r.wait_with_output())
            .await
            .expect("a replica hung after losing its database")
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "finished without its database: {err}"
        );
        assert!(err.contains("database"), "{err}");
        assert!(!err.contains("db-secret"), "{err}");
    }
    for r in 0..REPOS {
        let repo = format!("m/team/app{r}");
        assert_eq!(incomplete_tags(&dst, &repo), Vec::<String>::new(), "{repo}");
    }

    pg.restart();
    wait_ok(spawn_once(dir.path(), &config, &url)).await;
    assert_target_equals_source(&src, &dst, &images);
}
