//! Provider translators: pure functions, no I/O (the upstream actor does the I/O).
//!
//! Each provider turns an OpenAI-format request body into its upstream URL, headers and
//! body, and turns its upstream answer (2xx body or error body) back into the OpenAI shape
//! of the route type. Credentials are injected by the proxy afterwards (header, query or
//! body parameter, Kong's `allow_override`), so translators never see them.
//!
//! Request bodies are handled as `serde_json::Map`: known fields are mapped, and fields the
//! provider shares with OpenAI pass through untouched as raw JSON values.

pub mod anthropic;
pub mod cohere;
pub mod llama2;
/// Ollama's native API, shared by `llama2_format: ollama` and `mistral_format: ollama`.
pub mod ollama;
pub mod openai;

use serde_json::{Map, Value};

use crate::llm::StreamTranscoder;
pub use crate::llm::UpstreamError;
use crate::vocab::{ModelOptions, ServiceOptions};
pub use crate::vocab::{ProviderKind, RouteKind};

/// Everything a translator may read besides the request: the service's options and the
/// route's model configuration.
#[derive(Debug, Clone)]
pub struct TranslateContext<'a> {
    pub provider: ProviderKind,
    /// The service's full upstream URL (Kong semantics); `None` = the provider's default.
    pub upstream_url: Option<&'a str>,
    pub options: &'a ServiceOptions,
    /// The model to call: the route's `model.name`, else the client's `model`.
    pub model: &'a str,
    /// Route tuning options: they override the client's values (Kong ≥ 3.8).
    pub tuning: &'a ModelOptions,
    /// `max_tokens` for providers that require it when neither route nor client set it.
    pub default_max_tokens: u32,
}

/// What to send upstream. The method is always POST (docs/behaviour.md,
/// "Differences from Kong", 8).
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub url: String,
    /// Provider headers (e.g. `anthropic-version`); `content-type: application/json` is implied.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A request the provider cannot honour: 400 naming the parameter (never silently dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub param: Option<String>,
    pub message: String,
}

impl RequestError {
    pub fn param(param: &str, message: impl Into<String>) -> Self {
        RequestError {
            param: Some(param.to_string()),
            message: message.into(),
        }
    }
}

/// An upstream 2xx body that cannot be translated: the proxy answers 502
/// `transformation failed from type <provider>://<route_type>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResponseError(pub String);

/// One provider's wire format.
pub trait Translator: Send + Sync {
    /// OpenAI-format request body → upstream request. The body's `model` has already been
    /// checked by the proxy; `ctx.model` is the model to call.
    fn request(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: Map<String, Value>,
    ) -> Result<UpstreamRequest, RequestError>;

    /// Upstream 2xx body → OpenAI `chat.completion` / `text_completion` object, with
    /// `usage` as `{prompt_tokens, completion_tokens, total_tokens}` and mapped
    /// `finish_reason`s.
    fn response(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: &[u8],
    ) -> Result<Value, ResponseError>;

    /// Upstream non-2xx body → OpenAI error (the status is passed through by the proxy).
    fn error(&self, status: u16, body: &[u8]) -> UpstreamError;

    /// The transcoder for one streamed 2xx answer (docs/behaviour.md, "Streaming rules"); `None`
    /// when this provider (in this format) cannot stream, which the proxy refuses with a 400 before
    /// sending.
    fn stream(
        &self,
        _ctx: &TranslateContext<'_>,
        _kind: RouteKind,
    ) -> Option<Box<dyn StreamTranscoder>> {
        None
    }
}

/// The translator for a provider.
pub fn translator(kind: ProviderKind) -> &'static dyn Translator {
    match kind {
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::Cohere => &cohere::Cohere,
        ProviderKind::Llama2(_) => &llama2::Llama2,
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::Mistral(_) => &openai::OpenAi,
    }
}

/// Applies route tuning options over the client's values (route wins, Kong ≥ 3.8).
pub fn apply_tuning(body: &mut Map<String, Value>, tuning: &ModelOptions) {
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            body.insert(key.to_string(), v);
        }
    };
    set("max_tokens", tuning.max_tokens.map(Value::from));
    set("temperature", tuning.temperature.map(Value::from));
    set("top_p", tuning.top_p.map(Value::from));
    set("top_k", tuning.top_k.map(Value::from));
}

/// Best-effort message of an error body in any provider's shape; `upstream_error` typed.
pub fn generic_error(status: u16, body: &[u8]) -> UpstreamError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("error").filter(|e| e.is_string()))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("upstream answered HTTP {status}"));
    let kind = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/type").and_then(Value::as_str))
        .unwrap_or("upstream_error")
        .to_string();
    UpstreamError {
        message,
        kind,
        code: None,
        param: None,
    }
}
