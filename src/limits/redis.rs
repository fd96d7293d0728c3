//! The counter store several gateway nodes share: Redis (`TOLLGATE_REDIS_URL`). A
//! reservation is one Lua script — every counter checked, then every counter added, or
//! none — so it is atomic across nodes as the in-process store is within one; settlements
//! are a second script, sent in the background (docs/architecture.md, "Limits").
//!
//! Counters are plain integer keys under `tollgate:limits:`, expiring a minute after
//! their window ends. A call that fails or takes longer than `CALL_TIMEOUT` is a
//! `StoreFault`: each limit's `on_store_error` decides the request, and the connection
//! manager reconnects on its own. Each thread has its own connection (see `CONNECTIONS`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use redis::aio::ConnectionManager;

use super::store::{Adjustment, Counter, CounterKey, CounterStore, Reserved, StoreFault};

/// A Redis call slower than this counts as an outage (the request must not wait on it).
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long start-up waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Every counter key starts with this.
const PREFIX: &str = "tollgate:limits:";
/// A counter outlives its window by this much, so a late settlement still finds it.
const GRACE_SECS: i64 = 60;

/// KEYS: the counters; ARGV: amount, limit, window end (Unix seconds) per counter, then
/// the grace. Returns `{1, -1, totals…}` (granted, totals after) or
/// `{0, index, totals…}` (refused by the counter at 0-based `index`, totals unchanged).
const RESERVE: &str = r"
local n = #KEYS
local totals = {}
for i = 1, n do
  totals[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, n do
  local amount = tonumber(ARGV[(i - 1) * 3 + 1])
  local limit = tonumber(ARGV[(i - 1) * 3 + 2])
  local earlier = 0
  for j = 1, i - 1 do
    if KEYS[j] == KEYS[i] then earlier = earlier + tonumber(ARGV[(j - 1) * 3 + 1]) end
  end
  if totals[i] + earlier + amount > limit then
    local out = {0, i - 1}
    for k = 1, n do out[k + 2] = totals[k] end
    return out
  end
end
local grace = tonumber(ARGV[n * 3 + 1])
local out = {1, -1}
for i = 1, n do
  out[i + 2] = redis.call('INCRBY', KEYS[i], ARGV[(i - 1) * 3 + 1])
  redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[(i - 1) * 3 + 3]) + grace)
end
return out
";

/// KEYS: the counters; ARGV: each one's delta. A counter that is gone (its window long
/// over) is not re-created; none goes below zero.
const ADJUST: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local v = redis.call('INCRBY', KEYS[i], ARGV[i])
    if v < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
return 0
";

pub struct RedisStore {
    client: redis::Client,
    /// Tells this store's connections apart in each thread's cache (tests run several).
    id: u64,
    reserve: redis::Script,
    adjust: redis::Script,
}

static NEXT_STORE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Each thread's own connection per store: a proxy worker's calls run on the worker's
    /// event loop, never handed to a connection driven by another thread (a shared one
    /// cost two cross-thread wake-ups per call; docs/architecture.md, "Limits").
    static CONNECTIONS: RefCell<Vec<(u64, ConnectionManager)>> = const { RefCell::new(Vec::new()) };
}

fn fault(e: impl std::fmt::Display) -> StoreFault {
    StoreFault(e.to_string())
}

fn key(k: &CounterKey) -> String {
    format!("{PREFIX}{k}")
}

/// The thread's connection, within the call's time bound (a Redis that is down must not
/// hold the request longer than a call would).
async fn timed_connection(store: &RedisStore) -> Result<ConnectionManager, StoreFault> {
    match tokio::time::timeout(CALL_TIMEOUT, store.connection()).await {
        Ok(conn) => conn,
        Err(_) => Err(StoreFault(format!(
            "no connection within {} ms",
            CALL_TIMEOUT.as_millis()
        ))),
    }
}

async fn timed<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreFault> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(fault),
        Err(_) => Err(StoreFault(format!(
            "no answer within {} ms",
            CALL_TIMEOUT.as_millis()
        ))),
    }
}

