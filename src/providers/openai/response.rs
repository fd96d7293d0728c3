//! OpenAI-compatible answers → normalised OpenAI objects.

use serde_json::Value;

use crate::providers::shared::{
    map_finish_reason, new_id, normalise_usage, now_secs, object_name, parse_body,
};
use crate::providers::{RouteKind, TranslateContext, TranslateError};

/// An OpenAI-compatible 2xx body → the OpenAI object of the route type.
pub(super) fn compatible_response(
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
    body: &[u8],
) -> Result<Value, TranslateError> {
    let mut value = parse_body(kind, body)?;
    let obj = value.as_object_mut().ok_or_else(|| {
        TranslateError(format!("{} response is not a JSON object", kind.as_str()))
    })?;
    let choices = obj
        .get_mut("choices")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| TranslateError(format!("'choices' not in {} response", kind.as_str())))?;
    if choices.is_empty() {
        return Err(TranslateError(format!(
            "'choices' is empty in {} response",
            kind.as_str()
        )));
    }
    for (i, choice) in choices.iter_mut().enumerate() {
        normalise_choice(kind, i, choice)?;
    }
    if obj
        .get("id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        obj.insert("id".into(), Value::from(new_id(kind)));
    }
    obj.insert("object".into(), Value::from(object_name(kind)));
    if !obj.get("created").is_some_and(|c| c.is_u64() || c.is_i64()) {
        obj.insert("created".into(), Value::from(now_secs()));
    }
    if obj
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        obj.insert("model".into(), Value::from(ctx.model));
    }
    let usage = normalise_usage(obj.get("usage"));
    obj.insert("usage".into(), usage);
    Ok(value)
}

fn normalise_choice(kind: RouteKind, i: usize, choice: &mut Value) -> Result<(), TranslateError> {
    let c = choice
        .as_object_mut()
        .ok_or_else(|| TranslateError(format!("choice {i} is not an object")))?;
    if !c.get("index").is_some_and(Value::is_u64) {
        c.insert("index".into(), Value::from(i));
    }
    let has_output = match kind {
        RouteKind::Chat => {
            let msg = c
                .get_mut("message")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| TranslateError(format!("'message' not in choice {i}")))?;
            let tool_calls = msg
                .get("tool_calls")
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty());
            let content = match msg.get("content") {
                Some(Value::String(s)) => Some(!s.is_empty()),
                Some(Value::Null) => None,
                None if tool_calls => None,
                None => return Err(TranslateError(format!("no content in choice {i}"))),
                Some(_) => {
                    return Err(TranslateError(format!(
                        "content of choice {i} is not a string"
                    )));
                }
            };
            if !msg.get("role").is_some_and(Value::is_string) {
                msg.insert("role".into(), Value::from("assistant"));
            }
            content.unwrap_or(false) || tool_calls
        }
        RouteKind::Completions => match c.get("text") {
            Some(Value::String(s)) => !s.is_empty(),
            _ => return Err(TranslateError(format!("'text' not in choice {i}"))),
        },
    };
    let reason = match c.get("finish_reason").and_then(Value::as_str) {
        // Mistral's `error` (docs/wire-formats.md, "Mistral"): keep a produced answer, else it
        // failed.
        Some("error") if has_output => "stop",
        Some("error") => {
            return Err(TranslateError(
                "upstream finished with finish_reason 'error'".into(),
            ));
        }
        Some(raw) => map_finish_reason(raw),
        None => "stop",
    };
    c.insert("finish_reason".into(), Value::from(reason));
    Ok(())
}
