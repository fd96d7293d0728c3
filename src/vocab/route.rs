//! What a route is, in Kong's ai-proxy vocabulary: its type, how it streams, the model it
//! calls with its tuning and prices, and what it logs. The admin API validates these
//! (`admin/routes.rs`); the snapshot parses them once from the stored columns.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum RouteType {
    #[serde(rename = "llm/v1/chat")]
    Chat,
    #[serde(rename = "llm/v1/completions")]
    Completions,
    /// OpenAI's embeddings (docs/behaviour.md, "Embeddings").
    #[serde(rename = "llm/v1/embeddings")]
    Embeddings,
    #[serde(rename = "preserve")]
    Preserve,
}

impl RouteType {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteType::Chat => "llm/v1/chat",
            RouteType::Completions => "llm/v1/completions",
            RouteType::Embeddings => "llm/v1/embeddings",
            RouteType::Preserve => "preserve",
        }
    }
}

/// The two translated completion route types (`preserve` is passed through by the proxy;
/// embeddings have their own translators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `llm/v1/chat`
    Chat,
    /// `llm/v1/completions`
    Completions,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        RouteType::from(self).as_str()
    }
}

impl From<RouteKind> for RouteType {
    fn from(kind: RouteKind) -> RouteType {
        match kind {
            RouteKind::Chat => RouteType::Chat,
            RouteKind::Completions => RouteType::Completions,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponseStreaming {
    /// Streams when the client sends `stream: true`.
    #[default]
    Allow,
    /// `stream: true` → 400.
    Deny,
    /// Always streams.
    Always,
}

impl ResponseStreaming {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseStreaming::Allow => "allow",
            ResponseStreaming::Deny => "deny",
            ResponseStreaming::Always => "always",
        }
    }
}

/// Tuning options override the client's values (Kong ≥ 3.8); costs are per 1M tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelOptions {
    pub max_tokens: Option<u32>,
    /// 0.0 ..= 5.0
    pub temperature: Option<f64>,
    /// 0.0 ..= 1.0
    pub top_p: Option<f64>,
    /// 0 ..= 500
    pub top_k: Option<u32>,
    /// USD per 1M prompt tokens (> 0).
    pub input_cost: Option<f64>,
    /// USD per 1M completion tokens (> 0).
    pub output_cost: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Upstream model; null ⇒ the client's `model` is used.
    pub name: Option<String>,
    #[serde(default)]
    pub options: ModelOptions,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// Write the analytics log line (usage records are kept regardless). Default true.
    #[serde(default = "yes")]
    pub log_statistics: bool,
    /// Include request and response bodies in the analytics line. Default false.
    #[serde(default)]
    pub log_payloads: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            log_statistics: true,
            log_payloads: false,
        }
    }
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names_match_the_wire_form() {
        for t in [
            RouteType::Chat,
            RouteType::Completions,
            RouteType::Embeddings,
            RouteType::Preserve,
        ] {
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::String(t.as_str().into())
            );
        }
        assert_eq!(RouteKind::Chat.as_str(), "llm/v1/chat");
        assert_eq!(RouteKind::Completions.as_str(), "llm/v1/completions");
        for s in [
            ResponseStreaming::Allow,
            ResponseStreaming::Deny,
            ResponseStreaming::Always,
        ] {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
        }
    }
}
