//! OpenAI request → Anthropic Messages / Text Completions request.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::JSON_TOOL;
use crate::providers::{RequestError, RouteKind, TranslateContext, UpstreamRequest, apply_tuning};

const CHAT_URL: &str = "https://api.anthropic.com/v1/messages";
const COMPLETIONS_URL: &str = "https://api.anthropic.com/v1/complete";
/// The header is mandatory upstream; the admin API requires the option, this is a safety net.
pub(super) const DEFAULT_VERSION: &str = "2023-06-01";
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

pub(super) fn request(
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
pub(super) fn max_tokens(
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
pub(super) fn stop_sequences(stop: Value) -> Result<Option<Value>, RequestError> {
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
    // One prompt per request: a list of one is that string, several are refused.
    let prompt = crate::providers::shared::single_prompt(body)?;
    body.remove("prompt");
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

    let format = body.remove("response_format");
    let tools_given = body.contains_key("tools") || body.contains_key("tool_choice");
    match format
        .as_ref()
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        Some("json_object") => return json_mode(body, json!({"type": "object"})),
        // A schema of an object, without tools of the client's: the same forced tool, with
        // the schema as its input schema, so it works on every model with tools (structured
        // outputs, below, only on the newest).
        Some("json_schema") if !tools_given => {
            if let Some(schema) = format
                .as_ref()
                .and_then(|f| f.pointer("/json_schema/schema"))
                .filter(|s| s.get("type").and_then(Value::as_str) == Some("object"))
            {
                return json_mode(body, schema.clone());
            }
        }
        _ => {}
    }
    if let Some(format) = format
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
pub(super) fn tool_id(id: &str) -> Cow<'_, str> {
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
        if name == JSON_TOOL {
            return Err(RequestError::param(
                &format!("{at}.function.name"),
                format!("`{JSON_TOOL}` is reserved for JSON mode on anthropic"),
            ));
        }
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

/// JSON mode (`response_format: {"type":"json_object"}`, or `json_schema` with an object
/// schema) the way Anthropic's own documentation does it (docs/wire-formats.md,
/// "Anthropic"): one tool whose input is the answer, its input schema `schema`, forced by
/// `tool_choice`. The response side turns that call back into the message's text.
fn json_mode(body: &mut Map<String, Value>, schema: Value) -> Result<(), RequestError> {
    if body.contains_key("tools") || body.contains_key("tool_choice") {
        return Err(RequestError::param(
            "response_format",
            "`json_object` on anthropic is a forced tool call, so it cannot be combined with \
             `tools` or `tool_choice`; use `response_format` of type `json_schema`",
        ));
    }
    body.insert(
        "tools".into(),
        json!([{
            "name": JSON_TOOL,
            "description": "Give your answer as a JSON object: the input of this tool is the answer.",
            "input_schema": schema,
        }]),
    );
    body.insert(
        "tool_choice".into(),
        json!({"type": "tool", "name": JSON_TOOL}),
    );
    Ok(())
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
            "`response_format.type` must be `text`, `json_object` or `json_schema`",
        )),
    }
}
