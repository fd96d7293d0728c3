//! Policies: Kong's companion AI plugins, in Kong's vocabulary (docs/behaviour.md,
//! "Policies") — their type names, their configuration fields with Kong's defaults and
//! limits, the order they run in, and which binding wins when one type is bound at several
//! scopes. The admin API validates a `config` against these types (field by field, with
//! the limits below); the snapshot compiles them once (patterns, templates); the proxy's
//! policy stages run them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::route::{ModelConfig, RouteType};

/// Kong's plugin names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum PolicyType {
    #[serde(rename = "ai-request-transformer")]
    RequestTransformer,
    #[serde(rename = "ai-prompt-template")]
    PromptTemplate,
    #[serde(rename = "ai-prompt-decorator")]
    PromptDecorator,
    #[serde(rename = "ai-prompt-guard")]
    PromptGuard,
    #[serde(rename = "ai-response-transformer")]
    ResponseTransformer,
}

impl PolicyType {
    /// Every type, in the order they run (Kong's plugin priorities 777, 773, 772, 771, then
    /// ai-proxy at 770, then 768 on the answer).
    pub const IN_ORDER: [PolicyType; 5] = [
        PolicyType::RequestTransformer,
        PolicyType::PromptTemplate,
        PolicyType::PromptDecorator,
        PolicyType::PromptGuard,
        PolicyType::ResponseTransformer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::RequestTransformer => "ai-request-transformer",
            PolicyType::PromptTemplate => "ai-prompt-template",
            PolicyType::PromptDecorator => "ai-prompt-decorator",
            PolicyType::PromptGuard => "ai-prompt-guard",
            PolicyType::ResponseTransformer => "ai-response-transformer",
        }
    }

    pub fn parse(s: &str) -> Option<PolicyType> {
        PolicyType::IN_ORDER.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether a policy of this type runs on a route of `route_type` (docs/behaviour.md,
    /// "Embeddings"): on embeddings routes only the prompt guard does, on their `input`;
    /// the template and the decorator make prompts and the transformers rewrite answers,
    /// neither of which an embedding has, so they are skipped there rather than refusing.
    pub fn applies_to(self, route_type: RouteType) -> bool {
        route_type != RouteType::Embeddings || self == PolicyType::PromptGuard
    }
}

/// Where a policy is bound; when one type is bound at several scopes for a request, the
/// most specific applies: route over service over tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyScope {
    Route,
    Service,
    Tenant,
}

/// Kong's `max_request_body_size` default for the companion plugins (bytes).
pub const DEFAULT_POLICY_BODY_SIZE: u64 = 8192;
/// ai-prompt-decorator: at most this many prepend (and append) items…
pub const DECORATOR_MAX_ITEMS: usize = 15;
/// …each of 1 ..= this many characters.
pub const DECORATOR_MAX_CONTENT: usize = 500;
/// ai-prompt-guard: at most this many allow (and deny) patterns…
pub const GUARD_MAX_PATTERNS: usize = 10;
/// …each of 1 ..= this many characters.
pub const GUARD_MAX_PATTERN_LEN: usize = 500;
/// The transformers' default instruction-call timeout (ms).
pub const DEFAULT_TRANSFORMER_TIMEOUT_MS: u64 = 60_000;

fn yes() -> bool {
    true
}

fn default_body_size() -> u64 {
    DEFAULT_POLICY_BODY_SIZE
}

fn default_transformer_timeout() -> u64 {
    DEFAULT_TRANSFORMER_TIMEOUT_MS
}

/// The request format a prompt policy reads (Kong's `llm_format`); Tollgate's surfaces
/// speak OpenAI's, so only `openai` is accepted today.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LlmFormat {
    #[default]
    Openai,
    Bedrock,
    Gemini,
}

/// `ai-prompt-template`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptTemplateConfig {
    /// Required, non-empty; names unique.
    pub templates: Vec<PromptTemplate>,
    #[serde(default = "yes")]
    pub allow_untemplated_requests: bool,
    /// Keeps the client's body as sent in the analytics entry (`payload.original_request`).
    #[serde(default)]
    pub log_original_request: bool,
    #[serde(default = "default_body_size")]
    pub max_request_body_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptTemplate {
    pub name: String,
    /// A whole JSON request body with `{{placeholder}}`s (`[A-Za-z0-9_]+`).
    pub template: String,
}

