//! The data plane (docs/behaviour.md, "Proxy surfaces"): both surfaces — Kong-style route paths and
//! the OpenAI-compatible `/v1/…` — resolved from the in-memory snapshot only. The request path
//! never touches the database: it reads one `Arc<Snapshot>`, authenticates the key against the
//! snapshot's hash map, validates in the order of "Request order", translates with the provider's
//! pure translator, and hands the upstream call to this worker's pool actor.

mod accounting;
mod auth;
mod context;
mod forward;
mod inject;
mod limits;
mod pipeline;
mod policies;
mod prepare;
mod read;
mod redact;
mod resolve;
mod respond;
mod stream;
mod surfaces;
mod transformers;
mod translate;

use std::collections::HashMap;

use actix::{Actor, Addr};
use actix_web::web;

use crate::actors::metrics::UsageSink;
use crate::actors::upstream::UpstreamPool;
use crate::telemetry::analytics::AnalyticsLog;
use crate::vocab::{Provider, RouteType};

pub use surfaces::{model, models, openai, route_path};

/// This worker's upstream pool actors, one per provider (started in the app factory, so
/// they live on the worker's thread).
pub struct Pools {
    by_provider: HashMap<&'static str, Addr<UpstreamPool>>,
}

impl Pools {
    pub fn start(allow_private_upstreams: bool) -> Pools {
        let by_provider = Provider::ALL
            .into_iter()
            .map(Provider::as_str)
            .map(|p| (p, UpstreamPool::new(p, allow_private_upstreams).start()))
            .collect();
        Pools { by_provider }
    }

    pub fn get(&self, provider: &str) -> Option<&Addr<UpstreamPool>> {
        self.by_provider.get(provider)
    }
}

/// Where a finished request is recorded: the analytics log and the usage aggregator.
#[derive(Clone)]
pub struct Recorder {
    pub analytics: AnalyticsLog,
    /// `None` only in setups without an aggregator (some tests).
    pub usage: Option<UsageSink>,
}

/// Registers the proxy surfaces on one worker's app.
pub fn configure(cfg: &mut web::ServiceConfig, recorder: Recorder, allow_private_upstreams: bool) {
    cfg.app_data(web::Data::new(Pools::start(allow_private_upstreams)))
        .app_data(web::Data::new(recorder))
        .route(
            "/v1/chat/completions",
            web::post().to(openai(RouteType::Chat)),
        )
        .route(
            "/v1/completions",
            web::post().to(openai(RouteType::Completions)),
        )
        .route(
            "/v1/embeddings",
            web::post().to(openai(RouteType::Embeddings)),
        )
        .route("/v1/models", web::get().to(models))
        // An alias may hold a `/` (`openai/gpt-4o`), so the id is the rest of the path.
        .route("/v1/models/{id:.+}", web::get().to(model))
        .default_service(web::to(route_path));
}
