//! The account stage: every proxied request is recorded once (docs/behaviour.md, "Usage,
//! analytics and telemetry") — a usage event always, an analytics line when the route's
//! `log_statistics` is on — whether it ended in a whole answer, an error, a stream (recorded
//! when the stream ends, stream.rs), or a client that left before its answer was ready.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde_json::Value;

use crate::actors::metrics::{UpstreamTiming, UsageEvent};
use crate::actors::spool::{self, SpoolRecord};
use crate::error::Error;
use crate::error::openai::OpenAiError;
use crate::limits::Reservation;
use crate::shutdown::DrainDeadline;
use crate::snapshot::RouteEntry;
use crate::telemetry::analytics;
use crate::telemetry::event::{PolicyEvent, PolicyUsage};
use crate::telemetry::semconv;
use crate::telemetry::trace::TraceContext;

use super::Recorder;
use super::context::{Party, RequestCtx};
use super::limits;
use super::redact;
use super::respond::{Outcome, Reply, StreamStart};
use super::stream::{SseBody, StreamAccount};

/// Records the request as it ended, and sends its response.
pub fn account(
    ctx: &mut RequestCtx,
    recorder: &Recorder,
    drain: &DrainDeadline,
    result: Result<Reply, Error>,
) -> HttpResponse {
    // Settled below with the answer's usage; on every other path dropped, which gives it
    // back (docs/behaviour.md, "Limits and budgets").
    let reservation = ctx.limits.take();
    let ctx = &*ctx;
    let response = match (result, &ctx.party) {
        (Ok(Reply::Whole(outcome)), Some(party)) => {
            whole(ctx, party, recorder, outcome, reservation)
        }
        (Ok(Reply::Stream(start)), Some(party)) => {
            stream(ctx, party, recorder, start, drain, reservation)
        }
        (Ok(_), None) => render(Error::internal("answered before admission")),
        (Err(error), party) => {
            drop(reservation);
            let response = render(error);
            if let Some(party) = party {
                failed(ctx, party, recorder, response.status().as_u16());
            }
            response
        }
    };
    ctx.finish(response)
}

/// The OpenAI error shape (the proxy's only error rendering); a 405 names the one method
/// LLM routes take.
pub fn render(error: Error) -> HttpResponse {
    let status = error.status;
    let mut response = OpenAiError(error).error_response();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    }
    response
}

fn whole(
    ctx: &RequestCtx,
    party: &Party,
    recorder: &Recorder,
    mut outcome: Outcome,
    reservation: Option<Reservation>,
) -> HttpResponse {
    limits::set_headers(
        &mut outcome.response,
        reservation.as_ref().map(Reservation::headers),
        outcome.upstream_rates,
    );
    if let Some(reservation) = reservation {
        match outcome.usage {
            Some(usage) => limits::settle(reservation, &party.route, usage),
            // No usage reported (`preserve`): the estimate stands.
            None if outcome.status < 400 => reservation.keep(),
            // The upstream call failed: nothing was used.
            None => reservation.release(),
        }
    }
    let duration = ctx.started.elapsed();
    let upstream_latency = outcome.upstream_latency;
    let overhead = duration.saturating_sub(upstream_latency);
    set_gateway_headers(
        &mut outcome.response,
        &party.route,
        &outcome.request_model,
        upstream_latency,
        overhead,
    );
    finish_record(
        recorder,
        &Record {
            response_model: outcome.response_model.as_deref(),
            usage: outcome.usage,
            usage_estimated: outcome.usage_estimated,
            duration,
            upstream: ctx.upstream_started.map(|(at, _)| UpstreamTiming {
                started_at: at,
                duration: upstream_latency,
            }),
            overhead,
            finish_reason: outcome.finish_reason.as_deref(),
            error_type: outcome.error_type.clone(),
            upstream_body: outcome.upstream_body.as_deref(),
            logged_response: outcome.logged_response.as_ref(),
            ..Record::of(ctx, party, &outcome.request_model, outcome.status)
        },
    );
    outcome.response
}

