-- Policies (Kong's companion AI plugins), version 5 (PostgreSQL). Keep in lockstep with
-- migrations/sqlite. A policy is bound to exactly one route, service or tenant; deleting
-- a bound object is refused by the store (409 naming the policies), the foreign keys are the
-- last line of defence. At most one policy of a type per bound object (as Kong allows one
-- plugin instance per route, service or consumer).
CREATE TABLE policies (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL,
    config     JSONB NOT NULL,
    route_id   UUID REFERENCES routes (id),
    service_id UUID REFERENCES services (id),
    tenant_id  UUID REFERENCES tenants (id),
    tags       JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CHECK (num_nonnulls(route_id, service_id, tenant_id) = 1)
);
CREATE INDEX policies_created_at_id ON policies (created_at, id);
CREATE UNIQUE INDEX policies_route_type ON policies (route_id, type);
CREATE UNIQUE INDEX policies_service_type ON policies (service_id, type);
CREATE UNIQUE INDEX policies_tenant_type ON policies (tenant_id, type);
