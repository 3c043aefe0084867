//! Replica metrics (`ocimirror_replica*`): this process's part in the
//! shared runs on PostgreSQL. Labels stay bounded: the mirror job only, never
//! a replica id; Prometheus' `instance` label tells the replicas apart.

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use super::register::{counter, int_gauge, saturating_i64};
use super::{LABEL_JOB, MetricsError, names};

/// The replica metrics of one [`super::Metrics`] instance.
#[derive(Clone, Debug)]
pub struct ReplicaMetrics {
    claimed: IntCounterVec,
    held: IntGaugeVec,
    leads: IntGaugeVec,
    live: IntGaugeVec,
}

impl ReplicaMetrics {
    pub(super) fn new(r: &Registry) -> Result<Self, MetricsError> {
        let metrics = ReplicaMetrics {
            claimed: counter(
                r,
                names::REPLICA_ITEMS_CLAIMED,
                "Items of the job's shared run this replica claimed to copy.",
                &[LABEL_JOB],
            )?,
            held: int_gauge(
                r,
                names::REPLICA_ITEMS_HELD,
                "Items of the job's shared run this replica holds now.",
                &[LABEL_JOB],
            )?,
            leads: int_gauge(
                r,
                names::REPLICA_LEADS,
                "1 while this replica leads the job's shared run, else 0.",
                &[LABEL_JOB],
            )?,
            live: int_gauge(
                r,
                names::REPLICAS_LIVE,
                "Replicas whose heartbeat in the state database is younger than \
                 the lease TTL, as this replica last counted them (0 on sqlite \
                 and before the first shared run).",
                &[],
            )?,
        };
        // Exported from the start, so the dashboard has a series on sqlite too.
        metrics.live(0);
        Ok(metrics)
    }

    /// This replica joined `job`'s shared run, leading it or not (also
    /// called for every configured job, so its series start at 0).
    pub fn joined(&self, job: &str, leading: bool) {
        self.claimed.with_label_values(&[job]);
        self.held.with_label_values(&[job]).set(0);
        self.leading(job, leading);
    }

    /// This replica leads `job`'s shared run (or stopped leading it).
    pub fn leading(&self, job: &str, leading: bool) {
        self.leads.with_label_values(&[job]).set(i64::from(leading));
    }

    /// This replica claimed one item of `job`'s shared run.
    pub fn claimed(&self, job: &str) {
        self.claimed.with_label_values(&[job]).inc();
    }

    /// This replica holds `n` items of `job`'s shared run.
    pub fn held(&self, job: &str, n: usize) {
        self.held
            .with_label_values(&[job])
            .set(saturating_i64(u64::try_from(n).unwrap_or(u64::MAX)));
    }

    /// `n` replicas were alive in the state database.
    pub fn live(&self, n: usize) {
        self.live
            .with_label_values::<&str>(&[])
            .set(saturating_i64(u64::try_from(n).unwrap_or(u64::MAX)));
    }
}
