//! Llama 2 family, self-hosted (`upstream_url` required), in three formats:
//! - `raw`: a Llama 2 chat prompt in `{"inputs", "parameters"}` (HF TGI style, Kong's raw
//!   format), built with the standard template and keeping assistant turns (docs/behaviour.md,
//!   "Differences from Kong", 7);
//! - `ollama`: Ollama's native API, mapped in `ollama.rs` (shared with Mistral);
//! - `openai`: an OpenAI-compatible server, the pass-through of `openai.rs`.
//!
//! Streams: TGI's token SSE (`TgiStream`), Ollama NDJSON, or OpenAI SSE respectively.

use serde_json::{Map, Value, json};

use super::openai::{
    Dialect, OpenAiStream, check_prompt_shape, compatible_request, compatible_response,
    content_parts, effective_max_tokens, map_finish_reason, new_id, normalise_error,
    normalise_usage, now_secs, object_name, parse_body, reject_openai_only, reject_unless,
    required_upstream_url, stop_list, stream_flag, to_body, token_count, usage,
};
use super::{
    ProviderKind, RequestError, ResponseError, RouteKind, TranslateContext, Translator,
    UpstreamError, UpstreamRequest, apply_tuning,
};
use crate::llm::{
    ChunkEmitter, ReportedUsage, SseDecoder, SseEvent, StreamError, StreamTranscoder,
};
use crate::vocab::Llama2Format;

pub struct Llama2;

const PROVIDER: &str = "llama2 (raw format)";

fn format(ctx: &TranslateContext<'_>) -> Llama2Format {
    match ctx.provider {
        ProviderKind::Llama2(f) => f,
        _ => ctx.options.llama2_format.unwrap_or(Llama2Format::Raw),
    }
}

impl Translator for Llama2 {
    fn request(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: Map<String, Value>,
    ) -> Result<UpstreamRequest, RequestError> {
        match format(ctx) {
            Llama2Format::Raw => raw_request(ctx, kind, body),
            Llama2Format::Ollama => super::ollama::request(ctx, kind, body),
            Llama2Format::Openai => {
                let url = required_upstream_url(ctx, "llama2 services")?;
                compatible_request(ctx, kind, body, Dialect::SelfHosted, url)
            }
        }
    }

    fn response(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: &[u8],
    ) -> Result<Value, ResponseError> {
        match format(ctx) {
            Llama2Format::Raw => raw_response(ctx, kind, body),
            Llama2Format::Ollama => super::ollama::response(ctx, kind, body),
            Llama2Format::Openai => compatible_response(ctx, kind, body),
        }
    }

    fn error(&self, status: u16, body: &[u8]) -> UpstreamError {
        // TGI/Ollama `{"error":"…"}` and OpenAI-compatible servers' shapes alike.
        normalise_error(status, body)
    }

    fn stream(
        &self,
        ctx: &TranslateContext<'_>,
        _kind: RouteKind,
    ) -> Option<Box<dyn StreamTranscoder>> {
        Some(match format(ctx) {
            Llama2Format::Raw => Box::new(TgiStream::default()),
            Llama2Format::Ollama => super::ollama::stream(ctx),
            Llama2Format::Openai => Box::new(OpenAiStream::default()),
        })
    }
}

