//! Every provider family's real stream wire format through the real listener
//! (docs/behaviour.md, "Streaming rules", "Tool calls"): the mock answers in the provider's
//! own framing (docs/wire-formats.md), re-cut into small pieces a few ms apart so frames
//! straddle reads, and the client must get OpenAI chunks: the text, the tool calls (index,
//! id, name, arguments concatenating to valid JSON), the mapped finish reason, exactly one
//! usage chunk with the provider's numbers when it asked and none otherwise, `[DONE]` at
//! the end; and one analytics line per stream with the tokens (`stream: true`,
//! `stream_end: "done"`).

use std::path::Path;

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::mock_upstream::{Behaviour, MockUpstream, Received, Tail};
use crate::support::proxy::new_key;
use crate::support::streaming::{Streamed, analytics_lines, app_with_log, recut, stream};

/// A service of `provider` at `mock.base + upstream_path`, a route `/p` of `route_type`
/// with `model`, and a tenant key.
async fn configure(
    app: &TestApp,
    mock: &MockUpstream,
    provider: &str,
    upstream_path: &str,
    options: Value,
    route_type: &str,
    model: Option<&str>,
) -> String {
    assert_eq!(
        app.post("/tenants", json!({"name": "acme"})).await.status,
        201
    );
    let r = app
        .post(
            "/credentials",
            json!({"name": "up", "header_name": "Authorization", "header_value": "Bearer up-secret"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/services",
            json!({"name": "svc", "provider": provider, "credential": "up",
                   "upstream_url": format!("{}{upstream_path}", mock.base), "options": options,
                   "timeouts": {"connect_ms": 1000, "read_ms": 3000}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": "r", "paths": ["/p"], "service": "svc", "route_type": route_type,
                   "model": {"name": model}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    new_key(app, "acme", json!({"name": "app"})).await
}

/// The mock's answer: `frames` concatenated and re-cut into 9-byte pieces, 3 ms apart.
fn wire(content_type: &'static str, frames: Vec<Vec<u8>>) -> Behaviour {
    Behaviour::Stream {
        content_type,
        frames: recut(frames, 9),
        gap: std::time::Duration::from_millis(3),
        tail: Tail::End,
    }
}

fn sse_data(values: Vec<Value>) -> Vec<Vec<u8>> {
    values
        .into_iter()
        .map(|v| format!("data: {v}\n\n").into_bytes())
        .collect()
}

fn ndjson(values: Vec<Value>) -> Vec<Vec<u8>> {
    values
        .into_iter()
        .map(|v| format!("{v}\n").into_bytes())
        .collect()
}

fn named(events: Vec<(&str, Value)>) -> Vec<Vec<u8>> {
    events
        .into_iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n").into_bytes())
        .collect()
}

/// What the client must get from one stream.
struct Expect {
    object: &'static str,
    text: &'static str,
    /// name and parsed arguments of each tool call, in index order.
    tools: Vec<(&'static str, Value)>,
    finish: &'static str,
    /// The usage chunk's `(prompt, completion)` when the client asks for it.
    usage: (u64, u64),
}

/// Sends `body` with and without `stream_options.include_usage` and checks both streams;
/// returns them (with usage first) and the upstream requests.
async fn both_ways(
    app: &TestApp,
    mock: &MockUpstream,
    key: &str,
    body: Value,
    expect: &Expect,
) -> Vec<Received> {
    for include_usage in [true, false] {
        let mut body = body.clone();
        body["stream"] = json!(true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let s = stream(app, "/p", key, body).await;
        check(&s, include_usage, expect);
    }
    let received = mock.received();
    assert_eq!(received.len(), 2);
    received
}

fn check(s: &Streamed, include_usage: bool, expect: &Expect) {
    assert_eq!(s.status, 200, "{}", s.raw);
    assert_eq!(s.content_type, "text/event-stream");
    assert!(s.ends_with_done(), "{}", s.raw);
    assert_eq!(s.frames.last(), Some(&json!("[DONE]")));
    assert_eq!(
        s.frames.iter().filter(|f| **f == json!("[DONE]")).count(),
        1,
        "{}",
        s.raw
    );
    let chunks = &s.frames[..s.frames.len() - 1];
    for c in chunks {
        assert!(c.get("error").is_none(), "{}", s.raw);
        assert_eq!(c["object"], expect.object, "{c}");
        assert!(c["id"].as_str().is_some_and(|v| !v.is_empty()), "{c}");
        assert!(c["model"].as_str().is_some_and(|v| !v.is_empty()), "{c}");
        assert!(c["created"].as_i64().is_some_and(|v| v > 0), "{c}");
        assert!(c["choices"].is_array(), "{c}");
        assert_eq!(c["id"], chunks[0]["id"], "id constant");
        assert_eq!(c["created"], chunks[0]["created"], "created constant");
        assert_eq!(c["model"], chunks[0]["model"], "model constant");
        if c.get("usage").is_none() {
            // Provider-specific empty chunks (Azure's filter results) never reach the client.
            assert!(
                !c["choices"].as_array().unwrap().is_empty(),
                "empty chunk: {c}"
            );
        }
    }
    assert_eq!(s.text(), expect.text, "{}", s.raw);
    let calls = s.tool_calls();
    assert_eq!(calls.len(), expect.tools.len(), "{}", s.raw);
    let mut ids = std::collections::BTreeSet::new();
    for (k, (call, (name, args))) in calls.iter().zip(&expect.tools).enumerate() {
        assert_eq!(call["index"], k, "{call}");
        assert_eq!(call["name"], *name, "{call}");
        assert!(ids.insert(call["id"].to_string()), "duplicate id: {call}");
        let got: Value = serde_json::from_str(call["arguments"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("arguments of {call}: {e}"));
        assert_eq!(&got, args, "{call}");
    }
    assert_eq!(s.finish_reasons(), vec![expect.finish], "{}", s.raw);
    let usage = s.usage_chunks();
    if include_usage {
        assert_eq!(usage.len(), 1, "{}", s.raw);
        assert_eq!(usage[0]["choices"], json!([]));
        let (p, c) = expect.usage;
        assert_eq!(usage[0]["usage"]["prompt_tokens"], p, "{}", s.raw);
        assert_eq!(usage[0]["usage"]["completion_tokens"], c, "{}", s.raw);
        assert_eq!(usage[0]["usage"]["total_tokens"], p + c, "{}", s.raw);
        // The usage chunk is the last before `[DONE]`.
        assert_eq!(&chunks[chunks.len() - 1], usage[0]);
    } else {
        assert!(usage.is_empty(), "{}", s.raw);
    }
}

/// The two analytics lines (one per stream): `stream: true`, `stream_end: "done"`, and the
/// tokens. `prompt` None: the provider gives no prompt count, so it is an estimate (> 0).
async fn check_analytics(log: &Path, prompt: Option<u64>, completion: u64, estimated: bool) {
    let lines = analytics_lines(log, 2).await;
    assert_eq!(lines.len(), 2, "one line per stream: {lines:?}");
    for line in &lines {
        assert_eq!(line["tollgate"]["stream"], true, "{line}");
        assert_eq!(line["tollgate"]["stream_end"], "done", "{line}");
        assert_eq!(line["tollgate"]["usage_estimated"], estimated, "{line}");
        let usage = &line["ai"]["proxy"]["usage"];
        match prompt {
            Some(p) => assert_eq!(usage["prompt_tokens"], p, "{line}"),
            None => assert!(usage["prompt_tokens"].as_u64().unwrap() > 0, "{line}"),
        }
        assert_eq!(usage["completion_tokens"], completion, "{line}");
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(usage["prompt_tokens"].as_u64().unwrap() + completion),
            "{line}"
        );
    }
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}])
}

fn ask_weather() -> Value {
    json!({"messages": [{"role": "user", "content": "Weather in Paris and Tokyo?"}],
           "tools": weather_tool()})
}

#[actix_web::test]
async fn azure_stream_drops_the_content_filter_chunks_and_meters_with_include_usage() {
    let chunk = |choices: Value| {
        json!({"id": "chatcmpl-AZ1", "object": "chat.completion.chunk", "created": 1_727_000_000,
               "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_1", "choices": choices})
    };
    let filter = json!({"hate": {"filtered": false, "severity": "safe"},
                        "self_harm": {"filtered": false, "severity": "safe"},
                        "sexual": {"filtered": false, "severity": "safe"},
                        "violence": {"filtered": false, "severity": "safe"}});
    let text = |t: &str| {
        chunk(
            json!([{"index": 0, "delta": {"content": t}, "finish_reason": null,
                      "logprobs": null, "content_filter_results": filter}]),
        )
    };
    let mut usage_chunk = chunk(json!([]));
    usage_chunk["usage"] =
        json!({"prompt_tokens": 41, "completion_tokens": 23, "total_tokens": 64});
    let frames = sse_data(vec![
        // The content-filter preamble: no choices, empty id/model, created 0.
        json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filter}]}),
        chunk(
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                      "finish_reason": null, "logprobs": null}]),
        ),
        text("Let me "),
        text("check."),
        chunk(
            json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_az1",
                      "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
                      "finish_reason": null}]),
        ),
        chunk(json!([{"index": 0, "delta": {"tool_calls": [{"index": 0,
                      "function": {"arguments": "{\"city\":"}}]}, "finish_reason": null}])),
        chunk(json!([{"index": 0, "delta": {"tool_calls": [{"index": 0,
                      "function": {"arguments": " \"Paris\"}"}}]}, "finish_reason": null}])),
        chunk(json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
        // Trailing filter results, again without choices.
        json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filter}]}),
        usage_chunk,
    ]);
    let mut frames = frames;
    frames.push(b"data: [DONE]\n\n".to_vec());
    let mock = MockUpstream::start(wire("text/event-stream", frames)).await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure(
        &app,
        &mock,
        "azure",
        "/openai/deployments/gpt4o/chat/completions",
        // stream_options exists from api-version 2024-10-21 (docs/wire-formats.md, "Azure OpenAI").
        json!({"azure_instance": "tollgate", "azure_deployment_id": "gpt4o",
               "azure_api_version": "2024-10-21"}),
        "llm/v1/chat",
        Some("gpt-4o"),
    )
    .await;
    let expect = Expect {
        object: "chat.completion.chunk",
        text: "Let me check.",
        tools: vec![("get_weather", json!({"city": "Paris"}))],
        finish: "tool_calls",
        usage: (41, 23),
    };
    let sent = both_ways(&app, &mock, &key, ask_weather(), &expect).await;
    for r in &sent {
        assert!(r.query.contains("api-version=2024-10-21"), "{}", r.query);
        let body = r.json();
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true, "{body}");
        assert_eq!(body["tools"], weather_tool());
    }
    check_analytics(&log, Some(41), 23, false).await;
}

