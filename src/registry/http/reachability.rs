//! Fail fast on a registry that cannot be reached at all. A refused
//! connection, an unknown host or a connect timeout is not the hiccup a
//! retry a moment later cures (a wrong port took minutes of silent retries,
//! per request and per image). The first such failure holds the registry
//! unreachable for [`HOLD`]: every request to it fails at once with the
//! cause, is said once at WARN, and the next attempt after the hold tries
//! the network again (the daemon's next run, or an image's backoff).

use std::time::{Duration, Instant};

use tracing::warn;

use super::{HttpRegistry, lock};
use crate::registry::ErrorKind;

/// How long requests to an unreachable registry fail without trying.
pub(crate) const HOLD: Duration = Duration::from_secs(30);

/// Why and since when a registry is held unreachable.
#[derive(Debug)]
pub(crate) struct Down {
    since: Instant,
    cause: String,
}

impl HttpRegistry {
    /// The error to answer at once while the registry is held unreachable.
    pub(super) fn held_unreachable(&self) -> Option<ErrorKind> {
        let mut down = lock(&self.unreachable);
        match &*down {
            Some(d) if d.since.elapsed() < HOLD => Some(ErrorKind::Unreachable(format!(
                "{} (not tried again for {} s)",
                d.cause,
                HOLD.saturating_sub(d.since.elapsed()).as_secs().max(1)
            ))),
            Some(_) => {
                *down = None;
                None
            }
            None => None,
        }
    }

    /// Holds the registry unreachable, saying so once per hold.
    pub(super) fn mark_unreachable(&self, cause: &str) {
        let mut down = lock(&self.unreachable);
        if down.is_none() {
            warn!(
                registry = %self.name, error = %cause, hold_s = HOLD.as_secs(),
                "Registry unreachable: its requests fail at once for a while instead of being retried one by one."
            );
        }
        *down = Some(Down {
            since: Instant::now(),
            cause: cause.to_string(),
        });
    }
}
