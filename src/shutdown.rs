//! The end of a graceful stop's drain time as a signal the proxy watches
//! (docs/architecture.md, "Graceful stop"): a stream still running when it fires ends with
//! an in-band `shutdown` error and is recorded as `shutdown`, instead of being cut by the
//! server's own timeout and counted as a client disconnect.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Fired once, shortly before the servers' own drain timeout drops what is left.
///
/// Every request waits on it, from every proxy worker. A `CancellationToken` takes its
/// lock to be cloned, dropped, asked or waited on, so one token shared by all workers would
/// put the same lock and cache line in every request of every worker: each thread waits on
/// a child token of its own instead (cancelled with the root), and `passed` reads a flag.
#[derive(Clone, Debug, Default)]
pub struct DrainDeadline(Arc<Deadline>);

#[derive(Debug, Default)]
struct Deadline {
    fired: AtomicBool,
    root: CancellationToken,
}

thread_local! {
    /// This thread's child token of each live deadline (one in a running gateway; tests
    /// start several).
    static CHILDREN: RefCell<Vec<(Weak<Deadline>, CancellationToken)>> =
        const { RefCell::new(Vec::new()) };
}

impl DrainDeadline {
    /// True once the drain time is (nearly) over.
    pub fn passed(&self) -> bool {
        self.0.fired.load(Ordering::Acquire)
    }

    /// Resolves when the drain time is (nearly) over.
    pub fn wait(&self) -> WaitForCancellationFutureOwned {
        self.this_thread().cancelled_owned()
    }

    pub fn fire(&self) {
        self.0.fired.store(true, Ordering::Release);
        self.0.root.cancel();
    }

    /// This thread's child of the root token (the root itself while the thread ends).
    fn this_thread(&self) -> CancellationToken {
        CHILDREN
            .try_with(|children| {
                let mut children = children.try_borrow_mut().ok()?;
                if let Some((_, child)) = children
                    .iter()
                    .find(|(deadline, _)| std::ptr::eq(deadline.as_ptr(), Arc::as_ptr(&self.0)))
                {
                    return Some(child.clone());
                }
                // Deadlines that are gone (a stopped test server's) make room.
                children.retain(|(deadline, _)| deadline.strong_count() > 0);
                let child = self.0.root.child_token();
                children.push((Arc::downgrade(&self.0), child.clone()));
                Some(child)
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| self.0.root.clone())
    }
}

/// The servers' drain timeout: actix takes whole seconds.
pub fn server_drain(drain: Duration) -> Duration {
    Duration::from_secs(drain.as_secs())
}

/// How long after a graceful stop begins the deadline fires: before the servers drop the
/// connections still open, leaving a stream a moment (up to 1 s, at most half the drain
/// time) to send its last frame and close.
pub fn fires_after(drain: Duration) -> Duration {
    let server = server_drain(drain);
    server - (server / 2).min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_fires_before_the_servers_drop_connections() {
        let s = Duration::from_secs;
        assert_eq!(fires_after(s(15)), s(14));
        assert_eq!(fires_after(s(2)), s(1));
        assert_eq!(fires_after(s(1)), Duration::from_millis(500));
        assert_eq!(
            fires_after(Duration::from_millis(1500)),
            Duration::from_millis(500)
        );
        assert_eq!(fires_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn firing_is_seen_by_every_clone() {
        let deadline = DrainDeadline::default();
        let watcher = deadline.clone();
        assert!(!watcher.passed());
        deadline.fire();
        assert!(watcher.passed());
        assert!(futures::FutureExt::now_or_never(watcher.wait()).is_some());
    }

    /// Each thread waits on its own child token; firing reaches the waits of every thread,
    /// those begun before the fire and after.
    #[test]
    fn firing_ends_the_waits_of_every_thread() {
        let deadline = DrainDeadline::default();
        let other = DrainDeadline::default();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let deadline = deadline.clone();
                let (ready_tx, ready_rx) = std::sync::mpsc::channel();
                let thread = std::thread::spawn(move || {
                    let wait = deadline.wait();
                    ready_tx.send(()).expect("ready");
                    futures::executor::block_on(wait);
                    futures::executor::block_on(deadline.wait());
                    deadline.passed()
                });
                ready_rx.recv().expect("ready");
                thread
            })
            .collect();
        assert!(futures::FutureExt::now_or_never(deadline.wait()).is_none());
        deadline.fire();
        for thread in waiting {
            assert!(
                thread.join().expect("thread"),
                "passed after the wait ended"
            );
        }
        assert!(futures::FutureExt::now_or_never(deadline.wait()).is_some());
        assert!(!other.passed(), "another deadline is not fired");
        assert!(futures::FutureExt::now_or_never(other.wait()).is_none());
    }
}
