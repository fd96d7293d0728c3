//! The counter store several gateway nodes share: Redis (`TOLLGATE_REDIS_URL`). A
//! reservation is one Lua script — every counter checked, then every counter added, or
//! none — so it is atomic across nodes as the in-process store is within one
//! (docs/architecture.md, "Limits").
//!
//! Two things keep Redis off most requests' path:
//! - **Leases.** When a counter is far from its limit, the script adds a share of what is
//!   left (1/`LEASE_DIVISOR`, at least one more request's amount) on top of the request's
//!   own amount, and this node serves the next reservations of that counter from the share
//!   without a round trip. Leased amounts count as used in Redis, so every node together
//!   never passes a limit; a node only refuses early, never late. Near the limit no lease
//!   is given and every reservation goes to Redis. What a lease has left goes back to Redis
//!   after `LEASE_TTL`, with the node's next reservation of that counter, and at shutdown.
//! - **Batched settlements.** Settlements a lease cannot absorb are sent in the background:
//!   while one batch is on its way, the next gathers, summed per counter.
//!
//! Counters are plain integer keys under `tollgate:limits:`, expiring a minute after
//! their window ends. A call that fails or takes longer than `CALL_TIMEOUT` is a
//! `StoreFault`: each limit's `on_store_error` decides the request, and the connection
//! manager reconnects on its own. Each thread has its own connection (see `CONNECTIONS`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use redis::aio::ConnectionManager;

use super::store::{Adjustment, Counter, CounterKey, CounterStore, Reserved, Slots, StoreFault};

/// A Redis call slower than this counts as an outage (the request must not wait on it).
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long start-up waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Every counter key starts with this.
const PREFIX: &str = "tollgate:limits:";
/// A counter outlives its window by this much, so a late settlement still finds it.
const GRACE_SECS: i64 = 60;
/// A lease is this share of what a counter has left (1/256): with a few nodes, what they
/// hold unused stays a small part of any limit.
const LEASE_DIVISOR: i64 = 256;
/// A lease older than this is given back (what is left of it) rather than used.
const LEASE_TTL: Duration = Duration::from_secs(1);
/// How often old leases are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// KEYS: the counters; ARGV: amount, limit, window end (Unix seconds) and credit per
/// counter, then the grace and the lease divisor (0: no leases). Credits (what this node's
/// old leases have left) are given back first. Returns `{1, -1, totals…, leases…}`
/// (granted: totals after, and the lease added to each counter beyond its amount) or
/// `{0, index, totals…}` (refused by the counter at 0-based `index`, nothing added).
const RESERVE: &str = r"
local n = #KEYS
local grace = tonumber(ARGV[n * 4 + 1])
local divisor = tonumber(ARGV[n * 4 + 2])
for i = 1, n do
  local credit = tonumber(ARGV[(i - 1) * 4 + 4])
  if credit > 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('DECRBY', KEYS[i], credit) < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
local totals = {}
for i = 1, n do
  totals[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, n do
  local amount = tonumber(ARGV[(i - 1) * 4 + 1])
  local limit = tonumber(ARGV[(i - 1) * 4 + 2])
  local earlier = 0
  for j = 1, i - 1 do
    if KEYS[j] == KEYS[i] then earlier = earlier + tonumber(ARGV[(j - 1) * 4 + 1]) end
  end
  if totals[i] + earlier + amount > limit then
    local out = {0, i - 1}
    for k = 1, n do out[k + 2] = totals[k] end
    return out
  end
end
local out = {1, -1}
for i = 1, n do
  local amount = tonumber(ARGV[(i - 1) * 4 + 1])
  local lease = 0
  if divisor > 0 then
    local limit = tonumber(ARGV[(i - 1) * 4 + 2])
    lease = math.floor((limit - totals[i] - amount) / divisor)
    if lease < amount or lease < 1 then lease = 0 end
  end
  out[i + 2] = redis.call('INCRBY', KEYS[i], amount + lease)
  out[n + i + 2] = lease
  redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[(i - 1) * 4 + 3]) + grace)
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
    /// Tells this store's connections apart in each thread's cache (tests run several).
    id: u64,
    reserve: redis::Script,
    shared: Arc<Shared>,
}

