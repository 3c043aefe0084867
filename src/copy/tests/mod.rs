//! Engine tests on two in-memory registries: order, digest-exactness,
//! conversion between representations, idempotence, filters and platforms.

use std::sync::Arc;

use serde_json::{Value, json};

mod conversion;
mod filters;
mod honesty;
mod hostile;
mod limits;
mod runs;

use super::memory::MemoryRegistry;
use super::*;
use crate::oci::media_type as mt;
use crate::oci::referrers::{cosign_tag, fallback_tag};
use crate::registry::Operation;

const REPO: &str = "team/app";
const SBOM: &str = "application/spdx+json";
const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const ATT: &str = "application/vnd.in-toto+json";

fn desc(media_type: &str, d: &Digest, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": d.to_string(), "size": size})
}

/// The digests of the fixture image.
struct Fixture {
    index: Digest,
    amd: Digest,
    arm: Digest,
    sbom: Digest,
    sig: Digest,
    att: Digest,
    blobs: Vec<Digest>,
}

fn seed_blob(reg: &MemoryRegistry, bytes: &[u8], blobs: &mut Vec<Digest>) -> (Digest, usize) {
    let d = reg.seed_blob(REPO, bytes);
    if !blobs.contains(&d) {
        blobs.push(d.clone());
    }
    (d, bytes.len())
}

fn seed_image(reg: &MemoryRegistry, name: &str, blobs: &mut Vec<Digest>) -> (Digest, usize) {
    let (c, cs) = seed_blob(
        reg,
        format!(r#"{{"architecture":"{name}"}}"#).as_bytes(),
        blobs,
    );
    let (l, ls) = seed_blob(reg, format!("layer of {name}").as_bytes(), blobs);
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
        "config": desc(mt::OCI_CONFIG, &c, cs),
        "layers": [desc(mt::OCI_LAYER_GZIP, &l, ls)],
    }))
    .unwrap();
    (
        reg.seed_manifest(REPO, None, mt::OCI_MANIFEST, &body),
        body.len(),
    )
}

/// An artifact (empty config) with one layer, referring to `subject`.
fn seed_artifact(
    reg: &MemoryRegistry,
    artifact_type: &str,
    content: &str,
    subject: (&Digest, usize, &str),
    blobs: &mut Vec<Digest>,
) -> (Digest, Vec<u8>) {
    let (e, es) = seed_blob(reg, b"{}", blobs);
    let (l, ls) = seed_blob(reg, content.as_bytes(), blobs);
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST, "artifactType": artifact_type,
        "config": desc(mt::OCI_EMPTY, &e, es),
        "layers": [desc(artifact_type, &l, ls)],
        "subject": desc(subject.2, subject.0, subject.1),
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z", "x.content": content},
    }))
    .unwrap();
    (reg.seed_manifest(REPO, None, mt::OCI_MANIFEST, &body), body)
}

/// Raw fallback index listing `entries` (built here, not by the engine).
fn seed_fallback(reg: &MemoryRegistry, subject: &Digest, entries: &[(&Digest, &[u8], &str)]) {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(d, body, at)| {
            let v: Value = serde_json::from_slice(body).unwrap();
            let mut e = desc(mt::OCI_MANIFEST, d, body.len());
            e["artifactType"] = json!(at);
            if v["annotations"].is_object() {
                e["annotations"] = v["annotations"].clone();
            }
            e
        })
        .collect();
    let body = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": manifests}),
    )
    .unwrap();
    reg.seed_manifest(REPO, Some(&fallback_tag(subject)), mt::OCI_INDEX, &body);
}

/// A 2-platform index tagged `v1` with an SBOM on the amd64 manifest, a
/// signature on the SBOM and an attestation on the index. With `tags`, the
/// source lists them in fallback indexes too (a tag-schema source when its
/// API is off).
fn fixture(reg: &MemoryRegistry, tags: bool) -> Fixture {
    let mut blobs = Vec::new();
    let (amd, amd_size) = seed_image(reg, "amd64", &mut blobs);
    let (arm, arm_size) = seed_image(reg, "arm64", &mut blobs);
    let mut amd_desc = desc(mt::OCI_MANIFEST, &amd, amd_size);
    amd_desc["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let mut arm_desc = desc(mt::OCI_MANIFEST, &arm, arm_size);
    arm_desc["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index_body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": [amd_desc, arm_desc],
    }))
    .unwrap();
    let index = reg.seed_manifest(REPO, Some("v1"), mt::OCI_INDEX, &index_body);
    let (sbom, sbom_body) = seed_artifact(
        reg,
        SBOM,
        "sbom",
        (&amd, amd_size, mt::OCI_MANIFEST),
        &mut blobs,
    );
    let (sig, sig_body) = seed_artifact(
        reg,
        SIG,
        "sig",
        (&sbom, sbom_body.len(), mt::OCI_MANIFEST),
        &mut blobs,
    );
    let (att, att_body) = seed_artifact(
        reg,
        ATT,
        "att",
        (&index, index_body.len(), mt::OCI_INDEX),
        &mut blobs,
    );
    if tags {
        seed_fallback(reg, &amd, &[(&sbom, &sbom_body, SBOM)]);
        seed_fallback(reg, &sbom, &[(&sig, &sig_body, SIG)]);
        seed_fallback(reg, &index, &[(&att, &att_body, ATT)]);
    }
    Fixture {
        index,
        amd,
        arm,
        sbom,
        sig,
        att,
        blobs,
    }
}

fn repo() -> RepoName {
    RepoName::new(REPO).unwrap()
}

fn v1() -> Reference {
    Reference::Tag(Tag::new("v1").unwrap())
}

fn copier(src: &Arc<MemoryRegistry>, dst: &Arc<MemoryRegistry>, options: CopyOptions) -> Copier {
    Copier::new(src.clone(), dst.clone(), options)
}

/// Every node of the fixture is on the target with the source's exact bytes.
fn assert_identical(src: &MemoryRegistry, dst: &MemoryRegistry, f: &Fixture) {
    for d in [&f.index, &f.amd, &f.arm, &f.sbom, &f.sig, &f.att] {
        assert_eq!(
            src.manifest_bytes(REPO, &d.to_string()),
            dst.manifest_bytes(REPO, &d.to_string()),
            "manifest {d}"
        );
        assert!(
            dst.manifest_bytes(REPO, &d.to_string()).is_some(),
            "{d} missing"
        );
    }
    for b in &f.blobs {
        assert!(dst.has_blob(REPO, b), "blob {b} missing");
    }
    assert_eq!(
        dst.manifest_bytes(REPO, "v1")
            .map(|(_, b)| Digest::sha256(&b)),
        Some(f.index.clone())
    );
}

/// Digests listed in the target's fallback index for `subject`.
fn fallback_entries(reg: &MemoryRegistry, subject: &Digest) -> Option<Vec<String>> {
    let (mt_, bytes) = reg.manifest_bytes(REPO, &fallback_tag(subject))?;
    assert_eq!(mt_, mt::OCI_INDEX);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let mut out: Vec<String> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    Some(out)
}
