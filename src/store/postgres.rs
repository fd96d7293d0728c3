//! Production: PostgreSQL.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::{StoreResult, map_sqlx};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL migrations, embedded at compile time.
pub fn migrator() -> &'static Migrator {
    &MIGRATOR
}

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`). Fails with `Unavailable` after the acquire
    /// timeout when the server cannot be reached, instead of waiting forever.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(map_sqlx)?;
        Ok(Self { pool })
    }

    pub fn migrator() -> &'static Migrator {
        migrator()
    }

    /// READ COMMITTED; configuration writers serialise on the `config_state` row lock.
    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// One snapshot for the whole read.
    async fn read_tx(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
    }
}

super::sql::impl_store!(PgStore, sqlx::Postgres, Postgres);
