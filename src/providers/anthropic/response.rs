//! Anthropic answers and error bodies → OpenAI.

use serde_json::{Map, Value, json};

use super::JSON_TOOL;
use crate::providers::{
    OpenAiErrorBody, RouteKind, TranslateContext, TranslateError, generic_error,
};

pub(super) fn response(
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
    body: &[u8],
) -> Result<Value, TranslateError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(TranslateError("empty response body".into()));
    }
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|_| TranslateError(format!("failed to decode {} response", kind.as_str())))?;
    let Value::Object(obj) = parsed else {
        return Err(TranslateError(format!(
            "{} response is not a JSON object",
            kind.as_str()
        )));
    };
    match kind {
        RouteKind::Chat => chat_response(ctx, &obj),
        RouteKind::Completions => completions_response(ctx, &obj),
    }
}

pub(super) fn error(status: u16, body: &[u8]) -> OpenAiErrorBody {
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

fn chat_response(
    ctx: &TranslateContext<'_>,
    obj: &Map<String, Value>,
) -> Result<Value, TranslateError> {
    let Some(Value::Array(blocks)) = obj.get("content") else {
        if let Some(message) = obj
            .get("error")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
        {
            return Err(TranslateError(format!(
                "upstream returned an error: {message}"
            )));
        }
        return Err(TranslateError(
            "'content' not in anthropic://llm/v1/chat response".into(),
        ));
    };
    let mut text = String::new();
    let mut has_text = false;
    let mut tool_calls = Vec::new();
    let mut json_answer = false;
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let Some(t) = block.get("text").and_then(Value::as_str) else {
                    return Err(TranslateError("text content block without text".into()));
                };
                // Blocks are consecutive pieces of one answer (e.g. split by citations).
                text.push_str(t);
                has_text = true;
            }
            Some("tool_use") => {
                let id = block.get("id").and_then(Value::as_str);
                let name = block.get("name").and_then(Value::as_str);
                let (Some(id), Some(name)) = (id, name) else {
                    return Err(TranslateError(
                        "tool_use content block without id or name".into(),
                    ));
                };
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                let arguments = serde_json::to_string(&input)
                    .map_err(|_| TranslateError("cannot encode tool_use input".into()))?;
                if name == JSON_TOOL {
                    // JSON mode: the forced tool's input is the answer.
                    text.push_str(&arguments);
                    has_text = true;
                    json_answer = true;
                    continue;
                }
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
            "finish_reason": if json_answer && !has_tool_calls {
                json_finish_reason(obj.get("stop_reason"))
            } else {
                finish_reason(obj.get("stop_reason"), has_tool_calls)
            },
        }],
        "usage": usage(obj.get("usage")),
    }))
}

pub(super) fn completions_response(
    ctx: &TranslateContext<'_>,
    obj: &Map<String, Value>,
) -> Result<Value, TranslateError> {
    let text = match (obj.get("completion"), obj.get("content")) {
        (Some(Value::String(t)), _) => t.clone(),
        // A Messages-API answer (an `upstream_url` pointing at /v1/messages): its text blocks.
        (None, Some(Value::Array(blocks))) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => {
            return Err(TranslateError(
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
        // `/v1/complete` reports no usage: left out for the proxy to estimate.
        "usage": obj.get("usage").map_or_else(|| json!({}), |u| usage(Some(u))),
    }))
}

/// `chatcmpl-`/`cmpl-` + Anthropic's id (`msg_…`, `compl_…`), or a random one.
fn response_id(prefix: &str, obj: &Map<String, Value>) -> String {
    match obj.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("{prefix}{id}"),
        _ => format!("{prefix}{}", uuid::Uuid::new_v4().simple()),
    }
}

pub(super) fn response_model(ctx: &TranslateContext<'_>, obj: &Map<String, Value>) -> String {
    match obj.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => ctx.model.to_string(),
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason` (docs/wire-formats.md, "Finish reasons and
/// usage"). Never passes a native value through; an absent or unknown one reads as a normal stop.
pub(super) fn finish_reason(stop_reason: Option<&Value>, has_tool_calls: bool) -> &'static str {
    match stop_reason.and_then(Value::as_str) {
        Some("end_turn" | "stop_sequence" | "pause_turn") => "stop",
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// A JSON-mode answer's finish reason: the forced tool call is a normal stop.
pub(super) fn json_finish_reason(stop_reason: Option<&Value>) -> &'static str {
    match stop_reason.and_then(Value::as_str) {
        Some("tool_use") => "stop",
        _ => finish_reason(stop_reason, false),
    }
}

/// Anthropic usage → OpenAI usage. `input_tokens` excludes cache reads and writes, while
/// OpenAI's `prompt_tokens` includes cached tokens, so both cache counts are added in
/// (docs/wire-formats.md, "Anthropic") and `cached_tokens` is the cache-read subset. Missing or
/// malformed counts read as 0 (usage is always an object).
pub(super) fn usage(usage: Option<&Value>) -> Value {
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
