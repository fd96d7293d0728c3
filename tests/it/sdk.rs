//! The official OpenAI Python SDK against the OpenAI-compatible surface (spec §4.1: "the
//! official OpenAI SDKs work against `base_url = http://gateway:8080/v1` unchanged"), for an
//! Anthropic-backed and a Cohere-backed alias, each answered by a mock provider speaking its
//! real wire format.
//!
//! Needs `TOLLGATE_SDK_PYTHON`: a Python interpreter with `openai` installed. `.ci/run`
//! creates that virtualenv and sets the variable; without it the test says so and passes.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mock_upstream::{Behaviour, MockUpstream};
use crate::proxy::new_key;
use crate::support::{TestApp, spawn_app};

const ANTHROPIC_SECRET: &str = "sk-ant-upstream-0007";
const COHERE_SECRET: &str = "co-upstream-0008";
/// How long one run of the script may take (it makes four calls, none retried).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// A text-only Messages API answer, as Anthropic sends it (providers.md §3.3).
fn anthropic_message() -> Value {
    json!({
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20241022",
        "content": [{"type": "text", "text": "2 + 2 = 4."}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {
            "input_tokens": 31,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 11,
            "service_tier": "standard"
        }
    })
}

/// A v1 `/chat` answer, as Cohere sends it (providers.md §4.3): no model echo, usage in
/// `meta.tokens` (what the gateway reports) next to `meta.billed_units`.
fn cohere_chat() -> Value {
    json!({
        "response_id": "4c1b9a57-2bd5-4f53-8e5e-0d6a8f4e2a11",
        "text": "Four. 2 + 2 = 4.",
        "generation_id": "a8e6f0c2-7d4b-4c61-9b0e-3f5d2c1e8a90",
        "chat_history": [
            {"role": "SYSTEM", "message": "You are a terse assistant."},
            {"role": "USER", "message": "What is 1 + 1?"},
            {"role": "CHATBOT", "message": "2."},
            {"role": "USER", "message": "And 2 + 2?"},
            {"role": "CHATBOT", "message": "Four. 2 + 2 = 4."}
        ],
        "finish_reason": "COMPLETE",
        "meta": {
            "api_version": {"version": "1"},
            "billed_units": {"input_tokens": 19, "output_tokens": 9},
            "tokens": {"input_tokens": 83, "output_tokens": 9}
        }
    })
}

/// Kills the child on every path out (a failed assertion included).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the SDK script for `alias` and returns its JSON summary. Waits without blocking
/// the test's runtime (the app and the mocks answer the script meanwhile).
async fn run_script(python: &str, app: &TestApp, key: &str, alias: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_sdk_check.py");
    let child = Command::new(python)
        .arg(script)
        .arg(format!("{}/v1", app.proxy))
        .arg(key)
        .arg(alias)
        .env("PYTHONUNBUFFERED", "1")
        // The SDK must talk to the gateway, not to a proxy from the environment.
        .env("NO_PROXY", "*")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start TOLLGATE_SDK_PYTHON={python}: {e}"));
    let mut child = ChildGuard(child);
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = pipe.read_to_string(&mut out);
            out
        })
    };
    let stdout = drain(Box::new(child.0.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.0.stderr.take().unwrap()));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the SDK script") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "the SDK script for {alias} took longer than {SCRIPT_TIMEOUT:?}; stderr:\n{err}"
            );
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    assert!(
        status.success(),
        "the SDK script for {alias} failed ({status}):\nstdout: {out}\nstderr: {err}"
    );
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("SDK script output for {alias} is not JSON ({e}): {out}"))
}

/// Tenant `acme`, an Anthropic service and route (alias `claude`) and a Cohere service and
/// route (alias `command-r`), each at its mock; returns the tenant key.
async fn configure(app: &TestApp, anthropic: &MockUpstream, cohere: &MockUpstream) -> String {
    let objects = [
        ("/tenants", json!({"name": "acme"})),
        (
            "/credentials",
            json!({"name": "anthropic-key", "header_name": "x-api-key",
                   "header_value": ANTHROPIC_SECRET}),
        ),
        (
            "/credentials",
            json!({"name": "cohere-key", "header_name": "Authorization",
                   "header_value": format!("Bearer {COHERE_SECRET}")}),
        ),
        (
            "/services",
            json!({"name": "anthropic", "provider": "anthropic", "credential": "anthropic-key",
                   "upstream_url": format!("{}/v1/messages", anthropic.base),
                   "options": {"anthropic_version": "2023-06-01"},
                   "timeouts": {"connect_ms": 1000, "read_ms": 5000}}),
        ),
        (
            "/services",
            json!({"name": "cohere", "provider": "cohere", "credential": "cohere-key",
                   "upstream_url": format!("{}/v1/chat", cohere.base),
                   "timeouts": {"connect_ms": 1000, "read_ms": 5000}}),
        ),
        (
            "/routes",
            json!({"name": "claude-chat", "model_alias": "claude", "service": "anthropic",
                   "route_type": "llm/v1/chat",
                   "model": {"name": "claude-3-5-sonnet-latest"}}),
        ),
        (
            "/routes",
            json!({"name": "cohere-chat", "model_alias": "command-r", "service": "cohere",
                   "route_type": "llm/v1/chat", "model": {"name": "command-r"}}),
        ),
    ];
    for (path, body) in objects {
        let r = app.post(path, body).await;
        assert_eq!(r.status, 201, "POST {path}: {}", r.text);
    }
    new_key(app, "acme", json!({"name": "sdk"})).await
}

