use serde_json::{Value, json};

use super::OpenAiCompatible;
use super::{endpoint::*, request::*, stream::*};
use crate::llm::StreamMeta;
use crate::providers::test_support::*;
use crate::providers::{
    Dialect, ProviderKind, RequestError, RouteKind, TranslateError, Translator, UpstreamRequest,
};
use crate::vocab::{Llama2Format, MistralFormat};

const CHAT: RouteKind = RouteKind::Chat;
const COMPLETIONS: RouteKind = RouteKind::Completions;
const MISTRAL: ProviderKind = ProviderKind::Mistral(MistralFormat::Openai);
const MISTRAL_OLLAMA: ProviderKind = ProviderKind::Mistral(MistralFormat::Ollama);

fn azure(model: &str) -> Setup {
    let mut s = Setup::new(ProviderKind::Azure, model);
    s.options.azure_instance = Some("my-inst".into());
    s.options.azure_deployment_id = Some("gpt4o".into());
    s
}

fn req(s: &Setup, kind: RouteKind, body: Value) -> Result<UpstreamRequest, RequestError> {
    translator(s.provider).request(&s.ctx(), kind, object(body))
}

fn req_ok(s: &Setup, kind: RouteKind, body: Value) -> (String, Value) {
    let r = req(s, kind, body).expect("request translates");
    assert!(
        r.headers.is_empty(),
        "no provider headers for OpenAI-format upstreams"
    );
    (r.url, body_json(&r.body))
}

fn req_err(s: &Setup, kind: RouteKind, body: Value) -> RequestError {
    req(s, kind, body).expect_err("request must be refused")
}

fn resp(s: &Setup, kind: RouteKind, body: &[u8]) -> Result<Value, TranslateError> {
    translator(s.provider).response(&s.ctx(), kind, body)
}

fn chat_body() -> Value {
    json!({"messages": [{"role": "user", "content": "hi"}]})
}

// ---- OpenAI requests -----------------------------------------------------------

#[test]
fn openai_chat_passes_the_body_through() {
    let s = Setup::new(ProviderKind::Openai, "gpt-4o-mini");
    let client = fixture_json("openai", "chat-request.json");
    let (url, body) = req_ok(&s, CHAT, client.clone());
    assert_eq!(url, "https://api.openai.com:443/v1/chat/completions");
    let mut expected = client;
    expected["model"] = json!("gpt-4o-mini");
    expected["stream"] = json!(false);
    // Kong removes `top_k`: it is not an OpenAI field.
    expected.as_object_mut().map(|o| o.remove("top_k"));
    assert_eq!(
        body, expected,
        "tools, tool messages, parts, n, stop… untouched"
    );
}

#[test]
fn openai_completions_default_url_and_body() {
    let s = Setup::new(ProviderKind::Openai, "gpt-3.5-turbo-instruct");
    let (url, body) = req_ok(
        &s,
        COMPLETIONS,
        json!({"prompt": "Say this is a test", "max_tokens": 7, "echo": true}),
    );
    assert_eq!(url, "https://api.openai.com:443/v1/completions");
    assert_eq!(
        body,
        json!({"prompt": "Say this is a test", "max_tokens": 7, "echo": true,
               "model": "gpt-3.5-turbo-instruct", "stream": false})
    );
}

#[test]
fn upstream_url_is_used_as_is_with_its_query() {
    let s = Setup::new(ProviderKind::Openai, "m")
        .url("https://gw.example.com/v1/chat/completions?team=a&x=1");
    let (url, _) = req_ok(&s, CHAT, chat_body());
    assert_eq!(url, "https://gw.example.com/v1/chat/completions?team=a&x=1");
    let (url, _) = req_ok(&s, COMPLETIONS, json!({"prompt": "p"}));
    assert_eq!(
        url, "https://gw.example.com/v1/chat/completions?team=a&x=1",
        "full URL, Kong semantics"
    );
}

#[test]
fn route_tuning_overrides_the_client() {
    let mut s = Setup::new(ProviderKind::Openai, "gpt-4o");
    s.tuning.max_tokens = Some(100);
    s.tuning.temperature = Some(0.25);
    s.tuning.top_p = Some(0.5);
    s.tuning.top_k = Some(9);
    let (_, body) = req_ok(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000,
               "temperature": 1.5, "top_p": 0.1, "presence_penalty": 0.3}),
    );
    assert_eq!(body["max_tokens"], json!(100));
    assert_eq!(body["temperature"], json!(0.25));
    assert_eq!(body["top_p"], json!(0.5));
    assert_eq!(
        body["presence_penalty"],
        json!(0.3),
        "untuned values stay the client's"
    );
    assert!(
        body.get("top_k").is_none(),
        "no top_k for OpenAI even from the route"
    );

    // A client on `max_completion_tokens` keeps that field, with the route's value.
    let (_, body) = req_ok(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 4000}),
    );
    assert_eq!(body["max_completion_tokens"], json!(100));
    assert!(body.get("max_tokens").is_none());
}

#[test]
fn model_is_the_context_model() {
    let s = Setup::new(ProviderKind::Openai, "gpt-4o");
    let (_, body) = req_ok(
        &s,
        CHAT,
        json!({"model": "alias-from-client", "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(body["model"], json!("gpt-4o"));
    let (_, body) = req_ok(
        &s,
        CHAT,
        json!({"model": null, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(body["model"], json!("gpt-4o"));
}

#[test]
fn stream_is_kept_and_validated() {
    let s = Setup::new(ProviderKind::Openai, "gpt-4o");
    let (_, body) = req_ok(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}], "stream": true,
                                            "stream_options": {"include_usage": true}}),
    );
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    let (_, body) = req_ok(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}], "stream": null}),
    );
    assert_eq!(body["stream"], json!(false));
    let e = req_err(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
    );
    assert_eq!(e.param.as_deref(), Some("stream"));
}

#[test]
fn hostile_requests_get_specific_errors() {
    let s = Setup::new(ProviderKind::Openai, "gpt-4o");
    for bad in [
        json!({"messages": "hi"}),
        json!({"messages": {}}),
        json!({"messages": []}),
        json!({}),
    ] {
        assert_eq!(req_err(&s, CHAT, bad).param.as_deref(), Some("messages"));
    }
    assert_eq!(
        req_err(&s, COMPLETIONS, json!({"prompt": 42}))
            .param
            .as_deref(),
        Some("prompt")
    );
    let e = req_err(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": "lots"}),
    );
    assert_eq!(e.param.as_deref(), Some("max_tokens"));
    let e = req_err(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 1e300}),
    );
    assert_eq!(e.param.as_deref(), Some("max_completion_tokens"));
    // Odd but well-formed values are the upstream's to judge.
    let (_, body) = req_ok(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": 12}, 7, null],
                                            "max_tokens": u64::MAX, "temperature": 1e308}),
    );
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": 12}, 7, null])
    );
    assert_eq!(body["max_tokens"], json!(u64::MAX));
}

