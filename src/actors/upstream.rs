//! The upstream pool actor. `awc::Client` is `!Send` (an `Rc`-based pool), so each proxy
//! worker starts its own actors in its app factory: the upstream call stays on the thread
//! that accepted the request — no cross-thread hop, no channel per response.
//!
//! One `UpstreamPool` per provider per worker holds that provider's clients, one per
//! connect timeout (awc sets the connect timeout on the connector). Concurrency is bounded
//! per service (`Forward::max_connections`) by the pool's own semaphores, so the wait for
//! a free connection has its own bound (`Forward::pool_wait`, a 503 when it runs out) and
//! never counts against the read timeout, which starts once a connection is ours.
//! The read timeout bounds a whole answer (head and body) and, for a stream, each silence;
//! a service's optional total deadline bounds the whole exchange, a stream included. The
//! caller's `CancellationToken` ends a call whose client has gone (docs/architecture.md,
//! "Timeouts and cancellation").
//! Clients never follow redirects, and their TCP step (`GuardedConnector`) checks every
//! address it dials against `crate::vocab::netguard`. Every byte of an answer held in memory —
//! a whole answer as it is read, a streamed piece while it waits in the channel — is
//! reserved from the process-wide `ResponseBudget` first (`crate::budget`).

use foldhash::{HashMap, HashMapExt};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use actix_tls::connect::{
    ConnectError as TcpConnectError, ConnectInfo, Connection as TcpConnection,
};
use actix_web::dev::Service;
use actix_web::http::Uri;
use actix_web::rt::net::TcpStream;
use futures::StreamExt;
use futures::future::LocalBoxFuture;

use crate::budget::{Reservation, ResponseBudget};
use crate::vocab::netguard;
use awc::error::{ConnectError, PayloadError, SendRequestError};
use bytes::Bytes;

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// One upstream call, fully described (the translator built URL, headers and body).
pub struct Forward {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Larger upstream bodies are an error, never buffered.
    pub max_response_bytes: usize,
    /// The service the call is for: connection limits are per service.
    pub service: uuid::Uuid,
    /// Concurrent upstream connections of this service on this worker.
    pub max_connections: usize,
    /// Longest wait for one of them.
    pub pool_wait: Duration,
    /// The whole exchange (connect, head, body; a stream to its end), when the service
    /// sets one. Like the read timeout, it starts once a connection slot is taken.
    pub total_timeout: Option<Duration>,
    /// Cancelled when the caller is gone (the client left): the call stops and its
    /// connection closes. actix runs the handler's future to its end otherwise.
    pub cancel: CancellationToken,
    /// The process-wide budget the answer's bytes are reserved from.
    pub budget: ResponseBudget,
}

/// The upstream's answer, read in full (non-streaming).
#[derive(Debug)]
pub struct UpstreamReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// From sending the request to the last body byte.
    pub latency: Duration,
}

/// Why an upstream call failed. The rendering goes to the client, so it names a kind of
/// failure and never the upstream's host, address or the gateway's configuration; the
/// detail (host, address, the underlying error) goes to the operator's log where the
/// failure is seen (docs/architecture.md, "Upstream pools and the address guard").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("upstream unreachable: {0}")]
    Unreachable(&'static str),
    /// Every address of the upstream is in a reserved range and private upstreams are not
    /// allowed (`crate::vocab::netguard`).
    #[error("the upstream destination is not allowed (a private or loopback address)")]
    Refused,
    #[error("upstream did not answer within {0} ms")]
    Timeout(u128),
    /// The service's total deadline (`timeouts.total_ms`) ran out.
    #[error("upstream did not finish within the total deadline of {0} ms")]
    Deadline(u128),
    #[error("upstream connection failed mid-response: {0}")]
    Broken(&'static str),
    #[error("upstream response is larger than {0} bytes")]
    TooLarge(usize),
    /// Every connection the service may open was busy for the whole pool wait: the gateway
    /// is saturated, the upstream has not failed.
    #[error("the gateway's connections to this upstream were all busy for {0} ms; retry later")]
    PoolExhausted(u128),
    /// The caller cancelled the call (`Forward::cancel`); nobody is waiting for this.
    #[error("the request was cancelled")]
    Cancelled,
    /// The process-wide budget of buffered upstream bytes is used up (`crate::budget`):
    /// the gateway is saturated, the upstream has not failed.
    #[error(
        "the gateway is holding too many upstream answers in memory to take this one; retry later"
    )]
    MemoryExhausted,
}

