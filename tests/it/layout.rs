//! The OCI image layout adapter against real directories (and skopeo).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, stream};
use ocimirror::oci::media_type as mt;
use ocimirror::oci::referrers::{fallback_tag, merge_fallback_index};
use ocimirror::oci::{Descriptor, Digest, Manifest, Reference, RepoName, Tag};
use ocimirror::registry::layout::{LayoutRegistry, REF_NAME};
use ocimirror::registry::{
    BlobStream, ErrorKind, Operation, Precondition, ReferrersSupport, Registry, RegistryError,
};
use serde_json::{Value, json};

mod bounds;
mod scan_mode;

// ---------------------------------------------------------------- fixtures

fn root() -> RepoName {
    RepoName::root()
}

fn tag(s: &str) -> Reference {
    Reference::Tag(Tag::new(s).unwrap())
}

/// Deterministic pseudo-random bytes (xorshift), so big blobs are not runs.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn chunked(bytes: Vec<u8>, chunk: usize) -> BlobStream {
    let parts: Vec<Result<Bytes, RegistryError>> = bytes
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(parts))
}

async fn put_blob(
    reg: &LayoutRegistry,
    repo: &RepoName,
    media_type: &str,
    bytes: &[u8],
) -> Descriptor {
    let desc = Descriptor::new(media_type, Digest::sha256(bytes), bytes.len() as u64);
    reg.blob_put(repo, &desc, chunked(bytes.to_vec(), 1000))
        .await
        .unwrap();
    desc
}

async fn read_blob(reg: &LayoutRegistry, repo: &RepoName, digest: &Digest) -> Vec<u8> {
    let blob = reg.blob_get(repo, digest).await.unwrap();
    let mut out = Vec::new();
    let mut s = blob.stream;
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out.len() as u64, blob.size);
    out
}

/// An empty tar archive (two zero blocks): a valid uncompressed layer.
fn empty_tar() -> Vec<u8> {
    vec![0u8; 1024]
}

/// Pushes config + layer blobs and returns a valid single-layer OCI image
/// manifest (not pushed). `label` makes manifests distinct.
async fn image(reg: &LayoutRegistry, repo: &RepoName, label: &str) -> Manifest {
    let layer_bytes = empty_tar();
    let layer = put_blob(
        reg,
        repo,
        "application/vnd.oci.image.layer.v1.tar",
        &layer_bytes,
    )
    .await;
    let config_bytes = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"label": label}},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest.to_string()]},
    }))
    .unwrap();
    let config = put_blob(reg, repo, mt::OCI_CONFIG, &config_bytes).await;
    let body = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": config,
        "layers": [layer],
        "annotations": {"label": label},
    }))
    .unwrap();
    Manifest::parse(Bytes::from(body), Some(mt::OCI_MANIFEST)).unwrap()
}

/// An artifact manifest referring to `subject`, with its empty config pushed.
async fn referrer(
    reg: &LayoutRegistry,
    repo: &RepoName,
    subject: &Manifest,
    kind: &str,
) -> Manifest {
    let empty = put_blob(reg, repo, mt::OCI_EMPTY, b"{}").await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "artifactType": kind,
        "config": empty,
        "layers": [empty],
        "subject": subject.descriptor(),
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }))
    .unwrap();
    Manifest::parse(Bytes::from(body), None).unwrap()
}

fn index_of(children: &[&Manifest]) -> Manifest {
    let manifests: Vec<Value> = children
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut d = serde_json::to_value(m.descriptor()).unwrap();
            d["platform"] =
                json!({"architecture": if i == 0 { "amd64" } else { "arm64" }, "os": "linux"});
            d
        })
        .collect();
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": manifests,
    }))
    .unwrap();
    Manifest::parse(Bytes::from(body), Some(mt::OCI_INDEX)).unwrap()
}

fn index_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

fn entries(dir: &Path) -> Vec<Value> {
    index_json(dir)["manifests"].as_array().unwrap().clone()
}

/// Every path under `dir`, relative, recursively.
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            if p.is_dir() {
                todo.push(p);
            }
        }
    }
    out
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    listing(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        })
        .collect()
}

fn blob_file(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join(d.algorithm().as_str()).join(d.hex())
}

// ---------------------------------------------------------------- round trips

