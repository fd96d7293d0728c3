//! OpenTelemetry over OTLP (docs/behaviour.md, "Usage, analytics and telemetry";
//! docs/wire-formats.md, "OpenTelemetry"). Enabled by
//! `OTEL_EXPORTER_OTLP_ENDPOINT`. Spans and metrics are built from each finished request's
//! `UsageEvent` on the aggregator's thread, off the request path: the request span (SERVER)
//! and its upstream child (CLIENT) get the ids chosen when the request started (the
//! upstream already received its span id in `traceparent`) and explicit timestamps.
//!
//! Transport: http/protobuf with the blocking reqwest client; spans go through our own
//! encoder (`otlp_http`), metrics through opentelemetry-otlp. The SDK's batch span
//! processor and periodic metric reader export from their own threads, so nothing here
//! needs (or blocks) a Tokio runtime. gRPC (feature `otlp-grpc`) builds its exporters
//! inside a dedicated runtime that `Otel` keeps alive.

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, ObservableCounter};
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _,
    TraceFlags, TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Array, Context, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};

use crate::config::{OtlpProtocol, OtlpSignal, OtlpSignalSettings, Settings};
use crate::telemetry::event::{UsageEvent, UsageObserver};
use crate::telemetry::label_index::LabelIndex;
use crate::telemetry::otlp_http::OtlpHttpSpanExporter;
use crate::telemetry::{otlp_tls, semconv};

/// The OTLP exporters and the instruments fed from usage events. Cloning is cheap and
/// shares the providers (the app keeps one clone for `shutdown`, the aggregator observes
/// with another).
#[derive(Clone)]
pub struct Otel {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    tracer: SdkTracer,
    /// For instruments registered later (`watch_analytics`).
    meter: Meter,
    instruments: Instruments,
    /// The last `dropped` total seen, so the counter gets deltas.
    dropped_seen: u64,
    /// Attribute sets per tenant × route × model, and the counters not yet added.
    labels: LabelCache,
    #[cfg(feature = "otlp-grpc")]
    _runtime: Option<std::sync::Arc<grpc::RuntimeGuard>>,
}

#[derive(Clone)]
struct Instruments {
    token_usage: Histogram<u64>,
    operation_duration: Histogram<f64>,
    time_to_first_token: Histogram<f64>,
    requests: Counter<u64>,
    cost: Counter<f64>,
    overhead: Histogram<f64>,
    usage_dropped: Counter<u64>,
    policy_actions: Counter<u64>,
    /// Reads `telemetry::log_stats()` at each export (a process-wide total).
    _log_dropped: ObservableCounter<u64>,
}

impl Instruments {
    fn new(meter: &Meter) -> Instruments {
        let unit = |name: &str| {
            semconv::METRICS
                .iter()
                .find(|(n, _, _)| *n == name)
                .map_or("", |(_, unit, _)| *unit)
        };
        let f64_histogram = |name: &'static str, buckets: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit(unit(name))
                .with_boundaries(buckets.to_vec())
                .build()
        };
        Instruments {
            token_usage: meter
                .u64_histogram(semconv::METRIC_TOKEN_USAGE)
                .with_unit(unit(semconv::METRIC_TOKEN_USAGE))
                .with_boundaries(semconv::TOKEN_USAGE_BUCKETS.to_vec())
                .build(),
            operation_duration: f64_histogram(
                semconv::METRIC_OPERATION_DURATION,
                semconv::OPERATION_DURATION_BUCKETS,
            ),
            time_to_first_token: f64_histogram(
                semconv::METRIC_TIME_TO_FIRST_TOKEN,
                semconv::TIME_TO_FIRST_TOKEN_BUCKETS,
            ),
            requests: meter
                .u64_counter(semconv::METRIC_REQUESTS)
                .with_unit(unit(semconv::METRIC_REQUESTS))
                .build(),
            cost: meter
                .f64_counter(semconv::METRIC_COST)
                .with_unit(unit(semconv::METRIC_COST))
                .build(),
            overhead: f64_histogram(
                semconv::METRIC_OVERHEAD_DURATION,
                semconv::OVERHEAD_DURATION_BUCKETS,
            ),
            usage_dropped: meter
                .u64_counter(semconv::METRIC_USAGE_DROPPED)
                .with_unit(unit(semconv::METRIC_USAGE_DROPPED))
                .build(),
            policy_actions: meter
                .u64_counter(semconv::METRIC_POLICY_ACTIONS)
                .with_unit(unit(semconv::METRIC_POLICY_ACTIONS))
                .build(),
            _log_dropped: meter
                .u64_observable_counter(semconv::METRIC_LOG_DROPPED)
                .with_unit(unit(semconv::METRIC_LOG_DROPPED))
                .with_callback(|counter| counter.observe(crate::telemetry::log_stats().lost(), &[]))
                .build(),
        }
    }
}

