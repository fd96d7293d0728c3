//! Helpers every translator of the OpenAI family uses to read OpenAI requests and write
//! OpenAI responses, and the reader of OpenAI-family error bodies.

use serde_json::{Map, Value, json};

use super::{
    OpenAiErrorBody, RequestError, RouteKind, TranslateContext, TranslateError, generic_error,
};

/// `ctx.upstream_url`, required by self-hosted formats.
pub(super) fn required_upstream_url(
    ctx: &TranslateContext<'_>,
    what: &str,
) -> Result<String, RequestError> {
    ctx.upstream_url
        .map(str::to_string)
        .ok_or_else(|| RequestError {
            param: None,
            message: format!("{what} need the service's upstream_url"),
        })
}

/// A completions `prompt`: a string, or an array holding exactly one string.
pub(super) fn single_prompt(body: &Map<String, Value>) -> Result<String, RequestError> {
    match body.get("prompt") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(a)) => match a.as_slice() {
            [Value::String(s)] => Ok(s.clone()),
            [_, _, ..] => Err(RequestError::param(
                "prompt",
                "several prompts in one request are supported only by OpenAI-compatible \
                 providers; send one string",
            )),
            _ => Err(RequestError::param("prompt", "must be a string")),
        },
        _ => Err(RequestError::param("prompt", "must be a string")),
    }
}

/// Upstream error body in any OpenAI-family shape (OpenAI/Azure `{"error":{…}}`, Mistral
/// `{"object":"error","message",…}` incl. pydantic 422 details, Ollama/TGI
/// `{"error":"…"}`, FastAPI `{"detail":…}`) → OpenAI error; else `generic_error`.
pub(super) fn normalise_error(status: u16, body: &[u8]) -> OpenAiErrorBody {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return generic_error(status, body);
    };
    let non_null = |x: Option<&Value>| x.filter(|x| !x.is_null()).cloned();
    let type_of = |x: Option<&Value>| {
        x.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("upstream_error")
            .to_string()
    };
    if let Some(e) = v.get("error").and_then(Value::as_object) {
        if let Some(message) = e.get("message").and_then(Value::as_str) {
            return OpenAiErrorBody {
                message: message.to_string(),
                kind: type_of(e.get("type")),
                code: non_null(e.get("code")),
                param: non_null(e.get("param")),
            };
        }
    } else if let Some(message) = v.get("error").and_then(Value::as_str) {
        return OpenAiErrorBody {
            message: message.to_string(),
            kind: type_of(v.get("error_type")),
            code: None,
            param: None,
        };
    } else if let Some(message) = v.get("message") {
        // Mistral's 422 puts a pydantic `{"detail":[…]}` in `message`, sometimes
        // JSON-encoded a second time.
        let nested = match message {
            Value::String(s) => serde_json::from_str::<Value>(s).ok(),
            other => Some(other.clone()),
        };
        if let Some(e) = nested
            .as_ref()
            .and_then(|n| n.get("detail"))
            .and_then(pydantic_error)
        {
            return e;
        }
        if let Some(text) = message.as_str() {
            return OpenAiErrorBody {
                message: text.to_string(),
                kind: type_of(v.get("type")),
                code: non_null(v.get("code")),
                param: non_null(v.get("param")),
            };
        }
    } else if let Some(detail) = v.get("detail") {
        if let Some(e) = pydantic_error(detail) {
            return e;
        }
        if let Some(text) = detail.as_str() {
            return OpenAiErrorBody {
                message: text.to_string(),
                kind: "upstream_error".into(),
                code: None,
                param: None,
            };
        }
    }
    generic_error(status, body)
}

/// A pydantic/FastAPI validation list → `invalid_request_error` naming the field
/// (`param` = the last element of `loc`, docs/wire-formats.md, "Mistral").
fn pydantic_error(detail: &Value) -> Option<OpenAiErrorBody> {
    let first = detail.as_array()?.first()?.as_object()?;
    let msg = first.get("msg").and_then(Value::as_str)?;
    let loc = first.get("loc").and_then(Value::as_array);
    let path = loc
        .map(|l| {
            l.iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(".")
        })
        .unwrap_or_default();
    Some(OpenAiErrorBody {
        message: if path.is_empty() {
            msg.to_string()
        } else {
            format!("{path}: {msg}")
        },
        kind: "invalid_request_error".into(),
        code: first.get("type").filter(|t| t.is_string()).cloned(),
        param: loc.and_then(|l| l.last()).cloned(),
    })
}

/// Chat needs a `messages` array, completions a `prompt` (the proxy checked it already;
/// this keeps a translator safe when called directly).
pub(super) fn check_prompt_shape(
    kind: RouteKind,
    body: &Map<String, Value>,
) -> Result<(), RequestError> {
    match kind {
        RouteKind::Chat => match body.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => Ok(()),
            _ => Err(RequestError::param(
                "messages",
                "must be a non-empty array of messages",
            )),
        },
        RouteKind::Completions => match body.get("prompt") {
            Some(Value::String(_) | Value::Array(_)) => Ok(()),
            _ => Err(RequestError::param("prompt", "must be a string")),
        },
    }
}

