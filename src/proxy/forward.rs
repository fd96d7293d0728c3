//! The forward stage: the upstream call, on this worker's pool actor, with the service's
//! timeouts and connection limits (docs/architecture.md, "Timeouts and cancellation").
//! Transport failures become the client's 502/503/504 with their text masked; redirects are
//! refused; an error answer to a streaming request is read whole, like any other.

use std::time::{Duration, Instant, SystemTime};

use actix_web::http::StatusCode;
use actix_web::web;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::actors::upstream::{
    Forward, ForwardStream, TransportError, UpstreamReply, UpstreamStream,
};
use crate::budget::ResponseBudget;
use crate::crypto::redact::LazyRedactor;
use crate::error::Error;

use super::Pools;
use super::context::{Party, RequestCtx};
use super::translate::Outbound;

/// Upstream bodies larger than this are refused (never buffered).
const MAX_UPSTREAM_BODY: usize = 32 * 1024 * 1024;

/// Error bodies are small; a larger one is cut (the message is what matters).
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// The upstream's answer, with what the respond stage needs besides.
pub struct Answer {
    pub reply: Reply,
    /// The body as sent (a stream's prompt is estimated from it when the provider reports
    /// no prompt tokens).
    pub body_sent: Bytes,
    pub logged_request: Option<Vec<u8>>,
    /// Masks the credential in upstream text on error paths; built on first use.
    pub redactor: LazyRedactor,
}

pub enum Reply {
    /// Read in full: any non-streamed answer, and a streamed one that is not a 2xx.
    Whole(UpstreamReply),
    /// A 2xx stream, and when its request was sent.
    Stream(UpstreamStream, Instant),
}

pub async fn call(
    ctx: &mut RequestCtx,
    party: &Party,
    pools: &Pools,
    budget: &ResponseBudget,
    outbound: Outbound,
    streaming: bool,
) -> Result<Answer, Error> {
    let service = &party.route.service;
    let pool = pools
        .get(service.provider.name())
        .ok_or_else(|| Error::internal("no upstream pool for this provider"))?;
    // Dropped with this future when the client leaves (actix drops the handler): the pool
    // actor runs the call on its own, so it is told to stop and close the connection.
    let cancel = CancellationToken::new();
    let _cancel_if_abandoned = cancel.clone().drop_guard();
    let upstream = outbound.request;
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
        budget: budget.clone(),
    };
    ctx.upstream_started = Some((SystemTime::now(), Instant::now()));
    let redactor = LazyRedactor::new(service.credential.clone());
    let body_sent = forward.body.clone();
    let reply = if streaming {
        let sent = Instant::now();
        let stream = pool
            .send(ForwardStream {
                idle_timeout: forward.read_timeout,
                request: forward,
            })
            .await
            .map_err(|_| Error::internal("upstream pool unavailable"))?
            .map_err(|f| masked_failure(&redactor, f))?;
        // Dropping the stream on a redirect closes the connection unread.
        refuse_redirect(stream.status, &service.record.name)?;
        if (200..300).contains(&stream.status) {
            Reply::Stream(stream, sent)
        } else {
            Reply::Whole(collect_error(stream, &redactor).await?)
        }
    } else {
        let reply = pool
            .send(forward)
            .await
            .map_err(|_| Error::internal("upstream pool unavailable"))?
            .map_err(|f| masked_failure(&redactor, f))?;
        refuse_redirect(reply.status, &service.record.name)?;
        Reply::Whole(reply)
    };
    Ok(Answer {
        reply,
        body_sent,
        logged_request: outbound.logged_request,
        redactor,
    })
}

/// An upstream failure as the client's error; its text (which may name the upstream URL,
/// query credential included) is masked.
pub fn masked_failure(redactor: &LazyRedactor, failure: TransportError) -> Error {
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

/// Reads a streamed non-2xx answer whole, as if it had not been streamed.
async fn collect_error(
    mut stream: UpstreamStream,
    redactor: &LazyRedactor,
) -> Result<UpstreamReply, Error> {
    let mut body = web::BytesMut::new();
    while let Some(piece) = stream.body.recv().await {
        let piece = piece.map_err(|f| masked_failure(redactor, f))?;
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