#[tokio::test]
async fn multi_mib_blob_round_trips_streamed() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    assert_eq!(reg.name(), format!("oci:{}", tmp.path().display()));
    let bytes = noise(5 * 1024 * 1024 + 17, 7);
    let desc = Descriptor::new(
        mt::OCI_LAYER_GZIP,
        Digest::sha256(&bytes),
        bytes.len() as u64,
    );
    assert_eq!(reg.blob_head(&root(), &desc.digest).await.unwrap(), None);
    reg.blob_put(&root(), &desc, chunked(bytes.clone(), 64 * 1024))
        .await
        .unwrap();
    assert_eq!(
        reg.blob_head(&root(), &desc.digest).await.unwrap(),
        Some(bytes.len() as u64)
    );
    assert_eq!(
        std::fs::read(blob_file(tmp.path(), &desc.digest)).unwrap(),
        bytes
    );
    let back = read_blob(&reg, &root(), &desc.digest).await;
    assert!(back == bytes, "blob bytes differ after round trip");
    // The layout is valid: oci-layout and an (empty) index.json exist.
    let layout: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout, json!({"imageLayoutVersion": "1.0.0"}));
    assert_eq!(entries(tmp.path()), Vec::<Value>::new());
    assert!(temp_files(tmp.path()).is_empty());
}

#[tokio::test]
async fn manifests_indexes_and_tags_round_trip_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let amd = image(&reg, &root(), "amd64").await;
    let arm = image(&reg, &root(), "arm64").await;
    let idx = index_of(&[&amd, &arm]);
    // Children by digest (untagged), the index by tag.
    for child in [&amd, &arm] {
        let out = reg
            .manifest_put(
                &root(),
                &Reference::Digest(child.digest().clone()),
                child,
                Precondition::None,
            )
            .await
            .unwrap();
        assert!(!out.subject_indexed);
    }
    reg.manifest_put(&root(), &tag("v1"), &idx, Precondition::None)
        .await
        .unwrap();
    reg.manifest_put(&root(), &tag("amd"), &amd, Precondition::None)
        .await
        .unwrap();

    let fetched = reg
        .manifest_fetch(&root(), &tag("v1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetched.manifest.bytes(), idx.bytes());
    assert_eq!(fetched.manifest.media_type(), mt::OCI_INDEX);
    assert_eq!(
        fetched.etag.as_deref(),
        Some(idx.digest().to_string().as_str())
    );
    for m in [&amd, &arm, &idx] {
        let by_digest = reg
            .manifest_get(&root(), &Reference::Digest(m.digest().clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_digest.bytes(), m.bytes());
        assert_eq!(by_digest.media_type(), m.media_type());
        let head = reg
            .manifest_head(&root(), &Reference::Digest(m.digest().clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head, m.descriptor());
    }
    assert_eq!(
        reg.manifest_get(&root(), &tag("amd"))
            .await
            .unwrap()
            .unwrap()
            .bytes(),
        amd.bytes()
    );
    assert!(
        reg.manifest_get(&root(), &tag("nope"))
            .await
            .unwrap()
            .is_none()
    );
    let absent = Digest::sha256(b"absent");
    assert!(
        reg.manifest_head(&root(), &Reference::Digest(absent))
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(reg.tags(&root()).await.unwrap(), vec!["amd", "v1"]);
    // One entry per (digest, tag); arm stays listed without a ref.name; amd's
    // untagged entry was replaced by its tagged one.
    let es = entries(tmp.path());
    assert_eq!(es.len(), 3, "{es:?}");
    let untagged: Vec<&Value> = es
        .iter()
        .filter(|e| e.get("annotations").and_then(|a| a.get(REF_NAME)).is_none())
        .collect();
    assert_eq!(untagged.len(), 1);
    assert_eq!(untagged[0]["digest"], arm.digest().to_string());
    assert_eq!(untagged[0]["mediaType"], mt::OCI_MANIFEST);
    // Manifests are blobs too.
    assert_eq!(
        std::fs::read(blob_file(tmp.path(), idx.digest())).unwrap(),
        idx.bytes().as_ref()
    );
}

#[tokio::test]
async fn retagging_keeps_the_old_manifest_discoverable() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let a = image(&reg, &root(), "a").await;
    let b = image(&reg, &root(), "b").await;
    reg.manifest_put(&root(), &tag("latest"), &a, Precondition::None)
        .await
        .unwrap();
    reg.manifest_put(&root(), &tag("latest"), &b, Precondition::None)
        .await
        .unwrap();
    let got = reg
        .manifest_get(&root(), &tag("latest"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.digest(), b.digest());
    let es = entries(tmp.path());
    assert_eq!(es.len(), 2, "{es:?}");
    let tagged: Vec<_> = es
        .iter()
        .filter(|e| e["annotations"][REF_NAME] == "latest")
        .collect();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0]["digest"], b.digest().to_string());
    assert!(
        es.iter()
            .any(|e| e["digest"] == a.digest().to_string() && e.get("annotations").is_none())
    );
    assert_eq!(reg.tags(&root()).await.unwrap(), vec!["latest"]);
}

#[tokio::test]
async fn re_pushing_is_idempotent_and_repairs_a_damaged_manifest_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let m = image(&reg, &root(), "x").await;
    reg.manifest_put(&root(), &tag("v1"), &m, Precondition::None)
        .await
        .unwrap();
    // Another tool annotated the entry; an identical re-push keeps that.
    let mut index = index_json(tmp.path());
    index["manifests"][0]["annotations"]["org.opencontainers.image.created"] =
        json!("2026-01-01T00:00:00Z");
    let written = serde_json::to_vec(&index).unwrap();
    std::fs::write(tmp.path().join("index.json"), &written).unwrap();
    reg.manifest_put(&root(), &tag("v1"), &m, Precondition::None)
        .await
        .unwrap();
    reg.manifest_put(
        &root(),
        &Reference::Digest(m.digest().clone()),
        &m,
        Precondition::None,
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("index.json")).unwrap(),
        written
    );
    // A damaged manifest blob is rewritten by the next push.
    let path = blob_file(tmp.path(), m.digest());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    assert!(reg.manifest_get(&root(), &tag("v1")).await.is_err());
    reg.manifest_put(&root(), &tag("v1"), &m, Precondition::None)
        .await
        .unwrap();
    assert_eq!(
        reg.manifest_get(&root(), &tag("v1"))
            .await
            .unwrap()
            .unwrap()
            .bytes(),
        m.bytes()
    );
}

