//! The state database: sqlite through sqlx, with intent-named methods.
//!
//! It is a cache of what is on the targets, never the truth. Every answer
//! may be stale or missing (the file can be deleted, or another tool can
//! change the target), so callers use it to skip work they can verify
//! cheaply (a HEAD on the target), never to decide that content exists
//! without checking. Losing the database costs requests, not correctness.
//!
//! Several processes may share one database (`ocimirror serve` and an
//! `ocimirror once` at the same time): the journal is WAL, every connection
//! waits up to [`BUSY_TIMEOUT`] for a lock, and each write is one statement
//! or one `BEGIN IMMEDIATE` transaction, so writers queue instead of failing.
//!
//! Queries are checked at run time (`sqlx::query` + `bind`), so building
//! needs no database; every query is exercised by the tests below.
//!
//! May import: `oci`.

mod deletions;
mod events;
mod models;
mod policy;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tracing::instrument;

use crate::oci::Digest;

pub use deletions::{OwnedTag, TagBackup};
pub use events::{AcceptedEvent, EventOutcome, EventRecord};
pub use models::{
    Backoff, FailureRecord, JobStatus, RunCounts, RunId, RunOutcome, RunOwner, RunRecord,
    RunResult, TagState,
};
pub use policy::SignatureVerdict;

/// How long a connection waits for another writer's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Embedded migrations from `migrations/`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Errors of the state database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open state database {path}: {cause}")]
    Open {
        /// The database path.
        path: PathBuf,
        /// Why.
        cause: sqlx::Error,
    },
    /// The database's directory could not be created.
    #[error("cannot create the directory of state database {path}: {cause}")]
    CreateDir {
        /// The database path.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// Applying the embedded migrations failed.
    #[error("cannot migrate state database {path}: {cause}")]
    Migrate {
        /// The database path.
        path: PathBuf,
        /// Why.
        cause: sqlx::migrate::MigrateError,
    },
    /// A row that must exist does not (e.g. finishing an unknown run).
    #[error("state database has no {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A stored value does not parse (the file was edited or is damaged).
    #[error("state database holds an invalid {column}: {value:?}")]
    Corrupt {
        /// Table and column.
        column: &'static str,
        /// The value found.
        value: String,
    },
    /// Any other database error.
    #[error("state database query failed: {0}")]
    Query(sqlx::Error),
}

// By hand rather than `#[from]`, which would also make the error its
// `source` and print the cause twice in an error chain.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Query(e)
    }
}

