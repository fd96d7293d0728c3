//! Admin authentication and authorisation: `/auth/login`, `/auth/whoami`, the `Principal`
//! extractor (a verified JWT) and the role rules of docs/behaviour.md,
//! "Admin authentication and roles".
//!
//! 401: no, malformed, expired, badly signed or `alg: none` token. 403: a valid principal
//! whose role may not do this. 404 instead of 403 when a tenant_admin reaches for another
//! tenant's object, so existence does not leak.

use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;

use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::admin::body::{JsonObject, parse_typed};
use crate::crypto::{Binding, Claims, verify_against_dummy, verify_password};
use crate::error::{AdminError, Error, admin::Result};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::store::Lookup;
use crate::vocab::Role;
use uuid::Uuid;

/// The verified caller of an admin request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's subject: a stored admin's id, or whatever a CLI/IdP token names.
    pub sub: String,
    /// The stored admin behind the token (tokens from `/auth/login`).
    pub admin_id: Option<Uuid>,
    /// The stored admin's user name.
    pub name: Option<String>,
    pub role: Role,
    /// The tenant's current name, for tenant_admin.
    pub tenant: Option<String>,
    /// The tenant's id, for tenant_admin: every tenant check compares this.
    pub tenant_id: Option<Uuid>,
}

impl Principal {
    /// Writes to global configuration: admin only.
    pub fn require_admin(&self) -> Result<()> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Viewer => Err(Error::forbidden("the viewer role is read-only").into()),
            Role::TenantAdmin => Err(Error::forbidden("this requires the admin role").into()),
        }
    }

    /// Reads of global configuration: admin and viewer.
    pub fn require_global_read(&self) -> Result<()> {
        match self.role {
            Role::Admin | Role::Viewer => Ok(()),
            Role::TenantAdmin => {
                Err(Error::forbidden("this requires the admin or viewer role").into())
            }
        }
    }

    /// May this principal see the tenant with this id at all? A tenant_admin sees only
    /// its own; for others the answer is 404 (no existence leak).
    pub fn can_see_tenant(&self, tenant_id: Uuid) -> bool {
        match self.role {
            Role::Admin | Role::Viewer => true,
            Role::TenantAdmin => self.tenant_id == Some(tenant_id),
        }
    }

    /// Writes inside one tenant (its API keys): admin, or that tenant's tenant_admin.
    pub fn require_tenant_write(&self, tenant_id: Uuid, tenant_name: &str) -> Result<()> {
        match self.role {
            Role::Admin => Ok(()),
            Role::TenantAdmin if self.tenant_id == Some(tenant_id) => Ok(()),
            Role::TenantAdmin => Err(Error::not_found(format!("tenant '{tenant_name}'")).into()),
            Role::Viewer => Err(Error::forbidden("the viewer role is read-only").into()),
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
    type Error = AdminError;
    type Future = LocalBoxFuture<'static, Result<Principal>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await })
    }
}

/// Why a verified token was refused: for good, or perhaps only because this node's
/// snapshot is older than the token (an admin created, or its password changed, on another
/// node less than a poll interval ago).
enum Refusal {
    Final(Error),
    MaybeStale(Error),
}