#[tokio::test]
async fn fallback_tags_and_subject_scan_find_referrers() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let subject = image(&reg, &root(), "subject").await;
    reg.manifest_put(&root(), &tag("v1"), &subject, Precondition::None)
        .await
        .unwrap();
    let sig = referrer(&reg, &root(), &subject, "application/vnd.example.sig").await;
    let sbom = referrer(&reg, &root(), &subject, "application/spdx+json").await;
    for r in [&sig, &sbom] {
        reg.manifest_put(
            &root(),
            &Reference::Digest(r.digest().clone()),
            r,
            Precondition::None,
        )
        .await
        .unwrap();
    }
    // The copy engine maintains the fallback tag with manifest_put.
    let ftag = tag(&fallback_tag(subject.digest()));
    let fallback = merge_fallback_index(None, &[sig.referrer_descriptor()])
        .unwrap()
        .unwrap();
    let fallback = Manifest::parse(Bytes::from(fallback), Some(mt::OCI_INDEX)).unwrap();
    reg.manifest_put(&root(), &ftag, &fallback, Precondition::IfNoneMatch)
        .await
        .unwrap();

    let read = reg.manifest_fetch(&root(), &ftag).await.unwrap().unwrap();
    assert_eq!(read.manifest.bytes(), fallback.bytes());
    assert_eq!(
        read.manifest.child_manifests(),
        &[sig.referrer_descriptor()]
    );
    let mut tags = reg.tags(&root()).await.unwrap();
    tags.sort();
    let mut want = vec![fallback_tag(subject.digest()), "v1".to_string()];
    want.sort();
    assert_eq!(tags, want);

    let mut scanned = reg
        .referrers_by_scan(&root(), subject.digest())
        .await
        .unwrap();
    scanned.sort_by(|a, b| a.digest.cmp(&b.digest));
    let mut want = vec![sig.referrer_descriptor(), sbom.referrer_descriptor()];
    want.sort_by(|a, b| a.digest.cmp(&b.digest));
    assert_eq!(scanned, want);
    assert_eq!(
        scanned
            .iter()
            .find(|d| &d.digest == sbom.digest())
            .unwrap()
            .artifact_type
            .as_deref(),
        Some("application/spdx+json")
    );
    assert!(
        reg.referrers_by_scan(&root(), sig.digest())
            .await
            .unwrap()
            .is_empty()
    );
    // A referrer pushed after a scan shows up in the next one, also through
    // another instance (the scan is cached per version of index.json).
    let sig_on_sig = referrer(&reg, &root(), &sig, "application/vnd.example.sig").await;
    LayoutRegistry::open(tmp.path())
        .manifest_put(
            &root(),
            &Reference::Digest(sig_on_sig.digest().clone()),
            &sig_on_sig,
            Precondition::None,
        )
        .await
        .unwrap();
    assert_eq!(
        reg.referrers_by_scan(&root(), sig.digest()).await.unwrap(),
        vec![sig_on_sig.referrer_descriptor()]
    );
    assert_eq!(
        reg.referrers_by_scan(&root(), subject.digest())
            .await
            .unwrap()
            .len(),
        2
    );
    // The adapter answers as a referrers API would: the scan merged with
    // the fallback tag.
    let mut listed = reg
        .referrers_api(&root(), subject.digest())
        .await
        .unwrap()
        .unwrap();
    listed.sort_by(|a, b| a.digest.cmp(&b.digest));
    assert_eq!(listed, want);
    assert_eq!(
        reg.referrers_support(&root()).await.unwrap(),
        ReferrersSupport::Unsupported
    );
}

