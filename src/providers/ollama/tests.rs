use serde_json::{Value, json};

use crate::llm::sse_payloads as frames;
use crate::llm::{StreamMeta, StreamTranscoder, assert_split_invariant};
use crate::providers::test_support::*;
use crate::providers::{ProviderKind, RequestError, RouteKind, TranslateError};
use crate::vocab::{Llama2Format, MistralFormat};

const CHAT: RouteKind = RouteKind::Chat;
const COMPLETIONS: RouteKind = RouteKind::Completions;
const URL: &str = "http://ollama.example.com:11434/api/chat?keep=1";

fn setup() -> Setup {
    Setup::new(ProviderKind::Llama2(Llama2Format::Ollama), "llama3.2").url(URL)
}

fn req(s: &Setup, kind: RouteKind, body: Value) -> Result<(String, Value), RequestError> {
    let r = translator(s.provider).request(&s.ctx(), kind, object(body))?;
    assert!(r.headers.is_empty());
    Ok((r.url, body_json(&r.body)))
}

fn param(s: &Setup, kind: RouteKind, body: Value) -> Option<String> {
    req(s, kind, body).expect_err("refused").param
}

fn resp(s: &Setup, kind: RouteKind, body: &[u8]) -> Result<Value, TranslateError> {
    translator(s.provider).response(&s.ctx(), kind, body)
}

#[test]
fn chat_request_maps_to_api_chat() {
    let s = setup();
    let client = json!({
        "model": "whatever",
        "messages": [
            {"role": "developer", "content": "Be kind."},
            {"role": "user", "content": [
                {"type": "text", "text": "Décris l'image"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": "briefly"}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "unknown", "content": "?"}
        ],
        "max_completion_tokens": 50, "max_tokens": 70, "temperature": 0.3, "top_p": 0.9, "top_k": 40,
        "seed": 11, "stop": "END", "presence_penalty": 0.5, "frequency_penalty": 0.1,
        "response_format": {"type": "json_object"}, "user": "u", "n": 1, "logprobs": false,
        "stream_options": {"include_usage": true}, "parallel_tool_calls": true,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": "auto"
    });
    let (url, body) = req(&s, CHAT, client).expect("ok");
    assert_eq!(url, URL, "the full upstream_url, query kept");
    assert_eq!(
        body,
        json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Décris l'image\nbriefly", "images": ["iVBORw0KGgo="]},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},
                    {"function": {"name": "now", "arguments": {}}}
                ]},
                {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
                {"role": "tool", "content": "?"}
            ],
            "stream": false,
            "options": {"num_predict": 50, "temperature": 0.3, "top_p": 0.9, "top_k": 40, "seed": 11,
                        "stop": ["END"], "presence_penalty": 0.5, "frequency_penalty": 0.1},
            "format": "json",
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        })
    );
}

#[test]
fn completions_request_maps_to_api_generate() {
    let s = setup();
    let (_, body) = req(
        &s,
        COMPLETIONS,
        json!({"prompt": "Why is the sky blue?", "suffix": " Done.", "stream": true}),
    )
    .expect("ok");
    assert_eq!(
        body,
        json!({"model": "llama3.2", "prompt": "Why is the sky blue?", "suffix": " Done.", "stream": true})
    );
    let (_, body) = req(&s, COMPLETIONS, json!({"prompt": ["only one"]})).expect("ok");
    assert_eq!(body["prompt"], json!("only one"));
}

#[test]
fn tuning_wins_and_formats_map() {
    let mut s = setup();
    s.tuning.max_tokens = Some(8);
    s.tuning.temperature = Some(0.0);
    s.tuning.top_k = Some(3);
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let (_, body) = req(&s, CHAT, json!({
        "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 100, "temperature": 1.0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"
    })).expect("ok");
    assert_eq!(
        body["options"],
        json!({"num_predict": 8, "temperature": 0.0, "top_k": 3})
    );
    assert_eq!(body["format"], schema);
    assert!(
        body.get("tools").is_none(),
        "tool_choice none sends no tools"
    );
    let (_, body) = req(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}],
                                         "response_format": {"type": "text"}}),
    )
    .expect("ok");
    assert!(body.get("format").is_none());
}

