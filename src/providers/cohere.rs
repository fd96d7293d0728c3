//! Cohere wire format: the v1 API, as Kong targets it (`POST /v1/chat` for chat,
//! `POST /v1/generate` for completions).
//!
//! v1 chat is "one new message + history": system messages go to `preamble`, earlier
//! user/assistant turns to `chat_history` (`USER`/`CHATBOT`), the last user turn to
//! `message` (docs/behaviour.md, "Differences from Kong", 6; deliberately unlike Kong, which sends
//! system messages as `USER` history).
//!
//! Tools are translated to v1's own shape (`parameter_definitions`, not JSON Schema). v1
//! has no tool-call ids and cannot force a call: ids are synthesised on the way back
//! (`call_<n>`) and looked up on the next turn to rebuild the call a `tool` message answers;
//! a forcing `tool_choice` is refused with a 400 rather than silently dropped.
//!
//! Kong sends a request with `tools` to Cohere as an unchanged OpenAI body; we translate
//! to v1 tools instead (docs/wire-formats.md, "Cohere").
//!
//! Streams are v1 NDJSON (`event_type` lines), transcoded by `CohereStream`; their usage
//! follows the same policy as whole answers (`stream-end.response.meta`).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::llm::{ChunkEmitter, NdjsonDecoder, ReportedUsage, StreamError, StreamTranscoder};

use super::{
    RequestError, ResponseError, RouteKind, TranslateContext, Translator, UpstreamError,
    UpstreamRequest, apply_tuning, generic_error,
};

const DEFAULT_CHAT_URL: &str = "https://api.cohere.com/v1/chat";
const DEFAULT_GENERATE_URL: &str = "https://api.cohere.com/v1/generate";

/// Kong's reason for a 200 that is neither a chat nor a generate answer.
const MISSING_ANSWER: &str = "'text' or 'generations' missing from cohere response body";

/// OpenAI-only fields that do not change the answer and that v1 does not know: dropped.
const DROPPED: &[&str] = &[
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "store",
    "metadata",
    "service_tier",
    "stream_options",
    "prediction",
    "reasoning_effort",
    "verbosity",
];

pub struct Cohere;

impl Translator for Cohere {
    fn request(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        mut body: Map<String, Value>,
    ) -> Result<UpstreamRequest, RequestError> {
        // A null means "unset" in OpenAI clients; never forward one (docs/wire-formats.md, "The
        // OpenAI contract").
        body.retain(|_, v| !v.is_null());
        apply_tuning(&mut body, ctx.tuning);
        body.insert("model".into(), Value::from(ctx.model));
        common_fields(&mut body, ctx)?;
        let default_url = match kind {
            RouteKind::Chat => {
                chat_fields(&mut body)?;
                DEFAULT_CHAT_URL
            }
            RouteKind::Completions => {
                generate_fields(&mut body)?;
                DEFAULT_GENERATE_URL
            }
        };
        // Kong semantics: `upstream_url` is the full URL (its query is kept, docs/behaviour.md,
        // "Differences from Kong", 8).
        let url = ctx.upstream_url.unwrap_or(default_url).to_string();
        let body = serde_json::to_vec(&Value::Object(body)).map_err(|e| RequestError {
            param: None,
            message: e.to_string(),
        })?;
        Ok(UpstreamRequest {
            url,
            headers: Vec::new(),
            body,
        })
    }

    fn response(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: &[u8],
    ) -> Result<Value, ResponseError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ResponseError("empty response body from cohere".into()));
        }
        let parsed: Value = serde_json::from_slice(body)
            .map_err(|_| ResponseError("failed to decode cohere response".into()))?;
        let Value::Object(obj) = parsed else {
            return Err(ResponseError(MISSING_ANSWER.into()));
        };
        // v1 echoes no model; take one if a compatible server sends it.
        let model = obj
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or(ctx.model);
        let created = chrono::Utc::now().timestamp();
        match kind {
            RouteKind::Chat => {
                let text = match obj.get("text") {
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => {
                        return Err(ResponseError(
                            "'text' in cohere response is not a string".into(),
                        ));
                    }
                    None => return Err(ResponseError(MISSING_ANSWER.into())),
                };
                let mut finish_reason = finish_reason(obj.get("finish_reason"))?;
                let tool_calls = match obj.get("tool_calls") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(calls)) => calls
                        .iter()
                        .enumerate()
                        .map(|(k, call)| {
                            let (name, arguments) = tool_call_parts(call)
                                .map_err(|e| ResponseError(format!("tool_calls[{k}]: {e}")))?;
                            Ok(json!({
                                "id": call_id(k),
                                "type": "function",
                                "function": {"name": name, "arguments": arguments},
                            }))
                        })
                        .collect::<Result<Vec<_>, ResponseError>>()?,
                    Some(_) => {
                        return Err(ResponseError(
                            "'tool_calls' in cohere response is not an array".into(),
                        ));
                    }
                };
                let mut message = json!({"role": "assistant", "content": text});
                // v1 says COMPLETE when it called tools (docs/wire-formats.md, "Cohere").
                if !tool_calls.is_empty() {
                    finish_reason = "tool_calls";
                    if text.is_empty() {
                        message["content"] = Value::Null;
                    }
                    message["tool_calls"] = Value::Array(tool_calls);
                }
                let provider_id = obj.get("generation_id").or_else(|| obj.get("response_id"));
                Ok(json!({
                    "id": openai_id("chatcmpl-", provider_id),
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": message,
                        "finish_reason": finish_reason,
                    }],
                    "usage": usage(&obj),
                }))
            }
            RouteKind::Completions => {
                let generations = match obj.get("generations") {
                    Some(Value::Array(g)) if !g.is_empty() => g,
                    Some(Value::Array(_)) => {
                        return Err(ResponseError("no generations in cohere response".into()));
                    }
                    Some(_) => {
                        return Err(ResponseError(
                            "'generations' in cohere response is not an array".into(),
                        ));
                    }
                    None => return Err(ResponseError(MISSING_ANSWER.into())),
                };
                let mut choices = Vec::with_capacity(generations.len());
                for (index, generation) in generations.iter().enumerate() {
                    let Some(text) = generation.get("text").and_then(Value::as_str) else {
                        return Err(ResponseError(format!("generation {index} has no 'text'")));
                    };
                    choices.push(json!({
                        "index": index,
                        "text": text,
                        "finish_reason": finish_reason(generation.get("finish_reason"))?,
                    }));
                }
                Ok(json!({
                    "id": openai_id("cmpl-", obj.get("id")),
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": choices,
                    "usage": usage(&obj),
                }))
            }
        }
    }

    fn error(&self, status: u16, body: &[u8]) -> UpstreamError {
        // Cohere errors are `{"message": "…"}` (sometimes with an `id`) and carry no type,
        // which the generic reader already handles (`upstream_error`); an empty message
        // says nothing, so the status stands in for it.
        let mut error = generic_error(status, body);
        if error.message.trim().is_empty() {
            error.message = format!("upstream answered HTTP {status}");
        }
        error
    }

    fn stream(
        &self,
        _ctx: &TranslateContext<'_>,
        kind: RouteKind,
    ) -> Option<Box<dyn StreamTranscoder>> {
        Some(Box::new(CohereStream::new(kind)))
    }
}

/// v1 NDJSON streams (`/chat` and `/generate`): one JSON object per line, keyed by
/// `event_type` (docs/wire-formats.md, "Cohere").
pub struct CohereStream {
    lines: NdjsonDecoder,
    state: StreamState,
}

struct StreamState {
    kind: RouteKind,
    /// Cohere's `tool_call_delta.index` of each call started so far; the position is our
    /// OpenAI index (a per-answer counter, whatever Cohere numbers its calls).
    calls: Vec<Option<u64>>,
    /// Text was streamed (so a `tool-calls-generation` text is not sent a second time).
    content_sent: bool,
}

impl CohereStream {
    pub fn new(kind: RouteKind) -> CohereStream {
        CohereStream {
            lines: NdjsonDecoder::default(),
            state: StreamState {
                kind,
                calls: Vec::new(),
                content_sent: false,
            },
        }
    }
}

impl StreamTranscoder for CohereStream {
    fn feed(&mut self, bytes: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let state = &mut self.state;
        self.lines.feed(bytes, |line| state.line(line, out))
    }

    fn finish(&mut self, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let state = &mut self.state;
        self.lines.finish(|line| state.line(line, out))
    }
}

fn stream_error(message: impl Into<String>) -> UpstreamError {
    UpstreamError {
        message: message.into(),
        kind: "upstream_error".into(),
        code: None,
        param: None,
    }
}

impl StreamState {
    fn line(&mut self, line: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let event: Map<String, Value> = serde_json::from_slice(line)
            .map_err(|e| StreamError::Invalid(format!("stream line is not a JSON object: {e}")))?;
        let chat = self.kind == RouteKind::Chat;
        match event.get("event_type").and_then(Value::as_str) {
            // A failure reported in Cohere's error shape instead of an event.
            None => {
                if let Some(message) = event.get("message").and_then(Value::as_str) {
                    out.error(&stream_error(message));
                }
            }
            Some("stream-start") => out.role(),
            Some("text-generation") => {
                // Only choice 0 exists (n > 1 is refused for streams); a stray other
                // generation must not be mixed into it.
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(text) = event.get("text").and_then(Value::as_str)
                    && index == 0
                {
                    self.content(text, out);
                }
            }
            Some("tool-calls-chunk") if chat => self.tool_calls_chunk(&event, out),
            Some("tool-calls-generation") if chat => {
                if let Some(text) = event.get("text").and_then(Value::as_str)
                    && !self.content_sent
                {
                    self.content(text, out);
                }
                self.whole_calls(event.get("tool_calls"), out)?;
            }
            Some("stream-end") => self.end(&event, out)?,
            Some("stream-error") => {
                let message = event
                    .get("err")
                    .or_else(|| event.get("message"))
                    .and_then(Value::as_str)
                    .filter(|m| !m.trim().is_empty())
                    .unwrap_or("cohere reported an error in the stream");
                out.error(&stream_error(message));
            }
            // search-queries-generation, search-results, citation-generation, debug, and
            // event types newer than this code: nothing to say in OpenAI's format.
            _ => {}
        }
        Ok(())
    }

    fn content(&mut self, text: &str, out: &mut ChunkEmitter) {
        if !text.is_empty() {
            self.content_sent = true;
            out.content(text);
        }
    }

    /// A `tool_call_delta`: a `name` starts a call, `parameters` fragments extend it. The
    /// chunk's `text` (the model's tool plan) is content, as in the non-streamed answer.
    fn tool_calls_chunk(&mut self, event: &Map<String, Value>, out: &mut ChunkEmitter) {
        if let Some(text) = event.get("text").and_then(Value::as_str) {
            self.content(text, out);
        }
        let Some(delta) = event.get("tool_call_delta").and_then(Value::as_object) else {
            return;
        };
        let index = delta.get("index").and_then(Value::as_u64);
        let name = delta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let fragment = delta
            .get("parameters")
            .and_then(Value::as_str)
            .unwrap_or("");
        let known = match index {
            Some(i) => self.calls.iter().position(|c| *c == Some(i)),
            // Without an index a fragment can only extend the latest call.
            None if name.is_none() => self.calls.len().checked_sub(1),
            None => None,
        };
        match (known, name) {
            (Some(k), _) => out.tool_call_arguments(openai_index(k), fragment),
            (None, Some(name)) => {
                let k = self.calls.len();
                self.calls.push(index);
                out.tool_call_start(openai_index(k), &call_id(k), name, fragment);
            }
            // Arguments of a call whose name never came cannot be told apart; Cohere
            // repeats every call whole in `tool-calls-generation`, which sends it.
            (None, None) => {}
        }
    }