/// OpenAI request → `{"inputs": <Llama 2 prompt>, "parameters": {…}}`.
fn raw_request(
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
    mut body: Map<String, Value>,
) -> Result<UpstreamRequest, RequestError> {
    let url = required_upstream_url(ctx, "llama2 services")?;
    check_prompt_shape(kind, &body)?;
    let max_tokens = effective_max_tokens(ctx, &body)?;
    apply_tuning(&mut body, ctx.tuning);
    reject_openai_only(&body, PROVIDER)?;
    reject_unless(
        &body,
        "tools",
        |v| v.is_null() || v.as_array().is_some_and(Vec::is_empty),
        "the raw format has no tool calling",
    )?;
    reject_unless(
        &body,
        "presence_penalty",
        |v| v.is_null() || v.as_f64() == Some(0.0),
        "the raw format has no presence_penalty",
    )?;
    reject_unless(
        &body,
        "response_format",
        |v| v.is_null() || v.get("type").and_then(Value::as_str) == Some("text"),
        "the raw format has no JSON mode",
    )?;

    let inputs = match kind {
        RouteKind::Chat => {
            let messages = body
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    RequestError::param("messages", "must be a non-empty array of messages")
                })?;
            chat_prompt(messages)?
        }
        // A prompt is one user turn of the same standard template (Differences from Kong, 7) — not
        // Kong's malformed `<<SYS>> You are a helpful assistant. <<SYS>>` wrapper.
        RouteKind::Completions => {
            let prompt = super::ollama::single_prompt(&body)?;
            format!("<s>[INST] {} [/INST]", prompt.trim())
        }
    };

    let mut parameters = Map::new();
    if let Some(max) = max_tokens {
        parameters.insert("max_new_tokens".into(), max);
    }
    for key in ["temperature", "top_p", "top_k", "seed", "frequency_penalty"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                parameters.insert(key.into(), v.clone());
            }
            Some(_) => return Err(RequestError::param(key, "must be a number")),
        }
    }
    if let Some(stop) = stop_list(&body)? {
        parameters.insert("stop".into(), stop);
    }
    let stream = stream_flag(&body)?;
    // Kong's flag; TGI itself ignores it.
    parameters.insert("stream".into(), Value::Bool(stream));
    if stream {
        // TGI's final stream event carries the finish reason and token count only when
        // asked for details.
        parameters.insert("details".into(), Value::Bool(true));
    }

    let mut out = Map::new();
    out.insert("inputs".into(), Value::from(inputs));
    out.insert("parameters".into(), Value::Object(parameters));
    if stream {
        // TGI's `POST /` streams on this top-level flag (`/generate_stream` always does);
        // absent when false so non-streamed bodies stay Kong's.
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(UpstreamRequest {
        url,
        headers: Vec::new(),
        body: to_body(&out)?,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    User,
    Assistant,
}

/// The standard Llama 2 chat template (docs/wire-formats.md, "Llama 2 and Ollama"; Meta's
/// `chat_completion`): `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant}
/// </s><s>[INST] {user} [/INST]`. System/developer messages are joined into the system block
/// wherever they stand; consecutive same-role turns are merged so roles alternate starting with the
/// user; a trailing assistant turn is left open so the model continues it.
fn chat_prompt(messages: &[Value]) -> Result<String, RequestError> {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(Turn, String)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let m = m
            .as_object()
            .ok_or_else(|| RequestError::param(&format!("messages[{i}]"), "must be an object"))?;
        let role = m.get("role").and_then(Value::as_str);
        let turn = match role {
            Some("system" | "developer") => None,
            Some("user") => Some(Turn::User),
            Some("assistant") => {
                if m.get("tool_calls")
                    .and_then(Value::as_array)
                    .is_some_and(|c| !c.is_empty())
                {
                    return Err(RequestError::param(
                        &format!("messages[{i}].tool_calls"),
                        "the raw format has no tool calling",
                    ));
                }
                Some(Turn::Assistant)
            }
            Some(other) => {
                return Err(RequestError::param(
                    &format!("messages[{i}].role"),
                    format!("role '{other}' is not supported by {PROVIDER}"),
                ));
            }
            None => {
                return Err(RequestError::param(
                    &format!("messages[{i}].role"),
                    "must be a string",
                ));
            }
        };
        let (text, _) = content_parts(m.get("content"), i, PROVIDER, false)?;
        // Meta's reference strips every turn.
        let text = text.trim().to_string();
        match turn {
            None => {
                if !text.is_empty() {
                    system.push(text);
                }
            }
            Some(t) => match turns.last_mut() {
                Some((last, prev)) if *last == t => {
                    if !text.is_empty() {
                        if !prev.is_empty() {
                            prev.push('\n');
                        }
                        prev.push_str(&text);
                    }
                }
                _ => turns.push((t, text)),
            },
        }
    }
    if turns.first().is_none_or(|(t, _)| *t == Turn::Assistant) {
        turns.insert(0, (Turn::User, String::new()));
    }

    let system = system.join("\n");
    let mut out = String::new();
    for (k, pair) in turns.chunks(2).enumerate() {
        let user = &pair[0].1;
        out.push_str("<s>[INST] ");
        if k == 0 && !system.is_empty() {
            out.push_str("<<SYS>>\n");
            out.push_str(&system);
            out.push_str("\n<</SYS>>\n\n");
        }
        out.push_str(user);
        out.push_str(" [/INST]");
        if let Some((_, assistant)) = pair.get(1) {
            out.push(' ');
            out.push_str(assistant);
            // Closed exchanges end with EOS; a final assistant turn stays open.
            if (k + 1) * 2 < turns.len() {
                out.push_str(" </s>");
            }
        }
    }
    Ok(out)
}

/// Raw response → OpenAI. Kong reads `{"data":[{"generated_text"}]}`; TGI answers
/// `{"generated_text","details"}` and the HF Inference API `[{"generated_text"}]`. The
/// answer is the text after the last `[/INST]` (servers echo the prompt), trimmed.
fn raw_response(
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
    body: &[u8],
) -> Result<Value, ResponseError> {
    let value = parse_body(kind, body)?;
    let entries = match &value {
        Value::Object(o) => match o.get("data") {
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => {
                return Err(ResponseError(
                    "cannot parse response from llama2 endpoint".into(),
                ));
            }
            None => std::slice::from_ref(&value),
        },
        Value::Array(a) => a.as_slice(),
        _ => {
            return Err(ResponseError(
                "cannot parse response from llama2 endpoint".into(),
            ));
        }
    };
    let entry = match entries {
        [one] => one,
        [] => {
            return Err(ResponseError(
                "response data is empty from llama2 endpoint".into(),
            ));
        }
        _ => {
            return Err(ResponseError(
                "cannot parse response from llama2 endpoint".into(),
            ));
        }
    };
    let generated = entry
        .get("generated_text")
        .and_then(Value::as_str)
        .ok_or_else(|| ResponseError("response data is empty from llama2 endpoint".into()))?;
    let answer = generated
        .rsplit_once("[/INST]")
        .map_or(generated, |(_, after)| after);
    let answer = answer.trim();
    let answer = answer.strip_suffix("</s>").unwrap_or(answer).trim_end();

    let details = entry.get("details");
    let finish_reason = details
        .and_then(|d| d.get("finish_reason"))
        .and_then(Value::as_str)
        .map_or("stop", map_finish_reason);
    let choice = match kind {
        RouteKind::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": answer},
            "finish_reason": finish_reason,
        }),
        RouteKind::Completions => json!({
            "index": 0, "text": answer, "logprobs": null, "finish_reason": finish_reason,
        }),
    };
    let usage = match value.get("usage").filter(|u| u.is_object()) {
        // Kong copies a `usage` the server reports.
        Some(u) => normalise_usage(Some(u)),
        None => usage(
            0,
            token_count(details.and_then(|d| d.get("generated_tokens"))),
        ),
    };
    Ok(json!({
        "id": new_id(kind),
        "object": object_name(kind),
        "created": now_secs(),
        "model": ctx.model,
        "choices": [choice],
        "usage": usage,
    }))
}

