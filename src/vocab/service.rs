//! A service's provider options and upstream timeouts, as stored in its JSON columns and
//! read by the snapshot, the translators and the upstream pools. Their provider-dependent
//! checks and ranges are the admin API's (`admin/services.rs`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::provider::{Llama2Format, MistralFormat};

/// Provider options (Kong's `model.options`, provider part).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceOptions {
    /// Required for anthropic; sent as `anthropic-version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anthropic_version: Option<String>,
    /// Required for azure: `https://<instance>.openai.azure.com`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_instance: Option<String>,
    /// Required for azure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_deployment_id: Option<String>,
    /// azure only; default `2023-05-15` (Kong's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_api_version: Option<String>,
    /// Required for mistral: `openai` or `ollama`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mistral_format: Option<MistralFormat>,
    /// Required for llama2: `raw`, `openai` or `ollama`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llama2_format: Option<Llama2Format>,
}

/// Kong's default Azure API version.
pub const DEFAULT_AZURE_API_VERSION: &str = "2023-05-15";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Connect timeout in milliseconds (1..=300000, default 5000).
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    /// Read timeout in milliseconds (1..=3600000, default 60000): bounds a whole answer
    /// (head and body) and, for a stream, each silence between two events.
    #[serde(default = "default_read_ms")]
    pub read_ms: u64,
    /// Concurrent upstream connections per proxy worker for this service (1..=65536,
    /// default 1024); requests beyond it wait for a free one (docs/architecture.md,
    /// "Upstream pools and the address guard").
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Longest wait for a free upstream connection in milliseconds (1..=300000, default
    /// 10000); running out is a 503, never an upstream timeout.
    #[serde(default = "default_pool_wait_ms")]
    pub pool_wait_ms: u64,
    /// Total deadline in milliseconds (1..=86400000; `null`, the default, for none) for
    /// the whole upstream exchange — connect, head and body, a stream to its end; the
    /// wait for a free connection does not count (docs/architecture.md, "Timeouts and
    /// cancellation").
    #[serde(default)]
    pub total_ms: Option<u64>,
}

/// Per worker: 1 000 concurrent streams through one worker stay below it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

fn default_pool_wait_ms() -> u64 {
    10_000
}

fn default_connect_ms() -> u64 {
    5_000
}

fn default_read_ms() -> u64 {
    60_000
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: default_connect_ms(),
            read_ms: default_read_ms(),
            max_connections: default_max_connections(),
            pool_wait_ms: default_pool_wait_ms(),
            total_ms: None,
        }
    }
}
