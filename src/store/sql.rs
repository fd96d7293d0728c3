//! What `SqliteStore` and `PgStore` share: the SQL text (sqlx accepts PostgreSQL's `$n`
//! placeholders on SQLite too), the error messages, and `impl_store!`, which generates the
//! `Store` impl for one backend. Each backend stays typed on its own pool; only the few
//! dialect differences (how a write/read transaction begins, the migrator) live in
//! `sqlite.rs` / `postgres.rs`.
//!
//! A configuration write that checks before it writes starts by bumping
//! `config_state.version`. On PostgreSQL that row lock serialises configuration writers, so
//! the checks that follow (duplicate names, missing references, remaining referrers) see
//! every committed change; on SQLite the `BEGIN IMMEDIATE` write lock does the same. A
//! failed check returns early and `in_tx!` rolls the bump back. The two
//! single-statement writes (`revoke_api_key`, `insert_system_secret`) bump only when they
//! changed a row. Admin writes bump too (the snapshot holds the admins' token generations); usage writes never bump. The unique indexes and foreign keys stay as the
//! last line of defence (`map_sqlx` turns their violations into `Conflict`).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use super::StoreError;

// --- configuration version ---
pub(super) const BUMP_VERSION: &str = "UPDATE config_state SET version = version + 1 WHERE id = 1";
pub(super) const CONFIG_VERSION: &str = "SELECT version FROM config_state WHERE id = 1";

// --- admins ---
pub(super) const ADMIN_COUNT: &str = "SELECT COUNT(*) FROM admins";
pub(super) const ADMIN_LIST: &str =
    "SELECT * FROM admins ORDER BY created_at, id LIMIT $1 OFFSET $2";
pub(super) const ADMIN_BY_ID: &str = "SELECT * FROM admins WHERE id = $1";
pub(super) const ADMIN_BY_NAME: &str = "SELECT * FROM admins WHERE name = $1";
pub(super) const ADMIN_OWNER_OF_NAME: &str = "SELECT id, name FROM admins WHERE name = $1";
pub(super) const ADMIN_NAME: &str = "SELECT name FROM admins WHERE id = $1";
pub(super) const ADMIN_INSERT: &str = "INSERT INTO admins \
    (id, name, password_hash, role, tenant_id, tags, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
// A new role, tenant or password hash (every submitted password gets a fresh salt) bumps
// the token generation, compared against the row as it is at the write, so a concurrent
// logout-all is never undone by a stale record.
pub(super) const ADMIN_UPDATE: &str = "UPDATE admins SET name = $2, password_hash = $3, \
    role = $4, tenant_id = $5, tags = $6, created_at = $7, updated_at = $8, \
    token_generation = token_generation + CASE WHEN password_hash <> $3 OR role <> $4 \
    OR tenant_id IS DISTINCT FROM $5 THEN 1 ELSE 0 END WHERE id = $1";
pub(super) const ADMIN_DELETE: &str = "DELETE FROM admins WHERE id = $1";
pub(super) const ADMIN_BUMP_GENERATION: &str =
    "UPDATE admins SET token_generation = token_generation + 1 WHERE id = $1";
pub(super) const ADMIN_TOKENS_ALL: &str = "SELECT id, name, role, tenant_id, token_generation \
    FROM admins ORDER BY created_at, id";
pub(super) const ADMIN_NAMES_BY_TENANT: &str =
    "SELECT name FROM admins WHERE tenant_id = $1 ORDER BY created_at, id";

// --- tenants ---
pub(super) const TENANT_ALL: &str = "SELECT * FROM tenants ORDER BY created_at, id";
pub(super) const TENANT_LIST: &str =
    "SELECT * FROM tenants ORDER BY created_at, id LIMIT $1 OFFSET $2";
pub(super) const TENANT_BY_ID: &str = "SELECT * FROM tenants WHERE id = $1";
pub(super) const TENANT_BY_NAME: &str = "SELECT * FROM tenants WHERE name = $1";
pub(super) const TENANT_OWNER_OF_NAME: &str = "SELECT id, name FROM tenants WHERE name = $1";
pub(super) const TENANT_NAME: &str = "SELECT name FROM tenants WHERE id = $1";
pub(super) const TENANT_INSERT: &str = "INSERT INTO tenants \
    (id, name, display_name, limits, tags, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(super) const TENANT_UPDATE: &str = "UPDATE tenants SET name = $2, display_name = $3, \
    limits = $4, tags = $5, created_at = $6, updated_at = $7 WHERE id = $1";
pub(super) const TENANT_DELETE: &str = "DELETE FROM tenants WHERE id = $1";

// --- API keys ---
pub(super) const API_KEY_ALL: &str = "SELECT * FROM api_keys ORDER BY created_at, id";
pub(super) const API_KEY_LIST: &str = "SELECT * FROM api_keys WHERE tenant_id = $1 \
    ORDER BY created_at, id LIMIT $2 OFFSET $3";
pub(super) const API_KEY_GET: &str = "SELECT * FROM api_keys WHERE tenant_id = $1 AND id = $2";
pub(super) const API_KEY_OWNER_OF_NAME: &str =
    "SELECT id, name FROM api_keys WHERE tenant_id = $1 AND name = $2";
pub(super) const API_KEY_OWNER_OF_HASH: &str = "SELECT id, name FROM api_keys WHERE key_hash = $1";
pub(super) const API_KEY_INSERT: &str = "INSERT INTO api_keys \
    (id, tenant_id, name, prefix, key_hash, routes, tags, expires_at, last_used_at, \
    revoked_at, created_at, updated_at, limits) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
pub(super) const API_KEY_SET_LIMITS: &str = "UPDATE api_keys SET limits = $3, updated_at = $4 \
    WHERE tenant_id = $1 AND id = $2";
pub(super) const API_KEY_REVOKE: &str = "UPDATE api_keys SET revoked_at = $3 \
    WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL";
/// Never moves `last_used_at` back (another node may have written a later time).
pub(super) const API_KEY_TOUCH: &str = "UPDATE api_keys SET last_used_at = $2 \
    WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";
pub(super) const API_KEY_DELETE_BY_TENANT: &str = "DELETE FROM api_keys WHERE tenant_id = $1";
/// `(tenant name, key name, routes)` of every key restricted to a list of routes.
pub(super) const API_KEY_ROUTE_LISTS: &str = "SELECT t.name, k.name, k.routes \
    FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
    WHERE k.routes IS NOT NULL ORDER BY t.name, k.name";

// --- credentials ---
pub(super) const CREDENTIAL_ALL: &str = "SELECT * FROM credentials ORDER BY created_at, id";
pub(super) const CREDENTIAL_LIST: &str =
    "SELECT * FROM credentials ORDER BY created_at, id LIMIT $1 OFFSET $2";
pub(super) const CREDENTIAL_BY_ID: &str = "SELECT * FROM credentials WHERE id = $1";
pub(super) const CREDENTIAL_BY_NAME: &str = "SELECT * FROM credentials WHERE name = $1";
pub(super) const CREDENTIAL_OWNER_OF_NAME: &str =
    "SELECT id, name FROM credentials WHERE name = $1";
pub(super) const CREDENTIAL_NAME: &str = "SELECT name FROM credentials WHERE id = $1";
pub(super) const CREDENTIAL_INSERT: &str = "INSERT INTO credentials \
    (id, name, header_name, header_value, param_name, param_value, param_location, \
    allow_override, header_value_hint, param_value_hint, tags, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
pub(super) const CREDENTIAL_UPDATE: &str = "UPDATE credentials SET name = $2, \
    header_name = $3, header_value = $4, param_name = $5, param_value = $6, \
    param_location = $7, allow_override = $8, header_value_hint = $9, \
    param_value_hint = $10, tags = $11, created_at = $12, updated_at = $13 WHERE id = $1";
