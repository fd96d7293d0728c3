//! Stored records: exactly what the database holds, typed the same for both backends.
//! References are ids; the admin API renders them as names. Secrets are ciphertext here
//! (see `crypto::keyring`); nothing in this file is ever plaintext secret material.

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::types::Json;
use uuid::Uuid;

/// Now, truncated to microseconds so both backends round-trip the same value
/// (PostgreSQL keeps microseconds; SQLite keeps what it is given).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Time-ordered ids: creation order is id order, which makes pagination stable.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AdminRecord {
    pub id: Uuid,
    pub name: String,
    pub password_hash: String,
    pub role: String,
    pub tenant_id: Option<Uuid>,
    pub tags: Json<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Bumped by the store whenever the role, tenant or password changes and by
    /// logout-all; tokens carrying an older generation are refused (docs/security.md, "The admin door"). The
    /// value in a record passed to `insert_admin`/`update_admin` is ignored: the store
    /// owns it.
    pub token_generation: i64,
}

/// What the snapshot keeps of an admin user to check tokens: never the password hash.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AdminTokenRecord {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub tenant_id: Option<Uuid>,
    pub token_generation: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TenantRecord {
    pub id: Uuid,
    pub name: String,
    pub display_name: Option<String>,
    /// Limits (docs/behaviour.md, "Limits and budgets"): `vocab::Limits`, checked on write.
    pub limits: Json<serde_json::Value>,
    pub tags: Json<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    /// First characters of the key, for recognition.
    pub prefix: String,
    /// HMAC-SHA256(pepper, key): 32 bytes.
    pub key_hash: Vec<u8>,
    /// Route ids this key may call; `None` = every route the tenant may use.
    pub routes: Option<Json<Vec<Uuid>>>,
    pub tags: Json<Vec<String>>,
    /// Limits (docs/behaviour.md, "Limits and budgets"): `vocab::Limits`, checked on write.
    pub limits: Json<serde_json::Value>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CredentialRecord {
    pub id: Uuid,
    pub name: String,
    pub header_name: Option<String>,
    /// Ciphertext of the header value (keyring envelope), AAD bound to this row.
    pub header_value: Option<Vec<u8>>,
    pub param_name: Option<String>,
    pub param_value: Option<Vec<u8>>,
    /// `query` or `body`.
    pub param_location: Option<String>,
    pub allow_override: bool,
    /// Last characters of each secret for the masked read view (at most 4).
    pub header_value_hint: Option<String>,
    pub param_value_hint: Option<String>,
    pub tags: Json<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ServiceRecord {
    pub id: Uuid,
    pub name: String,
    pub provider: String,
    pub upstream_url: Option<String>,
    pub credential_id: Option<Uuid>,
    pub options: Json<serde_json::Value>,
    pub timeouts: Json<serde_json::Value>,
    /// Non-null makes the service private to this tenant.
    pub tenant_id: Option<Uuid>,
    pub tags: Json<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RouteRecord {
    pub id: Uuid,
    pub name: String,
    /// Path prefixes; each is unique across routes (table `route_paths`).
    pub paths: Json<Vec<String>>,
    pub model_alias: Option<String>,
    pub service_id: Uuid,
    pub route_type: String,
    pub model: Json<serde_json::Value>,
    pub logging: Json<serde_json::Value>,
    pub response_streaming: String,
    pub model_name_header: bool,
    pub max_request_body_size: i64,
    /// Tenant ids that may call the route; `None` = every tenant.
    pub tenants: Option<Json<Vec<Uuid>>>,
    pub policies: Json<serde_json::Value>,
    pub tags: Json<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Limits (docs/behaviour.md, "Limits and budgets"): `vocab::Limits`, checked on write;
    /// per tenant unless `shared`.
    pub limits: Json<serde_json::Value>,
}

/// A policy: one of Kong's companion AI plugins, bound to exactly one route, service or
/// tenant (docs/behaviour.md, "Policies").
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PolicyRecord {
    pub id: Uuid,
    pub name: String,
    /// Kong's plugin name (`ai-prompt-guard`, …): `vocab::PolicyType`.
    #[sqlx(rename = "type")]
    pub kind: String,
    pub enabled: bool,
    /// The type's configuration with Kong's defaults filled in; a transformer's
    /// `llm.service` is stored as the service's id (shown as its name).
    pub config: Json<serde_json::Value>,
    /// Exactly one of the three is set.
    pub route_id: Option<Uuid>,
    pub service_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub tags: Json<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A named secret of the gateway itself (e.g. the API-key pepper), encrypted like
/// credentials so every node shares it and `keys rotate-master` re-encrypts it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SystemSecretRecord {
    pub name: String,
    pub value: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// Everything the in-memory snapshot is compiled from, read in one transaction so it is
/// consistent with `version`.
#[derive(Debug, Clone, Default)]
pub struct ConfigData {
    pub version: i64,
    pub tenants: Vec<TenantRecord>,
    pub api_keys: Vec<ApiKeyRecord>,
    pub credentials: Vec<CredentialRecord>,
    pub services: Vec<ServiceRecord>,
    pub routes: Vec<RouteRecord>,
    pub policies: Vec<PolicyRecord>,
    pub system_secrets: Vec<SystemSecretRecord>,
    /// Admin users without their password hashes, for token checks on every node.
    pub admins: Vec<AdminTokenRecord>,
}

/// How an admin URL names an object: by UUID or by unique name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Id(Uuid),
    Name(String),
}

impl Lookup {
    pub fn parse(s: &str) -> Self {
        match Uuid::parse_str(s) {
            Ok(id) => Lookup::Id(id),
            Err(_) => Lookup::Name(s.to_owned()),
        }
    }
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookup::Id(id) => write!(f, "{id}"),
            Lookup::Name(n) => write!(f, "{n}"),
        }
    }
}

/// One page of a collection, in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// Upper bounds (milliseconds) of the latency histogram kept per usage row; one more
/// bucket counts everything above the last bound.
pub const LATENCY_BUCKETS_MS: [f64; 9] = [
    100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0, 60_000.0,
];

/// Number of histogram counters per usage row (the bounds plus the overflow bucket).
pub const LATENCY_BUCKETS: usize = LATENCY_BUCKETS_MS.len() + 1;

/// The `source` of usage rows counting proxied requests (policy usage carries the
/// policy's plugin name instead).
pub const USAGE_SOURCE_PROXY: &str = "proxy";

/// One aggregated usage row: a minute × tenant × key × route × model × source. Writing a
/// row adds its counts to the stored one (several nodes and several flushes share a
/// minute).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    /// The minute's start (seconds and below are zero).
    pub bucket_start: DateTime<Utc>,
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub route_id: Uuid,
    pub model: String,
    /// Whose usage: `proxy` (`USAGE_SOURCE_PROXY`) for the proxied requests, or the plugin
    /// name of the transformer policy whose instruction calls these are
    /// (`ai-request-transformer`, `ai-response-transformer`).
    pub source: String,
    pub requests: i64,
    pub errors: i64,
    /// Requests the gateway refused before the upstream call (a limit or budget); they
    /// are also counted in `requests` and `errors`.
    pub rejected: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// USD.
    pub cost: f64,
    pub latency_ms_sum: f64,
    /// Request counts per latency bucket (`LATENCY_BUCKETS_MS`, then the overflow).
    pub latency_histogram: [i64; LATENCY_BUCKETS],
}

impl UsageRow {
    /// The histogram bucket of a latency.
    pub fn latency_bucket(latency_ms: f64) -> usize {
        LATENCY_BUCKETS_MS
            .iter()
            .position(|&bound| latency_ms <= bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len())
    }
}

/// Which stored usage rows to read: `[from, to)`, optionally one tenant's.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageQuery {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub tenant_id: Option<Uuid>,
}

/// How far one usage spool segment is counted, as one write moves it: from `from` to `to`
/// bytes, `complete` once the whole segment (and the streams it left unfinished) is
/// counted (docs/architecture.md, "The usage spool").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolMark {
    pub segment: String,
    pub from: i64,
    pub to: i64,
    pub complete: bool,
}
