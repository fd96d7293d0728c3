//! Credential values never leave through an upstream's echo (docs/architecture.md, "The
//! analytics line"): the real `tollgate` binary, three services whose credentials sit in a
//! header, a query parameter and a body field, and an upstream that echoes back everything
//! it received — in a JSON error, in an HTML error page and in an in-band stream error.
//! None of the secrets may appear in a client response, the analytics log, the process's
//! log output or the OTLP export.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use prost::Message;
use serde_json::{Value, json};

use crate::support::ADMIN_PASSWORD;
use crate::support::otlp::start_receiver;
use crate::support::process::{Env, call, client, login};

/// Everything the echo upstream received, one entry per request.
type Seen = Arc<Mutex<Vec<String>>>;

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Echoes the whole request back: a JSON 400 by default, an HTML 500 page when the prompt
/// says `html`, and for `"stream": true` a 200 stream whose second event is an error.
async fn echo(req: HttpRequest, body: web::Bytes, seen: web::Data<Seen>) -> HttpResponse {
    let headers: Vec<String> = req
        .headers()
        .iter()
        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or_default()))
        .collect();
    let body = String::from_utf8_lossy(&body).into_owned();
    let echo = format!(
        "{} {}?{} | {} | {}",
        req.method(),
        req.path(),
        req.query_string(),
        headers.join(" | "),
        body
    );
    seen.lock().unwrap().push(echo.clone());
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if parsed["stream"] == json!(true) {
        let first = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
            "finish_reason": null}]});
        let error = json!({"error": {"message": format!("stream failed for {echo}"),
                                     "type": format!("server_error {echo}"), "code": echo}});
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(format!("data: {first}\n\ndata: {error}\n\n"));
    }
    if body.contains("html") {
        return HttpResponse::InternalServerError()
            .content_type("text/html")
            .body(format!(
                "<html><body><h1>Bad gateway</h1><pre>{}</pre><!-- {echo} --></body></html>",
                html_escape(&echo)
            ));
    }
    HttpResponse::BadRequest().json(json!({"error": {
        "message": format!("invalid request: {echo}"),
        "type": format!("invalid_request_error {echo}"),
        "param": req.query_string(),
        "code": body,
    }}))
}

async fn start_echo() -> (String, Seen, actix_web::dev::ServerHandle) {
    let seen = Seen::default();
    let data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(echo))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("http://{addr}"), seen, handle)
}

/// A secret and the distinctive run of it that no output may contain: the core is
/// alphanumeric, so it survives every escaping unchanged; the surrounding special characters
/// make the escaped forms differ from the raw one.
struct Planted {
    value: String,
    core: String,
}

fn plant(prefix: &str, specials: &str) -> Planted {
    let core = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    Planted {
        value: format!("{specials}{core}{specials}tail"),
        core,
    }
}

