//! What every admin handler shares. Built once by `app::Application::build`.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::budget::ResponseBudget;
use crate::client_addr::TrustedProxies;
use crate::config::Settings;
use crate::crypto::login_guard::LoginGuard;
use crate::crypto::{ApiKeyHasher, JwtKeys, Keyring};
use crate::limits::Limiter;
use crate::shutdown::DrainDeadline;
use crate::snapshot::SnapshotHandle;
use crate::store::SharedStore;
use crate::telemetry::analytics::AnalyticsLog;

pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: SharedStore,
    pub keyring: Arc<Keyring>,
    pub jwt: Arc<JwtKeys>,
    pub api_keys: Arc<ApiKeyHasher>,
    pub snapshot: SnapshotHandle,
    /// Identifies this gateway process in `/status` (several nodes may share a database).
    pub node_id: String,
    pub started_at: DateTime<Utc>,
    /// The per-request analytics log (its loss counters show in `/status`).
    pub analytics: AnalyticsLog,
    /// The usage spool (its backlog and loss counters show in `/status`).
    pub usage_spool: Arc<crate::actors::spool::Spool>,
    /// Login attempt limits and the bound on concurrent password hashing.
    pub login_guard: LoginGuard,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Fired by a graceful stop shortly before its drain time runs out.
    pub drain_deadline: DrainDeadline,
    /// The process-wide budget of bytes buffered from upstream answers.
    pub response_budget: ResponseBudget,
    /// Rate limits and budgets (docs/behaviour.md, "Limits and budgets").
    pub limits: Arc<Limiter>,
}

impl AppState {
    /// The client address of an admin request (`X-Forwarded-For` only via trusted proxies).
    pub fn client_ip(&self, req: &actix_web::HttpRequest) -> Option<std::net::IpAddr> {
        self.trusted_proxies
            .client_ip(req.peer_addr(), req.headers())
    }

    /// Called after every successful configuration write: the snapshot is rebuilt before
    /// the admin API answers, so the proxy of this node serves the change immediately.
    /// The write is already durable, so a failed rebuild is logged (the poller retries)
    /// rather than reported as a failed write.
    pub async fn config_changed(&self) {
        if let Err(e) = self.snapshot.refresh(&self.store, &self.keyring).await {
            tracing::error!(error = %e, "configuration snapshot rebuild failed; serving the previous one");
        }
    }
}