/// The bound on an exchange: the read timeout, or the total deadline when that is shorter,
/// with the failure each one is reported as.
fn bound(read: Duration, total: Option<Duration>) -> (Duration, TransportError) {
    match total {
        Some(total) if total < read => (total, TransportError::Deadline(total.as_millis())),
        _ => (read, TransportError::Timeout(read.as_millis())),
    }
}

impl Message for Forward {
    type Result = Result<UpstreamReply, TransportError>;
}

/// A streamed upstream call: the answer's head now, its body through a bounded channel.
pub struct ForwardStream {
    pub request: Forward,
    /// Longest silence allowed between two pieces of the body (and before the head).
    pub idle_timeout: Duration,
}

/// Pieces of a streamed body in flight between the reader task and the proxy: enough to
/// absorb bursts, small enough that a slow client slows the upstream read (backpressure).
pub const STREAM_CHANNEL_DEPTH: usize = 16;

/// The head of a streamed answer; the body arrives on `body` as the upstream sends it.
/// Dropping `body` cancels the upstream request: the reader task notices the closed
/// channel, drops the response, and with it the upstream connection.
#[derive(Debug)]
pub struct UpstreamStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: StreamBody,
    /// From sending the request to the response head.
    pub latency: Duration,
}

/// A piece in the channel, with its bytes' reservation.
type Piece = Result<(Bytes, Reservation), TransportError>;

/// The receiving end of a streamed body. A piece's bytes stay reserved in the budget while
/// they wait in the channel and are given back when the piece is taken.
#[derive(Debug)]
pub struct StreamBody {
    rx: tokio::sync::mpsc::Receiver<Piece>,
}

impl StreamBody {
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, TransportError>>> {
        self.rx
            .poll_recv(cx)
            .map(|piece| piece.map(|p| p.map(|(bytes, _reserved)| bytes)))
    }

    pub async fn recv(&mut self) -> Option<Result<Bytes, TransportError>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Message for ForwardStream {
    type Result = Result<UpstreamStream, TransportError>;
}

pub struct UpstreamPool {
    provider: &'static str,
    allow_private: bool,
    clients: HashMap<Duration, awc::Client>,
    /// Per service: its configured limit and the permits bounding it.
    limits: HashMap<uuid::Uuid, (usize, Arc<Semaphore>)>,
}

/// The TCP step of every upstream client: finds the addresses to dial — an IP literal as
/// written, a host name through the system resolver — and, unless private upstreams are
/// allowed, refuses to dial when any of them is in a reserved range (`crate::vocab::netguard`).
/// It sits where the socket is opened, so literals and names are checked alike, at every
/// connect (the admin API checks literals at write time; DNS and the setting can change).
#[derive(Clone)]
struct GuardedConnector {
    allow_private: bool,
}

/// The connector's refusal; `send_error` recognises it and answers `Refused`.
#[derive(Debug, thiserror::Error)]
#[error("the upstream destination is not allowed")]
struct DestinationRefused;

impl Service<ConnectInfo<Uri>> for GuardedConnector {
    type Response = TcpConnection<Uri, TcpStream>;
    type Error = TcpConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let req = if req.addrs().len() > 0 {
                req
            } else {
                // `Uri` keeps the brackets of an IPv6 literal; the resolver wants it bare
                // (and returns a literal as it is, without a lookup).
                let host = req.hostname();
                let bare = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host)
                    .to_string();
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare.as_str(), req.port()))
                    .await
                    .map_err(|e| TcpConnectError::Resolver(Box::new(e)))?
                    .collect();
                if addrs.is_empty() {
                    return Err(TcpConnectError::NoRecords);
                }
                req.set_addrs(addrs)
            };
            if !allow_private {
                // Any reserved address refuses the whole host: a name that also resolves
                // to a private address must not be dialled on a retry of the next one.
                let refused = req
                    .addrs()
                    .find_map(|a| netguard::blocked_range(a.ip()).map(|range| (a, range)));
                if let Some((addr, range)) = refused {
                    tracing::warn!(
                        host = req.hostname(),
                        address = %addr.ip(),
                        range,
                        "upstream destination refused: a reserved address and \
                         TOLLGATE_ALLOW_PRIVATE_UPSTREAMS is off"
                    );
                    return Err(TcpConnectError::Resolver(Box::new(DestinationRefused)));
                }
            }
            actix_tls::connect::tcp::TcpConnectorService::default()
                .call(req)
                .await
        })
    }
}

