use serde_json::{Value, json};

use super::*;
use super::{request::*, stream::*};
use crate::llm::sse_payloads as frames;
use crate::llm::{ReportedUsage, StreamError};
use crate::providers::test_support::{self, object};
use crate::vocab::ModelOptions;
use crate::vocab::ServiceOptions;

fn fixture(name: &str) -> String {
    test_support::fixture("anthropic", name)
}

fn json_fixture(name: &str) -> Value {
    test_support::fixture_json("anthropic", name)
}

fn options() -> ServiceOptions {
    ServiceOptions {
        anthropic_version: Some("2023-06-01".into()),
        ..Default::default()
    }
}

fn ctx<'a>(
    options: &'a ServiceOptions,
    tuning: &'a ModelOptions,
    upstream_url: Option<&'a str>,
) -> TranslateContext<'a> {
    TranslateContext {
        upstream_url,
        options,
        model: "claude-sonnet-4-5",
        tuning,
        default_max_tokens: 4096,
    }
}

/// Translates a request with default options and no tuning; returns (request, body).
fn translate(kind: RouteKind, body: Value) -> Result<(UpstreamRequest, Value), RequestError> {
    let (o, t) = (options(), ModelOptions::default());
    let req = Anthropic.request(&ctx(&o, &t, None), kind, object(body))?;
    let body = serde_json::from_slice(&req.body).unwrap();
    Ok((req, body))
}

fn chat(body: Value) -> Value {
    translate(RouteKind::Chat, body).unwrap().1
}

fn chat_err(body: Value) -> RequestError {
    translate(RouteKind::Chat, body).unwrap_err()
}

fn respond(kind: RouteKind, body: &str) -> Result<Value, TranslateError> {
    let (o, t) = (options(), ModelOptions::default());
    Anthropic.response(&ctx(&o, &t, None), kind, body.as_bytes())
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

// ---- requests: URL, headers, body ----

#[test]
fn chat_url_headers_and_body() {
    let request = json_fixture("chat-request.json");
    let (req, body) = translate(RouteKind::Chat, request).unwrap();
    assert_eq!(req.url, "https://api.anthropic.com/v1/messages");
    assert_eq!(
        req.headers,
        vec![("anthropic-version".to_string(), "2023-06-01".to_string())]
    );
    let expected: Value = json_fixture("chat-request.expected.json");
    assert_eq!(body, expected);
}

#[test]
fn completions_url_and_body() {
    let (req, body) = translate(
        RouteKind::Completions,
        json!({"model": "x", "prompt": "Say hi", "max_tokens": 20, "stop": "\n", "top_p": 0.9, "top_k": 5}),
    )
    .unwrap();
    assert_eq!(req.url, "https://api.anthropic.com/v1/complete");
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5",
            "prompt": "Human: Say hi\n\nAssistant:",
            "max_tokens_to_sample": 20,
            "stop_sequences": ["\n"],
            "top_p": 0.9, "top_k": 5, "stream": false,
        })
    );
}

#[test]
fn completions_keeps_a_preformatted_prompt_and_defaults_max_tokens() {
    let prompt = "\n\nHuman: Hi\n\nAssistant:";
    let (_, body) = translate(
        RouteKind::Completions,
        json!({"prompt": prompt, "stream": true}),
    )
    .unwrap();
    assert_eq!(body["prompt"], prompt);
    assert_eq!(body["max_tokens_to_sample"], 4096);
    assert_eq!(body["stream"], true);
    assert!(body.get("max_tokens").is_none());
}

#[test]
fn completions_rejects_a_non_string_prompt_and_unsupported_options() {
    let err = translate(RouteKind::Completions, json!({"prompt": ["a", "b"]})).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("prompt"));
    for (key, value) in [
        ("echo", json!(true)),
        ("suffix", json!("x")),
        ("best_of", json!(3)),
        ("logprobs", json!(2)),
    ] {
        let err =
            translate(RouteKind::Completions, json!({"prompt": "p", key: value})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some(key));
    }
    let (_, body) = translate(
        RouteKind::Completions,
        json!({"prompt": "p", "echo": false, "best_of": 1, "suffix": "", "n": 1}),
    )
    .unwrap();
    for key in ["echo", "best_of", "suffix", "n"] {
        assert!(body.get(key).is_none(), "{key}");
    }
}

#[test]
fn upstream_url_is_used_verbatim_with_its_query() {
    let (o, t) = (options(), ModelOptions::default());
    let url = "https://proxy.example.com/anthropic/v1/messages?tenant=a&x=1";
    let req = Anthropic
        .request(
            &ctx(&o, &t, Some(url)),
            RouteKind::Chat,
            object(json!({"messages": [user("hi")]})),
        )
        .unwrap();
    assert_eq!(req.url, url);
}

#[test]
fn version_header_follows_the_service_option() {
    let o = ServiceOptions {
        anthropic_version: Some("2024-10-22".into()),
        ..Default::default()
    };
    let t = ModelOptions::default();
    let req = Anthropic
        .request(
            &ctx(&o, &t, None),
            RouteKind::Chat,
            object(json!({"messages": [user("hi")]})),
        )
        .unwrap();
    assert_eq!(
        req.headers[0],
        ("anthropic-version".into(), "2024-10-22".into())
    );
    let none = ServiceOptions::default();
    let req = Anthropic
        .request(
            &ctx(&none, &t, None),
            RouteKind::Chat,
            object(json!({"messages": [user("hi")]})),
        )
        .unwrap();
    assert_eq!(req.headers[0].1, DEFAULT_VERSION);
}

#[test]
fn tuning_overrides_the_client() {
    let o = options();
    let t = ModelOptions {
        max_tokens: Some(100),
        temperature: Some(0.2),
        top_p: Some(0.3),
        top_k: Some(7),
        ..Default::default()
    };
    let req = Anthropic
        .request(
            &ctx(&o, &t, None),
            RouteKind::Chat,
            object(json!({
                "messages": [user("hi")], "max_completion_tokens": 999, "max_tokens": 998,
                "temperature": 0.9, "top_p": 0.9, "top_k": 90,
            })),
        )
        .unwrap();
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["max_tokens"], 100);
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["top_p"], 0.3);
    assert_eq!(body["top_k"], 7);
    assert!(body.get("max_completion_tokens").is_none());
}

#[test]
fn model_is_the_context_model() {
    let body = chat(json!({"model": "client-alias", "messages": [user("hi")]}));
    assert_eq!(body["model"], "claude-sonnet-4-5");
}

