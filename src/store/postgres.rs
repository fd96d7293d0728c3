//! Production: PostgreSQL.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, Transaction};

use super::{StoreError, StoreResult, map_sqlx};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL migrations, embedded at compile time.
pub fn migrator() -> &'static Migrator {
    &MIGRATOR
}

/// How long a caller waits for a pooled connection (opening one included) before
/// `PoolTimedOut` (→ 503): an unreachable server answers the admin API within about a second.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `connect` keeps trying at start, when the server may still be starting.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`). Fails with `Unavailable` when the server cannot
    /// be reached within a few seconds, instead of waiting forever.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(map_sqlx)?;
        let pool = Self::pool_options().connect_lazy_with(options);
        let started = Instant::now();
        // Each try is bounded by the acquire timeout; only an unreachable server is worth
        // another (a wrong password or database name is not).
        loop {
            let e = match pool.acquire().await {
                Ok(_) => break,
                Err(e) => map_sqlx(e),
            };
            let unreachable = matches!(e, StoreError::Unavailable(_));
            if !unreachable || started.elapsed() + ACQUIRE_TIMEOUT >= CONNECT_PATIENCE {
                pool.close().await;
                return Err(e);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(Self { pool })
    }

    /// A store whose connections are opened on first use: `connect` without the first try.
    pub fn connect_lazy(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(map_sqlx)?;
        Ok(Self {
            pool: Self::pool_options().connect_lazy_with(options),
        })
    }

    fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_release(super::tx::outside_transaction::<Postgres>)
    }

    pub fn migrator() -> &'static Migrator {
        migrator()
    }

    /// READ COMMITTED; configuration writers serialise on the `config_state` row lock.
    async fn write_tx(conn: &mut PgConnection) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
        conn.begin().await
    }

    /// One snapshot for the whole read.
    async fn read_tx(conn: &mut PgConnection) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
        conn.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
    }
}

super::sql::impl_store!(PgStore, sqlx::Postgres, Postgres);
