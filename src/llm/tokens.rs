//! The gateway's own prompt count, for a stream that ends before the provider reported usage
//! (docs/architecture.md, Streaming, "Accounting").
//!
//! The estimate covers everything sent upstream: it walks the upstream request body as sent
//! (after translation and credential injection) and counts every message part, system text,
//! tool definition, tool call and tool result in it. OpenAI-family models are counted with
//! their real BPE (`tiktoken-rs`, vocabularies embedded in the crate, built once per
//! process on first use and shared); every other model at 4 characters per token.
//!
//! Nothing is counted up front: `PromptEstimate` keeps the body (`Bytes`, a reference count)
//! and counts on the first `tokens()` call, which only happens when the provider's own
//! count is missing.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// How a model's text is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o-series, and unknown models on OpenAI/Azure.
    O200k,
    /// gpt-4 and gpt-3.5.
    Cl100k,
    /// Any other provider's model: 4 characters per token.
    CharsPer4,
}

/// Tokens charged per image part: the provider's size-dependent count is unknown to the
/// gateway; 765 is OpenAI's count for a 1024×1024 high-detail image.
const IMAGE_TOKENS: u64 = 765;
/// OpenAI's per-message framing (`<|start|>role…<|end|>`) and the reply's priming.
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

/// Keys whose values are request controls, not text the model reads.
const CONTROL_KEYS: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "type",
    "id",
    "tool_call_id",
    "tool_use_id",
    "tool_choice",
    "stop",
    "stop_sequences",
    "user",
    "logit_bias",
    "seed",
    "metadata",
    "service_tier",
    "reasoning_effort",
    "modalities",
    "format",
    "keep_alive",
    "cache_control",
    "encoding_format",
    "parallel_tool_calls",
    "prompt_cache_key",
    "safety_identifier",
];

/// Keys whose object values are structured data the model reads as JSON (tool parameter
/// schemas, tool-call arguments given as objects): counted as their compact JSON text —
/// only inside a named object (a tool, a tool call, a JSON schema), since the same names
/// elsewhere are request settings (TGI's `parameters`).
const STRUCTURED_KEYS: &[&str] = &[
    "parameters",
    "input_schema",
    "parameter_definitions",
    "input",
    "arguments",
    "schema",
];

/// Image parts (base64 or URL): a fixed count each, never their text.
const IMAGE_KEYS: &[&str] = &["image_url", "images", "source"];

