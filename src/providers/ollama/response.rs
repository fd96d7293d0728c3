//! Ollama's final object → OpenAI.

use serde_json::{Map, Value, json};

use crate::providers::shared::{new_id, now_secs, object_name, parse_body, token_count, usage};
use crate::providers::{RouteKind, TranslateContext, TranslateError};

/// Ollama's final (non-streamed) object → OpenAI chat completion / text completion.
pub(super) fn response(
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
    body: &[u8],
) -> Result<Value, TranslateError> {
    let value = parse_body(kind, body)?;
    let obj = value
        .as_object()
        .ok_or_else(|| TranslateError("ollama response is not a JSON object".into()))?;
    if let Some(err) = obj.get("error") {
        let text = err.as_str().map_or_else(|| err.to_string(), str::to_string);
        return Err(TranslateError(format!("ollama reported an error: {text}")));
    }
    let done_reason = obj.get("done_reason").and_then(Value::as_str);
    if matches!(done_reason, Some("load" | "unload")) {
        return Err(TranslateError(
            "ollama answered a model load, not a generation".into(),
        ));
    }

    let (choice, has_tool_calls) = match kind {
        RouteKind::Chat => {
            let msg = obj
                .get("message")
                .and_then(Value::as_object)
                .ok_or_else(|| TranslateError("'message' not in ollama chat response".into()))?;
            let calls = response_tool_calls(msg.get("tool_calls"))?;
            // OpenAI gives `content: null` beside tool calls.
            let content = match (msg.get("content"), calls.is_empty()) {
                (Some(Value::String(s)), true) => Value::from(s.as_str()),
                (Some(Value::String(s)), false) if !s.is_empty() => Value::from(s.as_str()),
                (Some(Value::String(_) | Value::Null) | None, false) => Value::Null,
                _ => {
                    return Err(TranslateError(
                        "'message.content' not in ollama chat response".into(),
                    ));
                }
            };
            let mut message = Map::new();
            message.insert("role".into(), Value::from("assistant"));
            message.insert("content".into(), content);
            let has_calls = !calls.is_empty();
            if has_calls {
                message.insert("tool_calls".into(), Value::Array(calls));
            }
            (json!({"index": 0, "message": message}), has_calls)
        }
        RouteKind::Completions => {
            let text = obj.get("response").and_then(Value::as_str).ok_or_else(|| {
                TranslateError("'response' not in ollama generate response".into())
            })?;
            (json!({"index": 0, "text": text, "logprobs": null}), false)
        }
    };

    let completion = token_count(obj.get("eval_count"));
    let finish_reason = finish_reason(
        done_reason,
        has_tool_calls,
        completion,
        ctx.tuning.max_tokens,
    );
    let mut choice = choice;
    if let Some(c) = choice.as_object_mut() {
        c.insert("finish_reason".into(), Value::from(finish_reason));
    }

    let created = obj
        .get("created_at")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map_or_else(now_secs, |t| t.timestamp());
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(ctx.model);
    Ok(json!({
        "id": new_id(kind),
        "object": object_name(kind),
        "created": created,
        "model": model,
        "choices": [choice],
        // `prompt_eval_count` is absent when the prompt came from Ollama's cache: 0.
        "usage": usage(token_count(obj.get("prompt_eval_count")), completion),
    }))
}

/// Ollama's `done_reason` → OpenAI's finish reason. `length` wins over tool calls: the
/// answer was cut, which the client must know. Older Ollama gives no reason: Kong infers
/// `length` when the route's limit was reached.
pub(super) fn finish_reason(
    done_reason: Option<&str>,
    has_tool_calls: bool,
    completion: u64,
    route_max_tokens: Option<u32>,
) -> &'static str {
    match done_reason {
        Some("length") => "length",
        _ if has_tool_calls => "tool_calls",
        Some(_) => "stop",
        None if route_max_tokens.is_some_and(|m| u64::from(m) == completion) => "length",
        None => "stop",
    }
}

/// Ollama tool calls (no ids, object arguments) → OpenAI's (synthesised `call_<n>` ids,
/// JSON-encoded arguments).
fn response_tool_calls(raw: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    let Some(calls) = raw.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let calls = calls
        .as_array()
        .ok_or_else(|| TranslateError("ollama 'tool_calls' is not an array".into()))?;
    calls
        .iter()
        .enumerate()
        .map(|(n, call)| {
            let c = openai_tool_call(call, n).map_err(TranslateError)?;
            Ok(json!({"id": c.id, "type": "function",
                      "function": {"name": c.name, "arguments": c.arguments}}))
        })
        .collect()
}

/// One Ollama tool call in OpenAI's terms.
pub(super) struct ToolCall<'a> {
    pub(super) id: String,
    pub(super) name: &'a str,
    /// JSON text, as OpenAI sends it.
    pub(super) arguments: String,
}

/// Ollama gives no ids, so the `n`th call of a response is `call_<n>`: deterministic, and
/// unique within the response, which is all a tool message must refer to (an id the
/// upstream does send is kept). Arguments come as an object, some versions and
/// compatible servers send a string: both end as JSON text.
pub(super) fn openai_tool_call(call: &Value, n: usize) -> Result<ToolCall<'_>, String> {
    let function = call.get("function");
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| "ollama tool call without a function name".to_string())?;
    let arguments = match function.and_then(|f| f.get("arguments")) {
        Some(Value::String(s)) if s.trim().is_empty() => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => "{}".to_string(),
        Some(v) => v.to_string(),
    };
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map_or_else(|| format!("call_{n}"), str::to_string);
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}
