//! The copy engine across representations: source {referrers API, fallback
//! tags, both, cosign legacy tags, OCI layout} x target {referrers API, tag
//! schema, OCI layout}, on a 2-platform index with nested referrers. Every
//! assertion reads the target directly (test registry accessors, raw layout
//! files), never through ocimirror.

use std::sync::Arc;

use ocimirror::copy::{Copier, CopyOptions, CopyReport};
use ocimirror::oci::Location;
use ocimirror::oci::{Reference, RepoName, Tag};
use ocimirror::registry::Registry;
use ocimirror::registry::http::{HttpRegistry, HttpSettings};
use ocimirror::registry::open::open;
use tempfile::TempDir;

use crate::support::fixtures::{
    self, ATT, Fixture, Form, LayoutView, SIG, fallback_tag, index_digests,
};
use crate::support::registry::{Fault, FaultKind, Options, TestRegistry};

const REPO: &str = "team/app";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    Api,
    Tags,
    Both,
    Cosign,
    Layout,
    /// A layout listing every manifest but keeping no fallback tags
    /// (as oras-go writes them): referrers found by the subject scan.
    LayoutScan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dst {
    Api,
    TagSchema,
    Layout,
}

pub enum Place {
    Reg(TestRegistry),
    Dir(TempDir),
}

impl Place {
    pub async fn registry(api: bool) -> Place {
        Place::Reg(
            TestRegistry::start(Options {
                referrers_api: api,
                ..Options::default()
            })
            .await,
        )
    }

    pub fn dir() -> Place {
        Place::Dir(tempfile::tempdir().unwrap())
    }

    pub fn adapter(&self) -> Arc<dyn Registry> {
        match self {
            Place::Reg(r) => {
                Arc::new(HttpRegistry::new(&r.host(), HttpSettings::default()).unwrap())
            }
            Place::Dir(d) => open(
                &Location::Layout(d.path().to_path_buf()),
                &HttpSettings::default(),
            )
            .unwrap(),
        }
    }

    pub fn repo(&self) -> RepoName {
        match self {
            Place::Reg(_) => RepoName::new(REPO).unwrap(),
            Place::Dir(_) => RepoName::root(),
        }
    }

    /// Writes the fixture (again: seeding is idempotent).
    pub fn seed(&self, f: &Fixture) {
        match self {
            Place::Reg(r) => fixtures::seed_registry(r, REPO, f),
            Place::Dir(d) => fixtures::write_layout(d.path(), f),
        }
    }

    /// A manifest's exact bytes by tag or digest.
    pub fn manifest(&self, reference: &str) -> Option<Vec<u8>> {
        match self {
            Place::Reg(r) => r.manifest(REPO, reference).map(|(_, b)| b),
            Place::Dir(d) => {
                let v = LayoutView::read(d.path());
                let digest = if reference.starts_with("sha256:") {
                    reference.to_string()
                } else {
                    v.tags().get(reference)?.clone()
                };
                v.blob(&digest)
            }
        }
    }

    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        match self {
            Place::Reg(r) => r.blob(REPO, digest),
            Place::Dir(d) => LayoutView::read(d.path()).blob(digest),
        }
    }

    pub fn tags(&self) -> Vec<String> {
        match self {
            Place::Reg(r) => r.tags(REPO),
            Place::Dir(d) => LayoutView::read(d.path()).tags().into_keys().collect(),
        }
    }

    pub fn clear_log(&self) {
        if let Place::Reg(r) = self {
            r.clear_log();
        }
    }

    /// Write requests (PUT, POST, PATCH) since the log was cleared.
    pub fn writes(&self) -> usize {
        match self {
            Place::Reg(r) => r.count("PUT", "") + r.count("POST", "") + r.count("PATCH", ""),
            Place::Dir(_) => 0,
        }
    }
}

fn v1() -> Reference {
    Reference::Tag(Tag::new("v1").unwrap())
}

pub async fn source(kind: Src, f: &Fixture) -> Place {
    let p = match kind {
        Src::Api | Src::Both => Place::registry(true).await,
        Src::Tags | Src::Cosign => Place::registry(false).await,
        Src::Layout | Src::LayoutScan => Place::dir(),
    };
    p.seed(f);
    p
}

pub async fn target(kind: Dst) -> Place {
    match kind {
        Dst::Api => Place::registry(true).await,
        Dst::TagSchema => Place::registry(false).await,
        Dst::Layout => Place::dir(),
    }
}

pub fn form(kind: Src) -> Form {
    match kind {
        Src::Api | Src::LayoutScan => Form::Api,
        Src::Tags | Src::Both | Src::Layout => Form::Tags,
        Src::Cosign => Form::Cosign,
    }
}