    /// Whole calls (`tool-calls-generation`, or the final response): those not already
    /// streamed as chunks are sent in one piece each.
    fn whole_calls(
        &mut self,
        calls: Option<&Value>,
        out: &mut ChunkEmitter,
    ) -> Result<(), StreamError> {
        let calls = match calls {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Array(calls)) => calls,
            Some(_) => return Err(StreamError::Invalid("tool_calls is not an array".into())),
        };
        for (k, call) in calls.iter().enumerate().skip(self.calls.len()) {
            let (name, arguments) = tool_call_parts(call)
                .map_err(|e| StreamError::Invalid(format!("tool_calls[{k}]: {e}")))?;
            self.calls.push(None);
            out.tool_call_start(openai_index(k), &call_id(k), name, &arguments);
        }
        Ok(())
    }

    /// `stream-end`: usage from `response.meta`, the finish chunk, `[DONE]`. The response
    /// repeats the whole answer, which was already streamed.
    fn end(
        &mut self,
        event: &Map<String, Value>,
        out: &mut ChunkEmitter,
    ) -> Result<(), StreamError> {
        let response = event.get("response").and_then(Value::as_object);
        if let Some(response) = response {
            let (prompt, completion) = usage_counts(response).unzip();
            out.usage(
                ReportedUsage {
                    prompt,
                    completion,
                    cached: cached_count(response),
                },
                true,
            );
            if self.kind == RouteKind::Chat {
                // Calls that arrived in no earlier event.
                self.whole_calls(response.get("tool_calls"), out)?;
            }
        }
        let reason = event
            .get("finish_reason")
            .or_else(|| response.and_then(|r| r.get("finish_reason")))
            .or_else(|| {
                response
                    .and_then(|r| r.get("generations"))
                    .and_then(|g| g.get(0))
                    .and_then(|g| g.get("finish_reason"))
            });
        match finish_reason(reason) {
            Ok(reason) => {
                out.finish(if self.calls.is_empty() {
                    reason
                } else {
                    "tool_calls"
                });
                out.done();
            }
            Err(ResponseError(message)) => out.error(&stream_error(message)),
        }
        Ok(())
    }
}

/// Tool-call indexes are per answer, so a handful; saturate rather than wrap.
fn openai_index(k: usize) -> u32 {
    u32::try_from(k).unwrap_or(u32::MAX)
}

fn bad(param: &str, message: impl Into<String>) -> RequestError {
    RequestError::param(param, message)
}

/// Mappings shared by `/v1/chat` and `/v1/generate`.
fn common_fields(
    body: &mut Map<String, Value>,
    ctx: &TranslateContext<'_>,
) -> Result<(), RequestError> {
    for key in DROPPED {
        body.remove(*key);
    }
    // Cohere's names for nucleus/top-k sampling.
    if let Some(v) = body.remove("top_p") {
        body.insert("p".into(), v);
    }
    if let Some(v) = body.remove("top_k") {
        body.insert("k".into(), v);
    }
    // OpenAI's newer name for the output cap; route tuning (already in `max_tokens`) wins.
    if let Some(v) = body.remove("max_completion_tokens")
        && ctx.tuning.max_tokens.is_none()
    {
        body.insert("max_tokens".into(), v);
    }
    // Kong sends `stream` explicitly; Cohere's v1 streaming (NDJSON) is keyed on it too.
    match body.get("stream") {
        None => {
            body.insert("stream".into(), Value::Bool(false));
        }
        Some(Value::Bool(_)) => {}
        Some(_) => return Err(bad("stream", "stream must be a boolean")),
    }
    // Asked-for extras Cohere cannot produce in OpenAI's shape: refuse rather than drop.
    match body.remove("logprobs") {
        None | Some(Value::Bool(false)) => {}
        Some(v) if v.as_f64() == Some(0.0) => {}
        Some(_) => return Err(bad("logprobs", "logprobs are not supported by Cohere")),
    }
    match body.remove("top_logprobs") {
        None => {}
        Some(v) if v.as_f64() == Some(0.0) => {}
        Some(_) => return Err(bad("top_logprobs", "logprobs are not supported by Cohere")),
    }
    match body.remove("logit_bias") {
        None => {}
        Some(Value::Object(m)) if m.is_empty() => {}
        Some(_) => {
            return Err(bad(
                "logit_bias",
                "logit_bias is not supported by Cohere (different token ids)",
            ));
        }
    }
    for key in ["audio", "web_search_options"] {
        if body.remove(key).is_some() {
            return Err(bad(key, format!("{key} is not supported by Cohere")));
        }
    }
    match body.remove("modalities") {
        None => {}
        Some(Value::Array(m)) if m.iter().all(|x| x.as_str() == Some("text")) => {}
        Some(_) => return Err(bad("modalities", "Cohere answers with text only")),
    }
    Ok(())
}

/// `stop` (string or array of strings) as a list; `None` when empty.
fn stop_list(v: Value) -> Result<Option<Value>, RequestError> {
    match v {
        Value::String(s) => Ok(Some(Value::Array(vec![Value::String(s)]))),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            Ok((!a.is_empty()).then_some(Value::Array(a)))
        }
        _ => Err(bad("stop", "stop must be a string or an array of strings")),
    }
}

/// `n` as a positive integer (integral floats accepted).
fn choice_count(v: &Value) -> Result<u64, RequestError> {
    let n = v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= u32::MAX as f64)
            .map(|f| f as u64)
    });
    match n {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(bad("n", "n must be a positive integer")),
    }
}

/// One conversation turn on its way to `chat_history` (or to `message`/`tool_results`).
enum Turn {
    User(String),
    /// An assistant turn; `tool_calls` are v1 calls (`{name, parameters}`).
    Chatbot {
        text: String,
        tool_calls: Vec<Value>,
    },
    /// Consecutive `tool` messages, as v1 `tool_results`.
    Tool(Vec<Value>),
}

/// OpenAI chat fields → `/v1/chat` (`preamble`, `chat_history`, `message`, `tools`,
/// `tool_results`).
fn chat_fields(body: &mut Map<String, Value>) -> Result<(), RequestError> {
    if let Some(n) = body.remove("n")
        && choice_count(&n)? > 1
    {
        return Err(bad("n", "Cohere chat returns a single choice: n must be 1"));
    }
    if let Some(stop) = body.remove("stop")
        && let Some(list) = stop_list(stop)?
    {
        body.insert("stop_sequences".into(), list);
    }
    if let Some(format) = body.remove("response_format")
        && let Some(format) = response_format(&format)?
    {
        body.insert("response_format".into(), format);
    }
    chat_tools(body)?;

    let messages = match body.remove("messages") {
        Some(Value::Array(m)) => m,
        Some(_) => return Err(bad("messages", "messages must be an array")),
        None => return Err(bad("messages", "messages is required")),
    };
    // The conversation comes from `messages` only; never mix in native history fields.
    body.remove("chat_history");
    body.remove("message");
    body.remove("tool_results");

    let mut preamble = Vec::new();
    match body.remove("preamble") {
        Some(Value::String(s)) if !s.trim().is_empty() => preamble.push(s),
        None | Some(Value::String(_)) => {}
        Some(_) => return Err(bad("preamble", "preamble must be a string")),
    }
    let mut turns: Vec<Turn> = Vec::with_capacity(messages.len());
    // tool_call_id → the v1 call it names; a later assistant turn reusing an id wins,
    // because our synthesised ids (`call_0`, …) restart with every answer.
    let mut calls: HashMap<String, Value> = HashMap::new();
    for (i, message) in messages.into_iter().enumerate() {
        let Value::Object(mut message) = message else {
            return Err(bad("messages", format!("messages[{i}] must be an object")));
        };
        let role = match message.get("role") {
            Some(Value::String(r)) => r.clone(),
            _ => {
                return Err(bad(
                    "messages",
                    format!("messages[{i}].role must be a string"),
                ));
            }
        };
        match role.as_str() {
            // Differences from Kong, 6: every system/developer message, wherever it stands, joins
            // `preamble`.
            "system" | "developer" => {
                let text = flatten(i, message.remove("content"))?;
                if !text.trim().is_empty() {
                    preamble.push(text);
                }
            }
            "user" => turns.push(Turn::User(flatten(i, message.remove("content"))?)),
            "assistant" => {
                if message.get("function_call").is_some_and(|f| !f.is_null()) {
                    return Err(bad(
                        "messages",
                        format!(
                            "messages[{i}]: the deprecated function_call is not supported for cohere; use tool_calls"
                        ),
                    ));
                }
                let tool_calls = assistant_tool_calls(i, message.remove("tool_calls"), &mut calls)?;
                let text = flatten(i, message.remove("content"))?;
                turns.push(Turn::Chatbot { text, tool_calls });
            }
            "tool" => {
                let result = tool_result(i, &mut message, &calls)?;
                match turns.last_mut() {
                    Some(Turn::Tool(results)) => results.push(result),
                    _ => turns.push(Turn::Tool(vec![result])),
                }
            }
            "function" => {
                return Err(bad(
                    "messages",
                    format!(
                        "messages[{i}]: deprecated function messages are not supported for cohere; use tool messages"
                    ),
                ));
            }
            other => {
                return Err(bad(
                    "messages",
                    format!("messages[{i}]: unknown role '{other}'"),
                ));
            }
        }
    }

    // v1 answers one new user message, or the results of the calls it just made (then
    // `message` is empty); a trailing assistant turn (prefill) has no place.
    let (message, tool_results) = match turns.pop() {
        None => return Err(bad("messages", "messages must contain a user message")),
        Some(Turn::Tool(results)) => (String::new(), Some(results)),
        Some(Turn::User(text)) if text.trim().is_empty() => {
            return Err(bad("messages", "the last user message is empty"));
        }
        Some(Turn::User(text)) => (text, None),
        Some(Turn::Chatbot { .. }) => {
            return Err(bad(
                "messages",
                "the last non-system message must be a user or tool message for cohere",
            ));
        }
    };
    let mut history = Vec::with_capacity(turns.len());
    for turn in turns {
        match turn {
            // Cohere rejects history entries without a message; empty turns carry nothing.
            Turn::User(text) if !text.trim().is_empty() => {
                history.push(json!({"role": "USER", "message": text}));
            }
            Turn::Chatbot { text, tool_calls } if tool_calls.is_empty() => {
                if !text.trim().is_empty() {
                    history.push(json!({"role": "CHATBOT", "message": text}));
                }
            }
            // Cohere's own history has a (possibly empty) message beside the calls.
            Turn::Chatbot { text, tool_calls } => {
                history.push(json!({"role": "CHATBOT", "message": text, "tool_calls": tool_calls}))
            }
            Turn::Tool(results) => {
                history.push(json!({"role": "TOOL", "tool_results": results}));
            }
            Turn::User(_) => {}
        }
    }
    if !history.is_empty() {
        body.insert("chat_history".into(), Value::Array(history));
    }
    body.insert("message".into(), Value::String(message));
    if let Some(results) = tool_results {
        body.insert("tool_results".into(), Value::Array(results));
    }
    if !preamble.is_empty() {
        body.insert("preamble".into(), Value::String(preamble.join("\n\n")));
    }
    Ok(())
}

/// `tools`, `tool_choice`, `parallel_tool_calls` and the deprecated `functions` /
/// `function_call` → v1 `tools` (or nothing).
fn chat_tools(body: &mut Map<String, Value>) -> Result<(), RequestError> {
    let tools = match body.remove("tools") {
        None => Vec::new(),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(bad("tools", "tools must be an array")),
    };
    // v1 has no way to force a call: refuse rather than answer without the forced call.
    let send = match body.remove("tool_choice") {
        None => true,
        Some(Value::String(s)) if s == "auto" => true,
        Some(Value::String(s)) if s == "none" => false,
        Some(Value::String(s)) if s == "required" => {
            return Err(bad(
                "tool_choice",
                "tool_choice \"required\" is not supported by cohere v1 (it cannot force a tool call)",
            ));
        }
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            return Err(bad(
                "tool_choice",
                "forcing a named function is not supported by cohere v1 (it cannot force a tool call)",
            ));
        }
        Some(_) => {
            return Err(bad(
                "tool_choice",
                "tool_choice must be \"auto\", \"none\", \"required\" or a function",
            ));
        }
    };
    // v1 may answer with several calls and has no switch to prevent it.
    match body.remove("parallel_tool_calls") {
        None | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            return Err(bad(
                "parallel_tool_calls",
                "cohere v1 cannot be limited to one tool call per answer",
            ));
        }
        Some(_) => {
            return Err(bad(
                "parallel_tool_calls",
                "parallel_tool_calls must be a boolean",
            ));
        }
    }
    match body.remove("functions") {
        None => {}
        Some(Value::Array(f)) if f.is_empty() => {}
        Some(_) => {
            return Err(bad(
                "functions",
                "the deprecated functions are not supported for cohere; use tools",
            ));
        }
    }
    match body.remove("function_call") {
        None => {}
        Some(Value::String(s)) if s == "none" || s == "auto" => {}
        Some(_) => {
            return Err(bad(
                "function_call",
                "forcing a function call is not supported by cohere v1",
            ));
        }
    }
    // Converted even when unused, so a malformed tool is reported either way.
    let mut converted = Vec::with_capacity(tools.len());
    for (j, tool) in tools.iter().enumerate() {
        converted.push(convert_tool(j, tool)?);
    }
    if send && !converted.is_empty() {
        body.insert("tools".into(), Value::Array(converted));
    }
    Ok(())
}

