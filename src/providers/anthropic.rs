//! Anthropic wire format: the Messages API (`/v1/messages`) for `llm/v1/chat` and the legacy
//! Text Completions API (`/v1/complete`) for `llm/v1/completions`, as Kong does. Streams of
//! both are transcoded by `AnthropicStream` (named-event SSE → OpenAI chunks).
//!
//! Deliberate differences from Kong (docs/behaviour.md, "Differences from Kong", 4 and 5): `stop`,
//! `top_p`, `top_k` and `max_completion_tokens` are mapped instead of dropped, `max_tokens`
//! defaults to `ctx.default_max_tokens`, every system/developer message is kept (joined in order),
//! consecutive same-role turns are merged, empty text is not forwarded, `finish_reason` is mapped
//! to OpenAI values, responses carry an `id`, and `usage` is always an object.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::llm::{
    ChunkEmitter, ReportedUsage, SseDecoder, SseEvent, StreamError, StreamTranscoder,
};

use super::{
    RequestError, ResponseError, RouteKind, TranslateContext, Translator, UpstreamError,
    UpstreamRequest, apply_tuning, generic_error,
};

pub struct Anthropic;

const CHAT_URL: &str = "https://api.anthropic.com/v1/messages";
const COMPLETIONS_URL: &str = "https://api.anthropic.com/v1/complete";
/// The header is mandatory upstream; the admin API requires the option, this is a safety net.
const DEFAULT_VERSION: &str = "2023-06-01";
/// Separator between several system/developer messages hoisted into `system`.
const SYSTEM_SEPARATOR: &str = "\n\n";

/// OpenAI fields with no Anthropic counterpart that do not change the answer: dropped.
const DROPPED: &[&str] = &[
    "stream_options", // Anthropic always reports usage in its stream
    "seed",
    "store",
    "metadata", // OpenAI's stored-completion tags; Anthropic's `metadata` only takes user_id
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
];

impl Translator for Anthropic {
    fn request(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        mut body: Map<String, Value>,
    ) -> Result<UpstreamRequest, RequestError> {
        apply_tuning(&mut body, ctx.tuning);
        // A JSON null means "not set" for every OpenAI parameter; never forward nulls.
        body.retain(|_, v| !v.is_null());
        reject_unsupported(&mut body, kind)?;
        for key in DROPPED {
            body.remove(*key);
        }

        let max_tokens = max_tokens(ctx, &mut body)?;
        body.insert("model".into(), Value::from(ctx.model));
        if let Some(stop) = body.remove("stop")
            && let Some(seqs) = stop_sequences(stop)?
        {
            body.insert("stop_sequences".into(), seqs);
        }
        match body.get("stream") {
            None => {
                // Kong always sends it.
                body.insert("stream".into(), Value::Bool(false));
            }
            Some(Value::Bool(_)) => {}
            Some(_) => return Err(RequestError::param("stream", "`stream` must be a boolean")),
        }
        if let Some(user) = body.remove("user") {
            let Value::String(user) = user else {
                return Err(RequestError::param("user", "`user` must be a string"));
            };
            body.insert("metadata".into(), json!({ "user_id": user }));
        }

        let url = match kind {
            RouteKind::Chat => {
                chat_request(&mut body)?;
                body.insert("max_tokens".into(), Value::from(max_tokens));
                CHAT_URL
            }
            RouteKind::Completions => {
                completions_request(&mut body)?;
                body.insert("max_tokens_to_sample".into(), Value::from(max_tokens));
                COMPLETIONS_URL
            }
        };
        let url = ctx.upstream_url.unwrap_or(url).to_string();
        let version = ctx
            .options
            .anthropic_version
            .as_deref()
            .unwrap_or(DEFAULT_VERSION);
        let body = serde_json::to_vec(&Value::Object(body)).map_err(|e| RequestError {
            param: None,
            message: format!("cannot encode: {e}"),
        })?;
        Ok(UpstreamRequest {
            url,
            headers: vec![("anthropic-version".to_string(), version.to_string())],
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
            return Err(ResponseError("empty response body".into()));
        }
        let parsed: Value = serde_json::from_slice(body)
            .map_err(|_| ResponseError(format!("failed to decode {} response", kind.as_str())))?;
        let Value::Object(obj) = parsed else {
            return Err(ResponseError(format!(
                "{} response is not a JSON object",
                kind.as_str()
            )));
        };
        match kind {
            RouteKind::Chat => chat_response(ctx, &obj),
            RouteKind::Completions => completions_response(ctx, &obj),
        }
    }

    fn error(&self, status: u16, body: &[u8]) -> UpstreamError {
        // Anthropic: {"type":"error","error":{"type","message"},"request_id"}; the generic
        // reader takes message and type. A spend-cap 429 carries a code worth keeping.
        let mut err = generic_error(status, body);
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            err.code = v
                .pointer("/error/details/error_code")
                .filter(|c| c.is_string())
                .cloned();
        }
        err
    }

    fn stream(
        &self,
        _ctx: &TranslateContext<'_>,
        kind: RouteKind,
    ) -> Option<Box<dyn StreamTranscoder>> {
        Some(Box::new(AnthropicStream::new(kind)))
    }
}

