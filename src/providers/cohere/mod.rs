//! Cohere wire format: the v1 API, as Kong targets it (`POST /v1/chat` for chat,
//! `POST /v1/generate` for completions).
//!
//! v1 chat is "one new message + history": system messages go to `preamble`, earlier
//! user/assistant turns to `chat_history` (`USER`/`CHATBOT`), the last user turn to
//! `message` (docs/behaviour.md, "Differences from Kong", 6; deliberately unlike Kong, which sends
//! system messages as `USER` history).
//!
//! Tools are translated to v1's own shape (`parameter_definitions`, not JSON Schema). v1
//! has no tool-call ids and cannot force a call: ids are synthesised on the way back
//! (`call_<n>`) and looked up on the next turn to rebuild the call a `tool` message answers;
//! a forcing `tool_choice` is refused with a 400 rather than silently dropped.
//!
//! Kong sends a request with `tools` to Cohere as an unchanged OpenAI body; we translate
//! to v1 tools instead (docs/wire-formats.md, "Cohere").
//!
//! Streams are v1 NDJSON (`event_type` lines), transcoded by `CohereStream`; their usage
//! follows the same policy as whole answers (`stream-end.response.meta`).

mod embeddings;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use super::{
    Embedder, OpenAiErrorBody, RequestError, RouteKind, TranslateContext, TranslateError,
    Translator, UpstreamRequest,
};
use crate::llm::StreamTranscoder;
pub use stream::CohereStream;

pub struct Cohere;

impl Translator for Cohere {
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

    fn stream(
        &self,
        _ctx: &TranslateContext<'_>,
        kind: RouteKind,
    ) -> Option<Box<dyn StreamTranscoder>> {
        Some(Box::new(CohereStream::new(kind)))
    }

    fn embeddings(&self) -> Option<&dyn Embedder> {
        Some(&embeddings::CohereEmbeddings)
    }
}