/// One OpenAI function tool → `{name, description, parameter_definitions}`.
fn convert_tool(j: usize, tool: &Value) -> Result<Value, RequestError> {
    let at = format!("tools[{j}]");
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(bad(&at, "only function tools are supported by cohere"));
    }
    let Some(Value::String(name)) = tool.pointer("/function/name") else {
        return Err(bad(
            &format!("{at}.function.name"),
            "a tool needs a string function.name",
        ));
    };
    // v1 requires a description; an absent one is empty rather than invented.
    let description = match tool.pointer("/function/description") {
        None | Some(Value::Null) => "",
        Some(Value::String(d)) => d.as_str(),
        Some(_) => {
            return Err(bad(
                &format!("{at}.function.description"),
                "description must be a string",
            ));
        }
    };
    let mut out = json!({"name": name, "description": description});
    match tool.pointer("/function/parameters") {
        None | Some(Value::Null) => {}
        Some(Value::Object(schema)) => {
            let definitions = parameter_definitions(&format!("{at}.function.parameters"), schema)?;
            if !definitions.is_empty() {
                out["parameter_definitions"] = Value::Object(definitions);
            }
        }
        Some(_) => {
            return Err(bad(
                &format!("{at}.function.parameters"),
                "parameters must be a JSON Schema object",
            ));
        }
    }
    Ok(out)
}

/// A JSON Schema object's properties → v1 `parameter_definitions`
/// (`{param: {description?, type, required}}`); nested objects are `dict`.
fn parameter_definitions(
    at: &str,
    schema: &Map<String, Value>,
) -> Result<Map<String, Value>, RequestError> {
    match schema.get("type") {
        None => {}
        Some(Value::String(t)) if t == "object" => {}
        Some(_) => return Err(bad(at, "parameters must be a schema of type object")),
    }
    let required: Vec<&str> = match schema.get("required") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(bad(&format!("{at}.required"), "required must be an array")),
    };
    let properties = match schema.get("properties") {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Err(bad(
                &format!("{at}.properties"),
                "properties must be an object",
            ));
        }
    };
    let mut out = Map::with_capacity(properties.len());
    for (name, property) in properties {
        let Some(kind) = cohere_type(schema, property, 0) else {
            return Err(bad(
                &format!("{at}.properties.{name}"),
                "the property's type cannot be expressed as a cohere parameter type",
            ));
        };
        let mut definition = Map::new();
        if let Some(Value::String(d)) = property.get("description") {
            definition.insert("description".into(), Value::String(d.clone()));
        }
        definition.insert("type".into(), Value::from(kind));
        definition.insert(
            "required".into(),
            Value::Bool(required.contains(&name.as_str())),
        );
        out.insert(name.clone(), Value::Object(definition));
    }
    Ok(out)
}

/// A property schema's v1 type name (Python-style); `None` when it has none (or only
/// `null`). Nullable unions (`["string","null"]`, `anyOf`) take their non-null member;
/// local `$ref`s (`#/$defs/…`, as pydantic writes nested models) are followed.
fn cohere_type(root: &Map<String, Value>, schema: &Value, depth: u8) -> Option<&'static str> {
    // Bounds a `$ref` cycle.
    if depth > 8 {
        return None;
    }
    let schema = schema.as_object()?;
    let by_name = |t: &str| match t {
        "string" => Some("str"),
        "integer" => Some("int"),
        "number" => Some("float"),
        "boolean" => Some("bool"),
        "array" => Some("list"),
        "object" => Some("dict"),
        _ => None,
    };
    if let Some(Value::String(reference)) = schema.get("$ref") {
        let target = reference
            .strip_prefix("#/$defs/")
            .map(|name| ("$defs", name))
            .or_else(|| {
                reference
                    .strip_prefix("#/definitions/")
                    .map(|name| ("definitions", name))
            })
            .and_then(|(section, name)| root.get(section)?.get(name));
        return cohere_type(root, target?, depth + 1);
    }
    match schema.get("type") {
        Some(Value::String(t)) => return by_name(t),
        Some(Value::Array(types)) => {
            return types.iter().filter_map(Value::as_str).find_map(by_name);
        }
        _ => {}
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alternatives)) = schema.get(key) {
            return alternatives
                .iter()
                .find_map(|alt| cohere_type(root, alt, depth + 1));
        }
    }
    if schema.contains_key("properties") {
        return Some("dict");
    }
    if schema.contains_key("items") {
        return Some("list");
    }
    let example = match (schema.get("enum"), schema.get("const")) {
        (Some(Value::Array(values)), _) => values.first(),
        (None, Some(value)) => Some(value),
        _ => None,
    };
    match example? {
        Value::String(_) => Some("str"),
        Value::Bool(_) => Some("bool"),
        Value::Number(n) if n.is_f64() => Some("float"),
        Value::Number(_) => Some("int"),
        _ => None,
    }
}

/// Assistant `tool_calls` → v1 calls (`arguments`, a JSON string, becomes the
/// `parameters` object), remembered by id for the `tool` messages that answer them.
fn assistant_tool_calls(
    i: usize,
    tool_calls: Option<Value>,
    known: &mut HashMap<String, Value>,
) -> Result<Vec<Value>, RequestError> {
    let tool_calls = match tool_calls {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(c)) => c,
        Some(_) => {
            return Err(bad(
                "messages",
                format!("messages[{i}].tool_calls must be an array"),
            ));
        }
    };
    let mut out = Vec::with_capacity(tool_calls.len());
    for (j, call) in tool_calls.iter().enumerate() {
        let at = format!("messages[{i}].tool_calls[{j}]");
        let id = call.get("id").and_then(Value::as_str);
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let (Some(id), Some(name)) = (id, name) else {
            return Err(bad(
                "messages",
                format!("{at}: a tool call needs an id and a function.name"),
            ));
        };
        let parameters = match call.pointer("/function/arguments") {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(s)) if s.trim().is_empty() => json!({}),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|_| {
                bad(
                    "messages",
                    format!("{at}.function.arguments is not valid JSON"),
                )
            })?,
            // Some clients send the object itself.
            Some(other) => other.clone(),
        };
        if !parameters.is_object() {
            return Err(bad(
                "messages",
                format!("{at}.function.arguments must encode a JSON object"),
            ));
        }
        let call = json!({"name": name, "parameters": parameters});
        known.insert(id.to_string(), call.clone());
        out.push(call);
    }
    Ok(out)
}

/// A `tool` message → a v1 tool result: the call it answers (found by `tool_call_id`) and
/// its output (the content's JSON object, else `{"result": content}`).
fn tool_result(
    i: usize,
    message: &mut Map<String, Value>,
    known: &HashMap<String, Value>,
) -> Result<Value, RequestError> {
    let Some(Value::String(id)) = message.remove("tool_call_id") else {
        return Err(bad(
            "messages",
            format!("messages[{i}]: a tool message needs a string tool_call_id"),
        ));
    };
    let Some(call) = known.get(&id) else {
        return Err(bad(
            "messages",
            format!(
                "messages[{i}]: tool_call_id '{id}' answers no tool call of an earlier assistant message"
            ),
        ));
    };
    let content = flatten(i, message.remove("content"))?;
    let output = match serde_json::from_str::<Value>(&content) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({"result": content}),
    };
    Ok(json!({"call": call, "outputs": [output]}))
}

/// Message content as one string: text parts joined by newlines (Cohere v1 is text-only).
fn flatten(i: usize, content: Option<Value>) -> Result<String, RequestError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for part in parts {
                let kind = part.get("type").and_then(Value::as_str);
                // An assistant refusal part is text the model said.
                let field = match kind {
                    Some("text") => "text",
                    Some("refusal") => "refusal",
                    Some(other) => {
                        return Err(bad(
                            "messages",
                            format!(
                                "messages[{i}]: content part type '{other}' is not supported by cohere (text only)"
                            ),
                        ));
                    }
                    None => {
                        return Err(bad(
                            "messages",
                            format!("messages[{i}]: content part without a type"),
                        ));
                    }
                };
                match part.get(field) {
                    Some(Value::String(s)) => texts.push(s.clone()),
                    _ => {
                        return Err(bad(
                            "messages",
                            format!("messages[{i}]: {field} part without a string '{field}'"),
                        ));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        Some(_) => Err(bad(
            "messages",
            format!("messages[{i}].content must be a string or an array of text parts"),
        )),
    }
}

/// OpenAI `response_format` → v1 chat's (`json_object` with an optional `schema`).
fn response_format(format: &Value) -> Result<Option<Value>, RequestError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => match format.pointer("/json_schema/schema") {
            Some(schema @ Value::Object(_)) => {
                Ok(Some(json!({"type": "json_object", "schema": schema})))
            }
            _ => Err(bad(
                "response_format",
                "json_schema needs a json_schema.schema object",
            )),
        },
        _ => Err(bad(
            "response_format",
            "unsupported response_format type for cohere",
        )),
    }
}

/// OpenAI completion fields → `/v1/generate`.
fn generate_fields(body: &mut Map<String, Value>) -> Result<(), RequestError> {
    if !body.get("prompt").is_some_and(Value::is_string) {
        return Err(bad("prompt", "prompt must be a string"));
    }
    if let Some(n) = body.remove("n") {
        let n = choice_count(&n)?;
        // The stream transcoder emits one choice; v1 interleaves generations by `index`.
        if n > 1 && body.get("stream") == Some(&Value::Bool(true)) {
            return Err(bad("n", "n must be 1 when streaming from cohere"));
        }
        if n > 1 {
            body.insert("num_generations".into(), Value::from(n));
        }
    }
    // Tools need the chat endpoint; `generate` would ignore them.
    for key in ["tools", "functions"] {
        match body.remove(key) {
            None => {}
            Some(Value::Array(t)) if t.is_empty() => {}
            Some(_) => {
                return Err(bad(
                    key,
                    format!("{key} are not supported on a completions route"),
                ));
            }
        }
    }
    for key in ["tool_choice", "function_call", "parallel_tool_calls"] {
        match body.remove(key) {
            None => {}
            Some(Value::String(s)) if s == "none" || s == "auto" => {}
            Some(Value::Bool(true)) => {}
            Some(_) => {
                return Err(bad(
                    key,
                    format!("{key} is not supported on a completions route"),
                ));
            }
        }
    }
    // OpenAI excludes the stop text from the answer: generate's `end_sequences` does too
    // (its `stop_sequences` would include it).
    if let Some(stop) = body.remove("stop")
        && let Some(list) = stop_list(stop)?
    {
        body.insert("end_sequences".into(), list);
    }
    match body.remove("echo") {
        None | Some(Value::Bool(false)) => {}
        Some(_) => return Err(bad("echo", "echo is not supported by cohere")),
    }
    match body.remove("suffix") {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(_) => return Err(bad("suffix", "suffix is not supported by cohere")),
    }
    match body.remove("best_of") {
        None => {}
        Some(v) if v.as_f64() == Some(1.0) => {}
        Some(_) => return Err(bad("best_of", "best_of is not supported by cohere")),
    }
    match body.remove("response_format") {
        None => {}
        Some(f) if f.get("type").and_then(Value::as_str) == Some("text") => {}
        Some(_) => {
            return Err(bad(
                "response_format",
                "cohere's generate endpoint has no response_format",
            ));
        }
    }
    Ok(())
}