// ---- OpenAI responses ----------------------------------------------------------

#[test]
fn openai_responses_pass_through_unchanged() {
    let s = Setup::new(ProviderKind::Openai, "gpt-4o");
    for name in ["chat-response.json", "chat-response-tool-calls.json"] {
        let raw = fixture("openai", name);
        let out = resp(&s, CHAT, raw.as_bytes()).expect("translates");
        assert_eq!(
            out,
            serde_json::from_str::<Value>(&raw).expect("json"),
            "{name}"
        );
    }
    let out = resp(&s, CHAT, fixture("openai", "chat-response.json").as_bytes()).expect("ok");
    assert_eq!(
        out["choices"][0]["message"]["content"],
        json!("Un chat 🐈 sur un canapé — « très mignon ».")
    );
    assert_eq!(
        out["usage"]["prompt_tokens_details"]["cached_tokens"],
        json!(4)
    );
    assert_eq!(
        out["usage"]["completion_tokens_details"]["reasoning_tokens"],
        json!(10)
    );

    let raw = fixture("openai", "completions-response.json");
    let out = resp(&s, COMPLETIONS, raw.as_bytes()).expect("translates");
    assert_eq!(out, serde_json::from_str::<Value>(&raw).expect("json"));
}

#[test]
fn missing_response_parts_are_filled() {
    let s = Setup::new(ProviderKind::Openai, "gpt-4o");
    let out = resp(&s, CHAT, br#"{"choices":[{"message":{"content":"ok"}}]}"#).expect("ok");
    assert!(
        out["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-") && id.len() > 12)
    );
    assert_eq!(out["object"], json!("chat.completion"));
    assert!(out["created"].as_i64().is_some_and(|c| c > 1_700_000_000));
    assert_eq!(out["model"], json!("gpt-4o"));
    assert_eq!(
        out["choices"][0],
        json!({"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": "ok"}})
    );
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    );

    let out = resp(
        &s,
        COMPLETIONS,
        br#"{"choices":[{"text":"ok"}],"usage":null}"#,
    )
    .expect("ok");
    assert!(out["id"].as_str().is_some_and(|id| id.starts_with("cmpl-")));
    assert_eq!(out["object"], json!("text_completion"));
    assert_eq!(out["usage"]["total_tokens"], json!(0));
}

#[test]
fn usage_is_always_a_sane_object() {
    let s = Setup::new(ProviderKind::Openai, "gpt-4o");
    let cases = [
        (
            json!({"prompt_tokens": 3, "completion_tokens": 4}),
            json!([3, 4, 7]),
        ),
        (
            json!({"prompt_tokens": -3, "completion_tokens": "4", "total_tokens": null}),
            json!([0, 0, 0]),
        ),
        (
            json!({"prompt_tokens": 1e300, "completion_tokens": 2.7}),
            json!([u64::MAX, 2, u64::MAX]),
        ),
        (
            json!({"prompt_tokens": u64::MAX, "completion_tokens": 5}),
            json!([u64::MAX, 5, u64::MAX]),
        ),
        (json!("lots"), json!([0, 0, 0])),
        (json!({"foo": 1, "bar": 2}), json!([0, 0, 0])),
    ];
    for (usage, want) in cases {
        let body = json!({"choices": [{"message": {"content": "x"}}], "usage": usage});
        let out = resp(&s, CHAT, body.to_string().as_bytes()).expect("ok");
        let u = &out["usage"];
        assert_eq!(
            json!([
                u["prompt_tokens"],
                u["completion_tokens"],
                u["total_tokens"]
            ]),
            want,
            "{usage}"
        );
    }
}

#[test]
fn finish_reasons_are_openai_values() {
    let s = Setup::new(ProviderKind::Openai, "m");
    for (raw, want) in [
        (json!("stop"), "stop"),
        (json!("length"), "length"),
        (json!("tool_calls"), "tool_calls"),
        (json!("content_filter"), "content_filter"),
        (json!("function_call"), "function_call"),
        (json!("eos_token"), "stop"),
        (json!("model_length"), "length"),
        (json!("MAX_TOKENS"), "length"),
        (json!("something_new"), "stop"),
        (json!(null), "stop"),
        (json!(17), "stop"),
    ] {
        let body = json!({"choices": [{"message": {"content": "x"}, "finish_reason": raw}]});
        let out = resp(&s, CHAT, body.to_string().as_bytes()).expect("ok");
        assert_eq!(out["choices"][0]["finish_reason"], json!(want), "{raw}");
    }
}

