//! The proxy request, in the order of docs/behaviour.md, "Request order".

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::actors::metrics::{UpstreamTiming, UsageEvent};
use crate::actors::spool::{self, SpoolRecord};
use crate::actors::upstream::{
    Forward, ForwardStream, TransportError, UpstreamReply, UpstreamStream,
};
use crate::crypto::redact::LazyRedactor;
use crate::error::Error;
use crate::llm::tokens::{Counter, PromptEstimate};
use crate::llm::{StreamMeta, StreamTranscoder, Transcode};
use crate::providers::{RouteKind, TranslateContext, UpstreamRequest, translator};
use crate::shutdown::DrainDeadline;
use crate::snapshot::{RouteEntry, Snapshot};
use crate::state::AppState;
use crate::telemetry::analytics;
use crate::telemetry::semconv;
use crate::telemetry::trace::TraceContext;
use crate::vocab::{ResponseStreaming, RouteType};

use super::accounting::preserve_usage;
use super::auth::{Caller, authenticate, authorize};
use super::inject::inject;
use super::redact;
use super::stream::{SseBody, StreamAccount};
use super::{Pools, Recorder};

/// Upstream bodies larger than this are refused (never buffered).
const MAX_UPSTREAM_BODY: usize = 32 * 1024 * 1024;

/// Which surface the request came in on: the OpenAI-compatible one addresses the route by
/// `model` (the alias), so it is exempt from "cannot use own model".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    RoutePath,
    OpenAi(RouteKind),
}

/// Everything the request carries from step to step.
struct Flight {
    started: Instant,
    started_at: SystemTime,
    request_id: String,
    trace: TraceContext,
}

impl Flight {
    fn new(req: &HttpRequest) -> Flight {
        // A client's own request id is kept when it is sane (no injection into logs/headers).
        let request_id = req
            .headers()
            .get("x-tollgate-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 128
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
            })
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string);
        Flight {
            started: Instant::now(),
            started_at: SystemTime::now(),
            request_id,
            trace: TraceContext::from_headers(req.headers()),
        }
    }

    fn finish(&self, mut response: HttpResponse) -> HttpResponse {
        if let Ok(v) = self.request_id.parse() {
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static("x-tollgate-request-id"),
                v,
            );
        }
        response
    }

    fn fail(&self, error: Error) -> HttpResponse {
        self.finish(error.openai_response())
    }
}

/// Longest matching path prefix, at a segment boundary.
fn resolve_path<'s>(snapshot: &'s Snapshot, path: &str) -> Option<&'s Arc<RouteEntry>> {
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

/// Reads the body: 413 past `limit` (declared length first, then while reading, so a
/// chunked body cannot get around it), 415 for a non-JSON content type.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, Error> {
    let too_large = || Error::payload_too_large(limit).with_openai_code("request_too_large");
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    if let Some(ct) = req.headers().get("content-type") {
        let mime = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" {
            return Err(Error::unsupported_media_type(format!(
                "Content-Type must be application/json, got '{mime}'"
            )));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| Error::bad_request(format!("cannot read request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::bad_request("request body must be a JSON object")),
        Err(_) => Err(Error::bad_request("request body is not valid JSON")),
    }
}

/// Kong's prompt checks (docs/behaviour.md, "Request order", step 5).
fn check_prompt(body: &Map<String, Value>, kind: RouteKind) -> Result<(), Error> {
    let chat = body
        .get("messages")
        .is_some_and(|m| m.as_array().is_some_and(|a| !a.is_empty()));
    let completion = body.get("prompt").is_some_and(Value::is_string);
    match (chat, completion, kind) {
        (true, true, _) => Err(Error::bad_request(
            "request matches multiple LLM request formats",
        )),
        (true, false, RouteKind::Chat) | (false, true, RouteKind::Completions) => Ok(()),
        (true, false, RouteKind::Completions) => Err(Error::bad_request(
            "[llm/v1/chat] message format is not compatible with [llm/v1/completions] route type",
        )),
        (false, true, RouteKind::Chat) => Err(Error::bad_request(
            "[llm/v1/completions] message format is not compatible with [llm/v1/chat] route type",
        )),
        (false, false, _) => Err(Error::bad_request(
            "request body doesn't contain valid prompts",
        )),
    }
}

/// The model to call (docs/behaviour.md, "Request order", step 6; Kong ≥ 3.7): the route's, else
/// the client's.
fn resolve_model(
    body: &Map<String, Value>,
    route: &RouteEntry,
    surface: Surface,
) -> Result<String, Error> {
    let requested = match body.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Error::bad_request("'model' must be a string").with_param("model")),
    };
    match (&route.model.name, requested) {
        (Some(configured), Some(requested))
            if surface == Surface::RoutePath && requested != configured =>
        {
            Err(
                Error::bad_request(format!("cannot use own model - must be: {configured}"))
                    .with_param("model"),
            )
        }
        (Some(configured), _) => Ok(configured.clone()),
        (None, Some(requested)) => Ok(requested.to_string()),
        (None, None) => Err(Error::bad_request(
            "no model: the route configures none and the request names none",
        )
        .with_param("model")),
    }
}

