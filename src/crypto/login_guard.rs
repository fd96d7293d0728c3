//! What keeps `/auth/login` from exhausting the machine or serving as a password oracle
//! (docs/security.md, "The admin door"):
//!
//! - **Bounded hashing.** Argon2 costs 19 MiB and tens of milliseconds of CPU per
//!   verification. At most [`hashing_slots`] run at once, on as many dedicated threads
//!   (never on the actix worker); a request waits at most [`HASH_WAIT`] for a slot, then gets 503
//!   `unavailable` with `retry-after`. The slot is held by the hashing job itself, so a
//!   client that disconnects does not free it while its hash still runs.
//! - **Attempt limits**, per user name and per client address: [`PER_USER`] failures within
//!   [`WINDOW`] lock the name for [`BASE_LOCKOUT`], doubled for each further lockout (up to
//!   [`MAX_LOCKOUT`]); the address limit is [`PER_ADDRESS`]. A locked name or address gets
//!   429 with `retry-after` before any hashing. Attempts still being verified count
//!   against the limit, so a burst cannot slip past it. Unknown names are limited exactly
//!   like known ones (a 429 must not reveal which names exist). A successful login clears
//!   its name's record, not its address's.
//!
//! The tables are in-process maps capped at [`MAX_ENTRIES`] each: names are keyed by
//! SHA-256 (a huge submitted name costs 32 bytes), IPv6 addresses by their /64. When a
//! table is full, idle entries go first, then the least recently seen eighth. A
//! `governor`-style GCRA limiter was not used: it has no lockout with exponential
//! back-off, no notion of attempts in flight, and no cap on its keyed state.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Failed logins per user name within [`WINDOW`] before the name is locked.
pub const PER_USER: usize = 10;
/// Failed logins per client address within [`WINDOW`] before the address is locked.
pub const PER_ADDRESS: usize = 50;
pub const WINDOW: Duration = Duration::from_secs(60);
/// The first lockout; each further one doubles it.
pub const BASE_LOCKOUT: Duration = Duration::from_secs(60);
pub const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// Per table (names, addresses).
pub const MAX_ENTRIES: usize = 10_000;
/// How long a login waits for a hashing slot before 503.
pub const HASH_WAIT: Duration = Duration::from_millis(1500);
/// The `retry-after` of a login or password change refused for want of a hashing slot.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A login refused before any hashing because its name or address is locked (429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    pub by: LockedBy,
    /// Until the lock ends.
    pub retry_after: Duration,
}

/// Which limit locked a login out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockedBy {
    Name,
    Address,
}

impl std::fmt::Display for Lockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.by {
            LockedBy::Name => "too many failed logins for this user name; try again later",
            LockedBy::Address => "too many failed logins from this address; try again later",
        })
    }
}

impl std::error::Error for Lockout {}

/// Why a hash or verification did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashingUnavailable {
    /// No slot freed up within the wait: load shedding under a burst (503, retry after
    /// [`BUSY_RETRY_AFTER`]), not a fault of the gateway.
    #[error("too many logins or password changes are being processed; try again shortly")]
    Busy,
    #[error("password hashing is not running")]
    NotRunning,
    #[error("password hashing was interrupted")]
    Interrupted,
}

/// Concurrent Argon2 computations: the cores, at most 4 (19 MiB each).
pub fn hashing_slots() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
}

#[derive(Debug)]
struct Entry {
    /// Failure times within the window, oldest first (at most the limit).
    failures: VecDeque<Instant>,
    /// Attempts being verified right now.
    pending: usize,
    /// Lockouts so far; forgotten once the entry has been idle for `MAX_LOCKOUT`.
    strikes: u32,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failures: VecDeque::new(),
            pending: 0,
            strikes: 0,
            locked_until: None,
            last_seen: now,
        }
    }

    fn idle(&self, now: Instant) -> bool {
        self.pending == 0
            && self.locked_until.is_none_or(|t| t <= now)
            && now.duration_since(self.last_seen) >= MAX_LOCKOUT
    }
}

