//! The official OpenAI Python SDK against the OpenAI-compatible surface (docs/behaviour.md,
//! "Proxy surfaces": the official OpenAI SDKs work against
//! `base_url = http://gateway:8080/v1` unchanged), for an Anthropic-backed and a
//! Cohere-backed alias,
//! each answered by a mock provider speaking its real wire format: the JSON answer when the
//! request is not streamed, the provider's own stream format (Anthropic named-event SSE,
//! Cohere v1 NDJSON) carrying the same text and usage when it is, its bytes re-cut across
//! network writes so the gateway must reassemble frames. The script checks what the SDK
//! sees with `stream=True` against the whole answer, and streams a two-tool call through
//! the Anthropic alias; `chat.completions.parse` with a pydantic model gets its structured
//! output from the Anthropic alias (JSON mode's forced tool); `embeddings.create` works in
//! the SDK's default (base64, decoded by the SDK), `float` and `base64` encodings through a
//! Cohere and an OpenAI embeddings alias.
//!
//! Needs `TOLLGATE_SDK_PYTHON`: a Python interpreter with `openai` installed. `.ci/run`
//! creates that virtualenv and sets the variable; the tests are `#[ignore]`d so a plain
//! `cargo test` lists them as ignored, and run without the variable they fail.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::mock_upstream::{Behaviour, MockUpstream, Tail};
use crate::support::proxy::new_key;
use crate::support::script::run_to_end;
use crate::support::streaming::sse;
use crate::support::{TestApp, required_env, spawn_app};

const ANTHROPIC_SECRET: &str = "sk-ant-upstream-0007";
const COHERE_SECRET: &str = "co-upstream-0008";
/// How long one run of the script may take (it makes six calls, none retried).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause between two network writes of a mocked stream.
const GAP_MS: u64 = 2;
/// The sizes (cycled) into which a mocked stream's bytes are re-cut: single bytes, pieces
/// that split a frame, and pieces that carry several frames at once.
const CUTS: [usize; 6] = [1, 5, 40, 3, 200, 17];

