-- The state database is a cache of what is on the targets, never the truth:
-- every row may be lost or stale, and callers fall back to asking the
-- target. Times are Unix milliseconds (UTC).

-- One row per job run (and per skipped tick).
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job         TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    -- NULL while running (or when the process died mid-run).
    finished_at INTEGER,
    -- NULL while running; then success | partial | failed | skipped.
    result      TEXT,
    -- RunCounts as JSON, so new counters need no migration.
    counts      TEXT    NOT NULL DEFAULT '{}',
    -- A short summary of what went wrong, if anything.
    error       TEXT
);
CREATE INDEX runs_by_job ON runs (job, started_at DESC, id DESC);

-- What was last synced for each source tag of each job.
CREATE TABLE tag_state (
    job                   TEXT    NOT NULL,
    source_repo           TEXT    NOT NULL,
    tag                   TEXT    NOT NULL,
    source_digest         TEXT    NOT NULL,
    -- Identifies the set of referrers copied with it (NULL = not tracked).
    referrers_fingerprint TEXT,
    target_repo           TEXT    NOT NULL,
    updated_at            INTEGER NOT NULL,
    PRIMARY KEY (job, source_repo, tag)
);

-- Items (tags, digests, repositories) that failed, with per-item backoff.
CREATE TABLE failures (
    job             TEXT    NOT NULL,
    item            TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT    NOT NULL,
    first_failed_at INTEGER NOT NULL,
    last_failed_at  INTEGER NOT NULL,
    next_retry_at   INTEGER NOT NULL,
    PRIMARY KEY (job, item)
);
CREATE INDEX failures_due ON failures (job, next_retry_at);
