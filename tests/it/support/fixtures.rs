//! Deterministic images with nested referrers for the copy tests, described
//! as plain data (exact bytes, digests computed with `sha2`) and written
//! into a [`TestRegistry`] through its seeding methods or as raw OCI layout
//! files, never through the code under test.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::registry::TestRegistry;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const SBOM: &str = "application/spdx+json";
pub const SIG: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const ATT: &str = "application/vnd.in-toto+json";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The fallback tag of a sha256 digest.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// cosign's legacy tag for a sha256 digest.
pub fn cosign_tag(digest: &str, suffix: &str) -> String {
    format!("{}.{suffix}", fallback_tag(digest))
}

/// How the fixture's referrers are stored on the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `subject` only (an API registry lists them).
    Api,
    /// `subject` plus `sha256-<hex>` fallback indexes.
    Tags,
    /// cosign legacy tags: no `subject`, `sha256-<hex>.sig/.att/.sbom`.
    Cosign,
}

/// A manifest of the fixture.
#[derive(Clone, Debug)]
pub struct M {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl M {
    fn new(media_type: &str, v: Value) -> M {
        let bytes = serde_json::to_vec(&v).unwrap();
        M {
            media_type: media_type.into(),
            digest: sha256(&bytes),
            bytes,
        }
    }

    pub fn desc(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }

    /// The descriptor the referrers API lists for this manifest (spec:
    /// artifactType, else config mediaType for an image; all annotations).
    pub fn referrer_desc(&self) -> Value {
        let v: Value = serde_json::from_slice(&self.bytes).unwrap();
        let mut d = self.desc();
        let at = v
            .get("artifactType")
            .cloned()
            .or_else(|| v.get("config").map(|c| c["mediaType"].clone()));
        if let Some(at) = at {
            d["artifactType"] = at;
        }
        if let Some(a) = v.get("annotations").filter(|a| a.is_object()) {
            d["annotations"] = a.clone();
        }
        d
    }
}

/// A referrer relation of the fixture.
#[derive(Clone, Debug)]
pub struct Edge {
    pub subject: String,
    pub referrer: String,
}

/// An image with its referrers, as data.
#[derive(Clone, Debug, Default)]
pub struct Fixture {
    pub blobs: Vec<Vec<u8>>,
    /// In push order: children before parents.
    pub manifests: Vec<M>,
    /// Tags (image tag, fallback tags, cosign tags) -> manifest.
    pub tags: BTreeMap<String, M>,
    pub index: String,
    pub amd: String,
    pub arm: String,
    pub sbom: String,
    pub sig: String,
    pub att: String,
    /// Referrer relations with `subject` (empty for cosign form).
    pub edges: Vec<Edge>,
    /// cosign tags expected on the target (cosign form).
    pub cosign_tags: Vec<(String, String)>,
}

impl Fixture {
    fn blob(&mut self, bytes: &[u8]) -> Value {
        if !self.blobs.iter().any(|b| b == bytes) {
            self.blobs.push(bytes.to_vec());
        }
        json!({"mediaType": LAYER, "digest": sha256(bytes), "size": bytes.len()})
    }

    fn blob_typed(&mut self, media_type: &str, bytes: &[u8]) -> Value {
        let mut d = self.blob(bytes);
        d["mediaType"] = json!(media_type);
        d
    }

    fn push(&mut self, m: M) -> M {
        self.manifests.push(m.clone());
        m
    }

    /// Every manifest digest of the graph.
    pub fn digests(&self) -> Vec<String> {
        self.manifests.iter().map(|m| m.digest.clone()).collect()
    }

    pub fn manifest(&self, digest: &str) -> &M {
        self.manifests.iter().find(|m| m.digest == digest).unwrap()
    }

    /// Adds a referrer with `artifact_type` on `subject` in `form`; returns it.
    pub fn add_referrer(
        &mut self,
        form: Form,
        subject: &str,
        artifact_type: &str,
        content: &str,
        suffix: &str,
    ) -> M {
        let subject_m = self.manifest(subject).clone();
        let m = if form == Form::Cosign {
            let config = self.blob_typed(
                OCI_CONFIG,
                format!(r#"{{"cosign":"{content}"}}"#).as_bytes(),
            );
            let layer = self.blob_typed(artifact_type, content.as_bytes());
            M::new(
                OCI_MANIFEST,
                json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer],
                       "annotations": {"x.content": content}}),
            )
        } else {
            let empty = self.blob_typed(OCI_EMPTY, b"{}");
            let layer = self.blob_typed(artifact_type, content.as_bytes());
            M::new(
                OCI_MANIFEST,
                json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                       "config": empty, "layers": [layer], "subject": subject_m.desc(),
                       "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z", "x.content": content}}),
            )
        };
        let m = self.push(m);
        match form {
            Form::Cosign => {
                let tag = cosign_tag(subject, suffix);
                self.tags.insert(tag.clone(), m.clone());
                self.cosign_tags.push((tag, m.digest.clone()));
            }
            Form::Tags => {
                self.edges.push(Edge {
                    subject: subject.into(),
                    referrer: m.digest.clone(),
                });
                let tag = fallback_tag(subject);
                let mut entries: Vec<Value> = match self.tags.get(&tag) {
                    Some(old) => serde_json::from_slice::<Value>(&old.bytes).unwrap()["manifests"]
                        .as_array()
                        .unwrap()
                        .clone(),
                    None => Vec::new(),
                };
                entries.push(m.referrer_desc());
                let idx = M::new(
                    OCI_INDEX,
                    json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
                );
                self.tags.insert(tag, idx);
            }
            Form::Api => self.edges.push(Edge {
                subject: subject.into(),
                referrer: m.digest.clone(),
            }),
        }
        m
    }
}

