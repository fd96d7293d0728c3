//! OpenAI request → the upstream dialect's request.

use serde_json::{Map, Value, json};

use super::endpoint::azure_has_stream_options;
use crate::providers::shared::{
    check_prompt_shape, effective_max_tokens, is_empty_or_null, is_false_or_null, is_null,
    is_text_only, is_zero_or_null, reject_unless, stream_flag, to_body,
};
use crate::providers::{
    Dialect, RequestError, RouteKind, TranslateContext, UpstreamRequest, apply_tuning,
};

/// The body rules a request follows: its dialect's, except on Mistral's completions
/// routes, which call an OpenAI-compatible server (api.mistral.ai has none) with a plain
/// OpenAI body rather than Mistral's chat dialect.
pub(super) fn body_dialect(dialect: Dialect, kind: RouteKind) -> Dialect {
    match (dialect, kind) {
        (Dialect::Mistral, RouteKind::Completions) => Dialect::OpenAi,
        _ => dialect,
    }
}

/// An OpenAI-format request body for an OpenAI-compatible upstream.
pub(super) fn compatible_request(
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
    mut body: Map<String, Value>,
    dialect: Dialect,
    url: String,
) -> Result<UpstreamRequest, RequestError> {
    check_prompt_shape(kind, &body)?;
    let max_tokens = effective_max_tokens(ctx, &body)?;
    let stream = stream_flag(&body)?;
    apply_tuning(&mut body, ctx.tuning);
    body.insert("model".into(), Value::from(ctx.model));
    // Kong always sends an explicit `stream` (`request.stream or false`).
    body.insert("stream".into(), Value::Bool(stream));
    match dialect {
        Dialect::OpenAi | Dialect::Azure | Dialect::SelfHosted => {
            if dialect != Dialect::SelfHosted {
                body.remove("top_k");
            }
            // Route tuning wins, but a client that chose `max_completion_tokens` (reasoning
            // models reject `max_tokens`) keeps that field name.
            if ctx.tuning.max_tokens.is_some() && !is_null(body.get("max_completion_tokens")) {
                if let Some(v) = max_tokens {
                    body.insert("max_completion_tokens".into(), v);
                }
                body.remove("max_tokens");
            }
        }
        Dialect::Mistral => mistral_body(&mut body, max_tokens)?,
    }
    if stream {
        match dialect {
            // Mistral rejects the field and puts usage in its last chunk unasked.
            Dialect::Mistral => {
                body.remove("stream_options");
            }
            // Usage is metered from the stream whatever the client asked (docs/behaviour.md,
            // "Streaming rules"); the emitter strips it again for a client that did not ask.
            Dialect::OpenAi | Dialect::Azure | Dialect::SelfHosted => {
                let supported = dialect != Dialect::Azure || azure_has_stream_options(&url);
                if supported {
                    match body.get_mut("stream_options") {
                        Some(Value::Object(options)) => {
                            options.insert("include_usage".into(), Value::Bool(true));
                        }
                        None | Some(Value::Null) => {
                            body.insert("stream_options".into(), json!({"include_usage": true}));
                        }
                        // Not an object: the upstream's 400 tells the client.
                        Some(_) => {}
                    }
                } else {
                    // Older Azure versions refuse the field with a 400, the client's own
                    // included; the usage chunk is then estimated (docs/behaviour.md,
                    // "Streaming rules").
                    body.remove("stream_options");
                }
            }
        }
    }
    Ok(UpstreamRequest {
        url,
        headers: Vec::new(),
        body: to_body(&body)?,
    })
}

/// Mistral's chat dialect (docs/wire-formats.md, "Mistral"): renames, fields it cannot honour
/// rejected, everything else not on its allow-list dropped (it answers 422 `extra_forbidden`).
fn mistral_body(
    body: &mut Map<String, Value>,
    max_tokens: Option<Value>,
) -> Result<(), RequestError> {
    reject_unless(
        body,
        "logit_bias",
        is_empty_or_null,
        "mistral has no logit_bias",
    )?;
    reject_unless(
        body,
        "logprobs",
        is_false_or_null,
        "mistral returns no logprobs",
    )?;
    reject_unless(
        body,
        "top_logprobs",
        is_zero_or_null,
        "mistral returns no logprobs",
    )?;
    reject_unless(
        body,
        "modalities",
        is_text_only,
        "mistral answers with text only",
    )?;
    reject_unless(
        body,
        "audio",
        Value::is_null,
        "mistral answers with text only",
    )?;
    reject_unless(
        body,
        "web_search_options",
        Value::is_null,
        "mistral has no web search",
    )?;
    reject_unless(
        body,
        "functions",
        Value::is_null,
        "use tools: mistral has no legacy functions",
    )?;
    reject_unless(
        body,
        "function_call",
        Value::is_null,
        "use tool_choice: mistral has no legacy functions",
    )?;
    reject_unless(
        body,
        "verbosity",
        Value::is_null,
        "mistral has no verbosity setting",
    )?;

    // Sending `max_completion_tokens` is a 422 there.
    body.remove("max_completion_tokens");
    body.remove("max_tokens");
    if let Some(v) = max_tokens {
        body.insert("max_tokens".into(), v);
    }
    if let Some(seed) = body.remove("seed")
        && !seed.is_null()
    {
        body.entry("random_seed").or_insert(seed);
    }
    const ALLOWED: &[&str] = &[
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "metadata",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "prediction",
        "parallel_tool_calls",
        "reasoning_effort",
        "prompt_mode",
        "guardrails",
        "prompt_cache_key",
        "safe_prompt",
    ];
    body.retain(|k, _| ALLOWED.contains(&k.as_str()));

    // Non-standard message keys are rejected too; `developer` is OpenAI's newer `system`.
    const MESSAGE_KEYS: &[&str] = &[
        "role",
        "content",
        "name",
        "tool_calls",
        "tool_call_id",
        "prefix",
    ];
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        for m in messages.iter_mut().filter_map(Value::as_object_mut) {
            m.retain(|k, v| MESSAGE_KEYS.contains(&k.as_str()) && !(k == "name" && v.is_null()));
            if m.get("role").and_then(Value::as_str) == Some("developer") {
                m.insert("role".into(), Value::from("system"));
            }
            if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
                for call in calls.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(Value::String(id)) = call.get_mut("id") {
                        *id = mistral_tool_call_id(id);
                    }
                }
            }
            if let Some(Value::String(id)) = m.get_mut("tool_call_id") {
                *id = mistral_tool_call_id(id);
            }
        }
    }
    // `tool_choice` passes unchanged: Mistral takes "required" (its "any" means the same),
    // and the OpenAI-compatible servers a mistral service may point at (vLLM) know
    // "required" but not "any".
    Ok(())
}

/// A tool call id Mistral accepts (`[a-zA-Z0-9]{9}`, else 422): valid ids unchanged, others
/// replaced by 9 base62 digits of their SHA-256, so the same id gives the same replacement
/// in the assistant's `tool_calls` and in the `tool` message that answers it.
pub(super) fn mistral_tool_call_id(id: &str) -> String {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    use sha2::{Digest, Sha256};
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let mut n = u64::from_be_bytes(first);
    let mut out = [0u8; 9];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}
