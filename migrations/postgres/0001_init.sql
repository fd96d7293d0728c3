-- Tollgate schema, version 1 (PostgreSQL). Keep in lockstep with migrations/sqlite.
-- Column names are the field names of the records in src/store/model.rs.

CREATE TABLE tenants (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    display_name TEXT,
    limits       JSONB NOT NULL,
    tags         JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX tenants_created_at_id ON tenants (created_at, id);

CREATE TABLE admins (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    tenant_id     UUID REFERENCES tenants (id),
    tags          JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX admins_created_at_id ON admins (created_at, id);
CREATE INDEX admins_tenant_id ON admins (tenant_id);

CREATE TABLE api_keys (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     BYTEA NOT NULL UNIQUE,
    routes       JSONB,
    tags         JSONB NOT NULL,
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX api_keys_created_at_id ON api_keys (created_at, id);
CREATE INDEX api_keys_tenant_created_at_id ON api_keys (tenant_id, created_at, id);

CREATE TABLE credentials (
    id                UUID PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    header_name       TEXT,
    header_value      BYTEA,
    param_name        TEXT,
    param_value       BYTEA,
    param_location    TEXT,
    allow_override    BOOLEAN NOT NULL,
    header_value_hint TEXT,
    param_value_hint  TEXT,
    tags              JSONB NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX credentials_created_at_id ON credentials (created_at, id);

CREATE TABLE services (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    provider      TEXT NOT NULL,
    upstream_url  TEXT,
    credential_id UUID REFERENCES credentials (id),
    options       JSONB NOT NULL,
    timeouts      JSONB NOT NULL,
    tenant_id     UUID REFERENCES tenants (id),
    tags          JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX services_created_at_id ON services (created_at, id);
CREATE INDEX services_credential_id ON services (credential_id);
CREATE INDEX services_tenant_id ON services (tenant_id);

CREATE TABLE routes (
    id                    UUID PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    paths                 JSONB NOT NULL,
    model_alias           TEXT UNIQUE,
    service_id            UUID NOT NULL REFERENCES services (id),
    route_type            TEXT NOT NULL,
    model                 JSONB NOT NULL,
    logging               JSONB NOT NULL,
    response_streaming    TEXT NOT NULL,
    model_name_header     BOOLEAN NOT NULL,
    max_request_body_size BIGINT NOT NULL,
    tenants               JSONB,
    policies              JSONB NOT NULL,
    tags                  JSONB NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX routes_created_at_id ON routes (created_at, id);
CREATE INDEX routes_service_id ON routes (service_id);

-- One row per path prefix: the primary key makes each path unique across routes.
CREATE TABLE route_paths (
    path     TEXT PRIMARY KEY,
    route_id UUID NOT NULL REFERENCES routes (id) ON DELETE CASCADE
);
CREATE INDEX route_paths_route_id ON route_paths (route_id);

CREATE TABLE system_secrets (
    name       TEXT PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- Version of the configuration the proxy uses; bumped by every configuration write.
CREATE TABLE config_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO config_state (id, version) VALUES (1, 0);