#[tokio::test]
async fn preconditions_guard_tag_updates() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let a = image(&reg, &root(), "a").await;
    let b = image(&reg, &root(), "b").await;
    let t = tag("sha256-0000000000000000000000000000000000000000000000000000000000000000");
    // IfMatch on an absent tag fails; IfNoneMatch succeeds.
    let err = reg
        .manifest_put(
            &root(),
            &t,
            &a,
            Precondition::IfMatch(a.digest().to_string()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::PreconditionFailed), "{err}");
    reg.manifest_put(&root(), &t, &a, Precondition::IfNoneMatch)
        .await
        .unwrap();
    // Now present: IfNoneMatch fails, a stale ETag fails, the current one wins.
    let err = reg
        .manifest_put(&root(), &t, &b, Precondition::IfNoneMatch)
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::PreconditionFailed), "{err}");
    assert_eq!(err.op, Operation::ManifestPut);
    let err = reg
        .manifest_put(
            &root(),
            &t,
            &b,
            Precondition::IfMatch(b.digest().to_string()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::PreconditionFailed), "{err}");
    assert_eq!(
        reg.manifest_get(&root(), &t)
            .await
            .unwrap()
            .unwrap()
            .digest(),
        a.digest()
    );
    let etag = reg
        .manifest_fetch(&root(), &t)
        .await
        .unwrap()
        .unwrap()
        .etag
        .unwrap();
    reg.manifest_put(
        &root(),
        &t,
        &b,
        Precondition::IfMatch(format!("\"{etag}\"")),
    )
    .await
    .unwrap();
    assert_eq!(
        reg.manifest_get(&root(), &t)
            .await
            .unwrap()
            .unwrap()
            .digest(),
        b.digest()
    );
}

#[tokio::test]
async fn put_by_digest_refuses_bytes_of_another_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let a = image(&reg, &root(), "a").await;
    let wrong = Reference::Digest(Digest::sha256(b"other"));
    let err = reg
        .manifest_put(&root(), &wrong, &a, Precondition::None)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::DigestMismatch { .. }),
        "{err}"
    );
    assert!(!blob_file(tmp.path(), a.digest()).exists());
}

#[tokio::test]
async fn blobs_that_are_not_manifests_are_not_found_as_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let m = image(&reg, &root(), "x").await;
    let big = noise(4 * 1024 * 1024 + 1, 9);
    let big = put_blob(&reg, &root(), mt::OCI_LAYER_GZIP, &big).await;
    for d in [&m.blobs()[0].digest, &m.blobs()[1].digest, &big.digest] {
        let r = Reference::Digest(d.clone());
        assert!(
            reg.manifest_get(&root(), &r).await.unwrap().is_none(),
            "{d}"
        );
        assert!(
            reg.manifest_head(&root(), &r).await.unwrap().is_none(),
            "{d}"
        );
    }
    // Listed in index.json but not a manifest: that is a broken layout.
    let config = m.blobs()[0].clone();
    let mut entry = serde_json::to_value(Descriptor::new(
        mt::OCI_MANIFEST,
        config.digest.clone(),
        config.size,
    ))
    .unwrap();
    entry["annotations"] = json!({REF_NAME: "broken"});
    let index = json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": [entry]});
    std::fs::write(
        tmp.path().join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let err = reg.manifest_get(&root(), &tag("broken")).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Manifest(_)), "{err}");
    let err = reg
        .manifest_get(&root(), &Reference::Digest(config.digest.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Manifest(_)), "{err}");
}

// ---------------------------------------------------------------- repos

#[tokio::test]
async fn repositories_are_layouts_under_the_root_and_mount_between_them() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let app = RepoName::new("team/app").unwrap();
    let other = RepoName::new("other/app").unwrap();
    let m = image(&reg, &app, "x").await;
    reg.manifest_put(&app, &tag("v1"), &m, Precondition::None)
        .await
        .unwrap();
    let dir = tmp.path().join("team/app");
    assert!(dir.join("oci-layout").is_file());
    assert_eq!(entries(&dir).len(), 1);
    assert!(!tmp.path().join("index.json").exists());
    assert!(
        reg.manifest_get(&root(), &tag("v1"))
            .await
            .unwrap()
            .is_none()
    );

    let layer = &m.blobs()[1].digest;
    assert!(reg.blob_mount(&other, layer, &app).await.unwrap());
    assert_eq!(read_blob(&reg, &other, layer).await, empty_tar());
    assert!(tmp.path().join("other/app/index.json").is_file());
    let absent = Digest::sha256(b"absent");
    assert!(!reg.blob_mount(&other, &absent, &app).await.unwrap());
    // Missing repository: tags is NotFound, reads are absent.
    let ghost = RepoName::new("ghost").unwrap();
    assert!(reg.tags(&ghost).await.unwrap_err().is_not_found());
    assert!(!tmp.path().join("ghost").exists());
}

