//! The OpenAI side of a stream: `ChunkEmitter` renders `chat.completion.chunk` /
//! `text_completion` chunks as `data: {…}\n\n` frames and keeps the stream's accounting
//! (usage, finish reason, streamed text) for the analytics line and the usage record.
//!
//! Provider transcoders call its methods as events arrive; it enforces the streaming rules
//! (docs/behaviour.md, "Streaming rules") in one place: `id`/`created`/`model` constant
//! across chunks, the role chunk first, tool-call `index` as given by the transcoder, at
//! most one finish chunk, exactly one usage chunk (`choices: []`) only when the client
//! asked, `data: [DONE]\n\n` at the end, and an in-band `data: {"error":…}` frame ending
//! the stream on a mid-stream failure.

use serde::Serialize;
use serde_json::{Map, Value};

use super::OpenAiErrorBody;
use super::tokens::PromptEstimate;
use crate::crypto::redact::LazyRedactor;
use crate::vocab::RouteKind;

/// What stays constant for one streamed response.
#[derive(Debug, Clone)]
pub struct StreamMeta {
    pub id: String,
    pub created: i64,
    /// The model the client is told about (the model called).
    pub model: String,
    pub kind: RouteKind,
    /// `stream_options.include_usage` from the client.
    pub include_usage: bool,
    /// Keep the streamed text (for `log_payloads`).
    pub collect_text: bool,
}

/// Token counts as the provider reported them so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportedUsage {
    pub prompt: Option<u64>,
    pub completion: Option<u64>,
    pub cached: Option<u64>,
}

/// How a stream ended, for the accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Still running (the client went away before the end).
    Open,
    /// `[DONE]` was sent.
    Done,
    /// An in-band error frame was sent.
    Failed,
}

pub struct ChunkEmitter {
    meta: StreamMeta,
    out: Vec<u8>,
    role_sent: bool,
    finish_sent: bool,
    end: StreamEnd,
    usage: ReportedUsage,
    /// The provider's final counts arrived (not just the first event's).
    usage_final: bool,
    finish_reason: Option<String>,
    response_model: Option<String>,
    streamed_chars: u64,
    text: String,
    /// `id`/`created`/`model` of the first passed-through chunk: every later chunk, the
    /// usage chunk included, carries them so they stay constant across the stream.
    ident: Option<Ident>,
    /// The gateway's estimate of the prompt, used only when the provider reports none, so
    /// the client's usage chunk and the usage record agree (docs/behaviour.md, "Differences from
    /// Kong", 3: counted once).
    prompt_estimate: PromptEstimate,
    /// Masks the service's credential values in in-band errors (the upstream's text).
    redactor: LazyRedactor,
}

struct Ident {
    id: String,
    created: i64,
    model: String,
}

#[derive(Serialize)]
struct Chunk<'a, C> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: C,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<CachedDetails>,
}

#[derive(Serialize)]
struct CachedDetails {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

const NO_CHOICES: [(); 0] = [];

impl ChunkEmitter {
    pub fn new(meta: StreamMeta) -> ChunkEmitter {
        ChunkEmitter {
            meta,
            out: Vec::with_capacity(512),
            role_sent: false,
            finish_sent: false,
            end: StreamEnd::Open,
            usage: ReportedUsage::default(),
            usage_final: false,
            finish_reason: None,
            response_model: None,
            streamed_chars: 0,
            text: String::new(),
            prompt_estimate: PromptEstimate::default(),
            redactor: LazyRedactor::default(),
            ident: None,
        }
    }

    pub fn set_redactor(&mut self, redactor: LazyRedactor) {
        self.redactor = redactor;
    }

    pub fn set_prompt_estimate(&mut self, estimate: PromptEstimate) {
        self.prompt_estimate = estimate;
    }

    pub fn meta(&self) -> &StreamMeta {
        &self.meta
    }

    /// The model the upstream says it used (for the analytics line; chunks keep the model
    /// the client asked for, constant across the stream).
    pub fn set_response_model(&mut self, model: &str) {
        if self.response_model.is_none() && !model.is_empty() {
            self.response_model = Some(model.to_string());
        }
    }

