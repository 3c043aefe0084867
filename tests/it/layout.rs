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
mod integrity;
mod interop;
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