/// Checks a verified token against the snapshot (no database access), docs/architecture.md
/// "Admin tokens":
/// - with `gen`: `sub` is a stored admin's id; the admin must exist with exactly that
///   generation, and role and tenant come from the snapshot;
/// - without `gen` (CLI-minted or from an external identity provider): accepted as
///   today, unless `sub` names a stored admin (by id or name) — such a token would escape
///   revocation, so it is refused;
/// - a tenant_admin is bound to `tenant_id` when the token carries it (every token
///   Tollgate issues), else to the tenant `tenant` names now.
fn resolve(snap: &Snapshot, claims: &Claims) -> std::result::Result<Principal, Refusal> {
    let role = Role::parse(&claims.role)
        .ok_or_else(|| Refusal::Final(Error::unauthorized("token carries an unknown role")))?;
    let revoked = || Error::unauthorized("token has been revoked; log in again");
    let (admin_id, name, role, tenant_id) = match claims.generation {
        Some(generation) => {
            let id = Uuid::parse_str(&claims.sub)
                .map_err(|_| Refusal::Final(Error::unauthorized("invalid token subject")))?;
            let Some(admin) = snap.admins.get(id) else {
                return Err(Refusal::MaybeStale(revoked()));
            };
            if generation > admin.token_generation {
                return Err(Refusal::MaybeStale(revoked()));
            }
            if generation < admin.token_generation || admin.role != role {
                return Err(Refusal::Final(revoked()));
            }
            (
                Some(id),
                Some(admin.name.clone()),
                admin.role,
                admin.tenant_id,
            )
        }
        None => {
            if snap.admins.names_stored_admin(&claims.sub) {
                return Err(Refusal::Final(Error::unauthorized(
                    "this token names a stored admin but carries no token generation; log in again",
                )));
            }
            let tenant_id = match (role, claims.tenant_id, claims.tenant.as_deref()) {
                (Role::TenantAdmin, Some(id), _) => Some(id),
                (Role::TenantAdmin, None, Some(name)) => match snap.tenants_by_name.get(name) {
                    Some(id) => Some(*id),
                    None => {
                        return Err(Refusal::MaybeStale(Error::unauthorized(
                            "the token's tenant does not exist",
                        )));
                    }
                },
                (Role::TenantAdmin, None, None) => {
                    return Err(Refusal::Final(Error::unauthorized(
                        "a tenant_admin token must name its tenant",
                    )));
                }
                _ => None,
            };
            (None, None, role, tenant_id)
        }
    };
    let tenant = match (role, tenant_id) {
        (Role::TenantAdmin, Some(id)) => match snap.tenant_name(id) {
            Some(name) => Some(name.to_string()),
            None => {
                return Err(Refusal::MaybeStale(Error::unauthorized(
                    "the token's tenant does not exist",
                )));
            }
        },
        (Role::TenantAdmin, None) => {
            return Err(Refusal::Final(Error::unauthorized(
                "a tenant_admin token must name its tenant",
            )));
        }
        _ => None,
    };
    Ok(Principal {
        sub: claims.sub.clone(),
        admin_id,
        name,
        role,
        tenant,
        tenant_id: if role == Role::TenantAdmin {
            tenant_id
        } else {
            None
        },
    })
}

async fn authenticate(req: &HttpRequest) -> Result<Principal> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| Error::internal("admin state missing"))?;
    let token = bearer_token(req)
        .ok_or_else(|| Error::unauthorized("missing bearer token in the Authorization header"))?;
    let claims = state.jwt.verify(token)?;
    match resolve(&state.snapshot.load(), &claims) {
        Ok(p) => Ok(p),
        Err(Refusal::Final(e)) => Err(e.into()),
        Err(Refusal::MaybeStale(e)) => {
            // One cheap version check; a rebuild only if the configuration moved on.
            if !matches!(
                state
                    .snapshot
                    .refresh_if_changed(&state.store, &state.keyring)
                    .await,
                Ok(true)
            ) {
                return Err(e.into());
            }
            match resolve(&state.snapshot.load(), &claims) {
                Ok(p) => Ok(p),
                Err(Refusal::Final(e) | Refusal::MaybeStale(e)) => Err(e.into()),
            }
        }
    }
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
        (status = 429, description = "Too many failed logins for this name or address (see retry-after)", body = crate::admin::ErrorBody),
        (status = 503, description = "Too many logins in progress (see retry-after)", body = crate::admin::ErrorBody),
    ),
    security(())
)]
#[post("/auth/login")]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonObject,
) -> Result<HttpResponse> {
    let started = Instant::now();
    let request: LoginRequest = parse_typed(serde_json::Value::Object(body.0))?;
    let client = state.client_ip(&req);
    let attempt = state.login_guard.begin(&request.username, client)?;
    let admin = state
        .store
        .get_admin(&Lookup::Name(request.username.clone()))
        .await?;
    let password = request.password;
    let hash = admin.as_ref().map(|a| a.password_hash.clone());
    let verified = state
        .login_guard
        .hash(move || match hash {
            Some(hash) => verify_password(&password, &hash),
            None => verify_against_dummy(&password),
        })
        .await?;
    let Some(admin) = admin.filter(|_| verified) else {
        attempt.failed();
        let elapsed = started.elapsed();
        if elapsed < FAILED_LOGIN_FLOOR {
            actix_web::rt::time::sleep(FAILED_LOGIN_FLOOR - elapsed).await;
        }
        tracing::info!(username = %request.username, client = %shown(client), "admin login failed");
        return Err(Error::unauthorized("invalid username or password").into());
    };
    attempt.succeeded();
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
    let binding = Binding {
        tenant_id: admin.tenant_id,
        generation: Some(admin.token_generation),
    };
    let (token, expires_at) = state
        .jwt
        .issue_bound(
            &admin.id.to_string(),
            &admin.role,
            tenant.as_deref(),
            binding,
            ttl,
        )
        .map_err(|e| Error::internal(format!("cannot issue token: {e}")))?;
    tracing::info!(username = %admin.name, role = %admin.role, client = %shown(client), "admin logged in");
    Ok(HttpResponse::Ok().json(LoginResponse { token, expires_at }))
}

