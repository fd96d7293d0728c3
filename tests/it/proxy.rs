//! The data plane through its real HTTP listener against a mock upstream: authentication,
//! the request checks of docs/behaviour.md, "Request order", in order, credential injection,
//! response headers, the analytics line, upstream failures, and serving with the database gone.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::mock_upstream::{Behaviour, MockUpstream};
use crate::support::proxy::{
    ProxyReply, UPSTREAM_SECRET, call, chat, configure_openai, new_key, openai_completion,
};
use crate::support::{TestApp, spawn_app, spawn_app_with};

fn hello() -> Value {
    json!({"messages": [{"role": "user", "content": "Say hello"}]})
}

fn header<'a>(reply: &'a ProxyReply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

#[actix_web::test]
async fn openai_chat_through_a_route_path_and_through_the_alias() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;

    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(r.body["usage"]["total_tokens"], 15);
    let sent = mock.last();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {UPSTREAM_SECRET}").as_str())
    );
    assert!(
        !String::from_utf8_lossy(&sent.body).contains(&key),
        "the gateway key must not go upstream"
    );
    assert!(
        sent.headers.iter().all(|(_, v)| !v.contains(&key)),
        "the gateway key must not go upstream"
    );
    assert_eq!(sent.json()["model"], "gpt-4o");
    assert_eq!(sent.json()["messages"][0]["content"], "Say hello");

    assert_eq!(header(&r, "x-tollgate-llm-model"), Some("openai/gpt-4o"));
    assert!(header(&r, "x-tollgate-request-id").is_some_and(|v| !v.is_empty()));
    assert!(header(&r, "x-tollgate-upstream-latency-ms").is_some_and(|v| v.parse::<u64>().is_ok()));
    assert!(header(&r, "x-tollgate-overhead-ms").is_some_and(|v| v.parse::<f64>().is_ok()));
    assert!(
        header(&r, "set-cookie").is_none(),
        "provider cookies are dropped"
    );
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), Some("99"));

    // The OpenAI-compatible surface: `model` is the alias.
    let r = chat(
        &app,
        "/v1/chat/completions",
        &key,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(mock.last().json()["model"], "gpt-4o");

    // A sane client request id is kept.
    let mut req = app.client.post(format!("{}/openai/chat", app.proxy));
    req = req
        .insert_header(("Authorization", format!("Bearer {key}")))
        .insert_header(("x-tollgate-request-id", "trace-42"));
    let resp = req.send_json(&hello()).await.unwrap();
    assert_eq!(
        resp.headers().get("x-tollgate-request-id").unwrap(),
        "trace-42"
    );
}

#[actix_web::test]
async fn keys_are_checked_and_never_forwarded() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let body = serde_json::to_vec(&hello()).unwrap();

    let r = call(&app, "/openai/chat", None, &body, Some("application/json")).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.body["error"]["type"], "authentication_error");
    let r = call(
        &app,
        "/openai/chat",
        Some("tg-not-a-real-key"),
        &body,
        Some("application/json"),
    )
    .await;
    assert_eq!(r.status, 401);

    // x-api-key and api-key work too.
    for header_name in ["x-api-key", "api-key"] {
        let resp = app
            .client
            .post(format!("{}/openai/chat", app.proxy))
            .insert_header((header_name, key.as_str()))
            .send_json(&hello())
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{header_name}");
        assert!(
            mock.last().header(header_name).is_none(),
            "{header_name} forwarded upstream"
        );
    }

    // A key restricted to another route, and a tenant the route does not list → 403.
    assert_eq!(
        app.post("/tenants", json!({"name": "other"})).await.status,
        201
    );
    let r = app
        .post("/routes", json!({"name": "chat2", "paths": ["/openai/chat2"], "service": "openai",
                                "route_type": "llm/v1/chat", "model": {"name": "gpt-4o"}, "tenants": ["acme"]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let restricted = new_key(
        &app,
        "acme",
        json!({"name": "only-chat2", "routes": ["chat2"]}),
    )
    .await;
    let r = chat(&app, "/openai/chat", &restricted, hello()).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "permission_denied");
    assert_eq!(
        chat(&app, "/openai/chat2", &restricted, hello())
            .await
            .status,
        200
    );
    let other = new_key(&app, "other", json!({"name": "o"})).await;
    assert_eq!(
        chat(&app, "/openai/chat2", &other, hello()).await.status,
        403
    );

    // Revocation takes effect at once on this node.
    let keys = app.get("/tenants/acme/keys").await;
    let id = keys.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "app")
        .unwrap()["id"]
        .clone();
    assert_eq!(
        app.delete(&format!("/tenants/acme/keys/{}", id.as_str().unwrap()))
            .await
            .status,
        204
    );
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 401);
    assert!(r.text.contains("revoked"), "{}", r.text);
}