/// What a translator may read for this route, with the model to call.
fn translate_context<'a>(
    route: &'a RouteEntry,
    model: &'a str,
    default_max_tokens: u32,
) -> TranslateContext<'a> {
    let service = &route.service;
    TranslateContext {
        provider: service.provider,
        upstream_url: service.record.upstream_url.as_deref(),
        options: &service.options,
        model,
        tuning: &route.model.options,
        default_max_tokens,
    }
}

/// The usage numbers of a translated response.
fn usage_of(response: &Value) -> (u64, u64) {
    let get = |k: &str| {
        response
            .pointer(&format!("/usage/{k}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    (get("prompt_tokens"), get("completion_tokens"))
}

/// The client's body as read, and parsed when an earlier step already had to (the
/// OpenAI surface reads `model` first), so it is parsed once.
struct ClientBody {
    raw: Bytes,
    parsed: Option<Map<String, Value>>,
}

/// A streamed 2xx answer, ready to be sent.
struct StreamStart {
    upstream: UpstreamStream,
    transcode: Transcode,
    request_model: String,
    upstream_body: Option<Vec<u8>>,
    upstream_sent: Instant,
}

enum Reply {
    Whole(Outcome),
    Stream(StreamStart),
}

/// Streaming as the client and the route want it (docs/behaviour.md, "Request order", step 7).
struct StreamPlan {
    transcoder: Box<dyn StreamTranscoder>,
    include_usage: bool,
}

struct Outcome {
    response: HttpResponse,
    status: u16,
    request_model: String,
    response_model: Option<String>,
    /// `None` when the provider reported none (errors, `preserve`).
    usage: Option<(u64, u64)>,
    finish_reason: Option<String>,
    error_type: Option<String>,
    upstream_latency: Option<Duration>,
    /// With `log_payloads`: the body as sent upstream, and the body the client received.
    upstream_body: Option<Vec<u8>>,
    logged_response: Option<Value>,
}

/// What `dispatch` carries (the trace context) and learns before it may fail, for the
/// usage event of a failed request.
struct Attempt {
    trace: TraceContext,
    request_model: Option<String>,
    server_address: Option<String>,
    /// When the upstream request was sent, and how long until it failed or answered.
    upstream_started: Option<(SystemTime, Instant)>,
}

impl Attempt {
    fn new(trace: TraceContext) -> Attempt {
        Attempt {
            trace,
            request_model: None,
            server_address: None,
            upstream_started: None,
        }
    }

    fn upstream_timing(&self) -> Option<UpstreamTiming> {
        self.upstream_started.map(|(at, since)| UpstreamTiming {
            started_at: at,
            duration: since.elapsed(),
        })
    }
}

/// The record of a request whose client left before its answer was ready. actix drops the
/// handler's future then — and with it this guard, which records the request as
/// `client_disconnected` (or `shutdown`, when a graceful stop's drain time ran out), and
/// `dispatch`'s cancellation of the upstream call.
struct Abandoned<'a> {
    flight: &'a Flight,
    recorder: &'a Recorder,
    party: &'a Party<'a>,
    drain: &'a DrainDeadline,
    attempt: Attempt,
    armed: bool,
}

impl<'a> Abandoned<'a> {
    fn new(
        flight: &'a Flight,
        recorder: &'a Recorder,
        party: &'a Party<'a>,
        drain: &'a DrainDeadline,
    ) -> Abandoned<'a> {
        Abandoned {
            flight,
            recorder,
            party,
            drain,
            attempt: Attempt::new(flight.trace),
            armed: true,
        }
    }

    /// The request is answered here after all; what `dispatch` learnt.
    fn settle(&mut self) -> &Attempt {
        self.armed = false;
        &self.attempt
    }

    /// A graceful stop's drain time ran out before the answer was ready: 503 `shutdown`
    /// now, before the server drops the connection.
    fn stopped(&mut self) -> HttpResponse {
        self.armed = false;
        self.record(503, "shutdown");
        self.flight.fail(Error::shutting_down())
    }

    fn record(&self, status: u16, error_type: &str) {
        let attempt = &self.attempt;
        let model = attempt
            .request_model
            .as_deref()
            .or(self.party.route.model.name.as_deref())
            .unwrap_or("unknown");
        finish_record(
            self.recorder,
            &Record {
                error_type: Some(error_type.to_string()),
                ..Record::of(self.flight, self.party, attempt, model, status)
            },
        );
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.drain.passed() {
            // The server dropped it at the end of a graceful stop.
            self.record(503, "shutdown");
        } else {
            // 499: nginx's "client closed request"; nothing was sent.
            self.record(499, "client_disconnected");
        }
    }
}

/// An upstream failure as the client's error; its text (which may name the upstream URL,
/// query credential included) is masked.
fn redacted_failure(redactor: &LazyRedactor, failure: TransportError) -> Error {
    if failure == TransportError::MemoryExhausted {
        // The gateway's own limit (docs/architecture.md, "Memory"); the budget logs it, at
        // most once per 10 s, so not again per request.
        let mut error = Error::unavailable(failure.to_string())
            .with_openai_code("gateway_memory_exhausted")
            .with_openai_type("service_unavailable");
        error.logged = true;
        return error;
    }
    let status = match failure {
        TransportError::Timeout(_) | TransportError::Deadline(_) => StatusCode::GATEWAY_TIMEOUT,
        // The gateway is saturated; the upstream has not failed.
        TransportError::PoolExhausted(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    let error = Error::upstream(
        status,
        redactor.get().redact(&failure.to_string()).into_owned(),
    );
    match failure {
        TransportError::Refused => error.with_openai_code("upstream_destination_not_allowed"),
        TransportError::PoolExhausted(_) => error.with_openai_code("upstream_pool_exhausted"),
        _ => error,
    }
}

/// Redirects are never followed (the upstream client has them disabled): the credential
/// must not travel to another origin, so a 3xx is the upstream's failure (502 naming the
/// status), for streamed and whole requests alike.
fn refuse_redirect(status: u16, service: &str) -> Result<(), Error> {
    if !(300..400).contains(&status) {
        return Ok(());
    }
    tracing::warn!(
        service,
        status,
        "upstream answered with a redirect; not followed"
    );
    Err(Error::upstream(
        StatusCode::BAD_GATEWAY,
        format!("upstream answered with a redirect ({status}); redirects are not followed"),
    )
    .with_openai_code("upstream_redirect"))
}

/// Steps 4–8 and the response, once the route and the caller are known.
async fn dispatch(
    req: &HttpRequest,
    state: &AppState,
    pools: &Pools,
    party: &Party<'_>,
    body: ClientBody,
    surface: Surface,
    attempt: &mut Attempt,
) -> Result<Reply, Error> {
    let (route, caller) = (party.route.as_ref(), party.caller);
    let trace = &attempt.trace;
    let ClientBody { raw, parsed } = body;
    let mut plan: Option<StreamPlan> = None;
    let service = &route.service;
    if let Some(credential) = &service.unavailable_credential {
        return Err(Error::credential_unavailable(
            &service.record.name,
            credential,
        ));
    }
    let provider = service.provider;
    let kind = match route.route_type {
        RouteType::Chat => Some(RouteKind::Chat),
        RouteType::Completions => Some(RouteKind::Completions),
        RouteType::Preserve => None,
    };
    let (upstream, request_model) = match kind {
        None => {
            // `preserve`: the body goes through untouched (docs/behaviour.md, "Admin resources").
            let url = service.record.upstream_url.clone().ok_or_else(|| {
                Error::internal("a preserve route needs a service with upstream_url")
            })?;
            // The route's model, else the client's (Kong: the preserve embeddings test
            // expects `openai/text-embedding-ada-002` from the body).
            let model = route
                .model
                .name
                .clone()
                .or_else(|| {
                    let body: Value = serde_json::from_slice(&raw).ok()?;
                    Some(body.get("model")?.as_str()?.to_string())
                })
                .unwrap_or_else(|| "UNSPECIFIED".into());
            (
                UpstreamRequest {
                    url,
                    headers: Vec::new(),
                    body: raw.to_vec(),
                },
                model,
            )
        }
        Some(kind) => {
            let mut body = match parsed {
                Some(body) => body,
                None => parse_object(&raw)?,
            };
            if let Surface::OpenAi(endpoint) = surface
                && endpoint != kind
            {
                return Err(Error::bad_request(format!(
                    "model '{}' is served on the {} route type",
                    body.get("model")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    kind.as_str()
                ))
                .with_param("model"));
            }
            check_prompt(&body, kind)?;
            let model = resolve_model(&body, route, surface)?;
            let wants_stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
            match route.streaming {
                ResponseStreaming::Deny if wants_stream => {
                    return Err(Error::bad_request(
                        "response streaming is not enabled for this LLM",
                    )
                    .with_param("stream"));
                }
                ResponseStreaming::Always => {
                    body.insert("stream".into(), Value::Bool(true));
                }
                _ => {}
            }
            let ctx = translate_context(route, &model, state.settings.default_max_tokens);
            if body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
                let transcoder = translator(provider).stream(&ctx, kind).ok_or_else(|| {
                    Error::bad_request(format!(
                        "streaming is not supported for provider {} in this format",
                        provider.name()
                    ))
                    .with_param("stream")
                })?;
                let include_usage = body
                    .get("stream_options")
                    .and_then(|o| o.get("include_usage"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                plan = Some(StreamPlan {
                    transcoder,
                    include_usage,
                });
            }
            let upstream = translator(provider)
                .request(&ctx, kind, body)
                .map_err(|e| {
                    let err = Error::bad_request(e.message);
                    match e.param {
                        Some(p) => err.with_param(p),
                        None => err,
                    }
                })?;
            (upstream, model)
        }
    };
    attempt.request_model = Some(request_model.clone());
    let mut upstream = upstream;
    if let Some(credential) = &service.credential {
        inject(credential, req, caller.header, &mut upstream)?;
    }
    upstream
        .headers
        .push(("content-type".into(), "application/json".into()));
    // W3C trace context: the upstream call is the gateway's child span (docs/behaviour.md, "Usage,
    // analytics and telemetry").
    upstream
        .headers
        .push(("traceparent".into(), trace.upstream_traceparent()));
    attempt.server_address = url::Url::parse(&upstream.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string));
    let pool = pools
        .get(provider.name())
        .ok_or_else(|| Error::internal("no upstream pool for this provider"))?;
    let logged_request = route
        .logging
        .log_payloads
        .then(|| redact::logged_request(service.credential.as_deref(), &upstream.body));
    // Dropped with this future when the client leaves (actix drops the handler): the pool
    // actor runs the call on its own, so it is told to stop and close the connection.
    let cancel = CancellationToken::new();
    let _cancel_if_abandoned = cancel.clone().drop_guard();
    let forward = Forward {
        url: upstream.url,
        headers: upstream.headers,
        body: Bytes::from(upstream.body),
        connect_timeout: Duration::from_millis(service.timeouts.connect_ms),
        read_timeout: Duration::from_millis(service.timeouts.read_ms),
        max_response_bytes: MAX_UPSTREAM_BODY,
        service: service.record.id,
        max_connections: service.timeouts.max_connections,
        pool_wait: Duration::from_millis(service.timeouts.pool_wait_ms),
        total_timeout: service.timeouts.total_ms.map(Duration::from_millis),
        cancel,
        budget: state.response_budget.clone(),
    };
    attempt.upstream_started = Some((SystemTime::now(), Instant::now()));
    // Upstream text on error paths is masked (src/crypto/redact.rs); built on first use.
    let redactor = LazyRedactor::new(service.credential.clone());
    let map_failure = |f: TransportError| redacted_failure(&redactor, f);
    let body_sent = forward.body.clone();
    let reply: UpstreamReply = match (plan, kind) {
        (Some(plan), Some(kind)) => {
            let upstream_sent = Instant::now();
            let stream = pool
                .send(ForwardStream {
                    idle_timeout: forward.read_timeout,
                    request: forward,
                })
                .await
                .map_err(|_| Error::internal("upstream pool unavailable"))?
                .map_err(map_failure)?;
            // Dropping the stream on a redirect closes the connection unread.
            refuse_redirect(stream.status, &service.record.name)?;
            if (200..300).contains(&stream.status) {
                let meta = StreamMeta {
                    id: openai_id(kind),
                    created: chrono::Utc::now().timestamp(),
                    model: request_model.clone(),
                    kind,
                    include_usage: plan.include_usage,
                    collect_text: route.logging.log_payloads,
                };
                // Counted only if the provider reports no prompt tokens (src/llm/tokens.rs).
                let estimate = PromptEstimate::lazy(
                    body_sent,
                    Counter::for_model(provider.name(), &request_model),
                    service
                        .credential
                        .as_ref()
                        .filter(|c| c.param_location.as_deref() == Some("body"))
                        .and_then(|c| c.param_name.clone()),
                );
                return Ok(Reply::Stream(StreamStart {
                    upstream: stream,
                    transcode: Transcode::new(plan.transcoder, meta, provider.name())
                        .with_prompt_estimate(estimate)
                        .with_redactor(redactor),
                    request_model,
                    upstream_body: logged_request,
                    upstream_sent,
                }));
            }
            // An error answer to a streaming request is read whole and normalised like
            // any other (docs/behaviour.md, "Responses"); only 2xx answers are transcoded as
            // streams.
            collect_error(stream, &redactor).await?
        }
        _ => pool
            .send(forward)
            .await
            .map_err(|_| Error::internal("upstream pool unavailable"))?
            .map_err(map_failure)?,
    };
    refuse_redirect(reply.status, &service.record.name)?;

    let mut builder =
        HttpResponse::build(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY));
    for (name, value) in &reply.headers {
        // Rate-limit hints are useful to clients; cookies and framing headers are not ours.
        if name.starts_with("x-ratelimit-") || name == "retry-after" {
            builder.insert_header((name.as_str(), value.as_str()));
        }
    }
    let mut logged_response = None;
    let mut finish_reason = None;
    let mut error_type = None;
    let (response, response_model, usage) = match kind {
        None => {
            let ct = reply
                .headers
                .iter()
                .find(|(n, _)| n == "content-type")
                .map(|(_, v)| v.clone());
            if let Some(ct) = ct {
                builder.insert_header(("content-type", ct));
            }
            if reply.status >= 400 {
                error_type = Some(reply.status.to_string());
                let body = Bytes::from(redactor.get().redact_body(&reply.body).into_owned());
                (builder.body(body), None, None)
            } else {
                // Kong records usage from a `preserve` answer that carries it.
                let usage = preserve_usage(&reply.body);
                (builder.body(reply.body.clone()), None, usage)
            }
        }
        Some(kind) if (200..300).contains(&reply.status) => {
            let ctx = translate_context(route, &request_model, state.settings.default_max_tokens);
            let translated = translator(provider)
                .response(&ctx, kind, &reply.body)
                .map_err(|e| {
                    Error::upstream(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "transformation failed from type {}://{}: {}",
                            provider.name(),
                            kind.as_str(),
                            e.0
                        ),
                    )
                })?;
            let usage = Some(usage_of(&translated));
            finish_reason = translated
                .pointer("/choices/0/finish_reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            let model = translated
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string);
            let response = builder.json(&translated);
            if route.logging.log_payloads {
                let mut logged = translated;
                redactor.get().redact_value(&mut logged);
                logged_response = Some(logged);
            }
            (response, model, usage)
        }
        Some(_) => {
            // The provider's text may echo the credential: masked after parsing, so an
            // escaped echo is found in its decoded form too.
            let error = translator(provider).error(reply.status, &reply.body);
            let mut body = error.to_openai();
            redactor.get().redact_value(&mut body);
            error_type = Some(redactor.get().redact(&error.kind).into_owned());
            (builder.json(body), None, None)
        }
    };
    Ok(Reply::Whole(Outcome {
        response,
        status: reply.status,
        request_model,
        response_model,
        usage,
        finish_reason,
        error_type,
        upstream_latency: Some(reply.latency),
        upstream_body: logged_request,
        logged_response,
    }))
}

/// `chatcmpl-…` / `cmpl-…`, like OpenAI's ids.
fn openai_id(kind: RouteKind) -> String {
    let prefix = match kind {
        RouteKind::Chat => "chatcmpl-",
        RouteKind::Completions => "cmpl-",
    };
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Error bodies are small; a larger one is cut (the message is what matters).
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// Reads a streamed non-2xx answer whole, as if it had not been streamed.
async fn collect_error(
    mut stream: UpstreamStream,
    redactor: &LazyRedactor,
) -> Result<UpstreamReply, Error> {
    let mut body = web::BytesMut::new();
    while let Some(piece) = stream.body.recv().await {
        let piece = piece.map_err(|f| redacted_failure(redactor, f))?;
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&piece[..piece.len().min(room)]);
        if room <= piece.len() {
            break;
        }
    }
    Ok(UpstreamReply {
        status: stream.status,
        headers: stream.headers,
        body: body.freeze(),
        latency: stream.latency,
    })
}

/// One proxied request's accounting: the analytics line (docs/behaviour.md, "Usage, analytics and
/// telemetry") and the usage event.
pub(super) struct Record<'a> {
    /// The usage event id (a stream's spooled `begin` record shares it).
    pub usage_id: uuid::Uuid,
    pub request_id: &'a str,
    pub route: &'a RouteEntry,
    pub tenant_id: uuid::Uuid,
    pub tenant: Option<&'a str>,
    pub key_id: uuid::Uuid,
    pub status: u16,
    pub request_model: &'a str,
    pub response_model: Option<&'a str>,
    /// `None` when the provider reported nothing (a failed request).
    pub usage: Option<(u64, u64)>,
    pub usage_estimated: bool,
    pub started_at: SystemTime,
    pub duration: Duration,
    pub upstream: Option<UpstreamTiming>,
    pub overhead: Duration,
    pub time_to_first_token: Option<Duration>,
    pub stream_end: Option<&'static str>,
    pub finish_reason: Option<&'a str>,
    pub error_type: Option<String>,
    pub server_address: Option<&'a str>,
    pub trace: TraceContext,
    pub upstream_body: Option<&'a [u8]>,
    pub logged_response: Option<&'a Value>,
}