#[actix_web::test]
async fn mistral_stream_with_usage_in_the_finish_chunk_and_calls_without_index() {
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut c = json!({"id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
                           "object": "chat.completion.chunk", "created": 1_702_256_327,
                           "model": "mistral-large-latest", "choices": choices});
        if let Some(u) = usage {
            c["usage"] = u;
        }
        c
    };
    let mut frames = sse_data(vec![
        chunk(
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
            None,
        ),
        chunk(
            json!([{"index": 0, "delta": {"content": "Checking both."}, "finish_reason": null}]),
            None,
        ),
        // Mistral sends each call whole, here two in one delta, without `index`.
        chunk(
            json!([{"index": 0, "delta": {"content": "", "tool_calls": [
                {"id": "D4fG7hJ2k", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                {"id": "Q1w2E3r4T", "function": {"name": "get_weather", "arguments": "{\"city\": \"Tokyo\"}"}}
            ]}, "finish_reason": null}]),
            None,
        ),
        // Usage inside the finish chunk (docs/wire-formats.md, "Mistral").
        chunk(
            json!([{"index": 0, "delta": {"content": ""}, "finish_reason": "tool_calls"}]),
            Some(json!({"prompt_tokens": 84, "total_tokens": 130, "completion_tokens": 46})),
        ),
    ]);
    frames.push(b"data: [DONE]\n\n".to_vec());
    let mock = MockUpstream::start(wire("text/event-stream", frames)).await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure(
        &app,
        &mock,
        "mistral",
        "/v1/chat/completions",
        json!({"mistral_format": "openai"}),
        "llm/v1/chat",
        Some("mistral-large-latest"),
    )
    .await;
    // A follow-up turn answering an earlier call whose id is not Mistral's 9 characters.
    let body = json!({"messages": [
        {"role": "user", "content": "Weather in Paris and Tokyo?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc123_not_nine",
            "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_abc123_not_nine", "content": "{\"temp\": 4}"},
        {"role": "user", "content": "Now Paris and Tokyo."}
    ], "tools": weather_tool()});
    let expect = Expect {
        object: "chat.completion.chunk",
        text: "Checking both.",
        tools: vec![
            ("get_weather", json!({"city": "Paris"})),
            ("get_weather", json!({"city": "Tokyo"})),
        ],
        finish: "tool_calls",
        usage: (84, 46),
    };
    let sent = both_ways(&app, &mock, &key, body, &expect).await;
    for r in &sent {
        let body = r.json();
        assert_eq!(body["stream"], true);
        // Mistral rejects stream_options and reports usage unasked.
        assert!(body.get("stream_options").is_none(), "{body}");
        let id = body["messages"][1]["tool_calls"][0]["id"].as_str().unwrap();
        assert!(
            id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "rewritten id {id:?}"
        );
        assert_eq!(body["messages"][2]["tool_call_id"], id, "same rewrite");
    }
    check_analytics(&log, Some(84), 46, false).await;
}