#[test]
fn unsupported_or_malformed_requests_are_refused() {
    let s = setup();
    let chat = |extra: Value| {
        let mut b = json!({"messages": [{"role": "user", "content": "x"}]});
        if let (Some(o), Value::Object(e)) = (b.as_object_mut(), extra) {
            o.extend(e);
        }
        b
    };
    let cases = [
        (chat(json!({"n": 3})), "n"),
        (chat(json!({"logit_bias": {"1": 2}})), "logit_bias"),
        (chat(json!({"logprobs": true})), "logprobs"),
        (chat(json!({"tool_choice": "required"})), "tool_choice"),
        (
            chat(json!({"tool_choice": {"type": "function", "function": {"name": "f"}}})),
            "tool_choice",
        ),
        (
            chat(json!({"response_format": {"type": "xml"}})),
            "response_format",
        ),
        (
            chat(json!({"response_format": {"type": "json_schema"}})),
            "response_format",
        ),
        (chat(json!({"stop": 5})), "stop"),
        (chat(json!({"temperature": "hot"})), "temperature"),
        (chat(json!({"tools": "all"})), "tools"),
        (json!({"messages": "hi"}), "messages"),
        (json!({"messages": [1]}), "messages[0]"),
        (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
        (
            json!({"messages": [{"role": "function", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": 3}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": {"text": "x"}}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
                {"function": {"name": "f", "arguments": "{}"}},
                {"function": {"name": "g", "arguments": "[1, 2]"}}]}]}),
            "messages[1].tool_calls[1].function.arguments",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 5}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]}),
            "messages[0].tool_calls[0].function.name",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c"}]}]}),
            "messages[0].tool_calls[0].function",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": {"id": "c"}}]}),
            "messages[0].tool_calls",
        ),
        (
            chat(json!({"tools": [{"type": "code_interpreter"}]})),
            "tools[0].type",
        ),
        (
            chat(
                json!({"tools": [{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {}}]}),
            ),
            "tools[1].function.name",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            param(&s, CHAT, body.clone()).as_deref(),
            Some(want),
            "{body}"
        );
    }
    assert_eq!(
        param(&s, COMPLETIONS, json!({"prompt": ["a", "b"]})).as_deref(),
        Some("prompt")
    );
    assert_eq!(
        param(&s, COMPLETIONS, json!({"prompt": {"x": 1}})).as_deref(),
        Some("prompt")
    );
    assert_eq!(
        param(&s, COMPLETIONS, json!({"prompt": "p", "echo": true})).as_deref(),
        Some("echo")
    );
    assert_eq!(
        param(&s, COMPLETIONS, json!({"prompt": "p", "best_of": 2})).as_deref(),
        Some("best_of")
    );
    assert_eq!(
        param(&s, COMPLETIONS, json!({"prompt": "p", "suffix": 1})).as_deref(),
        Some("suffix")
    );

    let mut s = setup();
    s.upstream_url = None;
    let e = req(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .expect_err("no url");
    assert!(e.message.contains("upstream_url"));
}

#[test]
fn chat_response_maps_to_chat_completion() {
    let s = setup();
    let out = resp(
        &s,
        CHAT,
        fixture("llama2", "ollama-chat-response.json").as_bytes(),
    )
    .expect("ok");
    assert!(
        out["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-"))
    );
    assert_eq!(out["object"], json!("chat.completion"));
    assert_eq!(out["created"], json!(1_751_919_739));
    assert_eq!(out["model"], json!("llama3.2"));
    assert_eq!(
        out["choices"],
        json!([{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "Il fait beau à Tōkyō ☀️"}}])
    );
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 169, "completion_tokens": 15, "total_tokens": 184})
    );
}

