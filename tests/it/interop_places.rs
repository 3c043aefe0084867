//! The places the copy and interop tests copy between: test registries of
//! every personality, OCI layout directories and repositories of a real
//! distribution 2.8, with seeding and read-back that use no ocimirror code
//! (registry state, raw HTTP, raw layout files), and the assertions on a
//! copied fixture shared by `copy_matrix.rs` and `interop.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ocimirror::oci::Location;
use ocimirror::oci::{Reference, RepoName, Tag};
use ocimirror::registry::Registry;
use ocimirror::registry::http::{Credentials, HttpRegistry, HttpSettings, Secret};
use ocimirror::registry::open::open;
use tempfile::TempDir;

use crate::support::distribution::Distribution;
use crate::support::fixtures::{self, Fixture, Form, LayoutView, fallback_tag, index_digests};
use crate::support::registry::{Personality, TestRegistry};

pub const REPO: &str = "team/app";
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    /// A referrers-API registry, referrers stored with `subject` only.
    Api,
    /// A distribution-like registry (plain 404) with fallback tags.
    Tags,
    /// A referrers-API registry that also holds fallback tags.
    Both,
    /// cosign legacy tags on a registry without the API.
    Cosign,
    Layout,
    /// A layout listing every manifest but keeping no fallback tags
    /// (as oras-go writes them): referrers found by the subject scan.
    LayoutScan,
    /// A test registry with this personality, in its native form.
    Reg(Personality),
    /// A real distribution 2.8, with fallback tags.
    Distribution,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dst {
    Api,
    TagSchema,
    Layout,
    Reg(Personality),
    Distribution,
}

impl Dst {
    /// The target serves the referrers API: no fallback tags expected.
    pub fn has_api(self) -> bool {
        match self {
            Dst::Api => true,
            Dst::Reg(p) => p.has_api(),
            _ => false,
        }
    }
}

pub enum Place {
    Reg(TestRegistry),
    Dir(TempDir),
    /// A repository of a (possibly shared) distribution 2.8.
    Dist(Arc<Distribution>, String),
}

/// A repository name no other cell of this test binary uses.
fn fresh_dist_repo() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("mirror/c{}", N.fetch_add(1, Ordering::SeqCst))
}

async fn raw_get(url: String, accept: bool) -> Option<Vec<u8>> {
    let mut req = reqwest::Client::new().get(url);
    if accept {
        req = req.header("Accept", ACCEPT);
    }
    let resp = req.send().await.unwrap();
    if resp.status() == 404 {
        return None;
    }
    assert!(resp.status().is_success(), "{}", resp.status());
    Some(resp.bytes().await.unwrap().to_vec())
}

/// Pushes the fixture into distribution with raw HTTP (blobs, manifests in
/// push order, then tags), not through the code under test.
async fn push_raw(host: &str, repo: &str, f: &Fixture) {
    let http = reqwest::Client::new();
    for b in &f.blobs {
        let start = http
            .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), 202);
        let location = start.headers()["location"].to_str().unwrap().to_string();
        let mut url = reqwest::Url::parse(&format!("http://{host}"))
            .unwrap()
            .join(&location)
            .unwrap();
        url.query_pairs_mut()
            .append_pair("digest", &fixtures::sha256(b));
        let put = http.put(url).body(b.clone()).send().await.unwrap();
        assert_eq!(put.status(), 201);
    }
    let manifests = f.manifests.iter().map(|m| (m.digest.clone(), m));
    let tags = f.tags.iter().map(|(t, m)| (t.clone(), m));
    for (reference, m) in manifests.chain(tags) {
        let put = http
            .put(format!("http://{host}/v2/{repo}/manifests/{reference}"))
            .header("content-type", &m.media_type)
            .body(m.bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{reference}");
    }
}

impl Place {
    pub async fn registry(p: Personality) -> Place {
        Place::Reg(TestRegistry::start_as(p).await)
    }

    pub fn dir() -> Place {
        Place::Dir(tempfile::tempdir().unwrap())
    }

    /// A new repository in `dist`, or in a distribution of its own.
    pub fn distribution(dist: Option<&Arc<Distribution>>) -> Place {
        let d = dist
            .cloned()
            .unwrap_or_else(|| Arc::new(Distribution::start()));
        Place::Dist(d, fresh_dist_repo())
    }

