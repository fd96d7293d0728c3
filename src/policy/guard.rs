//! `ai-prompt-guard` (docs/behaviour.md, "Policies"): the prompt is checked against deny
//! and allow patterns; a refused prompt gets a deliberately vague 400 `bad request`, the
//! real reason goes to the logs and the span.

use std::borrow::Cow;

use regex::RegexSet;
use serde_json::{Map, Value};

use crate::vocab::policy::PromptGuardConfig;

use super::decorator::openai_only;
use super::{CompileError, Flags, Refusal, compile_pattern};

/// What the client is told whatever the reason (Kong does not reveal that a guard exists).
pub const CLIENT_MESSAGE: &str = "bad request";

/// `ai-prompt-guard`, compiled: each list one `RegexSet`, matched in one linear pass.
#[derive(Debug, Clone)]
pub struct CompiledGuard {
    allow: Option<RegexSet>,
    deny: Option<RegexSet>,
    latest_only: bool,
    all_roles: bool,
}

/// Why a prompt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// A deny pattern matched.
    Denied,
    /// Allow patterns exist and none matched.
    NotAllowed,
    /// Neither a chat nor a completions prompt, or a message without a string role or a
    /// readable content.
    BadFormat,
}

impl BlockReason {
    /// Kong's internal message: logged and recorded, never returned.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::Denied => "prompt pattern is blocked",
            BlockReason::NotAllowed => "prompt doesn't match any allowed pattern",
            BlockReason::BadFormat => {
                "ai-prompt-guard only supports llm/v1/chat or llm/v1/completions prompts"
            }
        }
    }
}

/// A refused prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub reason: BlockReason,
    /// The first deny pattern that matched (its index in `deny_patterns`).
    pub pattern: Option<usize>,
}

impl Blocked {
    /// The matching pattern as a field path (`deny_patterns[2]`), for logs and spans.
    pub fn pattern_field(&self) -> Option<String> {
        self.pattern.map(|i| format!("deny_patterns[{i}]"))
    }

    /// The client's answer: 400 `bad request`.
    pub fn refusal(&self) -> Refusal {
        Refusal::bad_request(CLIENT_MESSAGE)
    }
}

/// A prompt that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuardPass {
    /// The first allow pattern that matched, when there are allow patterns.
    pub allowed_by: Option<usize>,
}

fn compile_list(list: &str, patterns: &[String]) -> Result<Option<RegexSet>, CompileError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    // Each pattern alone first, so an error names its index; the set cannot.
    for (i, pattern) in patterns.iter().enumerate() {
        compile_pattern(&format!("config.{list}[{i}]"), pattern, Flags::default())?;
    }
    RegexSet::new(patterns)
        .map(Some)
        .map_err(|e| CompileError::new(format!("config.{list}"), super::pattern_error("", &e)))
}

/// Appends the text of one message's `content`: a string, or the text parts of a
/// content-part array joined by spaces (null adds nothing). `None` when it is neither.
fn push_content(text: &mut String, content: Option<&Value>) -> Option<()> {
    match content {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(parts)) => {
            let mut first = true;
            for part in parts {
                let part = part.as_object()?;
                if part.get("type").and_then(Value::as_str) == Some("text") {
                    if !first {
                        text.push(' ');
                    }
                    text.push_str(part.get("text")?.as_str()?);
                    first = false;
                }
            }
        }
        Some(_) => return None,
    }
    Some(())
}

impl CompiledGuard {
    pub fn new(config: &PromptGuardConfig) -> Result<CompiledGuard, CompileError> {
        openai_only(config.llm_format)?;
        Ok(CompiledGuard {
            allow: compile_list("allow_patterns", &config.allow_patterns)?,
            deny: compile_list("deny_patterns", &config.deny_patterns)?,
            latest_only: config.allow_all_conversation_history,
            all_roles: config.match_all_roles,
        })
    }

    /// The text the patterns are matched against, as Kong collects it: the user messages
    /// (every role's with `match_all_roles`), newest first, each followed by a space; only
    /// the newest one with `allow_all_conversation_history`; a completion's `prompt`; an
    /// embeddings `input`.
    fn collect<'b>(&self, body: &'b Map<String, Value>) -> Result<Cow<'b, str>, BlockReason> {
        match body.get("messages") {
            Some(Value::Array(messages)) => {
                let mut text = String::new();
                for message in messages.iter().rev() {
                    let message = message.as_object().ok_or(BlockReason::BadFormat)?;
                    let role = message
                        .get("role")
                        .and_then(Value::as_str)
                        .ok_or(BlockReason::BadFormat)?;
                    if role != "user" && !self.all_roles {
                        continue;
                    }
                    push_content(&mut text, message.get("content"))
                        .ok_or(BlockReason::BadFormat)?;
                    if self.latest_only {
                        break;
                    }
                    text.push(' ');
                }
                Ok(Cow::Owned(text))
            }
            // Kong reads a JSON object as an empty Lua array: nothing to collect.
            Some(Value::Object(_)) => Ok(Cow::Borrowed("")),
            // Embeddings: their `input` is the text the provider reads (token ids are not
            // text, so they cannot pass a guard).
            _ => match body.get("prompt").or_else(|| body.get("input")) {
                Some(Value::String(prompt)) => Ok(Cow::Borrowed(prompt)),
                // The gateway also takes a list of prompts: all of them are checked.
                Some(Value::Array(prompts)) => prompts
                    .iter()
                    .map(|p| p.as_str().ok_or(BlockReason::BadFormat))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|p| Cow::Owned(p.join(" "))),
                _ => Err(BlockReason::BadFormat),
            },
        }
    }

    /// Checks the prompt: any deny match refuses it; with allow patterns, one must match.
    pub fn check(&self, body: &Map<String, Value>) -> Result<GuardPass, Blocked> {
        let text = self.collect(body).map_err(|reason| Blocked {
            reason,
            pattern: None,
        })?;
        if let Some(deny) = &self.deny
            && let Some(i) = deny.matches(&text).iter().next()
        {
            return Err(Blocked {
                reason: BlockReason::Denied,
                pattern: Some(i),
            });
        }
        match &self.allow {
            None => Ok(GuardPass::default()),
            Some(allow) => match allow.matches(&text).iter().next() {
                Some(i) => Ok(GuardPass {
                    allowed_by: Some(i),
                }),
                None => Err(Blocked {
                    reason: BlockReason::NotAllowed,
                    pattern: None,
                }),
            },
        }
    }
}