#[test]
fn untranslatable_responses_are_errors() {
    let s = Setup::new(ProviderKind::Openai, "m");
    let cases: [(&[u8], RouteKind, &str); 11] = [
        (b"", CHAT, "empty response body"),
        (b"  \n", CHAT, "empty response body"),
        (
            b"<html>oops</html>",
            CHAT,
            "failed to decode llm/v1/chat response",
        ),
        (
            b"{\"choices\":",
            COMPLETIONS,
            "failed to decode llm/v1/completions response",
        ),
        (b"[1,2]", CHAT, "llm/v1/chat response is not a JSON object"),
        (
            br#"{"nothing_object": {"a": 1}}"#,
            CHAT,
            "'choices' not in llm/v1/chat response",
        ),
        (
            br#"{"choices": {}}"#,
            COMPLETIONS,
            "'choices' not in llm/v1/completions response",
        ),
        (
            br#"{"choices": []}"#,
            CHAT,
            "'choices' is empty in llm/v1/chat response",
        ),
        (
            br#"{"choices": [{"text": "x"}]}"#,
            CHAT,
            "'message' not in choice 0",
        ),
        (
            br#"{"choices": [{"message": {"content": 5}}]}"#,
            CHAT,
            "content of choice 0 is not a string",
        ),
        (
            br#"{"choices": [{"message": {"content": "x"}}]}"#,
            COMPLETIONS,
            "'text' not in choice 0",
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
    assert_eq!(
        resp(
            &s,
            CHAT,
            br#"{"choices": [{"message": {"role": "assistant"}}]}"#
        ),
        Err(TranslateError("no content in choice 0".into()))
    );
    assert_eq!(
        resp(&s, CHAT, br#"{"choices": ["x"]}"#),
        Err(TranslateError("choice 0 is not an object".into()))
    );
}

// ---- errors ------------------------------------------------------------------

#[test]
fn openai_errors_keep_message_type_and_code() {
    let e = translator(ProviderKind::Openai)
        .error(401, fixture("openai", "error-invalid-key.json").as_bytes());
    assert!(e.message.starts_with("Incorrect API key provided"));
    assert_eq!(e.kind, "invalid_request_error");
    assert_eq!(e.code, Some(json!("invalid_api_key")));
    assert_eq!(e.param, None);
    assert_eq!(e.to_openai()["error"]["code"], json!("invalid_api_key"));

    let e = translator(ProviderKind::Openai)
        .error(502, fixture("openai", "error-page.html").as_bytes());
    assert_eq!(
        (e.message.as_str(), e.kind.as_str()),
        ("upstream answered HTTP 502", "upstream_error")
    );
    let e = translator(ProviderKind::Openai).error(500, b"");
    assert_eq!(
        (e.message.as_str(), e.kind.as_str()),
        ("upstream answered HTTP 500", "upstream_error")
    );
    let e = translator(ProviderKind::Openai)
        .error(400, br#"{"error": {"message": "bad", "type": null}}"#);
    assert_eq!(
        (e.message.as_str(), e.kind.as_str()),
        ("bad", "upstream_error")
    );
    let e = translator(ProviderKind::Openai).error(404, br#"{"detail": "Not Found"}"#);
    assert_eq!(
        (e.message.as_str(), e.kind.as_str()),
        ("Not Found", "upstream_error")
    );
    let e = translator(ProviderKind::Openai).error(500, br#"{"error": {"message": 12}}"#);
    assert_eq!(e.message, "upstream answered HTTP 500");
}

// ---- Azure ---------------------------------------------------------------------

#[test]
fn azure_urls_carry_the_api_version() {
    let mut s = azure("gpt-4o");
    let (url, body) = req_ok(&s, CHAT, chat_body());
    assert_eq!(
        url,
        "https://my-inst.openai.azure.com:443/openai/deployments/gpt4o/chat/completions?api-version=2023-05-15"
    );
    assert_eq!(
        body["model"],
        json!("gpt-4o"),
        "Kong writes the model; Azure ignores it"
    );
    s.options.azure_api_version = Some("2024-10-21".into());
    let (url, _) = req_ok(&s, COMPLETIONS, json!({"prompt": "p"}));
    assert_eq!(
        url,
        "https://my-inst.openai.azure.com:443/openai/deployments/gpt4o/completions?api-version=2024-10-21"
    );

    for (upstream, want) in [
        (
            "https://az.example.com/openai/deployments/d/chat/completions",
            "https://az.example.com/openai/deployments/d/chat/completions?api-version=2024-10-21",
        ),
        (
            "https://az.example.com/x?team=a",
            "https://az.example.com/x?team=a&api-version=2024-10-21",
        ),
        (
            "https://az.example.com/x?",
            "https://az.example.com/x?api-version=2024-10-21",
        ),
        (
            "https://az.example.com/x?api-version=2025-01-01-preview",
            "https://az.example.com/x?api-version=2025-01-01-preview",
        ),
        (
            "https://az.example.com/x?api-version-old=1",
            "https://az.example.com/x?api-version-old=1&api-version=2024-10-21",
        ),
    ] {
        let mut s = azure("gpt-4o").url(upstream);
        s.options.azure_api_version = Some("2024-10-21".into());
        assert_eq!(req_ok(&s, CHAT, chat_body()).0, want);
    }
}

#[test]
fn azure_without_instance_is_a_configuration_error() {
    let mut s = azure("gpt-4o");
    s.options.azure_instance = None;
    let e = req_err(&s, CHAT, chat_body());
    assert_eq!(e.param, None);
    assert!(e.message.contains("azure_instance"));
    s.options.azure_deployment_id = Some("x/../y z".into());
    s.options.azure_instance = Some("inst".into());
    assert_eq!(
        req_ok(&s, CHAT, chat_body()).0,
        "https://inst.openai.azure.com:443/openai/deployments/x%2F..%2Fy%20z/chat/completions?api-version=2023-05-15"
    );
}

#[test]
fn azure_body_and_response_are_openai() {
    let mut s = azure("gpt-4o");
    s.tuning.top_p = Some(1.0);
    let (_, body) = req_ok(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}], "top_k": 3, "seed": 1}),
    );
    assert_eq!(
        body,
        json!({"messages": [{"role": "user", "content": "x"}], "seed": 1, "top_p": 1.0,
                            "model": "gpt-4o", "stream": false})
    );
    let raw = fixture("azure", "chat-response-filtered.json");
    let out = resp(&s, CHAT, raw.as_bytes()).expect("ok");
    assert_eq!(
        out,
        serde_json::from_str::<Value>(&raw).expect("json"),
        "content-filter details pass through"
    );
    assert_eq!(out["choices"][0]["finish_reason"], json!("content_filter"));
}

#[test]
fn azure_content_filter_error() {
    let e = translator(ProviderKind::Azure).error(
        400,
        fixture("azure", "error-content-filter.json").as_bytes(),
    );
    assert!(e.message.starts_with("The response was filtered"));
    assert_eq!(e.kind, "upstream_error", "Azure gives type null");
    assert_eq!(e.code, Some(json!("content_filter")));
    assert_eq!(e.param, Some(json!("prompt")));
}

// ---- Mistral -------------------------------------------------------------------

#[test]
fn mistral_chat_body_follows_its_dialect() {
    let s = Setup::new(MISTRAL, "mistral-large-latest");
    let client = json!({
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Bonjour", "name": null, "metadata": {"a": 1}},
            {"role": "assistant", "content": "Salut", "refusal": null, "reasoning_content": "…"},
            {"role": "tool", "content": "42", "tool_call_id": "abcdefghi", "name": "calc"}
        ],
        "max_completion_tokens": 64, "seed": 3, "user": "u", "top_k": 5, "n": 2,
        "stream_options": {"include_usage": true}, "service_tier": "auto", "store": true,
        "logit_bias": {}, "logprobs": false, "stop": "FIN", "safe_prompt": true,
        "tools": [{"type": "function", "function": {"name": "calc", "parameters": {}}}],
        "tool_choice": "any", "parallel_tool_calls": false
    });
    let (url, body) = req_ok(&s, CHAT, client);
    assert_eq!(url, "https://api.mistral.ai:443/v1/chat/completions");
    assert_eq!(
        body,
        json!({
            "model": "mistral-large-latest", "stream": false,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Bonjour"},
                {"role": "assistant", "content": "Salut"},
                {"role": "tool", "content": "42", "tool_call_id": "abcdefghi", "name": "calc"}
            ],
            "max_tokens": 64, "random_seed": 3, "n": 2, "stop": "FIN", "safe_prompt": true,
            "tools": [{"type": "function", "function": {"name": "calc", "parameters": {}}}],
            "tool_choice": "any", "parallel_tool_calls": false
        })
    );
}

