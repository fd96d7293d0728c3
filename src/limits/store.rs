//! Where the counters live: the contract every counter store keeps (docs/architecture.md,
//! "Limits"). The in-process store (`memory.rs`) is exact on one node; a store shared by
//! several nodes (Redis, with the reservation as one script) plugs in behind the same trait.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::future::BoxFuture;
use smallvec::SmallVec;

use super::{Kind, OwnerId};

/// Counters a request holds inline, with no allocation: one scope's three kinds. A request
/// under more scopes' limits spills to the heap.
pub const INLINE: usize = 3;

/// A request's counters, in the order it names them.
pub type Counters = SmallVec<[Counter; INLINE]>;

/// Counters' totals, in the order asked.
pub type Totals = SmallVec<[i64; INLINE]>;

/// A counter's running total, shared by the store and the reservations holding it (the
/// in-process store's counters): a reservation settles or gives back through it with no
/// lock and no lookup. A counter whose window ended is replaced in the store, so a late
/// settlement lands on the old total, which nothing reads any more.
#[derive(Debug, Default)]
pub struct Slot(AtomicI64);

impl Slot {
    pub fn total(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds `delta` (negative: gives back), never going below zero; the new total.
    pub fn add(&self, delta: i64) -> i64 {
        // Each addition is atomic on its own; the store's lock orders reservations, and
        // settlements need no order among themselves.
        let before = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(delta).max(0))
            });
        let before = before.unwrap_or_else(|t| t);
        before.saturating_add(delta).max(0)
    }
}

/// The slots of a reservation's counters, in its order; empty for a store that has none
/// (its settlements go through `CounterStore::adjust`).
pub type Slots = SmallVec<[Arc<Slot>; INLINE]>;

/// Names a counter: its kind (tagged `rpm`, `tpm`, `usd`), its owner and the start of its
/// window (Unix seconds). A store that needs text writes it as `rpm:t:<uuid>:<start>`
/// (`Display`); the in-process store hashes it as it is, with no string per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterKey {
    pub kind: Kind,
    pub owner: OwnerId,
    pub window_start: i64,
}

/// Hashed as one machine word folded from the fields (see `OwnerId`'s hash).
impl std::hash::Hash for CounterKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // A window's start is far below 2^56: the kind takes the top byte.
        let window = (self.window_start as u64) ^ ((self.kind as u64) << 58);
        state.write_u64(self.owner.fold() ^ window);
    }
}

impl std::fmt::Display for CounterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.kind.tag(),
            self.owner,
            self.window_start
        )
    }
}

/// One counter a request wants to add to: `amount` more, as long as the total stays within
/// `limit`. The key names the counter and its window; the counter may be forgotten once
/// `window_end` (Unix seconds) has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub key: CounterKey,
    pub amount: i64,
    pub limit: i64,
    pub window_end: i64,
}

/// The answer to a reservation.
#[derive(Debug, Clone)]
pub enum Reserved {
    /// Every counter was added to; their totals now, in the order asked, and their slots
    /// where the store has them.
    Granted { totals: Totals, slots: Slots },
    /// Nothing was added: `counter` (an index into the request) would have gone past its
    /// limit. `totals` are every counter's total, unchanged.
    Refused { counter: usize, totals: Totals },
}

#[cfg(test)]
impl Reserved {
    /// The totals of a grant.
    pub fn granted(&self) -> Option<&[i64]> {
        match self {
            Reserved::Granted { totals, .. } => Some(totals),
            Reserved::Refused { .. } => None,
        }
    }

    /// The counter that refused, and every total.
    pub fn refused(&self) -> Option<(usize, &[i64])> {
        match self {
            Reserved::Refused { counter, totals } => Some((*counter, totals)),
            Reserved::Granted { .. } => None,
        }
    }
}

/// The store could not be reached or answered nonsense: each limit's `on_store_error`
/// decides what the request gets.
#[derive(Debug, Clone, thiserror::Error)]
#[error("limit counter store: {0}")]
pub struct StoreFault(pub String);

/// A change to a counter already reserved: `delta` may be negative (a release, or a
/// settlement below the reservation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub key: CounterKey,
    pub delta: i64,
    pub window_end: i64,
}

pub trait CounterStore: Send + Sync {
    /// Where the counters are, for `/status`: `in_process`, `redis`.
    fn name(&self) -> &'static str;

    /// Adds every counter's amount, or none of them when any would pass its limit —
    /// atomically, so two requests never both take the last of a limit. `now` (Unix
    /// seconds) lets the store drop windows that have ended.
    fn reserve<'a>(
        &'a self,
        counters: &'a [Counter],
        now: i64,
    ) -> BoxFuture<'a, Result<Reserved, StoreFault>>;

    /// The same reservation answered at once, by a store that never waits for one (the
    /// in-process store): `None` sends the request to `reserve`. It spares every request
    /// on a limited route a boxed future.
    fn reserve_ready(
        &self,
        _counters: &[Counter],
        _now: i64,
    ) -> Option<Result<Reserved, StoreFault>> {
        None
    }

    /// Applies settlements and releases. Called from destructors, so it does not wait: a
    /// network store sends them in the background. A counter whose window is gone is left
    /// alone (never re-created), and no total goes below zero.
    fn adjust(&self, adjustments: &[Adjustment]);

    /// The current totals of counters (0 for an unknown or ended one), for the status
    /// endpoints and the rate-limit headers of a refusal.
    fn read<'a>(
        &'a self,
        keys: &'a [CounterKey],
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<i64>, StoreFault>>;

    /// At shutdown: gives back what this node holds ahead of its requests (a shared
    /// store's leases) and waits, bounded, for settlements still on their way.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
