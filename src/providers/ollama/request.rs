//! OpenAI request → Ollama `/api/chat` or `/api/generate` request.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::providers::shared::{
    check_prompt_shape, content_parts, effective_max_tokens, reject_openai_only, reject_unless,
    required_upstream_url, single_prompt, stop_list, stream_flag, to_body,
};
use crate::providers::{RequestError, RouteKind, TranslateContext, UpstreamRequest, apply_tuning};

const PROVIDER: &str = "ollama";

/// OpenAI-format request → Ollama `/api/chat` (chat) or `/api/generate` (completions).
pub(super) fn request(
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
    mut body: Map<String, Value>,
) -> Result<UpstreamRequest, RequestError> {
    let url = required_upstream_url(ctx, "ollama-format services")?;
    check_prompt_shape(kind, &body)?;
    let max_tokens = effective_max_tokens(ctx, &body)?;
    apply_tuning(&mut body, ctx.tuning);
    reject_openai_only(&body, PROVIDER)?;
    // Ollama has no tool_choice and cannot force a call: only the choices it behaves as
    // are accepted, the others are refused rather than silently dropped.
    reject_unless(
        &body,
        "tool_choice",
        |v| v.is_null() || v == "auto" || v == "none",
        "ollama cannot force a tool call; only 'auto' and 'none' are supported",
    )?;

    let mut out = Map::new();
    out.insert("model".into(), Value::from(ctx.model));
    match kind {
        RouteKind::Chat => {
            out.insert("messages".into(), messages(&body)?);
        }
        RouteKind::Completions => {
            out.insert("prompt".into(), Value::from(single_prompt(&body)?));
            match body.get("suffix") {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => {
                    out.insert("suffix".into(), Value::from(s.as_str()));
                }
                Some(_) => return Err(RequestError::param("suffix", "must be a string")),
            }
        }
    }
    // Ollama streams unless told otherwise (docs/wire-formats.md, "Llama 2 and Ollama").
    out.insert("stream".into(), Value::Bool(stream_flag(&body)?));

    let mut options = Map::new();
    if let Some(max) = max_tokens {
        options.insert("num_predict".into(), max);
    }
    for key in [
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "presence_penalty",
        "frequency_penalty",
    ] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                options.insert(key.into(), v.clone());
            }
            Some(_) => return Err(RequestError::param(key, "must be a number")),
        }
    }
    if let Some(stop) = stop_list(&body)? {
        options.insert("stop".into(), stop);
    }
    if !options.is_empty() {
        out.insert("options".into(), Value::Object(options));
    }

    if let Some(format) = response_format(&body)? {
        out.insert("format".into(), format);
    }
    // Ollama takes OpenAI's function-tool shape as is; `tool_choice: none` = no tools.
    let no_tools = body.get("tool_choice").and_then(Value::as_str) == Some("none");
    match body.get("tools") {
        Some(Value::Array(tools)) => {
            check_tools(tools)?;
            if !tools.is_empty() && !no_tools {
                out.insert("tools".into(), Value::Array(tools.clone()));
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(RequestError::param("tools", "must be an array")),
    }
    Ok(UpstreamRequest {
        url,
        headers: Vec::new(),
        body: to_body(&out)?,
    })
}

/// Ollama only knows function tools; anything else would be ignored upstream.
fn check_tools(tools: &[Value]) -> Result<(), RequestError> {
    for (k, tool) in tools.iter().enumerate() {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(RequestError::param(
                &format!("tools[{k}].type"),
                "ollama only supports tools of type 'function'",
            ));
        }
        if tool
            .pointer("/function/name")
            .and_then(Value::as_str)
            .is_none()
        {
            return Err(RequestError::param(
                &format!("tools[{k}].function.name"),
                "a function tool needs a name",
            ));
        }
    }
    Ok(())
}

/// `response_format` → Ollama's `format` (`"json"` or a JSON Schema).
pub(super) fn response_format(body: &Map<String, Value>) -> Result<Option<Value>, RequestError> {
    let Some(rf) = body.get("response_format").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Value::from("json"))),
        Some("json_schema") => rf
            .pointer("/json_schema/schema")
            .filter(|s| s.is_object())
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                RequestError::param(
                    "response_format",
                    "json_schema needs a 'json_schema.schema' object",
                )
            }),
        _ => Err(RequestError::param(
            "response_format",
            "type must be 'text', 'json_object' or 'json_schema'",
        )),
    }
}

/// OpenAI messages → Ollama messages: string content, base64 `images`, tool calls with
/// object arguments and no ids, tool results named by `tool_name`.
pub(super) fn messages(body: &Map<String, Value>) -> Result<Value, RequestError> {
    let list = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| RequestError::param("messages", "must be a non-empty array of messages"))?;
    // Tool results carry only the call id; Ollama wants the function name.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let m = m
            .as_object()
            .ok_or_else(|| RequestError::param(&format!("messages[{i}]"), "must be an object"))?;
        let role = match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => "system",
            Some(r @ ("user" | "assistant" | "tool")) => r,
            Some(other) => {
                return Err(RequestError::param(
                    &format!("messages[{i}].role"),
                    format!("role '{other}' is not supported by ollama"),
                ));
            }
            None => {
                return Err(RequestError::param(
                    &format!("messages[{i}].role"),
                    "must be a string",
                ));
            }
        };
        let (text, images) = content_parts(m.get("content"), i, PROVIDER, true)?;
        let mut msg = Map::new();
        msg.insert("role".into(), Value::from(role));
        msg.insert("content".into(), Value::from(text));
        if !images.is_empty() {
            msg.insert("images".into(), json!(images));
        }
        if role == "assistant"
            && let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null())
        {
            let calls = calls.as_array().ok_or_else(|| {
                RequestError::param(&format!("messages[{i}].tool_calls"), "must be an array")
            })?;
            let mut mapped = Vec::with_capacity(calls.len());
            for (j, call) in calls.iter().enumerate() {
                let (name, arguments) = tool_call(call, i, j)?;
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    call_names.insert(id, name);
                }
                mapped.push(json!({"function": {"name": name, "arguments": arguments}}));
            }
            if !mapped.is_empty() {
                msg.insert("tool_calls".into(), Value::Array(mapped));
            }
        }
        if role == "tool"
            && let Some(name) = m
                .get("tool_call_id")
                .and_then(Value::as_str)
                .and_then(|id| call_names.get(id))
        {
            msg.insert("tool_name".into(), Value::from(*name));
        }
        out.push(Value::Object(msg));
    }
    Ok(Value::Array(out))
}

/// One OpenAI tool call → its name and its arguments as an object (Ollama rejects the
/// JSON-encoded string OpenAI uses).
fn tool_call(call: &Value, i: usize, j: usize) -> Result<(&str, Value), RequestError> {
    let param = |field: &str| format!("messages[{i}].tool_calls[{j}].function{field}");
    let function = call
        .get("function")
        .filter(|f| f.is_object())
        .ok_or_else(|| RequestError::param(&param(""), "a tool call needs a 'function' object"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RequestError::param(&param(".name"), "a tool call needs a function name"))?;
    let invalid = || {
        RequestError::param(
            &param(".arguments"),
            "tool call arguments must be a JSON object",
        )
    };
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(invalid)?,
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(invalid()),
    };
    Ok((name, arguments))
}
