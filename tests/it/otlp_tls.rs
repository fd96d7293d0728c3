//! OTLP where users send it: an https receiver whose certificate comes from a CA made up
//! by the test (`support::otlp::Pki`), trusted through `OTEL_EXPORTER_OTLP_CERTIFICATE`;
//! the export headers (`OTEL_EXPORTER_OTLP_HEADERS` and the per-signal ones) arrive and
//! never reach the log; an untrusted receiver gets nothing and the log says why; the
//! analytics entries as OTLP log records (`TOLLGATE_ANALYTICS_LOG=otlp`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::{Value, json};
use tollgate::actors::metrics::UsageObserver;
use tollgate::config::Settings;
use tollgate::crypto::Secret;
use tollgate::telemetry::otel::Otel;

use crate::otlp::event;
use crate::support::mock_upstream::{Behaviour, MockUpstream};
use crate::support::otlp::{Pki, all_spans, start_tls_receiver};
use crate::support::process::{Env, client};
use crate::support::proxy::{configure_openai, openai_completion};

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn otel(settings: Settings) -> Otel {
    Otel::from_settings_for_node(
        &Settings {
            // Only explicit flushes export during the test.
            otel_metric_export_interval: Some("600000".into()),
            ..settings
        },
        Some("node-tls"),
    )
    .unwrap()
    .expect("an endpoint enables export")
}

#[test]
fn spans_and_metrics_arrive_over_tls_with_the_configured_headers() {
    let pki = Pki::new("receiver");
    let dir = tempfile::tempdir().unwrap();
    let ca = write_file(dir.path(), "ca.pem", &pki.ca_pem);
    let receiver = start_tls_receiver(pki.server_config(false));
    assert!(receiver.url.starts_with("https://127.0.0.1:"));

    let mut otel = otel(Settings {
        otel_exporter_otlp_endpoint: Some(receiver.url.clone()),
        otel_exporter_otlp_certificate: Some(ca.display().to_string()),
        otel_exporter_otlp_headers: Some(Secret::new(
            "authorization=Bearer%20otlp-secret-1,x-scope=gateway".into(),
        )),
        // Replaces the general headers for metrics (not merged with them).
        otel_exporter_otlp_metrics_headers: Some(Secret::new(
            "authorization=Bearer%20metrics-secret-2".into(),
        )),
        ..Settings::default()
    });
    otel.observe(&event(1));
    otel.flush();

    let received = receiver.received.lock().unwrap();
    assert_eq!(all_spans(&received).len(), 2, "request and upstream span");
    assert!(!received.metrics.is_empty(), "metrics over TLS");
    let traces = received.header_values("/v1/traces", "authorization");
    assert!(!traces.is_empty());
    assert!(
        traces.iter().all(|v| v == "Bearer otlp-secret-1"),
        "{traces:?}"
    );
    assert!(
        received
            .header_values("/v1/traces", "x-scope")
            .iter()
            .all(|v| v == "gateway")
    );
    let metrics = received.header_values("/v1/metrics", "authorization");
    assert!(!metrics.is_empty());
    assert!(
        metrics.iter().all(|v| v == "Bearer metrics-secret-2"),
        "{metrics:?}"
    );
    assert!(
        received
            .header_values("/v1/metrics", "x-scope")
            .iter()
            .all(String::is_empty),
        "per-signal headers replace the general ones"
    );
    drop(received);
    otel.shutdown().unwrap();
}

/// A receiver that requires a client certificate gets data only from an exporter given
/// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `_KEY`.
#[test]
fn a_client_certificate_is_presented_when_configured() {
    let pki = Pki::new("mtls");
    let dir = tempfile::tempdir().unwrap();
    let ca = write_file(dir.path(), "ca.pem", &pki.ca_pem);
    let cert = write_file(dir.path(), "client.pem", &pki.client_cert_pem);
    let key = write_file(dir.path(), "client-key.pem", &pki.client_key_pem);
    let receiver = start_tls_receiver(pki.server_config(true));
    let base = Settings {
        otel_exporter_otlp_endpoint: Some(receiver.url.clone()),
        otel_exporter_otlp_certificate: Some(ca.display().to_string()),
        ..Settings::default()
    };

    let mut without = otel(base.clone());
    without.observe(&event(1));
    without.flush();
    assert!(receiver.received.lock().unwrap().requests.is_empty());
    let _ = without.shutdown();

    let mut with = otel(Settings {
        otel_exporter_otlp_client_certificate: Some(cert.display().to_string()),
        otel_exporter_otlp_client_key: Some(key.display().to_string()),
        ..base
    });
    with.observe(&event(2));
    with.flush();
    let received = receiver.received.lock().unwrap();
    assert_eq!(all_spans(&received).len(), 2);
    assert!(!received.metrics.is_empty());
    drop(received);
    with.shutdown().unwrap();
}

