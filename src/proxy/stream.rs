//! The streamed response (docs/behaviour.md, "Streaming rules"): the upstream body arrives through
//! the pool actor's bounded channel, is transcoded piece by piece, and goes out as OpenAI SSE
//! frames. The accounting is done when the body is dropped — after the last frame, or when the
//! client went away mid-stream — so every stream writes exactly one analytics line, with the tokens
//! consumed up to that point. A graceful stop's drain deadline ends a stream still running with an
//! in-band `shutdown` error (docs/architecture.md, "Streaming").

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::actors::metrics::UpstreamTiming;
use crate::actors::upstream::{StreamBody, TransportError};
use crate::crypto::redact::Redactor;
use crate::llm::{StreamEnd, Transcode};
use crate::shutdown::DrainDeadline;
use crate::snapshot::RouteEntry;
use crate::telemetry::trace::TraceContext;

use super::Recorder;
use super::accounting::{Record, finish_record};

/// Bytes an upstream may still send after its end marker before the gateway stops reading
/// (normally only the chunked-encoding terminator follows; reading it keeps the upstream
/// connection reusable).
const MAX_TRAILING_BYTES: usize = 64 * 1024;

/// What the accounting of one stream needs, owned (it outlives the handler).
pub struct StreamAccount {
    /// The usage event id, shared with the spooled `begin` record.
    pub usage_id: Uuid,
    pub recorder: Recorder,
    pub route: Arc<RouteEntry>,
    pub request_id: String,
    pub tenant_id: Uuid,
    pub tenant: Option<String>,
    pub key_id: Uuid,
    pub status: u16,
    pub request_model: String,
    /// When the proxy received the request (monotonic and wall clock).
    pub started: Instant,
    pub started_at: SystemTime,
    /// When the upstream request was sent (wall clock and monotonic).
    pub upstream_started_at: SystemTime,
    pub upstream_sent: Instant,
    pub server_address: Option<String>,
    pub trace: TraceContext,
    /// What the policies did.
    pub policies: Vec<crate::telemetry::event::PolicyEvent>,
    pub original_request: Option<bytes::Bytes>,
    pub policy_usage: Vec<crate::telemetry::event::PolicyUsage>,
    pub overhead: Duration,
    pub upstream_body: Option<Vec<u8>>,
    /// The request's limits reservation, settled with what the stream delivered.
    pub limits: Option<crate::limits::Reservation>,
}

pub struct SseBody {
    upstream: Option<StreamBody>,
    transcode: Transcode,
    /// Set once the transcoded stream has ended (upstream marker, error, or close).
    ended: bool,
    trailing: usize,
    upstream_finished: Option<Instant>,
    /// When the first frame went to the client (time to first token).
    first_sent: Option<Instant>,
    account: Option<StreamAccount>,
    /// Why the stream was cut, when it was cut for a reason of its own record.
    cut: Option<Cut>,
    drain: DrainDeadline,
    drain_passed: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

/// Ends with their own record (`error_type`, and `stream_end` for a shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The service's total deadline ran out.
    Deadline,
    /// A graceful stop's drain time ran out.
    Shutdown,
}

impl SseBody {
    pub fn new(
        upstream: StreamBody,
        transcode: Transcode,
        account: StreamAccount,
        drain: DrainDeadline,
    ) -> SseBody {
        SseBody {
            cut: None,
            drain_passed: Box::pin(drain.wait()),
            drain,
            upstream: Some(upstream),
            transcode,
            ended: false,
            trailing: 0,
            upstream_finished: None,
            first_sent: None,
            account: Some(account),
        }
    }

    fn mark_ended(&mut self) {
        if !self.ended && self.transcode.is_ended() {
            self.ended = true;
            self.upstream_finished = Some(Instant::now());
        }
    }
}

fn failure_code(failure: &TransportError) -> &'static str {
    match failure {
        TransportError::Timeout(_) => "upstream_idle_timeout",
        TransportError::Deadline(_) => "upstream_total_timeout",
        TransportError::Cancelled => "upstream_cancelled",
        TransportError::TooLarge(_) => "upstream_response_too_large",
        TransportError::Unreachable(_) | TransportError::Broken(_) => "upstream_connection_lost",
        TransportError::Refused => "upstream_destination_not_allowed",
        TransportError::PoolExhausted(_) => "upstream_pool_exhausted",
        TransportError::MemoryExhausted => "gateway_memory_exhausted",
    }
}