impl UpstreamPool {
    pub fn new(provider: &'static str, allow_private: bool) -> Self {
        UpstreamPool {
            provider,
            allow_private,
            clients: HashMap::new(),
            limits: HashMap::new(),
        }
    }

    /// The permits of `service`; a changed limit starts a new semaphore (calls holding the
    /// old one finish under it).
    fn limit(&mut self, service: uuid::Uuid, max: usize) -> Arc<Semaphore> {
        let entry = self
            .limits
            .entry(service)
            .or_insert_with(|| (max, Arc::new(Semaphore::new(max))));
        if entry.0 != max {
            *entry = (max, Arc::new(Semaphore::new(max)));
        }
        entry.1.clone()
    }

    fn client(&mut self, connect_timeout: Duration) -> awc::Client {
        let allow_private = self.allow_private;
        self.clients
            .entry(connect_timeout)
            .or_insert_with(|| {
                let connector = awc::Connector::new()
                    .connector(GuardedConnector { allow_private })
                    .timeout(connect_timeout)
                    // No limit in awc: its wait would sit inside `send`, under the read
                    // timeout. The per-service semaphores bound concurrency instead.
                    .limit(0);
                awc::Client::builder()
                    .connector(connector)
                    // A redirect is answered to the client as an upstream error
                    // (docs/architecture.md): following it would send the credential to
                    // another origin.
                    .disable_redirects()
                    // Per-request read timeouts replace the client-wide default.
                    .disable_timeout()
                    .finish()
            })
            .clone()
    }
}

/// The host of an upstream URL, for the operator's log (never the whole URL: a query
/// credential may be in it).
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// A failed send as the client may see it; the detail is logged here, with the host.
fn send_error(e: SendRequestError, timeout_ms: u128, provider: &str, url: &str) -> TransportError {
    let failure = match &e {
        SendRequestError::Timeout => return TransportError::Timeout(timeout_ms),
        SendRequestError::Connect(ConnectError::Resolver(inner))
            if inner.downcast_ref::<DestinationRefused>().is_some() =>
        {
            // The connector has logged the host, address and range.
            return TransportError::Refused;
        }
        SendRequestError::Connect(c) => TransportError::Unreachable(match c {
            ConnectError::Resolver(_) | ConnectError::NoRecords => "the host name did not resolve",
            ConnectError::Timeout => "connecting timed out",
            ConnectError::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused",
                std::io::ErrorKind::TimedOut => "connecting timed out",
                _ => "the connection could not be established",
            },
            _ => "the connection could not be established",
        }),
        SendRequestError::Send(_) => TransportError::Broken("the request could not be sent"),
        SendRequestError::Response(_) => {
            TransportError::Broken("the response head is not valid HTTP")
        }
        _ => TransportError::Broken("the exchange failed"),
    };
    tracing::warn!(provider, host = %host_of(url), error = %e, "upstream call failed: {failure}");
    failure
}

/// A failed body read as the client may see it; the detail is logged here, with the host.
fn payload_error(
    e: PayloadError,
    timeout_ms: u128,
    limit: usize,
    provider: &str,
    url: &str,
) -> TransportError {
    let failure = match &e {
        PayloadError::Overflow => return TransportError::TooLarge(limit),
        PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            return TransportError::Timeout(timeout_ms);
        }
        PayloadError::Incomplete(_) => TransportError::Broken("the body ended early"),
        PayloadError::EncodingCorrupted => TransportError::Broken("the body encoding is corrupt"),
        _ => TransportError::Broken("the body could not be read"),
    };
    tracing::warn!(provider, host = %host_of(url), error = %e, "upstream body failed: {failure}");
    failure
}

