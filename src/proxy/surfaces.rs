//! The proxy's entry points (docs/behaviour.md, "Proxy surfaces"): Kong-style route paths,
//! the OpenAI-compatible `/v1/chat/completions` and `/v1/completions`, and `/v1/models`.
//! Each hands its request to the pipeline (pipeline.rs).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::state::AppState;
use crate::vocab::RouteKind;

use super::accounting::render;
use super::auth::{authenticate, authorize};
use super::context::{RequestCtx, Surface};
use super::pipeline::{self, Deps};
use super::{Pools, Recorder};

/// `POST <route path>`: the Kong-style surface.
pub async fn route_path(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    pools: web::Data<Pools>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    serve(req, payload, state, pools, recorder, Surface::RoutePath).await
}

/// `POST /v1/chat/completions`: the route is the one whose alias is the body's `model`.
pub async fn openai_chat(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    pools: web::Data<Pools>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    serve(
        req,
        payload,
        state,
        pools,
        recorder,
        Surface::OpenAi(RouteKind::Chat),
    )
    .await
}

/// `POST /v1/completions`.
pub async fn openai_completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    pools: web::Data<Pools>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    serve(
        req,
        payload,
        state,
        pools,
        recorder,
        Surface::OpenAi(RouteKind::Completions),
    )
    .await
}

/// Hands a request to the pipeline with this worker's shared parts.
async fn serve(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    pools: web::Data<Pools>,
    recorder: web::Data<Recorder>,
    surface: Surface,
) -> HttpResponse {
    let deps = Deps {
        state: &state,
        pools: &pools,
        recorder: &recorder,
    };
    pipeline::run(req, payload, deps, surface).await
}

/// `GET /v1/models`: the aliases this key may use.
pub async fn models(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let ctx = RequestCtx::new(
        &req,
        Surface::OpenAi(RouteKind::Chat),
        state.snapshot.load(),
    );
    let caller = match authenticate(&req, &ctx.snapshot, &state.api_keys) {
        Ok(c) => c,
        Err(e) => return ctx.finish(render(e)),
    };
    let mut data: Vec<Value> = ctx
        .snapshot
        .aliases
        .iter()
        .filter(|(_, route)| authorize(&caller, route).is_ok())
        .map(|(alias, route)| {
            json!({
                "id": alias,
                "object": "model",
                "created": route.record.created_at.timestamp(),
                "owned_by": route.service.provider.name(),
            })
        })
        .collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    ctx.finish(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}