/// A text-only Messages API answer, as Anthropic sends it (docs/wire-formats.md, "Anthropic").
pub(crate) fn anthropic_message() -> Value {
    json!({
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20241022",
        "content": [{"type": "text", "text": "2 + 2 = 4."}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        // prompt_tokens = 21 + 4 + 6 = 31: cache reads and writes count as prompt tokens.
        "usage": {
            "input_tokens": 21,
            "cache_creation_input_tokens": 4,
            "cache_read_input_tokens": 6,
            "output_tokens": 11,
            "service_tier": "standard"
        }
    })
}

/// A v1 `/chat` answer, as Cohere sends it (docs/wire-formats.md, "Cohere"): no model echo, usage
/// in `meta.tokens` (what the gateway reports) next to `meta.billed_units`.
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

/// A two-tool answer: a text block, then `get_weather` and `get_time` (docs/wire-formats.md,
/// "Anthropic").
pub(crate) fn anthropic_tool_message() -> Value {
    json!({
        "id": "msg_01Aq9w938a90dw8qRtw6ZpQb",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20241022",
        "content": [
            {"type": "text", "text": "I'll look both up."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9",
             "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_01B7ZxK3vR2mF8hQ4nW6pT1c",
             "name": "get_time", "input": {"timezone": "Europe/Paris"}}
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {
            "input_tokens": 402,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 97,
            "service_tier": "standard"
        }
    })
}

/// `text` in pieces of `size` characters.
fn pieces(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Re-cuts a stream's bytes into pieces of the `CUTS` sizes in turn, so that frames
/// straddle network writes and some writes carry several frames.
fn recut(frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let bytes = frames.concat();
    let mut out = Vec::new();
    let mut at = 0;
    for size in CUTS.iter().cycle() {
        if at >= bytes.len() {
            break;
        }
        let end = (at + size).min(bytes.len());
        out.push(bytes[at..end].to_vec());
        at = end;
    }
    out
}

/// Anthropic's named-event stream (docs/wire-formats.md, "Anthropic") of the Messages answer
/// `message`: the same blocks, text in short `text_delta`s, tool input as `input_json_delta`
/// fragments cut at awkward places, and the same usage (input and cache counts in `message_start`,
/// the final `output_tokens` in `message_delta`).
pub(crate) fn anthropic_stream(message: &Value) -> Behaviour {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n").into_bytes();
    let usage = &message["usage"];
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["stop_sequence"] = Value::Null;
    start["usage"] = json!({
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
        "output_tokens": 1
    });
    let mut frames = vec![event(
        "message_start",
        json!({"type": "message_start", "message": start}),
    )];
    let blocks = message["content"].as_array().expect("content blocks");
    for (index, block) in blocks.iter().enumerate() {
        let (opening, deltas) = match block["type"].as_str() {
            Some("text") => (
                json!({"type": "text", "text": ""}),
                pieces(block["text"].as_str().expect("text"), 3)
                    .into_iter()
                    .map(|t| json!({"type": "text_delta", "text": t}))
                    .collect::<Vec<_>>(),
            ),
            Some("tool_use") => {
                let input = block["input"].to_string();
                // Anthropic opens with an empty fragment; then 4 characters at a time:
                // `{"ci`, `ty":`, `"Par`, `is"}` — keys, strings and escapes cut in two.
                let fragments = std::iter::once(String::new()).chain(pieces(&input, 4));
                (
                    json!({"type": "tool_use", "id": block["id"], "name": block["name"],
                           "input": {}}),
                    fragments
                        .map(|f| json!({"type": "input_json_delta", "partial_json": f}))
                        .collect(),
                )
            }
            other => panic!("no stream for block type {other:?}"),
        };
        frames.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": opening}),
        ));
        if index == 0 {
            frames.push(event("ping", json!({"type": "ping"})));
        }
        for delta in deltas {
            frames.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        frames.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    frames.push(event(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": message["stop_reason"], "stop_sequence": null},
               "usage": {"output_tokens": usage["output_tokens"]}}),
    ));
    frames.push(event("message_stop", json!({"type": "message_stop"})));
    sse(recut(frames), GAP_MS, Tail::End)
}

/// Cohere's v1 NDJSON stream (docs/wire-formats.md, "Cohere") of the `/chat` answer `chat`:
/// `stream-start`, the text in several `text-generation` pieces, and `stream-end` whose
/// `response` is the whole answer (so `response.meta` has the same tokens and billed units).
fn cohere_stream(chat: &Value) -> Behaviour {
    let line = |v: Value| format!("{v}\n").into_bytes();
    let mut frames = vec![line(json!({
        "is_finished": false,
        "event_type": "stream-start",
        "generation_id": chat["generation_id"]
    }))];
    for piece in pieces(chat["text"].as_str().expect("text"), 4) {
        frames.push(line(json!({
            "is_finished": false,
            "event_type": "text-generation",
            "text": piece
        })));
    }
    frames.push(line(json!({
        "is_finished": true,
        "event_type": "stream-end",
        "finish_reason": chat["finish_reason"],
        "response": chat
    })));
    Behaviour::Stream {
        content_type: "application/stream+json",
        frames: recut(frames),
        gap: Duration::from_millis(GAP_MS),
        tail: Tail::End,
    }
}

/// The JSON `answer` when the request is not streamed, `stream` when it is.
pub(crate) fn by_stream(answer: Value, stream: fn(&Value) -> Behaviour) -> Behaviour {
    Behaviour::ByStream {
        streamed: Box::new(stream(&answer)),
        whole: Box::new(Behaviour::json(200, answer)),
    }
}

/// Runs the SDK script for `alias` (with `mode`, if any) and returns its JSON summary.
async fn run_script(
    python: &str,
    app: &TestApp,
    key: &str,
    alias: &str,
    mode: Option<&str>,
) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_sdk_check.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(format!("{}/v1", app.proxy))
        .arg(key)
        .arg(alias)
        .args(mode)
        .env("PYTHONUNBUFFERED", "1");
    let what = format!("the SDK script for {alias} (TOLLGATE_SDK_PYTHON={python})");
    run_client(command, &what).await
}