/// Cohere finish reasons → OpenAI's (docs/wire-formats.md, "Finish reasons and usage"); an absent
/// reason is a finished answer (Kong's fixtures omit it). Failures are an upstream failure, not an
/// answer.
fn finish_reason(v: Option<&Value>) -> Result<&'static str, ResponseError> {
    match v.and_then(Value::as_str) {
        Some("MAX_TOKENS" | "ERROR_LIMIT") => Ok("length"),
        Some("ERROR_TOXIC") => Ok("content_filter"),
        Some("TOOL_CALL") => Ok("tool_calls"),
        Some(reason @ ("ERROR" | "TIMEOUT" | "USER_CANCEL")) => Err(ResponseError(format!(
            "cohere ended the generation with {reason}"
        ))),
        // COMPLETE, STOP_SEQUENCE, absent, or a value newer than this table.
        _ => Ok("stop"),
    }
}

/// `chatcmpl-…` / `cmpl-…` from the provider's id, else a random one.
fn openai_id(prefix: &str, provider_id: Option<&Value>) -> String {
    match provider_id
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
    {
        Some(id) if id.starts_with(prefix) => id.to_string(),
        Some(id) => format!("{prefix}{id}"),
        None => format!("{prefix}{}", uuid::Uuid::new_v4().simple()),
    }
}

/// A token count; negative or non-numeric counts are 0, huge ones saturate.
fn count(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.max(0.0) as u64)
    })
}

/// Usage per docs/behaviour.md, "Differences from Kong", 6: `meta.tokens`, else `token_count`, else
/// `meta.billed_units` (the first that reports any count); `None` when Cohere reports none.
fn usage_counts(obj: &Map<String, Value>) -> Option<(u64, u64)> {
    let meta = obj.get("meta");
    let sources = [
        (
            meta.and_then(|m| m.get("tokens")),
            "input_tokens",
            "output_tokens",
        ),
        (obj.get("token_count"), "prompt_tokens", "response_tokens"),
        (
            meta.and_then(|m| m.get("billed_units")),
            "input_tokens",
            "output_tokens",
        ),
    ];
    sources.iter().find_map(|(source, input, output)| {
        let source = (*source)?;
        let (p, c) = (count(source.get(*input)), count(source.get(*output)));
        (p.is_some() || c.is_some()).then(|| (p.unwrap_or(0), c.unwrap_or(0)))
    })
}

fn cached_count(obj: &Map<String, Value>) -> Option<u64> {
    count(obj.get("meta").and_then(|m| m.get("cached_tokens")))
}

/// The OpenAI `usage` object (zeros when Cohere reports none).
fn usage(obj: &Map<String, Value>) -> Value {
    let (prompt, completion) = usage_counts(obj).unwrap_or((0, 0));
    let mut usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
    });
    if let Some(cached) = cached_count(obj)
        && let Value::Object(u) = &mut usage
    {
        u.insert(
            "prompt_tokens_details".into(),
            json!({"cached_tokens": cached}),
        );
    }
    usage
}

/// Our id for the `k`-th tool call of an answer (v1 calls have none).
fn call_id(k: usize) -> String {
    format!("call_{k}")
}

