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
//! - [`copy`]: the copy engine: walks an image's graph (index, platform
//!   manifests, blobs, referrers of every manifest, recursively) on a source
//!   and recreates it digest-exact on a target, converting between the
//!   referrers API, fallback tags, cosign tags and OCI layouts
//!   (`walk`/`discover` read, `transfer`/`publish` write, `platform` filters).
//!   Imports `registry` (the port only) and `oci`.
//! - [`cli`]: command implementations behind `src/main.rs` (`copy`); the
//!   only place adapters are chosen (`registry::open`). Imports all of the
//!   above.
//! - [`metrics`]: every Prometheus metric, in its own registry, with
//!   intent-named update methods. A leaf: imports nothing from the crate, so
//!   every layer may import it.
//! - [`server`]: `/metrics`, `/healthz` and `/readyz` on their own listener.
//!   Imports only `metrics`.
//! - [`logging`]: tracing subscriber set-up (text on a terminal, JSON
//!   otherwise). Imports nothing from the crate.

#![warn(missing_docs)]

pub mod cli;
pub mod copy;
pub mod corpus;
pub mod logging;
pub mod metrics;
pub mod oci;
pub mod registry;
pub mod server;
