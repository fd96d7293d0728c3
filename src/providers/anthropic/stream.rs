//! Anthropic named-event SSE → OpenAI chunks.

use serde_json::Value;

use crate::llm::{
    ChunkEmitter, ReportedUsage, SseDecoder, SseEvent, StreamError, StreamTranscoder,
};

use super::JSON_TOOL;
use super::response::{finish_reason, json_finish_reason};
use crate::providers::{OpenAiErrorBody, RouteKind};

/// Anthropic's named-event SSE (Messages API, docs/wire-formats.md, "Anthropic") and the legacy
/// `/v1/complete` stream's `completion` events (docs/wire-formats.md, "Anthropic"), transcoded into
/// OpenAI chunks. Both families are understood on both routes, as the non-streaming completions
/// path accepts a Messages-API answer too (an `upstream_url` pointing at `/v1/messages`).
pub struct AnthropicStream {
    sse: SseDecoder,
    state: StreamState,
}

struct StreamState {
    kind: RouteKind,
    /// The `tool_use` blocks seen so far, in order: a tool call's OpenAI `index` is its
    /// position here, not Anthropic's content-block index (text blocks share that count).
    tools: Vec<ToolBlock>,
    /// JSON mode's forced tool block (mod.rs, `JSON_TOOL`): its input streams as text; and
    /// whether any of it came.
    json_block: Option<(u64, bool)>,
    /// Prompt-side counts so far: `message_delta` may repeat them, or not.
    input: Option<u64>,
    cache_write: Option<u64>,
    cache_read: Option<u64>,
}

struct ToolBlock {
    /// Anthropic's content-block index.
    block: u64,
    has_arguments: bool,
}

impl AnthropicStream {
    pub fn new(kind: RouteKind) -> AnthropicStream {
        AnthropicStream {
            sse: SseDecoder::default(),
            state: StreamState {
                kind,
                tools: Vec::new(),
                json_block: None,
                input: None,
                cache_write: None,
                cache_read: None,
            },
        }
    }
}

impl StreamTranscoder for AnthropicStream {
    fn feed(&mut self, bytes: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError> {
        self.sse.feed(bytes, |event| self.state.event(event, out))
    }

    fn finish(&mut self, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        self.sse.finish(|event| self.state.event(event, out))
    }
}

/// Events whose data is read; any other name (`ping`, future ones) is skipped unparsed.
const STREAM_EVENTS: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
    "completion",
];

fn invalid(message: impl Into<String>) -> StreamError {
    StreamError::Invalid(message.into())
}

impl StreamState {
    fn event(&mut self, event: SseEvent, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let data = event.data.trim();
        // Pre-2023-06-01 API versions ended the legacy stream with a bare `[DONE]`.
        if data == "[DONE]" {
            out.done();
            return Ok(());
        }
        let named = event.event.as_deref();
        if let Some(name) = named
            && !STREAM_EVENTS.contains(&name)
        {
            return Ok(());
        }
        if data.is_empty() {
            return match named {
                Some(name) => Err(invalid(format!("`{name}` event without data"))),
                None => Ok(()),
            };
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| invalid(format!("stream event is not valid JSON: {e}")))?;
        // The SSE `event:` name decides, as in Anthropic's SDK; a relay that drops it
        // still leaves the same name in the data's `type`.
        let name = named
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or_default();
        match name {
            "message_start" => {
                let message = v.get("message");
                if let Some(model) = message.and_then(|m| m.get("model")).and_then(Value::as_str) {
                    out.set_response_model(model);
                }
                self.usage(message.and_then(|m| m.get("usage")), false, out);
                out.role();
            }
            "content_block_start" => self.block_start(&v, out)?,
            "content_block_delta" => self.block_delta(&v, out)?,
            "content_block_stop" => {
                // A tool called without arguments streams no JSON at all; OpenAI clients
                // parse `arguments`, and the non-streaming answer says `{}` too.
                if let Some(k) = self.tool(v.get("index"))
                    && let Some(tool) = self.tools.get_mut(k as usize)
                    && !tool.has_arguments
                {
                    tool.has_arguments = true;
                    out.tool_call_arguments(k, "{}");
                }
                if let Some((block, sent)) = &mut self.json_block
                    && v.get("index").and_then(Value::as_u64) == Some(*block)
                    && !*sent
                {
                    *sent = true;
                    out.content("{}");
                }
            }
            "message_delta" => {
                self.usage(v.get("usage"), true, out);
                let stop = v.pointer("/delta/stop_reason");
                out.finish(if self.json_block.is_some() && self.tools.is_empty() {
                    json_finish_reason(stop)
                } else {
                    finish_reason(stop, !self.tools.is_empty())
                });
            }
            "message_stop" => out.done(),
            "error" => out.error(&stream_error(&v)),
            "completion" => {
                if let Some(model) = v.get("model").and_then(Value::as_str) {
                    out.set_response_model(model);
                }
                let Some(text) = v.get("completion").and_then(Value::as_str) else {
                    return Err(invalid("completion event without `completion` text"));
                };
                out.role();
                out.content(text);
                if let Some(reason) = v.get("stop_reason").filter(|r| !r.is_null()) {
                    out.finish(finish_reason(Some(reason), false));
                }
            }
            // `ping`, or an unnamed event of a type we do not know.
            _ => {}
        }
        Ok(())
    }

