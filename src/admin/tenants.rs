//! `/tenants`: customers or teams that call the proxy.

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::admin::auth::Principal;
use crate::admin::body::{JsonObject, PageQuery, parse_typed};
use crate::admin::crud::{self, Resource, page_in_memory};
use crate::admin::validate::{self, Problems};
use crate::admin::{ErrorBody, Paged, fetch_page};
use crate::error::{Error, admin::Result};
use crate::state::AppState;
use crate::store::{Lookup, Page, StoreResult, TenantRecord, new_id, now};
use crate::vocab::{LimitScope, Limits, Role};
use sqlx::types::Json;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(upsert)
        .service(remove);
}

/// What a client submits (POST, PUT, and PATCH after merging).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantInput {
    /// Unique name: `[a-z0-9][a-z0-9-_.]{0,62}`.
    pub name: String,
    pub display_name: Option<String>,
    /// Limits and budgets (docs/behaviour.md, "Limits and budgets"); `shared` is refused.
    #[schema(value_type = Option<Limits>)]
    pub limits: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub name: String,
    pub display_name: Option<String>,
    #[schema(value_type = Limits)]
    pub limits: Value,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&TenantRecord> for TenantView {
    fn from(r: &TenantRecord) -> Self {
        TenantView {
            id: r.id,
            name: r.name.clone(),
            display_name: r.display_name.clone(),
            limits: r.limits.0.clone(),
            tags: r.tags.0.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn to_record(input: TenantInput, existing: Option<&TenantRecord>) -> Result<TenantRecord> {
    let mut problems = Problems::default();
    problems.check("name", validate::object_name(&input.name));
    if let Some(d) = &input.display_name {
        problems.check("display_name", validate::display_text(d, 200));
    }
    validate::tags(&mut problems, &input.tags);
    let limits = validate::limits(&mut problems, input.limits.as_ref(), LimitScope::Tenant);
    problems.finish()?;
    let now = now();
    Ok(TenantRecord {
        id: existing.map_or_else(new_id, |e| e.id),
        name: input.name,
        display_name: input.display_name,
        limits: Json(limits),
        tags: Json(input.tags),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    })
}

/// Finds a tenant the principal may see; 404 otherwise (also for a tenant_admin reaching
/// for another tenant). Used by the tenant-scoped key endpoints.
pub async fn visible_tenant(state: &AppState, who: &Principal, key: &str) -> Result<TenantRecord> {
    let tenant = state.store.get_tenant(&Lookup::parse(key)).await?;
    match tenant {
        Some(t) if who.can_see_tenant(t.id) => Ok(t),
        _ => Err(Error::not_found(format!("tenant '{key}'")).into()),
    }
}

pub struct Tenants;

impl Resource for Tenants {
    type Record = TenantRecord;
    type View = TenantView;
    const KIND: &'static str = "tenant";
    const PATH: &'static str = "/tenants";

    fn id(record: &TenantRecord) -> Uuid {
        record.id
    }

    fn view(_: &AppState, record: &TenantRecord) -> TenantView {
        TenantView::from(record)
    }

    fn as_input(_: &AppState, r: &TenantRecord) -> Value {
        json!({ "name": r.name, "display_name": r.display_name, "limits": r.limits.0, "tags": r.tags.0 })
    }

    async fn to_record(
        _: &AppState,
        submitted: Value,
        existing: Option<&TenantRecord>,
        _: Option<&Value>,
    ) -> Result<TenantRecord> {
        to_record(parse_typed(submitted)?, existing)
    }

    async fn fetch(state: &AppState, key: &Lookup) -> StoreResult<Option<TenantRecord>> {
        state.store.get_tenant(key).await
    }

    async fn fetch_page(state: &AppState, page: Page) -> StoreResult<Vec<TenantRecord>> {
        state.store.list_tenants(page).await
    }

    async fn insert(state: &AppState, record: &TenantRecord) -> StoreResult<()> {
        state.store.insert_tenant(record).await
    }

    async fn update(state: &AppState, record: &TenantRecord) -> StoreResult<()> {
        state.store.update_tenant(record).await
    }

    async fn delete(state: &AppState, record: &TenantRecord) -> StoreResult<()> {
        state.store.delete_tenant(record.id).await
    }

    /// Every role reads tenants; a tenant_admin only its own (`visible`, `list_for`).
    fn can_read(_: &Principal) -> Result<()> {
        Ok(())
    }

    fn visible(_: &AppState, who: &Principal, record: &TenantRecord) -> bool {
        who.can_see_tenant(record.id)
    }

    async fn list_for(state: &AppState, who: &Principal, page: Page) -> Result<Vec<TenantRecord>> {
        if who.role != Role::TenantAdmin {
            return Ok(state.store.list_tenants(fetch_page(page)).await?);
        }
        let own = match who.tenant_id {
            Some(id) => state.store.get_tenant(&Lookup::Id(id)).await?,
            None => None,
        };
        Ok(page_in_memory(own, page))
    }
}

/// List tenants (a tenant_admin sees only its own).
#[utoipa::path(
    tag = "tenants",
    params(PageQuery),
    responses((status = 200, body = Paged<TenantView>), (status = 401, body = ErrorBody))
)]
#[get("/tenants")]
async fn list(
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    crud::list::<Tenants>(state, who, q).await
}

/// Create a tenant.
#[utoipa::path(
    tag = "tenants",
    request_body = TenantInput,
    responses((status = 201, body = TenantView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody))
)]
#[post("/tenants")]
async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::create::<Tenants>(state, who, body).await
}

/// Get a tenant by id or name.
#[utoipa::path(
    tag = "tenants",
    params(("tenant" = String, Path, description = "id or name")),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorBody))
)]
#[get("/tenants/{tenant}")]
async fn get_one(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::get_one::<Tenants>(state, who, path).await
}

/// Partially update a tenant (JSON merge patch).
#[utoipa::path(
    tag = "tenants",
    params(("tenant" = String, Path, description = "id or name")),
    request_body = Object,
    responses((status = 200, body = TenantView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
#[patch("/tenants/{tenant}")]
async fn update(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::update::<Tenants>(state, who, path, body).await
}

/// Create or replace a tenant by name (201 created, 200 replaced).
#[utoipa::path(
    tag = "tenants",
    params(("tenant" = String, Path, description = "name")),
    request_body = TenantInput,
    responses((status = 200, body = TenantView), (status = 201, body = TenantView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody))
)]
#[put("/tenants/{tenant}")]
async fn upsert(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::upsert::<Tenants>(state, who, path, body).await
}

/// Delete a tenant and its API keys (409 while services, routes or admins refer to it).
#[utoipa::path(
    tag = "tenants",
    params(("tenant" = String, Path, description = "id or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
#[delete("/tenants/{tenant}")]
async fn remove(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::remove::<Tenants>(state, who, path).await
}