#[test]
fn mistral_refuses_what_it_cannot_honour() {
    let s = Setup::new(MISTRAL, "mistral-small-latest");
    for (key, value) in [
        ("logit_bias", json!({"50256": -100})),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(3)),
        ("modalities", json!(["text", "audio"])),
        ("functions", json!([{"name": "f"}])),
    ] {
        let mut body = chat_body();
        body[key] = value;
        assert_eq!(req_err(&s, CHAT, body).param.as_deref(), Some(key));
    }
}

#[test]
fn mistral_tuning_and_upstream_url() {
    let mut s =
        Setup::new(MISTRAL, "open-mistral-7b").url("http://vllm.example.com/v1/chat/completions");
    s.tuning.max_tokens = Some(10);
    s.tuning.top_k = Some(4);
    let (url, body) = req_ok(
        &s,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 99}),
    );
    assert_eq!(url, "http://vllm.example.com/v1/chat/completions");
    assert_eq!(body["max_tokens"], json!(10));
    assert!(body.get("max_completion_tokens").is_none() && body.get("top_k").is_none());
}

#[test]
fn mistral_completions_need_an_upstream_url() {
    let s = Setup::new(MISTRAL, "codestral");
    let e = req_err(&s, COMPLETIONS, json!({"prompt": "def f():"}));
    assert_eq!(e.param, None);
    assert!(e.message.contains("upstream_url"));
    let s = s.url("http://tgi.example.com/v1/completions");
    let (url, body) = req_ok(
        &s,
        COMPLETIONS,
        json!({"prompt": "def f():", "seed": 1, "top_k": 2}),
    );
    assert_eq!(url, "http://tgi.example.com/v1/completions");
    assert_eq!(
        body,
        json!({"prompt": "def f():", "seed": 1, "model": "codestral", "stream": false})
    );
}

#[test]
fn mistral_responses() {
    let s = Setup::new(MISTRAL, "mistral-large-latest");
    let out = resp(
        &s,
        CHAT,
        fixture("mistral", "chat-response.json").as_bytes(),
    )
    .expect("ok");
    assert_eq!(
        out["choices"][0]["finish_reason"],
        json!("length"),
        "model_length → length"
    );
    assert_eq!(out["id"], json!("cmpl-e5cc70bb28c444948073e77776eb30ef"));
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 16, "completion_tokens": 34, "total_tokens": 50})
    );

    assert_eq!(
        resp(
            &s,
            CHAT,
            fixture("mistral", "chat-response-error.json").as_bytes()
        ),
        Err(TranslateError(
            "upstream finished with finish_reason 'error'".into()
        ))
    );
    let with_text =
        json!({"choices": [{"message": {"content": "partial"}, "finish_reason": "error"}]});
    let out = resp(&s, CHAT, with_text.to_string().as_bytes()).expect("ok");
    assert_eq!(out["choices"][0]["finish_reason"], json!("stop"));
}

#[test]
fn mistral_errors() {
    let e = translator(MISTRAL).error(422, fixture("mistral", "error-422.json").as_bytes());
    assert_eq!(e.message, "body.user: Extra inputs are not permitted");
    assert_eq!(e.kind, "invalid_request_error");
    assert_eq!(e.param, Some(json!("user")));
    assert_eq!(e.code, Some(json!("extra_forbidden")));

    let e = translator(MISTRAL).error(401, fixture("mistral", "error-401.json").as_bytes());
    assert_eq!(
        (e.message.as_str(), e.kind.as_str()),
        ("Unauthorized", "authentication_error")
    );
    assert_eq!(e.code, Some(json!("1000")));

    let e = translator(MISTRAL).error(422, br#"{"detail": [{"loc": ["body", "messages", 0], "msg": "Field required", "type": "missing"}]}"#);
    assert_eq!(e.param, Some(json!(0)));
    assert_eq!(e.message, "body.messages.0: Field required");
}

#[test]
fn query_param_helper() {
    assert_eq!(
        with_query_param("https://h/p", "k", "a b&c"),
        "https://h/p?k=a%20b%26c"
    );
    assert_eq!(
        with_query_param("https://h/p?a=1&", "k", "v"),
        "https://h/p?a=1&k=v"
    );
    assert_eq!(with_query_param("https://h/p?k", "k", "v"), "https://h/p?k");
}

// ---- Self-hosted OpenAI-compatible servers (llama2_format: openai) ---------------

#[test]
fn openai_format_passes_through_to_the_upstream_url() {
    let mut s = Setup::new(
        ProviderKind::Llama2(Llama2Format::Openai),
        "meta-llama/Llama-2-7b-chat-hf",
    )
    .url("http://vllm.example.com:8000/v1/chat/completions");
    s.tuning.top_k = Some(20);
    let client =
        json!({"messages": [{"role": "user", "content": "hi"}], "n": 2, "tools": [], "user": "u"});
    let (url, body) = req_ok(&s, CHAT, client);
    assert_eq!(url, "http://vllm.example.com:8000/v1/chat/completions");
    assert_eq!(
        body,
        json!({"messages": [{"role": "user", "content": "hi"}], "n": 2, "tools": [], "user": "u",
                            "model": "meta-llama/Llama-2-7b-chat-hf", "stream": false, "top_k": 20}),
        "self-hosted OpenAI servers honour top_k: kept"
    );
    let raw_resp = fixture("openai", "chat-response.json");
    let out = resp(&s, CHAT, raw_resp.as_bytes()).expect("ok");
    assert_eq!(out, serde_json::from_str::<Value>(&raw_resp).expect("json"));
    assert_eq!(
        resp(&s, CHAT, br#"{"object":"list"}"#),
        Err(TranslateError(
            "'choices' not in llm/v1/chat response".into()
        ))
    );
    s.upstream_url = None;
    assert!(
        req(
            &s,
            CHAT,
            json!({"messages": [{"role": "user", "content": "hi"}]})
        )
        .is_err()
    );
}

// ---- Streaming: the request side -------------------------------------------------

fn streaming(extra: Value) -> Value {
    let mut body = json!({"messages": [{"role": "user", "content": "x"}], "stream": true});
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
        b.extend(extra);
    }
    body
}

#[test]
fn streams_ask_openai_compatible_upstreams_for_usage() {
    let openai = Setup::new(ProviderKind::Openai, "gpt-4o");
    let llama2 = Setup::new(ProviderKind::Llama2(Llama2Format::Openai), "llama3")
        .url("http://vllm.example.com/v1/chat/completions");
    let mistral_completions =
        Setup::new(MISTRAL, "codestral").url("http://tgi.example.com/v1/completions");
    for s in [&openai, &llama2] {
        let (_, body) = req_ok(s, CHAT, streaming(json!({})));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        let (_, body) = req_ok(
            s,
            CHAT,
            streaming(json!({"stream_options": {"include_usage": false,
                                                "include_obfuscation": false}})),
        );
        assert_eq!(
            body["stream_options"],
            json!({"include_usage": true, "include_obfuscation": false}),
            "the client's other options are kept"
        );
        let (_, body) = req_ok(s, CHAT, streaming(json!({"stream_options": null})));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }
    for s in [&openai, &mistral_completions] {
        let (_, body) = req_ok(s, COMPLETIONS, json!({"prompt": "p", "stream": true}));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }

    // Not streaming: the body is the client's.
    let (_, body) = req_ok(&openai, CHAT, chat_body());
    assert!(body.get("stream_options").is_none());
    let (_, body) = req_ok(
        &openai,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}],
               "stream_options": {"include_usage": false}}),
    );
    assert_eq!(body["stream_options"], json!({"include_usage": false}));
}

