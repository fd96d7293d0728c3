//! Cohere v1 answers and error bodies → OpenAI.

use serde_json::{Map, Value, json};

use super::request::MISSING_ANSWER;
use crate::providers::{
    OpenAiErrorBody, RouteKind, TranslateContext, TranslateError, generic_error,
};

pub(super) fn response(
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
    body: &[u8],
) -> Result<Value, TranslateError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(TranslateError("empty response body from cohere".into()));
    }
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|_| TranslateError("failed to decode cohere response".into()))?;
    let Value::Object(obj) = parsed else {
        return Err(TranslateError(MISSING_ANSWER.into()));
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
                    return Err(TranslateError(
                        "'text' in cohere response is not a string".into(),
                    ));
                }
                None => return Err(TranslateError(MISSING_ANSWER.into())),
            };
            let mut finish_reason = finish_reason(obj.get("finish_reason"))?;
            let tool_calls = match obj.get("tool_calls") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(calls)) => calls
                    .iter()
                    .enumerate()
                    .map(|(k, call)| {
                        let (name, arguments) = tool_call_parts(call)
                            .map_err(|e| TranslateError(format!("tool_calls[{k}]: {e}")))?;
                        Ok(json!({
                            "id": call_id(k),
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }))
                    })
                    .collect::<Result<Vec<_>, TranslateError>>()?,
                Some(_) => {
                    return Err(TranslateError(
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
                    return Err(TranslateError("no generations in cohere response".into()));
                }
                Some(_) => {
                    return Err(TranslateError(
                        "'generations' in cohere response is not an array".into(),
                    ));
                }
                None => return Err(TranslateError(MISSING_ANSWER.into())),
            };
            let mut choices = Vec::with_capacity(generations.len());
            for (index, generation) in generations.iter().enumerate() {
                let Some(text) = generation.get("text").and_then(Value::as_str) else {
                    return Err(TranslateError(format!("generation {index} has no 'text'")));
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

pub(super) fn error(status: u16, body: &[u8]) -> OpenAiErrorBody {
    // Cohere errors are `{"message": "…"}` (sometimes with an `id`) and carry no type,
    // which the generic reader already handles (`upstream_error`); an empty message
    // says nothing, so the status stands in for it.
    let mut error = generic_error(status, body);
    if error.message.trim().is_empty() {
        error.message = format!("upstream answered HTTP {status}");
    }
    error
}

/// Cohere finish reasons → OpenAI's (docs/wire-formats.md, "Finish reasons and usage"); an absent
/// reason is a finished answer (Kong's fixtures omit it). Failures are an upstream failure, not an
/// answer.
pub(super) fn finish_reason(v: Option<&Value>) -> Result<&'static str, TranslateError> {
    match v.and_then(Value::as_str) {
        Some("MAX_TOKENS" | "ERROR_LIMIT") => Ok("length"),
        Some("ERROR_TOXIC") => Ok("content_filter"),
        Some("TOOL_CALL") => Ok("tool_calls"),
        Some(reason @ ("ERROR" | "TIMEOUT" | "USER_CANCEL")) => Err(TranslateError(format!(
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
pub(super) fn count(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.max(0.0) as u64)
    })
}

/// Usage per docs/behaviour.md, "Differences from Kong", 6: `meta.tokens`, else `token_count`, else
/// `meta.billed_units` (the first that reports any count); `None` when Cohere reports none.
pub(super) fn usage_counts(obj: &Map<String, Value>) -> Option<(u64, u64)> {
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

pub(super) fn cached_count(obj: &Map<String, Value>) -> Option<u64> {
    count(obj.get("meta").and_then(|m| m.get("cached_tokens")))
}

/// The OpenAI `usage` object (zeros when Cohere reports none).
pub(super) fn usage(obj: &Map<String, Value>) -> Value {
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
pub(super) fn call_id(k: usize) -> String {
    format!("call_{k}")
}

/// A v1 call `{name, parameters}` → its name and OpenAI `arguments` (a JSON string).
pub(super) fn tool_call_parts(call: &Value) -> Result<(&str, String), String> {
    let Some(name) = call.get("name").and_then(Value::as_str) else {
        return Err("tool call without a name".into());
    };
    let arguments = match call.get("parameters") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(parameters) => parameters.to_string(),
    };
    Ok((name, arguments))
}