/// A 2-platform index tagged `v1` (the `seed` string varies the content),
/// an SBOM on the amd64 manifest, a signature on the SBOM, and an
/// attestation on the index, all in `form`.
pub fn image(form: Form, seed: &str) -> Fixture {
    let mut f = Fixture::default();
    let platform = |f: &mut Fixture, arch: &str, variant: Option<&str>| {
        let config = f.blob_typed(
            OCI_CONFIG,
            format!(r#"{{"architecture":"{arch}","os":"linux","seed":"{seed}"}}"#).as_bytes(),
        );
        let layer = f.blob(format!("{seed} layer for {arch}").as_bytes());
        let m = f.push(M::new(
            OCI_MANIFEST,
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}),
        ));
        let mut d = m.desc();
        d["platform"] = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            d["platform"]["variant"] = json!(v);
        }
        (m, d)
    };
    let (amd, amd_d) = platform(&mut f, "amd64", None);
    let (arm, arm_d) = platform(&mut f, "arm64", Some("v8"));
    let index = f.push(M::new(
        OCI_INDEX,
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd_d, arm_d]}),
    ));
    f.tags.insert("v1".into(), index.clone());
    f.index = index.digest.clone();
    f.amd = amd.digest.clone();
    f.arm = arm.digest.clone();
    f.sbom = f
        .add_referrer(form, &amd.digest, SBOM, &format!("{seed} sbom"), "sbom")
        .digest;
    let sbom = f.sbom.clone();
    f.sig = f
        .add_referrer(form, &sbom, SIG, &format!("{seed} signature"), "sig")
        .digest;
    f.att = f
        .add_referrer(
            form,
            &index.digest,
            ATT,
            &format!("{seed} attestation"),
            "att",
        )
        .digest;
    f
}

/// Stores the fixture in `repo` of a test registry (exact bytes).
pub fn seed_registry(reg: &TestRegistry, repo: &str, f: &Fixture) {
    for b in &f.blobs {
        reg.put_blob(repo, b);
    }
    for m in &f.manifests {
        reg.put_manifest(repo, &m.digest, &m.media_type, &m.bytes);
    }
    for (tag, m) in &f.tags {
        reg.put_manifest(repo, tag, &m.media_type, &m.bytes);
    }
}

/// Writes the fixture as an OCI layout directory: every blob and manifest
/// under `blobs/sha256`, every manifest listed in `index.json`, tags as
/// `ref.name` annotations.
pub fn write_layout(dir: &Path, f: &Fixture) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let write = |bytes: &[u8]| {
        let d = sha256(bytes);
        std::fs::write(dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
    };
    for b in &f.blobs {
        write(b);
    }
    let mut entries = Vec::new();
    for m in &f.manifests {
        write(&m.bytes);
        entries.push(m.desc());
    }
    for (tag, m) in &f.tags {
        write(&m.bytes);
        let mut d = m.desc();
        d["annotations"] = json!({REF_NAME: tag});
        entries.push(d);
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A layout directory read back from raw files.
pub struct LayoutView {
    pub index: Value,
    root: std::path::PathBuf,
}

impl LayoutView {
    pub fn read(dir: &Path) -> LayoutView {
        let index =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        LayoutView {
            index,
            root: dir.to_path_buf(),
        }
    }

    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join("blobs/sha256").join(&digest[7..])).ok()
    }

    /// Tag -> digest from `ref.name` annotations.
    pub fn tags(&self) -> BTreeMap<String, String> {
        self.index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                let name = e["annotations"][REF_NAME].as_str()?;
                Some((name.to_string(), e["digest"].as_str()?.to_string()))
            })
            .collect()
    }
}

/// Digests listed by a fallback index's bytes, sorted.
pub fn index_digests(bytes: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(bytes).unwrap();
    let mut out: Vec<String> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}