pub(super) const CREDENTIAL_DELETE: &str = "DELETE FROM credentials WHERE id = $1";
pub(super) const CREDENTIAL_SECRETS: &str =
    "SELECT id, header_value, param_value FROM credentials ORDER BY created_at, id";
pub(super) const CREDENTIAL_SET_SECRETS: &str =
    "UPDATE credentials SET header_value = $2, param_value = $3 WHERE id = $1";

// --- services ---
pub(super) const SERVICE_ALL: &str = "SELECT * FROM services ORDER BY created_at, id";
pub(super) const SERVICE_LIST: &str =
    "SELECT * FROM services ORDER BY created_at, id LIMIT $1 OFFSET $2";
pub(super) const SERVICE_BY_ID: &str = "SELECT * FROM services WHERE id = $1";
pub(super) const SERVICE_BY_NAME: &str = "SELECT * FROM services WHERE name = $1";
pub(super) const SERVICE_OWNER_OF_NAME: &str = "SELECT id, name FROM services WHERE name = $1";
pub(super) const SERVICE_NAME: &str = "SELECT name FROM services WHERE id = $1";
pub(super) const SERVICE_INSERT: &str = "INSERT INTO services \
    (id, name, provider, upstream_url, credential_id, options, timeouts, tenant_id, tags, \
    created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub(super) const SERVICE_UPDATE: &str = "UPDATE services SET name = $2, provider = $3, \
    upstream_url = $4, credential_id = $5, options = $6, timeouts = $7, tenant_id = $8, \
    tags = $9, created_at = $10, updated_at = $11 WHERE id = $1";
pub(super) const SERVICE_DELETE: &str = "DELETE FROM services WHERE id = $1";
pub(super) const SERVICE_NAMES_BY_CREDENTIAL: &str =
    "SELECT name FROM services WHERE credential_id = $1 ORDER BY created_at, id";
pub(super) const SERVICE_NAMES_BY_TENANT: &str =
    "SELECT name FROM services WHERE tenant_id = $1 ORDER BY created_at, id";

// --- routes ---
pub(super) const ROUTE_ALL: &str = "SELECT * FROM routes ORDER BY created_at, id";
pub(super) const ROUTE_LIST: &str =
    "SELECT * FROM routes ORDER BY created_at, id LIMIT $1 OFFSET $2";
pub(super) const ROUTE_BY_ID: &str = "SELECT * FROM routes WHERE id = $1";
pub(super) const ROUTE_BY_NAME: &str = "SELECT * FROM routes WHERE name = $1";
pub(super) const ROUTE_OWNER_OF_NAME: &str = "SELECT id, name FROM routes WHERE name = $1";
pub(super) const ROUTE_OWNER_OF_ALIAS: &str = "SELECT id, name FROM routes WHERE model_alias = $1";
pub(super) const ROUTE_OWNER_OF_PATH: &str = "SELECT r.id, r.name \
    FROM route_paths p JOIN routes r ON r.id = p.route_id WHERE p.path = $1";
pub(super) const ROUTE_NAME: &str = "SELECT name FROM routes WHERE id = $1";
pub(super) const ROUTE_INSERT: &str = "INSERT INTO routes \
    (id, name, paths, model_alias, service_id, route_type, model, logging, \
    response_streaming, model_name_header, max_request_body_size, tenants, policies, tags, \
    created_at, updated_at, limits) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";
pub(super) const ROUTE_UPDATE: &str = "UPDATE routes SET name = $2, paths = $3, \
    model_alias = $4, service_id = $5, route_type = $6, model = $7, logging = $8, \
    response_streaming = $9, model_name_header = $10, max_request_body_size = $11, \
    tenants = $12, policies = $13, tags = $14, created_at = $15, updated_at = $16, \
    limits = $17 WHERE id = $1";
pub(super) const ROUTE_DELETE: &str = "DELETE FROM routes WHERE id = $1";
pub(super) const ROUTE_NAMES_BY_SERVICE: &str =
    "SELECT name FROM routes WHERE service_id = $1 ORDER BY created_at, id";
/// `(route name, tenants)` of every route restricted to a list of tenants.
pub(super) const ROUTE_TENANT_LISTS: &str =
    "SELECT name, tenants FROM routes WHERE tenants IS NOT NULL ORDER BY created_at, id";
pub(super) const ROUTE_PATH_INSERT: &str =
    "INSERT INTO route_paths (path, route_id) VALUES ($1, $2)";
pub(super) const ROUTE_PATH_DELETE: &str = "DELETE FROM route_paths WHERE route_id = $1";

// --- policies ---
pub(super) const POLICY_ALL: &str = "SELECT * FROM policies ORDER BY created_at, id";
pub(super) const POLICY_LIST: &str =
    "SELECT * FROM policies ORDER BY created_at, id LIMIT $1 OFFSET $2";
pub(super) const POLICY_BY_ID: &str = "SELECT * FROM policies WHERE id = $1";
pub(super) const POLICY_BY_NAME: &str = "SELECT * FROM policies WHERE name = $1";
pub(super) const POLICY_OWNER_OF_NAME: &str = "SELECT id, name FROM policies WHERE name = $1";
pub(super) const POLICY_NAME: &str = "SELECT name FROM policies WHERE id = $1";
/// The policy of type `$1` already bound to the same route (`$2`), service (`$3`) or tenant
/// (`$4`); NULLs compare false, so only the set binding counts.
pub(super) const POLICY_OWNER_OF_BINDING: &str = "SELECT id, name FROM policies \
    WHERE type = $1 AND (route_id = $2 OR service_id = $3 OR tenant_id = $4)";
pub(super) const POLICY_INSERT: &str = "INSERT INTO policies \
    (id, name, type, enabled, config, route_id, service_id, tenant_id, tags, created_at, \
    updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub(super) const POLICY_UPDATE: &str = "UPDATE policies SET name = $2, type = $3, \
    enabled = $4, config = $5, route_id = $6, service_id = $7, tenant_id = $8, tags = $9, \
    created_at = $10, updated_at = $11 WHERE id = $1";
pub(super) const POLICY_DELETE: &str = "DELETE FROM policies WHERE id = $1";
pub(super) const POLICY_NAMES_BY_ROUTE: &str =
    "SELECT name FROM policies WHERE route_id = $1 ORDER BY created_at, id";
pub(super) const POLICY_NAMES_BY_SERVICE: &str =
    "SELECT name FROM policies WHERE service_id = $1 ORDER BY created_at, id";
pub(super) const POLICY_NAMES_BY_TENANT: &str =
    "SELECT name FROM policies WHERE tenant_id = $1 ORDER BY created_at, id";
/// `(policy name, config)` of every transformer: their `llm.service` names a service by id.
pub(super) const POLICY_TRANSFORMER_CONFIGS: &str = "SELECT name, config FROM policies \
    WHERE type IN ('ai-request-transformer', 'ai-response-transformer') \
    ORDER BY created_at, id";

