//! `/services`: an LLM provider endpoint — where to call and with which credential.
//! Provider options and their required-ness follow Kong's `model.options`.

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::types::Json;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::admin::auth::Principal;
use crate::admin::body::{JsonObject, PageQuery, parse_typed};
use crate::admin::crud::{self, Resource};
use crate::admin::validate::{self, Problems};
use crate::admin::{ErrorBody, Paged};
use crate::error::admin::Result;
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::store::{Lookup, Page, ServiceRecord, StoreResult, new_id, now};
use crate::vocab::{
    DEFAULT_AZURE_API_VERSION, MistralFormat, Provider, ProviderKind, RouteType, ServiceOptions,
    Timeouts,
};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(upsert)
        .service(remove);
}

/// The longest total deadline: a day.
const MAX_TOTAL_MS: u64 = 86_400_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceInput {
    pub name: String,
    pub provider: Provider,
    /// Full upstream URL (Kong semantics); required for llama2.
    pub upstream_url: Option<String>,
    /// Credential id or name.
    pub credential: Option<String>,
    #[serde(default)]
    pub options: ServiceOptions,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Tenant id or name: makes the service private to that tenant.
    pub tenant: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceView {
    pub id: Uuid,
    pub name: String,
    pub provider: String,
    pub upstream_url: Option<String>,
    /// Credential name.
    pub credential: Option<String>,
    #[schema(value_type = ServiceOptions)]
    pub options: Value,
    #[schema(value_type = Timeouts)]
    pub timeouts: Value,
    /// Tenant name, when private.
    pub tenant: Option<String>,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn name_or_id(name: Option<&str>, id: Uuid) -> String {
    name.map_or_else(|| id.to_string(), str::to_string)
}

impl ServiceView {
    fn new(r: &ServiceRecord, snap: &Snapshot) -> Self {
        ServiceView {
            id: r.id,
            name: r.name.clone(),
            provider: r.provider.clone(),
            upstream_url: r.upstream_url.clone(),
            credential: r
                .credential_id
                .map(|id| name_or_id(snap.credential_name(id), id)),
            options: r.options.0.clone(),
            timeouts: shown_timeouts(&r.timeouts.0),
            tenant: r.tenant_id.map(|id| name_or_id(snap.tenant_name(id), id)),
            tags: r.tags.0.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Stored timeouts as the proxy reads them: fields stored before they existed show their
/// defaults (`total_ms: null`).
fn shown_timeouts(stored: &Value) -> Value {
    serde_json::from_value::<Timeouts>(stored.clone())
        .map_or_else(|_| stored.clone(), |t| to_json(&t))
}

fn as_input(r: &ServiceRecord, snap: &Snapshot) -> Value {
    let view = ServiceView::new(r, snap);
    json!({
        "name": view.name, "provider": view.provider, "upstream_url": view.upstream_url,
        "credential": view.credential, "options": view.options, "timeouts": view.timeouts,
        "tenant": view.tenant, "tags": view.tags,
    })
}

/// Kong's provider-conditional checks (`must set 'options.X' for P provider`), and options
/// that do not belong to the provider.
/// A service that `llm/v1/embeddings` routes use keeps a provider with an embeddings API
/// (docs/behaviour.md, "Embeddings"); the routes are read from the snapshot.
fn check_embeddings_routes(
    state: &AppState,
    problems: &mut Problems,
    input: &ServiceInput,
    existing: &ServiceRecord,
) {
    let Some(kind) = ProviderKind::new(input.provider, &input.options) else {
        return;
    };
    if kind.has_embeddings() {
        return;
    }
    let snap = state.snapshot.load();
    let mut routes: Vec<&str> = snap
        .routes
        .values()
        .filter(|r| r.record.service_id == existing.id && r.route_type == RouteType::Embeddings)
        .map(|r| r.record.name.as_str())
        .collect();
    if routes.is_empty() {
        return;
    }
    routes.sort_unstable();
    problems.add(
        "provider",
        format!(
            "provider {} has no embeddings API, and llm/v1/embeddings routes use this \
             service: {}",
            kind.name(),
            routes.join(", ")
        ),
    );
}

fn check_provider_options(problems: &mut Problems, input: &ServiceInput) {
    let o = &input.options;
    let p = input.provider;
    let required = |problems: &mut Problems, present: bool, field: &str| {
        if !present {
            problems.rule(
                format!("options.{field}"),
                format!("must set 'options.{field}' for {} provider", p.as_str()),
            );
        }
    };
    let foreign = |problems: &mut Problems, present: bool, field: &str, owner: Provider| {
        if present && p != owner {
            problems.rule(
                format!("options.{field}"),
                format!("only applies to the {} provider", owner.as_str()),
            );
        }
    };
    foreign(
        problems,
        o.anthropic_version.is_some(),
        "anthropic_version",
        Provider::Anthropic,
    );
    foreign(
        problems,
        o.azure_instance.is_some(),
        "azure_instance",
        Provider::Azure,
    );
    foreign(
        problems,
        o.azure_deployment_id.is_some(),
        "azure_deployment_id",
        Provider::Azure,
    );
    foreign(
        problems,
        o.azure_api_version.is_some(),
        "azure_api_version",
        Provider::Azure,
    );
    foreign(
        problems,
        o.mistral_format.is_some(),
        "mistral_format",
        Provider::Mistral,
    );
    foreign(
        problems,
        o.llama2_format.is_some(),
        "llama2_format",
        Provider::Llama2,
    );
    match p {
        Provider::Anthropic => {
            required(problems, o.anthropic_version.is_some(), "anthropic_version")
        }
        Provider::Azure => {
            required(problems, o.azure_instance.is_some(), "azure_instance");
            required(
                problems,
                o.azure_deployment_id.is_some(),
                "azure_deployment_id",
            );
        }
        Provider::Mistral => required(problems, o.mistral_format.is_some(), "mistral_format"),
        Provider::Llama2 => required(problems, o.llama2_format.is_some(), "llama2_format"),
        Provider::Openai | Provider::Cohere => {}
    }
    let self_hosted = p == Provider::Llama2 || o.mistral_format == Some(MistralFormat::Ollama);
    if self_hosted && input.upstream_url.is_none() {
        problems.rule(
            "upstream_url",
            "must set 'upstream_url' for self-hosted providers/models",
        );
    }
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if let Some(v) = &o.azure_instance
        && !dns_label(v)
    {
        problems.add(
            "options.azure_instance",
            "must be a DNS label (letters, digits, '-')",
        );
    }
    let url_segment = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    for (field, value) in [
        ("azure_deployment_id", &o.azure_deployment_id),
        ("azure_api_version", &o.azure_api_version),
        ("anthropic_version", &o.anthropic_version),
    ] {
        if let Some(v) = value
            && !url_segment(v)
        {
            problems.add(
                format!("options.{field}"),
                "must be 1 to 128 letters, digits, '-', '_' or '.'",
            );
        }
    }
}

async fn to_record(
    state: &AppState,
    mut input: ServiceInput,
    existing: Option<&ServiceRecord>,
) -> Result<ServiceRecord> {
    let mut problems = Problems::default();
    problems.check("name", validate::object_name(&input.name));
    validate::tags(&mut problems, &input.tags);
    check_provider_options(&mut problems, &input);
    if let Some(url) = &input.upstream_url {
        problems.check(
            "upstream_url",
            validate::upstream_url(url, state.settings.allow_private_upstreams),
        );
    }
    if !(1..=300_000).contains(&input.timeouts.connect_ms) {
        problems.add("timeouts.connect_ms", "must be between 1 and 300000");
    }
    if !(1..=3_600_000).contains(&input.timeouts.read_ms) {
        problems.add("timeouts.read_ms", "must be between 1 and 3600000");
    }
    if !(1..=65_536).contains(&input.timeouts.max_connections) {
        problems.add("timeouts.max_connections", "must be between 1 and 65536");
    }
    if !(1..=300_000).contains(&input.timeouts.pool_wait_ms) {
        problems.add("timeouts.pool_wait_ms", "must be between 1 and 300000");
    }
    if let Some(total) = input.timeouts.total_ms
        && !(1..=MAX_TOTAL_MS).contains(&total)
    {
        problems.add(
            "timeouts.total_ms",
            format!("must be between 1 and {MAX_TOTAL_MS}, or null for no total deadline"),
        );
    }
    let credential_id = match &input.credential {
        Some(c) => match state.store.get_credential(&Lookup::parse(c)).await? {
            Some(found) => Some(found.id),
            None => {
                problems.missing("credential", format!("credential '{c}' does not exist"));
                None
            }
        },
        None => None,
    };
    let tenant_id = match &input.tenant {
        Some(t) => match state.store.get_tenant(&Lookup::parse(t)).await? {
            Some(found) => Some(found.id),
            None => {
                problems.missing("tenant", format!("tenant '{t}' does not exist"));
                None
            }
        },
        None => None,
    };
    if let Some(existing) = existing {
        check_embeddings_routes(state, &mut problems, &input, existing);
    }
    problems.finish()?;
    if input.provider == Provider::Azure && input.options.azure_api_version.is_none() {
        input.options.azure_api_version = Some(DEFAULT_AZURE_API_VERSION.into());
    }
    let now = now();
    Ok(ServiceRecord {
        id: existing.map_or_else(new_id, |e| e.id),
        name: input.name,
        provider: input.provider.as_str().to_string(),
        upstream_url: input.upstream_url,
        credential_id,
        options: Json(to_json(&input.options)),
        timeouts: Json(to_json(&input.timeouts)),
        tenant_id,
        tags: Json(input.tags),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    })
}

/// Serialises one of our own plain structs; cannot fail for them.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub struct Services;

impl Resource for Services {
    type Record = ServiceRecord;
    type View = ServiceView;
    const KIND: &'static str = "service";
    const PATH: &'static str = "/services";

    fn id(record: &ServiceRecord) -> Uuid {
        record.id
    }

    fn view(state: &AppState, record: &ServiceRecord) -> ServiceView {
        ServiceView::new(record, &state.snapshot.load())
    }

    fn as_input(state: &AppState, record: &ServiceRecord) -> Value {
        as_input(record, &state.snapshot.load())
    }

    async fn to_record(
        state: &AppState,
        submitted: Value,
        existing: Option<&ServiceRecord>,
        _: Option<&Value>,
    ) -> Result<ServiceRecord> {
        to_record(state, parse_typed(submitted)?, existing).await
    }

    async fn fetch(state: &AppState, key: &Lookup) -> StoreResult<Option<ServiceRecord>> {
        state.store.get_service(key).await
    }

    async fn fetch_page(state: &AppState, page: Page) -> StoreResult<Vec<ServiceRecord>> {
        state.store.list_services(page).await
    }

    async fn insert(state: &AppState, record: &ServiceRecord) -> StoreResult<()> {
        state.store.insert_service(record).await
    }

    async fn update(state: &AppState, record: &ServiceRecord) -> StoreResult<()> {
        state.store.update_service(record).await
    }

    async fn delete(state: &AppState, record: &ServiceRecord) -> StoreResult<()> {
        state.store.delete_service(record.id).await
    }
}

/// List services.
#[utoipa::path(tag = "services", params(PageQuery),
    responses((status = 200, body = Paged<ServiceView>), (status = 403, body = ErrorBody)))]
#[get("/services")]
async fn list(
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    crud::list::<Services>(state, who, q).await
}

/// Create a service.
#[utoipa::path(tag = "services", request_body = ServiceInput,
    responses((status = 201, body = ServiceView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/services")]
async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::create::<Services>(state, who, body).await
}

/// Get a service by id or name.
#[utoipa::path(tag = "services", params(("service" = String, Path, description = "id or name")),
    responses((status = 200, body = ServiceView), (status = 404, body = ErrorBody)))]
#[get("/services/{service}")]
async fn get_one(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::get_one::<Services>(state, who, path).await
}

/// Partially update a service (JSON merge patch).
#[utoipa::path(tag = "services", params(("service" = String, Path, description = "id or name")),
    request_body = Object,
    responses((status = 200, body = ServiceView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[patch("/services/{service}")]
async fn update(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::update::<Services>(state, who, path, body).await
}

/// Create or replace a service by name.
#[utoipa::path(tag = "services", params(("service" = String, Path, description = "name")),
    request_body = ServiceInput,
    responses((status = 200, body = ServiceView), (status = 201, body = ServiceView), (status = 400, body = ErrorBody)))]
#[put("/services/{service}")]
async fn upsert(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::upsert::<Services>(state, who, path, body).await
}

/// Delete a service (409 naming the routes that still use it).
#[utoipa::path(tag = "services", params(("service" = String, Path, description = "id or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/services/{service}")]
async fn remove(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::remove::<Services>(state, who, path).await
}
