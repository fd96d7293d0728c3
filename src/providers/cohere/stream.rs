//! Cohere v1 NDJSON streams → OpenAI chunks.

use serde_json::{Map, Value};

use crate::llm::{ChunkEmitter, NdjsonDecoder, ReportedUsage, StreamError, StreamTranscoder};

use super::response::{cached_count, call_id, finish_reason, tool_call_parts, usage_counts};
use crate::providers::{OpenAiErrorBody, RouteKind, TranslateError};

/// v1 NDJSON streams (`/chat` and `/generate`): one JSON object per line, keyed by
/// `event_type` (docs/wire-formats.md, "Cohere").
pub struct CohereStream {
    lines: NdjsonDecoder,
    state: StreamState,
}

struct StreamState {
    kind: RouteKind,
    /// Cohere's `tool_call_delta.index` of each call started so far; the position is our
    /// OpenAI index (a per-answer counter, whatever Cohere numbers its calls).
    calls: Vec<Option<u64>>,
    /// Text was streamed (so a `tool-calls-generation` text is not sent a second time).
    content_sent: bool,
}

impl CohereStream {
    pub fn new(kind: RouteKind) -> CohereStream {
        CohereStream {
            lines: NdjsonDecoder::default(),
            state: StreamState {
                kind,
                calls: Vec::new(),
                content_sent: false,
            },
        }
    }
}

impl StreamTranscoder for CohereStream {
    fn feed(&mut self, bytes: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let state = &mut self.state;
        self.lines.feed(bytes, |line| state.line(line, out))
    }

    fn finish(&mut self, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let state = &mut self.state;
        self.lines.finish(|line| state.line(line, out))
    }
}

fn stream_error(message: impl Into<String>) -> OpenAiErrorBody {
    OpenAiErrorBody {
        message: message.into(),
        kind: "upstream_error".into(),
        code: None,
        param: None,
    }
}

impl StreamState {
    fn line(&mut self, line: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let event: Map<String, Value> = serde_json::from_slice(line)
            .map_err(|e| StreamError::Invalid(format!("stream line is not a JSON object: {e}")))?;
        let chat = self.kind == RouteKind::Chat;
        match event.get("event_type").and_then(Value::as_str) {
            // A failure reported in Cohere's error shape instead of an event.
            None => {
                if let Some(message) = event.get("message").and_then(Value::as_str) {
                    out.error(&stream_error(message));
                }
            }
            Some("stream-start") => out.role(),
            Some("text-generation") => {
                // Only choice 0 exists (n > 1 is refused for streams); a stray other
                // generation must not be mixed into it.
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(text) = event.get("text").and_then(Value::as_str)
                    && index == 0
                {
                    self.content(text, out);
                }
            }
            Some("tool-calls-chunk") if chat => self.tool_calls_chunk(&event, out),
            Some("tool-calls-generation") if chat => {
                if let Some(text) = event.get("text").and_then(Value::as_str)
                    && !self.content_sent
                {
                    self.content(text, out);
                }
                self.whole_calls(event.get("tool_calls"), out)?;
            }
            Some("stream-end") => self.end(&event, out)?,
            Some("stream-error") => {
                let message = event
                    .get("err")
                    .or_else(|| event.get("message"))
                    .and_then(Value::as_str)
                    .filter(|m| !m.trim().is_empty())
                    .unwrap_or("cohere reported an error in the stream");
                out.error(&stream_error(message));
            }
            // search-queries-generation, search-results, citation-generation, debug, and
            // event types newer than this code: nothing to say in OpenAI's format.
            _ => {}
        }
        Ok(())
    }

    fn content(&mut self, text: &str, out: &mut ChunkEmitter) {
        if !text.is_empty() {
            self.content_sent = true;
            out.content(text);
        }
    }

    /// A `tool_call_delta`: a `name` starts a call, `parameters` fragments extend it. The
    /// chunk's `text` (the model's tool plan) is content, as in the non-streamed answer.
    fn tool_calls_chunk(&mut self, event: &Map<String, Value>, out: &mut ChunkEmitter) {
        if let Some(text) = event.get("text").and_then(Value::as_str) {
            self.content(text, out);
        }
        let Some(delta) = event.get("tool_call_delta").and_then(Value::as_object) else {
            return;
        };
        let index = delta.get("index").and_then(Value::as_u64);
        let name = delta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let fragment = delta
            .get("parameters")
            .and_then(Value::as_str)
            .unwrap_or("");
        let known = match index {
            Some(i) => self.calls.iter().position(|c| *c == Some(i)),
            // Without an index a fragment can only extend the latest call.
            None if name.is_none() => self.calls.len().checked_sub(1),
            None => None,
        };
        match (known, name) {
            (Some(k), _) => out.tool_call_arguments(openai_index(k), fragment),
            (None, Some(name)) => {
                let k = self.calls.len();
                self.calls.push(index);
                out.tool_call_start(openai_index(k), &call_id(k), name, fragment);
            }
            // Arguments of a call whose name never came cannot be told apart; Cohere
            // repeats every call whole in `tool-calls-generation`, which sends it.
            (None, None) => {}
        }
    }

    /// Whole calls (`tool-calls-generation`, or the final response): those not already
    /// streamed as chunks are sent in one piece each.
    fn whole_calls(
        &mut self,
        calls: Option<&Value>,
        out: &mut ChunkEmitter,
    ) -> Result<(), StreamError> {
        let calls = match calls {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Array(calls)) => calls,
            Some(_) => return Err(StreamError::Invalid("tool_calls is not an array".into())),
        };
        for (k, call) in calls.iter().enumerate().skip(self.calls.len()) {
            let (name, arguments) = tool_call_parts(call)
                .map_err(|e| StreamError::Invalid(format!("tool_calls[{k}]: {e}")))?;
            self.calls.push(None);
            out.tool_call_start(openai_index(k), &call_id(k), name, &arguments);
        }
        Ok(())
    }

    /// `stream-end`: usage from `response.meta`, the finish chunk, `[DONE]`. The response
    /// repeats the whole answer, which was already streamed.
    fn end(
        &mut self,
        event: &Map<String, Value>,
        out: &mut ChunkEmitter,
    ) -> Result<(), StreamError> {
        let response = event.get("response").and_then(Value::as_object);
        if let Some(response) = response {
            let (prompt, completion) = usage_counts(response).unzip();
            out.usage(
                ReportedUsage {
                    prompt,
                    completion,
                    cached: cached_count(response),
                },
                true,
            );
            if self.kind == RouteKind::Chat {
                // Calls that arrived in no earlier event.
                self.whole_calls(response.get("tool_calls"), out)?;
            }
        }
        let reason = event
            .get("finish_reason")
            .or_else(|| response.and_then(|r| r.get("finish_reason")))
            .or_else(|| {
                response
                    .and_then(|r| r.get("generations"))
                    .and_then(|g| g.get(0))
                    .and_then(|g| g.get("finish_reason"))
            });
        match finish_reason(reason) {
            Ok(reason) => {
                out.finish(if self.calls.is_empty() {
                    reason
                } else {
                    "tool_calls"
                });
                out.done();
            }
            Err(TranslateError(message)) => out.error(&stream_error(message)),
        }
        Ok(())
    }
}

/// Tool-call indexes are per answer, so a handful; saturate rather than wrap.
fn openai_index(k: usize) -> u32 {
    u32::try_from(k).unwrap_or(u32::MAX)
}
