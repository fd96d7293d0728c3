-- Usage rows gain their source and a rejected count, version 6 (SQLite). Keep in lockstep
-- with migrations/postgres.
-- `source` is `proxy` for proxied requests, or the plugin name of the transformer policy
-- whose instruction calls the row counts (`ai-request-transformer`,
-- `ai-response-transformer`); it is part of the key, so policy usage is never added to
-- the proxy's row. `rejected` counts requests the gateway refused before the upstream
-- call (also counted in `requests` and `errors`). Existing rows are proxy usage with
-- nothing refused.
-- SQLite cannot change a primary key in place: the table is rebuilt (in the migration's
-- transaction) and its index recreated.

CREATE TABLE usage_minutes_v6 (
    bucket_start      TEXT NOT NULL,
    tenant_id         BLOB NOT NULL,
    key_id            BLOB NOT NULL,
    route_id          BLOB NOT NULL,
    model             TEXT NOT NULL,
    source            TEXT NOT NULL DEFAULT 'proxy',
    requests          INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    rejected          INTEGER NOT NULL DEFAULT 0,
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
    PRIMARY KEY (bucket_start, tenant_id, key_id, route_id, model, source)
) WITHOUT ROWID;

INSERT INTO usage_minutes_v6 (
    bucket_start, tenant_id, key_id, route_id, model, source, requests, errors, rejected,
    prompt_tokens, completion_tokens, cost, latency_ms_sum,
    lat_0, lat_1, lat_2, lat_3, lat_4, lat_5, lat_6, lat_7, lat_8, lat_9)
SELECT
    bucket_start, tenant_id, key_id, route_id, model, 'proxy', requests, errors, 0,
    prompt_tokens, completion_tokens, cost, latency_ms_sum,
    lat_0, lat_1, lat_2, lat_3, lat_4, lat_5, lat_6, lat_7, lat_8, lat_9
FROM usage_minutes;

DROP TABLE usage_minutes;
ALTER TABLE usage_minutes_v6 RENAME TO usage_minutes;
CREATE INDEX usage_minutes_tenant_bucket ON usage_minutes (tenant_id, bucket_start);
