//! The I/O-free half of `ai-request-transformer` and `ai-response-transformer`
//! (docs/behaviour.md, "Policies"): the instruction request sent to the configured LLM,
//! the reading of its (OpenAI-shaped) answer, the optional extract pattern, and the
//! response transformer's JSON instructions. The call itself is the proxy's.

use serde_json::{Map, Value, json};

use crate::vocab::RouteType;
use crate::vocab::policy::{TransformerConfig, TransformerLlm};

use super::{CompileError, Flags, Refusal, compile_pattern};

/// A transformer, compiled: its extract pattern built once.
#[derive(Debug, Clone)]
pub struct CompiledTransformer {
    prompt: String,
    model: String,
    extract: Option<regex::Regex>,
    llm: TransformerLlm,
    http_timeout_ms: u64,
    parse_instructions: bool,
}

/// What the response transformer answers the client with.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseRewrite {
    /// The upstream's status and headers, with the LLM's text as the body.
    Body(String),
    /// The LLM's JSON instructions (`parse_llm_response_json_instructions`).
    Instructed(Instructions),
}

/// `{"status", "headers", "body"}` as the instruction LLM wrote them: the status (200 when
/// absent), headers that override the upstream's, and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Instructions {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// 400: the instruction LLM answered with a non-2xx status.
pub fn introspect_failed(status: u16) -> Refusal {
    Refusal::bad_request(format!(
        "failed to introspect request with AI service: status code {status}"
    ))
}

/// 400: the instruction LLM's answer could not be translated into OpenAI's chat shape.
pub fn conversion_failed(reason: impl std::fmt::Display) -> Refusal {
    Refusal::bad_request(format!(
        "failed to convert AI response to Kong format: {reason}"
    ))
}

fn bad_instructions(reason: impl std::fmt::Display) -> Refusal {
    Refusal::internal(format!(
        "failed to parse JSON response instructions from AI backend: {reason}"
    ))
}

impl CompiledTransformer {
    pub fn new(config: &TransformerConfig) -> Result<CompiledTransformer, CompileError> {
        if config.llm.route_type != RouteType::Chat {
            return Err(CompileError::new(
                "config.llm.route_type",
                "'config.llm.route_type' must be 'llm/v1/chat' for AI transformer plugins",
            ));
        }
        let Some(model) = config.llm.model.name.clone().filter(|m| !m.is_empty()) else {
            return Err(CompileError::new("config.llm.model.name", "is required"));
        };
        // Kong matches with the flags `ijom`: case-insensitive, `^`/`$` at line ends.
        let flags = Flags {
            case_insensitive: true,
            multi_line: true,
        };
        let extract = config
            .transformation_extract_pattern
            .as_deref()
            .map(|p| compile_pattern("config.transformation_extract_pattern", p, flags))
            .transpose()?;
        Ok(CompiledTransformer {
            prompt: config.prompt.clone(),
            model,
            extract,
            llm: config.llm.clone(),
            http_timeout_ms: config.http_timeout,
            parse_instructions: config.parse_llm_response_json_instructions,
        })
    }

    /// The instruction LLM: the service to call, the model and its tuning.
    pub fn llm(&self) -> &TransformerLlm {
        &self.llm
    }

    /// The instruction call's timeout (`http_timeout`, ms).
    pub fn http_timeout_ms(&self) -> u64 {
        self.http_timeout_ms
    }