/// `ai-prompt-decorator`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptDecoratorConfig {
    /// At least one of `prepend` and `append`.
    pub prompts: DecoratorPrompts,
    #[serde(default = "default_body_size")]
    pub max_request_body_size: u64,
    #[serde(default)]
    pub llm_format: LlmFormat,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecoratorPrompts {
    #[serde(default)]
    pub prepend: Vec<DecoratorMessage>,
    #[serde(default)]
    pub append: Vec<DecoratorMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecoratorMessage {
    #[serde(default)]
    pub role: DecoratorRole,
    pub content: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecoratorRole {
    #[default]
    System,
    Assistant,
    User,
}

impl DecoratorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DecoratorRole::System => "system",
            DecoratorRole::Assistant => "assistant",
            DecoratorRole::User => "user",
        }
    }
}

/// `ai-prompt-guard`. Patterns are Rust `regex` syntax (linear time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptGuardConfig {
    #[serde(default)]
    pub allow_patterns: Vec<String>,
    #[serde(default)]
    pub deny_patterns: Vec<String>,
    /// Kong's real meaning: `true` checks only the latest user message.
    #[serde(default)]
    pub allow_all_conversation_history: bool,
    /// Also checks messages of other roles; needs `allow_all_conversation_history: false`.
    #[serde(default)]
    pub match_all_roles: bool,
    #[serde(default = "default_body_size")]
    pub max_request_body_size: u64,
    #[serde(default)]
    pub llm_format: LlmFormat,
}

/// The instruction LLM of a transformer: one of Tollgate's own services, so its
/// credential stays in the service and is never part of the policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformerLlm {
    /// Must be `llm/v1/chat` (Kong: `'config.llm.route_type' must be 'llm/v1/chat' for AI
    /// transformer plugins`).
    pub route_type: RouteType,
    /// The service's name.
    pub service: String,
    /// The model to call and its tuning; `name` is required.
    pub model: ModelConfig,
}

/// `ai-request-transformer` and `ai-response-transformer`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformerConfig {
    /// The instruction LLM's system prompt. Required, non-empty.
    pub prompt: String,
    /// The whole first match becomes the result (Kong takes the match, not a capture
    /// group; case-insensitive, `^`/`$` at line ends); no match is 400 `AI response did
    /// not match specified regular expression`.
    #[serde(default)]
    pub transformation_extract_pattern: Option<String>,
    #[serde(default = "default_transformer_timeout")]
    pub http_timeout: u64,
    #[serde(default = "yes")]
    pub https_verify: bool,
    #[serde(default = "default_body_size")]
    pub max_request_body_size: u64,
    pub llm: TransformerLlm,
    /// Response transformer only: the LLM answers `{"status","headers","body"}`.
    #[serde(default)]
    pub parse_llm_response_json_instructions: bool,
}

/// One policy's typed configuration: what the admin API validates and the snapshot keeps
/// (and compiles once, in `policy::Compiled::new`).
#[derive(Debug, Clone)]
pub enum PolicyConfig {
    RequestTransformer(TransformerConfig),
    PromptTemplate(PromptTemplateConfig),
    PromptDecorator(PromptDecoratorConfig),
    PromptGuard(PromptGuardConfig),
    ResponseTransformer(TransformerConfig),
}

impl PolicyConfig {
    pub fn kind(&self) -> PolicyType {
        match self {
            PolicyConfig::RequestTransformer(_) => PolicyType::RequestTransformer,
            PolicyConfig::PromptTemplate(_) => PolicyType::PromptTemplate,
            PolicyConfig::PromptDecorator(_) => PolicyType::PromptDecorator,
            PolicyConfig::PromptGuard(_) => PolicyType::PromptGuard,
            PolicyConfig::ResponseTransformer(_) => PolicyType::ResponseTransformer,
        }
    }

    /// Types a `config` as the configuration of `kind`.
    pub fn parse<'de, D: serde::Deserializer<'de>>(
        kind: PolicyType,
        config: D,
    ) -> Result<PolicyConfig, D::Error> {
        Ok(match kind {
            PolicyType::RequestTransformer => {
                PolicyConfig::RequestTransformer(Deserialize::deserialize(config)?)
            }
            PolicyType::PromptTemplate => {
                PolicyConfig::PromptTemplate(Deserialize::deserialize(config)?)
            }
            PolicyType::PromptDecorator => {
                PolicyConfig::PromptDecorator(Deserialize::deserialize(config)?)
            }
            PolicyType::PromptGuard => PolicyConfig::PromptGuard(Deserialize::deserialize(config)?),
            PolicyType::ResponseTransformer => {
                PolicyConfig::ResponseTransformer(Deserialize::deserialize(config)?)
            }
        })
    }

    /// The transformers' instruction LLM.
    pub fn transformer(&self) -> Option<&TransformerConfig> {
        match self {
            PolicyConfig::RequestTransformer(t) | PolicyConfig::ResponseTransformer(t) => Some(t),
            _ => None,
        }
    }
}