/// A client address for the log ("-" when unknown).
fn shown(client: Option<std::net::IpAddr>) -> String {
    client.map_or_else(|| "-".to_string(), |c| c.to_string())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// A stored admin's id, or the subject of a CLI-minted or externally issued token.
    pub sub: String,
    /// The stored admin's user name (tokens from `/auth/login` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
        name: who.name,
        role: who.role,
        tenant: who.tenant,
    })
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutAllRequest {
    /// Id or user name of the admin whose tokens to revoke (admin role only, unless it is
    /// the caller); default: the caller.
    pub admin: Option<String>,
}

/// Revokes every token issued so far to the caller (or, for the admin role, to the named
/// admin): they are refused from now on, on every node. The body is optional.
#[utoipa::path(
    tag = "auth",
    request_body(content = Option<LogoutAllRequest>),
    responses(
        (status = 204, description = "Earlier tokens revoked"),
        (status = 400, description = "The caller is not a stored admin (a CLI-minted token)", body = crate::admin::ErrorBody),
        (status = 403, description = "Only the admin role may revoke another admin's tokens", body = crate::admin::ErrorBody),
        (status = 404, description = "No such admin", body = crate::admin::ErrorBody),
    )
)]
#[post("/auth/logout-all")]
pub async fn logout_all(
    state: web::Data<AppState>,
    who: Principal,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let request: LogoutAllRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutAllRequest::default()
    } else {
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Error::bad_request(format!("request body is not valid JSON: {e}")))?;
        parse_typed(value)?
    };
    let target = match request.admin.as_deref() {
        None => who.admin_id.ok_or_else(|| {
            Error::bad_request(
                "this token does not belong to a stored admin (CLI-minted or external); it expires on its own",
            )
        })?,
        Some(key) => {
            let found = state.store.get_admin(&Lookup::parse(key)).await?;
            match found {
                Some(a) if Some(a.id) == who.admin_id => a.id,
                Some(a) if who.role == Role::Admin => a.id,
                // Only admins may learn which other admin users exist.
                _ if who.role != Role::Admin => {
                    return Err(Error::forbidden(
                        "only the admin role may revoke another admin's tokens",
                    ).into());
                }
                _ => return Err(Error::not_found(format!("admin '{key}'")).into()),
            }
        }
    };
    state.store.bump_admin_generation(target).await?;
    state.config_changed().await;
    tracing::info!(admin = %target, by = %who.sub, "admin tokens revoked (logout-all)");
    Ok(HttpResponse::NoContent().finish())
}
