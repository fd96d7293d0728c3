//! The enabled policies of a snapshot, typed once and indexed by what they are bound to, so
//! the proxy finds the policies of a request (route + caller's tenant) with three map
//! lookups and no parsing (docs/architecture.md, "The snapshot").
//!
//! At most one policy of a type is bound to one object (the store refuses a second), and
//! for a request the most specific binding of each type applies: route over service over
//! tenant. A disabled policy is left out, as Kong does not load a disabled plugin: a less
//! specific one of its type then applies.

use foldhash::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::{RouteEntry, ServiceEntry};
use crate::policy::{CompileError, Compiled};
use crate::store::PolicyRecord;
use crate::telemetry::event::PolicyEvent;
use crate::vocab::policy::{PolicyConfig, PolicyScope, PolicyType};

/// One enabled policy, typed.
#[derive(Debug)]
pub struct PolicyEntry {
    pub record: PolicyRecord,
    pub kind: PolicyType,
    /// What it is bound to.
    pub scope: PolicyScope,
    /// Its configuration with Kong's defaults filled in; `None` when the stored one does
    /// not parse (then `compiled` holds why). For a transformer, `llm.service` holds the
    /// service's id; use [`PolicyEntry::llm_service`].
    pub config: Option<PolicyConfig>,
    /// A transformer's instruction LLM (one of the gateway's services, with its credential).
    pub llm_service: Option<Arc<ServiceEntry>>,
    /// Compiled once here (patterns, templates), so the request path compiles nothing. A
    /// configuration that no longer parses or compiles (the admin API refuses such writes;
    /// a hand-edited database) keeps its error: the requests it applies to are refused
    /// (503 `policy_unavailable`) rather than let through unchecked.
    pub compiled: Result<Compiled, CompileError>,
    /// The analytics entry of this policy having applied, rendered once here.
    pub applied: PolicyEvent,
}

/// The policies bound to one object: at most one per type, in `PolicyType::IN_ORDER` slots.
#[derive(Debug, Default, Clone)]
pub struct PolicySet([Option<Arc<PolicyEntry>>; PolicyType::IN_ORDER.len()]);

fn slot(kind: PolicyType) -> usize {
    PolicyType::IN_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0)
}

impl PolicySet {
    pub fn get(&self, kind: PolicyType) -> Option<&Arc<PolicyEntry>> {
        self.0[slot(kind)].as_ref()
    }
}

/// Enabled policies by the route, service and tenant they are bound to.
#[derive(Debug, Default)]
pub struct PolicyIndex {
    pub by_route: HashMap<Uuid, PolicySet>,
    pub by_service: HashMap<Uuid, PolicySet>,
    pub by_tenant: HashMap<Uuid, PolicySet>,
}

impl PolicyIndex {
    /// Types every enabled stored policy. One whose configuration does not parse or
    /// compile (a hand-edited database) is kept with its error, so the requests it applies
    /// to fail closed; one of an unknown type, not bound to exactly one object, or whose
    /// instruction LLM's service is not in the snapshot is skipped and logged.
    pub fn compile(
        records: Vec<PolicyRecord>,
        services: &HashMap<Uuid, Arc<ServiceEntry>>,
    ) -> PolicyIndex {
        let mut index = PolicyIndex::default();
        for r in records.into_iter().filter(|r| r.enabled) {
            let Some(entry) = compile_policy(r, services) else {
                continue;
            };
            let (map, id) = match entry.scope {
                PolicyScope::Route => (&mut index.by_route, entry.record.route_id),
                PolicyScope::Service => (&mut index.by_service, entry.record.service_id),
                PolicyScope::Tenant => (&mut index.by_tenant, entry.record.tenant_id),
            };
            let Some(id) = id else { continue };
            let set = map.entry(id).or_default();
            let at = slot(entry.kind);
            if let Some(other) = &set.0[at] {
                tracing::error!(policy = %entry.record.name, other = %other.record.name, "two policies of one type on one object; keeping the first");
                continue;
            }
            set.0[at] = Some(Arc::new(entry));
        }
        index
    }

    pub fn is_empty(&self) -> bool {
        self.by_route.is_empty() && self.by_service.is_empty() && self.by_tenant.is_empty()
    }

    /// The policy of `kind` that applies to a request on `route` by `tenant`: the route's,
    /// else its service's, else the tenant's.
    pub fn effective(
        &self,
        kind: PolicyType,
        route: &RouteEntry,
        tenant: Uuid,
    ) -> Option<&Arc<PolicyEntry>> {
        fn at(
            map: &HashMap<Uuid, PolicySet>,
            id: Uuid,
            kind: PolicyType,
        ) -> Option<&Arc<PolicyEntry>> {
            map.get(&id)?.get(kind)
        }
        if self.is_empty() {
            return None; // the common case: no policy anywhere, no lookups
        }
        at(&self.by_route, route.record.id, kind)
            .or_else(|| at(&self.by_service, route.service.record.id, kind))
            .or_else(|| at(&self.by_tenant, tenant, kind))
    }

