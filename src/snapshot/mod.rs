//! The in-memory configuration snapshot (docs/behaviour.md, "Configuration and the snapshot"):
//! routes, services, decrypted credentials, tenants, API-key hashes and enabled policies compiled
//! from the store into one immutable value.
//!
//! Readers (the proxy, on every request) call [`SnapshotHandle::load`]: one atomic
//! pointer load through `arc-swap`, no lock, no database, no clone of configuration.
//! Writers (the admin API after each write, the change poller) rebuild a complete new
//! snapshot from the store and swap it in; a rebuild that cannot read the store keeps the
//! last good one. A stored credential that cannot be decrypted never stops a rebuild: it
//! disables only the services that use it (docs/architecture.md, "Configuration snapshot").

pub mod admins;
pub mod policies;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::crypto::redact::SecretValues;
use crate::crypto::{ApiKeyHasher, Keyring, Secret};
use crate::providers::{Translator, WireFormat};
use crate::store::{
    ApiKeyRecord, ConfigData, RouteRecord, ServiceRecord, SharedStore, TenantRecord, credential_aad,
};
use crate::vocab::{
    LimitScope, Limits, Logging, ModelConfig, PolicyType, Provider, ProviderKind,
    ResponseStreaming, RouteType, ServiceOptions, Timeouts, tenant_may_use,
};

pub use policies::{PolicyEntry, PolicyIndex};

/// Name of the system secret holding the API-key pepper.
pub const API_KEY_PEPPER: &str = "api_key_pepper";

#[derive(Debug)]
pub struct CredentialEntry {
    pub id: Uuid,
    pub name: String,
    pub header_name: Option<String>,
    pub header_value: Option<Secret<String>>,
    pub param_name: Option<String>,
    pub param_value: Option<Secret<String>>,
    pub param_location: Option<String>,
    pub allow_override: bool,
}

impl SecretValues for CredentialEntry {
    fn secret_values(&self) -> Vec<&str> {
        [&self.header_value, &self.param_value]
            .into_iter()
            .flatten()
            .map(|s| s.expose().as_str())
            .collect()
    }
}

/// A stored credential that no configured master key decrypts, and the services it
/// disables. Names and the decryption error only: never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailableCredential {
    pub id: Uuid,
    pub name: String,
    /// Which field failed and why (`header_value: authentication failed under key …`).
    pub reason: String,
    /// The services that use it, by id and name, with their owning tenant.
    pub services: Vec<(Uuid, String, Option<Uuid>)>,
}

/// A service with its JSON columns parsed once, at compile time, not per request.
#[derive(Debug)]
pub struct ServiceEntry {
    pub record: ServiceRecord,
    pub credential: Option<Arc<CredentialEntry>>,
    /// Name of the service's credential when it cannot be decrypted: the service answers
    /// 503 `credential_unavailable` instead of calling the provider without it.
    pub unavailable_credential: Option<String>,
    pub provider: ProviderKind,
    /// The wire format its translator speaks, decided here once rather than per request.
    pub wire: WireFormat,
    pub options: ServiceOptions,
    pub timeouts: Timeouts,
}

impl ServiceEntry {
    /// The translator of the service's wire format.
    pub fn translator(&self) -> &'static dyn Translator {
        self.wire.translator()
    }
}

/// A route with its JSON columns parsed once.
#[derive(Debug)]
pub struct RouteEntry {
    pub record: RouteRecord,
    pub service: Arc<ServiceEntry>,
    pub route_type: RouteType,
    pub model: ModelConfig,
    pub logging: Logging,
    pub streaming: ResponseStreaming,
    /// The route's limits; empty when none (docs/behaviour.md, "Limits and budgets").
    pub limits: StoredLimits,
}

impl RouteEntry {
    /// The route's prices, USD per 1M prompt and completion tokens, when it has them: both
    /// must be set, except on embeddings routes, which have no completion to price
    /// (docs/behaviour.md, "Embeddings").
    pub fn prices(&self) -> Option<(f64, f64)> {
        let o = &self.model.options;
        let output = match self.route_type {
            RouteType::Embeddings => o.output_cost.or(Some(0.0)),
            _ => o.output_cost,
        };
        Some((o.input_cost?, output?))
    }