#[actix_web::test]
async fn cohere_chat_stream_with_two_tool_calls() {
    let ev = |event_type: &str, extra: Value| {
        let mut v = json!({"is_finished": false, "event_type": event_type});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let delta = |d: Value| ev("tool-calls-chunk", json!({"tool_call_delta": d}));
    let calls = json!([{"name": "get_weather", "parameters": {"city": "Paris"}},
                       {"name": "get_weather", "parameters": {"city": "Tōkyō", "units": "celsius"}}]);
    let frames = ndjson(vec![
        ev("stream-start", json!({"generation_id": "3c2b1a0f"})),
        ev("tool-calls-chunk", json!({"text": "I will check"})),
        ev("tool-calls-chunk", json!({"text": " both cities."})),
        delta(json!({"index": 0, "name": "get_weather"})),
        delta(json!({"index": 0, "parameters": "{\n    \"city\": "})),
        delta(json!({"index": 0, "parameters": "\"Paris\"\n}"})),
        delta(json!({"index": 1, "name": "get_weather"})),
        delta(json!({"index": 1, "parameters": "{\"city\": \"Tōkyō\", "})),
        delta(json!({"index": 1, "parameters": "\"units\": \"celsius\"}"})),
        ev(
            "tool-calls-generation",
            json!({"text": "I will check both cities.", "tool_calls": calls}),
        ),
        json!({"is_finished": true, "event_type": "stream-end", "finish_reason": "COMPLETE",
               "response": {"response_id": "8d7e", "text": "I will check both cities.",
                            "generation_id": "3c2b1a0f", "tool_calls": calls,
                            "finish_reason": "COMPLETE",
                            "meta": {"api_version": {"version": "1"},
                                     "billed_units": {"input_tokens": 31, "output_tokens": 42},
                                     "tokens": {"input_tokens": 95, "output_tokens": 42}}}}),
    ]);
    let mock = MockUpstream::start(wire("application/stream+json", frames)).await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure(
        &app,
        &mock,
        "cohere",
        "/v1/chat",
        json!({}),
        "llm/v1/chat",
        Some("command-r"),
    )
    .await;
    let expect = Expect {
        object: "chat.completion.chunk",
        text: "I will check both cities.",
        tools: vec![
            ("get_weather", json!({"city": "Paris"})),
            ("get_weather", json!({"city": "Tōkyō", "units": "celsius"})),
        ],
        finish: "tool_calls",
        // Differences from Kong, 6: `meta.tokens` before `billed_units`.
        usage: (95, 42),
    };
    let sent = both_ways(&app, &mock, &key, ask_weather(), &expect).await;
    for r in &sent {
        let body = r.json();
        assert_eq!(body["stream"], true);
        assert!(body.get("stream_options").is_none(), "{body}");
        assert_eq!(body["message"], "Weather in Paris and Tokyo?");
        assert_eq!(body["tools"][0]["name"], "get_weather");
        assert_eq!(
            body["tools"][0]["parameter_definitions"]["city"]["required"], true,
            "{body}"
        );
    }
    check_analytics(&log, Some(95), 42, false).await;
}

#[actix_web::test]
async fn ollama_stream_with_a_tool_call_and_usage_on_the_done_line() {
    let line = |message: Value, done: bool| {
        json!({"model": "llama3.2", "created_at": "2025-07-07T20:22:19.19314Z",
               "message": message, "done": done})
    };
    let mut last = line(json!({"role": "assistant", "content": ""}), true);
    last["done_reason"] = json!("stop");
    last["total_duration"] = json!(182_242_375);
    last["prompt_eval_count"] = json!(169);
    last["eval_count"] = json!(15);
    let frames = ndjson(vec![
        line(json!({"role": "assistant", "content": "Looking"}), false),
        line(json!({"role": "assistant", "content": " it up."}), false),
        line(
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]}),
            false,
        ),
        last,
    ]);
    let mock = MockUpstream::start(wire("application/x-ndjson", frames)).await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure(
        &app,
        &mock,
        "llama2",
        "/api/chat",
        json!({"llama2_format": "ollama"}),
        "llm/v1/chat",
        Some("llama3.2"),
    )
    .await;
    let expect = Expect {
        object: "chat.completion.chunk",
        text: "Looking it up.",
        tools: vec![("get_weather", json!({"city": "Tokyo"}))],
        // `done_reason: stop` with a tool call (docs/wire-formats.md, "Llama 2 and Ollama").
        finish: "tool_calls",
        usage: (169, 15),
    };
    let sent = both_ways(&app, &mock, &key, ask_weather(), &expect).await;
    for r in &sent {
        assert_eq!(r.path, "/api/chat");
        let body = r.json();
        assert_eq!(body["stream"], true);
        assert_eq!(body["model"], "llama3.2");
        assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
        assert!(body.get("stream_options").is_none(), "{body}");
    }
    check_analytics(&log, Some(169), 15, false).await;
}

