//! Limits and budgets under test: a hand-moved clock injected into the running app's
//! limits engine, and the status endpoints read back.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tollgate::limits::ManualClock;

use crate::support::TestApp;

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// Stops the app's limits clock at `start`; the returned handle moves it.
pub fn manual_clock(app: &TestApp, start: &str) -> Arc<ManualClock> {
    let clock = Arc::new(ManualClock::new(at(start)));
    app.state.limits.set_clock(Box::new(clock.clone()));
    clock
}

/// `GET <path>/limits/status` → its `limits` object (asserting 200).
pub async fn status(app: &TestApp, path: &str) -> Value {
    let r = app.get(&format!("{path}/limits/status")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["limits"].clone()
}

/// A `redis-server` of the test's own, on a free port, so the test can stop it (an
/// outage) without touching a Redis other tests share. Killed when dropped.
pub struct OwnRedis {
    pub url: String,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub async fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        OwnRedis {
            url: format!("redis://127.0.0.1:{port}/"),
            child: Some(child),
        }
    }

    /// The outage: the server is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