#[actix_web::test]
async fn the_openai_surface_checks_the_key_before_revealing_aliases() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let unknown = serde_json::to_vec(
        &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    )
    .unwrap();
    let r = call(
        &app,
        "/v1/chat/completions",
        None,
        &unknown,
        Some("application/json"),
    )
    .await;
    assert_eq!(r.status, 401, "no key: 401 before anything about aliases");
    let r = call(
        &app,
        "/v1/chat/completions",
        Some(&key),
        &unknown,
        Some("application/json"),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "model_not_found");

    let resp = app
        .client
        .get(format!("{}/v1/models", app.proxy))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let ids: Vec<&str> = resp["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["gpt-4o"]);
    // A chat alias on the completions endpoint is refused, naming the route type.
    let r = chat(
        &app,
        "/v1/completions",
        &key,
        json!({"model": "gpt-4o", "prompt": "x"}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
}

#[actix_web::test]
async fn request_checks_come_in_the_order_of_the_spec() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure_openai(
        &app,
        &mock,
        json!({"max_request_body_size": 2048, "response_streaming": "deny"}),
    )
    .await;
    // (case, body, content type, expected status, expected message part)
    type Case = (
        &'static str,
        Vec<u8>,
        Option<&'static str>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "too large",
            vec![b' '; 4096],
            Some("application/json"),
            413,
            "larger than",
        ),
        (
            "not json content type",
            b"{}".to_vec(),
            Some("text/plain"),
            415,
            "application/json",
        ),
        (
            "truncated json",
            b"{\"messages\": [".to_vec(),
            Some("application/json"),
            400,
            "request body is not valid JSON",
        ),
        (
            "invalid utf-8",
            vec![b'{', 0xff, 0xfe, b'}'],
            Some("application/json"),
            400,
            "request body is not valid JSON",
        ),
        (
            "no prompt",
            b"{\"messages\": []}".to_vec(),
            None,
            400,
            "request body doesn't contain valid prompts",
        ),
        (
            "messages not an array",
            b"{\"messages\": \"hi\"}".to_vec(),
            None,
            400,
            "request body doesn't contain valid prompts",
        ),
        (
            "both formats",
            br#"{"messages":[{"role":"user","content":"a"}],"prompt":"b"}"#.to_vec(),
            None,
            400,
            "multiple LLM request formats",
        ),
        (
            "completions body on chat route",
            br#"{"prompt":"b"}"#.to_vec(),
            None,
            400,
            "[llm/v1/completions] message format is not compatible with [llm/v1/chat] route type",
        ),
        (
            "own model",
            br#"{"model":"try-to-override-the-model","messages":[{"role":"user","content":"a"}]}"#
                .to_vec(),
            None,
            400,
            "cannot use own model - must be: gpt-4o",
        ),
        (
            "model of the wrong type",
            br#"{"model":5,"messages":[{"role":"user","content":"a"}]}"#.to_vec(),
            None,
            400,
            "model",
        ),
        (
            "stream on a deny route",
            br#"{"stream":true,"messages":[{"role":"user","content":"a"}]}"#.to_vec(),
            None,
            400,
            "stream",
        ),
        (
            "deep nesting",
            format!("{{\"messages\":{}{}}}", "[".repeat(1000), "]".repeat(1000)).into_bytes(),
            None,
            400,
            "request body is not valid JSON",
        ),
    ];
    for (name, body, content_type, status, message) in cases {
        let r = call(&app, "/openai/chat", Some(&key), &body, content_type).await;
        assert_eq!(r.status, status, "{name}: {}", r.text);
        let got = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(got.contains(message), "{name}: {got}");
        assert!(
            r.body["error"]["type"].is_string(),
            "{name}: OpenAI error shape: {}",
            r.text
        );
    }
    assert!(
        mock.received().is_empty(),
        "nothing may be forwarded when a check fails"
    );
    // The worker survived all of that.
    assert_eq!(chat(&app, "/openai/chat", &key, hello()).await.status, 200);
    // No route at all.
    assert_eq!(chat(&app, "/nowhere", &key, hello()).await.status, 404);
}

