//! OpenAI request → Cohere v1 `/chat` or `/generate` request.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::providers::{RequestError, RouteKind, TranslateContext, UpstreamRequest, apply_tuning};

const DEFAULT_CHAT_URL: &str = "https://api.cohere.com/v1/chat";
const DEFAULT_GENERATE_URL: &str = "https://api.cohere.com/v1/generate";

/// Kong's reason for a 200 that is neither a chat nor a generate answer.
pub(super) const MISSING_ANSWER: &str = "'text' or 'generations' missing from cohere response body";

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

pub(super) fn request(
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

pub(super) fn bad(param: &str, message: impl Into<String>) -> RequestError {
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
pub(super) fn parameter_definitions(
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
pub(super) fn response_format(format: &Value) -> Result<Option<Value>, RequestError> {
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
    // One prompt per request: a list of one is that string, several are refused.
    let prompt = crate::providers::shared::single_prompt(body)?;
    body.insert("prompt".into(), Value::String(prompt));
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
