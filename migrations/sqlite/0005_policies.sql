-- Policies (Kong's companion AI plugins), version 5 (SQLite). Keep in lockstep with
-- migrations/postgres. A policy is bound to exactly one route, service or tenant; deleting
-- a bound object is refused by the store (409 naming the policies), the foreign keys are the
-- last line of defence. At most one policy of a type per bound object (as Kong allows one
-- plugin instance per route, service or consumer).
CREATE TABLE policies (
    id         BLOB NOT NULL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    enabled    INTEGER NOT NULL,
    config     TEXT NOT NULL,
    route_id   BLOB REFERENCES routes (id),
    service_id BLOB REFERENCES services (id),
    tenant_id  BLOB REFERENCES tenants (id),
    tags       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CHECK ((route_id IS NOT NULL) + (service_id IS NOT NULL) + (tenant_id IS NOT NULL) = 1)
);
CREATE INDEX policies_created_at_id ON policies (created_at, id);
CREATE UNIQUE INDEX policies_route_type ON policies (route_id, type);
CREATE UNIQUE INDEX policies_service_type ON policies (service_id, type);
CREATE UNIQUE INDEX policies_tenant_type ON policies (tenant_id, type);