// The SDK tracer (0.32) always takes span and trace ids from the provider's `IdGenerator`
// (`SpanBuilder` has no id fields), so the ids chosen at request start are handed to the
// generator through this thread-local just before each span is built on this thread.
thread_local! {
    static PRESET_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
    static PRESET_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Returns the preset id when one is waiting, else a random one.
#[derive(Debug, Default)]
struct PresetIdGenerator {
    random: RandomIdGenerator,
}

impl IdGenerator for PresetIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        PRESET_TRACE_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.random.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        PRESET_SPAN_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.random.new_span_id())
    }
}

/// Builds a span whose ids are `trace_id` (used only when `parent` has no span) and
/// `span_id`.
fn start_span_with_ids(
    tracer: &SdkTracer,
    builder: SpanBuilder,
    parent: &Context,
    trace_id: TraceId,
    span_id: SpanId,
) -> opentelemetry_sdk::trace::Span {
    PRESET_TRACE_ID.with(|c| c.set(Some(trace_id)));
    PRESET_SPAN_ID.with(|c| c.set(Some(span_id)));
    let span = tracer.build_with_context(builder, parent);
    // Not consumed when the tracer short-circuits (shut down) or has a parent trace id.
    PRESET_TRACE_ID.with(|c| c.set(None));
    PRESET_SPAN_ID.with(|c| c.set(None));
    span
}

