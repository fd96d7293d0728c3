//! `ai-prompt-decorator` (docs/behaviour.md, "Policies"): fixed messages put before and
//! after a chat's `messages`, in the configured order.

use serde_json::{Map, Value, json};

use crate::vocab::policy::{DecoratorMessage, LlmFormat, PromptDecoratorConfig};

use super::{CompileError, Refusal};

/// `ai-prompt-decorator`, compiled: its messages built once as JSON.
#[derive(Debug, Clone)]
pub struct CompiledDecorator {
    prepend: Vec<Value>,
    append: Vec<Value>,
}

fn messages(items: &[DecoratorMessage]) -> Vec<Value> {
    items
        .iter()
        .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
        .collect()
}

/// The prompt policies read OpenAI's format, the only one Tollgate's surfaces speak.
pub(super) fn openai_only(format: LlmFormat) -> Result<(), CompileError> {
    if format == LlmFormat::Openai {
        Ok(())
    } else {
        Err(CompileError::new(
            "config.llm_format",
            "only 'openai' is supported: the gateway's surfaces speak OpenAI's format",
        ))
    }
}

impl CompiledDecorator {
    pub fn new(config: &PromptDecoratorConfig) -> Result<CompiledDecorator, CompileError> {
        openai_only(config.llm_format)?;
        Ok(CompiledDecorator {
            prepend: messages(&config.prompts.prepend),
            append: messages(&config.prompts.append),
        })
    }

    /// Decorates a chat body in place; anything but a non-empty `messages` array is Kong's
    /// 400.
    pub fn apply(&self, body: &mut Map<String, Value>) -> Result<(), Refusal> {
        let Some(Value::Array(old)) = body
            .get_mut("messages")
            .filter(|m| m.as_array().is_some_and(|a| !a.is_empty()))
        else {
            return Err(Refusal::bad_request(
                "this LLM route only supports llm/chat type requests",
            ));
        };
        let mut decorated = Vec::with_capacity(self.prepend.len() + old.len() + self.append.len());
        decorated.extend(self.prepend.iter().cloned());
        decorated.append(old);
        decorated.extend(self.append.iter().cloned());
        *old = decorated;
        Ok(())
    }
}
