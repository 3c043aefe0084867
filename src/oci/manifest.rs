//! Manifests as exact bytes plus a parsed view for navigation.
//!
//! The bytes are the truth: they are hashed for the digest and pushed as they
//! are. The parsed view only tells the walker where the children are.
//!
//! References: image-spec `manifest.md`, `image-index.md`; distribution-spec
//! §"Pulling manifests" (Content-Type vs `mediaType`).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;

use super::descriptor::Descriptor;
use super::digest::{Algorithm, Digest};
use super::media_type::{self as mt, essence};

/// The largest manifest ocimirror reads (distribution refuses more than 4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;
/// The most entries an index, or layers a manifest, may have.
pub const MAX_ENTRIES: usize = 10_000;

/// Why manifest bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Over [`MAX_MANIFEST_SIZE`].
    #[error("manifest is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Bytes seen.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, or JSON of the wrong shape.
    #[error("manifest is not valid JSON of a known shape: {0}")]
    InvalidJson(#[from] serde_json::Error),
    /// Schema1 and other types that cannot be copied.
    #[error("manifest media type {0:?} is not supported")]
    UnsupportedMediaType(String),
    /// The body's `mediaType` disagrees with the Content-Type it came with.
    #[error("manifest body says mediaType {body:?} but was served as {served:?}")]
    MediaTypeMismatch {
        /// From the body.
        body: String,
        /// From the response / descriptor.
        served: String,
    },
    /// Neither a body `mediaType` nor a recognisable shape.
    #[error("cannot tell the manifest's media type (no mediaType, no config, no manifests)")]
    UnknownShape,
    /// Too many entries.
    #[error("manifest has {count} entries, over the limit of {limit}")]
    TooManyEntries {
        /// Entries seen.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// `schemaVersion` other than 2.
    #[error("manifest schemaVersion is {0}, expected 2")]
    SchemaVersion(i64),
}

/// What the manifest is, parsed.
// Few manifests are alive at once; boxing the config would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ManifestKind {
    /// OCI image manifest or Docker schema2 manifest.
    Image {
        /// Config blob (absent only for the withdrawn artifact manifest).
        config: Option<Descriptor>,
        /// Layers (or the artifact manifest's `blobs`).
        layers: Vec<Descriptor>,
    },
    /// OCI index or Docker manifest list.
    Index {
        /// Child manifests.
        manifests: Vec<Descriptor>,
    },
}

