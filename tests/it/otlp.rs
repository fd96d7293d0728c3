//! OTLP export end to end: a real http/protobuf receiver on port 0
//! (`support::otlp`); `Otel` is fed known usage events and flushed, and the decoded spans
//! and metrics are checked value by value.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    HistogramDataPoint, Metric, NumberDataPoint, metric, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use tollgate::actors::metrics::{UpstreamTiming, UsageEvent, UsageObserver};
use tollgate::config::Settings;
use tollgate::telemetry::otel::Otel;
use tollgate::telemetry::semconv;
use tollgate::telemetry::trace::TraceContext;

use crate::support::otlp::{Received, Receiver, all_spans, start_receiver};

fn otel_for(receiver: &Receiver) -> Otel {
    let settings = Settings {
        // A trailing slash must not double the signal path.
        otel_exporter_otlp_endpoint: Some(format!("{}/", receiver.url)),
        // Only explicit flushes export during the test.
        otel_metric_export_interval: Some("600000".into()),
        ..Settings::default()
    };
    Otel::from_settings_for_node(&settings, Some("node-test"))
        .unwrap()
        .expect("an endpoint enables export")
}

fn at(secs: u64, millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs) + Duration::from_millis(millis)
}

fn nanos(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

/// A successful, sampled, non-streamed chat with ids derived from `n`.
pub(crate) fn event(n: u8) -> UsageEvent {
    let started_at = at(u64::from(n) * 10, 0);
    UsageEvent {
        id: uuid::Uuid::nil(),
        started_at,
        duration: Duration::from_millis(1500),
        tenant_id: uuid::Uuid::nil(),
        tenant: "acme".into(),
        key_id: uuid::Uuid::nil(),
        route_id: uuid::Uuid::nil(),
        route: "chat-route".into(),
        provider: "openai",
        operation: "chat",
        request_model: "gpt-4o".into(),
        response_model: Some("gpt-4o-2024-08-06".into()),
        status: 200,
        error_type: None,
        prompt_tokens: Some(12),
        completion_tokens: Some(30),
        cost: 0.0015,
        upstream: Some(UpstreamTiming {
            started_at: started_at + Duration::from_millis(20),
            duration: Duration::from_millis(1400),
        }),
        time_to_first_token: None,
        overhead: Duration::from_millis(100),
        stream: false,
        finish_reason: Some("stop".into()),
        server_address: Some("api.openai.com".into()),
        trace: TraceContext {
            trace_id: [n; 16],
            parent_span_id: None,
            request_span_id: [n, 1, 1, 1, 1, 1, 1, 1],
            upstream_span_id: [n, 2, 2, 2, 2, 2, 2, 2],
            sampled: true,
        },
        policies: Vec::new(),
        policy_usage: None,
        rejected: false,
    }
}

fn events() -> Vec<UsageEvent> {
    let chat = event(1);
    let stream = UsageEvent {
        provider: "anthropic",
        request_model: "claude-sonnet-4-5".into(),
        response_model: Some("claude-sonnet-4-5-20250929".into()),
        prompt_tokens: Some(100),
        completion_tokens: Some(7),
        cost: 0.002,
        stream: true,
        time_to_first_token: Some(Duration::from_millis(250)),
        server_address: Some("api.anthropic.com".into()),
        route: "claude-route".into(),
        ..event(2)
    };
    let rate_limited = UsageEvent {
        provider: "mistral",
        request_model: "mistral-large-latest".into(),
        response_model: None,
        status: 429,
        error_type: Some("429".into()),
        prompt_tokens: None,
        completion_tokens: None,
        cost: 0.0,
        finish_reason: None,
        server_address: Some("api.mistral.ai".into()),
        route: "mistral-route".into(),
        ..event(3)
    };
    let base = event(4);
    let with_parent = UsageEvent {
        provider: "azure",
        operation: "text_completion",
        request_model: "gpt-35-turbo-instruct".into(),
        response_model: Some("gpt-35-turbo-instruct".into()),
        prompt_tokens: Some(5),
        completion_tokens: Some(9),
        cost: 0.0001,
        finish_reason: Some("length".into()),
        server_address: Some("acme.openai.azure.com".into()),
        tenant: "globex".into(),
        trace: TraceContext {
            parent_span_id: Some([0xaa; 8]),
            ..base.trace
        },
        ..base
    };
    let base = event(5);
    // The client's traceparent said "not sampled": metrics yes, spans no.
    let unsampled = UsageEvent {
        prompt_tokens: Some(1),
        completion_tokens: Some(1),
        trace: TraceContext {
            parent_span_id: Some([0xbb; 8]),
            sampled: false,
            ..base.trace
        },
        ..base
    };
    vec![chat, stream, rate_limited, with_parent, unsampled]
}

#[derive(Debug, Clone, PartialEq)]
enum V {
    S(String),
    I(i64),
    B(bool),
    D(f64),
    A(Vec<String>),
}

fn s(v: &str) -> V {
    V::S(v.into())
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, V> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                Some(any_value::Value::StringValue(x)) => V::S(x),
                Some(any_value::Value::IntValue(x)) => V::I(x),
                Some(any_value::Value::BoolValue(x)) => V::B(x),
                Some(any_value::Value::DoubleValue(x)) => V::D(x),
                Some(any_value::Value::ArrayValue(a)) => V::A(
                    a.values
                        .iter()
                        .map(|v| match &v.value {
                            Some(any_value::Value::StringValue(x)) => x.clone(),
                            other => panic!("non-string array item {other:?}"),
                        })
                        .collect(),
                ),
                other => panic!("unexpected attribute value {other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The GenAI attributes both spans of an event carry.
fn expected_genai(e: &UsageEvent) -> HashMap<String, V> {
    let mut m = HashMap::new();
    m.insert(semconv::GEN_AI_OPERATION_NAME.into(), s(e.operation));
    m.insert(
        semconv::GEN_AI_PROVIDER_NAME.into(),
        s(semconv::gen_ai_provider_name(e.provider)),
    );
    m.insert(semconv::GEN_AI_REQUEST_MODEL.into(), s(&e.request_model));
    if let Some(x) = &e.response_model {
        m.insert(semconv::GEN_AI_RESPONSE_MODEL.into(), s(x));
    }
    if let Some(x) = &e.server_address {
        m.insert(semconv::SERVER_ADDRESS.into(), s(x));
    }
    if let Some(x) = e.prompt_tokens {
        m.insert(
            semconv::GEN_AI_USAGE_INPUT_TOKENS.into(),
            V::I(x.try_into().unwrap()),
        );
    }
    if let Some(x) = e.completion_tokens {
        m.insert(
            semconv::GEN_AI_USAGE_OUTPUT_TOKENS.into(),
            V::I(x.try_into().unwrap()),
        );
    }
    if let Some(x) = &e.finish_reason {
        m.insert(
            semconv::GEN_AI_RESPONSE_FINISH_REASONS.into(),
            V::A(vec![x.clone()]),
        );
    }
    if let Some(x) = &e.error_type {
        m.insert(semconv::ERROR_TYPE.into(), s(x));
    }
    m
}

/// The upstream (CLIENT) span identifies the call; usage and the response live on the
/// request span.
fn expected_upstream_attrs(e: &UsageEvent) -> HashMap<String, V> {
    let mut m = HashMap::new();
    m.insert(semconv::GEN_AI_OPERATION_NAME.into(), s(e.operation));
    m.insert(
        semconv::GEN_AI_PROVIDER_NAME.into(),
        s(semconv::gen_ai_provider_name(e.provider)),
    );
    m.insert(semconv::GEN_AI_REQUEST_MODEL.into(), s(&e.request_model));
    if let Some(x) = &e.server_address {
        m.insert(semconv::SERVER_ADDRESS.into(), s(x));
    }
    if let Some(x) = &e.error_type {
        m.insert(semconv::ERROR_TYPE.into(), s(x));
    }
    m
}

fn expected_request_attrs(e: &UsageEvent) -> HashMap<String, V> {
    let mut m = expected_genai(e);
    m.insert(semconv::TOLLGATE_TENANT.into(), s(&e.tenant));
    m.insert(semconv::TOLLGATE_ROUTE.into(), s(&e.route));
    m.insert(semconv::TOLLGATE_PROVIDER.into(), s(e.provider));
    m.insert(semconv::TOLLGATE_STREAM.into(), V::B(e.stream));
    m.insert(
        semconv::HTTP_RESPONSE_STATUS_CODE.into(),
        V::I(i64::from(e.status)),
    );
    m
}

fn latest_metrics(received: &Received) -> Vec<Metric> {
    // Cumulative temporality: the last export holds every series' totals.
    let last = received.metrics.last().expect("a metrics export");
    last.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| s.metrics.clone())
        .collect()
}

fn metric<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
    metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("metric {name} not exported"))
}

