//! `/tenants/{tenant}/keys`: tenant API keys. The full key is shown exactly once, in the
//! creation response; the store keeps HMAC-SHA256(pepper, key). DELETE revokes: the key
//! stays listed with `revoked_at` set.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::admin::auth::Principal;
use crate::admin::body::{JsonObject, PageQuery, parse_typed};
use crate::admin::routes::route_allows;
use crate::admin::tenants::visible_tenant;
use crate::admin::validate::{self, Problems};
use crate::admin::{ErrorBody, Paged, created, fetch_page};
use crate::crypto::{generate_api_key, key_prefix};
use crate::error::{Error, admin::Result};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::store::{ApiKeyRecord, Lookup, TenantRecord, new_id, now};
use crate::vocab::{LimitScope, Limits};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(revoke);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyInput {
    pub name: String,
    /// RFC 3339; must be in the future. Null = never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Route names (or ids) this key may call; null = every route the tenant may use.
    pub routes: Option<Vec<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Limits and budgets (docs/behaviour.md, "Limits and budgets"); `shared` is refused.
    #[schema(value_type = Option<Limits>)]
    pub limits: Option<serde_json::Map<String, Value>>,
}

/// What `PATCH /tenants/{tenant}/keys/{id}` may change: a key's limits (its other fields
/// are fixed at creation).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyPatch {
    /// Replaces the key's limits; `{}` removes them.
    #[schema(value_type = Limits)]
    pub limits: serde_json::Map<String, Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// Tenant name.
    pub tenant: String,
    /// First characters of the key, for recognition.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub routes: Option<Vec<String>>,
    pub tags: Vec<String>,
    #[schema(value_type = Limits)]
    pub limits: Value,
}

/// The creation response: the view plus the full key, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub view: ApiKeyView,
    /// The full key (`tg-…`). Store it now: it is never shown again.
    pub key: String,
}

impl ApiKeyView {
    fn new(r: &ApiKeyRecord, tenant: &TenantRecord, snap: &Snapshot) -> Self {
        ApiKeyView {
            id: r.id,
            name: r.name.clone(),
            tenant: tenant.name.clone(),
            prefix: r.prefix.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
            routes: r.routes.as_ref().map(|ids| {
                ids.0
                    .iter()
                    .map(|id| {
                        snap.route_name(*id)
                            .map_or_else(|| id.to_string(), str::to_string)
                    })
                    .collect()
            }),
            tags: r.tags.0.clone(),
            limits: r.limits.0.clone(),
        }
    }
}

/// List a tenant's API keys (revoked ones included).
#[utoipa::path(tag = "keys", params(("tenant" = String, Path, description = "tenant id or name"), PageQuery),
    responses((status = 200, body = Paged<ApiKeyView>), (status = 404, body = ErrorBody)))]
#[get("/tenants/{tenant}/keys")]
async fn list(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let page = q.page()?;
    let tenant = visible_tenant(&state, &who, &path).await?;
    let records = state
        .store
        .list_api_keys(tenant.id, fetch_page(page))
        .await?;
    let snap = state.snapshot.load();
    let views = records
        .iter()
        .map(|r| ApiKeyView::new(r, &tenant, &snap))
        .collect();
    let base = format!("/tenants/{}/keys", tenant.name);
    Ok(HttpResponse::Ok().json(Paged::from_fetched(views, page, &base)))
}

