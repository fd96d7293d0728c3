-- The usage spool's progress, version 4 (SQLite). Keep in lockstep with migrations/postgres.
-- One row per spool segment file (docs/architecture.md, "The usage spool"): how many bytes
-- of it are already in usage_minutes, and whether it is finished (every event in it, and
-- the interrupted streams it left, are counted). The row is updated in the same
-- transaction as the usage it covers, and only from the offset the writer read it at, so
-- a segment is counted exactly once, on this database or another node's.
CREATE TABLE usage_spool (
    segment       TEXT PRIMARY KEY,
    applied_bytes INTEGER NOT NULL,
    complete      INTEGER NOT NULL,
    updated_at    TEXT NOT NULL
);
