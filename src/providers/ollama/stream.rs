//! Ollama NDJSON streams → OpenAI chunks.

use serde_json::{Map, Value};

use super::response::{finish_reason, openai_tool_call};
use crate::llm::{ChunkEmitter, NdjsonDecoder, ReportedUsage, StreamError, StreamTranscoder};
use crate::providers::shared::token_count;
use crate::providers::{OpenAiErrorBody, TranslateContext};

/// The transcoder for an Ollama NDJSON stream (`/api/chat` or `/api/generate`).
pub(super) fn stream(ctx: &TranslateContext<'_>) -> Box<dyn StreamTranscoder> {
    Box::new(OllamaStream {
        ndjson: NdjsonDecoder::default(),
        state: OllamaState {
            calls: 0,
            route_max_tokens: ctx.tuning.max_tokens,
        },
    })
}

/// Ollama NDJSON → OpenAI chunks. Each line is a whole object: `message.content` (chat) or
/// `response` (generate) fragments, tool calls complete in one line, and usage with
/// `done_reason` on the final `done: true` line; `{"error": …}` is a mid-stream failure.
/// The route type only changes the emitter's output, so one transcoder reads both APIs.
pub struct OllamaStream {
    ndjson: NdjsonDecoder,
    state: OllamaState,
}

struct OllamaState {
    /// Tool calls started so far: the next call's OpenAI `index`.
    calls: u32,
    route_max_tokens: Option<u32>,
}

impl OllamaState {
    fn line(&mut self, line: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let obj: Map<String, Value> = serde_json::from_slice(line).map_err(|e| {
            StreamError::Invalid(format!("ollama stream line is not a JSON object: {e}"))
        })?;
        if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
            out.error(&OpenAiErrorBody {
                message: err.as_str().map_or_else(|| err.to_string(), str::to_string),
                kind: "upstream_error".into(),
                code: None,
                param: None,
            });
            return Ok(());
        }
        if let Some(model) = obj.get("model").and_then(Value::as_str) {
            out.set_response_model(model);
        }
        let done = obj.get("done").and_then(Value::as_bool).unwrap_or(false);
        if !done {
            out.role();
        }
        if let Some(text) = obj.get("response").and_then(Value::as_str) {
            out.content(text);
        }
        if let Some(message) = obj.get("message") {
            if let Some(text) = message.get("content").and_then(Value::as_str) {
                out.content(text);
            }
            if let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) {
                let calls = calls.as_array().ok_or_else(|| {
                    StreamError::Invalid("ollama 'tool_calls' is not an array".into())
                })?;
                for call in calls {
                    let c = openai_tool_call(call, self.calls as usize)
                        .map_err(StreamError::Invalid)?;
                    out.tool_call_start(self.calls, &c.id, c.name, &c.arguments);
                    self.calls += 1;
                }
            }
        }
        if done {
            let completion = obj
                .get("eval_count")
                .filter(|v| !v.is_null())
                .map(|v| token_count(Some(v)));
            // No `prompt_eval_count`: the prompt came from Ollama's cache, 0 evaluated.
            let prompt = token_count(obj.get("prompt_eval_count"));
            out.usage(
                ReportedUsage {
                    prompt: Some(prompt),
                    completion,
                    cached: None,
                },
                true,
            );
            out.finish(finish_reason(
                obj.get("done_reason").and_then(Value::as_str),
                self.calls > 0,
                completion.unwrap_or(0),
                self.route_max_tokens,
            ));
            out.done();
        }
        Ok(())
    }
}

impl StreamTranscoder for OllamaStream {
    fn feed(&mut self, bytes: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let state = &mut self.state;
        self.ndjson.feed(bytes, |line| state.line(line, out))
    }

    fn finish(&mut self, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let state = &mut self.state;
        self.ndjson.finish(|line| state.line(line, out))
    }
}
