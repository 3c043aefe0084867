//! Retry policy: exponential backoff with jitter (backon), with the
//! server's `Retry-After` (seconds or HTTP-date, RFC 9110 §10.2.3) taking
//! precedence, capped by the policy's maximum delay.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

/// How often and how patiently to retry a failed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first (1 = never retry).
    pub max_attempts: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Upper bound for any delay, including a server's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The backoff delays between attempts (`max_attempts - 1` of them).
    pub fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay.max(self.min_delay))
            .with_max_times(self.max_attempts.saturating_sub(1))
            .with_jitter()
            .build()
    }

    /// The delay before the next attempt: `Retry-After` when the server
    /// sent one, else the backoff's, never over `max_delay`.
    pub fn next_delay(&self, retry_after: Option<Duration>, backoff: Duration) -> Duration {
        retry_after.unwrap_or(backoff).min(self.max_delay)
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date (a date in
/// the past means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = RetryPolicy {
            max_attempts: 3,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(5),
        };
        let b = Duration::from_millis(10);
        assert_eq!(p.next_delay(None, b), b);
        assert_eq!(
            p.next_delay(Some(Duration::from_secs(2)), b),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.next_delay(Some(Duration::from_secs(3600)), b),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn backoff_yields_attempts_minus_one_bounded_delays() {
        let p = RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(25),
        };
        let delays: Vec<Duration> = p.backoff().collect();
        assert_eq!(delays.len(), 3);
        // Jitter adds up to one more delay on top; never beyond twice the cap.
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(50)),
            "{delays:?}"
        );
        assert_eq!(
            RetryPolicy {
                max_attempts: 1,
                ..p
            }
            .backoff()
            .count(),
            0
        );
    }
}