// ---------------------------------------------------------------------------------------
// Requests

/// Parameters Anthropic cannot honour and that would change the answer → 400 naming them
/// (never silently dropped). Their OpenAI default values are accepted and removed.
fn reject_unsupported(body: &mut Map<String, Value>, kind: RouteKind) -> Result<(), RequestError> {
    fn check(
        body: &mut Map<String, Value>,
        key: &str,
        is_default: impl Fn(&Value) -> bool,
        why: &str,
    ) -> Result<(), RequestError> {
        match body.remove(key) {
            Some(v) if !is_default(&v) => Err(RequestError::param(key, format!("`{key}` {why}"))),
            _ => Ok(()),
        }
    }
    let zero = |v: &Value| v.as_f64() == Some(0.0);
    let unsupported = "is not supported by anthropic";

    check(
        body,
        "n",
        |v| v.as_f64() == Some(1.0),
        "must be 1: anthropic returns one choice",
    )?;
    check(body, "presence_penalty", zero, unsupported)?;
    check(body, "frequency_penalty", zero, unsupported)?;
    check(
        body,
        "logit_bias",
        |v| v.as_object().is_some_and(Map::is_empty),
        unsupported,
    )?;
    check(body, "top_logprobs", zero, unsupported)?;
    match kind {
        RouteKind::Chat => {
            check(body, "logprobs", |v| *v == Value::Bool(false), unsupported)?;
            check(
                body,
                "modalities",
                |v| *v == json!(["text"]),
                "supports only [\"text\"]",
            )?;
            for key in [
                "audio",
                "prediction",
                "web_search_options",
                "functions",
                "function_call",
                "reasoning_effort",
                "verbosity",
            ] {
                check(body, key, |_| false, unsupported)?;
            }
        }
        RouteKind::Completions => {
            check(body, "logprobs", |_| false, unsupported)?;
            check(body, "echo", |v| *v == Value::Bool(false), unsupported)?;
            check(body, "suffix", |v| v.as_str() == Some(""), unsupported)?;
            check(body, "best_of", |v| v.as_f64() == Some(1.0), unsupported)?;
        }
    }
    Ok(())
}

/// Route tuning wins; then the client's `max_completion_tokens`, then `max_tokens`, then the
/// configured default (Anthropic requires the field).
fn max_tokens(
    ctx: &TranslateContext<'_>,
    body: &mut Map<String, Value>,
) -> Result<u64, RequestError> {
    let completion = body.remove("max_completion_tokens");
    let plain = body.remove("max_tokens");
    if let Some(tuned) = ctx.tuning.max_tokens {
        return Ok(u64::from(tuned));
    }
    let (name, value) = match (completion, plain) {
        (Some(v), _) => ("max_completion_tokens", v),
        (None, Some(v)) => ("max_tokens", v),
        (None, None) => return Ok(u64::from(ctx.default_max_tokens)),
    };
    positive_integer(&value)
        .ok_or_else(|| RequestError::param(name, format!("`{name}` must be a positive integer")))
}

fn positive_integer(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return (n > 0).then_some(n);
    }
    // Some clients serialise integers as floats (512.0).
    let f = v.as_f64()?;
    (f >= 1.0 && f.fract() == 0.0 && f <= u32::MAX as f64).then_some(f as u64)
}

/// OpenAI `stop` (string or array of strings) → `stop_sequences`; empty entries are dropped.
fn stop_sequences(stop: Value) -> Result<Option<Value>, RequestError> {
    let bad = || RequestError::param("stop", "`stop` must be a string or an array of strings");
    let seqs: Vec<Value> = match stop {
        Value::String(s) => vec![Value::String(s)],
        Value::Array(items) => {
            if items.iter().any(|i| !i.is_string()) {
                return Err(bad());
            }
            items
        }
        _ => return Err(bad()),
    };
    let seqs: Vec<Value> = seqs
        .into_iter()
        .filter(|s| s.as_str() != Some(""))
        .collect();
    Ok((!seqs.is_empty()).then_some(Value::Array(seqs)))
}

fn completions_request(body: &mut Map<String, Value>) -> Result<(), RequestError> {
    let Some(Value::String(prompt)) = body.remove("prompt") else {
        return Err(RequestError::param("prompt", "`prompt` must be a string"));
    };
    // Kong's wrapping; a prompt the client already formatted for Anthropic is kept as is.
    let prompt = if prompt.starts_with("\n\nHuman:") {
        prompt
    } else {
        format!("Human: {prompt}\n\nAssistant:")
    };
    body.insert("prompt".into(), Value::String(prompt));
    Ok(())
}

