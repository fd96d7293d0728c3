//! The resolve stage: which route a request is for (docs/behaviour.md, "Request order",
//! step 1) — by path prefix on the route path surface, by the body's `model` alias on the
//! OpenAI-compatible one.

use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::Method;
use serde_json::Value;

use crate::error::Error;
use crate::snapshot::{RouteEntry, Snapshot};

use super::auth::{Caller, authorize};
use super::read::{self, Body};

/// The route whose path is the longest prefix of the request's, at a segment boundary;
/// LLM routes accept only POST.
pub fn by_path(snapshot: &Snapshot, req: &HttpRequest) -> Result<Arc<RouteEntry>, Error> {
    let route = longest_prefix(snapshot, req.path())
        .ok_or_else(|| Error::not_found("no route matched").with_openai_code("route_not_found"))?;
    if req.method() != Method::POST {
        // Rendered with `Allow: POST` (accounting.rs): the only method a route takes.
        return Err(Error::method_not_allowed("LLM routes accept only POST")
            .with_openai_code("method_not_allowed"));
    }
    Ok(Arc::clone(route))
}

fn longest_prefix<'s>(snapshot: &'s Snapshot, path: &str) -> Option<&'s Arc<RouteEntry>> {
    // `snapshot.paths` is sorted longest first when the snapshot is compiled.
    snapshot
        .paths
        .iter()
        .find(|(prefix, _)| {
            let prefix = prefix.trim_end_matches('/');
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                || prefix.is_empty()
        })
        .map(|(_, route)| route)
}

/// Before the alias is known, the body limit is the largest any route allows.
pub fn largest_body_limit(snapshot: &Snapshot) -> usize {
    snapshot
        .aliases
        .values()
        .map(|r| body_limit(r))
        .max()
        .unwrap_or(1024 * 1024)
}

/// The route's `max_request_body_size` in bytes.
pub fn body_limit(route: &RouteEntry) -> usize {
    usize::try_from(route.record.max_request_body_size).unwrap_or(usize::MAX)
}

/// The route named by the body's `model`: 404 `model_not_found` also when the key may not
/// use it, so aliases do not leak; then the route's own body limit.
pub fn by_alias(
    snapshot: &Snapshot,
    caller: &Caller<'_>,
    body: &mut Body,
) -> Result<Arc<RouteEntry>, Error> {
    let alias = match body.object()?.get("model") {
        Some(Value::String(m)) => m.clone(),
        _ => return Err(Error::bad_request("'model' is required").with_param("model")),
    };
    let route = match snapshot.aliases.get(&alias) {
        Some(r) if authorize(caller, r).is_ok() => r,
        _ => {
            return Err(Error::not_found(format!(
                "The model '{alias}' does not exist or you do not have access to it"
            ))
            .with_param("model")
            .with_openai_code("model_not_found"));
        }
    };
    if body.received().len() > body_limit(route) {
        return Err(read::too_large(body_limit(route)));
    }
    Ok(Arc::clone(route))
}