    /// Every policy that applies to a request on `route` by `tenant`, one per type, in the
    /// order they run (`PolicyType::IN_ORDER`).
    pub fn effective_all<'a>(
        &'a self,
        route: &'a RouteEntry,
        tenant: Uuid,
    ) -> impl Iterator<Item = &'a Arc<PolicyEntry>> + 'a {
        PolicyType::IN_ORDER
            .into_iter()
            .filter_map(move |kind| self.effective(kind, route, tenant))
    }
}

fn compile_policy(
    r: PolicyRecord,
    services: &HashMap<Uuid, Arc<ServiceEntry>>,
) -> Option<PolicyEntry> {
    let Some(kind) = PolicyType::parse(&r.kind) else {
        tracing::error!(policy = %r.name, r#type = %r.kind, "unknown policy type; skipping the policy");
        return None;
    };
    let scope = match (r.route_id, r.service_id, r.tenant_id) {
        (Some(_), None, None) => PolicyScope::Route,
        (None, Some(_), None) => PolicyScope::Service,
        (None, None, Some(_)) => PolicyScope::Tenant,
        _ => {
            tracing::error!(policy = %r.name, "policy not bound to exactly one object; skipping it");
            return None;
        }
    };
    let config = match PolicyConfig::parse(kind, r.config.0.clone()) {
        Ok(c) => c,
        Err(e) => {
            // Skipping it would let its requests through unchecked (a guard that no longer
            // guards): they are refused as for a configuration that does not compile.
            tracing::warn!(object = %format!("policies/{}", r.name), error = %e, "stored configuration does not parse; requests it applies to are refused");
            return Some(PolicyEntry {
                applied: applied(kind, &r.name),
                record: r,
                kind,
                scope,
                config: None,
                llm_service: None,
                // The parser's words (which may quote the stored values) go to the log
                // only: this error reaches the client.
                compiled: Err(CompileError {
                    field: "config".into(),
                    message: "does not parse".into(),
                }),
            });
        }
    };
    let llm_service = match config.transformer() {
        Some(t) => {
            let service = Uuid::parse_str(&t.llm.service)
                .ok()
                .and_then(|id| services.get(&id).cloned());
            if service.is_none() {
                tracing::error!(policy = %r.name, service = %t.llm.service, "the instruction LLM's service is not in the configuration; skipping the policy");
                return None;
            }
            service
        }
        None => None,
    };
    let compiled = Compiled::new(&config);
    if let Err(e) = &compiled {
        tracing::error!(policy = %r.name, error = %e, "stored configuration does not compile; requests it applies to are refused");
    }
    Some(PolicyEntry {
        applied: applied(kind, &r.name),
        record: r,
        kind,
        scope,
        config: Some(config),
        llm_service,
        compiled,
    })
}

/// The entry a request's analytics line gets when the policy applied without a detail.
fn applied(kind: PolicyType, name: &str) -> PolicyEvent {
    PolicyEvent::new(kind.as_str(), name, "applied", None).prerendered()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use sqlx::types::Json;

    fn record(kind: &str, config: serde_json::Value, route: Uuid) -> PolicyRecord {
        PolicyRecord {
            id: Uuid::now_v7(),
            name: format!("{kind}-broken"),
            kind: kind.into(),
            enabled: true,
            config: Json(config),
            route_id: Some(route),
            service_id: None,
            tenant_id: None,
            tags: Json(Vec::new()),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    /// A stored configuration that no longer parses (a hand-edited database) is kept, not
    /// skipped: it holds its error, which the policies stage answers with 503
    /// `policy_unavailable`, instead of letting the requests through unchecked.
    #[test]
    fn a_configuration_that_does_not_parse_fails_closed() {
        let route = Uuid::now_v7();
        let guard = record(
            "ai-prompt-guard",
            serde_json::json!({"deny_patterns": "not a list"}),
            route,
        );
        let transformer = record(
            "ai-request-transformer",
            serde_json::json!({"prompt": 5}),
            route,
        );
        let index = PolicyIndex::compile(vec![guard, transformer], &HashMap::default());
        assert!(!index.is_empty());
        let set = index
            .by_route
            .get(&route)
            .expect("kept, bound to its route");
        for kind in [PolicyType::PromptGuard, PolicyType::RequestTransformer] {
            let entry = set.get(kind).expect("kept");
            assert!(entry.config.is_none());
            let error = entry.compiled.as_ref().expect_err("its error");
            assert_eq!(error.field, "config", "{error}");
            assert_eq!(error.to_string(), "config: does not parse");
        }
    }
}