    /// May this tenant call the route (listed, and the service not private to another)?
    pub fn allows_tenant(&self, tenant: Uuid) -> bool {
        tenant_may_use(
            self.record.tenants.as_ref().map(|ids| ids.0.as_slice()),
            self.service.record.tenant_id,
            tenant,
        )
    }
}

/// Parses a stored JSON column into its typed form; stored data was validated on write,
/// so a failure means a hand-edited database: the object is skipped and logged.
fn parse_column<T: serde::de::DeserializeOwned>(
    what: &str,
    name: &str,
    value: &serde_json::Value,
) -> Option<T> {
    match serde_json::from_value(value.clone()) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(object = %format!("{what}/{name}"), error = %e, "stored configuration does not parse; skipping it");
            None
        }
    }
}

/// Parses a stored limits object. It was checked on write; one that no longer parses (a
/// hand-edited database) keeps its object but is marked unreadable, and the requests it
/// applies to are refused (503 `limits_unavailable`) rather than let through unlimited:
/// limits guard money (docs/behaviour.md, "Limits and budgets").
fn parse_limits(
    what: &str,
    name: &str,
    value: &serde_json::Value,
    scope: LimitScope,
) -> StoredLimits {
    match Limits::parse(value, "limits", scope) {
        Ok(limits) => StoredLimits::Readable(limits),
        Err(problems) => {
            tracing::error!(object = %format!("{what}/{name}"), problems = ?problems, "stored limits do not parse; requests they apply to are refused");
            StoredLimits::Unreadable
        }
    }
}

/// An object's stored limits as the snapshot compiled them.
#[derive(Debug, Clone)]
pub enum StoredLimits {
    Readable(Limits),
    /// The stored JSON no longer parses: the requests these limits apply to are refused.
    Unreadable,
}

impl StoredLimits {
    /// The limits, or the 503 that refuses what they apply to when the stored JSON no
    /// longer parses; `kind` and `name` name their owner (`tenant`, `acme`), formatted
    /// only then.
    pub fn readable(&self, kind: &str, name: &str) -> Result<&Limits, crate::error::Error> {
        match self {
            StoredLimits::Readable(limits) => Ok(limits),
            StoredLimits::Unreadable => Err(crate::error::Error::unavailable(format!(
                "{kind} {name}: the stored limits cannot be read; requests they apply to are \
                 refused until they are saved again"
            ))
            .with_openai_code("limits_unavailable")),
        }
    }

    /// Whether these limits ask the limits stage for anything (an unreadable set does: a
    /// refusal).
    pub fn is_empty(&self) -> bool {
        match self {
            StoredLimits::Readable(limits) => limits.is_empty(),
            StoredLimits::Unreadable => false,
        }
    }
}

fn compile_service(
    s: ServiceRecord,
    credential: Option<Arc<CredentialEntry>>,
    unavailable_credential: Option<String>,
) -> Option<ServiceEntry> {
    let options: ServiceOptions = parse_column("services", &s.name, &s.options.0)?;
    let timeouts: Timeouts = parse_column("services", &s.name, &s.timeouts.0)?;
    let provider = Provider::parse(&s.provider).and_then(|p| ProviderKind::new(p, &options));
    let Some(provider) = provider else {
        tracing::error!(service = %s.name, provider = %s.provider, "unknown provider or missing format; skipping the service");
        return None;
    };
    Some(ServiceEntry {
        record: s,
        credential,
        unavailable_credential,
        provider,
        wire: WireFormat::of(provider),
        options,
        timeouts,
    })
}

fn compile_route(r: RouteRecord, service: Arc<ServiceEntry>) -> Option<RouteEntry> {
    let route_type = parse_column(
        "routes",
        &r.name,
        &serde_json::Value::String(r.route_type.clone()),
    )?;
    let model = parse_column("routes", &r.name, &r.model.0)?;
    let logging = parse_column("routes", &r.name, &r.logging.0)?;
    let streaming = parse_column(
        "routes",
        &r.name,
        &serde_json::Value::String(r.response_streaming.clone()),
    )?;
    let limits = parse_limits("routes", &r.name, &r.limits.0, LimitScope::Route);
    Some(RouteEntry {
        record: r,
        service,
        route_type,
        model,
        logging,
        streaming,
        limits,
    })
}

