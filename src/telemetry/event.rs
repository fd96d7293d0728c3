//! What the telemetry is told about each proxied request: the `UsageEvent` the proxy
//! records when a request ends, and the observer that turns events into OTLP spans and
//! metrics (`otel.rs`). The usage aggregator (`actors::metrics`) delivers the events and
//! re-exports these types; they live here so the telemetry never imports the actors.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;

use uuid::Uuid;

use super::trace::TraceContext;

/// One proxied request, as the aggregator and the telemetry need it.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    /// The usage event id (a stream's spooled `begin` record shares it).
    pub id: Uuid,
    pub started_at: SystemTime,
    pub duration: Duration,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub key_id: Uuid,
    pub route_id: Uuid,
    pub route: String,
    /// Tollgate's provider name (`openai`, `azure`, …).
    pub provider: &'static str,
    /// `chat` or `text_completion`.
    pub operation: &'static str,
    pub request_model: String,
    pub response_model: Option<String>,
    pub status: u16,
    /// Why it failed (`error.type`): the error's type or code; `None` on success.
    pub error_type: Option<String>,
    /// `None` when unknown (no zero points for failed requests).
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// USD.
    pub cost: f64,
    pub upstream: Option<UpstreamTiming>,
    /// Streams: from receiving the request to the first chunk sent to the client.
    pub time_to_first_token: Option<Duration>,
    /// Time spent in the gateway (total minus upstream).
    pub overhead: Duration,
    pub stream: bool,
    pub finish_reason: Option<String>,
    /// The upstream host (`server.address`).
    pub server_address: Option<String>,
    pub trace: TraceContext,
    /// The policies that acted on the request (docs/behaviour.md, "Policies").
    pub policies: Vec<PolicyEvent>,
    /// Set on the usage of a transformer policy's instruction call (its plugin name):
    /// the gateway's own call, billed to the request's tenant and key.
    pub policy_usage: Option<&'static str>,
    /// The gateway refused the request before the upstream call (a limit or budget):
    /// counted in the usage row's `rejected` as well as in its `requests` and `errors`.
    pub rejected: bool,
}

/// One policy that acted on a request: in the analytics line (`tollgate.policies`), as
/// span attributes and in the `tollgate.policy.actions` metric.
#[derive(Debug, Clone)]
pub struct PolicyEvent {
    /// Kong's plugin name (`ai-prompt-guard`, …).
    pub kind: &'static str,
    pub name: Arc<str>,
    /// `applied`, `blocked` or `failed`.
    pub outcome: &'static str,
    /// For a refusal, the real reason (a guard's matching pattern included), which the
    /// client is not told.
    pub detail: Option<String>,
    /// This entry as JSON, rendered once when the snapshot was compiled (the common
    /// `applied` entry of a policy), so each request's analytics line copies it instead of
    /// escaping every string again.
    rendered: Option<Arc<RawValue>>,
}

/// The analytics line's shape of a [`PolicyEvent`].
#[derive(serde::Serialize, PartialEq)]
struct PolicyEventJson<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    name: &'a str,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

impl PolicyEvent {
    pub fn new(
        kind: &'static str,
        name: impl Into<Arc<str>>,
        outcome: &'static str,
        detail: Option<String>,
    ) -> PolicyEvent {
        PolicyEvent {
            kind,
            name: name.into(),
            outcome,
            detail,
            rendered: None,
        }
    }

    /// The same event with its JSON rendered now, for an event reused by many requests.
    pub fn prerendered(mut self) -> PolicyEvent {
        self.rendered = serde_json::to_string(&self.json())
            .ok()
            .and_then(|json| RawValue::from_string(json).ok())
            .map(Arc::from);
        self
    }

    /// The same policy with another outcome (not pre-rendered).
    pub fn with_outcome(&self, outcome: &'static str, detail: Option<String>) -> PolicyEvent {
        PolicyEvent::new(self.kind, Arc::clone(&self.name), outcome, detail)
    }

    fn json(&self) -> PolicyEventJson<'_> {
        PolicyEventJson {
            kind: self.kind,
            name: &self.name,
            outcome: self.outcome,
            detail: self.detail.as_deref(),
        }
    }
}

impl PartialEq for PolicyEvent {
    fn eq(&self, other: &PolicyEvent) -> bool {
        self.json() == other.json()
    }
}

impl Eq for PolicyEvent {}

impl serde::Serialize for PolicyEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.rendered {
            Some(json) => json.serialize(serializer),
            None => self.json().serialize(serializer),
        }
    }
}

/// A transformer policy's call to its instruction LLM: recorded as its own usage event
/// (marked `policy`) and in the analytics line under the plugin's name.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyUsage {
    /// Kong's plugin name (`ai-request-transformer`, `ai-response-transformer`).
    pub kind: &'static str,
    pub plugin_id: Uuid,
    pub provider: &'static str,
    /// The instruction LLM's service.
    pub service: String,
    pub request_model: String,
    pub response_model: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// USD, from the policy's `llm.model.options` prices.
    pub cost: f64,
    pub latency: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct UpstreamTiming {
    pub started_at: SystemTime,
    pub duration: Duration,
}

impl UsageEvent {
    pub fn is_error(&self) -> bool {
        self.status >= 400 || self.error_type.is_some()
    }
}

/// Sees every event (OTLP spans and metrics); runs on the aggregator's thread.
pub trait UsageObserver {
    fn observe(&mut self, event: &UsageEvent);
    /// The running total of lost events, exported as a counter.
    fn dropped(&mut self, total: u64);
    /// Shutdown: export what is buffered.
    fn flush(&mut self);
    /// The end of one drain of the queue (events may have been summed until now).
    fn drained(&mut self) {}
}

#[cfg(test)]
mod policy_event_tests {
    use super::PolicyEvent;

    #[test]
    fn a_prerendered_entry_is_the_same_json_as_one_rendered_per_request() {
        for name in ["guard", "quote\" and \\ and \u{7}", "naïve"] {
            let plain = PolicyEvent::new("ai-prompt-guard", name, "applied", None);
            let once = plain.clone().prerendered();
            assert_eq!(
                serde_json::to_string(&once).unwrap(),
                serde_json::to_string(&plain).unwrap()
            );
            assert_eq!(once, plain);
            let value: serde_json::Value = serde_json::to_value(&once).unwrap();
            assert_eq!(value["name"], name);
            assert_eq!(value["type"], "ai-prompt-guard");
            assert!(value.get("detail").is_none());
        }
        let blocked = PolicyEvent::new("ai-prompt-guard", "g", "applied", None)
            .prerendered()
            .with_outcome("blocked", Some("deny_patterns[0]".into()));
        assert_eq!(
            serde_json::to_string(&blocked).unwrap(),
            r#"{"type":"ai-prompt-guard","name":"g","outcome":"blocked","detail":"deny_patterns[0]"}"#
        );
    }
}
