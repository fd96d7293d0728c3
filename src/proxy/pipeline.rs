//! The proxied request, stage by stage. Each stage is a function in its own file; they run
//! in this order (docs/architecture.md, "The request pipeline"):
//!
//! 1. **resolve** (`resolve.rs`): the route — by path, or by the body's `model` alias;
//! 2. **authenticate** (`auth.rs`): the tenant's key, and its permission for the route;
//! 3. **read** (`read.rs`): the body, bounded, JSON;
//! 4. **policies** (`policies.rs`): the route's request-side policies, the request
//!    transformer's instruction call first;
//! 5. **prepare** (`prepare.rs`): prompt checks, the model to call, streaming;
//! 6. **limits** (`limits.rs`): rate limits and budgets reserved;
//! 7. **translate** (`translate.rs`): the provider's wire format, the credential;
//! 8. **forward** (`forward.rs`): the upstream call on this worker's pool;
//! 9. **respond** (`respond.rs`, `stream.rs`): the answer in the OpenAI shape, whole or
//!    streamed;
//! 10. **transform** (`transformers.rs`): a whole answer rewritten by the response
//!     transformer's instruction LLM (a streamed request on such a route is refused after
//!     prepare);
//! 11. **account** (`accounting.rs`): the usage event and the analytics line.
//!
//! The OpenAI-compatible surface names its route inside the body, so there the key is
//! checked and the body read before the route is resolved. A failure at any stage is the
//! OpenAI error shape, and once the route and the caller are known it is recorded too.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::Error;
use crate::state::AppState;

use super::accounting::{self, Abandoned};
use super::auth::{authenticate, authorize};
use super::context::{Party, RequestCtx, Surface};
use super::respond::Reply;
use super::{
    Pools, Recorder, forward, limits, policies, prepare, read, resolve, respond, transformers,
    translate,
};

/// What the stages run against: this worker's shared parts.
pub struct Deps<'a> {
    pub state: &'a AppState,
    pub pools: &'a Pools,
    pub recorder: &'a Recorder,
}

/// Runs the request's stages, then accounts for it — also when a graceful stop's drain time
/// runs out first, or the client leaves (`Abandoned` records it when this future is
/// dropped).
pub async fn run(
    req: HttpRequest,
    payload: web::Payload,
    deps: Deps<'_>,
    surface: Surface,
) -> HttpResponse {
    let ctx = RequestCtx::new(&req, surface, deps.state.snapshot.load());
    let drain = &deps.state.drain_deadline;
    let mut watch = Abandoned::watch(ctx, deps.recorder, drain);
    let result = tokio::select! {
        result = stages(watch.ctx(), &req, payload, &deps) => result,
        // Answered now, not cut by the server.
        () = drain.wait() => return watch.stopped(),
    };
    accounting::account(watch.settle(), deps.recorder, drain, result)
}

async fn stages(
    ctx: &mut RequestCtx,
    req: &HttpRequest,
    payload: web::Payload,
    deps: &Deps<'_>,
) -> Result<Reply, Error> {
    let (state, max_tokens) = (deps.state, deps.state.settings.default_max_tokens);
    let (party, mut body) = match ctx.surface {
        Surface::RoutePath => {
            let route = resolve::by_path(&ctx.snapshot, req)?;
            let caller = authenticate(req, &ctx.snapshot, &state.api_keys)?;
            authorize(&caller, &route)?;
            let caller = caller.id();
            let body = read::body(req, payload, resolve::body_limit(&route)).await?;
            (Party { route, caller }, body)
        }
        Surface::OpenAi(_) => {
            let caller = authenticate(req, &ctx.snapshot, &state.api_keys)?;
            let limit = resolve::largest_body_limit(&ctx.snapshot);
            let mut body = read::body(req, payload, limit).await?;
            let route = resolve::by_alias(&ctx.snapshot, &caller, &mut body)?;
            (
                Party {
                    route,
                    caller: caller.id(),
                },
                body,
            )
        }
    };
    ctx.admit(&party);
    let up = transformers::Upstreams {
        pools: deps.pools,
        budget: &state.response_budget,
        default_max_tokens: max_tokens,
    };
    policies::apply(ctx, &party, up, &mut body).await?;
    let plan = prepare::request(ctx, &party, &mut body, max_tokens)?;
    transformers::refuse_stream(ctx, &party, plan.stream.is_some())?;
    limits::reserve(ctx, &party, &mut body, &state.limits, max_tokens).await?;
    let outbound = translate::request(ctx, &party, req, &plan, body, max_tokens)?;
    let streaming = plan.stream.is_some();
    let answer = forward::call(
        ctx,
        &party,
        deps.pools,
        &state.response_budget,
        outbound,
        streaming,
    )
    .await?;
    let reply = respond::reply(&party, plan, answer, max_tokens)?;
    transformers::respond(ctx, &party, up, reply).await
}
