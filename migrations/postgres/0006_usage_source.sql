-- Usage rows gain their source and a rejected count, version 6 (PostgreSQL). Keep in
-- lockstep with migrations/sqlite.
-- `source` is `proxy` for proxied requests, or the plugin name of the transformer policy
-- whose instruction calls the row counts (`ai-request-transformer`,
-- `ai-response-transformer`); it is part of the key, so policy usage is never added to
-- the proxy's row. `rejected` counts requests the gateway refused before the upstream
-- call (also counted in `requests` and `errors`). Existing rows are proxy usage with
-- nothing refused.

ALTER TABLE usage_minutes
    ADD COLUMN source TEXT NOT NULL DEFAULT 'proxy',
    ADD COLUMN rejected BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_minutes DROP CONSTRAINT usage_minutes_pkey;
ALTER TABLE usage_minutes
    ADD PRIMARY KEY (bucket_start, tenant_id, key_id, route_id, model, source);
