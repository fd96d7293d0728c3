//! The in-process counter store: one map behind one mutex. Exact on one node — a
//! reservation checks and adds all its counters under the lock — and the default when no
//! shared store is configured (docs/behaviour.md, "Limits and budgets").

use std::sync::Mutex;

use futures::future::{self, BoxFuture};

use super::store::{Adjustment, Counter, CounterKey, CounterStore, Reserved, StoreFault};

/// Ended windows are swept at most this often (seconds).
const SWEEP_EVERY: i64 = 60;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Counter key → (total, window end).
    counters: foldhash::HashMap<CounterKey, (i64, i64)>,
    next_sweep: i64,
}

impl Inner {
    fn sweep(&mut self, now: i64) {
        if now < self.next_sweep {
            return;
        }
        self.counters.retain(|_, (_, end)| *end > now);
        self.next_sweep = now + SWEEP_EVERY;
    }

    fn total(&self, key: &CounterKey, now: i64) -> i64 {
        match self.counters.get(key) {
            Some((total, end)) if *end > now => *total,
            _ => 0,
        }
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied reservation (each is
        // checked before anything is added), so the map is still sound.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reservation itself, synchronous (the trait wraps it in a ready future).
    pub fn reserve_now(&self, counters: &[Counter], now: i64) -> Reserved {
        let mut inner = self.lock();
        inner.sweep(now);
        // One lookup per counter: each is added to as it is checked, and on a refusal the
        // ones already added are taken back (a refusal is the rare path). A counter named
        // twice (two scopes sharing one) sees its first addition when checked again.
        let mut totals = Vec::with_capacity(counters.len());
        for (i, c) in counters.iter().enumerate() {
            let entry = inner.counters.entry(c.key).or_insert((0, c.window_end));
            if entry.1 <= now {
                *entry = (0, c.window_end);
            }
            if entry.0 + c.amount > c.limit {
                for earlier in &counters[..i] {
                    if let Some((total, _)) = inner.counters.get_mut(&earlier.key) {
                        *total -= earlier.amount;
                    }
                }
                let totals = counters.iter().map(|c| inner.total(&c.key, now)).collect();
                return Reserved::Refused { counter: i, totals };
            }
            entry.0 += c.amount;
            totals.push(entry.0);
        }
        Reserved::Granted(totals)
    }
}

impl CounterStore for MemoryStore {
    fn name(&self) -> &'static str {
        "in_process"
    }

    fn reserve<'a>(
        &'a self,
        counters: &'a [Counter],
        now: i64,
    ) -> BoxFuture<'a, Result<Reserved, StoreFault>> {
        Box::pin(future::ready(Ok(self.reserve_now(counters, now))))
    }

    fn adjust(&self, adjustments: &[Adjustment]) {
        let mut inner = self.lock();
        for a in adjustments {
            if let Some((total, end)) = inner.counters.get_mut(&a.key)
                && *end == a.window_end
            {
                *total = (*total + a.delta).max(0);
            }
        }
    }

    fn read<'a>(
        &'a self,
        keys: &'a [CounterKey],
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<i64>, StoreFault>> {
        let inner = self.lock();
        let totals = keys.iter().map(|k| inner.total(k, now)).collect();
        Box::pin(future::ready(Ok(totals)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::OwnerId;

    /// A counter key per short name (`"a"`, `"b"`).
    fn k(name: &str) -> CounterKey {
        let n = name.bytes().fold(0u128, |acc, b| acc * 256 + u128::from(b));
        CounterKey {
            kind: crate::limits::Kind::Requests,
            owner: OwnerId::Tenant(uuid::Uuid::from_u128(n)),
            window_start: 0,
        }
    }

    fn counter(key: &str, amount: i64, limit: i64) -> Counter {
        Counter {
            key: k(key),
            amount,
            limit,
            window_end: 100,
        }
    }

    #[test]
    fn all_or_none() {
        let s = MemoryStore::new();
        let both = [counter("a", 3, 10), counter("b", 3, 4)];
        assert_eq!(s.reserve_now(&both, 0), Reserved::Granted(vec![3, 3]));
        // b would reach 6 > 4: refused, and a is untouched.
        assert_eq!(
            s.reserve_now(&both, 0),
            Reserved::Refused {
                counter: 1,
                totals: vec![3, 3]
            }
        );
        assert_eq!(
            s.reserve_now(&[counter("a", 2, 5)], 0),
            Reserved::Granted(vec![5])
        );
    }

    #[test]
    fn a_key_named_twice_counts_twice() {
        let s = MemoryStore::new();
        let twice = [counter("a", 3, 5), counter("a", 3, 5)];
        assert!(matches!(
            s.reserve_now(&twice, 0),
            Reserved::Refused { counter: 1, .. }
        ));
    }

    #[test]
    fn adjustments_never_revive_or_go_negative() {
        let s = MemoryStore::new();
        s.reserve_now(&[counter("a", 3, 5)], 0);
        s.adjust(&[Adjustment {
            key: k("a"),
            delta: -10,
            window_end: 100,
        }]);
        s.adjust(&[Adjustment {
            key: k("gone"),
            delta: 4,
            window_end: 100,
        }]);
        let keys = [k("a"), k("gone")];
        let read = futures::executor::block_on(s.read(&keys, 0)).unwrap();
        assert_eq!(read, vec![0, 0]);
    }

    #[test]
    fn ended_windows_start_from_zero_and_are_swept() {
        let s = MemoryStore::new();
        s.reserve_now(&[counter("a", 5, 5)], 0);
        let next = Counter {
            window_end: 200,
            ..counter("a", 5, 5)
        };
        assert_eq!(s.reserve_now(&[next], 150), Reserved::Granted(vec![5]));
        s.reserve_now(&[], 400);
        assert!(s.lock().counters.is_empty());
    }
}