/// Create an API key; the response carries the full key exactly once.
#[utoipa::path(tag = "keys", params(("tenant" = String, Path, description = "tenant id or name")),
    request_body = ApiKeyInput,
    responses((status = 201, body = CreatedApiKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/tenants/{tenant}/keys")]
async fn create(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    let tenant = visible_tenant(&state, &who, &path).await?;
    who.require_tenant_write(tenant.id, &tenant.name)?;
    let input: ApiKeyInput = parse_typed(Value::Object(body.0))?;
    let mut problems = Problems::default();
    problems.check("name", validate::object_name(&input.name));
    validate::tags(&mut problems, &input.tags);
    let limits = validate::limits(&mut problems, input.limits.as_ref(), LimitScope::Key);
    let now = now();
    if input.expires_at.is_some_and(|at| at <= now) {
        problems.rule("expires_at", "must be in the future");
    }
    let mut route_ids = Vec::new();
    for (i, r) in input.routes.iter().flatten().enumerate() {
        match state.store.get_route(&Lookup::parse(r)).await? {
            Some(route) => {
                let service = state
                    .store
                    .get_service(&Lookup::Id(route.service_id))
                    .await?;
                let service_tenant = service.and_then(|s| s.tenant_id);
                if !route_allows(&route, service_tenant, tenant.id) {
                    problems.add(
                        format!("routes[{i}]"),
                        format!("route '{r}' is not available to tenant '{}'", tenant.name),
                    );
                } else if route_ids.contains(&route.id) {
                    problems.add(format!("routes[{i}]"), "is listed twice");
                } else {
                    route_ids.push(route.id);
                }
            }
            // Same answer as "not available" so a tenant_admin learns nothing of others' routes.
            None => problems.missing(
                format!("routes[{i}]"),
                format!("route '{r}' is not available to tenant '{}'", tenant.name),
            ),
        }
    }
    problems.finish()?;
    let key = generate_api_key();
    let record = ApiKeyRecord {
        id: new_id(),
        tenant_id: tenant.id,
        name: input.name,
        prefix: key_prefix(key.expose()),
        key_hash: state.api_keys.hash(key.expose()).to_vec(),
        routes: input.routes.map(|_| Json(route_ids)),
        tags: Json(input.tags),
        limits: Json(limits),
        // The stored precision (microseconds, as PostgreSQL keeps), so the response is what a
        // later GET returns on every backend.
        expires_at: input.expires_at.map(|at| at.trunc_subsecs(6)),
        last_used_at: None,
        revoked_at: None,
        created_at: now,
        updated_at: now,
    };
    state.store.insert_api_key(&record).await?;
    state.config_changed().await;
    tracing::info!(tenant = %tenant.name, key_id = %record.id, prefix = %record.prefix, "API key created");
    let view = ApiKeyView::new(&record, &tenant, &state.snapshot.load());
    let location = format!("/tenants/{}/keys/{}", tenant.name, record.id);
    Ok(created(
        location,
        &CreatedApiKey {
            view,
            key: key.into_inner(),
        },
    ))
}

pub(crate) async fn find(
    state: &AppState,
    tenant: &TenantRecord,
    key_id: &str,
) -> Result<ApiKeyRecord> {
    let not_found = || Error::not_found(format!("API key '{key_id}'"));
    let id = Uuid::parse_str(key_id).map_err(|_| not_found())?;
    Ok(state
        .store
        .get_api_key(tenant.id, id)
        .await?
        .ok_or_else(not_found)?)
}

/// Get one API key (never the key itself).
#[utoipa::path(tag = "keys", params(("tenant" = String, Path, description = "tenant id or name"), ("id" = Uuid, Path, description = "key id")),
    responses((status = 200, body = ApiKeyView), (status = 404, body = ErrorBody)))]
#[get("/tenants/{tenant}/keys/{id}")]
async fn get_one(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (tenant_key, key_id) = path.into_inner();
    let tenant = visible_tenant(&state, &who, &tenant_key).await?;
    let record = find(&state, &tenant, &key_id).await?;
    Ok(HttpResponse::Ok().json(ApiKeyView::new(&record, &tenant, &state.snapshot.load())))
}

/// Change an API key's limits (the only field that changes after creation).
#[utoipa::path(tag = "keys", params(("tenant" = String, Path, description = "tenant id or name"), ("id" = Uuid, Path, description = "key id")),
    request_body = ApiKeyPatch,
    responses((status = 200, body = ApiKeyView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[patch("/tenants/{tenant}/keys/{id}")]
async fn update(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<(String, String)>,
    body: JsonObject,
) -> Result<HttpResponse> {
    let (tenant_key, key_id) = path.into_inner();
    let tenant = visible_tenant(&state, &who, &tenant_key).await?;
    who.require_tenant_write(tenant.id, &tenant.name)?;
    let record = find(&state, &tenant, &key_id).await?;
    let input: ApiKeyPatch = parse_typed(Value::Object(body.0))?;
    let mut problems = Problems::default();
    let limits = validate::limits(&mut problems, Some(&input.limits), LimitScope::Key);
    problems.finish()?;
    let record = state
        .store
        .set_api_key_limits(tenant.id, record.id, &Json(limits), now())
        .await?;
    state.config_changed().await;
    tracing::info!(tenant = %tenant.name, key_id = %record.id, "API key limits changed");
    Ok(HttpResponse::Ok().json(ApiKeyView::new(&record, &tenant, &state.snapshot.load())))
}

/// Revoke an API key: it stays listed with `revoked_at` and stops working.
#[utoipa::path(tag = "keys", params(("tenant" = String, Path, description = "tenant id or name"), ("id" = Uuid, Path, description = "key id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
#[delete("/tenants/{tenant}/keys/{id}")]
async fn revoke(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (tenant_key, key_id) = path.into_inner();
    let tenant = visible_tenant(&state, &who, &tenant_key).await?;
    who.require_tenant_write(tenant.id, &tenant.name)?;
    let record = find(&state, &tenant, &key_id).await?;
    state
        .store
        .revoke_api_key(tenant.id, record.id, now())
        .await?;
    state.config_changed().await;
    tracing::info!(tenant = %tenant.name, key_id = %record.id, "API key revoked");
    Ok(HttpResponse::NoContent().finish())
}
