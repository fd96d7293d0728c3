//! `GET /tenants/{tenant}/limits/status` and `GET /tenants/{tenant}/keys/{id}/limits/status`:
//! each limit's use in its current window (docs/behaviour.md, "Limits and budgets"), as the
//! limits this node enforces now (its snapshot) count it. A tenant_admin sees its own
//! tenant only.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::admin::ErrorBody;
use crate::admin::auth::Principal;
use crate::admin::keys;
use crate::admin::tenants::visible_tenant;
use crate::error::{Error, admin::Result};
use crate::limits::{Scope, Standing};
use crate::state::AppState;
use crate::vocab::BudgetPeriod;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(tenant_status).service(key_status);
}

/// One limit's standing in its current window.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitStatus {
    /// Requests or tokens per minute; USD for a budget.
    pub limit: f64,
    pub used: f64,
    pub remaining: f64,
    /// When the current window (UTC minute, day or month) ends.
    pub resets_at: DateTime<Utc>,
    /// A budget's period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<BudgetPeriod>,
}

/// The limits of one tenant or key, by kind (`requests_per_minute`, `tokens_per_minute`,
/// `budget`); only the limits that are set.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsStatus {
    pub tenant: String,
    /// The key's id, on the key endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<uuid::Uuid>,
    pub limits: BTreeMap<&'static str, LimitStatus>,
}

async fn standings(
    state: &AppState,
    scope: Scope<'_>,
) -> Result<BTreeMap<&'static str, LimitStatus>> {
    let found = state.limits.standing(&scope).await.map_err(|e| {
        tracing::warn!(error = %e, "limit counters cannot be read");
        Error::unavailable("limit counters cannot be read now")
    })?;
    Ok(found
        .into_iter()
        .map(|s: Standing| {
            (
                s.kind.as_str(),
                LimitStatus {
                    limit: s.limit,
                    used: s.used,
                    remaining: s.remaining,
                    resets_at: s.resets_at,
                    period: s.period,
                },
            )
        })
        .collect())
}

/// A tenant's limits and their current use.
#[utoipa::path(tag = "tenants", params(("tenant" = String, Path, description = "tenant id or name")),
    responses((status = 200, body = LimitsStatus), (status = 404, body = ErrorBody)))]
#[get("/tenants/{tenant}/limits/status")]
async fn tenant_status(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = visible_tenant(&state, &who, &path).await?;
    let snap = state.snapshot.load();
    let limits = match snap.tenant_limits.get(&tenant.id) {
        Some(named) => {
            standings(
                &state,
                Scope::tenant(
                    tenant.id,
                    &tenant.name,
                    named.limits.readable("tenant", &tenant.name)?,
                ),
            )
            .await?
        }
        None => BTreeMap::new(),
    };
    Ok(HttpResponse::Ok().json(LimitsStatus {
        tenant: tenant.name,
        key_id: None,
        limits,
    }))
}

/// An API key's limits and their current use.
#[utoipa::path(tag = "keys", params(("tenant" = String, Path, description = "tenant id or name"), ("id" = uuid::Uuid, Path, description = "key id")),
    responses((status = 200, body = LimitsStatus), (status = 404, body = ErrorBody)))]
#[get("/tenants/{tenant}/keys/{id}/limits/status")]
async fn key_status(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (tenant_key, key_id) = path.into_inner();
    let tenant = visible_tenant(&state, &who, &tenant_key).await?;
    let key = keys::find(&state, &tenant, &key_id).await?;
    let snap = state.snapshot.load();
    let limits = match snap.key_limits.get(&key.id) {
        Some(named) => {
            let limits = named.limits.readable("key", &key.name)?;
            standings(&state, Scope::key(key.id, &key.name, limits)).await?
        }
        None => BTreeMap::new(),
    };
    Ok(HttpResponse::Ok().json(LimitsStatus {
        tenant: tenant.name,
        key_id: Some(key.id),
        limits,
    }))
}
