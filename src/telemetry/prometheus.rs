//! `GET /metrics` in the Prometheus text exposition format (docs/behaviour.md, "Prometheus
//! scraping"). The metrics aggregator owns a [`PromMetrics`] and feeds it every finished
//! request's `UsageEvent`, off the request path, as it feeds the OTLP instruments; a scrape
//! asks the aggregator to render it.
//!
//! Two sets of names:
//! - Tollgate's OTLP metrics under the exact names and labels the OpenTelemetry
//!   Collector's Prometheus exporter gives them (deploy/otel-collector.yaml), so the shipped
//!   Grafana dashboard works whether Prometheus scrapes the collector or the gateway:
//!   `tollgate_requests_total`, `gen_ai_client_operation_duration_seconds`, …
//! - Kong's AI metrics: `ai_llm_requests_total`, `ai_llm_tokens_total`,
//!   `ai_llm_cost_total`, `ai_llm_provider_latency_ms` (Kong's buckets).
//!
//! A small hand-written encoder instead of a client library: the aggregator is the only
//! writer (no atomics or locks needed), and the names must match the collector's
//! translation byte for byte, which a library's own suffix rules would not guarantee.
//!
//! Cardinality is bounded: at most `max_label_sets` tenant × route × provider × model ×
//! operation combinations are kept; past that, new combinations are counted in one set
//! whose tenant, route, provider, model and operation labels are `other` (and in
//! `tollgate_metrics_overflow_total`). `error.type` values are bounded per set the same way.

use std::fmt::Write as _;

use crate::telemetry::event::UsageEvent;
use crate::telemetry::label_index::LabelIndex;
use crate::telemetry::semconv;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The label value past the cardinality bound.
pub const OTHER: &str = "other";
/// Distinct `error.type` values kept per label set; further ones count as `other`.
const MAX_ERROR_TYPES: usize = 16;
/// Kong's `ai_llm_provider_latency_ms` buckets (its Prometheus exporter).
pub const KONG_LATENCY_BUCKETS_MS: &[f64] = &[
    250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 3500.0, 4000.0, 4500.0, 5000.0, 10000.0,
    30000.0, 60000.0,
];
/// Status classes: index = status / 100.
const CLASSES: [&str; 6] = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Explicit-bucket histogram: per-bucket counts (rendered cumulatively), sum and count.
#[derive(Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        // `le` is inclusive; values past the last bound only count in `+Inf`.
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

/// The series of one tenant × route × provider × model × operation.
struct LabelSet {
    /// `tollgate_tenant="…",tollgate_route="…",gen_ai_provider_name="…",
    /// gen_ai_request_model="…",gen_ai_operation_name="…"`, escaped once.
    base: String,
    /// `ai_provider="…",ai_model="…",tollgate_tenant="…",tollgate_route="…"`.
    kong: String,
    requests: [u64; CLASSES.len()],
    cost: f64,
    /// Successful operations; failures are in `failed` by `error.type`.
    duration: Histogram,
    failed: Vec<(String, Histogram)>,
    tokens_input: Histogram,
    tokens_output: Histogram,
    ttft: Option<Histogram>,
    overhead: Histogram,
    llm_latency: Histogram,
    /// (policy type, outcome) → count; both come from fixed vocabularies.
    policies: Vec<(&'static str, &'static str, u64)>,
}

