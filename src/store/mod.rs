//! Persistence. One abstraction (`Store`) with two typed implementations: `SqliteStore`
//! over a `SqlitePool` (the embedded default) and `PgStore` over a `PgPool` (production),
//! chosen by the URL scheme. Not `sqlx::Any`: each backend keeps its native types
//! (UUID/TIMESTAMPTZ/JSONB on PostgreSQL, BLOB/TEXT on SQLite).
//!
//! Every method that writes several rows does so in one transaction, and every write to
//! configuration the proxy uses bumps `config_state.version` in that same transaction, so
//! a snapshot compiled from `load_config` is consistent with its version.

pub mod model;
mod postgres;
mod sql;
mod sqlite;
mod tx;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Duplicate name/alias/path, or delete of something still referenced (names the referrers).
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A reference (service → credential, …) to an object that does not exist.
    #[error("{field}: {message}")]
    InvalidReference { field: String, message: String },
    /// The database cannot take the request now: unreachable, full, locked or failing I/O
    /// (→ 503). Retrying later may succeed.
    #[error("{0}")]
    Unavailable(Unavailable),
    #[error("database error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Why the database is unavailable: `reason` is safe to show a client, `detail` (the driver's
/// text) belongs in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub reason: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database unavailable: {} ({})", self.reason, self.detail)
    }
}

/// The client-facing reasons (`Unavailable::reason`).
pub const DB_UNREACHABLE: &str = "the database is unreachable";
pub const DB_FULL: &str = "the database is full (no space left to write)";
pub const DB_LOCKED: &str = "the database is locked by another writer";
pub const DB_IO: &str = "the database cannot read or write its files";
pub const DB_READ_ONLY: &str = "the database is read-only";
pub const DB_EXHAUSTED: &str = "the database is out of resources";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Re-encrypts one stored secret: `(associated_data, ciphertext) -> new ciphertext`.
pub type Reencrypt<'a> = &'a (dyn Fn(&[u8], &[u8]) -> Result<Vec<u8>, String> + Send + Sync);

/// Associated data binding a credential's secret field to its row.
pub fn credential_aad(id: Uuid, field: &str) -> Vec<u8> {
    format!("credential:{id}:{field}").into_bytes()
}

