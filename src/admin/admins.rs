//! `/admins`: admin users (admin role only). Passwords are Argon2id hashes and write-only.
//! Changing an admin's role, tenant or password, or deleting it, revokes its earlier
//! tokens (the store bumps its token generation; docs/architecture.md, "Admin tokens").

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
use crate::admin::crud::{self, EVERYTHING, Resource};
use crate::admin::validate::{self, Problems};
use crate::admin::{ErrorBody, Paged};
use crate::crypto::hash_password;
use crate::error::{Error, admin::Result};
use crate::state::AppState;
use crate::store::{AdminRecord, Lookup, Page, StoreResult, new_id, now};
use crate::vocab::Role;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(upsert)
        .service(remove);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminInput {
    /// Login name: `[a-z0-9][a-z0-9-_.]{0,62}`.
    pub username: String,
    /// Write-only; 8 to 1024 characters. Required on creation.
    pub password: Option<String>,
    pub role: Role,
    /// Tenant id or name; required for (and only for) tenant_admin.
    pub tenant: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminView {
    pub id: Uuid,
    pub username: String,
    /// Same as `username` (every object has a `name`).
    pub name: String,
    pub role: String,
    pub tenant: Option<String>,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AdminView {
    fn new(r: &AdminRecord, state: &AppState) -> Self {
        let snap = state.snapshot.load();
        AdminView {
            id: r.id,
            username: r.name.clone(),
            name: r.name.clone(),
            role: r.role.clone(),
            tenant: r.tenant_id.map(|id| {
                snap.tenant_name(id)
                    .map_or_else(|| id.to_string(), str::to_string)
            }),
            tags: r.tags.0.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

async fn to_record(
    state: &AppState,
    input: AdminInput,
    existing: Option<&AdminRecord>,
) -> Result<AdminRecord> {
    let mut problems = Problems::default();
    problems.check("username", validate::object_name(&input.username));
    validate::tags(&mut problems, &input.tags);
    match (&input.password, existing) {
        (Some(p), _) if !(8..=1024).contains(&p.chars().count()) => {
            problems.add("password", "must be 8 to 1024 characters");
        }
        // Required when the request creates the admin (a PUT may create or replace).
        (None, None) => problems.rule("password", "is required when the admin is created"),
        _ => {}
    }
    let tenant_id = match (&input.tenant, input.role) {
        (Some(t), Role::TenantAdmin) => match state.store.get_tenant(&Lookup::parse(t)).await? {
            Some(found) => Some(found.id),
            None => {
                problems.missing("tenant", format!("tenant '{t}' does not exist"));
                None
            }
        },
        (None, Role::TenantAdmin) => {
            problems.rule("tenant", "is required for the tenant_admin role");
            None
        }
        (Some(_), _) => {
            problems.rule("tenant", "only applies to the tenant_admin role");
            None
        }
        (None, _) => None,
    };
    problems.finish()?;
    let password_hash = match input.password {
        // Same bounded pool as logins: creating admins cannot exhaust memory either.
        Some(p) => state.login_guard.hash(move || hash_password(&p)).await??,
        None => existing
            .map(|e| e.password_hash.clone())
            .unwrap_or_default(),
    };
    let now = now();
    Ok(AdminRecord {
        id: existing.map_or_else(new_id, |e| e.id),
        name: input.username,
        password_hash,
        role: input.role.as_str().to_string(),
        tenant_id,
        tags: Json(input.tags),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
        // The store owns it: role, tenant and password changes bump it there.
        token_generation: existing.map_or(0, |e| e.token_generation),
    })
}

/// Serialises the admin-user writes that can remove an admin role on this node, so the
/// last-admin check and the write that follows cannot interleave with another request's:
/// two concurrent DELETEs of the last two admins would otherwise both pass the check.
static ADMIN_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Admins;

impl Resource for Admins {
    type Record = AdminRecord;
    type View = AdminView;
    const KIND: &'static str = "admin";
    const PATH: &'static str = "/admins";
    const NAME_FIELD: &'static str = "username";

    fn id(record: &AdminRecord) -> Uuid {
        record.id
    }

    fn view(state: &AppState, record: &AdminRecord) -> AdminView {
        AdminView::new(record, state)
    }

    fn as_input(state: &AppState, record: &AdminRecord) -> Value {
        let snap = state.snapshot.load();
        let tenant = record
            .tenant_id
            .and_then(|id| snap.tenant_name(id).map(str::to_string));
        json!({ "username": record.name, "role": record.role, "tenant": tenant, "tags": record.tags.0 })
    }

    async fn to_record(
        state: &AppState,
        submitted: Value,
        existing: Option<&AdminRecord>,
        _: Option<&Value>,
    ) -> Result<AdminRecord> {
        to_record(state, parse_typed(submitted)?, existing).await
    }

    async fn fetch(state: &AppState, key: &Lookup) -> StoreResult<Option<AdminRecord>> {
        state.store.get_admin(key).await
    }

    async fn fetch_page(state: &AppState, page: Page) -> StoreResult<Vec<AdminRecord>> {
        state.store.list_admins(page).await
    }

    async fn insert(state: &AppState, record: &AdminRecord) -> StoreResult<()> {
        state.store.insert_admin(record).await
    }

    async fn update(state: &AppState, record: &AdminRecord) -> StoreResult<()> {
        state.store.update_admin(record).await
    }

    async fn delete(state: &AppState, record: &AdminRecord) -> StoreResult<()> {
        state.store.delete_admin(record.id).await
    }

    fn can_read(who: &Principal) -> Result<()> {
        who.require_admin()
    }

    /// Refuses a change that would leave no user with the admin role.
    async fn guard_write(
        state: &AppState,
        before: Option<&AdminRecord>,
        after: Option<&AdminRecord>,
    ) -> Result<Option<tokio::sync::MutexGuard<'static, ()>>> {
        let is_admin = |r: &AdminRecord| r.role == Role::Admin.as_str();
        let Some(before) = before.filter(|b| is_admin(b)) else {
            return Ok(None);
        };
        let guard = ADMIN_WRITES.lock().await;
        if after.is_some_and(is_admin) {
            return Ok(Some(guard));
        }
        let all = state.store.list_admins(EVERYTHING).await?;
        if !all.iter().any(|a| a.id != before.id && is_admin(a)) {
            return Err(Error::conflict("this is the last user with the admin role").into());
        }
        Ok(Some(guard))
    }
}

/// List admin users.
#[utoipa::path(tag = "admins", params(PageQuery),
    responses((status = 200, body = Paged<AdminView>), (status = 403, body = ErrorBody)))]
#[get("/admins")]
async fn list(
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    crud::list::<Admins>(state, who, q).await
}

/// Create an admin user.
#[utoipa::path(tag = "admins", request_body = AdminInput,
    responses((status = 201, body = AdminView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/admins")]
async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::create::<Admins>(state, who, body).await
}

/// Get an admin user.
#[utoipa::path(tag = "admins", params(("admin" = String, Path, description = "id or username")),
    responses((status = 200, body = AdminView), (status = 404, body = ErrorBody)))]
#[get("/admins/{admin}")]
async fn get_one(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::get_one::<Admins>(state, who, path).await
}

/// Partially update an admin user (omit `password` to keep it).
#[utoipa::path(tag = "admins", params(("admin" = String, Path, description = "id or username")),
    request_body = Object,
    responses((status = 200, body = AdminView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[patch("/admins/{admin}")]
async fn update(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::update::<Admins>(state, who, path, body).await
}

/// Create or replace an admin user by username.
#[utoipa::path(tag = "admins", params(("admin" = String, Path, description = "username")),
    request_body = AdminInput,
    responses((status = 200, body = AdminView), (status = 201, body = AdminView), (status = 400, body = ErrorBody)))]
#[put("/admins/{admin}")]
async fn upsert(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::upsert::<Admins>(state, who, path, body).await
}

/// Delete an admin user (409 for the last admin).
#[utoipa::path(tag = "admins", params(("admin" = String, Path, description = "id or username")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/admins/{admin}")]
async fn remove(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::remove::<Admins>(state, who, path).await
}
