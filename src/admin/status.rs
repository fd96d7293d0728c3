//! `/status`, `/healthz`, `/readyz`.

use std::collections::HashSet;

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use uuid::Uuid;

use crate::admin::ErrorBody;
use crate::admin::auth::Principal;
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::vocab::Role;

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// Tollgate's version.
    pub version: String,
    pub node_id: String,
    pub started_at: DateTime<Utc>,
    pub database: DatabaseStatus,
    pub snapshot: SnapshotStatus,
    pub process_log: ProcessLogStatus,
    pub analytics: AnalyticsStatus,
    pub usage_spool: UsageSpoolStatus,
    pub upstream_buffer: UpstreamBufferStatus,
    pub limits: LimitsEngineStatus,
}

/// This node's limits engine (docs/behaviour.md, "Limits and budgets").
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsEngineStatus {
    /// Where the counters are: `in_process` (exact on one node) or `redis` (shared).
    pub store: &'static str,
    /// Requests this node refused since start, by limit kind (`requests_per_minute`,
    /// `tokens_per_minute`, `budget`).
    pub rejections: std::collections::BTreeMap<&'static str, u64>,
    /// Counter-store calls that failed since start (each decided by `on_store_error`).
    pub store_errors: u64,
}

/// This node's budget of bytes buffered from upstream answers (docs/architecture.md,
/// "Memory").
#[derive(Debug, Serialize, ToSchema)]
pub struct UpstreamBufferStatus {
    /// `max_buffered_upstream_bytes`.
    pub limit_bytes: usize,
    /// Reserved right now by answers being read or held and streamed pieces in flight.
    pub in_use_bytes: usize,
    /// Requests answered 503 `gateway_memory_exhausted` (or streams cut) since start.
    pub refused: u64,
}

/// What this node's process log (stderr) lost since it started: a broken or stalled sink
/// never stops the gateway, and these counts are then the only record.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessLogStatus {
    /// Lines whose write failed (closed pipe, full disk).
    pub write_failures: u64,
    /// Lines dropped because the sink did not keep up.
    pub dropped: u64,
}

/// Analytics lines this node lost since start (never silently; also exported as
/// `tollgate.analytics.lost`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalyticsStatus {
    /// Lines whose write to the sink failed (full disk, closed pipe).
    pub write_failures: u64,
    /// Lines dropped because the writer was behind and the buffer full.
    pub dropped: u64,
}

/// The usage spool of this node (docs/architecture.md, "The usage spool").
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSpoolStatus {
    /// Segment files not yet fully counted in the usage store.
    pub segments: usize,
    /// Spooled bytes not yet counted in the usage store (waiting for the database).
    pub backlog_bytes: u64,
    /// Usage events written to the spool since start.
    pub written: u64,
    /// Usage events lost since start: never written (queue full, disk failing too long).
    pub lost: u64,
    /// Failed spool writes (each retried).
    pub write_failures: u64,
    /// Spool lines that could not be read back (a torn line after a power loss).
    pub unreadable: u64,
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
    /// For a tenant_admin, this and the following counts cover only its own tenant: the
    /// routes it may use, their services, itself and its API keys.
    pub routes: usize,
    pub services: usize,
    pub tenants: usize,
    pub api_keys: usize,
    /// True when some services are disabled (listed in `unavailable_credentials`).
    pub degraded: bool,
    /// Stored credentials this node cannot decrypt, with the services they disable
    /// (docs/security.md, "A bad secret never fails open"). For a tenant_admin: only its own and shared services.
    pub unavailable_credentials: Vec<UnavailableCredentialStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnavailableCredentialStatus {
    /// The credential's name (never its value).
    pub credential: String,
    /// Which field failed to decrypt, and why.
    pub reason: String,
    /// Names of the services answering 503 `credential_unavailable`.
    pub disabled_services: Vec<String>,
}

/// The undecryptable credentials `who` may know about: all of them, except for a
/// tenant_admin, who sees only those used by its own tenant's or shared services.
fn unavailable_for(snap: &Snapshot, who: &Principal) -> Vec<UnavailableCredentialStatus> {
    let tenant = match who.role {
        Role::TenantAdmin => Some(who.tenant_id.filter(|t| snap.tenants.contains_key(t))),
        _ => None,
    };
    snap.unavailable_credentials
        .iter()
        .filter_map(|u| {
            let services: Vec<String> = u
                .services
                .iter()
                .filter(|(_, _, owner)| match (tenant, owner) {
                    (None, _) | (Some(_), None) => true,
                    (Some(mine), Some(owner)) => mine == Some(*owner),
                })
                .map(|(_, name, _)| name.clone())
                .collect();
            (tenant.is_none() || !services.is_empty()).then(|| UnavailableCredentialStatus {
                credential: u.name.clone(),
                reason: u.reason.clone(),
                disabled_services: services,
            })
        })
        .collect()
}

/// Version, configuration snapshot, database reachability and node id.
#[utoipa::path(tag = "status", responses((status = 200, body = Status), (status = 401, body = ErrorBody)))]
#[get("/status")]
pub async fn status(state: web::Data<AppState>, who: Principal) -> HttpResponse {
    let reachable = state.store.ping().await.is_ok();
    let snap = state.snapshot.load();
    let counts = counts_for(&snap, &who);
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
            routes: counts.routes,
            services: counts.services,
            tenants: counts.tenants,
            api_keys: counts.api_keys,
            degraded: !snap.unavailable_credentials.is_empty(),
            unavailable_credentials: unavailable_for(&snap, &who),
        },
        process_log: {
            let stats = crate::telemetry::log_stats();
            ProcessLogStatus {
                write_failures: stats.write_failures,
                dropped: stats.dropped,
            }
        },
        analytics: AnalyticsStatus {
            write_failures: state.analytics.write_failures(),
            dropped: state.analytics.dropped(),
        },
        usage_spool: {
            let spool = &state.usage_spool;
            let read =
                |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            UsageSpoolStatus {
                segments: spool.segments(),
                backlog_bytes: spool.backlog_bytes(),
                written: read(&spool.stats.written),
                lost: read(&spool.stats.lost),
                write_failures: read(&spool.stats.write_failures),
                unreadable: read(&spool.stats.unreadable),
            }
        },
        upstream_buffer: UpstreamBufferStatus {
            limit_bytes: state.response_budget.limit(),
            in_use_bytes: state.response_budget.in_use(),
            refused: state.response_budget.refused(),
        },
        limits: {
            let counts = state.limits.counts();
            LimitsEngineStatus {
                store: state.limits.store_name(),
                rejections: crate::limits::Kind::ALL
                    .iter()
                    .map(|k| (k.as_str(), counts.rejections(*k)))
                    .collect(),
                store_errors: counts.store_errors(),
            }
        },
    })
}

