//! What the engine does not believe, through real HTTP: a source whose
//! graph is unbounded (an index chain 20 000 deep) fails that image with
//! the named limit while a healthy image beside it is copied, and a target
//! that misreports blob sizes gets the blobs uploaded and a named error
//! instead of a tag.

use std::sync::Arc;
use std::time::Instant;

use ocimirror::copy::{Copier, CopyError, CopyOptions, Limit};
use ocimirror::oci::{Reference, RepoName, Tag};
use ocimirror::registry::http::{HttpRegistry, HttpSettings};
use serde_json::json;

use crate::support::fixtures::{self, Form, OCI_INDEX, OCI_MANIFEST};
use crate::support::registry::{Options, TestRegistry};

const REPO: &str = "limits/app";

fn http(reg: &TestRegistry) -> Arc<HttpRegistry> {
    Arc::new(HttpRegistry::new(&reg.host(), HttpSettings::default()).unwrap())
}

fn tag(t: &str) -> Reference {
    Reference::Tag(Tag::new(t).unwrap())
}

/// Peak resident memory of this process, from `/proc/self/status`.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// An image under `depth` nested indexes, the top one tagged `tag`.
fn seed_chain(reg: &TestRegistry, depth: usize, tag: &str) -> String {
    let mut child = reg.seed_image(REPO, "chain-leaf", &[b"chain leaf layer"]);
    let mut media_type = OCI_MANIFEST;
    for level in 0..depth {
        let size = reg.manifest(REPO, &child).unwrap().1.len();
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": media_type, "digest": child, "size": size}],
        }))
        .unwrap();
        let reference = if level + 1 == depth {
            tag.to_string()
        } else {
            fixtures::sha256(&body)
        };
        child = reg.put_manifest(REPO, &reference, OCI_INDEX, &body);
        media_type = OCI_INDEX;
    }
    child
}

#[tokio::test]
async fn a_20000_deep_chain_fails_by_name_and_the_healthy_image_beside_it_is_copied() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let good = fixtures::image(Form::Api, "healthy");
    fixtures::seed_registry(&src, REPO, &good);
    let top = seed_chain(&src, 20_000, "deep");
    let repo = RepoName::new(REPO).unwrap();
    let copier = Copier::new(http(&src), http(&dst), CopyOptions::default());

    src.clear_log();
    let started = Instant::now();
    let e = copier
        .copy_image(&repo, &tag("deep"), &repo, None)
        .await
        .unwrap_err();
    eprintln!(
        "20 000-deep index chain: failed after {:?} and {} requests to the source; peak RSS {}",
        started.elapsed(),
        src.log().len(),
        peak_rss()
    );
    match &e {
        CopyError::LimitExceeded {
            limit: Limit::IndexDepth,
            max,
            registry,
            repo: r,
            ..
        } => {
            assert_eq!(*max, CopyOptions::DEFAULT_MAX_INDEX_DEPTH as u64);
            assert_eq!(registry, &src.host());
            assert_eq!(r, REPO);
        }
        other => panic!("expected the index depth limit, got {other}"),
    }
    let message = e.to_string();
    assert!(message.contains("max_index_depth"), "{message}");
    assert_eq!(e.kind(), "limit_exceeded");
    // Bounded work, and nothing of the chain on the target.
    assert!(src.log().len() < 50, "{} source requests", src.log().len());
    assert!(dst.manifest(REPO, &top).is_none());
    assert!(dst.tags(REPO).is_empty());

    let report = copier
        .copy_image(&repo, &tag("v1"), &repo, None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    for m in &good.manifests {
        assert_eq!(
            dst.manifest(REPO, &m.digest).map(|(_, b)| b),
            Some(m.bytes.clone()),
            "{}",
            m.digest
        );
    }
    assert_eq!(dst.tags(REPO), ["v1"]);
}

#[tokio::test]
async fn a_target_that_misreports_blob_sizes_gets_them_uploaded_and_no_tag() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options {
        lie_blob_head_size: true,
        ..Options::default()
    })
    .await;
    let layer = b"a layer the target claims to have";
    let digest = src.seed_image(REPO, "v1", &[layer]);
    // A repository with a tag: the copier asks about each blob (a new one
    // holds only what the copier wrote, and is not asked).
    dst.seed_image(REPO, "older", &[b"another layer"]);
    let repo = RepoName::new(REPO).unwrap();
    let copier = Copier::new(http(&src), http(&dst), CopyOptions::default());
    let report = copier
        .copy_image(&repo, &tag("v1"), &repo, None)
        .await
        .unwrap();
    // Uploaded, not believed present.
    assert_eq!(
        dst.blob(REPO, &fixtures::sha256(layer)).as_deref(),
        Some(&layer[..])
    );
    let kinds: Vec<&str> = report.failures.iter().map(|f| f.kind()).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "target_size_mismatch")
            .count(),
        2,
        "{:#?}",
        report.failures
    );
    assert!(
        kinds
            .iter()
            .all(|k| matches!(*k, "target_size_mismatch" | "dependency")),
        "{:#?}",
        report.failures
    );
    assert!(dst.manifest(REPO, &digest).is_none());
    assert_eq!(dst.tags(REPO), ["older"]);
}

/// The same chain through the real binary, as a user meets it: the deep
/// image fails by name within seconds, the healthy tag beside it is copied,
/// and the process stays far below 256 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_ends_a_20000_deep_chain_quickly_in_bounded_memory() {
    let src = TestRegistry::start(Options::default()).await;
    let good = fixtures::image(Form::Api, "healthy-bin");
    fixtures::seed_registry(&src, REPO, &good);
    seed_chain(&src, 20_000, "deep");
    let dst = tempfile::tempdir().unwrap();
    let from = format!("{}/{REPO}", src.host());
    let to = format!("oci:{}", dst.path().display());
    let out = tokio::task::spawn_blocking(move || {
        crate::support::cli::ocimirror_measured(
            std::path::Path::new("."),
            &["copy", "--all-tags", &from, &to],
            std::time::Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, Some(1), "{all}");
    assert!(all.contains("max_index_depth"), "{all}");
    assert!(
        out.elapsed < std::time::Duration::from_secs(30),
        "took {:?}",
        out.elapsed
    );
    assert!(out.peak_rss < 256 << 20, "peak RSS {} bytes", out.peak_rss);
    let view = fixtures::LayoutView::read(dst.path());
    assert_eq!(view.tags().get("v1"), Some(&good.index));
    assert!(!view.tags().contains_key("deep"));
    eprintln!(
        "20 000-deep chain via the binary: failed by name in {:?}, peak RSS {} KiB",
        out.elapsed,
        out.peak_rss >> 10
    );
}
