//! The limits engine (docs/architecture.md, "Limits"): requests and tokens per fixed UTC
//! minute and spend per UTC day or month, counted in a [`CounterStore`]. A request reserves
//! every limit that applies to it at once, or none; the [`Reservation`] it gets back is
//! settled with the real usage once known, and releases itself when dropped unsettled, so
//! no path — an error, a client that left, a panic — leaks what it held.
//!
//! No web, storage or proxy code here: the proxy's limits stage names the scopes and the
//! demand, and renders a [`Refusal`].

pub mod clock;
pub mod memory;
pub mod redis;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use chrono::{DateTime, TimeZone, Utc};
use smallvec::SmallVec;

use crate::vocab::{BudgetPeriod, Limits, OnStoreError};

pub use clock::{Clock, ManualClock, SystemClock, Window, to_datetime};
pub use memory::MemoryStore;
pub use redis::RedisStore;
use store::Slots;
pub use store::{
    Adjustment, Counter, CounterKey, CounterStore, Counters, INLINE, Reserved, StoreFault,
};

/// The three kinds of limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Requests,
    Tokens,
    Budget,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Requests, Kind::Tokens, Kind::Budget];

    /// The limit's field name, as messages and metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Requests => "requests_per_minute",
            Kind::Tokens => "tokens_per_minute",
            Kind::Budget => "budget",
        }
    }

    /// Short tag in counter keys.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Kind::Requests => "rpm",
            Kind::Tokens => "tpm",
            Kind::Budget => "usd",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Kind::Requests => 0,
            Kind::Tokens => 1,
            Kind::Budget => 2,
        }
    }
}

/// One owner of limits a request falls under: a tenant, a key, or a route (per tenant
/// unless shared).
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// What it is (`tenant`, `key`, `route`) and its name: messages say `tenant acme`.
    pub owner: &'static str,
    pub name: &'a str,
    /// Names its counters.
    pub id: OwnerId,
    pub limits: &'a Limits,
}

impl<'a> Scope<'a> {
    pub fn tenant(id: uuid::Uuid, name: &'a str, limits: &'a Limits) -> Scope<'a> {
        Scope {
            owner: "tenant",
            name,
            id: OwnerId::Tenant(id),
            limits,
        }
    }

    pub fn key(id: uuid::Uuid, name: &'a str, limits: &'a Limits) -> Scope<'a> {
        Scope {
            owner: "key",
            name,
            id: OwnerId::Key(id),
            limits,
        }
    }

    /// A route's limits count per tenant unless they are `shared`.
    pub fn route(
        id: uuid::Uuid,
        name: &'a str,
        tenant: uuid::Uuid,
        limits: &'a Limits,
    ) -> Scope<'a> {
        Scope {
            owner: "route",
            name,
            id: OwnerId::Route(id, (!limits.is_shared()).then_some(tenant)),
            limits,
        }
    }
}

/// Names an owner's counters: `t:<tenant>`, `k:<key>`, `r:<route>` (shared) or
/// `r:<route>:t:<tenant>` (a route's limits per tenant). Written straight into each
/// counter's key, with no string of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerId {
    Tenant(uuid::Uuid),
    Key(uuid::Uuid),
    Route(uuid::Uuid, Option<uuid::Uuid>),
}

impl OwnerId {
    /// One machine word from the owner's kind and ids: what its hash writes, rather than
    /// field by field (a hasher round per field: what the derive does) — a request looks
    /// its owners up by it. Equal owners fold alike; the rare unequal ones that fold alike
    /// are told apart by `Eq`, as in any hash map.
    pub(crate) fn fold(&self) -> u64 {
        let id = |id: uuid::Uuid| {
            let (high, low) = id.as_u64_pair();
            high ^ low
        };
        match *self {
            OwnerId::Tenant(t) => id(t),
            OwnerId::Key(k) => id(k) ^ (1 << 56),
            OwnerId::Route(r, tenant) => id(r) ^ tenant.map_or(0, id).rotate_left(29) ^ (2 << 56),
        }
    }
}

impl std::hash::Hash for OwnerId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.fold());
    }
}