fn stream(
    ctx: &RequestCtx,
    party: &Party,
    recorder: &Recorder,
    start: StreamStart,
    drain: &DrainDeadline,
    reservation: Option<Reservation>,
) -> HttpResponse {
    let route = &party.route;
    let upstream_latency = start.upstream.latency;
    let overhead = ctx.started.elapsed().saturating_sub(upstream_latency);
    let status = start.upstream.status;
    let (mut head, upstream_rates) = start.head();
    let usage_id = uuid::Uuid::now_v7();
    if let Some(sink) = &recorder.usage {
        // Spooled now, so a kill mid-stream still bills the prompt (docs/architecture.md,
        // "The usage spool").
        let prompt = start.transcode.emitter().prompt_estimate_quick();
        sink.begin(SpoolRecord {
            id: usage_id,
            kind: spool::Kind::Begin,
            at_ms: spool::unix_ms(ctx.started_at),
            tenant_id: party.caller.tenant,
            key_id: party.caller.key_id,
            route_id: route.record.id,
            model: redact::cap_model_name(&start.request_model).to_string(),
            error: false,
            prompt_tokens: prompt,
            completion_tokens: 0,
            cost: cost_of(route, (prompt, 0)),
            latency_ms: 0.0,
            source: None,
            rejected: false,
        });
    }
    let account = StreamAccount {
        usage_id,
        recorder: recorder.clone(),
        route: Arc::clone(route),
        request_id: ctx.request_id.clone(),
        tenant_id: party.caller.tenant,
        tenant: ctx.tenant_name(&party.caller).map(str::to_string),
        key_id: party.caller.key_id,
        status,
        request_model: start.request_model.clone(),
        started: ctx.started,
        started_at: ctx.started_at,
        upstream_started_at: ctx
            .upstream_started
            .map_or_else(SystemTime::now, |(at, _)| at),
        upstream_sent: start.upstream_sent,
        overhead,
        upstream_body: start.upstream_body,
        server_address: ctx.server_address.clone(),
        trace: ctx.trace,
        policies: ctx.policy_actions.clone(),
        original_request: ctx.original_request.clone(),
        policy_usage: ctx.policy_usage.clone(),
        limits: reservation,
    };
    let rate = account.limits.as_ref().map(Reservation::headers);
    let mut response = head.streaming(SseBody::new(
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
    limits::set_headers(&mut response, rate, upstream_rates);
    response
}

/// A request that failed after admission still counts (docs/behaviour.md, "Usage,
/// analytics and telemetry": one usage event per proxied request, failed ones included).
fn failed(ctx: &RequestCtx, party: &Party, recorder: &Recorder, status: u16) {
    record_failure(ctx, party, recorder, status, status.to_string());
}

fn record_failure(
    ctx: &RequestCtx,
    party: &Party,
    recorder: &Recorder,
    status: u16,
    error_type: String,
) {
    let model = ctx
        .request_model
        .as_deref()
        .or(party.route.model.name.as_deref())
        .unwrap_or("unknown");
    finish_record(
        recorder,
        &Record {
            error_type: Some(error_type),
            ..Record::of(ctx, party, model, status)
        },
    );
}

/// The record of a request whose client left before its answer was ready. actix drops the
/// handler's future then — and with it this guard, which records the request as
/// `client_disconnected` (or `shutdown`, when a graceful stop's drain time ran out), and
/// the forward stage's cancellation of the upstream call.
pub struct Abandoned<'a> {
    ctx: RequestCtx,
    recorder: &'a Recorder,
    drain: &'a DrainDeadline,
    armed: bool,
}

impl<'a> Abandoned<'a> {
    pub fn watch(ctx: RequestCtx, recorder: &'a Recorder, drain: &'a DrainDeadline) -> Self {
        Abandoned {
            ctx,
            recorder,
            drain,
            armed: true,
        }
    }

    /// The request, while its stages run.
    pub fn ctx(&mut self) -> &mut RequestCtx {
        &mut self.ctx
    }

    /// The request is answered here after all.
    pub fn settle(&mut self) -> &mut RequestCtx {
        self.armed = false;
        &mut self.ctx
    }

    /// A graceful stop's drain time ran out before the answer was ready: 503 `shutdown`
    /// now, before the server drops the connection.
    pub fn stopped(&mut self) -> HttpResponse {
        self.armed = false;
        self.record(503, "shutdown");
        self.ctx.finish(render(Error::shutting_down()))
    }

    fn record(&self, status: u16, error_type: &str) {
        if let Some(party) = &self.ctx.party {
            record_failure(
                &self.ctx,
                party,
                self.recorder,
                status,
                error_type.to_string(),
            );
        }
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

/// One proxied request's accounting: the analytics line (docs/behaviour.md, "Usage,
/// analytics and telemetry") and the usage event.
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
    /// What the policies did.
    pub policies: &'a [PolicyEvent],
    /// The client's body before a template replaced it (`log_original_request`).
    pub original_request: Option<&'a [u8]>,
    /// The transformer policies' instruction calls.
    pub policy_usage: &'a [PolicyUsage],
    /// The limit that refused the request, if one did.
    pub limit_refused: Option<&'a str>,
}

impl<'a> Record<'a> {
    /// What every record of this request shares, for a request that got as far as `ctx`
    /// says; the caller sets how it ended.
    fn of(
        ctx: &'a RequestCtx,
        party: &'a Party,
        request_model: &'a str,
        status: u16,
    ) -> Record<'a> {
        let duration = ctx.started.elapsed();
        let upstream = ctx.upstream_timing();
        Record {
            usage_id: uuid::Uuid::now_v7(),
            request_id: &ctx.request_id,
            route: &party.route,
            tenant_id: party.caller.tenant,
            tenant: ctx.tenant_name(&party.caller),
            key_id: party.caller.key_id,
            status,
            request_model,
            response_model: None,
            usage: None,
            usage_estimated: false,
            started_at: ctx.started_at,
            duration,
            upstream,
            overhead: duration.saturating_sub(upstream.map(|u| u.duration).unwrap_or_default()),
            time_to_first_token: None,
            stream_end: None,
            finish_reason: None,
            error_type: None,
            server_address: ctx.server_address.as_deref(),
            trace: ctx.trace,
            upstream_body: None,
            logged_response: None,
            policies: &ctx.policy_actions,
            original_request: ctx.original_request.as_deref(),
            policy_usage: &ctx.policy_usage,
            limit_refused: ctx.limit_refusal.as_deref(),
        }
    }
}

/// USD from the route's per-1M-token prices.
fn cost_of(route: &RouteEntry, (prompt, completion): (u64, u64)) -> f64 {
    match route.prices() {
        Some((i, o)) => (prompt as f64 * i + completion as f64 * o) / 1_000_000.0,
        None => 0.0,
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
            policies: record.policies.to_vec(),
            policy_usage: None,
            rejected: record.limit_refused.is_some(),
        });
        for call in record.policy_usage {
            sink.record(policy_usage_event(record, call));
        }
    }
    // A request the provider never saw has a line only when a policy acted on it (a
    // refusal's real reason is logged there, not told to the client) or a limit refused it.
    let unseen = record.upstream.is_none() && record.policies.is_empty();
    if !route.logging.log_statistics || (unseen && record.limit_refused.is_none()) {
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
    let plugins = record
        .policy_usage
        .iter()
        .map(|call| (call.kind, plugin_entry(call)))
        .collect();
    // For the OTLP sink only: the record's time and the request span's ids.
    let context = || crate::telemetry::otlp_logs::EntryContext {
        time: record
            .started_at
            .checked_add(record.duration)
            .unwrap_or(record.started_at),
        trace_id: record.trace.trace_id,
        span_id: record.trace.request_span_id,
        sampled: record.trace.sampled,
    };
    let line = analytics::Line {
        ai: analytics::Ai {
            plugins,
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
            payload: record
                .original_request
                .map(|body| analytics::OriginalPayload {
                    original_request: String::from_utf8_lossy(body),
                }),
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
            policies: record.policies,
            limit_refused: record.limit_refused,
        },
    };
    recorder.analytics.write_for(&line, context);
}
/// A transformer policy's instruction call as its own usage event: the request's tenant,
/// key and route, the instruction LLM's provider and model, marked as policy usage
/// (docs/behaviour.md, "Policies").
fn policy_usage_event(record: &Record<'_>, call: &PolicyUsage) -> UsageEvent {
    let route = record.route;
    UsageEvent {
        id: uuid::Uuid::now_v7(),
        started_at: record.started_at,
        duration: call.latency,
        tenant_id: record.tenant_id,
        tenant: record.tenant.unwrap_or_default().to_string(),
        key_id: record.key_id,
        route_id: route.record.id,
        route: route.record.name.clone(),
        provider: call.provider,
        operation: semconv::operation_name(crate::vocab::RouteType::Chat.as_str()),
        request_model: redact::cap_model_name(&call.request_model).to_string(),
        response_model: call
            .response_model
            .as_deref()
            .map(|m| redact::cap_model_name(m).to_string()),
        status: 200,
        error_type: None,
        prompt_tokens: Some(call.prompt_tokens),
        completion_tokens: Some(call.completion_tokens),
        cost: call.cost,
        upstream: None,
        time_to_first_token: None,
        overhead: std::time::Duration::ZERO,
        stream: false,
        finish_reason: None,
        server_address: None,
        // Its own span under the request's, not a second span with the request's id.
        trace: record.trace.child(),
        policies: Vec::new(),
        policy_usage: Some(call.kind),
        rejected: false,
    }
}

