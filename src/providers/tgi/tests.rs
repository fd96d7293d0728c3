use serde_json::{Value, json};

use super::*;
use crate::llm::sse_payloads as frames;
use crate::llm::{StreamMeta, assert_split_invariant, transcode_in_pieces};
use crate::providers::test_support::*;
use crate::providers::{ProviderKind, RequestError, RouteKind, TranslateError};
use crate::vocab::Llama2Format;

const CHAT: RouteKind = RouteKind::Chat;
const COMPLETIONS: RouteKind = RouteKind::Completions;
const RAW: ProviderKind = ProviderKind::Llama2(Llama2Format::Raw);
const URL: &str = "https://tgi.example.com/generate?wait=true";

fn raw() -> Setup {
    Setup::new(RAW, "llama2").url(URL)
}

fn req(s: &Setup, kind: RouteKind, body: Value) -> Result<(String, Value), RequestError> {
    let r = translator(s.provider).request(&s.ctx(), kind, object(body))?;
    assert!(r.headers.is_empty());
    Ok((r.url, body_json(&r.body)))
}

fn inputs(messages: Value) -> String {
    let (_, body) = req(&raw(), CHAT, json!({"messages": messages})).expect("ok");
    body["inputs"].as_str().expect("inputs").to_string()
}

fn param(s: &Setup, kind: RouteKind, body: Value) -> Option<String> {
    req(s, kind, body).expect_err("refused").param
}

fn resp(s: &Setup, kind: RouteKind, body: &[u8]) -> Result<Value, TranslateError> {
    translator(s.provider).response(&s.ctx(), kind, body)
}

// ---- raw requests --------------------------------------------------------------

#[test]
fn raw_chat_uses_the_standard_template_and_keeps_assistant_turns() {
    let (url, body) = req(&raw(), CHAT, fixture_json("llama2", "chat-request.json")).expect("ok");
    assert_eq!(url, URL);
    assert_eq!(
        body,
        json!({
            "inputs": "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHi! [/INST] Hello! How can I help? </s><s>[INST] Tell me a joke.\nAbout cats. [/INST]",
            "parameters": {"max_new_tokens": 128, "temperature": 0.7, "stop": ["</s>"], "stream": false}
        })
    );
}