    /// The provider's counts so far; `None` keeps what is known. `is_final` marks the
    /// provider's closing numbers (as opposed to the first event's provisional ones).
    pub fn usage(&mut self, usage: ReportedUsage, is_final: bool) {
        self.usage.prompt = usage.prompt.or(self.usage.prompt);
        self.usage.completion = usage.completion.or(self.usage.completion);
        self.usage.cached = usage.cached.or(self.usage.cached);
        self.usage_final |= is_final;
    }

    /// The role chunk (chat only), sent once before any content.
    pub fn role(&mut self) {
        if self.role_sent || self.end != StreamEnd::Open {
            return;
        }
        self.role_sent = true;
        if self.meta.kind == RouteKind::Chat {
            self.chat_chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    tool_calls: None,
                },
                None,
            );
        }
    }

    /// A text fragment.
    pub fn content(&mut self, text: &str) {
        if text.is_empty() || self.end != StreamEnd::Open {
            return;
        }
        self.role();
        self.count(text);
        match self.meta.kind {
            RouteKind::Chat => self.chat_chunk(
                Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                None,
            ),
            RouteKind::Completions => self.text_chunk(text, None),
        }
    }

    /// The first fragment of tool call `index` (a per-response counter: 0, 1, 2, …).
    pub fn tool_call_start(&mut self, index: u32, id: &str, name: &str, arguments: &str) {
        if self.end != StreamEnd::Open {
            return;
        }
        self.role();
        self.count(name);
        self.count(arguments);
        self.chat_chunk(
            Delta {
                tool_calls: Some([ToolCallDelta {
                    index,
                    id: Some(id),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name: Some(name),
                        arguments,
                    },
                }]),
                ..Delta::default()
            },
            None,
        );
    }

    /// A later argument fragment of tool call `index`.
    pub fn tool_call_arguments(&mut self, index: u32, fragment: &str) {
        if fragment.is_empty() || self.end != StreamEnd::Open {
            return;
        }
        self.count(fragment);
        self.chat_chunk(
            Delta {
                tool_calls: Some([ToolCallDelta {
                    index,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: fragment,
                    },
                }]),
                ..Delta::default()
            },
            None,
        );
    }

    /// The finish chunk (empty delta, OpenAI `finish_reason`), sent at most once.
    pub fn finish(&mut self, reason: &str) {
        if self.finish_sent || self.end != StreamEnd::Open {
            return;
        }
        self.role();
        self.finish_sent = true;
        self.finish_reason = Some(reason.to_string());
        match self.meta.kind {
            RouteKind::Chat => self.chat_chunk(Delta::default(), Some(reason)),
            RouteKind::Completions => self.text_chunk("", Some(reason)),
        }
    }

    /// An OpenAI-format chunk from an OpenAI-compatible upstream, passed through with the
    /// Streaming rules applied: usage is recorded and stripped (re-sent once at the end when the
    /// client asked), chunks whose choices carry nothing (Azure's content-filter preamble and
    /// trailing filter results, OpenAI's usage chunk) are dropped, `id`/`created`/`model`
    /// are those of the first chunk passed (filled from the meta when missing), tool calls
    /// get an `index`.
    pub fn passthrough(&mut self, mut chunk: Map<String, Value>) {
        if self.end != StreamEnd::Open {
            return;
        }
        if let Some(usage) = chunk.remove("usage").filter(|u| u.is_object()) {
            let get = |k: &str| usage.get(k).and_then(Value::as_u64);
            self.usage(
                ReportedUsage {
                    prompt: get("prompt_tokens"),
                    completion: get("completion_tokens"),
                    cached: usage
                        .pointer("/prompt_tokens_details/cached_tokens")
                        .and_then(Value::as_u64),
                },
                true,
            );
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            let model = model.to_string();
            self.set_response_model(&model);
        }
        let Some(Value::Array(choices)) = chunk.get_mut("choices") else {
            return;
        };
        if !choices.iter().any(choice_carries_something) {
            return;
        }
        let mut chars = 0u64;
        let mut text = String::new();
        for choice in choices.iter_mut() {
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(reason.to_string());
                self.finish_sent = true;
            }
            match choice.get_mut("delta").filter(|d| d.is_object()) {
                Some(delta) => {
                    if delta.get("role").is_some() {
                        self.role_sent = true;
                    }
                    if let Some(t) = delta.get("content").and_then(Value::as_str) {
                        chars += t.chars().count() as u64;
                        if self.meta.collect_text {
                            text.push_str(t);
                        }
                    }
                    if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                        for (position, call) in calls.iter_mut().enumerate() {
                            if let Value::Object(call) = call {
                                if !call.contains_key("index") {
                                    call.insert("index".into(), Value::from(position));
                                }
                                if let Some(a) =
                                    call.get("function").and_then(|f| f.get("arguments"))
                                {
                                    // Some servers send arguments as an object.
                                    match a {
                                        Value::String(s) => chars += s.chars().count() as u64,
                                        other => chars += other.to_string().len() as u64,
                                    }
                                }
                            }
                        }
                    }
                }
                None => {
                    if let Some(t) = choice.get("text").and_then(Value::as_str) {
                        chars += t.chars().count() as u64;
                        if self.meta.collect_text {
                            text.push_str(t);
                        }
                    }
                }
            }
        }
        self.streamed_chars += chars;
        self.text.push_str(&text);
        let fill = |chunk: &mut Map<String, Value>, key: &str, value: Value| {
            let missing = match chunk.get(key) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                _ => false,
            };
            if missing {
                chunk.insert(key.to_string(), value);
            }
        };
        let meta = &self.meta;
        let ident = self.ident.get_or_insert_with(|| {
            let text = |key: &str, default: &str| {
                chunk
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .unwrap_or(default)
                    .to_string()
            };
            Ident {
                id: text("id", &meta.id),
                created: chunk
                    .get("created")
                    .and_then(Value::as_i64)
                    .filter(|c| *c != 0)
                    .unwrap_or(meta.created),
                model: text("model", &meta.model),
            }
        });
        chunk.insert("id".into(), Value::from(ident.id.as_str()));
        chunk.insert("created".into(), Value::from(ident.created));
        chunk.insert("model".into(), Value::from(ident.model.as_str()));
        let object = match self.meta.kind {
            RouteKind::Chat => "chat.completion.chunk",
            RouteKind::Completions => "text_completion",
        };
        fill(&mut chunk, "object", Value::from(object));
        self.write(&chunk);
    }

    /// A mid-stream failure: the error frame, then the end of the stream.
    pub fn error(&mut self, error: &OpenAiErrorBody) {
        if self.end != StreamEnd::Open {
            return;
        }
        // The error's text comes from the upstream (or names its URL): credential values
        // it echoes are masked before the client or a log sees them.
        let mut frame = error.to_openai();
        self.redactor.get().redact_value(&mut frame);
        self.write(&frame);
        self.end = StreamEnd::Failed;
    }

    /// The normal end: the usage chunk when the client asked for it, then `[DONE]`.
    pub fn done(&mut self) {
        if self.end != StreamEnd::Open {
            return;
        }
        if self.meta.include_usage {
            let (prompt, completion) = self.tokens();
            let usage = UsageOut {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt.saturating_add(completion),
                prompt_tokens_details: self
                    .usage
                    .cached
                    .map(|cached_tokens| CachedDetails { cached_tokens }),
            };
            let (id, created, model) = match &self.ident {
                Some(i) => (i.id.as_str(), i.created, i.model.as_str()),
                None => (
                    self.meta.id.as_str(),
                    self.meta.created,
                    self.meta.model.as_str(),
                ),
            };
            let chunk = Chunk {
                id,
                object: self.object(),
                created,
                model,
                choices: NO_CHOICES,
                usage: Some(usage),
            };
            write_frame(&mut self.out, &chunk);
        }
        self.out.extend_from_slice(b"data: [DONE]\n\n");
        self.end = StreamEnd::Done;
    }

    /// The bytes rendered since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn end(&self) -> StreamEnd {
        self.end
    }

    pub fn finish_sent(&self) -> bool {
        self.finish_sent
    }

    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    pub fn response_model(&self) -> Option<&str> {
        self.response_model.as_deref()
    }

    pub fn reported_usage(&self) -> ReportedUsage {
        self.usage
    }

    /// Whether the provider's closing counts arrived.
    pub fn usage_is_final(&self) -> bool {
        self.usage_final
    }

    /// Characters of text and tool-call arguments streamed so far.
    pub fn streamed_chars(&self) -> u64 {
        self.streamed_chars
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The prompt estimate without running the tokenizer: its count when already made,
    /// else a quarter of the request body's bytes (an upper-side guess, for the record a
    /// stream leaves in case it never ends).
    pub fn prompt_estimate_quick(&self) -> u64 {
        self.prompt_estimate.quick()
    }

    /// Prompt and completion tokens for the usage chunk: the provider's numbers; a
    /// completion count the provider has not closed is at least the streamed text's
    /// estimate (4 characters per token).
    pub fn tokens(&self) -> (u64, u64) {
        // The estimate is only computed here, when the provider's count is missing.
        let prompt = self
            .usage
            .prompt
            .unwrap_or_else(|| self.prompt_estimate.tokens());
        let estimate = self.streamed_chars.div_ceil(4);
        let completion = match (self.usage.completion, self.usage_final) {
            (Some(c), true) => c,
            (Some(c), false) => c.max(estimate),
            (None, _) => estimate,
        };
        (prompt, completion)
    }

    fn count(&mut self, text: &str) {
        self.streamed_chars += text.chars().count() as u64;
        if self.meta.collect_text {
            self.text.push_str(text);
        }
    }

    fn object(&self) -> &'static str {
        match self.meta.kind {
            RouteKind::Chat => "chat.completion.chunk",
            RouteKind::Completions => "text_completion",
        }
    }

    fn chat_chunk(&mut self, delta: Delta<'_>, finish_reason: Option<&str>) {
        let chunk = Chunk {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: &self.meta.model,
            choices: [ChatChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: None,
        };
        write_frame(&mut self.out, &chunk);
    }

    fn text_chunk(&mut self, text: &str, finish_reason: Option<&str>) {
        let chunk = Chunk {
            id: &self.meta.id,
            object: "text_completion",
            created: self.meta.created,
            model: &self.meta.model,
            choices: [TextChoice {
                text,
                index: 0,
                logprobs: None,
                finish_reason,
            }],
            usage: None,
        };
        write_frame(&mut self.out, &chunk);
    }

    fn write<T: Serialize>(&mut self, value: &T) {
        write_frame(&mut self.out, value);
    }
}