#[actix_web::test]
async fn upstream_failures_become_specific_errors() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let cases: Vec<(&str, Behaviour, u16, &str)> = vec![
        (
            "provider error keeps its message and type",
            Behaviour::json(
                429,
                json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}),
            ),
            429,
            "Rate limit reached",
        ),
        (
            "html error page",
            Behaviour::Reply(
                500,
                "text/html",
                b"<html><body>Internal Server Error</body></html>".to_vec(),
            ),
            500,
            "",
        ),
        (
            "empty 200",
            Behaviour::Reply(200, "application/json", Vec::new()),
            502,
            "transformation failed from type openai://llm/v1/chat",
        ),
        (
            "garbage 200",
            Behaviour::Reply(200, "application/json", b"\x00\x01garbage".to_vec()),
            502,
            "transformation failed from type openai://llm/v1/chat",
        ),
        (
            "connection cut mid-body",
            Behaviour::CutMidBody,
            502,
            "upstream",
        ),
        (
            "hang past the read timeout",
            Behaviour::Hang,
            504,
            "did not answer",
        ),
    ];
    for (name, behaviour, status, message) in cases {
        mock.set(behaviour);
        let r = chat(&app, "/openai/chat", &key, hello()).await;
        assert_eq!(r.status, status, "{name}: {}", r.text);
        let got = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(got.contains(message), "{name}: {got}");
        assert!(r.body["error"]["type"].is_string(), "{name}: {}", r.text);
    }
    mock.stop().await;
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 502, "unreachable: {}", r.text);
}

#[actix_web::test]
async fn the_proxy_serves_from_the_snapshot_when_the_database_is_gone() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    app.state.store.close().await;
    for _ in 0..3 {
        let r = chat(&app, "/openai/chat", &key, hello()).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

#[actix_web::test]
async fn every_request_writes_one_analytics_line() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("analytics.log");
    let log_path = log.display().to_string();
    let app = spawn_app_with(|s| s.analytics_log = log_path).await;
    let key = configure_openai(&app, &mock, json!({"logging": {"log_payloads": true}})).await;
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if !lines.is_empty() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    let meta = &line["ai"]["proxy"]["meta"];
    assert_eq!(meta["provider_name"], "openai");
    assert_eq!(meta["request_model"], "gpt-4o");
    assert_eq!(meta["response_model"], "gpt-4o-2024-08-06");
    let usage = &line["ai"]["proxy"]["usage"];
    assert_eq!(usage["prompt_tokens"], 12);
    assert_eq!(usage["completion_tokens"], 3);
    assert_eq!(usage["total_tokens"], 15);
    // (12 × 2.5 + 3 × 10) / 1M
    assert!(
        (usage["cost"].as_f64().unwrap() - 0.00006).abs() < 1e-12,
        "{usage}"
    );
    assert!(
        line["ai"]["proxy"]["payload"]["request"]
            .as_str()
            .unwrap()
            .contains("Say hello")
    );
    let t = &line["tollgate"];
    assert_eq!(t["tenant"], "acme");
    assert_eq!(t["route"], "chat");
    assert_eq!(t["service"], "openai");
    assert_eq!(t["status"], 200);
    assert_eq!(t["stream"], false);
    assert_eq!(
        t["request_id"].as_str(),
        header(&r, "x-tollgate-request-id")
    );
    assert!(
        !lines[0].contains(UPSTREAM_SECRET) && !lines[0].contains(&key),
        "no secrets in the analytics log"
    );
}