impl Otel {
    /// `None` when `OTEL_EXPORTER_OTLP_ENDPOINT` is not set.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Otel>> {
        Self::from_settings_for_node(settings, None)
    }

    /// As `from_settings`, with the node id as `service.instance.id` on the resource.
    pub fn from_settings_for_node(
        settings: &Settings,
        node_id: Option<&str>,
    ) -> anyhow::Result<Option<Otel>> {
        let Some(endpoint) = settings.otlp_endpoint() else {
            return Ok(None);
        };
        let resource = resource(settings, node_id);
        let traces = settings.otlp_signal(OtlpSignal::Traces);
        let metrics = settings.otlp_signal(OtlpSignal::Metrics);
        let interval = settings.otel_metric_export_interval()?;
        let timeout = EXPORT_TIMEOUT;

        let built = match settings.otlp_protocol()? {
            OtlpProtocol::HttpProtobuf => {
                // Spans: our direct encoder (otlp_http.rs); metrics: opentelemetry-otlp.
                let spans = OtlpHttpSpanExporter::with_client(
                    signal_url(endpoint, "v1/traces"),
                    &signal_headers(&traces),
                    otlp_tls::blocking_client(timeout, &traces)?,
                );
                let metrics = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_http_client(otlp_tls::ExplainingClient(otlp_tls::blocking_client(
                        timeout, &metrics,
                    )?))
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(signal_url(endpoint, "v1/metrics"))
                    .with_headers(signal_headers(&metrics))
                    .with_timeout(timeout)
                    .build()?;
                Self::assemble(spans, metrics, resource, interval)
            }
            #[cfg(feature = "otlp-grpc")]
            OtlpProtocol::Grpc => grpc::build(
                endpoint,
                &signal_headers(&traces),
                &signal_headers(&metrics),
                timeout,
                resource,
                interval,
            )?,
            #[cfg(not(feature = "otlp-grpc"))]
            OtlpProtocol::Grpc => anyhow::bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs a build with the `otlp-grpc` feature"
            ),
        };
        Ok(Some(built))
    }

    fn assemble(
        spans: impl opentelemetry_sdk::trace::SpanExporter + 'static,
        metrics: impl opentelemetry_sdk::metrics::exporter::PushMetricExporter,
        resource: Resource,
        interval: Option<Duration>,
    ) -> Otel {
        let tracer_provider = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_id_generator(PresetIdGenerator::default())
            .with_resource(resource.clone())
            .build();
        let mut reader = PeriodicReader::builder(metrics);
        if let Some(interval) = interval {
            reader = reader.with_interval(interval);
        }
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(reader.build())
            .with_resource(resource)
            .build();
        let scope = InstrumentationScope::builder(semconv::INSTRUMENTATION_SCOPE)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = tracer_provider.tracer_with_scope(scope.clone());
        let meter = meter_provider.meter_with_scope(scope);
        Otel {
            tracer_provider,
            meter_provider,
            tracer,
            instruments: Instruments::new(&meter),
            meter,
            dropped_seen: 0,
            labels: LabelCache::default(),
            #[cfg(feature = "otlp-grpc")]
            _runtime: None,
        }
    }

    /// Exports `tollgate.analytics.lost`: analytics lines lost to failed writes or a full
    /// buffer, read from `log` at each export (never silent, docs/architecture.md).
    pub fn watch_analytics(&self, log: crate::telemetry::analytics::AnalyticsLog) {
        let name = semconv::METRIC_ANALYTICS_LOST;
        let unit = semconv::METRICS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or("", |(_, unit, _)| *unit);
        // The SDK keeps the callback registered after the handle is dropped.
        let _lost = self
            .meter
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_callback(move |observer| {
                observer.observe(log.write_failures() + log.dropped(), &[]);
            })
            .build();
    }

    /// Exports `tollgate.limit.rejections` by `tollgate.limit.kind`: `read` gives each
    /// kind's refusals since start (the limits engine's counters), read at each export.
    pub fn watch_limit_rejections(
        &self,
        read: impl Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
    ) {
        let name = semconv::METRIC_LIMIT_REJECTIONS;
        let unit = semconv::METRICS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or("", |(_, unit, _)| *unit);
        let _rejections = self
            .meter
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_callback(move |observer| {
                for (kind, count) in read() {
                    observer.observe(count, &[KeyValue::new(semconv::TOLLGATE_LIMIT_KIND, kind)]);
                }
            })
            .build();
    }

    /// End of the process: exports what is buffered and stops the exporters.
    pub fn shutdown(&self) -> anyhow::Result<()> {
        let traces = self.tracer_provider.shutdown();
        let metrics = self.meter_provider.shutdown();
        traces.map_err(|e| anyhow::anyhow!("OTLP trace export shutdown: {e}"))?;
        metrics.map_err(|e| anyhow::anyhow!("OTLP metric export shutdown: {e}"))?;
        Ok(())
    }

    fn record_spans(tracer: &SdkTracer, event: &UsageEvent, labels: &Labels) {
        let trace = &event.trace;
        let trace_id = TraceId::from_bytes(trace.trace_id);
        let failed = event.is_error();
        let error_type = error_type(event);

        let parent = match trace.parent_span_id {
            Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                SpanId::from_bytes(parent),
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let mut attributes = labels.span.clone();
        if let Some(model) = &event.response_model {
            attributes.push(KeyValue::new(semconv::GEN_AI_RESPONSE_MODEL, model.clone()));
        }
        if let Some(address) = &event.server_address {
            attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, address.clone()));
        }
        if let Some(tokens) = event.prompt_tokens {
            attributes.push(KeyValue::new(
                semconv::GEN_AI_USAGE_INPUT_TOKENS,
                i64::try_from(tokens).unwrap_or(i64::MAX),
            ));
        }
        if let Some(tokens) = event.completion_tokens {
            attributes.push(KeyValue::new(
                semconv::GEN_AI_USAGE_OUTPUT_TOKENS,
                i64::try_from(tokens).unwrap_or(i64::MAX),
            ));
        }
        if let Some(reason) = &event.finish_reason {
            attributes.push(KeyValue::new(
                semconv::GEN_AI_RESPONSE_FINISH_REASONS,
                Value::Array(Array::String(vec![StringValue::from(reason.clone())])),
            ));
        }
        attributes.push(KeyValue::new(semconv::TOLLGATE_STREAM, event.stream));
        if !event.policies.is_empty() {
            let acted = event
                .policies
                .iter()
                .map(|p| {
                    // A refusal's real reason (the guard's matching pattern) goes with it:
                    // the client was told only `bad request`.
                    StringValue::from(match &p.detail {
                        Some(detail) => format!("{}:{}:{}: {detail}", p.kind, p.name, p.outcome),
                        None => format!("{}:{}:{}", p.kind, p.name, p.outcome),
                    })
                })
                .collect();
            attributes.push(KeyValue::new(
                semconv::TOLLGATE_POLICIES,
                Value::Array(Array::String(acted)),
            ));
        }
        attributes.push(KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(event.status),
        ));
        if let Some(error_type) = &error_type {
            attributes.push(KeyValue::new(semconv::ERROR_TYPE, error_type.clone()));
        }
        // SERVER: the gateway's span for the incoming request; the upstream attempt is the
        // GenAI CLIENT span under it (docs/wire-formats.md, "OpenTelemetry").
        let builder = SpanBuilder::from_name(labels.span_name.clone())
            .with_kind(SpanKind::Server)
            .with_start_time(event.started_at)
            .with_attributes(attributes);
        let mut request_span = start_span_with_ids(
            tracer,
            builder,
            &parent,
            trace_id,
            SpanId::from_bytes(trace.request_span_id),
        );

        if let Some(upstream) = event.upstream {
            // The child carries what identifies the call; the request span has the rest
            // (fewer attributes: spans are most of the export's cost).
            let mut attributes = labels.upstream_span.clone();
            if let Some(address) = &event.server_address {
                attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, address.clone()));
            }
            if let Some(error_type) = &error_type {
                attributes.push(KeyValue::new(semconv::ERROR_TYPE, error_type.clone()));
            }
            let builder = SpanBuilder::from_name(labels.span_name.clone())
                .with_kind(SpanKind::Client)
                .with_start_time(upstream.started_at)
                .with_attributes(attributes);
            let parent =
                Context::new().with_remote_span_context(request_span.span_context().clone());
            let mut span = start_span_with_ids(
                tracer,
                builder,
                &parent,
                trace_id,
                SpanId::from_bytes(trace.upstream_span_id),
            );
            if failed {
                span.set_status(Status::error(error_type.clone().unwrap_or_default()));
            }
            span.end_with_timestamp(upstream.started_at + upstream.duration);
        }

        if failed {
            request_span.set_status(Status::error(error_type.unwrap_or_default()));
        }
        request_span.end_with_timestamp(event.started_at + event.duration);
    }

    fn record_metrics(m: &Instruments, event: &UsageEvent, labels: &mut Labels) {
        // Only reported counts: a failure without usage records no zero points.
        if let Some(tokens) = event.prompt_tokens {
            m.token_usage.record(tokens, &labels.input);
        }
        if let Some(tokens) = event.completion_tokens {
            m.token_usage.record(tokens, &labels.output);
        }
        let duration = event.duration.as_secs_f64();
        match error_type(event) {
            Some(error_type) => {
                let mut attrs = labels.base.clone();
                attrs.push(KeyValue::new(semconv::ERROR_TYPE, error_type));
                m.operation_duration.record(duration, &attrs);
            }
            None => m.operation_duration.record(duration, &labels.base),
        }
        if event.stream
            && let Some(ttft) = event.time_to_first_token
        {
            m.time_to_first_token
                .record(ttft.as_secs_f64(), &labels.base);
        }
        m.overhead
            .record(event.overhead.as_secs_f64(), &labels.base);
        // Per tenant, route and model like the other series, so a dashboard can filter them.
        for policy in &event.policies {
            let mut attrs = labels.base.clone();
            attrs.push(KeyValue::new(semconv::TOLLGATE_POLICY_TYPE, policy.kind));
            attrs.push(KeyValue::new(
                semconv::TOLLGATE_POLICY_OUTCOME,
                policy.outcome,
            ));
            m.policy_actions.add(1, &attrs);
        }
        // Counters are summed here and added once per drain (`drained`): same totals,
        // a fraction of the attribute-set lookups.
        let class = usize::from(event.status / 100).min(CLASSES - 1);
        labels.pending_requests[class] += 1;
        if event.cost.is_finite() && event.cost > 0.0 {
            labels.pending_cost += event.cost;
        }
    }

    /// Adds the summed counters.
    fn add_pending_counters(&mut self) {
        let m = &self.instruments;
        for labels in &mut self.labels.sets {
            for (class, count) in labels.pending_requests.iter_mut().enumerate() {
                if *count > 0 {
                    let mut attrs = labels.base.clone();
                    attrs.push(KeyValue::new(
                        semconv::TOLLGATE_STATUS_CLASS,
                        status_class(class),
                    ));
                    m.requests.add(*count, &attrs);
                    *count = 0;
                }
            }
            if labels.pending_cost > 0.0 {
                m.cost.add(labels.pending_cost, &labels.base);
                labels.pending_cost = 0.0;
            }
        }
    }
}

