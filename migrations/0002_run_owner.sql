-- Which process runs (or ran) each run, as "<host>:<pid>": a run left
-- unfinished by a process that is gone (kill -9, power loss) shows as
-- interrupted rather than running. NULL for runs recorded before.
ALTER TABLE runs ADD COLUMN owner TEXT;
