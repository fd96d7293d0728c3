//! The one value a proxied request carries from stage to stage (docs/architecture.md, "The
//! request pipeline"): its identity and clock from the start, the route and the caller once
//! the first stages found them, and what the upstream hop learnt — everything its usage
//! record needs, whether the request ends in an answer, an error, or a client that left.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use uuid::Uuid;

use crate::actors::metrics::UpstreamTiming;
use crate::limits::Reservation;
use crate::snapshot::{RouteEntry, Snapshot};
use crate::telemetry::event::{PolicyEvent, PolicyUsage};
use crate::telemetry::trace::TraceContext;
use crate::vocab::RouteType;

use super::auth::CallerId;

/// The response headers that carry the request id: the gateway's own, and the one OpenAI's
/// SDKs read (`request_id`). A client's id in either is kept, the gateway's name first.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-tollgate-request-id");
const OPENAI_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Which surface the request came in on: the OpenAI-compatible one addresses the route by
/// `model` (the alias), so it is exempt from "cannot use own model".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    RoutePath,
    /// The endpoint's route type (`/v1/chat/completions` is `llm/v1/chat`, …).
    OpenAi(RouteType),
}

/// Who calls which route: known after the first stages.
#[derive(Clone)]
pub struct Party {
    pub route: Arc<RouteEntry>,
    pub caller: CallerId,
}

pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
    pub started_at: SystemTime,
    pub trace: TraceContext,
    pub surface: Surface,
    /// The configuration this request is served from, start to end.
    pub snapshot: Arc<Snapshot>,
    /// Set once route, caller and body are known: from here on the request counts as
    /// proxied and has a usage record, whether it ends in an answer, an error or a client
    /// that left (docs/behaviour.md, "Usage, analytics and telemetry").
    pub party: Option<Party>,
    /// The model the request asked for, once known.
    pub request_model: Option<String>,
    /// The upstream host, once the upstream request is built.
    pub server_address: Option<String>,
    /// When the upstream request was sent (wall clock and monotonic).
    pub upstream_started: Option<(SystemTime, Instant)>,
    /// What the policies did (docs/behaviour.md, "Policies").
    pub policy_actions: Vec<PolicyEvent>,
    /// The client's body before a prompt template replaced it, kept when the template's
    /// `log_original_request` is on (for the analytics line).
    pub original_request: Option<bytes::Bytes>,
    /// The transformer policies' instruction calls (docs/behaviour.md, "Policies").
    pub policy_usage: Vec<PolicyUsage>,
    /// What the limits stage reserved (docs/behaviour.md, "Limits and budgets"); the
    /// account stage settles it, and dropped unsettled it is given back.
    pub limits: Option<Reservation>,
    /// Why the limits stage refused the request, for its records.
    pub limit_refusal: Option<String>,
}

/// How a policy acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOutcome {
    Applied,
    Blocked,
    Failed,
}

impl PolicyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyOutcome::Applied => "applied",
            PolicyOutcome::Blocked => "blocked",
            PolicyOutcome::Failed => "failed",
        }
    }
}

impl RequestCtx {
    pub fn new(req: &HttpRequest, surface: Surface, snapshot: Arc<Snapshot>) -> RequestCtx {
        // A client's own request id is kept when it is sane (no injection into logs/headers).
        let sane = |name: &HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| {
                    !v.is_empty()
                        && v.len() <= 128
                        && v.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
                })
        };
        let request_id = sane(&REQUEST_ID)
            .or_else(|| sane(&OPENAI_REQUEST_ID))
            .map_or_else(|| Uuid::now_v7().to_string(), str::to_string);
        RequestCtx {
            request_id,
            started: Instant::now(),
            started_at: SystemTime::now(),
            trace: TraceContext::from_headers(req.headers()),
            surface,
            snapshot,
            party: None,
            request_model: None,
            server_address: None,
            upstream_started: None,
            policy_actions: Vec::new(),
            original_request: None,
            policy_usage: Vec::new(),
            limits: None,
            limit_refusal: None,
        }
    }

    /// From here on the request counts as proxied (see `party`).
    pub fn admit(&mut self, party: &Party) {
        self.party = Some(party.clone());
    }

    /// The tenant's name, for records.
    pub fn tenant_name(&self, caller: &CallerId) -> Option<&str> {
        self.snapshot.tenant_name(caller.tenant)
    }

    /// The upstream call's start and duration so far.
    pub fn upstream_timing(&self) -> Option<UpstreamTiming> {
        self.upstream_started.map(|(at, since)| UpstreamTiming {
            started_at: at,
            duration: since.elapsed(),
        })
    }

    /// Every proxy response leaves through here: the one place that sets the request id.
    pub fn finish(&self, mut response: HttpResponse) -> HttpResponse {
        // Appended: the proxy builds every response itself, and this is the one place
        // these names are set.
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            let headers = response.headers_mut();
            headers.append(OPENAI_REQUEST_ID, v.clone());
            headers.append(REQUEST_ID, v);
        }
        response
    }
}
