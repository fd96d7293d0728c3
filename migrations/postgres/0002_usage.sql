-- Usage history (spec §5), version 2 (PostgreSQL). Keep in lockstep with migrations/sqlite.
-- One row per minute × tenant × key × route × model; writers add to an existing row with
-- INSERT … ON CONFLICT … DO UPDATE. No foreign keys: usage outlives deleted tenants,
-- routes and keys. The latency histogram is one counter per bucket of
-- `LATENCY_BUCKETS_MS` (src/store/model.rs) plus the overflow bucket `lat_9`, so a write
-- adds to it in plain SQL.
-- The primary key leads with bucket_start, so it is also the index for time-range scans.

CREATE TABLE usage_minutes (
    bucket_start      TIMESTAMPTZ NOT NULL,
    tenant_id         UUID NOT NULL,
    key_id            UUID NOT NULL,
    route_id          UUID NOT NULL,
    model             TEXT NOT NULL,
    requests          BIGINT NOT NULL,
    errors            BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost              DOUBLE PRECISION NOT NULL,
    latency_ms_sum    DOUBLE PRECISION NOT NULL,
    lat_0             BIGINT NOT NULL,
    lat_1             BIGINT NOT NULL,
    lat_2             BIGINT NOT NULL,
    lat_3             BIGINT NOT NULL,
    lat_4             BIGINT NOT NULL,
    lat_5             BIGINT NOT NULL,
    lat_6             BIGINT NOT NULL,
    lat_7             BIGINT NOT NULL,
    lat_8             BIGINT NOT NULL,
    lat_9             BIGINT NOT NULL,
    PRIMARY KEY (bucket_start, tenant_id, key_id, route_id, model)
);
CREATE INDEX usage_minutes_tenant_bucket ON usage_minutes (tenant_id, bucket_start);