/// Reads a whole answer, at most `limit` bytes, reserving what it holds from `budget`:
/// a declared length is reserved and allocated at once (no growth by doubling); otherwise
/// the buffer's capacity is reserved before it grows — doubled, or just enough when the
/// budget cannot cover the doubling. The bytes returned hold the reservation until their
/// last clone is dropped.
async fn read_whole(
    response: &mut awc::ClientResponse<actix_web::dev::Decompress<actix_web::dev::Payload>>,
    limit: usize,
    budget: &ResponseBudget,
    timeout_ms: u128,
    provider: &str,
    url: &str,
) -> Result<Bytes, TransportError> {
    let declared = response
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(TransportError::TooLarge(limit));
    }
    let exhausted = |_| TransportError::MemoryExhausted;
    let mut reservation = budget.reservation();
    // A `Vec`, not `BytesMut`: `reserve_exact` allocates what was reserved, no more.
    let mut body: Vec<u8> = Vec::new();
    if let Some(n) = declared {
        reservation.grow_to(n).map_err(exhausted)?;
        body.reserve_exact(n);
    }
    while let Some(chunk) = response.next().await {
        let chunk = chunk.map_err(|e| payload_error(e, timeout_ms, limit, provider, url))?;
        let needed = body.len() + chunk.len();
        if needed > limit {
            return Err(TransportError::TooLarge(limit));
        }
        if needed > body.capacity() {
            let doubled = needed.max(body.capacity().saturating_mul(2)).min(limit);
            let target = if reservation.try_grow_to(doubled) {
                doubled
            } else {
                reservation.grow_to(needed).map_err(exhausted)?;
                needed
            };
            body.reserve_exact(target - body.len());
        }
        body.extend_from_slice(&chunk);
        reservation.grow_to(body.capacity()).map_err(exhausted)?;
    }
    if body.is_empty() {
        return Ok(Bytes::new());
    }
    Ok(reservation.attach(Bytes::from(body)))
}

/// Waits for a connection slot of the service, at most `wait`.
async fn acquire(
    permits: Arc<Semaphore>,
    wait: Duration,
) -> Result<OwnedSemaphorePermit, TransportError> {
    match tokio::time::timeout(wait, permits.acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        // The semaphore is never closed; treat it like a wait that ran out.
        Ok(Err(_)) | Err(_) => Err(TransportError::PoolExhausted(wait.as_millis())),
    }
}

/// True when the connection closed before any byte of the answer arrived — what a pooled
/// keep-alive connection the upstream closed meanwhile gives. awc checks an idle connection
/// for a close when it takes it from the pool; this covers a close that races the send.
fn closed_before_answer(e: &SendRequestError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let dropped = |io: &std::io::Error| {
        matches!(
            io.kind(),
            BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
        )
    };
    match e {
        SendRequestError::Connect(ConnectError::Disconnected) => true,
        SendRequestError::Send(io) => dropped(io),
        SendRequestError::Response(actix_web::error::ParseError::Io(io)) => dropped(io),
        _ => false,
    }
}

/// Sends the request; a connection that closed before any byte of the answer arrived is
/// retried once, on a connection awc opens or checks anew (the body is `Bytes`: cheap to
/// resend). No timeout here: the caller bounds both attempts together.
async fn send_once_more_if_closed(
    client: &awc::Client,
    msg: &Forward,
) -> Result<
    awc::ClientResponse<actix_web::dev::Decompress<actix_web::dev::Payload>>,
    SendRequestError,
> {
    let build = || {
        let mut request = client.post(&msg.url);
        for (name, value) in &msg.headers {
            request = request.insert_header((name.as_str(), value.as_str()));
        }
        request
    };
    match build().send_body(msg.body.clone()).await {
        Err(e) if closed_before_answer(&e) => {
            tracing::debug!(host = %host_of(&msg.url), error = %e, "upstream connection closed before the answer; sending once more");
            build().send_body(msg.body.clone()).await
        }
        other => other,
    }
}