    /// `host/repo` (or `oci:<dir>`), for job configs.
    pub fn reference(&self) -> String {
        match self {
            Place::Reg(r) => format!("{}/{REPO}", r.host()),
            Place::Dir(d) => format!("oci:{}", d.path().display()),
            Place::Dist(d, repo) => format!("{}/{repo}", d.host()),
        }
    }

    pub fn adapter(&self) -> Arc<dyn Registry> {
        match self {
            Place::Reg(r) => {
                let credentials = r
                    .personality()
                    .needs_credentials()
                    .then(|| Credentials::Basic {
                        username: Personality::USER.into(),
                        password: Secret::new(Personality::PASSWORD),
                    });
                let settings = HttpSettings {
                    credentials,
                    ..HttpSettings::default()
                };
                Arc::new(HttpRegistry::new(&r.host(), settings).unwrap())
            }
            Place::Dir(d) => open(
                &Location::Layout(d.path().to_path_buf()),
                &HttpSettings::default(),
            )
            .unwrap(),
            Place::Dist(d, _) => {
                Arc::new(HttpRegistry::new(&d.host(), HttpSettings::default()).unwrap())
            }
        }
    }

    pub fn repo(&self) -> RepoName {
        match self {
            Place::Reg(_) => RepoName::new(REPO).unwrap(),
            Place::Dir(_) => RepoName::root(),
            Place::Dist(_, repo) => RepoName::new(repo).unwrap(),
        }
    }

    /// Writes the fixture (again: seeding is idempotent).
    pub async fn seed(&self, f: &Fixture) {
        match self {
            Place::Reg(r) => fixtures::seed_registry(r, REPO, f),
            Place::Dir(d) => fixtures::write_layout(d.path(), f),
            Place::Dist(d, repo) => push_raw(&d.host(), repo, f).await,
        }
    }

    /// A manifest's exact bytes by tag or digest.
    pub async fn manifest(&self, reference: &str) -> Option<Vec<u8>> {
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
            Place::Dist(d, repo) => {
                let url = format!("http://{}/v2/{repo}/manifests/{reference}", d.host());
                raw_get(url, true).await
            }
        }
    }

    pub async fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        match self {
            Place::Reg(r) => r.blob(REPO, digest),
            Place::Dir(d) => LayoutView::read(d.path()).blob(digest),
            Place::Dist(d, repo) => {
                raw_get(
                    format!("http://{}/v2/{repo}/blobs/{digest}", d.host()),
                    false,
                )
                .await
            }
        }
    }

    pub async fn tags(&self) -> BTreeSet<String> {
        match self {
            Place::Reg(r) => r.tags(REPO).into_iter().collect(),
            Place::Dir(d) => LayoutView::read(d.path()).tags().into_keys().collect(),
            Place::Dist(d, repo) => {
                let url = format!("http://{}/v2/{repo}/tags/list", d.host());
                let Some(body) = raw_get(url, false).await else {
                    return BTreeSet::new();
                };
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                v["tags"]
                    .as_array()
                    .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            }
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
            Place::Dir(_) | Place::Dist(..) => 0,
        }
    }
}

pub fn v1() -> Reference {
    Reference::Tag(Tag::new("v1").unwrap())
}

/// A seeded source; `dist` is shared by cells that use distribution.
pub async fn source(kind: Src, f: &Fixture, dist: Option<&Arc<Distribution>>) -> Place {
    let p = match kind {
        Src::Api | Src::Both => Place::registry(Personality::FullApi).await,
        Src::Tags | Src::Cosign => Place::registry(Personality::Distribution28).await,
        Src::Reg(p) => Place::registry(p).await,
        Src::Layout | Src::LayoutScan => Place::dir(),
        Src::Distribution => Place::distribution(dist),
    };
    p.seed(f).await;
    p
}

pub async fn target(kind: Dst, dist: Option<&Arc<Distribution>>) -> Place {
    match kind {
        Dst::Api => Place::registry(Personality::FullApi).await,
        Dst::TagSchema => Place::registry(Personality::Distribution28).await,
        Dst::Reg(p) => Place::registry(p).await,
        Dst::Layout => Place::dir(),
        Dst::Distribution => Place::distribution(dist),
    }
}