impl std::fmt::Display for OwnerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnerId::Tenant(id) => write!(f, "t:{id}"),
            OwnerId::Key(id) => write!(f, "k:{id}"),
            OwnerId::Route(id, None) => write!(f, "r:{id}"),
            OwnerId::Route(id, Some(tenant)) => write!(f, "r:{id}:t:{tenant}"),
        }
    }
}

/// What a request asks of its limits, estimated before the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    pub tokens: i64,
    /// Micro-dollars.
    pub cost_micro: i64,
}

/// One limit's standing, for the rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: i64,
    pub remaining: i64,
    /// Seconds until the window ends (at least 1).
    pub reset_secs: i64,
}

/// The tightest requests and tokens limits of a request (OpenAI's `x-ratelimit-*`
/// headers); `None` where no such limit applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Rate>,
    pub tokens: Option<Rate>,
}

impl RateHeaders {
    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Keeps the limit with the least remaining.
    fn offer(&mut self, kind: Kind, rate: Rate) {
        let slot = match kind {
            Kind::Requests => &mut self.requests,
            Kind::Tokens => &mut self.tokens,
            Kind::Budget => return,
        };
        if slot.is_none_or(|s| rate.remaining < s.remaining) {
            *slot = Some(rate);
        }
    }
}

/// A refused request: nothing was reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: Kind,
    /// Names the limit: `tenant acme: tokens_per_minute 200000`.
    pub message: String,
    /// Seconds until the refusing limit's window ends.
    pub retry_after_secs: i64,
    pub headers: RateHeaders,
    /// Refused because the counter store failed and the limit says `on_store_error: deny`.
    pub store_error: bool,
}

/// One limit's standing for the status endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub kind: Kind,
    /// Requests, tokens, or USD for a budget.
    pub limit: f64,
    pub used: f64,
    pub remaining: f64,
    pub resets_at: DateTime<Utc>,
    /// `day` or `month` for a budget.
    pub period: Option<BudgetPeriod>,
}

/// What the engine counted since start, for `/status` and metrics.
#[derive(Debug, Default)]
pub struct LimitCounts {
    /// Refusals by kind (`Kind::index`).
    rejections: [AtomicU64; 3],
    store_errors: AtomicU64,
}

impl LimitCounts {
    pub fn rejections(&self, kind: Kind) -> u64 {
        self.rejections[kind.index()].load(Ordering::Relaxed)
    }

    pub fn store_errors(&self) -> u64 {
        self.store_errors.load(Ordering::Relaxed)
    }
}

/// The engine: a counter store and the clock that picks windows.
pub struct Limiter {
    store: Arc<dyn CounterStore>,
    clock: ArcSwap<Box<dyn Clock>>,
    counts: LimitCounts,
}

/// What names a planned counter in a refusal and its headers (the counters themselves go
/// to the store in their own list, in the same order).
struct Planned<'s> {
    kind: Kind,
    limit: i64,
    window: Window,
    scope: &'s Scope<'s>,
    budget: Option<(f64, BudgetPeriod)>,
}

impl Scope<'_> {
    /// `tenant acme`.
    fn label(&self) -> String {
        format!("{} {}", self.owner, self.name)
    }
}

impl Limiter {
    pub fn new(store: Arc<dyn CounterStore>) -> Limiter {
        Limiter {
            store,
            clock: ArcSwap::from_pointee(Box::new(SystemClock) as Box<dyn Clock>),
            counts: LimitCounts::default(),
        }
    }

    /// The in-process engine (exact on one node).
    pub fn in_process() -> Limiter {
        Limiter::new(Arc::new(MemoryStore::new()))
    }

    /// Replaces the clock (tests roll windows over with a [`ManualClock`]).
    pub fn set_clock(&self, clock: Box<dyn Clock>) {
        self.clock.store(Arc::new(clock));
    }

    /// Now in Unix milliseconds: what a request's windows are found from.
    fn now_millis(&self) -> i64 {
        self.clock.load().now_millis()
    }

    pub fn counts(&self) -> &LimitCounts {
        &self.counts
    }