#[test]
fn max_tokens_precedence_and_default() {
    assert_eq!(chat(json!({"messages": [user("hi")]}))["max_tokens"], 4096);
    assert_eq!(
        chat(json!({"messages": [user("hi")], "max_tokens": 12}))["max_tokens"],
        12
    );
    let both = json!({"messages": [user("hi")], "max_tokens": 12, "max_completion_tokens": 34});
    assert_eq!(chat(both)["max_tokens"], 34);
    assert_eq!(
        chat(json!({"messages": [user("hi")], "max_tokens": 64.0}))["max_tokens"],
        64
    );
    // null means unset
    assert_eq!(
        chat(json!({"messages": [user("hi")], "max_tokens": null}))["max_tokens"],
        4096
    );
    for bad in [json!(0), json!(-1), json!("12"), json!(1.5), json!(1e300)] {
        let err = chat_err(json!({"messages": [user("hi")], "max_completion_tokens": bad}));
        assert_eq!(err.param.as_deref(), Some("max_completion_tokens"));
    }
}

// ---- docs/behaviour.md, "Differences from Kong", 5 ----

#[test]
fn stop_becomes_stop_sequences() {
    let body = chat(json!({"messages": [user("hi")], "stop": "END"}));
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert!(body.get("stop").is_none());
    let body = chat(json!({"messages": [user("hi")], "stop": ["a", "", "b"]}));
    assert_eq!(body["stop_sequences"], json!(["a", "b"]));
    let body = chat(json!({"messages": [user("hi")], "stop": []}));
    assert!(body.get("stop_sequences").is_none());
    let err = chat_err(json!({"messages": [user("hi")], "stop": 3}));
    assert_eq!(err.param.as_deref(), Some("stop"));
    let err = chat_err(json!({"messages": [user("hi")], "stop": ["a", 1]}));
    assert_eq!(err.param.as_deref(), Some("stop"));
}

#[test]
fn every_system_and_developer_message_joins_system_in_order() {
    let body = chat(json!({"messages": [
        {"role": "system", "content": "One."},
        user("hi"),
        {"role": "developer", "content": [{"type": "text", "text": "Two"}, {"type": "text", "text": "parts."}]},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "   "},
        {"role": "system", "content": "Three."},
        user("again"),
    ]}));
    assert_eq!(body["system"], "One.\n\nTwo\nparts.\n\nThree.");
    assert_eq!(
        body["messages"],
        json!([user("hi"), {"role": "assistant", "content": "hello"}, user("again")])
    );
}

#[test]
fn no_system_key_without_system_messages() {
    let body = chat(json!({"messages": [user("hi")]}));
    assert!(body.get("system").is_none());
}

#[test]
fn system_with_non_text_parts_is_refused() {
    let err = chat_err(json!({"messages": [
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        user("hi"),
    ]}));
    assert_eq!(err.param.as_deref(), Some("messages[0].content[0]"));
}

#[test]
fn consecutive_same_role_turns_are_merged() {
    let body = chat(json!({"messages": [
        user("a"),
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": "d"},
        user("e"),
    ]}));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
            user("e"),
        ])
    );
}

#[test]
fn empty_text_is_not_forwarded() {
    let body = chat(json!({"messages": [
        user("a"),
        {"role": "assistant", "content": ""},
        {"role": "user", "content": null},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": []},
        user("  "),
    ]}));
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "text", "text": "b"},
        ]}])
    );
}

#[test]
fn only_system_or_empty_messages_are_refused() {
    let err = chat_err(json!({"messages": [{"role": "system", "content": "s"}, user("")]}));
    assert_eq!(err.param.as_deref(), Some("messages"));
}

#[test]
fn n_greater_than_one_is_refused() {
    let err = chat_err(json!({"messages": [user("hi")], "n": 2}));
    assert_eq!(err.param.as_deref(), Some("n"));
    assert!(err.message.contains("n"), "{}", err.message);
    let err = chat_err(json!({"messages": [user("hi")], "n": "1"}));
    assert_eq!(err.param.as_deref(), Some("n"));
    let body = chat(json!({"messages": [user("hi")], "n": 1}));
    assert!(body.get("n").is_none());
}

#[test]
fn answer_changing_openai_parameters_are_refused_defaults_dropped() {
    for (key, value) in [
        ("presence_penalty", json!(0.5)),
        ("frequency_penalty", json!(-1)),
        ("logit_bias", json!({"50256": -100})),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(3)),
        ("modalities", json!(["text", "audio"])),
        ("audio", json!({"voice": "alloy"})),
        ("functions", json!([])),
        ("reasoning_effort", json!("high")),
    ] {
        let err = chat_err(json!({"messages": [user("hi")], key: value}));
        assert_eq!(err.param.as_deref(), Some(key));
    }
    let body = chat(json!({
        "messages": [user("hi")], "presence_penalty": 0, "frequency_penalty": 0.0,
        "logit_bias": {}, "logprobs": false, "top_logprobs": 0, "modalities": ["text"],
        "seed": 42, "stream_options": {"include_usage": true}, "store": false,
        "metadata": {"k": "v"}, "service_tier": "auto", "n": null,
    }));
    let keys: Vec<String> = object(body.clone()).keys().cloned().collect();
    assert_eq!(
        keys,
        ["max_tokens", "messages", "model", "stream"],
        "{body}"
    );
}

