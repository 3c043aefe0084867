//! The copy engine across representations and registries. Sources: the
//! referrers API, fallback tags, both, cosign legacy tags, OCI layouts,
//! every registry personality and a real distribution 2.8; targets: every
//! personality, OCI layouts and distribution 2.8. The fixture is a
//! 2-platform index with nested referrers. Every assertion reads the target
//! directly (test registry state, raw HTTP to distribution, raw layout
//! files), never through ocimirror.

use std::sync::Arc;

use ocimirror::copy::{Copier, CopyOptions, CopyReport};
use ocimirror::oci::RepoName;
use ocimirror::registry::Registry;
use ocimirror::registry::http::{HttpRegistry, HttpSettings};

use crate::interop_places::{
    Dst, Place, REPO, Src, assert_copied, assert_no_web_page_visited, assert_tag_written_last,
    form, run_concurrently, source, target, v1,
};
use crate::support::distribution::Distribution;
use crate::support::fixtures::{self, ATT, Fixture, Form, SIG, fallback_tag, index_digests};
use crate::support::registry::{Fault, FaultKind, Options, Personality, TestRegistry};

async fn cell(src_kind: Src, dst_kind: Dst, dist: Option<&Arc<Distribution>>) {
    let form = form(src_kind);
    let mut f = fixtures::image(form, &format!("{src_kind:?} to {dst_kind:?}"));
    let src = source(src_kind, &f, dist).await;
    let dst = target(dst_kind, dist).await;
    dst.clear_log();
    let copier = Copier::new(src.adapter(), dst.adapter(), CopyOptions::default());
    let report = copier
        .copy_image(&src.repo(), &v1(), &dst.repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_eq!(report.manifests_copied, 6, "{report}");
    assert_copied(&dst, dst_kind, &f).await;
    assert_tag_written_last(&dst, &f);

    // A re-run writes nothing.
    dst.clear_log();
    let again = copier
        .copy_image(&src.repo(), &v1(), &dst.repo(), None)
        .await
        .unwrap();
    assert!(again.is_success(), "{:?}", again.failures);
    assert!(again.wrote_nothing(), "{again}");
    assert_eq!(dst.writes(), 0);

    // A new signature on the index is the only thing the next run copies.
    let late = f.add_referrer(form, &f.index.clone(), SIG, "late signature", "sig");
    src.seed(&f).await;
    dst.clear_log();
    // The next run (a copier per run: it caches the source's tag list).
    let copier = Copier::new(src.adapter(), dst.adapter(), CopyOptions::default());
    let next: CopyReport = copier
        .copy_image(&src.repo(), &v1(), &dst.repo(), None)
        .await
        .unwrap();
    assert!(next.is_success(), "{:?}", next.failures);
    assert_eq!(next.manifests_copied, 1, "{next}");
    // Its layer (a cosign signature also has its own config blob).
    let new_blobs = if form == Form::Cosign { 2 } else { 1 };
    // (Mounted when source and target share a registry.)
    assert_eq!(next.blobs_copied + next.blobs_mounted, new_blobs, "{next}");
    assert_eq!(
        dst.manifest(&late.digest).await.as_deref(),
        Some(&late.bytes[..])
    );
    if let Place::Reg(r) = &dst {
        let manifest_puts = r.count("PUT", "/manifests/");
        let expected = match form {
            Form::Cosign => 2,            // the manifest, then its tag
            _ if dst_kind.has_api() => 1, // the referrer only
            _ => 2,                       // the referrer, then the fallback index
        };
        assert_eq!(manifest_puts, expected, "{:#?}", r.log());
    }
    assert_copied(&dst, dst_kind, &f).await;
    assert_no_web_page_visited(&src);
    assert_no_web_page_visited(&dst);
}

macro_rules! matrix {
    ($($name:ident: $src:ident -> $dst:ident;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                cell(Src::$src, Dst::$dst, None).await;
            }
        )*
    };
}