/// The service id a stored transformer config calls (`llm.service`), if any.
pub(super) fn policy_llm_service(config: &serde_json::Value) -> Option<Uuid> {
    config
        .pointer("/llm/service")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

// --- system secrets ---
pub(super) const SECRET_ALL: &str = "SELECT * FROM system_secrets ORDER BY created_at, name";
pub(super) const SECRET_GET: &str = "SELECT * FROM system_secrets WHERE name = $1";
pub(super) const SECRET_INSERT: &str = "INSERT INTO system_secrets (name, value, created_at) \
    VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
pub(super) const SECRET_VALUES: &str =
    "SELECT name, value FROM system_secrets ORDER BY created_at, name";
pub(super) const SECRET_SET_VALUE: &str = "UPDATE system_secrets SET value = $2 WHERE name = $1";

// --- usage ---

// The statements below name one `lat_N` column per histogram bucket.
const _: () = assert!(
    super::LATENCY_BUCKETS == 10,
    "update 0002_usage.sql and USAGE_*"
);

/// The stored columns in `UsageRow` field order (a macro, so `concat!` can use it).
macro_rules! usage_columns {
    () => {
        "bucket_start, tenant_id, key_id, route_id, model, source, requests, errors, \
        rejected, prompt_tokens, completion_tokens, cost, latency_ms_sum, \
        lat_0, lat_1, lat_2, lat_3, lat_4, lat_5, lat_6, lat_7, lat_8, lat_9"
    };
}
/// The index of `lat_0` in `usage_columns!()`.
pub(super) const USAGE_HISTOGRAM_AT: usize = 13;

/// Creates a segment's progress row at 0 unless it exists (docs/architecture.md, "The usage
/// spool").
pub(super) const SPOOL_MARK_INIT: &str = "INSERT INTO usage_spool \
    (segment, applied_bytes, complete, updated_at) VALUES ($1, 0, $2, $3) \
    ON CONFLICT (segment) DO NOTHING";
/// Moves a segment's progress on only from where the writer read it: 0 rows when another
/// writer got there first (the transaction is then rolled back, nothing counted twice).
pub(super) const SPOOL_MARK_ADVANCE: &str = "UPDATE usage_spool \
    SET applied_bytes = $2, complete = $3, updated_at = $4 \
    WHERE segment = $1 AND applied_bytes = $5 AND complete = $6";
pub(super) const SPOOL_MARK_GET: &str =
    "SELECT applied_bytes, complete FROM usage_spool WHERE segment = $1";
/// Adds one row's counts to the stored row of its minute × tenant × key × route × model ×
/// source (the primary key since 0006_usage_source.sql).
pub(super) const USAGE_ADD: &str = concat!(
    "INSERT INTO usage_minutes (",
    usage_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
    $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) \
    ON CONFLICT (bucket_start, tenant_id, key_id, route_id, model, source) DO UPDATE SET \
    requests = usage_minutes.requests + excluded.requests, \
    errors = usage_minutes.errors + excluded.errors, \
    rejected = usage_minutes.rejected + excluded.rejected, \
    prompt_tokens = usage_minutes.prompt_tokens + excluded.prompt_tokens, \
    completion_tokens = usage_minutes.completion_tokens + excluded.completion_tokens, \
    cost = usage_minutes.cost + excluded.cost, \
    latency_ms_sum = usage_minutes.latency_ms_sum + excluded.latency_ms_sum, \
    lat_0 = usage_minutes.lat_0 + excluded.lat_0, \
    lat_1 = usage_minutes.lat_1 + excluded.lat_1, \
    lat_2 = usage_minutes.lat_2 + excluded.lat_2, \
    lat_3 = usage_minutes.lat_3 + excluded.lat_3, \
    lat_4 = usage_minutes.lat_4 + excluded.lat_4, \
    lat_5 = usage_minutes.lat_5 + excluded.lat_5, \
    lat_6 = usage_minutes.lat_6 + excluded.lat_6, \
    lat_7 = usage_minutes.lat_7 + excluded.lat_7, \
    lat_8 = usage_minutes.lat_8 + excluded.lat_8, \
    lat_9 = usage_minutes.lat_9 + excluded.lat_9"
);

/// Rows with `$1 <= bucket_start < $2`, in bucket order.
pub(super) const USAGE_RANGE: &str = concat!(
    "SELECT ",
    usage_columns!(),
    " FROM usage_minutes WHERE bucket_start >= $1 AND bucket_start < $2 \
    ORDER BY bucket_start, tenant_id, key_id, route_id, model, source"
);
/// The same, for one tenant (`$3`).
pub(super) const USAGE_RANGE_TENANT: &str = concat!(
    "SELECT ",
    usage_columns!(),
    " FROM usage_minutes WHERE tenant_id = $3 AND bucket_start >= $1 AND bucket_start < $2 \
    ORDER BY bucket_start, tenant_id, key_id, route_id, model, source"
);

/// The minute a usage row belongs to: rows of one minute must carry the same key on both
/// backends (SQLite compares the RFC 3339 text).
pub(super) fn usage_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t)
}

// --- messages ---

/// `Conflict` when `owner` (the row holding a unique value) is another row than `id`.
pub(super) fn check_free(
    owner: Option<(Uuid, String)>,
    id: Uuid,
    message: impl FnOnce(&str) -> String,
) -> Result<(), StoreError> {
    match owner {
        Some((owner_id, owner_name)) if owner_id != id => {
            Err(StoreError::Conflict(message(&owner_name)))
        }
        _ => Ok(()),
    }
}

pub(super) fn missing(field: &str, kind: &str, id: Uuid) -> StoreError {
    StoreError::InvalidReference {
        field: field.to_owned(),
        message: format!("{kind} {id} does not exist"),
    }
}

/// `Conflict` naming every referrer, e.g. "credential 'k' is used by services: a, b",
/// or `Ok` when nothing refers to the object.
pub(super) fn check_unreferenced(
    what: &str,
    name: &str,
    referrers: &[(&str, Vec<String>)],
) -> Result<(), StoreError> {
    let groups: Vec<String> = referrers
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(kind, names)| format!("{kind}: {}", names.join(", ")))
        .collect();
    if groups.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "{what} '{name}' is used by {}",
            groups.join("; ")
        )))
    }
}

/// Runs `$body` (which uses `$tx`) in a transaction begun by `Self::$begin` on a connection
/// checked out for it: commits when the body returns `Ok`, rolls back explicitly when it
/// returns `Err`, and then hands the connection to `tx::settle`, which discards it if it is
/// still inside a transaction (a failed COMMIT or ROLLBACK; docs/architecture.md, "Storage
/// faults"). `return` in the body leaves the body only.
macro_rules! in_tx {
    ($self:ident . $begin:ident, |$tx:ident| $body:block) => {{
        let mut conn = $self
            .pool
            .acquire()
            .await
            .map_err($crate::store::map_sqlx)?;
        let result = $crate::store::tx::typed(async {
            let mut $tx = Self::$begin(&mut conn)
                .await
                .map_err($crate::store::map_sqlx)?;
            match $crate::store::tx::typed(async { $body }).await {
                Ok(value) => {
                    $tx.commit().await.map_err($crate::store::map_sqlx)?;
                    Ok(value)
                }
                Err(e) => {
                    if let Err(rollback) = $tx.rollback().await {
                        tracing::debug!(error = %rollback, "rollback failed");
                    }
                    Err(e)
                }
            }
        })
        .await;
        $crate::store::tx::settle(conn, result).await
    }};
}
pub(super) use in_tx;