/// USD from the route's per-1M-token prices.
fn cost_of(route: &RouteEntry, (prompt, completion): (u64, u64)) -> f64 {
    let costs = &route.model.options;
    match (costs.input_cost, costs.output_cost) {
        (Some(i), Some(o)) => (prompt as f64 * i + completion as f64 * o) / 1_000_000.0,
        _ => 0.0,
    }
}

/// Records a finished request: the usage event always (billing does not depend on
/// logging), the analytics line when the route's `log_statistics` is on and the request
/// reached the provider.
pub(super) fn finish_record(recorder: &Recorder, record: &Record<'_>) {
    let route = record.route;
    // A client-chosen (or upstream-echoed) model name is capped before any record.
    let request_model = redact::cap_model_name(record.request_model);
    let response_model = record.response_model.map(redact::cap_model_name);
    let cost = record.usage.map_or(0.0, |u| cost_of(route, u));
    if let Some(sink) = &recorder.usage {
        sink.record(UsageEvent {
            id: record.usage_id,
            started_at: record.started_at,
            duration: record.duration,
            tenant_id: record.tenant_id,
            tenant: record.tenant.unwrap_or_default().to_string(),
            key_id: record.key_id,
            route_id: route.record.id,
            route: route.record.name.clone(),
            provider: route.service.provider.name(),
            operation: semconv::operation_name(route.route_type.as_str()),
            request_model: request_model.to_string(),
            response_model: response_model.as_deref().map(str::to_string),
            status: record.status,
            error_type: record.error_type.clone(),
            prompt_tokens: record.usage.map(|u| u.0),
            completion_tokens: record.usage.map(|u| u.1),
            cost,
            upstream: record.upstream,
            time_to_first_token: record.time_to_first_token,
            overhead: record.overhead,
            stream: record.stream_end.is_some(),
            finish_reason: record.finish_reason.map(str::to_string),
            server_address: record.server_address.map(str::to_string),
            trace: record.trace,
        });
    }
    if !route.logging.log_statistics || record.upstream.is_none() {
        return;
    }
    let upstream_ms = record.upstream.map_or(0, |u| u.duration.as_millis());
    let (prompt, completion) = record.usage.unwrap_or((0, 0));
    let time_per_token = if completion > 0 {
        upstream_ms as f64 / completion as f64
    } else {
        0.0
    };
    let payload = route.logging.log_payloads.then(|| analytics::Payload {
        request: record.upstream_body.map(String::from_utf8_lossy),
        response: record.logged_response,
    });
    recorder.analytics.write(&analytics::Line {
        ai: analytics::Ai {
            proxy: analytics::Proxy {
                meta: analytics::Meta {
                    plugin_id: route.record.id,
                    provider_name: route.service.provider.name(),
                    request_model: &request_model,
                    response_model: response_model.as_deref().unwrap_or(&request_model),
                    llm_latency: upstream_ms,
                },
                usage: analytics::Usage {
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                    total_tokens: prompt.saturating_add(completion),
                    time_per_token,
                    cost,
                },
                payload,
            },
        },
        tollgate: analytics::Tollgate {
            request_id: record.request_id,
            tenant: record.tenant,
            key_id: record.key_id,
            route: &route.record.name,
            service: &route.service.record.name,
            status: record.status,
            overhead_ms: record.overhead.as_secs_f64() * 1000.0,
            stream: record.stream_end.is_some(),
            stream_end: record.stream_end,
            usage_estimated: record.usage_estimated,
        },
    });
}

