//! The embedded default: SQLite in one file, WAL journal, one writer at a time.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{Connection, Sqlite, Transaction};

use super::{StoreResult, map_sqlx};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite migrations, embedded at compile time.
pub fn migrator() -> &'static Migrator {
    &MIGRATOR
}

/// How long a statement waits for another connection's write lock before failing with
/// `SQLITE_BUSY` (→ 503). Writers hold the lock for milliseconds; a lock held longer is an
/// outside writer or a stuck disk, and the admin API answers within about a second either way.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a caller waits for a free pooled connection before `PoolTimedOut` (→ 503).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by `url`, e.g.
    /// `sqlite://data/gateway.db`. Does not migrate: call `Store::migrate`.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = Self::pool_options(url)
            .connect_with(Self::connect_options(url)?)
            .await
            .map_err(map_sqlx)?;
        Ok(Self { pool })
    }

    /// The options every connection of the store is opened with.
    pub fn connect_options(url: &str) -> StoreResult<SqliteConnectOptions> {
        Ok(SqliteConnectOptions::from_str(url)
            .map_err(map_sqlx)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true))
    }

    /// The store's pool settings; a pool built from them (plus hooks of the caller's, as the
    /// storage-fault tests add) makes a store with `from_pool`.
    pub fn pool_options(url: &str) -> SqlitePoolOptions {
        // Every connection to an in-memory database is a database of its own.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 8 })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_release(super::tx::outside_transaction::<Sqlite>)
    }

    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    pub fn migrator() -> &'static Migrator {
        migrator()
    }

    /// Takes the write lock up front: a deferred transaction that reads and then writes
    /// fails with SQLITE_BUSY when another writer got in between.
    async fn write_tx(conn: &mut SqliteConnection) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
        conn.begin_with("BEGIN IMMEDIATE").await
    }

    /// A deferred transaction: in WAL mode it reads one snapshot from its first read on.
    async fn read_tx(conn: &mut SqliteConnection) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
        conn.begin().await
    }
}

super::sql::impl_store!(SqliteStore, sqlx::Sqlite, Sqlite);