/// The completion-token limit to send: the route's `max_tokens`, else the client's
/// `max_completion_tokens`, else its `max_tokens` (docs/wire-formats.md, "The OpenAI contract").
pub(super) fn effective_max_tokens(
    ctx: &TranslateContext<'_>,
    body: &Map<String, Value>,
) -> Result<Option<Value>, RequestError> {
    if let Some(max) = ctx.tuning.max_tokens {
        return Ok(Some(Value::from(max)));
    }
    for key in ["max_completion_tokens", "max_tokens"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => {
                return Ok(Some(Value::Number(n.clone())));
            }
            Some(_) => return Err(RequestError::param(key, "must be an integer")),
        }
    }
    Ok(None)
}

/// The client's `stream` flag (absent or null = false).
pub(super) fn stream_flag(body: &Map<String, Value>) -> Result<bool, RequestError> {
    match body.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(RequestError::param("stream", "must be a boolean")),
    }
}

/// OpenAI's `stop` (a string or up to 4 strings) as a list; `None` when absent.
pub(super) fn stop_list(body: &Map<String, Value>) -> Result<Option<Value>, RequestError> {
    match body.get("stop") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(json!([s]))),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            Ok((!a.is_empty()).then(|| Value::Array(a.clone())))
        }
        Some(_) => Err(RequestError::param(
            "stop",
            "must be a string or an array of strings",
        )),
    }
}

/// 400 naming `key` when the client set it to something the provider cannot honour.
pub(super) fn reject_unless(
    body: &Map<String, Value>,
    key: &str,
    acceptable: impl Fn(&Value) -> bool,
    why: &str,
) -> Result<(), RequestError> {
    match body.get(key) {
        Some(v) if !acceptable(v) => Err(RequestError::param(
            key,
            format!("unsupported value: {why}"),
        )),
        _ => Ok(()),
    }
}

/// Rejects what a single-answer, text-only upstream without OpenAI's extras cannot honour.
pub(super) fn reject_openai_only(
    body: &Map<String, Value>,
    provider: &str,
) -> Result<(), RequestError> {
    let n_ok = |v: &Value| v.is_null() || v.as_u64() == Some(1);
    reject_unless(
        body,
        "n",
        n_ok,
        &format!("{provider} returns a single choice; n must be 1"),
    )?;
    reject_unless(
        body,
        "best_of",
        n_ok,
        &format!("{provider} returns a single choice"),
    )?;
    reject_unless(
        body,
        "logit_bias",
        is_empty_or_null,
        &format!("{provider} has no logit_bias"),
    )?;
    reject_unless(
        body,
        "logprobs",
        is_false_or_null,
        &format!("{provider} returns no logprobs"),
    )?;
    reject_unless(
        body,
        "top_logprobs",
        is_zero_or_null,
        &format!("{provider} returns no logprobs"),
    )?;
    reject_unless(
        body,
        "echo",
        is_false_or_null,
        &format!("{provider} cannot echo the prompt"),
    )?;
    reject_unless(
        body,
        "modalities",
        is_text_only,
        &format!("{provider} answers with text only"),
    )?;
    reject_unless(
        body,
        "audio",
        Value::is_null,
        &format!("{provider} answers with text only"),
    )?;
    reject_unless(
        body,
        "web_search_options",
        Value::is_null,
        &format!("{provider} has no web search"),
    )?;
    reject_unless(
        body,
        "functions",
        Value::is_null,
        "use tools: legacy functions are not translated",
    )?;
    reject_unless(
        body,
        "function_call",
        Value::is_null,
        "use tool_choice: legacy functions are not translated",
    )?;
    Ok(())
}

pub(super) fn is_null(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

pub(super) fn is_empty_or_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

pub(super) fn is_false_or_null(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false))
}

pub(super) fn is_zero_or_null(v: &Value) -> bool {
    v.is_null() || v.as_f64() == Some(0.0)
}

pub(super) fn is_text_only(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().all(|m| m.as_str() == Some("text")),
        _ => false,
    }
}

/// Text and images of one OpenAI message `content`: a string, null (e.g. an assistant
/// turn that only calls tools) or an array of parts. Text parts are joined with a newline;
/// `image_url` parts must be base64 `data:` URIs (translators do no I/O) and are refused
/// when `images` is false.
pub(super) fn content_parts(
    content: Option<&Value>,
    index: usize,
    provider: &str,
    images: bool,
) -> Result<(String, Vec<String>), RequestError> {
    let param = format!("messages[{index}].content");
    match content {
        None | Some(Value::Null) => Ok((String::new(), Vec::new())),
        Some(Value::String(s)) => Ok((s.clone(), Vec::new())),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            let mut found = Vec::new();
            for part in parts {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                match kind {
                    "text" => {
                        let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                            RequestError::param(&param, "a text part needs a string 'text'")
                        })?;
                        texts.push(text);
                    }
                    "image_url" if images => {
                        let url = part
                            .get("image_url")
                            .and_then(|i| i.get("url").or(Some(i)))
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                RequestError::param(
                                    &param,
                                    "an image_url part needs 'image_url.url'",
                                )
                            })?;
                        let data = url
                            .strip_prefix("data:")
                            .and_then(|rest| rest.split_once(";base64,"))
                            .map(|(_, data)| data)
                            .ok_or_else(|| {
                                RequestError::param(
                                    &param,
                                    format!("{provider} takes images as base64 data: URIs only"),
                                )
                            })?;
                        found.push(data.to_string());
                    }
                    other => {
                        return Err(RequestError::param(
                            &param,
                            format!("content part type '{other}' is not supported by {provider}"),
                        ));
                    }
                }
            }
            Ok((texts.join("\n"), found))
        }
        Some(_) => Err(RequestError::param(
            &param,
            "must be a string or an array of content parts",
        )),
    }
}

