//! Where the counters live: the contract every counter store keeps (docs/architecture.md,
//! "Limits"). The in-process store (`memory.rs`) is exact on one node; a store shared by
//! several nodes (Redis, with the reservation as one script) plugs in behind the same trait.

use futures::future::BoxFuture;

use super::{Kind, OwnerId};

/// Names a counter: its kind (tagged `rpm`, `tpm`, `usd`), its owner and the start of its
/// window (Unix seconds). A store that needs text writes it as `rpm:t:<uuid>:<start>`
/// (`Display`); the in-process store hashes it as it is, with no string per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterKey {
    pub kind: Kind,
    pub owner: OwnerId,
    pub window_start: i64,
}

/// Hashed as a few machine words rather than as byte slices with length prefixes (what the
/// derive does for `str` and `Uuid`): a request hashes each of its counters' keys twice.
impl std::hash::Hash for CounterKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u8(self.kind as u8);
        match self.owner {
            OwnerId::Tenant(id) => {
                state.write_u8(0);
                state.write_u128(id.as_u128());
            }
            OwnerId::Key(id) => {
                state.write_u8(1);
                state.write_u128(id.as_u128());
            }
            OwnerId::Route(id, tenant) => {
                state.write_u8(2);
                state.write_u128(id.as_u128());
                state.write_u128(tenant.map_or(0, |t| t.as_u128()));
            }
        }
        state.write_i64(self.window_start);
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Every counter was added to; their totals now, in the order asked.
    Granted(Vec<i64>),
    /// Nothing was added: `counter` (an index into the request) would have gone past its
    /// limit. `totals` are every counter's total, unchanged.
    Refused { counter: usize, totals: Vec<i64> },
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
