//! OpenAI-format SSE → OpenAI chunks, the dialects' differences normalised.

use serde_json::{Map, Value};

use crate::llm::{ChunkEmitter, SseDecoder, SseEvent, StreamError, StreamTranscoder};

use crate::providers::OpenAiErrorBody;
use crate::providers::shared::{map_finish_reason, normalise_error};

/// OpenAI-format SSE (OpenAI, Azure, Mistral, OpenAI-compatible servers): each `data:`
/// event is already a chunk. The dialects' differences are normalised here (finish
/// reasons, tool-call `index`/`type`/`arguments`), then the emitter applies the streaming rules.
#[derive(Default)]
pub struct OpenAiStream {
    sse: SseDecoder,
    calls: ToolCallIndexes,
}

impl OpenAiStream {
    fn event(
        event: SseEvent,
        calls: &mut ToolCallIndexes,
        out: &mut ChunkEmitter,
    ) -> Result<(), StreamError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            out.done();
            return Ok(());
        }
        let mut chunk: Map<String, Value> = serde_json::from_str(data)
            .map_err(|e| StreamError::Invalid(format!("stream event is not a JSON object: {e}")))?;
        // OpenAI/Azure/vLLM send `{"error":…}`, Mistral `{"object":"error",…}`.
        if chunk.get("error").is_some_and(|e| !e.is_null())
            || chunk.get("object").and_then(Value::as_str) == Some("error")
            || event.event.as_deref() == Some("error")
        {
            out.error(&normalise_error(200, data.as_bytes()));
            return Ok(());
        }
        if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
            for (position, choice) in choices.iter_mut().enumerate() {
                let Some(choice) = choice.as_object_mut() else {
                    continue;
                };
                let number = choice
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64);
                if let Some(Value::Array(deltas)) = choice
                    .get_mut("delta")
                    .and_then(|d| d.get_mut("tool_calls"))
                {
                    for call in deltas.iter_mut().filter_map(Value::as_object_mut) {
                        calls.normalise(number, call);
                    }
                }
                let Some(raw) = choice.get("finish_reason").and_then(Value::as_str) else {
                    continue;
                };
                let reason = if raw == "error" {
                    // Mistral's `error` (docs/wire-formats.md, "Mistral"): keep a produced answer,
                    // else the stream failed.
                    if out.streamed_chars() == 0 && !has_output(choice) {
                        out.error(&OpenAiErrorBody {
                            message: "upstream finished with finish_reason 'error'".into(),
                            kind: "upstream_error".into(),
                            code: None,
                            param: None,
                        });
                        return Ok(());
                    }
                    "stop"
                } else {
                    map_finish_reason(raw)
                };
                choice.insert("finish_reason".into(), Value::from(reason));
            }
        }
        out.passthrough(chunk);
        Ok(())
    }
}

impl StreamTranscoder for OpenAiStream {
    fn feed(&mut self, bytes: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let calls = &mut self.calls;
        self.sse.feed(bytes, |event| Self::event(event, calls, out))
    }

    fn finish(&mut self, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let calls = &mut self.calls;
        self.sse.finish(|event| Self::event(event, calls, out))
    }
}

/// Whether a streamed choice carries text or tool calls.
pub(super) fn has_output(choice: &Map<String, Value>) -> bool {
    let delta = choice.get("delta");
    let text = delta
        .and_then(|d| d.get("content"))
        .or_else(|| choice.get("text"))
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    let calls = delta
        .and_then(|d| d.get("tool_calls"))
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    text || calls
}

/// Per-response tool-call numbering (docs/behaviour.md, "Streaming rules": `index` counts tool
/// calls 0, 1, 2, … per choice). OpenAI numbers its fragments already; Mistral sends each call
/// whole, without `index` or with `index: 0` for every call, so a fragment that brings a new `id`
/// starts a new call.
#[derive(Default)]
struct ToolCallIndexes {
    seen: Vec<SeenCall>,
}

struct SeenCall {
    choice: u64,
    upstream: Option<u64>,
    id: Option<String>,
    index: u32,
}

impl ToolCallIndexes {
    /// Sets the call's `index`; a call's first fragment also gets `type: function` (SDKs
    /// that accumulate calls require it) and object `arguments` become the JSON string
    /// OpenAI sends.
    fn normalise(&mut self, choice: u64, call: &mut Map<String, Value>) {
        let upstream = call.get("index").and_then(Value::as_u64);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let mut mine = self.seen.iter().rev().filter(|s| s.choice == choice);
        let known = match (upstream, id) {
            (Some(u), Some(id)) => mine.find(|s| s.upstream == Some(u)).filter(|s| {
                // Some servers repeat the id on every fragment of a call.
                s.id.as_deref().is_none_or(|seen| seen == id)
            }),
            (Some(u), None) => mine.find(|s| s.upstream == Some(u)),
            (None, Some(id)) => mine.find(|s| s.id.as_deref() == Some(id)),
            (None, None) => mine.next(),
        }
        .map(|s| s.index);
        let index = match known {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.seen.iter().filter(|s| s.choice == choice).count())
                    .unwrap_or(u32::MAX);
                self.seen.push(SeenCall {
                    choice,
                    upstream,
                    id: id.map(str::to_string),
                    index,
                });
                if !call.contains_key("type") {
                    call.insert("type".into(), Value::from("function"));
                }
                index
            }
        };
        call.insert("index".into(), Value::from(index));
        if let Some(Value::Object(function)) = call.get_mut("function")
            && let Some(arguments) = function.get_mut("arguments")
            && !arguments.is_string()
            && !arguments.is_null()
        {
            *arguments = Value::from(arguments.to_string());
        }
    }
}