matrix! {
    api_to_api: Api -> Api;
    api_to_tag_schema: Api -> TagSchema;
    api_to_layout: Api -> Layout;
    tags_to_api: Tags -> Api;
    tags_to_tag_schema: Tags -> TagSchema;
    tags_to_layout: Tags -> Layout;
    both_to_api: Both -> Api;
    both_to_tag_schema: Both -> TagSchema;
    both_to_layout: Both -> Layout;
    both_to_distribution: Both -> Distribution;
    cosign_to_api: Cosign -> Api;
    cosign_to_tag_schema: Cosign -> TagSchema;
    cosign_to_layout: Cosign -> Layout;
    cosign_to_distribution: Cosign -> Distribution;
    layout_to_api: Layout -> Api;
    layout_to_tag_schema: Layout -> TagSchema;
    layout_to_layout: Layout -> Layout;
    layout_to_distribution: Layout -> Distribution;
    layout_scan_to_api: LayoutScan -> Api;
    layout_scan_to_tag_schema: LayoutScan -> TagSchema;
    layout_scan_to_layout: LayoutScan -> Layout;
}

/// Every target of the personality matrix.
fn personality_targets() -> Vec<Dst> {
    let mut t: Vec<Dst> = Personality::ALL.iter().map(|p| Dst::Reg(*p)).collect();
    t.extend([Dst::Layout, Dst::Distribution]);
    t
}

/// `src` into every target at once (one distribution shared through
/// distinct repositories).
async fn row(src: Src) {
    let dist = Arc::new(Distribution::start());
    let cells = personality_targets().into_iter().map(|dst| {
        let dist = dist.clone();
        let name = format!("{src:?} -> {dst:?}");
        (name, async move { cell(src, dst, Some(&dist)).await })
    });
    run_concurrently(cells.collect()).await;
}

macro_rules! personality_rows {
    ($($name:ident: $src:expr;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                row($src).await;
            }
        )*
    };
}

personality_rows! {
    full_api_to_every_personality: Src::Reg(Personality::FullApi);
    distribution28_to_every_personality: Src::Reg(Personality::Distribution28);
    api_off_405_to_every_personality: Src::Reg(Personality::ApiOff405);
    ghcr_303_to_every_personality: Src::Reg(Personality::Ghcr303);
    docker_hub_2024_to_every_personality: Src::Reg(Personality::DockerHub2024);
    html_200_to_every_personality: Src::Reg(Personality::Html200);
    referrers_401_to_every_personality: Src::Reg(Personality::Referrers401);
    real_distribution_to_every_personality: Src::Distribution;
}

#[tokio::test]
async fn concurrent_copies_of_two_referrers_of_one_subject_lose_neither() {
    let mut f = fixtures::image(Form::Api, "race");
    let index = f.index.clone();
    let sig = f.add_referrer(Form::Api, &index, SIG, "index signature", "");
    let src = source(Src::Api, &f, None).await;
    let dst = target(Dst::TagSchema, None).await;
    let Place::Reg(reg) = &dst else {
        unreachable!()
    };
    // The first fallback-index write loses a race (412) and must re-merge.
    reg.push_fault(Fault::once(
        Some("PUT"),
        &format!("/manifests/{}", fallback_tag(&index)),
        FaultKind::Status(412),
    ));
    race(&src, &dst, &f, &sig.digest).await;
    assert_eq!(reg.pending_faults(), 0, "the 412 fault was exercised");
}

/// distribution ignores `If-Match`: the per-subject lock alone must keep
/// two concurrent copies from losing a referrer.
#[tokio::test]
async fn concurrent_referrers_of_one_subject_into_distribution_lose_neither() {
    let mut f = fixtures::image(Form::Api, "dist-race");
    let index = f.index.clone();
    let sig = f.add_referrer(Form::Api, &index, SIG, "index signature", "");
    let src = source(Src::Api, &f, None).await;
    let dst = target(Dst::Distribution, None).await;
    race(&src, &dst, &f, &sig.digest).await;
}