#[test]
fn user_becomes_metadata_and_unknown_fields_pass_through() {
    let body = chat(json!({
        "messages": [user("hi")], "user": "u-1", "thinking": {"type": "enabled", "budget_tokens": 1024},
    }));
    assert_eq!(body["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(body["thinking"]["budget_tokens"], 1024);
    let err = chat_err(json!({"messages": [user("hi")], "user": 5}));
    assert_eq!(err.param.as_deref(), Some("user"));
}

#[test]
fn stream_is_kept() {
    assert_eq!(
        chat(json!({"messages": [user("hi")], "stream": true}))["stream"],
        true
    );
    assert_eq!(chat(json!({"messages": [user("hi")]}))["stream"], false);
    let err = chat_err(json!({"messages": [user("hi")], "stream": "yes"}));
    assert_eq!(err.param.as_deref(), Some("stream"));
}

#[test]
fn a_json_schema_is_the_forced_tool_unless_the_client_has_tools() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}},
                        "required": ["a"], "additionalProperties": false});
    let format = json!({"type": "json_schema",
                        "json_schema": {"name": "x", "schema": schema, "strict": true}});
    // Alone: the forced tool, with the client's schema as its input schema.
    let body = chat(json!({"messages": [user("hi")], "response_format": format}));
    assert_eq!(body["tools"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["tools"][0]["name"], "tollgate_json_answer");
    assert_eq!(body["tools"][0]["input_schema"], schema);
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "tollgate_json_answer"})
    );
    assert!(body.get("output_config").is_none(), "{body}");
    // With the client's tools: structured outputs (`output_config.format`).
    let tool = json!({"type": "function", "function": {"name": "f"}});
    let body = chat(json!({"messages": [user("hi")], "response_format": format,
                           "tools": [tool]}));
    assert_eq!(
        body["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
    assert_eq!(body["tools"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["tools"][0]["name"], "f");
    // A schema of something else than an object: structured outputs too.
    let array = json!({"type": "array", "items": {"type": "string"}});
    let body = chat(json!({"messages": [user("hi")], "response_format":
        {"type": "json_schema", "json_schema": {"name": "x", "schema": array}}}));
    assert_eq!(
        body["output_config"],
        json!({"format": {"type": "json_schema", "schema": array}})
    );
    assert!(body.get("tools").is_none(), "{body}");
    let body = chat(json!({"messages": [user("hi")], "response_format": {"type": "text"}}));
    assert!(body.get("output_config").is_none());
}

#[test]
fn json_mode_is_one_forced_tool_whose_input_is_the_answer() {
    let body = chat(json!({"messages": [user("hi")], "response_format": {"type": "json_object"}}));
    assert_eq!(body["tools"][0]["name"], "tollgate_json_answer");
    assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "tollgate_json_answer"})
    );
    assert!(body.get("response_format").is_none());
    assert!(body.get("output_config").is_none());
    let tool = json!({"type": "function", "function": {"name": "f"}});
    let err = chat_err(json!({"messages": [user("hi")], "tools": [tool],
                              "response_format": {"type": "json_object"}}));
    assert_eq!(err.param.as_deref(), Some("response_format"));
    let reserved = json!({"type": "function", "function": {"name": "tollgate_json_answer"}});
    let err = chat_err(json!({"messages": [user("hi")], "tools": [reserved]}));
    assert_eq!(err.param.as_deref(), Some("tools[0].function.name"));

    // The forced call comes back as the message's text, a normal stop.
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "tollgate_json_answer",
                     "input": {"city": "Paris", "n": 2}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5}});
    let got = respond(RouteKind::Chat, &answer.to_string()).unwrap();
    let message = &got["choices"][0]["message"];
    assert_eq!(
        serde_json::from_str::<Value>(message["content"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris", "n": 2})
    );
    assert!(message.get("tool_calls").is_none(), "{got}");
    assert_eq!(got["choices"][0]["finish_reason"], "stop");

    // Streamed: the input's fragments are content deltas.
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let input = [
        event("message_start", json!({"type": "message_start", "message": {"id": "msg_1",
            "model": "claude-test", "usage": {"input_tokens": 10, "output_tokens": 1}}})),
        event("content_block_start", json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "tollgate_json_answer", "input": {}}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}})),
        event("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        event("message_delta", json!({"type": "message_delta",
            "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}})),
        event("message_stop", json!({"type": "message_stop"})),
    ]
    .concat();
    let (out, _) = run(RouteKind::Chat, false, input.as_bytes());
    let f = frames(&out);
    let text: String = f
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(text, "{\"city\": \"Paris\"}");
    assert!(
        f.iter()
            .all(|c| c.pointer("/choices/0/delta/tool_calls").is_none())
    );
    let finish: Vec<&Value> = f
        .iter()
        .filter_map(|c| c.pointer("/choices/0/finish_reason"))
        .filter(|r| !r.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("stop")]);
}

// ---- content parts ----

#[test]
fn image_and_file_parts() {
    let body = chat(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
    ]}]}));
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
        ])
    );
}

