//! Raw-format answers → OpenAI.

use serde_json::{Value, json};

use crate::providers::shared::{
    map_finish_reason, new_id, normalise_usage, now_secs, object_name, parse_body, token_count,
};
use crate::providers::{RouteKind, TranslateContext, TranslateError};

/// Raw response → OpenAI. Kong reads `{"data":[{"generated_text"}]}`; TGI answers
/// `{"generated_text","details"}` and the HF Inference API `[{"generated_text"}]`. The
/// answer is the text after the last `[/INST]` (servers echo the prompt), trimmed.
pub(super) fn raw_response(
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
    body: &[u8],
) -> Result<Value, TranslateError> {
    let value = parse_body(kind, body)?;
    let entries = match &value {
        Value::Object(o) => match o.get("data") {
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => {
                return Err(TranslateError(
                    "cannot parse response from llama2 endpoint".into(),
                ));
            }
            None => std::slice::from_ref(&value),
        },
        Value::Array(a) => a.as_slice(),
        _ => {
            return Err(TranslateError(
                "cannot parse response from llama2 endpoint".into(),
            ));
        }
    };
    let entry = match entries {
        [one] => one,
        [] => {
            return Err(TranslateError(
                "response data is empty from llama2 endpoint".into(),
            ));
        }
        _ => {
            return Err(TranslateError(
                "cannot parse response from llama2 endpoint".into(),
            ));
        }
    };
    let generated = entry
        .get("generated_text")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError("response data is empty from llama2 endpoint".into()))?;
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
        // TGI never counts the prompt, and the completion only with `details`: the counts
        // it lacks are left out for the proxy to estimate.
        None => match details.and_then(|d| d.get("generated_tokens")) {
            Some(generated) if !generated.is_null() => {
                json!({"completion_tokens": token_count(Some(generated))})
            }
            _ => json!({}),
        },
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
