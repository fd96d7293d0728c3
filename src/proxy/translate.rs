//! The translate stage: the request in the provider's wire format, with the service's
//! credential and the gateway's trace context (docs/behaviour.md, "Request order", step 8).
//! A `preserve` route's body goes to the service's URL untouched.

use actix_web::HttpRequest;

use crate::error::Error;
use crate::providers::UpstreamRequest;

use super::context::{Party, RequestCtx};
use super::inject::inject;
use super::prepare::{Plan, translate_context};
use super::read::Body;
use super::redact;

/// What goes upstream, and its logged copy when the route logs payloads.
pub struct Outbound {
    pub request: UpstreamRequest,
    /// With `log_payloads`: the body as sent, credential masked.
    pub logged_request: Option<Vec<u8>>,
}

pub fn request(
    ctx: &mut RequestCtx,
    party: &Party,
    req: &HttpRequest,
    plan: &Plan,
    body: Body,
    default_max_tokens: u32,
) -> Result<Outbound, Error> {
    let route = party.route.as_ref();
    let service = &route.service;
    let mut upstream = match plan.kind {
        None => UpstreamRequest {
            url: service.record.upstream_url.clone().ok_or_else(|| {
                Error::internal("a preserve route needs a service with upstream_url")
            })?,
            headers: Vec::new(),
            body: body.raw.to_vec(),
        },
        Some(kind) => {
            let mut body = body;
            let object = std::mem::take(body.object()?);
            let tctx = translate_context(route, &plan.model, default_max_tokens);
            service
                .translator()
                .request(&tctx, kind, object)
                .map_err(|e| {
                    let err = Error::bad_request(e.message);
                    match e.param {
                        Some(p) => err.with_param(p),
                        None => err,
                    }
                })?
        }
    };
    ctx.request_model = Some(plan.model.clone());
    if let Some(credential) = &service.credential {
        inject(credential, req, party.caller.header, &mut upstream)?;
    }
    upstream
        .headers
        .push(("content-type".into(), "application/json".into()));
    // W3C trace context: the upstream call is the gateway's child span (docs/behaviour.md,
    // "Usage, analytics and telemetry").
    upstream
        .headers
        .push(("traceparent".into(), ctx.trace.upstream_traceparent()));
    ctx.server_address = url::Url::parse(&upstream.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string));
    let logged_request = route
        .logging
        .log_payloads
        .then(|| redact::logged_request(service.credential.as_deref(), &upstream.body));
    Ok(Outbound {
        request: upstream,
        logged_request,
    })
}
