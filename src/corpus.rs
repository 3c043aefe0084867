//! A reproducible corpus of images with referrers, generated from a seed and
//! written through any [`Registry`]: the demo fixture, benchmarks and
//! reliability tests all use it.
//!
//! Every image is a multi-platform index whose platform manifests share a base
//! layer across repositories, with referrers nested up to three deep:
//! a signature and an attestation on the index, an SBOM on the first platform
//! manifest, a signature on that SBOM, and a timestamp on that signature.
//! Layer bytes come from a seeded generator and are streamed twice (once to
//! hash, once to upload), so memory does not grow with layer size.

use bytes::Bytes;
use futures::stream;
use serde_json::json;

use crate::oci::media_type as mt;
use crate::oci::referrers::{cosign_tag, fallback_tag, merge_fallback_index};
use crate::oci::{Descriptor, Digest, Digester, Manifest, Reference, RepoName, Tag};
use crate::registry::{BlobStream, Precondition, Registry, RegistryError};

/// Media type of the uncompressed layers the corpus writes.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// Artifact type of corpus signatures (a Sigstore bundle, as cosign v3 writes).
pub const SIGNATURE_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Artifact type of corpus SBOMs.
pub const SBOM_TYPE: &str = "application/spdx+json";
/// Artifact type of corpus attestations.
pub const ATTESTATION_TYPE: &str = "application/vnd.in-toto+json";
/// Artifact type of the depth-3 timestamp on a signature.
pub const TIMESTAMP_TYPE: &str = "application/vnd.example.timestamp.v1+json";

const PLATFORMS: [(&str, &str, Option<&str>); 4] = [
    ("linux", "amd64", None),
    ("linux", "arm64", Some("v8")),
    ("linux", "s390x", None),
    ("linux", "ppc64le", None),
];
const CHUNK: usize = 64 * 1024;

/// How referrers are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferrerForm {
    /// Pushed with `subject` only: an API registry indexes them.
    Api,
    /// Pushed with `subject`, and listed in `sha256-<hex>` fallback indexes.
    FallbackTag,
    /// cosign's legacy form: no `subject`, tagged `sha256-<hex>.sig|.att|.sbom`.
    CosignTags,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct CorpusSpec {
    /// Seed: the same spec always gives the same digests.
    pub seed: u64,
    /// Repository names are `<prefix><n>`; the empty prefix with one
    /// repository writes to the root (for OCI layouts).
    pub repo_prefix: String,
    /// Number of repositories.
    pub repositories: usize,
    /// Tags per repository (`v1.0.<n>`).
    pub tags: usize,
    /// Platforms per image (1 to 4).
    pub platforms: usize,
    /// Unique layers per platform manifest, besides the shared base layer.
    pub layers: usize,
    /// Size of each unique layer.
    pub layer_size: u64,
    /// Size of the base layer shared by every repository (per platform).
    pub base_layer_size: u64,
    /// Referrer nesting depth, 0 to 3.
    pub referrer_depth: usize,
    /// How referrers are attached.
    pub referrer_form: ReferrerForm,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        CorpusSpec {
            seed: 1,
            repo_prefix: "corpus/app-".into(),
            repositories: 1,
            tags: 1,
            platforms: 2,
            layers: 1,
            layer_size: 4096,
            base_layer_size: 8192,
            referrer_depth: 3,
            referrer_form: ReferrerForm::Api,
        }
    }
}