#[tokio::test]
async fn a_missing_root_reads_as_empty_and_is_not_created_by_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("does-not-exist");
    let reg = LayoutRegistry::open(&path);
    let d = Digest::sha256(b"x");
    assert!(
        reg.manifest_fetch(&root(), &tag("v1"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        reg.manifest_head(&root(), &Reference::Digest(d.clone()))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(reg.blob_head(&root(), &d).await.unwrap(), None);
    let err = reg.blob_get(&root(), &d).await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.registry, format!("oci:{}", path.display()));
    assert!(reg.tags(&root()).await.unwrap_err().is_not_found());
    assert!(reg.referrers_by_scan(&root(), &d).await.unwrap().is_empty());
    assert!(!path.exists());
}

// ---------------------------------------------------------------- integrity

#[tokio::test]
async fn corrupted_files_are_digest_mismatches() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let m = image(&reg, &root(), "x").await;
    reg.manifest_put(&root(), &tag("v1"), &m, Precondition::None)
        .await
        .unwrap();
    // Same length, different content.
    let mpath = blob_file(tmp.path(), m.digest());
    let mut bytes = std::fs::read(&mpath).unwrap();
    let last = bytes.len() - 2;
    bytes[last] = b' ';
    std::fs::write(&mpath, &bytes).unwrap();
    let err = reg.manifest_fetch(&root(), &tag("v1")).await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::DigestMismatch { .. }),
        "{err}"
    );
    assert_eq!(err.target.as_deref(), Some(m.digest().to_string().as_str()));

    let config = m.blobs()[0].digest.clone();
    let cpath = blob_file(tmp.path(), &config);
    let mut cbytes = std::fs::read(&cpath).unwrap();
    cbytes[0] = b' ';
    std::fs::write(&cpath, &cbytes).unwrap();
    let blob = reg.blob_get(&root(), &config).await.unwrap();
    let items: Vec<_> = blob.stream.collect().await;
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::DigestMismatch { .. }),
        "{err}"
    );
    // The verifier never released the (only) chunk.
    assert!(items.iter().all(|i| i.is_err()));
}

