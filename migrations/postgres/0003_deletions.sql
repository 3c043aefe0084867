-- Tags ocimirror itself wrote on a target, per job: the only tags deletion
-- sync may ever remove. A tag created on the target by anyone else has no
-- row here and is never touched. Times are Unix milliseconds (UTC).
CREATE TABLE owned_tags (
    job          TEXT   NOT NULL,
    -- The target repository as a reference without tag (`host/repo`,
    -- `oci:<dir>`).
    target_repo  TEXT   NOT NULL,
    tag          TEXT   NOT NULL,
    -- The digest written: a tag that points elsewhere now was moved by
    -- someone else and is no longer ours.
    digest       TEXT   NOT NULL,
    written_at   BIGINT NOT NULL,
    -- Since when the source has not listed or selected the tag, run after
    -- run; NULL while it does. Deletion waits for the grace period.
    absent_since BIGINT,
    PRIMARY KEY (job, target_repo, tag)
);

-- Backup tags a job made before moving a tag it wrote ([jobs.overwrite]
-- mode "backup"), so that only the newest `keep` per tag are kept. Backup
-- tags are not in owned_tags: deletion sync never treats them as absent
-- from the source.
CREATE TABLE tag_backups (
    job         TEXT   NOT NULL,
    target_repo TEXT   NOT NULL,
    -- The tag that moved.
    tag         TEXT   NOT NULL,
    backup_tag  TEXT   NOT NULL,
    -- The digest the tag held before the move.
    digest      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (job, target_repo, backup_tag)
);
