//! Mainstream OpenAI clients nobody here wrote, unchanged, against the OpenAI-compatible
//! surface (docs/behaviour.md, "Proxy surfaces"; README, "Client compatibility"): the
//! official OpenAI Node SDK and LangChain's `ChatOpenAI`, each through chat, streaming with
//! usage and tools (LangChain also structured output), towards Anthropic-backed aliases
//! answered by mock providers speaking Anthropic's wire format (tests/it/sdk.rs builds
//! those answers; the official Python SDK runs there).
//!
//! Needs `TOLLGATE_NODE` (a Node.js binary) and `TOLLGATE_NODE_CLIENTS` (an npm prefix with
//! `openai` installed), and `TOLLGATE_LANGCHAIN_PYTHON` (a Python with `langchain-openai`).
//! `.ci/run` installs them, pinned, under target/ and sets the variables; without them the
//! (ignored) tests fail naming what is missing.

use std::process::Command;

use serde_json::{Value, json};

use crate::sdk::{
    anthropic_message, anthropic_stream, anthropic_tool_message, by_stream, run_client,
};
use crate::support::mock_upstream::MockUpstream;
use crate::support::proxy::new_key;
use crate::support::{TestApp, required_env, spawn_app};

/// Anthropic's answer to a structured-output request, which the gateway sends as a forced
/// `tollgate_json_answer` tool (docs/behaviour.md): the tool's input is the answer.
fn anthropic_json_message() -> Value {
    let mut message = anthropic_message();
    message["id"] = json!("msg_01StructuredWeatherParis");
    message["content"] = json!([{"type": "tool_use", "id": "toolu_01JsonWeather",
                                 "name": "tollgate_json_answer",
                                 "input": {"city": "Paris", "temperature_c": 21.5}}]);
    message["stop_reason"] = json!("tool_use");
    message["usage"] = json!({"input_tokens": 120, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "output_tokens": 14});
    message
}

/// The three mocks: plain text, a two-tool call, a JSON answer.
struct Mocks {
    text: MockUpstream,
    tools: MockUpstream,
    json: MockUpstream,
}

impl Mocks {
    async fn start() -> Mocks {
        Mocks {
            text: MockUpstream::start(by_stream(anthropic_message(), anthropic_stream)).await,
            tools: MockUpstream::start(by_stream(anthropic_tool_message(), anthropic_stream)).await,
            json: MockUpstream::start(by_stream(anthropic_json_message(), anthropic_stream)).await,
        }
    }
}

