//! Provider translators: pure functions, no I/O (the upstream actor does the I/O).
//!
//! Each wire format turns an OpenAI-format request body into its upstream URL, headers and
//! body, and turns its upstream answer (2xx body or error body) back into the OpenAI shape
//! of the route type. Credentials are injected by the proxy afterwards (header, query or
//! body parameter, Kong's `allow_override`), so translators never see them.
//!
//! The dispatch key is the wire format, not the provider: `WireFormat::of` maps a
//! provider (with its format option) to one, once, when the snapshot is compiled
//! (`snapshot::ServiceEntry::wire`). One folder per wire format, each with `request.rs`,
//! `response.rs`, `stream.rs` and `tests.rs`; `shared.rs` holds what the OpenAI-family
//! formats share.
//!
//! Request bodies are handled as `serde_json::Map`: known fields are mapped, and fields the
//! provider shares with OpenAI pass through untouched as raw JSON values.

pub mod anthropic;
pub mod cohere;
pub mod embeddings;
pub mod ollama;
pub mod openai;
mod shared;
#[cfg(test)]
pub(crate) mod test_support;
pub mod tgi;
mod wire;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

pub use crate::llm::OpenAiErrorBody;
use crate::llm::StreamTranscoder;
use crate::vocab::{ModelOptions, ServiceOptions};
pub use crate::vocab::{ProviderKind, RouteKind};
pub use wire::{Dialect, WireFormat};

/// Everything a translator may read besides the request: the service's options and the
/// route's model configuration.
#[derive(Debug, Clone)]
pub struct TranslateContext<'a> {
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
/// `transformation failed from type <provider>://<route_type>: <reason>`. (Not named
/// `ResponseError`, which is actix-web's trait for errors rendered as responses.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TranslateError(pub String);

/// What the proxy needs of an answer it sends as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verbatim {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub model: String,
    /// The first choice's.
    pub finish_reason: String,
}

/// One wire format.
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
    /// `finish_reason`s. A count the provider does not report at all is left out of
    /// `usage`: the proxy estimates it and marks the record (docs/behaviour.md, "Responses").
    fn response(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: &[u8],
    ) -> Result<Value, TranslateError>;

    /// Upstream 2xx body that `response` would return unchanged: its facts, read without
    /// building a tree, so the proxy can send the body as received. `None` (the default)
    /// when a translation is needed or the body is not certainly in the OpenAI shape;
    /// `response` then decides.
    fn verbatim(&self, _kind: RouteKind, _body: &[u8]) -> Option<Verbatim> {
        None
    }

    /// Upstream non-2xx body → OpenAI error (the status is passed through by the proxy).
    fn error(&self, status: u16, body: &[u8]) -> OpenAiErrorBody;

    /// The provider's own rate-limit headers of an answer (whole or streamed, success or
    /// error), given to `emit` under OpenAI's names (docs/wire-formats.md, "Rate-limit
    /// headers"); `now` turns a reset given as a time into OpenAI's duration. Headers
    /// already named as OpenAI names them pass through without this (the default does
    /// nothing), and nothing is allocated for an answer without such headers.
    fn rate_limit_headers<'h>(
        &self,
        _headers: &'h [(String, String)],
        _now: DateTime<Utc>,
        _emit: &mut dyn FnMut(&'static str, Cow<'h, str>),
    ) {
    }

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

    /// This wire format's embeddings translator (docs/behaviour.md, "Embeddings"); `None`
    /// when the provider has no embeddings API. Its errors are read by [`Translator::error`].
    fn embeddings(&self) -> Option<&dyn Embedder> {
        None
    }
}

/// One wire format's embeddings API (`llm/v1/embeddings`).
pub trait Embedder: Send + Sync {
    /// OpenAI embeddings request body → upstream request; `ctx.model` is the model to call.
    fn request(
        &self,
        ctx: &TranslateContext<'_>,
        body: Map<String, Value>,
    ) -> Result<UpstreamRequest, RequestError>;

    /// Upstream 2xx body → OpenAI's `{"object": "list", "data": [{"object": "embedding",
    /// "index", "embedding"}], "model", "usage"}`, `usage` only when the provider counted the
    /// input. Embeddings are floats, or base64 strings where the client's `encoding_format`
    /// was forwarded; the proxy puts them in the client's encoding
    /// ([`embeddings::encode`]).
    fn response(&self, ctx: &TranslateContext<'_>, body: &[u8]) -> Result<Value, TranslateError>;

    /// Upstream 2xx body that is already OpenAI's answer, with its usage and every vector
    /// in `encoding`: its prompt tokens and model, read without building a tree, so the
    /// proxy sends it as received. `None` (the default) when `response` must decide.
    fn verbatim(&self, _body: &[u8], _encoding: embeddings::Encoding) -> Option<(u64, String)> {
        None
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
pub fn generic_error(status: u16, body: &[u8]) -> OpenAiErrorBody {
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
    OpenAiErrorBody {
        message,
        kind,
        code: None,
        param: None,
    }
}