impl LabelSet {
    fn new(event: &UsageEvent, overflow: bool) -> LabelSet {
        let (tenant, route, model, provider, operation) = if overflow {
            (OTHER, OTHER, OTHER, OTHER, OTHER)
        } else {
            (
                event.tenant.as_str(),
                event.route.as_str(),
                event.request_model.as_str(),
                event.provider,
                event.operation,
            )
        };
        let gen_ai_provider = if overflow {
            OTHER
        } else {
            semconv::gen_ai_provider_name(event.provider)
        };
        let mut base = String::new();
        push_label(&mut base, "tollgate_tenant", tenant);
        push_label(&mut base, "tollgate_route", route);
        push_label(&mut base, "gen_ai_provider_name", gen_ai_provider);
        push_label(&mut base, "gen_ai_request_model", model);
        push_label(&mut base, "gen_ai_operation_name", operation);
        let mut kong = String::new();
        push_label(&mut kong, "ai_provider", provider);
        push_label(&mut kong, "ai_model", model);
        push_label(&mut kong, "tollgate_tenant", tenant);
        push_label(&mut kong, "tollgate_route", route);
        LabelSet {
            base,
            kong,
            requests: [0; CLASSES.len()],
            cost: 0.0,
            duration: Histogram::new(semconv::OPERATION_DURATION_BUCKETS),
            failed: Vec::new(),
            tokens_input: Histogram::new(semconv::TOKEN_USAGE_BUCKETS),
            tokens_output: Histogram::new(semconv::TOKEN_USAGE_BUCKETS),
            ttft: None,
            overhead: Histogram::new(semconv::OVERHEAD_DURATION_BUCKETS),
            llm_latency: Histogram::new(KONG_LATENCY_BUCKETS_MS),
            policies: Vec::new(),
        }
    }

    fn observe(&mut self, event: &UsageEvent) {
        let class = usize::from(event.status / 100).min(CLASSES.len() - 1);
        self.requests[class] += 1;
        if event.cost.is_finite() && event.cost > 0.0 {
            self.cost += event.cost;
        }
        let duration = event.duration.as_secs_f64();
        match error_type(event) {
            None => self.duration.observe(duration),
            Some(mut kind) => {
                if self.failed.len() >= MAX_ERROR_TYPES
                    && !self.failed.iter().any(|(k, _)| *k == kind)
                {
                    kind = OTHER.to_string();
                }
                let at = match self.failed.iter().position(|(k, _)| *k == kind) {
                    Some(at) => at,
                    None => {
                        let histogram = Histogram::new(semconv::OPERATION_DURATION_BUCKETS);
                        self.failed.push((kind, histogram));
                        self.failed.len() - 1
                    }
                };
                self.failed[at].1.observe(duration);
            }
        }
        // Only reported counts: a failure without usage records no zero points (as OTLP).
        if let Some(tokens) = event.prompt_tokens {
            self.tokens_input.observe(tokens as f64);
        }
        if let Some(tokens) = event.completion_tokens {
            self.tokens_output.observe(tokens as f64);
        }
        if event.stream
            && let Some(ttft) = event.time_to_first_token
        {
            self.ttft
                .get_or_insert_with(|| Histogram::new(semconv::TIME_TO_FIRST_TOKEN_BUCKETS))
                .observe(ttft.as_secs_f64());
        }
        self.overhead.observe(event.overhead.as_secs_f64());
        // Kong's `meta.llm_latency`: the time spent waiting for the upstream, as the
        // analytics line reports it; a request that never reached one has none.
        if let Some(upstream) = event.upstream {
            self.llm_latency
                .observe(upstream.duration.as_millis() as f64);
        }
        for policy in &event.policies {
            match self
                .policies
                .iter_mut()
                .find(|(k, o, _)| *k == policy.kind && *o == policy.outcome)
            {
                Some(entry) => entry.2 += 1,
                None => self.policies.push((policy.kind, policy.outcome, 1)),
            }
        }
    }
}

/// `error.type` as OTLP records it: the event's error, else the status of a failure.
fn error_type(event: &UsageEvent) -> Option<String> {
    match &event.error_type {
        Some(e) => Some(e.clone()),
        None if event.is_error() => Some(event.status.to_string()),
        None => None,
    }
}

/// The per-request metrics, aggregated by the metrics aggregator.
pub struct PromMetrics {
    max_label_sets: usize,
    sets: Vec<LabelSet>,
    /// Where each event's set is in `sets`.
    index: LabelIndex,
    /// The `other` set, once the bound is reached.
    overflow: Option<usize>,
    overflowed: u64,
}

