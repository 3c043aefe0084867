//! Webhook events in the state database: each accepted event is written
//! `queued` when accepted and `synced`, `failed` or `ignored` when the
//! worker is done with it; events a stopped daemon left queued are marked
//! failed at the next start (the scheduled runs remain the safety net).

use chrono::{DateTime, Utc};
use sqlx::Row;
use tracing::instrument;

use super::{Result, Store, from_ms, ms};

/// An accepted event, as the worker carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedEvent {
    /// Unique id.
    pub id: String,
    /// The webhook source's name.
    pub source: String,
    /// The job it was mapped to.
    pub job: String,
    /// The item (`repo:tag`, `repo:sha256:…`, `repo:subject sha256:…`).
    pub item: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// What became of an accepted event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// Waiting in the queue.
    Queued,
    /// Synced to the target.
    Synced,
    /// The sync failed (the error names what).
    Failed(String),
    /// Nothing to do after all (e.g. a digest the job does not select).
    Ignored(String),
}

impl EventOutcome {
    fn status(&self) -> &'static str {
        match self {
            EventOutcome::Queued => "queued",
            EventOutcome::Synced => "synced",
            EventOutcome::Failed(_) => "failed",
            EventOutcome::Ignored(_) => "ignored",
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            EventOutcome::Failed(e) | EventOutcome::Ignored(e) => Some(e),
            EventOutcome::Queued | EventOutcome::Synced => None,
        }
    }
}

/// One row of `webhook_events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// The event.
    pub event: AcceptedEvent,
    /// `queued`, `synced`, `failed` or `ignored`.
    pub status: String,
    /// Why it failed or was ignored.
    pub error: Option<String>,
    /// When the worker was done with it.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Records `event` with `outcome` (`finished_at` = `now` unless queued).
    /// Idempotent per id: a later outcome replaces an earlier one, and a
    /// `queued` never replaces a final outcome (the worker may finish
    /// before the receiver's write lands).
    #[instrument(skip_all)]
    pub async fn record_event(
        &self,
        event: &AcceptedEvent,
        outcome: &EventOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let queued = matches!(outcome, EventOutcome::Queued);
        let sql = if queued {
            "INSERT INTO webhook_events
               (id, source, job, item, received_at, status, error, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO NOTHING"
        } else {
            "INSERT INTO webhook_events
               (id, source, job, item, received_at, status, error, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET
               status = excluded.status, error = excluded.error,
               finished_at = excluded.finished_at"
        };
        sqlx::query(sql)
            .bind(&event.id)
            .bind(&event.source)
            .bind(&event.job)
            .bind(&event.item)
            .bind(ms(event.received_at))
            .bind(outcome.status())
            .bind(outcome.error())
            .bind((!queued).then(|| ms(now)))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks every event still `queued` failed with `reason` (a daemon
    /// stopped before syncing them). Returns how many.
    #[instrument(skip_all)]
    pub async fn fail_queued_events(&self, reason: &str, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE webhook_events SET status = 'failed', error = $1, finished_at = $2
             WHERE status = 'queued'",
        )
        .bind(reason)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The latest `limit` events of `job`, newest first.
    #[instrument(skip_all)]
    pub async fn recent_events(&self, job: &str, limit: u32) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT id, source, job, item, received_at, status, error, finished_at
             FROM webhook_events WHERE job = $1
             ORDER BY received_at DESC, id DESC LIMIT $2",
        )
        .bind(job)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRecord {
                    event: AcceptedEvent {
                        id: r.try_get("id")?,
                        source: r.try_get("source")?,
                        job: r.try_get("job")?,
                        item: r.try_get("item")?,
                        received_at: from_ms(r.try_get("received_at")?)?,
                    },
                    status: r.try_get("status")?,
                    error: r.try_get("error")?,
                    finished_at: r
                        .try_get::<Option<i64>, _>("finished_at")?
                        .map(from_ms)
                        .transpose()?,
                })
            })
            .collect()
    }

    /// The tags of `source_repo` that `job` last synced at `digest`: the
    /// items a referrer of `digest` belongs to.
    #[instrument(skip_all)]
    pub async fn tags_at_digest(
        &self,
        job: &str,
        source_repo: &str,
        digest: &str,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT tag FROM tag_state
             WHERE job = $1 AND source_repo = $2 AND source_digest = $3 ORDER BY tag",
        )
        .bind(job)
        .bind(source_repo)
        .bind(digest)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("tag").map_err(Into::into))
            .collect()
    }
}