/// Status classes counted: index = status / 100 (0–5).
const CLASSES: usize = 6;
/// Distinct tenant × route × model label sets kept before the cache starts over.
const MAX_LABEL_SETS: usize = 10_000;

/// The attribute sets of one tenant × route × model (× provider, operation), built once;
/// values are `Arc<str>`, so each use is a reference-count bump, not a string copy.
struct Labels {
    span_name: String,
    /// tenant, route, provider, model, operation: every metric's attributes.
    base: Vec<KeyValue>,
    input: Vec<KeyValue>,
    output: Vec<KeyValue>,
    /// The request span's fixed attributes, and the upstream span's.
    span: Vec<KeyValue>,
    upstream_span: Vec<KeyValue>,
    pending_requests: [u64; CLASSES],
    pending_cost: f64,
}

impl Labels {
    fn new(event: &UsageEvent) -> Labels {
        let text = |s: &str| Value::from(std::sync::Arc::<str>::from(s));
        let tenant = KeyValue::new(semconv::TOLLGATE_TENANT, text(&event.tenant));
        let route = KeyValue::new(semconv::TOLLGATE_ROUTE, text(&event.route));
        let provider = KeyValue::new(
            semconv::GEN_AI_PROVIDER_NAME,
            semconv::gen_ai_provider_name(event.provider).to_string(),
        );
        let model = KeyValue::new(semconv::GEN_AI_REQUEST_MODEL, text(&event.request_model));
        let operation = KeyValue::new(semconv::GEN_AI_OPERATION_NAME, event.operation);
        let base = vec![
            tenant.clone(),
            route.clone(),
            provider.clone(),
            model.clone(),
            operation.clone(),
        ];
        let with = |extra: KeyValue| {
            let mut attrs = base.clone();
            attrs.push(extra);
            attrs
        };
        let upstream_span = vec![operation.clone(), provider.clone(), model.clone()];
        let span = vec![
            operation,
            provider,
            model,
            tenant,
            route,
            KeyValue::new(semconv::TOLLGATE_PROVIDER, event.provider),
        ];
        Labels {
            span_name: format!("{} {}", event.operation, event.request_model),
            input: with(KeyValue::new(
                semconv::GEN_AI_TOKEN_TYPE,
                semconv::TOKEN_TYPE_INPUT,
            )),
            output: with(KeyValue::new(
                semconv::GEN_AI_TOKEN_TYPE,
                semconv::TOKEN_TYPE_OUTPUT,
            )),
            base,
            span,
            upstream_span,
            pending_requests: [0; CLASSES],
            pending_cost: 0.0,
        }
    }
}

