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