/// Runs a client program (`what`, for messages) to completion within [`SCRIPT_TIMEOUT`]
/// and returns the JSON summary it printed on stdout.
pub(crate) async fn run_client(mut command: Command, what: &str) -> Value {
    command
        // The client must talk to the gateway, not to a proxy from the environment.
        .env("NO_PROXY", "*")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY");
    let out = run_to_end(command, what, SCRIPT_TIMEOUT).await;
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("the output of {what} is not JSON ({e}): {out}"))
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

/// The streamed answers (`stream=True`, with and without `include_usage`) must carry what
/// the whole answer did: the same text, the same usage, finish reason `stop`.
fn assert_streams_match_the_whole_answer(summary: &Value, alias: &str) {
    let chat = &summary["chat"];
    let streamed = &summary["stream"];
    println!("{alias} streamed: {streamed}");
    assert_eq!(streamed["content"], chat["content"], "{alias}: {summary}");
    assert!(
        streamed["pieces"].as_u64().is_some_and(|n| n > 1),
        "{alias}: the text should arrive in several deltas: {streamed}"
    );
    assert_eq!(
        streamed["roles"],
        json!(["assistant"]),
        "{alias}: {streamed}"
    );
    assert_eq!(
        streamed["finish_reasons"],
        json!(["stop"]),
        "{alias}: {streamed}"
    );
    assert_eq!(streamed["tool_calls"], json!([]), "{alias}: {streamed}");
    // Exactly one usage chunk, the one with `choices: []`, equal to the whole answer's.
    assert_eq!(
        streamed["usage_chunks"],
        json!([{"usage": chat["usage"], "choices": 0}]),
        "{alias}: {streamed}"
    );
    assert_eq!(streamed["usage"], chat["usage"], "{alias}: {summary}");
    // One id for every chunk; every chunk a chat.completion.chunk of the answer's model.
    let ids = streamed["ids"].as_array().expect("ids");
    assert!(
        ids.len() == 1 && ids[0].as_str().is_some_and(|id| !id.is_empty()),
        "{alias}: chunk ids: {streamed}"
    );
    assert_eq!(
        streamed["objects"],
        json!(["chat.completion.chunk"]),
        "{alias}: {streamed}"
    );
    // One model for every chunk. (Not compared with the whole answer's: chunks name the
    // model the route called, the whole answer the one the provider says it used.)
    let models = streamed["models"].as_array().expect("models");
    assert!(
        models.len() == 1 && models[0].as_str().is_some_and(|m| !m.is_empty()),
        "{alias}: chunk models: {streamed}"
    );

    // Without include_usage: the same answer, no chunk with usage.
    let plain = &summary["stream_without_usage"];
    assert_eq!(plain["content"], chat["content"], "{alias}: {plain}");
    assert_eq!(plain["finish_reasons"], json!(["stop"]), "{alias}: {plain}");
    assert_eq!(plain["usage_chunks"], json!([]), "{alias}: {plain}");
}

/// The three chat calls reached the provider: whole, then streamed twice, the streamed
/// requests identical to the whole one but for `stream: true`.
fn assert_streamed_requests(received: &[crate::support::mock_upstream::Received], alias: &str) {
    assert_eq!(
        received.len(),
        3,
        "{alias}: only the three chat calls reach the provider: {received:?}"
    );
    let whole = received[0].json();
    assert_ne!(whole["stream"], true, "{alias}: {whole}");
    for sent in &received[1..] {
        let mut body = sent.json();
        assert_eq!(body["stream"], true, "{alias}: {body}");
        body.as_object_mut().expect("object").remove("stream");
        let mut expected = whole.clone();
        expected.as_object_mut().expect("object").remove("stream");
        assert_eq!(body, expected, "{alias}: streamed vs whole request");
    }
}

fn assert_key_not_forwarded(sent: &crate::support::mock_upstream::Received, key: &str) {
    assert!(
        sent.headers.iter().all(|(_, v)| !v.contains(key))
            && !String::from_utf8_lossy(&sent.body).contains(key),
        "the gateway key must not go upstream"
    );
}

