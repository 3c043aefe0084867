//! Reliability: copies that meet injected faults converge to a byte-identical
//! target; hostile or broken source content fails only its own item, with
//! an error naming registry, repository and digest; a layout target never
//! writes outside its directory whatever names the source serves.
//!
//! The source and target states are compared through the test registry's
//! own accessors (exact bytes, digests recomputed with `sha2`), never
//! through ocimirror.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use ocimirror::copy::{Copier, CopyOptions, CopyReport};
use ocimirror::corpus::{self, CorpusSpec, ReferrerForm};
use ocimirror::oci::{Reference, RepoName, Tag};
use ocimirror::registry::Registry;
use ocimirror::registry::http::{HttpRegistry, HttpSettings, RetryPolicy};
use serde_json::{Value, json};

use crate::support::cli::text;
use crate::support::fixtures::{self, Form, OCI_INDEX, OCI_MANIFEST, fallback_tag, sha256};
use crate::support::registry::{Fault, FaultKind, Options, RetryAfter, TestRegistry};

// ------------------------------------------------------------ helpers

/// splitmix64: a tiny seeded generator, so the fault plan is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Everything reachable from a registry's tags: tags, manifests (media
/// type and exact bytes), blobs; referrers found through the registry's
/// subject index. Read with the test registry's accessors only.
#[derive(Debug, Default, PartialEq, Eq)]
struct State {
    tags: BTreeMap<(String, String), String>,
    manifests: BTreeMap<(String, String), (String, Vec<u8>)>,
    blobs: BTreeMap<(String, String), Vec<u8>>,
}

fn state(reg: &TestRegistry) -> State {
    let mut s = State::default();
    for repo in reg.repositories() {
        let mut todo: Vec<String> = Vec::new();
        for tag in reg.tags(&repo) {
            let (_, bytes) = reg.manifest(&repo, &tag).unwrap();
            let digest = sha256(&bytes);
            s.tags.insert((repo.clone(), tag), digest.clone());
            todo.push(digest);
        }
        while let Some(d) = todo.pop() {
            let key = (repo.clone(), d.clone());
            if s.manifests.contains_key(&key) {
                continue;
            }
            let Some((mt, bytes)) = reg.manifest(&repo, &d) else {
                continue;
            };
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            for e in v["manifests"].as_array().into_iter().flatten() {
                todo.push(e["digest"].as_str().unwrap().to_string());
            }
            let blobs = v["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(v.get("config"));
            for b in blobs {
                let bd = b["digest"].as_str().unwrap().to_string();
                if let Some(bytes) = reg.blob(&repo, &bd) {
                    s.blobs.insert((repo.clone(), bd), bytes);
                }
            }
            todo.extend(reg.referrers(&repo, &d));
            s.manifests.insert(key, (mt, bytes));
        }
    }
    s
}

fn fast_settings() -> HttpSettings {
    HttpSettings {
        retry: RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(1),
            // Also caps the injected `Retry-After: 1`.
            max_delay: Duration::from_millis(20),
        },
        ..HttpSettings::default()
    }
}

async fn copy_all(
    src: Arc<dyn Registry>,
    dst: Arc<dyn Registry>,
    images: &[(RepoName, Tag)],
) -> CopyReport {
    // One copier per run, as the sync runner does; one transfer at a time
    // so the requests come in the same order each time and the seeded
    // fault plan hits the same ones (the test is reproducible).
    let options = CopyOptions {
        concurrency: 1,
        ..CopyOptions::default()
    };
    let copier = Copier::new(src, dst, options);
    let mut report = CopyReport::default();
    for (repo, tag) in images {
        match copier
            .copy_image(repo, &Reference::Tag(tag.clone()), repo, None)
            .await
        {
            Ok(r) => report.merge(r),
            Err(e) => report.failures.push(e.into()),
        }
    }
    report
}

/// The requests of a clean run, as (method, path) fault matchers: a
/// fault plan drawn from them hits requests the copy really makes, as often
/// as it makes them. Upload session paths are cut to their prefix (the
/// session id differs each run). Failed requests are left out: their
/// retries are there already.
fn request_paths(reg: &TestRegistry) -> Vec<(String, String)> {
    reg.log()
        .into_iter()
        .filter(|r| r.status < 400)
        .map(|r| {
            let path = match r.path.find("/blobs/uploads/") {
                Some(i) => r.path[..i + "/blobs/uploads/".len()].to_string(),
                None => r.path,
            };
            (r.method, path)
        })
        .collect()
}