pub fn form(kind: Src) -> Form {
    match kind {
        Src::Api | Src::LayoutScan => Form::Api,
        Src::Tags | Src::Both | Src::Layout | Src::Distribution => Form::Tags,
        Src::Reg(p) if p.has_api() => Form::Api,
        Src::Reg(_) => Form::Tags,
        Src::Cosign => Form::Cosign,
    }
}

fn subjects(f: &Fixture) -> BTreeSet<String> {
    f.edges.iter().map(|e| e.subject.clone()).collect()
}

/// Every node byte-identical, the tag on the index, and the referrers
/// listed the way the target represents them: the API and no fallback tag
/// on API targets, a fallback index listing every referrer elsewhere. On
/// registries, no tag beyond those.
pub async fn assert_copied(dst: &Place, dst_kind: Dst, f: &Fixture) {
    for m in &f.manifests {
        assert_eq!(
            dst.manifest(&m.digest).await.as_deref(),
            Some(&m.bytes[..]),
            "manifest {}",
            m.digest
        );
    }
    for b in &f.blobs {
        let d = fixtures::sha256(b);
        assert_eq!(dst.blob(&d).await.as_deref(), Some(&b[..]), "blob {d}");
    }
    assert_eq!(
        dst.manifest("v1").await.map(|b| fixtures::sha256(&b)),
        Some(f.index.clone())
    );
    for (tag, digest) in &f.cosign_tags {
        assert_eq!(
            dst.manifest(tag)
                .await
                .map(|b| fixtures::sha256(&b))
                .as_ref(),
            Some(digest),
            "cosign tag {tag}"
        );
    }
    for subject in subjects(f) {
        let mut want: Vec<String> = f
            .edges
            .iter()
            .filter(|e| e.subject == subject)
            .map(|e| e.referrer.clone())
            .collect();
        want.sort();
        match (dst_kind.has_api(), dst) {
            (true, Place::Reg(r)) => assert_eq!(r.referrers(REPO, &subject), want),
            _ => {
                let bytes = dst
                    .manifest(&fallback_tag(&subject))
                    .await
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
    if matches!(dst, Place::Dir(_)) {
        return;
    }
    let mut want: BTreeSet<String> = f.cosign_tags.iter().map(|(t, _)| t.clone()).collect();
    want.insert("v1".into());
    if !dst_kind.has_api() {
        want.extend(subjects(f).iter().map(|s| fallback_tag(s)));
    }
    assert_eq!(dst.tags().await, want, "tags of the target");
}

/// On a test registry target filled by one copy: the image tag was written
/// after every referrer and every fallback index, so a client that sees the
/// tag also sees its signatures.
pub fn assert_tag_written_last(dst: &Place, f: &Fixture) {
    let Place::Reg(r) = dst else { return };
    let puts: Vec<String> = r
        .log()
        .into_iter()
        .filter(|l| l.method == "PUT" && l.status == 201 && l.path.contains("/manifests/"))
        .map(|l| l.path.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    let tag_at = puts.iter().position(|p| p == "v1").expect("v1 was written");
    let referrers: BTreeSet<&String> = f.edges.iter().map(|e| &e.referrer).collect();
    for (i, p) in puts.iter().enumerate() {
        if referrers.contains(p) || p.starts_with("sha256-") {
            assert!(i < tag_at, "{p} written after the tag: {puts:?}");
        }
    }
}

/// No request followed a 303 of a GHCR-like registry to its web origin.
pub fn assert_no_web_page_visited(p: &Place) {
    if let Place::Reg(r) = p {
        assert_eq!(r.count("", "/orgs/test/packages"), 0, "{:#?}", r.log());
    }
}

/// Runs every named cell as its own task, all at once, then fails naming
/// every cell that panicked.
pub async fn run_concurrently<F>(cells: Vec<(String, F)>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks = cells.into_iter().map(|(name, cell)| {
        let task = tokio::spawn(cell);
        async move { (name, task.await) }
    });
    let failed: Vec<String> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .filter_map(|(name, r)| {
            let panic = r.err()?.into_panic();
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Some(format!("{name}: {msg}"))
        })
        .collect();
    assert!(failed.is_empty(), "failed cells:\n{}", failed.join("\n"));
}