/// Two copiers, one for the attestation and one for the new signature of
/// the index, at once: the fallback index lists both.
async fn race(src: &Place, dst: &Place, f: &Fixture, sig: &str) {
    let only = |t: &str| CopyOptions {
        artifact_types_include: vec![t.to_string()],
        ..CopyOptions::default()
    };
    let a = Copier::new(src.adapter(), dst.adapter(), only(ATT));
    let b = Copier::new(src.adapter(), dst.adapter(), only(SIG));
    let (repo, dst_repo, tag) = (src.repo(), dst.repo(), v1());
    let (ra, rb) = tokio::join!(
        a.copy_image(&repo, &tag, &dst_repo, None),
        b.copy_image(&repo, &tag, &dst_repo, None)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(
        ra.is_success() && rb.is_success(),
        "{:?} {:?}",
        ra.failures,
        rb.failures
    );
    let mut want = vec![f.att.clone(), sig.to_string()];
    want.sort();
    let bytes = dst.manifest(&fallback_tag(&f.index)).await.unwrap();
    assert_eq!(index_digests(&bytes), want);
}

#[tokio::test]
async fn request_counts_of_a_cold_copy_and_a_noop_recopy() {
    let mut f = fixtures::image(Form::Api, "counts");
    // 3 referrers: SBOM on amd64, signature on the SBOM, attestation on the index.
    assert_eq!(f.edges.len(), 3);
    f.edges.truncate(3);
    let src = source(Src::Api, &f, None).await;
    let dst = target(Dst::Api, None).await;
    let (Place::Reg(s), Place::Reg(t)) = (&src, &dst) else {
        unreachable!()
    };
    let copier = Copier::new(src.adapter(), dst.adapter(), CopyOptions::default());
    let count = |r: &TestRegistry| {
        ["GET", "HEAD", "PUT", "POST", "PATCH"]
            .iter()
            .map(|m| format!("{m}={}", r.count(m, "")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    s.clear_log();
    t.clear_log();
    copier
        .copy_image(&src.repo(), &v1(), &dst.repo(), None)
        .await
        .unwrap();
    println!("cold copy:   source {} | target {}", count(s), count(t));
    let cold_puts = t.count("PUT", "/manifests/");
    assert_eq!(
        cold_puts,
        6,
        "5 manifests by digest + the root by its tag: {:#?}",
        t.log()
    );
    // A new run: fresh adapters and copier, as the daemon's next tick.
    let copier = Copier::new(src.adapter(), dst.adapter(), CopyOptions::default());
    s.clear_log();
    t.clear_log();
    let report = copier
        .copy_image(&src.repo(), &v1(), &dst.repo(), None)
        .await
        .unwrap();
    assert!(report.wrote_nothing() && report.is_success(), "{report}");
    println!("no-op copy:  source {} | target {}", count(s), count(t));
    for (side, r) in [("source", s), ("target", t)] {
        for l in r.log() {
            println!("  no-op {side}: {} {} -> {}", l.method, l.path, l.status);
        }
    }
    assert_eq!(
        t.count("PUT", "") + t.count("POST", "") + t.count("PATCH", ""),
        0
    );
}

#[tokio::test]
async fn transfers_stay_within_the_concurrency_bound() {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let layers: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 64 * 1024]).collect();
    let refs: Vec<&[u8]> = layers.iter().map(|l| &l[..]).collect();
    src.seed_image(REPO, "v1", &refs);
    // Slow transfers, so that they overlap as much as the engine lets them.
    let slow = |path: &str, method: &str| Fault {
        method: Some(method.to_string()),
        path_contains: path.to_string(),
        kind: FaultKind::Delay(std::time::Duration::from_millis(80)),
        times: 13,
    };
    src.push_fault(slow("/blobs/sha256:", "GET"));
    dst.push_fault(slow("/blobs/uploads/", "PUT"));
    let adapter = |r: &TestRegistry| -> Arc<dyn Registry> {
        Arc::new(HttpRegistry::new(&r.host(), HttpSettings::default()).unwrap())
    };
    let opts = CopyOptions {
        concurrency: 3,
        ..CopyOptions::default()
    };
    let repo = RepoName::new(REPO).unwrap();
    let report = Copier::new(adapter(&src), adapter(&dst), opts)
        .copy_image(&repo, &v1(), &repo, None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_eq!(report.blobs_copied, 13);
    for (side, r) in [("source", &src), ("target", &dst)] {
        let peak = r.max_concurrent_requests();
        assert!(peak <= 3, "{side}: {peak} requests at once");
        assert!(peak >= 2, "{side}: transfers did not overlap ({peak})");
    }
}