#[actix_web::test]
async fn llama2_raw_tgi_token_stream() {
    let token = |id: u64, text: &str, special: bool, last: Option<Value>| {
        let (generated, details) = match last {
            Some(d) => (json!("Hello there, friend"), d),
            None => (Value::Null, Value::Null),
        };
        json!({"index": id, "token": {"id": id, "text": text, "logprob": -0.25, "special": special},
               "generated_text": generated, "details": details, "top_tokens": null})
    };
    // TGI's SSE uses `data:` without a space.
    let frames: Vec<Vec<u8>> = vec![
        token(1, " Hello", false, None),
        token(2, " there", false, None),
        token(3, ",", false, None),
        token(4, " friend", false, None),
        token(
            5,
            "</s>",
            true,
            Some(json!({"finish_reason": "eos_token", "generated_tokens": 5, "seed": null})),
        ),
    ]
    .into_iter()
    .map(|v| format!("data:{v}\n\n").into_bytes())
    .collect();
    let mock = MockUpstream::start(wire("text/event-stream", frames)).await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure(
        &app,
        &mock,
        "llama2",
        "/generate_stream",
        json!({"llama2_format": "raw"}),
        "llm/v1/chat",
        Some("llama-2-7b-chat-hf"),
    )
    .await;
    let body = json!({"messages": [{"role": "system", "content": "Be kind."},
                                   {"role": "user", "content": "Greet me."}]});
    let expect = Expect {
        object: "chat.completion.chunk",
        // The answer's leading blank trimmed, the `</s>` special token not text.
        text: "Hello there, friend",
        tools: vec![],
        finish: "stop",
        // TGI reports no prompt count: the usage chunk carries the gateway's estimate,
        // the same number as the analytics line (the 54 characters of the templated
        // `inputs` sent upstream, 4 per token).
        usage: (14, 5),
    };
    let sent = both_ways(&app, &mock, &key, body, &expect).await;
    for r in &sent {
        let body = r.json();
        assert_eq!(
            body["inputs"],
            "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nGreet me. [/INST]"
        );
        assert_eq!(body["stream"], true);
        assert_eq!(body["parameters"]["stream"], true);
        assert_eq!(body["parameters"]["details"], true, "{body}");
    }
    check_analytics(&log, None, 5, true).await;
}