/// Process-wide counters read at scrape time (not per request).
#[derive(Debug, Default, Clone)]
pub struct ProcessCounters {
    /// Usage events lost before the spool (`tollgate.usage.dropped`).
    pub usage_dropped: u64,
    /// Process-log lines lost (`tollgate.log.dropped`).
    pub log_dropped: u64,
    /// Analytics lines lost (`tollgate.analytics.lost`).
    pub analytics_lost: u64,
    /// Refusals by limit kind (`tollgate.limit.rejections`).
    pub limit_rejections: Vec<(&'static str, u64)>,
}

impl PromMetrics {
    pub fn new(max_label_sets: usize) -> PromMetrics {
        PromMetrics {
            max_label_sets: max_label_sets.max(1),
            sets: Vec::new(),
            index: LabelIndex::default(),
            overflow: None,
            overflowed: 0,
        }
    }

    /// Counts one finished request.
    pub fn observe(&mut self, event: &UsageEvent) {
        let index = self.index(event);
        self.sets[index].observe(event);
    }

    fn index(&mut self, event: &UsageEvent) -> usize {
        if let Some(found) = self.index.find(event) {
            return found;
        }
        if self.sets.len() >= self.max_label_sets {
            self.overflowed += 1;
            if let Some(at) = self.overflow {
                return at;
            }
            self.sets.push(LabelSet::new(event, true));
            self.overflow = Some(self.sets.len() - 1);
            return self.sets.len() - 1;
        }
        self.sets.push(LabelSet::new(event, false));
        let at = self.sets.len() - 1;
        self.index.insert(event, at);
        at
    }

    /// Label sets kept (the `other` one included).
    pub fn label_sets(&self) -> usize {
        self.sets.len()
    }

    /// The exposition: every per-request metric, then `process`.
    pub fn render(&self, process: &ProcessCounters) -> String {
        let mut out = String::with_capacity(4096 + self.sets.len() * 8192);
        self.render_tollgate(&mut out);
        self.render_kong(&mut out);
        render_process(&mut out, process, self.overflowed);
        out
    }

    fn render_tollgate(&self, out: &mut String) {
        self.requests_by_class(
            out,
            "tollgate_requests_total",
            "Proxied requests, by status class.",
            |set| &set.base,
        );
        family(
            out,
            "tollgate_cost_USD_total",
            "counter",
            "Cost of the proxied requests in USD, from the routes' prices.",
        );
        for set in self.sets.iter().filter(|s| s.cost > 0.0) {
            sample(out, "tollgate_cost_USD_total", &set.base, set.cost);
        }
        let name = "gen_ai_client_operation_duration_seconds";
        family(out, name, "histogram", "GenAI operation duration.");
        for set in &self.sets {
            if set.duration.count > 0 {
                histogram(out, name, &set.base, &set.duration);
            }
            for (kind, h) in &set.failed {
                let mut labels = set.base.clone();
                push_label(&mut labels, "error_type", kind);
                histogram(out, name, &labels, h);
            }
        }
        let name = "gen_ai_client_token_usage";
        family(out, name, "histogram", "Tokens used per request.");
        for set in &self.sets {
            for (kind, h) in [
                (semconv::TOKEN_TYPE_INPUT, &set.tokens_input),
                (semconv::TOKEN_TYPE_OUTPUT, &set.tokens_output),
            ] {
                if h.count > 0 {
                    let mut labels = set.base.clone();
                    push_label(&mut labels, "gen_ai_token_type", kind);
                    histogram(out, name, &labels, h);
                }
            }
        }
        let name = "gen_ai_server_time_to_first_token_seconds";
        family(
            out,
            name,
            "histogram",
            "Time to the first chunk of a stream.",
        );
        for set in &self.sets {
            if let Some(h) = &set.ttft {
                histogram(out, name, &set.base, h);
            }
        }
        let name = "tollgate_overhead_duration_seconds";
        family(out, name, "histogram", "Time spent in the gateway itself.");
        for set in &self.sets {
            histogram(out, name, &set.base, &set.overhead);
        }
        let name = "tollgate_policy_actions_total";
        family(
            out,
            name,
            "counter",
            "Policies that acted, by type and outcome.",
        );
        for set in &self.sets {
            for (kind, outcome, count) in &set.policies {
                let mut labels = set.base.clone();
                push_label(&mut labels, "tollgate_policy_type", kind);
                push_label(&mut labels, "tollgate_policy_outcome", outcome);
                sample(out, name, &labels, *count as f64);
            }
        }
    }