/// Generates `impl Store for $store` over `sqlx::Pool<$db>`. The invoking module provides:
/// a `pool: sqlx::Pool<$db>` field, `async fn write_tx(conn)` / `async fn read_tx(conn)`
/// beginning a `sqlx::Transaction` on the given connection, and
/// `fn migrator() -> &'static Migrator`. Every transaction runs through `in_tx!`.
macro_rules! impl_store {
    ($store:ident, $db:ty, $backend:ident) => {
        mod imp {
            use chrono::{DateTime, Utc};
            use sqlx::types::Json;
            use uuid::Uuid;

            use super::{migrator, $store};
            use $crate::store::sql::{
                self, bind_admin, bind_credential, bind_policy, bind_route, bind_service,
                bind_tenant, in_tx,
            };
            use $crate::store::{
                AdminRecord, ApiKeyRecord, ConfigData, CredentialRecord, Lookup, Page,
                PolicyRecord, Reencrypt, RouteRecord, ServiceRecord, SpoolMark, StoreError,
                StoreResult, SystemSecretRecord, TenantRecord, UsageQuery, UsageRow, map_sqlx,
            };

            /// Queries run inside a transaction (or on any connection of this backend).
            mod q {
                use uuid::Uuid;

                use $crate::store::sql::{self, check_free, missing};
                use $crate::store::{
                    AdminRecord, ApiKeyRecord, PolicyRecord, RouteRecord, ServiceRecord,
                    StoreResult, UsageRow, map_sqlx,
                };

                pub(super) type Conn = <$db as sqlx::Database>::Connection;

                pub(super) async fn bump(c: &mut Conn) -> StoreResult<()> {
                    sqlx::query(sql::BUMP_VERSION)
                        .execute(&mut *c)
                        .await
                        .map_err(map_sqlx)?;
                    Ok(())
                }

                pub(super) async fn all<R>(c: &mut Conn, query: &'static str) -> StoreResult<Vec<R>>
                where
                    R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
                {
                    sqlx::query_as::<_, R>(query)
                        .fetch_all(&mut *c)
                        .await
                        .map_err(map_sqlx)
                }

                /// The API key as stored now, after a write to it (not found: the write
                /// matched no key).
                pub(super) async fn api_key_after_write(
                    c: &mut Conn,
                    tenant_id: Uuid,
                    id: Uuid,
                ) -> StoreResult<ApiKeyRecord> {
                    let record: Option<ApiKeyRecord> = sqlx::query_as(sql::API_KEY_GET)
                        .bind(tenant_id)
                        .bind(id)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(map_sqlx)?;
                    record
                        .ok_or_else(|| $crate::store::StoreError::NotFound(format!("API key {id}")))
                }

                /// `(id, name)` of the row whose unique column equals `value`.
                pub(super) async fn owner(
                    c: &mut Conn,
                    query: &'static str,
                    value: &str,
                ) -> StoreResult<Option<(Uuid, String)>> {
                    sqlx::query_as(query)
                        .bind(value)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(map_sqlx)
                }

                /// The name of the row with this id, if it exists.
                pub(super) async fn name_of(
                    c: &mut Conn,
                    query: &'static str,
                    id: Uuid,
                ) -> StoreResult<Option<String>> {
                    sqlx::query_scalar(query)
                        .bind(id)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(map_sqlx)
                }

                /// Names of the rows referring to `id`.
                pub(super) async fn names(
                    c: &mut Conn,
                    query: &'static str,
                    id: Uuid,
                ) -> StoreResult<Vec<String>> {
                    sqlx::query_scalar(query)
                        .bind(id)
                        .fetch_all(&mut *c)
                        .await
                        .map_err(map_sqlx)
                }

                /// Adds each row to the stored row of its minute × tenant × key × route × model ×
                /// source.
                pub(super) async fn add_usage_rows(
                    c: &mut Conn,
                    rows: &[UsageRow],
                ) -> StoreResult<()> {
                    for r in rows {
                        let mut query = sqlx::query(sql::USAGE_ADD)
                            .bind(sql::usage_minute(r.bucket_start))
                            .bind(r.tenant_id)
                            .bind(r.key_id)
                            .bind(r.route_id)
                            .bind(&r.model)
                            .bind(&r.source)
                            .bind(r.requests)
                            .bind(r.errors)
                            .bind(r.rejected)
                            .bind(r.prompt_tokens)
                            .bind(r.completion_tokens)
                            .bind(r.cost)
                            .bind(r.latency_ms_sum);
                        for count in r.latency_histogram {
                            query = query.bind(count);
                        }
                        rows_affected(c, query).await?;
                    }
                    Ok(())
                }

                pub(super) async fn rows_affected(
                    c: &mut Conn,
                    query: sqlx::query::Query<'_, $db, <$db as sqlx::Database>::Arguments>,
                ) -> StoreResult<u64> {
                    let done = query.execute(&mut *c).await.map_err(map_sqlx)?;
                    Ok(done.rows_affected())
                }

                pub(super) async fn check_admin(c: &mut Conn, r: &AdminRecord) -> StoreResult<()> {
                    check_free(
                        owner(c, sql::ADMIN_OWNER_OF_NAME, &r.name).await?,
                        r.id,
                        |_| format!("an admin named '{}' already exists", r.name),
                    )?;
                    if let Some(tenant) = r.tenant_id
                        && name_of(c, sql::TENANT_NAME, tenant).await?.is_none()
                    {
                        return Err(missing("tenant", "tenant", tenant));
                    }
                    Ok(())
                }

                pub(super) async fn check_api_key(
                    c: &mut Conn,
                    r: &ApiKeyRecord,
                ) -> StoreResult<()> {
                    if name_of(c, sql::TENANT_NAME, r.tenant_id).await?.is_none() {
                        return Err(missing("tenant", "tenant", r.tenant_id));
                    }
                    let owner_of_name: Option<(Uuid, String)> =
                        sqlx::query_as(sql::API_KEY_OWNER_OF_NAME)
                            .bind(r.tenant_id)
                            .bind(&r.name)
                            .fetch_optional(&mut *c)
                            .await
                            .map_err(map_sqlx)?;
                    check_free(owner_of_name, r.id, |_| {
                        format!("API key name '{}' already exists for this tenant", r.name)
                    })?;
                    let owner_of_hash: Option<(Uuid, String)> =
                        sqlx::query_as(sql::API_KEY_OWNER_OF_HASH)
                            .bind(&r.key_hash)
                            .fetch_optional(&mut *c)
                            .await
                            .map_err(map_sqlx)?;
                    check_free(owner_of_hash, r.id, |_| {
                        "an API key with the same hash already exists".to_owned()
                    })?;
                    for route in r.routes.iter().flat_map(|routes| routes.0.iter()) {
                        if name_of(c, sql::ROUTE_NAME, *route).await?.is_none() {
                            return Err(missing("routes", "route", *route));
                        }
                    }
                    Ok(())
                }

                pub(super) async fn check_service(
                    c: &mut Conn,
                    r: &ServiceRecord,
                ) -> StoreResult<()> {
                    check_free(
                        owner(c, sql::SERVICE_OWNER_OF_NAME, &r.name).await?,
                        r.id,
                        |_| format!("a service named '{}' already exists", r.name),
                    )?;
                    if let Some(credential) = r.credential_id
                        && name_of(c, sql::CREDENTIAL_NAME, credential)
                            .await?
                            .is_none()
                    {
                        return Err(missing("credential", "credential", credential));
                    }
                    if let Some(tenant) = r.tenant_id
                        && name_of(c, sql::TENANT_NAME, tenant).await?.is_none()
                    {
                        return Err(missing("tenant", "tenant", tenant));
                    }
                    Ok(())
                }

                pub(super) async fn check_route(c: &mut Conn, r: &RouteRecord) -> StoreResult<()> {
                    check_free(
                        owner(c, sql::ROUTE_OWNER_OF_NAME, &r.name).await?,
                        r.id,
                        |_| format!("a route named '{}' already exists", r.name),
                    )?;
                    if let Some(alias) = &r.model_alias {
                        check_free(
                            owner(c, sql::ROUTE_OWNER_OF_ALIAS, alias).await?,
                            r.id,
                            |o| format!("model_alias '{alias}' is already used by route '{o}'"),
                        )?;
                    }
                    for (i, path) in r.paths.0.iter().enumerate() {
                        if r.paths.0[..i].contains(path) {
                            return Err($crate::store::StoreError::Conflict(format!(
                                "path '{path}' is listed more than once"
                            )));
                        }
                        check_free(owner(c, sql::ROUTE_OWNER_OF_PATH, path).await?, r.id, |o| {
                            format!("path '{path}' is already used by route '{o}'")
                        })?;
                    }
                    if name_of(c, sql::SERVICE_NAME, r.service_id).await?.is_none() {
                        return Err(missing("service", "service", r.service_id));
                    }
                    for tenant in r.tenants.iter().flat_map(|tenants| tenants.0.iter()) {
                        if name_of(c, sql::TENANT_NAME, *tenant).await?.is_none() {
                            return Err(missing("tenants", "tenant", *tenant));
                        }
                    }
                    Ok(())
                }

                pub(super) async fn check_policy(
                    c: &mut Conn,
                    r: &PolicyRecord,
                ) -> StoreResult<()> {
                    check_free(
                        owner(c, sql::POLICY_OWNER_OF_NAME, &r.name).await?,
                        r.id,
                        |_| format!("a policy named '{}' already exists", r.name),
                    )?;
                    let bound = [
                        ("route", sql::ROUTE_NAME, r.route_id),
                        ("service", sql::SERVICE_NAME, r.service_id),
                        ("tenant", sql::TENANT_NAME, r.tenant_id),
                    ];
                    for (kind, query, id) in bound {
                        let Some(id) = id else { continue };
                        let Some(bound_name) = name_of(c, query, id).await? else {
                            return Err(missing(kind, kind, id));
                        };
                        let same_type: Option<(Uuid, String)> =
                            sqlx::query_as(sql::POLICY_OWNER_OF_BINDING)
                                .bind(&r.kind)
                                .bind(r.route_id)
                                .bind(r.service_id)
                                .bind(r.tenant_id)
                                .fetch_optional(&mut *c)
                                .await
                                .map_err(map_sqlx)?;
                        check_free(same_type, r.id, |other| {
                            format!(
                                "{kind} '{bound_name}' already has an {} policy: '{other}'",
                                r.kind
                            )
                        })?;
                    }
                    if let Some(service) = sql::policy_llm_service(&r.config.0)
                        && name_of(c, sql::SERVICE_NAME, service).await?.is_none()
                    {
                        return Err(missing("config.llm.service", "service", service));
                    }
                    Ok(())
                }

                /// A `usage_minutes` row selected with `sql::usage_columns!()`.
                pub(super) fn usage_row(
                    row: &<$db as sqlx::Database>::Row,
                ) -> StoreResult<$crate::store::UsageRow> {
                    use sqlx::Row;
                    let mut latency_histogram = [0; $crate::store::LATENCY_BUCKETS];
                    for (i, count) in latency_histogram.iter_mut().enumerate() {
                        *count = row.try_get(sql::USAGE_HISTOGRAM_AT + i).map_err(map_sqlx)?;
                    }
                    Ok($crate::store::UsageRow {
                        bucket_start: row.try_get(0).map_err(map_sqlx)?,
                        tenant_id: row.try_get(1).map_err(map_sqlx)?,
                        key_id: row.try_get(2).map_err(map_sqlx)?,
                        route_id: row.try_get(3).map_err(map_sqlx)?,
                        model: row.try_get(4).map_err(map_sqlx)?,
                        source: row.try_get(5).map_err(map_sqlx)?,
                        requests: row.try_get(6).map_err(map_sqlx)?,
                        errors: row.try_get(7).map_err(map_sqlx)?,
                        rejected: row.try_get(8).map_err(map_sqlx)?,
                        prompt_tokens: row.try_get(9).map_err(map_sqlx)?,
                        completion_tokens: row.try_get(10).map_err(map_sqlx)?,
                        cost: row.try_get(11).map_err(map_sqlx)?,
                        latency_ms_sum: row.try_get(12).map_err(map_sqlx)?,
                        latency_histogram,
                    })
                }

                /// Rewrites the route's rows in `route_paths`.
                pub(super) async fn set_route_paths(
                    c: &mut Conn,
                    r: &RouteRecord,
                ) -> StoreResult<()> {
                    sqlx::query(sql::ROUTE_PATH_DELETE)
                        .bind(r.id)
                        .execute(&mut *c)
                        .await
                        .map_err(map_sqlx)?;
                    for path in &r.paths.0 {
                        sqlx::query(sql::ROUTE_PATH_INSERT)
                            .bind(path)
                            .bind(r.id)
                            .execute(&mut *c)
                            .await
                            .map_err(map_sqlx)?;
                    }
                    Ok(())
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::Store for $store {
                fn backend(&self) -> $crate::store::Backend {
                    $crate::store::Backend::$backend
                }

                async fn migrate(&self) -> StoreResult<()> {
                    migrator().run(&self.pool).await.map_err(|e| match e {
                        sqlx::migrate::MigrateError::Execute(e) => map_sqlx(e),
                        e => StoreError::Other(format!("migration failed: {e}")),
                    })
                }

                async fn ping(&self) -> StoreResult<()> {
                    sqlx::query("SELECT 1")
                        .execute(&self.pool)
                        .await
                        .map_err(map_sqlx)?;
                    Ok(())
                }

                async fn close(&self) {
                    self.pool.close().await;
                }

                async fn config_version(&self) -> StoreResult<i64> {
                    sqlx::query_scalar(sql::CONFIG_VERSION)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn load_config(&self) -> StoreResult<ConfigData> {
                    in_tx!(self.read_tx, |tx| {
                        let version = sqlx::query_scalar(sql::CONFIG_VERSION)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(map_sqlx)?;
                        let data = ConfigData {
                            version,
                            tenants: q::all(&mut tx, sql::TENANT_ALL).await?,
                            api_keys: q::all(&mut tx, sql::API_KEY_ALL).await?,
                            credentials: q::all(&mut tx, sql::CREDENTIAL_ALL).await?,
                            services: q::all(&mut tx, sql::SERVICE_ALL).await?,
                            routes: q::all(&mut tx, sql::ROUTE_ALL).await?,
                            policies: q::all(&mut tx, sql::POLICY_ALL).await?,
                            system_secrets: q::all(&mut tx, sql::SECRET_ALL).await?,
                            admins: q::all(&mut tx, sql::ADMIN_TOKENS_ALL).await?,
                        };
                        Ok(data)
                    })
                }

                // --- admins ---

                async fn count_admins(&self) -> StoreResult<i64> {
                    sqlx::query_scalar(sql::ADMIN_COUNT)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn list_admins(&self, page: Page) -> StoreResult<Vec<AdminRecord>> {
                    sqlx::query_as(sql::ADMIN_LIST)
                        .bind(page.limit)
                        .bind(page.offset)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn get_admin(&self, key: &Lookup) -> StoreResult<Option<AdminRecord>> {
                    self.get_by(key, sql::ADMIN_BY_ID, sql::ADMIN_BY_NAME).await
                }

                async fn insert_admin(&self, r: &AdminRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        q::check_admin(&mut tx, r).await?;
                        let query = bind_admin!(sqlx::query(sql::ADMIN_INSERT), r);
                        q::rows_affected(&mut tx, query).await?;
                        Ok(())
                    })
                }

                async fn update_admin(&self, r: &AdminRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        if q::name_of(&mut tx, sql::ADMIN_NAME, r.id).await?.is_none() {
                            return Err(StoreError::NotFound(format!("admin {}", r.id)));
                        }
                        q::check_admin(&mut tx, r).await?;
                        let query = bind_admin!(sqlx::query(sql::ADMIN_UPDATE), r);
                        if q::rows_affected(&mut tx, query).await? == 0 {
                            return Err(StoreError::NotFound(format!("admin {}", r.id)));
                        }
                        Ok(())
                    })
                }

                async fn delete_admin(&self, id: Uuid) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        let query = sqlx::query(sql::ADMIN_DELETE).bind(id);
                        if q::rows_affected(&mut tx, query).await? == 0 {
                            return Err(StoreError::NotFound(format!("admin {id}")));
                        }
                        Ok(())
                    })
                }

                async fn bump_admin_generation(&self, id: Uuid) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        let query = sqlx::query(sql::ADMIN_BUMP_GENERATION).bind(id);
                        if q::rows_affected(&mut tx, query).await? == 0 {
                            return Err(StoreError::NotFound(format!("admin {id}")));
                        }
                        Ok(())
                    })
                }

                // --- tenants ---

                async fn list_tenants(&self, page: Page) -> StoreResult<Vec<TenantRecord>> {
                    sqlx::query_as(sql::TENANT_LIST)
                        .bind(page.limit)
                        .bind(page.offset)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn get_tenant(&self, key: &Lookup) -> StoreResult<Option<TenantRecord>> {
                    self.get_by(key, sql::TENANT_BY_ID, sql::TENANT_BY_NAME)
                        .await
                }

                async fn insert_tenant(&self, r: &TenantRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        let owner = q::owner(&mut tx, sql::TENANT_OWNER_OF_NAME, &r.name).await?;
                        sql::check_free(owner, r.id, |_| {
                            format!("a tenant named '{}' already exists", r.name)
                        })?;
                        let query = bind_tenant!(sqlx::query(sql::TENANT_INSERT), r);
                        q::rows_affected(&mut tx, query).await?;
                        Ok(())
                    })
                }

                async fn update_tenant(&self, r: &TenantRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        if q::name_of(&mut tx, sql::TENANT_NAME, r.id).await?.is_none() {
                            return Err(StoreError::NotFound(format!("tenant {}", r.id)));
                        }
                        let owner = q::owner(&mut tx, sql::TENANT_OWNER_OF_NAME, &r.name).await?;
                        sql::check_free(owner, r.id, |_| {
                            format!("a tenant named '{}' already exists", r.name)
                        })?;
                        let query = bind_tenant!(sqlx::query(sql::TENANT_UPDATE), r);
                        if q::rows_affected(&mut tx, query).await? == 0 {
                            return Err(StoreError::NotFound(format!("tenant {}", r.id)));
                        }
                        Ok(())
                    })
                }

                async fn delete_tenant(&self, id: Uuid) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        let Some(name) = q::name_of(&mut tx, sql::TENANT_NAME, id).await? else {
                            return Err(StoreError::NotFound(format!("tenant {id}")));
                        };
                        let services = q::names(&mut tx, sql::SERVICE_NAMES_BY_TENANT, id).await?;
                        let route_lists: Vec<(String, Json<Vec<Uuid>>)> =
                            q::all(&mut tx, sql::ROUTE_TENANT_LISTS).await?;
                        let routes: Vec<String> = route_lists
                            .into_iter()
                            .filter(|(_, tenants)| tenants.0.contains(&id))
                            .map(|(route, _)| route)
                            .collect();
                        let admins = q::names(&mut tx, sql::ADMIN_NAMES_BY_TENANT, id).await?;
                        let policies = q::names(&mut tx, sql::POLICY_NAMES_BY_TENANT, id).await?;
                        sql::check_unreferenced(
                            "tenant",
                            &name,
                            &[
                                ("services", services),
                                ("routes", routes),
                                ("admins", admins),
                                ("policies", policies),
                            ],
                        )?;
                        let query = sqlx::query(sql::API_KEY_DELETE_BY_TENANT).bind(id);
                        q::rows_affected(&mut tx, query).await?;
                        let query = sqlx::query(sql::TENANT_DELETE).bind(id);
                        q::rows_affected(&mut tx, query).await?;
                        Ok(())
                    })
                }

                // --- API keys ---

                async fn list_api_keys(
                    &self,
                    tenant_id: Uuid,
                    page: Page,
                ) -> StoreResult<Vec<ApiKeyRecord>> {
                    sqlx::query_as(sql::API_KEY_LIST)
                        .bind(tenant_id)
                        .bind(page.limit)
                        .bind(page.offset)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn get_api_key(
                    &self,
                    tenant_id: Uuid,
                    id: Uuid,
                ) -> StoreResult<Option<ApiKeyRecord>> {
                    sqlx::query_as(sql::API_KEY_GET)
                        .bind(tenant_id)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn insert_api_key(&self, r: &ApiKeyRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        q::check_api_key(&mut tx, r).await?;
                        let query = sqlx::query(sql::API_KEY_INSERT)
                            .bind(r.id)
                            .bind(r.tenant_id)
                            .bind(&r.name)
                            .bind(&r.prefix)
                            .bind(&r.key_hash)
                            .bind(&r.routes)
                            .bind(&r.tags)
                            .bind(r.expires_at)
                            .bind(r.last_used_at)
                            .bind(r.revoked_at)
                            .bind(r.created_at)
                            .bind(r.updated_at)
                            .bind(&r.limits);
                        q::rows_affected(&mut tx, query).await?;
                        Ok(())
                    })
                }

                async fn set_api_key_limits(
                    &self,
                    tenant_id: Uuid,
                    id: Uuid,
                    limits: &Json<serde_json::Value>,
                    at: DateTime<Utc>,
                ) -> StoreResult<ApiKeyRecord> {
                    in_tx!(self.write_tx, |tx| {
                        let query = sqlx::query(sql::API_KEY_SET_LIMITS)
                            .bind(tenant_id)
                            .bind(id)
                            .bind(limits)
                            .bind(at);
                        if q::rows_affected(&mut tx, query).await? == 0 {
                            return Err(StoreError::NotFound(format!("API key {id}")));
                        }
                        q::bump(&mut tx).await?;
                        q::api_key_after_write(&mut tx, tenant_id, id).await
                    })
                }

                async fn revoke_api_key(
                    &self,
                    tenant_id: Uuid,
                    id: Uuid,
                    at: DateTime<Utc>,
                ) -> StoreResult<ApiKeyRecord> {
                    in_tx!(self.write_tx, |tx| {
                        let query = sqlx::query(sql::API_KEY_REVOKE)
                            .bind(tenant_id)
                            .bind(id)
                            .bind(at);
                        if q::rows_affected(&mut tx, query).await? > 0 {
                            q::bump(&mut tx).await?;
                        }
                        q::api_key_after_write(&mut tx, tenant_id, id).await
                    })
                }

                async fn touch_api_keys(&self, used: &[(Uuid, DateTime<Utc>)]) -> StoreResult<()> {
                    if used.is_empty() {
                        return Ok(());
                    }
                    in_tx!(self.write_tx, |tx| {
                        for (id, at) in used {
                            let query = sqlx::query(sql::API_KEY_TOUCH).bind(id).bind(at);
                            q::rows_affected(&mut tx, query).await?;
                        }
                        Ok(())
                    })
                }

                // --- credentials ---

                async fn list_credentials(&self, page: Page) -> StoreResult<Vec<CredentialRecord>> {
                    sqlx::query_as(sql::CREDENTIAL_LIST)
                        .bind(page.limit)
                        .bind(page.offset)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn get_credential(
                    &self,
                    key: &Lookup,
                ) -> StoreResult<Option<CredentialRecord>> {
                    self.get_by(key, sql::CREDENTIAL_BY_ID, sql::CREDENTIAL_BY_NAME)
                        .await
                }

                async fn insert_credential(&self, r: &CredentialRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        let owner =
                            q::owner(&mut tx, sql::CREDENTIAL_OWNER_OF_NAME, &r.name).await?;
                        sql::check_free(owner, r.id, |_| {
                            format!("a credential named '{}' already exists", r.name)
                        })?;
                        let query = bind_credential!(sqlx::query(sql::CREDENTIAL_INSERT), r);
                        q::rows_affected(&mut tx, query).await?;
                        Ok(())
                    })
                }

                async fn update_credential(&self, r: &CredentialRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        if q::name_of(&mut tx, sql::CREDENTIAL_NAME, r.id)
                            .await?
                            .is_none()
                        {
                            return Err(StoreError::NotFound(format!("credential {}", r.id)));
                        }
                        let owner =
                            q::owner(&mut tx, sql::CREDENTIAL_OWNER_OF_NAME, &r.name).await?;
                        sql::check_free(owner, r.id, |_| {
                            format!("a credential named '{}' already exists", r.name)
                        })?;
                        let query = bind_credential!(sqlx::query(sql::CREDENTIAL_UPDATE), r);
                        if q::rows_affected(&mut tx, query).await? == 0 {
                            return Err(StoreError::NotFound(format!("credential {}", r.id)));
                        }
                        Ok(())
                    })
                }

                async fn delete_credential(&self, id: Uuid) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        let Some(name) = q::name_of(&mut tx, sql::CREDENTIAL_NAME, id).await?
                        else {
                            return Err(StoreError::NotFound(format!("credential {id}")));
                        };
                        let services =
                            q::names(&mut tx, sql::SERVICE_NAMES_BY_CREDENTIAL, id).await?;
                        sql::check_unreferenced("credential", &name, &[("services", services)])?;
                        let query = sqlx::query(sql::CREDENTIAL_DELETE).bind(id);
                        q::rows_affected(&mut tx, query).await?;
                        Ok(())
                    })
                }

                // --- services ---

                async fn list_services(&self, page: Page) -> StoreResult<Vec<ServiceRecord>> {
                    sqlx::query_as(sql::SERVICE_LIST)
                        .bind(page.limit)
                        .bind(page.offset)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn get_service(&self, key: &Lookup) -> StoreResult<Option<ServiceRecord>> {
                    self.get_by(key, sql::SERVICE_BY_ID, sql::SERVICE_BY_NAME)
                        .await
                }

                async fn insert_service(&self, r: &ServiceRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        q::check_service(&mut tx, r).await?;
                        let query = bind_service!(sqlx::query(sql::SERVICE_INSERT), r);
                        q::rows_affected(&mut tx, query).await?;
                        Ok(())
                    })
                }

                async fn update_service(&self, r: &ServiceRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        if q::name_of(&mut tx, sql::SERVICE_NAME, r.id)
                            .await?
                            .is_none()
                        {
                            return Err(StoreError::NotFound(format!("service {}", r.id)));
                        }
                        q::check_service(&mut tx, r).await?;
                        let query = bind_service!(sqlx::query(sql::SERVICE_UPDATE), r);
                        if q::rows_affected(&mut tx, query).await? == 0 {
                            return Err(StoreError::NotFound(format!("service {}", r.id)));
                        }
                        Ok(())
                    })
                }

                async fn delete_service(&self, id: Uuid) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        let Some(name) = q::name_of(&mut tx, sql::SERVICE_NAME, id).await? else {
                            return Err(StoreError::NotFound(format!("service {id}")));
                        };
                        let routes = q::names(&mut tx, sql::ROUTE_NAMES_BY_SERVICE, id).await?;
                        // Bound to it, or calling it as a transformer's instruction LLM.
                        let mut policies =
                            q::names(&mut tx, sql::POLICY_NAMES_BY_SERVICE, id).await?;
                        let transformers: Vec<(String, Json<serde_json::Value>)> =
                            q::all(&mut tx, sql::POLICY_TRANSFORMER_CONFIGS).await?;
                        for (policy, config) in transformers {
                            if sql::policy_llm_service(&config.0) == Some(id)
                                && !policies.contains(&policy)
                            {
                                policies.push(policy);
                            }
                        }
                        sql::check_unreferenced(
                            "service",
                            &name,
                            &[("routes", routes), ("policies", policies)],
                        )?;
                        let query = sqlx::query(sql::SERVICE_DELETE).bind(id);
                        q::rows_affected(&mut tx, query).await?;
                        Ok(())
                    })
                }

                // --- routes ---

                async fn list_routes(&self, page: Page) -> StoreResult<Vec<RouteRecord>> {
                    sqlx::query_as(sql::ROUTE_LIST)
                        .bind(page.limit)
                        .bind(page.offset)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn get_route(&self, key: &Lookup) -> StoreResult<Option<RouteRecord>> {
                    self.get_by(key, sql::ROUTE_BY_ID, sql::ROUTE_BY_NAME).await
                }

                async fn insert_route(&self, r: &RouteRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        q::check_route(&mut tx, r).await?;
                        let query = bind_route!(sqlx::query(sql::ROUTE_INSERT), r);
                        q::rows_affected(&mut tx, query).await?;
                        q::set_route_paths(&mut tx, r).await?;
                        Ok(())
                    })
                }

                async fn update_route(&self, r: &RouteRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        if q::name_of(&mut tx, sql::ROUTE_NAME, r.id).await?.is_none() {
                            return Err(StoreError::NotFound(format!("route {}", r.id)));
                        }
                        q::check_route(&mut tx, r).await?;
                        let query = bind_route!(sqlx::query(sql::ROUTE_UPDATE), r);
                        if q::rows_affected(&mut tx, query).await? == 0 {
                            return Err(StoreError::NotFound(format!("route {}", r.id)));
                        }
                        q::set_route_paths(&mut tx, r).await?;
                        Ok(())
                    })
                }

                async fn delete_route(&self, id: Uuid) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        let Some(name) = q::name_of(&mut tx, sql::ROUTE_NAME, id).await? else {
                            return Err(StoreError::NotFound(format!("route {id}")));
                        };
                        let key_lists: Vec<(String, String, Json<Vec<Uuid>>)> =
                            q::all(&mut tx, sql::API_KEY_ROUTE_LISTS).await?;
                        let keys: Vec<String> = key_lists
                            .into_iter()
                            .filter(|(_, _, routes)| routes.0.contains(&id))
                            .map(|(tenant, key, _)| format!("{tenant}/{key}"))
                            .collect();
                        let policies = q::names(&mut tx, sql::POLICY_NAMES_BY_ROUTE, id).await?;
                        sql::check_unreferenced(
                            "route",
                            &name,
                            &[("API keys", keys), ("policies", policies)],
                        )?;
                        let query = sqlx::query(sql::ROUTE_PATH_DELETE).bind(id);
                        q::rows_affected(&mut tx, query).await?;
                        let query = sqlx::query(sql::ROUTE_DELETE).bind(id);
                        q::rows_affected(&mut tx, query).await?;
                        Ok(())
                    })
                }

                // --- policies ---

                async fn list_policies(&self, page: Page) -> StoreResult<Vec<PolicyRecord>> {
                    sqlx::query_as(sql::POLICY_LIST)
                        .bind(page.limit)
                        .bind(page.offset)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn get_policy(&self, key: &Lookup) -> StoreResult<Option<PolicyRecord>> {
                    self.get_by(key, sql::POLICY_BY_ID, sql::POLICY_BY_NAME)
                        .await
                }

                async fn insert_policy(&self, r: &PolicyRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        q::check_policy(&mut tx, r).await?;
                        let query = bind_policy!(sqlx::query(sql::POLICY_INSERT), r);
                        q::rows_affected(&mut tx, query).await?;
                        Ok(())
                    })
                }

                async fn update_policy(&self, r: &PolicyRecord) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        if q::name_of(&mut tx, sql::POLICY_NAME, r.id).await?.is_none() {
                            return Err(StoreError::NotFound(format!("policy {}", r.id)));
                        }
                        q::check_policy(&mut tx, r).await?;
                        let query = bind_policy!(sqlx::query(sql::POLICY_UPDATE), r);
                        if q::rows_affected(&mut tx, query).await? == 0 {
                            return Err(StoreError::NotFound(format!("policy {}", r.id)));
                        }
                        Ok(())
                    })
                }

                async fn delete_policy(&self, id: Uuid) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        let query = sqlx::query(sql::POLICY_DELETE).bind(id);
                        if q::rows_affected(&mut tx, query).await? == 0 {
                            return Err(StoreError::NotFound(format!("policy {id}")));
                        }
                        Ok(())
                    })
                }

                // --- gateway secrets and key rotation ---

                async fn get_system_secret(
                    &self,
                    name: &str,
                ) -> StoreResult<Option<SystemSecretRecord>> {
                    sqlx::query_as(sql::SECRET_GET)
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn insert_system_secret(
                    &self,
                    r: &SystemSecretRecord,
                ) -> StoreResult<SystemSecretRecord> {
                    in_tx!(self.write_tx, |tx| {
                        let query = sqlx::query(sql::SECRET_INSERT)
                            .bind(&r.name)
                            .bind(&r.value)
                            .bind(r.created_at);
                        if q::rows_affected(&mut tx, query).await? > 0 {
                            q::bump(&mut tx).await?;
                        }
                        let stored = sqlx::query_as(sql::SECRET_GET)
                            .bind(&r.name)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(map_sqlx)?;
                        Ok(stored)
                    })
                }

                async fn reencrypt_all(&self, f: Reencrypt<'_>) -> StoreResult<usize> {
                    in_tx!(self.write_tx, |tx| {
                        q::bump(&mut tx).await?;
                        let mut count = 0;
                        let credentials: Vec<(Uuid, Option<Vec<u8>>, Option<Vec<u8>>)> =
                            q::all(&mut tx, sql::CREDENTIAL_SECRETS).await?;
                        for (id, header_value, param_value) in credentials {
                            if header_value.is_none() && param_value.is_none() {
                                continue;
                            }
                            let mut redo = |field: &str, value: Option<Vec<u8>>| match value {
                                Some(v) => {
                                    count += 1;
                                    f(&$crate::store::credential_aad(id, field), &v)
                                        .map(Some)
                                        .map_err(StoreError::Other)
                                }
                                None => Ok(None),
                            };
                            let header_value = redo("header_value", header_value)?;
                            let param_value = redo("param_value", param_value)?;
                            let query = sqlx::query(sql::CREDENTIAL_SET_SECRETS)
                                .bind(id)
                                .bind(header_value)
                                .bind(param_value);
                            q::rows_affected(&mut tx, query).await?;
                        }
                        let secrets: Vec<(String, Vec<u8>)> =
                            q::all(&mut tx, sql::SECRET_VALUES).await?;
                        for (name, value) in secrets {
                            let value = f(&$crate::store::system_secret_aad(&name), &value)
                                .map_err(StoreError::Other)?;
                            count += 1;
                            let query = sqlx::query(sql::SECRET_SET_VALUE).bind(&name).bind(value);
                            q::rows_affected(&mut tx, query).await?;
                        }
                        Ok(count)
                    })
                }

                // --- usage history (no version bump) ---

                async fn add_usage(&self, rows: &[UsageRow]) -> StoreResult<()> {
                    if rows.is_empty() {
                        return Ok(());
                    }
                    in_tx!(self.write_tx, |tx| {
                        q::add_usage_rows(&mut tx, rows).await
                    })
                }

                async fn apply_usage(
                    &self,
                    rows: &[UsageRow],
                    marks: &[SpoolMark],
                ) -> StoreResult<()> {
                    in_tx!(self.write_tx, |tx| {
                        let now = chrono::Utc::now();
                        for m in marks {
                            let init = sqlx::query(sql::SPOOL_MARK_INIT)
                                .bind(&m.segment)
                                .bind(false)
                                .bind(now);
                            q::rows_affected(&mut tx, init).await?;
                            let advance = sqlx::query(sql::SPOOL_MARK_ADVANCE)
                                .bind(&m.segment)
                                .bind(m.to)
                                .bind(m.complete)
                                .bind(now)
                                .bind(m.from)
                                .bind(false);
                            if q::rows_affected(&mut tx, advance).await? != 1 {
                                return Err(StoreError::Conflict(format!(
                                    "usage spool segment {} was already counted past byte {}",
                                    m.segment, m.from
                                )));
                            }
                        }
                        q::add_usage_rows(&mut tx, rows).await
                    })
                }

                async fn spool_mark(&self, segment: &str) -> StoreResult<Option<(i64, bool)>> {
                    sqlx::query_as(sql::SPOOL_MARK_GET)
                        .bind(segment)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(map_sqlx)
                }

                async fn query_usage(&self, uq: &UsageQuery) -> StoreResult<Vec<UsageRow>> {
                    let query = match uq.tenant_id {
                        Some(tenant) => sqlx::query(sql::USAGE_RANGE_TENANT)
                            .bind(uq.from)
                            .bind(uq.to)
                            .bind(tenant),
                        None => sqlx::query(sql::USAGE_RANGE).bind(uq.from).bind(uq.to),
                    };
                    let rows = query.fetch_all(&self.pool).await.map_err(map_sqlx)?;
                    rows.iter().map(q::usage_row).collect()
                }
            }

            impl $store {
                async fn get_by<R>(
                    &self,
                    key: &Lookup,
                    by_id: &'static str,
                    by_name: &'static str,
                ) -> StoreResult<Option<R>>
                where
                    R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
                {
                    let query = match key {
                        Lookup::Id(id) => sqlx::query_as(by_id).bind(*id),
                        Lookup::Name(name) => sqlx::query_as(by_name).bind(name),
                    };
                    query.fetch_optional(&self.pool).await.map_err(map_sqlx)
                }
            }
        }
    };
}
pub(super) use impl_store;