/// A tenant's or key's limits with its name (refusals name the owner).
#[derive(Debug)]
pub struct NamedLimits {
    pub name: String,
    pub limits: StoredLimits,
}

#[derive(Debug)]
pub struct KeyEntry {
    pub record: ApiKeyRecord,
}

/// One immutable, consistent view of the configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// `config_state.version` of the data it was compiled from.
    pub version: i64,
    pub built_at: DateTime<Utc>,
    pub built_instant: Instant,
    pub tenants: HashMap<Uuid, TenantRecord>,
    pub tenants_by_name: HashMap<String, Uuid>,
    /// Keyed by HMAC-SHA256(pepper, key): O(1) authentication.
    pub keys_by_hash: HashMap<Vec<u8>, KeyEntry>,
    pub credentials: HashMap<Uuid, Arc<CredentialEntry>>,
    pub services: HashMap<Uuid, Arc<ServiceEntry>>,
    pub routes: HashMap<Uuid, Arc<RouteEntry>>,
    /// Route path prefixes, longest first.
    pub paths: Vec<(String, Arc<RouteEntry>)>,
    pub aliases: HashMap<String, Arc<RouteEntry>>,
    /// Credentials that cannot be decrypted, by name; their services are disabled.
    pub unavailable_credentials: Vec<UnavailableCredential>,
    /// Admin users for token checks (ids, roles, tenants, token generations).
    pub admins: admins::AdminDirectory,
    /// Enabled policies by what they are bound to; see [`Snapshot::policies_for`].
    pub policies: PolicyIndex,
    /// Tenants' limits, only the non-empty ones (docs/behaviour.md, "Limits and budgets").
    pub tenant_limits: HashMap<Uuid, NamedLimits>,
    /// API keys' limits by key id, only the non-empty ones.
    pub key_limits: HashMap<Uuid, NamedLimits>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            version: -1,
            built_at: Utc::now(),
            built_instant: Instant::now(),
            tenants: HashMap::new(),
            tenants_by_name: HashMap::new(),
            keys_by_hash: HashMap::new(),
            credentials: HashMap::new(),
            services: HashMap::new(),
            routes: HashMap::new(),
            paths: Vec::new(),
            aliases: HashMap::new(),
            unavailable_credentials: Vec::new(),
            admins: admins::AdminDirectory::default(),
            policies: PolicyIndex::default(),
            tenant_limits: HashMap::new(),
            key_limits: HashMap::new(),
        }
    }

    /// Compiles stored configuration, decrypting every credential. A credential that does
    /// not decrypt is left out and its services are compiled disabled, so one bad row never
    /// holds back the rest of the configuration (key revocations above all).
    pub fn compile(mut data: ConfigData, keyring: &Keyring) -> Snapshot {
        let decrypt = |id: Uuid, field: &str, ct: &Option<Vec<u8>>| {
            ct.as_ref()
                .map(|ct| {
                    let plain = keyring
                        .decrypt(&credential_aad(id, field), ct)
                        .map_err(|e| format!("{field}: {e}"))?;
                    String::from_utf8(plain)
                        .map(Secret::new)
                        .map_err(|_| format!("{field}: plaintext is not UTF-8"))
                })
                .transpose()
        };
        let mut credentials = HashMap::new();
        let mut unavailable: HashMap<Uuid, UnavailableCredential> = HashMap::new();
        for c in &data.credentials {
            let values = decrypt(c.id, "header_value", &c.header_value).and_then(|header| {
                decrypt(c.id, "param_value", &c.param_value).map(|param| (header, param))
            });
            match values {
                Ok((header_value, param_value)) => {
                    let entry = CredentialEntry {
                        id: c.id,
                        name: c.name.clone(),
                        header_name: c.header_name.clone(),
                        header_value,
                        param_name: c.param_name.clone(),
                        param_value,
                        param_location: c.param_location.clone(),
                        allow_override: c.allow_override,
                    };
                    credentials.insert(c.id, Arc::new(entry));
                }
                Err(reason) => {
                    unavailable.insert(
                        c.id,
                        UnavailableCredential {
                            id: c.id,
                            name: c.name.clone(),
                            reason,
                            services: Vec::new(),
                        },
                    );
                }
            }
        }
        let mut services: HashMap<Uuid, Arc<ServiceEntry>> = HashMap::new();
        for s in data.services {
            let credential = s.credential_id.and_then(|id| credentials.get(&id).cloned());
            let broken = s.credential_id.and_then(|id| unavailable.get_mut(&id));
            let broken_name = broken.map(|u| {
                u.services.push((s.id, s.name.clone(), s.tenant_id));
                u.name.clone()
            });
            let id = s.id;
            if let Some(entry) = compile_service(s, credential, broken_name) {
                services.insert(id, Arc::new(entry));
            }
        }
        let mut unavailable_credentials: Vec<UnavailableCredential> =
            unavailable.into_values().collect();
        for u in &mut unavailable_credentials {
            u.services.sort_by(|a, b| a.1.cmp(&b.1));
        }
        unavailable_credentials.sort_by(|a, b| a.name.cmp(&b.name));
        let mut routes = HashMap::new();
        let mut paths = Vec::new();
        let mut aliases = HashMap::new();
        for r in data.routes {
            // The store's foreign key guarantees the service exists; skip defensively.
            let Some(service) = services.get(&r.service_id).cloned() else {
                continue;
            };
            let Some(entry) = compile_route(r, service) else {
                continue;
            };
            let entry = Arc::new(entry);
            for p in entry.record.paths.iter() {
                paths.push((p.clone(), entry.clone()));
            }
            if let Some(alias) = &entry.record.model_alias {
                aliases.insert(alias.clone(), entry.clone());
            }
            routes.insert(entry.record.id, entry);
        }
        paths.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let key_limits = data
            .api_keys
            .iter()
            .map(|k| {
                let limits = parse_limits("api_keys", &k.name, &k.limits.0, LimitScope::Key);
                let name = k.name.clone();
                (k.id, NamedLimits { name, limits })
            })
            .filter(|(_, l)| !l.limits.is_empty())
            .collect();
        let tenant_limits = data
            .tenants
            .iter()
            .map(|t| {
                let limits = parse_limits("tenants", &t.name, &t.limits.0, LimitScope::Tenant);
                let name = t.name.clone();
                (t.id, NamedLimits { name, limits })
            })
            .filter(|(_, l)| !l.limits.is_empty())
            .collect();
        let keys_by_hash = data
            .api_keys
            .into_iter()
            .map(|k| (k.key_hash.clone(), KeyEntry { record: k }))
            .collect();
        let admins = admins::AdminDirectory::compile(std::mem::take(&mut data.admins));
        let policies = PolicyIndex::compile(std::mem::take(&mut data.policies), &services);
        let tenants_by_name = data
            .tenants
            .iter()
            .map(|t| (t.name.clone(), t.id))
            .collect();
        let tenants = data.tenants.into_iter().map(|t| (t.id, t)).collect();
        Snapshot {
            version: data.version,
            built_at: Utc::now(),
            built_instant: Instant::now(),
            tenants,
            tenants_by_name,
            keys_by_hash,
            credentials,
            services,
            routes,
            paths,
            aliases,
            unavailable_credentials,
            admins,
            policies,
            tenant_limits,
            key_limits,
        }
    }

    /// Logs what changed in the set of undecryptable credentials from `previous` to this
    /// snapshot: an error when one breaks (or breaks differently), an info line when it is
    /// usable again. Unchanged state logs nothing, so rebuilds and polls do not repeat it.
    pub fn log_credential_changes(&self, previous: &Snapshot) {
        for u in &self.unavailable_credentials {
            let before = previous
                .unavailable_credentials
                .iter()
                .find(|p| p.id == u.id);
            if before.is_some_and(|p| p.reason == u.reason && p.services == u.services) {
                continue;
            }
            let services: Vec<&str> = u.services.iter().map(|s| s.1.as_str()).collect();
            tracing::error!(
                credential = %u.name,
                reason = %u.reason,
                disabled_services = %services.join(","),
                "stored credential cannot be decrypted; the services using it answer 503 credential_unavailable. Configure the master key it was encrypted with (TOLLGATE_MASTER_KEY accepts several, 'new:…,old:…') or set the credential's value again"
            );
        }
        for p in &previous.unavailable_credentials {
            if self.unavailable_credentials.iter().all(|u| u.id != p.id) {
                tracing::info!(credential = %p.name, "credential is usable again (or gone); its services are enabled");
            }
        }
    }

    pub fn tenant_name(&self, id: Uuid) -> Option<&str> {
        self.tenants.get(&id).map(|t| t.name.as_str())
    }

    pub fn credential_name(&self, id: Uuid) -> Option<&str> {
        self.credentials
            .get(&id)
            .map(|c| c.name.as_str())
            .or_else(|| {
                self.unavailable_credentials
                    .iter()
                    .find(|u| u.id == id)
                    .map(|u| u.name.as_str())
            })
    }

    pub fn service_name(&self, id: Uuid) -> Option<&str> {
        self.services.get(&id).map(|s| s.record.name.as_str())
    }

    pub fn route_name(&self, id: Uuid) -> Option<&str> {
        self.routes.get(&id).map(|r| r.record.name.as_str())
    }

    /// The policies that apply to a request on `route` by `tenant`: per type the most
    /// specific enabled binding (route over service over tenant), in the order they run
    /// (`PolicyType::IN_ORDER`: request transformer, template, decorator, guard, then the
    /// response transformer).
    pub fn policies_for<'a>(
        &'a self,
        route: &'a RouteEntry,
        tenant: Uuid,
    ) -> impl Iterator<Item = &'a Arc<PolicyEntry>> + 'a {
        self.policies.effective_all(route, tenant)
    }

    /// The policy of one type that applies to a request on `route` by `tenant`, if any.
    pub fn policy_for(
        &self,
        kind: PolicyType,
        route: &RouteEntry,
        tenant: Uuid,
    ) -> Option<&Arc<PolicyEntry>> {
        self.policies.effective(kind, route, tenant)
    }

    /// Authenticates a presented tenant key: O(1) lookup by its keyed hash, then a
    /// constant-time comparison of the digests.
    pub fn find_key(&self, hasher: &ApiKeyHasher, presented: &str) -> Option<&KeyEntry> {
        use subtle::ConstantTimeEq;
        let digest = hasher.hash(presented);
        let entry = self.keys_by_hash.get(digest.as_slice())?;
        bool::from(entry.record.key_hash.as_slice().ct_eq(&digest)).then_some(entry)
    }
}