/// What the request path, the settlement sender and the lease sweeper share.
struct Shared {
    client: redis::Client,
    adjust: redis::Script,
    /// This node's leases, by counter.
    leases: Mutex<HashMap<CounterKey, Lease>>,
    /// Settlements not yet sent (see `send_later`).
    pending: Mutex<Pending>,
    /// The background tasks' connection, opened by the first that needs one.
    background: Mutex<Option<ConnectionManager>>,
}

/// A share of a counter this node took ahead of its requests.
#[derive(Debug, Clone, Copy)]
struct Lease {
    /// Not yet used by a request.
    available: i64,
    /// The counter's total in Redis when the lease was taken: with `available`, the total
    /// this node's requests see (`granted_total - available`).
    granted_total: i64,
    taken: Instant,
}

impl Lease {
    fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.taken) < LEASE_TTL
    }
}

/// Settlements waiting for the sender: deltas summed per counter, and whether a sender task
/// is running (at most one per store, so a busy gateway sends one script per round trip
/// instead of one per request).
#[derive(Default)]
struct Pending {
    deltas: HashMap<CounterKey, i64>,
    sending: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its map whole (plain inserts and removals).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The next batch, or `None` (and the sender stops) when nothing is waiting.
    fn next_batch(&self) -> Option<HashMap<CounterKey, i64>> {
        let mut p = lock(&self.pending);
        p.deltas.retain(|_, delta| *delta != 0);
        if p.deltas.is_empty() {
            p.sending = false;
            return None;
        }
        Some(std::mem::take(&mut p.deltas))
    }