fn chat_request(body: &mut Map<String, Value>) -> Result<(), RequestError> {
    let (mut system, messages) = convert_messages(body.remove("messages"))?;
    // A top-level `system` string (an Anthropic-style extension) comes before the messages'.
    match body.remove("system") {
        None => {}
        Some(Value::String(s)) if s.trim().is_empty() => {}
        Some(Value::String(s)) => system.insert(0, s),
        Some(other) if system.is_empty() => {
            body.insert("system".into(), other);
        }
        Some(_) => {
            return Err(RequestError::param(
                "system",
                "a non-string `system` cannot be combined with system messages",
            ));
        }
    }
    if !system.is_empty() {
        body.insert(
            "system".into(),
            Value::String(system.join(SYSTEM_SEPARATOR)),
        );
    }
    body.insert("messages".into(), Value::Array(messages));

    let has_tools = match body.remove("tools") {
        None => false,
        Some(tools) => {
            let tools = convert_tools(tools)?;
            let any = !tools.is_empty();
            if any {
                body.insert("tools".into(), Value::Array(tools));
            }
            any
        }
    };
    let parallel = match body.remove("parallel_tool_calls") {
        None | Some(Value::Bool(true)) => true,
        Some(Value::Bool(false)) => false,
        Some(_) => {
            return Err(RequestError::param(
                "parallel_tool_calls",
                "`parallel_tool_calls` must be a boolean",
            ));
        }
    };
    let choice = match body.remove("tool_choice") {
        Some(choice) => Some(convert_tool_choice(choice)?),
        None if has_tools && !parallel => Some(json!({"type": "auto"})),
        None => None,
    };
    if let Some(mut choice) = choice {
        if !parallel && choice.get("type").and_then(Value::as_str) != Some("none") {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
        body.insert("tool_choice".into(), choice);
    }

    if let Some(format) = body.remove("response_format")
        && let Some(format) = convert_response_format(format)?
    {
        let config = body.entry("output_config").or_insert_with(|| json!({}));
        let Value::Object(config) = config else {
            return Err(RequestError::param(
                "output_config",
                "`output_config` must be an object",
            ));
        };
        config.insert("format".into(), format);
    }
    Ok(())
}

/// One Anthropic turn under construction.
struct Turn {
    role: &'static str,
    /// A string or an array of content blocks (Anthropic accepts both).
    content: Value,
}

fn into_blocks(content: Value) -> Vec<Value> {
    match content {
        Value::String(text) => vec![json!({"type": "text", "text": text})],
        Value::Array(blocks) => blocks,
        _ => Vec::new(),
    }
}

/// Appends a turn, merging it into the previous one when the role repeats (Anthropic wants
/// alternating roles; tool results become user turns and merge with their neighbours).
fn push_turn(turns: &mut Vec<Turn>, role: &'static str, content: Value) {
    match turns.last_mut() {
        Some(last) if last.role == role => {
            let mut blocks = into_blocks(last.content.take());
            blocks.extend(into_blocks(content));
            last.content = Value::Array(blocks);
        }
        _ => turns.push(Turn { role, content }),
    }
}

/// OpenAI messages → (system texts in order, alternating Anthropic messages).
fn convert_messages(messages: Option<Value>) -> Result<(Vec<String>, Vec<Value>), RequestError> {
    let Some(Value::Array(messages)) = messages else {
        return Err(RequestError::param(
            "messages",
            "`messages` must be a non-empty array",
        ));
    };
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, message) in messages.into_iter().enumerate() {
        let Value::Object(mut message) = message else {
            return Err(RequestError::param(
                &format!("messages[{i}]"),
                "each message must be an object",
            ));
        };
        let role = match message.get("role") {
            Some(Value::String(role)) => role.clone(),
            _ => {
                return Err(RequestError::param(
                    &format!("messages[{i}].role"),
                    "each message needs a string `role`",
                ));
            }
        };
        match role.as_str() {
            "system" | "developer" => {
                if let Some(text) = system_text(i, message.remove("content"))? {
                    system.push(text);
                }
            }
            "user" => {
                if let Some(content) = convert_content(i, message.remove("content"))? {
                    push_turn(&mut turns, "user", content);
                }
            }
            "assistant" => {
                let content = convert_content(i, message.remove("content"))?;
                let calls = convert_tool_calls(i, message.remove("tool_calls"))?;
                let content = match (content, calls.is_empty()) {
                    (content, true) => content,
                    (content, false) => {
                        let mut blocks = content.map(into_blocks).unwrap_or_default();
                        blocks.extend(calls);
                        Some(Value::Array(blocks))
                    }
                };
                if let Some(content) = content {
                    push_turn(&mut turns, "assistant", content);
                }
            }
            "tool" => {
                let result = convert_tool_result(i, &mut message)?;
                push_turn(&mut turns, "user", Value::Array(vec![result]));
            }
            "function" => {
                return Err(RequestError::param(
                    &format!("messages[{i}].role"),
                    "the deprecated `function` role is not supported; use `tool` messages",
                ));
            }
            other => {
                return Err(RequestError::param(
                    &format!("messages[{i}].role"),
                    format!("unknown message role `{other}`"),
                ));
            }
        }
    }
    if turns.is_empty() {
        return Err(RequestError::param(
            "messages",
            "anthropic needs at least one user or assistant message with content",
        ));
    }
    let messages = turns
        .into_iter()
        .map(|t| json!({"role": t.role, "content": t.content}))
        .collect();
    Ok((system, messages))
}