/// Serialises an upstream body.
pub(super) fn to_body(body: &Map<String, Value>) -> Result<Vec<u8>, RequestError> {
    serde_json::to_vec(body).map_err(|e| RequestError {
        param: None,
        message: format!("cannot serialise the upstream request: {e}"),
    })
}

/// Parses an upstream 2xx body: empty or non-JSON is untranslatable.
pub(super) fn parse_body(kind: RouteKind, body: &[u8]) -> Result<Value, TranslateError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(TranslateError("empty response body".into()));
    }
    serde_json::from_slice(body)
        .map_err(|_| TranslateError(format!("failed to decode {} response", kind.as_str())))
}

/// `chat.completion` or `text_completion`.
pub(super) fn object_name(kind: RouteKind) -> &'static str {
    match kind {
        RouteKind::Chat => "chat.completion",
        RouteKind::Completions => "text_completion",
    }
}

/// A fresh `chatcmpl-…` / `cmpl-…` id for upstreams that give none.
pub(super) fn new_id(kind: RouteKind) -> String {
    let prefix = match kind {
        RouteKind::Chat => "chatcmpl",
        RouteKind::Completions => "cmpl",
    };
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Unix seconds now (`created` when the upstream gives none).
pub(super) fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A provider's finish reason → OpenAI's (docs/wire-formats.md, "Finish reasons and usage");
/// unknown values → `stop`, never passed through.
pub(super) fn map_finish_reason(raw: &str) -> &'static str {
    match raw.to_ascii_lowercase().as_str() {
        "length" | "max_tokens" | "model_length" | "model_context_window_exceeded" => "length",
        "tool_calls" | "tool_use" => "tool_calls",
        "function_call" => "function_call",
        "content_filter" => "content_filter",
        _ => "stop",
    }
}

/// A token count from any JSON number (negative, fractional or absurd values clamp).
pub(super) fn token_count(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f > 0.0)
                    .map(|f| f as u64)
            })
            .unwrap_or(0),
        _ => 0,
    }
}

/// `{prompt_tokens, completion_tokens, total_tokens}`.
pub(super) fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
    })
}

/// An upstream `usage` → always an object with the three counts; the provider's other
/// fields (cached/reasoning details) are kept. Missing usage gives zeros.
pub(super) fn normalise_usage(raw: Option<&Value>) -> Value {
    let mut out = raw.and_then(Value::as_object).cloned().unwrap_or_default();
    let prompt = token_count(out.get("prompt_tokens"));
    let completion = token_count(out.get("completion_tokens"));
    let total = match out.get("total_tokens") {
        Some(Value::Number(_)) => token_count(out.get("total_tokens")),
        _ => prompt.saturating_add(completion),
    };
    out.insert("prompt_tokens".into(), Value::from(prompt));
    out.insert("completion_tokens".into(), Value::from(completion));
    out.insert("total_tokens".into(), Value::from(total));
    Value::Object(out)
}

/// A duration in OpenAI's rate-limit reset format (Go's): `20ms`, `1s`, `1.5s`, `6m0s`,
/// `1h2m3s`; a past or present reset is `0s`.
pub(super) fn openai_duration(millis: i64) -> String {
    use std::fmt::Write;
    if millis <= 0 {
        return "0s".to_string();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, ms) = (rest / 1000, rest % 1000);
    let mut out = String::with_capacity(12);
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(out, "{seconds}");
    if ms > 0 {
        let fraction = format!("{ms:03}");
        let _ = write!(out, ".{}", fraction.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::openai_duration;

    #[test]
    fn durations_are_written_as_openai_writes_resets() {
        assert_eq!(openai_duration(-5), "0s");
        assert_eq!(openai_duration(0), "0s");
        assert_eq!(openai_duration(20), "20ms");
        assert_eq!(openai_duration(1000), "1s");
        assert_eq!(openai_duration(1500), "1.5s");
        assert_eq!(openai_duration(8_640), "8.64s");
        assert_eq!(openai_duration(360_000), "6m0s");
        assert_eq!(openai_duration(3_723_000), "1h2m3s");
        assert_eq!(openai_duration(3_600_000), "1h0m0s");
    }
}