/// Binds an `AdminRecord` in column order (`$1` = id).
macro_rules! bind_admin {
    ($query:expr, $r:expr) => {
        $query
            .bind($r.id)
            .bind(&$r.name)
            .bind(&$r.password_hash)
            .bind(&$r.role)
            .bind($r.tenant_id)
            .bind(&$r.tags)
            .bind($r.created_at)
            .bind($r.updated_at)
    };
}

/// Binds a `TenantRecord` in column order (`$1` = id).
macro_rules! bind_tenant {
    ($query:expr, $r:expr) => {
        $query
            .bind($r.id)
            .bind(&$r.name)
            .bind(&$r.display_name)
            .bind(&$r.limits)
            .bind(&$r.tags)
            .bind($r.created_at)
            .bind($r.updated_at)
    };
}

/// Binds a `CredentialRecord` in column order (`$1` = id).
macro_rules! bind_credential {
    ($query:expr, $r:expr) => {
        $query
            .bind($r.id)
            .bind(&$r.name)
            .bind(&$r.header_name)
            .bind(&$r.header_value)
            .bind(&$r.param_name)
            .bind(&$r.param_value)
            .bind(&$r.param_location)
            .bind($r.allow_override)
            .bind(&$r.header_value_hint)
            .bind(&$r.param_value_hint)
            .bind(&$r.tags)
            .bind($r.created_at)
            .bind($r.updated_at)
    };
}

