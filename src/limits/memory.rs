//! The in-process counter store: one map behind one mutex. Exact on one node — a
//! reservation checks and adds all its counters under the lock — and the default when no
//! shared store is configured (docs/behaviour.md, "Limits and budgets"). The map holds one
//! entry per owner (tenant, key, route) with its counters by kind, so a request looks up
//! each owner once, not each counter. Each counter's total is a [`Slot`] the reservation
//! keeps: settling and giving back need neither the lock nor a lookup.

use std::sync::{Arc, Mutex};

use futures::future::{self, BoxFuture};

use super::OwnerId;
use super::store::{
    Adjustment, Counter, CounterKey, CounterStore, Reserved, Slot, Slots, StoreFault, Totals,
};

/// Ended windows are swept at most this often (seconds).
const SWEEP_EVERY: i64 = 60;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Owner → its counters, by kind (`Kind::index`).
    owners: foldhash::HashMap<OwnerId, [Option<Current>; 3]>,
    next_sweep: i64,
}

/// A kind's counter in its current window (an older window's is gone: its total is 0).
struct Current {
    window_start: i64,
    window_end: i64,
    slot: Arc<Slot>,
}

impl Inner {
    fn sweep(&mut self, now: i64) {
        if now < self.next_sweep {
            return;
        }
        self.owners.retain(|_, kinds| {
            for kind in kinds.iter_mut() {
                if kind.as_ref().is_some_and(|c| c.window_end <= now) {
                    *kind = None;
                }
            }
            kinds.iter().any(Option::is_some)
        });
        self.next_sweep = now + SWEEP_EVERY;
    }

    /// The counter `key` names, while its window lasts.
    fn current(&self, key: &CounterKey, now: i64) -> Option<&Current> {
        let kinds = self.owners.get(&key.owner)?;
        kinds[key.kind.index()]
            .as_ref()
            .filter(|c| c.window_start == key.window_start && c.window_end > now)
    }

    fn total(&self, key: &CounterKey, now: i64) -> i64 {
        self.current(key, now).map_or(0, |c| c.slot.total())
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied reservation (a
        // refusal takes back what it added before it returns), so the map is still sound.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reservation itself, synchronous (the trait wraps it in a ready future).
    pub fn reserve_now(&self, counters: &[Counter], now: i64) -> Reserved {
        let mut inner = self.lock();
        inner.sweep(now);
        // Each counter is added to as it is checked, and on a refusal the ones already
        // added are taken back (a refusal is the rare path). A counter named twice (two
        // scopes sharing one) sees its first addition when checked again.
        let mut totals = Totals::with_capacity(counters.len());
        let mut slots = Slots::with_capacity(counters.len());
        let mut refused = None;
        let mut i = 0;
        'owners: while let Some(first) = counters.get(i) {
            // An owner's counters come one after another: one lookup for them all.
            let owner = first.key.owner;
            let kinds = inner.owners.entry(owner).or_default();
            while let Some(c) = counters.get(i).filter(|c| c.key.owner == owner) {
                let current = &mut kinds[c.key.kind.index()];
                let slot = match current {
                    Some(cur) if cur.window_start == c.key.window_start && cur.window_end > now => {
                        &cur.slot
                    }
                    // A new window: a new total. Reservations of the old one keep theirs.
                    _ => {
                        let fresh = Current {
                            window_start: c.key.window_start,
                            window_end: c.window_end,
                            slot: Arc::default(),
                        };
                        &current.insert(fresh).slot
                    }
                };
                if slot.total().saturating_add(c.amount) > c.limit {
                    refused = Some(i);
                    break 'owners;
                }
                totals.push(slot.add(c.amount));
                slots.push(Arc::clone(slot));
                i += 1;
            }
        }
        if let Some(counter) = refused {
            for (earlier, slot) in counters.iter().zip(&slots) {
                slot.add(-earlier.amount);
            }
            let totals = counters.iter().map(|c| inner.total(&c.key, now)).collect();
            return Reserved::Refused { counter, totals };
        }
        Reserved::Granted { totals, slots }
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

    fn reserve_ready(
        &self,
        counters: &[Counter],
        now: i64,
    ) -> Option<Result<Reserved, StoreFault>> {
        Some(Ok(self.reserve_now(counters, now)))
    }

    fn adjust(&self, adjustments: &[Adjustment]) {
        // This store's grants carry slots, so reservations settle through those; this is
        // the trait's path for callers without them. The counter changes while it is the
        // window named, whatever the clock says now.
        let inner = self.lock();
        for a in adjustments {
            if let Some(current) = inner.current(&a.key, i64::MIN)
                && current.window_end == a.window_end
            {
                current.slot.add(a.delta);
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
        assert_eq!(s.reserve_now(&both, 0).granted(), Some(&[3, 3][..]));
        // b would reach 6 > 4: refused, and a is untouched.
        assert_eq!(s.reserve_now(&both, 0).refused(), Some((1, &[3, 3][..])));
        assert_eq!(
            s.reserve_now(&[counter("a", 2, 5)], 0).granted(),
            Some(&[5][..])
        );
    }

    #[test]
    fn a_key_named_twice_counts_twice() {
        let s = MemoryStore::new();
        let twice = [counter("a", 3, 5), counter("a", 3, 5)];
        assert_eq!(s.reserve_now(&twice, 0).refused(), Some((1, &[0, 0][..])));
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

    /// A reservation's slots are its counters' totals now; those of an ended window no
    /// longer touch the counter that replaced it.
    #[test]
    fn slots_settle_their_own_window_only() {
        let s = MemoryStore::new();
        let read = |now| futures::executor::block_on(s.read(&[k("a")], now)).unwrap();
        let Reserved::Granted { slots, .. } = s.reserve_now(&[counter("a", 4, 10)], 0) else {
            panic!("refused")
        };
        assert_eq!(slots[0].add(-1), 3);
        assert_eq!(read(0), vec![3]);
        let next = Counter {
            window_end: 200,
            ..counter("a", 2, 10)
        };
        assert_eq!(s.reserve_now(&[next], 150).granted(), Some(&[2][..]));
        slots[0].add(-3);
        slots[0].add(50);
        assert_eq!(read(150), vec![2]);
    }

    #[test]
    fn ended_windows_start_from_zero_and_are_swept() {
        let s = MemoryStore::new();
        s.reserve_now(&[counter("a", 5, 5)], 0);
        let next = Counter {
            window_end: 200,
            ..counter("a", 5, 5)
        };
        assert_eq!(s.reserve_now(&[next], 150).granted(), Some(&[5][..]));
        s.reserve_now(&[], 400);
        assert!(s.lock().owners.is_empty());
    }
}