#[test]
fn unsupported_parts_are_refused_with_their_position() {
    let cases = [
        json!({"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}),
        json!({"type": "image_url", "image_url": {"url": "ftp://x"}}),
        json!({"type": "file", "file": {"file_id": "file-1"}}),
        json!({"type": "text", "text": 3}),
        json!({"text": "no type"}),
        json!("bare string"),
    ];
    for part in cases {
        let err = chat_err(json!({"messages": [user("a"), {"role": "user", "content": [part]}]}));
        assert_eq!(err.param.as_deref(), Some("messages[1].content[0]"));
    }
}

// ---- tools ----

#[test]
fn tools_tool_calls_and_tool_results() {
    let request = json_fixture("tools-request.json");
    let body = chat(request);
    let expected: Value = json_fixture("tools-request.expected.json");
    assert_eq!(body, expected);
}

#[test]
fn tool_choice_mapping() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let cases = [
        (json!("auto"), json!({"type": "auto"})),
        (json!("required"), json!({"type": "any"})),
        (json!("none"), json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ];
    for (choice, expected) in cases {
        let body = chat(json!({"messages": [user("hi")], "tools": tools, "tool_choice": choice}));
        assert_eq!(body["tool_choice"], expected);
        assert_eq!(
            body["tools"][0]["input_schema"],
            json!({"type": "object", "properties": {}})
        );
    }
    let body =
        chat(json!({"messages": [user("hi")], "tools": tools, "parallel_tool_calls": false}));
    assert_eq!(
        body["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    let body = chat(
        json!({"messages": [user("hi")], "tools": tools, "tool_choice": "required", "parallel_tool_calls": false}),
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    let body = chat(json!({"messages": [user("hi")], "tools": tools, "parallel_tool_calls": true}));
    assert!(body.get("tool_choice").is_none());
    assert!(body.get("parallel_tool_calls").is_none());
    for bad in [json!("sometimes"), json!({"type": "function"}), json!(3)] {
        let err = chat_err(json!({"messages": [user("hi")], "tools": tools, "tool_choice": bad}));
        assert_eq!(err.param.as_deref(), Some("tool_choice"));
    }
}

#[test]
fn malformed_tools_and_tool_calls_are_refused() {
    let cases = [
        (json!({"tools": {"a": 1}}), "tools"),
        (
            json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}),
            "tools[0]",
        ),
        (
            json!({"tools": [{"type": "function", "function": {}}]}),
            "tools[0]",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}),
            "tools[0].function.parameters",
        ),
    ];
    for (extra, param) in cases {
        let mut body = object(json!({"messages": [user("hi")]}));
        body.extend(object(extra));
        let err = chat_err(Value::Object(body));
        assert_eq!(err.param.as_deref(), Some(param));
    }
    let call = |args: Value| {
        json!({"messages": [user("hi"), {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": args}}]}]})
    };
    for bad in [json!("{not json"), json!("[1,2]"), json!("42")] {
        let err = chat_err(call(bad));
        assert_eq!(
            err.param.as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
    }
    let body = chat(call(json!("")));
    assert_eq!(body["messages"][1]["content"][0]["input"], json!({}));
    let err = chat_err(json!({"messages": [user("hi"), {"role": "tool", "content": "r"}]}));
    assert_eq!(err.param.as_deref(), Some("messages[1].tool_call_id"));
    let err = chat_err(json!({"messages": [user("hi"), {"role": "assistant", "tool_calls": {}}]}));
    assert_eq!(err.param.as_deref(), Some("messages[1].tool_calls"));
}

// ---- hostile inputs ----

#[test]
fn hostile_messages_give_specific_errors() {
    let cases = [
        (json!({"messages": "hi"}), "messages"),
        (json!({}), "messages"),
        (json!({"messages": [1]}), "messages[0]"),
        (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
        (
            json!({"messages": [{"role": 7, "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "function", "name": "f", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": 42}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": {"text": "x"}}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "system", "content": 1}, user("x")]}),
            "messages[0].content",
        ),
    ];
    for (body, param) in cases {
        let err = chat_err(body.clone());
        assert_eq!(err.param.as_deref(), Some(param), "{body}");
    }
}

#[test]
fn unicode_content_survives() {
    let text = "Ünïcødé 🚀 — 日本語のテキスト \u{0000} \"quotes\"";
    let body = chat(
        json!({"messages": [{"role": "system", "content": "Réponds en français 🇫🇷"}, user(text)]}),
    );
    assert_eq!(body["messages"][0]["content"], text);
    assert_eq!(body["system"], "Réponds en français 🇫🇷");
    let out = respond(
        RouteKind::Chat,
        &json!({"content": [{"type": "text", "text": text}], "stop_reason": "end_turn"})
            .to_string(),
    )
    .unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], text);
}

#[test]
fn huge_numbers_do_not_panic() {
    let body = chat(json!({"messages": [user("hi")], "temperature": 1e308, "top_k": u64::MAX}));
    assert_eq!(body["top_k"], u64::MAX);
    // Anthropic's own limits apply upstream; we only require a positive integer.
    assert_eq!(
        chat(json!({"messages": [user("hi")], "max_tokens": u64::MAX}))["max_tokens"],
        u64::MAX
    );
    let out = respond(
        RouteKind::Chat,
        r#"{"content":[],"usage":{"input_tokens":18446744073709551615,"output_tokens":18446744073709551615,"cache_read_input_tokens":1e400}}"#,
    );
    // 1e400 is not representable: serde_json rejects it as a number → a decode failure.
    assert!(out.is_err());
    let out = respond(
        RouteKind::Chat,
        r#"{"content":[],"usage":{"input_tokens":18446744073709551615,"output_tokens":18446744073709551615,"cache_read_input_tokens":-3}}"#,
    )
    .unwrap();
    assert_eq!(out["usage"]["total_tokens"], u64::MAX);
    assert_eq!(out["usage"]["completion_tokens"], u64::MAX);
}

// ---- responses ----

#[test]
fn chat_response_with_text_tool_use_and_cache_usage() {
    let out = respond(RouteKind::Chat, &fixture("chat-response.json")).unwrap();
    assert_eq!(out["id"], "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(out["object"], "chat.completion");
    assert!(out["created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(out["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(
        out["choices"],
        json!([{
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "I'll check the weather in Paris.",
                "tool_calls": [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}],
            },
        }])
    );
    // prompt = input 412 + cache write 100 + cache read 2000.
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 2512, "completion_tokens": 88, "total_tokens": 2600,
               "prompt_tokens_details": {"cached_tokens": 2000}})
    );
}

#[test]
fn tool_only_answer_has_null_content() {
    let out = respond(
        RouteKind::Chat,
        r#"{"id":"msg_1","content":[{"type":"tool_use","id":"t1","name":"f"}],"usage":{"input_tokens":1,"output_tokens":2}}"#,
    )
    .unwrap();
    let message = &out["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(message["tool_calls"][0]["function"]["arguments"], "{}");
    // absent stop_reason with tool calls reads as tool_calls
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    );
}

#[test]
fn finish_reason_mapping() {
    for (stop, expected) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ] {
        let body = json!({"content": [{"type": "text", "text": "x"}], "stop_reason": stop});
        let out = respond(RouteKind::Chat, &body.to_string()).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], expected, "{stop}");
        let body = json!({"completion": "x", "stop_reason": stop});
        let out = respond(RouteKind::Completions, &body.to_string()).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], expected, "{stop}");
    }
}

#[test]
fn usage_is_always_an_object() {
    for usage in [
        json!(null),
        json!({"foo": 1, "bar": 2}),
        json!("none"),
        json!({"input_tokens": "3"}),
    ] {
        let body = json!({"content": [{"type": "text", "text": "x"}], "usage": usage});
        let out = respond(RouteKind::Chat, &body.to_string()).unwrap();
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        );
    }
    let out = respond(RouteKind::Chat, r#"{"content":[],"usage":{"input_tokens":5,"output_tokens":7,"cache_read_input_tokens":0}}"#).unwrap();
    assert_eq!(
        out["usage"]["prompt_tokens_details"],
        json!({"cached_tokens": 0})
    );
    assert_eq!(out["usage"]["total_tokens"], 12);
    assert_eq!(out["choices"][0]["message"]["content"], "");
}