/// A mix of the faults a flaky network and registry produce.
fn fault_kind(rng: &mut Rng, body_ok: bool) -> FaultKind {
    let kinds = if body_ok { 7 } else { 4 };
    match rng.below(kinds) {
        0 => FaultKind::Status(500),
        1 => FaultKind::Status(503),
        2 => FaultKind::Status(502),
        3 => FaultKind::TooManyRequests(RetryAfter::Seconds(1)),
        4 => FaultKind::ResetMidBody,
        5 => FaultKind::TruncatedBody,
        _ => FaultKind::WrongBytes,
    }
}

/// Queues `n` faults on `reg`, each firing once, on requests of `paths`.
/// Body faults (reset, truncation, wrong bytes) go to GETs only: the other
/// responses carry no body. Returns how many were wrong-bytes faults (at
/// least one when `paths` has a GET).
fn plan_faults(reg: &TestRegistry, rng: &mut Rng, n: usize, paths: &[(String, String)]) -> usize {
    let gets: Vec<(String, String)> = paths.iter().filter(|(m, _)| m == "GET").cloned().collect();
    let mut wrong = 0;
    for i in 0..n {
        // The first is always wrong bytes on a GET, so every run meets one
        // whatever the draw.
        let (method, path, kind) = if i == 0 && !gets.is_empty() {
            let (method, path) = rng.pick(&gets);
            (method, path, FaultKind::WrongBytes)
        } else {
            let (method, path) = rng.pick(paths);
            (method, path, fault_kind(rng, method == "GET"))
        };
        if matches!(kind, FaultKind::WrongBytes) {
            wrong += 1;
        }
        reg.push_fault(Fault::once(Some(method), path, kind));
    }
    wrong
}

/// Returns how many accepted uploads were checked.
fn assert_blobs_hash_to_their_digests(reg: &TestRegistry, s: &State, side: &str) -> usize {
    let mut checked = 0;
    for ((repo, d), bytes) in &s.blobs {
        assert_eq!(
            &sha256(bytes),
            d,
            "{side} {repo}: blob {d} holds other bytes"
        );
    }
    for ((repo, d), (_, bytes)) in &s.manifests {
        assert_eq!(
            &sha256(bytes),
            d,
            "{side} {repo}: manifest {d} holds other bytes"
        );
    }
    // Every blob the target accepted an upload for (the digest is in the
    // final PUT's query) holds exactly those bytes.
    for r in reg.log() {
        if r.method != "PUT" || !r.path.contains("/blobs/uploads/") || r.status != 201 {
            continue;
        }
        let Some(q) = &r.query else { continue };
        let Some(d) = q
            .split('&')
            .find_map(|kv| kv.strip_prefix("digest="))
            .map(|d| d.replace("%3A", ":").replace("%3a", ":"))
        else {
            continue;
        };
        let repo = r
            .path
            .trim_start_matches("/v2/")
            .split("/blobs/uploads/")
            .next()
            .unwrap()
            .to_string();
        let bytes = reg
            .blob(&repo, &d)
            .unwrap_or_else(|| panic!("{side}: upload of {d} to {repo} accepted but not stored"));
        assert_eq!(
            sha256(&bytes),
            d,
            "{side} {repo}: stored blob {d} is corrupt"
        );
        checked += 1;
    }
    checked
}

/// Differences between the target and the source state (empty: the
/// target is the source). Fallback indexes are rebuilt on the target, so
/// they are compared by the digests they list; everything else byte for
/// byte.
fn differences(src: &TestRegistry, dst: &TestRegistry, expected: &State) -> Vec<String> {
    let got = state(dst);
    let mut diffs = Vec::new();
    let fallback: BTreeSet<(String, String)> = expected
        .tags
        .iter()
        .filter(|((_, t), _)| t.starts_with("sha256-"))
        .map(|((r, _), d)| (r.clone(), d.clone()))
        .collect();
    for (key, bytes) in &expected.blobs {
        if got.blobs.get(key) != Some(bytes) {
            diffs.push(format!("blob {key:?}"));
        }
    }
    for (key, m) in &expected.manifests {
        if !fallback.contains(key) && got.manifests.get(key) != Some(m) {
            diffs.push(format!("manifest {key:?}"));
        }
    }
    if got.tags.keys().ne(expected.tags.keys()) {
        diffs.push(format!(
            "tags {:?} != {:?}",
            got.tags.keys().collect::<Vec<_>>(),
            expected.tags.keys().collect::<Vec<_>>()
        ));
    }
    for ((repo, tag), d) in &expected.tags {
        let Some(gd) = got.tags.get(&(repo.clone(), tag.clone())) else {
            continue;
        };
        let same = if tag.starts_with("sha256-") {
            let listed =
                |reg: &TestRegistry| fixtures::index_digests(&reg.manifest(repo, tag).unwrap().1);
            listed(dst) == listed(src)
        } else {
            gd == d
        };
        if !same {
            diffs.push(format!("tag {repo}:{tag}"));
        }
    }
    // With the referrers API on both sides there are no fallback indexes:
    // the whole state is identical.
    if fallback.is_empty() && diffs.is_empty() && &got != expected {
        diffs.push("state differs".into());
    }
    diffs
}