#[actix_web::test]
async fn anthropic_legacy_complete_stream_on_a_completions_route() {
    let completion = |text: &str, stop: Value| {
        (
            "completion",
            json!({"type": "completion", "id": "compl_01", "completion": text,
                              "stop_reason": stop, "model": "claude-2.1"}),
        )
    };
    let frames = named(vec![
        completion(" Hello!", Value::Null),
        ("ping", json!({"type": "ping"})),
        completion(" My name", Value::Null),
        completion(" is Claude.", Value::Null),
        completion("", json!("stop_sequence")),
    ]);
    let mock = MockUpstream::start(wire("text/event-stream", frames)).await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure(
        &app,
        &mock,
        "anthropic",
        "/v1/complete",
        json!({"anthropic_version": "2023-06-01"}),
        "llm/v1/completions",
        Some("claude-2.1"),
    )
    .await;
    let expect = Expect {
        object: "text_completion",
        text: " Hello! My name is Claude.",
        tools: vec![],
        // Differences from Kong, 4: stop_sequence → stop.
        finish: "stop",
        // /v1/complete reports no usage: the prompt is estimated from the 32 characters
        // sent upstream (`Human: …\n\nAssistant:`) and the completion from the 26
        // streamed ones (4 per token).
        usage: (8, 7),
    };
    let sent = both_ways(
        &app,
        &mock,
        &key,
        json!({"prompt": "What are you?", "max_tokens": 64}),
        &expect,
    )
    .await;
    for r in &sent {
        assert_eq!(r.path, "/v1/complete");
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        let body = r.json();
        // Kong's wrapping, without the leading blank line Anthropic's own format has
        // (docs/wire-formats.md, "Anthropic").
        assert_eq!(body["prompt"], "Human: What are you?\n\nAssistant:");
        assert_eq!(body["max_tokens_to_sample"], 64);
        assert_eq!(body["stream"], true);
        assert!(body.get("stream_options").is_none(), "{body}");
    }
    check_analytics(&log, None, 7, true).await;
}