#[actix_web::test]
async fn credentials_go_in_the_query_or_the_body_and_allow_override_keeps_the_clients() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let r = app
        .patch(
            "/credentials/openai-key",
            json!({"header_name": null, "header_value": null,
               "param_name": "api_key", "param_value": "query-secret", "param_location": "query"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(chat(&app, "/openai/chat", &key, hello()).await.status, 200);
    let sent = mock.last();
    assert!(
        sent.query.contains("api_key=query-secret"),
        "{}",
        sent.query
    );
    assert!(sent.header("authorization").is_none());

    let r = app
        .patch(
            "/credentials/openai-key",
            json!({"param_location": "body", "param_name": "token"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(chat(&app, "/openai/chat", &key, hello()).await.status, 200);
    assert_eq!(mock.last().json()["token"], "query-secret");

    let r = app
        .patch("/credentials/openai-key", json!({"param_name": null, "param_value": null, "param_location": null,
               "header_name": "x-upstream-key", "header_value": "configured", "allow_override": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = app
        .client
        .post(format!("{}/openai/chat", app.proxy))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .insert_header(("x-upstream-key", "clients-own"))
        .send_json(&hello())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(mock.last().header("x-upstream-key"), Some("clients-own"));
    assert_eq!(chat(&app, "/openai/chat", &key, hello()).await.status, 200);
    assert_eq!(mock.last().header("x-upstream-key"), Some("configured"));
}

/// DNS can change after the admin check, so the resolved address is checked again when
/// connecting: a host name that resolves to loopback is refused unless private upstreams
/// are allowed.
#[actix_web::test]
#[ignore = "needs this machine's host name (/etc/hostname) to resolve to loopback"]
async fn a_host_name_resolving_to_loopback_is_refused_at_connect_time() {
    use std::net::ToSocketAddrs;
    let host = std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let resolves_to_loopback = !host.is_empty()
        && (host.as_str(), 80)
            .to_socket_addrs()
            .is_ok_and(|mut addrs| addrs.all(|a| a.ip().is_loopback()));
    assert!(
        resolves_to_loopback,
        "this test needs this machine's host name ({host:?}) to resolve to loopback only"
    );
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let port = mock.base.rsplit(':').next().unwrap().to_string();
    let app = spawn_app_with(|s| s.allow_private_upstreams = false).await;
    assert_eq!(
        app.post("/tenants", json!({"name": "acme"})).await.status,
        201
    );
    let r = app
        .post("/services", json!({"name": "sneaky", "provider": "openai",
                                  "upstream_url": format!("http://{host}:{port}/v1/chat/completions")}))
        .await;
    assert_eq!(
        r.status, 201,
        "a host name is not resolved at write time: {}",
        r.text
    );
    let r = app
        .post(
            "/routes",
            json!({"name": "r", "paths": ["/sneaky"], "service": "sneaky",
                                "route_type": "llm/v1/chat", "model": {"name": "gpt-4o"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = new_key(&app, "acme", json!({"name": "k"})).await;
    let r = chat(&app, "/sneaky", &key, hello()).await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.text.contains("private or loopback"), "{}", r.text);
    assert!(
        mock.received().is_empty(),
        "nothing may reach a private address"
    );
}

// ---- Hostile input -------------------------------------------------------------------

/// An Anthropic Messages answer.
fn anthropic_message() -> Value {
    json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-3-5-haiku",
           "content": [{"type": "text", "text": "Hi!"}], "stop_reason": "end_turn",
           "usage": {"input_tokens": 9, "output_tokens": 2}})
}

/// Tenant `acme` (key returned), and a `provider` service at the mock with a route
/// `/<provider>/chat` whose model is `model` (None: the client's).
async fn configure(
    app: &TestApp,
    mock: &MockUpstream,
    provider: &str,
    upstream_path: &str,
    options: Value,
    model: Option<&str>,
) -> String {
    if app.get("/tenants/acme").await.status == 404 {
        assert_eq!(
            app.post("/tenants", json!({"name": "acme"})).await.status,
            201
        );
    }
    let r = app
        .post(
            "/credentials",
            json!({"name": format!("{provider}-key"), "header_name": "x-api-key",
                   "header_value": UPSTREAM_SECRET}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/services",
            json!({"name": provider, "provider": provider, "credential": format!("{provider}-key"),
                   "upstream_url": format!("{}{upstream_path}", mock.base), "options": options,
                   "timeouts": {"connect_ms": 1000, "read_ms": 2000}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": format!("{provider}-chat"), "paths": [format!("/{provider}/chat")],
                   "service": provider, "route_type": "llm/v1/chat", "model": {"name": model}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    new_key(app, "acme", json!({"name": format!("{provider}-app")})).await
}

#[actix_web::test]
async fn content_as_an_array_of_parts_is_translated_for_anthropic_and_cohere() {
    let mock = MockUpstream::start(Behaviour::json(200, anthropic_message())).await;
    let app = spawn_app().await;
    let key = configure(
        &app,
        &mock,
        "anthropic",
        "/v1/messages",
        json!({"anthropic_version": "2023-06-01"}),
        Some("claude-3-5-haiku"),
    )
    .await;
    let parts = json!({"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                     {"type": "text", "text": "world"}]}]});
    let r = chat(&app, "/anthropic/chat", &key, parts.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["choices"][0]["message"]["content"], "Hi!");
    let sent = mock.last().json();
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Hello"},
                                             {"type": "text", "text": "world"}]}])
    );

    mock.set(Behaviour::json(
        200,
        json!({"text": "Hi!", "generation_id": "g1", "finish_reason": "COMPLETE",
               "meta": {"billed_units": {"input_tokens": 5, "output_tokens": 2}}}),
    ));
    let key = configure(
        &app,
        &mock,
        "cohere",
        "/v1/chat",
        json!({}),
        Some("command-r"),
    )
    .await;
    let r = chat(&app, "/cohere/chat", &key, parts).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["choices"][0]["message"]["content"], "Hi!");
    let sent = mock.last().json();
    assert_eq!(sent["preamble"], "Be brief.");
    assert_eq!(
        sent["message"], "Hello\nworld",
        "text parts flattened (§9.6)"
    );

    // A part the provider cannot take is a 400 naming it, not forwarded.
    let before = mock.received().len();
    let image = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let r = chat(&app, "/cohere/chat", &key, image).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("image_url"), "{}", r.text);
    assert_eq!(mock.received().len(), before);
}

#[actix_web::test]
async fn a_null_model_means_the_routes_model_or_400_when_there_is_none() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let body = json!({"model": null, "messages": [{"role": "user", "content": "hi"}]});
    let r = chat(&app, "/openai/chat", &key, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(mock.last().json()["model"], "gpt-4o");

    let r = app
        .post(
            "/routes",
            json!({"name": "modelless", "paths": ["/openai/any"], "service": "openai",
                                "route_type": "llm/v1/chat"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let before = mock.received().len();
    let r = chat(&app, "/openai/any", &key, body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["param"], "model", "{}", r.text);
    assert!(r.text.contains("no model"), "{}", r.text);
    assert_eq!(mock.received().len(), before, "nothing forwarded");
    // The OpenAI surface needs the alias in `model`.
    let r = chat(
        &app,
        "/v1/chat/completions",
        &key,
        json!({"model": null, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["param"], "model");
}

#[actix_web::test]
async fn huge_numbers_and_broken_text_are_specific_400s_never_a_panic() {
    let mock = MockUpstream::start(Behaviour::json(200, anthropic_message())).await;
    let openai_mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let openai = configure_openai(&app, &openai_mock, json!({})).await;
    let anthropic = configure(
        &app,
        &mock,
        "anthropic",
        "/v1/messages",
        json!({"anthropic_version": "2023-06-01"}),
        Some("claude-3-5-haiku"),
    )
    .await;
    let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
    // (case, route, key, raw body, status, the parameter named — or a message part)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "max_tokens 1e308 (openai)",
            "/openai/chat",
            &openai,
            format!(r#"{{{msgs},"max_tokens":1e308}}"#).into_bytes(),
            400,
            "max_tokens",
        ),
        (
            "max_tokens 1e308 (anthropic)",
            "/anthropic/chat",
            &anthropic,
            format!(r#"{{{msgs},"max_tokens":1e308}}"#).into_bytes(),
            400,
            "max_tokens",
        ),
        (
            "max_tokens past u64 (anthropic)",
            "/anthropic/chat",
            &anthropic,
            format!(r#"{{{msgs},"max_tokens":18446744073709551616}}"#).into_bytes(),
            400,
            "max_tokens",
        ),
        (
            "negative max_tokens (anthropic)",
            "/anthropic/chat",
            &anthropic,
            format!(r#"{{{msgs},"max_tokens":-1}}"#).into_bytes(),
            400,
            "max_tokens",
        ),
        (
            "temperature 1e400 (not representable)",
            "/openai/chat",
            &openai,
            format!(r#"{{{msgs},"temperature":1e400}}"#).into_bytes(),
            400,
            "request body is not valid JSON",
        ),
        (
            "temperature 1e400 (anthropic)",
            "/anthropic/chat",
            &anthropic,
            format!(r#"{{{msgs},"temperature":1e400}}"#).into_bytes(),
            400,
            "request body is not valid JSON",
        ),
        (
            "n 1e308 (anthropic cannot honour n)",
            "/anthropic/chat",
            &anthropic,
            format!(r#"{{{msgs},"n":1e308}}"#).into_bytes(),
            400,
            "n",
        ),
        (
            "invalid UTF-8 inside a string",
            "/anthropic/chat",
            &anthropic,
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}".to_vec(),
            400,
            "request body is not valid JSON",
        ),
        (
            "lone surrogate escape",
            "/anthropic/chat",
            &anthropic,
            br#"{"messages":[{"role":"user","content":"\ud800"}]}"#.to_vec(),
            400,
            "request body is not valid JSON",
        ),
    ];
    for (name, path, key, raw, status, part) in cases {
        let r = call(&app, path, Some(key), &raw, Some("application/json")).await;
        assert_eq!(r.status, status, "{name}: {}", r.text);
        let e = &r.body["error"];
        assert!(
            e["type"].is_string(),
            "{name}: OpenAI error shape: {}",
            r.text
        );
        if part.contains(' ') {
            let message = e["message"].as_str().unwrap_or_default();
            assert!(message.contains(part), "{name}: {}", r.text);
        } else {
            assert_eq!(
                e["param"], part,
                "{name}: the 400 names the parameter: {}",
                r.text
            );
        }
    }
    assert!(mock.received().is_empty(), "nothing forwarded to anthropic");
    assert!(
        openai_mock.received().is_empty(),
        "nothing forwarded to openai"
    );

    // A huge but representable value the provider may judge itself goes through sanely.
    let r = call(
        &app,
        "/anthropic/chat",
        Some(&anthropic),
        format!(r#"{{{msgs},"temperature":1e308,"max_tokens":18446744073709551615}}"#).as_bytes(),
        Some("application/json"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = mock.last().json();
    assert_eq!(sent["temperature"], 1e308);
    assert_eq!(sent["max_tokens"], u64::MAX);
    // The workers survived all of that.
    assert_eq!(
        chat(&app, "/openai/chat", &openai, hello()).await.status,
        200
    );
}

#[actix_web::test]
async fn anthropic_upstream_failures_become_specific_errors() {
    let mock = MockUpstream::start(Behaviour::json(200, anthropic_message())).await;
    let app = spawn_app().await;
    let key = configure(
        &app,
        &mock,
        "anthropic",
        "/v1/messages",
        json!({"anthropic_version": "2023-06-01"}),
        Some("claude-3-5-haiku"),
    )
    .await;
    let failed = "transformation failed from type anthropic://llm/v1/chat: ";
    let cases: Vec<(&str, Behaviour, u16, String, &str)> = vec![
        (
            "html error page",
            Behaviour::Reply(
                500,
                "text/html",
                b"<html><body>Overloaded</body></html>".to_vec(),
            ),
            500,
            "upstream answered HTTP 500".into(),
            "upstream_error",
        ),
        (
            "html 200",
            Behaviour::Reply(
                200,
                "text/html",
                b"<html><body>Hello</body></html>".to_vec(),
            ),
            502,
            format!("{failed}failed to decode llm/v1/chat response"),
            "upstream_error",
        ),
        (
            "empty 200",
            Behaviour::Reply(200, "application/json", Vec::new()),
            502,
            format!("{failed}empty response body"),
            "upstream_error",
        ),
        (
            "garbage 200",
            Behaviour::Reply(200, "application/json", b"\x00\x01garbage".to_vec()),
            502,
            format!("{failed}failed to decode llm/v1/chat response"),
            "upstream_error",
        ),
        (
            "JSON without content",
            Behaviour::json(200, json!({"id": "msg_01", "type": "message"})),
            502,
            format!("{failed}'content' not in anthropic://llm/v1/chat response"),
            "upstream_error",
        ),
        (
            "connection cut mid-body",
            Behaviour::CutMidBody,
            502,
            "upstream".into(),
            "",
        ),
        (
            "hang past the read timeout",
            Behaviour::Hang,
            504,
            "did not answer".into(),
            "",
        ),
    ];
    for (name, behaviour, status, message, kind) in cases {
        mock.set(behaviour);
        let r = chat(&app, "/anthropic/chat", &key, hello()).await;
        assert_eq!(r.status, status, "{name}: {}", r.text);
        let got = r.body["error"]["message"].as_str().unwrap_or_default();
        if message.starts_with(failed) || message.starts_with("upstream answered") {
            assert_eq!(got, message, "{name}");
        } else {
            assert!(got.contains(&message), "{name}: {got}");
        }
        assert!(r.body["error"]["type"].is_string(), "{name}: {}", r.text);
        if !kind.is_empty() {
            assert_eq!(r.body["error"]["type"], kind, "{name}");
        }
    }
}