/// Sets the response headers of docs/behaviour.md, "Responses" (`x-tollgate-*`).
fn set_gateway_headers(
    response: &mut HttpResponse,
    route: &RouteEntry,
    request_model: &str,
    upstream_latency: Duration,
    overhead: Duration,
) {
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = value.parse() {
            headers.insert(actix_web::http::header::HeaderName::from_static(name), v);
        }
    };
    if route.record.model_name_header {
        set(
            "x-tollgate-llm-model",
            format!(
                "{}/{}",
                route.service.provider.name(),
                redact::cap_model_name(request_model)
            ),
        );
    }
    set(
        "x-tollgate-upstream-latency-ms",
        upstream_latency.as_millis().to_string(),
    );
    set(
        "x-tollgate-overhead-ms",
        format!("{:.3}", overhead.as_secs_f64() * 1000.0),
    );
}

/// Who is calling which route: what every record of this request shares.
struct Party<'a> {
    route: &'a Arc<RouteEntry>,
    caller: &'a Caller<'a>,
    snapshot: &'a Snapshot,
}

impl<'a> Record<'a> {
    /// What every record of this request shares, for a request that got as far as
    /// `attempt` says; the caller sets how it ended.
    fn of(
        flight: &'a Flight,
        party: &'a Party<'a>,
        attempt: &'a Attempt,
        request_model: &'a str,
        status: u16,
    ) -> Record<'a> {
        let duration = flight.started.elapsed();
        let upstream = attempt.upstream_timing();
        Record {
            usage_id: uuid::Uuid::now_v7(),
            request_id: &flight.request_id,
            route: party.route,
            tenant_id: party.caller.tenant,
            tenant: party.snapshot.tenant_name(party.caller.tenant),
            key_id: party.caller.key.record.id,
            status,
            request_model,
            response_model: None,
            usage: None,
            usage_estimated: false,
            started_at: flight.started_at,
            duration,
            upstream,
            overhead: duration.saturating_sub(upstream.map(|u| u.duration).unwrap_or_default()),
            time_to_first_token: None,
            stream_end: None,
            finish_reason: None,
            error_type: None,
            server_address: attempt.server_address.as_deref(),
            trace: flight.trace,
            upstream_body: None,
            logged_response: None,
        }
    }
}