/// Associated data binding a system secret to its row.
pub fn system_secret_aad(name: &str) -> Vec<u8> {
    format!("system_secret:{name}").into_bytes()
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Applies pending migrations of this backend's tree.
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    async fn close(&self);

    /// Version of the configuration: bumped by every configuration write.
    async fn config_version(&self) -> StoreResult<i64>;
    /// Everything the snapshot needs, read in one transaction.
    async fn load_config(&self) -> StoreResult<ConfigData>;

    // --- admins (their ids, roles, tenants and token generations are in the snapshot,
    // so every admin write bumps the configuration version) ---
    async fn count_admins(&self) -> StoreResult<i64>;
    async fn list_admins(&self, page: Page) -> StoreResult<Vec<AdminRecord>>;
    async fn get_admin(&self, key: &Lookup) -> StoreResult<Option<AdminRecord>>;
    /// `Conflict` on a duplicate name; `InvalidReference{field:"tenant"}` on a missing tenant.
    async fn insert_admin(&self, r: &AdminRecord) -> StoreResult<()>;
    /// Replaces the row with `r.id`; `NotFound` if it is gone.
    async fn update_admin(&self, r: &AdminRecord) -> StoreResult<()>;
    async fn delete_admin(&self, id: Uuid) -> StoreResult<()>;
    /// Revokes every token issued to this admin so far (logout-all). `NotFound` if absent.
    async fn bump_admin_generation(&self, id: Uuid) -> StoreResult<()>;

    // --- tenants ---
    async fn list_tenants(&self, page: Page) -> StoreResult<Vec<TenantRecord>>;
    async fn get_tenant(&self, key: &Lookup) -> StoreResult<Option<TenantRecord>>;
    async fn insert_tenant(&self, r: &TenantRecord) -> StoreResult<()>;
    async fn update_tenant(&self, r: &TenantRecord) -> StoreResult<()>;
    /// Deletes the tenant and its API keys in one transaction. `Conflict` naming the
    /// referrers when services, routes (`tenants` list), admin users or policies still
    /// refer to it.
    async fn delete_tenant(&self, id: Uuid) -> StoreResult<()>;

    // --- API keys (always scoped by tenant) ---
    async fn list_api_keys(&self, tenant_id: Uuid, page: Page) -> StoreResult<Vec<ApiKeyRecord>>;
    async fn get_api_key(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<ApiKeyRecord>>;
    /// `Conflict` on a duplicate name within the tenant; `InvalidReference{field:"routes"}`
    /// when a listed route id does not exist.
    async fn insert_api_key(&self, r: &ApiKeyRecord) -> StoreResult<()>;
    /// Replaces a key's limits (a configuration change: bumps the version). `NotFound` if
    /// absent.
    async fn set_api_key_limits(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        limits: &sqlx::types::Json<serde_json::Value>,
        at: DateTime<Utc>,
    ) -> StoreResult<ApiKeyRecord>;
    /// Sets `revoked_at` (idempotent: keeps the first revocation time). `NotFound` if absent.
    async fn revoke_api_key(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<ApiKeyRecord>;

    /// Sets each key's `last_used_at` to the given time unless it is already later, all in
    /// one transaction. Not configuration: no version bump (the usage aggregator calls it
    /// at every flush). Unknown ids are ignored (a key deleted meanwhile).
    async fn touch_api_keys(&self, used: &[(Uuid, DateTime<Utc>)]) -> StoreResult<()>;

    // --- credentials ---
    async fn list_credentials(&self, page: Page) -> StoreResult<Vec<CredentialRecord>>;
    async fn get_credential(&self, key: &Lookup) -> StoreResult<Option<CredentialRecord>>;
    async fn insert_credential(&self, r: &CredentialRecord) -> StoreResult<()>;
    async fn update_credential(&self, r: &CredentialRecord) -> StoreResult<()>;
    /// `Conflict` naming the services that use it.
    async fn delete_credential(&self, id: Uuid) -> StoreResult<()>;

    // --- services ---
    async fn list_services(&self, page: Page) -> StoreResult<Vec<ServiceRecord>>;
    async fn get_service(&self, key: &Lookup) -> StoreResult<Option<ServiceRecord>>;
    /// `InvalidReference{field:"credential"|"tenant"}` on a missing reference.
    async fn insert_service(&self, r: &ServiceRecord) -> StoreResult<()>;
    async fn update_service(&self, r: &ServiceRecord) -> StoreResult<()>;
    /// `Conflict` naming the routes and policies that use it (bound to it, or calling it as
    /// a transformer's instruction LLM).
    async fn delete_service(&self, id: Uuid) -> StoreResult<()>;

    // --- routes ---
    async fn list_routes(&self, page: Page) -> StoreResult<Vec<RouteRecord>>;
    async fn get_route(&self, key: &Lookup) -> StoreResult<Option<RouteRecord>>;
    /// Maintains the `route_paths` index in the same transaction. `Conflict` on a duplicate
    /// name, `model_alias` or path (naming the route that owns it);
    /// `InvalidReference{field:"service"|"tenants"}` on a missing reference.
    async fn insert_route(&self, r: &RouteRecord) -> StoreResult<()>;
    async fn update_route(&self, r: &RouteRecord) -> StoreResult<()>;
    /// `Conflict` naming the API keys (`tenant/key`) restricted to this route and the
    /// policies bound to it.
    async fn delete_route(&self, id: Uuid) -> StoreResult<()>;

    // --- policies ---
    async fn list_policies(&self, page: Page) -> StoreResult<Vec<PolicyRecord>>;
    async fn get_policy(&self, key: &Lookup) -> StoreResult<Option<PolicyRecord>>;
    /// `Conflict` on a duplicate name or a second policy of the same type on the same
    /// route, service or tenant (naming the one there);
    /// `InvalidReference{field:"route"|"service"|"tenant"|"config.llm.service"}` on a
    /// missing reference.
    async fn insert_policy(&self, r: &PolicyRecord) -> StoreResult<()>;
    async fn update_policy(&self, r: &PolicyRecord) -> StoreResult<()>;
    async fn delete_policy(&self, id: Uuid) -> StoreResult<()>;

    // --- gateway secrets and key rotation ---
    async fn get_system_secret(&self, name: &str) -> StoreResult<Option<SystemSecretRecord>>;
    /// Inserts unless a secret of that name exists (another node may have won the race);
    /// returns the stored record either way.
    async fn insert_system_secret(&self, r: &SystemSecretRecord)
    -> StoreResult<SystemSecretRecord>;
    /// Re-encrypts every stored secret (credential values and system secrets) in one
    /// transaction; returns how many values were rewritten.
    async fn reencrypt_all(&self, f: Reencrypt<'_>) -> StoreResult<usize>;

    // --- usage history (not configuration: no version bump) ---
    /// Adds each row's counters and histogram to the stored row of its minute × tenant ×
    /// key × route × model (creating it when absent), all rows in one transaction.
    /// `bucket_start` is truncated to the minute.
    async fn add_usage(&self, rows: &[UsageRow]) -> StoreResult<()>;
    /// Adds `rows` (as `add_usage`) and moves each spool segment's progress from `from`
    /// to `to` bytes, in one transaction; `Conflict` (and nothing written) when a segment's
    /// stored progress is not `from` or it is already complete (docs/architecture.md,
    /// "The usage spool").
    async fn apply_usage(&self, rows: &[UsageRow], marks: &[SpoolMark]) -> StoreResult<()>;
    /// A spool segment's stored progress: `(applied bytes, complete)`.
    async fn spool_mark(&self, segment: &str) -> StoreResult<Option<(i64, bool)>>;
    /// Stored rows with `from <= bucket_start < to` (of one tenant when `tenant_id` is
    /// set), ordered by `bucket_start`, then tenant, key, route and model ids.
    async fn query_usage(&self, q: &UsageQuery) -> StoreResult<Vec<UsageRow>>;
}

pub type SharedStore = Arc<dyn Store>;

/// Why a usage write failed.
#[derive(Debug)]
pub enum UsageWriteError {
    /// Another writer already counted those spool bytes: re-read its progress.
    Counted(String),
    Failed(String),
}

impl std::fmt::Display for UsageWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsageWriteError::Counted(m) | UsageWriteError::Failed(m) => f.write_str(m),
        }
    }
}

