//! Ollama's native API (`/api/chat`, `/api/generate`; docs/wire-formats.md, "Llama 2 and Ollama"),
//! spoken by `llama2_format: ollama` and `mistral_format: ollama` — the one place this mapping
//! lives.
//!
//! Request (Kong's `to_ollama`, extended): `{model, messages | prompt, stream, options:
//! {num_predict, temperature, top_p, top_k, seed, stop, penalties}, format, tools}`, always
//! sent to the service's `upstream_url`. Response: `message` / `response`, usage from
//! `prompt_eval_count` / `eval_count`, `done_reason` mapped to OpenAI finish reasons.
//! Streams are NDJSON (`OllamaStream`), Ollama's default: non-streamed requests must say
//! `"stream": false`. Error bodies (`{"error":"…"}`) are read by the OpenAI family's reader.

mod embeddings;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use super::shared::normalise_error;
use super::{
    Embedder, OpenAiErrorBody, RequestError, RouteKind, TranslateContext, TranslateError,
    Translator, UpstreamRequest,
};
use crate::llm::StreamTranscoder;
pub use stream::OllamaStream;

pub struct Ollama;

impl Translator for Ollama {
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
        normalise_error(status, body)
    }

    fn stream(
        &self,
        ctx: &TranslateContext<'_>,
        _kind: RouteKind,
    ) -> Option<Box<dyn StreamTranscoder>> {
        Some(stream::stream(ctx))
    }

    fn embeddings(&self) -> Option<&dyn Embedder> {
        Some(&embeddings::OllamaEmbeddings)
    }
}
