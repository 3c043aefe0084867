//! cosign's two ways of storing one attachment (signature, attestation,
//! SBOM), as pure functions between them: the legacy tag manifest
//! (`sha256-<hex>.sig`, no `subject`) and the OCI 1.1 referrer that
//! cosign's `--registry-referrers-mode=oci-1-1` writes. No I/O.
//!
//! What cosign's OCI 1.1 mode does to a legacy manifest
//! (`internal/pkg/oci/remote/remote.go` `WriteSignaturesExperimentalOCI`):
//! the same manifest, its `config.mediaType` replaced by
//! `application/vnd.dev.cosign.artifact.<sig|att|sbom>.v1+json`, a `subject`
//! added (the signed manifest's `mediaType`, `size`, `digest`), serialised
//! by Go's `encoding/json` from go-containerregistry's `v1.Manifest`. The
//! config blob, the layers and every layer annotation (signature,
//! certificate, chain, bundle, timestamp) are untouched, so the signatures
//! still verify. One legacy manifest with several signatures (one layer
//! each) becomes one referrer with the same layers, which is what cosign
//! writes in that mode.
//!
//! Both directions serialise in that Go order (fields as the struct
//! declares them, map keys sorted, `<`, `>`, `&` escaped), so a manifest
//! that cosign wrote converts to the bytes cosign itself would have written,
//! and back to its original digest.
//!
//! References: spec notes §5.3; go-containerregistry `pkg/v1/manifest.go`.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::descriptor::Descriptor;
use super::digest::Digest;
use super::manifest::{Manifest, ManifestError};
use super::media_type as mt;

/// What a cosign attachment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attachment {
    /// `.sig`: simple-signing payloads with their signatures.
    Signature,
    /// `.att`: DSSE envelopes of in-toto statements.
    Attestation,
    /// `.sbom`: an SBOM document.
    Sbom,
}

impl Attachment {
    /// Every attachment kind.
    pub const ALL: [Attachment; 3] = [
        Attachment::Signature,
        Attachment::Attestation,
        Attachment::Sbom,
    ];

    /// The legacy tag suffix (`sig`, `att`, `sbom`).
    pub fn suffix(self) -> &'static str {
        match self {
            Attachment::Signature => "sig",
            Attachment::Attestation => "att",
            Attachment::Sbom => "sbom",
        }
    }

    /// The `config.mediaType` cosign's OCI 1.1 mode gives it.
    pub fn artifact_type(self) -> &'static str {
        match self {
            Attachment::Signature => "application/vnd.dev.cosign.artifact.sig.v1+json",
            Attachment::Attestation => "application/vnd.dev.cosign.artifact.att.v1+json",
            Attachment::Sbom => "application/vnd.dev.cosign.artifact.sbom.v1+json",
        }
    }

    /// The kind a legacy tag names by its suffix (`sha256-<hex>.sig`).
    pub fn of_tag(tag: &str) -> Option<Attachment> {
        let (_, suffix) = tag.rsplit_once('.')?;
        Attachment::ALL.into_iter().find(|a| a.suffix() == suffix)
    }

    /// The kind of a cosign OCI 1.1 referrer: an image manifest with a
    /// `subject`, no `artifactType`, and one of cosign's config types.
    /// `None` for everything else (sigstore bundles included: they have no
    /// legacy form).
    pub fn of_referrer(m: &Manifest) -> Option<Attachment> {
        if m.media_type() != mt::OCI_MANIFEST || m.subject().is_none() {
            return None;
        }
        if m.artifact_type().is_some() {
            return None;
        }
        let config = m.blobs().first().map(|c| c.media_type.clone())?;
        Attachment::ALL
            .into_iter()
            .find(|a| a.artifact_type() == config)
    }
}

/// Why a manifest could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    /// Not of the shape this conversion handles.
    #[error("manifest {digest} cannot be converted: {reason}")]
    Shape {
        /// The manifest at fault.
        digest: Digest,
        /// What is wrong with it.
        reason: String,
    },
    /// Fields go-containerregistry's manifest does not have, which a
    /// conversion would drop.
    #[error("manifest {digest} cannot be converted: {source}")]
    Json {
        /// The manifest at fault.
        digest: Digest,
        /// The parse error (names the unexpected field).
        source: serde_json::Error,
    },
    /// The converted bytes are not a manifest ocimirror can copy.
    #[error("converted manifest is invalid: {0}")]
    Invalid(#[from] ManifestError),
}

/// go-containerregistry's `v1.Manifest`, in its field order.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Shape {
    schema_version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Desc,
    layers: Vec<Desc>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Desc>,
}

/// go-containerregistry's `v1.Descriptor`, in its field order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Desc {
    media_type: String,
    size: i64,
    digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
}

impl Desc {
    fn of(d: &Descriptor) -> Result<Desc, String> {
        Ok(Desc {
            media_type: d.media_type.clone(),
            size: i64::try_from(d.size).map_err(|_| format!("size {} is too large", d.size))?,
            digest: d.digest.to_string(),
            data: None,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        })
    }
}

fn shape_of(m: &Manifest) -> Result<Shape, CosignError> {
    if m.media_type() != mt::OCI_MANIFEST {
        return Err(shape_error(
            m,
            format!(
                "media type is {}, not an OCI image manifest",
                m.media_type()
            ),
        ));
    }
    let shape: Shape = serde_json::from_slice(m.bytes()).map_err(|source| CosignError::Json {
        digest: m.digest().clone(),
        source,
    })?;
    if shape.layers.is_empty() {
        return Err(shape_error(m, "it has no layers".into()));
    }
    Ok(shape)
}