/// Where the usage aggregator (`actors::metrics`) writes its rows: the store, or a fake
/// in its tests. Narrower than [`Store`], with the aggregator's own error.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// The rows and the spool progress they cover, in one transaction.
    async fn apply_usage(
        &self,
        rows: &[UsageRow],
        marks: &[SpoolMark],
    ) -> Result<(), UsageWriteError>;
    /// A segment's stored progress: `(bytes counted, complete)`.
    async fn spool_mark(&self, segment: &str) -> Result<Option<(u64, bool)>, String>;
    /// Records when each key was last used (never moving a stored time back).
    async fn touch_api_keys(&self, used: &[(Uuid, DateTime<Utc>)]) -> Result<(), String>;
}

/// The metrics aggregator writes its batches through the store.
#[async_trait]
impl UsageStore for SharedStore {
    async fn apply_usage(
        &self,
        rows: &[UsageRow],
        marks: &[SpoolMark],
    ) -> Result<(), UsageWriteError> {
        Store::apply_usage(self.as_ref(), rows, marks)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => UsageWriteError::Counted(m),
                e => UsageWriteError::Failed(e.to_string()),
            })
    }

    async fn spool_mark(&self, segment: &str) -> Result<Option<(u64, bool)>, String> {
        Store::spool_mark(self.as_ref(), segment)
            .await
            .map(|m| m.map(|(bytes, complete)| (u64::try_from(bytes).unwrap_or(0), complete)))
            .map_err(|e| e.to_string())
    }

    async fn touch_api_keys(&self, used: &[(Uuid, DateTime<Utc>)]) -> Result<(), String> {
        Store::touch_api_keys(self.as_ref(), used)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Connects to the database named by `url`: `sqlite://…` or `postgres://…`/`postgresql://…`.
pub async fn connect(url: &str) -> StoreResult<SharedStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else {
        Err(StoreError::Other(
            "unsupported database URL scheme: expected sqlite:// or postgres://".into(),
        ))
    }
}