#[test]
fn id_and_model_fallbacks() {
    let out = respond(RouteKind::Chat, r#"{"content":[{"type":"text","text":"a"},{"type":"thinking","thinking":"hm"},{"type":"text","text":"b"}]}"#).unwrap();
    let id = out["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-") && id.len() > 20, "{id}");
    assert_eq!(out["model"], "claude-sonnet-4-5");
    assert_eq!(out["choices"][0]["message"]["content"], "ab");
    let again = respond(RouteKind::Chat, r#"{"content":[]}"#).unwrap();
    assert_ne!(again["id"], out["id"]);
}

#[test]
fn completions_response() {
    let out = respond(
        RouteKind::Completions,
        &fixture("completions-response.json"),
    )
    .unwrap();
    assert_eq!(out["id"], "cmpl-compl_01EjSLYs2cpKZDHMpcx9Lm3Z");
    assert_eq!(out["object"], "text_completion");
    assert_eq!(out["model"], "claude-2.1");
    assert_eq!(
        out["choices"],
        json!([{"index": 0, "text": " Hello! My name is Claude.", "finish_reason": "stop"}])
    );
    // `/v1/complete` counts nothing: left out, for the proxy to estimate.
    assert_eq!(out["usage"], json!({}));
    let out = respond(
        RouteKind::Completions,
        r#"{"content":[{"type":"text","text":"hi"}],"stop_reason":"max_tokens"}"#,
    )
    .unwrap();
    assert_eq!(out["choices"][0]["text"], "hi");
    assert_eq!(out["choices"][0]["finish_reason"], "length");
    assert!(out["id"].as_str().unwrap().starts_with("cmpl-"));
}

#[test]
fn untranslatable_responses() {
    let cases = [
        (RouteKind::Chat, "", "empty response body"),
        (RouteKind::Chat, "  \n", "empty response body"),
        (
            RouteKind::Chat,
            "<html>oops</html>",
            "failed to decode llm/v1/chat response",
        ),
        (
            RouteKind::Chat,
            "[1,2]",
            "llm/v1/chat response is not a JSON object",
        ),
        (
            RouteKind::Chat,
            r#"{"nothing_object":{}}"#,
            "'content' not in anthropic://llm/v1/chat response",
        ),
        (
            RouteKind::Chat,
            r#"{"content":"text"}"#,
            "'content' not in anthropic://llm/v1/chat response",
        ),
        (
            RouteKind::Chat,
            r#"{"content":[{"type":"text"}]}"#,
            "text content block without text",
        ),
        (
            RouteKind::Chat,
            r#"{"content":[{"type":"tool_use","input":{}}]}"#,
            "tool_use content block without id or name",
        ),
        (
            RouteKind::Chat,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            "upstream returned an error: Overloaded",
        ),
        (RouteKind::Completions, "", "empty response body"),
        (
            RouteKind::Completions,
            "nope",
            "failed to decode llm/v1/completions response",
        ),
        (
            RouteKind::Completions,
            r#"{"completion":5}"#,
            "'completion' not in anthropic://llm/v1/completions response",
        ),
    ];
    for (kind, body, reason) in cases {
        assert_eq!(
            respond(kind, body).unwrap_err(),
            TranslateError(reason.into()),
            "{body}"
        );
    }
}

// ---- errors ----

#[test]
fn error_normalisation() {
    let e = Anthropic.error(400, fixture("error.json").as_bytes());
    assert_eq!(e.message, "max_tokens: Field required");
    assert_eq!(e.kind, "invalid_request_error");
    assert_eq!(e.code, None);
    assert_eq!(
        e.to_openai(),
        json!({"error": {"message": "max_tokens: Field required", "type": "invalid_request_error", "param": null, "code": null}})
    );

    let e = Anthropic.error(429, br#"{"type":"error","error":{"type":"rate_limit_error","message":"Monthly spend limit","details":{"error_code":"enforced_spend_limit_reached"}}}"#);
    assert_eq!(e.kind, "rate_limit_error");
    assert_eq!(e.code, Some(json!("enforced_spend_limit_reached")));

    let e = Anthropic.error(500, fixture("error.html").as_bytes());
    assert_eq!(e.kind, "upstream_error");
    assert_eq!(e.message, "upstream answered HTTP 500");

    let e = Anthropic.error(502, b"");
    assert_eq!(e.kind, "upstream_error");
    assert_eq!(e.message, "upstream answered HTTP 502");

    let e = Anthropic.error(
        401,
        br#"{"error":{"type":"authentication_error","message":"Invalid API Key"}}"#,
    );
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("authentication_error", "Invalid API Key")
    );
}

// ---- Kong conformance ----

/// Kong's unit fixtures (spec/fixtures/ai-proxy/unit) with Kong's unit-test config:
/// model claude-2.1, max_tokens 512, temperature 0.5, anthropic_version 2023-06-01.
#[test]
#[ignore = "needs TOLLGATE_KONG_FIXTURES (Kong's ai-proxy fixtures; .ci/run sets it)"]
fn kong_unit_fixtures_anthropic() {
    let dir = test_support::kong_dir();
    let read = |rel: &str| test_support::kong_json(&dir, &format!("unit/{rel}"));
    let o = options();
    let t = ModelOptions {
        max_tokens: Some(512),
        temperature: Some(0.5),
        ..Default::default()
    };
    let c = TranslateContext {
        model: "claude-2.1",
        ..ctx(&o, &t, None)
    };

    for (kind, file) in [
        (RouteKind::Chat, "llm-v1-chat.json"),
        (RouteKind::Completions, "llm-v1-completions.json"),
    ] {
        // Request: identical to Kong (no difference from Kong shows with this input: one
        // system message, alternating turns, no stop/top_p/top_k).
        let req = Anthropic
            .request(&c, kind, object(read(&format!("requests/{file}"))))
            .unwrap();
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body,
            read(&format!("expected-requests/anthropic/{file}")),
            "{file}"
        );

        // Response.
        let real = serde_json::to_vec(&read(&format!("real-responses/anthropic/{file}"))).unwrap();
        let mut ours = object(Anthropic.response(&c, kind, &real).unwrap());
        let mut kong = object(read(&format!("expected-responses/anthropic/{file}")));
        // Differences from Kong, 4: our response has an `id`; Kong's has none.
        assert!(ours.remove("id").is_some_and(|id| id.is_string()));
        // Differences from Kong, 4: usage is always an object (Kong omits it for
        // completions); `/v1/complete` counts nothing, so its counts are left for the proxy
        // to estimate (docs/behaviour.md, "Responses").
        let usage = ours.remove("usage").expect("usage");
        match kind {
            RouteKind::Chat => assert!(usage["total_tokens"].is_u64(), "{usage}"),
            RouteKind::Completions => assert_eq!(usage, json!({})),
        }
        kong.remove("usage");
        // "Responses": `created` is part of the OpenAI shape we always emit; Kong omits it.
        assert!(ours.remove("created").is_some_and(|c| c.is_i64()));
        // Differences from Kong, 4: finish_reason mapped (Kong passes `stop_sequence` through).
        assert_eq!(kong["choices"][0]["finish_reason"], "stop_sequence");
        assert_eq!(ours["choices"][0]["finish_reason"], "stop");
        kong["choices"][0]["finish_reason"] = json!("stop");
        assert_eq!(Value::Object(ours), Value::Object(kong), "{file}");
    }
}