impl Counter {
    /// The counter for `model` on `provider` (the gateway's provider name). OpenAI-family
    /// model names pick their BPE wherever they are served; an unknown model on `openai` or
    /// `azure` falls back to o200k_base (the current family); anything else is 4 characters
    /// per token.
    pub fn for_model(provider: &str, model: &str) -> Counter {
        use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};
        match get_tokenizer(model) {
            Some(Tokenizer::O200kBase | Tokenizer::O200kHarmony) => Counter::O200k,
            Some(Tokenizer::Cl100kBase) => Counter::Cl100k,
            _ if model.starts_with('o') && model[1..].starts_with(|c: char| c.is_ascii_digit()) => {
                Counter::O200k
            }
            _ if matches!(provider, "openai" | "azure") => Counter::O200k,
            _ => Counter::CharsPer4,
        }
    }

    fn bpe(self) -> Option<&'static CoreBPE> {
        match self {
            Counter::O200k => Some(tiktoken_rs::o200k_base_singleton()),
            Counter::Cl100k => Some(tiktoken_rs::cl100k_base_singleton()),
            Counter::CharsPer4 => None,
        }
    }

    /// Tokens of one text.
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        match self.bpe() {
            Some(bpe) => bpe.encode_ordinary(text).len() as u64,
            None => (text.chars().count() as u64).div_ceil(4),
        }
    }

    /// Tokens of an upstream request body: every text the model reads, the framing of
    /// each chat message, a fixed count per image. `skip` is a top-level field that is not
    /// the model's input (a body credential).
    pub fn count_body(self, body: &Value, skip: Option<&str>) -> u64 {
        let Value::Object(map) = body else {
            return self.count_value(body);
        };
        let mut total = 0;
        for (key, value) in map {
            if skip == Some(key.as_str()) {
                continue;
            }
            total += self.count_field(key, value, map.contains_key("name"));
            if key == "messages"
                && let Value::Array(messages) = value
                && !messages.is_empty()
            {
                total += PER_MESSAGE * messages.len() as u64 + REPLY_PRIMING;
            }
        }
        total
    }

    fn count_field(self, key: &str, value: &Value, in_named: bool) -> u64 {
        if CONTROL_KEYS.contains(&key) {
            return 0;
        }
        if IMAGE_KEYS.contains(&key) {
            return match value {
                Value::Array(items) => IMAGE_TOKENS * items.len() as u64,
                // An Anthropic `source` of a text document is text, not an image.
                Value::Object(o)
                    if key == "source" && o.get("type").and_then(Value::as_str) == Some("text") =>
                {
                    self.count_value(value)
                }
                Value::Null => 0,
                _ => IMAGE_TOKENS,
            };
        }
        if in_named && STRUCTURED_KEYS.contains(&key) && (value.is_object() || value.is_array()) {
            return self.count(&value.to_string());
        }
        self.count_value(value)
    }

    fn count_value(self, value: &Value) -> u64 {
        match value {
            Value::String(s) => self.count(s),
            Value::Array(items) => items.iter().map(|v| self.count_value(v)).sum(),
            Value::Object(map) => {
                let named = map.contains_key("name");
                map.iter().map(|(k, v)| self.count_field(k, v, named)).sum()
            }
            Value::Number(_) | Value::Bool(_) | Value::Null => 0,
        }
    }
}

/// A prompt count computed on first use from the body as sent upstream.
pub struct PromptEstimate {
    source: Source,
    value: OnceLock<u64>,
}

enum Source {
    Body {
        body: Bytes,
        counter: Counter,
        skip: Option<String>,
    },
    Fixed(u64),
}

impl PromptEstimate {
    /// Counts `body` (the upstream request) with `counter` when first asked.
    pub fn lazy(body: Bytes, counter: Counter, skip: Option<String>) -> PromptEstimate {
        PromptEstimate {
            source: Source::Body {
                body,
                counter,
                skip,
            },
            value: OnceLock::new(),
        }
    }

    /// A known number (tests, and streams without a body).
    pub fn fixed(tokens: u64) -> PromptEstimate {
        PromptEstimate {
            source: Source::Fixed(tokens),
            value: OnceLock::new(),
        }
    }

    pub fn tokens(&self) -> u64 {
        *self.value.get_or_init(|| match &self.source {
            Source::Fixed(n) => *n,
            Source::Body {
                body,
                counter,
                skip,
            } => match serde_json::from_slice::<Value>(body) {
                Ok(value) => counter.count_body(&value, skip.as_deref()),
                // Not JSON (cannot happen for a translated body): count it as text.
                Err(_) => counter.count(&String::from_utf8_lossy(body)),
            },
        })
    }

    /// The count when computed, else a quarter of the body's bytes (no tokenizer run).
    pub fn quick(&self) -> u64 {
        if let Some(n) = self.value.get() {
            return *n;
        }
        match &self.source {
            Source::Fixed(n) => *n,
            Source::Body { body, .. } => (body.len() as u64).div_ceil(4),
        }
    }

    /// Whether the count was computed (tests: the estimate is lazy).
    pub fn is_computed(&self) -> bool {
        self.value.get().is_some()
    }
}

impl Default for PromptEstimate {
    fn default() -> PromptEstimate {
        PromptEstimate::fixed(0)
    }
}

