//! The process-wide budget of bytes buffered from upstream answers
//! (docs/architecture.md, "Memory").
//!
//! A whole (non-streamed) answer is read into memory before it is translated, and streamed
//! pieces wait in a bounded channel; each of those bounds is per request, so thousands of
//! concurrent requests with large answers could still grow the process without limit. Every
//! such byte is therefore reserved here first: a request that cannot reserve fails at once
//! with 503 `gateway_memory_exhausted` instead of growing memory. A `Reservation` gives
//! its bytes back when it is dropped, so the budget cannot leak on an error path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// The default budget: 256 MiB.
pub const DEFAULT_LIMIT: usize = 256 * 1024 * 1024;

/// Shared by every worker (cheap to clone).
#[derive(Clone)]
pub struct ResponseBudget {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    in_use: AtomicUsize,
    refused: AtomicU64,
    created: Instant,
    /// Milliseconds after `created` of the last refusal logged (`u64::MAX`: none yet).
    last_logged_ms: AtomicU64,
}

/// Refusals come in bursts: one log line per this interval is enough (the count is in
/// `/status`).
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Returned when the budget cannot cover a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the budget of buffered upstream bytes is used up")]
pub struct Exhausted;

impl ResponseBudget {
    pub fn new(limit: usize) -> ResponseBudget {
        ResponseBudget {
            inner: Arc::new(Inner {
                limit,
                in_use: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
                created: Instant::now(),
                last_logged_ms: AtomicU64::new(u64::MAX),
            }),
        }
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> usize {
        self.inner.in_use.load(Ordering::Relaxed)
    }

    /// Reservations refused since start.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// An empty reservation, to grow as bytes arrive.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            inner: Arc::clone(&self.inner),
            bytes: 0,
        }
    }

    /// Reserves `bytes` at once.
    pub fn reserve(&self, bytes: usize) -> Result<Reservation, Exhausted> {
        let mut reservation = self.reservation();
        reservation.grow_to(bytes)?;
        Ok(reservation)
    }
}

impl Inner {
    /// Adds `more` unless that would pass the limit (lock-free). A refusal is counted (and
    /// logged) unless the caller only `tries`.
    fn take(&self, more: usize, tries: bool) -> Result<(), Exhausted> {
        let limit = self.limit;
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|total| *total <= limit)
            })
            .map(|_| ())
            .map_err(|_| {
                if tries {
                    return Exhausted;
                }
                let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if self.log_now() {
                    tracing::warn!(
                        limit_bytes = limit,
                        in_use_bytes = self.in_use.load(Ordering::Relaxed),
                        wanted_bytes = more,
                        refused_since_start = refused,
                        "upstream answer refused: the budget of buffered upstream bytes \
                         (max_buffered_upstream_bytes) is used up; answering 503"
                    );
                }
                Exhausted
            })
    }

    /// True at most once per `LOG_INTERVAL`.
    fn log_now(&self) -> bool {
        let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let interval = u64::try_from(LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        self.last_logged_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                (last == u64::MAX || now.saturating_sub(last) >= interval).then_some(now)
            })
            .is_ok()
    }
}

/// Bytes taken from the budget; given back when dropped.
pub struct Reservation {
    inner: Arc<Inner>,
    bytes: usize,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Raises the reservation to `total` bytes (never lowers it). On `Exhausted` the
    /// reservation keeps what it had; the caller drops it.
    pub fn grow_to(&mut self, total: usize) -> Result<(), Exhausted> {
        self.grow(total, false)
    }

    /// As `grow_to`, but a refusal is neither counted nor logged: for a growth with a
    /// smaller fallback.
    pub fn try_grow_to(&mut self, total: usize) -> bool {
        self.grow(total, true).is_ok()
    }

    fn grow(&mut self, total: usize, tries: bool) -> Result<(), Exhausted> {
        if total > self.bytes {
            self.inner.take(total - self.bytes, tries)?;
            self.bytes = total;
        }
        Ok(())
    }

    /// `bytes` that hold this reservation until their last clone is dropped: a whole
    /// answer stays counted while the proxy translates it or actix still holds it.
    pub fn attach(self, bytes: Bytes) -> Bytes {
        Bytes::from_owner(Held {
            bytes,
            _reservation: self,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.inner.in_use.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// The owner behind `Reservation::attach`.
struct Held {
    bytes: Bytes,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_refused_past_the_limit_and_given_back_when_dropped() {
        let budget = ResponseBudget::new(100);
        let a = budget.reserve(60).unwrap();
        assert_eq!(budget.in_use(), 60);
        assert_eq!(budget.reserve(41).unwrap_err(), Exhausted);
        assert_eq!(budget.refused(), 1);
        let mut b = budget.reserve(40).unwrap();
        assert_eq!(budget.in_use(), 100);
        // A failed growth keeps what the reservation had; a mere try is not a refusal.
        assert_eq!(b.grow_to(41).unwrap_err(), Exhausted);
        assert_eq!(b.bytes(), 40);
        assert!(!b.try_grow_to(50));
        assert_eq!(budget.refused(), 2);
        drop(a);
        assert_eq!(budget.in_use(), 40);
        b.grow_to(100).unwrap();
        assert_eq!(budget.in_use(), 100);
        // Growing to less is a no-op.
        b.grow_to(10).unwrap();
        assert_eq!(b.bytes(), 100);
        drop(b);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.refused(), 2);
        assert!(budget.reservation().try_grow_to(100));
        assert_eq!(
            budget.in_use(),
            0,
            "a dropped reservation gives everything back"
        );
    }

    #[test]
    fn attached_bytes_hold_the_reservation_until_the_last_clone_is_dropped() {
        let budget = ResponseBudget::new(1000);
        let bytes = budget
            .reserve(5)
            .unwrap()
            .attach(Bytes::from_static(b"hello"));
        let copy = bytes.clone();
        let part = bytes.slice(1..3);
        drop(bytes);
        assert_eq!(&copy[..], b"hello");
        drop(copy);
        assert_eq!(budget.in_use(), 5, "a slice still holds the answer");
        assert_eq!(&part[..], b"el");
        drop(part);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn concurrent_reservations_never_pass_the_limit() {
        let budget = ResponseBudget::new(1000);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for _ in 0..10_000 {
                        if let Ok(r) = budget.reserve(7) {
                            assert!(budget.in_use() <= 1000);
                            held.push(r);
                        }
                        if held.len() > 20 {
                            held.clear();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(budget.in_use(), 0);
    }
}
