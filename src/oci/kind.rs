//! What a referrer is *for* — a signature, an attestation, an SBOM — read
//! from its media types, so filters can say what users mean. One kind has
//! many spellings: cosign's OCI 1.1 signature carries its type in
//! `artifactType` (or the config), cosign's legacy `.sig` only in its layer
//! (its derived artifactType is the plain image config type), and Notary's
//! signature in `artifactType` (spec notes §5.2, §5.3).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::manifest::{Manifest, ManifestKind};
use super::media_type::essence;

/// The kind of a referrer (or cosign legacy attachment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReferrerKind {
    /// cosign (OCI 1.1, legacy `.sig`, sigstore bundle) and Notary signatures.
    Signature,
    /// in-toto statements and DSSE envelopes (cosign `.att`, attestations in
    /// a sigstore bundle).
    Attestation,
    /// SPDX, CycloneDX and Syft documents (cosign `.sbom` too).
    Sbom,
    /// Anything else.
    Other,
}

/// The sigstore bundle annotation saying what the bundle holds.
const BUNDLE_CONTENT: &str = "dev.sigstore.bundle.content";

impl ReferrerKind {
    /// Every kind, in the order they are documented.
    pub const ALL: [ReferrerKind; 4] = [
        ReferrerKind::Signature,
        ReferrerKind::Attestation,
        ReferrerKind::Sbom,
        ReferrerKind::Other,
    ];

    /// The word used in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ReferrerKind::Signature => "signature",
            ReferrerKind::Attestation => "attestation",
            ReferrerKind::Sbom => "sbom",
            ReferrerKind::Other => "other",
        }
    }

    /// Classifies a referrer manifest: its `artifactType`, then its config
    /// media type, then its layers' media types; the first known one decides.
    pub fn of(manifest: &Manifest) -> ReferrerKind {
        let (config, layers) = match manifest.kind() {
            ManifestKind::Image { config, layers } => (config.as_ref(), layers.as_slice()),
            ManifestKind::Index { .. } => (None, &[][..]),
        };
        let candidates = manifest
            .artifact_type()
            .into_iter()
            .chain(config.map(|c| c.media_type.as_str()))
            .chain(layers.iter().map(|l| l.media_type.as_str()));
        for media_type in candidates {
            if is_sigstore_bundle(media_type) {
                // A bundle holds a signature or, as a DSSE envelope, an attestation.
                return match manifest
                    .annotations()
                    .get(BUNDLE_CONTENT)
                    .map(String::as_str)
                {
                    Some("dsse-envelope") => ReferrerKind::Attestation,
                    _ => ReferrerKind::Signature,
                };
            }
            if let Some(kind) = ReferrerKind::of_media_type(media_type) {
                return kind;
            }
        }
        ReferrerKind::Other
    }

    /// The kind one media type stands for, or `None` when it says nothing
    /// (the image config type, the empty type, unknown types).
    pub fn of_media_type(media_type: &str) -> Option<ReferrerKind> {
        let t = essence(media_type).to_ascii_lowercase();
        let t = t.as_str();
        match t {
            "application/vnd.dev.cosign.artifact.sig.v1+json"
            | "application/vnd.dev.cosign.simplesigning.v1+json"
            | "application/vnd.cncf.notary.signature" => Some(ReferrerKind::Signature),
            "application/vnd.dsse.envelope.v1+json"
            | "application/vnd.in-toto+json"
            | "application/vnd.dev.cosign.artifact.att.v1+json"
            | "application/vnd.docker.attestation.config.v1+json" => {
                Some(ReferrerKind::Attestation)
            }
            "application/vnd.syft+json" | "application/vnd.dev.cosign.artifact.sbom.v1+json" => {
                Some(ReferrerKind::Sbom)
            }
            _ if is_sigstore_bundle(t) => Some(ReferrerKind::Signature),
            // Predicate-specific statement types and in-toto bundles.
            _ if t.starts_with("application/vnd.in-toto.") => Some(ReferrerKind::Attestation),
            _ if t.starts_with("application/spdx")
                || t.starts_with("text/spdx")
                || t.starts_with("application/vnd.cyclonedx")
                || t.starts_with("application/x.vnd.cyclonedx") =>
            {
                Some(ReferrerKind::Sbom)
            }
            _ => None,
        }
    }
}

/// `application/vnd.dev.sigstore.bundle.v0.3+json` and its later spellings.
fn is_sigstore_bundle(media_type: &str) -> bool {
    essence(media_type)
        .to_ascii_lowercase()
        .starts_with("application/vnd.dev.sigstore.bundle")
}

impl FromStr for ReferrerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReferrerKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown referrer kind {s:?}: expected signature, attestation, sbom or other"
                )
            })
    }
}

