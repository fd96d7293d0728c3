use std::time::Duration;

use chrono::DateTime;
use futures::executor::block_on;

use super::*;
use crate::vocab::{Budget, Limits};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn limiter(start: &str) -> (Limiter, Arc<ManualClock>) {
    let l = Limiter::in_process();
    let clock = Arc::new(ManualClock::new(at(start)));
    l.set_clock(Box::new(clock.clone()));
    (l, clock)
}

fn scope<'a>(label: &'a str, id: &str, limits: &'a Limits) -> Scope<'a> {
    let (owner, name) = label.split_once(' ').unwrap();
    let owner = match owner {
        "tenant" => "tenant",
        "key" => "key",
        _ => "route",
    };
    Scope {
        owner,
        name,
        id: owner_id(id),
        limits,
    }
}

/// `t:1`, `k:1`, `r:1` → the owner id of that kind with the UUID of that number.
fn owner_id(short: &str) -> OwnerId {
    let (kind, n) = short.split_once(':').unwrap();
    let id = uuid::Uuid::from_u128(n.parse().unwrap());
    match kind {
        "t" => OwnerId::Tenant(id),
        "k" => OwnerId::Key(id),
        _ => OwnerId::Route(id, None),
    }
}

const D: Demand = Demand {
    tokens: 100,
    cost_micro: 1_000,
};

#[test]
fn the_tightest_limit_refuses_and_nothing_is_taken() {
    let (l, _) = limiter("2026-03-01T10:00:10Z");
    let tenant = Limits {
        requests_per_minute: Some(10),
        tokens_per_minute: Some(250),
        ..Default::default()
    };
    let key = Limits {
        requests_per_minute: Some(3),
        ..Default::default()
    };
    // The proxy's order: key, tenant, route.
    let scopes = [
        scope("key ci", "k:1", &key),
        scope("tenant acme", "t:1", &tenant),
    ];
    let first = block_on(l.reserve(&scopes, D)).unwrap().unwrap();
    let h = first.headers();
    assert_eq!(
        h.requests.unwrap().remaining,
        2,
        "the key's is the tightest"
    );
    assert_eq!(h.tokens.unwrap().remaining, 150);
    assert_eq!(h.requests.unwrap().reset_secs, 50);
    first.settle(100, 0);
    let _second = block_on(l.reserve(&scopes, D)).unwrap().unwrap();
    let refused = block_on(l.reserve(&scopes, D)).unwrap_err();
    assert_eq!(refused.kind, Kind::Tokens);
    assert_eq!(refused.message, "tenant acme: tokens_per_minute 250");
    assert_eq!(refused.retry_after_secs, 50);
    // The refusal took nothing: a smaller request still fits the tokens left.
    let small = Demand {
        tokens: 50,
        cost_micro: 0,
    };
    block_on(l.reserve(&scopes, small)).unwrap().unwrap().keep();
    let refused = block_on(l.reserve(&scopes, small)).unwrap_err();
    assert_eq!(refused.message, "key ci: requests_per_minute 3");
    assert_eq!(l.counts().rejections(Kind::Tokens), 1);
    assert_eq!(l.counts().rejections(Kind::Requests), 1);
}

#[test]
fn a_dropped_reservation_gives_everything_back_and_settling_adjusts() {
    let (l, _) = limiter("2026-03-01T10:00:00Z");
    let limits = Limits {
        requests_per_minute: Some(1),
        tokens_per_minute: Some(1000),
        ..Default::default()
    };
    let scopes = [scope("tenant acme", "t:1", &limits)];
    drop(block_on(l.reserve(&scopes, D)).unwrap().unwrap());
    let r = block_on(l.reserve(&scopes, D)).unwrap().unwrap();
    r.settle(900, 0);
    let s = block_on(l.standing(&scopes[0])).unwrap();
    assert_eq!(s[0].used, 1.0);
    assert_eq!(s[1].used, 900.0);
    assert_eq!(s[1].remaining, 100.0);
}

#[test]
fn windows_roll_over_on_the_clock() {
    let (l, clock) = limiter("2026-03-01T10:00:59Z");
    let limits = Limits {
        requests_per_minute: Some(1),
        ..Default::default()
    };
    let scopes = [scope("route chat", "r:1", &limits)];
    block_on(l.reserve(&scopes, D)).unwrap().unwrap().keep();
    let refused = block_on(l.reserve(&scopes, D)).unwrap_err();
    assert_eq!(refused.retry_after_secs, 1);
    clock.advance(Duration::from_secs(1));
    block_on(l.reserve(&scopes, D)).unwrap().unwrap().keep();
}

#[test]
fn budgets_reset_at_the_utc_period_boundary() {
    let (l, clock) = limiter("2026-03-31T23:59:00Z");
    let limits = Limits {
        budget: Some(Budget {
            amount_usd: 0.002,
            period: BudgetPeriod::Month,
        }),
        ..Default::default()
    };
    let scopes = [scope("key ci", "k:1", &limits)];
    block_on(l.reserve(&scopes, D)).unwrap().unwrap().keep();
    block_on(l.reserve(&scopes, D)).unwrap().unwrap().keep();
    let refused = block_on(l.reserve(&scopes, D)).unwrap_err();
    assert_eq!(refused.kind, Kind::Budget);
    assert_eq!(refused.message, "key ci: budget 0.002 USD per month");
    assert_eq!(refused.retry_after_secs, 60);
    let s = block_on(l.standing(&scopes[0])).unwrap();
    assert_eq!(s[0].used, 0.002);
    assert_eq!(s[0].resets_at, at("2026-04-01T00:00:00Z"));
    clock.set(at("2026-04-01T00:00:00Z"));
    block_on(l.reserve(&scopes, D)).unwrap().unwrap().keep();
}

struct Broken;

impl CounterStore for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn reserve<'a>(
        &'a self,
        _: &'a [Counter],
        _: i64,
    ) -> futures::future::BoxFuture<'a, Result<Reserved, StoreFault>> {
        Box::pin(async { Err(StoreFault("connection refused".into())) })
    }
    fn adjust(&self, _: &[Adjustment]) {}
    fn read<'a>(
        &'a self,
        _: &'a [CounterKey],
        _: i64,
    ) -> futures::future::BoxFuture<'a, Result<Vec<i64>, StoreFault>> {
        Box::pin(async { Err(StoreFault("connection refused".into())) })
    }
}

#[test]
fn a_store_outage_follows_on_store_error() {
    let l = Limiter::new(Arc::new(Broken));
    let allow = Limits {
        requests_per_minute: Some(1),
        ..Default::default()
    };
    let deny = Limits {
        on_store_error: Some(OnStoreError::Deny),
        ..allow.clone()
    };
    assert!(
        block_on(l.reserve(&[scope("tenant a", "t:1", &allow)], D))
            .unwrap()
            .is_none()
    );
    let refused = block_on(l.reserve(
        &[
            scope("tenant a", "t:1", &allow),
            scope("key k", "k:1", &deny),
        ],
        D,
    ))
    .unwrap_err();
    assert!(refused.store_error);
    assert_eq!(l.counts().store_errors(), 2);
}
