//! The rule every transaction follows: a pooled connection goes back to the pool outside any
//! transaction, or not at all (docs/architecture.md, "Storage faults").
//!
//! Why this needs care: sqlx counts a connection's transaction depth itself. When a COMMIT
//! fails (SQLite after `SQLITE_FULL` or an I/O error, which roll the transaction back on their
//! own) the count stays at 1 and the ROLLBACK that follows fails too ("no transaction is
//! active"), so the connection would go back to the pool at depth 1 and every later
//! `BEGIN IMMEDIATE` on it would fail with "attempted to call begin_with at non-zero
//! transaction depth" until a restart.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::pool::{PoolConnection, PoolConnectionMetadata};
use sqlx::{Connection, Database};

use super::StoreResult;

/// How long checking a connection after a failed transaction may take before it is
/// discarded instead (a frozen server must not hold the caller).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Fixes the output type of an `async` block whose body uses `?` (used by `in_tx!`).
pub(super) fn typed<T, F: Future<Output = StoreResult<T>>>(f: F) -> F {
    f
}

/// Hands back `result` after making sure `conn` is outside any transaction: after a failure
/// it first lets the rollback of a dropped transaction run (a ping is queued behind it on
/// both backends), then discards the connection if it is still inside a transaction, or if
/// it does not answer, so the pool opens a fresh one.
pub(super) async fn settle<DB: Database, T>(
    mut conn: PoolConnection<DB>,
    result: StoreResult<T>,
) -> StoreResult<T> {
    if result.is_ok() && !conn.is_in_transaction() {
        return result;
    }
    let answered = matches!(
        tokio::time::timeout(SETTLE_TIMEOUT, conn.ping()).await,
        Ok(Ok(()))
    );
    if !answered || conn.is_in_transaction() {
        tracing::warn!(
            answered,
            "discarding a database connection left inside a failed transaction"
        );
        conn.close_on_drop();
    }
    result
}

/// The pool's `after_release` check, for every connection whatever returned it (the
/// migrator, a dropped future): one still inside a transaction is closed, not reused.
pub(super) fn outside_transaction<DB: Database>(
    conn: &mut DB::Connection,
    _: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    let clean = !conn.is_in_transaction();
    if !clean {
        tracing::warn!("closing a database connection returned inside a transaction");
    }
    Box::pin(async move { Ok(clean) })
}