#[test]
fn tool_calls_get_ids_and_string_arguments() {
    let s = setup();
    let out = resp(
        &s,
        CHAT,
        fixture("llama2", "ollama-chat-response-tools.json").as_bytes(),
    )
    .expect("ok");
    let choice = &out["choices"][0];
    assert_eq!(choice["finish_reason"], json!("tool_calls"));
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert!(
        call["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("call_"))
    );
    assert_eq!(call["type"], json!("function"));
    assert_eq!(
        call["function"],
        json!({"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"})
    );
}

#[test]
fn generate_response_maps_to_text_completion() {
    let s = setup();
    let out = resp(
        &s,
        COMPLETIONS,
        fixture("llama2", "ollama-generate-response.json").as_bytes(),
    )
    .expect("ok");
    assert!(out["id"].as_str().is_some_and(|id| id.starts_with("cmpl-")));
    assert_eq!(out["object"], json!("text_completion"));
    assert_eq!(out["created"], json!(1_691_176_965));
    assert_eq!(
        out["choices"],
        json!([{"index": 0, "text": "The sky is blue because of Rayleigh scattering.",
                                       "logprobs": null, "finish_reason": "length"}])
    );
    // No prompt_eval_count (prompt cached): 0, not an error.
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 0, "completion_tokens": 10, "total_tokens": 10})
    );
}

#[test]
fn finish_reason_without_done_reason() {
    let mut s = setup();
    s.tuning.max_tokens = Some(12);
    let body =
        |n: u64| json!({"model": "m", "response": "x", "done": true, "eval_count": n}).to_string();
    assert_eq!(
        resp(&s, COMPLETIONS, body(12).as_bytes()).expect("ok")["choices"][0]["finish_reason"],
        json!("length")
    );
    assert_eq!(
        resp(&s, COMPLETIONS, body(11).as_bytes()).expect("ok")["choices"][0]["finish_reason"],
        json!("stop")
    );
    let odd = json!({"response": "x", "done_reason": "weird", "created_at": "yesterday", "eval_count": -4, "prompt_eval_count": 1e40});
    let out = resp(&s, COMPLETIONS, odd.to_string().as_bytes()).expect("ok");
    assert_eq!(out["choices"][0]["finish_reason"], json!("stop"));
    assert_eq!(
        out["model"],
        json!("llama3.2"),
        "ctx model when the response has none"
    );
    assert!(out["created"].as_i64().is_some_and(|c| c > 1_700_000_000));
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": u64::MAX, "completion_tokens": 0, "total_tokens": u64::MAX})
    );
}

#[test]
fn untranslatable_ollama_answers() {
    let s = setup();
    let ndjson = b"{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"message\":{\"content\":\"b\"},\"done\":true}\n";
    let cases: [(&[u8], RouteKind, &str); 9] = [
        (b"", CHAT, "empty response body"),
        (b"not json", CHAT, "failed to decode llm/v1/chat response"),
        (ndjson, CHAT, "failed to decode llm/v1/chat response"),
        (b"[]", CHAT, "ollama response is not a JSON object"),
        (
            br#"{"model":"m","done":true}"#,
            CHAT,
            "'message' not in ollama chat response",
        ),
        (
            br#"{"message":{"role":"assistant","content":7}}"#,
            CHAT,
            "'message.content' not in ollama chat response",
        ),
        (
            br#"{"model":"m","done":true}"#,
            COMPLETIONS,
            "'response' not in ollama generate response",
        ),
        (
            br#"{"model":"m","done":true,"done_reason":"load","response":""}"#,
            COMPLETIONS,
            "ollama answered a model load, not a generation",
        ),
        (
            br#"{"error":"boom"}"#,
            CHAT,
            "ollama reported an error: boom",
        ),
    ];
    for (body, kind, reason) in cases {
        assert_eq!(
            resp(&s, kind, body),
            Err(TranslateError(reason.into())),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn tool_names_follow_the_latest_preceding_call_and_tool_choice_is_never_dropped() {
    let s = setup();
    // Ids repeat across turns (ours are `call_<n>` per response): a tool result names
    // the call of the latest assistant message with that id.
    let (_, body) = req(
        &s,
        CHAT,
        json!({"messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "rain"},
            {"role": "assistant", "content": "Rain. Anything else?"},
            {"role": "user", "content": "time?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "get_time"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "12:00"}
        ], "tools": [{"type": "function", "function": {"name": "get_weather"}}], "tool_choice": "auto"}),
    )
    .expect("ok");
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(
        messages[1]["tool_calls"],
        json!([{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}])
    );
    assert_eq!(messages[2]["tool_name"], json!("get_weather"));
    assert_eq!(
        messages[5]["tool_calls"],
        json!([{"function": {"name": "get_time", "arguments": {}}}])
    );
    assert_eq!(messages[6]["tool_name"], json!("get_time"));
    assert_eq!(body["tools"][0]["function"]["name"], json!("get_weather"));

    for choice in [
        json!("required"),
        json!({"type": "function", "function": {"name": "get_weather"}}),
    ] {
        let e = req(
            &s,
            CHAT,
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": choice,
                   "tools": [{"type": "function", "function": {"name": "get_weather"}}]}),
        )
        .expect_err("refused");
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        assert!(e.message.contains("cannot force"), "{}", e.message);
    }
}

#[test]
fn response_tool_call_arguments_are_normalised() {
    let s = setup();
    let body = json!({"model": "llama3.2", "done": true, "done_reason": "stop", "eval_count": 9,
    "message": {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"function": {"name": "a", "arguments": {"x": [1, "é"]}}},
        {"function": {"name": "b", "arguments": "{\"y\": true}"}},
        {"function": {"name": "c", "arguments": ""}},
        {"function": {"name": "d"}}
    ]}});
    let out = resp(&s, CHAT, body.to_string().as_bytes()).expect("ok");
    let message = &out["choices"][0]["message"];
    assert_eq!(message["content"], json!("Checking."));
    let calls = message["tool_calls"].as_array().expect("calls");
    let ids: Vec<&str> = calls.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, ["call_0", "call_1", "call_2", "call_3"]);
    let args: Vec<Value> = calls
        .iter()
        .map(|c| {
            serde_json::from_str(c["function"]["arguments"].as_str().expect("a string"))
                .expect("valid JSON")
        })
        .collect();
    assert_eq!(
        args,
        [
            json!({"x": [1, "é"]}),
            json!({"y": true}),
            json!({}),
            json!({})
        ]
    );
    assert_eq!(out["choices"][0]["finish_reason"], json!("tool_calls"));
    // A cut answer says so even when it holds calls.
    let mut cut = body.clone();
    cut["done_reason"] = json!("length");
    let out = resp(&s, CHAT, cut.to_string().as_bytes()).expect("ok");
    assert_eq!(out["choices"][0]["finish_reason"], json!("length"));
}

