-- Referrers ocimirror itself published on a target, per job: the only
-- referrers withdrawn-referrer sync may ever remove (from the fallback index,
-- and by digest where the job deletes). A referrer pushed to the target by
-- anyone else has no row here and is never touched. Times are Unix
-- milliseconds (UTC).
CREATE TABLE owned_referrers (
    job          TEXT    NOT NULL,
    -- The target repository as a reference without tag.
    target_repo  TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    referrer     TEXT    NOT NULL,
    -- 1 when it was published in the subject's fallback index (tag schema
    -- or OCI layout), 0 when the target's referrers API lists it.
    in_fallback  BIGINT  NOT NULL,
    written_at   BIGINT  NOT NULL,
    -- Since when the source's listing of the subject has been without it,
    -- run after run; NULL while it lists it.
    absent_since BIGINT,
    PRIMARY KEY (job, target_repo, subject, referrer)
);