#[derive(Default)]
struct LabelCache {
    index: LabelIndex,
    sets: Vec<Labels>,
}

impl Clone for LabelCache {
    /// A clone starts empty: caches are per observer.
    fn clone(&self) -> Self {
        LabelCache::default()
    }
}

impl LabelCache {
    /// The index of the event's label set (built on first sight).
    fn index(&mut self, event: &UsageEvent) -> usize {
        if let Some(found) = self.index.find(event) {
            return found;
        }
        self.sets.push(Labels::new(event));
        let at = self.sets.len() - 1;
        self.index.insert(event, at);
        at
    }
}

impl UsageObserver for Otel {
    fn observe(&mut self, event: &UsageEvent) {
        if self.labels.sets.len() >= MAX_LABEL_SETS {
            self.add_pending_counters();
            self.labels = LabelCache::default();
        }
        let index = self.labels.index(event);
        let labels = &mut self.labels.sets[index];
        // The client asked not to sample this trace (traceparent flags 00).
        if event.trace.sampled {
            Otel::record_spans(&self.tracer, event, labels);
        }
        Otel::record_metrics(&self.instruments, event, labels);
    }

    fn drained(&mut self) {
        self.add_pending_counters();
    }

    fn dropped(&mut self, total: u64) {
        let delta = total.saturating_sub(self.dropped_seen);
        self.dropped_seen = self.dropped_seen.max(total);
        if delta > 0 {
            self.instruments.usage_dropped.add(delta, &[]);
        }
    }

