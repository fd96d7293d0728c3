//! OpenAI wire format, spoken in four dialects (`Dialect`): OpenAI itself, Azure OpenAI,
//! Mistral (`mistral_format: openai`) and the OpenAI-compatible self-hosted servers of
//! `llama2_format: openai`.
//!
//! Requests pass through nearly untouched (Kong's OpenAI driver): route tuning, `model`,
//! an explicit `stream`, `top_k` removed; Mistral additionally gets its renames and an
//! allow-list, because it answers 422 to unknown fields. Responses pass through too, but
//! are checked (`choices` present) and normalised (`usage` object, OpenAI finish reasons,
//! `id`/`created`/`model` present).

mod embeddings;
mod endpoint;
mod rate_limits;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::shared::normalise_error;
use super::{
    Dialect, Embedder, OpenAiErrorBody, RequestError, RouteKind, TranslateContext, TranslateError,
    Translator, UpstreamRequest, Verbatim,
};
use crate::llm::StreamTranscoder;
pub use stream::OpenAiStream;

/// The translator of one OpenAI dialect.
#[derive(Debug)]
pub struct OpenAiCompatible(Dialect);

impl OpenAiCompatible {
    /// The translator of `dialect` (one static instance per dialect).
    pub fn of(dialect: Dialect) -> &'static OpenAiCompatible {
        match dialect {
            Dialect::OpenAi => &OpenAiCompatible(Dialect::OpenAi),
            Dialect::Azure => &OpenAiCompatible(Dialect::Azure),
            Dialect::Mistral => &OpenAiCompatible(Dialect::Mistral),
            Dialect::SelfHosted => &OpenAiCompatible(Dialect::SelfHosted),
        }
    }
}

impl Translator for OpenAiCompatible {
    fn request(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: Map<String, Value>,
    ) -> Result<UpstreamRequest, RequestError> {
        let url = endpoint::url(self.0, ctx, kind)?;
        request::compatible_request(ctx, kind, body, request::body_dialect(self.0, kind), url)
    }

    fn response(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: &[u8],
    ) -> Result<Value, TranslateError> {
        response::compatible_response(ctx, kind, body)
    }

    fn verbatim(&self, kind: RouteKind, body: &[u8]) -> Option<Verbatim> {
        response::verbatim(kind, body)
    }

    fn error(&self, status: u16, body: &[u8]) -> OpenAiErrorBody {
        normalise_error(status, body)
    }

    fn rate_limit_headers<'h>(
        &self,
        headers: &'h [(String, String)],
        _now: DateTime<Utc>,
        emit: &mut dyn FnMut(&'static str, Cow<'h, str>),
    ) {
        if self.0 == Dialect::Mistral {
            rate_limits::mistral(headers, emit);
        }
    }

    fn stream(
        &self,
        _ctx: &TranslateContext<'_>,
        _kind: RouteKind,
    ) -> Option<Box<dyn StreamTranscoder>> {
        Some(Box::new(OpenAiStream::default()))
    }

    fn embeddings(&self) -> Option<&dyn Embedder> {
        Some(embeddings::OpenAiEmbeddings::of(self.0))
    }
}