/// Tenant `acme` and one Anthropic service and route per mock: aliases `claude` (text),
/// `claude-tools` and `claude-json`. Returns the tenant key.
async fn configure(app: &TestApp, mocks: &Mocks) -> String {
    let r = app.post("/tenants", json!({"name": "acme"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/credentials",
            json!({"name": "anthropic-key", "header_name": "x-api-key",
                   "header_value": "sk-ant-upstream-0014"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for (alias, mock) in [
        ("claude", &mocks.text),
        ("claude-tools", &mocks.tools),
        ("claude-json", &mocks.json),
    ] {
        let r = app
            .post(
                "/services",
                json!({"name": alias, "provider": "anthropic", "credential": "anthropic-key",
                       "upstream_url": format!("{}/v1/messages", mock.base),
                       "options": {"anthropic_version": "2023-06-01"},
                       "timeouts": {"connect_ms": 1000, "read_ms": 5000}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let r = app
            .post(
                "/routes",
                json!({"name": alias, "model_alias": alias, "service": alias,
                       "route_type": "llm/v1/chat",
                       "model": {"name": "claude-3-5-sonnet-latest"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    new_key(app, "acme", json!({"name": "clients"})).await
}

/// The mocks, the app configured for them, and the tenant key.
async fn start() -> (Mocks, TestApp, String) {
    let mocks = Mocks::start().await;
    let app = spawn_app().await;
    let key = configure(&app, &mocks).await;
    (mocks, app, key)
}

const TEXT_USAGE: (u64, u64) = (31, 11);
const TOOLS_USAGE: (u64, u64) = (402, 97);

fn openai_usage((prompt, completion): (u64, u64)) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion})
}

/// The two calls of the tool mock, as the clients must see them.
fn expected_tool_calls() -> [(&'static str, &'static str, Value); 2] {
    [
        (
            "toolu_01A09q90qw90lq917835lq9",
            "get_weather",
            json!({"city": "Paris"}),
        ),
        (
            "toolu_01B7ZxK3vR2mF8hQ4nW6pT1c",
            "get_time",
            json!({"timezone": "Europe/Paris"}),
        ),
    ]
}

/// `calls` (id, name, arguments as a JSON string) are the tool mock's two calls.
fn assert_openai_tool_calls(calls: &Value, view: &str, summary: &Value) {
    let calls = calls
        .as_array()
        .unwrap_or_else(|| panic!("{view}: {summary}"));
    assert_eq!(calls.len(), 2, "{view}: {summary}");
    for (call, (id, name, args)) in calls.iter().zip(expected_tool_calls()) {
        assert_eq!(call["id"], id, "{view}: {summary}");
        assert_eq!(call["type"], "function", "{view}: {summary}");
        assert_eq!(call["name"], name, "{view}: {summary}");
        let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{view}: arguments are not JSON ({e}): {summary}"));
        assert_eq!(arguments, args, "{view}: {summary}");
    }
}

#[actix_web::test]
#[ignore = "needs node and the openai npm package (TOLLGATE_NODE, TOLLGATE_NODE_CLIENTS; .ci/run sets them)"]
async fn the_official_openai_node_sdk_chats_streams_and_calls_tools() {
    let node = required_env(
        "TOLLGATE_NODE",
        "a Node.js binary (>= 22, as openai 7 requires)",
    );
    let clients = required_env(
        "TOLLGATE_NODE_CLIENTS",
        "an npm prefix with the openai package installed (node_modules/openai)",
    );
    let (mocks, app, key) = start().await;

    let mut command = Command::new(&node);
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/node_client.mjs"
        ))
        .arg(&clients)
        .arg(format!("{}/v1", app.proxy))
        .arg(&key)
        .args(["claude", "claude-tools"]);
    let summary = run_client(command, "the Node SDK script").await;
    println!(
        "openai (Node) {} on {}: {summary}",
        summary["openai_version"], summary["node_version"]
    );

    // Chat, whole.
    let chat = &summary["chat"];
    assert_eq!(chat["object"], "chat.completion", "{summary}");
    assert_eq!(chat["role"], "assistant", "{summary}");
    assert_eq!(chat["content"], "2 + 2 = 4.", "{summary}");
    assert_eq!(chat["finish_reason"], "stop", "{summary}");
    assert_eq!(chat["model"], "claude-3-5-sonnet-20241022", "{summary}");
    assert_eq!(chat["usage"], openai_usage(TEXT_USAGE), "{summary}");
    assert!(
        chat["request_id_header"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{summary}"
    );

    // Chat, streamed with usage: the same text in several deltas, one usage chunk.
    let stream = &summary["stream"];
    assert_eq!(stream["content"], chat["content"], "{summary}");
    assert!(
        stream["pieces"].as_u64().is_some_and(|n| n > 1),
        "{summary}"
    );
    assert_eq!(stream["roles"], json!(["assistant"]), "{summary}");
    assert_eq!(stream["finish_reasons"], json!(["stop"]), "{summary}");
    assert_eq!(
        stream["usage_chunks"],
        json!([{"usage": openai_usage(TEXT_USAGE), "choices": 0}]),
        "{summary}"
    );
    assert_eq!(
        stream["objects"],
        json!(["chat.completion.chunk"]),
        "{summary}"
    );
    assert_eq!(stream["ids"].as_array().map(Vec::len), Some(1), "{summary}");

    // Models and errors, as the SDK's exception classes.
    assert_eq!(
        summary["models"],
        json!(["claude", "claude-json", "claude-tools"]),
        "{summary}"
    );
    let unknown = &summary["unknown_model"];
    assert_eq!(unknown["exception"], "NotFoundError", "{summary}");
    assert_eq!(unknown["status"], 404, "{summary}");
    assert_eq!(unknown["code"], "model_not_found", "{summary}");
    let bad_key = &summary["bad_key"];
    assert_eq!(bad_key["exception"], "AuthenticationError", "{summary}");
    assert_eq!(bad_key["status"], 401, "{summary}");
    assert_eq!(bad_key["type"], "authentication_error", "{summary}");

    // Tools: whole, streamed by hand (arguments in several fragments), and through the
    // SDK's stream helper.
    let usage = openai_usage(TOOLS_USAGE);
    for view in ["tools_whole", "tools_helper"] {
        let answer = &summary[view];
        assert_openai_tool_calls(&answer["tool_calls"], view, &summary);
        assert_eq!(answer["content"], "I'll look both up.", "{view}: {summary}");
        assert_eq!(answer["finish_reason"], "tool_calls", "{view}: {summary}");
        assert_eq!(answer["usage"], usage, "{view}: {summary}");
    }
    let streamed = &summary["tools_stream"];
    assert_openai_tool_calls(&streamed["tool_calls"], "tools_stream", &summary);
    for call in streamed["tool_calls"].as_array().into_iter().flatten() {
        assert!(
            call["fragments"].as_u64().is_some_and(|n| n > 1),
            "{summary}"
        );
    }
    assert_eq!(
        streamed["finish_reasons"],
        json!(["tool_calls"]),
        "{summary}"
    );
    assert_eq!(
        streamed["usage_chunks"],
        json!([{"usage": usage, "choices": 0}]),
        "{summary}"
    );

    // Upstream: the text mock saw the whole request then the streamed one; the tool mock
    // the tools, translated, three times (whole, streamed, helper).
    let text = mocks.text.received();
    assert_eq!(text.len(), 2, "{text:?}");
    assert_ne!(text[0].json()["stream"], true);
    assert_eq!(text[1].json()["stream"], true);
    let tools = mocks.tools.received();
    assert_eq!(tools.len(), 3, "{tools:?}");
    for sent in &tools {
        let body = sent.json();
        let names: Vec<&str> = body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["get_weather", "get_time"], "{body}");
    }
    assert!(mocks.json.received().is_empty());
}

#[actix_web::test]
#[ignore = "needs TOLLGATE_LANGCHAIN_PYTHON (a Python with langchain-openai; .ci/run sets it)"]
async fn langchain_chat_openai_invokes_streams_calls_tools_and_structures_output() {
    let python = required_env(
        "TOLLGATE_LANGCHAIN_PYTHON",
        "a Python interpreter with the langchain-openai package installed",
    );
    let (mocks, app, key) = start().await;

    let mut command = Command::new(&python);
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/langchain_client.py"
        ))
        .arg(format!("{}/v1", app.proxy))
        .arg(&key)
        .args(["claude", "claude-tools", "claude-json"])
        .env("PYTHONUNBUFFERED", "1")
        // LangChain must not try to reach LangSmith.
        .env("LANGSMITH_TRACING", "false")
        .env("LANGCHAIN_TRACING_V2", "false");
    let summary = run_client(command, "the LangChain script").await;
    println!(
        "langchain-openai {} (langchain-core {}, openai {}): {summary}",
        summary["langchain_openai_version"],
        summary["langchain_core_version"],
        summary["openai_version"]
    );
    let lc_usage = |(input, output): (u64, u64)| json!({"input_tokens": input, "output_tokens": output, "total_tokens": input + output});

    let invoke = &summary["invoke"];
    assert_eq!(invoke["content"], "2 + 2 = 4.", "{summary}");
    assert_eq!(invoke["usage"], lc_usage(TEXT_USAGE), "{summary}");
    assert_eq!(invoke["finish_reason"], "stop", "{summary}");
    assert_eq!(
        invoke["model_name"], "claude-3-5-sonnet-20241022",
        "{summary}"
    );

    // stream_usage=True: the chunks add up to the same text and usage.
    let stream = &summary["stream"];
    assert_eq!(stream["content"], "2 + 2 = 4.", "{summary}");
    assert!(
        stream["pieces"].as_u64().is_some_and(|n| n > 1),
        "{summary}"
    );
    assert_eq!(stream["usage"], lc_usage(TEXT_USAGE), "{summary}");
    assert_eq!(stream["finish_reason"], "stop", "{summary}");

    // bind_tools: LangChain parses both calls' arguments.
    let tools = &summary["tools"];
    let calls = tools["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 2, "{summary}");
    for (call, (id, name, args)) in calls.iter().zip(expected_tool_calls()) {
        assert_eq!(call["id"], id, "{summary}");
        assert_eq!(call["name"], name, "{summary}");
        assert_eq!(call["args"], args, "{summary}");
    }
    assert_eq!(tools["invalid_tool_calls"], 0, "{summary}");
    assert_eq!(tools["finish_reason"], "tool_calls", "{summary}");
    assert_eq!(tools["usage"], lc_usage(TOOLS_USAGE), "{summary}");

    // with_structured_output: the JSON answer parsed into the pydantic model.
    let structured = &summary["structured"];
    assert_eq!(
        structured["parsed"],
        json!({"city": "Paris", "temperature_c": 21.5}),
        "{summary}"
    );
    assert_eq!(structured["parsing_error"], Value::Null, "{summary}");
    assert_eq!(structured["usage"], lc_usage((120, 14)), "{summary}");

    // Upstream: stream flags as asked, the tools translated, the schema as Anthropic's
    // structured output.
    let text = mocks.text.received();
    assert_eq!(text.len(), 2, "{text:?}");
    assert_ne!(text[0].json()["stream"], true);
    assert_eq!(text[1].json()["stream"], true);
    let sent = mocks.tools.received();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let body = sent[0].json();
    let names: Vec<&str> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["get_weather", "get_time"], "{body}");
    let sent = mocks.json.received();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let body = sent[0].json();
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "tollgate_json_answer"}),
        "{body}"
    );
    let schema = &body["tools"][0]["input_schema"];
    assert_eq!(
        schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["city".to_string(), "temperature_c".to_string()]),
        "{body}"
    );
}
