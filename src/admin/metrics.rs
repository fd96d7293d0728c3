//! `GET /metrics`: the Prometheus text exposition (docs/behaviour.md, "Prometheus
//! scraping"). Registered only when `metrics` is on. Like Kong's `/metrics` on its status
//! listener it needs no admin login (Prometheus cannot log in); with `metrics_token` set it
//! needs `Authorization: Bearer <token>`. Not part of the admin API's OpenAPI document: it
//! is a scrape target, not a JSON resource.

use actix::Addr;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::actors::metrics::{MetricsAggregator, RenderMetrics};
use crate::crypto::Secret;
use crate::error::{AdminError, Error};
use crate::state::AppState;
use crate::telemetry::prometheus::{CONTENT_TYPE, ProcessCounters};

/// What the handler needs beside the app state.
#[derive(Clone)]
pub struct Scrape {
    pub aggregator: Addr<MetricsAggregator>,
    pub token: Option<Secret<String>>,
}

/// Adds the route.
pub fn configure(cfg: &mut web::ServiceConfig, scrape: Scrape) {
    cfg.app_data(web::Data::new(scrape))
        .route("/metrics", web::get().to(metrics));
}

async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
    scrape: web::Data<Scrape>,
) -> Result<HttpResponse, AdminError> {
    if let Some(expected) = &scrape.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| Secret::new(token.trim().to_string()));
        // Constant-time comparison (`Secret`'s `PartialEq`).
        if given.as_ref() != Some(expected) {
            return Err(Error::unauthorized("a valid metrics bearer token is required").into());
        }
    }
    let limits = state.limits.counts();
    let analytics = &state.analytics;
    let counters = ProcessCounters {
        usage_dropped: 0,
        log_dropped: crate::telemetry::log_stats().lost(),
        analytics_lost: analytics.write_failures() + analytics.dropped(),
        limit_rejections: crate::limits::Kind::ALL
            .iter()
            .map(|k| (k.as_str(), limits.rejections(*k)))
            .collect(),
    };
    let text = scrape
        .aggregator
        .send(RenderMetrics { counters })
        .await
        .map_err(|_| Error::unavailable("the metrics aggregator is stopping"))?
        .ok_or_else(|| Error::not_found("endpoint"))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
        .body(text))
}
