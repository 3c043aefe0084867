-- Every event accepted from a webhook, per job item, and what became of it:
-- an accepted event is either synced or recorded failed, never lost
-- silently. Times are Unix milliseconds (UTC). Portable SQL (sqlite and
-- PostgreSQL).
CREATE TABLE webhook_events (
    id          TEXT   NOT NULL PRIMARY KEY,
    source      TEXT   NOT NULL,
    job         TEXT   NOT NULL,
    -- `repo:tag`, `repo:sha256:…` or `repo:subject sha256:…`.
    item        TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    -- queued | synced | failed | ignored
    status      TEXT   NOT NULL,
    error       TEXT,
    finished_at BIGINT
);
CREATE INDEX webhook_events_by_job ON webhook_events (job, received_at);
CREATE INDEX webhook_events_by_status ON webhook_events (status);