#[test]
fn azure_gets_stream_options_only_where_its_api_version_has_them() {
    for (version, supported) in [
        ("2023-05-15", false),
        ("2024-02-01", false),
        ("2024-06-01", false),
        ("2024-07-01-preview", false),
        ("2024-08-01-preview", true),
        ("2024-09-01-preview", true),
        ("2024-10-21", true),
        ("2025-04-01-preview", true),
        ("v1", true),
        ("latest", true),
        ("preview", true),
        ("2024-10-2", false),
        ("someday", false),
    ] {
        let mut s = azure("gpt-4o");
        s.options.azure_api_version = Some(version.into());
        let (_, body) = req_ok(&s, CHAT, streaming(json!({})));
        let want = supported.then(|| json!({"include_usage": true}));
        assert_eq!(body.get("stream_options").cloned(), want, "{version}");

        // On an old version the client's own `stream_options` is removed too: Azure
        // refuses the field whatever it holds.
        for asked in [false, true] {
            let client = json!({"stream_options": {"include_usage": asked}});
            let (_, body) = req_ok(&s, CHAT, streaming(client));
            let want = supported.then(|| json!({"include_usage": true}));
            assert_eq!(body.get("stream_options").cloned(), want, "{version}");
        }
    }
    // The version in the configured URL is the one Azure sees; the v1 surface has them.
    for (url, supported) in [
        ("https://az.example.com/x?api-version=2024-10-21", true),
        (
            "https://az.example.com/x?api-version=2024-05-01-preview",
            false,
        ),
        ("https://az.example.com/openai/v1/chat/completions", true),
    ] {
        let s = azure("gpt-4o").url(url);
        let (_, body) = req_ok(&s, CHAT, streaming(json!({})));
        assert_eq!(body.get("stream_options").is_some(), supported, "{url}");
    }
}

#[test]
fn mistral_streams_drop_stream_options() {
    let s = Setup::new(MISTRAL, "mistral-large-latest");
    let (_, body) = req_ok(
        &s,
        CHAT,
        streaming(json!({"stream_options": {"include_usage": true}})),
    );
    assert_eq!(body["stream"], json!(true));
    assert!(body.get("stream_options").is_none(), "{body}");
}

#[test]
fn mistral_tool_call_ids_are_rewritten_consistently() {
    let s = Setup::new(MISTRAL, "mistral-large-latest");
    let call = |id: &str| json!({"id": id, "type": "function", "function": {"name": "f", "arguments": "{}"}});
    let client = json!({
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null,
             "tool_calls": [call("call_abc123XYZ"), call("D681PevKs"), call("toolu_01A-b")]},
            {"role": "tool", "tool_call_id": "call_abc123XYZ", "content": "1"},
            {"role": "tool", "tool_call_id": "D681PevKs", "content": "2"},
            {"role": "tool", "tool_call_id": "toolu_01A-b", "content": "3"}
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "required"
    });
    let (_, body) = req_ok(&s, CHAT, client);
    let ids: Vec<&str> = (0..3)
        .map(|i| {
            body["messages"][1]["tool_calls"][i]["id"]
                .as_str()
                .expect("id")
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(id.len(), 9, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        assert_eq!(
            body["messages"][2 + i]["tool_call_id"],
            json!(id),
            "the tool message answers the same call"
        );
    }
    assert_eq!(ids[1], "D681PevKs", "a valid id is kept");
    assert_ne!(ids[0], ids[2]);
    assert_eq!(
        ids[0],
        mistral_tool_call_id("call_abc123XYZ"),
        "deterministic"
    );
    assert_eq!(body["tool_choice"], json!("required"));
    for id in ["", "abcdefgh", "abcdefghij", "abcdéfgh", "abc_efghi"] {
        let got = mistral_tool_call_id(id);
        assert!(
            got.len() == 9 && got.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{id:?} → {got}"
        );
    }
}

// ---- Streaming: transcoding --------------------------------------------------------

fn stream_meta(kind: RouteKind, include_usage: bool) -> StreamMeta {
    StreamMeta {
        id: "chatcmpl-test".into(),
        created: 1_700_000_000,
        model: "gpt-4o-mini".into(),
        kind,
        include_usage,
        collect_text: true,
    }
}

/// The client's bytes for an upstream stream, checked to be the same however the
/// upstream bytes are split.
fn transcode(input: &[u8], meta: &StreamMeta) -> Vec<u8> {
    crate::llm::assert_split_invariant(|| Box::new(OpenAiStream::default()), meta, input)
}

/// The `data:` payloads of an OpenAI SSE body (`[DONE]` as a JSON string).
fn payloads(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("utf-8");
    assert!(text.ends_with("\n\n"), "every frame ends with a blank line");
    text.split_terminator("\n\n")
        .map(|frame| {
            let data = frame
                .strip_prefix("data: ")
                .expect("one data line per frame");
            assert!(!data.contains('\n'), "{frame}");
            if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(data).expect("JSON payload")
            }
        })
        .collect()
}

struct StreamCase {
    provider: &'static str,
    name: &'static str,
    kind: RouteKind,
    /// The fixture's usage (prompt, completion, cached); `None` for a failed stream.
    usage: Option<(u64, u64, Option<u64>)>,
    text: &'static str,
}