#[test]
fn mistral_ollama_uses_the_shared_ollama_mapping() {
    let s = Setup::new(ProviderKind::Mistral(MistralFormat::Ollama), "mistral");
    assert!(
        req(
            &s,
            CHAT,
            json!({"messages": [{"role": "user", "content": "hi"}]})
        )
        .expect_err("refused")
        .message
        .contains("upstream_url")
    );
    let s = s.url("http://ollama.example.com:11434/api/chat");
    let (url, body) = req(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5}),
    )
    .expect("ok");
    assert_eq!(url, "http://ollama.example.com:11434/api/chat");
    assert_eq!(
        body,
        json!({"model": "mistral", "messages": [{"role": "user", "content": "x"}],
                            "stream": false, "options": {"num_predict": 5}})
    );
    let out = resp(
        &s,
        CHAT,
        fixture("llama2", "ollama-chat-response.json").as_bytes(),
    )
    .expect("ok");
    assert_eq!(out["object"], json!("chat.completion"));
    assert_eq!(out["usage"]["total_tokens"], json!(184));
    let e = translator(ProviderKind::Mistral(MistralFormat::Ollama))
        .error(404, fixture("llama2", "ollama-error.json").as_bytes());
    assert_eq!(
        e.message,
        "model \"llama3.3\" not found, try pulling it first"
    );
}

// ---- streaming -------------------------------------------------------------------

fn meta(kind: RouteKind, include_usage: bool) -> StreamMeta {
    StreamMeta {
        id: "chatcmpl-test".into(),
        created: 1_700_000_000,
        model: "llama3.2".into(),
        kind,
        include_usage,
        collect_text: true,
    }
}

fn transcoder(s: &Setup, kind: RouteKind) -> Box<dyn StreamTranscoder> {
    translator(s.provider)
        .stream(&s.ctx(), kind)
        .expect("ollama streams")
}

/// Output equal to a fixture file byte for byte; the actual output is written to the
/// temp dir on mismatch, to inspect or bless.
fn assert_expected(provider: &str, name: &str, got: &[u8]) {
    let want = fixture(provider, name);
    if want.as_bytes() != got {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::write(&path, got);
        panic!(
            "{provider}/{name} differs; actual output in {}:\n{}",
            path.display(),
            String::from_utf8_lossy(got)
        );
    }
}