    fn block_start(&mut self, v: &Value, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let block = v.get("content_block");
        match block.and_then(|b| b.get("type")).and_then(Value::as_str) {
            Some("text") => {
                // Anthropic starts text blocks empty; a relay may not.
                if let Some(text) = block.and_then(|b| b.get("text")).and_then(Value::as_str) {
                    out.content(text);
                }
            }
            // Completions have no tool calls (the non-streaming path keeps only text).
            Some("tool_use") if self.kind == RouteKind::Chat => {
                let id = block.and_then(|b| b.get("id")).and_then(Value::as_str);
                let name = block.and_then(|b| b.get("name")).and_then(Value::as_str);
                let (Some(id), Some(name)) = (id, name) else {
                    return Err(invalid("tool_use content block without id or name"));
                };
                let Some(index) = v.get("index").and_then(Value::as_u64) else {
                    return Err(invalid("content_block_start without an index"));
                };
                if name == JSON_TOOL {
                    self.json_block = Some((index, false));
                    return Ok(());
                }
                let k = u32::try_from(self.tools.len())
                    .map_err(|_| invalid("too many tool calls in one response"))?;
                self.tools.push(ToolBlock {
                    block: index,
                    has_arguments: false,
                });
                out.tool_call_start(k, id, name, "");
            }
            // thinking, redacted_thinking, server tools and their results: no OpenAI
            // counterpart in a chunk.
            _ => {}
        }
        Ok(())
    }

    fn block_delta(&mut self, v: &Value, out: &mut ChunkEmitter) -> Result<(), StreamError> {
        let delta = v.get("delta");
        let field = |key: &str| delta.and_then(|d| d.get(key)).and_then(Value::as_str);
        match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
            Some("text_delta") => {
                let Some(text) = field("text") else {
                    return Err(invalid("text_delta without text"));
                };
                out.content(text);
            }
            Some("input_json_delta") => {
                let Some(fragment) = field("partial_json") else {
                    return Err(invalid("input_json_delta without partial_json"));
                };
                if let Some((block, sent)) = &mut self.json_block
                    && v.get("index").and_then(Value::as_u64) == Some(*block)
                {
                    if !fragment.is_empty() {
                        *sent = true;
                        out.content(fragment);
                    }
                    return Ok(());
                }
                // Server tools (`server_tool_use`) stream their input too: not in the map.
                if let Some(k) = self.tool(v.get("index"))
                    && let Some(tool) = self.tools.get_mut(k as usize)
                    && !fragment.is_empty()
                {
                    tool.has_arguments = true;
                    out.tool_call_arguments(k, fragment);
                }
            }
            // thinking_delta, signature_delta, citations_delta, future types.
            _ => {}
        }
        Ok(())
    }

    /// The OpenAI tool-call index of the `tool_use` block at Anthropic index `block`.
    fn tool(&self, block: Option<&Value>) -> Option<u32> {
        let block = block.and_then(Value::as_u64)?;
        let k = self.tools.iter().rposition(|t| t.block == block)?;
        u32::try_from(k).ok()
    }

    /// Records a `usage` object: the prompt side includes both cache counts (as in the
    /// non-streaming `usage`), `output_tokens` is cumulative.
    fn usage(&mut self, usage: Option<&Value>, closing: bool, out: &mut ChunkEmitter) {
        let count = |key: &str| usage.and_then(|u| u.get(key)).and_then(Value::as_u64);
        self.input = count("input_tokens").or(self.input);
        self.cache_write = count("cache_creation_input_tokens").or(self.cache_write);
        self.cache_read = count("cache_read_input_tokens").or(self.cache_read);
        let prompt = match (self.input, self.cache_write, self.cache_read) {
            (None, None, None) => None,
            (input, write, read) => Some(
                input
                    .unwrap_or(0)
                    .saturating_add(write.unwrap_or(0))
                    .saturating_add(read.unwrap_or(0)),
            ),
        };
        let completion = count("output_tokens");
        out.usage(
            ReportedUsage {
                prompt,
                completion,
                cached: self.cache_read,
            },
            // Without a closing count, the text estimate still applies.
            closing && completion.is_some(),
        );
    }
}

/// An in-band `error` event: `{"type":"error","error":{"type","message"}}`.
fn stream_error(v: &Value) -> OpenAiErrorBody {
    let error = v.get("error");
    let text = |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str);
    OpenAiErrorBody {
        message: text("message")
            .unwrap_or("anthropic reported an error mid-stream")
            .to_string(),
        kind: text("type").unwrap_or("upstream_error").to_string(),
        code: error
            .and_then(|e| e.pointer("/details/error_code"))
            .filter(|c| c.is_string())
            .cloned(),
        param: None,
    }
}
