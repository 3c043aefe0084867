//! ocimirror: mirrors OCI images between registries together with everything
//! attached to them (signatures, SBOMs, attestations and other referrers).
//!
//! # Layout
//! ```text
//! main.rs ── cli ── app ──┬── sync ──┬── copy ──── registry (port) ── oci
//!                         │          ├── store       ├── http   adapter
//!                         ├── scheduler              ├── layout adapter
//!                         ├── server, metrics        └── open   the factory
//!                         └── config
//! ```
//! Dependencies point right and down only; there are no import circles.
//!
//! - [`oci`]: pure value types (digests, references, manifests, the referrers
//!   tag schema). No I/O; imports nothing else from the crate.
//! - [`registry`]: the `Registry` port, its two adapters (HTTP registry, OCI
//!   layout directory, whose referrer listing merges its fallback tags with
//!   a scan of `index.json`) and [`registry::open`], the one factory every
//!   command opens its sources and targets through. Imports only `oci`.
//! - [`copy`]: the copy engine: walks an image's graph (index, platform
//!   manifests, blobs, referrers of every manifest, recursively, within
//!   bounds) and recreates it digest-exact on a target, converting between
//!   the referrers API, fallback tags, cosign tags and OCI layouts. Imports
//!   the `registry` port and `oci`.
//! - [`config`]: the configuration file, environment overrides and the one
//!   resolve step that validates them into plain data. Imports `oci`,
//!   `logging` (`LogFormat`) and the engine's mode enums.
//! - [`store`]: the sqlite checkpoint store (runs, tag state, failures and
//!   their backoff); a cache of the target, never the truth. Imports `oci`.
//! - [`scheduler`]: timing only: when each job fires (interval/cron +
//!   jitter), skip-while-running, the bound on jobs at once. Imports
//!   `config` and `store`.
//! - [`sync`]: one run of one job: list, select, skip the unchanged
//!   (checkpoint), copy the rest, record. Imports `config`, `copy`, the
//!   `registry` port and factory, `store`, `observe`.
//! - [`metrics`]: every Prometheus metric, in its own registry. A leaf.
//! - [`observe`]: feeds metrics from the HTTP adapter's request observer and
//!   the copy engine's events. Imports `metrics`, `copy`, `config`, `registry`.
//! - [`policy`]: the signature policy (cosign keys; off, warn, enforce),
//!   plugged into the engine as its admission `Gate` between the walk and
//!   the first write; caches verifications in `store`. Imports `copy`,
//!   the `registry` port, `store`, `metrics` and `oci`.
//! - [`server`]: `/metrics`, `/healthz`, `/readyz`, the webhook receiver,
//!   the HTTP API (`/api/v1`) and the status page (`/`). Imports
//!   `metrics`, `events`, `store`, `config` (types) and `scheduler` (types).
//! - [`events`]: event-driven mirroring: webhook formats and auth, mapping
//!   to jobs, the debounce queue, and the worker that syncs through `sync`.
//! - [`logging`]: tracing subscriber set-up. A leaf.
//! - [`secret`]: passwords and tokens that never print (config and HTTP
//!   adapter share it). A leaf.
//! - [`app`]: all wiring: config → adapters, store, metrics, syncer,
//!   scheduler and server; `run_once` and `serve(config, listener,
//!   shutdown)`. The commands and the tests call it; nothing else builds
//!   these pieces.
//! - [`verify`]: compares a target with its source through the engine's
//!   plan, trusting nothing on the target. Imports `app`, `copy`, `sync`.
//! - [`cli`]: the commands behind `src/main.rs` and their output; the exit
//!   statuses in [`cli::exit`].
//! - [`corpus`]: a seeded corpus of images with nested referrers, written
//!   through any `Registry` (demo fixture, benchmarks, tests).
//!
//! # Where ocimirror differs from regclient
//! regclient decides a referrer's representation inside each transport
//! (its HTTP scheme writes fallback tags when the registry has no API).
//! Here the split is: the HTTP adapter *detects* what a repository supports
//! (every real-world answer of the referrers endpoint mapped to one verdict,
//! cached per repository), and the copy engine *decides* how to publish
//! (API, fallback index, layout). One policy then serves HTTP registries and
//! layouts alike, and `plan` can explain each decision before anything is
//! written.

#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod copy;
pub mod corpus;
pub mod events;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod oci;
pub mod policy;
pub mod registry;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod store;
pub mod sync;
pub mod verify;
