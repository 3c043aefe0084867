//! Reliability: copies that meet injected faults converge to a byte-identical
//! target; hostile or broken source content fails only its own item, with
//! an error naming registry, repository and digest; a layout target never
//! writes outside its directory whatever names the source serves.
//!
//! The source and target states are compared through the test registry's
//! own accessors (exact bytes, digests recomputed with `sha2`), never
//! through ocimirror.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ocimirror::copy::{Copier, CopyOptions, CopyReport};
use ocimirror::corpus::{self, CorpusSpec, ReferrerForm};
use ocimirror::oci::{Reference, RepoName, Tag};
use ocimirror::registry::Registry;
use ocimirror::registry::http::{HttpRegistry, HttpSettings, RetryPolicy};
use serde_json::Value;

use crate::support::fixtures::{self, sha256};
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
            Err(e) => report.failures.push(e.to_string()),
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
/// responses carry no body. Returns how many were wrong-bytes faults.
fn plan_faults(reg: &TestRegistry, rng: &mut Rng, n: usize, paths: &[(String, String)]) -> usize {
    let mut wrong = 0;
    for _ in 0..n {
        let (method, path) = rng.pick(paths);
        let kind = fault_kind(rng, method == "GET");
        if matches!(kind, FaultKind::WrongBytes) {
            wrong += 1;
        }
        reg.push_fault(Fault::once(Some(method), path, kind));
    }
    wrong
}

fn assert_blobs_hash_to_their_digests(reg: &TestRegistry, s: &State, side: &str) {
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
    }
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
        assert_blobs_hash_to_their_digests(&dst, &state(&dst), "target");
        for f in &report.failures {
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
    // Corrupted bodies were detected (and failed their node, to be copied
    // by a later run) rather than stored.
    assert!(caught > 0, "no corrupted body was reported");
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
