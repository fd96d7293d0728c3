//! The embedded default: SQLite in one file, WAL journal, one writer at a time.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Sqlite, Transaction};

use super::{StoreResult, map_sqlx};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite migrations, embedded at compile time.
pub fn migrator() -> &'static Migrator {
    &MIGRATOR
}

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by `url`, e.g.
    /// `sqlite://data/gateway.db`. Does not migrate: call `Store::migrate`.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(map_sqlx)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // Every connection to an in-memory database is a database of its own.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(map_sqlx)?;
        Ok(Self { pool })
    }

    pub fn migrator() -> &'static Migrator {
        migrator()
    }

    /// Takes the write lock up front: a deferred transaction that reads and then writes
    /// fails with SQLITE_BUSY when another writer got in between.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// A deferred transaction: in WAL mode it reads one snapshot from its first read on.
    async fn read_tx(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin().await
    }
}

super::sql::impl_store!(SqliteStore, sqlx::Sqlite, Sqlite);