/// A manifest: exact bytes, their digest, media type and parsed view.
#[derive(Clone, Debug)]
pub struct Manifest {
    bytes: Bytes,
    digest: Digest,
    media_type: String,
    kind: ManifestKind,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses `bytes` served with media type `served` (Content-Type or the
    /// parent descriptor's `mediaType`), hashing with SHA-256.
    pub fn parse(bytes: Bytes, served: Option<&str>) -> Result<Manifest, ManifestError> {
        Manifest::parse_with(bytes, served, Algorithm::Sha256)
    }

    /// As [`Manifest::parse`], hashing with `algorithm` (use the algorithm of
    /// the digest the manifest was requested by).
    pub fn parse_with(
        bytes: Bytes,
        served: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(ManifestError::TooLarge {
                size: bytes.len(),
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let served = served.map(essence).filter(|s| !s.is_empty());
        // Schema1 is identified by type before parsing: its JSON shape differs.
        for t in [served, peek_media_type(&bytes).as_deref()]
            .into_iter()
            .flatten()
        {
            if t == mt::DOCKER_SCHEMA1 || t == mt::DOCKER_SCHEMA1_SIGNED {
                return Err(ManifestError::UnsupportedMediaType(t.to_string()));
            }
        }
        let raw: Raw = serde_json::from_slice(&bytes)?;
        if let Some(v) = raw.schema_version
            && v != 2
        {
            return Err(ManifestError::SchemaVersion(v));
        }
        let media_type = match (&raw.media_type, served) {
            (Some(body), Some(served)) if essence(body) != served && mt::is_manifest(served) => {
                return Err(ManifestError::MediaTypeMismatch {
                    body: body.clone(),
                    served: served.to_string(),
                });
            }
            (Some(body), _) => essence(body).to_string(),
            (None, Some(served)) if mt::is_manifest(served) => served.to_string(),
            (None, _) if raw.manifests.is_some() => mt::OCI_INDEX.to_string(),
            (None, _) if raw.config.is_some() => mt::OCI_MANIFEST.to_string(),
            (None, _) => return Err(ManifestError::UnknownShape),
        };
        let kind = match media_type.as_str() {
            mt::OCI_INDEX | mt::DOCKER_MANIFEST_LIST => ManifestKind::Index {
                manifests: raw.manifests.ok_or(ManifestError::UnknownShape)?,
            },
            mt::OCI_MANIFEST | mt::DOCKER_MANIFEST => ManifestKind::Image {
                config: Some(raw.config.ok_or(ManifestError::UnknownShape)?),
                layers: raw.layers.unwrap_or_default(),
            },
            mt::OCI_ARTIFACT_MANIFEST => ManifestKind::Image {
                config: None,
                layers: raw.blobs.unwrap_or_default(),
            },
            other => return Err(ManifestError::UnsupportedMediaType(other.to_string())),
        };
        let count = match &kind {
            ManifestKind::Index { manifests } => manifests.len(),
            ManifestKind::Image { layers, .. } => layers.len(),
        };
        if count > MAX_ENTRIES {
            return Err(ManifestError::TooManyEntries {
                count,
                limit: MAX_ENTRIES,
            });
        }
        let digest = Digest::compute(algorithm, &bytes);
        Ok(Manifest {
            bytes,
            digest,
            media_type,
            kind,
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        })
    }

    /// The exact bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Digest of the exact bytes.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Media type (without parameters).
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// Parsed view.
    pub fn kind(&self) -> &ManifestKind {
        &self.kind
    }

    /// The `subject`, when this manifest is a referrer.
    pub fn subject(&self) -> Option<&Descriptor> {
        self.subject.as_ref()
    }

    /// Top-level annotations.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// The `artifactType` field as written.
    pub fn artifact_type(&self) -> Option<&str> {
        self.artifact_type.as_deref()
    }

    /// True for indexes and manifest lists.
    pub fn is_index(&self) -> bool {
        matches!(self.kind, ManifestKind::Index { .. })
    }

    /// Child manifests (index entries); empty for an image manifest.
    pub fn child_manifests(&self) -> &[Descriptor] {
        match &self.kind {
            ManifestKind::Index { manifests } => manifests,
            ManifestKind::Image { .. } => &[],
        }
    }

    /// Blobs: config then layers; empty for an index.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        match &self.kind {
            ManifestKind::Image { config, layers } => config.iter().chain(layers).collect(),
            ManifestKind::Index { .. } => Vec::new(),
        }
    }

    /// The plain descriptor of this manifest: media type, digest, size.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            self.digest.clone(),
            self.bytes.len() as u64,
        )
    }

    /// The descriptor a referrers listing or fallback index holds for this
    /// manifest (distribution-spec §"Listing Referrers"): `artifactType` is the
    /// manifest's own, else (image manifest) its config media type, else
    /// (index) absent; every top-level annotation is copied.
    pub fn referrer_descriptor(&self) -> Descriptor {
        let artifact_type = self.artifact_type.clone().or_else(|| match &self.kind {
            ManifestKind::Image {
                config: Some(config),
                ..
            } => Some(config.media_type.clone()),
            _ => None,
        });
        Descriptor {
            artifact_type,
            annotations: self.annotations.clone(),
            ..self.descriptor()
        }
    }
}