const STREAM_CASES: &[StreamCase] = &[
    StreamCase {
        provider: "openai",
        name: "chat-stream-usage",
        kind: CHAT,
        usage: Some((19, 4, Some(0))),
        text: "Hello, wörld ✓",
    },
    StreamCase {
        provider: "openai",
        name: "chat-stream-tools",
        kind: CHAT,
        usage: Some((82, 51, None)),
        text: "",
    },
    StreamCase {
        provider: "openai",
        name: "completions-stream",
        kind: COMPLETIONS,
        usage: Some((5, 7, None)),
        text: "\n\nThis is a test.",
    },
    StreamCase {
        provider: "openai",
        name: "chat-stream-error",
        kind: CHAT,
        usage: None,
        text: "Partial",
    },
    StreamCase {
        provider: "azure",
        name: "chat-stream-filtered",
        kind: CHAT,
        usage: Some((12, 4, Some(8))),
        text: "Bonjour à vous",
    },
    StreamCase {
        provider: "mistral",
        name: "chat-stream-tools",
        kind: CHAT,
        usage: Some((74, 43, None)),
        text: "Je vérifie.",
    },
];

#[test]
fn stream_fixtures_transcode_to_the_expected_bytes() {
    let azure = fixture("azure", "chat-stream-filtered.sse");
    assert!(
        azure.contains("\r\n"),
        "the Azure fixture has CRLF line endings"
    );
    for case in STREAM_CASES {
        let input = fixture(case.provider, &format!("{}.sse", case.name));
        for include_usage in [false, true] {
            let what = format!(
                "{}/{} include_usage={include_usage}",
                case.provider, case.name
            );
            let meta = stream_meta(case.kind, include_usage);
            let got = transcode(input.as_bytes(), &meta);
            let expected = match (case.usage, include_usage) {
                (Some(_), true) => format!("{}.expected-usage.sse", case.name),
                _ => format!("{}.expected.sse", case.name),
            };
            assert_eq!(
                String::from_utf8_lossy(&got),
                fixture(case.provider, &expected),
                "{what}"
            );

            // CRLF line endings give the same output (the Azure fixture is written so).
            let crlf = input.replace("\r\n", "\n").replace('\n', "\r\n");
            let from_crlf = crate::llm::transcode_in_pieces(
                Box::new(OpenAiStream::default()),
                meta.clone(),
                crlf.as_bytes(),
                &[],
            );
            assert!(from_crlf == got, "{what}: CRLF");

            let frames = payloads(&got);
            let chunks: Vec<&Value> = frames.iter().filter(|f| f.is_object()).collect();
            let (first, last) = (chunks[0], chunks[chunks.len() - 1]);
            let object = match case.kind {
                RouteKind::Chat => "chat.completion.chunk",
                RouteKind::Completions => "text_completion",
            };
            for chunk in chunks.iter().filter(|c| c.get("error").is_none()) {
                for key in ["id", "created", "model"] {
                    assert_eq!(chunk[key], first[key], "{what}: {key} is constant");
                }
                assert_eq!(chunk["object"], json!(object), "{what}");
                assert!(chunk["choices"].is_array(), "{what}: {chunk}");
            }
            let with_usage: Vec<&&Value> =
                chunks.iter().filter(|c| c.get("usage").is_some()).collect();
            match case.usage {
                Some((prompt, completion, cached)) => {
                    assert_eq!(frames.last(), Some(&json!("[DONE]")), "{what}");
                    if include_usage {
                        assert_eq!(with_usage.len(), 1, "{what}: one usage chunk");
                        assert!(std::ptr::eq(*with_usage[0], last), "{what}: usage last");
                        assert_eq!(last["choices"], json!([]), "{what}");
                        let mut want = json!({"prompt_tokens": prompt,
                            "completion_tokens": completion,
                            "total_tokens": prompt + completion});
                        if let Some(c) = cached {
                            want["prompt_tokens_details"] = json!({"cached_tokens": c});
                        }
                        assert_eq!(last["usage"], want, "{what}");
                    } else {
                        assert!(with_usage.is_empty(), "{what}: usage stripped");
                    }
                }
                None => {
                    assert!(with_usage.is_empty(), "{what}");
                    assert!(last.get("error").is_some(), "{what}: ends with the error");
                }
            }
            // No chunk with nothing in it reaches the client (Azure's filter chunks).
            for chunk in &chunks {
                if let Some(choices) = chunk["choices"].as_array() {
                    assert!(
                        !choices.is_empty() || chunk.get("usage").is_some(),
                        "{what}: {chunk}"
                    );
                }
            }

            // The accounting the usage record is built from.
            let mut t =
                crate::llm::Transcode::new(Box::new(OpenAiStream::default()), meta.clone(), "test");
            t.feed(input.as_bytes());
            t.upstream_closed();
            let e = t.emitter();
            assert_eq!(e.text(), case.text, "{what}");
            if let Some((prompt, completion, _)) = case.usage {
                assert_eq!(e.tokens(), (prompt, completion), "{what}");
                assert!(e.usage_is_final(), "{what}");
                assert_eq!(e.end(), crate::llm::StreamEnd::Done, "{what}");
            } else {
                assert_eq!(e.end(), crate::llm::StreamEnd::Failed, "{what}");
            }
        }
    }
}