    fn flush(&mut self) {
        self.add_pending_counters();
        if let Err(e) = self.tracer_provider.force_flush() {
            tracing::warn!(error = %e, "OTLP span export failed");
        }
        if let Err(e) = self.meter_provider.force_flush() {
            tracing::warn!(error = %e, "OTLP metric export failed");
        }
    }
}

/// `error.type`: the event's error, else (a failure status without one) the status code.
fn error_type(event: &UsageEvent) -> Option<String> {
    match &event.error_type {
        Some(e) => Some(e.clone()),
        None if event.is_error() => Some(event.status.to_string()),
        None => None,
    }
}

fn status_class(class: usize) -> &'static str {
    ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"]
        .get(class)
        .copied()
        .unwrap_or("5xx")
}

/// How long one OTLP post may take.
pub(crate) const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A signal's export headers, parsed (`OTEL_EXPORTER_OTLP[_SIGNAL]_HEADERS`).
pub(crate) fn signal_headers(signal: &OtlpSignalSettings<'_>) -> HashMap<String, String> {
    signal
        .headers
        .map(|(_, raw)| parse_key_values(raw))
        .unwrap_or_default()
}

/// The OTLP/HTTP signal URL from the base endpoint: `http://c:4318` →
/// `http://c:4318/v1/traces`, `http://c:4318/otlp/` → `http://c:4318/otlp/v1/traces`.
pub(crate) fn signal_url(endpoint: &str, path: &str) -> String {
    format!("{}/{path}", endpoint.trim_end_matches('/'))
}

/// `service.name` (`OTEL_SERVICE_NAME` > `OTEL_RESOURCE_ATTRIBUTES` > `tollgate`),
/// `service.version`, `service.instance.id` (the node), then the other resource attributes.
pub(crate) fn resource(settings: &Settings, node_id: Option<&str>) -> Resource {
    let mut attrs: Vec<(String, String)> = vec![
        (
            semconv::SERVICE_NAME.into(),
            semconv::DEFAULT_SERVICE_NAME.into(),
        ),
        (
            semconv::SERVICE_VERSION.into(),
            env!("CARGO_PKG_VERSION").into(),
        ),
    ];
    if let Some(node) = node_id {
        attrs.push((semconv::SERVICE_INSTANCE_ID.into(), node.into()));
    }
    if let Some(raw) = &settings.otel_resource_attributes {
        attrs.extend(parse_key_values(raw));
    }
    if let Some(name) = settings
        .otel_service_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        attrs.push((semconv::SERVICE_NAME.into(), name.into()));
    }
    // Later entries win (the builder keeps the last value of a key).
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(attrs.into_iter().map(|(k, v)| KeyValue::new(k, v)))
        .build()
}