/// Reads only the body's `mediaType`, tolerating any other shape.
fn peek_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        media_type: Option<String>,
    }
    serde_json::from_slice::<Peek>(bytes)
        .ok()
        .and_then(|p| p.media_type)
        .map(|m| essence(&m).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        Digest::sha256(&[n]).to_string()
    }

    fn image(extra: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.example.sig","digest":"{}","size":2}},"layers":[{{"mediaType":"{}","digest":"{}","size":3}}]{extra}}}"#,
            mt::OCI_MANIFEST,
            d(1),
            mt::OCI_LAYER_GZIP,
            d(2)
        ))
    }

    #[test]
    fn keeps_exact_bytes_and_digest() {
        // Odd spacing must survive: the digest is of these bytes, not a re-serialisation.
        let bytes = Bytes::from(
            image("")
                .to_vec()
                .into_iter()
                .chain(*b"  ")
                .collect::<Vec<u8>>(),
        );
        let m = Manifest::parse(bytes.clone(), Some(mt::OCI_MANIFEST)).unwrap();
        assert_eq!(m.bytes(), &bytes);
        assert_eq!(m.digest(), &Digest::sha256(&bytes));
        assert_eq!(m.blobs().len(), 2);
    }

    #[test]
    fn referrer_descriptor_derives_artifact_type_from_config() {
        let m = Manifest::parse(
            image(r#","annotations":{"a":"1","b":"2"}"#),
            Some(mt::OCI_MANIFEST),
        )
        .unwrap();
        let r = m.referrer_descriptor();
        assert_eq!(
            r.artifact_type.as_deref(),
            Some("application/vnd.example.sig")
        );
        assert_eq!(r.annotations.len(), 2);
        let m = Manifest::parse(image(r#","artifactType":"x/y""#), None).unwrap();
        assert_eq!(
            m.referrer_descriptor().artifact_type.as_deref(),
            Some("x/y")
        );
    }

    #[test]
    fn index_without_artifact_type_has_none() {
        let idx = Bytes::from(format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":5}}]}}"#,
            mt::OCI_MANIFEST,
            d(3)
        ));
        let m = Manifest::parse(idx, None).unwrap();
        assert!(m.is_index());
        assert_eq!(m.media_type(), mt::OCI_INDEX);
        assert_eq!(m.referrer_descriptor().artifact_type, None);
    }

    #[test]
    fn refuses_what_cannot_be_copied() {
        let mismatch = Manifest::parse(image(""), Some(mt::OCI_INDEX)).unwrap_err();
        assert!(matches!(mismatch, ManifestError::MediaTypeMismatch { .. }));
        let schema1 = Manifest::parse(
            Bytes::from_static(br#"{"schemaVersion":1,"name":"x"}"#),
            Some(mt::DOCKER_SCHEMA1_SIGNED),
        )
        .unwrap_err();
        assert!(matches!(schema1, ManifestError::UnsupportedMediaType(_)));
        assert!(matches!(
            Manifest::parse(Bytes::from_static(b"not json"), None).unwrap_err(),
            ManifestError::InvalidJson(_)
        ));
        let big = Bytes::from(vec![b' '; MAX_MANIFEST_SIZE + 1]);
        assert!(matches!(
            Manifest::parse(big, None).unwrap_err(),
            ManifestError::TooLarge { .. }
        ));
        let bad_digest = Bytes::from_static(
            br#"{"schemaVersion":2,"manifests":[{"mediaType":"a","digest":"sha256:../x","size":1}]}"#,
        );
        assert!(Manifest::parse(bad_digest, None).is_err());
    }

    #[test]
    fn refuses_absurd_indexes() {
        let entry = format!(
            r#"{{"mediaType":"{}","digest":"{}","size":1}}"#,
            mt::OCI_MANIFEST,
            d(1)
        );
        let entries = vec![entry; MAX_ENTRIES + 1].join(",");
        let idx = Bytes::from(format!(r#"{{"schemaVersion":2,"manifests":[{entries}]}}"#));
        assert!(matches!(
            Manifest::parse(idx, None).unwrap_err(),
            ManifestError::TooManyEntries { .. }
        ));
    }
}