#[actix_web::test]
#[ignore = "needs TOLLGATE_SDK_PYTHON (a Python with the openai package; .ci/run sets it)"]
async fn the_official_openai_python_sdk_works_against_anthropic_and_cohere_aliases() {
    let python = required_env(
        "TOLLGATE_SDK_PYTHON",
        "a Python interpreter with the openai package installed",
    );
    let anthropic = MockUpstream::start(by_stream(anthropic_message(), anthropic_stream)).await;
    let cohere = MockUpstream::start(by_stream(cohere_chat(), cohere_stream)).await;
    let app = spawn_app().await;
    let key = configure(&app, &anthropic, &cohere).await;

    // Anthropic.
    let summary = run_script(&python, &app, &key, "claude", None).await;
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
    assert_streams_match_the_whole_answer(&summary, "claude");
    let received = anthropic.received();
    assert_streamed_requests(&received, "claude");
    for sent in &received {
        assert_key_not_forwarded(sent, &key);
    }
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
    let summary = run_script(&python, &app, &key, "command-r", None).await;
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
    assert_streams_match_the_whole_answer(&summary, "command-r");
    let received = cohere.received();
    assert_streamed_requests(&received, "command-r");
    for sent in &received {
        assert_key_not_forwarded(sent, &key);
    }
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

#[actix_web::test]
#[ignore = "needs TOLLGATE_SDK_PYTHON (a Python with the openai package; .ci/run sets it)"]
async fn the_official_openai_python_sdk_streams_a_two_tool_call_through_the_anthropic_alias() {
    let python = required_env(
        "TOLLGATE_SDK_PYTHON",
        "a Python interpreter with the openai package installed",
    );
    let anthropic =
        MockUpstream::start(by_stream(anthropic_tool_message(), anthropic_stream)).await;
    let cohere = MockUpstream::start(by_stream(cohere_chat(), cohere_stream)).await;
    let app = spawn_app().await;
    let key = configure(&app, &anthropic, &cohere).await;

    let summary = run_script(&python, &app, &key, "claude", Some("tools")).await;
    println!("openai {} tool call: {summary}", summary["openai_version"]);
    let expected_calls = [
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
    ];
    let usage = json!({"prompt_tokens": 402, "completion_tokens": 97, "total_tokens": 499});

    // Accumulated by hand from the chunks, by `index`.
    let streamed = &summary["stream"];
    let calls = streamed["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 2, "{streamed}");
    for (i, (call, (id, name, args))) in calls.iter().zip(&expected_calls).enumerate() {
        assert_eq!(call["index"], i, "{streamed}");
        assert_eq!(call["id"], *id, "{streamed}");
        assert_eq!(call["type"], "function", "{streamed}");
        assert_eq!(call["name"], *name, "{streamed}");
        let arguments: Value = serde_json::from_str(call["arguments"].as_str().expect("args"))
            .unwrap_or_else(|e| panic!("call {i}: arguments are not JSON ({e}): {streamed}"));
        assert_eq!(arguments, *args, "{streamed}");
        assert!(
            call["fragments"].as_u64().is_some_and(|n| n > 1),
            "call {i}: the arguments should arrive in several fragments: {streamed}"
        );
    }
    assert_eq!(streamed["content"], "I'll look both up.", "{streamed}");
    assert_eq!(
        streamed["finish_reasons"],
        json!(["tool_calls"]),
        "{streamed}"
    );
    assert_eq!(
        streamed["usage_chunks"],
        json!([{"usage": usage, "choices": 0}]),
        "{streamed}"
    );
    assert_eq!(
        streamed["ids"].as_array().map(Vec::len),
        Some(1),
        "{streamed}"
    );

    // The SDK's own accumulator and the whole (non-streamed) answer agree with it.
    let expected: Vec<Value> = expected_calls
        .iter()
        .map(|(id, name, _)| json!({"id": id, "type": "function", "name": name}))
        .collect();
    for view in ["stream_state", "whole"] {
        let answer = &summary[view];
        let calls = answer["tool_calls"].as_array().expect("tool_calls");
        assert_eq!(calls.len(), 2, "{view}: {answer}");
        for ((call, want), (_, _, args)) in calls.iter().zip(&expected).zip(&expected_calls) {
            for field in ["id", "type", "name"] {
                assert_eq!(call[field], want[field], "{view}: {answer}");
            }
            let arguments: Value =
                serde_json::from_str(call["arguments"].as_str().expect("args")).unwrap();
            assert_eq!(arguments, *args, "{view}: {answer}");
        }
        assert_eq!(answer["content"], "I'll look both up.", "{view}: {answer}");
        assert_eq!(answer["finish_reason"], "tool_calls", "{view}: {answer}");
        assert_eq!(answer["usage"], usage, "{view}: {answer}");
    }

    // Upstream: a whole request, then a streamed one, both with the tools translated.
    let received = anthropic.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(cohere.received().is_empty());
    let expected_tools = json!([
        {"name": "get_weather", "description": "Current weather in a city.",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}},
        {"name": "get_time", "description": "Current time in an IANA time zone.",
         "input_schema": {"type": "object", "properties": {"timezone": {"type": "string"}},
                          "required": ["timezone"]}}
    ]);
    for (sent, stream) in received.iter().zip([false, true]) {
        assert_key_not_forwarded(sent, &key);
        let body = sent.json();
        assert_eq!(body["stream"], stream, "{body}");
        assert_eq!(body["tools"], expected_tools, "{body}");
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": "What are the weather and the time in Paris?"}]),
            "{body}"
        );
    }
}

