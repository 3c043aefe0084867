//! Media types ocimirror recognises (image-spec `media-types.md`, Docker
//! schema2). Unknown types are copied as opaque bytes, never rejected.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The empty descriptor's media type (content `{}`).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The withdrawn OCI artifact manifest (image-spec 1.1.0-rc2).
pub const OCI_ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// `oci-layout` file.
pub const OCI_LAYOUT_HEADER: &str = "application/vnd.oci.layout.header.v1+json";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema2 config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker schema1, signed. Refused: it cannot be pushed to modern registries.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker schema1, unsigned. Refused like the signed form.
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// Digest of the 2-byte empty JSON blob `{}`.
pub const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// The `Accept` header value for manifest requests: every type we understand,
/// plus schema1 so that legacy content is identified instead of mis-negotiated.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.artifact.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws, \
application/vnd.docker.distribution.manifest.v1+json";

/// True for index-like types (OCI index, Docker list).
pub fn is_index(media_type: &str) -> bool {
    matches!(essence(media_type), OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// True for every manifest type a registry stores under `/manifests/`.
pub fn is_manifest(media_type: &str) -> bool {
    matches!(
        essence(media_type),
        OCI_INDEX
            | OCI_MANIFEST
            | DOCKER_MANIFEST
            | DOCKER_MANIFEST_LIST
            | OCI_ARTIFACT_MANIFEST
            | DOCKER_SCHEMA1
            | DOCKER_SCHEMA1_SIGNED
    )
}

/// The media type without parameters (`; charset=...`), trimmed.
pub fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}
