//! The end of a graceful stop's drain time as a signal the proxy watches
//! (docs/architecture.md, "Graceful stop"): a stream still running when it fires ends with
//! an in-band `shutdown` error and is recorded as `shutdown`, instead of being cut by the
//! server's own timeout and counted as a client disconnect.

use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Fired once, shortly before the servers' own drain timeout drops what is left.
#[derive(Clone, Debug, Default)]
pub struct DrainDeadline(CancellationToken);

impl DrainDeadline {
    /// True once the drain time is (nearly) over.
    pub fn passed(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves when the drain time is (nearly) over.
    pub fn wait(&self) -> WaitForCancellationFutureOwned {
        self.0.clone().cancelled_owned()
    }

    pub fn fire(&self) {
        self.0.cancel();
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
}