// ---- streaming ----

use crate::llm::{StreamMeta, Transcode, assert_split_invariant};

fn stream_meta(kind: RouteKind, include_usage: bool) -> StreamMeta {
    StreamMeta {
        id: "chatcmpl-test".into(),
        created: 1_700_000_000,
        model: "claude-test".into(),
        kind,
        include_usage,
        collect_text: true,
    }
}

fn transcoder(kind: RouteKind) -> Box<dyn StreamTranscoder> {
    let (o, t) = (options(), ModelOptions::default());
    Anthropic
        .stream(&ctx(&o, &t, None), kind)
        .expect("anthropic streams")
}

/// Transcodes `input` whole; returns the client's bytes and the transcoder's state.
fn run(kind: RouteKind, include_usage: bool, input: &[u8]) -> (Vec<u8>, Transcode) {
    let mut t = Transcode::new(transcoder(kind), stream_meta(kind, include_usage), "test");
    let mut out = t.feed(input);
    out.extend(t.upstream_closed());
    (out, t)
}

/// Every split gives the same bytes, and they are the expected file's.
fn check_fixture(name: &str, kind: RouteKind, include_usage: bool) -> Vec<u8> {
    let input = fixture(&format!("{name}.sse"));
    let got = assert_split_invariant(
        || transcoder(kind),
        &stream_meta(kind, include_usage),
        input.as_bytes(),
    );
    let expected = fixture(&format!("{name}.expected"));
    assert_eq!(String::from_utf8_lossy(&got), expected, "{name}");
    got
}

