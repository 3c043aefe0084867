//! Bounds on one image's graph: a hostile source ends its image with a named
//! limit error after bounded work, and writes nothing; ordering is linear
//! and iterative.

use super::*;
use crate::copy::graph::levels;

/// An image manifest under `depth` nested indexes, the top one tagged `tag`.
fn seed_chain(reg: &MemoryRegistry, depth: usize, tag: &str) -> Digest {
    let mut blobs = Vec::new();
    let (mut child, mut size) = seed_image(reg, &format!("chain-{tag}"), &mut blobs);
    let mut media_type = mt::OCI_MANIFEST;
    for level in 0..depth {
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": mt::OCI_INDEX,
            "manifests": [desc(media_type, &child, size)],
        }))
        .unwrap();
        let tag = (level + 1 == depth).then_some(tag);
        child = reg.seed_manifest(REPO, tag, mt::OCI_INDEX, &body);
        size = body.len();
        media_type = mt::OCI_INDEX;
    }
    child
}

fn limit_of(e: &CopyError) -> Option<(Limit, u64)> {
    match e {
        CopyError::LimitExceeded { limit, max, .. } => Some((*limit, *max)),
        _ => None,
    }
}

#[tokio::test]
async fn a_20000_deep_index_chain_ends_with_the_depth_error_and_writes_nothing() {
    // A tag-schema source: the in-memory API would scan 20 000 manifests.
    let src = Arc::new(MemoryRegistry::new("src", false));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    seed_chain(&src, 20_000, "v1");
    src.clear_log();
    let e = copier(&src, &dst, CopyOptions::default())
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap_err();
    assert_eq!(
        limit_of(&e),
        Some((
            Limit::IndexDepth,
            CopyOptions::DEFAULT_MAX_INDEX_DEPTH as u64
        )),
        "{e}"
    );
    assert_eq!(e.kind(), "limit_exceeded");
    assert!(e.to_string().contains("max_index_depth"), "{e}");
    // Bounded work: the root and the 8 allowed levels below it.
    assert!(
        src.count(Operation::ManifestGet) <= 10,
        "{}",
        src.count(Operation::ManifestGet)
    );
    assert_eq!(dst.writes(), 0);
}

#[tokio::test]
async fn a_chain_within_a_raised_depth_limit_is_copied_bottom_up() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let top = seed_chain(&src, 2_000, "v1");
    let opts = CopyOptions {
        max_index_depth: 2_000,
        referrers: false,
        ..CopyOptions::default()
    };
    let report = copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_eq!(report.manifests_copied, 2_001);
    assert_eq!(
        dst.manifest_bytes(REPO, "v1")
            .map(|(_, b)| Digest::sha256(&b)),
        Some(top)
    );
}

#[tokio::test]
async fn a_wide_index_hits_the_node_limit_before_its_children_are_read() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    let mut blobs = Vec::new();
    let entries: Vec<Value> = (0..50)
        .map(|i| {
            let (d, size) = seed_image(&src, &format!("wide-{i}"), &mut blobs);
            desc(mt::OCI_MANIFEST, &d, size)
        })
        .collect();
    let body = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": entries}),
    )
    .unwrap();
    let index = src.seed_manifest(REPO, Some("v1"), mt::OCI_INDEX, &body);
    src.clear_log();
    let opts = CopyOptions {
        max_nodes: 20,
        ..CopyOptions::default()
    };
    let e = copier(&src, &dst, opts)
        .copy_image(&repo(), &v1(), &repo(), None)
        .await
        .unwrap_err();
    assert_eq!(limit_of(&e), Some((Limit::Nodes, 20)), "{e}");
    assert!(matches!(&e, CopyError::LimitExceeded { digest, .. } if *digest == index));
    assert_eq!(
        src.count(Operation::ManifestGet),
        1,
        "only the index was read"
    );
    assert_eq!(dst.writes(), 0);
}

#[tokio::test]
async fn manifest_bytes_and_referrers_per_subject_are_bounded_per_image() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    fixture(&src, false);
    let bytes = CopyOptions {
        max_manifest_bytes: 1_000,
        ..CopyOptions::default()
    };
    let listed = CopyOptions {
        max_referrers_per_subject: 0,
        ..CopyOptions::default()
    };
    for (opts, limit) in [
        (bytes, (Limit::ManifestBytes, 1_000)),
        (listed, (Limit::ReferrersPerSubject, 0)),
    ] {
        let dst = Arc::new(MemoryRegistry::new("dst", true));
        let e = copier(&src, &dst, opts)
            .copy_image(&repo(), &v1(), &repo(), None)
            .await
            .unwrap_err();
        assert_eq!(limit_of(&e), Some(limit), "{e}");
        assert!(e.to_string().contains(limit.0.option()), "{e}");
        assert_eq!(dst.writes(), 0);
    }
}

#[tokio::test]
async fn one_image_over_a_limit_leaves_the_next_image_of_the_copier_alone() {
    let src = Arc::new(MemoryRegistry::new("src", true));
    let dst = Arc::new(MemoryRegistry::new("dst", true));
    seed_chain(&src, 50, "deep");
    let f = fixture(&src, false);
    let c = copier(&src, &dst, CopyOptions::default());
    let deep = Reference::Tag(Tag::new("deep").unwrap());
    assert!(c.copy_image(&repo(), &deep, &repo(), None).await.is_err());
    let report = c.copy_image(&repo(), &v1(), &repo(), None).await.unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_identical(&src, &dst, &f);
    assert!(dst.manifest_bytes(REPO, "deep").is_none());
}

#[test]
fn kahn_orders_a_100000_node_chain_without_recursion() {
    // A small stack proves the ordering does not recurse per level.
    let waves = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let n = 100_000;
            // Node i needs node i + 1: the last node comes first.
            let deps: Vec<Vec<usize>> = (0..n)
                .map(|i| if i + 1 < n { vec![i + 1] } else { Vec::new() })
                .collect();
            levels(&deps)
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(waves.len(), 100_000);
    assert_eq!(waves[0], vec![99_999]);
    assert_eq!(waves[99_999], vec![0]);
}

#[test]
fn kahn_puts_each_node_after_all_it_needs_and_loops_last() {
    // 0 needs 1 and 2; 2 needs 1; 3 and 4 need each other (a loop).
    let deps = vec![vec![1, 2], vec![], vec![1], vec![4], vec![3]];
    assert_eq!(levels(&deps), vec![vec![1], vec![2], vec![0], vec![3, 4]]);
}