#[actix_web::test]
async fn echoed_credentials_reach_no_response_log_or_export() {
    let receiver = start_receiver();
    let (upstream, seen, echo_handle) = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let analytics = dir.path().join("analytics.log");
    let env = Env::new(dir.path())
        .set("TOLLGATE_DATA_DIR", dir.path().display().to_string())
        .set("TOLLGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .set("TOLLGATE_PROXY_LISTEN", "127.0.0.1:0")
        .set("TOLLGATE_PROXY_WORKERS", "1")
        .set("TOLLGATE_DRAIN_TIMEOUT", "1s")
        .set("TOLLGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .set("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "true")
        .set("TOLLGATE_ANALYTICS_LOG", analytics.display().to_string())
        .set("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.clone())
        .set("OTEL_METRIC_EXPORT_INTERVAL", "600000")
        .set("RUST_LOG", "debug");
    let server = env.serve();
    let http = client();
    let token = login(&http, &server.admin, "admin", ADMIN_PASSWORD).await;
    let admin = |method: &'static str, path: &'static str, body: Value| {
        let (http, base, token) = (http.clone(), server.admin.clone(), token.clone());
        async move {
            let (status, _, text) =
                call(&http, &base, method, path, Some(&token), Some(body)).await;
            assert!(
                status == 201 || status == 200,
                "{method} {path}: {status} {text}"
            );
        }
    };

    let header = plant("HDRSECRET", "");
    let query = plant("QRYSECRET", "+/=&?");
    let body = plant("BDYSECRET", "\"\\</");
    admin("POST", "/tenants", json!({"name": "acme"})).await;
    admin(
        "POST",
        "/credentials",
        json!({"name": "hdr", "header_name": "Authorization",
               "header_value": format!("Bearer {}", header.value)}),
    )
    .await;
    admin(
        "POST",
        "/credentials",
        json!({"name": "qry", "param_name": "key", "param_location": "query",
               "param_value": query.value}),
    )
    .await;
    admin(
        "POST",
        "/credentials",
        json!({"name": "bdy", "param_name": "api_key", "param_location": "body",
               "param_value": body.value}),
    )
    .await;
    for (name, path) in [("hdr", "/h"), ("qry", "/q"), ("bdy", "/b")] {
        let (http, base, token) = (http.clone(), server.admin.clone(), token.clone());
        let (status, _, text) = call(
            &http,
            &base,
            "POST",
            "/services",
            Some(&token),
            Some(
                json!({"name": name, "provider": "openai", "credential": name,
                        "upstream_url": format!("{upstream}/v1/chat/completions?region=eu")}),
            ),
        )
        .await;
        assert_eq!(status, 201, "{text}");
        let (status, _, text) = call(
            &http,
            &base,
            "POST",
            "/routes",
            Some(&token),
            Some(json!({"name": name, "paths": [path], "service": name,
                        "route_type": "llm/v1/chat", "model": {"name": "gpt-4o"},
                        "logging": {"log_payloads": true, "log_statistics": true}})),
        )
        .await;
        assert_eq!(status, 201, "{text}");
    }
    let (status, key, text) = call(
        &http,
        &server.admin,
        "POST",
        "/tenants/acme/keys",
        Some(&token),
        Some(json!({"name": "app"})),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let key = key["key"].as_str().unwrap().to_string();

    // Each service, each way of echoing.
    let mut responses = Vec::new();
    for path in ["/h", "/q", "/b"] {
        for (prompt, stream) in [("json please", false), ("html please", false), ("s", true)] {
            let mut resp = http
                .post(format!("{}{path}", server.proxy))
                .insert_header(("Authorization", format!("Bearer {key}")))
                .send_json(&json!({"messages": [{"role": "user", "content": prompt}],
                                   "stream": stream}))
                .await
                .unwrap();
            let bytes = resp.body().limit(16 * 1024 * 1024).await.unwrap();
            let headers = format!("{:?}", resp.headers());
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let expected = match (stream, prompt) {
                (true, _) => 200,
                (false, "html please") => 500,
                _ => 400,
            };
            assert_eq!(resp.status().as_u16(), expected, "{path} {prompt}: {text}");
            // The answer still carries the upstream's message (masked, not dropped); an
            // HTML page is replaced by a generic message anyway.
            if prompt != "html please" {
                assert!(text.contains("********"), "{path} {prompt}: {text}");
            }
            responses.push(format!("{path} {prompt}: {headers} {text}"));
        }
    }
    // The upstream really got (and so echoed) every secret: the test can fail.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 9);
    let seen_all = seen.join("\n");
    for planted in [&header, &query, &body] {
        assert!(
            seen_all.contains(&planted.core),
            "{} not sent",
            planted.core
        );
    }
    let query_encoded: String =
        url::form_urlencoded::byte_serialize(query.value.as_bytes()).collect();
    assert!(seen_all.contains(&query_encoded), "{seen_all}");
    let body_json = serde_json::to_string(&body.value).unwrap();
    assert!(seen_all.contains(&body_json), "{seen_all}");

    let (status, output) = server.stop_async().await;
    assert!(status.success(), "{output}");
    echo_handle.stop(false).await;
    let lines = std::fs::read_to_string(&analytics).unwrap();
    assert_eq!(lines.lines().count(), 9, "{lines}");
    let mut body_masked = 0;
    for line in lines.lines() {
        let line: Value = serde_json::from_str(line).unwrap();
        let request = line["ai"]["proxy"]["payload"]["request"]
            .as_str()
            .unwrap_or_default();
        if line["tollgate"]["service"] == "bdy" {
            let request: Value = serde_json::from_str(request).unwrap();
            assert_eq!(request["api_key"], "********", "{request}");
            body_masked += 1;
        }
    }
    assert_eq!(body_masked, 3);
    let exported = {
        let received = receiver.received.lock().unwrap();
        assert!(!received.traces.is_empty(), "no spans exported");
        let mut bytes = Vec::new();
        for t in &received.traces {
            bytes.extend(t.encode_to_vec());
        }
        for m in &received.metrics {
            bytes.extend(m.encode_to_vec());
        }
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let header_token = format!("Bearer {}", header.value);
    let places = [
        ("client responses", responses.join("\n")),
        ("analytics log", lines),
        ("process output", output),
        ("OTLP export", exported),
    ];
    for (place, text) in &places {
        for planted in [&header, &query, &body] {
            assert!(
                !text.contains(&planted.core),
                "{} found in the {place}:\n{text}",
                planted.core
            );
            assert!(!text.contains(&planted.value), "{place}");
        }
        for form in [&query_encoded, &body_json, &header_token] {
            assert!(!text.contains(form.as_str()), "{form} in the {place}");
        }
    }
}