/// TGI's token stream (`/generate_stream`, or `POST /` with `stream: true`): SSE events
/// `{"token": {"text", "special"}, "generated_text": null, "details": null}`; the last one
/// has `generated_text` and (with `details: true`) `details.finish_reason` /
/// `generated_tokens`. Errors are `{"error", "error_type"}` events. The prompt's token
/// count is never given.
#[derive(Default)]
pub struct TgiStream {
    sse: SseDecoder,
    /// Non-blank text was sent: the answer's leading whitespace is trimmed, as in the
    /// non-streamed answer.
    started: bool,
}

impl TgiStream {
    fn event(
        started: &mut bool,
        event: SseEvent,
        out: &mut ChunkEmitter,
    ) -> Result<(), StreamError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        // Not TGI's, but some TGI-style servers end this way.
        if data == "[DONE]" {
            out.done();
            return Ok(());
        }
        let obj: Map<String, Value> = serde_json::from_str(data)
            .map_err(|e| StreamError::Invalid(format!("stream event is not a JSON object: {e}")))?;
        if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
            let kind = obj
                .get("error_type")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .unwrap_or("upstream_error");
            out.error(&UpstreamError {
                message: err.as_str().map_or_else(|| err.to_string(), str::to_string),
                kind: kind.to_string(),
                code: None,
                param: None,
            });
            return Ok(());
        }
        out.role();
        if let Some(token) = obj.get("token").filter(|t| t.is_object()) {
            // Special tokens (`</s>`, `<s>`) are control, not text.
            let special = token.get("special").and_then(Value::as_bool) == Some(true);
            if let Some(text) = token.get("text").and_then(Value::as_str)
                && !special
            {
                let text = if *started { text } else { text.trim_start() };
                if !text.is_empty() {
                    *started = true;
                    out.content(text);
                }
            }
        }
        let present = |key: &str| obj.get(key).is_some_and(|v| !v.is_null());
        if present("generated_text") || present("details") {
            let details = obj.get("details");
            let completion = details
                .and_then(|d| d.get("generated_tokens"))
                .filter(|v| !v.is_null())
                .map(|v| token_count(Some(v)));
            out.usage(
                ReportedUsage {
                    prompt: None,
                    completion,
                    cached: None,
                },
                true,
            );
            // `eos_token` / `stop_sequence` → stop, `length` → length.
            out.finish(
                details
                    .and_then(|d| d.get("finish_reason"))
                    .and_then(Value::as_str)
                    .map_or("stop", map_finish_reason),
            );
            out.done();
        }
        Ok(())
    }
}