/// Sends the reply: a whole answer with its record now, or a stream whose record is
/// written when it ends.
fn complete(
    flight: &Flight,
    recorder: &Recorder,
    party: &Party<'_>,
    attempt: &Attempt,
    reply: Reply,
    drain: &DrainDeadline,
) -> HttpResponse {
    match reply {
        Reply::Whole(outcome) => complete_whole(flight, recorder, party, attempt, outcome),
        Reply::Stream(start) => complete_stream(flight, recorder, party, attempt, start, drain),
    }
}

fn complete_whole(
    flight: &Flight,
    recorder: &Recorder,
    party: &Party<'_>,
    attempt: &Attempt,
    mut outcome: Outcome,
) -> HttpResponse {
    let route = party.route;
    let duration = flight.started.elapsed();
    let upstream_latency = outcome.upstream_latency.unwrap_or_default();
    let overhead = duration.saturating_sub(upstream_latency);
    set_gateway_headers(
        &mut outcome.response,
        route,
        &outcome.request_model,
        upstream_latency,
        overhead,
    );
    finish_record(
        recorder,
        &Record {
            response_model: outcome.response_model.as_deref(),
            usage: outcome.usage,
            duration,
            upstream: attempt.upstream_started.map(|(at, _)| UpstreamTiming {
                started_at: at,
                duration: upstream_latency,
            }),
            overhead,
            finish_reason: outcome.finish_reason.as_deref(),
            error_type: outcome.error_type.clone(),
            upstream_body: outcome.upstream_body.as_deref(),
            logged_response: outcome.logged_response.as_ref(),
            ..Record::of(
                flight,
                party,
                attempt,
                &outcome.request_model,
                outcome.status,
            )
        },
    );
    flight.finish(outcome.response)
}