/// Applies the embedded migrations. Two processes creating the same new
/// database race here (sqlx's sqlite migrator takes no lock, so both may try
/// the first `CREATE TABLE`); each migration commits atomically with its
/// record, so a retry sees the winner's work as applied and goes on.
async fn migrate(pool: &SqlitePool) -> std::result::Result<(), sqlx::migrate::MigrateError> {
    let mut attempt = 0;
    loop {
        match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 3 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "Migration raced another process; retrying.");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects, retrying while another connection holds the database locked.
/// Switching a new database to WAL needs an exclusive lock that sqlite's
/// busy timeout does not wait for, so two processes creating the database at
/// once would otherwise see "database is locked" here.
async fn connect(options: SqliteConnectOptions) -> std::result::Result<SqlitePool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(10);
    loop {
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await;
        match pool {
            Err(e) if is_busy(&e) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "State database is locked; retrying.");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

/// True for SQLITE_BUSY and SQLITE_LOCKED, whatever the extended code.
fn is_busy(e: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The state database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    backoff: Backoff,
}

impl Store {
    /// Opens (creating it and its directory when missing) the database at
    /// `path` and applies the embedded migrations.
    #[instrument(skip_all, fields(path = %path.display()))]
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|cause| StoreError::CreateDir {
                    path: path.to_path_buf(),
                    cause,
                })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; a
            // power loss may drop the last writes, which a cache can afford.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = connect(options).await.map_err(|cause| StoreError::Open {
            path: path.to_path_buf(),
            cause,
        })?;
        migrate(&pool).await.map_err(|cause| StoreError::Migrate {
            path: path.to_path_buf(),
            cause,
        })?;
        Ok(Store {
            pool,
            backoff: Backoff::default(),
        })
    }

    /// The same store with another failure backoff policy.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The failure backoff policy.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// True when the database answers (for `/readyz`).
    #[instrument(skip_all)]
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A write transaction that takes the write lock at once, so it waits
    /// (up to the busy timeout) instead of failing on upgrade.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    // -- runs ---------------------------------------------------------------

    /// Records the start of a run of `job`.
    #[instrument(skip_all, fields(job = job))]
    pub async fn start_run(&self, job: &str, now: DateTime<Utc>) -> Result<RunId> {
        let id: i64 = sqlx::query(
            "INSERT INTO runs (job, started_at, owner) VALUES (?1, ?2, ?3) RETURNING id",
        )
        .bind(job)
        .bind(ms(now))
        .bind(RunOwner::current().to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(RunId(id))
    }

    /// Records how run `id` ended.
    #[instrument(skip_all, fields(run = id.0))]
    pub async fn finish_run(
        &self,
        id: RunId,
        now: DateTime<Utc>,
        outcome: &RunOutcome,
    ) -> Result<()> {
        let counts = serde_json::to_string(&outcome.counts).unwrap_or_else(|_| "{}".into());
        let done = sqlx::query(
            "UPDATE runs SET finished_at = ?2, result = ?3, counts = ?4, error = ?5 WHERE id = ?1",
        )
        .bind(id.0)
        .bind(ms(now))
        .bind(outcome.result.as_str())
        .bind(counts)
        .bind(outcome.error.as_deref())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: format!("run {id}"),
            });
        }
        Ok(())
    }

    /// Records a tick of `job` that was skipped because a run was still
    /// going.
    #[instrument(skip_all, fields(job = job))]
    pub async fn record_skipped(
        &self,
        job: &str,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<RunId> {
        let id: i64 = sqlx::query(
            "INSERT INTO runs (job, started_at, finished_at, result, error)
             VALUES (?1, ?2, ?2, 'skipped', ?3) RETURNING id",
        )
        .bind(job)
        .bind(ms(now))
        .bind(reason)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(RunId(id))
    }

    /// The latest `limit` runs, newest first, of `job` (or of every job).
    #[instrument(skip_all)]
    pub async fn last_runs(&self, job: Option<&str>, limit: u32) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT id, job, started_at, finished_at, result, counts, error, owner FROM runs
             WHERE ?1 IS NULL OR job = ?1
             ORDER BY started_at DESC, id DESC LIMIT ?2",
        )
        .bind(job)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    // -- tag state ----------------------------------------------------------

    /// What was last synced for `tag` of `source_repo` in `job`.
    #[instrument(skip_all)]
    pub async fn tag_state(
        &self,
        job: &str,
        source_repo: &str,
        tag: &str,
    ) -> Result<Option<TagState>> {
        let row = sqlx::query(
            "SELECT job, source_repo, tag, source_digest, referrers_fingerprint, target_repo, updated_at
             FROM tag_state WHERE job = ?1 AND source_repo = ?2 AND tag = ?3",
        )
        .bind(job)
        .bind(source_repo)
        .bind(tag)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(tag_state_from_row).transpose()
    }

    /// Records that `state.tag` was synced (replacing the previous record).
    #[instrument(skip_all)]
    pub async fn record_synced(&self, state: &TagState) -> Result<()> {
        sqlx::query(
            "INSERT INTO tag_state
               (job, source_repo, tag, source_digest, referrers_fingerprint, target_repo, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (job, source_repo, tag) DO UPDATE SET
               source_digest = excluded.source_digest,
               referrers_fingerprint = excluded.referrers_fingerprint,
               target_repo = excluded.target_repo,
               updated_at = excluded.updated_at",
        )
        .bind(&state.job)
        .bind(&state.source_repo)
        .bind(&state.tag)
        .bind(state.source_digest.to_string())
        .bind(state.referrers_fingerprint.as_deref())
        .bind(&state.target_repo)
        .bind(ms(state.updated_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets tags of `job` in `source_repo` that are not in `keep` (tags
    /// deleted at the source). Returns how many were removed.
    #[instrument(skip_all)]
    pub async fn forget_tags_except(
        &self,
        job: &str,
        source_repo: &str,
        keep: &[String],
    ) -> Result<u64> {
        let keep = serde_json::to_string(keep).unwrap_or_else(|_| "[]".into());
        let done = sqlx::query(
            "DELETE FROM tag_state WHERE job = ?1 AND source_repo = ?2
             AND tag NOT IN (SELECT value FROM json_each(?3))",
        )
        .bind(job)
        .bind(source_repo)
        .bind(keep)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    // -- failures -----------------------------------------------------------

    /// Records a failure of `item` in `job` and schedules its retry with
    /// exponential backoff (per item, capped). Returns the updated record.
    #[instrument(skip_all)]
    pub async fn record_failure(
        &self,
        job: &str,
        item: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<FailureRecord> {
        let mut tx = self.write_tx().await?;
        let attempts: i64 = sqlx::query(
            "INSERT INTO failures (job, item, attempts, last_error, first_failed_at, last_failed_at, next_retry_at)
             VALUES (?1, ?2, 1, ?3, ?4, ?4, ?4)
             ON CONFLICT (job, item) DO UPDATE SET
               attempts = attempts + 1, last_error = excluded.last_error,
               last_failed_at = excluded.last_failed_at
             RETURNING attempts",
        )
        .bind(job)
        .bind(item)
        .bind(error)
        .bind(ms(now))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        let delay = chrono::Duration::from_std(self.backoff.delay(attempts))
            .unwrap_or(chrono::Duration::MAX);
        let next = now
            .checked_add_signed(delay)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let row = sqlx::query(
            "UPDATE failures SET next_retry_at = ?3 WHERE job = ?1 AND item = ?2
             RETURNING job, item, attempts, last_error, first_failed_at, last_failed_at, next_retry_at",
        )
        .bind(job)
        .bind(item)
        .bind(ms(next))
        .fetch_one(&mut *tx)
        .await?;
        let record = failure_from_row(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    /// Clears the failure record of `item` (it succeeded). Returns whether
    /// there was one.
    #[instrument(skip_all)]
    pub async fn clear_failure(&self, job: &str, item: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM failures WHERE job = ?1 AND item = ?2")
            .bind(job)
            .bind(item)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The failure record of `item`, if it is failing.
    #[instrument(skip_all)]
    pub async fn failure(&self, job: &str, item: &str) -> Result<Option<FailureRecord>> {
        let row = sqlx::query(
            "SELECT job, item, attempts, last_error, first_failed_at, last_failed_at, next_retry_at
             FROM failures WHERE job = ?1 AND item = ?2",
        )
        .bind(job)
        .bind(item)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(failure_from_row).transpose()
    }

    /// Every failing item of `job`, earliest retry first.
    #[instrument(skip_all)]
    pub async fn failures_for_job(&self, job: &str) -> Result<Vec<FailureRecord>> {
        let rows = sqlx::query(
            "SELECT job, item, attempts, last_error, first_failed_at, last_failed_at, next_retry_at
             FROM failures WHERE job = ?1 ORDER BY next_retry_at, item",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(failure_from_row).collect()
    }

    // -- status -------------------------------------------------------------

    /// The summary `ocimirror status` shows for `job`.
    #[instrument(skip_all)]
    pub async fn job_status(&self, job: &str) -> Result<JobStatus> {
        let last_run = self.last_runs(Some(job), 1).await?.into_iter().next();
        let last_success = sqlx::query(
            "SELECT id, job, started_at, finished_at, result, counts, error, owner FROM runs
             WHERE job = ?1 AND result = 'success' ORDER BY started_at DESC, id DESC LIMIT 1",
        )
        .bind(job)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(run_from_row)
        .transpose()?;
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM tag_state WHERE job = ?1),
                    (SELECT count(*) FROM failures WHERE job = ?1),
                    (SELECT min(next_retry_at) FROM failures WHERE job = ?1)",
        )
        .bind(job)
        .fetch_one(&self.pool)
        .await?;
        let tags: i64 = row.try_get(0)?;
        let failing: i64 = row.try_get(1)?;
        let next: Option<i64> = row.try_get(2)?;
        Ok(JobStatus {
            job: job.to_string(),
            last_run,
            last_success,
            tags_synced: u64::try_from(tags).unwrap_or(0),
            failing_items: u64::try_from(failing).unwrap_or(0),
            next_retry_at: next.map(from_ms).transpose()?,
        })
    }
}

/// Unix milliseconds.
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(v)
        .single()
        .ok_or_else(|| StoreError::Corrupt {
            column: "timestamp",
            value: v.to_string(),
        })
}

fn digest(column: &'static str, v: String) -> Result<Digest> {
    Digest::from_str(&v).map_err(|_| StoreError::Corrupt { column, value: v })
}

fn run_from_row(row: &SqliteRow) -> Result<RunRecord> {
    let result: Option<String> = row.try_get("result")?;
    let result = result
        .map(|r| {
            r.parse::<RunResult>().map_err(|_| StoreError::Corrupt {
                column: "runs.result",
                value: r,
            })
        })
        .transpose()?;
    let counts: String = row.try_get("counts")?;
    let counts = serde_json::from_str(&counts).map_err(|_| StoreError::Corrupt {
        column: "runs.counts",
        value: counts,
    })?;
    let finished: Option<i64> = row.try_get("finished_at")?;
    Ok(RunRecord {
        id: RunId(row.try_get("id")?),
        job: row.try_get("job")?,
        started_at: from_ms(row.try_get("started_at")?)?,
        finished_at: finished.map(from_ms).transpose()?,
        result,
        counts,
        error: row.try_get("error")?,
        owner: row
            .try_get::<Option<String>, _>("owner")?
            .and_then(|o| o.parse().ok()),
    })
}

fn tag_state_from_row(row: &SqliteRow) -> Result<TagState> {
    Ok(TagState {
        job: row.try_get("job")?,
        source_repo: row.try_get("source_repo")?,
        tag: row.try_get("tag")?,
        source_digest: digest("tag_state.source_digest", row.try_get("source_digest")?)?,
        referrers_fingerprint: row.try_get("referrers_fingerprint")?,
        target_repo: row.try_get("target_repo")?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
    })
}

fn failure_from_row(row: &SqliteRow) -> Result<FailureRecord> {
    let attempts: i64 = row.try_get("attempts")?;
    Ok(FailureRecord {
        job: row.try_get("job")?,
        item: row.try_get("item")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: row.try_get("last_error")?,
        first_failed_at: from_ms(row.try_get("first_failed_at")?)?,
        last_failed_at: from_ms(row.try_get("last_failed_at")?)?,
        next_retry_at: from_ms(row.try_get("next_retry_at")?)?,
    })
}

#[cfg(test)]
mod tests;