fn header_pairs(headers: &actix_web::http::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

impl Actor for UpstreamPool {
    type Context = Context<Self>;
}

impl Handler<Forward> for UpstreamPool {
    type Result = ResponseFuture<Result<UpstreamReply, TransportError>>;

    fn handle(&mut self, msg: Forward, _: &mut Context<Self>) -> Self::Result {
        let client = self.client(msg.connect_timeout);
        let permits = self.limit(msg.service, msg.max_connections);
        let provider = self.provider;
        Box::pin(async move {
            let cancel = msg.cancel.clone();
            tokio::select! {
                // Dropping the exchange drops the response and closes its connection.
                () = cancel.cancelled() => Err(TransportError::Cancelled),
                reply = forward_whole(&client, &msg, permits, provider) => reply,
            }
        })
    }
}

/// A non-streamed call: the pool wait under its own bound, then the whole answer — head
/// and body — under the read timeout (or the total deadline, when shorter).
async fn forward_whole(
    client: &awc::Client,
    msg: &Forward,
    permits: Arc<Semaphore>,
    provider: &'static str,
) -> Result<UpstreamReply, TransportError> {
    // Held until the answer is read: the connection is busy until then.
    let _permit = acquire(permits, msg.pool_wait).await?;
    let started = Instant::now();
    let (limit, timed_out) = bound(msg.read_timeout, msg.total_timeout);
    let timeout_ms = limit.as_millis();
    let exchange = async {
        // awc's own timeout would stop at the head (its body reads are not bounded by
        // it): the one bound around the whole exchange covers both attempts and the body.
        let mut response = send_once_more_if_closed(client, msg)
            .await
            .map_err(|e| send_error(e, timeout_ms, provider, &msg.url))?;
        let status = response.status().as_u16();
        let headers = header_pairs(response.headers());
        let body = read_whole(
            &mut response,
            msg.max_response_bytes,
            &msg.budget,
            timeout_ms,
            provider,
            &msg.url,
        )
        .await?;
        tracing::debug!(provider, status, bytes = body.len(), "upstream answered");
        Ok(UpstreamReply {
            status,
            headers,
            body,
            latency: started.elapsed(),
        })
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or(Err(timed_out))
}

impl Handler<ForwardStream> for UpstreamPool {
    type Result = ResponseFuture<Result<UpstreamStream, TransportError>>;

    fn handle(&mut self, msg: ForwardStream, _: &mut Context<Self>) -> Self::Result {
        let client = self.client(msg.request.connect_timeout);
        let permits = self.limit(msg.request.service, msg.request.max_connections);
        let provider = self.provider;
        Box::pin(async move {
            // Until the head arrives; the reader task then stops when the body is dropped.
            let cancel = msg.request.cancel.clone();
            tokio::select! {
                () = cancel.cancelled() => Err(TransportError::Cancelled),
                stream = open_stream(client, msg, permits, provider) => stream,
            }
        })
    }
}

/// A streamed call: the pool wait under its own bound, the head under the idle timeout,
/// then a reader task that forwards the body piece by piece, each silence bounded by the
/// idle timeout and the whole stream by the total deadline.
async fn open_stream(
    client: awc::Client,
    msg: ForwardStream,
    permits: Arc<Semaphore>,
    provider: &'static str,
) -> Result<UpstreamStream, TransportError> {
    let ForwardStream {
        request: msg,
        idle_timeout,
    } = msg;
    // Held by the reader task until the stream ends.
    let permit = acquire(permits, msg.pool_wait).await?;
    let started = Instant::now();
    let deadline = msg
        .total_timeout
        .map(|t| (tokio::time::Instant::from_std(started + t), t.as_millis()));
    // No request-wide timeout: awc would apply it to the whole body, and a stream
    // may legitimately last longer than the read timeout. Silence is bounded instead.
    let timeout_ms = idle_timeout.as_millis();
    let (head_limit, head_timed_out) = bound(idle_timeout, msg.total_timeout);
    let mut response = tokio::time::timeout(head_limit, send_once_more_if_closed(&client, &msg))
        .await
        .map_err(|_| head_timed_out)?
        .map_err(|e| send_error(e, timeout_ms, provider, &msg.url))?;
    let status = response.status().as_u16();
    let headers = header_pairs(response.headers());
    let latency = started.elapsed();
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHANNEL_DEPTH);
    let limit = msg.max_response_bytes;
    let budget = msg.budget;
    let url = msg.url;
    // The reader stays on this worker's thread (the response is `!Send`).
    actix::spawn(async move {
        let _permit = permit;
        let total = async move {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(total);
        let mut read = 0usize;
        loop {
            let next = tokio::select! {
                // In this order: a steady flow of pieces must not hide the deadline.
                biased;
                // The proxy dropped the stream (client gone): stop reading; dropping
                // the response closes the upstream connection.
                () = tx.closed() => break,
                () = &mut total => {
                    let ms = deadline.map_or(0, |(_, ms)| ms);
                    let _ = tx.send(Err(TransportError::Deadline(ms))).await;
                    break;
                }
                next = tokio::time::timeout(idle_timeout, response.next()) => next,
            };
            let item = match next {
                Err(_) => Err(TransportError::Timeout(timeout_ms)),
                Ok(None) => break,
                Ok(Some(Ok(bytes))) => {
                    read += bytes.len();
                    if read > limit {
                        Err(TransportError::TooLarge(limit))
                    } else {
                        budget
                            .reserve(bytes.len())
                            .map(|reserved| (bytes, reserved))
                            .map_err(|_| TransportError::MemoryExhausted)
                    }
                }
                Ok(Some(Err(e))) => Err(payload_error(e, timeout_ms, limit, provider, &url)),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        tracing::debug!(provider, status, bytes = read, "upstream stream ended");
    });
    Ok(UpstreamStream {
        status,
        headers,
        body: StreamBody { rx },
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the client hears names a kind of failure, never what the error carried.
    #[test]
    fn failures_render_generically_whatever_the_error_carried() {
        let url = "http://billing.internal.corp:8443/v1/chat?key=sk-in-the-query";
        let io = |kind, text: &str| std::io::Error::new(kind, text.to_string());
        let cases = [
            (
                SendRequestError::Connect(ConnectError::Resolver(Box::new(io(
                    std::io::ErrorKind::Other,
                    "billing.internal.corp: Name or service not known",
                )))),
                TransportError::Unreachable("the host name did not resolve"),
            ),
            (
                SendRequestError::Connect(ConnectError::Resolver(Box::new(DestinationRefused))),
                TransportError::Refused,
            ),
            (
                SendRequestError::Connect(ConnectError::Io(io(
                    std::io::ErrorKind::ConnectionRefused,
                    "connect to 10.0.0.7:8443 refused",
                ))),
                TransportError::Unreachable("connection refused"),
            ),
            (
                SendRequestError::Connect(ConnectError::Io(io(
                    std::io::ErrorKind::InvalidData,
                    "invalid peer certificate: not valid for name \"billing.internal.corp\"",
                ))),
                TransportError::Unreachable("the connection could not be established"),
            ),
            (
                SendRequestError::Send(io(std::io::ErrorKind::BrokenPipe, "to 10.0.0.7")),
                TransportError::Broken("the request could not be sent"),
            ),
            (SendRequestError::Timeout, TransportError::Timeout(1500)),
        ];
        for (error, expected) in cases {
            let detail = error.to_string();
            let failure = send_error(error, 1500, "openai", url);
            assert_eq!(failure, expected, "{detail}");
            let shown = failure.to_string();
            for leak in [
                "internal",
                "10.0.0.7",
                "8443",
                "TOLLGATE_",
                "sk-in-the-query",
            ] {
                assert!(!shown.contains(leak), "{shown} (from {detail})");
            }
        }
        assert_eq!(
            TransportError::Refused.to_string(),
            "the upstream destination is not allowed (a private or loopback address)"
        );
    }

    #[test]
    fn the_log_gets_the_host_but_never_the_query() {
        assert_eq!(
            host_of("https://api.example.com:8443/v1?key=sk-secret"),
            "api.example.com"
        );
        assert_eq!(host_of("http://[::ffff:127.0.0.1]:80/x"), "[::ffff:7f00:1]");
        assert_eq!(host_of("not a url"), "");
    }

    /// Only a connection that closed before any byte of the answer is sent once more;
    /// timeouts, refused connects and malformed answers are not.
    #[test]
    fn only_a_connection_closed_before_the_answer_is_retried() {
        let io = |kind| std::io::Error::new(kind, "x");
        use std::io::ErrorKind::*;
        for e in [
            SendRequestError::Connect(ConnectError::Disconnected),
            SendRequestError::Send(io(BrokenPipe)),
            SendRequestError::Send(io(ConnectionReset)),
            SendRequestError::Response(actix_web::error::ParseError::Io(io(ConnectionReset))),
        ] {
            assert!(closed_before_answer(&e), "{e:?}");
        }
        for e in [
            SendRequestError::Timeout,
            SendRequestError::Connect(ConnectError::Io(io(ConnectionRefused))),
            SendRequestError::Connect(ConnectError::Timeout),
            SendRequestError::Send(io(TimedOut)),
            SendRequestError::Response(actix_web::error::ParseError::Header),
        ] {
            assert!(!closed_before_answer(&e), "{e:?}");
        }
    }
}