struct Counts {
    routes: usize,
    services: usize,
    tenants: usize,
    api_keys: usize,
}

/// Global counts for admin and viewer; a tenant_admin counts only what its tenant can
/// see: the routes it may use, their services, itself and its own keys.
fn counts_for(snap: &Snapshot, who: &Principal) -> Counts {
    if who.role != Role::TenantAdmin {
        return Counts {
            routes: snap.routes.len(),
            services: snap.services.len(),
            tenants: snap.tenants.len(),
            api_keys: snap.keys_by_hash.len(),
        };
    }
    let Some(tenant) = who.tenant_id.filter(|t| snap.tenants.contains_key(t)) else {
        return Counts {
            routes: 0,
            services: 0,
            tenants: 0,
            api_keys: 0,
        };
    };
    let usable: Vec<_> = snap
        .routes
        .values()
        .filter(|r| r.allows_tenant(tenant))
        .collect();
    let services: HashSet<Uuid> = usable.iter().map(|r| r.record.service_id).collect();
    Counts {
        routes: usable.len(),
        services: services.len(),
        tenants: 1,
        api_keys: snap
            .keys_by_hash
            .values()
            .filter(|k| k.record.tenant_id == tenant)
            .count(),
    }
}

/// The process is alive.
#[utoipa::path(tag = "status", responses((status = 200, description = "alive")), security(()))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// A configuration snapshot is loaded (stays ready while the database is down).
/// Some services disabled by an undecryptable credential: still 200, with
/// `"status":"degraded"` — the rest of the traffic works, and every node shares the same
/// stored configuration, so a 503 would take all of them out of the load balancer at once.
#[utoipa::path(tag = "status",
    responses((status = 200, description = "ready, or degraded (some services disabled)"),
        (status = 503, description = "no snapshot yet")),
    security(()))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let snap = state.snapshot.load();
    if snap.version >= 0 && !snap.unavailable_credentials.is_empty() {
        // Counts only: this endpoint is unauthenticated, names are in `/status`.
        let services: usize = snap
            .unavailable_credentials
            .iter()
            .map(|u| u.services.len())
            .sum();
        HttpResponse::Ok().json(serde_json::json!({
            "status": "degraded",
            "snapshot_version": snap.version,
            "unavailable_credentials": snap.unavailable_credentials.len(),
            "disabled_services": services,
        }))
    } else if snap.version >= 0 {
        HttpResponse::Ok()
            .json(serde_json::json!({ "status": "ready", "snapshot_version": snap.version }))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": "starting" }))
    }
}
