//! Calls to the proxy listener and the usual OpenAI setup behind them (tenant `acme`, a
//! credential, a service at a mock upstream, a route, a key).

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::mock_upstream::MockUpstream;

pub const UPSTREAM_SECRET: &str = "sk-upstream-secret-0042";

/// An OpenAI chat completion as OpenAI sends it.
pub fn openai_completion() -> Value {
    json!({
        "id": "chatcmpl-123", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    })
}

/// A raw HTTP reply from the proxy listener.
pub struct ProxyReply {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

pub async fn call(
    app: &TestApp,
    path: &str,
    key: Option<&str>,
    body: &[u8],
    content_type: Option<&str>,
) -> ProxyReply {
    let mut req = app.client.post(format!("{}{}", app.proxy, path));
    if let Some(k) = key {
        req = req.insert_header(("Authorization", format!("Bearer {k}")));
    }
    if let Some(ct) = content_type {
        req = req.insert_header(("Content-Type", ct));
    }
    let mut resp = req.send_body(body.to_vec()).await.expect("proxy request");
    let bytes = resp.body().limit(64 * 1024 * 1024).await.expect("body");
    ProxyReply {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes).to_string(),
    }
}

pub async fn chat(app: &TestApp, path: &str, key: &str, body: Value) -> ProxyReply {
    call(
        app,
        path,
        Some(key),
        &serde_json::to_vec(&body).unwrap(),
        Some("application/json"),
    )
    .await
}

/// Tenant `acme` and a header credential `credential` holding `Bearer UPSTREAM_SECRET`.
pub async fn acme_with_credential(app: &TestApp, credential: &str) {
    assert_eq!(
        app.post("/tenants", json!({"name": "acme"})).await.status,
        201
    );
    let r = app
        .post(
            "/credentials",
            json!({"name": credential, "header_name": "Authorization",
                   "header_value": format!("Bearer {UPSTREAM_SECRET}")}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Tenant `acme` with a key, a credential, an OpenAI service at the mock and route `chat`
/// (`/openai/chat`, alias `gpt-4o`). Returns the tenant key.
pub async fn configure_openai(app: &TestApp, mock: &MockUpstream, route_extra: Value) -> String {
    acme_with_credential(app, "openai-key").await;
    let r = app
        .post(
            "/services",
            json!({"name": "openai", "provider": "openai", "credential": "openai-key",
                                  "upstream_url": format!("{}/v1/chat/completions", mock.base),
                                  "timeouts": {"connect_ms": 1000, "read_ms": 2000}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut route = json!({"name": "chat", "paths": ["/openai/chat"], "model_alias": "gpt-4o",
                           "service": "openai", "route_type": "llm/v1/chat",
                           "model": {"name": "gpt-4o", "options": {"input_cost": 2.5, "output_cost": 10.0}}});
    tollgate::admin::merge_patch(&mut route, &route_extra);
    let r = app.post("/routes", route).await;
    assert_eq!(r.status, 201, "{}", r.text);
    new_key(app, "acme", json!({"name": "app"})).await
}

pub async fn new_key(app: &TestApp, tenant: &str, body: Value) -> String {
    let r = app.post(&format!("/tenants/{tenant}/keys"), body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["key"].as_str().unwrap().to_string()
}

/// Tenant `acme`, an OpenAI service and a route both called `name` (path `/<name>`) at
/// `upstream` with `timeouts`; the new key.
pub async fn service_at(app: &TestApp, name: &str, upstream: &str, timeouts: Value) -> String {
    acme_with_credential(app, "k").await;
    let r = app
        .post(
            "/services",
            json!({"name": name, "provider": "openai", "credential": "k",
                   "upstream_url": format!("{upstream}/v1/chat/completions"),
                   "timeouts": timeouts}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": name, "paths": [format!("/{name}")], "service": name,
                   "route_type": "llm/v1/chat", "model": {"name": "gpt-4o"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    new_key(app, "acme", json!({"name": "app"})).await
}
