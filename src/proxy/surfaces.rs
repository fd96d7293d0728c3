//! The proxy's entry points (docs/behaviour.md, "Proxy surfaces"): Kong-style route paths,
//! the OpenAI-compatible `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`, and
//! `/v1/models` (the list and one model).
//! Each hands its request to the pipeline (pipeline.rs).

use actix_web::{Handler, HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::error::Error;
use crate::snapshot::{RouteEntry, Snapshot};
use crate::state::AppState;
use crate::vocab::RouteType;

use super::accounting::render;
use super::auth::{Caller, authenticate, authorize};
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

/// The arguments of a pipeline handler.
type Args = (
    HttpRequest,
    web::Payload,
    web::Data<AppState>,
    web::Data<Pools>,
    web::Data<Recorder>,
);

/// `POST /v1/chat/completions`, `/v1/completions` and `/v1/embeddings`: the route is the one
/// whose alias is the body's `model`, and must be of the endpoint's `route_type`.
pub fn openai(route_type: RouteType) -> impl Handler<Args, Output = HttpResponse> {
    move |req, payload, state, pools, recorder| {
        serve(
            req,
            payload,
            state,
            pools,
            recorder,
            Surface::OpenAi(route_type),
        )
    }
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
    with_caller(&req, &state, |snapshot, caller| {
        let mut data: Vec<Value> = snapshot
            .aliases
            .iter()
            .filter(|(_, route)| authorize(caller, route).is_ok())
            .map(|(alias, route)| model_object(alias, route))
            .collect();
        data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        HttpResponse::Ok().json(json!({"object": "list", "data": data}))
    })
}

/// `GET /v1/models/{id}`: one alias this key may use; any other is 404 `model_not_found`,
/// like an alias the key may not use on the completion surfaces, so aliases do not leak.
pub async fn model(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = id.into_inner();
    with_caller(&req, &state, |snapshot, caller| {
        match snapshot.aliases.get(&id) {
            Some(route) if authorize(caller, route).is_ok() => {
                HttpResponse::Ok().json(model_object(&id, route))
            }
            _ => render(
                Error::not_found(format!("model '{id}'"))
                    .with_param("model")
                    .with_openai_code("model_not_found"),
            ),
        }
    })
}

/// The models surfaces' common part: the caller's key checked against the current
/// snapshot, then `answer`; the request id set on whatever is answered.
fn with_caller(
    req: &HttpRequest,
    state: &AppState,
    answer: impl FnOnce(&Snapshot, &Caller<'_>) -> HttpResponse,
) -> HttpResponse {
    let ctx = RequestCtx::new(req, Surface::OpenAi(RouteType::Chat), state.snapshot.load());
    let response = match authenticate(req, &ctx.snapshot, &state.api_keys) {
        Ok(caller) => answer(&ctx.snapshot, &caller),
        Err(e) => render(e),
    };
    ctx.finish(response)
}

/// OpenAI's model object for an alias.
fn model_object(alias: &str, route: &RouteEntry) -> Value {
    json!({
        "id": alias,
        "object": "model",
        "created": route.record.created_at.timestamp(),
        "owned_by": route.service.provider.name(),
    })
}
