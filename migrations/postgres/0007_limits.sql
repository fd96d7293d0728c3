-- Limits and budgets on API keys and routes, version 7 (PostgreSQL). Keep in lockstep with
-- migrations/sqlite. Tenants carry `limits` since version 1; keys and routes gain the
-- same object (docs/behaviour.md, "Limits and budgets"), `{}` when unset.
ALTER TABLE api_keys ADD COLUMN limits JSONB NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE routes ADD COLUMN limits JSONB NOT NULL DEFAULT '{}'::jsonb;