fn histogram_points(m: &Metric) -> Vec<HistogramDataPoint> {
    match &m.data {
        Some(metric::Data::Histogram(h)) => h.data_points.clone(),
        other => panic!("{} is not a histogram: {other:?}", m.name),
    }
}

fn sum_points(m: &Metric) -> Vec<NumberDataPoint> {
    match &m.data {
        Some(metric::Data::Sum(s)) => {
            assert!(s.is_monotonic, "{} is a counter", m.name);
            s.data_points.clone()
        }
        other => panic!("{} is not a sum: {other:?}", m.name),
    }
}

fn number(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsInt(x)) => x as f64,
        Some(number_data_point::Value::AsDouble(x)) => x,
        None => panic!("empty data point"),
    }
}

fn has(point_attrs: &[KeyValue], key: &str, value: &str) -> bool {
    attrs(point_attrs).get(key) == Some(&s(value))
}

#[test]
fn spans_and_metrics_reach_an_otlp_receiver() {
    let receiver = start_receiver();
    let mut otel = otel_for(&receiver);
    let events = events();
    for e in &events {
        otel.observe(e);
    }
    otel.dropped(3);
    // The same running total again adds nothing.
    otel.dropped(3);
    otel.flush();

    let received = receiver.received.lock().unwrap();

    // --- resource ---
    let resource = received.traces[0].resource_spans[0]
        .resource
        .as_ref()
        .expect("resource");
    let resource = attrs(&resource.attributes);
    assert_eq!(resource.get(semconv::SERVICE_NAME), Some(&s("tollgate")));
    assert_eq!(
        resource.get(semconv::SERVICE_VERSION),
        Some(&s(env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        resource.get(semconv::SERVICE_INSTANCE_ID),
        Some(&s("node-test"))
    );

    // --- spans ---
    let spans = all_spans(&received);
    let sampled: Vec<&UsageEvent> = events.iter().filter(|e| e.trace.sampled).collect();
    assert_eq!(spans.len(), sampled.len() * 2, "{spans:#?}");
    for unsampled in events.iter().filter(|e| !e.trace.sampled) {
        assert!(
            spans
                .iter()
                .all(|s| s.trace_id != unsampled.trace.trace_id.to_vec()),
            "an unsampled trace was exported"
        );
    }
    for e in sampled {
        let t = &e.trace;
        let find = |id: [u8; 8]| {
            spans
                .iter()
                .find(|s| s.span_id == id.to_vec())
                .unwrap_or_else(|| panic!("no span {id:02x?}"))
        };
        let request = find(t.request_span_id);
        let upstream = find(t.upstream_span_id);
        let name = format!("{} {}", e.operation, e.request_model);

        assert_eq!(request.name, name);
        assert_eq!(request.trace_id, t.trace_id.to_vec());
        assert_eq!(request.kind, SpanKind::Server as i32);
        assert_eq!(
            request.parent_span_id,
            t.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            "request span parent of {name}"
        );
        assert_eq!(request.start_time_unix_nano, nanos(e.started_at));
        assert_eq!(request.end_time_unix_nano, nanos(e.started_at + e.duration));
        assert_eq!(
            attrs(&request.attributes),
            expected_request_attrs(e),
            "{name}"
        );

        // The id the upstream received in its traceparent.
        assert_eq!(upstream.name, name);
        assert_eq!(upstream.trace_id, t.trace_id.to_vec());
        assert_eq!(upstream.kind, SpanKind::Client as i32);
        assert_eq!(upstream.parent_span_id, t.request_span_id.to_vec());
        let timing = e.upstream.expect("upstream timing");
        assert_eq!(upstream.start_time_unix_nano, nanos(timing.started_at));
        assert_eq!(
            upstream.end_time_unix_nano,
            nanos(timing.started_at + timing.duration)
        );
        assert_eq!(
            attrs(&upstream.attributes),
            expected_upstream_attrs(e),
            "{name}"
        );
        assert!(
            upstream.trace_id == request.trace_id
                && e.trace
                    .upstream_traceparent()
                    .contains(&hex(&upstream.span_id)),
            "the upstream span is the one named in the upstream traceparent"
        );

        for span in [request, upstream] {
            let status = span.status.clone().unwrap_or_default();
            if e.is_error() {
                assert_eq!(status.code, StatusCode::Error as i32, "{name}");
                assert_eq!(Some(status.message.as_str()), e.error_type.as_deref());
            } else {
                assert_eq!(status.code, StatusCode::Unset as i32, "{name}");
            }
        }
    }

    // --- metrics ---
    let metrics = latest_metrics(&received);
    let base_ok = |p: &[KeyValue], e: &UsageEvent| {
        has(p, semconv::TOLLGATE_TENANT, &e.tenant)
            && has(p, semconv::TOLLGATE_ROUTE, &e.route)
            && has(
                p,
                semconv::GEN_AI_PROVIDER_NAME,
                semconv::gen_ai_provider_name(e.provider),
            )
            && has(p, semconv::GEN_AI_REQUEST_MODEL, &e.request_model)
    };
    let of_event = |p: &[KeyValue]| events.iter().filter(|e| base_ok(p, e)).count();

    let tokens = metric(&metrics, semconv::METRIC_TOKEN_USAGE);
    assert_eq!(tokens.unit, "{token}");
    let token_points = histogram_points(tokens);
    for (token_type, known) in [
        (
            semconv::TOKEN_TYPE_INPUT,
            events
                .iter()
                .filter_map(|e| e.prompt_tokens)
                .collect::<Vec<_>>(),
        ),
        (
            semconv::TOKEN_TYPE_OUTPUT,
            events
                .iter()
                .filter_map(|e| e.completion_tokens)
                .collect::<Vec<_>>(),
        ),
    ] {
        let points: Vec<&HistogramDataPoint> = token_points
            .iter()
            .filter(|p| has(&p.attributes, semconv::GEN_AI_TOKEN_TYPE, token_type))
            .collect();
        let sum: f64 = points.iter().map(|p| p.sum.unwrap_or(0.0)).sum();
        let count: u64 = points.iter().map(|p| p.count).sum();
        assert_eq!(sum, known.iter().sum::<u64>() as f64, "{token_type} sum");
        assert_eq!(count, known.len() as u64, "{token_type} count");
        for p in points {
            assert_eq!(p.explicit_bounds, semconv::TOKEN_USAGE_BUCKETS);
            assert!(of_event(&p.attributes) >= 1, "{:?}", p.attributes);
        }
    }
    assert!(
        token_points.iter().all(|p| !has(
            &p.attributes,
            semconv::GEN_AI_REQUEST_MODEL,
            "mistral-large-latest"
        )),
        "no token points for the failure"
    );

    let duration = metric(&metrics, semconv::METRIC_OPERATION_DURATION);
    assert_eq!(duration.unit, "s");
    let duration_points = histogram_points(duration);
    assert_eq!(
        duration_points.iter().map(|p| p.count).sum::<u64>(),
        events.len() as u64
    );
    for p in &duration_points {
        let failed = has(
            &p.attributes,
            semconv::GEN_AI_REQUEST_MODEL,
            "mistral-large-latest",
        );
        assert_eq!(
            attrs(&p.attributes).get(semconv::ERROR_TYPE).cloned(),
            failed.then(|| s("429")),
            "{:?}",
            p.attributes
        );
        assert_eq!(p.explicit_bounds, semconv::OPERATION_DURATION_BUCKETS);
    }

    let ttft = histogram_points(metric(&metrics, semconv::METRIC_TIME_TO_FIRST_TOKEN));
    assert_eq!(ttft.len(), 1, "TTFT only for the stream: {ttft:?}");
    assert_eq!(ttft[0].count, 1);
    assert_eq!(ttft[0].sum, Some(0.25));
    assert!(has(
        &ttft[0].attributes,
        semconv::GEN_AI_REQUEST_MODEL,
        "claude-sonnet-4-5"
    ));

    let requests = sum_points(metric(&metrics, semconv::METRIC_REQUESTS));
    let by_class = |class: &str| -> f64 {
        requests
            .iter()
            .filter(|p| has(&p.attributes, semconv::TOLLGATE_STATUS_CLASS, class))
            .map(number)
            .sum()
    };
    assert_eq!(by_class("2xx"), 4.0);
    assert_eq!(by_class("4xx"), 1.0);
    assert_eq!(by_class("5xx"), 0.0);
    assert!(requests.iter().all(|p| of_event(&p.attributes) >= 1));

    let cost_metric = metric(&metrics, semconv::METRIC_COST);
    assert_eq!(cost_metric.unit, "USD");
    let cost = sum_points(cost_metric);
    let total: f64 = cost.iter().map(number).sum();
    let expected: f64 = events.iter().map(|e| e.cost).sum();
    assert!((total - expected).abs() < 1e-12, "{total} != {expected}");
    assert!(
        cost.iter().all(|p| !has(
            &p.attributes,
            semconv::GEN_AI_REQUEST_MODEL,
            "mistral-large-latest"
        )),
        "no zero cost points"
    );

    let overhead = histogram_points(metric(&metrics, semconv::METRIC_OVERHEAD_DURATION));
    assert_eq!(
        overhead.iter().map(|p| p.count).sum::<u64>(),
        events.len() as u64
    );
    let overhead_sum: f64 = overhead.iter().map(|p| p.sum.unwrap_or(0.0)).sum();
    assert!((overhead_sum - 0.1 * events.len() as f64).abs() < 1e-9);

    let dropped = sum_points(metric(&metrics, semconv::METRIC_USAGE_DROPPED));
    assert_eq!(dropped.iter().map(number).sum::<f64>(), 3.0);

    // Lost process-log lines: a process-wide total read at each export (this test process
    // has no log sink, so nothing was lost).
    let log_metric = metric(&metrics, semconv::METRIC_LOG_DROPPED);
    assert_eq!(log_metric.unit, "{line}");
    let log_dropped = sum_points(log_metric);
    assert_eq!(log_dropped.len(), 1, "{log_dropped:?}");
    assert_eq!(
        number(&log_dropped[0]),
        tollgate::telemetry::log_stats().lost() as f64
    );

    drop(received);
    otel.shutdown().unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The whole path: requests through the proxy, usage events through the aggregator, spans
/// and metrics to the receiver; the client's trace reaches the upstream.
#[actix_web::test]
async fn proxied_requests_become_spans_and_metrics_and_carry_the_trace_upstream() {
    use crate::support::mock_upstream::{Behaviour, MockUpstream, Tail};
    use crate::support::proxy::{configure_openai, openai_completion};
    use crate::support::streaming::{openai_sse, sse, stream};

    let receiver = start_receiver();
    let mock = MockUpstream::start(Behaviour::ByStream {
        whole: Box::new(Behaviour::json(200, openai_completion())),
        streamed: Box::new(sse(openai_sse(&["a", "b"], Some((12, 5))), 0, Tail::End)),
    })
    .await;
    let url = receiver.url.clone();
    let app = crate::support::spawn_app_with(move |s| {
        s.otel_exporter_otlp_endpoint = Some(url);
        s.otel_metric_export_interval = Some("600000".into());
    })
    .await;
    let key = configure_openai(&app, &mock, serde_json::json!({})).await;
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    for _ in 0..2 {
        let resp = app
            .client
            .post(format!("{}/openai/chat", app.proxy))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .insert_header(("traceparent", format!("00-{client_trace}-{client_span}-01")))
            .send_json(&serde_json::json!({"messages": [{"role": "user", "content": "hi"}]}))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let streamed = stream(
        &app,
        "/openai/chat",
        &key,
        serde_json::json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert!(streamed.ends_with_done());
    let sent = mock.received();
    assert_eq!(sent.len(), 3);
    // A graceful stop flushes the aggregator, then the exporters.
    app.shut_down().await;

    let received = receiver.received.lock().unwrap();
    let spans = all_spans(&received);
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == 2).collect();
    let clients: Vec<&Span> = spans.iter().filter(|s| s.kind == 3).collect();
    assert_eq!((servers.len(), clients.len()), (3, 3), "{spans:?}");
    for span in &spans {
        assert_eq!(span.name, "chat gpt-4o");
    }
    // The two requests that sent a traceparent continue the client's trace, and the
    // upstream received the upstream span's id in its own traceparent.
    let continued: Vec<&&Span> = servers
        .iter()
        .filter(|s| hex(&s.trace_id) == client_trace)
        .collect();
    assert_eq!(continued.len(), 2);
    for server in continued {
        assert_eq!(hex(&server.parent_span_id), client_span);
        let child = clients
            .iter()
            .find(|c| c.parent_span_id == server.span_id)
            .expect("upstream child span");
        assert_eq!(child.trace_id, server.trace_id);
        let header = format!("00-{client_trace}-{}-01", hex(&child.span_id));
        assert!(
            sent.iter()
                .any(|r| r.header("traceparent") == Some(header.as_str())),
            "the upstream got {header}"
        );
        let a = attrs(&server.attributes);
        assert_eq!(a.get(semconv::TOLLGATE_TENANT), Some(&s("acme")));
        assert_eq!(a.get(semconv::TOLLGATE_ROUTE), Some(&s("chat")));
        assert_eq!(a.get(semconv::GEN_AI_PROVIDER_NAME), Some(&s("openai")));
    }
    // Token usage: the sums the mock reported (2 × 12/3 whole, 12/5 streamed).
    let metrics = latest_metrics(&received);
    let tokens = histogram_points(metric(&metrics, semconv::METRIC_TOKEN_USAGE));
    let sum_of = |kind: &str| {
        tokens
            .iter()
            .filter(|p| has(&p.attributes, semconv::GEN_AI_TOKEN_TYPE, kind))
            .map(|p| p.sum.unwrap_or(0.0))
            .sum::<f64>()
    };
    assert_eq!(sum_of("input"), 36.0);
    assert_eq!(sum_of("output"), 11.0);
    let ttft = histogram_points(metric(&metrics, semconv::METRIC_TIME_TO_FIRST_TOKEN));
    assert_eq!(ttft.iter().map(|p| p.count).sum::<u64>(), 1, "one stream");
    let requests = sum_points(metric(&metrics, semconv::METRIC_REQUESTS));
    assert_eq!(requests.iter().map(number).sum::<f64>(), 3.0);
}

/// Analytics lines lost to a failing sink are exported as `tollgate.analytics.lost`.
#[test]
#[cfg_attr(not(target_os = "linux"), ignore = "needs /dev/full (Linux)")]
fn lost_analytics_lines_are_exported() {
    assert!(
        std::path::Path::new("/dev/full").exists(),
        "this test needs /dev/full"
    );
    let receiver = start_receiver();
    let mut otel = otel_for(&receiver);
    let log = tollgate::telemetry::analytics::AnalyticsLog::open("/dev/full").unwrap();
    otel.watch_analytics(log.clone());
    for n in 0..4 {
        log.write(&serde_json::json!({ "n": n }));
    }
    log.flush();
    otel.flush();
    let received = receiver.received.lock().unwrap();
    let lost = sum_points(metric(
        &latest_metrics(&received),
        semconv::METRIC_ANALYTICS_LOST,
    ));
    assert_eq!(lost.iter().map(number).sum::<f64>(), 4.0);
    drop(received);
    otel.shutdown().unwrap();
}

#[test]
fn policies_that_acted_are_a_metric_and_a_span_attribute() {
    use tollgate::telemetry::event::PolicyEvent;
    let receiver = start_receiver();
    let mut otel = otel_for(&receiver);
    let policy = |kind: &'static str, outcome: &'static str| PolicyEvent {
        kind,
        name: format!("{kind}-1"),
        outcome,
        detail: None,
    };
    let blocked = UsageEvent {
        status: 400,
        error_type: Some("400".into()),
        policies: vec![
            policy("ai-prompt-decorator", "applied"),
            PolicyEvent {
                detail: Some("prompt pattern is blocked (deny_patterns[3])".into()),
                ..policy("ai-prompt-guard", "blocked")
            },
        ],
        ..event(7)
    };
    let decorated = UsageEvent {
        policies: vec![policy("ai-prompt-decorator", "applied")],
        ..event(8)
    };
    for e in [&blocked, &decorated, &event(9)] {
        otel.observe(e);
    }
    otel.flush();
    let received = receiver.received.lock().unwrap();

    let actions = sum_points(metric(
        &latest_metrics(&received),
        semconv::METRIC_POLICY_ACTIONS,
    ));
    let count = |kind: &str, outcome: &str| {
        actions
            .iter()
            .filter(|p| {
                has(&p.attributes, semconv::TOLLGATE_POLICY_TYPE, kind)
                    && has(&p.attributes, semconv::TOLLGATE_POLICY_OUTCOME, outcome)
            })
            .map(number)
            .sum::<f64>()
    };
    assert_eq!(count("ai-prompt-decorator", "applied"), 2.0);
    assert_eq!(count("ai-prompt-guard", "blocked"), 1.0);
    assert_eq!(count("ai-prompt-guard", "applied"), 0.0);

    let spans = all_spans(&received);
    let with_policies: Vec<String> = spans
        .iter()
        .filter_map(|s| {
            s.attributes
                .iter()
                .find(|kv| kv.key == semconv::TOLLGATE_POLICIES)
                .map(|kv| format!("{:?}", kv.value))
        })
        .collect();
    assert_eq!(with_policies.len(), 2, "{with_policies:?}");
    assert!(
        with_policies
            .iter()
            .any(|v| v.contains(
                "ai-prompt-guard:ai-prompt-guard-1:blocked: prompt pattern is blocked (deny_patterns[3])"
            )),
        "{with_policies:?}"
    );
    drop(received);
    otel.shutdown().unwrap();
}
