//! Work sharing between replicas on PostgreSQL (`migrations/postgres/0006`):
//! the shared run of a job, led by one replica through a lease with a
//! fencing token, and its items, claimed in batches (`FOR UPDATE SKIP
//! LOCKED`) under per-item leases with their own tokens.
//!
//! Everything here is PostgreSQL-only: callers check
//! [`Store::backend`] first (sqlite has one process per job run).

use chrono::{DateTime, Utc};
use sqlx::Row;
use tracing::instrument;

use super::{Result, Store, from_ms, ms};

/// This replica's part in the shared run of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRun {
    /// The shared run.
    pub id: i64,
    /// `Some(token)` while this replica leads the run: its writes to the run
    /// carry the token, and fail once another replica has taken the lead.
    pub leader_token: Option<i64>,
}

/// An item this replica claimed, with the token the claim got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedItem {
    /// The item's name (`repo:tag` or `repo@digest`).
    pub item: String,
    /// Fencing token of the claim.
    pub token: i64,
}

/// What one replica does, for `status` and the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// `<host>:<pid>`.
    pub id: String,
    /// Last heartbeat.
    pub seen_at: DateTime<Utc>,
    /// Jobs whose open shared run it leads.
    pub leading: Vec<String>,
    /// Items of open shared runs it holds now.
    pub items_held: u64,
    /// Items of open shared runs it has finished.
    pub items_done: u64,
}

fn until(now: DateTime<Utc>, ttl: std::time::Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    ms(now).saturating_add(ttl)
}