/// The real binary, exporting to a receiver whose certificate its CA file does not vouch
/// for: the receiver gets nothing, each exporter's failure is logged with the TLS reason,
/// and the header values appear nowhere in the output (at debug level).
#[actix_web::test]
async fn an_untrusted_receiver_gets_nothing_and_the_log_says_why() {
    const SECRET: &str = "never-logged-otlp-secret";
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = crate::support::spawn_app().await;
    let key = configure_openai(&app, &mock, json!({"logging": {"log_statistics": true}})).await;
    let (settings, _dir) = app.shut_down().await;

    let receiver = start_tls_receiver(Pki::new("receiver").server_config(false));
    let other_ca = write_file(
        &settings.data_dir,
        "other-ca.pem",
        &Pki::new("other").ca_pem,
    );
    let server = Env::for_settings(&settings)
        .set("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "true")
        .set("TOLLGATE_ANALYTICS_LOG", "otlp")
        .set("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.clone())
        .set(
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            other_ca.display().to_string(),
        )
        .set(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer%20{SECRET}"),
        )
        .set("RUST_LOG", "debug")
        .serve();
    let resp = client()
        .post(format!("{}/openai/chat", server.proxy))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Lets the analytics writer post (and fail) once before the stop.
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let (status, output) = server.stop_async().await;
    assert!(status.success(), "{output}");

    assert!(
        receiver.received.lock().unwrap().requests.is_empty(),
        "an untrusted receiver got data"
    );
    // Each exporter's failure, with the TLS reason on the same line.
    for what in ["/v1/traces", "/v1/metrics", "/v1/logs"] {
        assert!(
            output.lines().any(|l| l.contains("OTLP")
                && l.contains(what)
                && l.contains("invalid peer certificate")
                && l.contains("UnknownIssuer")),
            "no export error for {what} that says why in:\n{output}"
        );
    }
    assert!(
        !output.contains(SECRET),
        "a header value was logged:\n{output}"
    );
}

#[actix_web::test]
async fn unusable_ca_files_stop_the_start_naming_the_variable_and_the_path() {
    let app = crate::support::spawn_app().await;
    let (settings, _dir) = app.shut_down().await;
    let missing = settings.data_dir.join("no-such-ca.pem");
    let not_pem = write_file(&settings.data_dir, "not-a-ca.pem", "hello\n");
    for (var, path, analytics) in [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", &missing, "stdout"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", &not_pem, "stdout"),
        ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", &missing, "otlp"),
    ] {
        let out = Env::for_settings(&settings)
            .set("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318")
            .set("TOLLGATE_ANALYTICS_LOG", analytics)
            .set(var, path.display().to_string())
            .run_async(&["serve"])
            .await;
        assert!(!out.success(), "{}", out.all());
        assert!(
            out.stderr.contains(var) && out.stderr.contains(&path.display().to_string()),
            "{var} and {} are not named:\n{}",
            path.display(),
            out.all()
        );
        assert!(!out.all().contains("Tollgate listening"), "{}", out.all());
    }
}

/// The JSON of an analytics entry without what differs between two runs of the same
/// request (ids, timings).
fn stable(mut entry: Value) -> Value {
    for pointer in [
        "/tollgate/request_id",
        "/tollgate/key_id",
        "/tollgate/overhead_ms",
        "/ai/proxy/meta/plugin_id",
        "/ai/proxy/meta/llm_latency",
        "/ai/proxy/usage/time_per_token",
    ] {
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        let removed = entry
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .and_then(|o| o.remove(field));
        assert!(removed.is_some(), "{pointer} missing in {entry}");
    }
    entry
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A proxied request's analytics entry arrives as one OTLP log record over TLS: its body
/// is the entry a file sink gets for the same request, with the request span's trace and
/// span ids, severity INFO and the spans' resource; the logs headers arrive.
#[actix_web::test]
async fn analytics_entries_arrive_as_log_records() {
    let pki = Pki::new("logs");
    let files = tempfile::tempdir().unwrap();
    let ca = write_file(files.path(), "ca.pem", &pki.ca_pem);
    let receiver = start_tls_receiver(pki.server_config(false));
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let route = json!({"logging": {"log_statistics": true}});
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let send = |app: &crate::support::TestApp, key: &str| {
        app.client
            .post(format!("{}/openai/chat", app.proxy))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .insert_header(("traceparent", format!("00-{client_trace}-{client_span}-01")))
            .send_json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
    };

    // The same request through a gateway writing its analytics log to a file.
    let log_file = files.path().join("analytics.log");
    let path = log_file.display().to_string();
    let app = crate::support::spawn_app_with(move |s| s.analytics_log = path).await;
    let key = configure_openai(&app, &mock, route.clone()).await;
    assert_eq!(send(&app, &key).await.unwrap().status(), 200);
    app.shut_down().await;
    let text = std::fs::read_to_string(&log_file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let file_entry: Value = serde_json::from_str(lines[0]).unwrap();

    let (url, ca_path) = (receiver.url.clone(), ca.display().to_string());
    let app = crate::support::spawn_app_with(move |s| {
        s.analytics_log = "otlp".into();
        s.otel_exporter_otlp_endpoint = Some(url);
        s.otel_exporter_otlp_certificate = Some(ca_path);
        s.otel_exporter_otlp_logs_headers =
            Some(Secret::new("authorization=Bearer%20logs-secret".into()));
        s.otel_metric_export_interval = Some("600000".into());
    })
    .await;
    let key = configure_openai(&app, &mock, route).await;
    let resp = send(&app, &key).await.unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp
        .headers()
        .get("x-tollgate-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id")
        .to_string();
    // A graceful stop writes what the analytics writer holds.
    app.shut_down().await;

    let received = receiver.received.lock().unwrap();
    assert_eq!(
        received.header_values("/v1/logs", "authorization"),
        vec!["Bearer logs-secret".to_string()]
    );
    let resource_logs: Vec<_> = received
        .logs
        .iter()
        .flat_map(|r| &r.resource_logs)
        .collect();
    let records: Vec<&LogRecord> = resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = records[0];
    assert_eq!(record.severity_number, 9);
    assert_eq!(record.severity_text, "INFO");
    assert_eq!(record.event_name, "tollgate.analytics");
    assert!(record.time_unix_nano > 0 && record.observed_time_unix_nano >= record.time_unix_nano);

    // The request's server span: same trace as the client's, child of its span.
    let spans = all_spans(&received);
    let server = spans
        .iter()
        .find(|s| s.kind == 2)
        .expect("the request span");
    assert_eq!(hex(&server.parent_span_id), client_span);
    assert_eq!(hex(&record.trace_id), client_trace);
    assert_eq!(record.span_id, server.span_id);
    assert_eq!(record.flags & 0xff, 1, "sampled");
    // Attribute order is the resource's map order, not fixed.
    let sorted = |r: Option<&opentelemetry_proto::tonic::resource::v1::Resource>| {
        let mut kvs: Vec<String> = r
            .expect("a resource")
            .attributes
            .iter()
            .map(|kv| format!("{kv:?}"))
            .collect();
        kvs.sort();
        kvs
    };
    assert_eq!(
        sorted(resource_logs[0].resource.as_ref()),
        sorted(received.traces[0].resource_spans[0].resource.as_ref()),
        "the spans' resource"
    );

    let body = match record.body.as_ref().and_then(|b| b.value.clone()) {
        Some(any_value::Value::StringValue(text)) => text,
        other => panic!("the body is not a string: {other:?}"),
    };
    let entry: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(entry["tollgate"]["request_id"], request_id.as_str());
    assert_eq!(entry["ai"]["proxy"]["usage"]["prompt_tokens"], 12);
    assert_eq!(entry["ai"]["proxy"]["usage"]["completion_tokens"], 3);
    assert_eq!(stable(entry), stable(file_entry), "the file sink's entry");
}