/// A system/developer message's text (string or text parts); `None` when empty.
fn system_text(i: usize, content: Option<Value>) -> Result<Option<String>, RequestError> {
    let text = match content {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => texts.push(t.as_str()),
                    _ => {
                        return Err(RequestError::param(
                            &format!("messages[{i}].content[{j}]"),
                            "system messages may only contain text parts",
                        ));
                    }
                }
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(RequestError::param(
                &format!("messages[{i}].content"),
                "`content` must be a string or an array of content parts",
            ));
        }
    };
    Ok((!text.trim().is_empty()).then_some(text))
}

/// User/assistant content → Anthropic content (a string stays a string); `None` when there is
/// nothing to send (Anthropic rejects empty text blocks).
fn convert_content(i: usize, content: Option<Value>) -> Result<Option<Value>, RequestError> {
    match content {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok((!s.trim().is_empty()).then_some(Value::String(s))),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.into_iter().enumerate() {
                if let Some(block) = convert_part(&format!("messages[{i}].content[{j}]"), part)? {
                    blocks.push(block);
                }
            }
            Ok((!blocks.is_empty()).then_some(Value::Array(blocks)))
        }
        Some(_) => Err(RequestError::param(
            &format!("messages[{i}].content"),
            "`content` must be a string or an array of content parts",
        )),
    }
}

/// One OpenAI content part → an Anthropic block; `None` for empty text.
fn convert_part(at: &str, part: Value) -> Result<Option<Value>, RequestError> {
    let Value::Object(mut part) = part else {
        return Err(RequestError::param(
            at,
            "each content part must be an object",
        ));
    };
    let kind = part
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match kind.as_str() {
        "text" | "refusal" => {
            let Some(Value::String(text)) = part.remove(kind.as_str()) else {
                return Err(RequestError::param(
                    at,
                    format!("a `{kind}` part needs a string `{kind}`"),
                ));
            };
            if text.trim().is_empty() {
                return Ok(None);
            }
            let mut block = json!({"type": "text", "text": text});
            // Prompt caching marker, an Anthropic extension some clients set on parts.
            if let Some(cache) = part.remove("cache_control") {
                block["cache_control"] = cache;
            }
            Ok(Some(block))
        }
        "image_url" => {
            let url = match part.get("image_url") {
                Some(Value::String(url)) => url.as_str(),
                Some(Value::Object(o)) => o.get("url").and_then(Value::as_str).unwrap_or_default(),
                _ => "",
            };
            let source = if let Some((media_type, data)) = parse_data_uri(url) {
                json!({"type": "base64", "media_type": media_type, "data": data})
            } else if url.starts_with("https://") || url.starts_with("http://") {
                json!({"type": "url", "url": url})
            } else {
                return Err(RequestError::param(
                    at,
                    "`image_url.url` must be an http(s) URL or a base64 data URI",
                ));
            };
            Ok(Some(json!({"type": "image", "source": source})))
        }
        "file" => {
            let data = part
                .get("file")
                .and_then(|f| f.get("file_data"))
                .and_then(Value::as_str);
            let data = data.unwrap_or_default();
            let Some((media_type, data)) = parse_data_uri(data) else {
                return Err(RequestError::param(
                    at,
                    "anthropic needs files inline as a base64 data URI in `file.file_data`",
                ));
            };
            let source = json!({"type": "base64", "media_type": media_type, "data": data});
            Ok(Some(json!({"type": "document", "source": source})))
        }
        "" => Err(RequestError::param(
            at,
            "each content part needs a string `type`",
        )),
        other => Err(RequestError::param(
            at,
            format!("content parts of type `{other}` are not supported by anthropic"),
        )),
    }
}

/// `data:<media type>;base64,<data>` → (media type, data).
fn parse_data_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    (!media_type.is_empty() && !data.is_empty()).then_some((media_type, data))
}

/// Assistant `tool_calls` → `tool_use` blocks (`arguments`, a JSON string, becomes `input`).
fn convert_tool_calls(i: usize, calls: Option<Value>) -> Result<Vec<Value>, RequestError> {
    let calls = match calls {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            return Err(RequestError::param(
                &format!("messages[{i}].tool_calls"),
                "`tool_calls` must be an array",
            ));
        }
    };
    let mut blocks = Vec::with_capacity(calls.len());
    for (j, call) in calls.iter().enumerate() {
        let at = format!("messages[{i}].tool_calls[{j}]");
        let id = call.get("id").and_then(Value::as_str);
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let (Some(id), Some(name)) = (id, name) else {
            return Err(RequestError::param(
                &at,
                "a tool call needs an `id` and a `function.name`",
            ));
        };
        let input = match call.pointer("/function/arguments") {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(s)) if s.trim().is_empty() => json!({}),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|_| {
                RequestError::param(
                    &format!("{at}.function.arguments"),
                    "`arguments` is not valid JSON",
                )
            })?,
            // Some clients send the object itself.
            Some(other) => other.clone(),
        };
        if !input.is_object() {
            return Err(RequestError::param(
                &format!("{at}.function.arguments"),
                "`arguments` must encode a JSON object",
            ));
        }
        blocks.push(json!({"type": "tool_use", "id": tool_id(id), "name": name, "input": input}));
    }
    Ok(blocks)
}