    /// Where the counters are (`in_process`, `redis`).
    pub fn store_name(&self) -> &'static str {
        self.store.name()
    }

    /// At shutdown: what the store holds ahead of requests goes back (see
    /// `CounterStore::shutdown`).
    pub async fn shutdown(&self) {
        self.store.shutdown().await;
    }

    fn plan<'s>(
        scopes: &'s [Scope<'s>],
        demand: Demand,
        now_ms: i64,
    ) -> (Counters, SmallVec<[Planned<'s>; INLINE]>) {
        // The counters go on to the reservation (a move, not a copy), inline for one scope.
        let mut counters = Counters::new();
        let mut planned = SmallVec::new();
        let minute = Window::minute(now_ms);
        for scope in scopes {
            let l = scope.limits;
            let mut add = |kind: Kind, limit: i64, amount: i64, window: Window, budget| {
                counters.push(Counter {
                    key: CounterKey {
                        kind,
                        owner: scope.id,
                        window_start: window.start,
                    },
                    amount,
                    limit,
                    window_end: window.end,
                });
                planned.push(Planned {
                    kind,
                    limit,
                    window,
                    scope,
                    budget,
                });
            };
            if let Some(n) = l.requests_per_minute {
                add(Kind::Requests, clamp(n), 1, minute, None);
            }
            if let Some(n) = l.tokens_per_minute {
                add(Kind::Tokens, clamp(n), demand.tokens, minute, None);
            }
            if let Some(b) = l.budget {
                let window = match b.period {
                    BudgetPeriod::Day => Window::day(now_ms),
                    BudgetPeriod::Month => Window::month(now_ms),
                };
                let budget = Some((b.amount_usd, b.period));
                add(
                    Kind::Budget,
                    b.micro_usd(),
                    demand.cost_micro,
                    window,
                    budget,
                );
            }
        }
        (counters, planned)
    }

    /// Reserves every limit of `scopes` for one request, or none. `Ok(None)`: nothing
    /// limits the request (no limit applies, or the store failed and every limit involved
    /// says `on_store_error: allow`).
    pub async fn reserve(
        &self,
        scopes: &[Scope<'_>],
        demand: Demand,
    ) -> Result<Option<Reservation>, Refusal> {
        let now_ms = self.now_millis();
        let (counters, planned) = Self::plan(scopes, demand, now_ms);
        if planned.is_empty() {
            return Ok(None);
        }
        let headers = |totals: &[i64]| {
            let mut h = RateHeaders::default();
            for (p, total) in planned.iter().zip(totals) {
                h.offer(
                    p.kind,
                    Rate {
                        limit: p.limit,
                        remaining: (p.limit - total).max(0),
                        reset_secs: p.window.seconds_left(now_ms),
                    },
                );
            }
            h
        };
        let now_s = now_ms.div_euclid(1000);
        let reserved = match self.store.reserve_ready(&counters, now_s) {
            Some(answer) => answer,
            None => self.store.reserve(&counters, now_s).await,
        };
        match reserved {
            Ok(Reserved::Granted { totals, slots }) => Ok(Some(Reservation {
                store: Arc::clone(&self.store),
                headers: headers(&totals),
                held: counters,
                slots,
                done: false,
            })),
            Ok(Reserved::Refused { counter, totals }) => {
                let Some(p) = planned.get(counter) else {
                    return Ok(None);
                };
                self.counts.rejections[p.kind.index()].fetch_add(1, Ordering::Relaxed);
                let what = match p.budget {
                    Some((usd, period)) => format!("budget {usd} USD per {}", period.as_str()),
                    None => format!("{} {}", p.kind.as_str(), p.limit),
                };
                Err(Refusal {
                    kind: p.kind,
                    message: format!("{}: {what}", p.scope.label()),
                    retry_after_secs: p.window.seconds_left(now_ms),
                    headers: headers(&totals),
                    store_error: false,
                })
            }
            Err(fault) => {
                self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
                let deny = planned
                    .iter()
                    .find(|p| p.scope.limits.on_store_error() == OnStoreError::Deny);
                match deny {
                    Some(p) => {
                        let label = p.scope.label();
                        tracing::error!(error = %fault, limit = %label, "limit counter store failed; refusing (on_store_error: deny)");
                        self.counts.rejections[p.kind.index()].fetch_add(1, Ordering::Relaxed);
                        Err(Refusal {
                            kind: p.kind,
                            message: format!(
                                "{label}: {} cannot be checked now (on_store_error: deny)",
                                p.kind.as_str()
                            ),
                            retry_after_secs: 1,
                            headers: RateHeaders::default(),
                            store_error: true,
                        })
                    }
                    None => {
                        tracing::warn!(error = %fault, "limit counter store failed; allowing the request unlimited (on_store_error: allow)");
                        Ok(None)
                    }
                }
            }
        }
    }

    /// Each limit of one owner as it stands now (the status endpoints).
    pub async fn standing(&self, scope: &Scope<'_>) -> Result<Vec<Standing>, StoreFault> {
        let now_ms = self.now_millis();
        let now = to_datetime(now_ms);
        let demand = Demand {
            tokens: 0,
            cost_micro: 0,
        };
        let (counters, planned) = Self::plan(std::slice::from_ref(scope), demand, now_ms);
        let keys: Vec<CounterKey> = counters.into_iter().map(|c| c.key).collect();
        let totals = self.store.read(&keys, now_ms.div_euclid(1000)).await?;
        Ok(planned
            .iter()
            .zip(totals)
            .map(|(p, used)| {
                let scale = if p.kind == Kind::Budget { 1e6 } else { 1.0 };
                let limit = p.limit as f64 / scale;
                let used = used as f64 / scale;
                Standing {
                    kind: p.kind,
                    limit,
                    used,
                    remaining: (limit - used).max(0.0),
                    resets_at: Utc.timestamp_opt(p.window.end, 0).single().unwrap_or(now),
                    period: p.budget.map(|b| b.1),
                }
            })
            .collect())
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What one request holds of its limits. Settle it with the real usage; dropped unsettled
/// it gives everything back (a failed call, a client that left).
pub struct Reservation {
    store: Arc<dyn CounterStore>,
    /// The counters added to, as added (each key names its kind).
    held: Counters,
    /// Their totals, where the store keeps them as slots (else empty: changes go through
    /// the store's `adjust`).
    slots: Slots,
    headers: RateHeaders,
    done: bool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("held", &self.held)
            .field("done", &self.done)
            .finish()
    }
}

impl Reservation {
    /// The request's rate-limit standing just after reserving.
    pub fn headers(&self) -> RateHeaders {
        self.headers
    }

    /// The amount reserved of one kind (every counter of a kind holds the same amount).
    pub fn reserved(&self, kind: Kind) -> Option<i64> {
        self.held
            .iter()
            .find(|h| h.key.kind == kind)
            .map(|h| h.amount)
    }

    /// Replaces the estimate by what the request really used: tokens and micro-dollars.
    /// The request itself stays counted.
    pub fn settle(mut self, tokens: i64, cost_micro: i64) {
        self.change(|h| match h.key.kind {
            Kind::Requests => 0,
            Kind::Tokens => tokens - h.amount,
            Kind::Budget => cost_micro - h.amount,
        });
        self.done = true;
    }

    /// Keeps the estimate as the usage (the real one is unknown).
    pub fn keep(mut self) {
        self.done = true;
    }

    /// Gives everything back now (what dropping does).
    pub fn release(self) {}

    /// Adds `delta(counter)` to each counter held: through its slot where it has one, else
    /// through the store.
    fn change(&self, delta: impl Fn(&Counter) -> i64) {
        let mut adjustments = SmallVec::<[Adjustment; INLINE]>::new();
        for (i, h) in self.held.iter().enumerate() {
            let delta = delta(h);
            if delta == 0 {
                continue;
            }
            match self.slots.get(i) {
                Some(slot) => {
                    slot.add(delta);
                }
                None => adjustments.push(Adjustment {
                    key: h.key,
                    delta,
                    window_end: h.window_end,
                }),
            }
        }
        if !adjustments.is_empty() {
            self.store.adjust(&adjustments);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            self.change(|h| -h.amount);
        }
    }
}

#[cfg(test)]
mod tests;