impl StreamTranscoder for TgiStream {
    fn feed(&mut self, bytes: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let started = &mut self.started;
        self.sse
            .feed(bytes, |event| Self::event(started, event, out))
    }

    fn finish(&mut self, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let started = &mut self.started;
        self.sse.finish(|event| Self::event(started, event, out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::openai::test_support::*;
    use super::*;
    use crate::llm::sse_payloads as frames;
    use crate::llm::{StreamMeta, assert_split_invariant, transcode_in_pieces};
    use crate::providers::translator;

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

    fn resp(s: &Setup, kind: RouteKind, body: &[u8]) -> Result<Value, ResponseError> {
        translator(s.provider).response(&s.ctx(), kind, body)
    }

    // ---- raw requests --------------------------------------------------------------

    #[test]
    fn raw_chat_uses_the_standard_template_and_keeps_assistant_turns() {
        let (url, body) =
            req(&raw(), CHAT, fixture_json("llama2", "chat-request.json")).expect("ok");
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
            inputs(
                json!([{"role": "user", "content": null}, {"role": "user", "content": "日本語 ✓"}])
            ),
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
        let body =
            json!({"data": [{"generated_text": "<s>[INST] Hi [/INST]\n\n  Hello there!  "}]});
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
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        );

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
            json!({"prompt_tokens": 0, "completion_tokens": 20, "total_tokens": 20})
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
                Err(ResponseError(reason.into())),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn llama2_errors() {
        let e = Llama2.error(422, fixture("llama2", "raw-error.json").as_bytes());
        assert!(e.message.starts_with("Input validation error"));
        assert_eq!(e.kind, "validation");
        let e = Llama2.error(401, br#"{"error":"Model requires a Pro subscription."}"#);
        assert_eq!(
            (e.message.as_str(), e.kind.as_str()),
            ("Model requires a Pro subscription.", "upstream_error")
        );
        let e = Llama2.error(404, fixture("llama2", "ollama-error.json").as_bytes());
        assert!(e.message.contains("not found"));
        let e = Llama2.error(503, b"<html><body>Service Unavailable</body></html>");
        assert_eq!(
            (e.message.as_str(), e.kind.as_str()),
            ("upstream answered HTTP 503", "upstream_error")
        );
        let e = Llama2.error(500, b"");
        assert_eq!(e.kind, "upstream_error");
        let e = Llama2.error(400, fixture("openai", "error-invalid-key.json").as_bytes());
        assert_eq!(e.code, Some(json!("invalid_api_key")));
    }

    // ---- openai format ---------------------------------------------------------------

    #[test]
    fn openai_format_passes_through_to_the_upstream_url() {
        let mut s = Setup::new(
            ProviderKind::Llama2(Llama2Format::Openai),
            "meta-llama/Llama-2-7b-chat-hf",
        )
        .url("http://vllm.example.com:8000/v1/chat/completions");
        s.tuning.top_k = Some(20);
        let client = json!({"messages": [{"role": "user", "content": "hi"}], "n": 2, "tools": [], "user": "u"});
        let (url, body) = req(&s, CHAT, client).expect("ok");
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
            Err(ResponseError(
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
                    (Llama2Format::Ollama, RouteKind::Completions) => {
                        &["/usage", "/choices/0/text"]
                    }
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
        let with =
            assert_split_invariant(|| transcoder(&s, CHAT), &meta(CHAT, true), input.as_bytes());
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
                assert!(Llama2.stream(&s.ctx(), kind).is_some());
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
}