impl Store {
    /// Records that `replica` is alive.
    #[instrument(skip_all)]
    pub async fn replica_heartbeat(&self, replica: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO replicas (id, started_at, seen_at) VALUES ($1, $2, $2)
             ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(replica)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Joins the open shared run of `job`, or starts one (leading it). An
    /// open run whose leader's lease expired is taken over; one that its
    /// leader left with every item done is finished first and a new one
    /// started.
    #[instrument(skip_all, fields(job = job))]
    pub async fn join_shared_run(
        &self,
        job: &str,
        replica: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<SharedRun> {
        self.replica_heartbeat(replica, now).await?;
        // Bounded: each pass either returns or finishes a dead leader's
        // completed run (which another replica may do at the same time).
        for _ in 0..3 {
            let created = sqlx::query(
                "INSERT INTO shared_runs (job, started_at, leader, token, expires_at)
                 VALUES ($1, $2, $3, 1, $4)
                 ON CONFLICT (job) WHERE finished_at IS NULL DO NOTHING
                 RETURNING id, token",
            )
            .bind(job)
            .bind(ms(now))
            .bind(replica)
            .bind(until(now, ttl))
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = created {
                return Ok(SharedRun {
                    id: row.try_get(0)?,
                    leader_token: Some(row.try_get(1)?),
                });
            }
            let open =
                sqlx::query("SELECT id FROM shared_runs WHERE job = $1 AND finished_at IS NULL")
                    .bind(job)
                    .fetch_optional(&self.pool)
                    .await?;
            let Some(open) = open else {
                continue; // finished meanwhile: start the next one
            };
            let id: i64 = open.try_get(0)?;
            let leader_token = self.take_over_shared_run(id, replica, now, ttl).await?;
            if let Some(token) = leader_token
                && self.finish_shared_run(id, token, now).await?
            {
                continue; // the dead leader's run was complete
            }
            return Ok(SharedRun { id, leader_token });
        }
        Err(super::StoreError::NotFound {
            what: format!("stable shared run of job {job} (runs finish as they start)"),
        })
    }

    /// Takes the lead of shared run `id` when its leader's lease expired;
    /// returns the new fencing token.
    #[instrument(skip_all, fields(run = id))]
    pub async fn take_over_shared_run(
        &self,
        id: i64,
        replica: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "UPDATE shared_runs SET leader = $2, token = shared_runs.token + 1, expires_at = $4
             WHERE id = $1 AND finished_at IS NULL AND expires_at < $3
             RETURNING token",
        )
        .bind(id)
        .bind(replica)
        .bind(ms(now))
        .bind(until(now, ttl))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Extends the leader's lease of run `id`; false when `token` is no
    /// longer the run's (another replica took the lead).
    #[instrument(skip_all, fields(run = id))]
    pub async fn renew_shared_run(
        &self,
        id: i64,
        token: i64,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE shared_runs SET expires_at = $3
             WHERE id = $1 AND token = $2 AND finished_at IS NULL",
        )
        .bind(id)
        .bind(token)
        .bind(until(now, ttl))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Finishes run `id` for its leader (`token`) once it has items and
    /// every one is done. Returns whether it did.
    #[instrument(skip_all, fields(run = id))]
    pub async fn finish_shared_run(&self, id: i64, token: i64, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE shared_runs SET finished_at = $3
             WHERE id = $1 AND token = $2 AND finished_at IS NULL
               AND EXISTS (SELECT 1 FROM run_items WHERE run_id = $1)
               AND NOT EXISTS (SELECT 1 FROM run_items WHERE run_id = $1 AND done_at IS NULL)",
        )
        .bind(id)
        .bind(token)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Adds the items a replica listed to run `id` (each once, whoever
    /// lists it first), in one transaction so others see all or none.
    #[instrument(skip_all, fields(run = id, items = items.len()))]
    pub async fn add_run_items(&self, id: i64, items: &[String]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for item in items {
            sqlx::query(
                "INSERT INTO run_items (run_id, item) VALUES ($1, $2)
                 ON CONFLICT (run_id, item) DO NOTHING",
            )
            .bind(id)
            .bind(item)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Claims up to `limit` items of run `id` that nobody holds (or whose
    /// holder's lease expired), skipping rows other replicas are claiming.
    #[instrument(skip_all, fields(run = id))]
    pub async fn claim_run_items(
        &self,
        id: i64,
        replica: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedItem>> {
        let rows = sqlx::query(
            // A CTE runs the locking SELECT once (a subquery in IN may be
            // run again by the planner, locking other rows).
            "WITH picked AS (
                 SELECT item FROM run_items
                 WHERE run_id = $1 AND done_at IS NULL AND (holder IS NULL OR lease_until < $3)
                 ORDER BY item LIMIT $5
                 FOR UPDATE SKIP LOCKED)
             UPDATE run_items SET holder = $2, token = run_items.token + 1, lease_until = $4
             FROM picked WHERE run_items.run_id = $1 AND run_items.item = picked.item
             RETURNING run_items.item, run_items.token",
        )
        .bind(id)
        .bind(replica)
        .bind(ms(now))
        .bind(until(now, ttl))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ClaimedItem {
                    item: r.try_get(0)?,
                    token: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// Extends the leases of `claims`; returns those no longer held (their
    /// lease expired and another replica claimed them).
    #[instrument(skip_all, fields(run = id))]
    pub async fn renew_run_items(
        &self,
        id: i64,
        claims: &[ClaimedItem],
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<Vec<ClaimedItem>> {
        let mut lost = Vec::new();
        for c in claims {
            let done = sqlx::query(
                // A claim finished meanwhile is still ours (same token).
                "UPDATE run_items SET lease_until = $4
                 WHERE run_id = $1 AND item = $2 AND token = $3",
            )
            .bind(id)
            .bind(&c.item)
            .bind(c.token)
            .bind(until(now, ttl))
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 0 {
                lost.push(c.clone());
            }
        }
        Ok(lost)
    }

    /// Marks a claimed item done; false when the claim was lost (the token
    /// moved on), so the replica knows another one owns the item now.
    #[instrument(skip_all, fields(run = id))]
    pub async fn finish_run_item(
        &self,
        id: i64,
        claim: &ClaimedItem,
        replica: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE run_items SET done_at = $4, done_by = $5
             WHERE run_id = $1 AND item = $2 AND token = $3 AND done_at IS NULL",
        )
        .bind(id)
        .bind(&claim.item)
        .bind(claim.token)
        .bind(ms(now))
        .bind(replica)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives claims back (on shutdown), so others take them now rather
    /// than after the lease.
    #[instrument(skip_all, fields(run = id))]
    pub async fn release_run_items(&self, id: i64, claims: &[ClaimedItem]) -> Result<()> {
        for c in claims {
            sqlx::query(
                "UPDATE run_items SET holder = NULL, lease_until = 0
                 WHERE run_id = $1 AND item = $2 AND token = $3 AND done_at IS NULL",
            )
            .bind(id)
            .bind(&c.item)
            .bind(c.token)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Items of run `id` not done yet.
    #[instrument(skip_all, fields(run = id))]
    pub async fn open_run_items(&self, id: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM run_items WHERE run_id = $1 AND done_at IS NULL",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every replica seen since `since`, with what it leads and holds in
    /// the open shared runs.
    #[instrument(skip_all)]
    pub async fn replicas(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReplicaStatus>> {
        let rows = sqlx::query(
            "SELECT r.id, r.seen_at,
                (SELECT count(*) FROM run_items i JOIN shared_runs s ON s.id = i.run_id
                  WHERE s.finished_at IS NULL AND i.holder = r.id AND i.done_at IS NULL
                    AND i.lease_until >= $2),
                (SELECT count(*) FROM run_items i JOIN shared_runs s ON s.id = i.run_id
                  WHERE s.finished_at IS NULL AND i.done_by = r.id)
             FROM replicas r WHERE r.seen_at >= $1 ORDER BY r.id",
        )
        .bind(ms(since))
        .bind(ms(now))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get(0)?;
            let leading: Vec<String> = sqlx::query_scalar(
                "SELECT job FROM shared_runs
                 WHERE leader = $1 AND finished_at IS NULL AND expires_at >= $2 ORDER BY job",
            )
            .bind(&id)
            .bind(ms(now))
            .fetch_all(&self.pool)
            .await?;
            let held: i64 = row.try_get(2)?;
            let done: i64 = row.try_get(3)?;
            out.push(ReplicaStatus {
                seen_at: from_ms(row.try_get(1)?)?,
                id,
                leading,
                items_held: u64::try_from(held).unwrap_or(0),
                items_done: u64::try_from(done).unwrap_or(0),
            });
        }
        Ok(out)
    }
}