/// What was generated.
#[derive(Clone, Debug, Default)]
pub struct CorpusReport {
    /// Every tagged image: repository, tag, index digest.
    pub images: Vec<(RepoName, Tag, Digest)>,
    /// Manifests written (images, platform manifests, referrers).
    pub manifests: usize,
    /// Referrer manifests among them.
    pub referrers: usize,
    /// Blobs uploaded (not counting ones already present).
    pub blobs: usize,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A spec value out of range.
    #[error("invalid corpus spec: {0}")]
    Spec(String),
    /// Generated content failed to parse (a bug).
    #[error("generated manifest is invalid: {0}")]
    Manifest(#[from] crate::oci::ManifestError),
    /// A generated name was invalid.
    #[error("generated name is invalid: {0}")]
    Name(#[from] crate::oci::ReferenceError),
}

/// Writes the corpus described by `spec` into `registry`.
pub async fn generate(
    registry: &dyn Registry,
    spec: &CorpusSpec,
) -> Result<CorpusReport, CorpusError> {
    if !(1..=PLATFORMS.len()).contains(&spec.platforms) || spec.referrer_depth > 3 {
        return Err(CorpusError::Spec(format!(
            "platforms must be 1 to {}, referrer depth 0 to 3",
            PLATFORMS.len()
        )));
    }
    let mut report = CorpusReport::default();
    for r in 0..spec.repositories {
        let repo = if spec.repo_prefix.is_empty() && spec.repositories == 1 {
            RepoName::root()
        } else {
            RepoName::new(&format!("{}{r}", spec.repo_prefix))?
        };
        for t in 0..spec.tags {
            let tag = Tag::new(&format!("v1.0.{t}"))?;
            let digest = Generator {
                registry,
                spec,
                repo: &repo,
                report: &mut report,
            }
            .image(r as u64, t as u64, &tag)
            .await?;
            report.images.push((repo.clone(), tag, digest));
        }
    }
    Ok(report)
}

/// Adds one more signature to `subject` (for incremental-sync tests and
/// benchmarks): a new referrer with a distinct `salt`.
pub async fn add_signature(
    registry: &dyn Registry,
    repo: &RepoName,
    subject: &Descriptor,
    form: ReferrerForm,
    salt: u64,
) -> Result<Digest, CorpusError> {
    let spec = CorpusSpec {
        referrer_form: form,
        ..CorpusSpec::default()
    };
    let mut report = CorpusReport::default();
    let mut g = Generator {
        registry,
        spec: &spec,
        repo,
        report: &mut report,
    };
    let sig = g
        .referrer(
            subject,
            SIGNATURE_TYPE,
            "sig",
            &format!("extra-signature-{salt}"),
        )
        .await?;
    g.publish_fallback(subject, std::slice::from_ref(&sig))
        .await?;
    Ok(sig.digest)
}

struct Generator<'a> {
    registry: &'a dyn Registry,
    spec: &'a CorpusSpec,
    repo: &'a RepoName,
    report: &'a mut CorpusReport,
}

impl Generator<'_> {
    async fn image(&mut self, r: u64, t: u64, tag: &Tag) -> Result<Digest, CorpusError> {
        let mut children = Vec::new();
        for (p, (os, arch, variant)) in PLATFORMS.iter().take(self.spec.platforms).enumerate() {
            let base = self
                .pattern_blob(
                    self.spec.seed ^ 0xba5e ^ ((p as u64) << 32),
                    self.spec.base_layer_size,
                )
                .await?;
            let mut layers = vec![base];
            for l in 0..self.spec.layers as u64 {
                let id = mix(self.spec.seed, &[r, t, p as u64, l]);
                layers.push(self.pattern_blob(id, self.spec.layer_size).await?);
            }
            let config = json!({
                "architecture": arch, "os": os, "variant": variant,
                "config": {"Labels": {"corpus.seed": self.spec.seed.to_string()}},
                "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
            });
            let config = self.json_blob(mt::OCI_CONFIG, &config).await?;
            let manifest = json!({
                "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
                "config": config, "layers": layers,
            });
            let mut desc = self.manifest(&manifest, None).await?;
            desc.platform = Some(crate::oci::Platform {
                architecture: arch.to_string(),
                os: os.to_string(),
                os_version: None,
                os_features: Vec::new(),
                variant: variant.map(str::to_string),
            });
            children.push(desc);
        }
        let index = json!({
            "schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": children,
            "annotations": {"org.opencontainers.image.version": tag.as_str()},
        });
        let index_desc = self.manifest(&index, Some(tag)).await?;
        self.referrers(&index_desc, &children[0]).await?;
        Ok(index_desc.digest)
    }

