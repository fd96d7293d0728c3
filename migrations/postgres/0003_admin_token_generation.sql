-- Admin token revocation (spec §3.1), version 3 (PostgreSQL). Keep in lockstep with
-- migrations/sqlite. Tokens of a stored admin carry this generation; bumping it (role,
-- tenant or password change, logout-all) makes every earlier token 401.
ALTER TABLE admins ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