/// What every run must show besides the chat answer.
fn assert_common(summary: &Value, alias: &str) {
    let chat = &summary["chat"];
    assert_eq!(chat["object"], "chat.completion", "{alias}: {summary}");
    assert_eq!(chat["role"], "assistant", "{alias}: {summary}");
    assert_eq!(chat["finish_reason"], "stop", "{alias}: {summary}");
    assert!(
        chat["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{alias}: no id: {summary}"
    );
    assert!(chat["created"].as_i64().is_some_and(|t| t > 0), "{alias}");
    assert!(
        chat["request_id_header"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{alias}: x-tollgate-request-id: {summary}"
    );

    let mut models: Vec<&str> = summary["models"]
        .as_array()
        .unwrap_or_else(|| panic!("{alias}: models: {summary}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    models.sort_unstable();
    assert_eq!(models, ["claude", "command-r"], "{alias}: {summary}");

    let unknown = &summary["unknown_model"];
    assert_eq!(unknown["exception"], "NotFoundError", "{alias}: {summary}");
    assert_eq!(unknown["status_code"], 404, "{alias}: {summary}");
    assert_eq!(unknown["code"], "model_not_found", "{alias}: {summary}");

    let bad_key = &summary["bad_key"];
    assert_eq!(
        bad_key["exception"], "AuthenticationError",
        "{alias}: {summary}"
    );
    assert_eq!(bad_key["status_code"], 401, "{alias}: {summary}");
    assert_eq!(
        bad_key["type"], "authentication_error",
        "{alias}: {summary}"
    );
}

fn assert_key_not_forwarded(sent: &crate::mock_upstream::Received, key: &str) {
    assert!(
        sent.headers.iter().all(|(_, v)| !v.contains(key))
            && !String::from_utf8_lossy(&sent.body).contains(key),
        "the gateway key must not go upstream"
    );
}

#[actix_web::test]
async fn the_official_openai_python_sdk_works_against_anthropic_and_cohere_aliases() {
    let Some(python) = std::env::var("TOLLGATE_SDK_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        println!("skipped: TOLLGATE_SDK_PYTHON is unset (.ci/run sets it)");
        return;
    };
    let anthropic = MockUpstream::start(Behaviour::json(200, anthropic_message())).await;
    let cohere = MockUpstream::start(Behaviour::json(200, cohere_chat())).await;
    let app = spawn_app().await;
    let key = configure(&app, &anthropic, &cohere).await;

    // Anthropic.
    let summary = run_script(&python, &app, &key, "claude").await;
    println!(
        "openai {} against alias claude: {}",
        summary["openai_version"], summary["chat"]
    );
    assert_common(&summary, "claude");
    let chat = &summary["chat"];
    assert_eq!(chat["content"], "2 + 2 = 4.", "{summary}");
    assert_eq!(chat["model"], "claude-3-5-sonnet-20241022", "{summary}");
    assert_eq!(
        chat["usage"],
        json!({"prompt_tokens": 31, "completion_tokens": 11, "total_tokens": 42}),
        "{summary}"
    );
    let received = anthropic.received();
    assert_eq!(
        received.len(),
        1,
        "only the chat call reaches the provider: {received:?}"
    );
    let sent = &received[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_SECRET));
    assert_key_not_forwarded(sent, &key);
    let body = sent.json();
    assert_eq!(body["model"], "claude-3-5-sonnet-latest", "{body}");
    assert_eq!(body["system"], "You are a terse assistant.", "{body}");
    assert_eq!(body["max_tokens"], 64, "{body}");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "What is 1 + 1?"},
            {"role": "assistant", "content": "2."},
            {"role": "user", "content": "And 2 + 2?"}
        ]),
        "{body}"
    );

    // Cohere.
    let summary = run_script(&python, &app, &key, "command-r").await;
    println!(
        "openai {} against alias command-r: {}",
        summary["openai_version"], summary["chat"]
    );
    assert_common(&summary, "command-r");
    let chat = &summary["chat"];
    assert_eq!(chat["content"], "Four. 2 + 2 = 4.", "{summary}");
    assert_eq!(chat["model"], "command-r", "{summary}");
    assert_eq!(
        chat["usage"],
        json!({"prompt_tokens": 83, "completion_tokens": 9, "total_tokens": 92}),
        "{summary}"
    );
    let received = cohere.received();
    assert_eq!(
        received.len(),
        1,
        "only the chat call reaches the provider: {received:?}"
    );
    let sent = &received[0];
    assert_eq!(sent.path, "/v1/chat");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {COHERE_SECRET}").as_str())
    );
    assert_key_not_forwarded(sent, &key);
    let body = sent.json();
    assert_eq!(body["model"], "command-r", "{body}");
    assert_eq!(body["message"], "And 2 + 2?", "{body}");
    assert_eq!(
        body["chat_history"],
        json!([
            {"role": "USER", "message": "What is 1 + 1?"},
            {"role": "CHATBOT", "message": "2."}
        ]),
        "{body}"
    );
    assert_eq!(body["preamble"], "You are a terse assistant.", "{body}");
    assert_eq!(body["max_tokens"], 64, "{body}");
    assert!(body.get("messages").is_none(), "{body}");
}
