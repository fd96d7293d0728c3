//! The configuration vocabulary every other part of the gateway speaks: providers and the
//! wire formats their services choose, route types, service and model options, admin
//! roles and who may use a route, and which addresses the gateway may dial.
//!
//! A leaf: it imports nothing of the crate — no web, storage, actor or telemetry code —
//! only `std`, `serde`, `uuid` and `utoipa` (for the admin API's schema). Everything else
//! imports it, so the admin handlers, the snapshot, the translators and the proxy share one
//! definition of each word (docs/architecture.md, "Module map").

pub mod access;
pub mod limits;
pub mod netguard;
pub mod policy;
pub mod provider;
pub mod route;
pub mod service;

pub use access::{Role, tenant_may_use};
pub use limits::{Budget, BudgetPeriod, LimitScope, Limits, OnStoreError};
pub use policy::{PolicyConfig, PolicyScope, PolicyType};
pub use provider::{Llama2Format, MistralFormat, Provider, ProviderKind};
pub use route::{Logging, ModelConfig, ModelOptions, ResponseStreaming, RouteKind, RouteType};
pub use service::{DEFAULT_AZURE_API_VERSION, DEFAULT_MAX_CONNECTIONS, ServiceOptions, Timeouts};