#[test]
fn parallel_tool_calls_keep_their_index_and_arguments() {
    for (provider, calls) in [
        (
            "openai",
            [
                ("call_kT0aW2mQ", "get_weather", r#"{"city": "Paris"}"#),
                ("call_Zq9vR4nB", "get_time", r#"{"tz":"Europe\/Paris"}"#),
            ],
        ),
        (
            "mistral",
            [
                (
                    "D681PevKs",
                    "retrieve_payment_status",
                    r#"{"transaction_id": "T1001"}"#,
                ),
                (
                    "Xy7Pq2Lm9",
                    "retrieve_payment_date",
                    r#"{"transaction_id": "T1001"}"#,
                ),
            ],
        ),
    ] {
        let input = fixture(provider, "chat-stream-tools.sse");
        let got = transcode(input.as_bytes(), &stream_meta(CHAT, false));
        // Accumulate as an SDK does: fragments by `index`.
        let mut acc: Vec<(String, String, String)> = Vec::new();
        let mut finish = None;
        for frame in payloads(&got).iter().filter(|f| f.is_object()) {
            let choice = &frame["choices"][0];
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(reason.to_string());
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let i = usize::try_from(call["index"].as_u64().expect("index")).expect("usize");
                if let Some(id) = call["id"].as_str() {
                    assert_eq!(i, acc.len(), "{provider}: a new call takes the next index");
                    assert_eq!(call["type"], json!("function"), "{provider}");
                    let name = call["function"]["name"].as_str().expect("name");
                    acc.push((id.into(), name.into(), String::new()));
                }
                let args = call["function"]["arguments"].as_str().expect("string");
                acc[i].2.push_str(args);
            }
        }
        let want: Vec<(String, String, String)> = calls
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(acc, want, "{provider}");
        assert_eq!(finish.as_deref(), Some("tool_calls"));
    }
}

fn chunk_with(choice: Value) -> String {
    let chunk = json!({"id": "x", "object": "chat.completion.chunk", "created": 1,
                       "model": "m", "choices": [choice]});
    format!("data: {chunk}\n\n")
}

#[test]
fn dialect_quirks_are_normalised() {
    // Every call numbered 0, object arguments, Mistral's `model_length`.
    let call =
        |id: &str| json!({"index": 0, "id": id, "function": {"name": "f", "arguments": {"a": 1}}});
    let input = [
        chunk_with(json!({"index": 0, "delta": {"tool_calls": [call("aaaaaaaaa")]}})),
        chunk_with(json!({"index": 0, "delta": {"tool_calls": [call("bbbbbbbbb")]}})),
        chunk_with(json!({"index": 0, "delta": {}, "finish_reason": "model_length"})),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let got = payloads(&transcode(input.as_bytes(), &stream_meta(CHAT, false)));
    let calls: Vec<Value> = got[..2]
        .iter()
        .map(|f| f["choices"][0]["delta"]["tool_calls"][0].clone())
        .collect();
    assert_eq!(
        calls,
        vec![
            json!({"index": 0, "id": "aaaaaaaaa", "type": "function",
                   "function": {"name": "f", "arguments": "{\"a\":1}"}}),
            json!({"index": 1, "id": "bbbbbbbbb", "type": "function",
                   "function": {"name": "f", "arguments": "{\"a\":1}"}}),
        ]
    );
    assert_eq!(got[2]["choices"][0]["finish_reason"], json!("length"));

    // Mistral's `error` finish: a failure when nothing was produced, else `stop`.
    let error = chunk_with(json!({"index": 0, "delta": {}, "finish_reason": "error"}));
    let got = payloads(&transcode(error.as_bytes(), &stream_meta(CHAT, false)));
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["error"]["message"],
        json!("upstream finished with finish_reason 'error'")
    );
    let input = chunk_with(json!({"index": 0, "delta": {"content": "hi"}})) + &error;
    let got = payloads(&transcode(input.as_bytes(), &stream_meta(CHAT, false)));
    assert_eq!(got[1]["choices"][0]["finish_reason"], json!("stop"));
    assert_eq!(got.last(), Some(&json!("[DONE]")), "closed after a finish");

    // Mistral's in-band error shape.
    let input = r#"data: {"object":"error","message":"Service unavailable","type":"internal_server_error","param":null,"code":"1000"}"#;
    let got = payloads(&transcode(input.as_bytes(), &stream_meta(CHAT, true)));
    assert_eq!(
        got,
        vec![json!({"error": {"message": "Service unavailable",
            "type": "internal_server_error", "param": null, "code": "1000"}})]
    );
}

#[test]
fn a_stream_cut_short_is_an_error_for_the_client() {
    let input = chunk_with(json!({"index": 0, "delta": {"content": "hal"}}));
    let got = payloads(&transcode(input.as_bytes(), &stream_meta(CHAT, true)));
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["error"]["type"], json!("upstream_error"));
    let input = "data: {not json}\n\n";
    let got = payloads(&transcode(input.as_bytes(), &stream_meta(CHAT, true)));
    assert_eq!(
        got[0]["error"]["code"],
        json!("stream_transformation_failed")
    );
}

// ---- Kong conformance ------------------------------------------------------------