/// Binds a `ServiceRecord` in column order (`$1` = id).
macro_rules! bind_service {
    ($query:expr, $r:expr) => {
        $query
            .bind($r.id)
            .bind(&$r.name)
            .bind(&$r.provider)
            .bind(&$r.upstream_url)
            .bind($r.credential_id)
            .bind(&$r.options)
            .bind(&$r.timeouts)
            .bind($r.tenant_id)
            .bind(&$r.tags)
            .bind($r.created_at)
            .bind($r.updated_at)
    };
}

/// Binds a `RouteRecord` in column order (`$1` = id).
macro_rules! bind_route {
    ($query:expr, $r:expr) => {
        $query
            .bind($r.id)
            .bind(&$r.name)
            .bind(&$r.paths)
            .bind(&$r.model_alias)
            .bind($r.service_id)
            .bind(&$r.route_type)
            .bind(&$r.model)
            .bind(&$r.logging)
            .bind(&$r.response_streaming)
            .bind($r.model_name_header)
            .bind($r.max_request_body_size)
            .bind(&$r.tenants)
            .bind(&$r.policies)
            .bind(&$r.tags)
            .bind($r.created_at)
            .bind($r.updated_at)
            .bind(&$r.limits)
    };
}
/// Binds a `PolicyRecord` in column order (`$1` = id).
macro_rules! bind_policy {
    ($query:expr, $r:expr) => {
        $query
            .bind($r.id)
            .bind(&$r.name)
            .bind(&$r.kind)
            .bind($r.enabled)
            .bind(&$r.config)
            .bind($r.route_id)
            .bind($r.service_id)
            .bind($r.tenant_id)
            .bind(&$r.tags)
            .bind($r.created_at)
            .bind($r.updated_at)
    };
}
pub(super) use {bind_admin, bind_credential, bind_policy, bind_route, bind_service, bind_tenant};
