//! Request counters, per operation and status class, readable by tests and
//! metrics. Every HTTP exchange (including pings, token requests, redirect
//! hops and retries) counts exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::registry::Operation;

/// Counters of one operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperationStats {
    /// HTTP requests sent.
    pub requests: u64,
    /// Responses by status class: index 0 = 1xx ... 4 = 5xx.
    pub by_class: [u64; 5],
    /// Requests that got no response (connection, TLS, timeout).
    pub transport_errors: u64,
}

impl OperationStats {
    /// Responses with a status in `class` (1..=5, e.g. 2 for 2xx).
    pub fn class(&self, class: u16) -> u64 {
        match class {
            1..=5 => self.by_class[usize::from(class - 1)],
            _ => 0,
        }
    }
}

/// A snapshot of a registry adapter's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Per operation.
    pub operations: BTreeMap<Operation, OperationStats>,
    /// Retries performed (attempts after the first).
    pub retries: u64,
    /// Time spent sleeping between retries.
    pub retry_wait: Duration,
    /// Time spent waiting on the request-rate limiter.
    pub rate_limit_wait: Duration,
}

impl RequestStats {
    /// HTTP requests sent for `op`.
    pub fn requests(&self, op: Operation) -> u64 {
        self.operations.get(&op).map_or(0, |s| s.requests)
    }

    /// All HTTP requests sent.
    pub fn total_requests(&self) -> u64 {
        self.operations.values().map(|s| s.requests).sum()
    }

    pub(crate) fn record_status(&mut self, op: Operation, status: u16) {
        let s = self.operations.entry(op).or_default();
        s.requests += 1;
        if let Some(slot) = s
            .by_class
            .get_mut(usize::from((status / 100).clamp(1, 5) - 1))
        {
            *slot += 1;
        }
    }

    pub(crate) fn record_transport_error(&mut self, op: Operation) {
        let s = self.operations.entry(op).or_default();
        s.requests += 1;
        s.transport_errors += 1;
    }
}

/// Docker Hub's pull allowance from `ratelimit-limit` / `ratelimit-remaining`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// Pulls allowed per window.
    pub limit: u64,
    /// Pulls left in the current window.
    pub remaining: u64,
    /// The window, when announced (`w=<secs>`).
    pub window: Option<Duration>,
}

/// Parses `<n>;w=<secs>` (the window part is optional).
pub fn parse_ratelimit_value(v: &str) -> Option<(u64, Option<Duration>)> {
    let mut parts = v.split(';');
    let n = parts.next()?.trim().parse().ok()?;
    let window = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == "w")
            .then(|| v.trim().parse().ok().map(Duration::from_secs))
            .flatten()
    });
    Some((n, window))
}

/// The status from both headers, when both parse.
pub fn parse_ratelimit(limit: Option<&str>, remaining: Option<&str>) -> Option<RateLimitStatus> {
    let (limit, window) = parse_ratelimit_value(limit?)?;
    let (remaining, w2) = parse_ratelimit_value(remaining?)?;
    Some(RateLimitStatus {
        limit,
        remaining,
        window: window.or(w2),
    })
}

/// Receives every request's outcome as it happens (metrics hook). The
/// registry layer stays free of any metrics library.
pub trait RequestObserver: Send + Sync {
    /// One HTTP exchange ended after `elapsed`; `status` is `None` when no
    /// response arrived. `waited` is the time spent on the rate limiter.
    fn request(
        &self,
        registry: &str,
        op: Operation,
        status: Option<u16>,
        elapsed: Duration,
        waited: Duration,
    );
    /// A request is about to be retried.
    fn retry(&self, registry: &str, op: Operation);
    /// Docker Hub announced its pull limit.
    fn docker_hub(&self, registry: &str, status: &RateLimitStatus);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratelimit_headers() {
        assert_eq!(
            parse_ratelimit(Some("100;w=21600"), Some("20;w=21600")),
            Some(RateLimitStatus {
                limit: 100,
                remaining: 20,
                window: Some(Duration::from_secs(21600))
            })
        );
        assert_eq!(
            parse_ratelimit(Some("5"), Some(" 0 ")).map(|s| (s.limit, s.remaining, s.window)),
            Some((5, 0, None))
        );
        assert_eq!(parse_ratelimit(Some("x;w=1"), Some("1")), None);
        assert_eq!(parse_ratelimit(None, Some("1")), None);
    }

    #[test]
    fn counters_by_class() {
        let mut s = RequestStats::default();
        s.record_status(Operation::BlobGet, 200);
        s.record_status(Operation::BlobGet, 503);
        s.record_transport_error(Operation::BlobGet);
        s.record_status(Operation::Ping, 401);
        let b = &s.operations[&Operation::BlobGet];
        assert_eq!(
            (b.requests, b.class(2), b.class(5), b.transport_errors),
            (3, 1, 1, 1)
        );
        assert_eq!(s.requests(Operation::Ping), 1);
        assert_eq!(s.total_requests(), 4);
    }
}
