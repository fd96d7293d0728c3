//! OpenAI request → a Llama 2 chat prompt in `{"inputs", "parameters"}`.

use serde_json::{Map, Value};

use crate::providers::shared::{
    check_prompt_shape, content_parts, effective_max_tokens, reject_openai_only, reject_unless,
    required_upstream_url, single_prompt, stop_list, stream_flag, to_body,
};
use crate::providers::{RequestError, RouteKind, TranslateContext, UpstreamRequest, apply_tuning};

const PROVIDER: &str = "llama2 (raw format)";

/// OpenAI request → `{"inputs": <Llama 2 prompt>, "parameters": {…}}`.
pub(super) fn raw_request(
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
    mut body: Map<String, Value>,
) -> Result<UpstreamRequest, RequestError> {
    let url = required_upstream_url(ctx, "llama2 services")?;
    check_prompt_shape(kind, &body)?;
    let max_tokens = effective_max_tokens(ctx, &body)?;
    apply_tuning(&mut body, ctx.tuning);
    reject_openai_only(&body, PROVIDER)?;
    reject_unless(
        &body,
        "tools",
        |v| v.is_null() || v.as_array().is_some_and(Vec::is_empty),
        "the raw format has no tool calling",
    )?;
    reject_unless(
        &body,
        "presence_penalty",
        |v| v.is_null() || v.as_f64() == Some(0.0),
        "the raw format has no presence_penalty",
    )?;
    reject_unless(
        &body,
        "response_format",
        |v| v.is_null() || v.get("type").and_then(Value::as_str) == Some("text"),
        "the raw format has no JSON mode",
    )?;

    let inputs = match kind {
        RouteKind::Chat => {
            let messages = body
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    RequestError::param("messages", "must be a non-empty array of messages")
                })?;
            chat_prompt(messages)?
        }
        // A prompt is one user turn of the same standard template (Differences from Kong, 7) — not
        // Kong's malformed `<<SYS>> You are a helpful assistant. <<SYS>>` wrapper.
        RouteKind::Completions => {
            let prompt = single_prompt(&body)?;
            format!("<s>[INST] {} [/INST]", prompt.trim())
        }
    };

    let mut parameters = Map::new();
    if let Some(max) = max_tokens {
        parameters.insert("max_new_tokens".into(), max);
    }
    for key in ["temperature", "top_p", "top_k", "seed", "frequency_penalty"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                parameters.insert(key.into(), v.clone());
            }
            Some(_) => return Err(RequestError::param(key, "must be a number")),
        }
    }
    if let Some(stop) = stop_list(&body)? {
        parameters.insert("stop".into(), stop);
    }
    let stream = stream_flag(&body)?;
    // Kong's flag; TGI itself ignores it.
    parameters.insert("stream".into(), Value::Bool(stream));
    if stream {
        // TGI's final stream event carries the finish reason and token count only when
        // asked for details.
        parameters.insert("details".into(), Value::Bool(true));
    }

    let mut out = Map::new();
    out.insert("inputs".into(), Value::from(inputs));
    out.insert("parameters".into(), Value::Object(parameters));
    if stream {
        // TGI's `POST /` streams on this top-level flag (`/generate_stream` always does);
        // absent when false so non-streamed bodies stay Kong's.
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(UpstreamRequest {
        url,
        headers: Vec::new(),
        body: to_body(&out)?,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    User,
    Assistant,
}

/// The standard Llama 2 chat template (docs/wire-formats.md, "Llama 2 and Ollama"; Meta's
/// `chat_completion`): `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant}
/// </s><s>[INST] {user} [/INST]`. System/developer messages are joined into the system block
/// wherever they stand; consecutive same-role turns are merged so roles alternate starting with the
/// user; a trailing assistant turn is left open so the model continues it.
fn chat_prompt(messages: &[Value]) -> Result<String, RequestError> {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(Turn, String)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let m = m
            .as_object()
            .ok_or_else(|| RequestError::param(&format!("messages[{i}]"), "must be an object"))?;
        let role = m.get("role").and_then(Value::as_str);
        let turn = match role {
            Some("system" | "developer") => None,
            Some("user") => Some(Turn::User),
            Some("assistant") => {
                if m.get("tool_calls")
                    .and_then(Value::as_array)
                    .is_some_and(|c| !c.is_empty())
                {
                    return Err(RequestError::param(
                        &format!("messages[{i}].tool_calls"),
                        "the raw format has no tool calling",
                    ));
                }
                Some(Turn::Assistant)
            }
            Some(other) => {
                return Err(RequestError::param(
                    &format!("messages[{i}].role"),
                    format!("role '{other}' is not supported by {PROVIDER}"),
                ));
            }
            None => {
                return Err(RequestError::param(
                    &format!("messages[{i}].role"),
                    "must be a string",
                ));
            }
        };
        let (text, _) = content_parts(m.get("content"), i, PROVIDER, false)?;
        // Meta's reference strips every turn.
        let text = text.trim().to_string();
        match turn {
            None => {
                if !text.is_empty() {
                    system.push(text);
                }
            }
            Some(t) => match turns.last_mut() {
                Some((last, prev)) if *last == t => {
                    if !text.is_empty() {
                        if !prev.is_empty() {
                            prev.push('\n');
                        }
                        prev.push_str(&text);
                    }
                }
                _ => turns.push((t, text)),
            },
        }
    }
    if turns.first().is_none_or(|(t, _)| *t == Turn::Assistant) {
        turns.insert(0, (Turn::User, String::new()));
    }

    let system = system.join("\n");
    let mut out = String::new();
    for (k, pair) in turns.chunks(2).enumerate() {
        let user = &pair[0].1;
        out.push_str("<s>[INST] ");
        if k == 0 && !system.is_empty() {
            out.push_str("<<SYS>>\n");
            out.push_str(&system);
            out.push_str("\n<</SYS>>\n\n");
        }
        out.push_str(user);
        out.push_str(" [/INST]");
        if let Some((_, assistant)) = pair.get(1) {
            out.push(' ');
            out.push_str(assistant);
            // Closed exchanges end with EOS; a final assistant turn stays open.
            if (k + 1) * 2 < turns.len() {
                out.push_str(" </s>");
            }
        }
    }
    Ok(out)
}