impl std::fmt::Debug for PromptEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptEstimate")
            .field("value", &self.value.get())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn models_pick_their_vocabulary() {
        assert_eq!(Counter::for_model("openai", "gpt-4o-mini"), Counter::O200k);
        assert_eq!(Counter::for_model("openai", "gpt-4.1"), Counter::O200k);
        assert_eq!(Counter::for_model("openai", "gpt-5"), Counter::O200k);
        assert_eq!(Counter::for_model("openai", "o3-mini"), Counter::O200k);
        assert_eq!(Counter::for_model("openai", "o1"), Counter::O200k);
        assert_eq!(Counter::for_model("openai", "gpt-4"), Counter::Cl100k);
        assert_eq!(Counter::for_model("azure", "gpt-35-turbo"), Counter::Cl100k);
        assert_eq!(
            Counter::for_model("openai", "gpt-3.5-turbo"),
            Counter::Cl100k
        );
        // Fallbacks: an unknown name on OpenAI is the current family; elsewhere chars/4.
        assert_eq!(
            Counter::for_model("openai", "my-deployment"),
            Counter::O200k
        );
        assert_eq!(
            Counter::for_model("anthropic", "claude-sonnet-4"),
            Counter::CharsPer4
        );
        assert_eq!(
            Counter::for_model("mistral", "mistral-large"),
            Counter::CharsPer4
        );
        assert_eq!(Counter::for_model("cohere", "o"), Counter::CharsPer4);
    }

    #[test]
    fn every_part_of_a_chat_body_is_counted() {
        let c = Counter::O200k;
        let text = |s: &str| c.count(s);
        let args = r#"{"city":"Paris","unit":"celsius"}"#;
        let params = json!({"type": "object", "properties": {"city": {"type": "string"}}});
        let body = json!({
            "model": "gpt-4o",
            "stream": true,
            "stream_options": {"include_usage": true},
            "api_key": "sk-secret-credential",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": args}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "description": "Current weather", "parameters": params}}],
        });
        let expected = text("system")
            + text("You are terse.")
            + text("user")
            + text("Weather in Paris?")
            + IMAGE_TOKENS
            + text("assistant")
            + text("get_weather")
            + text(args)
            + text("tool")
            + text("18 degrees, sunny")
            + text("get_weather")
            + text("Current weather")
            + text(&params.to_string())
            + 4 * PER_MESSAGE
            + REPLY_PRIMING;
        assert_eq!(c.count_body(&body, Some("api_key")), expected);
        // The credential field is skipped only when named.
        assert!(c.count_body(&body, None) > expected);
    }

    #[test]
    fn anthropic_bodies_count_system_tools_and_tool_blocks() {
        let c = Counter::CharsPer4;
        let body = json!({
            "model": "claude",
            "system": "abcdefgh",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "abcd"},
                {"type": "tool_use", "id": "t1", "name": "abcd", "input": {"a": 1}},
            ]}],
            "tools": [{"name": "abcd", "description": "abcd", "input_schema": {"type": "object"}}],
            // TGI's generation settings are not a schema: only their strings count.
            "parameters": {"max_new_tokens": 64, "details": true, "stop": ["</s>"]},
        });
        let expected = 2 // system
            + 1 // role "user"
            + 1 + 1 + 2 // tool_result, tool_use name, input `{"a":1}` (7 chars)
            + 1 + 1 + 5 // tool name, description, `{"type":"object"}` (17 chars)
            + PER_MESSAGE
            + REPLY_PRIMING;
        assert_eq!(c.count_body(&body, None), expected);
    }

    #[test]
    fn the_estimate_is_computed_on_first_use_only() {
        let body = Bytes::from(
            serde_json::to_vec(&json!({"messages": [{"role": "user", "content": " hello hello"}]}))
                .unwrap(),
        );
        let e = PromptEstimate::lazy(body, Counter::O200k, None);
        assert!(!e.is_computed());
        let n = e.tokens();
        assert!(e.is_computed());
        assert_eq!(n, 1 + 2 + PER_MESSAGE + REPLY_PRIMING);
        assert_eq!(e.tokens(), n);
        assert_eq!(PromptEstimate::fixed(7).tokens(), 7);
    }
}
