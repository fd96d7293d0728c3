-- Limits and budgets on API keys and routes, version 7 (SQLite). Keep in lockstep with
-- migrations/postgres. Tenants carry `limits` since version 1; keys and routes gain the
-- same object (docs/behaviour.md, "Limits and budgets"), `{}` when unset.
ALTER TABLE api_keys ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE routes ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
