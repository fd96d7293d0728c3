//! Every OpenTelemetry name the gateway emits, in one place, so they can follow the GenAI
//! semantic conventions as those move (docs/architecture.md, "Usage and telemetry"). The deploy test checks
//! the Grafana dashboard against `METRICS` under the collector's Prometheus naming.

use crate::vocab::Provider;

// --- span and metric attributes ---
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";
pub const SERVER_ADDRESS: &str = "server.address";
pub const ERROR_TYPE: &str = "error.type";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const TOLLGATE_TENANT: &str = "tollgate.tenant";
pub const TOLLGATE_ROUTE: &str = "tollgate.route";
pub const TOLLGATE_PROVIDER: &str = "tollgate.provider";
pub const TOLLGATE_STATUS_CLASS: &str = "tollgate.status_class";
pub const TOLLGATE_STREAM: &str = "tollgate.stream";

// --- resource attributes ---
pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` sets one.
pub const DEFAULT_SERVICE_NAME: &str = "tollgate";
/// Instrumentation scope of every span and metric.
pub const INSTRUMENTATION_SCOPE: &str = "tollgate";

/// `gen_ai.token.type` values.
pub const TOKEN_TYPE_INPUT: &str = "input";
pub const TOKEN_TYPE_OUTPUT: &str = "output";

// --- metrics: (name, unit, kind) ---
pub const METRIC_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
pub const METRIC_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
pub const METRIC_TIME_TO_FIRST_TOKEN: &str = "gen_ai.server.time_to_first_token";
pub const METRIC_REQUESTS: &str = "tollgate.requests";
pub const METRIC_COST: &str = "tollgate.cost";
pub const METRIC_OVERHEAD_DURATION: &str = "tollgate.overhead.duration";
/// Usage events the aggregator had to drop (a full buffer): never silent.
pub const METRIC_USAGE_DROPPED: &str = "tollgate.usage.dropped";
/// Policies that acted, by `tollgate.policy.type` and `tollgate.policy.outcome`.
pub const METRIC_POLICY_ACTIONS: &str = "tollgate.policy.actions";
pub const TOLLGATE_POLICY_TYPE: &str = "tollgate.policy.type";
pub const TOLLGATE_POLICY_OUTCOME: &str = "tollgate.policy.outcome";
/// Span attribute: the policies that acted, as `type:name:outcome`.
pub const TOLLGATE_POLICIES: &str = "tollgate.policies";
/// Process-log lines lost to a broken or stalled sink (closed pipe, full disk): a counter
/// is their only record, the log itself being what failed.
pub const METRIC_LOG_DROPPED: &str = "tollgate.log.dropped";
/// Analytics lines lost: the sink failed (full disk, closed pipe) or the buffer was full.
pub const METRIC_ANALYTICS_LOST: &str = "tollgate.analytics.lost";
/// Requests refused by a limit, by `tollgate.limit.kind` (`requests_per_minute`,
/// `tokens_per_minute`, `budget`).
pub const METRIC_LIMIT_REJECTIONS: &str = "tollgate.limit.rejections";
pub const TOLLGATE_LIMIT_KIND: &str = "tollgate.limit.kind";

/// `gen_ai.client.token.usage` buckets advised by the conventions (v1.41.1).
pub const TOKEN_USAGE_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// `gen_ai.client.operation.duration` buckets advised by the conventions (v1.41.1).
pub const OPERATION_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// `gen_ai.server.time_to_first_token` buckets advised by the conventions (v1.41.1).
pub const TIME_TO_FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// `tollgate.overhead.duration`: the gateway's own time is sub-millisecond to tens of
/// milliseconds, below the GenAI duration buckets' first boundary.
pub const OVERHEAD_DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Histogram,
    Counter,
}

/// Every metric the gateway exports: name, unit (UCUM), kind.
pub const METRICS: &[(&str, &str, MetricKind)] = &[
    (METRIC_TOKEN_USAGE, "{token}", MetricKind::Histogram),
    (METRIC_OPERATION_DURATION, "s", MetricKind::Histogram),
    (METRIC_TIME_TO_FIRST_TOKEN, "s", MetricKind::Histogram),
    (METRIC_REQUESTS, "{request}", MetricKind::Counter),
    (METRIC_COST, "USD", MetricKind::Counter),
    (METRIC_OVERHEAD_DURATION, "s", MetricKind::Histogram),
    (METRIC_USAGE_DROPPED, "{event}", MetricKind::Counter),
    (METRIC_POLICY_ACTIONS, "{action}", MetricKind::Counter),
    (METRIC_LOG_DROPPED, "{line}", MetricKind::Counter),
    (METRIC_ANALYTICS_LOST, "{line}", MetricKind::Counter),
    (METRIC_LIMIT_REJECTIONS, "{request}", MetricKind::Counter),
];

/// `gen_ai.provider.name` of Tollgate's provider name ([`Provider::gen_ai_name`]).
pub fn gen_ai_provider_name(provider: &str) -> &str {
    Provider::parse(provider).map_or(provider, |p| p.gen_ai_name())
}

/// `gen_ai.operation.name` of a route type.
pub fn operation_name(route_type: &str) -> &'static str {
    match route_type {
        "llm/v1/completions" => "text_completion",
        "llm/v1/embeddings" => "embeddings",
        _ => "chat",
    }
}