fn complete_stream(
    flight: &Flight,
    recorder: &Recorder,
    party: &Party<'_>,
    attempt: &Attempt,
    start: StreamStart,
    drain: &DrainDeadline,
) -> HttpResponse {
    let route = party.route;
    let upstream_latency = start.upstream.latency;
    let overhead = flight.started.elapsed().saturating_sub(upstream_latency);
    let status = start.upstream.status;
    let mut builder = HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
    builder
        .insert_header(("content-type", "text/event-stream"))
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"));
    for (name, value) in &start.upstream.headers {
        if name.starts_with("x-ratelimit-") || name == "retry-after" {
            builder.insert_header((name.as_str(), value.as_str()));
        }
    }
    let usage_id = uuid::Uuid::now_v7();
    if let Some(sink) = &recorder.usage {
        // Spooled now, so a kill mid-stream still bills the prompt (docs/architecture.md,
        // "The usage spool").
        let prompt = start.transcode.emitter().prompt_estimate_quick();
        sink.begin(SpoolRecord {
            id: usage_id,
            kind: spool::Kind::Begin,
            at_ms: spool::unix_ms(flight.started_at),
            tenant_id: party.caller.tenant,
            key_id: party.caller.key.record.id,
            route_id: route.record.id,
            model: redact::cap_model_name(&start.request_model).to_string(),
            error: false,
            prompt_tokens: prompt,
            completion_tokens: 0,
            cost: cost_of(route, (prompt, 0)),
            latency_ms: 0.0,
        });
    }
    let account = StreamAccount {
        usage_id,
        recorder: recorder.clone(),
        route: Arc::clone(route),
        request_id: flight.request_id.clone(),
        tenant_id: party.caller.tenant,
        tenant: party
            .snapshot
            .tenant_name(party.caller.tenant)
            .map(str::to_string),
        key_id: party.caller.key.record.id,
        status,
        request_model: start.request_model.clone(),
        started: flight.started,
        started_at: flight.started_at,
        upstream_started_at: attempt
            .upstream_started
            .map_or_else(SystemTime::now, |(at, _)| at),
        upstream_sent: start.upstream_sent,
        overhead,
        upstream_body: start.upstream_body,
        server_address: attempt.server_address.clone(),
        trace: flight.trace,
    };
    let mut response = builder.streaming(SseBody::new(
        start.upstream.body,
        start.transcode,
        account,
        drain.clone(),
    ));
    set_gateway_headers(
        &mut response,
        route,
        &start.request_model,
        upstream_latency,
        overhead,
    );
    flight.finish(response)
}