/// Anthropic accepts only tool ids matching `^[a-zA-Z0-9_-]+$`; ids minted elsewhere (by
/// another provider, or a client) may not match. Those are rewritten alike in `tool_use` and
/// `tool_result`, injectively so that distinct calls stay distinct (docs/wire-formats.md,
/// "Anthropic").
fn tool_id(id: &str) -> Cow<'_, str> {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Cow::Borrowed(id);
    }
    let mut out = String::with_capacity(4 + 2 * id.len());
    out.push_str("tgx_");
    for b in id.bytes() {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    Cow::Owned(out)
}

/// A `tool` message → a `tool_result` block (its user turn is merged with its neighbours).
fn convert_tool_result(i: usize, message: &mut Map<String, Value>) -> Result<Value, RequestError> {
    let Some(Value::String(id)) = message.remove("tool_call_id") else {
        return Err(RequestError::param(
            &format!("messages[{i}].tool_call_id"),
            "a tool message needs a string `tool_call_id`",
        ));
    };
    let mut block = json!({"type": "tool_result", "tool_use_id": tool_id(&id)});
    if let Some(content) = convert_content(i, message.remove("content"))? {
        block["content"] = content;
    }
    Ok(block)
}

/// OpenAI `tools` → Anthropic tools (`parameters` becomes `input_schema`).
fn convert_tools(tools: Value) -> Result<Vec<Value>, RequestError> {
    let Value::Array(tools) = tools else {
        return Err(RequestError::param("tools", "`tools` must be an array"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (j, tool) in tools.iter().enumerate() {
        let at = format!("tools[{j}]");
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(RequestError::param(
                &at,
                "only `function` tools are supported by anthropic",
            ));
        }
        let Some(Value::String(name)) = tool.pointer("/function/name") else {
            return Err(RequestError::param(
                &at,
                "a tool needs a string `function.name`",
            ));
        };
        // Anthropic requires a schema of type object; a parameterless function gets an empty one.
        let schema = match tool.pointer("/function/parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(Value::Object(schema)) => {
                // OpenAI tolerates a schema without `type`; Anthropic requires "object".
                let mut schema = schema.clone();
                schema
                    .entry("type")
                    .or_insert_with(|| Value::from("object"));
                Value::Object(schema)
            }
            Some(_) => {
                return Err(RequestError::param(
                    &format!("{at}.function.parameters"),
                    "`parameters` must be a JSON Schema object",
                ));
            }
        };
        let mut out_tool = json!({"name": name, "input_schema": schema});
        if let Some(Value::String(d)) = tool.pointer("/function/description") {
            out_tool["description"] = Value::String(d.clone());
        }
        if tool.pointer("/function/strict") == Some(&Value::Bool(true)) {
            out_tool["strict"] = Value::Bool(true);
        }
        out.push(out_tool);
    }
    Ok(out)
}

/// OpenAI `tool_choice` → Anthropic's (Kong's mapping); anything else is refused, not dropped.
fn convert_tool_choice(choice: Value) -> Result<Value, RequestError> {
    match &choice {
        Value::String(s) => match s.as_str() {
            "auto" => return Ok(json!({"type": "auto"})),
            "required" => return Ok(json!({"type": "any"})),
            "none" => return Ok(json!({"type": "none"})),
            _ => {}
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            if let Some(Value::String(name)) = choice.pointer("/function/name") {
                return Ok(json!({"type": "tool", "name": name}));
            }
        }
        _ => {}
    }
    Err(RequestError::param(
        "tool_choice",
        "`tool_choice` must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\"}}",
    ))
}

/// OpenAI `response_format` → `output_config.format` (structured outputs).
fn convert_response_format(format: Value) -> Result<Option<Value>, RequestError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_schema") => match format.pointer("/json_schema/schema") {
            Some(schema @ Value::Object(_)) => {
                Ok(Some(json!({"type": "json_schema", "schema": schema})))
            }
            _ => Err(RequestError::param(
                "response_format",
                "`response_format.json_schema.schema` must be an object",
            )),
        },
        Some("json_object") => Err(RequestError::param(
            "response_format",
            "anthropic has no JSON mode; use `response_format` of type `json_schema`",
        )),
        _ => Err(RequestError::param(
            "response_format",
            "`response_format.type` must be `text` or `json_schema`",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Responses

fn chat_response(
    ctx: &TranslateContext<'_>,
    obj: &Map<String, Value>,
) -> Result<Value, ResponseError> {
    let Some(Value::Array(blocks)) = obj.get("content") else {
        if let Some(message) = obj
            .get("error")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
        {
            return Err(ResponseError(format!(
                "upstream returned an error: {message}"
            )));
        }
        return Err(ResponseError(
            "'content' not in anthropic://llm/v1/chat response".into(),
        ));
    };
    let mut text = String::new();
    let mut has_text = false;
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let Some(t) = block.get("text").and_then(Value::as_str) else {
                    return Err(ResponseError("text content block without text".into()));
                };
                // Blocks are consecutive pieces of one answer (e.g. split by citations).
                text.push_str(t);
                has_text = true;
            }
            Some("tool_use") => {
                let id = block.get("id").and_then(Value::as_str);
                let name = block.get("name").and_then(Value::as_str);
                let (Some(id), Some(name)) = (id, name) else {
                    return Err(ResponseError(
                        "tool_use content block without id or name".into(),
                    ));
                };
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                let arguments = serde_json::to_string(&input)
                    .map_err(|_| ResponseError("cannot encode tool_use input".into()))?;
                tool_calls.push(json!({
                    "id": id, "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }));
            }
            // thinking, redacted_thinking, server tool blocks: no OpenAI counterpart.
            _ => {}
        }
    }
    let has_tool_calls = !tool_calls.is_empty();
    let content = if has_text || !has_tool_calls {
        Value::String(text)
    } else {
        Value::Null
    };
    let mut message = json!({"role": "assistant", "content": content});
    if has_tool_calls {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    Ok(json!({
        "id": response_id("chatcmpl-", obj),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": response_model(ctx, obj),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(obj.get("stop_reason"), has_tool_calls),
        }],
        "usage": usage(obj.get("usage")),
    }))
}

fn completions_response(
    ctx: &TranslateContext<'_>,
    obj: &Map<String, Value>,
) -> Result<Value, ResponseError> {
    let text = match (obj.get("completion"), obj.get("content")) {
        (Some(Value::String(t)), _) => t.clone(),
        // A Messages-API answer (an `upstream_url` pointing at /v1/messages): its text blocks.
        (None, Some(Value::Array(blocks))) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => {
            return Err(ResponseError(
                "'completion' not in anthropic://llm/v1/completions response".into(),
            ));
        }
    };
    Ok(json!({
        "id": response_id("cmpl-", obj),
        "object": "text_completion",
        "created": chrono::Utc::now().timestamp(),
        "model": response_model(ctx, obj),
        "choices": [{
            "index": 0,
            "text": text,
            "finish_reason": finish_reason(obj.get("stop_reason"), false),
        }],
        "usage": usage(obj.get("usage")),
    }))
}

/// `chatcmpl-`/`cmpl-` + Anthropic's id (`msg_…`, `compl_…`), or a random one.
fn response_id(prefix: &str, obj: &Map<String, Value>) -> String {
    match obj.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("{prefix}{id}"),
        _ => format!("{prefix}{}", uuid::Uuid::new_v4().simple()),
    }
}

