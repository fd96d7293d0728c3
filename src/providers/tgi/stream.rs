//! TGI token SSE → OpenAI chunks.

use serde_json::{Map, Value};

use crate::llm::{
    ChunkEmitter, ReportedUsage, SseDecoder, SseEvent, StreamError, StreamTranscoder,
};
use crate::providers::OpenAiErrorBody;
use crate::providers::shared::{map_finish_reason, token_count};

/// TGI's token stream (`/generate_stream`, or `POST /` with `stream: true`): SSE events
/// `{"token": {"text", "special"}, "generated_text": null, "details": null}`; the last one
/// has `generated_text` and (with `details: true`) `details.finish_reason` /
/// `generated_tokens`. Errors are `{"error", "error_type"}` events. The prompt's token
/// count is never given.
#[derive(Default)]
pub struct TgiStream {
    sse: SseDecoder,
    /// Non-blank text was sent: the answer's leading whitespace is trimmed, as in the
    /// non-streamed answer.
    started: bool,
}

impl TgiStream {
    fn event(
        started: &mut bool,
        event: SseEvent,
        out: &mut ChunkEmitter,
    ) -> Result<(), StreamError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        // Not TGI's, but some TGI-style servers end this way.
        if data == "[DONE]" {
            out.done();
            return Ok(());
        }
        let obj: Map<String, Value> = serde_json::from_str(data)
            .map_err(|e| StreamError::Invalid(format!("stream event is not a JSON object: {e}")))?;
        if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
            let kind = obj
                .get("error_type")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .unwrap_or("upstream_error");
            out.error(&OpenAiErrorBody {
                message: err.as_str().map_or_else(|| err.to_string(), str::to_string),
                kind: kind.to_string(),
                code: None,
                param: None,
            });
            return Ok(());
        }
        out.role();
        if let Some(token) = obj.get("token").filter(|t| t.is_object()) {
            // Special tokens (`</s>`, `<s>`) are control, not text.
            let special = token.get("special").and_then(Value::as_bool) == Some(true);
            if let Some(text) = token.get("text").and_then(Value::as_str)
                && !special
            {
                let text = if *started { text } else { text.trim_start() };
                if !text.is_empty() {
                    *started = true;
                    out.content(text);
                }
            }
        }
        let present = |key: &str| obj.get(key).is_some_and(|v| !v.is_null());
        if present("generated_text") || present("details") {
            let details = obj.get("details");
            let completion = details
                .and_then(|d| d.get("generated_tokens"))
                .filter(|v| !v.is_null())
                .map(|v| token_count(Some(v)));
            out.usage(
                ReportedUsage {
                    prompt: None,
                    completion,
                    cached: None,
                },
                true,
            );
            // `eos_token` / `stop_sequence` → stop, `length` → length.
            out.finish(
                details
                    .and_then(|d| d.get("finish_reason"))
                    .and_then(Value::as_str)
                    .map_or("stop", map_finish_reason),
            );
            out.done();
        }
        Ok(())
    }
}

impl StreamTranscoder for TgiStream {
    fn feed(&mut self, bytes: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let started = &mut self.started;
        self.sse
            .feed(bytes, |event| Self::event(started, event, out))
    }

    fn finish(&mut self, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let started = &mut self.started;
        self.sse.finish(|event| Self::event(started, event, out))
    }
}
