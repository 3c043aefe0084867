//! What the commands print, through the real binary: `--output json` for
//! `copy`, `once`, `plan` and `status` (parsed and asserted field by field),
//! `--quiet`, the counts of a verifying `once --full`, the reasons of
//! `plan`, `status [JOB…]` with failing items by name, and the small
//! consistency rules (units, arrows, plurals, final newlines, `config show`).

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::cli::{ocimirror, text};
use crate::support::fixtures::{self, Form};
use crate::support::registry::{Fault, FaultKind, Options, TestRegistry};
use crate::sync_jobs::{REPO, seed_tags, write_config, writes};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The JSON document on stdout.
fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// `tag` in `repo` now points at a new image (seeded by `seed`).
fn retag(reg: &TestRegistry, tag: &str, seed: &str) -> String {
    let mut f = fixtures::image(Form::Api, seed);
    let m = f.tags.remove("v1").unwrap();
    f.tags.insert(tag.to_string(), m.clone());
    fixtures::seed_registry(reg, REPO, &f);
    m.digest
}

async fn run(dir: &Path, args: &[&str]) -> Output {
    ocimirror(dir, args).await
}

/// `once --full` on a complete mirror verifies: 0 copied, every image
/// unchanged, nothing written (it used to say "2 copied" with 0 manifests).
/// Also the JSON of `once`, the text's units and plurals, and `--quiet`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_full_counts_verified_images_as_unchanged_and_json_says_so() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    seed_tags(&src, REPO, "full", 2);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &src, &dst, "", "");
    let cfg = config.to_str().unwrap();

    let first = run(dir.path(), &["once", "-c", cfg]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let out = stdout(&first);
    assert!(
        out.contains(
            "job mirror: success — 1 repository, 2 images selected: 2 copied, 0 unchanged"
        ),
        "{}",
        text(&first)
    );
    // Sizes in binary units, never a raw byte count.
    let line = out.lines().next().unwrap();
    assert!(
        line.contains(" KiB, ") || line.contains(" B, "),
        "{}",
        text(&first)
    );
    assert!(!line.contains("bytes"), "{}", text(&first));
    assert!(!out.contains('→'), "{}", text(&first));

    let before = writes(&dst).len();
    let full = run(
        dir.path(),
        &["once", "--full", "--output", "json", "-c", cfg],
    )
    .await;
    assert_eq!(full.status.code(), Some(0), "{}", text(&full));
    let doc = json(&full);
    assert_eq!(doc["command"], "once");
    assert_eq!(doc["success"], true);
    let job = &doc["jobs"][0];
    assert_eq!(job["name"], "mirror");
    assert_eq!(job["result"], "success");
    assert_eq!(job["counts"]["images_selected"], 2);
    assert_eq!(job["counts"]["images_copied"], 0, "{doc}");
    assert_eq!(job["counts"]["images_unchanged"], 2, "{doc}");
    assert_eq!(job["counts"]["manifests"], 0);
    assert_eq!(job["counts"]["bytes"], 0);
    assert_eq!(job["failures"], Value::Array(vec![]));
    assert_eq!(writes(&dst).len(), before, "a verifying run wrote");
    let hosts: Vec<&str> = doc["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["registry"].as_str().unwrap())
        .collect();
    assert!(hosts.contains(&dst.host().as_str()), "{doc}");

    // --quiet: nothing on success, same exit status.
    let quiet = run(dir.path(), &["once", "--quiet", "-c", cfg]).await;
    assert_eq!(quiet.status.code(), Some(0), "{}", text(&quiet));
    assert_eq!(stdout(&quiet), "", "{}", text(&quiet));
}

/// `plan` says why for each item (new, digest changed, unchanged), writes
/// nothing, logs no step at info, and ends each job with a summary line;
/// the JSON has the same per-item actions and reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_says_why_per_item_and_sums_up_each_job() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    seed_tags(&src, REPO, "why", 2);
    let dir = tempfile::tempdir().unwrap();
    // `skip-me` is listed but left out by the tag rules.
    retag(&src, "skip-me", "filtered");
    let config = write_config(
        dir.path(),
        &src,
        &dst,
        "",
        "tags = { deny = [\"skip-.*\"] }",
    );
    let cfg = config.to_str().unwrap();
    let first = run(dir.path(), &["once", "-c", cfg]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let old = fixtures::image(Form::Api, "why1").tags["v1"].digest.clone();
    let new = retag(&src, "t1", "moved");
    retag(&src, "t2", "added");

    let before = writes(&dst).len();
    let plan = ocimirror(dir.path(), &["plan", "-c", cfg, "--log-level", "info"]).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let out = stdout(&plan);
    let item = |tag: &str| format!("{}/{REPO}:{tag} -> {}/{REPO}:{tag}", src.host(), dst.host());
    // Items in name order, whatever order they finished in.
    let positions: Vec<usize> = ["t0", "t1", "t2"]
        .iter()
        .map(|t| {
            out.find(&item(t))
                .unwrap_or_else(|| panic!("{t}: {}", text(&plan)))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{}", text(&plan));
    assert!(
        out.contains(&format!("why: digest changed: {old} -> {new}")),
        "{}",
        text(&plan)
    );
    assert!(
        out.contains("why: new: not mirrored before"),
        "{}",
        text(&plan)
    );
    assert!(
        out.contains("why: unchanged since the last verified copy"),
        "{}",
        text(&plan)
    );
    assert!(
        out.contains(
            "job mirror: 3 images: 2 to copy or verify, 1 unchanged, 0 backing off, 0 failed; 1 tag filtered out; nodes: "
        ),
        "{}",
        text(&plan)
    );
    assert!(
        out.contains(&format!(
            "  not selected by the job's tag rules: {}/{REPO}:skip-me\n",
            src.host()
        )),
        "{}",
        text(&plan)
    );
    assert_eq!(writes(&dst).len(), before, "plan wrote to the target");
    // Per-object steps are debug detail, not info log lines.
    let stderr = String::from_utf8_lossy(&plan.stderr);
    assert!(!stderr.contains("Copy step"), "{}", text(&plan));
    assert!(!stderr.contains("Image synced"), "{}", text(&plan));

    let plan = run(dir.path(), &["plan", "--output", "json", "-c", cfg]).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let doc = json(&plan);
    assert_eq!(doc["command"], "plan");
    assert_eq!(
        doc["jobs"][0]["filtered"],
        serde_json::json!([format!("{}/{REPO}:skip-me", src.host())])
    );
    let items = doc["jobs"][0]["items"].as_array().unwrap();
    let by_tag = |tag: &str| {
        items
            .iter()
            .find(|i| i["item"].as_str().unwrap().ends_with(&format!(":{tag}")))
            .unwrap_or_else(|| panic!("no {tag} in {doc}"))
    };
    assert_eq!(by_tag("t0")["action"], "skip");
    assert_eq!(by_tag("t0")["steps"], Value::Array(vec![]));
    assert_eq!(by_tag("t1")["action"], "copy");
    assert!(
        by_tag("t1")["reason"]
            .as_str()
            .unwrap()
            .starts_with("digest changed"),
        "{doc}"
    );
    let steps = by_tag("t2")["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["action"] == "copy" && s["node"] == "index"),
        "{doc}"
    );
    assert_eq!(by_tag("t2")["target"], format!("{}/{REPO}:t2", dst.host()));
}

/// A catalog job's plan names the mapped target repository (the prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_target_repository_of_a_catalog_job() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    seed_tags(&src, REPO, "catalog", 1);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("catalog.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[state]\ndatabase = \"state.db\"\n\n[[jobs]]\nname = \"all\"\n\
             source = {{ registry = \"{}\", namespace = \"team/\" }}\n\
             target = {{ registry = \"{}\", prefix = \"mirror/\" }}\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let plan = run(dir.path(), &["plan", "-c", config.to_str().unwrap()]).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        stdout(&plan).contains(&format!(
            "{}/{REPO}:t0 -> {}/mirror/{REPO}:t0",
            src.host(),
            dst.host()
        )),
        "{}",
        text(&plan)
    );
}

/// After a partial run: `status mirror` lists the failing item by name with
/// its error, attempts and next retry (text and JSON); the next `once`
/// says when the deferred item is retried and prints no idle registry as
/// `0 ()`; `plan` says the item is backing off; an unknown job is an error
/// naming it with the config exit status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_failing_items_and_filters_by_job() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    seed_tags(&src, REPO, "status", 2);
    src.push_fault(Fault {
        method: None,
        path_contains: "/manifests/t1".into(),
        kind: FaultKind::Status(403),
        times: 1_000,
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &src, &dst, "", "");
    let cfg = config.to_str().unwrap();

    let first = run(dir.path(), &["once", "--output", "json", "-c", cfg]).await;
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let doc = json(&first);
    assert_eq!(doc["success"], false);
    let job = &doc["jobs"][0];
    assert_eq!(job["result"], "partial");
    let failure = &job["failures"][0];
    assert_eq!(failure["item"], format!("{}/{REPO}:t1", src.host()));
    assert_eq!(failure["reference"], "t1");
    assert!(
        failure["kind"].as_str().is_some_and(|k| !k.is_empty()),
        "{doc}"
    );
    assert!(failure["message"].as_str().unwrap().contains(REPO), "{doc}");

    let second = run(dir.path(), &["once", "-c", cfg]).await;
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let out = stdout(&second);
    assert!(
        out.contains(&format!(
            "DEFERRED {}/{REPO}:t1 (backing off after failures; next retry ",
            src.host()
        )),
        "{}",
        text(&second)
    );
    assert!(!out.contains("0 ()"), "{}", text(&second));
    // --quiet hides only success: a failing run still says what failed,
    // with the same exit status.
    let quiet = run(dir.path(), &["once", "--quiet", "-c", cfg]).await;
    assert_eq!(quiet.status.code(), Some(1), "{}", text(&quiet));
    assert!(stdout(&quiet).contains("DEFERRED "), "{}", text(&quiet));
    let deferred = run(dir.path(), &["once", "--output", "json", "-c", cfg]).await;
    let doc = json(&deferred);
    assert!(
        doc["jobs"][0]["deferred"][0]["next_retry"].is_string(),
        "{doc}"
    );

    let status = run(dir.path(), &["status", "mirror", "-c", cfg]).await;
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let out = stdout(&status);
    assert!(
        out.contains(&format!("    FAILING {}/{REPO}:t1: ", src.host())),
        "{}",
        text(&status)
    );
    assert!(out.contains("(1 attempt, next retry "), "{}", text(&status));

    let status = run(dir.path(), &["status", "--output", "json", "-c", cfg]).await;
    let doc = json(&status);
    let job = &doc["jobs"][0];
    assert_eq!(job["name"], "mirror");
    assert_eq!(job["last_run"]["result"], "partial");
    assert_eq!(job["tags_synced"], 1);
    let failing = &job["failing"][0];
    assert_eq!(failing["item"], format!("{}/{REPO}:t1", src.host()));
    assert_eq!(failing["attempts"], 1);
    assert!(
        failing["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{doc}"
    );
    assert!(failing["next_retry"].is_string(), "{doc}");

    let plan = run(dir.path(), &["plan", "-c", cfg]).await;
    assert!(
        stdout(&plan).contains("why: failing (1 attempt, last error: "),
        "{}",
        text(&plan)
    );
    assert!(stdout(&plan).contains("1 backing off"), "{}", text(&plan));

    let unknown = run(dir.path(), &["status", "nosuch", "-c", cfg]).await;
    assert_eq!(unknown.status.code(), Some(78), "{}", text(&unknown));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("\"nosuch\""),
        "{}",
        text(&unknown)
    );
}

/// `copy --output json` (and with `--plan`), and the text summary's units,
/// arrows and plurals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_prints_json_and_human_units() {
    let f = fixtures::image(Form::Api, "copyjson");
    let src = TestRegistry::start(Options::default()).await;
    fixtures::seed_registry(&src, REPO, &f);
    let dir = tempfile::tempdir().unwrap();
    let from = format!("{}/{REPO}:v1", src.host());
    let to = format!("oci:{}", dir.path().join("a").display());
    let out = run(dir.path(), &["copy", "--output", "json", &from, &to]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = json(&out);
    assert_eq!(doc["success"], true);
    assert_eq!(doc["images"], 1);
    assert_eq!(doc["manifests"], 6, "{doc}");
    assert!(doc["bytes"].as_u64().unwrap() > 0, "{doc}");
    assert_eq!(doc["failures"], Value::Array(vec![]));
    let by = &doc["referrers_by_representation"][0];
    assert_eq!(by["source"], "api", "{doc}");
    assert_eq!(by["target"], "layout", "{doc}");
    assert!(doc.get("plan").is_none(), "{doc}");

    let plan = run(
        dir.path(),
        &["copy", "--plan", "--output", "json", &from, &to],
    )
    .await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let doc = json(&plan);
    let steps = doc["plan"][0]["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{doc}");
    assert!(steps.iter().all(|s| s["action"] != "copy"), "{doc}");
    assert_eq!(doc["plan"][0]["target"], format!("{to}:v1"));

    let to_b = format!("oci:{}", dir.path().join("b").display());
    let out = run(dir.path(), &["copy", &from, &to_b]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let text_out = stdout(&out);
    assert!(
        text_out.starts_with("1 image: manifests: 6 copied"),
        "{}",
        text(&out)
    );
    assert!(
        text_out.contains(" KiB;") || text_out.contains(" B;"),
        "{}",
        text(&out)
    );
    assert!(text_out.contains("api -> layout"), "{}", text(&out));
    assert!(!text_out.contains('→'), "{}", text(&out));

    let quiet = run(dir.path(), &["copy", "-q", &from, &to_b]).await;
    assert_eq!(quiet.status.code(), Some(0), "{}", text(&quiet));
    assert_eq!(stdout(&quiet), "");
}

/// `config check` ends with a newline; `config show` gives loopback
/// registries their real scheme (plain HTTP, no TLS settings) and says
/// where credentials come from instead of `auth kind = "anonymous"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_and_show_tell_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "version = 1\n[registries.\"127.0.0.1:5999\"]\ndocker_config = true\n\
         [registries.\"registry.example\"]\nusername = \"alice\"\npassword = \"s3cret-pw\"\n\
         [[jobs]]\nname = \"j\"\nsource = \"127.0.0.1:5999/team/app\"\n\
         target = \"registry.example/team/app\"\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let check = run(dir.path(), &["config", "check", "-c", cfg]).await;
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert!(stdout(&check).ends_with('\n'), "{}", text(&check));

    let show = run(dir.path(), &["config", "show", "-c", cfg]).await;
    assert_eq!(show.status.code(), Some(0), "{}", text(&show));
    let out = stdout(&show);
    let doc: toml::Table = out.parse().unwrap_or_else(|e| panic!("{e}: {out}"));
    let local = &doc["registries"]["127.0.0.1:5999"];
    assert_eq!(local["scheme"].as_str(), Some("http"), "{out}");
    assert!(local.get("tls_verify").is_none(), "{out}");
    assert!(local.get("auth").is_none(), "{out}");
    assert!(
        local["credentials"]
            .as_str()
            .unwrap()
            .starts_with("Docker config"),
        "{out}"
    );
    let remote = &doc["registries"]["registry.example"];
    assert_eq!(remote["scheme"].as_str(), Some("https"), "{out}");
    assert_eq!(remote["tls_verify"].as_bool(), Some(true), "{out}");
    assert!(
        remote["credentials"].as_str().unwrap().contains("alice"),
        "{out}"
    );
    assert!(!out.contains("s3cret-pw"), "{out}");
    assert!(!out.contains("kind = \"anonymous\""), "{out}");
    assert!(local.get("plain_http").is_none(), "{out}");
}

/// A changed fallback tag is named in the plan's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_names_a_changed_fallback_tag() {
    let src = TestRegistry::start(Options {
        referrers_api: false,
        ..Options::default()
    })
    .await;
    let dst = TestRegistry::start(Options::default()).await;
    let mut f = fixtures::image(Form::Tags, "fallback");
    let m = f.tags.remove("v1").unwrap();
    f.tags.insert("t0".into(), m);
    fixtures::seed_registry(&src, REPO, &f);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &src, &dst, "", "");
    let cfg = config.to_str().unwrap();
    let first = run(dir.path(), &["once", "-c", cfg]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));

    // One referrer fewer in the index's fallback tag.
    let tag = fixtures::fallback_tag(&f.index);
    let (media_type, bytes) = src.manifest(REPO, &tag).unwrap();
    let mut index: Value = serde_json::from_slice(&bytes).unwrap();
    index["manifests"].as_array_mut().unwrap().pop();
    let bytes = serde_json::to_vec(&index).unwrap();
    src.put_manifest(REPO, &tag, &media_type, &bytes);

    let plan = run(dir.path(), &["plan", "-c", cfg]).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        stdout(&plan).contains(&format!("why: referrers changed: tag {tag} moved")),
        "{}",
        text(&plan)
    );
}