// ------------------------------------------------------------ faults

/// About 10 % of the requests of a copy of a small corpus (3 repositories x
/// 2 images, each a 2-platform index with referrers 3 deep) fail on both
/// sides: 5xx, 429 with `Retry-After`, connections reset or truncated
/// mid-body, bodies with a wrong byte. Repeated runs converge, the target
/// ends byte-identical to the source, and no corrupted byte was ever stored.
async fn faults_converge(api: bool, seed: u64) {
    let options = || Options {
        referrers_api: api,
        ..Options::default()
    };
    let src = TestRegistry::start(options()).await;
    let dst = TestRegistry::start(options()).await;
    let calibrate = TestRegistry::start(options()).await;
    let src_http = Arc::new(HttpRegistry::new(&src.host(), fast_settings()).unwrap());
    let spec = CorpusSpec {
        seed,
        repo_prefix: "rel/app-".into(),
        repositories: 3,
        tags: 2,
        platforms: 2,
        layers: 1,
        layer_size: 3000,
        base_layer_size: 5000,
        referrer_depth: 3,
        referrer_form: if api {
            ReferrerForm::Api
        } else {
            ReferrerForm::FallbackTag
        },
    };
    let generated = corpus::generate(src_http.as_ref(), &spec).await.unwrap();
    let images: Vec<(RepoName, Tag)> = generated
        .images
        .iter()
        .map(|(r, t, _)| (r.clone(), t.clone()))
        .collect();
    let expected = state(&src);
    assert!(expected.manifests.len() >= 6 * 8, "{expected:?}");

    // A clean copy elsewhere tells how many requests a run makes.
    let cal: Arc<dyn Registry> =
        Arc::new(HttpRegistry::new(&calibrate.host(), fast_settings()).unwrap());
    src.clear_log();
    let clean = copy_all(src_http.clone(), cal, &images).await;
    assert!(clean.is_success(), "{:?}", clean.failures);
    let (mut src_paths, mut dst_paths) = (request_paths(&src), request_paths(&calibrate));
    let (src_requests, dst_requests) = (src_paths.len(), dst_paths.len());
    assert!(src_requests > 50 && dst_requests > 50);
    drop(calibrate);

    let dst_http = Arc::new(HttpRegistry::new(&dst.host(), fast_settings()).unwrap());
    let mut rng = Rng(seed);
    let mut runs = 0;
    let mut wrong_bytes = 0;
    // Faults planned for the next run: 10 % of the requests of the last
    // (the calibration run first), drawn from those requests, so the rate
    // stays near 10 % for every kind of request as the work left shrinks.
    let (mut n_src, mut n_dst) = (src_requests / 10, dst_requests / 10);
    let mut first_rate = None;
    let mut caught = 0;
    let mut uploads_checked = 0;
    loop {
        runs += 1;
        src.clear_faults();
        dst.clear_faults();
        src.clear_log();
        dst.clear_log();
        wrong_bytes += plan_faults(&src, &mut rng, n_src, &src_paths);
        wrong_bytes += plan_faults(&dst, &mut rng, n_dst, &dst_paths);
        let report = copy_all(src_http.clone(), dst_http.clone(), &images).await;
        let fired = n_src + n_dst - src.pending_faults() - dst.pending_faults();
        let requests = src.log().len() + dst.log().len();
        eprintln!(
            "run {runs}: {fired} of {} faults fired in {requests} requests; {} failures",
            n_src + n_dst,
            report.failures.len()
        );
        first_rate.get_or_insert((fired, requests));
        // The next run makes about the requests this one made.
        src_paths = request_paths(&src);
        dst_paths = request_paths(&dst);
        (n_src, n_dst) = ((src_paths.len() / 10).max(1), (dst_paths.len() / 10).max(1));
        // Whatever happened, nothing corrupt is on the target.
        uploads_checked += assert_blobs_hash_to_their_digests(&dst, &state(&dst), "target");
        for f in report.failures.iter().map(ToString::to_string) {
            if !f.contains("depends on") {
                eprintln!("  {f}");
            }
            // Every failure names the node it was about.
            assert!(f.contains("sha256:"), "unnamed failure: {f}");
            if f.contains("digest mismatch") || f.contains("is not an OCI index") {
                caught += 1;
            }
        }
        let diffs = differences(&src, &dst, &expected);
        if diffs.is_empty() {
            break;
        }
        assert!(
            runs < 5,
            "no convergence after {runs} faulty runs: {diffs:?}"
        );
    }
    // The first run really met faults at about the intended rate.
    let (fired, requests) = first_rate.unwrap();
    assert!(
        fired * 100 >= requests * 5,
        "only {fired} faults in {requests} requests"
    );
    assert!(wrong_bytes > 0, "the plan had no wrong-bytes fault");
    // Corrupted bodies are re-read within the run (manifests by the HTTP
    // layer, blobs by the copy engine), so few surface as failures (`caught`
    // counts those); that none was stored is checked after every run.
    eprintln!("{wrong_bytes} wrong-bytes faults planned; {caught} reported as failures");
    assert!(
        uploads_checked > 0,
        "no accepted upload was found in the log"
    );
    let retries = src_http.stats().retries + dst_http.stats().retries;
    assert!(retries > 0, "faults fired but nothing was retried");

    // Converged: the target is the source, byte for byte (checked above),
    // and nothing on it is corrupt.
    src.clear_faults();
    dst.clear_faults();
    assert_blobs_hash_to_their_digests(&dst, &state(&dst), "target");

    // And a further clean run has nothing to do.
    let again = copy_all(src_http.clone(), dst_http.clone(), &images).await;
    assert!(again.is_success(), "{:?}", again.failures);
    assert!(again.wrote_nothing(), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_at_ten_percent_converge_to_an_identical_target_api() {
    faults_converge(true, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_at_ten_percent_converge_to_an_identical_target_fallback_tags() {
    faults_converge(false, 11).await;
}

// ------------------------------------------------------------ hostile content

const HOSTILE: &str = "hostile/app";

async fn ocimirror(args: &[&str]) -> Output {
    crate::support::cli::ocimirror(std::path::Path::new("."), args).await
}

/// A config mirroring `source` to `target` (repository references) once.
fn job_config(dir: &Path, source: &str, target: &str) -> std::path::PathBuf {
    let path = dir.join("ocimirror.toml");
    let toml = format!(
        "version = 1\n[state]\ndatabase = \"{}\"\n[[jobs]]\nname = \"hostile\"\nsource = \"{source}\"\ntarget = \"{target}\"\n",
        dir.join("state.db").display()
    );
    std::fs::write(&path, toml).unwrap();
    path
}

/// A descriptor of `n` bytes at a made-up digest (`i` varies it).
fn fake_entry(i: usize) -> Value {
    json!({"mediaType": OCI_MANIFEST, "digest": format!("sha256:{i:064x}"), "size": 1})
}

/// The line `FAILED <registry>/<repo>:<item>: ...` of the summary.
fn failure_of<'a>(stdout: &'a str, item: &str) -> Option<&'a str> {
    let needle = format!("/{HOSTILE}:{item}: ");
    stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("FAILED ") && l.contains(&needle))
}

/// Broken and hostile content next to a healthy image in one repository:
/// each broken tag fails on its own with an error naming registry,
/// repository and digest, and the healthy image (with its referrers) is
/// still copied by the same job.
#[tokio::test]
async fn hostile_source_content_fails_per_item_and_the_rest_is_copied() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let good = fixtures::image(Form::Api, "healthy");
    fixtures::seed_registry(&src, HOSTILE, &good);

    // Not JSON at all.
    let bad_json = src.put_manifest(
        HOSTILE,
        "bad-json",
        OCI_MANIFEST,
        b"{\"schemaVersion\": 2, ",
    );
    // An index served as an image manifest.
    let index_body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [fake_entry(1)]
    }))
    .unwrap();
    let bad_type = src.put_manifest(HOSTILE, "bad-type", OCI_MANIFEST, &index_body);
    // Over the 4 MiB manifest cap.
    let huge_body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": fixtures::OCI_CONFIG, "digest": format!("sha256:{:064x}", 9), "size": 2},
        "layers": [],
        "annotations": {"padding": "x".repeat(4 << 20)},
    }))
    .unwrap();
    let huge = src.put_manifest(HOSTILE, "huge", OCI_MANIFEST, &huge_body);
    // 100 000 entries: refused by the size cap before anything is parsed.
    let wide_body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": (0..100_000).map(fake_entry).collect::<Vec<_>>(),
    }))
    .unwrap();
    assert!(wide_body.len() > 4 << 20);
    let wide = src.put_manifest(HOSTILE, "wide", OCI_INDEX, &wide_body);
    // 20 000 entries fit in 4 MiB: refused by the entry cap.
    let many_body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": (0..20_000).map(fake_entry).collect::<Vec<_>>(),
    }))
    .unwrap();
    assert!(many_body.len() < 4 << 20);
    let many = src.put_manifest(HOSTILE, "many", OCI_INDEX, &many_body);
    // A fallback tag holding an image manifest instead of an index.
    let fb_image = src.seed_image(HOSTILE, "fallback-image", &[b"fallback image layer"]);
    let (_, not_an_index) = src.manifest(HOSTILE, &good.amd).unwrap();
    src.put_manifest(
        HOSTILE,
        &fallback_tag(&fb_image),
        OCI_MANIFEST,
        &not_an_index,
    );
    // A layer the source does not have.
    let missing_layer = b"this layer was never uploaded";
    let missing_digest = sha256(missing_layer);
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = src.put_blob(HOSTILE, config);
    let no_blob_body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": fixtures::OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": fixtures::LAYER, "digest": missing_digest, "size": missing_layer.len()}],
    }))
    .unwrap();
    let no_blob = src.put_manifest(HOSTILE, "missing-blob", OCI_MANIFEST, &no_blob_body);
    // A referrer loop: R refers to L, and R's fallback index claims L
    // refers to R.
    let looped = src.seed_image(HOSTILE, "loop", &[b"loop layer"]);
    let r = src.seed_referrer(HOSTILE, &looped, fixtures::SIG, b"loop signature");
    let (_, l_bytes) = src.manifest(HOSTILE, &looped).unwrap();
    let back = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": looped, "size": l_bytes.len()}],
    }))
    .unwrap();
    src.put_manifest(HOSTILE, &fallback_tag(&r), OCI_INDEX, &back);

    let dir = tempfile::tempdir().unwrap();
    let cfg = job_config(
        dir.path(),
        &format!("{}/{HOSTILE}", src.host()),
        &format!("{}/{HOSTILE}", dst.host()),
    );
    let out = ocimirror(&["once", "-c", cfg.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{}", text(&out));
    // The two sound images were copied, the seven others failed.
    assert!(
        stdout.contains("9 images selected: 2 copied, 0 unchanged, 7 failed"),
        "{}",
        text(&out)
    );

    // Each broken item failed on its own, named.
    for (item, digest) in [
        ("bad-json", &bad_json),
        ("bad-type", &bad_type),
        ("huge", &huge),
        ("wide", &wide),
        ("many", &many),
        ("missing-blob", &missing_digest),
        // Named by its fallback tag, `sha256-<hex>`.
        ("fallback-image", &fallback_tag(&fb_image)),
    ] {
        let line = failure_of(&stdout, item)
            .unwrap_or_else(|| panic!("no failure for {item}:\n{}", text(&out)));
        assert!(
            line.contains(&src.host()),
            "{item}: registry not named: {line}"
        );
        assert!(
            line.contains(HOSTILE),
            "{item}: repository not named: {line}"
        );
        assert!(
            line.contains(digest.as_str()),
            "{item}: digest not named: {line}"
        );
    }
    // The manifest left out for lack of its layer is named too.
    assert!(
        failure_of(&stdout, "missing-blob")
            .unwrap()
            .contains(&no_blob)
    );

    // The healthy image is on the target with its referrers, byte for byte.
    for m in &good.manifests {
        assert_eq!(
            dst.manifest(HOSTILE, &m.digest).map(|(_, b)| b),
            Some(m.bytes.clone()),
            "{}",
            m.digest
        );
    }
    assert_eq!(
        dst.manifest(HOSTILE, "v1").unwrap().1,
        good.manifest(&good.index).bytes
    );
    // The loop ended: the image and its referrer are there.
    assert_eq!(dst.manifest(HOSTILE, "loop").unwrap().1, l_bytes);
    assert!(dst.manifest(HOSTILE, &r).is_some());
    // Nothing of the broken items reached the target.
    for tag in [
        "bad-json",
        "bad-type",
        "huge",
        "wide",
        "many",
        "missing-blob",
    ] {
        assert!(dst.manifest(HOSTILE, tag).is_none(), "{tag} was copied");
    }
}

// ------------------------------------------------------------ layout containment

/// Every path under `root`, relative to it.
fn listing(root: &Path) -> BTreeSet<std::path::PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// A registry source whose tag list, fallback index and manifests carry
/// path-like names and digests, copied by a job into an OCI layout: nothing
/// is written outside the layout directory, the hostile items fail or are
/// skipped, and the sound image is copied.
#[tokio::test]
async fn a_layout_target_stays_inside_its_directory_whatever_the_source_names() {
    let src = TestRegistry::start(Options::default()).await;
    let good = fixtures::image(Form::Api, "contained");
    fixtures::seed_registry(&src, HOSTILE, &good);
    let (mt, amd) = src.manifest(HOSTILE, &good.amd).unwrap();
    // Tags no registry should list; the test registry stores them as given.
    let hostile_tags = [
        "../../escape",
        "..",
        "/etc/passwd",
        "a/../../b",
        "..%2F..%2Fx",
        ".hidden",
    ];
    for t in hostile_tags {
        src.put_manifest(HOSTILE, t, &mt, &amd);
    }
    // A fallback index whose entries point outside a layout's blob store.
    let evil_index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": "sha256:../../../../x", "size": 2},
            {"mediaType": OCI_MANIFEST, "digest": "../x", "size": 2},
            {"mediaType": OCI_MANIFEST, "digest": format!("sha256:{}/../../x", "0".repeat(64)), "size": 2},
        ],
    }))
    .unwrap();
    let evil_fb = src.seed_image(HOSTILE, "evil-fallback", &[b"evil fallback layer"]);
    src.put_manifest(HOSTILE, &fallback_tag(&evil_fb), OCI_INDEX, &evil_index);
    // A manifest whose layer digest is a path.
    let evil_manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": fixtures::OCI_CONFIG, "digest": "sha256:../../config", "size": 2},
        "layers": [{"mediaType": fixtures::LAYER, "digest": "sha256:../../../../etc/x", "size": 2}],
    }))
    .unwrap();
    src.put_manifest(HOSTILE, "evil-digests", OCI_MANIFEST, &evil_manifest);

    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join("sentinel"), b"s").unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let layout = parent.path().join("mirror");
    let cfg = job_config(
        state_dir.path(),
        &format!("{}/{HOSTILE}", src.host()),
        &format!("oci:{}", layout.display()),
    );
    let before = listing(parent.path());
    let out = ocimirror(&["once", "-c", cfg.to_str().unwrap()]).await;

    let after = listing(parent.path());
    let outside: Vec<_> = after
        .difference(&before)
        .filter(|p| !p.starts_with("mirror"))
        .collect();
    assert!(
        outside.is_empty(),
        "written outside: {outside:?}\n{}",
        text(&out)
    );
    assert_eq!(std::fs::read(parent.path().join("sentinel")).unwrap(), b"s");
    // The sound image is there with its referrers.
    let view = fixtures::LayoutView::read(&layout);
    assert_eq!(view.tags().get("v1"), Some(&good.index), "{}", text(&out));
    for m in &good.manifests {
        assert_eq!(
            view.blob(&m.digest),
            Some(m.bytes.clone()),
            "{}\n{}",
            m.digest,
            text(&out)
        );
    }
    for t in view.tags().keys() {
        assert!(
            !t.contains('/') && !t.starts_with('.'),
            "tag {t:?} in the layout"
        );
    }
    // The manifest with path digests and the image with the path-like
    // fallback index were refused, by name; the path-like tags skipped.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for item in ["evil-digests", "evil-fallback"] {
        let line = failure_of(&stdout, item).unwrap_or_else(|| panic!("{item}: {}", text(&out)));
        assert!(line.contains("invalid"), "{line}");
    }
    assert!(
        stdout.contains("3 images selected: 1 copied"),
        "{}",
        text(&out)
    );
}