/// The forced tool's answer (docs/wire-formats.md, "Anthropic"): its input is the JSON the
/// client's schema asked for.
fn anthropic_json_answer() -> Value {
    json!({
        "id": "msg_01JsonAnswer000000000001",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20241022",
        "content": [{"type": "tool_use", "id": "toolu_01Json", "name": "tollgate_json_answer",
                     "input": {"expression": "2 + 2", "result": 4}}],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {"input_tokens": 310, "output_tokens": 24}
    })
}

#[actix_web::test]
#[ignore = "needs TOLLGATE_SDK_PYTHON (a Python with the openai package; .ci/run sets it)"]
async fn the_official_openai_python_sdk_parses_structured_output_from_an_anthropic_alias() {
    let python = required_env(
        "TOLLGATE_SDK_PYTHON",
        "a Python interpreter with the openai package installed",
    );
    let anthropic = MockUpstream::start(Behaviour::json(200, anthropic_json_answer())).await;
    let cohere = MockUpstream::start(Behaviour::json(200, cohere_chat())).await;
    let app = spawn_app().await;
    let key = configure(&app, &anthropic, &cohere).await;

    let summary = run_script(&python, &app, &key, "claude", Some("parse")).await;
    println!("openai {} parse: {summary}", summary["openai_version"]);
    assert_eq!(summary["parsed_type"], "Sum", "{summary}");
    assert_eq!(
        summary["parsed"],
        json!({"expression": "2 + 2", "result": 4}),
        "{summary}"
    );
    assert_eq!(summary["finish_reason"], "stop", "{summary}");
    assert_eq!(summary["tool_calls"], json!([]), "{summary}");
    assert_eq!(summary["refusal"], Value::Null, "{summary}");
    assert_eq!(
        summary["usage"],
        json!({"prompt_tokens": 310, "completion_tokens": 24, "total_tokens": 334}),
        "{summary}"
    );

    // What `parse` sent (`response_format: {type: json_schema, …}`) became the forced tool,
    // its input schema the pydantic model's.
    let received = anthropic.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_key_not_forwarded(&received[0], &key);
    let body = received[0].json();
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "tollgate_json_answer"}),
        "{body}"
    );
    let tools = body["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 1, "{body}");
    let schema = &tools[0]["input_schema"];
    assert_eq!(schema["type"], "object", "{body}");
    assert_eq!(schema["properties"]["result"]["type"], "integer", "{body}");
    assert_eq!(
        schema["required"],
        json!(["expression", "result"]),
        "{body}"
    );
    assert!(body.get("output_config").is_none(), "{body}");
    assert!(body.get("response_format").is_none(), "{body}");
    assert!(cohere.received().is_empty());
}

/// Vectors whose values float32 holds exactly, so every encoding compares equal.
const VECTORS: [[f32; 4]; 2] = [[0.5, -0.25, 0.125, 1.0], [-1.5, 0.0, 0.75, 2.0]];