#[test]
fn stream_text_with_thinking_ping_and_unknown_events() {
    let got = check_fixture("stream-text", RouteKind::Chat, true);
    let f = frames(&got);
    assert_eq!(
        f[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let text: String = f
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(text, "Hello, wörld! 🌍\nA \"quoted\" line.");
    assert_eq!(f[f.len() - 3]["choices"][0]["finish_reason"], "stop");
    // prompt = input 25 + cache write 10 + cache read 100, as non-streaming.
    assert_eq!(
        f[f.len() - 2],
        json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000,
               "model": "claude-test", "choices": [],
               "usage": {"prompt_tokens": 135, "completion_tokens": 12, "total_tokens": 147,
                         "prompt_tokens_details": {"cached_tokens": 100}}})
    );
    assert_eq!(f[f.len() - 1], "[DONE]");

    let input = fixture("stream-text.sse");
    let (with_usage, t) = run(RouteKind::Chat, true, input.as_bytes());
    assert_eq!(with_usage, got);
    let e = t.emitter();
    assert_eq!(e.tokens(), (135, 12));
    assert_eq!(
        e.reported_usage(),
        ReportedUsage {
            prompt: Some(135),
            completion: Some(12),
            cached: Some(100)
        }
    );
    assert!(e.usage_is_final());
    assert_eq!(e.response_model(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(e.finish_reason(), Some("stop"));

    // Without include_usage: the same frames less the usage chunk.
    let (without, t) = run(RouteKind::Chat, false, input.as_bytes());
    let mut want = frames(&got);
    want.remove(want.len() - 2);
    assert_eq!(frames(&without), want);
    assert!(frames(&without).iter().all(|c| c.get("usage").is_none()));
    assert_eq!(t.emitter().tokens(), (135, 12));
}

#[test]
fn stream_two_parallel_tools_with_split_json() {
    let got = check_fixture("stream-two-tools", RouteKind::Chat, false);
    let f = frames(&got);
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for chunk in &f {
        let Some(deltas) = chunk
            .pointer("/choices/0/delta/tool_calls")
            .and_then(Value::as_array)
        else {
            continue;
        };
        assert_eq!(deltas.len(), 1);
        let d = &deltas[0];
        let index = d["index"].as_u64().expect("index") as usize;
        if let Some(id) = d.get("id") {
            assert_eq!(index, calls.len(), "indexes count tool calls from 0");
            assert_eq!(d["type"], "function");
            calls.push((
                id.as_str().expect("id").to_string(),
                d["function"]["name"].as_str().expect("name").to_string(),
                String::new(),
            ));
        }
        calls[index]
            .2
            .push_str(d["function"]["arguments"].as_str().expect("arguments"));
    }
    let parsed: Vec<(String, String, Value)> = calls
        .into_iter()
        .map(|(id, name, args)| {
            let args = serde_json::from_str(&args).expect("arguments are JSON");
            (id, name, args)
        })
        .collect();
    assert_eq!(
        parsed,
        vec![
            (
                "toolu_01ParisWeather".to_string(),
                "get_weather".to_string(),
                json!({"city": "Paris", "unit": "celsius"})
            ),
            (
                "toolu_02TokyoWeather".to_string(),
                "get_weather".to_string(),
                json!({"city": "Tokyo", "note": "say \"hi\" 👋", "days": [10, 2]})
            ),
        ]
    );
    assert_eq!(
        f[1]["choices"][0]["delta"]["content"],
        "Let me check both cities."
    );
    assert_eq!(f[f.len() - 2]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(f[f.len() - 1], "[DONE]");
    assert!(f.iter().all(|c| c.get("usage").is_none()));

    let (_, t) = run(
        RouteKind::Chat,
        false,
        fixture("stream-two-tools.sse").as_bytes(),
    );
    assert_eq!(t.emitter().tokens(), (310, 95));
    assert_eq!(t.emitter().reported_usage().cached, Some(0));
}

#[test]
fn stream_error_event_ends_with_the_error_frame() {
    let got = check_fixture("stream-error", RouteKind::Chat, true);
    let f = frames(&got);
    assert_eq!(
        f.last().expect("frames"),
        &json!({"error": {"message": "Overloaded", "type": "overloaded_error",
                          "param": null, "code": null}})
    );
    assert!(!f.contains(&json!("[DONE]")));
    assert!(f.iter().all(|c| c.get("usage").is_none()));
    let (_, t) = run(
        RouteKind::Chat,
        true,
        fixture("stream-error.sse").as_bytes(),
    );
    assert_eq!(t.emitter().end(), crate::llm::StreamEnd::Failed);
    assert_eq!(t.emitter().text(), "Partial ans");
    // Prompt from message_start; completion not closed: at least the text estimate.
    assert_eq!(t.emitter().tokens(), (40, 3));
}

#[test]
fn stream_legacy_completion() {
    let got = check_fixture("stream-complete", RouteKind::Completions, true);
    let f = frames(&got);
    assert!(
        f.iter()
            .all(|c| c.get("object").is_none_or(|o| o == "text_completion"))
    );
    let text: String = f
        .iter()
        .filter_map(|c| c.pointer("/choices/0/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, " Hello! My name is Claude.");
    assert_eq!(f[f.len() - 3]["choices"][0]["finish_reason"], "stop");
    // No usage in this API: the emitter's estimate (26 characters).
    assert_eq!(
        f[f.len() - 2]["usage"],
        json!({"prompt_tokens": 0, "completion_tokens": 7, "total_tokens": 7})
    );
    assert_eq!(f[f.len() - 1], "[DONE]");
    let (_, t) = run(
        RouteKind::Completions,
        true,
        fixture("stream-complete.sse").as_bytes(),
    );
    assert_eq!(t.emitter().response_model(), Some("claude-2.1"));
    assert_eq!(t.emitter().reported_usage(), ReportedUsage::default());
}

#[test]
fn stream_messages_events_on_the_completions_route_give_text_only() {
    let input = fixture("stream-two-tools.sse");
    let got = assert_split_invariant(
        || transcoder(RouteKind::Completions),
        &stream_meta(RouteKind::Completions, false),
        input.as_bytes(),
    );
    let f = frames(&got);
    assert_eq!(
        f,
        vec![
            json!({"id": "chatcmpl-test", "object": "text_completion", "created": 1_700_000_000,
                   "model": "claude-test",
                   "choices": [{"text": "Let me check both cities.", "index": 0, "logprobs": null, "finish_reason": null}]}),
            json!({"id": "chatcmpl-test", "object": "text_completion", "created": 1_700_000_000,
                   "model": "claude-test",
                   "choices": [{"text": "", "index": 0, "logprobs": null, "finish_reason": "tool_calls"}]}),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn stream_cut_short() {
    let input = fixture("stream-text.sse");
    // Before message_delta: no finish was seen, so the client is told it is incomplete.
    let cut = input
        .find("event: message_delta")
        .expect("has message_delta");
    let (out, t) = run(RouteKind::Chat, true, &input.as_bytes()[..cut]);
    let f = frames(&out);
    let last = f.last().expect("frames");
    assert_eq!(last["error"]["type"], "upstream_error");
    assert!(!f.contains(&json!("[DONE]")));
    assert_eq!(t.emitter().end(), crate::llm::StreamEnd::Failed);
    // Mid-event (no blank line yet): the partial event is flushed, still no finish.
    let (out, _) = run(RouteKind::Chat, true, &input.as_bytes()[..cut - 5]);
    assert!(frames(&out).last().expect("frames").get("error").is_some());
    // After message_delta but before message_stop: the answer is complete.
    let cut = input.find("event: message_stop").expect("has message_stop");
    let (out, t) = run(RouteKind::Chat, true, &input.as_bytes()[..cut]);
    assert_eq!(frames(&out).last().expect("frames"), "[DONE]");
    assert_eq!(t.emitter().tokens(), (135, 12));
}

#[test]
fn stream_invalid_json_is_an_error() {
    let mut emitter = crate::llm::ChunkEmitter::new(stream_meta(RouteKind::Chat, false));
    let mut s = AnthropicStream::new(RouteKind::Chat);
    let r = s.feed(
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\n\n",
        &mut emitter,
    );
    assert!(matches!(r, Err(StreamError::Invalid(_))), "{r:?}");
    let (out, _) = run(
        RouteKind::Chat,
        false,
        b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\nevent: message_delta\ndata: not json\n\n",
    );
    let f = frames(&out);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[1]["error"]["code"], "stream_transformation_failed");
    // A tool_use block without its id cannot be announced.
    let (out, _) = run(
        RouteKind::Chat,
        false,
        br#"event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","name":"f"}}

"#,
    );
    assert_eq!(
        frames(&out).last().expect("frames")["error"]["code"],
        "stream_transformation_failed"
    );
}

#[test]
fn stream_unknown_events_are_skipped_unparsed() {
    let input = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n\
        event: brand_new_event\ndata: <not json>\n\n\
        event: ping\n\n\
        : a comment\n\n\
        data: {\"type\":\"another_new_type\"}\n\n\
        event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"brand_new_block\"}}\n\n\
        event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"brand_new_delta\",\"x\":1}}\n\n\
        event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":4}}\n\n\
        event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let got = assert_split_invariant(
        || transcoder(RouteKind::Chat),
        &stream_meta(RouteKind::Chat, false),
        input.as_bytes(),
    );
    let f = frames(&got);
    assert_eq!(f.len(), 3, "{f:?}");
    assert_eq!(f[1]["choices"][0]["finish_reason"], "length");
    assert_eq!(f[2], "[DONE]");
}

#[test]
fn stream_server_tools_are_skipped_and_argumentless_tools_get_braces() {
    // Events without `event:` names (a relay that drops them) are read by their type.
    let input = r#"data: {"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}

data: {"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}

data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"query\":\"x\"}"}}

data: {"type":"content_block_stop","index":0}

data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_now","name":"get_time","input":{}}}

data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

data: {"type":"content_block_stop","index":1}

data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}

data: {"type":"message_stop"}

"#;
    let got = assert_split_invariant(
        || transcoder(RouteKind::Chat),
        &stream_meta(RouteKind::Chat, false),
        input.as_bytes(),
    );
    let f = frames(&got);
    assert_eq!(f.len(), 5, "{f:?}");
    assert_eq!(
        f[1]["choices"][0]["delta"]["tool_calls"][0],
        json!({"index": 0, "id": "toolu_now", "type": "function",
               "function": {"name": "get_time", "arguments": ""}})
    );
    assert_eq!(
        f[2]["choices"][0]["delta"]["tool_calls"][0],
        json!({"index": 0, "function": {"arguments": "{}"}})
    );
    assert_eq!(f[3]["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn stream_usage_in_message_delta_updates_the_prompt_side() {
    let input = r#"event: message_start
data: {"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":5,"cache_read_input_tokens":20,"output_tokens":1}}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":6,"cache_creation_input_tokens":4,"output_tokens":30}}

event: message_stop
data: {"type":"message_stop"}

"#;
    let (_, t) = run(RouteKind::Chat, true, input.as_bytes());
    assert_eq!(t.emitter().tokens(), (6 + 4 + 20, 30));
    assert_eq!(t.emitter().reported_usage().cached, Some(20));
    // message_delta without usage: the opening count is not taken as the closing one.
    let input = input.replace(
        r#","usage":{"input_tokens":6,"cache_creation_input_tokens":4,"output_tokens":30}"#,
        "",
    );
    let (_, t) = run(RouteKind::Chat, true, input.as_bytes());
    assert!(!t.emitter().usage_is_final());
}

#[test]
fn stream_is_requested_upstream_without_stream_options() {
    let body = chat(json!({"messages": [user("hi")], "stream": true,
                           "stream_options": {"include_usage": true}}));
    assert_eq!(body["stream"], true);
    assert!(body.get("stream_options").is_none());
    let (_, body) = translate(
        RouteKind::Completions,
        json!({"prompt": "hi", "stream": true, "stream_options": {"include_usage": false}}),
    )
    .unwrap();
    assert_eq!(body["stream"], true);
    assert!(body.get("stream_options").is_none());
}

#[test]
fn tool_ids_anthropic_refuses_are_rewritten_consistently() {
    let body = chat(json!({"messages": [
        user("hi"),
        {"role": "assistant", "tool_calls": [
            {"id": "functions.get_weather:0", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "call_ok-1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "a"},
        {"role": "tool", "tool_call_id": "call_ok-1", "content": "b"},
    ]}));
    let uses = &body["messages"][1]["content"];
    let results = &body["messages"][2]["content"];
    assert_eq!(uses[1]["id"], "call_ok-1");
    assert_eq!(results[1]["tool_use_id"], "call_ok-1");
    let rewritten = uses[0]["id"].as_str().expect("id");
    assert_eq!(results[0]["tool_use_id"], rewritten);
    assert!(
        rewritten
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{rewritten}"
    );
    assert_ne!(tool_id("a.b"), tool_id("a:b"));
    assert_eq!(tool_id(""), "tgx_");
}

#[test]
fn tool_schema_without_type_gets_object() {
    let body = chat(
        json!({"messages": [user("hi")], "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"properties": {"a": {"type": "string"}}}}}]}),
    );
    assert_eq!(
        body["tools"][0]["input_schema"],
        json!({"type": "object", "properties": {"a": {"type": "string"}}})
    );
}

#[test]
fn assistant_text_with_tool_calls_then_tool_results_merge_into_one_user_turn() {
    let body = chat(json!({"messages": [
        user("q"),
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."}], "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
            {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": {"y": 2}}},
        ]},
        {"role": "tool", "tool_call_id": "call_a", "content": "r1"},
        {"role": "tool", "tool_call_id": "call_b", "content": ""},
    ], "tools": [
        {"type": "function", "function": {"name": "f"}},
        {"type": "function", "function": {"name": "g"}},
    ], "tool_choice": "none", "parallel_tool_calls": false}));
    assert_eq!(
        body["messages"],
        json!([
            user("q"),
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_a", "name": "f", "input": {"x": 1}},
                {"type": "tool_use", "id": "call_b", "name": "g", "input": {"y": 2}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_a", "content": "r1"},
                {"type": "tool_result", "tool_use_id": "call_b"},
            ]},
        ])
    );
    // `none` cannot carry disable_parallel_tool_use.
    assert_eq!(body["tool_choice"], json!({"type": "none"}));
    let body = chat(
        json!({"messages": [user("q")], "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": false}),
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})
    );
}

/// Anthropic's rate-limit headers reach the client under OpenAI's names, resets as
/// OpenAI's durations; the tokens group is the combined limit when sent, else the input or
/// output limit with less remaining.
#[test]
fn rate_limit_headers_get_openai_names() {
    let now = chrono::DateTime::parse_from_rfc3339("2025-08-21T12:40:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let collect = |headers: &[(&str, &str)]| {
        let owned: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let mut out = Vec::new();
        Anthropic.rate_limit_headers(&owned, now, &mut |n, v| out.push((n, v.into_owned())));
        out
    };
    let got = collect(&[
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "49"),
        ("anthropic-ratelimit-requests-reset", "2025-08-21T12:40:59Z"),
        ("anthropic-ratelimit-tokens-limit", "80000"),
        ("anthropic-ratelimit-tokens-remaining", "79000"),
        ("anthropic-ratelimit-tokens-reset", "2025-08-21T12:46:00Z"),
        ("anthropic-ratelimit-input-tokens-remaining", "1"),
        ("retry-after", "3"),
        ("content-type", "application/json"),
    ]);
    let expected: Vec<(&str, String)> = vec![
        ("x-ratelimit-limit-requests", "50".into()),
        ("x-ratelimit-remaining-requests", "49".into()),
        ("x-ratelimit-reset-requests", "59s".into()),
        ("x-ratelimit-limit-tokens", "80000".into()),
        ("x-ratelimit-remaining-tokens", "79000".into()),
        ("x-ratelimit-reset-tokens", "6m0s".into()),
    ];
    assert_eq!(got, expected);

    // Input and output limits only: the one with less remaining; a past reset is 0s.
    let got = collect(&[
        ("anthropic-ratelimit-input-tokens-limit", "40000"),
        ("anthropic-ratelimit-input-tokens-remaining", "39000"),
        (
            "anthropic-ratelimit-input-tokens-reset",
            "2025-08-21T12:40:01Z",
        ),
        ("anthropic-ratelimit-output-tokens-limit", "8000"),
        ("anthropic-ratelimit-output-tokens-remaining", "100"),
        (
            "anthropic-ratelimit-output-tokens-reset",
            "2025-08-21T12:39:00Z",
        ),
    ]);
    let expected: Vec<(&str, String)> = vec![
        ("x-ratelimit-limit-tokens", "8000".into()),
        ("x-ratelimit-remaining-tokens", "100".into()),
        ("x-ratelimit-reset-tokens", "0s".into()),
    ];
    assert_eq!(got, expected);

    // None of Anthropic's headers: nothing; an unreadable reset is dropped.
    assert!(collect(&[("retry-after", "3")]).is_empty());
    let got = collect(&[("anthropic-ratelimit-requests-reset", "soon")]);
    assert!(got.is_empty(), "{got:?}");
}
