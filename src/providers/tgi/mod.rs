//! The raw format of self-hosted Llama 2 (`llama2_format: raw`, `upstream_url` required):
//! a Llama 2 chat prompt in `{"inputs", "parameters"}` (HF TGI style, Kong's raw format),
//! built with the standard template and keeping assistant turns (docs/behaviour.md,
//! "Differences from Kong", 7). Streams are TGI's token SSE (`TgiStream`); error bodies
//! (TGI's `{"error","error_type"}`) are read by the OpenAI family's reader.

mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use super::shared::normalise_error;
use super::{
    OpenAiErrorBody, RequestError, RouteKind, TranslateContext, TranslateError, Translator,
    UpstreamRequest,
};
use crate::llm::StreamTranscoder;
pub use stream::TgiStream;

pub struct Tgi;

impl Translator for Tgi {
    fn request(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: Map<String, Value>,
    ) -> Result<UpstreamRequest, RequestError> {
        request::raw_request(ctx, kind, body)
    }

    fn response(
        &self,
        ctx: &TranslateContext<'_>,
        kind: RouteKind,
        body: &[u8],
    ) -> Result<Value, TranslateError> {
        response::raw_response(ctx, kind, body)
    }

    fn error(&self, status: u16, body: &[u8]) -> OpenAiErrorBody {
        normalise_error(status, body)
    }

    fn stream(
        &self,
        _ctx: &TranslateContext<'_>,
        _kind: RouteKind,
    ) -> Option<Box<dyn StreamTranscoder>> {
        Some(Box::new(TgiStream::default()))
    }
}