/// Whether a passed-through choice has anything for the client: a finish reason, logprobs,
/// completion text or a non-null delta field.
fn choice_carries_something(choice: &Value) -> bool {
    let set = |key: &str| choice.get(key).is_some_and(|v| !v.is_null());
    set("finish_reason")
        || set("logprobs")
        || choice.get("text").is_some_and(Value::is_string)
        || choice
            .get("delta")
            .and_then(Value::as_object)
            .is_some_and(|d| d.values().any(|v| !v.is_null()))
}

fn write_frame<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    out.extend_from_slice(b"data: ");
    // Serialising plain structs and JSON values into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::sse_payloads as frames;
    use serde_json::json;

    fn meta(kind: RouteKind, include_usage: bool) -> StreamMeta {
        StreamMeta {
            id: "chatcmpl-test".into(),
            created: 1_700_000_000,
            model: "m".into(),
            kind,
            include_usage,
            collect_text: true,
        }
    }

    #[test]
    fn chat_stream_with_usage_chunk_only_when_asked() {
        for include_usage in [true, false] {
            let mut e = ChunkEmitter::new(meta(RouteKind::Chat, include_usage));
            e.usage(
                ReportedUsage {
                    prompt: Some(7),
                    ..ReportedUsage::default()
                },
                false,
            );
            e.content("Hel");
            e.content("lo");
            e.finish("stop");
            e.finish("length");
            e.usage(
                ReportedUsage {
                    completion: Some(2),
                    ..ReportedUsage::default()
                },
                true,
            );
            e.done();
            e.content("ignored after the end");
            let got = frames(&e.take());
            let mut want = vec![
                json!({"id":"chatcmpl-test","object":"chat.completion.chunk","created":1_700_000_000,"model":"m",
                       "choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}),
                json!({"id":"chatcmpl-test","object":"chat.completion.chunk","created":1_700_000_000,"model":"m",
                       "choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]}),
                json!({"id":"chatcmpl-test","object":"chat.completion.chunk","created":1_700_000_000,"model":"m",
                       "choices":[{"index":0,"delta":{"content":"lo"},"logprobs":null,"finish_reason":null}]}),
                json!({"id":"chatcmpl-test","object":"chat.completion.chunk","created":1_700_000_000,"model":"m",
                       "choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}),
            ];
            if include_usage {
                want.push(json!({"id":"chatcmpl-test","object":"chat.completion.chunk","created":1_700_000_000,"model":"m",
                       "choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}));
            }
            want.push(json!("[DONE]"));
            assert_eq!(got, want);
            assert_eq!(e.tokens(), (7, 2));
            assert_eq!(e.text(), "Hello");
        }
    }

    #[test]
    fn tool_call_deltas_carry_their_index() {
        let mut e = ChunkEmitter::new(meta(RouteKind::Chat, false));
        e.tool_call_start(0, "call_a", "f", "");
        e.tool_call_start(1, "call_b", "g", "");
        e.tool_call_arguments(0, "{\"x\":");
        e.tool_call_arguments(1, "{}");
        e.tool_call_arguments(0, "1}");
        let got = frames(&e.take());
        assert_eq!(
            got[1]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}})
        );
        assert_eq!(
            got[5]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index":0,"function":{"arguments":"1}"}})
        );
    }

    #[test]
    fn completion_chunks_use_text() {
        let mut e = ChunkEmitter::new(meta(RouteKind::Completions, false));
        e.content("hi");
        e.finish("length");
        e.done();
        let got = frames(&e.take());
        assert_eq!(
            got[0],
            json!({"id":"chatcmpl-test","object":"text_completion","created":1_700_000_000,"model":"m",
                   "choices":[{"text":"hi","index":0,"logprobs":null,"finish_reason":null}]})
        );
        assert_eq!(got[1]["choices"][0]["finish_reason"], "length");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn passthrough_strips_usage_and_drops_empty_preambles() {
        let mut e = ChunkEmitter::new(meta(RouteKind::Chat, false));
        let obj = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        e.passthrough(obj(
            json!({"id":"","created":0,"model":"","choices":[],"prompt_filter_results":[]}),
        ));
        e.passthrough(obj(
            json!({"id":"x","object":"chat.completion.chunk","created":5,"model":"gpt",
                   "choices":[{"index":0,"delta":{"content":"abcd"},"finish_reason":"stop"}],
                   "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}),
        ));
        e.done();
        let got = frames(&e.take());
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].get("usage").is_none());
        assert_eq!(e.tokens(), (3, 1));
        assert_eq!(e.finish_reason(), Some("stop"));
        assert_eq!(e.response_model(), Some("gpt"));
    }

    #[test]
    fn passthrough_keeps_the_first_identity_and_drops_chunks_that_carry_nothing() {
        let mut e = ChunkEmitter::new(meta(RouteKind::Chat, true));
        let obj = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        e.passthrough(obj(json!({"id":"a","created":7,"model":"up",
            "choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]})));
        e.passthrough(obj(json!({"id":"b","created":8,"model":"other",
            "choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})));
        // Azure's trailing filter results: nothing for the client.
        e.passthrough(obj(json!({"id":"","created":0,"model":"",
            "choices":[{"index":0,"finish_reason":null,"content_filter_results":{}}]})));
        e.done();
        let got = frames(&e.take());
        assert_eq!(got.len(), 4, "{got:?}");
        for chunk in &got[..3] {
            assert_eq!(
                (&chunk["id"], &chunk["created"], &chunk["model"]),
                (&json!("a"), &json!(7), &json!("up"))
            );
        }
        assert_eq!(got[2]["choices"], json!([]));
        assert_eq!(e.response_model(), Some("up"));
    }

    #[test]
    fn an_unclosed_count_is_at_least_the_text_estimate() {
        let mut e = ChunkEmitter::new(meta(RouteKind::Chat, false));
        e.usage(
            ReportedUsage {
                prompt: Some(10),
                completion: Some(1),
                cached: None,
            },
            false,
        );
        e.content("twelve chars");
        assert_eq!(e.tokens(), (10, 3));
        e.error(&OpenAiErrorBody {
            message: "overloaded".into(),
            kind: "overloaded_error".into(),
            code: None,
            param: None,
        });
        assert_eq!(e.end(), StreamEnd::Failed);
        let got = frames(&e.take());
        assert_eq!(
            got.last().expect("frame")["error"]["type"],
            "overloaded_error"
        );
    }
}
