//! The proxy's rendering of an [`Error`]: OpenAI's
//! `{"error":{"message","type","param","code"}}`, a superset of Kong's
//! `{"error":{"message"}}` (docs/behaviour.md, "Request order").

use actix_web::{HttpResponse, ResponseError, http::StatusCode};

use super::{Error, ErrorSource};

/// What the OpenAI error shape adds: the offending parameter, and `type`/`code` when the
/// defaults derived from the status do not fit (an upstream's own type, `model_not_found`).
#[derive(Debug, Clone, Default)]
pub struct OpenAiDetail {
    pub param: Option<String>,
    pub kind: Option<String>,
    pub code: Option<String>,
    /// Response headers the error carries (a limit refusal's `x-ratelimit-*`).
    pub headers: Vec<(&'static str, String)>,
}

/// An [`Error`] as the proxy answers it: only this type renders the OpenAI shape.
#[derive(Debug)]
pub struct OpenAiError(pub Error);

impl From<Error> for OpenAiError {
    fn from(e: Error) -> Self {
        OpenAiError(e)
    }
}

impl std::fmt::Display for OpenAiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        render(&self.0)
    }
}

fn render(e: &Error) -> HttpResponse {
    e.log_if_unlogged_gateway_fault();
    let default_type = match e.status.as_u16() {
        401 => "authentication_error",
        403 => "permission_denied",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ if e.source == ErrorSource::Upstream => "upstream_error",
        _ => "api_error",
    };
    let default_code = match e.status.as_u16() {
        401 => Some("invalid_api_key"),
        403 => Some("permission_denied"),
        413 => Some("request_too_large"),
        415 => Some("unsupported_media_type"),
        502 => Some("bad_gateway"),
        504 => Some("upstream_timeout"),
        _ => None,
    };
    let detail = e.openai.as_deref();
    let body = serde_json::json!({"error": {
        "message": e.message,
        "type": detail.and_then(|d| d.kind.as_deref()).unwrap_or(default_type),
        "param": detail.and_then(|d| d.param.as_deref()),
        "code": detail.and_then(|d| d.code.as_deref()).or(default_code),
    }});
    let mut response = HttpResponse::build(e.status);
    if let Some(after) = e.retry_after {
        response.insert_header(("retry-after", after.as_secs().max(1).to_string()));
    }
    for (name, value) in detail.map(|d| d.headers.as_slice()).unwrap_or_default() {
        response.insert_header((*name, value.as_str()));
    }
    response.json(body)
}