/// `key=value,key2=value2` with percent-encoded values (the OTel format of
/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS`); malformed entries are
/// skipped.
fn parse_key_values(raw: &str) -> HashMap<String, String> {
    raw.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_string(), percent_decode(value.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(feature = "otlp-grpc")]
mod grpc {
    //! OTLP/gRPC: tonic's channel worker lives on the runtime that built it, so the
    //! exporters are built inside a runtime of their own that lives as long as `Otel`; on
    //! actix's runtime a blocking flush would starve it.

    use super::*;
    use opentelemetry_otlp::WithTonicConfig as _;
    use opentelemetry_otlp::tonic_types::metadata::MetadataMap;

    /// Owns the runtime; dropping it must not block, since the last clone of `Otel` may be
    /// dropped on an async thread.
    pub struct RuntimeGuard(Option<tokio::runtime::Runtime>);

    impl Drop for RuntimeGuard {
        fn drop(&mut self) {
            if let Some(runtime) = self.0.take() {
                runtime.shutdown_background();
            }
        }
    }

    pub fn build(
        endpoint: &str,
        trace_headers: &HashMap<String, String>,
        metric_headers: &HashMap<String, String>,
        timeout: Duration,
        resource: Resource,
        interval: Option<Duration>,
    ) -> anyhow::Result<Otel> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-grpc")
            .enable_all()
            .build()?;
        // This build's tonic has no TLS: refuse rather than fail every export.
        if endpoint.starts_with("https:") {
            anyhow::bail!(
                "OTEL_EXPORTER_OTLP_ENDPOINT: https is supported over http/protobuf only; \
                 unset OTEL_EXPORTER_OTLP_PROTOCOL=grpc or use an http:// endpoint"
            );
        }
        let metadata = |headers: &HashMap<String, String>| {
            let map: http::HeaderMap = headers
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        http::HeaderName::try_from(k.as_str()).ok()?,
                        http::HeaderValue::try_from(v.as_str()).ok()?,
                    ))
                })
                .collect();
            MetadataMap::from_headers(map)
        };
        let otel = {
            let _entered = runtime.enter();
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_metadata(metadata(trace_headers))
                .with_timeout(timeout)
                .build()?;
            let metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_metadata(metadata(metric_headers))
                .with_timeout(timeout)
                .build()?;
            Otel::assemble(spans, metrics, resource, interval)
        };
        Ok(Otel {
            _runtime: Some(std::sync::Arc::new(RuntimeGuard(Some(runtime)))),
            ..otel
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_urls_follow_the_otlp_endpoint_rules() {
        assert_eq!(
            signal_url("http://c:4318", "v1/traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            signal_url("http://c:4318/", "v1/metrics"),
            "http://c:4318/v1/metrics"
        );
        assert_eq!(
            signal_url("https://c/otlp", "v1/traces"),
            "https://c/otlp/v1/traces"
        );
    }

    #[test]
    fn key_values_are_percent_decoded() {
        let kv = parse_key_values("a=1, b = x%20y%2Cz ,broken,=v,c=%zz");
        assert_eq!(kv.get("a").map(String::as_str), Some("1"));
        assert_eq!(kv.get("b").map(String::as_str), Some("x y,z"));
        assert_eq!(kv.get("c").map(String::as_str), Some("%zz"));
        assert_eq!(kv.len(), 3);
    }

    #[test]
    fn resource_names_the_service() {
        let get = |r: &Resource, k: &'static str| {
            r.get(&opentelemetry::Key::from_static_str(k))
                .map(|v| v.to_string())
        };
        let settings = Settings::default();
        let r = resource(&settings, Some("node-1"));
        assert_eq!(get(&r, semconv::SERVICE_NAME).as_deref(), Some("tollgate"));
        assert_eq!(
            get(&r, semconv::SERVICE_VERSION).as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            get(&r, semconv::SERVICE_INSTANCE_ID).as_deref(),
            Some("node-1")
        );

        let settings = Settings {
            otel_resource_attributes: Some(
                "service.name=from-attrs,deployment.environment=prod".into(),
            ),
            ..Settings::default()
        };
        let r = resource(&settings, None);
        assert_eq!(
            get(&r, semconv::SERVICE_NAME).as_deref(),
            Some("from-attrs")
        );
        assert_eq!(get(&r, "deployment.environment").as_deref(), Some("prod"));

        let settings = Settings {
            otel_service_name: Some("gw".into()),
            ..settings
        };
        assert_eq!(
            get(&resource(&settings, None), semconv::SERVICE_NAME).as_deref(),
            Some("gw")
        );
    }

    #[test]
    fn no_endpoint_no_exporter() {
        assert!(Otel::from_settings(&Settings::default()).unwrap().is_none());
    }

    #[test]
    fn status_classes() {
        // Called with status / 100, as `record_metrics` sums by that index.
        assert_eq!(status_class(200 / 100), "2xx");
        assert_eq!(status_class(429 / 100), "4xx");
        assert_eq!(status_class(502 / 100), "5xx");
        assert_eq!(status_class(9), "5xx", "out of range stays an error class");
    }
}