    /// A request counter per label set and status class (classes never seen are left out).
    fn requests_by_class(
        &self,
        out: &mut String,
        name: &str,
        help: &str,
        labels_of: impl Fn(&LabelSet) -> &String,
    ) {
        family(out, name, "counter", help);
        for set in &self.sets {
            for (class, count) in set.requests.iter().enumerate() {
                if *count > 0 {
                    let mut labels = labels_of(set).clone();
                    push_label(&mut labels, "tollgate_status_class", CLASSES[class]);
                    sample(out, name, &labels, *count as f64);
                }
            }
        }
    }

    fn render_kong(&self, out: &mut String) {
        self.requests_by_class(
            out,
            "ai_llm_requests_total",
            "AI requests (Kong's name), by status class.",
            |set| &set.kong,
        );
        let name = "ai_llm_cost_total";
        family(out, name, "counter", "AI cost in USD (Kong's name).");
        for set in self.sets.iter().filter(|s| s.cost > 0.0) {
            sample(out, name, &set.kong, set.cost);
        }
        let name = "ai_llm_tokens_total";
        family(
            out,
            name,
            "counter",
            "AI tokens (Kong's name), by token type.",
        );
        for set in &self.sets {
            let prompt = set.tokens_input.sum;
            let completion = set.tokens_output.sum;
            for (kind, count) in [
                ("prompt_tokens", prompt),
                ("completion_tokens", completion),
                ("total_tokens", prompt + completion),
            ] {
                // As Kong: a type is counted only once it is above zero.
                if count > 0.0 {
                    let mut labels = set.kong.clone();
                    push_label(&mut labels, "token_type", kind);
                    sample(out, name, &labels, count);
                }
            }
        }
        let name = "ai_llm_provider_latency_ms";
        family(
            out,
            name,
            "histogram",
            "Time waiting for the AI provider in milliseconds (Kong's name).",
        );
        for set in self.sets.iter().filter(|s| s.llm_latency.count > 0) {
            histogram(out, name, &set.kong, &set.llm_latency);
        }
    }
}

fn render_process(out: &mut String, process: &ProcessCounters, overflowed: u64) {
    for (name, help, value) in [
        (
            "tollgate_usage_dropped_total",
            "Usage events lost before the spool (queue full or disk failing).",
            process.usage_dropped,
        ),
        (
            "tollgate_log_dropped_total",
            "Process-log lines lost to a broken or stalled sink.",
            process.log_dropped,
        ),
        (
            "tollgate_analytics_lost_total",
            "Analytics lines lost (failed writes or a full buffer).",
            process.analytics_lost,
        ),
        (
            "tollgate_metrics_overflow_total",
            "Requests counted under the `other` label set (past metrics_max_label_sets).",
            overflowed,
        ),
    ] {
        family(out, name, "counter", help);
        sample(out, name, "", value as f64);
    }
    let name = "tollgate_limit_rejections_total";
    family(
        out,
        name,
        "counter",
        "Requests refused by a limit, by kind.",
    );
    for (kind, count) in &process.limit_rejections {
        let mut labels = String::new();
        push_label(&mut labels, "tollgate_limit_kind", kind);
        sample(out, name, &labels, *count as f64);
    }
}

/// Appends `name="value"` (with a separating comma) to a label list, the value escaped as
/// the text format requires.
fn push_label(labels: &mut String, name: &str, value: &str) {
    if !labels.is_empty() {
        labels.push(',');
    }
    labels.push_str(name);
    labels.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => labels.push_str("\\\\"),
            '"' => labels.push_str("\\\""),
            '\n' => labels.push_str("\\n"),
            c => labels.push(c),
        }
    }
    labels.push('"');
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    out.push(' ');
    push_float(out, value);
    out.push('\n');
}