/// Kong's per-plugin analytics entry (`ai["ai-request-transformer"]`), shaped like
/// `ai.proxy`.
fn plugin_entry(call: &PolicyUsage) -> analytics::Proxy<'_> {
    let latency = call.latency.as_millis();
    let (prompt, completion) = (call.prompt_tokens, call.completion_tokens);
    analytics::Proxy {
        meta: analytics::Meta {
            plugin_id: call.plugin_id,
            provider_name: call.provider,
            request_model: &call.request_model,
            response_model: call
                .response_model
                .as_deref()
                .unwrap_or(&call.request_model),
            llm_latency: latency,
        },
        usage: analytics::Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            time_per_token: if completion > 0 {
                latency as f64 / completion as f64
            } else {
                0.0
            },
            cost: call.cost,
        },
        payload: None,
    }
}

/// `0.307`: milliseconds to the microsecond, from integers into a stack buffer (a float
/// formatted to three decimals took an exact-decimal conversion on every answer).
fn millis_with_three_decimals(d: Duration) -> actix_web::http::header::HeaderValue {
    use std::io::Write;
    let micros = (d.as_nanos() + 500) / 1000;
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let len = match write!(cursor, "{}.{:03}", micros / 1000, micros % 1000) {
        Ok(()) => usize::try_from(cursor.position()).unwrap_or(0),
        Err(_) => 0,
    };
    actix_web::http::header::HeaderValue::from_bytes(&buf[..len])
        .unwrap_or(actix_web::http::header::HeaderValue::from_static("0.000"))
}

