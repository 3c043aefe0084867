//! Pure OCI value types: digests, references, descriptors, manifests and the
//! referrers fallback-tag rules. Nothing here does I/O, and nothing here
//! imports from the rest of the crate.

pub mod cosign;
pub mod descriptor;
pub mod digest;
pub mod kind;
pub mod manifest;
pub mod media_type;
pub mod reference;
pub mod referrers;

pub use descriptor::{Descriptor, Platform};
pub use digest::{Algorithm, Digest, DigestError, Digester};
pub use kind::ReferrerKind;
pub use manifest::{Manifest, ManifestError, ManifestKind};
pub use reference::{
    ImageReference, Location, Reference, ReferenceError, RepoName, Tag, is_layout_name,
    is_loopback_host, layout_name,
};
