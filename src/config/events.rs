//! `[events]`, resolved: the webhook senders and the event queue's bounds.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::{Secret, ser_duration};

/// `[events]`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventSettings {
    /// Quiet time after an item's latest event before it is synced.
    #[serde(serialize_with = "ser_duration")]
    pub debounce: Duration,
    /// Items waiting at most (then 429).
    pub queue_capacity: usize,
    /// Largest webhook body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Senders by name.
    pub sources: BTreeMap<String, WebhookSource>,
}

impl EventSettings {
    /// Default debounce: long enough to merge the events of one push
    /// (manifest, then tag), short enough for sub-second lag.
    pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);
    /// Default queue bound.
    pub const DEFAULT_QUEUE_CAPACITY: usize = 1000;
    /// Default body cap (1 MiB: a distribution envelope of 100 events is ~100 KiB).
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            debounce: Self::DEFAULT_DEBOUNCE,
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            sources: BTreeMap::new(),
        }
    }
}

/// The body format of a webhook sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// CNCF distribution notifications (`application/vnd.docker.distribution.events.v1+json`).
    Distribution,
    /// Harbor webhook policy (`PUSH_ARTIFACT`).
    Harbor,
    /// Docker Hub repository webhooks (`push_data`).
    Dockerhub,
    /// GitHub `registry_package` events.
    Github,
    /// `{registry, repository, tag | digest}`.
    Generic,
}

impl WebhookFormat {
    /// Every format, in the order the docs list them.
    pub const ALL: [WebhookFormat; 5] = [
        WebhookFormat::Distribution,
        WebhookFormat::Harbor,
        WebhookFormat::Dockerhub,
        WebhookFormat::Github,
        WebhookFormat::Generic,
    ];

    /// The path segment and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Distribution => "distribution",
            WebhookFormat::Harbor => "harbor",
            WebhookFormat::Dockerhub => "dockerhub",
            WebhookFormat::Github => "github",
            WebhookFormat::Generic => "generic",
        }
    }

    /// The format named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

impl fmt::Display for WebhookFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One webhook sender.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookSource {
    /// Its name (the last path segment).
    pub name: String,
    /// Body format.
    pub format: WebhookFormat,
    /// The registry host it speaks for (`None`: the body names it).
    pub registry: Option<String>,
    /// Shared bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// HMAC-SHA256 key of the body signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<Secret>,
}