#[test]
fn raw_template_edge_cases() {
    assert_eq!(
        inputs(json!([{"role": "user", "content": "Hi"}])),
        "<s>[INST] Hi [/INST]"
    );
    // System messages anywhere are gathered into the system block, in order.
    assert_eq!(
        inputs(json!([
            {"role": "user", "content": "a"}, {"role": "developer", "content": "S1"},
            {"role": "assistant", "content": "b"}, {"role": "system", "content": "S2"},
            {"role": "user", "content": "c"}
        ])),
        "<s>[INST] <<SYS>>\nS1\nS2\n<</SYS>>\n\na [/INST] b </s><s>[INST] c [/INST]"
    );
    // The conversation must open with a user turn; a final assistant turn is continued.
    assert_eq!(
        inputs(
            json!([{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Sure, "}])
        ),
        "<s>[INST]  [/INST] Hello </s><s>[INST] Hi [/INST] Sure,"
    );
    assert_eq!(
        inputs(json!([{"role": "system", "content": "Only a system prompt"}])),
        "<s>[INST] <<SYS>>\nOnly a system prompt\n<</SYS>>\n\n [/INST]"
    );
    assert_eq!(
        inputs(json!([{"role": "user", "content": null}, {"role": "user", "content": "日本語 ✓"}])),
        "<s>[INST] 日本語 ✓ [/INST]"
    );
}

#[test]
fn raw_completions_and_tuning() {
    let mut s = raw();
    s.tuning.max_tokens = Some(512);
    s.tuning.temperature = Some(0.5);
    s.tuning.top_p = Some(0.9);
    s.tuning.top_k = Some(40);
    let (_, body) = req(&s, COMPLETIONS, json!({"prompt": " What is 1 + 1? ", "max_tokens": 5, "temperature": 2,
                                                "seed": 3, "stream": true, "frequency_penalty": 0.2})).expect("ok");
    assert_eq!(
        body,
        json!({
            "inputs": "<s>[INST] What is 1 + 1? [/INST]",
            "parameters": {"max_new_tokens": 512, "temperature": 0.5, "top_p": 0.9, "top_k": 40,
                           "seed": 3, "frequency_penalty": 0.2, "stream": true, "details": true},
            "stream": true
        }),
        "a streamed request asks TGI to stream (top level) and for the final details"
    );
}

#[test]
fn raw_refuses_what_it_cannot_honour() {
    let s = raw();
    let user = json!({"role": "user", "content": "x"});
    let cases = [
        (json!({"messages": [user], "n": 2}), "n"),
        (
            json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tools",
        ),
        (
            json!({"messages": [user], "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"messages": [user], "presence_penalty": 1}),
            "presence_penalty",
        ),
        (json!({"messages": [user], "logprobs": true}), "logprobs"),
        (json!({"messages": [user], "top_k": "many"}), "top_k"),
        (
            json!({"messages": [{"role": "tool", "content": "x", "tool_call_id": "c"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "c"}]}]}),
            "messages[0].tool_calls",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": 3.5}]}),
            "messages[0].content",
        ),
        (json!({"messages": [[]]}), "messages[0]"),
        (json!({"messages": "hi"}), "messages"),
    ];
    for (body, want) in cases {
        assert_eq!(
            param(&s, CHAT, body.clone()).as_deref(),
            Some(want),
            "{body}"
        );
    }
    assert_eq!(
        param(&s, COMPLETIONS, json!({"prompt": 1})).as_deref(),
        Some("prompt")
    );
    // Empty tools / null fields are no request for anything.
    assert!(req(&s, CHAT, json!({"messages": [user], "tools": [], "n": 1, "logit_bias": {}, "presence_penalty": 0})).is_ok());

    let mut s = raw();
    s.upstream_url = None;
    let e = req(&s, CHAT, json!({"messages": [user]})).expect_err("no url");
    assert!(e.message.contains("upstream_url") && e.param.is_none());
}

// ---- raw responses -------------------------------------------------------------

#[test]
fn raw_responses_in_every_shape() {
    let s = raw();
    // Kong's shape: {"data":[{"generated_text"}]}, prompt echoed.
    let body = json!({"data": [{"generated_text": "<s>[INST] Hi [/INST]\n\n  Hello there!  "}]});
    let out = resp(&s, CHAT, body.to_string().as_bytes()).expect("ok");
    assert!(
        out["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-"))
    );
    assert_eq!(out["object"], json!("chat.completion"));
    assert_eq!(
        out["model"],
        json!("llama2"),
        "raw responses carry no model: the context's"
    );
    assert!(out["created"].as_i64().is_some_and(|c| c > 1_700_000_000));
    assert_eq!(
        out["choices"],
        json!([{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": "Hello there!"}}])
    );
    // No counts at all: left out, for the proxy to estimate.
    assert_eq!(out["usage"], json!({}));

    // TGI /generate: details give the finish reason and generated tokens; EOS stripped.
    let out = resp(
        &s,
        COMPLETIONS,
        fixture("llama2", "raw-response-tgi.json").as_bytes(),
    )
    .expect("ok");
    assert_eq!(out["object"], json!("text_completion"));
    assert_eq!(
        out["choices"],
        json!([{"index": 0, "logprobs": null, "finish_reason": "length",
        "text": "Why did the cat sit on the computer? To keep an eye on the mouse!"}])
    );
    assert_eq!(
        out["usage"],
        json!({"completion_tokens": 20}),
        "the prompt is never counted by TGI: left out, for the proxy to estimate"
    );

    // HF Inference API: a list; no [/INST] echo = the whole text.
    let out = resp(
        &s,
        CHAT,
        fixture("llama2", "raw-response-list.json").as_bytes(),
    )
    .expect("ok");
    assert_eq!(
        out["choices"][0]["message"]["content"],
        json!("Un chat 🐈, voilà.")
    );

    // A server-reported usage is used.
    let body = json!({"data": [{"generated_text": "ok"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}});
    let out = resp(&s, CHAT, body.to_string().as_bytes()).expect("ok");
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
    );
}

#[test]
fn untranslatable_raw_responses() {
    let s = raw();
    let cases: [(&[u8], &str); 9] = [
        (b"", "empty response body"),
        (b"<html>502</html>", "failed to decode llm/v1/chat response"),
        (
            br#"{"data": []}"#,
            "response data is empty from llama2 endpoint",
        ),
        (
            br#"{"data": [{"generated_text": "a"}, {"generated_text": "b"}]}"#,
            "cannot parse response from llama2 endpoint",
        ),
        (
            br#"{"data": "x"}"#,
            "cannot parse response from llama2 endpoint",
        ),
        (
            br#"{"data": [{"text": "x"}]}"#,
            "response data is empty from llama2 endpoint",
        ),
        (
            br#"{"nothing_object": 1}"#,
            "response data is empty from llama2 endpoint",
        ),
        (
            br#"[{"generated_text": 5}]"#,
            "response data is empty from llama2 endpoint",
        ),
        (b"42", "cannot parse response from llama2 endpoint"),
    ];
    for (body, reason) in cases {
        assert_eq!(
            resp(&s, CHAT, body),
            Err(TranslateError(reason.into())),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn llama2_errors() {
    let e = translator(RAW).error(422, fixture("llama2", "raw-error.json").as_bytes());
    assert!(e.message.starts_with("Input validation error"));
    assert_eq!(e.kind, "validation");
    let e = translator(RAW).error(401, br#"{"error":"Model requires a Pro subscription."}"#);
    assert_eq!(
        (e.message.as_str(), e.kind.as_str()),
        ("Model requires a Pro subscription.", "upstream_error")
    );
    let e = translator(RAW).error(404, fixture("llama2", "ollama-error.json").as_bytes());
    assert!(e.message.contains("not found"));
    let e = translator(RAW).error(503, b"<html><body>Service Unavailable</body></html>");
    assert_eq!(
        (e.message.as_str(), e.kind.as_str()),
        ("upstream answered HTTP 503", "upstream_error")
    );
    let e = translator(RAW).error(500, b"");
    assert_eq!(e.kind, "upstream_error");
    let e = translator(RAW).error(400, fixture("openai", "error-invalid-key.json").as_bytes());
    assert_eq!(e.code, Some(json!("invalid_api_key")));
}

// ---- Kong conformance ------------------------------------------------------------

/// Kong's driver unit fixtures for llama2 raw and ollama, with its unit-test config:
/// max_tokens 512, temperature 0.5, plus top_p 1 and top_k 40 for raw chat.
#[test]
#[ignore = "needs TOLLGATE_KONG_FIXTURES (Kong's ai-proxy fixtures; .ci/run sets it)"]
fn kong_unit_fixtures_llama2() {
    let dir = kong_dir();
    let unit = |rel: &str| kong_json(&dir, &format!("unit/{rel}"));
    for format in [Llama2Format::Raw, Llama2Format::Ollama] {
        for kind in [CHAT, COMPLETIONS] {
            let mut s = Setup::new(ProviderKind::Llama2(format), "llama2")
                .url("http://llama.example.com/x");
            s.tuning.max_tokens = Some(512);
            s.tuning.temperature = Some(0.5);
            if (format, kind) == (Llama2Format::Raw, CHAT) {
                s.tuning.top_p = Some(1.0);
                s.tuning.top_k = Some(40);
            }
            let (dir_name, route) = (
                if format == Llama2Format::Raw {
                    "raw"
                } else {
                    "ollama"
                },
                if kind == CHAT {
                    "llm-v1-chat"
                } else {
                    "llm-v1-completions"
                },
            );
            let what = format!("llama2/{dir_name}/{route}");

            let (_, mut body) =
                req(&s, kind, unit(&format!("requests/{route}.json"))).expect("translates");
            let expected = unit(&format!("expected-requests/llama2/{dir_name}/{route}.json"));
            if format == Llama2Format::Raw {
                // Differences from Kong, 7: the standard Llama 2 template keeping assistant
                // turns replaces Kong's (assistant turns dropped, malformed completions
                // wrapper); `inputs` is checked exactly here, the rest against Kong.
                let want = if kind == CHAT {
                    "<s>[INST] <<SYS>>\nYou are a mathematician.\n<</SYS>>\n\nWhat is 1 + 2? [/INST] The sum of 1 + 2 is 3. If you have any more math questions or if there's anything else I can help you with, feel free to ask! </s><s>[INST] Multiply that by 2 [/INST] Certainly! If you multiply 3 by 2, the result is 6. If you have any more questions or if there's anything else I can help you with, feel free to ask! </s><s>[INST] Why can't you divide by zero? [/INST]"
                } else {
                    "<s>[INST] Explain why you can't divide by zero? [/INST]"
                };
                assert_eq!(body["inputs"], json!(want), "{what}");
                body["inputs"] = expected["inputs"].clone();
            }
            assert!(
                json_eq(&expected, &body),
                "{what} request:\nexpected {expected}\ngot      {body}"
            );

            let real = kong_file(
                &dir,
                &format!("unit/real-responses/llama2/{dir_name}/{route}.json"),
            );
            let out = resp(&s, kind, real.as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
            let expected = unit(&format!(
                "expected-responses/llama2/{dir_name}/{route}.json"
            ));
            // Every field of Kong's expected response must match, except:
            // - `/usage` (ollama): Kong's 139/130/269 is not derivable from the fixture's
            //   counts and Kong does not assert it; ours is the provider's
            //   (docs/behaviour.md, "Differences from Kong", 3);
            // - `/choices/0/text` (ollama completions): Kong's expected text is another
            //   fixture's ("You cannot divide…" vs the real "Because I said so.") and
            //   Kong only asserts `choices[1].message`, absent for completions.
            // Fields we add beyond Kong's (id, created, model for raw, finish_reason)
            // are required by docs/behaviour.md, "Responses" (mapped finish_reason, an id).
            let skip: &[&str] = match (format, kind) {
                (Llama2Format::Ollama, RouteKind::Chat) => &["/usage"],
                (Llama2Format::Ollama, RouteKind::Completions) => &["/usage", "/choices/0/text"],
                _ => &[],
            };
            assert_subset(&expected, &out, "", skip, &what);
            if (format, kind) == (Llama2Format::Ollama, COMPLETIONS) {
                assert_eq!(out["choices"][0]["text"], json!("Because I said so."));
                assert_eq!(
                    out["usage"],
                    json!({"prompt_tokens": 13, "completion_tokens": 12, "total_tokens": 25})
                );
            }
        }
    }
}

// ---- streaming -------------------------------------------------------------------

fn meta(kind: RouteKind, include_usage: bool) -> StreamMeta {
    StreamMeta {
        id: "chatcmpl-test".into(),
        created: 1_700_000_000,
        model: "llama2".into(),
        kind,
        include_usage,
        collect_text: true,
    }
}

fn transcoder(s: &Setup, kind: RouteKind) -> Box<dyn StreamTranscoder> {
    translator(s.provider)
        .stream(&s.ctx(), kind)
        .expect("llama2 streams")
}

fn assert_expected(name: &str, got: &[u8]) {
    let want = fixture("llama2", name);
    if want.as_bytes() != got {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::write(&path, got);
        panic!(
            "llama2/{name} differs; actual output in {}:\n{}",
            path.display(),
            String::from_utf8_lossy(got)
        );
    }
}

#[test]
fn tgi_stream_to_openai_chunks() {
    let s = raw();
    let input = fixture("llama2", "tgi-stream.sse");
    let with = assert_split_invariant(|| transcoder(&s, CHAT), &meta(CHAT, true), input.as_bytes());
    assert_expected("tgi-stream.expected.sse", &with);
    let got = frames(&with);
    let text: String = got
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text, "Why did the chat 🐈 sit?",
        "leading blank and </s> dropped"
    );
    let n = got.len();
    assert_eq!(got[n - 3]["choices"][0]["finish_reason"], json!("stop"));
    assert_eq!(
        got[n - 2]["usage"],
        json!({"prompt_tokens": 0, "completion_tokens": 6, "total_tokens": 6}),
        "TGI gives no prompt count"
    );
    assert_eq!(got[n - 1], json!("[DONE]"));

    let without = frames(&assert_split_invariant(
        || transcoder(&s, CHAT),
        &meta(CHAT, false),
        input.as_bytes(),
    ));
    let mut expected = got.clone();
    expected.remove(n - 2);
    assert_eq!(without, expected, "no usage chunk unless asked");

    // Completions: text chunks; `length` maps to length.
    let cut = input.replace("eos_token", "length");
    let got = frames(&assert_split_invariant(
        || transcoder(&s, COMPLETIONS),
        &meta(COMPLETIONS, false),
        cut.as_bytes(),
    ));
    assert_eq!(got[0]["choices"][0]["text"], json!("Why"));
    assert_eq!(
        got[got.len() - 2]["choices"][0]["finish_reason"],
        json!("length")
    );
}

#[test]
fn tgi_stream_errors_and_cuts() {
    let s = raw();
    let input = fixture("llama2", "tgi-stream-error.sse");
    let got = frames(&assert_split_invariant(
        || transcoder(&s, CHAT),
        &meta(CHAT, true),
        input.as_bytes(),
    ));
    assert_eq!(got[1]["choices"][0]["delta"]["content"], json!("Hello"));
    assert_eq!(
        got[2],
        json!({"error": {"message": "Request failed during generation: Server error: CUDA out of memory",
                         "type": "generation", "param": null, "code": null}})
    );
    assert_eq!(got.len(), 3);

    // Cut before the final event: an error frame, no usage, no [DONE].
    let full = fixture("llama2", "tgi-stream.sse");
    let cut = &full[..full.rfind("data:").expect("events")];
    let got = frames(&assert_split_invariant(
        || transcoder(&s, CHAT),
        &meta(CHAT, true),
        cut.as_bytes(),
    ));
    let last = got.last().expect("frames");
    assert_eq!(last["error"]["type"], json!("upstream_error"));
    assert!(!got.contains(&json!("[DONE]")));
    assert!(got.iter().all(|f| f.get("usage").is_none()));

    // A final event without details (not requested): stop, completion estimated.
    let out = transcode_in_pieces(
        transcoder(&s, CHAT),
        meta(CHAT, true),
        br#"data: {"token":{"text":"abcdefgh","special":false},"generated_text":"abcdefgh","details":null}"#,
        &[],
    );
    let got = frames(&out);
    assert_eq!(got[2]["choices"][0]["finish_reason"], json!("stop"));
    assert_eq!(got[3]["usage"]["completion_tokens"], json!(2));

    let got = frames(&transcode_in_pieces(
        transcoder(&s, CHAT),
        meta(CHAT, false),
        b"data: <html>\n\n",
        &[],
    ));
    assert_eq!(
        got[0]["error"]["code"],
        json!("stream_transformation_failed")
    );
}

#[test]
fn every_format_streams() {
    for format in [
        Llama2Format::Raw,
        Llama2Format::Ollama,
        Llama2Format::Openai,
    ] {
        let s = Setup::new(ProviderKind::Llama2(format), "llama2").url(URL);
        for kind in [CHAT, COMPLETIONS] {
            assert!(translator(s.provider).stream(&s.ctx(), kind).is_some());
        }
    }
    // The openai format is OpenAI SSE, passed through.
    let s = Setup::new(ProviderKind::Llama2(Llama2Format::Openai), "llama2").url(URL);
    let input = concat!(
        r#"data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"llama2","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"llama2","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
        "\n\ndata: [DONE]\n\n"
    );
    let got = frames(&assert_split_invariant(
        || transcoder(&s, CHAT),
        &meta(CHAT, true),
        input.as_bytes(),
    ));
    assert_eq!(got[0]["choices"][0]["delta"]["content"], json!("Hi"));
    assert_eq!(got[2]["usage"]["total_tokens"], json!(4));
    assert_eq!(got[3], json!("[DONE]"));
}