#[derive(Debug)]
struct Table<K> {
    map: HashMap<K, Entry>,
    limit: usize,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(limit: usize) -> Self {
        Table {
            map: HashMap::new(),
            limit,
        }
    }

    /// `Err(retry_after)` when this key may not try now.
    fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        let Some(e) = self.map.get_mut(key) else {
            return Ok(());
        };
        while e
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            e.failures.pop_front();
        }
        if let Some(until) = e.locked_until.filter(|t| *t > now) {
            return Err(until - now);
        }
        if e.failures.len() + e.pending >= self.limit {
            let oldest = e.failures.front().copied().unwrap_or(now);
            let wait = WINDOW.saturating_sub(now.duration_since(oldest));
            return Err(wait.max(Duration::from_secs(1)));
        }
        Ok(())
    }

    fn reserve(&mut self, key: &K, now: Instant) {
        if !self.map.contains_key(key) && self.map.len() >= MAX_ENTRIES {
            self.evict(now);
        }
        let e = self
            .map
            .entry(key.clone())
            .or_insert_with(|| Entry::new(now));
        e.pending += 1;
        e.last_seen = now;
    }

    fn release(&mut self, key: &K) {
        if let Some(e) = self.map.get_mut(key) {
            e.pending = e.pending.saturating_sub(1);
        }
    }

    fn fail(&mut self, key: &K, now: Instant) {
        let Some(e) = self.map.get_mut(key) else {
            return;
        };
        e.failures.push_back(now);
        e.last_seen = now;
        if e.failures.len() >= self.limit {
            let lockout = BASE_LOCKOUT
                .saturating_mul(1u32 << e.strikes.min(16))
                .min(MAX_LOCKOUT);
            e.strikes = e.strikes.saturating_add(1);
            e.locked_until = Some(now + lockout);
            e.failures.clear();
        }
    }

    fn forget(&mut self, key: &K) {
        if self.map.get(key).is_some_and(|e| e.pending == 0) {
            self.map.remove(key);
        } else if let Some(e) = self.map.get_mut(key) {
            e.failures.clear();
            e.strikes = 0;
            e.locked_until = None;
        }
    }

    /// Makes room: idle entries first, then the least recently seen eighth of the rest
    /// (never one with an attempt in flight).
    fn evict(&mut self, now: Instant) {
        self.map.retain(|_, e| !e.idle(now));
        if self.map.len() < MAX_ENTRIES {
            return;
        }
        let mut seen: Vec<(Instant, K)> = self
            .map
            .iter()
            .filter(|(_, e)| e.pending == 0)
            .map(|(k, e)| (e.last_seen, k.clone()))
            .collect();
        let n = (MAX_ENTRIES / 8).max(1).min(seen.len());
        if n == 0 {
            return;
        }
        seen.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        for (_, k) in seen.into_iter().take(n) {
            self.map.remove(&k);
        }
    }
}

type NameKey = [u8; 32];

fn name_key(username: &str) -> NameKey {
    Sha256::digest(username.as_bytes()).into()
}

