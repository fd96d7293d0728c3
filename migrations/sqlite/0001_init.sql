-- Tollgate schema, version 1 (SQLite). Keep in lockstep with migrations/postgres.
-- SQLite has no UUID/JSONB/TIMESTAMPTZ: ids are 16-byte BLOBs (sqlx encodes `Uuid` so), JSON is
-- TEXT, timestamps are RFC 3339 TEXT (UTC, so they sort as text), booleans are INTEGER.
-- Column names are the field names of the records in src/store/model.rs.

CREATE TABLE tenants (
    id           BLOB NOT NULL PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    display_name TEXT,
    limits       TEXT NOT NULL,
    tags         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX tenants_created_at_id ON tenants (created_at, id);

CREATE TABLE admins (
    id            BLOB NOT NULL PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    tenant_id     BLOB REFERENCES tenants (id),
    tags          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX admins_created_at_id ON admins (created_at, id);
CREATE INDEX admins_tenant_id ON admins (tenant_id);

CREATE TABLE api_keys (
    id           BLOB NOT NULL PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     BLOB NOT NULL UNIQUE,
    routes       TEXT,
    tags         TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX api_keys_created_at_id ON api_keys (created_at, id);
CREATE INDEX api_keys_tenant_created_at_id ON api_keys (tenant_id, created_at, id);

CREATE TABLE credentials (
    id                BLOB NOT NULL PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    header_name       TEXT,
    header_value      BLOB,
    param_name        TEXT,
    param_value       BLOB,
    param_location    TEXT,
    allow_override    INTEGER NOT NULL,
    header_value_hint TEXT,
    param_value_hint  TEXT,
    tags              TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX credentials_created_at_id ON credentials (created_at, id);

CREATE TABLE services (
    id            BLOB NOT NULL PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    provider      TEXT NOT NULL,
    upstream_url  TEXT,
    credential_id BLOB REFERENCES credentials (id),
    options       TEXT NOT NULL,
    timeouts      TEXT NOT NULL,
    tenant_id     BLOB REFERENCES tenants (id),
    tags          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX services_created_at_id ON services (created_at, id);
CREATE INDEX services_credential_id ON services (credential_id);
CREATE INDEX services_tenant_id ON services (tenant_id);

CREATE TABLE routes (
    id                    BLOB NOT NULL PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    paths                 TEXT NOT NULL,
    model_alias           TEXT UNIQUE,
    service_id            BLOB NOT NULL REFERENCES services (id),
    route_type            TEXT NOT NULL,
    model                 TEXT NOT NULL,
    logging               TEXT NOT NULL,
    response_streaming    TEXT NOT NULL,
    model_name_header     INTEGER NOT NULL,
    max_request_body_size INTEGER NOT NULL,
    tenants               TEXT,
    policies              TEXT NOT NULL,
    tags                  TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);
CREATE INDEX routes_created_at_id ON routes (created_at, id);
CREATE INDEX routes_service_id ON routes (service_id);

-- One row per path prefix: the primary key makes each path unique across routes.
CREATE TABLE route_paths (
    path     TEXT NOT NULL PRIMARY KEY,
    route_id BLOB NOT NULL REFERENCES routes (id) ON DELETE CASCADE
);
CREATE INDEX route_paths_route_id ON route_paths (route_id);

CREATE TABLE system_secrets (
    name       TEXT NOT NULL PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at TEXT NOT NULL
);

-- Version of the configuration the proxy uses; bumped by every configuration write.
CREATE TABLE config_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO config_state (id, version) VALUES (1, 0);