/// Sets the response headers of docs/behaviour.md, "Responses" (`x-tollgate-*`).
fn set_gateway_headers(
    response: &mut HttpResponse,
    route: &RouteEntry,
    request_model: &str,
    upstream_latency: Duration,
    overhead: Duration,
) {
    use actix_web::http::header::{HeaderName, HeaderValue};
    // Built at compile time: `from_static` at run time validates the name on every call.
    const LLM_MODEL: HeaderName = HeaderName::from_static("x-tollgate-llm-model");
    const OVERHEAD_MS: HeaderName = HeaderName::from_static("x-tollgate-overhead-ms");
    const UPSTREAM_LATENCY_MS: HeaderName =
        HeaderName::from_static("x-tollgate-upstream-latency-ms");
    // Appended, not inserted: the proxy builds every response itself and no other stage
    // sets these names, so there is no earlier value to replace (and none handed back).
    let headers = response.headers_mut();
    if route.record.model_name_header {
        let model = format!(
            "{}/{}",
            route.service.provider.name(),
            redact::cap_model_name(request_model)
        );
        if let Ok(v) = HeaderValue::try_from(model) {
            headers.append(LLM_MODEL, v);
        }
    }
    // Built straight into header values (no parse of a formatted string).
    headers.append(OVERHEAD_MS, millis_with_three_decimals(overhead));
    let latency_ms = u64::try_from(upstream_latency.as_millis()).unwrap_or(u64::MAX);
    headers.append(UPSTREAM_LATENCY_MS, HeaderValue::from(latency_ms));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::millis_with_three_decimals;

    /// The header reads as `{:.3}` of the milliseconds did, rounded to the microsecond.
    #[test]
    fn overhead_header_has_three_decimals() {
        for (nanos, text) in [
            (0, "0.000"),
            (307_291, "0.307"),
            (307_500, "0.308"),
            (1_000_000, "1.000"),
            (12_345_678_901, "12345.679"),
        ] {
            let value = millis_with_three_decimals(Duration::from_nanos(nanos));
            assert_eq!(value.to_str().unwrap(), text, "{nanos} ns");
            let float = format!("{:.3}", Duration::from_nanos(nanos).as_secs_f64() * 1000.0);
            if nanos != 307_500 {
                assert_eq!(float, text, "{nanos} ns as before");
            }
        }
    }
}
