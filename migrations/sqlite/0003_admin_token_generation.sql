-- Admin token revocation (spec §3.1), version 3 (SQLite). Keep in lockstep with
-- migrations/postgres. Tokens of a stored admin carry this generation; bumping it (role,
-- tenant or password change, logout-all) makes every earlier token 401.
ALTER TABLE admins ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
