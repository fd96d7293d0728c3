//! Every OpenTelemetry name the gateway emits, in one place, so they can follow the GenAI
//! semantic conventions as those move (spec §5; providers.md §10). The deploy test checks
//! the Grafana dashboard against `METRICS` under the collector's Prometheus naming.

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
];

/// `gen_ai.provider.name`: the conventions' well-known values where they exist, else
/// Tollgate's provider name (spec §5).
pub fn gen_ai_provider_name(provider: &str) -> &str {
    match provider {
        "azure" => "azure.ai.openai",
        "mistral" => "mistral_ai",
        other => other,
    }
}

/// `gen_ai.operation.name` of a route type.
pub fn operation_name(route_type: &str) -> &'static str {
    match route_type {
        "llm/v1/completions" => "text_completion",
        _ => "chat",
    }
}