    /// The OpenAI chat body sent to the instruction LLM: the policy's `prompt` as the
    /// system message, `input` as the user message — the client's raw body for the request
    /// transformer, the upstream's answer body for the response transformer.
    pub fn instruction_request(&self, input: &[u8]) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(self.model.clone()));
        body.insert(
            "messages".into(),
            json!([
                {"role": "system", "content": self.prompt},
                {"role": "user", "content": String::from_utf8_lossy(input)},
            ]),
        );
        body.insert("stream".into(), Value::Bool(false));
        body
    }

    /// The new body from the instruction LLM's answer (already in OpenAI's chat shape):
    /// `choices[0].message.content`, cut to the extract pattern's match when one is set.
    pub fn answer_text(&self, answer: &Map<String, Value>) -> Result<String, Refusal> {
        let content = answer
            .get("choices")
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("message"))
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::bad_request("no 'choices' in upstream AI service response"))?;
        match &self.extract {
            None => Ok(content.to_string()),
            Some(pattern) => pattern
                .find(content)
                .map(|m| m.as_str().to_string())
                .ok_or_else(|| {
                    Refusal::bad_request("AI response did not match specified regular expression")
                }),
        }
    }

    /// What the response transformer sends back, from the LLM's text.
    pub fn response_rewrite(&self, text: String) -> Result<ResponseRewrite, Refusal> {
        if self.parse_instructions {
            parse_instructions(&text).map(ResponseRewrite::Instructed)
        } else {
            Ok(ResponseRewrite::Body(text))
        }
    }
}

/// Reads `{"status","headers","body"}`: a missing status is 200, a missing body makes the
/// whole object the body; anything unreadable is Kong's 500.
pub fn parse_instructions(text: &str) -> Result<Instructions, Refusal> {
    let value = decode_lenient(text).map_err(bad_instructions)?;
    let Value::Object(fields) = &value else {
        return Err(bad_instructions("input not table or string"));
    };
    let status = match fields.get("status") {
        None | Some(Value::Bool(false)) => 200,
        Some(v) => v
            .as_u64()
            .filter(|s| (100..=599).contains(s))
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| bad_instructions("'status' must be an HTTP status code"))?,
    };
    let mut headers = Vec::new();
    match fields.get("headers") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let values = match value {
                    Value::Array(items) => items.iter().collect(),
                    one => vec![one],
                };
                for v in values {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => {
                            return Err(bad_instructions(format!(
                                "header '{name}' must be a string"
                            )));
                        }
                    };
                    headers.push((name.clone(), text));
                }
            }
        }
        Some(_) => return Err(bad_instructions("'headers' must be an object")),
    }
    let body = match fields.get("body") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) | Some(Value::Bool(false)) => value.to_string(),
        Some(other) => other.to_string(),
    };
    Ok(Instructions {
        status,
        headers,
        body,
    })
}

/// JSON as Kong's decoder reads it: control characters inside strings are accepted (LLMs
/// write raw newlines in them), and a syntax error is reported the way Kong reports it
/// (`Expected value but found invalid token at character N`, N counted from 1 in bytes).
pub fn decode_lenient(text: &str) -> Result<Value, String> {
    let mut escaped = String::with_capacity(text.len());
    // (position in `escaped` after an escape that grew the text, bytes added so far)
    let mut growth: Vec<(usize, usize)> = Vec::new();
    let mut added = 0;
    let (mut in_string, mut after_backslash) = (false, false);
    for c in text.chars() {
        if in_string && !after_backslash && (c as u32) < 0x20 {
            let replacement = match c {
                '\n' => "\\n".to_string(),
                '\r' => "\\r".to_string(),
                '\t' => "\\t".to_string(),
                other => format!("\\u{:04x}", other as u32),
            };
            escaped.push_str(&replacement);
            added += replacement.len() - 1;
            growth.push((escaped.len(), added));
            continue;
        }
        if in_string {
            if after_backslash {
                after_backslash = false;
            } else if c == '\\' {
                after_backslash = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        escaped.push(c);
    }
    serde_json::from_str(&escaped).map_err(|e| {
        let message = e.to_string();
        if !message.starts_with("expected value") {
            return message;
        }
        // serde's line and column (1-based) in `escaped`, back to a byte position in `text`.
        let line_start: usize = escaped
            .split_inclusive('\n')
            .take(e.line().saturating_sub(1))
            .map(str::len)
            .sum();
        let at = line_start + e.column();
        let grown = growth
            .iter()
            .take_while(|(pos, _)| *pos < at)
            .last()
            .map_or(0, |(_, n)| *n);
        format!(
            "Expected value but found invalid token at character {}",
            at - grown
        )
    })
}