/// Shared handle to the current snapshot.
#[derive(Clone)]
pub struct SnapshotHandle {
    current: Arc<ArcSwap<Snapshot>>,
    /// Serialises rebuilds so an older read never replaces a newer snapshot.
    rebuild: Arc<tokio::sync::Mutex<()>>,
}

impl SnapshotHandle {
    pub fn new(initial: Snapshot) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(initial)),
            rebuild: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The current snapshot: lock-free.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Rebuilds from the store and swaps the result in; returns the version now served.
    pub async fn refresh(
        &self,
        store: &SharedStore,
        keyring: &Keyring,
    ) -> Result<i64, SnapshotError> {
        let _serialised = self.rebuild.lock().await;
        let data = store.load_config().await?;
        if data.version == self.current.load().version {
            return Ok(data.version);
        }
        let snapshot = Snapshot::compile(data, keyring);
        let version = snapshot.version;
        snapshot.log_credential_changes(&self.current.load());
        self.current.store(Arc::new(snapshot));
        tracing::debug!(version, "configuration snapshot swapped");
        Ok(version)
    }

    /// Rebuilds only when the stored version differs from the served one (the poller).
    pub async fn refresh_if_changed(
        &self,
        store: &SharedStore,
        keyring: &Keyring,
    ) -> Result<bool, SnapshotError> {
        let stored = store.config_version().await?;
        if stored == self.current.load().version {
            return Ok(false);
        }
        self.refresh(store, keyring).await.map(|_| true)
    }
}