    /// The referrer graph of one image, by depth.
    async fn referrers(
        &mut self,
        index: &Descriptor,
        first: &Descriptor,
    ) -> Result<(), CorpusError> {
        if self.spec.referrer_depth == 0 {
            return Ok(());
        }
        let name = index.digest.to_string();
        let sig = self
            .referrer(
                index,
                SIGNATURE_TYPE,
                "sig",
                &format!("signature of {name}"),
            )
            .await?;
        let att = self
            .referrer(
                index,
                ATTESTATION_TYPE,
                "att",
                &format!("provenance of {name}"),
            )
            .await?;
        self.publish_fallback(index, &[sig, att]).await?;
        let sbom = self
            .referrer(
                first,
                SBOM_TYPE,
                "sbom",
                &format!("sbom of {}", first.digest),
            )
            .await?;
        self.publish_fallback(first, std::slice::from_ref(&sbom))
            .await?;
        if self.spec.referrer_depth >= 2 {
            let sbom_sig = self
                .referrer(
                    &sbom,
                    SIGNATURE_TYPE,
                    "sig",
                    &format!("signature of {}", sbom.digest),
                )
                .await?;
            self.publish_fallback(&sbom, std::slice::from_ref(&sbom_sig))
                .await?;
            if self.spec.referrer_depth >= 3 {
                let ts = self
                    .referrer(
                        &sbom_sig,
                        TIMESTAMP_TYPE,
                        "sig",
                        &format!("timestamp of {}", sbom_sig.digest),
                    )
                    .await?;
                self.publish_fallback(&sbom_sig, std::slice::from_ref(&ts))
                    .await?;
            }
        }
        Ok(())
    }

    /// One artifact attached to `subject`; returns its referrer descriptor.
    async fn referrer(
        &mut self,
        subject: &Descriptor,
        artifact_type: &str,
        cosign_suffix: &str,
        payload: &str,
    ) -> Result<Descriptor, CorpusError> {
        let empty = self
            .raw_blob(mt::OCI_EMPTY, Bytes::from_static(b"{}"))
            .await?;
        let layer = self
            .raw_blob(
                artifact_type,
                Bytes::from(json!({"payload": payload}).to_string()),
            )
            .await?;
        let subject_desc = Descriptor::new(
            subject.media_type.clone(),
            subject.digest.clone(),
            subject.size,
        );
        let cosign = self.spec.referrer_form == ReferrerForm::CosignTags;
        let mut body = json!({
            "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
            "artifactType": artifact_type, "config": empty, "layers": [layer],
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        });
        if !cosign {
            body["subject"] = serde_json::to_value(&subject_desc).unwrap_or_default();
        }
        let tag = cosign
            .then(|| Tag::new(&cosign_tag(&subject.digest, cosign_suffix)))
            .transpose()?;
        let bytes = Bytes::from(body.to_string());
        let manifest = Manifest::parse(bytes, Some(mt::OCI_MANIFEST))?;
        self.put(&manifest, tag.as_ref()).await?;
        self.report.referrers += 1;
        Ok(manifest.referrer_descriptor())
    }

    /// Lists `referrers` in `subject`'s fallback index (fallback form only).
    async fn publish_fallback(
        &mut self,
        subject: &Descriptor,
        referrers: &[Descriptor],
    ) -> Result<(), CorpusError> {
        if self.spec.referrer_form != ReferrerForm::FallbackTag {
            return Ok(());
        }
        let tag = Tag::new(&fallback_tag(&subject.digest))?;
        let existing = self
            .registry
            .manifest_get(self.repo, &Reference::Tag(tag.clone()))
            .await?;
        let existing = existing
            .as_ref()
            .map(|m| (m.bytes().as_ref(), m.media_type()));
        if let Some(bytes) = merge_fallback_index(existing, referrers)
            .map_err(|e| CorpusError::Spec(e.to_string()))?
        {
            let index = Manifest::parse(Bytes::from(bytes), Some(mt::OCI_INDEX))?;
            self.put(&index, Some(&tag)).await?;
        }
        Ok(())
    }

