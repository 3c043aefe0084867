//! Event-driven mirroring: registry webhooks become sync work.
//!
//! - [`formats`]: one parser per sender's body format, each turning a body
//!   into [`PushEvent`]s (pure functions, no I/O);
//! - [`auth`]: the per-source bearer token or HMAC signature check;
//! - [`mapping`]: which jobs an event concerns and what they must sync
//!   (repository rules, tag selection, referrer pushes to their subject);
//! - [`queue`]: debounce and dedupe per item, with a bound;
//! - [`worker`]: drains the queue through [`crate::sync::Syncer`] (the
//!   same copy path and checkpoints as scheduled runs) and records every
//!   accepted event's outcome in the state database.
//!
//! May import: `config` (types only), `oci`, `sync`, `store`, `registry`,
//! `metrics`.

pub mod auth;
pub mod formats;
pub mod mapping;
pub mod queue;
pub mod worker;

use crate::config::WebhookFormat;
use crate::oci::Digest;

/// One push a webhook announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushEvent {
    /// The registry host the body names, if it names one.
    pub registry: Option<String>,
    /// Repository path.
    pub repository: String,
    /// The tag pushed, if any.
    pub tag: Option<String>,
    /// The manifest digest pushed, if the body gives it.
    pub digest: Option<Digest>,
}

/// Why a webhook body was refused (400): the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON of the expected shape.
    #[error("{format} webhook: invalid body: {source}")]
    Json {
        /// The format expected.
        format: WebhookFormat,
        /// The serde error (names line, column and field).
        source: serde_json::Error,
    },
    /// A field holds a value that cannot be what it claims.
    #[error("{format} webhook: {field}: {message}")]
    Field {
        /// The format expected.
        format: WebhookFormat,
        /// The JSON field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// What a parsed body said: the pushes, and the events that are not pushes
/// of manifests (pulls, deletes, blob uploads), counted as ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Manifest pushes.
    pub pushes: Vec<PushEvent>,
    /// Events that are not manifest pushes.
    pub ignored: usize,
}

/// Parses a body of `format`. `event_kind` is the sender's event header
/// where it has one (GitHub's `X-GitHub-Event`).
pub fn parse(
    format: WebhookFormat,
    body: &[u8],
    event_kind: Option<&str>,
) -> Result<Parsed, ParseError> {
    match format {
        WebhookFormat::Distribution => formats::distribution::parse(body),
        WebhookFormat::Harbor => formats::harbor::parse(body),
        WebhookFormat::Dockerhub => formats::dockerhub::parse(body),
        WebhookFormat::Github => formats::github::parse(body, event_kind),
        WebhookFormat::Generic => formats::generic::parse(body),
    }
}
