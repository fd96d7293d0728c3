//! Admin authentication and authorisation: `/auth/login`, `/auth/whoami`, the `Principal`
//! extractor (a verified JWT) and the role rules of spec §3.1.
//!
//! 401: no, malformed, expired, badly signed or `alg: none` token. 403: a valid principal
//! whose role may not do this. 404 instead of 403 when a tenant_admin reaches for another
//! tenant's object, so existence does not leak.

use std::future::{Ready, ready};
use std::time::{Duration, Instant};

use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::admin::body::{JsonObject, parse_typed};
use crate::crypto::{verify_against_dummy, verify_password};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::Lookup;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Only its own tenant: its API keys, its usage, a read-only view of its routes.
    TenantAdmin,
    /// Read-only everything; secrets are never shown to anyone.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TenantAdmin => "tenant_admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "tenant_admin" => Some(Role::TenantAdmin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// The verified caller of an admin request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub sub: String,
    pub role: Role,
    /// The tenant's name, for tenant_admin.
    pub tenant: Option<String>,
}

impl Principal {
    /// Writes to global configuration: admin only.
    pub fn require_admin(&self) -> Result<()> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Viewer => Err(Error::forbidden("the viewer role is read-only")),
            Role::TenantAdmin => Err(Error::forbidden("this requires the admin role")),
        }
    }

    /// Reads of global configuration: admin and viewer.
    pub fn require_global_read(&self) -> Result<()> {
        match self.role {
            Role::Admin | Role::Viewer => Ok(()),
            Role::TenantAdmin => Err(Error::forbidden("this requires the admin or viewer role")),
        }
    }

    /// May this principal see the tenant with this name at all? A tenant_admin sees only
    /// its own; for others the answer is 404 (no existence leak).
    pub fn can_see_tenant(&self, tenant_name: &str) -> bool {
        match self.role {
            Role::Admin | Role::Viewer => true,
            Role::TenantAdmin => self.tenant.as_deref() == Some(tenant_name),
        }
    }

    /// Writes inside one tenant (its API keys): admin, or that tenant's tenant_admin.
    pub fn require_tenant_write(&self, tenant_name: &str) -> Result<()> {
        match self.role {
            Role::Admin => Ok(()),
            Role::TenantAdmin if self.tenant.as_deref() == Some(tenant_name) => Ok(()),
            Role::TenantAdmin => Err(Error::not_found(format!("tenant '{tenant_name}'"))),
            Role::Viewer => Err(Error::forbidden("the viewer role is read-only")),
        }
    }
}

fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequest for Principal {
    type Error = Error;
    type Future = Ready<Result<Principal>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Principal> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| Error::internal("admin state missing"))?;
    let token = bearer_token(req)
        .ok_or_else(|| Error::unauthorized("missing bearer token in the Authorization header"))?;
    let claims = state
        .jwt
        .verify(token)
        .map_err(|e| Error::unauthorized(e.to_string()))?;
    let role = Role::parse(&claims.role)
        .ok_or_else(|| Error::unauthorized("token carries an unknown role"))?;
    if role == Role::TenantAdmin && claims.tenant.is_none() {
        return Err(Error::unauthorized(
            "a tenant_admin token must name its tenant",
        ));
    }
    Ok(Principal {
        sub: claims.sub,
        role,
        tenant: claims.tenant,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    /// Write-only.
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for the admin API.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Wrong credentials take at least this long, whether or not the user exists.
const FAILED_LOGIN_FLOOR: Duration = Duration::from_millis(300);

/// Exchanges a username and password for an admin JWT.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Malformed request", body = crate::admin::ErrorBody),
        (status = 401, description = "Wrong username or password", body = crate::admin::ErrorBody),
    ),
    security(())
)]
#[post("/auth/login")]
pub async fn login(state: web::Data<AppState>, body: JsonObject) -> Result<HttpResponse> {
    let started = Instant::now();
    let request: LoginRequest = parse_typed(serde_json::Value::Object(body.0))?;
    let admin = state
        .store
        .get_admin(&Lookup::Name(request.username.clone()))
        .await?;
    let password = request.password;
    let verified = match &admin {
        Some(a) => {
            let hash = a.password_hash.clone();
            web::block(move || verify_password(&password, &hash))
                .await
                .unwrap_or(false)
        }
        None => {
            let _ = web::block(move || verify_against_dummy(&password)).await;
            false
        }
    };
    let Some(admin) = admin.filter(|_| verified) else {
        let elapsed = started.elapsed();
        if elapsed < FAILED_LOGIN_FLOOR {
            actix_web::rt::time::sleep(FAILED_LOGIN_FLOOR - elapsed).await;
        }
        tracing::info!(username = %request.username, "admin login failed");
        return Err(Error::unauthorized("invalid username or password"));
    };
    let tenant = match admin.tenant_id {
        Some(id) => state
            .store
            .get_tenant(&Lookup::Id(id))
            .await?
            .map(|t| t.name),
        None => None,
    };
    let ttl = chrono::Duration::from_std(state.settings.admin_token_ttl())
        .unwrap_or(chrono::Duration::hours(1));
    let (token, expires_at) = state
        .jwt
        .issue(&admin.name, &admin.role, tenant.as_deref(), ttl)
        .map_err(|e| Error::internal(format!("cannot issue token: {e}")))?;
    tracing::info!(username = %admin.name, role = %admin.role, "admin logged in");
    Ok(HttpResponse::Ok().json(LoginResponse { token, expires_at }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub sub: String,
    pub role: Role,
    pub tenant: Option<String>,
}

/// Who the presented token says the caller is.
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "The caller", body = WhoAmI),
        (status = 401, description = "No valid token", body = crate::admin::ErrorBody),
    )
)]
#[get("/auth/whoami")]
pub async fn whoami(who: Principal) -> HttpResponse {
    HttpResponse::Ok().json(WhoAmI {
        sub: who.sub,
        role: who.role,
        tenant: who.tenant,
    })
}