fn shape_error(m: &Manifest, reason: String) -> CosignError {
    CosignError::Shape {
        digest: m.digest().clone(),
        reason,
    }
}

/// Go's `json.Marshal` output for `value`: serde_json writes the same
/// structure; Go also escapes `<`, `>`, `&`, U+2028 and U+2029, which can
/// only occur inside strings, so replacing them anywhere is exact.
fn go_json<T: Serialize>(value: &T) -> Result<Bytes, CosignError> {
    let plain = serde_json::to_string(value).map_err(ManifestError::InvalidJson)?;
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(Bytes::from(out))
}

fn manifest_of(shape: &Shape) -> Result<Manifest, CosignError> {
    Ok(Manifest::parse(go_json(shape)?, Some(mt::OCI_MANIFEST))?)
}

/// The OCI 1.1 referrer cosign would have written for the legacy
/// attachment manifest `legacy` (tagged for `subject`) of kind `kind`.
pub fn to_referrer(
    legacy: &Manifest,
    kind: Attachment,
    subject: &Descriptor,
) -> Result<Manifest, CosignError> {
    let mut shape = shape_of(legacy)?;
    if shape.subject.is_some() {
        return Err(shape_error(
            legacy,
            "it already has a subject (not a legacy tag manifest)".into(),
        ));
    }
    shape.config.media_type = kind.artifact_type().to_string();
    shape.subject = Some(Desc::of(subject).map_err(|r| shape_error(legacy, r))?);
    manifest_of(&shape)
}

/// A legacy attachment manifest built from OCI 1.1 referrers.
#[derive(Clone, Debug)]
pub struct Legacy {
    /// The manifest for the `sha256-<hex>.<suffix>` tag.
    pub manifest: Manifest,
    /// Its config blob, when it is new (several referrers merged); `None`
    /// when it is the single referrer's own config blob.
    pub config: Option<(Descriptor, Bytes)>,
}

/// The legacy tag manifest holding every layer of `referrers` (cosign OCI
/// 1.1 referrers of one kind and one subject), as cosign appends
/// signatures: one layer each, duplicates (same blob, same annotations)
/// once. Referrers are taken in digest order and layers in their order, so
/// the result does not depend on the order of listing. One referrer keeps
/// its config blob (the round trip gives back the original digest); several
/// get the config cosign's appends produce for their layers.
pub fn to_legacy(referrers: &[&Manifest]) -> Result<Legacy, CosignError> {
    let mut sorted: Vec<&Manifest> = referrers.to_vec();
    sorted.sort_by(|a, b| a.digest().cmp(b.digest()));
    sorted.dedup_by(|a, b| a.digest() == b.digest());
    let Some(first) = sorted.first() else {
        return Err(CosignError::Invalid(ManifestError::UnknownShape));
    };
    let kind = Attachment::of_referrer(first)
        .ok_or_else(|| shape_error(first, "not a cosign OCI 1.1 referrer".into()))?;
    let subject = first.subject().map(|s| s.digest.clone());
    let mut merged = shape_of(first)?;
    merged.subject = None;
    merged.config.media_type = mt::OCI_CONFIG.to_string();
    for m in &sorted[1..] {
        if Attachment::of_referrer(m) != Some(kind)
            || m.subject().map(|s| &s.digest) != subject.as_ref()
        {
            return Err(shape_error(
                m,
                format!(
                    "not a cosign {} referrer of the same subject",
                    kind.suffix()
                ),
            ));
        }
        let shape = shape_of(m)?;
        for layer in shape.layers {
            if !merged.layers.contains(&layer) {
                merged.layers.push(layer);
            }
        }
        for (k, v) in shape.annotations {
            merged.annotations.entry(k).or_insert(v);
        }
    }
    let config = if sorted.len() > 1 {
        let bytes = go_json(&ConfigFile::for_layers(&merged.layers))?;
        let desc = Descriptor::new(mt::OCI_CONFIG, Digest::sha256(&bytes), bytes.len() as u64);
        merged.config = Desc::of(&desc).map_err(|r| shape_error(first, r))?;
        Some((desc, bytes))
    } else {
        None
    };
    Ok(Legacy {
        manifest: manifest_of(&merged)?,
        config,
    })
}

/// The image config go-containerregistry writes for `mutate.Append` of
/// layers onto `empty.Image` (what cosign's legacy signature images carry):
/// one diff ID (the layer digest: cosign's layers are not compressed) and
/// one empty history entry per layer.
#[derive(Serialize)]
struct ConfigFile {
    architecture: &'static str,
    created: &'static str,
    history: Vec<History>,
    os: &'static str,
    rootfs: RootFs,
    config: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct History {
    created: &'static str,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

/// Go's zero time, as go-containerregistry writes it.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl ConfigFile {
    fn for_layers(layers: &[Desc]) -> ConfigFile {
        ConfigFile {
            architecture: "",
            created: ZERO_TIME,
            history: layers
                .iter()
                .map(|_| History { created: ZERO_TIME })
                .collect(),
            os: "",
            rootfs: RootFs {
                kind: "layers",
                diff_ids: layers.iter().map(|l| l.digest.clone()).collect(),
            },
            config: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests;