#[actix_web::test]
async fn openai_completions_stream_of_text_completion_chunks() {
    let chunk = |text: &str, finish: Value| {
        json!({"id": "cmpl-8TBeaJVQIhE9kHEJbk1RnKzgFxIqN", "object": "text_completion",
               "created": 1_701_967_000, "model": "gpt-3.5-turbo-instruct",
               "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]})
    };
    let mut frames = sse_data(vec![
        chunk("\n\n", Value::Null),
        chunk("I am", Value::Null),
        chunk(" a language model.", Value::Null),
        chunk("", json!("length")),
        json!({"id": "cmpl-8TBeaJVQIhE9kHEJbk1RnKzgFxIqN", "object": "text_completion",
               "created": 1_701_967_000, "model": "gpt-3.5-turbo-instruct", "choices": [],
               "usage": {"prompt_tokens": 4, "completion_tokens": 9, "total_tokens": 13}}),
    ]);
    frames.push(b"data: [DONE]\n\n".to_vec());
    let mock = MockUpstream::start(wire("text/event-stream", frames)).await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure(
        &app,
        &mock,
        "openai",
        "/v1/completions",
        json!({}),
        "llm/v1/completions",
        Some("gpt-3.5-turbo-instruct"),
    )
    .await;
    let expect = Expect {
        object: "text_completion",
        text: "\n\nI am a language model.",
        tools: vec![],
        finish: "length",
        usage: (4, 9),
    };
    let sent = both_ways(
        &app,
        &mock,
        &key,
        json!({"prompt": "What are you?"}),
        &expect,
    )
    .await;
    for r in &sent {
        let body = r.json();
        assert_eq!(body["prompt"], "What are you?");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }
    check_analytics(&log, Some(4), 9, false).await;
}