/// A v1 call `{name, parameters}` → its name and OpenAI `arguments` (a JSON string).
fn tool_call_parts(call: &Value) -> Result<(&str, String), String> {
    let Some(name) = call.get("name").and_then(Value::as_str) else {
        return Err("tool call without a name".into());
    };
    let arguments = match call.get("parameters") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(parameters) => parameters.to_string(),
    };
    Ok((name, arguments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{StreamMeta, Transcode};
    use crate::providers::ProviderKind;
    use crate::vocab::ModelOptions;
    use crate::vocab::ServiceOptions;

    const CHAT_REQUEST: &str =
        include_str!("../../tests/fixtures/providers/cohere/chat-request.json");
    const CHAT_RESPONSE: &str =
        include_str!("../../tests/fixtures/providers/cohere/chat-response.json");
    const GENERATE_RESPONSE: &str =
        include_str!("../../tests/fixtures/providers/cohere/generate-response.json");
    const ERROR_400: &str = include_str!("../../tests/fixtures/providers/cohere/error-400.json");
    const ERROR_HTML: &str = include_str!("../../tests/fixtures/providers/cohere/error-502.html");
    const TOOLS_REQUEST: &str =
        include_str!("../../tests/fixtures/providers/cohere/tools-request.json");
    const TOOLS_REQUEST_EXPECTED: &str =
        include_str!("../../tests/fixtures/providers/cohere/tools-request.expected.json");
    const TOOLS_RESPONSE: &str =
        include_str!("../../tests/fixtures/providers/cohere/tools-response.json");
    const STREAM_TEXT: &str =
        include_str!("../../tests/fixtures/providers/cohere/stream-text.ndjson");
    const STREAM_TOOLS: &str =
        include_str!("../../tests/fixtures/providers/cohere/stream-tools.ndjson");
    const STREAM_GENERATE: &str =
        include_str!("../../tests/fixtures/providers/cohere/stream-generate.ndjson");

    const MODEL: &str = "command-r";

    fn translate(
        kind: RouteKind,
        model: &str,
        tuning: &ModelOptions,
        url: Option<&str>,
        body: Value,
    ) -> Result<(UpstreamRequest, Value), RequestError> {
        let options = ServiceOptions::default();
        let ctx = TranslateContext {
            provider: ProviderKind::Cohere,
            upstream_url: url,
            options: &options,
            model,
            tuning,
            default_max_tokens: 1024,
        };
        let Value::Object(map) = body else {
            panic!("test body must be an object")
        };
        let upstream = Cohere.request(&ctx, kind, map)?;
        let sent: Value = serde_json::from_slice(&upstream.body).expect("upstream body is JSON");
        Ok((upstream, sent))
    }

    fn chat(body: Value) -> Result<Value, RequestError> {
        translate(RouteKind::Chat, MODEL, &ModelOptions::default(), None, body).map(|(_, v)| v)
    }

    fn completions(body: Value) -> Result<Value, RequestError> {
        translate(
            RouteKind::Completions,
            MODEL,
            &ModelOptions::default(),
            None,
            body,
        )
        .map(|(_, v)| v)
    }

    fn respond(kind: RouteKind, body: &[u8]) -> Result<Value, ResponseError> {
        let options = ServiceOptions::default();
        let tuning = ModelOptions::default();
        let ctx = TranslateContext {
            provider: ProviderKind::Cohere,
            upstream_url: None,
            options: &options,
            model: MODEL,
            tuning: &tuning,
            default_max_tokens: 1024,
        };
        Cohere.response(&ctx, kind, body)
    }

    fn respond_json(kind: RouteKind, body: Value) -> Result<Value, ResponseError> {
        respond(kind, body.to_string().as_bytes())
    }

    fn err_param(e: &RequestError) -> &str {
        e.param.as_deref().unwrap_or("")
    }

    fn user(text: &str) -> Value {
        json!({"messages": [{"role": "user", "content": text}]})
    }

    // ---- requests -------------------------------------------------------------------

    #[test]
    fn chat_request_url_headers_and_body() {
        let body: Value = serde_json::from_str(CHAT_REQUEST).unwrap();
        let (up, sent) =
            translate(RouteKind::Chat, MODEL, &ModelOptions::default(), None, body).unwrap();
        assert_eq!(up.url, "https://api.cohere.com/v1/chat");
        assert!(up.headers.is_empty());
        assert_eq!(
            sent,
            json!({
                "model": "command-r",
                "preamble": "You are a terse assistant.\n\nAnswer in French.",
                "chat_history": [
                    {"role": "USER", "message": "What is 1 + 1?"},
                    {"role": "CHATBOT", "message": "2."}
                ],
                "message": "And 2 + 2?\nExplain briefly.",
                "temperature": 0.2,
                "p": 0.9,
                "k": 40,
                "stop_sequences": ["\n\n"],
                "seed": 7,
                "frequency_penalty": 0.1,
                "presence_penalty": 0.2,
                "max_tokens": 300,
                "stream": false
            })
        );
    }

    #[test]
    fn completions_request_goes_to_generate() {
        let (up, sent) = translate(
            RouteKind::Completions,
            MODEL,
            &ModelOptions::default(),
            None,
            json!({"prompt": "Write a haiku", "n": 2, "stop": ["\n"], "top_p": 0.5,
                   "top_k": 3, "max_tokens": 40, "echo": false, "best_of": 1, "user": "u"}),
        )
        .unwrap();
        assert_eq!(up.url, "https://api.cohere.com/v1/generate");
        assert!(up.headers.is_empty());
        assert_eq!(
            sent,
            json!({"prompt": "Write a haiku", "model": "command-r", "num_generations": 2,
                   "end_sequences": ["\n"], "p": 0.5, "k": 3, "max_tokens": 40,
                   "stream": false})
        );
    }

    #[test]
    fn upstream_url_is_used_whole_with_its_query() {
        let url = "https://cohere.internal:8443/v1/chat?tenant=a&x=1";
        let (up, _) = translate(
            RouteKind::Chat,
            MODEL,
            &ModelOptions::default(),
            Some(url),
            user("hi"),
        )
        .unwrap();
        assert_eq!(up.url, url);
        let url = "http://localhost:9000/gen?k=v";
        let (up, _) = translate(
            RouteKind::Completions,
            MODEL,
            &ModelOptions::default(),
            Some(url),
            json!({"prompt": "x"}),
        )
        .unwrap();
        assert_eq!(up.url, url);
    }

    #[test]
    fn route_tuning_overrides_client_values() {
        let tuning = ModelOptions {
            max_tokens: Some(64),
            temperature: Some(0.9),
            top_p: Some(0.3),
            top_k: Some(7),
            ..ModelOptions::default()
        };
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 999,
                          "max_completion_tokens": 888, "temperature": 0.1, "top_p": 0.8,
                          "top_k": 2});
        let (_, sent) = translate(RouteKind::Chat, MODEL, &tuning, None, body).unwrap();
        assert_eq!(sent["max_tokens"], json!(64));
        assert_eq!(sent["temperature"], json!(0.9));
        assert_eq!(sent["p"], json!(0.3));
        assert_eq!(sent["k"], json!(7));
        assert!(sent.get("top_p").is_none() && sent.get("top_k").is_none());
        assert!(sent.get("max_completion_tokens").is_none());
        // Without tuning, max_completion_tokens (OpenAI's current name) is the cap.
        let sent = chat(json!({"messages": [{"role": "user", "content": "hi"}],
                               "max_tokens": 999, "max_completion_tokens": 888}))
        .unwrap();
        assert_eq!(sent["max_tokens"], json!(888));
    }

    #[test]
    fn model_is_the_context_model() {
        let body =
            json!({"model": "client-alias", "messages": [{"role": "user", "content": "hi"}]});
        let (_, sent) = translate(
            RouteKind::Chat,
            "command-r-plus",
            &ModelOptions::default(),
            None,
            body,
        )
        .unwrap();
        assert_eq!(sent["model"], json!("command-r-plus"));
    }

    #[test]
    fn system_messages_anywhere_go_to_preamble_in_order() {
        let sent = chat(json!({"preamble": "Native.", "messages": [
            {"role": "user", "content": "a"},
            {"role": "system", "content": "First."},
            {"role": "assistant", "content": "b"},
            {"role": "developer", "content": "Second."},
            {"role": "system", "content": "   "},
            {"role": "user", "content": "c"},
            {"role": "system", "content": "Third."}
        ]}))
        .unwrap();
        assert_eq!(
            sent["preamble"],
            json!("Native.\n\nFirst.\n\nSecond.\n\nThird.")
        );
        assert_eq!(
            sent["chat_history"],
            json!([{"role": "USER", "message": "a"}, {"role": "CHATBOT", "message": "b"}])
        );
        assert_eq!(sent["message"], json!("c"));
        // A single user message: no history, no preamble.
        let sent = chat(user("only")).unwrap();
        assert!(sent.get("chat_history").is_none() && sent.get("preamble").is_none());
        assert_eq!(sent["message"], json!("only"));
    }

    #[test]
    fn native_history_fields_never_mix_with_messages() {
        let sent = chat(json!({"chat_history": [{"role": "USER", "message": "injected"}],
                               "message": "injected", "messages": [{"role": "user", "content": "real"}]}))
        .unwrap();
        assert!(sent.get("chat_history").is_none());
        assert_eq!(sent["message"], json!("real"));
    }

    #[test]
    fn empty_history_turns_are_dropped() {
        let sent = chat(json!({"messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": null},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": []},
            {"role": "user", "content": "b"}
        ]}))
        .unwrap();
        assert_eq!(
            sent["chat_history"],
            json!([{"role": "USER", "message": "a"}])
        );
        assert_eq!(sent["message"], json!("b"));
    }

    #[test]
    fn stop_becomes_stop_sequences_for_chat() {
        let mut body = user("hi");
        body["stop"] = json!(["END", "###"]);
        assert_eq!(chat(body).unwrap()["stop_sequences"], json!(["END", "###"]));
        let mut body = user("hi");
        body["stop"] = json!([]);
        assert!(chat(body).unwrap().get("stop_sequences").is_none());
        for bad_stop in [json!(3), json!(["a", 1]), json!({"a": 1})] {
            let mut body = user("hi");
            body["stop"] = bad_stop;
            assert_eq!(err_param(&chat(body).unwrap_err()), "stop");
        }
    }

    #[test]
    fn n_above_one_is_refused_for_chat() {
        let mut body = user("hi");
        body["n"] = json!(2);
        let e = chat(body).unwrap_err();
        assert_eq!(err_param(&e), "n");
        assert!(e.message.contains("n must be 1"), "{}", e.message);
        for ok in [json!(1), json!(1.0), Value::Null] {
            let mut body = user("hi");
            body["n"] = ok;
            assert!(chat(body).unwrap().get("n").is_none());
        }
        for bad_n in [json!(0), json!(-1), json!(2.5), json!("2"), json!(1e20)] {
            let mut body = user("hi");
            body["n"] = bad_n;
            assert_eq!(err_param(&chat(body).unwrap_err()), "n");
        }
    }

    #[test]
    fn text_parts_are_flattened_and_other_parts_refused() {
        let sent = chat(json!({"messages": [
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}
        ]}))
        .unwrap();
        assert_eq!(sent["message"], json!("one\ntwo"));
        assert_eq!(
            sent["chat_history"],
            json!([{"role": "CHATBOT", "message": "No."}])
        );
        let e = chat(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
        ]}]}))
        .unwrap_err();
        assert_eq!(err_param(&e), "messages");
        assert!(e.message.contains("image_url"), "{}", e.message);
        for part in [
            json!("bare string"),
            json!({"text": "no type"}),
            json!({"type": "text"}),
            json!({"type": "text", "text": 5}),
        ] {
            let e = chat(json!({"messages": [{"role": "user", "content": [part]}]})).unwrap_err();
            assert_eq!(err_param(&e), "messages");
        }
    }

    #[test]
    fn hostile_messages_give_specific_errors() {
        let cases = [
            json!({"messages": "hello"}),
            json!({"messages": {"role": "user"}}),
            json!({}),
            json!({"messages": []}),
            json!({"messages": [42]}),
            json!({"messages": [{"content": "no role"}]}),
            json!({"messages": [{"role": 5, "content": "x"}]}),
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": 42}]}),
            json!({"messages": [{"role": "user", "content": {"text": "x"}}]}),
            json!({"messages": [{"role": "user", "content": true}]}),
            json!({"messages": [{"role": "user", "content": null}]}),
            json!({"messages": [{"role": "user", "content": "   "}]}),
            json!({"messages": [{"role": "system", "content": "only system"}]}),
            json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "prefill"}]}),
            json!({"messages": [{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "c", "content": "r"}]}),
            json!({"messages": [{"role": "assistant", "content": null,
                   "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}]},
                  {"role": "user", "content": "q"}]}),
        ];
        for body in cases {
            let e = chat(body.clone()).unwrap_err();
            assert_eq!(err_param(&e), "messages", "{body}: {}", e.message);
        }
        let e = chat(json!({"preamble": 3, "messages": [{"role": "user", "content": "x"}]}))
            .unwrap_err();
        assert_eq!(err_param(&e), "preamble");
    }

    #[test]
    fn stream_is_kept_in_cohere_form() {
        let mut body = user("hi");
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let sent = chat(body).unwrap();
        assert_eq!(sent["stream"], json!(true));
        assert!(sent.get("stream_options").is_none());
        assert_eq!(chat(user("hi")).unwrap()["stream"], json!(false));
        let mut body = user("hi");
        body["stream"] = Value::Null;
        assert_eq!(chat(body).unwrap()["stream"], json!(false));
        let mut body = user("hi");
        body["stream"] = json!("yes");
        assert_eq!(err_param(&chat(body).unwrap_err()), "stream");
    }

    #[test]
    fn tools_history_and_results_are_translated() {
        let body: Value = serde_json::from_str(TOOLS_REQUEST).unwrap();
        let expected: Value = serde_json::from_str(TOOLS_REQUEST_EXPECTED).unwrap();
        assert_eq!(chat(body).unwrap(), expected);
    }

    #[test]
    fn tool_results_before_a_user_turn_stay_in_history() {
        let call = json!({"id": "call_0", "type": "function",
                          "function": {"name": "f", "arguments": "{\"a\": [1]}"}});
        let sent = chat(json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": "[1, 2]"},
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "thanks"}
        ]}))
        .unwrap();
        assert_eq!(sent["message"], json!("thanks"));
        assert!(sent.get("tool_results").is_none());
        assert_eq!(
            sent["chat_history"],
            json!([
                {"role": "USER", "message": "q"},
                {"role": "CHATBOT", "message": "", "tool_calls": [{"name": "f", "parameters": {"a": [1]}}]},
                // Only a JSON object is an output as is; anything else is wrapped.
                {"role": "TOOL", "tool_results": [{"call": {"name": "f", "parameters": {"a": [1]}},
                                                    "outputs": [{"result": "[1, 2]"}]}]}
            ])
        );
        assert_eq!(sent["preamble"], json!("Be brief."));
    }

    #[test]
    fn tool_choice_none_omits_tools_and_forcing_is_refused() {
        let tools = json!([{"type": "function", "function": {"name": "f", "description": "d",
                            "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]);
        let mut body = user("hi");
        body["tools"] = tools.clone();
        body["tool_choice"] = json!("none");
        let sent = chat(body).unwrap();
        assert!(sent.get("tools").is_none() && sent.get("tool_choice").is_none());
        let mut body = user("hi");
        body["tools"] = tools.clone();
        let sent = chat(body).unwrap();
        assert_eq!(
            sent["tools"],
            json!([{"name": "f", "description": "d",
                    "parameter_definitions": {"x": {"type": "int", "required": false}}}])
        );
        for choice in [
            json!("required"),
            json!({"type": "function", "function": {"name": "f"}}),
            json!("sometimes"),
            json!(3),
        ] {
            let mut body = user("hi");
            body["tools"] = tools.clone();
            body["tool_choice"] = choice.clone();
            let e = chat(body).unwrap_err();
            assert_eq!(err_param(&e), "tool_choice", "{choice}");
        }
        let mut body = user("hi");
        body["tools"] = tools.clone();
        body["parallel_tool_calls"] = json!(false);
        assert_eq!(err_param(&chat(body).unwrap_err()), "parallel_tool_calls");
        let mut body = user("hi");
        body["tools"] = json!([]);
        body["tool_choice"] = json!("auto");
        body["parallel_tool_calls"] = json!(true);
        body["functions"] = json!([]);
        body["function_call"] = json!("none");
        let sent = chat(body).unwrap();
        for key in [
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "functions",
            "function_call",
        ] {
            assert!(sent.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn malformed_tools_and_tool_messages_are_refused() {
        let tool = |function: Value| json!([{"type": "function", "function": function}]);
        let cases = [
            (json!({"x": 1}), "tools"),
            (json!([{"type": "retrieval"}]), "tools[0]"),
            (
                tool(json!({"description": "no name"})),
                "tools[0].function.name",
            ),
            (
                tool(json!({"name": "f", "description": 5})),
                "tools[0].function.description",
            ),
            (
                tool(json!({"name": "f", "parameters": "x"})),
                "tools[0].function.parameters",
            ),
            (
                tool(json!({"name": "f", "parameters": {"type": "string"}})),
                "tools[0].function.parameters",
            ),
            (
                tool(json!({"name": "f", "parameters": {"properties": {"a": {}}}})),
                "tools[0].function.parameters.properties.a",
            ),
            (
                tool(json!({"name": "f", "parameters": {"properties": {"a": {"type": "date"}}}})),
                "tools[0].function.parameters.properties.a",
            ),
            (
                tool(
                    json!({"name": "f", "parameters": {"properties": {"a": {"$ref": "#/$defs/A"}},
                                                        "$defs": {"A": {"$ref": "#/$defs/A"}}}}),
                ),
                "tools[0].function.parameters.properties.a",
            ),
        ];
        for (tools, param) in cases {
            let mut body = user("hi");
            body["tools"] = tools.clone();
            let e = chat(body).unwrap_err();
            assert_eq!(err_param(&e), param, "{tools}: {}", e.message);
        }
        // Untyped properties still map when the schema says what they are.
        let mut body = user("hi");
        body["tools"] = tool(json!({"name": "f", "parameters": {"properties": {
            "e": {"enum": [1, 2]}, "c": {"const": 1.5}, "o": {"properties": {}}, "l": {"items": {}}
        }}}));
        assert_eq!(
            chat(body).unwrap()["tools"][0]["parameter_definitions"],
            json!({"e": {"type": "int", "required": false}, "c": {"type": "float", "required": false},
                   "o": {"type": "dict", "required": false}, "l": {"type": "list", "required": false}})
        );
        let call = |arguments: Value| {
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}]})
        };
        let answer = json!({"role": "tool", "tool_call_id": "c1", "content": "ok"});
        let cases = [
            json!([{"role": "user", "content": "q"}, call(json!("[1]")), answer.clone()]),
            json!([{"role": "user", "content": "q"}, call(json!("not json")), answer.clone()]),
            json!([{"role": "user", "content": "q"},
                   {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]),
            json!([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": {}}]),
            json!([{"role": "user", "content": "q"}, call(json!("{}")),
                   {"role": "tool", "tool_call_id": "other", "content": "ok"}]),
            json!([{"role": "user", "content": "q"}, call(json!("{}")),
                   {"role": "tool", "content": "no id"}]),
            // The answer precedes the call it names.
            json!([{"role": "user", "content": "q"}, answer.clone(), call(json!("{}"))]),
            json!([{"role": "user", "content": "q"}, call(json!("{}"))]),
            json!([{"role": "user", "content": "q"},
                   {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}}]),
            json!([{"role": "user", "content": "q"}, {"role": "function", "name": "f", "content": "x"}]),
        ];
        for messages in cases {
            let e = chat(json!({"messages": messages})).unwrap_err();
            assert_eq!(err_param(&e), "messages", "{messages}: {}", e.message);
        }
        // Arguments sent as an object, or empty, are accepted.
        let sent = chat(json!({"messages": [{"role": "user", "content": "q"},
                                            call(json!({"k": "v"})), answer.clone()]}))
        .unwrap();
        assert_eq!(
            sent["tool_results"],
            json!([{"call": {"name": "f", "parameters": {"k": "v"}}, "outputs": [{"result": "ok"}]}])
        );
        for key in ["functions", "function_call"] {
            let mut body = user("hi");
            body[key] = if key == "functions" {
                json!([{"name": "f"}])
            } else {
                json!({"name": "f"})
            };
            assert_eq!(err_param(&chat(body).unwrap_err()), key);
        }
    }

    #[test]
    fn completions_refuse_tools_and_streamed_choices() {
        for (key, value) in [
            (
                "tools",
                json!([{"type": "function", "function": {"name": "f"}}]),
            ),
            ("tool_choice", json!("required")),
            ("parallel_tool_calls", json!(false)),
            ("functions", json!([{"name": "f"}])),
        ] {
            let e = completions(json!({"prompt": "x", key: value})).unwrap_err();
            assert_eq!(err_param(&e), key);
        }
        let sent = completions(json!({"prompt": "x", "tools": [], "tool_choice": "auto"})).unwrap();
        assert!(sent.get("tools").is_none() && sent.get("tool_choice").is_none());
        let e = completions(json!({"prompt": "x", "n": 2, "stream": true})).unwrap_err();
        assert_eq!(err_param(&e), "n");
        let sent = completions(json!({"prompt": "x", "n": 1, "stream": true,
                                      "stream_options": {"include_usage": true}}))
        .unwrap();
        assert_eq!(sent["stream"], json!(true));
        assert!(sent.get("stream_options").is_none() && sent.get("num_generations").is_none());
    }

    #[test]
    fn unhonourable_parameters_are_refused_not_dropped() {
        let cases = [
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("logit_bias", json!({"50256": -100})),
            ("audio", json!({"voice": "alloy", "format": "wav"})),
            ("modalities", json!(["text", "audio"])),
            ("web_search_options", json!({})),
            ("response_format", json!({"type": "yaml"})),
            (
                "response_format",
                json!({"type": "json_schema", "json_schema": {"name": "x"}}),
            ),
        ];
        for (key, value) in cases {
            let mut body = user("hi");
            body[key] = value;
            assert_eq!(err_param(&chat(body).unwrap_err()), key);
        }
        let mut body = user("hi");
        body["logprobs"] = json!(false);
        body["top_logprobs"] = json!(0);
        body["logit_bias"] = json!({});
        body["modalities"] = json!(["text"]);
        let sent = chat(body).unwrap();
        for key in ["logprobs", "top_logprobs", "logit_bias", "modalities"] {
            assert!(sent.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn response_format_maps_to_cohere_json_mode() {
        let mut body = user("hi");
        body["response_format"] = json!({"type": "json_object"});
        assert_eq!(
            chat(body).unwrap()["response_format"],
            json!({"type": "json_object"})
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let mut body = user("hi");
        body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": true}});
        assert_eq!(
            chat(body).unwrap()["response_format"],
            json!({"type": "json_object", "schema": schema})
        );
        let mut body = user("hi");
        body["response_format"] = json!({"type": "text"});
        assert!(chat(body).unwrap().get("response_format").is_none());
    }

    #[test]
    fn cohere_native_and_unknown_fields_pass_through() {
        let mut body = user("hi");
        body["documents"] = json!([{"title": "t", "snippet": "s"}]);
        body["prompt_truncation"] = json!("AUTO");
        body["some_extra_param"] = json!("kept");
        body["temperature"] = Value::Null;
        let sent = chat(body).unwrap();
        assert_eq!(sent["documents"], json!([{"title": "t", "snippet": "s"}]));
        assert_eq!(sent["prompt_truncation"], json!("AUTO"));
        assert_eq!(sent["some_extra_param"], json!("kept"));
        assert!(sent.get("temperature").is_none(), "nulls are not forwarded");
    }

    #[test]
    fn completions_refuse_what_generate_cannot_do() {
        let cases = [
            ("prompt", json!({"prompt": ["a", "b"]})),
            ("prompt", json!({"prompt": 12})),
            ("prompt", json!({})),
            ("n", json!({"prompt": "x", "n": 0})),
            ("echo", json!({"prompt": "x", "echo": true})),
            ("suffix", json!({"prompt": "x", "suffix": "end"})),
            ("best_of", json!({"prompt": "x", "best_of": 3})),
            ("logprobs", json!({"prompt": "x", "logprobs": 5})),
            (
                "response_format",
                json!({"prompt": "x", "response_format": {"type": "json_object"}}),
            ),
            ("stop", json!({"prompt": "x", "stop": 1})),
        ];
        for (param, body) in cases {
            let e = completions(body.clone()).unwrap_err();
            assert_eq!(err_param(&e), param, "{body}: {}", e.message);
        }
        let sent = completions(json!({"prompt": "x", "n": 1, "logprobs": 0, "suffix": "",
                                      "stop": "END"}))
        .unwrap();
        assert!(sent.get("num_generations").is_none());
        assert_eq!(sent["end_sequences"], json!(["END"]));
        assert!(sent.get("stop_sequences").is_none());
    }

    #[test]
    fn unicode_and_huge_numbers_survive_requests() {
        let text = "Ünïcödé — 日本語 🚀 \u{0000} \"quoted\"";
        let mut body = json!({"messages": [
            {"role": "system", "content": "Réponds en 中文"},
            {"role": "user", "content": text}
        ]});
        body["max_tokens"] = json!(u64::MAX);
        body["temperature"] = json!(1e300);
        body["seed"] = json!(-9_223_372_036_854_775_808_i64);
        let sent = chat(body).unwrap();
        assert_eq!(sent["message"], json!(text));
        assert_eq!(sent["preamble"], json!("Réponds en 中文"));
        // Out-of-range values are Cohere's to judge: forwarded untouched, never a panic.
        assert_eq!(sent["max_tokens"], json!(u64::MAX));
        assert_eq!(sent["temperature"], json!(1e300));
        assert_eq!(sent["seed"], json!(-9_223_372_036_854_775_808_i64));
        let sent = completions(json!({"prompt": text, "n": u64::MAX})).unwrap();
        assert_eq!(sent["prompt"], json!(text));
        assert_eq!(sent["num_generations"], json!(u64::MAX));
    }

    // ---- responses ------------------------------------------------------------------

    #[test]
    fn chat_response_is_translated() {
        let out = respond(RouteKind::Chat, CHAT_RESPONSE.as_bytes()).unwrap();
        assert!(out["created"].as_i64().unwrap() > 1_700_000_000);
        let mut out = out;
        out.as_object_mut().unwrap().remove("created");
        assert_eq!(
            out,
            json!({
                "id": "chatcmpl-5b4c1f2e-8d0e-4f27-a3e1-1d2c3b4a5f60",
                "object": "chat.completion",
                "model": "command-r",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Quatre. 2 + 2 = 4."},
                    "finish_reason": "stop"
                }],
                // docs/wire-formats.md, "Cohere": meta.tokens first; meta.cached_tokens as details.
                "usage": {"prompt_tokens": 70, "completion_tokens": 20, "total_tokens": 90,
                          "prompt_tokens_details": {"cached_tokens": 32}}
            })
        );
    }

    #[test]
    fn tool_calls_in_a_response_get_ids_and_json_arguments() {
        let out = respond(RouteKind::Chat, TOOLS_RESPONSE.as_bytes()).unwrap();
        assert_eq!(
            out["id"],
            json!("chatcmpl-3c2b1a0f-9e8d-4c7b-a6f5-e4d3c2b1a0f9")
        );
        assert_eq!(
            out["choices"][0],
            json!({
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I will check the weather in both cities.",
                    "tool_calls": [
                        {"id": "call_0", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                        {"id": "call_1", "type": "function",
                         "function": {"name": "get_weather",
                                      "arguments": "{\"city\":\"Tōkyō\",\"units\":\"celsius\"}"}}
                    ]
                },
                "finish_reason": "tool_calls"
            })
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 1021, "completion_tokens": 42, "total_tokens": 1063})
        );
        // No text: content is null, as OpenAI sends it; parameters absent → "{}".
        let out = respond_json(
            RouteKind::Chat,
            json!({"text": "", "finish_reason": "COMPLETE", "tool_calls": [{"name": "now"}]}),
        )
        .unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            out["choices"][0]["message"]["tool_calls"][0]["function"],
            json!({"name": "now", "arguments": "{}"})
        );
        // An empty list is no call.
        let out = respond_json(RouteKind::Chat, json!({"text": "hi", "tool_calls": []})).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], json!("stop"));
        assert!(out["choices"][0]["message"].get("tool_calls").is_none());
        for bad in [json!({"parameters": {}}), json!("f")] {
            let e = respond_json(RouteKind::Chat, json!({"text": "", "tool_calls": [bad]}))
                .unwrap_err();
            assert!(e.0.contains("tool_calls[0]"), "{}", e.0);
        }
        assert!(respond_json(RouteKind::Chat, json!({"text": "", "tool_calls": {}})).is_err());
    }

    #[test]
    fn finish_reasons_are_mapped() {
        let cases = [
            (json!("COMPLETE"), "stop"),
            (json!("STOP_SEQUENCE"), "stop"),
            (json!("MAX_TOKENS"), "length"),
            (json!("ERROR_LIMIT"), "length"),
            (json!("ERROR_TOXIC"), "content_filter"),
            (json!("TOOL_CALL"), "tool_calls"),
            (json!("SOMETHING_NEW"), "stop"),
            (Value::Null, "stop"),
            (json!(7), "stop"),
        ];
        for (reason, expected) in cases {
            let out = respond_json(
                RouteKind::Chat,
                json!({"text": "t", "finish_reason": reason}),
            )
            .unwrap();
            assert_eq!(
                out["choices"][0]["finish_reason"],
                json!(expected),
                "{reason}"
            );
        }
        for reason in ["ERROR", "TIMEOUT", "USER_CANCEL"] {
            let e = respond_json(
                RouteKind::Chat,
                json!({"text": "t", "finish_reason": reason}),
            )
            .unwrap_err();
            assert!(e.0.contains(reason), "{}", e.0);
            let e = respond_json(
                RouteKind::Completions,
                json!({"generations": [{"text": "t", "finish_reason": reason}]}),
            )
            .unwrap_err();
            assert!(e.0.contains(reason), "{}", e.0);
        }
    }

    #[test]
    fn usage_prefers_tokens_then_token_count_then_billed_units() {
        let tokens = json!({"input_tokens": 70, "output_tokens": 20});
        let token_count =
            json!({"prompt_tokens": 102, "response_tokens": 258, "total_tokens": 360});
        let billed = json!({"input_tokens": 10, "output_tokens": 5});
        let usage = |body: Value| respond_json(RouteKind::Chat, body).unwrap()["usage"].clone();
        assert_eq!(
            usage(json!({"text": "t", "token_count": token_count,
                         "meta": {"tokens": tokens, "billed_units": billed}})),
            json!({"prompt_tokens": 70, "completion_tokens": 20, "total_tokens": 90})
        );
        assert_eq!(
            usage(
                json!({"text": "t", "token_count": token_count, "meta": {"billed_units": billed}})
            ),
            json!({"prompt_tokens": 102, "completion_tokens": 258, "total_tokens": 360})
        );
        assert_eq!(
            usage(json!({"text": "t", "meta": {"billed_units": billed, "tokens": {}}})),
            json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
        );
        assert_eq!(
            usage(json!({"text": "t"})),
            json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        );
        assert_eq!(
            usage(json!({"text": "t", "meta": "weird", "token_count": [1, 2]})),
            json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        );
    }

    #[test]
    fn hostile_usage_numbers_never_panic() {
        let out = respond(
            RouteKind::Chat,
            br#"{"text":"t","meta":{"tokens":{"input_tokens":1e300,"output_tokens":18446744073709551615},"cached_tokens":-4}}"#,
        )
        .unwrap();
        assert_eq!(out["usage"]["prompt_tokens"], json!(u64::MAX));
        assert_eq!(out["usage"]["completion_tokens"], json!(u64::MAX));
        assert_eq!(out["usage"]["total_tokens"], json!(u64::MAX));
        assert_eq!(
            out["usage"]["prompt_tokens_details"]["cached_tokens"],
            json!(0)
        );
        let out = respond_json(
            RouteKind::Chat,
            json!({"text": "t", "meta": {"billed_units": {"input_tokens": -3, "output_tokens": "9"}}}),
        )
        .unwrap();
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        );
    }

    #[test]
    fn ids_and_model_fallbacks() {
        let out =
            respond_json(RouteKind::Chat, json!({"text": "t", "response_id": "r-1"})).unwrap();
        assert_eq!(out["id"], json!("chatcmpl-r-1"));
        let out = respond_json(
            RouteKind::Chat,
            json!({"text": "t", "generation_id": "chatcmpl-x"}),
        )
        .unwrap();
        assert_eq!(out["id"], json!("chatcmpl-x"));
        let a = respond_json(RouteKind::Chat, json!({"text": "t"})).unwrap();
        let b = respond_json(RouteKind::Chat, json!({"text": "t", "generation_id": 5})).unwrap();
        let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
        assert!(a.starts_with("chatcmpl-") && a.len() > 20 && a != b);
        let out = respond_json(
            RouteKind::Completions,
            json!({"generations": [{"text": "t"}]}),
        )
        .unwrap();
        assert!(out["id"].as_str().unwrap().starts_with("cmpl-"));
        assert_eq!(out["model"], json!(MODEL));
        let out = respond_json(
            RouteKind::Chat,
            json!({"text": "t", "model": "command-r-08-2024"}),
        )
        .unwrap();
        assert_eq!(out["model"], json!("command-r-08-2024"));
    }

    #[test]
    fn generate_response_is_translated() {
        let out = respond(RouteKind::Completions, GENERATE_RESPONSE.as_bytes()).unwrap();
        assert!(out["created"].is_i64());
        let mut out = out;
        out.as_object_mut().unwrap().remove("created");
        assert_eq!(
            out,
            json!({
                "id": "cmpl-b6c3f1a2-1111-4a4a-9b9b-0123456789ab",
                "object": "text_completion",
                "model": "command-r",
                "choices": [
                    {"index": 0, "text": " Waves fold into foam", "finish_reason": "stop"},
                    {"index": 1, "text": " Salt wind, the tide keeps", "finish_reason": "length"}
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19}
            })
        );
    }

    #[test]
    fn untranslatable_responses_are_response_errors() {
        let chat_cases: [&[u8]; 9] = [
            b"",
            b"  \n ",
            b"<html>oops</html>",
            b"{\"text\": ",
            b"[1,2,3]",
            b"\"text\"",
            b"{\"nothing_object\": {}}",
            b"{\"text\": 42}",
            b"{\"text\": null}",
        ];
        for body in chat_cases {
            let e = respond(RouteKind::Chat, body).unwrap_err();
            assert!(!e.0.is_empty(), "{:?}", String::from_utf8_lossy(body));
        }
        assert_eq!(
            respond(RouteKind::Chat, b"").unwrap_err().0,
            "empty response body from cohere"
        );
        assert_eq!(
            respond(RouteKind::Chat, b"not json").unwrap_err().0,
            "failed to decode cohere response"
        );
        assert_eq!(
            respond(RouteKind::Chat, b"{}").unwrap_err().0,
            MISSING_ANSWER
        );
        let completions_cases = [
            json!({}),
            json!({"text": "a chat answer on a completions route"}),
            json!({"generations": []}),
            json!({"generations": {"text": "x"}}),
            json!({"generations": [{"id": "no text"}]}),
            json!({"generations": [{"text": ["x"]}]}),
            json!({"generations": [7]}),
        ];
        for body in completions_cases {
            assert!(
                respond_json(RouteKind::Completions, body.clone()).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn unicode_survives_responses() {
        let text = "Ünïcödé — 日本語 🚀 \"quoted\"\n";
        let out = respond_json(RouteKind::Chat, json!({"text": text})).unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], json!(text));
        let out = respond_json(
            RouteKind::Completions,
            json!({"generations": [{"text": text}]}),
        )
        .unwrap();
        assert_eq!(out["choices"][0]["text"], json!(text));
    }

    // ---- errors ---------------------------------------------------------------------

    #[test]
    fn errors_are_normalised() {
        let e = Cohere.error(400, ERROR_400.as_bytes());
        assert_eq!(
            e.message,
            "invalid request: message must be at least 1 token long or tool results must be specified."
        );
        assert_eq!(e.kind, "upstream_error");
        assert_eq!(
            e.to_openai(),
            json!({"error": {"message": e.message, "type": "upstream_error", "param": null, "code": null}})
        );
        let e = Cohere.error(502, ERROR_HTML.as_bytes());
        assert_eq!(
            (e.message.as_str(), e.kind.as_str()),
            ("upstream answered HTTP 502", "upstream_error")
        );
        let e = Cohere.error(500, b"");
        assert_eq!(
            (e.message.as_str(), e.kind.as_str()),
            ("upstream answered HTTP 500", "upstream_error")
        );
        let e = Cohere.error(429, br#"{"message": ""}"#);
        assert_eq!(e.message, "upstream answered HTTP 429");
        let e = Cohere.error(401, br#"{"message": 12}"#);
        assert_eq!(e.message, "upstream answered HTTP 401");
        // An OpenAI-shaped error (a compatible proxy in front of Cohere) keeps its type.
        let e = Cohere.error(
            400,
            br#"{"error": {"type": "invalid_request_error", "message": "Invalid request"}}"#,
        );
        assert_eq!(
            (e.message.as_str(), e.kind.as_str()),
            ("Invalid request", "invalid_request_error")
        );
    }

    // ---- streaming ------------------------------------------------------------------

    fn stream_meta(kind: RouteKind, include_usage: bool) -> StreamMeta {
        StreamMeta {
            id: "chatcmpl-test".into(),
            created: 1_700_000_000,
            model: "command-r".into(),
            kind,
            include_usage,
            collect_text: true,
        }
    }

    /// The client's bytes for `input`, checked to be the same however `input` is split.
    fn transcode(kind: RouteKind, include_usage: bool, input: &str) -> String {
        let out = crate::llm::assert_split_invariant(
            || Box::new(CohereStream::new(kind)),
            &stream_meta(kind, include_usage),
            input.as_bytes(),
        );
        String::from_utf8(out).expect("the stream is UTF-8")
    }

    /// The same stream fed whole, with the emitter kept for its accounting.
    fn transcode_whole(kind: RouteKind, input: &str) -> (String, Transcode) {
        let mut t = Transcode::new(
            Box::new(CohereStream::new(kind)),
            stream_meta(kind, true),
            "cohere",
        );
        let mut out = t.feed(input.as_bytes());
        out.extend(t.upstream_closed());
        (String::from_utf8(out).expect("the stream is UTF-8"), t)
    }

    fn frames(sse: &str) -> Vec<Value> {
        crate::llm::sse_payloads(sse.as_bytes())
    }

    const STREAM_FIXTURES: [(RouteKind, &str, &str); 3] = [
        (
            RouteKind::Chat,
            STREAM_TEXT,
            include_str!("../../tests/fixtures/providers/cohere/stream-text.expected.sse"),
        ),
        (
            RouteKind::Chat,
            STREAM_TOOLS,
            include_str!("../../tests/fixtures/providers/cohere/stream-tools.expected.sse"),
        ),
        (
            RouteKind::Completions,
            STREAM_GENERATE,
            include_str!("../../tests/fixtures/providers/cohere/stream-generate.expected.sse"),
        ),
    ];

    #[test]
    fn stream_fixtures_give_the_expected_chunks_however_split() {
        for (kind, input, expected) in STREAM_FIXTURES {
            assert_eq!(transcode(kind, true, input), expected);
            // Without include_usage: the same stream minus the usage chunk.
            let without: Vec<Value> = frames(expected)
                .into_iter()
                .filter(|f| f.get("usage").is_none())
                .collect();
            assert_eq!(frames(&transcode(kind, false, input)), without);
        }
    }

    #[test]
    fn stream_usage_is_the_fixtures_numbers_and_sent_once() {
        // docs/wire-formats.md, "Cohere", as for whole answers: meta.tokens, else billed_units.
        for ((kind, input, _), (prompt, completion)) in
            STREAM_FIXTURES
                .into_iter()
                .zip([(74, 16), (1021, 42), (7, 12)])
        {
            let (out, t) = transcode_whole(kind, input);
            let usage: Vec<Value> = frames(&out)
                .into_iter()
                .filter_map(|f| f.get("usage").cloned())
                .collect();
            assert_eq!(usage.len(), 1, "{out}");
            assert_eq!(usage[0]["prompt_tokens"], json!(prompt));
            assert_eq!(usage[0]["completion_tokens"], json!(completion));
            assert_eq!(usage[0]["total_tokens"], json!(prompt + completion));
            assert_eq!(t.emitter().tokens(), (prompt, completion));
            assert!(t.emitter().usage_is_final());
        }
        let (out, t) = transcode_whole(RouteKind::Chat, STREAM_TEXT);
        assert_eq!(
            frames(&out)[5]["usage"]["prompt_tokens_details"],
            json!({"cached_tokens": 8})
        );
        // The final response repeats the text: it is not sent again.
        assert_eq!(
            t.emitter().text(),
            "The capital of France is Paris — “la Ville Lumière” 🗼."
        );
        let (_, t) = transcode_whole(RouteKind::Completions, STREAM_GENERATE);
        assert_eq!(
            t.emitter().text(),
            " Waves fold into foam, salt wind keeps time."
        );
        assert_eq!(t.emitter().finish_reason(), Some("length"));
    }

    /// Every tool call's argument fragments, by OpenAI index, and its id and name.
    fn streamed_calls(out: &str) -> Vec<(String, String, String)> {
        let mut calls: Vec<(String, String, String)> = Vec::new();
        for frame in frames(out) {
            let Some(deltas) = frame.pointer("/choices/0/delta/tool_calls") else {
                continue;
            };
            let delta = &deltas[0];
            let index = delta["index"].as_u64().unwrap() as usize;
            if let Some(id) = delta["id"].as_str() {
                assert_eq!(index, calls.len(), "calls start in index order");
                calls.push((
                    id.into(),
                    delta["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            calls[index]
                .2
                .push_str(delta["function"]["arguments"].as_str().unwrap());
        }
        calls
    }

    #[test]
    fn streamed_tool_arguments_concatenate_to_the_calls() {
        let (out, t) = transcode_whole(RouteKind::Chat, STREAM_TOOLS);
        let calls = streamed_calls(&out);
        let parsed: Vec<(String, String, Value)> = calls
            .into_iter()
            .map(|(id, name, args)| (id, name, serde_json::from_str(&args).expect("valid JSON")))
            .collect();
        assert_eq!(
            parsed,
            vec![
                (
                    "call_0".into(),
                    "get_weather".into(),
                    json!({"city": "Paris"})
                ),
                (
                    "call_1".into(),
                    "get_weather".into(),
                    json!({"city": "Tōkyō", "units": "celsius"})
                ),
            ]
        );
        // The tool plan is content, once (tool-calls-generation repeats it).
        assert_eq!(t.emitter().text().matches("I will check").count(), 1);
        assert_eq!(t.emitter().finish_reason(), Some("tool_calls"));
    }

    #[test]
    fn whole_tool_calls_are_sent_when_no_chunks_came() {
        let input = concat!(
            r#"{"event_type":"stream-start","generation_id":"g"}"#,
            "\n",
            r#"{"event_type":"tool-calls-generation","text":"Plan.","tool_calls":[{"name":"a","parameters":{"x":1}},{"name":"b"}]}"#,
            "\n",
            r#"{"event_type":"stream-end","finish_reason":"COMPLETE","response":{"text":"Plan.","meta":{"billed_units":{"input_tokens":3,"output_tokens":4}}}}"#,
            "\n",
        );
        let out = transcode(RouteKind::Chat, false, input);
        assert_eq!(
            streamed_calls(&out),
            vec![
                ("call_0".into(), "a".into(), r#"{"x":1}"#.into()),
                ("call_1".into(), "b".into(), "{}".into()),
            ]
        );
        let frames = frames(&out);
        assert_eq!(
            frames[1]["choices"][0]["delta"],
            json!({"content": "Plan."})
        );
        assert_eq!(
            frames[frames.len() - 2]["choices"][0]["finish_reason"],
            json!("tool_calls")
        );
        // Calls only in the final response (no tool-calls-generation) still reach the client;
        // calls streamed as chunks are not repeated; Cohere's odd indexes become 0, 1, ….
        let input = concat!(
            r#"{"event_type":"tool-calls-chunk","tool_call_delta":{"index":4,"name":"a","parameters":"{}"}}"#,
            "\n",
            r#"{"event_type":"tool-calls-chunk","tool_call_delta":{"index":9,"parameters":"{\"lost\":1}"}}"#,
            "\n",
            r#"{"event_type":"stream-end","finish_reason":"COMPLETE","response":{"tool_calls":[{"name":"a","parameters":{}},{"name":"b","parameters":{"y":"z"}}]}}"#,
            "\n",
        );
        assert_eq!(
            streamed_calls(&transcode(RouteKind::Chat, false, input)),
            vec![
                ("call_0".into(), "a".into(), "{}".into()),
                ("call_1".into(), "b".into(), r#"{"y":"z"}"#.into()),
            ]
        );
    }

    #[test]
    fn crlf_line_endings_give_the_same_stream() {
        for (kind, input, expected) in STREAM_FIXTURES {
            let crlf = input.replace('\n', "\r\n");
            assert_eq!(transcode(kind, true, &crlf), expected);
        }
        // A last line without its newline still counts.
        let (kind, input, expected) = STREAM_FIXTURES[0];
        assert_eq!(transcode(kind, true, input.trim_end()), expected);
    }

    #[test]
    fn a_stream_cut_before_stream_end_ends_with_an_error() {
        for (kind, input, _) in STREAM_FIXTURES {
            let cut = &input[..input.find(r#"{"is_finished":true"#).unwrap()];
            let out = transcode(kind, true, cut);
            let frames = frames(&out);
            let last = frames.last().unwrap();
            assert_eq!(last["error"]["type"], json!("upstream_error"), "{out}");
            assert!(
                !out.contains("[DONE]") && !out.contains("\"usage\""),
                "{out}"
            );
        }
    }

    #[test]
    fn stream_errors_are_in_band() {
        let cases = [
            (
                RouteKind::Completions,
                concat!(
                    r#"{"index":0,"text":" a","is_finished":false,"event_type":"text-generation"}"#,
                    "\n",
                    r#"{"index":0,"is_finished":true,"finish_reason":"ERROR","err":"model overloaded","event_type":"stream-error"}"#,
                    "\n",
                ),
                "model overloaded",
            ),
            (
                RouteKind::Chat,
                concat!(
                    r#"{"event_type":"text-generation","text":"a"}"#,
                    "\n",
                    r#"{"event_type":"stream-error","message":"internal"}"#,
                    "\n",
                ),
                "internal",
            ),
            (
                RouteKind::Chat,
                concat!(
                    r#"{"event_type":"stream-start"}"#,
                    "\n",
                    r#"{"message":"invalid api token"}"#,
                    "\n"
                ),
                "invalid api token",
            ),
            (
                RouteKind::Chat,
                concat!(
                    r#"{"event_type":"text-generation","text":"a"}"#,
                    "\n",
                    r#"{"event_type":"stream-end","finish_reason":"ERROR","response":{"meta":{"tokens":{"input_tokens":5,"output_tokens":1}}}}"#,
                    "\n",
                ),
                "cohere ended the generation with ERROR",
            ),
            (
                RouteKind::Chat,
                concat!(
                    r#"{"event_type":"text-generation","text":"a"}"#,
                    "\n",
                    "{not json\n"
                ),
                "transformation failed from type test",
            ),
            (
                RouteKind::Chat,
                concat!(
                    r#"{"event_type":"text-generation","text":"a"}"#,
                    "\n",
                    "[1, 2]\n"
                ),
                "transformation failed from type test",
            ),
        ];
        for (kind, input, message) in cases {
            let out = transcode(kind, true, input);
            let frames = frames(&out);
            let last = frames.last().unwrap();
            assert!(
                last["error"]["message"].as_str().unwrap().contains(message),
                "{input}: {out}"
            );
            assert!(!out.contains("[DONE]"), "{out}");
        }
        // Invalid JSON is the transcoder's error (the driver turns it into the frame).
        let mut stream = CohereStream::new(RouteKind::Chat);
        let mut out = ChunkEmitter::new(stream_meta(RouteKind::Chat, false));
        assert!(matches!(
            stream.feed(b"{oops\n", &mut out),
            Err(StreamError::Invalid(_))
        ));
    }

    #[test]
    fn unknown_events_and_other_generations_are_skipped() {
        let input = concat!(
            r#"{"event_type":"search-results","search_results":[],"documents":[]}"#,
            "\n",
            r#"{"index":1,"text":"other","event_type":"text-generation"}"#,
            "\n",
            r#"{"index":0,"text":"mine","event_type":"text-generation"}"#,
            "\n",
            r#"{"event_type":"tool-calls-chunk","tool_call_delta":{"index":0,"name":"f"}}"#,
            "\n",
            "   \n",
            r#"{"is_finished":true,"event_type":"stream-end","finish_reason":"COMPLETE","response":{}}"#,
            "\n",
        );
        let out = transcode(RouteKind::Completions, true, input);
        let frames = frames(&out);
        assert_eq!(frames.len(), 4, "{out}");
        assert_eq!(frames[0]["choices"][0]["text"], json!("mine"));
        assert_eq!(frames[1]["choices"][0]["finish_reason"], json!("stop"));
        // No count reported: the usage chunk falls back to the emitter's estimate.
        assert_eq!(frames[2]["usage"]["prompt_tokens"], json!(0));
    }

    #[test]
    fn the_translator_streams_both_routes() {
        let options = ServiceOptions::default();
        let tuning = ModelOptions::default();
        let ctx = TranslateContext {
            provider: ProviderKind::Cohere,
            upstream_url: None,
            options: &options,
            model: MODEL,
            tuning: &tuning,
            default_max_tokens: 1024,
        };
        for (kind, input, expected) in STREAM_FIXTURES {
            let transcoder = Cohere.stream(&ctx, kind).expect("cohere streams");
            let mut t = Transcode::new(transcoder, stream_meta(kind, true), "cohere");
            let mut out = t.feed(input.as_bytes());
            out.extend(t.upstream_closed());
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    // ---- Kong conformance -----------------------------------------------------------

    fn kong_json(dir: &std::path::Path, rel: &str) -> Value {
        let path = dir.join(rel);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
    }

    #[test]
    #[ignore = "needs TOLLGATE_KONG_FIXTURES (Kong's ai-proxy fixtures; .ci/run sets it)"]
    fn kong_unit_fixtures_cohere() {
        let root = std::env::var("TOLLGATE_KONG_FIXTURES").expect(
            "TOLLGATE_KONG_FIXTURES is unset: this test needs Kong's fixtures (.ci/run sets it)",
        );
        let root = std::path::PathBuf::from(root);
        // Kong's 01-unit_spec.lua config for cohere: model "command".
        let chat_tuning = ModelOptions {
            max_tokens: Some(512),
            temperature: Some(0.5),
            top_p: Some(1.0),
            ..ModelOptions::default()
        };
        let completions_tuning = ModelOptions {
            max_tokens: Some(512),
            temperature: Some(0.5),
            top_p: Some(0.75),
            top_k: Some(5),
            ..ModelOptions::default()
        };

        // chat request
        let request = kong_json(&root, "unit/requests/llm-v1-chat.json");
        let mut expected = kong_json(&root, "unit/expected-requests/cohere/llm-v1-chat.json");
        let (up, mut ours) =
            translate(RouteKind::Chat, "command", &chat_tuning, None, request).unwrap();
        assert_eq!(up.url, "https://api.cohere.com/v1/chat");
        // Differences from Kong, 6: the system message goes to `preamble`, where Kong sends it as
        // the first `USER` history entry.
        let preamble = ours.as_object_mut().unwrap().remove("preamble").unwrap();
        let first = expected["chat_history"].as_array_mut().unwrap().remove(0);
        assert_eq!(first, json!({"role": "USER", "message": preamble}));
        assert_eq!(ours, expected);

        // completions request
        let request = kong_json(&root, "unit/requests/llm-v1-completions.json");
        let expected = kong_json(
            &root,
            "unit/expected-requests/cohere/llm-v1-completions.json",
        );
        let (up, ours) = translate(
            RouteKind::Completions,
            "command",
            &completions_tuning,
            None,
            request,
        )
        .unwrap();
        assert_eq!(up.url, "https://api.cohere.com/v1/generate");
        assert_eq!(ours, expected);

        // responses
        let options = ServiceOptions::default();
        for (kind, name, prefix) in [
            (RouteKind::Chat, "llm-v1-chat", "chatcmpl-"),
            (RouteKind::Completions, "llm-v1-completions", "cmpl-"),
        ] {
            let tuning = if kind == RouteKind::Chat {
                &chat_tuning
            } else {
                &completions_tuning
            };
            let ctx = TranslateContext {
                provider: ProviderKind::Cohere,
                upstream_url: None,
                options: &options,
                model: "command",
                tuning,
                default_max_tokens: 1024,
            };
            let real = std::fs::read(root.join(format!("unit/real-responses/cohere/{name}.json")))
                .unwrap();
            let mut expected = kong_json(
                &root,
                &format!("unit/expected-responses/cohere/{name}.json"),
            );
            let mut ours = Cohere.response(&ctx, kind, &real).unwrap();
            let ours_obj = ours.as_object_mut().unwrap();
            // Brief: `created` is always present (Kong's fixtures have none).
            assert!(ours_obj.remove("created").unwrap().is_i64());
            // Brief: ids are OpenAI-style, `chatcmpl-`/`cmpl-` + Cohere's id (Kong: bare id).
            let kong_id = expected.as_object_mut().unwrap().remove("id").unwrap();
            let our_id = ours_obj.remove("id").unwrap();
            assert_eq!(
                our_id,
                json!(format!("{prefix}{}", kong_id.as_str().unwrap()))
            );
            if kind == RouteKind::Completions {
                // Differences from Kong, 6: finish_reason mapped (MAX_TOKENS → length); Kong
                // hard-codes "stop".
                assert_eq!(ours["choices"][0]["finish_reason"], json!("length"));
                assert_eq!(expected["choices"][0]["finish_reason"], json!("stop"));
                ours["choices"][0]["finish_reason"] = json!("stop");
            }
            assert_eq!(ours, expected, "{name}");
        }

        // Kong's integration-test payloads: errors and the untranslatable 200.
        let ctx_tuning = ModelOptions::default();
        let ctx = TranslateContext {
            provider: ProviderKind::Cohere,
            upstream_url: None,
            options: &options,
            model: "command",
            tuning: &ctx_tuning,
            default_max_tokens: 1024,
        };
        let bad =
            std::fs::read(root.join("cohere/llm-v1-chat/responses/bad_upstream_response.json"))
                .unwrap();
        assert_eq!(
            Cohere.response(&ctx, RouteKind::Chat, &bad).unwrap_err().0,
            MISSING_ANSWER
        );
        let good = std::fs::read(root.join("cohere/llm-v1-chat/responses/good.json")).unwrap();
        let out = Cohere.response(&ctx, RouteKind::Chat, &good).unwrap();
        assert_eq!(
            out["choices"][0]["message"]["content"],
            json!("The sum of 1 + 1 is 2.")
        );
        assert_eq!(
            (out["model"].clone(), out["object"].clone()),
            (json!("command"), json!("chat.completion"))
        );
        let good =
            std::fs::read(root.join("cohere/llm-v1-completions/responses/good.json")).unwrap();
        let out = Cohere
            .response(&ctx, RouteKind::Completions, &good)
            .unwrap();
        assert_eq!(out["choices"][0]["text"], json!("1 + 1 is 2."));
        assert_eq!(out["object"], json!("text_completion"));
        let unauthorized =
            std::fs::read(root.join("cohere/llm-v1-chat/responses/unauthorized.json")).unwrap();
        assert_eq!(
            Cohere.error(401, &unauthorized).message,
            "invalid api token"
        );
        let html =
            std::fs::read(root.join("cohere/llm-v1-chat/responses/internal_server_error.html"))
                .unwrap();
        assert_eq!(Cohere.error(500, &html).kind, "upstream_error");
        for (rel, kind) in [
            ("cohere/llm-v1-chat/requests/good.json", RouteKind::Chat),
            (
                "cohere/llm-v1-chat/requests/good-stream.json",
                RouteKind::Chat,
            ),
            (
                "cohere/llm-v1-completions/requests/good.json",
                RouteKind::Completions,
            ),
        ] {
            let (_, sent) = translate(
                kind,
                "command",
                &ModelOptions::default(),
                None,
                kong_json(&root, rel),
            )
            .unwrap();
            assert_eq!(sent["model"], json!("command"), "{rel}");
        }
    }
}
