//! `/status`, `/healthz`, `/readyz`.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::admin::ErrorBody;
use crate::admin::auth::Principal;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// Tollgate's version.
    pub version: String,
    pub node_id: String,
    pub started_at: DateTime<Utc>,
    pub database: DatabaseStatus,
    pub snapshot: SnapshotStatus,
    pub analytics: AnalyticsStatus,
}

/// Analytics lines lost since start (never silently; also exported as
/// `tollgate.analytics.lost`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalyticsStatus {
    /// Lines whose write to the sink failed (full disk, closed pipe).
    pub write_failures: u64,
    /// Lines dropped because the writer was behind and the buffer full.
    pub dropped: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseStatus {
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub reachable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotStatus {
    /// The configuration version the proxy serves.
    pub version: i64,
    pub built_at: DateTime<Utc>,
    pub age_seconds: f64,
    pub routes: usize,
    pub services: usize,
    pub tenants: usize,
    pub api_keys: usize,
}

/// Version, configuration snapshot, database reachability and node id.
#[utoipa::path(tag = "status", responses((status = 200, body = Status), (status = 401, body = ErrorBody)))]
#[get("/status")]
pub async fn status(state: web::Data<AppState>, _who: Principal) -> HttpResponse {
    let reachable = state.store.ping().await.is_ok();
    let snap = state.snapshot.load();
    HttpResponse::Ok().json(Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        node_id: state.node_id.clone(),
        started_at: state.started_at,
        database: DatabaseStatus {
            backend: state.store.backend().as_str().to_string(),
            reachable,
        },
        snapshot: SnapshotStatus {
            version: snap.version,
            built_at: snap.built_at,
            age_seconds: snap.built_instant.elapsed().as_secs_f64(),
            routes: snap.routes.len(),
            services: snap.services.len(),
            tenants: snap.tenants.len(),
            api_keys: snap.keys_by_hash.len(),
        },
        analytics: AnalyticsStatus {
            write_failures: state.analytics.write_failures(),
            dropped: state.analytics.dropped(),
        },
    })
}

/// The process is alive.
#[utoipa::path(tag = "status", responses((status = 200, description = "alive")), security(()))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// A configuration snapshot is loaded (stays ready while the database is down).
#[utoipa::path(tag = "status",
    responses((status = 200, description = "ready"), (status = 503, description = "no snapshot yet")),
    security(()))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let snap = state.snapshot.load();
    if snap.version >= 0 {
        HttpResponse::Ok()
            .json(serde_json::json!({ "status": "ready", "snapshot_version": snap.version }))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": "starting" }))
    }
}