/// Runs a fixture through every chunking, with and without `include_usage`: the
/// outputs differ only by the usage chunk. Returns the frames with usage.
fn run(s: &Setup, kind: RouteKind, input: &str, expected: &str) -> Vec<Value> {
    let input = fixture("ollama", input);
    let with = assert_split_invariant(|| transcoder(s, kind), &meta(kind, true), input.as_bytes());
    assert_expected("ollama", expected, &with);
    let without =
        assert_split_invariant(|| transcoder(s, kind), &meta(kind, false), input.as_bytes());
    let with = frames(&with);
    let without = frames(&without);
    let usage_chunks: Vec<&Value> = with.iter().filter(|f| f.get("usage").is_some()).collect();
    let is_error = with.last().is_some_and(|f| f.get("error").is_some());
    if is_error {
        assert!(usage_chunks.is_empty(), "no usage after an error");
        assert_eq!(with, without);
    } else {
        assert_eq!(usage_chunks.len(), 1, "exactly one usage chunk");
        assert_eq!(usage_chunks[0]["choices"], json!([]));
        let mut expected = with.clone();
        expected.retain(|f| f.get("usage").is_none());
        assert_eq!(without, expected);
        assert!(without.iter().all(|f| f.get("usage").is_none()));
    }
    with
}

#[test]
fn chat_stream_to_openai_chunks() {
    let s = setup();
    let got = run(&s, CHAT, "chat-stream.ndjson", "chat-stream.expected.sse");
    assert_eq!(
        got[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let text: String = got
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Il fait beau à Tōkyō ☀️\n\"oui\"");
    let n = got.len();
    assert_eq!(got[n - 3]["choices"][0]["finish_reason"], json!("stop"));
    assert_eq!(
        got[n - 2]["usage"],
        json!({"prompt_tokens": 26, "completion_tokens": 4, "total_tokens": 30})
    );
    assert_eq!(got[n - 1], json!("[DONE]"));
    // Mistral's ollama format is the same stream.
    let mistral = Setup::new(
        ProviderKind::Mistral(crate::vocab::MistralFormat::Ollama),
        "llama3.2",
    )
    .url(URL);
    run(
        &mistral,
        CHAT,
        "chat-stream.ndjson",
        "chat-stream.expected.sse",
    );
}

#[test]
fn chat_stream_with_two_tool_calls() {
    let s = setup();
    let got = run(
        &s,
        CHAT,
        "chat-stream-tools.ndjson",
        "chat-stream-tools.expected.sse",
    );
    let calls: Vec<&Value> = got
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls.len(), 2);
    for (k, call) in calls.iter().enumerate() {
        assert_eq!(call["index"], json!(k));
        assert_eq!(call["id"], json!(format!("call_{k}")));
        assert_eq!(call["type"], json!("function"));
    }
    let args: Vec<Value> = calls
        .iter()
        .map(|c| {
            serde_json::from_str(c["function"]["arguments"].as_str().expect("string"))
                .expect("arguments are valid JSON")
        })
        .collect();
    assert_eq!(
        args,
        [
            json!({"city": "Tōkyō", "unit": "celsius"}),
            json!({"timezone": "Asia/Tokyo", "format": {"hours": 24}})
        ]
    );
    let n = got.len();
    assert_eq!(
        got[n - 3]["choices"][0]["finish_reason"],
        json!("tool_calls")
    );
    assert_eq!(
        got[n - 2]["usage"],
        json!({"prompt_tokens": 213, "completion_tokens": 38, "total_tokens": 251})
    );
}