/// Every node byte-identical, the tag on the index, and the referrers
/// listed the way the target represents them.
pub fn assert_copied(dst: &Place, dst_kind: Dst, f: &Fixture) {
    for m in &f.manifests {
        assert_eq!(
            dst.manifest(&m.digest).as_deref(),
            Some(&m.bytes[..]),
            "manifest {}",
            m.digest
        );
    }
    for b in &f.blobs {
        let d = fixtures::sha256(b);
        assert_eq!(dst.blob(&d).as_deref(), Some(&b[..]), "blob {d}");
    }
    assert_eq!(
        dst.manifest("v1").map(|b| fixtures::sha256(&b)),
        Some(f.index.clone())
    );
    for (tag, digest) in &f.cosign_tags {
        assert_eq!(
            dst.manifest(tag).map(|b| fixtures::sha256(&b)).as_ref(),
            Some(digest),
            "cosign tag {tag}"
        );
    }
    let mut subjects: Vec<&String> = f.edges.iter().map(|e| &e.subject).collect();
    subjects.dedup();
    for subject in subjects {
        let mut want: Vec<String> = f
            .edges
            .iter()
            .filter(|e| &e.subject == subject)
            .map(|e| e.referrer.clone())
            .collect();
        want.sort();
        match (dst_kind, dst) {
            (Dst::Api, Place::Reg(r)) => assert_eq!(r.referrers(REPO, subject), want),
            _ => {
                let bytes = dst
                    .manifest(&fallback_tag(subject))
                    .unwrap_or_else(|| panic!("no fallback index for {subject}"));
                assert_eq!(index_digests(&bytes), want, "fallback index of {subject}");
                // Entries are what the API would list.
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                for e in v["manifests"].as_array().unwrap() {
                    let m = f.manifest(e["digest"].as_str().unwrap());
                    assert_eq!(e, &m.referrer_desc());
                }
            }
        }
    }
    if dst_kind == Dst::Api {
        let fallback: Vec<String> = dst
            .tags()
            .into_iter()
            .filter(|t| t.starts_with("sha256-") && !t.contains('.'))
            .collect();
        assert!(
            fallback.is_empty(),
            "fallback tags on an API target: {fallback:?}"
        );
    }
}

async fn cell(src_kind: Src, dst_kind: Dst) {
    let form = form(src_kind);
    let mut f = fixtures::image(form, "matrix");
    let src = source(src_kind, &f).await;
    let dst = target(dst_kind).await;
    let copier = Copier::new(src.adapter(), dst.adapter(), CopyOptions::default());
    let report = copier
        .copy_image(&src.repo(), &v1(), &dst.repo(), None)
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failures);
    assert_eq!(report.manifests_copied, 6, "{report}");
    assert_copied(&dst, dst_kind, &f);

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
    src.seed(&f);
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
    assert_eq!(next.blobs_copied, new_blobs, "{next}");
    assert_eq!(dst.manifest(&late.digest).as_deref(), Some(&late.bytes[..]));
    if let Place::Reg(r) = &dst {
        let manifest_puts = r.count("PUT", "/manifests/");
        let expected = match (form, dst_kind) {
            (Form::Cosign, _) => 2, // the manifest, then its tag
            (_, Dst::Api) => 1,     // the referrer only
            _ => 2,                 // the referrer, then the fallback index
        };
        assert_eq!(manifest_puts, expected, "{:#?}", r.log());
    }
    assert_copied(&dst, dst_kind, &f);
}

macro_rules! matrix {
    ($($name:ident: $src:ident -> $dst:ident;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                cell(Src::$src, Dst::$dst).await;
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
    cosign_to_api: Cosign -> Api;
    cosign_to_tag_schema: Cosign -> TagSchema;
    cosign_to_layout: Cosign -> Layout;
    layout_to_api: Layout -> Api;
    layout_to_tag_schema: Layout -> TagSchema;
    layout_to_layout: Layout -> Layout;
    layout_scan_to_api: LayoutScan -> Api;
    layout_scan_to_tag_schema: LayoutScan -> TagSchema;
    layout_scan_to_layout: LayoutScan -> Layout;
}

#[tokio::test]
async fn concurrent_copies_of_two_referrers_of_one_subject_lose_neither() {
    let mut f = fixtures::image(Form::Api, "race");
    let index = f.index.clone();
    let sig = f.add_referrer(Form::Api, &index, SIG, "index signature", "");
    let src = source(Src::Api, &f).await;
    let dst = target(Dst::TagSchema).await;
    let Place::Reg(reg) = &dst else {
        unreachable!()
    };
    // The first fallback-index write loses a race (412) and must re-merge.
    reg.push_fault(Fault::once(
        Some("PUT"),
        &format!("/manifests/{}", fallback_tag(&index)),
        FaultKind::Status(412),
    ));
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
    let mut want = vec![f.att.clone(), sig.digest.clone()];
    want.sort();
    let bytes = dst.manifest(&fallback_tag(&index)).unwrap();
    assert_eq!(index_digests(&bytes), want);
    assert_eq!(reg.pending_faults(), 0, "the 412 fault was exercised");
}

#[tokio::test]
async fn request_counts_of_a_cold_copy_and_a_noop_recopy() {
    let mut f = fixtures::image(Form::Api, "counts");
    // 3 referrers: SBOM on amd64, signature on the SBOM, attestation on the index.
    assert_eq!(f.edges.len(), 3);
    f.edges.truncate(3);
    let src = source(Src::Api, &f).await;
    let dst = target(Dst::Api).await;
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
        7,
        "6 manifests by digest + the tag: {:#?}",
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
