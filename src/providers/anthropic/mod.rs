//! Anthropic wire format: the Messages API (`/v1/messages`) for `llm/v1/chat` and the legacy
//! Text Completions API (`/v1/complete`) for `llm/v1/completions`, as Kong does. Streams of
//! both are transcoded by `AnthropicStream` (named-event SSE → OpenAI chunks).
//!
//! Deliberate differences from Kong (docs/behaviour.md, "Differences from Kong", 4 and 5): `stop`,
//! `top_p`, `top_k` and `max_completion_tokens` are mapped instead of dropped, `max_tokens`
//! defaults to `ctx.default_max_tokens`, every system/developer message is kept (joined in order),
//! consecutive same-role turns are merged, empty text is not forwarded, `finish_reason` is mapped
//! to OpenAI values, responses carry an `id`, and `usage` is always an object.

mod rate_limits;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{
    OpenAiErrorBody, RequestError, RouteKind, TranslateContext, TranslateError, Translator,
    UpstreamRequest,
};
use crate::llm::StreamTranscoder;
pub use stream::AnthropicStream;

/// The tool that carries a JSON-mode answer (request.rs, `json_mode`): a call to it is the
/// message's text, not a tool call, in whole and streamed answers.
const JSON_TOOL: &str = "tollgate_json_answer";

pub struct Anthropic;

impl Translator for Anthropic {
    fn request(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: Map<String, Value>,
    ) -> Result<UpstreamRequest, RequestError> {
        request::request(ctx, kind, body)
    }

    fn response(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: &[u8],
    ) -> Result<Value, TranslateError> {
        response::response(ctx, kind, body)
    }

    fn error(&self, status: u16, body: &[u8]) -> OpenAiErrorBody {
        response::error(status, body)
    }

    fn rate_limit_headers<'h>(
        &self,
        headers: &'h [(String, String)],
        now: DateTime<Utc>,
        emit: &mut dyn FnMut(&'static str, Cow<'h, str>),
    ) {
        rate_limits::rate_limit_headers(headers, now, emit);
    }

    fn stream(
        &self,
        _ctx: &TranslateContext<'_>,
        kind: RouteKind,
    ) -> Option<Box<dyn StreamTranscoder>> {
        Some(Box::new(AnthropicStream::new(kind)))
    }
}