#[tokio::test]
async fn an_invalid_index_json_is_reported_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("index.json"), b"{not json").unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let err = reg.manifest_fetch(&root(), &tag("v1")).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::InvalidResponse(_)), "{err}");
    assert!(err.to_string().contains("index.json"), "{err}");
    let err = reg.tags(&root()).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::InvalidResponse(_)), "{err}");
    // A write does not overwrite what it cannot parse.
    let m = Manifest::parse(Bytes::from_static(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#), None).unwrap();
    assert!(
        reg.manifest_put(&root(), &tag("v1"), &m, Precondition::None)
            .await
            .is_err()
    );
    assert_eq!(
        std::fs::read(tmp.path().join("index.json")).unwrap(),
        b"{not json"
    );
}

// ---------------------------------------------------------------- atomicity

#[tokio::test]
async fn failed_blob_uploads_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let bytes = noise(300_000, 3);
    let desc = Descriptor::new(
        mt::OCI_LAYER_GZIP,
        Digest::sha256(&bytes),
        bytes.len() as u64,
    );

    // The source fails mid-way.
    let half = Bytes::copy_from_slice(&bytes[..150_000]);
    let failing: BlobStream = Box::pin(stream::iter(vec![
        Ok(half),
        Err(RegistryError::new(
            "src",
            "r",
            Operation::BlobGet,
            None,
            ErrorKind::Transport {
                message: "connection reset".into(),
                retryable: true,
            },
        )),
    ]));
    let err = reg.blob_put(&root(), &desc, failing).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Transport { .. }), "{err}");

    // Same size, wrong bytes.
    let mut wrong = bytes.clone();
    wrong[299_999] ^= 1;
    let err = reg
        .blob_put(&root(), &desc, chunked(wrong, 4096))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::DigestMismatch { .. }),
        "{err}"
    );
    assert_eq!(err.registry, reg.name());

    // Too long and too short.
    let mut long = bytes.clone();
    long.push(0);
    let err = reg
        .blob_put(&root(), &desc, chunked(long, 4096))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::SizeMismatch { .. }), "{err}");
    let err = reg
        .blob_put(&root(), &desc, chunked(bytes[..1000].to_vec(), 4096))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::SizeMismatch { .. }), "{err}");

    // A dropped (cancelled) upload also cleans up: the stream signals once
    // its first chunk was taken (and written), then never ends.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stalled: BlobStream = Box::pin(
        stream::iter(vec![Ok(Bytes::copy_from_slice(&bytes[..10]))]).chain(stream::once(
            async move {
                let _ = tx.send(());
                futures::future::pending::<Result<Bytes, RegistryError>>().await
            },
        )),
    );
    {
        let r = root();
        let fut = reg.blob_put(&r, &desc, stalled);
        tokio::pin!(fut);
        tokio::select! {
            _ = &mut fut => panic!("upload of a stalled stream finished"),
            _ = rx => {}
        }
        assert_eq!(
            temp_files(tmp.path()).len(),
            1,
            "the upload should be in progress"
        );
    }

    assert!(!blob_file(tmp.path(), &desc.digest).exists());
    assert_eq!(reg.blob_head(&root(), &desc.digest).await.unwrap(), None);
    assert!(
        temp_files(tmp.path()).is_empty(),
        "{:?}",
        temp_files(tmp.path())
    );
    // And a good upload afterwards works.
    reg.blob_put(&root(), &desc, chunked(bytes.clone(), 4096))
        .await
        .unwrap();
    assert_eq!(read_blob(&reg, &root(), &desc.digest).await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tag_puts_all_land_in_a_valid_index() {
    let tmp = tempfile::tempdir().unwrap();
    // Two instances on one directory share the index lock.
    let regs = [
        Arc::new(LayoutRegistry::open(tmp.path())),
        Arc::new(LayoutRegistry::open(tmp.path().join("."))),
    ];
    let mut manifests = Vec::new();
    for i in 0..20 {
        manifests.push(image(&regs[0], &root(), &format!("m{i}")).await);
    }
    let mut tasks = Vec::new();
    for (i, m) in manifests.iter().cloned().enumerate() {
        let reg = regs[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            reg.manifest_put(&root(), &tag(&format!("t{i:02}")), &m, Precondition::None)
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let es = entries(tmp.path());
    assert_eq!(es.len(), 20);
    let want: Vec<String> = (0..20).map(|i| format!("t{i:02}")).collect();
    assert_eq!(regs[1].tags(&root()).await.unwrap(), want);
    for (i, m) in manifests.iter().enumerate() {
        let got = regs[0]
            .manifest_get(&root(), &tag(&format!("t{i:02}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.digest(), m.digest());
    }
    assert!(temp_files(tmp.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_if_none_match_puts_on_one_tag_have_exactly_one_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Arc::new(LayoutRegistry::open(tmp.path()));
    let mut manifests = Vec::new();
    for i in 0..10 {
        manifests.push(image(&reg, &root(), &format!("c{i}")).await);
    }
    let mut tasks = Vec::new();
    for m in manifests {
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            reg.manifest_put(&root(), &tag("race"), &m, Precondition::IfNoneMatch)
                .await
                .map(|_| m.digest().clone())
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(d) => winners.push(d),
            Err(e) => assert!(matches!(e.kind, ErrorKind::PreconditionFailed), "{e}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let got = reg
        .manifest_get(&root(), &tag("race"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.digest(), &winners[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_updates_wait_for_another_process_holding_the_lock_file() {
    use ocimirror::registry::layout::LOCK_FILE;
    let tmp = tempfile::tempdir().unwrap();
    let reg = Arc::new(LayoutRegistry::open(tmp.path()));
    let a = image(&reg, &root(), "a").await;
    // A separate open file stands for another process: flock locks conflict
    // between open file descriptions even inside one process.
    let other = std::fs::File::open(tmp.path().join(LOCK_FILE)).unwrap();
    other.lock().unwrap();
    let put = {
        let reg = reg.clone();
        tokio::spawn(async move {
            reg.manifest_put(&root(), &tag("v1"), &a, Precondition::None)
                .await
                .unwrap();
        })
    };
    // Showing that something does not happen needs a bound. It cannot make
    // the test flaky: with the lock held the put never finishes; without a
    // lock it finishes in milliseconds.
    let mut put = put;
    let early = tokio::time::timeout(std::time::Duration::from_millis(500), &mut put).await;
    assert!(early.is_err(), "manifest_put ignored the held lock file");
    assert!(
        reg.manifest_get(&root(), &tag("v1"))
            .await
            .unwrap()
            .is_none()
    );
    other.unlock().unwrap();
    put.await.unwrap();
    assert!(
        reg.manifest_get(&root(), &tag("v1"))
            .await
            .unwrap()
            .is_some()
    );
}

// ---------------------------------------------------------------- safety

#[tokio::test]
async fn a_hostile_index_json_never_reaches_outside_the_root() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("layout");
    std::fs::create_dir(&dir).unwrap();
    let reg = LayoutRegistry::open(&dir);
    let m = image(&reg, &root(), "x").await;
    // A manifest outside the root that a traversal would find.
    std::fs::write(parent.path().join("x"), m.bytes()).unwrap();
    let hostile = json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": mt::OCI_MANIFEST, "digest": m.digest().to_string(), "size": m.bytes().len(),
             "annotations": {REF_NAME: "../../x"}},
            {"mediaType": mt::OCI_MANIFEST, "digest": "sha256:../../../x", "size": 1,
             "annotations": {REF_NAME: "y"}},
            {"mediaType": mt::OCI_MANIFEST, "digest": "../x", "size": 1,
             "annotations": {REF_NAME: "/etc/passwd"}},
            {"mediaType": "application/vnd.unknown", "digest": "blake3:abcd", "size": 1},
        ],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&hostile).unwrap(),
    )
    .unwrap();
    let before = listing(parent.path());

    assert!(
        reg.manifest_get(&root(), &tag("x"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        reg.manifest_get(&root(), &tag("y"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(reg.tags(&root()).await.unwrap(), Vec::<String>::new());
    assert!(
        reg.referrers_by_scan(&root(), m.digest())
            .await
            .unwrap()
            .is_empty()
    );
    // Writes keep entries they do not understand, and stay inside.
    reg.manifest_put(&root(), &tag("x"), &m, Precondition::None)
        .await
        .unwrap();
    assert_eq!(
        reg.manifest_get(&root(), &tag("x"))
            .await
            .unwrap()
            .unwrap()
            .digest(),
        m.digest()
    );
    let es = entries(&dir);
    assert_eq!(es.len(), 5);
    assert!(es.iter().any(|e| e["digest"] == "blake3:abcd"));
    let after = listing(parent.path());
    let outside = |l: &BTreeSet<PathBuf>| -> BTreeSet<PathBuf> {
        l.iter()
            .filter(|p| !p.starts_with("layout"))
            .cloned()
            .collect()
    };
    assert_eq!(outside(&before), outside(&after));
    assert_eq!(
        std::fs::read(parent.path().join("x")).unwrap(),
        m.bytes().as_ref()
    );
}

#[tokio::test]
async fn writes_with_any_valid_names_stay_inside_the_root() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join("sentinel"), b"s").unwrap();
    let dir = parent.path().join("layout");
    let reg = LayoutRegistry::open(&dir);
    let before = listing(parent.path());
    // The validated types refuse anything path-like.
    for bad in ["..", "../x", "a/../b", "/abs", "a//b", ".hidden"] {
        assert!(RepoName::new(bad).is_err(), "{bad}");
    }
    for bad in ["..", "../x", "a/b", ".x", ""] {
        assert!(Tag::new(bad).is_err(), "{bad}");
    }
    assert!("sha256:../../x".parse::<Digest>().is_err());
    for repo in ["a", "a/b/c", "a.b/c_d--e"] {
        let repo = RepoName::new(repo).unwrap();
        let m = image(&reg, &repo, repo.as_str()).await;
        for t in ["_", "a.b", "A-z_9", "sha256-00"] {
            reg.manifest_put(&repo, &tag(t), &m, Precondition::None)
                .await
                .unwrap();
        }
        reg.blob_mount(&repo, &m.blobs()[0].digest, &root())
            .await
            .unwrap();
    }
    let after = listing(parent.path());
    let new: Vec<&PathBuf> = after.difference(&before).collect();
    assert!(!new.is_empty());
    assert!(new.iter().all(|p| p.starts_with("layout")), "{new:?}");
    assert_eq!(std::fs::read(parent.path().join("sentinel")).unwrap(), b"s");
}

// ---------------------------------------------------------------- interop

/// skopeo, which `tests/run` installs: a missing one fails the test (as a
/// missing docker-registry does), never skips it quietly.
fn skopeo() -> PathBuf {
    let p = PathBuf::from("/usr/bin/skopeo");
    if p.exists() {
        return p;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("skopeo"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!("skopeo not found: tests/run installs it (apt-get install skopeo)")
        })
}

fn run_skopeo(bin: &Path, home: &Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(bin)
        .args(args)
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_DATA_HOME", home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn skopeo_reads_what_we_write_and_we_read_what_it_writes() {
    let bin = skopeo();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let reg = LayoutRegistry::open(&src);
    let m = image(&reg, &root(), "interop").await;
    reg.manifest_put(&root(), &tag("v1"), &m, Precondition::None)
        .await
        .unwrap();

    let raw = run_skopeo(
        &bin,
        &home,
        &["inspect", "--raw", &format!("oci:{}:v1", src.display())],
    );
    assert_eq!(raw, m.bytes().as_ref());

    run_skopeo(
        &bin,
        &home,
        &[
            "--insecure-policy",
            "copy",
            "--quiet",
            // Keep the uncompressed layer as is, so digests must match.
            "--preserve-digests",
            &format!("oci:{}:v1", src.display()),
            &format!("oci:{}:v1", dst.display()),
        ],
    );
    let back = LayoutRegistry::open(&dst);
    let got = back
        .manifest_get(&root(), &tag("v1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.digest(), m.digest());
    assert_eq!(got.bytes(), m.bytes());
    for b in m.blobs() {
        assert_eq!(
            read_blob(&back, &root(), &b.digest).await,
            read_blob(&reg, &root(), &b.digest).await
        );
    }
    assert_eq!(back.tags(&root()).await.unwrap(), vec!["v1"]);
    // And we can add to skopeo's layout without breaking it for skopeo.
    let m2 = image(&back, &root(), "second").await;
    back.manifest_put(&root(), &tag("v2"), &m2, Precondition::None)
        .await
        .unwrap();
    let raw = run_skopeo(
        &bin,
        &home,
        &["inspect", "--raw", &format!("oci:{}:v2", dst.display())],
    );
    assert_eq!(raw, m2.bytes().as_ref());
    let raw = run_skopeo(
        &bin,
        &home,
        &["inspect", "--raw", &format!("oci:{}:v1", dst.display())],
    );
    assert_eq!(raw, m.bytes().as_ref());
    // skopeo rewrites index.json behind our back: our cached view follows.
    run_skopeo(
        &bin,
        &home,
        &[
            "--insecure-policy",
            "copy",
            "--quiet",
            "--preserve-digests",
            &format!("oci:{}:v1", src.display()),
            &format!("oci:{}:v3", dst.display()),
        ],
    );
    assert_eq!(back.tags(&root()).await.unwrap(), vec!["v1", "v2", "v3"]);
    let v3 = back
        .manifest_get(&root(), &tag("v3"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v3.digest(), m.digest());
}

// ---------------------------------------------------------------- corpus

/// Every manifest reachable from `root_digest` through index children, with
/// every blob read back (verified) by the adapter.
async fn walk(reg: &LayoutRegistry, repo: &RepoName, root_digest: &Digest) -> usize {
    let mut todo = vec![root_digest.clone()];
    let mut seen = BTreeSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let m = reg
            .manifest_get(repo, &Reference::Digest(d.clone()))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{d} missing"));
        for b in m.blobs() {
            assert_eq!(read_blob(reg, repo, &b.digest).await.len() as u64, b.size);
        }
        todo.extend(m.child_manifests().iter().map(|c| c.digest.clone()));
        if let Some(s) = m.subject() {
            todo.push(s.digest.clone());
        }
    }
    seen.len()
}

#[tokio::test]
async fn a_generated_corpus_reads_back_and_fallback_tags_agree_with_the_scan() {
    use ocimirror::corpus::{CorpusSpec, ReferrerForm, generate};
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let spec = CorpusSpec {
        repo_prefix: String::new(),
        tags: 2,
        layer_size: 2048,
        base_layer_size: 4096,
        referrer_form: ReferrerForm::FallbackTag,
        ..CorpusSpec::default()
    };
    let report = generate(&reg, &spec).await.unwrap();
    assert_eq!(report.images.len(), 2);
    let tags = reg.tags(&root()).await.unwrap();
    for (repo, t, digest) in &report.images {
        assert!(repo.is_root());
        assert!(tags.contains(&t.to_string()), "{tags:?}");
        let m = reg
            .manifest_get(&root(), &Reference::Tag(t.clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.digest(), digest);
        assert!(walk(&reg, &root(), digest).await > 1);
    }
    // Every fallback tag lists exactly the referrers a subject scan finds.
    let fallback: Vec<&String> = tags
        .iter()
        .filter(|t| ocimirror::oci::referrers::is_fallback_tag(t))
        .collect();
    assert!(!fallback.is_empty());
    for ft in fallback {
        let idx = reg.manifest_get(&root(), &tag(ft)).await.unwrap().unwrap();
        let hex = ft.strip_prefix("sha256-").unwrap();
        let subject: Digest = format!("sha256:{hex}").parse().unwrap();
        let mut listed: Vec<Descriptor> = idx.child_manifests().to_vec();
        listed.sort_by(|a, b| a.digest.cmp(&b.digest));
        let mut scanned = reg.referrers_by_scan(&root(), &subject).await.unwrap();
        scanned.sort_by(|a, b| a.digest.cmp(&b.digest));
        assert_eq!(listed, scanned, "{ft}");
    }
}

#[tokio::test]
async fn skopeo_copies_a_multi_platform_index_out_of_our_layout() {
    use ocimirror::corpus::{CorpusSpec, generate};
    let bin = skopeo();
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, home) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("home"),
    );
    std::fs::create_dir(&home).unwrap();
    let reg = LayoutRegistry::open(&src);
    let spec = CorpusSpec {
        repo_prefix: String::new(),
        referrer_depth: 0,
        ..CorpusSpec::default()
    };
    let report = generate(&reg, &spec).await.unwrap();
    let (_, t, digest) = &report.images[0];
    run_skopeo(
        &bin,
        &home,
        &[
            "--insecure-policy",
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            &format!("oci:{}:{t}", src.display()),
            &format!("oci:{}:{t}", dst.display()),
        ],
    );
    let back = LayoutRegistry::open(&dst);
    let got = back
        .manifest_get(&root(), &Reference::Tag(t.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.digest(), digest);
    assert_eq!(
        walk(&back, &root(), digest).await,
        walk(&reg, &root(), digest).await
    );
}