    /// Queues deltas for Redis and starts the sender on the current runtime unless one
    /// runs (it takes these with its next batch).
    fn send_later(self: &Arc<Self>, deltas: impl IntoIterator<Item = (CounterKey, i64)>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("limit settlement outside a runtime; not sent to Redis");
            return;
        };
        let start = {
            let mut p = lock(&self.pending);
            for (key, delta) in deltas {
                *p.deltas.entry(key).or_default() += delta;
            }
            !p.deltas.is_empty() && !std::mem::replace(&mut p.sending, true)
        };
        if !start {
            return;
        }
        // Made before the task, so a task dropped before its first poll resets it too.
        let stopped = Stopped(Some(Arc::clone(self)));
        let shared = Arc::clone(self);
        runtime.spawn(async move {
            while let Some(batch) = shared.next_batch() {
                if let Err(e) = shared.send_now(&batch).await {
                    // The amounts stay counted until their window ends: limits err
                    // towards refusing, never towards overspending.
                    tracing::warn!(error = %e, counters = batch.len(), "limit settlement not applied in Redis");
                }
            }
            stopped.finished();
        });
    }

    /// One batch of settlements as one script call.
    async fn send_now(&self, batch: &HashMap<CounterKey, i64>) -> Result<(), StoreFault> {
        let cached = lock(&self.background).clone();
        let mut conn = match cached {
            Some(conn) => conn,
            None => {
                let conn = timed(ConnectionManager::new(self.client.clone())).await?;
                *lock(&self.background) = Some(conn.clone());
                conn
            }
        };
        let mut call = self.adjust.prepare_invoke();
        let mut deltas = Vec::with_capacity(batch.len());
        for (k, delta) in batch {
            call.key(key(k));
            deltas.push(*delta);
        }
        for delta in deltas {
            call.arg(delta);
        }
        let _: i64 = timed(call.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// Takes out the leases older than `LEASE_TTL` (all of them with `all`), giving back
    /// what they have left.
    fn return_leases(self: &Arc<Self>, all: bool) {
        let now = Instant::now();
        let mut back = Vec::new();
        lock(&self.leases).retain(|key, lease| {
            let keep = !all && lease.fresh(now);
            if !keep && lease.available > 0 {
                back.push((*key, -lease.available));
            }
            keep
        });
        if !back.is_empty() {
            self.send_later(back);
        }
    }
}

/// Marks the sender stopped when its task is dropped before it ran out of batches (its
/// runtime shut down), so the next settlement starts another.
struct Stopped(Option<Arc<Shared>>);

impl Stopped {
    /// The sender ran out of batches: `next_batch` marked it stopped, under the lock (a
    /// newer sender may have started since, which this must not mark stopped).
    fn finished(mut self) {
        self.0 = None;
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            lock(&shared.pending).sending = false;
        }
    }
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
    if let Some(conn) = store.cached() {
        return Ok(conn);
    }
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

/// Whether a reservation names one counter twice (two scopes sharing one): such a
/// reservation takes no lease and is not served from one.
fn repeats_a_key(counters: &[Counter]) -> bool {
    counters
        .iter()
        .enumerate()
        .any(|(i, c)| counters[..i].iter().any(|o| o.key == c.key))
}

impl RedisStore {
    /// Connects (start-up fails when Redis cannot be reached then: a misconfigured URL is
    /// found at once, not at the first request), and starts the task that gives old leases
    /// back (it ends with the store).
    pub async fn connect(url: &str) -> Result<RedisStore, StoreFault> {
        let client = redis::Client::open(url).map_err(fault)?;
        let store = RedisStore {
            id: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
            reserve: redis::Script::new(RESERVE),
            shared: Arc::new(Shared {
                client,
                adjust: redis::Script::new(ADJUST),
                leases: Mutex::default(),
                pending: Mutex::default(),
                background: Mutex::default(),
            }),
        };
        tokio::time::timeout(CONNECT_TIMEOUT, store.connection())
            .await
            .map_err(|_| StoreFault("no connection within 5 s".into()))??;
        let weak: Weak<Shared> = Arc::downgrade(&store.shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(shared) = weak.upgrade() else { return };
                shared.return_leases(false);
            }
        });
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
        let conn = ConnectionManager::new(self.shared.client.clone())
            .await
            .map_err(fault)?;
        CONNECTIONS.with(|c| c.borrow_mut().push((self.id, conn.clone())));
        Ok(conn)
    }

    /// Serves a reservation from this node's leases when every counter has a fresh one with
    /// enough left; else takes the leases it found out and answers what they have left, per
    /// counter (it goes back to Redis with the reservation, as credits).
    fn serve_from_leases(&self, counters: &[Counter]) -> Result<Reserved, Vec<i64>> {
        let now = Instant::now();
        let mut leases = lock(&self.shared.leases);
        let covered = counters.iter().all(|c| {
            leases
                .get(&c.key)
                .is_some_and(|l| l.fresh(now) && l.available >= c.amount)
        });
        if covered {
            let totals = counters
                .iter()
                .filter_map(|c| {
                    let lease = leases.get_mut(&c.key)?;
                    lease.available -= c.amount;
                    Some(lease.granted_total - lease.available)
                })
                .collect();
            return Ok(Reserved::Granted {
                totals,
                slots: Slots::new(),
            });
        }
        Err(counters
            .iter()
            .map(|c| leases.remove(&c.key).map_or(0, |l| l.available.max(0)))
            .collect())
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
            let repeats = repeats_a_key(counters);
            let credits = if repeats {
                vec![0; counters.len()]
            } else {
                match self.serve_from_leases(counters) {
                    Ok(reserved) => return Ok(reserved),
                    Err(credits) => credits,
                }
            };
            let mut call = self.reserve.prepare_invoke();
            for c in counters {
                call.key(key(&c.key));
            }
            for (c, credit) in counters.iter().zip(&credits) {
                call.arg(c.amount)
                    .arg(c.limit)
                    .arg(c.window_end)
                    .arg(*credit);
            }
            call.arg(GRACE_SECS)
                .arg(if repeats { 0 } else { LEASE_DIVISOR });
            let out: Result<Vec<i64>, StoreFault> = async {
                let mut conn = timed_connection(self).await?;
                timed(call.invoke_async(&mut conn)).await
            }
            .await;
            let out = match out {
                Ok(out) => out,
                Err(e) => {
                    // The credits did not reach Redis: send them later.
                    let back = counters.iter().zip(&credits);
                    self.shared
                        .send_later(back.filter(|(_, c)| **c > 0).map(|(c, n)| (c.key, -n)));
                    return Err(e);
                }
            };
            let n = counters.len();
            match out.as_slice() {
                [1, _, rest @ ..] if rest.len() == 2 * n => {
                    let (totals, extra) = rest.split_at(n);
                    let taken = Instant::now();
                    let mut leases = lock(&self.shared.leases);
                    let mut replaced = Vec::new();
                    for ((c, total), lease) in counters.iter().zip(totals).zip(extra) {
                        if *lease > 0 {
                            let old = leases.insert(
                                c.key,
                                Lease {
                                    available: *lease,
                                    granted_total: *total,
                                    taken,
                                },
                            );
                            // Another request of this node leased the same counter
                            // meanwhile: both shares count in Redis; keep the newer, give
                            // the older's rest back.
                            if let Some(old) = old.filter(|o| o.available > 0) {
                                replaced.push((c.key, -old.available));
                            }
                        }
                    }
                    drop(leases);
                    if !replaced.is_empty() {
                        self.shared.send_later(replaced);
                    }
                    // What this node's requests have used: the total less its lease.
                    Ok(Reserved::Granted {
                        totals: totals.iter().zip(extra).map(|(t, l)| t - l).collect(),
                        slots: Slots::new(),
                    })
                }
                [0, index, totals @ ..] if totals.len() == n => Ok(Reserved::Refused {
                    counter: usize::try_from(*index).map_err(fault)?,
                    totals: totals.iter().copied().collect(),
                }),
                other => Err(StoreFault(format!("unexpected reply {other:?}"))),
            }
        })
    }

    fn adjust(&self, adjustments: &[Adjustment]) {
        if adjustments.is_empty() {
            return;
        }
        // A settlement of a counter this node holds a lease on stays here: a give-back
        // returns to the lease, an overrun comes out of it when it can.
        let mut rest = Vec::new();
        {
            let mut leases = lock(&self.shared.leases);
            for a in adjustments {
                match leases.get_mut(&a.key) {
                    Some(lease) if a.delta <= 0 || lease.available >= a.delta => {
                        lease.available -= a.delta;
                    }
                    _ => rest.push((a.key, a.delta)),
                }
            }
        }
        if !rest.is_empty() {
            self.shared.send_later(rest);
        }
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
            // This node's unused leases count in Redis but are not used.
            let leases = lock(&self.shared.leases);
            Ok(values
                .into_iter()
                .zip(keys)
                .map(|(v, k)| {
                    let unused = leases.get(k).map_or(0, |l| l.available.max(0));
                    (v.unwrap_or_default() - unused).max(0)
                })
                .collect())
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.shared.return_leases(true);
            // Wait for the sender (bounded by its calls' timeouts).
            let started = Instant::now();
            while lock(&self.shared.pending).sending && started.elapsed() < 2 * CALL_TIMEOUT {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Kind, OwnerId};

    fn url() -> String {
        std::env::var("TOLLGATE_TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "redis://127.0.0.1:6379/".into())
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn counter(key: CounterKey, amount: i64, limit: i64) -> Counter {
        Counter {
            key,
            amount,
            limit,
            window_end: key.window_start + 120,
        }
    }

    fn fresh_key(kind: Kind) -> CounterKey {
        CounterKey {
            kind,
            owner: OwnerId::Tenant(uuid::Uuid::new_v4()),
            window_start: chrono::Utc::now().timestamp(),
        }
    }

    /// Settlements from many tasks on several threads are merged into batches and every
    /// one lands; a sender whose runtime is dropped before it ran does not stop the next.
    #[test]
    #[ignore = "needs Redis (127.0.0.1:6379 or TOLLGATE_TEST_REDIS_URL; .ci/run starts one)"]
    fn batched_settlements_all_land_and_survive_a_dropped_runtime() {
        let key = fresh_key(Kind::Tokens);
        let now = key.window_start;
        // Too close to its limit for a lease: every settlement goes to Redis.
        let counter = counter(key, 1000, 100_000);
        let window_end = counter.window_end;
        let adjustment = move |delta| Adjustment {
            key,
            delta,
            window_end,
        };

        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = first.block_on(RedisStore::connect(&url())).unwrap();
        let granted = first.block_on(store.reserve(std::slice::from_ref(&counter), now));
        assert_eq!(granted.unwrap().granted(), Some(&[1000][..]));
        // The sender is spawned but never polled: its runtime goes first.
        first.block_on(async { store.adjust(&[adjustment(-1)]) });
        drop(first);

        let store = Arc::new(store);
        let second = runtime();
        second.block_on(async {
            let tasks = (0..8).map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for _ in 0..100 {
                        store.adjust(&[adjustment(-1)]);
                        tokio::task::yield_now().await;
                    }
                })
            });
            for t in futures::future::join_all(tasks).await {
                t.unwrap();
            }
            // On a worker thread: this thread's cached connection died with `first`.
            let check = tokio::spawn(async move {
                let started = std::time::Instant::now();
                loop {
                    let total = store.read(&[key], now).await.unwrap()[0];
                    if total == 1000 - 1 - 800 {
                        break;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(5),
                        "settlements missing: total {total}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            check.await.unwrap();
        });
    }

    /// A counter far from its limit is leased: the node's next reservations do not touch
    /// Redis (another node sees the leased total, not each request), and shutdown gives the
    /// rest back.
    #[test]
    #[ignore = "needs Redis (127.0.0.1:6379 or TOLLGATE_TEST_REDIS_URL; .ci/run starts one)"]
    fn a_lease_serves_reservations_without_redis_and_goes_back_at_shutdown() {
        runtime().block_on(async {
            let key = fresh_key(Kind::Requests);
            let now = key.window_start;
            let (a, b) = (
                RedisStore::connect(&url()).await.unwrap(),
                RedisStore::connect(&url()).await.unwrap(),
            );
            let one = counter(key, 1, 1_000_000);
            let first = a.reserve(std::slice::from_ref(&one), now).await.unwrap();
            assert_eq!(first.granted(), Some(&[1][..]), "the request's own total");
            let leased = 1 + (1_000_000 - 1) / LEASE_DIVISOR;
            assert_eq!(b.read(&[key], now).await.unwrap(), vec![leased]);
            for n in 2..=100 {
                let r = a.reserve(std::slice::from_ref(&one), now).await.unwrap();
                assert_eq!(r.granted(), Some(&[n][..]), "served from the lease");
            }
            assert_eq!(
                b.read(&[key], now).await.unwrap(),
                vec![leased],
                "no call reached Redis"
            );
            assert_eq!(a.read(&[key], now).await.unwrap(), vec![100]);
            // A give-back stays in the lease.
            a.adjust(&[Adjustment {
                key,
                delta: -1,
                window_end: one.window_end,
            }]);
            assert_eq!(a.read(&[key], now).await.unwrap(), vec![99]);
            a.shutdown().await;
            assert_eq!(b.read(&[key], now).await.unwrap(), vec![99]);
        });
    }

    /// Two nodes spending one limit request by request, leases and all, are refused only
    /// when the limit is used up exactly: a lease never lets them pass it, and what one node
    /// holds the other cannot take twice.
    #[test]
    #[ignore = "needs Redis (127.0.0.1:6379 or TOLLGATE_TEST_REDIS_URL; .ci/run starts one)"]
    fn leases_on_two_nodes_never_pass_the_limit() {
        runtime().block_on(async {
            let key = fresh_key(Kind::Requests);
            let now = key.window_start;
            let nodes = [
                RedisStore::connect(&url()).await.unwrap(),
                RedisStore::connect(&url()).await.unwrap(),
            ];
            let one = counter(key, 1, 5_000);
            let mut granted = [0i64; 2];
            let mut refused = [false; 2];
            let mut turn = 0;
            while !(refused[0] && refused[1]) {
                let i = turn % 2;
                turn += 1;
                match nodes[i]
                    .reserve(std::slice::from_ref(&one), now)
                    .await
                    .unwrap()
                {
                    Reserved::Granted { .. } => {
                        granted[i] += 1;
                        refused[i] = false;
                    }
                    Reserved::Refused { .. } => refused[i] = true,
                }
                assert!(granted[0] + granted[1] <= 5_000, "{granted:?}");
            }
            assert_eq!(granted[0] + granted[1], 5_000, "{granted:?}");
            assert!(granted[0] > 0 && granted[1] > 0, "{granted:?}");
        });
    }
}