impl RedisStore {
    /// Connects (start-up fails when Redis cannot be reached then: a misconfigured URL is
    /// found at once, not at the first request).
    pub async fn connect(url: &str) -> Result<RedisStore, StoreFault> {
        let client = redis::Client::open(url).map_err(fault)?;
        let store = RedisStore {
            client,
            id: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
            reserve: redis::Script::new(RESERVE),
            adjust: redis::Script::new(ADJUST),
        };
        tokio::time::timeout(CONNECT_TIMEOUT, store.connection())
            .await
            .map_err(|_| StoreFault("no connection within 5 s".into()))??;
        Ok(store)
    }

    /// This thread's connection, if it has one.
    fn cached(&self) -> Option<ConnectionManager> {
        CONNECTIONS.with(|c| {
            c.borrow()
                .iter()
                .find(|(id, _)| *id == self.id)
                .map(|(_, conn)| conn.clone())
        })
    }

    /// This thread's connection, opened on first use (it reconnects by itself after).
    async fn connection(&self) -> Result<ConnectionManager, StoreFault> {
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        let conn = ConnectionManager::new(self.client.clone())
            .await
            .map_err(fault)?;
        CONNECTIONS.with(|c| c.borrow_mut().push((self.id, conn.clone())));
        Ok(conn)
    }
}

impl CounterStore for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn reserve<'a>(
        &'a self,
        counters: &'a [Counter],
        _now: i64,
    ) -> BoxFuture<'a, Result<Reserved, StoreFault>> {
        Box::pin(async move {
            let mut call = self.reserve.prepare_invoke();
            for c in counters {
                call.key(key(&c.key));
            }
            for c in counters {
                call.arg(c.amount).arg(c.limit).arg(c.window_end);
            }
            call.arg(GRACE_SECS);
            let mut conn = timed_connection(self).await?;
            let out: Vec<i64> = timed(call.invoke_async(&mut conn)).await?;
            match out.as_slice() {
                [1, _, totals @ ..] if totals.len() == counters.len() => {
                    Ok(Reserved::Granted(totals.to_vec()))
                }
                [0, index, totals @ ..] if totals.len() == counters.len() => {
                    Ok(Reserved::Refused {
                        counter: usize::try_from(*index).map_err(fault)?,
                        totals: totals.to_vec(),
                    })
                }
                other => Err(StoreFault(format!("unexpected reply {other:?}"))),
            }
        })
    }

    fn adjust(&self, adjustments: Vec<Adjustment>) {
        if adjustments.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("limit settlement outside a runtime; not sent to Redis");
            return;
        };
        let script = self.adjust.clone();
        let (cached, client) = (self.cached(), self.client.clone());
        runtime.spawn(async move {
            let mut conn = match cached {
                Some(conn) => conn,
                None => match timed(ConnectionManager::new(client)).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "limit settlement not applied in Redis");
                        return;
                    }
                },
            };
            let mut call = script.prepare_invoke();
            for a in &adjustments {
                call.key(key(&a.key));
            }
            for a in &adjustments {
                call.arg(a.delta);
            }
            let sent: Result<i64, _> = timed(call.invoke_async(&mut conn)).await;
            if let Err(e) = sent {
                // The reservation stays counted until its window ends: limits err towards
                // refusing, never towards overspending.
                tracing::warn!(error = %e, "limit settlement not applied in Redis");
            }
        });
    }

    fn read<'a>(
        &'a self,
        keys: &'a [CounterKey],
        _now: i64,
    ) -> BoxFuture<'a, Result<Vec<i64>, StoreFault>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let full: Vec<String> = keys.iter().map(key).collect();
            let mut conn = timed_connection(self).await?;
            let mut cmd = redis::cmd("MGET");
            cmd.arg(&full);
            let values: Vec<Option<i64>> = timed(cmd.query_async(&mut conn)).await?;
            Ok(values.into_iter().map(Option::unwrap_or_default).collect())
        })
    }
}
