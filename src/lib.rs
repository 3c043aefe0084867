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
//! - [`config`]: the configuration file, environment overrides and the one
//!   resolve step that validates them into plain data. Imports `oci` (and
//!   `logging` for `LogFormat`).
//! - [`store`]: the sqlite checkpoint store (runs, tag state, copied blobs,
//!   failures); a cache of the target, never the truth. Imports only `oci`.
//! - [`scheduler`]: timing only: when each job fires (interval/cron +
//!   jitter), skip-while-running, per-item failure backoff. Imports `config`
//!   and `store`.
//! - [`sync`]: one run of one job: list, select, skip the unchanged
//!   (checkpoint), copy the rest, record. Imports `config`, `copy`,
//!   `registry`, `store`.
//! - [`metrics`]: every Prometheus metric, in its own registry, with
//!   intent-named update methods. A leaf: imports nothing from the crate, so
//!   every layer may import it.
//! - [`server`]: `/metrics`, `/healthz` and `/readyz` on their own listener.
//!   Imports only `metrics`.
//! - [`logging`]: tracing subscriber set-up (text on a terminal, JSON
//!   otherwise). Imports nothing from the crate.
//! - [`observe`]: feeds metrics from the HTTP adapter's request observer
//!   and the copy engine's events. Imports `metrics`, `copy`, `registry`.

#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod copy;
pub mod corpus;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod oci;
pub mod registry;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod sync;
