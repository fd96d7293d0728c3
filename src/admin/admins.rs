//! `/admins`: admin users (admin role only). Passwords are Argon2id hashes and write-only.

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::types::Json;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::admin::auth::{Principal, Role};
use crate::admin::body::{JsonObject, PageQuery, parse_typed};
use crate::admin::validate::{self, Problems};
use crate::admin::{ErrorBody, Paged, created, fetch_page, merge_patch, put_name, put_target_name};
use crate::crypto::hash_password;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{AdminRecord, Lookup, Page, new_id, now};

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
        (None, None) => problems.add("password", "is required"),
        _ => {}
    }
    let tenant_id = match (&input.tenant, input.role) {
        (Some(t), Role::TenantAdmin) => match state.store.get_tenant(&Lookup::parse(t)).await? {
            Some(found) => Some(found.id),
            None => {
                problems.add("tenant", format!("tenant '{t}' does not exist"));
                None
            }
        },
        (None, Role::TenantAdmin) => {
            problems.add("tenant", "is required for the tenant_admin role");
            None
        }
        (Some(_), _) => {
            problems.add("tenant", "only applies to the tenant_admin role");
            None
        }
        (None, _) => None,
    };
    problems.finish()?;
    let password_hash = match input.password {
        Some(p) => web::block(move || hash_password(&p))
            .await
            .map_err(|_| Error::internal("password hashing was interrupted"))??,
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
    })
}

/// Serialises the admin-user writes that can remove an admin role (PATCH, PUT, DELETE) on
/// this node, so that `keep_one_admin`'s check and the write that follows cannot interleave
/// with another request's: two concurrent DELETEs of the last two admins would otherwise both
/// pass the check and leave none.
static ADMIN_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Refuses a change that would leave no user with the admin role.
async fn keep_one_admin(
    state: &AppState,
    changing: &AdminRecord,
    after: Option<&AdminRecord>,
) -> Result<()> {
    if changing.role != Role::Admin.as_str()
        || after.is_some_and(|a| a.role == Role::Admin.as_str())
    {
        return Ok(());
    }
    let all = state
        .store
        .list_admins(Page {
            limit: i64::MAX,
            offset: 0,
        })
        .await?;
    let others = all
        .iter()
        .filter(|a| a.id != changing.id && a.role == Role::Admin.as_str())
        .count();
    if others == 0 {
        return Err(Error::conflict("this is the last user with the admin role"));
    }
    Ok(())
}

async fn find(state: &AppState, key: &str) -> Result<AdminRecord> {
    state
        .store
        .get_admin(&Lookup::parse(key))
        .await?
        .ok_or_else(|| Error::not_found(format!("admin '{key}'")))
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
    who.require_admin()?;
    let page = q.page()?;
    let records = state.store.list_admins(fetch_page(page)).await?;
    let views = records.iter().map(|r| AdminView::new(r, &state)).collect();
    Ok(HttpResponse::Ok().json(Paged::from_fetched(views, page, "/admins")))
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
    who.require_admin()?;
    let record = to_record(&state, parse_typed(Value::Object(body.0))?, None).await?;
    state.store.insert_admin(&record).await?;
    Ok(created(
        format!("/admins/{}", record.id),
        &AdminView::new(&record, &state),
    ))
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
    who.require_admin()?;
    Ok(HttpResponse::Ok().json(AdminView::new(&find(&state, &path).await?, &state)))
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
    who.require_admin()?;
    let _serialised = ADMIN_WRITES.lock().await;
    let existing = find(&state, &path).await?;
    let snap = state.snapshot.load();
    let tenant = existing
        .tenant_id
        .and_then(|id| snap.tenant_name(id).map(str::to_string));
    let mut merged = json!({
        "username": existing.name, "role": existing.role, "tenant": tenant, "tags": existing.tags.0,
    });
    merge_patch(&mut merged, &Value::Object(body.0));
    let record = to_record(&state, parse_typed(merged)?, Some(&existing)).await?;
    keep_one_admin(&state, &existing, Some(&record)).await?;
    state.store.update_admin(&record).await?;
    Ok(HttpResponse::Ok().json(AdminView::new(&record, &state)))
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
    who.require_admin()?;
    let _serialised = ADMIN_WRITES.lock().await;
    put_target_name(&path)?;
    let mut body = body.0;
    put_name(&mut body, "username", &path)?;
    let existing = state
        .store
        .get_admin(&Lookup::Name(path.to_string()))
        .await?;
    let record = to_record(&state, parse_typed(Value::Object(body))?, existing.as_ref()).await?;
    if let Some(existing) = &existing {
        keep_one_admin(&state, existing, Some(&record)).await?;
        state.store.update_admin(&record).await?;
        Ok(HttpResponse::Ok().json(AdminView::new(&record, &state)))
    } else {
        state.store.insert_admin(&record).await?;
        Ok(created(
            format!("/admins/{}", record.id),
            &AdminView::new(&record, &state),
        ))
    }
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
    who.require_admin()?;
    let _serialised = ADMIN_WRITES.lock().await;
    let existing = find(&state, &path).await?;
    keep_one_admin(&state, &existing, None).await?;
    state.store.delete_admin(existing.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