/// A request that failed after its route and caller were known still counts (docs/behaviour.md,
/// "Usage, analytics and telemetry": one usage event per proxied request, failed ones included).
fn fail_recorded(
    flight: &Flight,
    recorder: &Recorder,
    party: &Party<'_>,
    attempt: &Attempt,
    error: Error,
) -> HttpResponse {
    let response = error.openai_response();
    let status = response.status().as_u16();
    let model = attempt
        .request_model
        .as_deref()
        .or(party.route.model.name.as_deref())
        .unwrap_or("unknown");
    finish_record(
        recorder,
        &Record {
            error_type: Some(status.to_string()),
            ..Record::of(flight, party, attempt, model, status)
        },
    );
    flight.finish(response)
}

/// `POST <route path>`: Kong-style surface.
pub async fn route_path(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    pools: web::Data<Pools>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    let flight = Flight::new(&req);
    let snapshot = state.snapshot.load();
    let Some(route) = resolve_path(&snapshot, req.path()) else {
        return flight
            .fail(Error::not_found("no route matched").with_openai_code("route_not_found"));
    };
    if req.method() != actix_web::http::Method::POST {
        let mut response = Error::method_not_allowed("LLM routes accept only POST")
            .with_openai_code("method_not_allowed")
            .openai_response();
        if let Ok(allow) = "POST".parse() {
            response
                .headers_mut()
                .insert(actix_web::http::header::ALLOW, allow);
        }
        return flight.finish(response);
    }
    let caller = match authenticate(&req, &snapshot, &state.api_keys)
        .and_then(|c| authorize(&c, route).map(|_| c))
    {
        Ok(c) => c,
        Err(e) => return flight.fail(e),
    };
    let limit = usize::try_from(route.record.max_request_body_size).unwrap_or(usize::MAX);
    let raw = match read_body(&req, payload, limit).await {
        Ok(b) => b,
        Err(e) => return flight.fail(e),
    };
    let party = Party {
        route,
        caller: &caller,
        snapshot: &snapshot,
    };
    serve(
        &req,
        &state,
        &pools,
        &recorder,
        &flight,
        &party,
        ClientBody { raw, parsed: None },
        Surface::RoutePath,
    )
    .await
}