impl fmt::Display for ReferrerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ReferrerKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;

    const EMPTY: &str = "application/vnd.oci.empty.v1+json";
    const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn manifest(
        artifact_type: Option<&str>,
        config: &str,
        layers: &[&str],
        annotations: serde_json::Value,
    ) -> Manifest {
        let desc = |t: &str| json!({"mediaType": t, "digest": D, "size": 2});
        let mut v = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc(config),
            "layers": layers.iter().map(|l| desc(l)).collect::<Vec<_>>(),
            "annotations": annotations,
        });
        if let Some(at) = artifact_type {
            v["artifactType"] = json!(at);
        }
        Manifest::parse(Bytes::from(serde_json::to_vec(&v).unwrap()), None).unwrap()
    }

    fn kind(artifact_type: Option<&str>, config: &str, layers: &[&str]) -> ReferrerKind {
        ReferrerKind::of(&manifest(artifact_type, config, layers, json!({})))
    }

    #[test]
    fn every_spelling_of_a_signature_is_a_signature() {
        use ReferrerKind::Signature;
        // cosign OCI 1.1: the type is the config's.
        let cosign = "application/vnd.dev.cosign.artifact.sig.v1+json";
        assert_eq!(kind(None, cosign, &["application/json"]), Signature);
        assert_eq!(kind(Some(cosign), EMPTY, &[EMPTY]), Signature);
        // cosign legacy `.sig`: only the layer says so.
        let simple = "application/vnd.dev.cosign.simplesigning.v1+json";
        assert_eq!(kind(None, CONFIG, &[simple, simple]), Signature);
        // Notary, current and legacy form.
        let notary = "application/vnd.cncf.notary.signature";
        assert_eq!(
            kind(Some(notary), EMPTY, &["application/jose+json"]),
            Signature
        );
        assert_eq!(kind(None, notary, &["application/cose"]), Signature);
        // A sigstore bundle holding a message signature.
        let bundle = "application/vnd.dev.sigstore.bundle.v0.3+json";
        let m = manifest(
            Some(bundle),
            EMPTY,
            &[bundle],
            json!({BUNDLE_CONTENT: "message-signature"}),
        );
        assert_eq!(ReferrerKind::of(&m), Signature);
    }

    #[test]
    fn attestations_and_sboms_by_type_config_or_layer() {
        use ReferrerKind::{Attestation, Sbom};
        let dsse = "application/vnd.dsse.envelope.v1+json";
        assert_eq!(kind(None, CONFIG, &[dsse]), Attestation);
        assert_eq!(
            kind(Some("application/vnd.in-toto+json"), EMPTY, &[EMPTY]),
            Attestation
        );
        assert_eq!(
            kind(
                Some("application/vnd.in-toto.provenance+json"),
                EMPTY,
                &[EMPTY]
            ),
            Attestation
        );
        let bundle = "application/vnd.dev.sigstore.bundle.v0.3+json";
        let m = manifest(
            Some(bundle),
            EMPTY,
            &[bundle],
            json!({BUNDLE_CONTENT: "dsse-envelope"}),
        );
        assert_eq!(ReferrerKind::of(&m), Attestation);
        assert_eq!(kind(Some("application/spdx+json"), EMPTY, &[]), Sbom);
        assert_eq!(kind(None, CONFIG, &["text/spdx+json"]), Sbom);
        assert_eq!(
            kind(
                Some("application/vnd.cyclonedx+json; version=1.5"),
                EMPTY,
                &[]
            ),
            Sbom
        );
        assert_eq!(kind(None, CONFIG, &["application/vnd.syft+json"]), Sbom);
        assert_eq!(
            kind(
                None,
                "application/vnd.dev.cosign.artifact.sbom.v1+json",
                &[]
            ),
            Sbom
        );
    }

    #[test]
    fn the_first_known_type_decides_and_unknown_is_other() {
        // artifactType before the layers.
        let k = kind(
            Some("application/spdx+json"),
            EMPTY,
            &["application/vnd.dsse.envelope.v1+json"],
        );
        assert_eq!(k, ReferrerKind::Sbom);
        assert_eq!(
            kind(
                Some("application/vnd.example.thing"),
                EMPTY,
                &["application/octet-stream"]
            ),
            ReferrerKind::Other
        );
        assert_eq!(
            kind(
                None,
                CONFIG,
                &["application/vnd.oci.image.layer.v1.tar+gzip"]
            ),
            ReferrerKind::Other
        );
    }

    #[test]
    fn words_round_trip_and_unknown_words_are_named() {
        for k in ReferrerKind::ALL {
            assert_eq!(k.to_string().parse::<ReferrerKind>(), Ok(k));
        }
        let err = "signatures".parse::<ReferrerKind>().unwrap_err();
        assert!(err.contains("\"signatures\""), "{err}");
        assert!(
            err.contains("signature, attestation, sbom or other"),
            "{err}"
        );
    }
}