impl Stream for SseBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let Some(upstream) = this.upstream.as_mut() else {
                return Poll::Ready(None);
            };
            if this.ended {
                // Drain what follows the end marker so the connection can be reused; give
                // up on an upstream that keeps talking.
                match upstream.poll_recv(cx) {
                    Poll::Ready(Some(Ok(bytes))) if this.trailing < MAX_TRAILING_BYTES => {
                        this.trailing += bytes.len();
                        continue;
                    }
                    Poll::Pending => return this.wait_or_stop(cx),
                    _ => {
                        this.upstream = None;
                        return Poll::Ready(None);
                    }
                }
            }
            let out = match upstream.poll_recv(cx) {
                Poll::Pending => return this.wait_or_stop(cx),
                Poll::Ready(Some(Ok(bytes))) => this.transcode.feed(&bytes),
                Poll::Ready(Some(Err(failure))) => {
                    if matches!(failure, TransportError::Deadline(_)) {
                        this.cut = Some(Cut::Deadline);
                    }
                    let message = failure.to_string();
                    this.transcode
                        .upstream_failed(&message, failure_code(&failure))
                }
                Poll::Ready(None) => {
                    let out = this.transcode.upstream_closed();
                    this.upstream = None;
                    out
                }
            };
            this.mark_ended();
            if !out.is_empty() {
                this.first_sent.get_or_insert_with(Instant::now);
                return Poll::Ready(Some(Ok(Bytes::from(out))));
            }
        }
    }
}

impl SseBody {
    /// Nothing from the upstream yet: wait for it, unless a graceful stop's drain time is
    /// over. Then the stream ends now — with an in-band `shutdown` error if it is still
    /// open — before the server drops the connection; dropping the receiver stops the
    /// upstream read. Checked only while waiting (not per piece: the deadline is shared by
    /// every worker), and a stream waits often, so it hears of the deadline at once.
    fn wait_or_stop(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, actix_web::Error>>> {
        if self.drain_passed.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.upstream = None;
        if self.ended {
            return Poll::Ready(None);
        }
        self.cut = Some(Cut::Shutdown);
        let out = self.transcode.gateway_failed(
            crate::error::SHUTDOWN_MESSAGE,
            "service_unavailable",
            "shutdown",
        );
        self.mark_ended();
        if out.is_empty() {
            return Poll::Ready(None);
        }
        self.first_sent.get_or_insert_with(Instant::now);
        Poll::Ready(Some(Ok(Bytes::from(out))))
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        let Some(mut account) = self.account.take() else {
            return;
        };
        let emitter = self.transcode.emitter();
        // A stream still open when the drain time ran out was cut by the stop (the
        // server drops it), not by its client.
        let cut = match (self.cut, emitter.end()) {
            (None, StreamEnd::Open) if self.drain.passed() => Some(Cut::Shutdown),
            (cut, _) => cut,
        };
        let (end, error_type) = match (cut, emitter.end()) {
            (Some(Cut::Shutdown), _) => ("shutdown", Some("shutdown")),
            (_, StreamEnd::Done) => ("done", None),
            (Some(Cut::Deadline), _) => ("failed", Some("upstream_total_timeout")),
            (None, StreamEnd::Failed) => ("failed", Some("stream_error")),
            (None, StreamEnd::Open) => ("client_disconnected", None),
        };
        let reported = emitter.reported_usage();
        let (prompt, completion) = emitter.tokens();
        let prompt_estimated = reported.prompt.is_none();
        let completion_estimated = !(emitter.usage_is_final() && reported.completion.is_some());
        if let Some(reservation) = account.limits.take() {
            // Also a stream cut short: what was delivered is what counts.
            super::limits::settle(reservation, &account.route, (prompt, completion));
        }
        let upstream_latency = self
            .upstream_finished
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(account.upstream_sent);
        let logged_response: Option<Value> = account.route.logging.log_payloads.then(|| {
            // Kong's composite of a streamed answer, for the payload log; credential values
            // the upstream echoed in it are masked (src/crypto/redact.rs).
            let mut logged = json!({
                "object": "chat.completion",
                "model": emitter.response_model().unwrap_or(&account.request_model),
                "choices": [{"index": 0, "finish_reason": emitter.finish_reason(),
                             "message": {"role": "assistant", "content": emitter.text()}}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt.saturating_add(completion)},
            });
            Redactor::for_credential(account.route.service.credential.as_deref())
                .redact_value(&mut logged);
            logged
        });
        let now = Instant::now();
        finish_record(
            &account.recorder,
            &Record {
                usage_id: account.usage_id,
                request_id: &account.request_id,
                route: &account.route,
                tenant_id: account.tenant_id,
                tenant: account.tenant.as_deref(),
                key_id: account.key_id,
                status: account.status,
                request_model: &account.request_model,
                response_model: emitter.response_model(),
                usage: Some((prompt, completion)),
                usage_estimated: prompt_estimated || completion_estimated,
                started_at: account.started_at,
                duration: now.saturating_duration_since(account.started),
                upstream: Some(UpstreamTiming {
                    started_at: account.upstream_started_at,
                    duration: upstream_latency,
                }),
                overhead: account.overhead,
                time_to_first_token: self
                    .first_sent
                    .map(|t| t.saturating_duration_since(account.started)),
                stream_end: Some(end),
                finish_reason: emitter.finish_reason(),
                error_type: error_type.map(str::to_string),
                server_address: account.server_address.as_deref(),
                trace: account.trace,
                policies: &account.policies,
                original_request: account.original_request.as_deref(),
                policy_usage: &account.policy_usage,
                limit_refused: None,
                upstream_body: account.upstream_body.as_deref(),
                logged_response: logged_response.as_ref(),
            },
        );
    }
}