#[test]
fn generate_stream_to_completion_chunks() {
    let s = setup();
    let got = run(
        &s,
        COMPLETIONS,
        "generate-stream.ndjson",
        "generate-stream.expected.sse",
    );
    assert!(
        got[..got.len() - 1]
            .iter()
            .all(|f| f["object"] == json!("text_completion"))
    );
    let text: String = got
        .iter()
        .filter_map(|f| f["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "The sky is blue because");
    let n = got.len();
    assert_eq!(got[n - 3]["choices"][0]["finish_reason"], json!("length"));
    assert_eq!(
        got[n - 2]["usage"],
        json!({"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18})
    );
}

#[test]
fn error_line_ends_the_stream_in_band() {
    let s = setup();
    let got = run(
        &s,
        CHAT,
        "chat-stream-error.ndjson",
        "chat-stream-error.expected.sse",
    );
    let last = got.last().expect("frames");
    assert_eq!(
        last["error"]["message"],
        json!("an error was encountered while running the model: unexpected EOF")
    );
    assert_eq!(last["error"]["type"], json!("upstream_error"));
    assert!(!got.contains(&json!("[DONE]")));
}

#[test]
fn stream_cut_before_done_ends_with_an_error_frame() {
    let s = setup();
    let full = fixture("ollama", "chat-stream.ndjson");
    let lines: Vec<&str> = full.lines().collect();
    // Cut after a whole line, and inside the final line.
    let whole_lines = lines[..lines.len() - 1].join("\n") + "\n";
    let mid_line = format!("{whole_lines}{}", &lines[lines.len() - 1][..40]);
    for (input, code) in [
        (whole_lines, Value::Null),
        (mid_line, json!("stream_transformation_failed")),
    ] {
        let out =
            assert_split_invariant(|| transcoder(&s, CHAT), &meta(CHAT, true), input.as_bytes());
        let got = frames(&out);
        let last = got.last().expect("frames");
        assert_eq!(last["error"]["type"], json!("upstream_error"), "{last}");
        assert_eq!(last["error"]["code"], code, "{last}");
        assert!(!got.contains(&json!("[DONE]")));
        assert!(got.iter().all(|f| f.get("usage").is_none()));
        assert!(
            got.iter()
                .all(|f| f["choices"][0]["finish_reason"].is_null())
        );
    }
}

#[test]
fn stream_edge_cases() {
    let s = setup();
    let one = |input: &str, kind: RouteKind| {
        frames(&crate::llm::transcode_in_pieces(
            transcoder(&s, kind),
            meta(kind, true),
            input.as_bytes(),
            &[],
        ))
    };
    // No prompt_eval_count (prompt cached): 0; string/missing arguments normalised;
    // a done line without a reason and the route limit reached: length.
    let got = one(
        concat!(
            r#"{"model":"llama3.2","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"a","arguments":"{\"q\":1}"}},{"function":{"name":"b"}}]},"done":false}"#,
            "\n",
            r#"{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,"eval_count":7}"#,
            "\n"
        ),
        CHAT,
    );
    let args: Vec<&Value> = got
        .iter()
        .filter_map(|f| f.pointer("/choices/0/delta/tool_calls/0/function/arguments"))
        .collect();
    assert_eq!(args, [&json!("{\"q\":1}"), &json!("{}")]);
    assert_eq!(
        got[got.len() - 3]["choices"][0]["finish_reason"],
        json!("tool_calls")
    );
    assert_eq!(
        got[got.len() - 2]["usage"],
        json!({"prompt_tokens": 0, "completion_tokens": 7, "total_tokens": 7})
    );

    let mut limited = setup();
    limited.tuning.max_tokens = Some(2);
    let out = crate::llm::transcode_in_pieces(
        transcoder(&limited, COMPLETIONS),
        meta(COMPLETIONS, false),
        b"{\"response\":\"ab\",\"done\":false}\n{\"response\":\"\",\"done\":true,\"eval_count\":2}",
        &[],
    );
    let got = frames(&out);
    assert_eq!(
        got[got.len() - 2]["choices"][0]["finish_reason"],
        json!("length")
    );

    // An answer with nothing but the done line still opens with the role chunk.
    let got = one(
        r#"{"message":{"content":""},"done":true,"done_reason":"stop"}"#,
        CHAT,
    );
    assert_eq!(got[0]["choices"][0]["delta"]["role"], json!("assistant"));
    assert_eq!(got[1]["choices"][0]["finish_reason"], json!("stop"));

    // Not JSON, or calls that are not a list: the transformation fails in band.
    for bad in [
        "not json\n",
        r#"{"message":{"tool_calls":{}},"done":false}"#,
    ] {
        let got = one(bad, CHAT);
        assert_eq!(
            got.last().expect("frame")["error"]["code"],
            json!("stream_transformation_failed")
        );
    }
}
