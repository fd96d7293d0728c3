//! `/routes`: how clients reach a service, in Kong's ai-proxy vocabulary
//! (docs/behaviour.md, "Admin resources").

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
use crate::admin::crud::{self, EVERYTHING, Resource, page_in_memory};
use crate::admin::services::to_json;
use crate::admin::validate::{self, Problems};
use crate::admin::{ErrorBody, Paged, fetch_page};
use crate::error::{Error, admin::Result};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::store::{Lookup, Page, RouteRecord, ServiceRecord, StoreResult, new_id, now};
use crate::vocab::{
    LimitScope, Limits, Logging, ModelConfig, Provider, ProviderKind, ResponseStreaming, Role,
    RouteType, ServiceOptions, tenant_may_use,
};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(upsert)
        .service(remove);
}

fn yes() -> bool {
    true
}

fn default_body_size() -> u64 {
    1024 * 1024
}

/// Largest accepted `max_request_body_size`.
const MAX_BODY_SIZE_LIMIT: u64 = 128 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyType {
    PromptTemplate,
    PromptDecorator,
    PromptGuard,
    RequestTransformer,
    ResponseTransformer,
}

/// An entry of a route's own `policies` list, which predates the `/policies` resource and
/// must stay empty (docs/behaviour.md, "Policies"): a non-empty list is refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(rename = "type")]
    pub kind: PolicyType,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteInput {
    pub name: String,
    /// Path prefixes (matched at segment boundaries, longest first).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Makes the route reachable as `model` on the OpenAI-compatible surface of its type
    /// (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`).
    pub model_alias: Option<String>,
    /// Service id or name.
    pub service: String,
    pub route_type: RouteType,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub logging: Logging,
    #[serde(default)]
    pub response_streaming: ResponseStreaming,
    /// Adds `x-tollgate-llm-model: <provider>/<model>`. Default true.
    #[serde(default = "yes")]
    pub model_name_header: bool,
    /// Bytes; default 1 MiB.
    #[serde(default = "default_body_size")]
    pub max_request_body_size: u64,
    /// Tenant names (or ids) that may call it; null = every tenant.
    pub tenants: Option<Vec<String>>,
    #[serde(default)]
    pub policies: Vec<Policy>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Limits and budgets (docs/behaviour.md, "Limits and budgets"): per tenant unless
    /// `shared`.
    #[schema(value_type = Option<Limits>)]
    pub limits: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    pub id: Uuid,
    pub name: String,
    pub paths: Vec<String>,
    pub model_alias: Option<String>,
    /// Service name.
    pub service: String,
    pub route_type: String,
    #[schema(value_type = ModelConfig)]
    pub model: Value,
    #[schema(value_type = Logging)]
    pub logging: Value,
    pub response_streaming: String,
    pub model_name_header: bool,
    pub max_request_body_size: i64,
    /// Tenant names; null = every tenant.
    pub tenants: Option<Vec<String>>,
    #[schema(value_type = Vec<Policy>)]
    pub policies: Value,
    pub tags: Vec<String>,
    #[schema(value_type = Limits)]
    pub limits: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RouteView {
    fn new(r: &RouteRecord, snap: &Snapshot) -> Self {
        RouteView {
            id: r.id,
            name: r.name.clone(),
            paths: r.paths.0.clone(),
            model_alias: r.model_alias.clone(),
            service: snap
                .service_name(r.service_id)
                .map_or_else(|| r.service_id.to_string(), str::to_string),
            route_type: r.route_type.clone(),
            model: r.model.0.clone(),
            logging: r.logging.0.clone(),
            response_streaming: r.response_streaming.clone(),
            model_name_header: r.model_name_header,
            max_request_body_size: r.max_request_body_size,
            tenants: r.tenants.as_ref().map(|ids| {
                ids.0
                    .iter()
                    .map(|id| {
                        snap.tenant_name(*id)
                            .map_or_else(|| id.to_string(), str::to_string)
                    })
                    .collect()
            }),
            policies: r.policies.0.clone(),
            tags: r.tags.0.clone(),
            limits: r.limits.0.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn as_input(r: &RouteRecord, snap: &Snapshot) -> Value {
    let v = RouteView::new(r, snap);
    json!({
        "name": v.name, "paths": v.paths, "model_alias": v.model_alias, "service": v.service,
        "route_type": v.route_type, "model": v.model, "logging": v.logging,
        "response_streaming": v.response_streaming, "model_name_header": v.model_name_header,
        "max_request_body_size": v.max_request_body_size, "tenants": v.tenants,
        "policies": v.policies, "tags": v.tags, "limits": v.limits,
    })
}

/// Checks a model and its tuning; `at` is its field path (`model`, `config.llm.model`).
pub(crate) fn check_model(problems: &mut Problems, at: &str, model: &ModelConfig) {
    if let Some(name) = &model.name
        && (name.is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control))
    {
        problems.add(
            format!("{at}.name"),
            "must be 1 to 256 characters without control characters",
        );
    }
    let o = &model.options;
    let mut range = |field: &str, value: Option<f64>, lo: f64, hi: f64| {
        if value.is_some_and(|v| !(lo..=hi).contains(&v)) {
            problems.add(
                format!("{at}.options.{field}"),
                format!("must be between {lo} and {hi}"),
            );
        }
    };
    range("temperature", o.temperature, 0.0, 5.0);
    range("top_p", o.top_p, 0.0, 1.0);
    range("top_k", o.top_k.map(f64::from), 0.0, 500.0);
    if o.max_tokens == Some(0) {
        problems.add(format!("{at}.options.max_tokens"), "must be greater than 0");
    }
    for (field, value) in [("input_cost", o.input_cost), ("output_cost", o.output_cost)] {
        if value.is_some_and(|v| v <= 0.0 || v > 1_000_000.0) {
            problems.add(
                format!("{at}.options.{field}"),
                "must be greater than 0 (USD per 1M tokens)",
            );
        }
    }
}

async fn to_record(
    state: &AppState,
    input: RouteInput,
    existing: Option<&RouteRecord>,
) -> Result<RouteRecord> {
    let mut problems = Problems::default();
    problems.check("name", validate::object_name(&input.name));
    validate::tags(&mut problems, &input.tags);
    for (i, p) in input.paths.iter().enumerate() {
        let field = format!("paths[{i}]");
        match validate::route_path_shape(p) {
            Err(message) => problems.add(field, message),
            // The gateway's own endpoints: a rule the document does not state (422).
            Ok(()) => {
                if let Err(message) = validate::shadowed_endpoint(p) {
                    problems.rule(field, message);
                }
            }
        }
        if input.paths[..i].contains(p) {
            problems.add(format!("paths[{i}]"), "is listed twice");
        }
    }
    if input.paths.len() > 32 {
        problems.add("paths", "at most 32 paths");
    }
    if let Some(alias) = &input.model_alias {
        problems.check("model_alias", validate::model_alias(alias));
    }
    if input.paths.is_empty() && input.model_alias.is_none() {
        problems.rule(
            "paths",
            "a route needs at least one path or a model_alias, or nothing can reach it",
        );
    }
    check_model(&mut problems, "model", &input.model);
    let limits = validate::limits(&mut problems, input.limits.as_ref(), LimitScope::Route);
    if !(1..=MAX_BODY_SIZE_LIMIT).contains(&input.max_request_body_size) {
        problems.add(
            "max_request_body_size",
            format!("must be between 1 and {MAX_BODY_SIZE_LIMIT}"),
        );
    }
    let service = state
        .store
        .get_service(&Lookup::parse(&input.service))
        .await?;
    if service.is_none() {
        problems.missing(
            "service",
            format!("service '{}' does not exist", input.service),
        );
    }
    if input.route_type == RouteType::Embeddings {
        // Ties the route type to other fields and to the service's provider (422).
        let mut embedding_problems = Problems::default();
        check_embeddings(&mut embedding_problems, &input, service.as_ref());
        problems.absorb_as_rules(embedding_problems);
    }
    let mut tenant_ids = Vec::new();
    if let Some(tenants) = &input.tenants {
        for (i, t) in tenants.iter().enumerate() {
            match state.store.get_tenant(&Lookup::parse(t)).await? {
                Some(found) if tenant_ids.contains(&found.id) => {
                    problems.add(format!("tenants[{i}]"), "is listed twice");
                }
                Some(found) => tenant_ids.push(found.id),
                None => problems.missing(
                    format!("tenants[{i}]"),
                    format!("tenant '{t}' does not exist"),
                ),
            }
        }
    }
    // A private service serves only its tenant; a route must not widen that.
    if let Some(owner) = service.as_ref().and_then(|s| s.tenant_id)
        && input.tenants.is_some()
        && tenant_ids.iter().any(|id| *id != owner)
    {
        problems.rule(
            "tenants",
            "the service is private to one tenant; only that tenant may be listed",
        );
    }
    // Policies are their own resource; a route's inline list would never run, so a policy
    // put here by mistake is refused rather than silently ignored.
    if !input.policies.is_empty() {
        problems.add(
            "policies",
            "policies are bound through /policies (e.g. POST /policies with \"route\": \"<this \
             route>\"); a route's own list must be empty",
        );
    }
    problems.finish()?;
    let Some(service) = service else {
        return Err(Error::invalid_field("service", "does not exist").into());
    };
    let now = now();
    Ok(RouteRecord {
        id: existing.map_or_else(new_id, |e| e.id),
        name: input.name,
        paths: Json(input.paths),
        model_alias: input.model_alias,
        service_id: service.id,
        route_type: input.route_type.as_str().to_string(),
        model: Json(to_json(&input.model)),
        logging: Json(to_json(&input.logging)),
        response_streaming: input.response_streaming.as_str().to_string(),
        model_name_header: input.model_name_header,
        max_request_body_size: i64::try_from(input.max_request_body_size).unwrap_or(i64::MAX),
        tenants: input.tenants.map(|_| Json(tenant_ids)),
        policies: Json(to_json(&input.policies)),
        tags: Json(input.tags),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
        limits: Json(limits),
    })
}

/// An `llm/v1/embeddings` route (docs/behaviour.md, "Embeddings"): its service's provider
/// must have an embeddings API, and embeddings are never streamed.
fn check_embeddings(problems: &mut Problems, input: &RouteInput, service: Option<&ServiceRecord>) {
    if input.response_streaming == ResponseStreaming::Always {
        problems.add(
            "response_streaming",
            "an llm/v1/embeddings route cannot stream; use 'allow' or 'deny'",
        );
    }
    let Some(service) = service else { return };
    if let Some(kind) = service_kind(service)
        && !kind.has_embeddings()
    {
        problems.add(
            "route_type",
            format!(
                "service '{}' (provider {}) has no embeddings API; llm/v1/embeddings routes \
                 need an openai, azure, cohere, mistral or llama2 (openai or ollama format) \
                 service",
                service.name,
                kind.name()
            ),
        );
    }
}

/// A stored service's provider in its configured format.
pub(crate) fn service_kind(service: &ServiceRecord) -> Option<ProviderKind> {
    let options: ServiceOptions = serde_json::from_value(service.options.0.clone()).ok()?;
    ProviderKind::new(Provider::parse(&service.provider)?, &options)
}

/// Whether a tenant may use a stored route ([`tenant_may_use`]).
pub(crate) fn route_allows(
    route: &RouteRecord,
    service_tenant: Option<Uuid>,
    tenant: Uuid,
) -> bool {
    tenant_may_use(
        route.tenants.as_ref().map(|ids| ids.0.as_slice()),
        service_tenant,
        tenant,
    )
}

/// For a tenant_admin: its tenant id, from the snapshot.
fn own_tenant(who: &Principal) -> Option<Uuid> {
    who.tenant_id
}

fn visible_to(state: &AppState, who: &Principal, route: &RouteRecord) -> bool {
    if who.role != Role::TenantAdmin {
        return true;
    }
    let snap = state.snapshot.load();
    let service_tenant = snap
        .services
        .get(&route.service_id)
        .and_then(|s| s.record.tenant_id);
    own_tenant(who).is_some_and(|t| route_allows(route, service_tenant, t))
}

pub struct Routes;

impl Resource for Routes {
    type Record = RouteRecord;
    type View = RouteView;
    const KIND: &'static str = "route";
    const PATH: &'static str = "/routes";

    fn id(record: &RouteRecord) -> Uuid {
        record.id
    }

    fn view(state: &AppState, record: &RouteRecord) -> RouteView {
        RouteView::new(record, &state.snapshot.load())
    }

    /// A tenant_admin sees only its own tenant in `tenants` (other tenants' names stay
    /// hidden; null still means every tenant).
    fn view_for(state: &AppState, who: &Principal, record: &RouteRecord) -> RouteView {
        let mut view = RouteView::new(record, &state.snapshot.load());
        if who.role == Role::TenantAdmin {
            let own = who.tenant.clone();
            view.tenants = view.tenants.map(|_| {
                record
                    .tenants
                    .as_ref()
                    .is_some_and(|ids| who.tenant_id.is_some_and(|t| ids.0.contains(&t)))
                    .then_some(own)
                    .flatten()
                    .into_iter()
                    .collect()
            });
        }
        view
    }

    fn as_input(state: &AppState, record: &RouteRecord) -> Value {
        as_input(record, &state.snapshot.load())
    }

    async fn to_record(
        state: &AppState,
        submitted: Value,
        existing: Option<&RouteRecord>,
        _: Option<&Value>,
    ) -> Result<RouteRecord> {
        to_record(state, parse_typed(submitted)?, existing).await
    }

    async fn fetch(state: &AppState, key: &Lookup) -> StoreResult<Option<RouteRecord>> {
        state.store.get_route(key).await
    }

    async fn fetch_page(state: &AppState, page: Page) -> StoreResult<Vec<RouteRecord>> {
        state.store.list_routes(page).await
    }

    async fn insert(state: &AppState, record: &RouteRecord) -> StoreResult<()> {
        state.store.insert_route(record).await
    }

    async fn update(state: &AppState, record: &RouteRecord) -> StoreResult<()> {
        state.store.update_route(record).await
    }

    async fn delete(state: &AppState, record: &RouteRecord) -> StoreResult<()> {
        state.store.delete_route(record.id).await
    }

    /// Every role reads routes; a tenant_admin only those its tenant may use.
    fn can_read(_: &Principal) -> Result<()> {
        Ok(())
    }

    fn visible(state: &AppState, who: &Principal, record: &RouteRecord) -> bool {
        visible_to(state, who, record)
    }

    async fn list_for(state: &AppState, who: &Principal, page: Page) -> Result<Vec<RouteRecord>> {
        if who.role != Role::TenantAdmin {
            return Ok(state.store.list_routes(fetch_page(page)).await?);
        }
        // Filtered views cannot page in SQL; the route count is configuration-sized.
        let all = state.store.list_routes(EVERYTHING).await?;
        Ok(page_in_memory(
            all.into_iter().filter(|r| visible_to(state, who, r)),
            page,
        ))
    }
}

/// List routes (a tenant_admin sees the routes its tenant may use).
#[utoipa::path(tag = "routes", params(PageQuery),
    responses((status = 200, body = Paged<RouteView>), (status = 401, body = ErrorBody)))]
#[get("/routes")]
async fn list(
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    crud::list::<Routes>(state, who, q).await
}

/// Create a route.
#[utoipa::path(tag = "routes", request_body = RouteInput,
    responses((status = 201, body = RouteView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/routes")]
async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::create::<Routes>(state, who, body).await
}

/// Get a route by id or name.
#[utoipa::path(tag = "routes", params(("route" = String, Path, description = "id or name")),
    responses((status = 200, body = RouteView), (status = 404, body = ErrorBody)))]
#[get("/routes/{route}")]
async fn get_one(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::get_one::<Routes>(state, who, path).await
}

/// Partially update a route (JSON merge patch).
#[utoipa::path(tag = "routes", params(("route" = String, Path, description = "id or name")),
    request_body = Object,
    responses((status = 200, body = RouteView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[patch("/routes/{route}")]
async fn update(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::update::<Routes>(state, who, path, body).await
}

/// Create or replace a route by name.
#[utoipa::path(tag = "routes", params(("route" = String, Path, description = "name")),
    request_body = RouteInput,
    responses((status = 200, body = RouteView), (status = 201, body = RouteView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[put("/routes/{route}")]
async fn upsert(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::upsert::<Routes>(state, who, path, body).await
}

/// Delete a route (409 naming API keys restricted to it).
#[utoipa::path(tag = "routes", params(("route" = String, Path, description = "id or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/routes/{route}")]
async fn remove(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::remove::<Routes>(state, who, path).await
}