    async fn manifest(
        &mut self,
        body: &serde_json::Value,
        tag: Option<&Tag>,
    ) -> Result<Descriptor, CorpusError> {
        let manifest = Manifest::parse(Bytes::from(body.to_string()), None)?;
        self.put(&manifest, tag).await?;
        Ok(manifest.descriptor())
    }

    /// Pushes by digest, then under `tag` when given (tags last).
    async fn put(&mut self, manifest: &Manifest, tag: Option<&Tag>) -> Result<(), CorpusError> {
        let by_digest = Reference::Digest(manifest.digest().clone());
        self.registry
            .manifest_put(self.repo, &by_digest, manifest, Precondition::None)
            .await?;
        if let Some(tag) = tag {
            self.registry
                .manifest_put(
                    self.repo,
                    &Reference::Tag(tag.clone()),
                    manifest,
                    Precondition::None,
                )
                .await?;
        }
        self.report.manifests += 1;
        Ok(())
    }

    async fn json_blob(
        &mut self,
        media_type: &str,
        value: &serde_json::Value,
    ) -> Result<Descriptor, CorpusError> {
        self.raw_blob(media_type, Bytes::from(value.to_string()))
            .await
    }

    async fn raw_blob(
        &mut self,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Descriptor, CorpusError> {
        let desc = Descriptor::new(media_type, Digest::sha256(&bytes), bytes.len() as u64);
        let body: BlobStream = Box::pin(stream::iter([Ok(bytes)]));
        self.upload(&desc, body).await?;
        Ok(desc)
    }

    /// A layer of `size` seeded bytes: hashed in one pass, uploaded in another.
    async fn pattern_blob(&mut self, seed: u64, size: u64) -> Result<Descriptor, CorpusError> {
        let mut digester = Digester::new(crate::oci::Algorithm::Sha256);
        for chunk in Pattern::new(seed, size) {
            digester.update(&chunk);
        }
        let desc = Descriptor::new(LAYER_MEDIA_TYPE, digester.finish(), size);
        let body: BlobStream = Box::pin(stream::iter(Pattern::new(seed, size).map(Ok)));
        self.upload(&desc, body).await?;
        Ok(desc)
    }

    async fn upload(&mut self, desc: &Descriptor, body: BlobStream) -> Result<(), CorpusError> {
        if self
            .registry
            .blob_head(self.repo, &desc.digest)
            .await?
            .is_none()
        {
            self.registry.blob_put(self.repo, desc, body).await?;
            self.report.blobs += 1;
            self.report.bytes += desc.size;
        }
        Ok(())
    }
}

/// Deterministic bytes from a seed (splitmix64), in 64 KiB chunks.
struct Pattern {
    state: u64,
    left: u64,
}

impl Pattern {
    fn new(seed: u64, size: u64) -> Self {
        Pattern {
            state: seed,
            left: size,
        }
    }
}

impl Iterator for Pattern {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(CHUNK as u64) as usize;
        let mut buf = Vec::with_capacity(n + 8);
        while buf.len() < n {
            self.state = splitmix(self.state);
            buf.extend_from_slice(&self.state.to_le_bytes());
        }
        buf.truncate(n);
        self.left -= n as u64;
        Some(Bytes::from(buf))
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mix(seed: u64, parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(splitmix(seed), |acc, p| splitmix(acc ^ p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_sized() {
        let a: Vec<u8> = Pattern::new(7, 100_000).flat_map(|b| b.to_vec()).collect();
        let b: Vec<u8> = Pattern::new(7, 100_000).flat_map(|b| b.to_vec()).collect();
        let c: Vec<u8> = Pattern::new(8, 100_000).flat_map(|b| b.to_vec()).collect();
        assert_eq!(a.len(), 100_000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(Pattern::new(1, 0).count(), 0);
    }
}
