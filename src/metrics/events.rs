//! The webhook receiver's metrics: requests received, events accepted or
//! ignored, requests rejected (by reason), the queue depth and the
//! push-to-mirrored lag. Every series exists from the start (at zero), so
//! dashboards and alerts see them before the first webhook.

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use super::register::{counter, histogram, int_gauge, saturating_i64};
use super::{MetricsError, names};

/// The body formats, as label values (`config::WebhookFormat::as_str`).
pub const FORMATS: [&str; 5] = ["distribution", "harbor", "dockerhub", "github", "generic"];

/// Why a webhook request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// 401: no or wrong token or signature.
    Unauthorized,
    /// 400: not a body of the format.
    Malformed,
    /// 413: over `events.max_body_bytes`.
    TooLarge,
    /// 429: the queue had no room.
    QueueFull,
}

impl Rejection {
    const ALL: [Rejection; 4] = [
        Rejection::Unauthorized,
        Rejection::Malformed,
        Rejection::TooLarge,
        Rejection::QueueFull,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Rejection::Unauthorized => "unauthorized",
            Rejection::Malformed => "malformed",
            Rejection::TooLarge => "too_large",
            Rejection::QueueFull => "queue_full",
        }
    }
}

/// Push-to-mirrored lag: sub-second on a LAN, minutes for a large image.
const LAG_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// The webhook metrics (a part of [`super::Metrics`]).
#[derive(Clone, Debug)]
pub struct EventMetrics {
    received: IntCounterVec,
    events: IntCounterVec,
    rejected: IntCounterVec,
    queue_depth: IntGaugeVec,
    lag: HistogramVec,
}

impl EventMetrics {
    pub(super) fn new(r: &Registry) -> Result<Self, MetricsError> {
        let m = EventMetrics {
            received: counter(
                r,
                names::WEBHOOK_RECEIVED,
                "Webhook requests received, by body format (whatever became \
                 of them).",
                &["format"],
            )?,
            events: counter(
                r,
                names::WEBHOOK_EVENTS,
                "Events of authenticated, well-formed webhooks, by format and \
                 outcome: accepted (queued for at least one job) or ignored \
                 (no job covers the repository or selects the tag, or not a \
                 manifest push).",
                &["format", "outcome"],
            )?,
            rejected: counter(
                r,
                names::WEBHOOK_REJECTED,
                "Webhook requests refused, by format and reason: \
                 unauthorized (401), malformed (400), too_large (413), \
                 queue_full (429). None of them starts anything.",
                &["format", "reason"],
            )?,
            queue_depth: int_gauge(
                r,
                names::WEBHOOK_QUEUE_DEPTH,
                "Items (job, repository, tag or digest) waiting in the event \
                 queue for their debounce to end or the worker to take them.",
                &[],
            )?,
            lag: histogram(
                r,
                names::WEBHOOK_LAG,
                "Seconds from a webhook event's arrival to its item being \
                 synced to the target (push-to-mirrored lag).",
                &[],
                LAG_BUCKETS,
            )?,
        };
        for f in FORMATS {
            m.received.with_label_values(&[f]);
            for outcome in ["accepted", "ignored"] {
                m.events.with_label_values(&[f, outcome]);
            }
            for reason in Rejection::ALL {
                m.rejected.with_label_values(&[f, reason.as_str()]);
            }
        }
        m.queue_depth.with_label_values(&[] as &[&str]).set(0);
        m.lag.with_label_values(&[] as &[&str]);
        Ok(m)
    }

    /// A webhook request of `format` arrived.
    pub fn received(&self, format: &'static str) {
        self.received.with_label_values(&[format]).inc();
    }

    /// `accepted` events were queued and `ignored` ones concern no job.
    pub fn events(&self, format: &'static str, accepted: usize, ignored: usize) {
        let add = |outcome: &str, n: usize| {
            self.events
                .with_label_values(&[format, outcome])
                .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        };
        add("accepted", accepted);
        add("ignored", ignored);
    }

    /// A request was refused.
    pub fn rejected(&self, format: &'static str, reason: Rejection) {
        self.rejected
            .with_label_values(&[format, reason.as_str()])
            .inc();
    }

    /// Items now waiting in the queue.
    pub fn queue_depth(&self, depth: usize) {
        self.queue_depth
            .with_label_values(&[] as &[&str])
            .set(saturating_i64(depth as u64));
    }

    /// An event's item reached the target `seconds` after the event arrived.
    pub fn mirrored(&self, seconds: f64) {
        self.lag
            .with_label_values(&[] as &[&str])
            .observe(seconds.max(0.0));
    }
}
