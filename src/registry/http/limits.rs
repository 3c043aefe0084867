//! Per-registry limits: a request rate (governor) and a cap on requests in
//! flight (semaphore). A permit is held only around one HTTP exchange up to
//! its response headers, never while waiting on anything else, so a caller
//! streaming a blob from one registry into another cannot deadlock them.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of one registry.
#[derive(Debug)]
pub struct Limits {
    rate: Option<DefaultDirectRateLimiter>,
    in_flight: Arc<Semaphore>,
}

impl Limits {
    /// Limits of `requests_per_second` (none when `None`) and
    /// `max_in_flight` concurrent requests (at least 1).
    pub fn new(requests_per_second: Option<NonZeroU32>, max_in_flight: usize) -> Limits {
        Limits {
            rate: requests_per_second.map(|r| RateLimiter::direct(Quota::per_second(r))),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Waits for the rate limiter, then for an in-flight slot. Returns the
    /// permit and the time spent waiting on the rate limiter.
    pub async fn acquire(&self) -> (Option<OwnedSemaphorePermit>, Duration) {
        let mut waited = Duration::ZERO;
        if let Some(rate) = &self.rate {
            let start = Instant::now();
            rate.until_ready().await;
            waited = start.elapsed();
        }
        // The semaphore is never closed, so `None` cannot happen in practice.
        let permit = self.in_flight.clone().acquire_owned().await.ok();
        (permit, waited)
    }

    /// Free in-flight slots (for tests and metrics).
    pub fn available(&self) -> usize {
        self.in_flight.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_flight_cap_holds_until_permit_dropped() {
        let l = Limits::new(None, 2);
        let (a, _) = l.acquire().await;
        let (_b, _) = l.acquire().await;
        assert_eq!(l.available(), 0);
        drop(a);
        assert_eq!(l.available(), 1);
    }

    #[tokio::test]
    async fn rate_limit_makes_callers_wait() {
        let l = Limits::new(NonZeroU32::new(20), 4);
        let mut total = Duration::ZERO;
        // Burst equals the rate; the 21st request must wait ~50 ms.
        for _ in 0..21 {
            let (_p, w) = l.acquire().await;
            total += w;
        }
        assert!(total >= Duration::from_millis(30), "{total:?}");
    }
}