/// Kong's driver unit fixtures (`01-unit_spec.lua`) for openai, azure and mistral, with
/// its unit-test configuration (max_tokens 512, temperature 0.5; azure also top_p 1.0).
#[test]
#[ignore = "needs TOLLGATE_KONG_FIXTURES (Kong's ai-proxy fixtures; .ci/run sets it)"]
fn kong_unit_fixtures_openai() {
    let dir = kong_dir();
    let unit = |rel: &str| kong_json(&dir, &format!("unit/{rel}"));
    let cases: [(ProviderKind, &str, RouteKind, &str, Option<f64>); 6] = [
        (ProviderKind::Openai, "openai", CHAT, "gpt-4", None),
        (
            ProviderKind::Openai,
            "openai",
            COMPLETIONS,
            "gpt-3.5-turbo-instruct",
            None,
        ),
        (ProviderKind::Azure, "azure", CHAT, "gpt-4", Some(1.0)),
        (
            ProviderKind::Azure,
            "azure",
            COMPLETIONS,
            "gpt-3.5-turbo-instruct",
            Some(1.0),
        ),
        (MISTRAL, "mistral/openai", CHAT, "mistral-tiny", None),
        (MISTRAL_OLLAMA, "mistral/ollama", CHAT, "mistral-tiny", None),
    ];
    for (provider, path, kind, model, top_p) in cases {
        let mut s = match provider {
            ProviderKind::Azure => azure(model),
            _ => Setup::new(provider, model),
        };
        if provider == MISTRAL_OLLAMA {
            s = s.url("http://ollama.example.com/api/chat");
        }
        s.tuning.max_tokens = Some(512);
        s.tuning.temperature = Some(0.5);
        s.tuning.top_p = top_p;
        let route = match kind {
            RouteKind::Chat => "llm-v1-chat",
            RouteKind::Completions => "llm-v1-completions",
        };
        let what = format!("{path}/{route}");

        // Requests: exact equality (numbers compared as Lua does, 1 == 1.0).
        let (_, body) = req_ok(&s, kind, unit(&format!("requests/{route}.json")));
        let expected = unit(&format!("expected-requests/{path}/{route}.json"));
        assert!(
            json_eq(&expected, &body),
            "{what} request:\nexpected {expected}\ngot      {body}"
        );

        // Responses.
        let real = kong_file(&dir, &format!("unit/real-responses/{path}/{route}.json"));
        let out = resp(&s, kind, real.as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
        let expected = unit(&format!("expected-responses/{path}/{route}.json"));
        if provider == MISTRAL_OLLAMA {
            // Kong's expected usage (139/130/269) is not the fixture's counts (26/100)
            // and Kong does not assert it; ours is the provider's (docs/behaviour.md,
            // "Differences from Kong", 3).
            assert_subset(&expected, &out, "", &["/usage"], &what);
            assert_eq!(
                out["usage"],
                json!({"prompt_tokens": 26, "completion_tokens": 100, "total_tokens": 126})
            );
        } else {
            // OpenAI-format bodies pass through: byte-for-byte in Kong, equal here.
            assert!(
                json_eq(&expected, &out),
                "{what} response:\nexpected {expected}\ngot      {out}"
            );
        }
    }
}

#[test]
fn translator_dispatch_covers_the_family() {
    for p in [
        ProviderKind::Openai,
        ProviderKind::Azure,
        MISTRAL,
        MISTRAL_OLLAMA,
    ] {
        let _ = translator(p);
    }
    let _ = ProviderKind::Llama2(Llama2Format::Openai);
}

// ---- Answers sent as received --------------------------------------------------

/// Sound: whenever `verbatim` says a body can be sent as received, the full translation
/// returns that same object, with the same usage, model and finish reason.
fn assert_verbatim_is_sound(s: &Setup, kind: RouteKind, raw: &[u8]) -> bool {
    let Some(facts) = OpenAiCompatible::of(Dialect::OpenAi).verbatim(kind, raw) else {
        return false;
    };
    let full = resp(s, kind, raw).expect("a verbatim body translates");
    let text = String::from_utf8_lossy(raw);
    assert_eq!(full, body_json(raw), "normalising changed it: {text}");
    assert_eq!(full["usage"]["prompt_tokens"], json!(facts.prompt_tokens));
    assert_eq!(
        full["usage"]["completion_tokens"],
        json!(facts.completion_tokens)
    );
    assert_eq!(full["model"], json!(facts.model));
    assert_eq!(
        full["choices"][0]["finish_reason"],
        json!(facts.finish_reason)
    );
    true
}

#[test]
fn conforming_answers_are_sent_as_received() {
    let s = Setup::new(ProviderKind::Openai, "gpt-4o");
    for (name, kind) in [
        ("chat-response.json", CHAT),
        ("chat-response-tool-calls.json", CHAT),
        ("completions-response.json", COMPLETIONS),
    ] {
        let raw = fixture("openai", name);
        assert!(assert_verbatim_is_sound(&s, kind, raw.as_bytes()), "{name}");
    }
    // Content null beside tool calls, a newline escaped in the content, extra members kept.
    let body = json!({"id": "c-1", "object": "chat.completion", "created": 1, "model": "m",
        "system_fingerprint": "fp", "choices": [
            {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
             "content": null, "tool_calls": [{"id": "t", "type": "function",
             "function": {"name": "f", "arguments": "{}"}}]}},
            {"index": 1, "finish_reason": "length", "logprobs": null,
             "message": {"role": "assistant", "content": "a\nb \"q\""}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
                  "prompt_tokens_details": {"cached_tokens": 1}}});
    assert!(assert_verbatim_is_sound(
        &s,
        CHAT,
        body.to_string().as_bytes()
    ));
}

#[test]
fn answers_that_need_normalising_are_translated() {
    let s = Setup::new(ProviderKind::Openai, "gpt-4o");
    let good = json!({"id": "c-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}});
    assert!(assert_verbatim_is_sound(
        &s,
        CHAT,
        good.to_string().as_bytes()
    ));
    let changes: Vec<(&str, Value)> = vec![
        ("/id", Value::Null),
        ("/id", json!("")),
        ("/object", json!("text_completion")),
        ("/created", json!(1.5)),
        ("/created", Value::Null),
        ("/model", json!("")),
        ("/model", json!(3)),
        ("/usage", Value::Null),
        ("/usage/total_tokens", Value::Null),
        ("/usage/prompt_tokens", json!(1.0)),
        ("/usage/completion_tokens", json!(-2)),
        ("/choices", json!([])),
        ("/choices/0/index", Value::Null),
        ("/choices/0/finish_reason", json!("MAX_TOKENS")),
        ("/choices/0/finish_reason", json!("error")),
        ("/choices/0/finish_reason", json!("eos_token")),
        ("/choices/0/finish_reason", Value::Null),
        ("/choices/0/message/role", Value::Null),
        ("/choices/0/message/content", json!(12)),
        ("/choices/0/message/content", Value::Null),
        (
            "/choices/0/message",
            json!({"role": "assistant", "content": null, "tool_calls": []}),
        ),
        ("/choices/0/message", json!("hi")),
    ];
    for (pointer, value) in changes {
        let mut body = good.clone();
        *body.pointer_mut(pointer).expect("pointer") = value.clone();
        let raw = body.to_string();
        assert!(
            !assert_verbatim_is_sound(&s, CHAT, raw.as_bytes()),
            "{pointer} = {value} was sent as received"
        );
    }
    // A duplicate key, not valid JSON, not an object, a completion body on a chat route.
    for raw in [
        r#"{"id":"a","id":"b","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
        "{",
        "[1]",
        "",
    ] {
        assert!(
            OpenAiCompatible::of(Dialect::OpenAi)
                .verbatim(CHAT, raw.as_bytes())
                .is_none(),
            "{raw}"
        );
    }
    let completion = fixture("openai", "completions-response.json");
    assert!(!assert_verbatim_is_sound(&s, CHAT, completion.as_bytes()));
}

/// Mistral's per-minute headers get OpenAI's names; the other dialects already use them.
#[test]
fn mistral_rate_limit_headers_get_openai_names() {
    let headers: Vec<(String, String)> = [
        ("x-ratelimit-limit-req-minute", "60"),
        ("x-ratelimit-remaining-req-minute", "59"),
        ("x-ratelimit-limit-tokens-minute", "500000"),
        ("x-ratelimit-remaining-tokens-minute", "499000"),
        ("x-ratelimit-limit-tokens-month", "1000000000"),
        ("x-ratelimit-tokens-query-cost", "1000"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let collect = |dialect| {
        let mut out = Vec::new();
        OpenAiCompatible::of(dialect).rate_limit_headers(
            &headers,
            chrono::Utc::now(),
            &mut |n, v| out.push((n, v.into_owned())),
        );
        out
    };
    let expected: Vec<(&str, String)> = vec![
        ("x-ratelimit-limit-requests", "60".into()),
        ("x-ratelimit-remaining-requests", "59".into()),
        ("x-ratelimit-limit-tokens", "500000".into()),
        ("x-ratelimit-remaining-tokens", "499000".into()),
    ];
    assert_eq!(collect(Dialect::Mistral), expected);
    assert!(collect(Dialect::OpenAi).is_empty());
    assert!(collect(Dialect::Azure).is_empty());
}
