//! ocimirror: mirrors OCI images between registries together with everything
//! attached to them (signatures, SBOMs, attestations and other referrers).
//!
//! # Layout
//! - [`oci`]: pure value types (digests, references, manifests, the referrers
//!   tag schema). No I/O; imports nothing else from the crate.
//! - [`registry`]: the `Registry` port and its adapters (HTTP registry, OCI
//!   layout directory). Imports only `oci`.
//! - [`corpus`]: a seeded corpus of images with nested referrers, written
//!   through any `Registry` (demo fixture, benchmarks, tests).

#![warn(missing_docs)]

pub mod corpus;
pub mod oci;
pub mod registry;
