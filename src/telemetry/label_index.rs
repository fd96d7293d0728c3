//! Finding the label set of a usage event (OTLP attribute sets in `otel.rs`, Prometheus
//! series in `prometheus.rs`): the sets are told apart by tenant, route, provider, model
//! and operation, and found through the event's tenant and route ids first, so a lookup
//! compares a few strings instead of hashing them.

use std::collections::HashMap;

use uuid::Uuid;

use crate::telemetry::event::UsageEvent;

/// What tells two events' label sets apart.
struct EventKey {
    tenant: String,
    route: String,
    model: String,
    provider: &'static str,
    operation: &'static str,
}

impl EventKey {
    fn matches(&self, event: &UsageEvent) -> bool {
        self.model == event.request_model
            && self.provider == event.provider
            && self.operation == event.operation
            && self.tenant == event.tenant
            && self.route == event.route
    }
}

/// Positions of label sets (kept by the caller, in a `Vec`) by what identifies them.
#[derive(Default)]
pub struct LabelIndex {
    by_route: HashMap<(Uuid, Uuid), Vec<(EventKey, usize)>>,
}

impl LabelIndex {
    /// The position of the event's set, when it has one.
    pub fn find(&self, event: &UsageEvent) -> Option<usize> {
        self.by_route
            .get(&(event.tenant_id, event.route_id))?
            .iter()
            .find(|(key, _)| key.matches(event))
            .map(|(_, at)| *at)
    }

    /// Records that the event's set is at `at`.
    pub fn insert(&mut self, event: &UsageEvent, at: usize) {
        let key = EventKey {
            tenant: event.tenant.clone(),
            route: event.route.clone(),
            model: event.request_model.clone(),
            provider: event.provider,
            operation: event.operation,
        };
        self.by_route
            .entry((event.tenant_id, event.route_id))
            .or_default()
            .push((key, at));
    }
}