/// The OpenAI-compatible surface: the key first (401), then the body, then the alias
/// (404 `model_not_found`), so an unauthenticated caller learns nothing about aliases.
async fn openai(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    pools: web::Data<Pools>,
    recorder: web::Data<Recorder>,
    endpoint: RouteKind,
) -> HttpResponse {
    let flight = Flight::new(&req);
    let snapshot = state.snapshot.load();
    let caller = match authenticate(&req, &snapshot, &state.api_keys) {
        Ok(c) => c,
        Err(e) => return flight.fail(e),
    };
    // Before the route is known the body limit is the largest any route allows.
    let limit = snapshot
        .aliases
        .values()
        .map(|r| usize::try_from(r.record.max_request_body_size).unwrap_or(usize::MAX))
        .max()
        .unwrap_or(1024 * 1024);
    let raw = match read_body(&req, payload, limit).await {
        Ok(b) => b,
        Err(e) => return flight.fail(e),
    };
    // Parsed once here (for the alias) and handed on to `dispatch`.
    let body = match parse_object(&raw) {
        Ok(body) => body,
        Err(e) => return flight.fail(e),
    };
    let alias = match body.get("model") {
        Some(Value::String(m)) => m.clone(),
        _ => return flight.fail(Error::bad_request("'model' is required").with_param("model")),
    };
    let route = match snapshot.aliases.get(&alias) {
        Some(r) if authorize(&caller, r).is_ok() => r,
        // A route the key may not use is reported like an unknown one (no alias leak).
        _ => {
            return flight.fail(
                Error::not_found(format!(
                    "The model '{alias}' does not exist or you do not have access to it"
                ))
                .with_param("model")
                .with_openai_code("model_not_found"),
            );
        }
    };
    if raw.len() as i64 > route.record.max_request_body_size {
        let limit = usize::try_from(route.record.max_request_body_size).unwrap_or(usize::MAX);
        return flight.fail(Error::payload_too_large(limit).with_openai_code("request_too_large"));
    }
    let party = Party {
        route,
        caller: &caller,
        snapshot: &snapshot,
    };
    serve(
        &req,
        &state,
        &pools,
        &recorder,
        &flight,
        &party,
        ClientBody {
            raw,
            parsed: Some(body),
        },
        Surface::OpenAi(endpoint),
    )
    .await
}

/// A request whose route and caller are known: dispatched, then answered and recorded —
/// its reply or failure, a graceful stop's drain deadline, or a client that left
/// (`Abandoned` records it when this future is dropped).
#[expect(
    clippy::too_many_arguments,
    reason = "the request's parts until they become one request context"
)]
async fn serve(
    req: &HttpRequest,
    state: &AppState,
    pools: &Pools,
    recorder: &Recorder,
    flight: &Flight,
    party: &Party<'_>,
    body: ClientBody,
    surface: Surface,
) -> HttpResponse {
    let mut watch = Abandoned::new(flight, recorder, party, &state.drain_deadline);
    let result = tokio::select! {
        result = dispatch(req, state, pools, party, body, surface, &mut watch.attempt) => result,
        // A graceful stop's drain time ran out: answered now, not cut by the server.
        () = state.drain_deadline.wait() => return watch.stopped(),
    };
    let attempt = watch.settle();
    match result {
        Ok(reply) => complete(
            flight,
            recorder,
            party,
            attempt,
            reply,
            &state.drain_deadline,
        ),
        Err(e) => fail_recorded(flight, recorder, party, attempt, e),
    }
}

pub async fn openai_chat(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    pools: web::Data<Pools>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    openai(req, payload, state, pools, recorder, RouteKind::Chat).await
}

pub async fn openai_completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    pools: web::Data<Pools>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    openai(req, payload, state, pools, recorder, RouteKind::Completions).await
}

/// `GET /v1/models`: the aliases this key may use.
pub async fn models(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let flight = Flight::new(&req);
    let snapshot = state.snapshot.load();
    let caller = match authenticate(&req, &snapshot, &state.api_keys) {
        Ok(c) => c,
        Err(e) => return flight.fail(e),
    };
    let mut data: Vec<Value> = snapshot
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
    flight.finish(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}
