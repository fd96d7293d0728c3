//! The translate stage: the request in the provider's wire format, with the service's
//! credential and the gateway's trace context (docs/behaviour.md, "Request order", step 8).
//! A `preserve` route's body goes to the service's URL untouched.

use actix_web::HttpRequest;

use crate::error::Error;
use crate::providers::UpstreamRequest;

use super::context::{Party, RequestCtx};
use super::inject::inject;
use super::prepare::{Operation, Plan, bad_request, translate_context};
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
    let tctx = translate_context(route, &plan.model, default_max_tokens);
    let translator = service.translator();
    let mut upstream = match plan.operation {
        Operation::Preserve => UpstreamRequest {
            url: service.record.upstream_url.clone().ok_or_else(|| {
                Error::internal("a preserve route needs a service with upstream_url")
            })?,
            headers: Vec::new(),
            body: { body }.raw().to_vec(),
        },
        Operation::Complete(kind) => {
            let mut body = body;
            let object = std::mem::take(body.object()?);
            translator
                .request(&tctx, kind, object)
                .map_err(bad_request)?
        }
        Operation::Embed(_) => {
            let mut body = body;
            let object = std::mem::take(body.object()?);
            let embedder = translator
                .embeddings()
                .ok_or_else(|| Error::internal("the service has no embeddings translator"))?;
            embedder.request(&tctx, object).map_err(bad_request)?
        }
    };
    ctx.request_model = Some(plan.model.clone());
    if let Some(credential) = &service.credential {
        inject(credential, Some((req, party.caller.header)), &mut upstream)?;
    }
    upstream
        .headers
        .push(("content-type".into(), "application/json".into()));
    // W3C trace context: the upstream call is the gateway's child span (docs/behaviour.md,
    // "Usage, analytics and telemetry").
    upstream
        .headers
        .push(("traceparent".into(), ctx.trace.upstream_traceparent()));
    ctx.server_address = host_of(&upstream.url).map(str::to_string);
    let logged_request = route
        .logging
        .log_payloads
        .then(|| redact::logged_request(service.credential.as_deref(), &upstream.body));
    Ok(Outbound {
        request: upstream,
        logged_request,
    })
}

/// The host of an absolute URL as `url::Url::host_str` gives it (an IPv6 literal keeps its
/// brackets), read without parsing the whole URL: every request records it
/// (`server.address`). The translators build these URLs, so they are well formed.
fn host_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        &host_port[..=host_port.find(']')?]
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_is_what_the_url_crate_reads() {
        for url in [
            "https://api.openai.com/v1/chat/completions",
            "http://127.0.0.1:8080/v1/messages?beta=true",
            "http://[::1]:9000/x",
            "https://user:pw@example.com:443/path#frag",
            "https://my-res.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21",
            "http://localhost",
            "http://host?x=1",
            "http://host#f",
        ] {
            let parsed = url::Url::parse(url).expect("url");
            assert_eq!(host_of(url), parsed.host_str(), "{url}");
        }
    }
}