/// IPv6 clients usually hold a whole /64: limit them as one.
fn address_key(ip: IpAddr) -> IpAddr {
    match crate::client_addr::canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[derive(Debug)]
struct Tables {
    names: Table<NameKey>,
    addresses: Table<IpAddr>,
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads that compute password hashes. Not the blocking pool: a permit
/// freed at the end of one job would often find no idle pool thread yet, so the next job
/// starts a new thread, and every such thread leaves its own allocator arena holding a
/// 19 MiB Argon2 buffer (measured: 500 MB after a 200-login burst). A fixed set keeps
/// that at one buffer per thread.
struct HashThreads {
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
}

impl HashThreads {
    fn start(count: usize) -> HashThreads {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..count {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tollgate-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The guard is dropped before the job runs.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking hash must not take the thread (and its slot) away.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        HashThreads {
            jobs: Mutex::new(tx),
        }
    }

    fn submit(&self, job: Job) -> bool {
        self.jobs
            .lock()
            .map(|tx| tx.send(job).is_ok())
            .unwrap_or(false)
    }
}

pub struct LoginGuard {
    tables: Mutex<Tables>,
    hashing: Arc<Semaphore>,
    threads: HashThreads,
    hash_wait: Duration,
}

impl std::fmt::Debug for LoginGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginGuard")
            .field("free_hashing_slots", &self.hashing.available_permits())
            .finish_non_exhaustive()
    }
}

impl Default for LoginGuard {
    fn default() -> Self {
        Self::new(hashing_slots(), HASH_WAIT)
    }
}

impl LoginGuard {
    pub fn new(slots: usize, hash_wait: Duration) -> LoginGuard {
        let slots = slots.max(1);
        LoginGuard {
            tables: Mutex::new(Tables {
                names: Table::new(PER_USER),
                addresses: Table::new(PER_ADDRESS),
            }),
            hashing: Arc::new(Semaphore::new(slots)),
            threads: HashThreads::start(slots),
            hash_wait,
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves consistent-enough counters.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one login attempt or refuses it with 429. The returned [`Attempt`] must be
    /// settled with `succeeded`/`failed`; dropped unsettled (503, a disconnect) it counts
    /// as neither.
    pub fn begin(&self, username: &str, client: Option<IpAddr>) -> Result<Attempt<'_>, Lockout> {
        let now = Instant::now();
        let name = name_key(username);
        let address = client.map(address_key);
        let mut t = self.tables();
        let by_name = t.names.check(&name, now);
        let by_address = match &address {
            Some(a) => t.addresses.check(a, now),
            None => Ok(()),
        };
        match (by_name, by_address) {
            (Err(wait), _) => {
                return Err(Lockout {
                    by: LockedBy::Name,
                    retry_after: wait,
                });
            }
            (_, Err(wait)) => {
                return Err(Lockout {
                    by: LockedBy::Address,
                    retry_after: wait,
                });
            }
            _ => {}
        }
        t.names.reserve(&name, now);
        if let Some(a) = &address {
            t.addresses.reserve(a, now);
        }
        Ok(Attempt {
            guard: self,
            name,
            address,
            settled: false,
        })
    }

    /// Runs one password hash or verification on the hashing threads, at most
    /// [`hashing_slots`] at a time; 503 when no slot frees up within the wait.
    pub async fn hash<T, F>(&self, f: F) -> Result<T, HashingUnavailable>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = tokio::time::timeout(self.hash_wait, self.hashing.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(HashingUnavailable::Busy)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let submitted = self.threads.submit(Box::new(move || {
            let _slot = permit;
            let _ = tx.send(f());
        }));
        if !submitted {
            return Err(HashingUnavailable::NotRunning);
        }
        rx.await.map_err(|_| HashingUnavailable::Interrupted)
    }

    /// Hashing slots free right now (tests).
    pub fn free_hashing_slots(&self) -> usize {
        self.hashing.available_permits()
    }
}

/// One admitted login attempt.
pub struct Attempt<'a> {
    guard: &'a LoginGuard,
    name: NameKey,
    address: Option<IpAddr>,
    settled: bool,
}

impl Attempt<'_> {
    pub fn succeeded(mut self) {
        let mut t = self.guard.tables();
        t.names.release(&self.name);
        t.names.forget(&self.name);
        if let Some(a) = &self.address {
            t.addresses.release(a);
        }
        self.settled = true;
    }

    pub fn failed(mut self) {
        let now = Instant::now();
        let mut t = self.guard.tables();
        t.names.release(&self.name);
        t.names.fail(&self.name, now);
        if let Some(a) = &self.address {
            t.addresses.release(a);
            t.addresses.fail(a, now);
        }
        self.settled = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut t = self.guard.tables();
        t.names.release(&self.name);
        if let Some(a) = &self.address {
            t.addresses.release(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn eleventh_failure_for_a_name_is_429_and_other_names_pass() {
        let g = LoginGuard::default();
        for i in 0..PER_USER {
            g.begin("alice", ip(&format!("10.0.0.{i}")))
                .unwrap()
                .failed();
        }
        let err = g.begin("alice", ip("10.0.1.1")).err().unwrap();
        assert_eq!(err.by, LockedBy::Name);
        let wait = err.retry_after;
        assert!(
            wait > Duration::from_secs(55) && wait <= BASE_LOCKOUT,
            "{wait:?}"
        );
        g.begin("bob", ip("10.0.1.1")).unwrap().succeeded();
    }

    #[test]
    fn lockouts_double_for_repeat_offenders() {
        let mut t: Table<u8> = Table::new(2);
        let now = Instant::now();
        let mut lockouts = Vec::new();
        let mut at = now;
        for _ in 0..3 {
            for _ in 0..2 {
                t.reserve(&1, at);
                t.release(&1);
                t.fail(&1, at);
            }
            let until = t.map[&1].locked_until.unwrap();
            lockouts.push(until - at);
            at = until;
        }
        assert_eq!(lockouts, [BASE_LOCKOUT, BASE_LOCKOUT * 2, BASE_LOCKOUT * 4]);
        assert!(t.check(&1, at).is_ok(), "the lock ends");
    }

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let g = LoginGuard::default();
        let held: Vec<_> = (0..PER_USER)
            .map(|_| g.begin("carol", None).unwrap())
            .collect();
        assert_eq!(g.begin("carol", None).err().unwrap().by, LockedBy::Name);
        drop(held); // unsettled: counted as neither
        g.begin("carol", None).unwrap().succeeded();
    }

    #[test]
    fn success_clears_the_name_not_the_address() {
        let g = LoginGuard::default();
        for _ in 0..PER_USER - 1 {
            g.begin("dave", ip("192.0.2.1")).unwrap().failed();
        }
        g.begin("dave", ip("192.0.2.1")).unwrap().succeeded();
        for _ in 0..PER_USER - 1 {
            g.begin("dave", ip("192.0.2.1")).unwrap().failed();
        }
        assert!(g.begin("dave", ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn per_address_limit_spans_names_and_ipv6_slash_64() {
        let g = LoginGuard::default();
        for i in 0..PER_ADDRESS {
            g.begin(&format!("user{i}"), ip(&format!("2001:db8:1:2::{i:x}")))
                .unwrap()
                .failed();
        }
        let err = g.begin("fresh", ip("2001:db8:1:2:ffff::1")).err().unwrap();
        assert_eq!(err.by, LockedBy::Address);
        assert!(err.to_string().contains("address"), "{err}");
        assert!(g.begin("fresh", ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn tables_stay_bounded() {
        let g = LoginGuard::default();
        for i in 0..(MAX_ENTRIES + 500) {
            g.begin(&format!("spray-{i}"), None).unwrap().failed();
        }
        assert!(g.tables().names.map.len() <= MAX_ENTRIES);
        // a huge name costs one fixed-size key
        g.begin(&"x".repeat(1 << 20), None).unwrap().failed();
    }

    #[actix_web::test]
    async fn hashing_is_bounded_and_sheds_load() {
        let g = Arc::new(LoginGuard::new(1, Duration::from_millis(100)));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let busy_one = {
            let g = g.clone();
            actix_web::rt::spawn(async move {
                g.hash(move || {
                    let _ = rx.recv_timeout(Duration::from_secs(5));
                })
                .await
            })
        };
        while g.free_hashing_slots() > 0 {
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        let err = g.hash(|| ()).await.err().unwrap();
        assert_eq!(err, HashingUnavailable::Busy);
        tx.send(()).unwrap();
        busy_one.await.unwrap().unwrap();
        assert_eq!(g.hash(|| 7).await.unwrap(), 7);
    }
}