fn response_model(ctx: &TranslateContext<'_>, obj: &Map<String, Value>) -> String {
    match obj.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => ctx.model.to_string(),
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason` (docs/wire-formats.md, "Finish reasons and
/// usage"). Never passes a native value through; an absent or unknown one reads as a normal stop.
fn finish_reason(stop_reason: Option<&Value>, has_tool_calls: bool) -> &'static str {
    match stop_reason.and_then(Value::as_str) {
        Some("end_turn" | "stop_sequence" | "pause_turn") => "stop",
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Anthropic usage → OpenAI usage. `input_tokens` excludes cache reads and writes, while
/// OpenAI's `prompt_tokens` includes cached tokens, so both cache counts are added in
/// (docs/wire-formats.md, "Anthropic") and `cached_tokens` is the cache-read subset. Missing or
/// malformed counts read as 0 (usage is always an object).
fn usage(usage: Option<&Value>) -> Value {
    let count = |key: &str| usage.and_then(|u| u.get(key)).and_then(Value::as_u64);
    let input = count("input_tokens").unwrap_or(0);
    let output = count("output_tokens").unwrap_or(0);
    let cache_write = count("cache_creation_input_tokens").unwrap_or(0);
    let cache_read = count("cache_read_input_tokens");
    let prompt = input
        .saturating_add(cache_write)
        .saturating_add(cache_read.unwrap_or(0));
    let mut out = json!({
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt.saturating_add(output),
    });
    if let Some(cached) = cache_read {
        out["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    out
}

// ---------------------------------------------------------------------------------------
// Streaming

/// Anthropic's named-event SSE (Messages API, docs/wire-formats.md, "Anthropic") and the legacy
/// `/v1/complete` stream's `completion` events (docs/wire-formats.md, "Anthropic"), transcoded into
/// OpenAI chunks. Both families are understood on both routes, as the non-streaming completions
/// path accepts a Messages-API answer too (an `upstream_url` pointing at `/v1/messages`).
pub struct AnthropicStream {
    sse: SseDecoder,
    state: StreamState,
}

struct StreamState {
    kind: RouteKind,
    /// The `tool_use` blocks seen so far, in order: a tool call's OpenAI `index` is its
    /// position here, not Anthropic's content-block index (text blocks share that count).
    tools: Vec<ToolBlock>,
    /// Prompt-side counts so far: `message_delta` may repeat them, or not.
    input: Option<u64>,
    cache_write: Option<u64>,
    cache_read: Option<u64>,
}

struct ToolBlock {
    /// Anthropic's content-block index.
    block: u64,
    has_arguments: bool,
}

impl AnthropicStream {
    pub fn new(kind: RouteKind) -> AnthropicStream {
        AnthropicStream {
            sse: SseDecoder::default(),
            state: StreamState {
                kind,
                tools: Vec::new(),
                input: None,
                cache_write: None,
                cache_read: None,
            },
        }
    }
}

impl StreamTranscoder for AnthropicStream {
    fn feed(&mut self, bytes: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError> {
        self.sse.feed(bytes, |event| self.state.event(event, out))
    }

    fn finish(&mut self, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        self.sse.finish(|event| self.state.event(event, out))
    }
}

/// Events whose data is read; any other name (`ping`, future ones) is skipped unparsed.
const STREAM_EVENTS: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
    "completion",
];

fn invalid(message: impl Into<String>) -> StreamError {
    StreamError::Invalid(message.into())
}

impl StreamState {
    fn event(&mut self, event: SseEvent, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let data = event.data.trim();
        // Pre-2023-06-01 API versions ended the legacy stream with a bare `[DONE]`.
        if data == "[DONE]" {
            out.done();
            return Ok(());
        }
        let named = event.event.as_deref();
        if let Some(name) = named
            && !STREAM_EVENTS.contains(&name)
        {
            return Ok(());
        }
        if data.is_empty() {
            return match named {
                Some(name) => Err(invalid(format!("`{name}` event without data"))),
                None => Ok(()),
            };
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| invalid(format!("stream event is not valid JSON: {e}")))?;
        // The SSE `event:` name decides, as in Anthropic's SDK; a relay that drops it
        // still leaves the same name in the data's `type`.
        let name = named
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or_default();
        match name {
            "message_start" => {
                let message = v.get("message");
                if let Some(model) = message.and_then(|m| m.get("model")).and_then(Value::as_str) {
                    out.set_response_model(model);
                }
                self.usage(message.and_then(|m| m.get("usage")), false, out);
                out.role();
            }
            "content_block_start" => self.block_start(&v, out)?,
            "content_block_delta" => self.block_delta(&v, out)?,
            "content_block_stop" => {
                // A tool called without arguments streams no JSON at all; OpenAI clients
                // parse `arguments`, and the non-streaming answer says `{}` too.
                if let Some(k) = self.tool(v.get("index"))
                    && let Some(tool) = self.tools.get_mut(k as usize)
                    && !tool.has_arguments
                {
                    tool.has_arguments = true;
                    out.tool_call_arguments(k, "{}");
                }
            }
            "message_delta" => {
                self.usage(v.get("usage"), true, out);
                out.finish(finish_reason(
                    v.pointer("/delta/stop_reason"),
                    !self.tools.is_empty(),
                ));
            }
            "message_stop" => out.done(),
            "error" => out.error(&stream_error(&v)),
            "completion" => {
                if let Some(model) = v.get("model").and_then(Value::as_str) {
                    out.set_response_model(model);
                }
                let Some(text) = v.get("completion").and_then(Value::as_str) else {
                    return Err(invalid("completion event without `completion` text"));
                };
                out.role();
                out.content(text);
                if let Some(reason) = v.get("stop_reason").filter(|r| !r.is_null()) {
                    out.finish(finish_reason(Some(reason), false));
                }
            }
            // `ping`, or an unnamed event of a type we do not know.
            _ => {}
        }
        Ok(())
    }

    fn block_start(&mut self, v: &Value, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let block = v.get("content_block");
        match block.and_then(|b| b.get("type")).and_then(Value::as_str) {
            Some("text") => {
                // Anthropic starts text blocks empty; a relay may not.
                if let Some(text) = block.and_then(|b| b.get("text")).and_then(Value::as_str) {
                    out.content(text);
                }
            }
            // Completions have no tool calls (the non-streaming path keeps only text).
            Some("tool_use") if self.kind == RouteKind::Chat => {
                let id = block.and_then(|b| b.get("id")).and_then(Value::as_str);
                let name = block.and_then(|b| b.get("name")).and_then(Value::as_str);
                let (Some(id), Some(name)) = (id, name) else {
                    return Err(invalid("tool_use content block without id or name"));
                };
                let Some(index) = v.get("index").and_then(Value::as_u64) else {
                    return Err(invalid("content_block_start without an index"));
                };
                let k = u32::try_from(self.tools.len())
                    .map_err(|_| invalid("too many tool calls in one response"))?;
                self.tools.push(ToolBlock {
                    block: index,
                    has_arguments: false,
                });
                out.tool_call_start(k, id, name, "");
            }
            // thinking, redacted_thinking, server tools and their results: no OpenAI
            // counterpart in a chunk.
            _ => {}
        }
        Ok(())
    }

    fn block_delta(&mut self, v: &Value, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let delta = v.get("delta");
        let field = |key: &str| delta.and_then(|d| d.get(key)).and_then(Value::as_str);
        match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
            Some("text_delta") => {
                let Some(text) = field("text") else {
                    return Err(invalid("text_delta without text"));
                };
                out.content(text);
            }
            Some("input_json_delta") => {
                let Some(fragment) = field("partial_json") else {
                    return Err(invalid("input_json_delta without partial_json"));
                };
                // Server tools (`server_tool_use`) stream their input too: not in the map.
                if let Some(k) = self.tool(v.get("index"))
                    && let Some(tool) = self.tools.get_mut(k as usize)
                    && !fragment.is_empty()
                {
                    tool.has_arguments = true;
                    out.tool_call_arguments(k, fragment);
                }
            }
            // thinking_delta, signature_delta, citations_delta, future types.
            _ => {}
        }
        Ok(())
    }

    /// The OpenAI tool-call index of the `tool_use` block at Anthropic index `block`.
    fn tool(&self, block: Option<&Value>) -> Option<u32> {
        let block = block.and_then(Value::as_u64)?;
        let k = self.tools.iter().rposition(|t| t.block == block)?;
        u32::try_from(k).ok()
    }

    /// Records a `usage` object: the prompt side includes both cache counts (as in the
    /// non-streaming `usage`), `output_tokens` is cumulative.
    fn usage(&mut self, usage: Option<&Value>, closing: bool, out: &mut ChunkEmitter) {
        let count = |key: &str| usage.and_then(|u| u.get(key)).and_then(Value::as_u64);
        self.input = count("input_tokens").or(self.input);
        self.cache_write = count("cache_creation_input_tokens").or(self.cache_write);
        self.cache_read = count("cache_read_input_tokens").or(self.cache_read);
        let prompt = match (self.input, self.cache_write, self.cache_read) {
            (None, None, None) => None,
            (input, write, read) => Some(
                input
                    .unwrap_or(0)
                    .saturating_add(write.unwrap_or(0))
                    .saturating_add(read.unwrap_or(0)),
            ),
        };
        let completion = count("output_tokens");
        out.usage(
            ReportedUsage {
                prompt,
                completion,
                cached: self.cache_read,
            },
            // Without a closing count, the text estimate still applies.
            closing && completion.is_some(),
        );
    }
}

/// An in-band `error` event: `{"type":"error","error":{"type","message"}}`.
fn stream_error(v: &Value) -> UpstreamError {
    let error = v.get("error");
    let text = |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str);
    UpstreamError {
        message: text("message")
            .unwrap_or("anthropic reported an error mid-stream")
            .to_string(),
        kind: text("type").unwrap_or("upstream_error").to_string(),
        code: error
            .and_then(|e| e.pointer("/details/error_code"))
            .filter(|c| c.is_string())
            .cloned(),
        param: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::sse_payloads as frames;
    use crate::providers::ProviderKind;
    use crate::vocab::ModelOptions;
    use crate::vocab::ServiceOptions;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/providers/anthropic/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn json_fixture(name: &str) -> Value {
        serde_json::from_str(&fixture(name)).unwrap()
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
            provider: ProviderKind::Anthropic,
            upstream_url,
            options,
            model: "claude-sonnet-4-5",
            tuning,
            default_max_tokens: 4096,
        }
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
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

    fn respond(kind: RouteKind, body: &str) -> Result<Value, ResponseError> {
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
    fn response_format_maps_to_output_config() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let body = chat(json!({"messages": [user("hi")], "response_format":
            {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}}));
        assert_eq!(
            body["output_config"],
            json!({"format": {"type": "json_schema", "schema": schema}})
        );
        let body = chat(json!({"messages": [user("hi")], "response_format": {"type": "text"}}));
        assert!(body.get("output_config").is_none());
        let err =
            chat_err(json!({"messages": [user("hi")], "response_format": {"type": "json_object"}}));
        assert_eq!(err.param.as_deref(), Some("response_format"));
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
            let err =
                chat_err(json!({"messages": [user("a"), {"role": "user", "content": [part]}]}));
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
            let body =
                chat(json!({"messages": [user("hi")], "tools": tools, "tool_choice": choice}));
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
        let body =
            chat(json!({"messages": [user("hi")], "tools": tools, "parallel_tool_calls": true}));
        assert!(body.get("tool_choice").is_none());
        assert!(body.get("parallel_tool_calls").is_none());
        for bad in [json!("sometimes"), json!({"type": "function"}), json!(3)] {
            let err =
                chat_err(json!({"messages": [user("hi")], "tools": tools, "tool_choice": bad}));
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
        let err =
            chat_err(json!({"messages": [user("hi"), {"role": "assistant", "tool_calls": {}}]}));
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
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        );
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
                ResponseError(reason.into()),
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
        let dir = std::env::var("TOLLGATE_KONG_FIXTURES").expect(
            "TOLLGATE_KONG_FIXTURES is unset: this test needs Kong's fixtures (.ci/run sets it)",
        );
        let read = |rel: &str| -> Value {
            let path = format!("{dir}/unit/{rel}");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
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
            let real =
                serde_json::to_vec(&read(&format!("real-responses/anthropic/{file}"))).unwrap();
            let mut ours = object(Anthropic.response(&c, kind, &real).unwrap());
            let mut kong = object(read(&format!("expected-responses/anthropic/{file}")));
            // Differences from Kong, 4: our response has an `id`; Kong's has none.
            assert!(ours.remove("id").is_some_and(|id| id.is_string()));
            // Differences from Kong, 4: usage is always an object (Kong omits it for completions).
            assert!(
                ours.remove("usage")
                    .is_some_and(|u| u["total_tokens"].is_u64())
            );
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
}