/// Classifies an sqlx error. Faults of the database rather than of the request are
/// `Unavailable` (→ 503, never 500): unreachable (I/O, TLS, pool timed out or closed,
/// PostgreSQL class 08 and shutdown states), full (SQLite `SQLITE_FULL`, PostgreSQL class
/// 53), locked (SQLite `SQLITE_BUSY`/`SQLITE_LOCKED` once the busy timeout has passed,
/// PostgreSQL `lock_not_available`), failing I/O (`SQLITE_IOERR`, `SQLITE_CANTOPEN`) and
/// read-only files or standbys.
pub(crate) fn map_sqlx(e: sqlx::Error) -> StoreError {
    let unavailable = |reason| {
        StoreError::Unavailable(Unavailable {
            reason,
            detail: e.to_string(),
        })
    };
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => unavailable(DB_UNREACHABLE),
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(format!("duplicate value: {}", db.message()))
        }
        // Only reachable when a concurrent write slipped past the in-transaction checks.
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Conflict(format!("reference violation: {}", db.message()))
        }
        sqlx::Error::Database(db) => match db.code().as_deref().and_then(database_fault) {
            Some(reason) => unavailable(reason),
            None => StoreError::Other(e.to_string()),
        },
        _ => StoreError::Other(e.to_string()),
    }
}

/// The fault a database error code names, if it is one: a PostgreSQL SQLSTATE has five
/// characters, an SQLite (extended) result code is a number of at most four digits.
fn database_fault(code: &str) -> Option<&'static str> {
    if code.len() < 5
        && let Ok(extended) = code.parse::<i32>()
    {
        // The primary result code is the low byte of the extended one.
        return match extended & 0xff {
            13 => Some(DB_FULL),      // SQLITE_FULL
            5 | 6 => Some(DB_LOCKED), // SQLITE_BUSY, SQLITE_LOCKED
            10 | 14 => Some(DB_IO),   // SQLITE_IOERR, SQLITE_CANTOPEN
            8 => Some(DB_READ_ONLY),  // SQLITE_READONLY
            _ => None,
        };
    }
    match code {
        "53100" => Some(DB_FULL),
        "55P03" => Some(DB_LOCKED),
        "25006" => Some(DB_READ_ONLY),
        "57P01" | "57P02" | "57P03" => Some(DB_UNREACHABLE),
        _ if code.starts_with("08") => Some(DB_UNREACHABLE),
        _ if code.starts_with("53") => Some(DB_EXHAUSTED),
        "58030" => Some(DB_IO),
        _ => None,
    }
}

/// The usage aggregator's view of the store.
pub fn usage_writer(store: SharedStore) -> Arc<dyn UsageStore> {
    Arc::new(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_faults_are_classified() {
        // SQLite: primary and extended codes.
        assert_eq!(database_fault("13"), Some(DB_FULL));
        assert_eq!(database_fault("5"), Some(DB_LOCKED));
        assert_eq!(database_fault("517"), Some(DB_LOCKED)); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(database_fault("6"), Some(DB_LOCKED));
        assert_eq!(database_fault("778"), Some(DB_IO)); // SQLITE_IOERR_WRITE
        assert_eq!(database_fault("1032"), Some(DB_READ_ONLY)); // SQLITE_READONLY_DBMOVED
        assert_eq!(database_fault("19"), None); // SQLITE_CONSTRAINT: the request's fault
        assert_eq!(database_fault("1"), None);
        // PostgreSQL SQLSTATEs.
        assert_eq!(database_fault("53100"), Some(DB_FULL));
        assert_eq!(database_fault("53300"), Some(DB_EXHAUSTED));
        assert_eq!(database_fault("08006"), Some(DB_UNREACHABLE));
        assert_eq!(database_fault("57P01"), Some(DB_UNREACHABLE));
        assert_eq!(database_fault("55P03"), Some(DB_LOCKED));
        assert_eq!(database_fault("23505"), None);
        assert_eq!(database_fault("42P01"), None);
    }

    #[test]
    fn pool_faults_are_unavailable() {
        for e in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            match map_sqlx(e) {
                StoreError::Unavailable(u) => assert_eq!(u.reason, DB_UNREACHABLE),
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
    }

    /// Both trees must list the same migrations so a schema change lands on both backends.
    #[test]
    fn migrators_are_in_lockstep() {
        let pairs = |m: &sqlx::migrate::Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        let sqlite = pairs(super::sqlite::migrator());
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, pairs(super::postgres::migrator()));
    }
}