#[actix_web::test]
#[ignore = "needs TOLLGATE_SDK_PYTHON (a Python with the openai package; .ci/run sets it)"]
async fn the_official_openai_python_sdk_creates_embeddings_in_float_and_base64() {
    let python = required_env(
        "TOLLGATE_SDK_PYTHON",
        "a Python interpreter with the openai package installed",
    );
    // Cohere v2 answers floats only; the OpenAI mock answers floats whatever it is asked
    // (as an upstream that ignores `encoding_format` would): the gateway encodes both.
    let cohere = MockUpstream::start(Behaviour::json(
        200,
        json!({"id": "e1", "response_type": "embeddings_by_type",
               "embeddings": {"float": VECTORS},
               "meta": {"billed_units": {"input_tokens": 11}}}),
    ))
    .await;
    let openai = MockUpstream::start(Behaviour::json(
        200,
        json!({"object": "list", "model": "text-embedding-3-small",
               "data": [{"object": "embedding", "index": 0, "embedding": VECTORS[0]},
                        {"object": "embedding", "index": 1, "embedding": VECTORS[1]}],
               "usage": {"prompt_tokens": 9, "total_tokens": 9}}),
    ))
    .await;
    let app = spawn_app().await;
    let objects = [
        ("/tenants", json!({"name": "acme"})),
        (
            "/credentials",
            json!({"name": "k", "header_name": "Authorization",
                   "header_value": format!("Bearer {COHERE_SECRET}")}),
        ),
        (
            "/services",
            json!({"name": "cohere", "provider": "cohere", "credential": "k",
                   "upstream_url": format!("{}/v2/embed", cohere.base)}),
        ),
        (
            "/services",
            json!({"name": "openai", "provider": "openai", "credential": "k",
                   "upstream_url": format!("{}/v1/embeddings", openai.base)}),
        ),
        (
            "/routes",
            json!({"name": "co-embed", "model_alias": "co-embed", "service": "cohere",
                   "route_type": "llm/v1/embeddings", "model": {"name": "embed-v4.0"}}),
        ),
        (
            "/routes",
            json!({"name": "oa-embed", "model_alias": "oa-embed", "service": "openai",
                   "route_type": "llm/v1/embeddings",
                   "model": {"name": "text-embedding-3-small"}}),
        ),
    ];
    for (path, body) in objects {
        let r = app.post(path, body).await;
        assert_eq!(r.status, 201, "POST {path}: {}", r.text);
    }
    let key = new_key(&app, "acme", json!({"name": "sdk"})).await;
    let expected: Vec<Vec<f64>> = VECTORS
        .iter()
        .map(|v| v.iter().map(|f| f64::from(*f)).collect())
        .collect();

    for (alias, mock, model, tokens) in [
        ("co-embed", &cohere, "embed-v4.0", 11),
        ("oa-embed", &openai, "text-embedding-3-small", 9),
    ] {
        let summary = run_script(&python, &app, &key, alias, Some("embeddings")).await;
        println!(
            "openai {} embeddings {alias}: {summary}",
            summary["openai_version"]
        );
        assert_eq!(summary["object"], "list", "{alias}: {summary}");
        assert_eq!(summary["default"], json!(expected), "{alias}: {summary}");
        assert_eq!(summary["float"], json!(expected), "{alias}: {summary}");
        assert_eq!(
            summary["base64_decoded"],
            json!(expected[0]),
            "{alias}: {summary}"
        );
        assert_eq!(summary["default_model"], model, "{alias}: {summary}");
        assert_eq!(
            summary["default_usage"],
            json!({"prompt_tokens": tokens, "total_tokens": tokens}),
            "{alias}: {summary}"
        );
        assert!(
            summary["request_id"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{alias}: {summary}"
        );
        // The SDK's default asked for base64; `float` and `base64` were asked as such.
        let received = mock.received();
        assert_eq!(received.len(), 3, "{alias}: {received:?}");
        for sent in &received {
            assert_key_not_forwarded(sent, &key);
            assert_eq!(
                sent.header("authorization"),
                Some(format!("Bearer {COHERE_SECRET}").as_str())
            );
        }
        if alias == "oa-embed" {
            let formats: Vec<Value> = received
                .iter()
                .map(|r| r.json()["encoding_format"].clone())
                .collect();
            assert_eq!(formats, [json!("base64"), json!("float"), json!("base64")]);
        } else {
            assert_eq!(
                received[0].json()["texts"],
                json!(["The food was delicious", "and the waiter was kind"])
            );
        }
    }
}