/// Go's shortest formatting, as the collector writes values and `le` bounds
/// (`1`, `0.25`, `+Inf`).
fn push_float(out: &mut String, value: f64) {
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.is_nan() {
        out.push_str("NaN");
    } else {
        let _ = write!(out, "{value}");
    }
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (bound, count) in h.bounds.iter().zip(&h.counts) {
        cumulative += count;
        let mut le = String::with_capacity(labels.len() + 16);
        le.push_str(labels);
        let mut bound_text = String::new();
        push_float(&mut bound_text, *bound);
        push_label(&mut le, "le", &bound_text);
        sample(out, &bucket, &le, cumulative as f64);
    }
    let mut le = labels.to_string();
    push_label(&mut le, "le", "+Inf");
    sample(out, &bucket, &le, h.count as f64);
    sample(out, &format!("{name}_sum"), labels, h.sum);
    sample(out, &format!("{name}_count"), labels, h.count as f64);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use uuid::Uuid;

    use super::*;
    use crate::telemetry::event::{PolicyEvent, UpstreamTiming};
    use crate::telemetry::trace::TraceContext;

    fn event(tenant: &str, model: &str, status: u16) -> UsageEvent {
        let ok = status < 400;
        UsageEvent {
            id: Uuid::now_v7(),
            started_at: SystemTime::now(),
            duration: Duration::from_millis(300),
            tenant_id: Uuid::from_u128(tenant.len() as u128),
            tenant: tenant.into(),
            key_id: Uuid::nil(),
            route_id: Uuid::nil(),
            route: "chat".into(),
            provider: "azure",
            operation: "chat",
            request_model: model.into(),
            response_model: None,
            status,
            error_type: (!ok).then(|| "upstream_error".to_string()),
            prompt_tokens: ok.then_some(12),
            completion_tokens: ok.then_some(5),
            cost: if ok { 0.002 } else { 0.0 },
            upstream: Some(UpstreamTiming {
                started_at: SystemTime::now(),
                duration: Duration::from_millis(1200),
            }),
            time_to_first_token: Some(Duration::from_millis(40)),
            overhead: Duration::from_micros(300),
            stream: true,
            finish_reason: None,
            server_address: None,
            trace: TraceContext::from_headers(&actix_web::http::header::HeaderMap::new()),
            policies: vec![PolicyEvent {
                kind: "ai-prompt-guard",
                name: "g".into(),
                outcome: "applied",
                detail: None,
            }],
            policy_usage: None,
            rejected: false,
        }
    }

    fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn requests_tokens_cost_and_latency_under_both_names() {
        let mut m = PromMetrics::new(100);
        m.observe(&event("acme", "gpt-4o", 200));
        m.observe(&event("acme", "gpt-4o", 200));
        m.observe(&event("acme", "gpt-4o", 502));
        let text = m.render(&ProcessCounters::default());
        let base = r#"tollgate_tenant="acme",tollgate_route="chat",gen_ai_provider_name="azure.ai.openai",gen_ai_request_model="gpt-4o",gen_ai_operation_name="chat""#;
        assert!(text.contains(&format!(
            "tollgate_requests_total{{{base},tollgate_status_class=\"2xx\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "tollgate_requests_total{{{base},tollgate_status_class=\"5xx\"}} 1\n"
        )));
        assert!(text.contains(&format!("tollgate_cost_USD_total{{{base}}} 0.004\n")));
        assert!(text.contains(&format!(
            "gen_ai_client_token_usage_sum{{{base},gen_ai_token_type=\"input\"}} 24\n"
        )));
        assert!(text.contains(&format!(
            "gen_ai_client_operation_duration_seconds_count{{{base},error_type=\"upstream_error\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "gen_ai_client_operation_duration_seconds_bucket{{{base},le=\"0.32\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "tollgate_policy_actions_total{{{base},tollgate_policy_type=\"ai-prompt-guard\",tollgate_policy_outcome=\"applied\"}} 3\n"
        )));
        let kong =
            r#"ai_provider="azure",ai_model="gpt-4o",tollgate_tenant="acme",tollgate_route="chat""#;
        assert!(text.contains(&format!(
            "ai_llm_tokens_total{{{kong},token_type=\"total_tokens\"}} 34\n"
        )));
        assert!(text.contains(&format!("ai_llm_cost_total{{{kong}}} 0.004\n")));
        assert!(text.contains(&format!(
            "ai_llm_provider_latency_ms_bucket{{{kong},le=\"1500\"}} 3\n"
        )));
        assert!(text.contains(&format!(
            "ai_llm_provider_latency_ms_bucket{{{kong},le=\"1000\"}} 0\n"
        )));
        // Every family is announced once, its samples together.
        let types = lines(&text, "# TYPE ");
        let mut names: Vec<_> = types.iter().map(|l| l.split(' ').nth(2)).collect();
        names.dedup();
        assert_eq!(names.len(), types.len());
    }

    #[test]
    fn past_the_bound_new_combinations_count_as_other() {
        let mut m = PromMetrics::new(2);
        m.observe(&event("a", "m1", 200));
        m.observe(&event("a", "m2", 200));
        for i in 0..50 {
            m.observe(&event("a", &format!("client-chosen-{i}"), 200));
        }
        m.observe(&event("a", "m1", 200));
        assert_eq!(m.label_sets(), 3);
        let text = m.render(&ProcessCounters::default());
        assert!(text.contains(r#"tollgate_requests_total{tollgate_tenant="other",tollgate_route="other",gen_ai_provider_name="other",gen_ai_request_model="other",gen_ai_operation_name="other",tollgate_status_class="2xx"} 50"#));
        assert!(text.contains(r#"gen_ai_request_model="m1",gen_ai_operation_name="chat",tollgate_status_class="2xx"} 2"#));
        assert!(text.contains("tollgate_metrics_overflow_total 50\n"));
        assert!(!text.contains("client-chosen"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut m = PromMetrics::new(10);
        m.observe(&event("acme", "a\"b\\c\nd", 200));
        let text = m.render(&ProcessCounters::default());
        assert!(
            text.contains(r#"gen_ai_request_model="a\"b\\c\nd""#),
            "{text}"
        );
    }

    #[test]
    fn error_types_are_bounded_per_label_set() {
        let mut m = PromMetrics::new(10);
        for i in 0..40 {
            let mut e = event("acme", "m", 502);
            e.error_type = Some(format!("kind-{i}"));
            m.observe(&e);
        }
        let text = m.render(&ProcessCounters::default());
        let counts = lines(&text, "gen_ai_client_operation_duration_seconds_count{");
        assert_eq!(counts.len(), MAX_ERROR_TYPES + 1, "{counts:?}");
        assert!(text.contains(r#"error_type="other"} 24"#), "{text}");
    }

    #[test]
    fn process_counters_are_rendered() {
        let m = PromMetrics::new(10);
        let text = m.render(&ProcessCounters {
            usage_dropped: 3,
            log_dropped: 4,
            analytics_lost: 5,
            limit_rejections: vec![("budget", 7)],
        });
        assert!(text.contains("tollgate_usage_dropped_total 3\n"));
        assert!(text.contains("tollgate_log_dropped_total 4\n"));
        assert!(text.contains("tollgate_analytics_lost_total 5\n"));
        assert!(
            text.contains("tollgate_limit_rejections_total{tollgate_limit_kind=\"budget\"} 7\n")
        );
    }
}
