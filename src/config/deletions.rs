//! A job's deletion policy (`[jobs.delete]`): whether it removes target
//! tags it wrote once the source no longer has (or selects) them, and the
//! bounds that keep a source outage from emptying the target.

use std::time::Duration;

use serde::Serialize;

use super::ser_duration;

/// `[jobs.delete]`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeletePolicy {
    /// Deletion sync is on (off by default: a mirror only adds).
    pub enabled: bool,
    /// How long a tag must be absent from the source, run after run,
    /// before its target copy is deleted.
    #[serde(serialize_with = "ser_duration")]
    pub grace: Duration,
    /// The most of a job's owned tags one run may delete (0 < f ≤ 1); a run
    /// with more due trips the guard and deletes nothing.
    pub max_fraction: f64,
}

impl DeletePolicy {
    /// Default `grace`: a day, longer than most registry outages.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
    /// Default `max_fraction`: a tenth of the job's tags per run.
    pub const DEFAULT_MAX_FRACTION: f64 = 0.1;
}

impl Default for DeletePolicy {
    fn default() -> Self {
        DeletePolicy {
            enabled: false,
            grace: Self::DEFAULT_GRACE,
            max_fraction: Self::DEFAULT_MAX_FRACTION,
        }
    }
}
