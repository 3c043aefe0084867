-- Which process runs (or ran) each run, as "<host>:<pid>" (see ../0002).
ALTER TABLE runs ADD COLUMN owner TEXT;
