-- Usage history (spec §5), version 2 (SQLite). Keep in lockstep with migrations/postgres.
-- One row per minute × tenant × key × route × model; writers add to an existing row with
-- INSERT … ON CONFLICT … DO UPDATE. No foreign keys: usage outlives deleted tenants,
-- routes and keys. The latency histogram is one counter per bucket of
-- `LATENCY_BUCKETS_MS` (src/store/model.rs) plus the overflow bucket `lat_9`, so a write
-- adds to it in plain SQL.
-- The primary key leads with bucket_start, so it is also the index for time-range scans.
-- WITHOUT ROWID: rows are stored in primary-key order, which is how they are read.

CREATE TABLE usage_minutes (
    bucket_start      TEXT NOT NULL,
    tenant_id         BLOB NOT NULL,
    key_id            BLOB NOT NULL,
    route_id          BLOB NOT NULL,
    model             TEXT NOT NULL,
    requests          INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost              REAL NOT NULL,
    latency_ms_sum    REAL NOT NULL,
    lat_0             INTEGER NOT NULL,
    lat_1             INTEGER NOT NULL,
    lat_2             INTEGER NOT NULL,
    lat_3             INTEGER NOT NULL,
    lat_4             INTEGER NOT NULL,
    lat_5             INTEGER NOT NULL,
    lat_6             INTEGER NOT NULL,
    lat_7             INTEGER NOT NULL,
    lat_8             INTEGER NOT NULL,
    lat_9             INTEGER NOT NULL,
    PRIMARY KEY (bucket_start, tenant_id, key_id, route_id, model)
) WITHOUT ROWID;
CREATE INDEX usage_minutes_tenant_bucket ON usage_minutes (tenant_id, bucket_start);
