//! `ocimirror once` killed with SIGKILL in the middle of a run, then run
//! again: the target converges, no tag ever points at incomplete content,
//! and the second run moves only what the first did not finish.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{REPO, incomplete_tags, ocimirror, text};
use crate::support::fixtures::SIG;
use crate::support::registry::{Fault, FaultKind, Options, TestRegistry};

const IMAGES: usize = 6;
const LAYER: usize = 8 << 20;
/// `limits.concurrent_blobs` of the config below.
const CONCURRENT_BLOBS: u64 = 2;

/// 8 MiB of distinct, incompressible-looking bytes for image `i`.
fn layer(i: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
    let mut out = Vec::with_capacity(LAYER);
    while out.len() < LAYER {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_without_moving_finished_blobs_again() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    // Every blob of the source (digest -> size) and every image (tag ->
    // manifest digest, signature digest).
    let mut images = BTreeMap::new();
    for i in 0..IMAGES {
        let tag = format!("t{i}");
        let image = src.seed_image(REPO, &tag, &[layer(i).as_slice()]);
        let sig = src.seed_referrer(REPO, &image, SIG, format!("signature {i}").as_bytes());
        images.insert(tag, (image, sig));
    }
    let mut sizes = BTreeMap::new();
    for (image, sig) in images.values() {
        for digest in [image, sig] {
            let (_, bytes) = src.manifest(REPO, digest).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            for b in v["layers"].as_array().unwrap().iter().chain([&v["config"]]) {
                sizes.insert(
                    b["digest"].as_str().unwrap().to_string(),
                    b["size"].as_u64().unwrap(),
                );
            }
        }
    }
    let total: u64 = sizes.values().sum();
    let largest = *sizes.values().max().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ocimirror.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1
[state]
database = "{db}"
[limits]
concurrent_blobs = {CONCURRENT_BLOBS}
[[jobs]]
name = "mirror"
source = "{src}/{REPO}"
target = "{dst}/{REPO}"
concurrency = 2
"#,
            db = dir.path().join("state.db").display(),
            src = src.host(),
            dst = dst.host(),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();

    // Slow uploads so the kill lands mid-run.
    for method in ["PUT", "PATCH"] {
        dst.push_fault(Fault {
            method: Some(method.into()),
            path_contains: "/blobs/uploads/".into(),
            kind: FaultKind::Delay(Duration::from_millis(600)),
            times: 10_000,
        });
    }
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ocimirror"))
        .args(["once", "-c", &config])
        .current_dir(dir.path())
        .env("OCIMIRROR_LOG", "warn")
        .env_remove("OCIMIRROR_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let on_target =
        |dst: &TestRegistry| sizes.keys().filter(|d| dst.blob(REPO, d).is_some()).count();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // No tag points at incomplete content at any moment we look.
        let broken = incomplete_tags(&dst, REPO);
        assert!(broken.is_empty(), "{broken:?}");
        // At least one image tagged (so the no-incomplete-tag check has
        // something to check), not everything copied.
        let n = on_target(&dst);
        let layers = sizes
            .iter()
            .filter(|(d, s)| **s == LAYER as u64 && dst.blob(REPO, d).is_some())
            .count();
        if layers >= 1 && !dst.tags(REPO).is_empty() && n < sizes.len() {
            break;
        }
        assert!(
            n < sizes.len(),
            "the first run finished before it could be killed"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the first run exited early: {status:?}");
        }
        assert!(Instant::now() < deadline, "no blob reached the target");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().unwrap();
    child.kill().await.unwrap(); // SIGKILL
    child.wait().await.unwrap();
    dst.clear_faults();
    // `status` says the killed run was interrupted, not that it is running.
    let status = ocimirror(dir.path(), &["status", "-c", &config]).await;
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status_text.contains(&format!("interrupted (process {pid} is gone)")),
        "{}",
        text(&status)
    );

    let broken = incomplete_tags(&dst, REPO);
    assert!(broken.is_empty(), "after the kill: {broken:?}");
    let complete: u64 = sizes
        .iter()
        .filter(|(d, _)| dst.blob(REPO, d).is_some())
        .map(|(_, s)| s)
        .sum();
    let tags_after_kill = dst.tags(REPO).len();
    println!("killed with {complete} of {total} bytes on the target, {tags_after_kill} tags");
    assert!(complete < total);

    src.clear_log();
    dst.clear_log();
    let out = ocimirror(dir.path(), &["once", "-c", &config]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("second run:\n{stdout}");
    assert!(
        stdout.contains(&format!("requests: {} ", src.host()))
            && stdout.contains(&format!("requests: {} ", dst.host())),
        "{}",
        text(&out)
    );

    // Converged: every image byte-identical with its signature listed.
    for (tag, (image, sig)) in &images {
        let want = src.manifest(REPO, tag).unwrap();
        assert_eq!(dst.manifest(REPO, tag), Some(want), "{tag}");
        assert_eq!(
            dst.manifest(REPO, sig).map(|(_, b)| b),
            src.manifest(REPO, sig).map(|(_, b)| b)
        );
        assert!(dst.referrers(REPO, image).contains(sig), "{tag}");
    }
    for d in sizes.keys() {
        assert_eq!(dst.blob(REPO, d), src.blob(REPO, d), "{d}");
    }
    assert!(incomplete_tags(&dst, REPO).is_empty());

    // Bytes moved by the second run: the blobs it read from the source.
    let moved: u64 = src
        .log()
        .iter()
        .filter(|r| r.method == "GET" && r.status == 200 && r.path.contains("/blobs/"))
        .filter_map(|r| sizes.get(r.path.rsplit('/').next().unwrap()))
        .sum();
    let pushed = dst.count("PUT", "/blobs/uploads/");
    let bound = total - complete + CONCURRENT_BLOBS * largest;
    println!(
        "second run moved {moved} bytes ({pushed} blob uploads); bound {bound} = {total} total - {complete} complete + {CONCURRENT_BLOBS} x {largest}"
    );
    assert!(moved <= bound, "moved {moved} > {bound}");
    assert!(
        moved >= total - complete,
        "moved {moved} < {}",
        total - complete
    );
}
